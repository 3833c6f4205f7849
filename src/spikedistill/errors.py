"""User-facing errors.

Everything a user can get wrong (a config key, a data path, a checkpoint) raises a
:class:`SpikeDistillError` subclass whose message names the field or file and what was
expected. The CLI prints such errors as one line (``error: ...``) and exits with status 2,
never with a traceback from deep inside torch.
"""


class SpikeDistillError(Exception):
    """Base class of all errors caused by user input."""


class ConfigError(SpikeDistillError):
    """A config file, key, value or override is invalid."""


class DataError(SpikeDistillError):
    """A dataset root, file or archive is missing, unreadable or malformed."""


class CheckpointError(SpikeDistillError):
    """A checkpoint is missing, truncated, corrupt or does not fit the model/data."""
