"""Where a training step sits in the run: what a method may schedule on (torch-free).

The engine passes one :class:`StepContext` to ``Distiller.forward_train(x, y, ctx=...)`` per
step. With ``S = steps_per_epoch`` and ``E = epochs``::

    step = epoch * S + step_in_epoch            (global, 0-based; epoch is 0-based too)
    total_steps = E * S
    progress = step / total_steps               (0 at the first step, < 1 at the last)

A resumed run continues the same numbering (a step has the same context whether or not the run
was interrupted before it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepContext:
    """Position of one training step (all counters 0-based)."""

    epoch: int
    epochs: int
    step: int
    step_in_epoch: int
    steps_per_epoch: int
    total_steps: int

    @property
    def progress(self) -> float:
        """``step / total_steps``: the fraction of the run completed before this step."""
        return self.step / self.total_steps if self.total_steps > 0 else 0.0

    @classmethod
    def at(cls, epoch: int, step_in_epoch: int, *, epochs: int, steps_per_epoch: int
           ) -> "StepContext":
        """The context of step ``step_in_epoch`` of (0-based) ``epoch``."""
        return cls(epoch=int(epoch), epochs=int(epochs),
                   step=int(epoch) * int(steps_per_epoch) + int(step_in_epoch),
                   step_in_epoch=int(step_in_epoch), steps_per_epoch=int(steps_per_epoch),
                   total_steps=int(epochs) * int(steps_per_epoch))


__all__ = ["StepContext"]
