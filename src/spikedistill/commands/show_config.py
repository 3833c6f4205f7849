"""``spikedistill config``: print the fully resolved config, or every key (``--keys``) with a
one-line description, its type and default, and its allowed values or range, followed by the
registered datasets, models and methods.

The allowed values are not written twice: they are recorded from the validators themselves
(:func:`spikedistill.config.record_constraints`), which use the vocabulary constants of
:mod:`spikedistill.config`. The description of a key is the comment on its field's line (or on
the comment lines just above it) in its dataclass, else :data:`KEY_HELP`.

``config --keys`` loads no torch: the keys of the core sections are read from
:mod:`spikedistill.config`, and what only the registries know (datasets, models, methods and
the ``distill.<method>`` sub-sections, whose dataclasses live beside their torch code) comes
from a catalogue that :func:`build_catalog` makes from the live registries. The catalogue is
keyed by :func:`sources_fingerprint` (the bytes of every module of the packages the registries
discover: a new or edited method, model or dataset changes it): ``keys_catalog.json`` next to
this file is used when its key matches, else the copy in the cache folder
(``$SPIKEDISTILL_CACHE``), else it is built live once (loading torch) and cached there.
``config --keys --live``, or any installed plugin, builds it in-process (plugins are known only
by loading them).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import json
import tokenize
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Tuple

import yaml

from spikedistill.commands.common import add_config_args, load_from_args
from spikedistill.config import (Config, DistillConfig, _is_section, _schema, _type_name,
                                 record_constraints)

CATALOG = Path(__file__).with_name("keys_catalog.json")
#: the packages whose modules register the built-in datasets, models and methods
DISCOVERED = ("data/sets", "models/zoo", "distill/methods", "distill/base.py",
              "data/registry.py")

#: one-line descriptions of the keys whose field carries no comment
KEY_HELP = {
    "model.name": "registered model to train (source spikedistill; listed at the end)",
    "model.neuron.decay": "membrane decay per step: u = decay * u + I",
    "model.neuron.threshold": "firing threshold: spike when u > threshold",
    "model.neuron.detach_reset": "no gradient through the reset",
    "teacher.checkpoint": "spikedistill teacher checkpoint (RUN_DIR/best.pt)",
    "teacher.arch": "architecture of an external teacher (torchvision/timm name, or "
                    "package.module:factory)",
    "teacher.kwargs": "constructor arguments of the external teacher",
    "teacher.features": "module paths of the teacher's feature taps ([]: per family default)",
    "teacher.classifier": "module producing the teacher's logits (None: per family default)",
    "data.test_subset": "class-balanced test subset size (0: everything)",
    "data.subset_seed": "seed of the class-balanced subsets",
    "data.std": "per-channel normalisation std (with data.mean; None: the dataset's own)",
    "data.augment.random_crop": "random crop after zero padding by crop_padding",
    "data.augment.crop_padding": "padding (pixels) of the random crop",
    "data.augment.hflip": "random horizontal flip",
    "data.augment.erasing_scale": "random erasing: area fraction of the erased box",
    "data.augment.erasing_ratio": "random erasing: aspect ratio of the erased box",
    "data.augment.normalize": "normalise by data.mean / data.std",
    "data.augment.randaugment": "timm RandAugment string, e.g. rand-m9-n1-mstd0.4-inc1 "
                                "(None: off)",
    "data.augment.mixup": "Mixup Beta alpha (0: off)",
    "data.augment.cutmix": "CutMix Beta alpha (0: off)",
    "data.augment.mix_prob": "probability of mixing a batch (timm)",
    "data.augment.switch_prob": "probability of CutMix instead of Mixup when both are on",
    "data.augment.translate": "event frames: random roll by up to this many pixels (0: off)",
    "train.epochs": "training epochs",
    "train.batch_size": "batch size (see batch_size_is)",
    "train.lr": "peak learning rate",
    "train.momentum": "SGD momentum",
    "train.nesterov": "Nesterov momentum (SGD)",
    "train.weight_decay": "weight decay",
    "train.warmup_epochs": "linear warm-up epochs (fractions allowed)",
    "train.label_smoothing": "label smoothing of the cross-entropy",
    "train.channels_last": "channels-last memory format (CUDA speed-up)",
    "train.compile": "torch.compile the model",
    "train.seed": "seed of initialisation, data order and augmentation",
    "train.eval_every": "evaluate on the test set every N epochs",
    "train.eval_batch_size": "batch size of evaluation",
    "distill.method": "distillation method (listed at the end)",
    "distill.ce_weight": "weight of CE(z_s, y) in every method",
    "distill.warmup_epochs": "ramp every loss term but ce linearly from 0 to its weight over "
                             "these epochs (per step; 0: off; mdistiller's DKD warmup)",
    "distill.bkdsnn.tau": "KD temperature",
    "distill.bkdsnn.kd_weight": "weight of the logit KD term",
    "distill.bkdsnn.feature_weight": "weight of the blurred feature term",
    "distill.bkdsnn.mask_ratio": "fraction of student feature channels masked",
    "distill.catkd.weight": "weight of the class-activation-map MSE",
    "distill.catkd.resolution": "side r of the pooled CAMs (pool_r)",
    "distill.catkd.normalize": "normalise the pooled CAMs (N) before the MSE",
    "distill.catkd.kd_weight": "weight of an extra logit KD term (0: off)",
    "distill.catkd.tau": "KD temperature",
    "distill.ckd.beta": "weight of the SAMD term",
    "distill.ckd.gamma": "weight of the NLD term",
    "distill.ckd.samd.tau": "SAMD softmax temperature",
    "distill.ckd.samd.tau_squared": "multiply SAMD by tau^2 (null: by preset)",
    "distill.ckd.nld.tau": "NLD temperature",
    "distill.e2kd.tau": "KD temperature",
    "distill.e2kd.kd_weight": "weight of the logit KD term",
    "distill.enof.tau": "LAF temperature",
    "distill.enof.weight": "weight of the LAF term",
    "distill.hta_kl.tau": "temperature",
    "distill.hta_kl.weight": "weight of the head/tail KL term",
    "distill.hta_kl.mu": "cumulative-probability mass of the head mask",
    "distill.hta_kl.per_timestep": "apply the KL at every timestep (else to the time mean)",
    "distill.kd.tau": "KD temperature",
    "distill.kd.weight": "weight of the KD term",
    "distill.kdsnn.tau": "KD temperature",
    "distill.kdsnn.kd_weight": "weight of the logit KD term",
    "distill.kdsnn.feature_weight": "weight of the feature MSE term",
    "distill.tks.alpha": "self-distillation share: alpha_e = 1 - alpha * epoch / epochs",
    "distill.tks.tau": "temperature of the self-distillation target",
    "distill.tks.detach_target": "no gradient through the target S",
    "distill.tser_kd.alpha": "weight of the KL term against the CE term",
    "distill.tser_kd.tau": "temperature",
    "distill.tser_kd.gamma": "weight of the entropy regulariser",
    "distill.tser_kd.tau_on_ce": "divide the CE logits by tau too",
    "run.out_dir": "folder of run directories",
    "run.tensorboard": "write TensorBoard event files",
    "run.progress": "per-epoch progress bar",
}


@functools.lru_cache(maxsize=None)
def _module_source(filename: str) -> Tuple[List[str], Dict[int, str], Dict[str, Tuple[int, int]]]:
    """The lines of a source file, its comments by line number and ``{class name: (first
    line, last line)}`` of its classes (parsed once per file)."""
    src = Path(filename).read_text(encoding="utf-8")
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(src).readline)
                if tok.type == tokenize.COMMENT}
    spans = {node.name: (node.lineno, node.end_lineno or node.lineno)
             for node in ast.walk(ast.parse(src)) if isinstance(node, ast.ClassDef)}
    return src.splitlines(), comments, spans


def field_comments(cls: type) -> Dict[str, str]:
    """``{field: comment}`` of a dataclass: the comment on the field's line, else the comment
    lines directly above it (joined)."""
    try:
        lines, comments, spans = _module_source(inspect.getsourcefile(cls) or "")
    except (OSError, TypeError, SyntaxError):
        return {}
    if cls.__name__ not in spans:
        return {}
    first, last = spans[cls.__name__]
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    out: Dict[str, str] = {}
    for i in range(first, last + 1):
        line = lines[i - 1].strip()
        head = line.split(":")[0].strip()
        if head not in names or head in out:
            continue
        if i in comments:
            out[head] = comments[i]
            continue
        above, j = [], i - 1
        while j >= first and lines[j - 1].strip().startswith("#"):
            above.insert(0, comments.get(j, ""))
            j -= 1
        if above:
            out[head] = " ".join(above)
    return out


def _section_constraints(cls: type, prefix: str) -> Dict[str, str]:
    """The constraints every validator of ``cls`` (and its nested sections) checks, recorded
    on the defaults."""
    found: Dict[str, str] = {}
    if cls is DistillConfig:  # only its own keys here (the sections come from the registry)
        stub = SimpleNamespace(method="ce", ce_weight=1.0, warmup_epochs=0.0)
        found.update(record_constraints(lambda: DistillConfig.validate(stub, prefix)))
        return found
    default = cls()
    if hasattr(default, "validate"):
        found.update(record_constraints(lambda: default.validate(prefix)))
    for name, tp in _schema(cls):
        if _is_section(tp):
            found.update(_section_constraints(tp, f"{prefix}.{name}"))
    return found


def core_constraints() -> Dict[str, str]:
    """The constraints of every key of the core sections (``distill``: its own keys)."""
    found: Dict[str, str] = {}
    for name, tp in _schema(Config):
        found.update(_section_constraints(tp, name))
    return found


def _rows(cls: type, prefix: str, constraints: Dict[str, str]) -> List[Dict[str, str]]:
    """One row per dotted key below ``cls``: key, type, default, help, allowed. The
    ``distill`` section yields only its own keys (``method``, ``ce_weight``,
    ``warmup_epochs``; its sub-sections come from :func:`build_catalog`)."""
    rows: List[Dict[str, str]] = []
    comments = field_comments(cls) if dataclasses.is_dataclass(cls) else {}
    if cls is DistillConfig:
        schema = [("method", str), ("ce_weight", float), ("warmup_epochs", float)]
        defaults = {"method": "ce", "ce_weight": 1.0, "warmup_epochs": 0.0}
    elif cls is Config:  # no leaf keys (and building its default would load the methods)
        schema, defaults = _schema(cls), {}
    else:
        default = cls()
        schema = _schema(cls)
        defaults = {n: getattr(default, n) for n, _ in schema}
    for name, tp in schema:
        key = f"{prefix}.{name}" if prefix else name
        if _is_section(tp):
            rows.extend(_rows(tp, key, constraints))
            continue
        rows.append({"key": key, "type": _type_name(tp), "default": repr(defaults[name]),
                     "help": comments.get(name) or KEY_HELP.get(key, ""),
                     "allowed": constraints.get(key, "")})
    return rows


def format_row(row: Dict[str, str]) -> str:
    """``key: type = default  -- help  [allowed]``."""
    text = f"{row['key']}: {row['type']} = {row['default']}"
    if row["help"]:
        text += f"  -- {row['help']}"
    if row["allowed"]:
        text += f"  [{row['allowed']}]"
    return text


def build_catalog() -> Dict[str, Any]:
    """What only the registries know, from the live registries (loads torch and plugins):
    ``datasets`` / ``models`` / ``methods`` (name -> one line) and ``keys`` (the rows of every
    ``distill.<section>`` key)."""
    from spikedistill.config import method_sections
    from spikedistill.data.registry import get_dataset, list_datasets
    from spikedistill.models.registry import list_models, model_entry, model_role
    from spikedistill.plugins import METHODS

    def first_line(obj: Any) -> str:  # the first sentence of the docstring
        doc = " ".join((inspect.getdoc(obj) or "").strip().split("\n\n")[0].split())
        return doc.split(". ")[0].rstrip(".")

    datasets = {}
    for name in list_datasets():
        spec = get_dataset(name)
        root = f"data.root: {spec.root_hint}" if spec.needs_root else "embedded, no data.root"
        own = ", ".join(f"{k}={v}" for k, v in getattr(spec, "augment", {}).items())
        datasets[name] = (f"{spec.description or name} ({root}"
                          + (f"; its data.augment defaults: {own}" if own else "") + ")")
    models = {name: f"{model_role(name)}: {first_line(model_entry(name)['obj'])}".rstrip(": ")
              for name in list_models()}
    methods = {}
    for name, entry in METHODS.items():
        section = entry.get("section")
        where = f"distill.{section}.*" if section else "distill.ce_weight only"
        methods[name] = f"{first_line(entry['obj'])} ({where})".strip()
    keys: List[Dict[str, str]] = []
    for section, cls in method_sections().items():
        prefix = f"distill.{section}"
        keys.extend(_rows(cls, prefix, _section_constraints(cls, prefix)))
    return {"datasets": datasets, "models": models, "methods": methods, "keys": keys}


def sources_fingerprint() -> str:
    """sha256 over the relative path and bytes of every module under :data:`DISCOVERED`."""
    import hashlib

    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for part in DISCOVERED:
        base = root / part
        files = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for f in files:
            digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def write_catalog(path: Path = CATALOG) -> Dict[str, Any]:
    """Write the catalogue built from the live registries, keyed by the current
    :func:`sources_fingerprint`, to ``path`` (default: the shipped ``keys_catalog.json``;
    regenerate it after adding a built-in dataset, model or method so that a fresh clone's
    first ``config --keys`` is fast too)."""
    from spikedistill.atomic import atomic_write_text

    catalog = {"fingerprint": sources_fingerprint(), **build_catalog()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(catalog, indent=1, sort_keys=True) + "\n")
    return catalog


def _cached_path() -> Path:
    import os

    env = os.environ.get("SPIKEDISTILL_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "spikedistill"
    return base / "keys_catalog.json"


def read_catalog() -> Dict[str, Any]:
    """The catalogue for the current sources: the shipped one or the cached one when its
    fingerprint matches, else built live (loads torch) and cached."""
    want = sources_fingerprint()
    for path in (CATALOG, _cached_path()):
        try:
            catalog = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if catalog.get("fingerprint") == want:
            return catalog
    try:
        return write_catalog(_cached_path())
    except OSError:  # a read-only cache folder: build without keeping it
        return {"fingerprint": want, **build_catalog()}


def installed_plugins() -> List[str]:
    """``name = value`` of every installed plugin entry point (not imported)."""
    from importlib import metadata

    from spikedistill.plugins import ENTRY_POINT_GROUP

    return [f"{ep.name} = {ep.value}" for ep in
            sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)]


def describe(live: bool = False) -> List[str]:
    """The ``config --keys`` listing: every key, then the registered datasets, models and
    methods (built-ins from the catalogue; ``live``: from the registries, plugins included)."""
    plugins = installed_plugins()
    live = live or bool(plugins)  # a plugin's entries are known only by loading it
    catalog = build_catalog() if live else read_catalog()
    rows = _rows(Config, "", core_constraints())
    out = [format_row(r) for r in rows]
    at = next(i for i, r in enumerate(rows) if r["key"] == "distill.ce_weight") + 1
    out[at:at] = [format_row(r) for r in catalog["keys"]]
    for title, what in (("datasets (data.name; a dataset's own data.augment defaults replace "
                         "the ones above for the keys a config does not set)", "datasets"),
                        ("models (model.name; role)", "models"),
                        ("methods (distill.method)", "methods")):
        out += ["", f"{title}:"] + [f"  {n}: {d}" for n, d in catalog[what].items()]
    if plugins:
        out += ["", "installed plugins (their entries are included above):"] + [
            f"  {p}" for p in plugins]
    return out


def register(sub) -> None:
    p = sub.add_parser(
        "config", help="print the resolved config, or list every key (--keys)",
        description="Print the fully resolved config of a recipe and overrides, or (--keys) "
                    "every dotted key with its type, default, description and allowed values, "
                    "and the registered datasets, models and methods.")
    add_config_args(p)
    p.add_argument("--keys", action="store_true",
                   help="list every dotted key: type, default, description, allowed values; "
                        "then the datasets, models and methods (no torch is loaded)")
    p.add_argument("--live", action="store_true",
                   help="with --keys: read the registries in-process (loads torch; automatic "
                        "when a plugin is installed or a built-in module changed)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.keys:
        print("\n".join(describe(live=args.live)))
        return 0
    cfg = load_from_args(args)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0
