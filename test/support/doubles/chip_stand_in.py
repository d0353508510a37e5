"""
TEST DOUBLE of a traced chip pipeline: a fixed device time per frame, no ttnn, no model.

`StandInChip` has the interface `DataParallel` drives (`tt.executor.ChipPipeline`: prepare,
write, execute, barrier, read, settle, compile, release), so the real rotation, the real
`TtBackend` and the real scheduler run on top of it. Each chip has its own device clock: a
frame executed at t is done at max(t, the chip's previous frame done) + `device_ms`, and
`read` / `barrier` wait on a condition until then (a timed wait standing for device time; the
chips run in parallel, as real chips do). The output is a cheap function of the input (the
first channel), so a test can tell every frame's output from its neighbours'.

`fail_at` makes the chip's n-th execute (1-based) raise, as a chip dropping off the bus would;
every later device step of that chip raises too.

`stand_in_backend(dp, device_ms)` builds the real `TtBackend` over `dp` such chips.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from dpt_ros.errors import BackendError
import numpy as np


class ChipFailure(RuntimeError):
    """The stand-in chip's injected fault."""


def expected_output(frame: np.ndarray) -> np.ndarray:
    """(1,3,S,S) float or (1,S,S,3) uint8 -> the (S,S) output a stand-in chip gives for it."""
    if frame.dtype == np.uint8:
        return frame[0, ..., 0].astype(np.float32)
    return np.asarray(frame[0, 0], dtype=np.float32)


class StandInChip:
    """One chip: `device_ms` per frame on its own clock; optionally fails at one execute."""

    def __init__(self, image_size: int, chip_id: str, device_ms: float = 40.0,
                 fail_at: int = 0, mode: str = 'trace_2cq'):
        self.image_size = int(image_size)
        self.chip_id = chip_id
        self.device_s = device_ms / 1e3
        self.fail_at = int(fail_at)
        self.mode = mode
        self.batch = 1                # frames per device run, as ChipPipeline.batch
        self.trace_bytes = None       # a stand-in captures no trace
        self.frames_run = 0
        self.executes = 0
        self.failed = False
        self.released = False
        self._cond = threading.Condition()
        self._written = None
        self._pending = None          # (output, done at) of the executed frame
        self._busy_until = 0.0

    def compile(self, sample: np.ndarray) -> float:  # noqa: A003 -- ChipPipeline's name
        return 0.0

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        return np.array(frame, copy=True)

    def _check(self) -> None:
        if self.failed:
            raise ChipFailure(f'{self.chip_id}: chip is not responding')

    def write(self, host) -> None:
        self._check()
        if self._written is not None:
            raise BackendError(f'{self.chip_id}: write() twice without execute()')
        self._written = host

    def execute(self) -> None:
        self._check()
        if self._written is None or self._pending is not None:
            raise BackendError(f'{self.chip_id}: execute() out of order')
        self.executes += 1
        if self.executes == self.fail_at:
            self.failed = True
            self._check()
        frame, self._written = self._written, None
        with self._cond:
            start = max(time.monotonic(), self._busy_until)
            self._busy_until = start + self.device_s
            self._pending = (expected_output(frame)[None], self._busy_until)

    def _wait_until(self, t: float) -> None:
        with self._cond:
            while True:
                left = t - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def barrier(self) -> None:
        self._check()
        self._wait_until(self._busy_until)

    def read(self) -> np.ndarray:
        self._check()
        if self._pending is None:
            raise BackendError(f'{self.chip_id}: read() without execute()')
        out, done = self._pending
        self._wait_until(done)
        self._pending = None
        self.frames_run += 1
        return out

    def settle(self) -> None:
        self._check()
        if self._pending is not None:
            self.read()
            self.frames_run -= 1
        if self._written is not None:
            self.execute()
            self.read()
            self.frames_run -= 1

    def release(self) -> None:
        self.released = True


class _Devices:
    """What TtBackend needs of tt.device.TtDevices."""

    def __init__(self, kind: str, dp: int):
        self.kind = kind
        self.ids = [f'{kind}:{i}' for i in range(dp)]
        self.num_command_queues = 2
        self.trace_region_size = 0
        self.dispatch = 'eth'
        self.closed = False

    def grids(self) -> list[str]:
        return ['8x8'] * len(self.ids)

    def close(self) -> None:
        self.closed = True


def stand_in_backend(dp: int, device_ms: float = 40.0, *, image_size: int = 384,
                     fail_at: dict | None = None, device: str = 'wormhole_t3000'):
    """Return the real TtBackend over `dp` stand-in chips; fail_at: chip index -> execute no."""
    from dpt_ros.backends import BackendOptions
    from dpt_ros.backends.tt_backend import TtBackend
    from dpt_ros.tt.executor import DataParallel
    from dpt_ros.tt.fallbacks import FallbackCounter
    devices = _Devices(device, dp)
    chips = [StandInChip(image_size, cid, device_ms, (fail_at or {}).get(i, 0))
             for i, cid in enumerate(devices.ids)]
    model = SimpleNamespace(input_format='pixels', dtype_name='stand-in (no model)')
    loaded = SimpleNamespace(config=None, config_name='stand-in', weights='none (stand-in)',
                             is_random=False)
    opts = BackendOptions(weights='none', image_size=image_size, device=device, dp=dp,
                          execution_mode='trace_2cq')
    return TtBackend(opts, devices, DataParallel(chips), [model] * dp, loaded,
                     FallbackCounter(strict=False), 0.0)
