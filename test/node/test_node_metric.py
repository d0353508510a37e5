"""
The node's REP 118 `depth` topic end to end: real rclpy + Fast DDS on loopback.

The node runs in a subprocess with stand-in backends (test/support/doubles/stand_in_backends.py,
and test/support/doubles/metric_stand_ins.py for non-finite model output). The expected metres come
from the node's own `depth_relative` output for the same frame (matched by header stamp), so the
tests check the metric stage, not the model. Every wait is a condition with a timeout.
"""
from diagnostic_msgs.msg import DiagnosticArray
from dpt_ros.ros import image_codec
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image
from support.node_cases import (BASE, by_stamp, H, HOLES_ENV, latest_status, raw_msg, stamp,
                                subscribed_publisher, W)
from support.ros_harness import diag_values, NodeProcess, rgb_image


def as_array(msg):
    return image_codec.image_fields_to_array(msg)


def publish_and_wait(graph, node, pub, arr, sec, outs, frame_id='cam', timeout=10.0):
    """Publish one rgb8 frame stamped `sec`; wait until every list in `outs` has that stamp."""
    pub.publish(stamp(raw_msg('rgb8', arr), sec, 11, frame_id))
    ok = graph.spin_until(lambda: all(by_stamp(o, sec) is not None for o in outs), timeout)
    assert ok, f'no output for stamp {sec}:\n' + node.output()[-3000:]
    return [by_stamp(o, sec) for o in outs]


def test_fixed_mode_depth_is_clamped_metres_with_nan_where_invalid(graph):
    s, t, lo, hi = 1.5, -0.6, 0.5, 8.0
    values = dict(BASE, backend='standin_holes', **{
        'metric.mode': 'fixed', 'metric.scale': s, 'metric.shift': t,
        'metric.min_depth': lo, 'metric.max_depth': hi})
    with NodeProcess(values, env=HOLES_ENV) as node:
        rel = graph.collect(Image, 'depth_relative')
        met = graph.collect(Image, 'depth')
        met_info = graph.collect(CameraInfo, 'depth/camera_info')
        pub = subscribed_publisher(graph, node)
        info_pub = subscribed_publisher(graph, node, 'camera_info', msg_type=CameraInfo)
        assert graph.wait_matched('depth') and graph.wait_matched('depth/camera_info')
        info_pub.publish(CameraInfo(height=H, width=W, distortion_model='plumb_bob'))
        seen = {'nan_pred': 0, 'posinf_pred': 0, 'nonpositive': 0, 'clamped_low': 0,
                'clamped_high': 0, 'free': 0}
        # 64x48 exercises the resize to the input size; 64x64 (= image_size) keeps the raw
        # output as is, so the stand-in's +inf pixels reach the metric stage unblended.
        frames = [(rgb_image(H, W, seed=i), f'cam{i}') for i in range(3)]
        frames.append((rgb_image(64, 64), 'square'))
        for i, (arr, frame_id) in enumerate(frames):
            sec = 300 + i
            r, m = publish_and_wait(graph, node, pub, arr, sec, [rel, met], frame_id)
            assert (m.encoding, m.height, m.width, m.step) == ('32FC1',) + arr.shape[:2] + (
                arr.shape[1] * 4,)
            assert (m.header.frame_id, m.header.stamp.nanosec) == (frame_id, 11)
            pred, depth = as_array(r), as_array(m)
            # The rule, in the float32 the 32FC1 data is: 1 / (s * pred + t) where that is a
            # finite positive inverse depth, clamped to [lo, hi]; NaN everywhere else.
            inv = np.float32(s) * pred + np.float32(t)
            valid = np.isfinite(inv) & (inv > 0)
            with np.errstate(divide='ignore'):
                want = np.clip(1.0 / inv[valid], lo, hi)
            assert np.array_equal(np.isnan(depth), ~valid), (
                f'NaN mask differs at {np.argwhere(np.isnan(depth) != ~valid)[:5].tolist()}')
            np.testing.assert_allclose(depth[valid], want, rtol=1e-5)
            assert np.isfinite(depth[valid]).all()
            assert depth[valid].min() >= lo and depth[valid].max() <= hi
            seen['nan_pred'] += int(np.isnan(pred).sum())
            seen['posinf_pred'] += int(np.isposinf(pred).sum())
            seen['nonpositive'] += int((np.isfinite(inv) & (inv <= 0)).sum())
            seen['clamped_low'] += int((inv[valid] > 1 / lo).sum())
            seen['clamped_high'] += int((inv[valid] < 1 / hi).sum())
            seen['free'] += int(((inv[valid] >= 1 / hi) & (inv[valid] <= 1 / lo)).sum())
        # Every branch of the rule was exercised, or the test proves less than it says.
        assert all(n > 0 for n in seen.values()), seen
        # depth/camera_info: the input camera_info with the output header.
        last = 300 + len(frames) - 1
        assert graph.spin_until(lambda: by_stamp(met_info, last) is not None, 5), node.output()
        info = by_stamp(met_info, last)
        assert (info.header.frame_id, info.height, info.width, info.distortion_model) == (
            'square', H, W, 'plumb_bob')


