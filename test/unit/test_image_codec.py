"""
image_codec.

Every supported encoding against an independent cv2 conversion, and every way a message can be
wrong rejected with its reason. Real sensor_msgs (rclpy) and rosbags messages.
"""
import sys

import cv2
from dpt_ros.errors import InvalidImage
from dpt_ros.ros import image_codec as codec
import numpy as np
import pytest
from rosbags.typesys.stores.latest import builtin_interfaces__msg__Time as BagTime
from rosbags.typesys.stores.latest import sensor_msgs__msg__CompressedImage as BagCompressed
from rosbags.typesys.stores.latest import sensor_msgs__msg__Image as BagImage
from rosbags.typesys.stores.latest import std_msgs__msg__Header as BagHeader
from sensor_msgs.msg import CompressedImage, Image

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def image(encoding, arr, step=None, bigendian=False, data=None):
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    row = arr.nbytes // h
    step = row if step is None else step
    if data is None:
        rows = arr.reshape(h, row).view(np.uint8) if arr.dtype.itemsize == 1 else \
            np.frombuffer(arr.tobytes(), np.uint8).reshape(h, row)
        padded = np.zeros((h, step), np.uint8)
        padded[:, :row] = rows
        data = padded.tobytes()
    return Image(encoding=encoding, height=h, width=w, step=step,
                 is_bigendian=int(bigendian), data=data)


def bgr_from_rgb(rgb):
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.mark.parametrize('encoding, make, expect', [
    ('rgb8', lambda: RGB, lambda: RGB),
    ('bgr8', lambda: bgr_from_rgb(RGB), lambda: RGB),
    ('8UC3', lambda: bgr_from_rgb(RGB), lambda: RGB),
    ('rgba8', lambda: cv2.cvtColor(RGB, cv2.COLOR_RGB2RGBA), lambda: RGB),
    ('bgra8', lambda: cv2.cvtColor(RGB, cv2.COLOR_RGB2BGRA), lambda: RGB),
    ('mono8', lambda: RGB[:, :, 0], lambda: np.repeat(RGB[:, :, :1], 3, axis=2)),
    ('mono16', lambda: RGB[:, :, 0].astype(np.uint16) * 257,
     lambda: np.repeat(RGB[:, :, :1], 3, axis=2)),
    ('rgb16', lambda: RGB.astype(np.uint16) * 257, lambda: RGB),
])
def test_direct_encodings_round_trip(encoding, make, expect):
    out = codec.decode_image(image(encoding, make()))
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3) and out.flags.c_contiguous
    assert np.array_equal(out, expect())


def test_yuv422_variants_match_cv2():
    yuv = RNG.integers(0, 256, (6, 8, 2), dtype=np.uint8)
    for enc, code in (('yuv422', cv2.COLOR_YUV2RGB_UYVY), ('uyvy', cv2.COLOR_YUV2RGB_UYVY),
                      ('yuyv', cv2.COLOR_YUV2RGB_YUYV), ('yuv422_yuy2', cv2.COLOR_YUV2RGB_YUYV)):
        assert np.array_equal(codec.decode_image(image(enc, yuv)), cv2.cvtColor(yuv, code)), enc


def test_bayer_variants_match_cv2():
    raw = RNG.integers(0, 256, (6, 8), dtype=np.uint8)
    # ROS names the 2x2 pattern from the top-left; OpenCV names it from the second row.
    for enc, code in (('bayer_rggb8', cv2.COLOR_BayerBG2RGB), ('bayer_bggr8',
                      cv2.COLOR_BayerRG2RGB), ('bayer_gbrg8', cv2.COLOR_BayerGR2RGB),
                      ('bayer_grbg8', cv2.COLOR_BayerGB2RGB)):
        assert np.array_equal(codec.decode_image(image(enc, raw)), cv2.cvtColor(raw, code)), enc
    raw16 = raw.astype(np.uint16) * 257
    out = codec.decode_image(image('bayer_rggb16', raw16))
    assert np.abs(out.astype(int) - cv2.cvtColor(raw, cv2.COLOR_BayerBG2RGB)).max() <= 1


def test_row_padding_and_big_endian():
    padded = image('rgb8', RGB, step=8 * 3 + 5)
    assert np.array_equal(codec.decode_image(padded), RGB)
    mono = RGB[:, :, 0].astype(np.uint16) * 257
    big = image('mono16', mono.astype('>u2'), bigendian=True)
    assert np.array_equal(codec.decode_image(big)[:, :, 0], RGB[:, :, 0])


