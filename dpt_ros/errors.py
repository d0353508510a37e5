"""
Every error type of the package, and the argument check the pure modules share.

Errors that label a counter carry a short machine-readable `reason`.
"""
from __future__ import annotations


class ReasonError(Exception):
    """An error that labels a counter: `reason` is its short stable key, the message its words."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class InvalidImage(ReasonError, ValueError):
    """
    An input image/message that cannot be turned into an RGB frame.

    `reason` is a short stable key used as a counter label (e.g. 'unknown_encoding',
    'size_mismatch', 'truncated', 'empty', 'too_large', 'nan', 'decode_failed'); the message
    says what was wrong in words a person can act on.
    """


class BackendError(RuntimeError):
    """A backend could not start or could not run; the message says why and what to do."""


class BackendUnavailable(BackendError):
    """The requested backend cannot start here (missing package, no device, no CUDA)."""


class WeightsNotFound(BackendError):
    """The requested weights are neither in the HF cache, on the hub, nor a local directory."""


class FallbackError(BackendError):
    """A fallback happened in strict mode."""


class SelfCheckFailed(BackendUnavailable):
    """
    The TT self-check found no chip whose depth matches the torch fp32 reference.

    An 'unavailable' backend, so the node's start-up fallback serves from the CPU with this
    message as its reason (e.g. 'selfcheck pcc 0.62 on chip 1 ...'); the runner's strict
    `--tt-run` fails with it.
    """


class AlignmentError(ReasonError, ValueError):
    """A fit could not be made. `reason` is a short counter key; the message says why."""


class CameraModelError(ReasonError, ValueError):
    """
    A camera_info that cannot place pixels in space (points are then not made).

    `reason` is a short counter key: bad_k, bad_p, bad_d, unsupported_distortion, bad_size.
    """


class BagError(ReasonError):
    """
    A bag cannot be used as asked.

    `reason` is a short key: missing, corrupt, no_topic, wrong_type, no_frames, ambiguous, exists.
    """


class EvalError(Exception):
    """Nothing can be evaluated; the message says why (printed without a traceback)."""


class RunFailed(RuntimeError):
    """Nothing could be processed; the message says why (exit status 1)."""


class StartupError(Exception):
    """The node cannot start as configured; the message is one line for the user."""


class StartAborted(Exception):
    """start() gave up because abort_start() was called (a signal during start-up)."""


class ViewError(RuntimeError):
    """The depth view cannot serve its page (the port is in use, the address is not local)."""


class ChipFault(Exception):
    """A device step (write, execute, barrier, read) of one chip of a TT call raised."""

    def __init__(self, slot: int, error: BaseException):
        super().__init__(f'{type(error).__name__}: {error}')
        self.slot = slot
        self.error = error


def check_out_array(out, shape: tuple, dtype) -> None:
    """
    Check an `out=` argument (an array a result is written into, e.g. a message buffer).

    ValueError unless it is a writeable C-contiguous array of this shape and dtype.
    """
    import numpy as np
    if (not isinstance(out, np.ndarray) or out.shape != tuple(shape)
            or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous
            or not out.flags.writeable):
        got = (f'{out.shape} {out.dtype}' if isinstance(out, np.ndarray)
               else type(out).__name__)
        raise ValueError(f'out must be a writeable C-contiguous {tuple(shape)} '
                         f'{np.dtype(dtype)} array, got {got}')
