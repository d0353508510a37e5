"""
Test double for the metric-depth node tests: a backend whose output has invalid pixels.

A real DPT never returns NaN or inf, but an overflowing low-precision device run can; the
metric output must then say "invalid" (NaN), not a distance. This stand-in returns the same
brightness-as-inverse-depth as `stand_in_backends.StandInBackend`, with a NaN block and a +inf
block at fixed places of the S x S output. Registered in a node subprocess with

    DPT_ROS_EXTRA_BACKENDS='...,standin_holes=support.doubles.metric_stand_ins:create_holes'
"""
from __future__ import annotations

import numpy as np

from .stand_in_backends import StandInBackend

# Blocks as fractions of the S x S output (rows, cols), so any image_size works.
NAN_BLOCK = ((0.05, 0.20), (0.05, 0.20))
POSINF_BLOCK = ((0.60, 0.85), (0.65, 0.90))


def _block(s: int, frac) -> tuple[slice, slice]:
    (r0, r1), (c0, c1) = frac
    return slice(int(r0 * s), int(r1 * s)), slice(int(c0 * s), int(c1 * s))


class HolesBackend(StandInBackend):
    """Brightness as inverse depth, with NaN and +inf blocks (non-finite model output)."""

    def _infer(self, batch: np.ndarray, n: int) -> np.ndarray:
        out = super()._infer(batch, n)
        s = out.shape[-1]
        out[(slice(None),) + _block(s, NAN_BLOCK)] = np.nan
        out[(slice(None),) + _block(s, POSINF_BLOCK)] = np.inf
        return out


def create_holes(opts) -> HolesBackend:
    """Stand-in whose raw output holds NaN and +inf pixels."""
    return HolesBackend(opts, 'standin_holes')
