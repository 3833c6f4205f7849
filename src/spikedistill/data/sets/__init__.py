"""The built-in datasets, one module each, found by discovery: the dataset registry
(:data:`spikedistill.plugins.DATASETS`) imports every module of this package whose name does not
start with ``_`` (in name order) on its first query, and each registers itself with
``@register_dataset``. A new built-in dataset is one new file here, nothing else; ``_*.py``
modules hold shared helpers (``_folder.py``)."""
