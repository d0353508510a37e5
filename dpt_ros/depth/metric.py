"""
Metric depth from DPT's relative inverse depth by an affine fit in inverse-depth space.

DPT predicts relative inverse depth: `pred ≈ (1/Z - t) / s` for an unknown scale `s` and shift
`t` per image. Given metric depth for some pixels (sparse LiDAR projected into the camera, an
RGB-D camera, ground truth), `fit_scale_shift` finds `target_inv ≈ scale * pred_inv + shift` by
least squares; `MetricDepth` turns predictions into REP 118 metres with that fit (a fixed one
from parameters, or one refitted per frame against a reference and smoothed over time);
`CameraMetric` is one camera's: the fit and the references matched to its frames by stamp.

The same fit is the MiDaS evaluation protocol's alignment step, so `depth_metrics` uses it too.
Pure numpy: no rclpy, no torch.
"""
from __future__ import annotations

import logging
import threading
from typing import NamedTuple

from dpt_ros.errors import AlignmentError
import numpy as np

log = logging.getLogger('dpt_ros.depth.metric')

METRIC_MODES = ('none', 'fixed', 'reference')

# Fewer valid pairs than this and a 2-parameter fit is not worth trusting.
MIN_POINTS = 16
# Residuals beyond this many robust standard deviations are outliers.
OUTLIER_SIGMAS = 3.0
# Cap on the pairs used per fit: a 640x480 dense reference has 300k; 100k fit as well and
# keep the per-frame cost a few milliseconds. Subsampling is deterministic (strided).
MAX_FIT_POINTS = 100_000
# Candidate lines tried by the least-median-of-squares start of the robust fit.
_LMEDS_TRIALS = 128
_LMEDS_EVAL_POINTS = 4000


class ScaleShift(NamedTuple):
    """
    Result of `fit_scale_shift`: `target_inv ≈ scale * pred_inv + shift`.

    `residual` is the RMS residual over the inliers in inverse-depth units (1/m when the
    target is metric); `inlier_frac` is the fraction of valid pairs kept.
    """

    scale: float
    shift: float
    residual: float
    inlier_frac: float


class FitResult(NamedTuple):
    """One frame's fit as `MetricDepth.last_fit` reports it."""

    scale: float
    shift: float
    residual: float
    inlier_frac: float
    n_points: int


