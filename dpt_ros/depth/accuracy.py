"""
Depth accuracy against ground truth, the MiDaS evaluation protocol.

DPT predicts relative inverse depth, so before any metric is computed each frame's prediction
is aligned to the ground truth by least squares in inverse-depth space (scale and shift, over
the valid ground-truth pixels), turned into depth, and capped at `depth_cap`. Then, over the
valid pixels:

    AbsRel = mean(|d - d*| / d*)          RMSE = sqrt(mean((d - d*)^2))   (metres)
    delta_k = fraction with max(d / d*, d* / d) < 1.25^k,  k = 1, 2, 3

Ground truth that is NaN, inf, 0 or negative is masked. The fitted scale and shift are
reported with every frame. Pure numpy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import math

from dpt_ros.depth.metric import AlignmentError, fit_scale_shift, resize_nearest
import numpy as np

METRIC_KEYS = ('abs_rel', 'rmse', 'delta1', 'delta2', 'delta3')


@dataclass
class FrameDepthMetrics:
    """One frame's accuracy figures and the alignment that produced them."""

    abs_rel: float
    rmse: float
    delta1: float
    delta2: float
    delta3: float
    scale: float          # target 1/m = scale * prediction + shift
    shift: float
    fit_residual: float   # RMS residual of the fit, 1/m
    n_valid: int          # ground-truth pixels used

    def as_dict(self) -> dict:
        """Plain floats for JSON."""
        return asdict(self)


def align_to_depth(pred_inv: np.ndarray, gt_depth_m: np.ndarray,
                   depth_cap: float | None = None, robust: bool = False):
    """
    Align a relative inverse-depth prediction to metric ground truth.

    Returns `(depth_m (H, W) float32, ScaleShift, valid mask)`.

    The ground truth is resized (nearest) to the prediction when sizes differ. `depth_cap`
    bounds the aligned depth from above (default: the largest valid ground-truth depth), which
    also catches non-positive aligned inverse depths, as the MiDaS protocol does.

    :raises AlignmentError: too few valid ground-truth pixels or a constant prediction.
    """
    pred = np.asarray(pred_inv, dtype=np.float32)
    gt = resize_nearest(np.asarray(gt_depth_m, dtype=np.float32), pred.shape[:2])
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    if not valid.any():
        raise AlignmentError('too_few_points', 'the ground truth has no valid pixels')
    with np.errstate(divide='ignore'):
        target = np.where(valid, 1.0 / gt, np.nan)
    fit = fit_scale_shift(pred, target, valid, robust=robust)
    cap = float(np.max(gt[valid])) if depth_cap is None else float(depth_cap)
    aligned = fit.scale * pred.astype(np.float64) + fit.shift
    # Below 1/cap (including <= 0: beyond infinity) the prediction is farther than the cap.
    aligned = np.maximum(aligned, 1.0 / cap)
    return (1.0 / aligned).astype(np.float32), fit, valid


def frame_metrics(pred_inv: np.ndarray, gt_depth_m: np.ndarray,
                  depth_cap: float | None = None, robust: bool = False) -> FrameDepthMetrics:
    """
    AbsRel, RMSE and delta accuracies of one frame after scale-and-shift alignment.

    :raises AlignmentError: the frame cannot be aligned (no/too few valid ground-truth pixels).
    """
    depth, fit, valid = align_to_depth(pred_inv, gt_depth_m, depth_cap, robust)
    gt = resize_nearest(np.asarray(gt_depth_m, dtype=np.float32), depth.shape)
    d = depth[valid].astype(np.float64)
    g = gt[valid].astype(np.float64)
    ratio = np.maximum(d / g, g / d)
    return FrameDepthMetrics(
        abs_rel=float(np.mean(np.abs(d - g) / g)),
        rmse=float(np.sqrt(np.mean((d - g) ** 2))),
        delta1=float(np.mean(ratio < 1.25)),
        delta2=float(np.mean(ratio < 1.25 ** 2)),
        delta3=float(np.mean(ratio < 1.25 ** 3)),
        scale=fit.scale, shift=fit.shift, fit_residual=fit.residual, n_valid=int(valid.sum()))


def error_map(pred_inv: np.ndarray, gt_depth_m: np.ndarray,
              depth_cap: float | None = None) -> np.ndarray:
    """
    Per-pixel absolute relative error |d - d*| / d* after alignment.

    NaN where GT is invalid (for the report's error panel).
    """
    depth, _, valid = align_to_depth(pred_inv, gt_depth_m, depth_cap)
    gt = resize_nearest(np.asarray(gt_depth_m, dtype=np.float32), depth.shape)
    err = np.full(depth.shape, np.nan, np.float32)
    err[valid] = np.abs(depth[valid] - gt[valid]) / gt[valid]
    return err


def summarize(frames: list[FrameDepthMetrics]) -> dict:
    """
    Return the mean of each metric over frames (the usual dataset figure).

    Plus the frame count and the mean/min/max fitted scale. Empty input -> every value NaN
    and frames 0.
    """
    out: dict = {'frames': len(frames)}
    for k in METRIC_KEYS + ('scale', 'shift', 'fit_residual'):
        vals = [getattr(f, k) for f in frames]
        out[k] = float(np.mean(vals)) if vals else math.nan
    scales = [f.scale for f in frames]
    out['scale_min'] = float(np.min(scales)) if scales else math.nan
    out['scale_max'] = float(np.max(scales)) if scales else math.nan
    return out
