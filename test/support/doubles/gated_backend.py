"""
A stand-in backend whose calls wait at a gate the test opens: "a frame in flight" on demand.

Registered like the other stand-ins
(DPT_ROS_EXTRA_BACKENDS='standin_gated=support.doubles.gated_backend:create_gated'). Every call
after the warm-up appends 'start <n>' to DPT_ROS_STANDIN_EVENTS, then blocks reading one byte
from the FIFO DPT_ROS_STANDIN_GATE until the test writes it.
"""
from __future__ import annotations

import os

from .stand_in_backends import StandInBackend


class GatedBackend(StandInBackend):
    """Each call after the first (the warm-up) waits for one byte on the gate FIFO."""

    def _infer(self, batch, n: int):
        gate = os.environ.get('DPT_ROS_STANDIN_GATE')
        if gate and n > 1:
            with open(gate, 'rb') as f:   # blocks until the test opens it for writing
                f.read(1)
        return super()._infer(batch, n)


def create_gated(opts) -> GatedBackend:
    """Return a stand-in whose calls wait at DPT_ROS_STANDIN_GATE (see the module doc)."""
    return GatedBackend(opts, 'standin_gated')
