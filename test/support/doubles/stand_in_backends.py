"""
Test doubles for the depth backend: stand-ins for timing and fault behaviour only.

They implement the real `DepthBackend` interface with no model, so node tests and the node
benchmark can measure the node itself. Registered in a node subprocess through the documented
mechanism (see dpt_ros/ros/node.py):

    DPT_ROS_EXTRA_BACKENDS='standin_zero=support.doubles.stand_in_backends:create_zero,...'

with `test/` on PYTHONPATH. Behaviour is tuned with environment variables so one registry
name serves several tests:

    DPT_ROS_STANDIN_DELAY_MS   fixed delay per infer call (create_delay; default 40)
    DPT_ROS_STANDIN_FAIL_EVERY create_flaky: every Nth call raises (default 3)
    DPT_ROS_STANDIN_CLOSED_FILE  close() appends a line to this file
    DPT_ROS_STANDIN_CLOSE_HANG_S close() sleeps this long first (a device that hangs)
    DPT_ROS_STANDIN_BUSY_S     create_busy: every call after the warm-up keeps torch busy
                               this long (default 3) in back-to-back matmuls, ignoring any
                               stop request, like a long native inference call
    DPT_ROS_STANDIN_EVENTS     infer appends 'start <n>' / 'end <n>' to this file, so a test
                               can wait for "inside the backend call" as a condition
    DPT_ROS_STANDIN_INPUT      the input format the stand-in names (backends/base.py):
                               'pixels' (default, as the TT backend) or 'normalized' (as
                               torch); it takes both, as those backends do

`max_concurrency` is the requested `dp`, like one traced pipeline per TT chip.
"""
from __future__ import annotations

import os
import time

from dpt_ros.errors import BackendError, BackendUnavailable
import numpy as np

from .backend_base import brightness, DoubleBackend


class StandInBackend(DoubleBackend):
    """Returns a cheap function of the input (so outputs follow the image), optionally late."""

    EVENTS_ENV = 'DPT_ROS_STANDIN_EVENTS'
    CLOSE_HANG_ENV = 'DPT_ROS_STANDIN_CLOSE_HANG_S'

    def __init__(self, opts, name: str, delay_s: float = 0.0, fail_every: int = 0):
        super().__init__(opts, name,
                         input_format=os.environ.get('DPT_ROS_STANDIN_INPUT', 'pixels'))
        self.delay_s = delay_s
        self.fail_every = fail_every

    def _infer(self, batch: np.ndarray, n: int) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_every and n % self.fail_every == 0:
            raise BackendError(f'stand-in fault on call {n} (every {self.fail_every})')
        return brightness(batch)

    def _closed(self) -> None:
        # Tests watch for the release from another process: a marker file says it happened.
        marker = os.environ.get('DPT_ROS_STANDIN_CLOSED_FILE')
        if marker:
            with open(marker, 'a') as f:
                f.write(f'{self.info.name} closed after {self.calls} calls\n')


def create_zero(opts) -> StandInBackend:
    """Zero-cost stand-in: the node's own overhead is all that is measured."""
    return StandInBackend(opts, 'standin_zero')


def create_delay(opts) -> StandInBackend:
    """Fixed-delay stand-in (DPT_ROS_STANDIN_DELAY_MS, default 40 ms), dp calls at once."""
    ms = float(os.environ.get('DPT_ROS_STANDIN_DELAY_MS', '40'))
    return StandInBackend(opts, 'standin_delay', delay_s=ms / 1e3)


def create_flaky(opts) -> StandInBackend:
    """Every Nth call raises BackendError (DPT_ROS_STANDIN_FAIL_EVERY, default 3)."""
    n = int(os.environ.get('DPT_ROS_STANDIN_FAIL_EVERY', '3'))
    return StandInBackend(opts, 'standin_flaky', fail_every=n)


class BusyBackend(StandInBackend):
    """
    Keeps torch busy in native code for `busy_s` per call (after the warm-up call).

    Back-to-back matmuls: each one drops the GIL and takes it back on return, like a real
    torch model does between ops, and nothing checks for a stop request.
    """

    def __init__(self, opts, busy_s: float):
        super().__init__(opts, 'standin_busy')
        self.busy_s = busy_s

    def _infer(self, batch: np.ndarray, n: int) -> np.ndarray:
        if n > 1:
            import torch
            a = torch.randn(256, 256)
            end = time.monotonic() + self.busy_s
            while time.monotonic() < end:
                a = torch.mm(a, a).tanh_()
        return super()._infer(batch, n)


def create_busy(opts) -> StandInBackend:
    """Long non-cooperative native calls (DPT_ROS_STANDIN_BUSY_S, default 3 s)."""
    return BusyBackend(opts, float(os.environ.get('DPT_ROS_STANDIN_BUSY_S', '3')))


def create_failing(opts) -> StandInBackend:
    """Every call raises: a backend that died."""
    return StandInBackend(opts, 'standin_failing', fail_every=1)


def create_unavailable(opts):
    """Cannot start, like tt without a card: the registry falls back to torch cpu."""
    raise BackendUnavailable('stand-in backend is never available (test double)')
