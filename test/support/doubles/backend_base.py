"""
The shared base of the stand-in depth backends (stand_in_backends, fault_backends, ...).

`DoubleBackend` implements the real `DepthBackend` interface with no model: it builds the
`BackendInfo`, counts infer calls under a lock, appends 'start <n>' / 'end <n>' around each call
to an events file (so a test can wait for "inside the backend call" as a condition), and closes
after an optional hang (a device that will not let go). Subclasses name the environment
variables, override `_infer` for their behaviour and the `_closing` / `_closed` hooks.
"""
from __future__ import annotations

import os
import threading
import time

from dpt_ros.backends.base import BackendInfo, batch_format

import numpy as np


def brightness(batch: np.ndarray) -> np.ndarray:
    """
    Red channel in [0, 2] as 'inverse depth'.

    Cheap, input dependent, >= 0 like DPT's output; the same map from (N, S, S, 3) uint8 pixels or
    normalised (N, 3, S, S) floats.
    """
    size = int(batch.shape[1] if batch.dtype == np.uint8 else batch.shape[-1])
    if batch_format(batch, size) == 'pixels':
        return batch[..., 0] * np.float32(1 / 127.5)
    return (batch[:, 0] + 1.0).astype(np.float32)


class DoubleBackend:
    """A DepthBackend with no model: output = brightness of the input, calls counted."""

    MODEL_NAME = 'stand-in (no model)'
    EVENTS_ENV = ''       # names the file infer() appends 'start <n>' / 'end <n>' to
    CLOSE_HANG_ENV = ''   # close() first sleeps this many seconds

    def __init__(self, opts, name: str, input_format: str | None = None):
        formats = {} if input_format is None else {'input_format': input_format}
        self.info = BackendInfo(name=name, device='test-double', dtype='fp32',
                                image_size=opts.image_size, execution_mode='eager', dp=opts.dp,
                                batch_size=1, model_name=self.MODEL_NAME,
                                weights='none (test double)', **formats)
        self.max_concurrency = max(1, int(opts.dp))   # like one traced pipeline per TT chip
        self.calls = 0
        self.closed = False
        self._lock = threading.Lock()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls += 1
            n = self.calls
        self._event(f'start {n}')
        try:
            return self._infer(batch, n)
        finally:
            self._event(f'end {n}')

    def _infer(self, batch: np.ndarray, n: int) -> np.ndarray:
        return brightness(np.asarray(batch))

    def _event(self, text: str) -> None:
        path = os.environ.get(self.EVENTS_ENV) if self.EVENTS_ENV else None
        if path:
            with self._lock, open(path, 'a') as f:
                f.write(text + '\n')

    def fallback_counts(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self._closing()
        hang = float(os.environ.get(self.CLOSE_HANG_ENV, '0')) if self.CLOSE_HANG_ENV else 0.0
        if hang:
            time.sleep(hang)   # a device that will not let go (second-signal tests)
        self.closed = True
        self._closed()

    def _closing(self) -> None:
        """Run first in close(), before any hang."""

    def _closed(self) -> None:
        """Run last in close(), once released."""
