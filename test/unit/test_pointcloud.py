"""depth/pointcloud.py: metric depth -> PointCloud2 bytes, without ROS."""
import cv2
from dpt_ros.depth import pointcloud as pc
from dpt_ros.errors import CameraModelError, ReasonError
from dpt_ros.inference import jit
import numpy as np
import pytest

FX, FY, CX, CY = 525.0, 518.0, 319.5, 241.25
K = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
H, W = 48, 64


def pinhole(k=K, width=W, height=H, **kw):
    return pc.intrinsics_from_camera_info(k, width=width, height=height, **kw)


def grid(h, w, stride=1):
    v, u = np.mgrid[0:h:stride, 0:w:stride].astype(np.float64)
    return u, v


def organised(cloud):
    return cloud.points().reshape(cloud.height, cloud.width, -1)


def test_constant_depth_is_the_plane_z_d_with_pinhole_xy():
    d = 2.75
    cloud = pc.PointCloudMaker().make(np.full((H, W), d, np.float32), pinhole())
    p = organised(cloud).astype(np.float64)
    assert (cloud.width, cloud.height, cloud.point_step, cloud.row_step) == (W, H, 12, W * 12)
    assert cloud.is_dense and len(cloud.data) == H * W * 12
    u, v = grid(H, W)
    assert np.abs(p[..., 2] - d).max() < 1e-4
    assert np.abs(p[..., 0] - (u - CX) / FX * d).max() < 1e-4
    assert np.abs(p[..., 1] - (v - CY) / FY * d).max() < 1e-4


def test_tilted_plane_points_lie_on_it():
    # Plane n . X = c seen by the camera: depth Z(u, v) = c / (n . ray(u, v)).
    n = np.array([0.2, -0.35, 1.0])
    n /= np.linalg.norm(n)
    c = 3.2
    u, v = grid(H, W)
    ray = np.stack([(u - CX) / FX, (v - CY) / FY, np.ones_like(u)], -1)
    depth = (c / (ray @ n)).astype(np.float32)
    p = pc.PointCloudMaker().make(depth, pinhole()).points().astype(np.float64)
    assert np.abs(p @ n - c).max() < 1e-4


def test_stride_takes_every_nth_pixel_of_both_axes():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, (H + 1, W - 1)).astype(np.float32)
    intr = pinhole(width=W - 1, height=H + 1)
    full = organised(pc.PointCloudMaker().make(depth, intr))
    for s in (2, 3, 7):
        cloud = pc.PointCloudMaker(stride=s).make(depth, intr)
        assert (cloud.height, cloud.width) == depth[::s, ::s].shape
        np.testing.assert_array_equal(organised(cloud), full[::s, ::s])


def invalid_depth():
    depth = np.full((H, W), 1.5, np.float32)
    depth[3, 4] = np.nan
    depth[10, 11] = np.inf
    depth[20, 30] = 0.0
    depth[40, 50] = -2.0
    depth[0, 1] = -np.inf
    return depth


def test_organised_keeps_the_layout_with_nan_where_depth_is_invalid():
    depth = invalid_depth()
    rgb = np.full((H, W, 3), 7, np.uint8)
    cloud = pc.PointCloudMaker().make(depth, pinhole(), rgb)
    p = organised(cloud)
    bad = ~(np.isfinite(depth) & (depth > 0))
    assert (cloud.height, cloud.width) == (H, W) and not cloud.is_dense
    assert np.isnan(p[..., :3][bad]).all()
    assert np.isfinite(p[..., :3][~bad]).all()
    # The colour of an invalid pixel is kept (it is not a coordinate).
    assert (p.view(np.uint32)[..., 3] == 0x070707).all()


def test_dense_drops_invalid_points_in_row_major_order():
    depth = invalid_depth()
    intr = pinhole()
    want = organised(pc.PointCloudMaker().make(depth, intr))
    good = np.isfinite(depth) & (depth > 0)
    cloud = pc.PointCloudMaker(dense=True).make(depth, intr)
    assert (cloud.height, cloud.width) == (1, int(good.sum())) and cloud.is_dense
    assert cloud.row_step == cloud.width * 12 and len(cloud.data) == cloud.row_step
    np.testing.assert_array_equal(cloud.points(), want[good])
    # Dense with a stride: only the kept pixels' valid points.
    cloud = pc.PointCloudMaker(stride=2, dense=True).make(depth, intr)
    np.testing.assert_array_equal(cloud.points(), want[::2, ::2][good[::2, ::2]])


def test_nothing_valid_gives_an_empty_dense_cloud_and_an_all_nan_organised_one():
    depth = np.full((4, 5), np.nan, np.float32)
    intr = pinhole(width=5, height=4)
    dense = pc.PointCloudMaker(dense=True).make(depth, intr)
    assert (dense.width, dense.height, len(dense.data)) == (0, 1, 0)
    org = pc.PointCloudMaker().make(depth, intr)
    assert np.isnan(org.points()).all() and not org.is_dense


