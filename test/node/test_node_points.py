"""
The node's `points` topic end to end: real rclpy + Fast DDS on loopback, node in a subprocess.

The stand-in backend's output is the red channel (test/support/doubles/backend_base.py), so an
image of uniform red 255 is a constant inverse depth of 2 and metric.mode fixed with scale 0.2
makes the metric depth the plane z = 2.5 m; green and blue vary, so the colour of every point can
be checked against its pixel. Every wait is a condition with a timeout.
"""
from diagnostic_msgs.msg import DiagnosticArray
from dpt_ros.ros import image_codec
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from support.node_cases import (BASE, by_stamp, H, HOLES_ENV, latest_status, raw_msg, stamp,
                                subscribed_publisher, W)
from support.ros_harness import diag_values, NodeProcess

PLANE_Z = 2.5
METRIC = {'metric.mode': 'fixed', 'metric.scale': 0.2, 'metric.shift': 0.0}
FX, FY, CX, CY = 70.0, 65.0, 31.5, 23.25


def red_image(h, w):
    """Uniform red 255 (the plane), green along x, blue along y."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 255
    img[..., 1] = (np.arange(w) * 255 // max(w - 1, 1))[None, :]
    img[..., 2] = (np.arange(h) * 255 // max(h - 1, 1))[:, None]
    return img


def camera_info(h, w):
    return CameraInfo(height=h, width=w, distortion_model='plumb_bob', d=[0.0] * 5,
                      k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0])


def cloud_array(msg):
    """(height, width, floats per point) float32 of a PointCloud2 with float32 fields."""
    assert msg.row_step == msg.width * msg.point_step
    data = np.frombuffer(bytes(msg.data), np.float32)
    return data.reshape(msg.height, msg.width, msg.point_step // 4)


def pinhole_points(depth, stride):
    """Return the expected (h', w', 3) points of depth[::stride, ::stride], float64."""
    v, u = np.mgrid[0:depth.shape[0]:stride, 0:depth.shape[1]:stride].astype(np.float64)
    z = depth[::stride, ::stride].astype(np.float64)
    return np.stack([(u - CX) / FX * z, (v - CY) / FY * z, z], -1)


class Rig:
    """Publishers of image + camera_info, collectors of depth, points and diagnostics."""

    def __init__(self, graph, node, points=True):
        self.graph, self.node = graph, node
        self.depth = graph.collect(Image, 'depth')
        self.diags = graph.collect(DiagnosticArray, '/diagnostics')
        self.clouds = graph.collect(PointCloud2, 'points') if points else None
        self.pub = subscribed_publisher(graph, node)
        self.info_pub = subscribed_publisher(graph, node, 'camera_info', msg_type=CameraInfo)
        assert graph.wait_matched('depth'), node.output()
        if points:
            assert graph.wait_matched('points'), node.output()

    def send(self, img, sec, info=True):
        """Publish a frame stamped `sec` (after a camera_info: True, or the one given)."""
        if info is True:
            info = camera_info(*img.shape[:2])
        if info:
            self.info_pub.publish(info)
        self.pub.publish(stamp(raw_msg('rgb8', img), sec, 7, 'cam_optical'))
        assert self.graph.spin_until(lambda: by_stamp(self.depth, sec) is not None, 10), \
            self.node.output()[-3000:]

    def camera(self, processed):
        """Camera diagnostics once they cover `processed` frames."""
        def ready():
            st = latest_status(self.diags, 'camera')
            return st is not None and int(diag_values(st)['frames_processed']) >= processed
        assert self.graph.spin_until(ready, 5), self.node.output()[-3000:]
        return diag_values(latest_status(self.diags, 'camera'))

    def first_cloud(self, img, first_sec, tries=10, info=True):
        """Send frames until one has a cloud (the node sees our subscription a bit later)."""
        for sec in range(first_sec, first_sec + tries):
            self.send(img, sec, info)
            if self.graph.spin_until(lambda: by_stamp(self.clouds, sec) is not None, 0.5):
                return sec, by_stamp(self.clouds, sec)
        raise AssertionError('no points after %d frames:\n%s' % (tries, self.node.output()))


def test_points_are_the_plane_with_pinhole_xy_and_colour_only_while_subscribed(graph):
    with NodeProcess(dict(BASE, **METRIC)) as node:
        rig = Rig(graph, node, points=False)
        img = red_image(H, W)
        for sec in range(600, 603):
            rig.send(img, sec)
        kv = rig.camera(processed=3)
        # Nobody subscribes to `points`: nothing is computed, nothing is counted as skipped.
        assert kv['camera_info'] == 'yes'
        assert (kv['points_published'], kv['points_skipped_no_camera_info']) == ('0', '0')
        assert graph.node.get_publishers_info_by_topic('/points') != []

        rig.clouds = graph.collect(PointCloud2, 'points')
        assert graph.wait_matched('points'), node.output()
        sec, msg = rig.first_cloud(img, 610)
        assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == (
            'cam_optical', sec, 7)
        assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
            ('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('rgb', 12, 7, 1)]
        assert (msg.height, msg.width, msg.point_step, msg.is_dense) == (H, W, 16, True)
        p = cloud_array(msg)
        depth = image_codec.image_fields_to_array(by_stamp(rig.depth, sec))
        assert np.abs(depth - PLANE_Z).max() < 1e-4     # the metric depth is the plane
        assert np.abs(p[..., 2] - PLANE_Z).max() < 1e-4
        want = pinhole_points(np.full((H, W), PLANE_Z), 1)
        assert np.abs(p[..., :3] - want).max() < 1e-4
        r, g, b = (img[..., i].astype(np.uint32) for i in range(3))
        np.testing.assert_array_equal(p.view(np.uint32)[..., 3], (r << 16) | (g << 8) | b)
        kv = rig.camera(processed=3 + sec - 609)
        assert int(kv['points_published']) >= 1
        assert kv['points_skipped_no_camera_info'] == '0'


@pytest.mark.parametrize('stride, dense', [(2, True), (3, False)])
def test_stride_and_dense_flags(graph, stride, dense):
    # The holes stand-in has NaN / +inf blocks: metric depth is NaN there (invalid points).
    values = dict(BASE, backend='standin_holes', **METRIC, **{
        'points.stride': stride, 'points.dense': dense, 'points.rgb': False})
    with NodeProcess(values, env=HOLES_ENV) as node:
        rig = Rig(graph, node)
        # 64 x 64 = image_size: the raw output reaches the metric stage unresized.
        sec, msg = rig.first_cloud(red_image(64, 64), 620)
        depth = image_codec.image_fields_to_array(by_stamp(rig.depth, sec))
        want = pinhole_points(depth, stride)
        valid = np.isfinite(want[..., 2])
        assert 0 < valid.sum() < valid.size, 'the frame must have valid and invalid pixels'
        assert np.abs(want[..., 2][valid] - PLANE_Z).max() < 1e-4
        assert [f.name for f in msg.fields] == ['x', 'y', 'z'] and msg.point_step == 12
        p = cloud_array(msg).astype(np.float64)
        if dense:
            assert (msg.height, msg.width, msg.is_dense) == (1, int(valid.sum()), True)
            assert np.abs(p[0] - want[valid]).max() < 1e-4
        else:
            assert (msg.height, msg.width, msg.is_dense) == want.shape[:2] + (False,)
            assert np.array_equal(np.isnan(p).any(-1), ~valid)
            assert np.isnan(p[~valid]).all()
            assert np.abs(p[valid] - want[valid]).max() < 1e-4


def test_no_or_bad_camera_info_no_points_counted_and_one_warning(graph):
    with NodeProcess(dict(BASE, **METRIC)) as node:
        rig = Rig(graph, node)
        img = red_image(H, W)
        # The node sees our subscription a little after we see its publisher: wait until
        # a frame is counted as skipped, then send a few more.
        sent = 0
        for sec in range(630, 650):
            rig.send(img, sec, info=False)
            sent += 1
            if int(rig.camera(processed=sent)['points_skipped_no_camera_info']) >= 1:
                break
        for sec in range(650, 653):
            rig.send(img, sec, info=False)
            sent += 1
        kv = rig.camera(processed=sent)
        skipped = int(kv['points_skipped_no_camera_info'])
        assert skipped >= 4 and kv['points_published'] == '0'
        assert kv['camera_info'] == 'not received'
        assert rig.clouds == []
        warns = [line for line in node.lines if 'no camera_info' in line]
        assert len(warns) == 1 and 'WARN' in warns[0], warns
        # An uncalibrated camera (K all zeros): still no points, counted apart, said once.
        uncalibrated = CameraInfo(height=H, width=W)
        rig.info_pub.publish(uncalibrated)

        def info_seen():
            st = latest_status(rig.diags, 'camera')
            return st is not None and diag_values(st)['camera_info'] == 'yes'
        assert graph.spin_until(info_seen, 5), node.output()[-3000:]
        for sec in range(660, 663):
            rig.send(img, sec, info=uncalibrated)
        sent += 3
        kv = rig.camera(processed=sent)
        assert int(kv['points_skipped_bad_camera_info']) == 3, kv
        assert int(kv['points_skipped_no_camera_info']) == skipped
        assert rig.clouds == []
        warns = [line for line in node.lines if 'bad_k' in line]
        assert len(warns) == 1 and 'not calibrated' in warns[0], warns
        # A good camera_info starts the points.
        sec, msg = rig.first_cloud(img, 670)
        assert (msg.height, msg.width) == (H, W)
