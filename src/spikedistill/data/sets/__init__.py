"""The built-in datasets, one module each; importing this package registers them (in this
order, which is the order ``load_dataset``'s unknown-name error lists them in)."""

from spikedistill.data.sets import digits, cifar, imagefolder  # noqa: F401  (registration)
