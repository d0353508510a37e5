"""
Error types shared by the pure modules, and the argument check they share.

Each error carries a short machine-readable reason.
"""
from __future__ import annotations


class InvalidImage(ValueError):
    """
    An input image/message that cannot be turned into an RGB frame.

    `reason` is a short stable key used as a counter label (e.g. 'unknown_encoding',
    'size_mismatch', 'truncated', 'empty', 'too_large', 'nan', 'decode_failed'); the message
    says what was wrong in words a person can act on.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


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
