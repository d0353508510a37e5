"""
ros/transport_codec.py against decoders written here from the formats' specs, not its inverse.

compressedDepth: the 12-byte ConfigHeader read with struct as compressed_depth_image_transport's
C struct lays it out, the PNG decoded by Pillow (the encoder uses OpenCV), depth = A / (q - B)
as its subscriber computes it. JPEG: decoded by Pillow and by the node's own input decoder.
"""
import io

from dpt_ros.ros import image_codec, transport_codec
import numpy as np
from PIL import Image as PILImage
import pytest
from support.decoders import decode_compressed_depth


def test_32fc1_round_trip_within_one_quantisation_step():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 60.0, (48, 64)).astype(np.float32)
    depth[0, :4] = [np.nan, np.inf, -1.0, 0.0]     # invalid
    depth[1, :2] = [100.0, 250.0]                  # at / beyond depth_max
    depth[2, :2] = [0.05, 0.16]                    # nearer than 16 bits reach; just inside
    f = transport_codec.compressed_depth_fields(depth, depth_max=100.0,
                                                depth_quantization=100.0, png_level=1)
    assert f['format'] == '32FC1; compressedDepth png'
    got, a, b = decode_compressed_depth(f['format'], f['data'])
    # The quantisation by the spec: A = Z0 (Z0 + 1), B = 1 - A / depth_max.
    assert a == pytest.approx(100.0 * 101.0) and b == pytest.approx(1.0 - 10100.0 / 100.0)
    assert got.shape == depth.shape
    invalid = np.zeros(depth.shape, bool)
    invalid[0, :4] = invalid[1, :2] = True
    assert np.array_equal(np.isnan(got), invalid)
    nearest = a / (65535.0 - b)                     # what a clamped code decodes to
    assert got[2, 0] == pytest.approx(nearest, rel=1e-6)
    assert got[2, 1] == pytest.approx(0.16, abs=0.17 ** 2 / a)
    ok = ~invalid
    ok[2, :2] = False
    d, g = depth[ok].astype(np.float64), got[ok].astype(np.float64)
    # Truncating q = A/d + B makes the decoded depth never nearer, at most one step farther.
    step = d * g / a
    assert np.all(g >= d * (1 - 1e-6)) and np.all(g - d <= step * 1.001 + 1e-6)


def test_default_parameters_are_compressed_depth_image_transports():
    assert (transport_codec.DEPTH_MAX, transport_codec.DEPTH_QUANTIZATION,
            transport_codec.PNG_LEVEL, transport_codec.JPEG_QUALITY) == (10.0, 100.0, 3, 95)
    depth = np.full((4, 4), 12.0, np.float32)      # beyond the default 10 m
    got, _, _ = decode_compressed_depth(**{
        'fmt': '32FC1; compressedDepth png',
        'data': transport_codec.compressed_depth_fields(depth)['data']})
    assert np.isnan(got).all()


def test_16uc1_millimetres_stay_exact_and_far_ones_become_zero():
    mm = np.arange(0, 48 * 64, dtype=np.uint16).reshape(48, 64) * 7
    f = transport_codec.compressed_depth_fields(mm, '16UC1', depth_max=20.0)
    assert f['format'] == '16UC1; compressedDepth png'
    got, _, _ = decode_compressed_depth(f['format'], f['data'])
    want = np.where(mm > 20000, 0, mm)
    np.testing.assert_array_equal(got, want)
    assert mm.max() > 20000 and mm[0, 1] == 7     # the input is left as it was


def test_jpeg_of_the_colour_image():
    y, x = np.mgrid[0:96, 0:128]
    bgr = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)
    f = transport_codec.jpeg_fields(bgr, quality=95)
    assert f['format'] == 'bgr8; jpeg compressed bgr8'
    rgb = np.array(PILImage.open(io.BytesIO(f['data'])).convert('RGB'))
    assert rgb.shape == bgr.shape and np.abs(rgb.astype(int) - bgr[..., ::-1]).mean() < 2
    msg = type('Msg', (), {'format': f['format'], 'data': f['data']})()
    node_view = image_codec.decode(msg)             # how the node reads a jpeg input
    assert np.abs(node_view.astype(int) - bgr[..., ::-1]).mean() < 2


@pytest.mark.parametrize('call, words', [
    (lambda: transport_codec.compressed_depth_fields(np.zeros((2, 2, 2))), 'non-empty (H, W)'),
    (lambda: transport_codec.compressed_depth_fields(np.zeros((2, 2)), 'mono8'), '32FC1'),
    (lambda: transport_codec.compressed_depth_fields(np.zeros((2, 2)), '16UC1'), 'uint16'),
    (lambda: transport_codec.jpeg_fields(np.zeros((2, 2), np.uint8)), '(H, W, 3) uint8'),
])
def test_wrong_input_is_a_clear_error(call, words):
    with pytest.raises(ValueError, match=words.replace('(', r'\(').replace(')', r'\)')):
        call()
