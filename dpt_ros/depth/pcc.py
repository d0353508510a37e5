"""
Numerical comparison metrics shared by tests, eval_pcc, the TT PCC checks and bag evaluation.

Pure numpy. The one place the Pearson correlation coefficient (PCC) is defined, so every
report in the project means the same number.
"""
from __future__ import annotations

import math

import numpy as np


def pcc(a, b) -> float:
    """
    Pearson correlation of two arrays of the same size, computed in float64.

    Non-finite values (NaN, inf) in either array drop that element pair. Conventions for the
    degenerate cases, chosen so a broken output never passes a `pcc >= x` check by accident:
    both arrays constant and equal -> 1.0; otherwise a constant array -> 0.0; no finite pairs
    -> NaN. Inputs may be numpy arrays, torch tensors (moved to CPU) or anything
    `np.asarray` accepts.
    """
    x = _as_f64(a).ravel()
    y = _as_f64(b).ravel()
    if x.size != y.size:
        raise ValueError(f'pcc: size mismatch {x.size} vs {y.size} '
                         f'(shapes {np.shape(a)} and {np.shape(b)})')
    keep = np.isfinite(x) & np.isfinite(y)
    x = x[keep]
    y = y[keep]
    if x.size == 0:
        return float('nan')
    xc = x - x.mean()
    yc = y - y.mean()
    sx = math.sqrt(float(np.dot(xc, xc)))
    sy = math.sqrt(float(np.dot(yc, yc)))
    # Relative tolerance: values that only differ by float rounding count as constant.
    tol_x = 1e-12 * max(1.0, float(np.abs(x).max())) * math.sqrt(x.size)
    tol_y = 1e-12 * max(1.0, float(np.abs(y).max())) * math.sqrt(y.size)
    const_x = sx <= tol_x
    const_y = sy <= tol_y
    if const_x or const_y:
        return 1.0 if (const_x and const_y and np.allclose(x, y)) else 0.0
    r = float(np.dot(xc, yc)) / (sx * sy)
    return max(-1.0, min(1.0, r))


def _as_f64(a) -> np.ndarray:
    if hasattr(a, 'detach'):   # torch tensor, without importing torch here
        a = a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def max_abs_diff(a, b) -> float:
    """Largest absolute element difference (float64), NaN-safe like `pcc`."""
    x = _as_f64(a).ravel()
    y = _as_f64(b).ravel()
    if x.size != y.size:
        raise ValueError(f'max_abs_diff: size mismatch {x.size} vs {y.size}')
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        return float('nan')
    return float(np.abs(x[keep] - y[keep]).max())
