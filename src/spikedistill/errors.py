"""User-facing errors.

Everything a user can get wrong (a config key, a data path, a checkpoint) raises a
:class:`SpikeDistillError` subclass whose message names the field or file and what was
expected. The CLI prints such errors as one line (``error: ...``) and exits with status 2,
never with a traceback from deep inside torch.
"""

import pickle


class SpikeDistillError(Exception):
    """Base class of all errors caused by user input."""


class ConfigError(SpikeDistillError):
    """A config file, key, value or override is invalid."""


class DataError(SpikeDistillError):
    """A dataset root, file or archive is missing, unreadable or malformed."""


class CheckpointError(SpikeDistillError):
    """A checkpoint is missing, truncated, corrupt or does not fit the model/data."""


#: Messages of torch's weights-only unpickler that refuse a global (a class or function to
#: import and call) rather than report broken bytes.
_UNSAFE_MARKERS = ("Unsupported global", "unsupported GLOBAL", "Can only create new object",
                   "Can only build Tensor")


def torch_load_reason(exc: BaseException, limit: int = 200) -> tuple:
    """Why ``torch.load(weights_only=True)`` failed, as ``(detail, unsafe)``: one line of the
    exception cut at ``limit`` characters, and whether the unpickler refused a global (a
    class or function the file wants imported and called) rather than met broken bytes.

    torch's message spans many lines of advice; the line kept is the unpickler's refusal
    (without its prefix and the "Please use ..." advice) when there is one, else the first
    ``WeightsUnpickler error`` line, else the first line, else the exception's type name.
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    refused = [ln for ln in lines if any(marker in ln for marker in _UNSAFE_MARKERS)]
    if isinstance(exc, pickle.UnpicklingError) and refused:
        detail = refused[0].removeprefix("WeightsUnpickler error:").split(" Please use")[0]
        return detail.strip().rstrip(".")[:limit], True
    picked = [ln for ln in lines if ln.startswith("WeightsUnpickler error")]
    return (picked or lines or [type(exc).__name__])[0][:limit], False