def reference_for(pred, scale, shift, rng):
    """Metric reference from a known fit, with unknown pixels (NaN, 0) and 20 % outliers."""
    truth = (1.0 / (scale * pred.astype(np.float64) + shift)).astype(np.float32)
    ref = truth.copy()
    u = rng.random(ref.shape)
    ref[u < 0.10] = np.nan
    ref[(u >= 0.10) & (u < 0.18)] = 0.0
    known = np.argwhere(u >= 0.18)
    pick = known[rng.choice(len(known), int(0.2 * len(known)), replace=False)]
    outlier = np.zeros(ref.shape, bool)
    outlier[pick[:, 0], pick[:, 1]] = True
    factor = rng.uniform(1.6, 3.0, ref.shape).astype(np.float32)
    far = rng.random(ref.shape) < 0.5
    ref[outlier & far] *= factor[outlier & far]
    ref[outlier & ~far] /= factor[outlier & ~far]
    return truth, ref, outlier


def test_reference_mode_recovers_the_reference_scale_and_shift(graph):
    scale, shift = 0.437, 0.118
    values = dict(BASE, **{'metric.mode': 'reference', 'metric.reference_topic': 'lidar_depth'})
    with NodeProcess(values) as node:
        rel = graph.collect(Image, 'depth_relative')
        met = graph.collect(Image, 'depth')
        diags = graph.collect(DiagnosticArray, '/diagnostics')
        pub = subscribed_publisher(graph, node)
        ref_pub = subscribed_publisher(graph, node, 'lidar_depth')
        assert graph.wait_matched('depth'), node.output()
        arr = rgb_image(H, W)

        def camera_diag():
            st = latest_status(diags, 'camera')
            return diag_values(st) if st is not None else {}

        # A reference 100 s older than the frame (a stalled sensor) is not matched: the frame
        # is counted unmatched and, with no fit yet, no metres are published. It stays in the
        # buffer, so each frame until it is seen counts; resend until one has.
        _, stale, _ = reference_for(np.ones((H, W), np.float32), 3.0, 0.5,
                                    np.random.default_rng(4))
        ref_pub.publish(stamp(raw_msg('32FC1', stale), 300, 11))
        for _ in range(5):
            (pred0,) = publish_and_wait(graph, node, pub, arr, 400, [rel])
            rel.clear()
            if graph.spin_until(
                    lambda: int(camera_diag().get('metric_references_unmatched', 0)) >= 1, 2):
                break
        assert int(camera_diag()['metric_references_unmatched']) >= 1, node.output()[-3000:]
        assert camera_diag()['metric_references_fitted'] == '0'
        pred = as_array(pred0)
        assert not graph.spin_until(lambda: met, 0.3), 'metric depth before any reference'
        truth, ref, outlier = reference_for(pred, scale, shift, np.random.default_rng(5))
        ref_msg = raw_msg('32FC1', ref)
        good = None
        for sec in range(401, 421):
            # The node fits against the reference nearest the frame's stamp: send it just
            # before the frame with the same stamp, as a synchronised depth sensor would.
            ref_pub.publish(stamp(ref_msg, sec, 11))
            pub.publish(stamp(raw_msg('rgb8', arr), sec, 11))
            assert graph.spin_until(lambda: by_stamp(rel, sec) is not None, 10), node.output()
            graph.spin_until(lambda: by_stamp(met, sec) is not None, 0.5)
            m = by_stamp(met, sec)
            if m is not None:
                good = (sec, m)
                break
        assert good is not None, 'no metric depth after 20 frames with a reference:\n' + \
            node.output()[-3000:]
        sec, m = good
        # Same image, same prediction: the frame this output belongs to predicted `pred`.
        np.testing.assert_array_equal(as_array(by_stamp(rel, sec)), pred)
        depth = as_array(m)
        assert (m.encoding, m.height, m.width, m.header.frame_id) == ('32FC1', H, W, 'cam')
        assert np.isfinite(depth).all()
        np.testing.assert_allclose(depth, truth, rtol=1e-3)
        # On the reference's own inlier pixels the output is the reference.
        inl = np.isfinite(ref) & (ref > 0) & ~outlier
        np.testing.assert_allclose(depth[inl], ref[inl], rtol=1e-3)
        assert np.abs(depth[outlier] / ref[outlier] - 1).min() > 0.3   # outliers ignored

        def metric_diag():
            v = camera_diag()
            return v if v.get('metric_ready') == 'true' else None
        assert graph.spin_until(lambda: metric_diag() is not None, 5), node.output()
        v = metric_diag()
        assert v['metric_mode'] == 'reference'
        assert int(v['metric_references_fitted']) >= 1
        assert float(v['metric_scale']) == pytest.approx(scale, abs=1.5e-3)
        assert float(v['metric_shift']) == pytest.approx(shift, abs=1.5e-3)


def test_mode_none_publishes_no_depth_topic(graph):
    with NodeProcess(BASE) as node:
        rel = graph.collect(Image, 'depth_relative')
        met = graph.collect(Image, 'depth')
        diags = graph.collect(DiagnosticArray, '/diagnostics')
        pub = subscribed_publisher(graph, node)
        for sec in range(500, 503):
            publish_and_wait(graph, node, pub, rgb_image(H, W), sec, [rel])
        # The node's other publishers are discovered by now; `depth` has none, and no camera
        # status claims a metric mode.
        assert graph.node.get_publishers_info_by_topic('/depth') == []
        assert graph.node.get_publishers_info_by_topic('/depth_relative') != []
        assert graph.spin_until(lambda: latest_status(diags, 'camera') is not None, 5)
        assert 'metric_mode' not in diag_values(latest_status(diags, 'camera'))
        assert met == []
