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
    """Lay out ``fig``, write it to ``path`` (creating folders) and close it."""
    plt = pyplot()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
