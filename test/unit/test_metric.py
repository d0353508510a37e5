"""Affine alignment in inverse-depth space and the MetricDepth modes (pure numpy)."""
from dpt_ros.depth.metric import (AlignmentError, CameraMetric, fit_scale_shift, MetricDepth,
                                  ReferenceBuffer, resize_nearest, sample_reference)
import numpy as np
import pytest

SCALE, SHIFT = 0.037, 0.12


def _scene(h=120, w=160, seed=1):
    """Return a synthetic relative inverse-depth map and the metric depth it stands for."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pred = 5.0 + 20.0 * yy / h + 3.0 * np.sin(xx / 9.0) + rng.uniform(0, 2, (h, w))
    depth = 1.0 / (SCALE * pred + SHIFT)
    return pred.astype(np.float32), depth.astype(np.float64)


@pytest.mark.parametrize('robust', [False, True])
def test_exact_recovery_on_clean_data(robust):
    pred, depth = _scene()
    fit = fit_scale_shift(pred, 1.0 / depth, robust=robust)
    assert fit.scale == pytest.approx(SCALE, rel=1e-6)
    assert fit.shift == pytest.approx(SHIFT, rel=1e-6)
    assert fit.residual < 1e-6
    assert fit.inlier_frac == 1.0


def test_robust_fit_tolerates_20_percent_outliers():
    pred, depth = _scene()
    target = 1.0 / depth
    rng = np.random.default_rng(7)
    bad = rng.random(target.shape) < 0.2
    # Gross outliers on both sides: reflections read far too near, dropouts far too far.
    target[bad] = rng.uniform(0.0, 3.0 * target.max(), bad.sum())
    robust = fit_scale_shift(pred, target, robust=True)
    plain = fit_scale_shift(pred, target, robust=False)
    assert robust.scale == pytest.approx(SCALE, rel=1e-6)
    assert robust.shift == pytest.approx(SHIFT, rel=1e-5)
    assert robust.inlier_frac == pytest.approx(1.0 - bad.mean(), abs=0.01)
    # The plain fit is visibly dragged: proves the outliers were strong enough to matter.
    assert abs(plain.scale - SCALE) / SCALE > 0.05


def test_robust_fit_with_noise_and_outliers():
    pred, depth = _scene(seed=3)
    rng = np.random.default_rng(3)
    target = 1.0 / depth * (1.0 + rng.normal(0, 0.01, depth.shape))
    bad = rng.random(target.shape) < 0.2
    target[bad] *= rng.choice([0.2, 5.0], bad.sum())
    fit = fit_scale_shift(pred, target, robust=True)
    assert fit.scale == pytest.approx(SCALE, rel=0.02)
    assert fit.shift == pytest.approx(SHIFT, abs=0.02)
    assert 0.7 < fit.inlier_frac < 0.85


def test_mask_and_nan_are_ignored():
    pred, depth = _scene()
    target = 1.0 / depth
    target[:, :40] = 999.0          # masked out below
    target[5:9, 50:60] = np.nan     # unknown
    mask = np.ones(target.shape, bool)
    mask[:, :40] = False
    fit = fit_scale_shift(pred, target, mask, robust=False)
    assert fit.scale == pytest.approx(SCALE, rel=1e-6)
    assert fit.shift == pytest.approx(SHIFT, rel=1e-6)


def test_too_few_points_and_degenerate():
    pred, depth = _scene()
    target = np.full(depth.shape, np.nan)
    target[0, :5] = 1.0 / depth[0, :5]
    with pytest.raises(AlignmentError) as e:
        fit_scale_shift(pred, target)
    assert e.value.reason == 'too_few_points'
    with pytest.raises(AlignmentError) as e:
        fit_scale_shift(np.ones_like(pred), 1.0 / depth, robust=False)
    assert e.value.reason == 'degenerate'
    with pytest.raises(ValueError, match='shape'):
        fit_scale_shift(pred, (1.0 / depth)[:10])


def test_fixed_mode_metres_nan_and_clamp():
    md = MetricDepth('fixed', scale=0.5, shift=-1.0, min_depth=0.2, max_depth=10.0)
    assert md.ready
    pred = np.array([[4.0, 2.0, 1.0], [np.nan, 2.05, 100.0]], np.float32)
    out = md.to_metric(pred)
    assert out.dtype == np.float32
    assert out[0, 0] == pytest.approx(1.0)          # 1 / (0.5*4 - 1)
    assert np.isnan(out[0, 1])                      # inverse depth 0: beyond infinity
    assert np.isnan(out[0, 2])                      # negative inverse depth
    assert np.isnan(out[1, 0])                      # NaN in, NaN out
    assert out[1, 1] == pytest.approx(10.0)         # 40 m clamped to max_depth
    assert out[1, 2] == pytest.approx(0.2)          # 0.02 m clamped to min_depth


def test_none_mode_and_validation():
    md = MetricDepth()
    assert not md.ready
    with pytest.raises(RuntimeError, match='none'):
        md.to_metric(np.ones((2, 2), np.float32))
    for kwargs, msg in [({'mode': 'lidar'}, 'not one of'),
                        ({'mode': 'fixed', 'scale': 0.0}, 'scale > 0'),
                        ({'min_depth': 5.0, 'max_depth': 1.0}, 'min_depth'),
                        ({'smoothing': 1.0}, 'smoothing')]:
        with pytest.raises(ValueError, match=msg):
            MetricDepth(**kwargs)


def test_reference_mode_fits_smooths_and_rejects():
    pred, depth = _scene()
    md = MetricDepth('reference', smoothing=0.5, min_depth=0.1, max_depth=100.0)
    assert not md.ready
    with pytest.raises(RuntimeError, match='no reference fit'):
        md.to_metric(pred)
    # Sparse reference at a different resolution (a LiDAR projection): 2 % of pixels,
    # with zeros for "no return".
    rng = np.random.default_rng(5)
    big = resize_nearest(depth, (240, 320)).copy()
    big[rng.random(big.shape) > 0.02] = 0.0
    fit = md.update_reference(pred, big)
    assert fit is not None and md.ready
    assert fit.scale == pytest.approx(SCALE, rel=1e-5)
    assert fit.n_points == int((big > 0).sum())
    out = md.to_metric(pred)
    np.testing.assert_allclose(out, depth, rtol=1e-4)
    # A second frame whose true scale doubled: the EMA moves half way.
    fit2 = md.update_reference(pred, depth / 2.0)
    assert fit2.scale == pytest.approx(2 * SCALE, rel=1e-5)
    assert md.scale == pytest.approx(1.5 * SCALE, rel=1e-5)
    # A useless reference is rejected and the estimate kept.
    assert md.update_reference(pred, np.zeros_like(depth)) is None
    assert md.last_error == 'too_few_points'
    assert md.scale == pytest.approx(1.5 * SCALE, rel=1e-5)
    # An anti-correlated "reference" gives a negative scale: rejected, not used.
    assert md.update_reference(pred, 10.0 / (50.0 - pred)) is None
    assert md.last_error == 'negative_scale'
    assert md.reject_count == 2 and md.fit_count == 2


def test_sample_reference_keeps_sparse_points():
    pred = np.arange(12, dtype=np.float32).reshape(3, 4)
    ref = np.zeros((6, 8))
    ref[5, 7] = 2.0     # bottom-right pixel of the big grid -> pred[2, 3]
    ref[0, 0] = 3.0     # top-left -> pred[0, 0]
    ref[1, 1] = np.nan
    x, z = sample_reference(pred, ref)
    assert sorted(zip(x.tolist(), z.tolist())) == [(0.0, 3.0), (11.0, 2.0)]


def test_resize_nearest_never_blends():
    d = np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)
    up = resize_nearest(d, (4, 4))
    assert up.shape == (4, 4)
    assert np.isnan(up[:2, 2:]).all()
    assert set(np.unique(up[np.isfinite(up)]).tolist()) == {1.0, 3.0, 4.0}


MS = 1_000_000


def test_reference_buffer_takes_the_nearest_within_tolerance_once():
    buf = ReferenceBuffer(capacity=4)
    assert buf.take(100 * MS, 50 * MS) == (None, 'none')
    for t in (0, 100, 200, 300):
        buf.add(t * MS, f'r{t}')
    assert buf.take(190 * MS, 50 * MS) == ('r200', '')     # nearest, after the frame
    assert len(buf) == 1                                      # it and the older ones forgotten
    assert buf.take(200 * MS, 50 * MS) == (None, 'unmatched')  # r300 is 100 ms away: kept
    assert buf.take(290 * MS, 50 * MS) == ('r300', '')
    assert buf.take(290 * MS, 50 * MS) == (None, 'none')      # never fitted twice
    assert (buf.taken, buf.unmatched) == (2, 1)


def test_reference_buffer_sorts_late_arrivals_and_keeps_the_newest():
    buf = ReferenceBuffer(capacity=3)
    for t in (50, 10, 40, 30, 20):                       # out of order; capacity 3
        buf.add(t * MS, t)
    assert len(buf) == 3
    assert buf.take(10 * MS, 5 * MS) == (None, 'unmatched')   # 10 and 20 were the oldest
    assert buf.take(31 * MS, 5 * MS) == (30, '')
    assert buf.take(60 * MS, 0) == (None, 'unmatched')
    assert buf.take(50 * MS, 0) == (50, '')
    with pytest.raises(ValueError):
        ReferenceBuffer(0)


def test_camera_metric_matches_references_by_stamp_and_applies_the_fit_after_finish():
    pred, depth = _scene()
    cam = CameraMetric(MetricDepth('reference', smoothing=0.0), max_dt_s=0.05, capacity=4)
    assert cam.apply(pred) is None                       # no fit yet: no metric depth
    cam.add_reference(1_000_000_000, 'message at 1.00 s')
    assert cam.reference_for(2_000_000_000) is None      # 1 s away: unmatched, kept
    assert cam.reference_for(1_020_000_000) == 'message at 1.00 s'
    assert cam.reference_for(1_020_000_000) is None      # taken once
    assert (cam.refs.taken, cam.refs.unmatched) == (1, 1)
    metres = cam.apply(pred, depth)                      # the matched reference, in metres
    np.testing.assert_allclose(metres, depth, rtol=1e-4)
    np.testing.assert_allclose(cam.apply(pred), depth, rtol=1e-4)   # the fit is kept
    assert cam.fit.fit_count == 1


def test_camera_metric_in_fixed_mode_takes_no_reference():
    cam = CameraMetric(MetricDepth('fixed', scale=SCALE, shift=SHIFT), max_dt_s=1.0)
    cam.add_reference(0, 'ignored')
    assert cam.reference_for(0) is None and len(cam.refs) == 1
    pred, depth = _scene()
    np.testing.assert_allclose(cam.apply(pred), depth, rtol=1e-4)