def _lstsq(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Closed-form 2-parameter least squares on centred data (stable in float64)."""
    mx, my = x.mean(), y.mean()
    dx = x - mx
    var = float(np.dot(dx, dx))
    if var <= 1e-24 * max(1.0, float(np.dot(x, x))):
        raise AlignmentError('degenerate',
                             'the prediction is constant over the valid pixels; '
                             'scale and shift cannot be separated')
    scale = float(np.dot(dx, y - my)) / var
    return scale, float(my - scale * mx)


def _lmeds_start(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """Least-median-of-squares line through random pairs: a start that outliers cannot drag."""
    n = x.size
    i = rng.integers(0, n, _LMEDS_TRIALS)
    j = rng.integers(0, n, _LMEDS_TRIALS)
    dx = x[j] - x[i]
    ok = np.abs(dx) > 1e-12 * (np.abs(x[i]) + np.abs(x[j]) + 1e-30)
    if not ok.any():
        return _lstsq(x, y)
    i, j, dx = i[ok], j[ok], dx[ok]
    scales = (y[j] - y[i]) / dx
    shifts = y[i] - scales * x[i]
    m = min(n, _LMEDS_EVAL_POINTS)
    sel = np.linspace(0, n - 1, m).astype(np.int64)
    res = np.abs(y[sel][None, :] - (scales[:, None] * x[sel][None, :] + shifts[:, None]))
    best = int(np.argmin(np.median(res, axis=1)))
    return float(scales[best]), float(shifts[best])


def valid_pairs(pred_inv: np.ndarray, target_inv: np.ndarray,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flattened float64 (x, y) of the pixels where both are finite and `mask` is set."""
    pred_inv = np.asarray(pred_inv)
    target_inv = np.asarray(target_inv)
    if pred_inv.shape != target_inv.shape:
        raise ValueError(f'prediction {pred_inv.shape} and target {target_inv.shape} differ in '
                         'shape; resize one first (see sample_reference)')
    ok = np.isfinite(pred_inv) & np.isfinite(target_inv)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != ok.shape:
            raise ValueError(f'mask {mask.shape} does not match the prediction {ok.shape}')
        ok &= mask
    return (pred_inv[ok].astype(np.float64, copy=False),
            target_inv[ok].astype(np.float64, copy=False))


def fit_scale_shift(pred_inv: np.ndarray, target_inv: np.ndarray,
                    mask: np.ndarray | None = None, robust: bool = True, *,
                    min_points: int = MIN_POINTS, sigmas: float = OUTLIER_SIGMAS,
                    max_iterations: int = 20, max_points: int = MAX_FIT_POINTS,
                    seed: int = 0) -> ScaleShift:
    """
    Fit `target_inv ≈ scale * pred_inv + shift` over the valid pixels.

    :param pred_inv: predicted relative inverse depth, any shape.
    :param target_inv: metric inverse depth (1/m) of the same shape; NaN/inf = unknown.
    :param mask: optional boolean mask of pixels to use (combined with finiteness).
    :param robust: False = plain least squares (the MiDaS evaluation protocol). True = a
        least-median-of-squares start, then least squares repeated on the pairs whose
        residual is within `sigmas` robust standard deviations until the inlier set stops
        changing (tolerates well over 20 % gross outliers).
    :param min_points: fewer valid pairs than this raise `AlignmentError('too_few_points')`.
    :param max_points: pairs beyond this are subsampled with a fixed stride (deterministic).
    :param seed: seed of the random pair draws of the robust start (deterministic per call).

    :returns: `ScaleShift(scale, shift, residual, inlier_frac)`.

    :raises AlignmentError: too few valid pairs, or a constant prediction.
    :raises ValueError: shapes differ.
    """
    x, y = valid_pairs(pred_inv, target_inv, mask)
    n = x.size
    if n < min_points:
        raise AlignmentError('too_few_points',
                             f'only {n} valid pixel pairs (need at least {min_points})')
    if n > max_points:
        step = int(np.ceil(n / max_points))
        x, y = x[::step], y[::step]
        n = x.size
    if not robust:
        scale, shift = _lstsq(x, y)
        r = y - (scale * x + shift)
        return ScaleShift(scale, shift, float(np.sqrt(np.mean(r * r))), 1.0)

    scale, shift = _lmeds_start(x, y, np.random.default_rng(seed))
    # Residuals at float rounding level count as exact: without this floor a perfect fit has
    # sigma 0 and rounding noise would be called outliers.
    floor = 1e-9 * float(np.median(np.abs(y))) + 1e-15
    inliers = None
    for _ in range(max_iterations):
        r = np.abs(y - (scale * x + shift))
        # Robust sigma from the median absolute residual (the LMedS scale estimate).
        sigma = 1.4826 * (1.0 + 5.0 / max(n - 2, 1)) * float(np.median(r))
        new = r <= max(sigmas * sigma, floor)
        if new.sum() < min_points:
            raise AlignmentError('too_few_points',
                                 f'only {int(new.sum())} of {n} pairs agree with any line')
        if inliers is not None and np.array_equal(new, inliers):
            break
        inliers = new
        scale, shift = _lstsq(x[inliers], y[inliers])
    r = y[inliers] - (scale * x[inliers] + shift)
    return ScaleShift(scale, shift, float(np.sqrt(np.mean(r * r))),
                      float(inliers.sum()) / float(n))


def invalid_to_nan(depth: np.ndarray) -> np.ndarray:
    """float32 copy of a depth image with 0, negative and non-finite values set to NaN."""
    d = np.array(depth, dtype=np.float32, copy=True)
    d[~(np.isfinite(d) & (d > 0))] = np.nan
    return d


def resize_nearest(depth: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a depth image (never blends valid and NaN pixels)."""
    depth = np.asarray(depth)
    h, w = depth.shape[:2]
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if (h, w) == (oh, ow):
        return depth
    # Pixel-centre mapping, the same convention as cv2.INTER_NEAREST_EXACT.
    rows = np.minimum(((np.arange(oh) + 0.5) * h / oh).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(ow) + 0.5) * w / ow).astype(np.int64), w - 1)
    return depth[rows[:, None], cols[None, :]]


def sample_reference(pred_inv: np.ndarray,
                     ref_depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Pair each valid reference pixel with the prediction pixel nearest its centre.

    Returns float64 `(pred_values, ref_depth_values)` over the valid (finite, > 0) reference
    pixels. When the sizes match this is a plain masked lookup; when they differ the reference
    is mapped onto the prediction grid point by point, so a sparse reference (projected LiDAR)
    keeps every point instead of losing most of them to a nearest-neighbour downsample.
    """
    pred_inv = np.asarray(pred_inv)
    ref = np.asarray(ref_depth_m)
    if pred_inv.ndim != 2 or ref.ndim != 2:
        raise ValueError(f'expected 2-D images, got prediction {pred_inv.shape} and '
                         f'reference {ref.shape}')
    ok = np.isfinite(ref) & (ref > 0)
    vs, us = np.nonzero(ok)
    ph, pw = pred_inv.shape
    rh, rw = ref.shape
    if (ph, pw) != (rh, rw):
        vs_p = np.minimum(((vs + 0.5) * ph / rh).astype(np.int64), ph - 1)
        us_p = np.minimum(((us + 0.5) * pw / rw).astype(np.int64), pw - 1)
    else:
        vs_p, us_p = vs, us
    return (pred_inv[vs_p, us_p].astype(np.float64), ref[vs, us].astype(np.float64))


class ReferenceBuffer:
    """
    The last few reference depth messages, matched to frames by header stamp.

    A reference sensor (LiDAR, RGB-D) runs at its own rate, and its message for a frame may
    arrive before or after the frame. Fitting against whatever reference came last would pair
    a frame with a view up to one reference period (or a stalled sensor's minutes) away; on a
    moving robot that fits the wrong scene. `take` returns the reference nearest the frame's
    stamp when it is within `max_dt_ns`, and forgets it and every older one: frames of one
    camera are finished in stamp order, so no later frame is nearer to those, and a reference
    is never fitted twice. Thread-safe: filled by the subscription, read by the publish thread.
    `taken` and `unmatched` count the outcomes of `take` (for diagnostics).
    """

    def __init__(self, capacity: int = 8):
        if capacity < 1:
            raise ValueError(f'capacity must be >= 1, got {capacity}')
        self.capacity = capacity
        self._items: list[tuple[int, object]] = []       # (stamp_ns, item), oldest first
        self._lock = threading.Lock()
        self.taken = 0          # references handed out for a fit
        self.unmatched = 0      # takes whose nearest reference was too far in time

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def add(self, stamp_ns: int, item: object) -> None:
        with self._lock:
            self._items.append((int(stamp_ns), item))
            self._items.sort(key=lambda e: e[0])          # out-of-order arrivals
            del self._items[:-self.capacity]

    def take(self, stamp_ns: int, max_dt_ns: int) -> tuple[object | None, str]:
        """
        Return (reference, '') or (None, why).

        'none' (nothing buffered), 'unmatched' (the nearest is more than `max_dt_ns` away; it stays
        for a later frame).
        """
        with self._lock:
            if not self._items:
                return None, 'none'
            i = min(range(len(self._items)), key=lambda k: abs(self._items[k][0] - stamp_ns))
            if abs(self._items[i][0] - stamp_ns) > max_dt_ns:
                self.unmatched += 1
                return None, 'unmatched'
            item = self._items[i][1]
            del self._items[:i + 1]
            self.taken += 1
            return item, ''


class MetricDepth:
    """
    Relative inverse depth -> metres (REP 118: float32, NaN = invalid).

    Modes:
        none: metric depth is off; `ready` is False.
        fixed: `1 / (scale * pred + shift)` with the given scale and shift.
        reference: scale and shift refitted on every `update_reference` call against metric
            depth from another sensor (robust fit), smoothed over time by an exponential
            moving average (`smoothing` = weight of the previous value; 0 = no smoothing).

    Output depths are clamped to [min_depth, max_depth]; pixels whose aligned inverse depth is
    not positive (beyond infinity) or not finite are NaN.
    """

    def __init__(self, mode: str = 'none', scale: float = 1.0, shift: float = 0.0,
                 min_depth: float = 0.1, max_depth: float = 100.0, smoothing: float = 0.8,
                 min_inlier_frac: float = 0.5, min_points: int = MIN_POINTS):
        if mode not in METRIC_MODES:
            raise ValueError(f'metric mode {mode!r} is not one of {", ".join(METRIC_MODES)}')
        if not (np.isfinite(min_depth) and np.isfinite(max_depth) and 0 < min_depth < max_depth):
            raise ValueError(f'need 0 < min_depth < max_depth, got min_depth={min_depth} '
                             f'max_depth={max_depth}')
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f'smoothing must be in [0, 1), got {smoothing}')
        if not (np.isfinite(scale) and np.isfinite(shift)):
            raise ValueError(f'scale and shift must be finite, got {scale}, {shift}')
        if mode == 'fixed' and scale <= 0:
            raise ValueError(f'fixed metric mode needs scale > 0 (larger prediction = nearer), '
                             f'got {scale}')
        self.mode = mode
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.smoothing = float(smoothing)
        self.min_inlier_frac = float(min_inlier_frac)
        self.min_points = int(min_points)
        self._scale = float(scale)
        self._shift = float(shift)
        self._have_fit = mode == 'fixed'
        self.last_fit: FitResult | None = None
        self.last_error: str | None = None     # reason key of the last rejected fit
        self.fit_count = 0
        self.reject_count = 0

    @property
    def ready(self) -> bool:
        """Return True when `to_metric` can produce metres (fixed mode, or after a good fit)."""
        return self.mode != 'none' and self._have_fit

    @property
    def scale(self) -> float:
        """Scale in use (smoothed in reference mode)."""
        return self._scale

    @property
    def shift(self) -> float:
        """Shift in use (smoothed in reference mode)."""
        return self._shift

    def reset(self) -> None:
        """Forget the reference fit (e.g. after a camera/reference change)."""
        if self.mode == 'reference':
            self._have_fit = False
            self.last_fit = None

    def update_reference(self, pred_inv: np.ndarray, ref_depth_m: np.ndarray) -> FitResult | None:
        """
        Fit this frame's prediction to a metric reference and fold it into the estimate.

        :param pred_inv: (H, W) relative inverse depth (model output, any resolution).
        :param ref_depth_m: (h, w) metres; NaN, 0, negative or out-of-range = unknown. A size
            different from the prediction is mapped by nearest neighbour.

        :returns: The frame's own (unsmoothed) `FitResult`, or None when the fit was rejected (too
        few points, degenerate prediction, too few inliers, non-positive scale); the
        previous estimate is then kept and `last_error` says why.
        """
        if self.mode != 'reference':
            raise RuntimeError(f'update_reference needs metric mode "reference", not '
                               f'"{self.mode}"')
        x, z = sample_reference(pred_inv, ref_depth_m)
        keep = (z >= self.min_depth) & (z <= self.max_depth) & np.isfinite(x)
        x, z = x[keep], z[keep]
        try:
            fit = fit_scale_shift(x, 1.0 / z if z.size else z, robust=True,
                                  min_points=self.min_points)
        except AlignmentError as err:
            return self._reject(err.reason, str(err))
        if fit.scale <= 0:
            return self._reject('negative_scale', f'fitted scale {fit.scale:.4g} is not '
                                'positive: the prediction does not follow the reference')
        if fit.inlier_frac < self.min_inlier_frac:
            return self._reject('few_inliers', f'only {fit.inlier_frac:.0%} of the reference '
                                f'points agree with the fit (need {self.min_inlier_frac:.0%})')
        result = FitResult(fit.scale, fit.shift, fit.residual, fit.inlier_frac, int(x.size))
        if self._have_fit and self.smoothing > 0:
            a = self.smoothing
            self._scale = a * self._scale + (1 - a) * fit.scale
            self._shift = a * self._shift + (1 - a) * fit.shift
        else:
            self._scale, self._shift = fit.scale, fit.shift
        self._have_fit = True
        self.last_fit = result
        self.last_error = None
        self.fit_count += 1
        return result

    def _reject(self, reason: str, message: str) -> None:
        self.last_error = reason
        self.reject_count += 1
        log.debug('reference fit rejected (%s): %s', reason, message)
        return None

    def to_metric(self, pred_inv: np.ndarray) -> np.ndarray:
        """
        (H, W) float32 metres from relative inverse depth; NaN where invalid.

        :raises RuntimeError: mode is 'none', or no reference fit has been accepted yet
            (check `ready` first).
        """
        if not self.ready:
            raise RuntimeError('metric depth is not available: ' + (
                'metric mode is "none"' if self.mode == 'none'
                else 'no reference fit has been accepted yet'))
        inv = self._scale * np.asarray(pred_inv, dtype=np.float32) + np.float32(self._shift)
        with np.errstate(divide='ignore', invalid='ignore'):
            # A non-finite prediction (+inf from an overflowing device run) has no depth: it
            # must come out NaN, not 1/inf = 0 clamped to min_depth (an obstacle at the lens).
            depth = np.where(np.isfinite(inv) & (inv > 0), 1.0 / inv, np.nan).astype(np.float32)
        # NaN stays NaN through clip; +inf (inv subnormal) clamps to max_depth.
        np.clip(depth, self.min_depth, self.max_depth, out=depth)
        return depth


class CameraMetric:
    """
    One camera's metric depth: its `MetricDepth` and the references matched to its frames.

    References are buffered as they come (whatever the caller holds, e.g. a message not yet
    decoded); `reference_for` takes the one matched to a frame's stamp, the caller turns it into
    metres and `apply` fits it (reference mode) and gives the frame's metres. Per frame, after
    the pipeline's finish, in stamp order.
    """

    def __init__(self, metric: MetricDepth, max_dt_s: float, capacity: int = 8):
        self.fit = metric
        self.refs = ReferenceBuffer(capacity)
        self.max_dt_ns = int(max_dt_s * 1e9)

    def add_reference(self, stamp_ns: int, reference: object) -> None:
        """Buffer a reference depth taken at `stamp_ns` (reference mode)."""
        self.refs.add(stamp_ns, reference)

    def reference_for(self, stamp_ns: int) -> object | None:
        """Take the buffered reference matched to the frame at `stamp_ns`, or None."""
        if self.fit.mode != 'reference':
            return None
        reference, _ = self.refs.take(stamp_ns, self.max_dt_ns)
        return reference

    def apply(self, depth: np.ndarray,
              reference_m: np.ndarray | None = None) -> np.ndarray | None:
        """
        Return (H, W) float32 metres for relative inverse `depth`, or None while no fit is ready.

        reference_m: the frame's matched reference in metres, fitted first (reference mode).
        """
        if reference_m is not None:
            self.fit.update_reference(depth, reference_m)
        return self.fit.to_metric(depth) if self.fit.ready else None
