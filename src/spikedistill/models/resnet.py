"""The ANN ResNet teachers; defined (and registered) in :mod:`spikedistill.models.zoo.resnet`,
this module is the same module under its former name."""

import sys

from spikedistill.models.zoo import resnet as _module

sys.modules[__name__] = _module