def test_rgb_is_packed_as_0x00rrggbb_in_a_float32_field():
    fields, step = pc.cloud_fields(True)
    assert [(f.name, f.offset, f.datatype, f.count) for f in fields] == [
        ('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('rgb', 12, 7, 1)]
    assert step == 16
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 255, 255)
    rgb[0, 1] = (0x12, 0x34, 0x56)
    cloud = pc.PointCloudMaker().make(np.ones((H, W), np.float32), pinhole(), rgb)
    packed = organised(cloud).view(np.uint32)[..., 3]
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    np.testing.assert_array_equal(packed, (r << 16) | (g << 8) | b)
    assert packed[0, 1] == 0x123456 and packed[0, 0] == 0x00FFFFFF
    np.testing.assert_array_equal(pc.pack_rgb(rgb), packed)


def test_rgb_of_another_size_is_resized_to_the_depth_and_strided_with_it():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(base, 2, 0), 2, 1)     # every pixel a 2x2 block
    depth = np.ones((H, W), np.float32)
    for s in (1, 3):
        cloud = pc.PointCloudMaker(stride=s).make(depth, pinhole(), big)
        np.testing.assert_array_equal(organised(cloud).view(np.uint32)[..., 3],
                                      pc.pack_rgb(base)[::s, ::s])


