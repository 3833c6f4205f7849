"""The checkpoint files a run directory holds, and the one rule that finds a run's checkpoint.

A run writes ``RUN_DIR/best.pt`` on every new best test accuracy and ``RUN_DIR/last.pt`` every
``run.save_every`` epochs and at the end (:mod:`spikedistill.engine.trainer`). Wherever a
command takes "a checkpoint or a run directory" (``distill --teacher``, ``compare --teacher``,
``eval --checkpoint``, ``analyze``, ``visualize``, ``export``, ``export_state_dict``), a
directory means :func:`run_checkpoint`: ``best.pt`` if it is a file, else ``last.pt``.
(Resuming is another question, the newest intact state: :mod:`spikedistill.engine.resume`.)

No torch here: the config layer's rooms may use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

from spikedistill.errors import CheckpointError, ConfigError

BEST_NAME = "best.pt"
LAST_NAME = "last.pt"
#: the files that stand for a run directory, in order of preference
RUN_CHECKPOINTS = (BEST_NAME, LAST_NAME)


def run_checkpoint(path: Union[str, os.PathLike], names: Sequence[str] = RUN_CHECKPOINTS) -> Path:
    """The checkpoint file ``path`` stands for: ``path`` itself unless it is a directory (whether
    the file exists is the loader's question), else ``path / n`` for the first ``n`` of ``names``
    (``best.pt``, then ``last.pt``) that is a file; a directory with none of them is a
    :class:`~spikedistill.errors.CheckpointError` naming the directory and the files expected."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return p
    for name in names:
        if (p / name).is_file():
            return p / name
    expected = f"neither {' nor '.join(names)}" if len(names) > 1 else f"no {names[0]}"
    raise CheckpointError(f"run directory '{p}' has {expected}")


def resolve_teacher(path: Optional[str]) -> Optional[str]:
    """``--teacher`` of ``distill``, ``compare`` and ``ablate``: a checkpoint file, or a run
    directory standing for its ``best.pt``, else its ``last.pt``
    (:func:`run_checkpoint`); empty -> None. A file that is not there,
    or a directory with neither, is a ConfigError on ``--teacher``."""
    if not path:
        return None
    try:
        p = run_checkpoint(path)
    except CheckpointError as exc:
        raise ConfigError(f"--teacher: {exc}") from None
    if not p.is_file():
        raise ConfigError(f"--teacher: checkpoint '{p}' does not exist (expected RUN_DIR/best.pt)")
    return str(p)


__all__ = ["BEST_NAME", "LAST_NAME", "RUN_CHECKPOINTS", "resolve_teacher", "run_checkpoint"]
