"""A fake ImageNet tree of real JPEG files (Pillow) of random sizes, in every supported layout.

``make_tree(root, layout)`` writes ``train/<wnid>/*.JPEG`` (or ``train-*.tar`` shards) and a
validation set as ``val/<wnid>/`` folders, flat ``val/`` with a labels file of the given kind,
or ``val-*.tar`` shards; it returns ``{"classes": sorted wnids, "val": {file stem: wnid},
"train": {file stem: wnid}}``, the truth the tests compare the index with.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

# deliberately not in sorted order, so that an ILSVRC2012_ID order != the class order
WNIDS = ("n02119789", "n01440764", "n03000134")


def jpeg_bytes(rng: np.random.Generator, lo: int = 20, hi: int = 56) -> bytes:
    from PIL import Image

    h, w = (int(v) for v in rng.integers(lo, hi, 2))
    base = rng.integers(0, 255, (1, 1, 3))
    noise = rng.integers(-40, 40, (h, w, 3))
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _write_tar(path: Path, members: dict) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_tree(root: Path, *, val: str = "folders", train: str = "folders", per_class: int = 4,
              val_per_class: int = 2, wnids=WNIDS, seed: int = 0, shards: int = 2) -> dict:
    """Write the tree; ``train``: folders | shards; ``val``: folders | shards | txt | csv | devkit."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    truth = {"classes": sorted(wnids), "train": {}, "val": {}}
    train_members = {}
    for w in wnids:
        for i in range(per_class):
            stem = f"{w}_{i}"
            truth["train"][stem] = w
            train_members[f"{w}/{stem}.JPEG"] = jpeg_bytes(rng)
    if train == "folders":
        for name, data in train_members.items():
            (root / "train" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "train" / name).write_bytes(data)
    else:
        names = sorted(train_members)
        for s in range(shards):
            _write_tar(root / f"train-{s:06d}.tar", {n: train_members[n] for n in names[s::shards]})
    val_items = []
    n = 0
    for w in wnids:
        for _ in range(val_per_class):
            n += 1
            val_items.append((f"ILSVRC2012_val_{n:08d}", w, jpeg_bytes(rng)))
    rng.shuffle(val_items)            # the official numbering mixes the classes
    val_items = [(f"ILSVRC2012_val_{k + 1:08d}", w, d) for k, (_, w, d) in enumerate(val_items)]
    for stem, w, _ in val_items:
        truth["val"][stem] = w
    if val == "folders":
        for stem, w, data in val_items:
            (root / "val" / w).mkdir(parents=True, exist_ok=True)
            (root / "val" / w / f"{stem}.JPEG").write_bytes(data)
    elif val == "shards":
        _write_tar(root / "val-000000.tar", {f"{w}/{stem}.JPEG": d for stem, w, d in val_items})
    else:
        (root / "val").mkdir(parents=True, exist_ok=True)
        for stem, _, data in val_items:
            (root / "val" / f"{stem}.JPEG").write_bytes(data)
        if val == "txt":
            (root / "val_labels.txt").write_text("".join(f"{s}.JPEG {w}\n" for s, w, _ in val_items))
        elif val == "csv":
            rows = ["ImageId,PredictionString"] + [f"{s},{w} 1 2 30 40 {w} 5 6 7 8"
                                                   for s, w, _ in val_items]
            (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
        elif val == "devkit":
            write_devkit(root / "ILSVRC2012_devkit_t12" / "data", wnids,
                         [w for _, w, _ in val_items])
        else:
            raise ValueError(val)
    return truth


def write_devkit(folder: Path, wnids, val_wnids) -> None:
    """meta.mat (synsets: ILSVRC2012_ID 1.. in ``wnids`` order as leaves, plus one non-leaf)
    and the ground truth file (one 1-based ILSVRC2012_ID per validation image)."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    dt = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"),
          ("num_children", "O"), ("children", "O"), ("wordnet_height", "O"),
          ("num_train_images", "O")]
    rows = [(i + 1, w, f"class {w}", "", 0, np.zeros((1, 0)), 0, 4) for i, w in enumerate(wnids)]
    rows.append((len(wnids) + 1, "n00001740", "entity", "", 3,
                 np.arange(1, len(wnids) + 1, dtype=float), 5, 0))
    synsets = np.array(rows, dtype=dt).reshape(-1, 1)
    savemat(str(folder / "meta.mat"), {"synsets": synsets})
    id_of = {w: i + 1 for i, w in enumerate(wnids)}
    (folder / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{id_of[w]}\n" for w in val_wnids))
