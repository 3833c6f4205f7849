"""The spiking ResNet students; defined (and registered) in
:mod:`spikedistill.models.zoo.spiking_resnet`, this module is the same module under its former
name."""

import sys

from spikedistill.models.zoo import spiking_resnet as _module

sys.modules[__name__] = _module
