"""Spiking neurons: the pure multi-step LIF function, surrogates, and the LIF module.

Time axis: every spiking tensor is time-major, ``[T, B, ...]``.
"""

from spikedistill.neurons.lif import BACKENDS, LIF, lif_multistep, lif_multistep_torch, resolve_backend
from spikedistill.neurons.parameters import LIFParameters, NeuronLike
from spikedistill.neurons.surrogate import SURROGATES, get_surrogate, spike

__all__ = ["BACKENDS", "LIF", "LIFParameters", "NeuronLike", "SURROGATES", "get_surrogate", "lif_multistep",
           "lif_multistep_torch", "resolve_backend", "spike"]
