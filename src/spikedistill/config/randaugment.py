"""The grammar of ``data.augment.randaugment``: timm's RandAugment string
(``rand-m9-n1-mstd0.4-inc1``) parsed into a :class:`RandAugmentSpec` (the op vocabularies are
:data:`.vocab.RANDAUGMENT_OPS` / ``RANDAUGMENT_INC_OPS``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

from spikedistill.errors import ConfigError


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed RandAugment string: ``magnitude`` M (0..``magnitude_max``), ``num_ops`` N per
    image, ``magnitude_std`` (Gaussian noise of M per application; ``inf``: M ~ U(0, M)),
    ``magnitude_max`` (clip bound, timm's ``_LEVEL_DENOM`` = 10 unless ``mmax``) and
    ``increasing`` (``inc1``: the ops whose severity grows with M)."""

    magnitude: float = 10.0
    num_ops: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = 10.0
    increasing: bool = False


def parse_randaugment(text: str, key: str = "data.augment.randaugment") -> RandAugmentSpec:
    """Read timm's RandAugment string (``rand_augment_transform`` in ``timm/data/auto_augment.py``):
    ``rand`` then ``-``-separated sections ``m<int>`` (magnitude, default 10), ``n<int>`` (ops per
    image, default 2), ``mstd<float>`` (magnitude noise; > 100 means uniform), ``mmax<int>``
    (magnitude bound, default 10), ``inc<0|1>`` (increasing ops). ``w<int>`` (op weights) is not
    supported. E.g. ``rand-m9-n1-mstd0.4-inc1``: M = 9, one op, noise 0.4, increasing ops."""
    import math
    import re

    parts = str(text).split("-")
    if parts[0] != "rand":
        raise ConfigError(f"config key '{key}': expected a RandAugment string like "
                          f"'rand-m9-n1-mstd0.4-inc1' (starting with 'rand'), got {text!r}")
    vals: Dict[str, Any] = {}
    for part in parts[1:]:
        m = re.fullmatch(r"(mstd|mmax|inc|m|n)(\d+(?:\.\d*)?)", part)
        if m is None:
            raise ConfigError(f"config key '{key}': unknown section {part!r} in {text!r}; "
                              "expected m<int>, n<int>, mstd<float>, mmax<int> or inc<0|1>")
        name, num = m.group(1), m.group(2)
        if name in ("m", "n", "mmax", "inc") and "." in num:
            raise ConfigError(f"config key '{key}': section {part!r} needs an integer")
        vals[name] = float(num) if name == "mstd" else int(num)
    mstd = vals.get("mstd", 0.0)
    spec = RandAugmentSpec(magnitude=float(vals.get("m", 10)), num_ops=int(vals.get("n", 2)),
                           magnitude_std=math.inf if mstd > 100 else mstd,
                           magnitude_max=float(vals.get("mmax", 10)),
                           increasing=bool(vals.get("inc", 0)))
    if spec.num_ops < 1:
        raise ConfigError(f"config key '{key}': n (ops per image) must be >= 1 in {text!r}")
    return spec
