"""Depth map -> false-colour BGR image for people (RViz, PNG dumps).

Normalisation is robust by default: the `low`/`high` percentiles of the finite values map to
the ends of the colormap, so a few outliers do not wash the image out. With `norm='fixed'`,
`low`/`high` are values in the depth map's own units. Non-finite pixels are drawn black.
Values follow DPT's convention (relative inverse depth: larger = nearer = hot end of 'turbo').
"""
from __future__ import annotations

import cv2
import numpy as np

# Names accepted by the `colormap` parameter -> OpenCV ids. 'turbo' is perceptually ordered
# and readable by most colour-blind viewers; 'gray' gives the reference's plain output.
COLORMAPS = {
    'turbo': cv2.COLORMAP_TURBO,
    'inferno': cv2.COLORMAP_INFERNO,
    'magma': cv2.COLORMAP_MAGMA,
    'plasma': cv2.COLORMAP_PLASMA,
    'viridis': cv2.COLORMAP_VIRIDIS,
    'cividis': cv2.COLORMAP_CIVIDIS,
    'jet': cv2.COLORMAP_JET,
    'bone': cv2.COLORMAP_BONE,
    'gray': None,
}
DEFAULT_COLORMAP = 'turbo'
NORM_MODES = ('percentile', 'fixed')
# Percentiles over at most this many samples: exact enough, and fast on 12-MP frames.
_PERCENTILE_SAMPLES = 1 << 15


def validate(colormap: str, norm: str, low: float, high: float) -> None:
    """Raise ValueError with the valid choices when a colourisation setting is wrong."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap '{colormap}'; choose one of: "
                         f"{', '.join(COLORMAPS)}")
    if norm not in NORM_MODES:
        raise ValueError(f"unknown norm '{norm}'; choose one of: {', '.join(NORM_MODES)}")
    try:
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        raise ValueError(f'norm low/high must be numbers, got {low!r}, {high!r}') from None
    if not (np.isfinite(low) and np.isfinite(high)) or not low < high:
        raise ValueError(f'norm low must be < high (finite), got low={low}, high={high}')
    if norm == 'percentile' and not (0.0 <= low and high <= 100.0):
        raise ValueError(f'percentile bounds must lie in [0, 100], got {low}, {high}')


def value_range(depth: np.ndarray, norm: str = 'percentile', low: float = 2.0,
                high: float = 98.0) -> tuple[float, float]:
    """The (vmin, vmax) that map to the colormap's ends; NaN, NaN when nothing is finite."""
    if norm == 'fixed':
        return float(low), float(high)
    flat = depth.ravel()
    if flat.size > _PERCENTILE_SAMPLES:
        # A strided sample (before the finite filter, so no full-size mask copy) gives the
        # range to well under a colormap step at a fraction of a full sort's cost.
        flat = flat[::flat.size // _PERCENTILE_SAMPLES]
    finite = flat[np.isfinite(flat)]
    if finite.size == 0:
        if flat.size < depth.size and np.isfinite(depth).any():
            finite = depth[np.isfinite(depth)]
        else:
            return float('nan'), float('nan')
    vmin, vmax = np.percentile(finite, [low, high])
    return float(vmin), float(vmax)


def colorize(depth: np.ndarray, colormap: str = DEFAULT_COLORMAP, norm: str = 'percentile',
             low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 BGR. Non-finite pixels are black."""
    validate(colormap, norm, low, high)
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f'expected a non-empty (H, W) depth map, got shape {depth.shape}')
    depth = depth.astype(np.float32, copy=False)
    vmin, vmax = value_range(depth, norm, low, high)
    if not np.isfinite(vmin):
        return np.zeros(depth.shape + (3,), np.uint8)
    span = vmax - vmin
    # A flat map (or a degenerate fixed range) draws mid-scale rather than dividing by zero.
    scale = 255.0 / span if span > 0 else 0.0
    offset = -vmin * scale if span > 0 else 127.5
    # Clip first: convertScaleAbs takes |x|, so values below vmin must not go negative.
    # NaN survives the clip and saturates to 0; those pixels are blacked out below.
    lo, hi = (vmin, vmax) if span > 0 else (-np.inf, np.inf)
    u8 = cv2.convertScaleAbs(np.clip(depth, lo, hi), alpha=scale, beta=offset)
    if COLORMAPS[colormap] is None:
        bgr = cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)
    else:
        bgr = cv2.applyColorMap(u8, COLORMAPS[colormap])
    valid = np.isfinite(depth)
    if not valid.all():
        bgr[~valid] = 0
    return bgr
