"""spikedistill: train spiking neural networks by knowledge distillation from ANN teachers.

Rooms: :mod:`~spikedistill.neurons`, :mod:`~spikedistill.models`, :mod:`~spikedistill.distill`,
:mod:`~spikedistill.data`, :mod:`~spikedistill.engine`, :mod:`~spikedistill.analysis`; the CLI is
:mod:`spikedistill.cli`. Layout and contracts: ``docs/design.md``.
"""

__version__ = "0.1.0"
