"""The LIF neuron's parameters as one record (Norse style: ``LIFParameters``).

One frozen :class:`LIFParameters` travels from the model builders through the
:class:`~spikedistill.neurons.lif.LIF` module to the pure functions
(:func:`~spikedistill.neurons.lif.lif_multistep`, the torch loop and the Triton kernel), instead
of eight keyword arguments in every signature. Per timestep t (``method.md``, "Student neuron")::

    h[t] = decay * u[t-1] + c * x[t]     (c = input_scale: 1, or 1 - decay with decay_input)
    s[t] = H(h[t] - threshold)           (strict >; >= with fire_at_threshold)
    u[t] = (1 - s[t]) * h[t]             (hard reset; detached from the graph with detach_reset)
    ds/dh = surrogate(h - threshold; alpha)

``backend`` picks the implementation (``torch`` | ``triton`` | ``auto``); it changes no number.
The fields and defaults are those of ``model.neuron`` (:class:`spikedistill.config.NeuronConfig`,
in the torch-free config layer). Models keep taking the neuron as a plain mapping too
(``neuron={"decay": 0.5, ...}``, the form stored in checkpoints' ``model_kwargs`` and given to
plugins): :meth:`LIFParameters.of` turns either into the record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Union

from spikedistill.config import NEURON_BACKENDS
from spikedistill.errors import ConfigError

__all__ = ["LIFParameters", "NeuronLike"]


@dataclass(frozen=True)
class LIFParameters:
    """The eight parameters of the multi-step LIF neuron (module doc for the equations)."""

    decay: float = 0.5
    threshold: float = 1.0
    surrogate: str = "triangle"      # triangle | sigmoid | atan (spikedistill.neurons.surrogate)
    alpha: float = 1.0               # surrogate width / sharpness
    detach_reset: bool = False
    backend: str = "auto"            # torch | triton | auto
    decay_input: bool = False        # c = 1 - decay (SpikingJelly's decay_input)
    fire_at_threshold: bool = False  # s = H(h - threshold) inclusive: h >= threshold fires

    def __post_init__(self) -> None:
        for name in ("decay", "threshold", "alpha"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("detach_reset", "decay_input", "fire_at_threshold"):
            object.__setattr__(self, name, bool(getattr(self, name)))

    @property
    def input_scale(self) -> float:
        """``c`` of ``h = decay * u + c * x``: ``1 - decay`` (= 1/tau) with ``decay_input``,
        else 1."""
        return 1.0 - self.decay if self.decay_input else 1.0

    def validate(self) -> "LIFParameters":
        """Itself, after checking the surrogate and the backend by name (ConfigError)."""
        from spikedistill.neurons.surrogate import get_surrogate

        get_surrogate(self.surrogate)
        if self.backend not in NEURON_BACKENDS:
            raise ConfigError(f"neuron backend {self.backend!r}: expected one of "
                              f"{', '.join(NEURON_BACKENDS)}")
        return self

    def replace(self, **changes: Any) -> "LIFParameters":
        """A copy with ``changes`` (e.g. Spikformer's attention neuron at another threshold)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Dict[str, Any]:
        """The plain ``{field: value}`` mapping (what a checkpoint's ``model_kwargs`` stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, neuron: "Optional[NeuronLike]" = None, **overrides: Any) -> "LIFParameters":
        """The record of ``neuron``: None (the defaults), a :class:`LIFParameters`, a mapping of
        its fields (``model_kwargs["neuron"]`` of a checkpoint, a subset is fine) or an object
        with these attributes (``model.neuron``); ``overrides`` win. An unknown key is a
        ConfigError naming ``model.neuron.<key>``."""
        if isinstance(neuron, cls) and not overrides:
            return neuron
        if neuron is None:
            values: Dict[str, Any] = {}
        elif isinstance(neuron, cls):
            values = neuron.as_dict()
        elif isinstance(neuron, Mapping):
            values = dict(neuron)
        elif dataclasses.is_dataclass(neuron) and not isinstance(neuron, type):
            values = {f.name: getattr(neuron, f.name) for f in dataclasses.fields(neuron)}
        else:
            raise ConfigError(f"config key 'model.neuron': expected a mapping of the LIF "
                              f"parameters or a LIFParameters, got {type(neuron).__name__}")
        values.update(overrides)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"config key 'model.neuron.{unknown[0]}': not a LIF parameter; "
                              f"expected one of {', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**values)


#: what :meth:`LIFParameters.of` accepts
NeuronLike = Union[LIFParameters, Mapping[str, Any], Any]
