"""``digits``: scikit-learn's embedded 8x8 digits (1,797 grey images, 10 classes, no root).

Normalisation: the training split's own per-channel mean/std (``mean``/``std`` not given).
"""

from __future__ import annotations

from spikedistill.data import readers
from spikedistill.data.registry import ReadRequest, register_dataset

#: 8x8 digits: none of CIFAR's augmentation (a flipped or AutoAugmented digit is another digit or
#: noise); a random crop after 1-pixel padding, the demo teacher's recipe (98 % in 15 epochs)
DIGITS_AUGMENT = {"random_crop": True, "crop_padding": 1, "hflip": False, "autoaugment": False,
                  "random_erasing": 0.0}


@register_dataset("digits", num_classes=10, in_channels=1, image_size=8,
                  class_names=[str(i) for i in range(10)], needs_root=False,
                  description="scikit-learn's embedded 8x8 digits", augment=DIGITS_AUGMENT)
def read(request: ReadRequest) -> readers.RawDataset:
    """The fixed stratified split of :func:`spikedistill.data.readers.read_digits`."""
    return readers.read_digits()
