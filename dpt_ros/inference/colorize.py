"""
Depth map -> false-colour BGR image for people (RViz, PNG dumps).

Normalisation is robust by default: the `low`/`high` percentiles of the finite values map to
the ends of the colormap, so a few outliers do not wash the image out. With `norm='fixed'`,
`low`/`high` are values in the depth map's own units. Non-finite pixels are drawn black.
Values follow DPT's convention (relative inverse depth: larger = nearer = hot end of 'turbo').
"""
from __future__ import annotations

import functools

import cv2
from dpt_ros.errors import check_out_array
from dpt_ros.inference import jit
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
# Percentiles over at most this many samples (a strided sample): the estimate of the 2nd
# percentile moves by about 0.15 percentile points (one standard error), far below one of the
# colormap's 256 steps, and sorting them costs ~0.05 ms whatever the frame size.
PERCENTILE_SAMPLES = 1 << 13


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
    problem = range_problem(norm, low, high)
    if problem:
        raise ValueError(problem)


def range_problem(norm: str, low: float, high: float, names=('norm_low', 'norm_high')):
    """Say why (low, high) is not a valid range for this norm, naming them; None when valid."""
    lo, hi = names
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"'{lo}' ({low}) and '{hi}' ({high}) must be finite"
    if not low < high:
        return f"parameters '{lo}' ({low}) and '{hi}' ({high}): {lo} must be below {hi}"
    if norm == 'percentile' and not (0.0 <= low and high <= 100.0):
        return (f"parameters '{lo}'/'{hi}' ({low}, {high}) are percentiles in norm "
                "'percentile' and must lie in [0, 100]")
    return None


def value_range(depth: np.ndarray, norm: str = 'percentile', low: float = 2.0,
                high: float = 98.0) -> tuple[float, float]:
    """Return the (vmin, vmax) that map to the colormap's ends; NaN, NaN when nothing is finite."""
    if norm == 'fixed':
        return float(low), float(high)
    flat = depth.ravel()
    if flat.size > PERCENTILE_SAMPLES:
        # A strided sample (before the finite filter, so no full-size mask copy) gives the
        # range to well under a colormap step at a fraction of a full sort's cost.
        flat = flat[::flat.size // PERCENTILE_SAMPLES]
    finite = flat[np.isfinite(flat)]
    if finite.size == 0:
        if flat.size < depth.size and np.isfinite(depth).any():
            finite = depth[np.isfinite(depth)]
        else:
            return float('nan'), float('nan')
    # numpy's vectorised sort beats np.percentile's partition here (~0.1 vs ~0.4 ms for 32k
    # samples); the interpolation below is np.percentile's default ('linear').
    ordered = np.sort(finite)
    return _linear_percentile(ordered, low), _linear_percentile(ordered, high)


def _linear_percentile(ordered: np.ndarray, q: float) -> float:
    """q-th percentile (0..100) of a sorted 1-D array, linear between closest ranks."""
    pos = q / 100.0 * (ordered.size - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, ordered.size - 1)
    a, b = float(ordered[lo]), float(ordered[hi])
    return a + (b - a) * (pos - lo)


def colorize(depth: np.ndarray, colormap: str = DEFAULT_COLORMAP, norm: str = 'percentile',
             low: float = 2.0, high: float = 98.0, out: np.ndarray | None = None) -> np.ndarray:
    """
    (H, W) depth -> (H, W, 3) uint8 BGR. Non-finite pixels are black.

    out: an (H, W, 3) uint8 C-contiguous array to draw into (returned), e.g. the buffer of the
    message that will carry it; a new array when None.
    """
    validate(colormap, norm, low, high)
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f'expected a non-empty (H, W) depth map, got shape {depth.shape}')
    if out is not None:
        check_out_array(out, depth.shape + (3,), np.uint8)
    depth = depth.astype(np.float32, copy=False)
    vmin, vmax = value_range(depth, norm, low, high)
    if not np.isfinite(vmin):
        if out is None:
            return np.zeros(depth.shape + (3,), np.uint8)
        out.fill(0)
        return out
    span = vmax - vmin
    # A flat map (or a degenerate fixed range) draws mid-scale rather than dividing by zero.
    scale = 255.0 / span if span > 0 else 0.0
    offset = -vmin * scale if span > 0 else 127.5
    if jit.available():
        bgr = np.empty(depth.shape + (3,), np.uint8) if out is None else out
        # One pass (range, round, colour, black where non-finite) instead of five.
        _colorize_kernel(np.ascontiguousarray(depth), float(vmin) if span > 0 else -np.inf,
                         float(scale), float(offset), _bgr_table(colormap), bgr)
        return bgr
    # Clip to [vmin, vmax] first: convertScaleAbs takes |x|, so values below vmin must not
    # go negative, and a huge value (1e30) would overflow its rounding to 0 (black). NaN
    # pixels are blacked out below, whatever min/max made of them.
    src = cv2.min(cv2.max(depth, float(vmin)), float(vmax)) if span > 0 else depth
    u8 = cv2.convertScaleAbs(src, alpha=scale, beta=offset)
    if COLORMAPS[colormap] is None:
        bgr = cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)
    else:
        bgr = cv2.applyColorMap(u8, COLORMAPS[colormap])
    valid = np.isfinite(depth)
    if not valid.all():
        bgr[~valid] = 0
    if out is None:
        return bgr
    np.copyto(out, bgr)
    return out


@functools.lru_cache(maxsize=None)
def _bgr_table(colormap: str) -> np.ndarray:
    """
    (257, 3) uint8.

    The BGR colour OpenCV draws for each level of `colormap`, then black (row 256, for non-finite
    pixels).
    """
    levels = np.arange(256, dtype=np.uint8).reshape(1, 256)
    table = np.zeros((257, 3), np.uint8)
    if COLORMAPS[colormap] is None:
        table[:256] = np.repeat(levels.reshape(256, 1), 3, axis=1)
    else:
        table[:256] = cv2.applyColorMap(levels, COLORMAPS[colormap])[0]
    return table


@jit.kernel
def _colorize_kernel(depth, lo, scale, offset, table, out):
    """
    Compute out = table[level].

    Level = round(max(d, lo) * scale + offset) clipped to 0..255 (half to even, as OpenCV's
    convertScaleAbs), 256 (black) where d is not finite.

    Two loops: the first is branch-free float arithmetic the compiler vectorises, the
    second a plain table lookup.
    """
    n = depth.size
    flat = depth.reshape(n)
    dst = out.reshape(n, 3)
    level = np.empty(n, np.int32)
    lo32, scale32, offset32 = np.float32(lo), np.float32(scale), np.float32(offset)
    for k in range(n):
        d = flat[k]
        v = np.rint(max(d, lo32) * scale32 + offset32)
        v = min(max(v, np.float32(0.0)), np.float32(255.0))
        level[k] = np.int32(v) if np.isfinite(d) else 256
    for k in range(n):
        i = level[k]
        dst[k, 0] = table[i, 0]
        dst[k, 1] = table[i, 1]
        dst[k, 2] = table[i, 2]
