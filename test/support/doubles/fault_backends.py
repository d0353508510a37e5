"""
Test doubles for the reliability suite: depth backends that misbehave on purpose.

They derive from `backend_base.DoubleBackend` (no model; output = brightness, like
stand_in_backends) and exist only because a backend fault cannot be produced on demand with a
real device. They are registered in a node subprocess through the node's documented mechanism:

    DPT_ROS_EXTRA_BACKENDS='fault_ctl=support.doubles.fault_backends:create_controlled,...'
    (see FAULTS)

with `test/` on PYTHONPATH. Behaviour comes from environment variables:

    DPT_ROS_FAULT_DELAY_MS      simulated inference time per call (default 0)
    DPT_ROS_FAULT_EVERY         create_every_nth: every Nth call raises (default 3)
    DPT_ROS_FAULT_DIE_AFTER     create_dying: calls after this many raise forever (default 3)
    DPT_ROS_FAULT_CONTROL       create_controlled: a file read at every call, one word:
                                  ok | raise | hang <seconds> | die | nan | shape
                                (die is permanent: later calls raise whatever the file says;
                                nan returns an all-NaN map, shape one of the wrong size)
    DPT_ROS_FAULT_EVENTS        every call appends 'start <n>' / 'end <n>' and close() appends
                                'closing <n>' / 'closed <n>' (n = calls so far) to this file,
                                so a test can wait for "inference in progress" or "backend
                                released" as conditions
    DPT_ROS_FAULT_CLOSE_HANG_S  close() takes this long (a device that will not let go)
    DPT_ROS_FAULT_EXIT_PROBE    at interpreter exit, write the Python threads still alive and
                                the OS thread count of the process to this file as JSON (the
                                orphan-thread check of the shutdown tests)

Call 1 is the node's warm-up frame; the faults above count it like any other call.
"""
from __future__ import annotations

import atexit
import json
import os
import threading
import time

from dpt_ros.errors import BackendError
import numpy as np

from .backend_base import brightness, DoubleBackend

FAULTS = ','.join(f'fault_{n}=support.doubles.fault_backends:create_{f}' for n, f in (
    ('ok', 'ok'), ('every', 'every_nth'), ('dying', 'dying'), ('ctl', 'controlled')))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class FaultBackend(DoubleBackend):
    """A DepthBackend double whose calls are slow, raise, hang or die as configured."""

    MODEL_NAME = 'fault double (no model)'
    EVENTS_ENV = 'DPT_ROS_FAULT_EVENTS'
    CLOSE_HANG_ENV = 'DPT_ROS_FAULT_CLOSE_HANG_S'

    def __init__(self, opts, name: str, *, every: int = 0, die_after: int = 0,
                 control: str | None = None):
        super().__init__(opts, name)
        self.delay_s = _env_float('DPT_ROS_FAULT_DELAY_MS', 0.0) / 1e3
        self.every = every
        self.die_after = die_after
        self.control = control
        self.dead = False
        probe = os.environ.get('DPT_ROS_FAULT_EXIT_PROBE')
        if probe:
            atexit.register(_write_exit_probe, probe)

    def _mode(self) -> tuple[str, float]:
        if not self.control:
            return 'ok', 0.0
        try:
            with open(self.control) as f:
                words = f.read().split()
        except OSError:
            return 'ok', 0.0
        if not words:
            return 'ok', 0.0
        return words[0], float(words[1]) if len(words) > 1 else 0.0

    def _infer(self, batch: np.ndarray, n: int) -> np.ndarray:
        mode, arg = self._mode()
        if mode == 'die' or (self.die_after and n > self.die_after):
            self.dead = True
        if self.dead:
            raise BackendError(f'device lost (fault double died permanently; call {n})')
        if mode == 'raise':
            raise BackendError(f'fault double raised on call {n} (control file)')
        if mode == 'hang':
            time.sleep(arg)   # the "device" does not answer for `arg` seconds
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.every and n % self.every == 0:
            raise BackendError(f'fault double raised on call {n} (every {self.every})')
        out = brightness(np.asarray(batch))
        if mode == 'nan':
            out[:] = np.nan
        elif mode == 'shape':
            out = out[:, 1:, :]
        return out

    def _closing(self) -> None:
        self._event(f'closing {self.calls}')

    def _closed(self) -> None:
        self._event(f'closed {self.calls}')


def _write_exit_probe(path: str) -> None:
    # Runs after main() returned: anything still alive here was left behind by the node.
    alive = [t.name for t in threading.enumerate()
             if t is not threading.main_thread() and t.is_alive()]
    try:
        os_threads = len(os.listdir('/proc/self/task'))
    except OSError:
        os_threads = -1
    with open(path, 'w') as f:
        json.dump({'python_threads': alive, 'os_threads': os_threads,
                   'time': time.time()}, f)


def create_ok(opts) -> FaultBackend:
    """No fault at all (DPT_ROS_FAULT_DELAY_MS still applies): load and soak runs."""
    return FaultBackend(opts, 'fault_ok')


def create_every_nth(opts) -> FaultBackend:
    """Every Nth call raises BackendError (DPT_ROS_FAULT_EVERY, default 3)."""
    every = int(os.environ.get('DPT_ROS_FAULT_EVERY', '3'))
    return FaultBackend(opts, 'fault_every', every=every)


def create_dying(opts) -> FaultBackend:
    """Works for DPT_ROS_FAULT_DIE_AFTER calls (default 3), then raises on every call."""
    return FaultBackend(opts, 'fault_dying',
                        die_after=int(os.environ.get('DPT_ROS_FAULT_DIE_AFTER', '3')))


def create_controlled(opts) -> FaultBackend:
    """Behaviour switched by the test through the DPT_ROS_FAULT_CONTROL file."""
    control = os.environ.get('DPT_ROS_FAULT_CONTROL')
    if not control:
        raise BackendError('fault_ctl needs DPT_ROS_FAULT_CONTROL (test double)')
    return FaultBackend(opts, 'fault_ctl', control=control)
