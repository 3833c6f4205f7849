"""Matplotlib plumbing shared by every picture spikedistill writes (headless Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Union


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Union[str, Path]) -> Path:
    """Lay out ``fig``, write it to ``path`` atomically (creating folders; the format from the
    suffix, PNG by default) and close it."""
    from spikedistill.atomic import atomic_write

    plt = pyplot()
    fig.tight_layout()
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format=fmt))
    finally:
        plt.close(fig)
    return path