def test_k_is_read_row_major_and_p_for_rectified_images():
    intr = pinhole(k=[100.0, 0.5, 30.0, 0.0, 200.0, 20.0, 0.0, 0.0, 1.0], width=128, height=64)
    assert (intr.fx, intr.skew, intr.cx, intr.fy, intr.cy) == (100.0, 0.5, 30.0, 200.0, 20.0)
    # Pixel (u, v) = (fx x + s y + cx, fy y + cy): the ray through it is (x, y, 1).
    x, y = 0.1, -0.05
    u, v = 100.0 * x + 0.5 * y + 30.0, 200.0 * y + 20.0
    xn, yn = pc.compute_rays(intr, 64, 128)
    assert (u, v) == pytest.approx((39.975, 10.0))
    # Interpolate the ray grid at (u, v) exactly: rays are affine in u and v.
    u0, v0 = int(u), int(v)
    fu = u - u0
    got_x = (1 - fu) * xn[v0, u0] + fu * xn[v0, u0 + 1]
    assert got_x == pytest.approx(x, abs=1e-6) and yn[v0, u0] == pytest.approx(y, abs=1e-6)
    p = [300.0, 0.0, 150.0, -30.0, 0.0, 310.0, 100.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    rect = pc.intrinsics_from_camera_info(K, d=[0.3, 0, 0, 0, 0], distortion_model='plumb_bob',
                                          p=p, model='rectified')
    assert (rect.fx, rect.fy, rect.cx, rect.cy, rect.d) == (300.0, 310.0, 150.0, 100.0, ())


def test_camera_info_of_another_resolution_is_scaled_to_the_depth():
    full = pinhole(k=[2 * FX, 0, 2 * CX + 0.5, 0, 2 * FY, 2 * CY + 0.5, 0, 0, 1],
                   width=2 * W, height=2 * H)
    half = pinhole()
    for a, b in zip(pc.compute_rays(full, H, W), pc.compute_rays(half, H, W)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize('model, d', [
    ('plumb_bob', [-0.28, 0.09, 0.0012, -0.0008, -0.01]),
    ('rational_polynomial', [0.4, -0.1, 0.001, 0.002, 0.01, 0.7, -0.05, 0.02]),
    ('equidistant', [-0.03, 0.01, -0.004, 0.001]),
])
def test_distortion_is_honoured_points_project_back_to_their_pixels(model, d):
    h, w = 120, 160
    k = [150.0, 0.0, 80.5, 0.0, 148.0, 59.0, 0.0, 0.0, 1.0]
    intr = pc.intrinsics_from_camera_info(k, d, model, w, h)
    assert intr.distorted
    depth = np.random.default_rng(3).uniform(1.0, 4.0, (h, w)).astype(np.float32)
    p = pc.PointCloudMaker().make(depth, intr).points().astype(np.float64)
    km, dist = np.array(k).reshape(3, 3), np.array(d)
    zero = np.zeros(3)
    if model == 'equidistant':
        px, _ = cv2.fisheye.projectPoints(p.reshape(-1, 1, 3), zero, zero, km, dist)
    else:
        px, _ = cv2.projectPoints(p, zero, zero, km, dist)
    u, v = grid(h, w)
    err = np.hypot(px[:, 0, 0] - u.ravel(), px[:, 0, 1] - v.ravel())
    assert err.max() < 1e-2, err.max()
    assert np.abs(p[:, 2] - depth.ravel()).max() < 1e-4
    # The same camera read as a pinhole would put the edge pixels elsewhere.
    plain = pc.PointCloudMaker().make(depth, pinhole(k=k, width=w, height=h))
    assert np.abs(plain.points() - p).max() > 1e-2


@pytest.mark.parametrize('kwargs, reason, words', [
    ({'k': [0.0] * 9}, 'bad_k', ['all zeros', 'not calibrated']),
    ({'k': [FX, 0, CX, 0, np.nan, CY, 0, 0, 1]}, 'bad_k', ['non-finite']),
    ({'k': [-FX, 0, CX, 0, FY, CY, 0, 0, 1]}, 'bad_k', ['fx > 0']),
    ({'k': [FX, 0, CX, 0, FY, CY, 0, 0, 2]}, 'bad_k', ['bottom row']),
    ({'k': K[:6]}, 'bad_k', ['9 values', 'got 6']),
    ({'k': K, 'd': [0.1, np.inf, 0, 0, 0], 'distortion_model': 'plumb_bob'}, 'bad_d',
     ['non-finite']),
    ({'k': K, 'd': [0.1, 0, 0, 0, 0], 'distortion_model': 'fov'}, 'unsupported_distortion',
     ["'fov'", 'plumb_bob', 'rectified']),
    ({'k': K, 'p': [0.0] * 12, 'model': 'rectified'}, 'bad_p', ['P is all zeros']),
    ({'k': K, 'width': -1}, 'bad_size', ['negative']),
])
def test_a_camera_info_that_cannot_project_is_a_clear_error(kwargs, reason, words):
    with pytest.raises(CameraModelError) as err:
        pc.intrinsics_from_camera_info(**kwargs)
    assert err.value.reason == reason
    assert isinstance(err.value, ReasonError) and isinstance(err.value, ValueError)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_zero_distortion_of_an_unknown_model_is_a_plain_pinhole():
    intr = pc.intrinsics_from_camera_info(K, [0.0] * 5, 'fov', W, H)
    assert not intr.distorted


def test_rays_are_cached_per_model_size_and_stride():
    maker = pc.PointCloudMaker(stride=2, cache_size=2)
    a = maker.rays(pinhole(), H, W)
    assert maker.rays(pinhole(), H, W) is a
    b = maker.rays(pinhole(), H, W + 2)
    assert b is not a and b[0].shape == (H // 2, (W + 2) // 2)
    maker.rays(pinhole(k=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1]), H, W)   # evicts the oldest (a)
    assert maker.rays(pinhole(), H, W) is not a


@pytest.mark.skipif(not jit.available(), reason='numba is not importable')
@pytest.mark.parametrize('stride, dense, colour', [
    (1, False, 'same'), (1, True, 'same'), (3, False, 'big'), (2, True, None), (5, True, 'big'),
])
def test_compiled_and_numpy_fills_give_the_same_bytes(stride, dense, colour):
    depth = invalid_depth() * np.random.default_rng(4).uniform(0.5, 2.0, (H, W)).astype(
        np.float32)
    rgb = {'same': np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8),
           'big': np.random.default_rng(6).integers(0, 256, (2 * H + 1, 2 * W, 3),
                                                    dtype=np.uint8),
           None: None}[colour]
    intr = pinhole()
    a = pc.PointCloudMaker(stride, dense, use_jit=True).make(depth, intr, rgb)
    b = pc.PointCloudMaker(stride, dense, use_jit=False).make(depth, intr, rgb)
    for attr in ('width', 'height', 'fields', 'point_step', 'row_step', 'is_dense'):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert a.data == b.data      # the same bytes, NaN patterns included


def test_numpy_fill_is_the_default_without_numba(monkeypatch):
    monkeypatch.setattr(pc, '_fill_kernel', None)
    maker = pc.PointCloudMaker(dense=True)
    assert not maker.use_jit
    cloud = maker.make(invalid_depth(), pinhole())
    assert cloud.width == H * W - 5
    with pytest.raises(RuntimeError, match='numba'):
        pc.PointCloudMaker(use_jit=True)


@pytest.mark.parametrize('use_jit', [False] + ([True] if jit.available() else []))
def test_reuse_writes_each_cloud_into_one_buffer_of_the_right_size(use_jit):
    intr = pinhole()
    fresh = pc.PointCloudMaker(dense=True, use_jit=use_jit)
    maker = pc.PointCloudMaker(dense=True, use_jit=use_jit, reuse=True)
    rng = np.random.default_rng(7)
    first = None
    for holes in (0.1, 0.3, 0.05, 0.3):        # the dense size shrinks and grows
        depth = rng.uniform(0.5, 5.0, (H, W)).astype(np.float32)
        depth[rng.random((H, W)) < holes] = np.nan
        cloud = maker.make(depth, intr)
        first = first or cloud.data
        assert cloud.data is first
        assert cloud.data == fresh.make(depth, intr).data
    # A caller still holding a view of the last cloud gets a new buffer, not an error.
    view = cloud.points()
    depth[:, :3] = np.nan
    again = maker.make(depth, intr)
    assert again.data is not first and again.data == fresh.make(depth, intr).data
    assert view.shape[0] == cloud.width


def test_bad_arguments():
    with pytest.raises(ValueError, match='stride'):
        pc.PointCloudMaker(stride=0)
    with pytest.raises(ValueError, match='non-empty'):
        pc.PointCloudMaker().make(np.ones((3,), np.float32), pinhole())
    with pytest.raises(ValueError, match='uint8'):
        pc.PointCloudMaker().make(np.ones((H, W), np.float32), pinhole(),
                                  np.ones((H, W, 3), np.float32))
