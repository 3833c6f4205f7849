"""Accuracy at every timestep ``T' <= T`` from one run's per-timestep outputs.

A spiking model's logits after ``T'`` timesteps are the mean of its first ``T'`` per-timestep
logits ``z[t]`` (``timestep_logits=True`` of the model contract); the neurons are causal, so in
eval mode these equal the logits of a run with ``model.T = T'`` on the same input (direct
encoding repeats the image; frame data gives the first ``T'`` frames). One pass at ``T``
therefore gives the whole accuracy-versus-``T'`` curve that TDD (ICML 2025) reports::

    zbar[T'] = 1/T' sum_{t < T'} z[t],   top1(T') = mean_b 1[argmax zbar[T', b] = y_b]
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Union

import torch
import torch.nn as nn

from spikedistill.analysis.figures import pyplot, save_figure
from spikedistill.errors import ConfigError

PathLike = Union[str, Path]


def prefix_mean_logits(timestep_logits: torch.Tensor) -> torch.Tensor:
    """``zbar[T'] = 1/T' sum_{t < T'} z[t]`` for every ``T' = 1..T``: ``[T, B, K] -> [T, B, K]``."""
    if timestep_logits.dim() != 3:
        raise ValueError(f"expected per-timestep logits [T, B, K], got shape "
                         f"{tuple(timestep_logits.shape)}")
    z = timestep_logits.float()
    steps = torch.arange(1, z.shape[0] + 1, device=z.device, dtype=z.dtype).view(-1, 1, 1)
    return z.cumsum(dim=0) / steps


def prefix_correct(timestep_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions at every ``T'``: ``[T]`` counts over the batch."""
    pred = prefix_mean_logits(timestep_logits).argmax(dim=-1)            # [T, B]
    return (pred == y.view(1, -1)).sum(dim=1)


@torch.no_grad()
def accuracy_by_timestep(model: nn.Module, batches: Iterable, device=None) -> List[Dict[str, float]]:
    """``[{"T": T', "top1": %}, ...]`` for ``T' = 1..T`` of a spiking ``model`` over ``batches`` of
    ``(x, y)``, from one forward per batch; the model runs in eval mode (restored afterwards).
    ConfigError for a model without per-timestep outputs (an ANN)."""
    if not getattr(model, "is_spiking", False):
        raise ConfigError(f"accuracy at every timestep needs a spiking model; "
                          f"{getattr(model, 'model_name', type(model).__name__)} is not one")
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    correct = None
    seen = 0
    try:
        for batch in batches:
            x, y = batch[0].to(device), batch[1].to(device)
            z = model(x, timestep_logits=True)
            z = z[0] if isinstance(z, (tuple, list)) else z
            c = prefix_correct(z, y).double().cpu()
            correct = c if correct is None else correct + c
            seen += int(y.numel())
    finally:
        model.train(was_training)
    if correct is None or seen == 0:
        raise ConfigError("accuracy at every timestep: the data loader yielded no batches")
    return [{"T": i + 1, "top1": 100.0 * float(v) / seen} for i, v in enumerate(correct.tolist())]


def timestep_table(rows: List[Dict[str, float]]) -> str:
    """Markdown table ``| T' | top-1 (%) |`` of :func:`accuracy_by_timestep` rows."""
    lines = ["| T' | top-1 (%) |", "|---:|---:|"]
    lines += [f"| {r['T']} | {r['top1']:.2f} |" for r in rows]
    return "\n".join(lines)


def plot_accuracy_by_timestep(rows: List[Dict[str, float]], path: PathLike, title: str = "") -> Path:
    """Line plot of top-1 (%) against ``T'`` (PNG, matplotlib Agg)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.5), dpi=100)
    ax.plot([r["T"] for r in rows], [r["top1"] for r in rows], marker="o")
    ax.set_xlabel("timesteps T' used (prefix of one run)")
    ax.set_ylabel("top-1 (%)")
    ax.set_xticks([r["T"] for r in rows])
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


__all__ = ["accuracy_by_timestep", "plot_accuracy_by_timestep", "prefix_correct",
           "prefix_mean_logits", "timestep_table"]