def test_float_grey_and_nan_rejected():
    grey = RNG.random((4, 5), dtype=np.float32)
    out = codec.decode_image(image('32FC1', grey))
    assert np.array_equal(out[:, :, 1], (grey * 255 + 0.5).astype(np.uint8))
    for bad in (np.nan, np.inf):
        g = grey.copy()
        g[1, 2] = bad
        with pytest.raises(InvalidImage) as e:
            codec.decode_image(image('32FC1', g))
        assert e.value.reason == 'nan'


def test_rosbags_messages_work_too():
    h = BagHeader(stamp=BagTime(sec=1, nanosec=2), frame_id='cam')
    msg = BagImage(header=h, height=6, width=8, encoding='rgb8', is_bigendian=0, step=24,
                   data=np.frombuffer(RGB.tobytes(), np.uint8))
    assert np.array_equal(codec.decode(msg), RGB)
    ok, png = cv2.imencode('.png', bgr_from_rgb(RGB))
    cmsg = BagCompressed(header=h, format='png', data=png.reshape(-1))
    assert np.array_equal(codec.decode(cmsg), RGB)


def test_compressed_png_exact_and_jpeg_close():
    ok, png = cv2.imencode('.png', bgr_from_rgb(RGB))
    out = codec.decode_compressed(CompressedImage(format='png', data=png.tobytes()))
    assert np.array_equal(out, RGB)
    smooth = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_LINEAR)
    ok, jpg = cv2.imencode('.jpg', bgr_from_rgb(smooth), [cv2.IMWRITE_JPEG_QUALITY, 95])
    msg = CompressedImage(format='rgb8; jpeg compressed bgr8', data=jpg.tobytes())
    out = codec.decode(msg)
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - smooth).mean() < 6


def reason_of(fn, *args, **kw):
    with pytest.raises(InvalidImage) as e:
        fn(*args, **kw)
    assert str(e.value)      # a message a person can act on
    return e.value.reason


def test_bad_raw_messages_have_reasons():
    good = image('rgb8', RGB)
    assert reason_of(codec.decode_image, image('h264', RGB)) == 'unknown_encoding'
    assert reason_of(codec.decode_image, Image(encoding='rgb8', height=0, width=8, step=24)) \
        == 'empty'
    assert reason_of(codec.decode_image, Image(encoding='rgb8', height=4, width=4, step=12)) \
        == 'truncated'
    short_step = Image(encoding='rgb8', height=6, width=8, step=20, data=bytes(good.data)[:120])
    assert reason_of(codec.decode_image, short_step) == 'size_mismatch'
    trunc = Image(encoding='rgb8', height=6, width=8, step=24, data=bytes(good.data)[:-1])
    assert reason_of(codec.decode_image, trunc) == 'truncated'
    over = Image(encoding='rgb8', height=6, width=8, step=24, data=bytes(good.data) + b'x')
    assert reason_of(codec.decode_image, over) == 'size_mismatch'
    odd = Image(encoding='yuyv', height=2, width=3, step=6, data=bytes(12))
    assert reason_of(codec.decode_image, odd) == 'size_mismatch'
    # 10k x 10k is refused from the header alone, before any byte is looked at.
    huge = Image(encoding='rgb8', height=10000, width=10000, step=30000)
    assert reason_of(codec.decode_image, huge) == 'too_large'
    assert reason_of(codec.decode_image, good, max_pixels=47) == 'too_large'


def test_bad_compressed_messages_have_reasons():
    assert reason_of(codec.decode_compressed, CompressedImage(format='jpeg')) == 'empty'
    garbage = CompressedImage(format='jpeg', data=RNG.integers(0, 256, 500, np.uint8).tobytes())
    assert reason_of(codec.decode_compressed, garbage) == 'unknown_encoding'
    ok, jpg = cv2.imencode('.jpg', np.zeros((48, 64, 3), np.uint8))
    cut = CompressedImage(format='jpeg', data=jpg.tobytes()[:30])
    assert reason_of(codec.decode_compressed, cut) == 'decode_failed'
    corrupt = bytearray(jpg.tobytes())
    corrupt[2:] = bytes(len(corrupt) - 2)   # keep the magic, destroy the rest
    assert reason_of(codec.decode_compressed, CompressedImage(format='jpeg',
                                                              data=bytes(corrupt))) \
        in ('decode_failed',)
    ok, big = cv2.imencode('.png', np.zeros((200, 300, 3), np.uint8))
    assert reason_of(codec.decode_compressed, CompressedImage(format='png', data=big.tobytes()),
                     max_pixels=1000) == 'too_large'
    ok, bigj = cv2.imencode('.jpg', np.zeros((200, 300, 3), np.uint8))
    assert reason_of(codec.decode_compressed, CompressedImage(format='jpeg',
                                                              data=bigj.tobytes()),
                     max_pixels=1000) == 'too_large'


