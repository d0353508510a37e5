"""MiDaS-protocol depth metrics: alignment in inverse-depth space, masking, known values."""
from dpt_ros.depth.accuracy import error_map, frame_metrics, METRIC_KEYS, summarize
from dpt_ros.depth.metric import AlignmentError
import numpy as np
import pytest


def _gt(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return (1.0 + 4.0 * yy / h + 0.5 * np.cos(xx / 5.0) + rng.uniform(0, 0.2, (h, w))
            ).astype(np.float32)


def test_affine_related_prediction_is_perfect():
    gt = _gt()
    pred = 7.0 / gt + 3.0          # any positive affine map of inverse depth
    m = frame_metrics(pred, gt)
    assert m.abs_rel == pytest.approx(0.0, abs=1e-6)
    assert m.rmse == pytest.approx(0.0, abs=1e-5)
    assert (m.delta1, m.delta2, m.delta3) == (1.0, 1.0, 1.0)
    assert m.scale == pytest.approx(1 / 7.0, rel=1e-5)
    assert m.shift == pytest.approx(-3.0 / 7.0, rel=1e-5)
    assert m.n_valid == gt.size


def test_against_independent_computation():
    gt = _gt(seed=1)
    rng = np.random.default_rng(1)
    pred = (2.0 / gt + rng.normal(0, 0.15, gt.shape)).astype(np.float32)
    m = frame_metrics(pred, gt, depth_cap=50.0)
    # Independent: numpy's polyfit for the alignment, metrics written out directly.
    s, t = np.polyfit(pred.ravel().astype(float), 1.0 / gt.ravel().astype(float), 1)
    d = 1.0 / np.maximum(s * pred.astype(float) + t, 1 / 50.0)
    g = gt.astype(float)
    assert m.scale == pytest.approx(s, rel=1e-6) and m.shift == pytest.approx(t, abs=1e-6)
    assert m.abs_rel == pytest.approx(np.mean(np.abs(d - g) / g), rel=1e-5)
    assert m.rmse == pytest.approx(np.sqrt(np.mean((d - g) ** 2)), rel=1e-5)
    r = np.maximum(d / g, g / d)
    for k in (1, 2, 3):
        assert getattr(m, f'delta{k}') == pytest.approx(np.mean(r < 1.25 ** k), abs=1e-9)
    assert 0 < m.abs_rel and m.delta1 < 1.0     # the noise is visible


def test_invalid_ground_truth_is_masked():
    gt = _gt(seed=2)
    pred = 5.0 / gt + 1.0
    bad = gt.copy()
    bad[:10] = np.nan
    bad[10:12] = 0.0
    bad[12, :5] = np.inf
    bad[13, :5] = -1.0
    pred_bad = pred.copy()
    pred_bad[:14, :5] = 1e6          # garbage where GT is invalid must not matter
    pred_bad[:10] = -50.0
    m = frame_metrics(pred_bad, bad)
    assert m.n_valid == int((np.isfinite(bad) & (bad > 0)).sum())
    assert m.abs_rel == pytest.approx(0.0, abs=1e-6)
    err = error_map(pred_bad, bad)
    assert np.isnan(err[:12]).all() and np.nanmax(err) < 1e-5


def test_gt_of_another_size_and_no_valid_gt():
    gt = _gt()
    pred = 5.0 / gt + 1.0
    big = np.repeat(np.repeat(gt, 2, axis=0), 2, axis=1)
    assert frame_metrics(pred, big).abs_rel == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(AlignmentError):
        frame_metrics(pred, np.full_like(gt, np.nan))


def test_depth_cap_bounds_far_predictions():
    gt = np.array([[1.0, 2.0, 4.0, 8.0]] * 8, np.float32)
    pred = (1.0 / gt).astype(np.float32)
    pred[0, 3] = -10.0                # "beyond infinity" after alignment
    m = frame_metrics(pred, gt, depth_cap=10.0)
    assert np.isfinite(m.rmse) and m.rmse > 0


def test_summarize():
    a = frame_metrics(3.0 / _gt() + 1.0, _gt())
    b = frame_metrics(np.float32(2.0) / _gt(seed=4) ** 1.3, _gt(seed=4))
    s = summarize([a, b])
    assert s['frames'] == 2
    for k in METRIC_KEYS:
        assert s[k] == pytest.approx((getattr(a, k) + getattr(b, k)) / 2)
    assert s['scale_min'] <= s['scale'] <= s['scale_max']
    empty = summarize([])
    assert empty['frames'] == 0 and np.isnan(empty['abs_rel'])
