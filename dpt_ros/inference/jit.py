"""
Optional numba compilation for the per-frame kernels (resize, colourise).

numba is an accelerator only: where it cannot be imported, `available()` is False and every
caller has a plain numpy/OpenCV/Pillow path. Kernels are compiled with `nogil` (the node's
other threads keep running while one runs) and `cache` (a process loads them from numba's
on-disk cache instead of compiling again: ~0.2 s instead of ~1 s).
"""
from __future__ import annotations

try:
    import numba
    IMPORT_ERROR = None
except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
    numba = None
    IMPORT_ERROR = exc


def available() -> bool:
    """Return True when the compiled kernels can run (numba importable)."""
    return numba is not None


def kernel(fn):
    """Compile fn as a GIL-free, disk-cached kernel; None where numba is missing."""
    if numba is None:
        return None
    return numba.njit(nogil=True, cache=True)(fn)