def test_output_field_helpers_round_trip():
    depth = RNG.random((5, 7), dtype=np.float32)
    f = codec.depth_to_image_fields(depth)
    assert (f['encoding'], f['height'], f['width'], f['step']) == ('32FC1', 5, 7, 28)
    assert f['is_bigendian'] == int(sys.byteorder == 'big')
    msg = Image(**f)
    assert np.array_equal(codec.image_fields_to_array(msg), depth)
    bgr = bgr_from_rgb(RGB)
    f = codec.bgr_to_image_fields(bgr)
    assert (f['encoding'], f['step']) == ('bgr8', 24)
    assert np.array_equal(codec.image_fields_to_array(Image(**f)), bgr)
    with pytest.raises(ValueError):
        codec.depth_to_image_fields(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError):
        codec.bgr_to_image_fields(np.zeros((2, 2, 3), np.float32))


def test_new_message_takes_the_data_over_without_copies():
    depth = RNG.random((6, 9), dtype=np.float32)
    fields = codec.depth_to_image_fields(depth[:, ::-1])     # a strided view: copied once
    data = fields['data']
    msg = codec.new_message(Image, **fields)
    assert msg.data is data                                  # the same buffer, not a copy
    assert np.array_equal(codec.image_fields_to_array(msg), depth[:, ::-1])
    assert (msg.height, msg.width, msg.encoding, msg.step) == (6, 9, '32FC1', 36)
    plain = Image(**codec.depth_to_image_fields(depth))      # the ordinary constructor too
    assert np.array_equal(codec.image_fields_to_array(plain), depth)


def test_output_image_is_drawn_in_place_and_published_without_a_copy():
    depth = RNG.random((6, 9), dtype=np.float32)
    img = codec.OutputImage(6, 9, '32FC1')
    img.pixels[...] = depth
    msg = codec.new_message(Image, **img.fields())
    assert msg.data is img.data                               # the buffer itself
    assert (msg.height, msg.width, msg.encoding, msg.step) == (6, 9, '32FC1', 36)
    assert np.array_equal(codec.image_fields_to_array(msg), depth)
    color = codec.OutputImage(6, 9, 'bgr8')
    assert color.pixels.shape == (6, 9, 3) and color.step == 27
    color.pixels[...] = bgr_from_rgb(RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8))
    assert np.array_equal(codec.image_fields_to_array(codec.new_message(Image,
                                                                        **color.fields())),
                          color.pixels)
    with pytest.raises(BufferError):          # the view pins the size: no silent realloc
        img.data.append(0)
    with pytest.raises(ValueError, match='output encoding'):
        codec.OutputImage(6, 9, 'rgb8')
    with pytest.raises(ValueError, match='positive'):
        codec.OutputImage(0, 9, 'bgr8')


def test_output_image_pool_reuses_by_size_and_keeps_a_bounded_number():
    pool = codec.OutputImagePool(keep_per_size=2)
    a = pool.take(4, 5, '32FC1')
    pool.give_back(a)
    assert pool.take(4, 5, '32FC1') is a                      # reused, not reallocated
    assert pool.take(4, 5, 'bgr8') is not a                   # another encoding: its own
    assert pool.take(5, 4, '32FC1').pixels.shape == (5, 4)    # another size: its own
    held = [pool.take(4, 5, '32FC1') for _ in range(4)]
    for img in held + [held[0]]:                              # a double give-back is ignored
        pool.give_back(img)
    assert pool.take(4, 5, '32FC1') in held[:2]
    assert pool.take(4, 5, '32FC1') in held[:2]
    assert pool.take(4, 5, '32FC1') not in held               # only two were kept
    assert pool.allocated == 8


def test_output_image_message_is_built_once_and_carries_each_header():
    from std_msgs.msg import Header
    img = codec.OutputImage(3, 4, '32FC1')
    img.pixels[...] = 1.5
    first = img.message(Image, Header(frame_id='a'))
    assert first.data is img.data and first.header.frame_id == 'a'
    img.pixels[...] = 2.5                                     # the next frame, drawn in place
    second = img.message(Image, Header(frame_id='b'))
    assert second is first and second.header.frame_id == 'b'
    assert np.array_equal(codec.image_fields_to_array(second), np.full((3, 4), 2.5, np.float32))


def test_output_image_pool_lends_and_takes_back_even_on_error():
    pool = codec.OutputImagePool()
    with pool.lend(4, 5, '32FC1', None) as (depth, color):
        assert depth.pixels.shape == (4, 5) and color is None
    with pytest.raises(RuntimeError):
        with pool.lend(4, 5, '32FC1', 'bgr8') as (again, color):
            assert again is depth                               # given back, lent again
            raise RuntimeError('publish failed')
    with pool.lend(4, 5, '32FC1', 'bgr8') as (third, color_again):
        assert third is depth and color_again is color          # both came back
