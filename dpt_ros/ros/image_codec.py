"""
sensor_msgs Image / CompressedImage <-> numpy, checked before anything trusts the bytes.

Messages are duck typed (`encoding`, `height`, `width`, `step`, `is_bigendian`, `data`; or
`format`, `data`), so rclpy messages and `rosbags` messages both work. Every way a message can
be wrong raises `InvalidImage(reason, message)` with a stable reason used as a counter label:

  empty             zero width/height or no data
  too_large         more pixels than `max_pixels`
  unknown_encoding  an encoding (or compressed format) this node does not decode
  size_mismatch     step shorter than a row, odd width for YUV 4:2:2, or more data than
                    step * height
  truncated         less data than step * height
  nan               NaN or infinity in a float image
  decode_failed     the bytes do not decode (corrupt JPEG/PNG, colour conversion refused)

Colour conversion (YUV 4:2:2, Bayer, 16-bit scaling) is done by `rosbags-image`; this module
adds the checks, row-padding (`step`) handling and byte order that it leaves to the caller.
No rclpy import.
"""
from __future__ import annotations

import array
import contextlib
import functools
import struct
import sys
import threading

from dpt_ros import vocabulary
from dpt_ros.errors import InvalidImage
import numpy as np

# encoding -> (numpy dtype, channels, name rosbags-image converts from)
_ENCODINGS: dict[str, tuple[str, int, str]] = {
    'rgb8': ('u1', 3, 'rgb8'), 'bgr8': ('u1', 3, 'bgr8'),
    'rgba8': ('u1', 4, 'rgba8'), 'bgra8': ('u1', 4, 'bgra8'),
    'mono8': ('u1', 1, 'mono8'), '8UC1': ('u1', 1, 'mono8'),
    # OpenCV's convention for untyped 3/4-channel 8-bit images is BGR(A).
    '8UC3': ('u1', 3, 'bgr8'), '8UC4': ('u1', 4, 'bgra8'),
    'mono16': ('u2', 1, 'mono16'), '16UC1': ('u2', 1, 'mono16'),
    'rgb16': ('u2', 3, 'rgb16'), 'bgr16': ('u2', 3, 'bgr16'),
    'rgba16': ('u2', 4, 'rgba16'), 'bgra16': ('u2', 4, 'bgra16'),
    'yuv422': ('u1', 2, 'yuv422'), 'uyvy': ('u1', 2, 'uyvy'),
    'yuyv': ('u1', 2, 'yuyv'), 'yuv422_yuy2': ('u1', 2, 'yuv422_yuy2'),
    'bayer_rggb8': ('u1', 1, 'bayer_rggb8'), 'bayer_bggr8': ('u1', 1, 'bayer_bggr8'),
    'bayer_gbrg8': ('u1', 1, 'bayer_gbrg8'), 'bayer_grbg8': ('u1', 1, 'bayer_grbg8'),
    'bayer_rggb16': ('u2', 1, 'bayer_rggb16'), 'bayer_bggr16': ('u2', 1, 'bayer_bggr16'),
    'bayer_gbrg16': ('u2', 1, 'bayer_gbrg16'), 'bayer_grbg16': ('u2', 1, 'bayer_grbg16'),
    # Grey intensity in [0, 1] (clipped); NaN/inf rejected.
    '32FC1': ('f4', 1, 'mono8'), '64FC1': ('f8', 1, 'mono8'),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)
COMPRESSED_FORMATS = ('jpeg', 'png')
_YUV422 = {'yuv422', 'uyvy', 'yuyv', 'yuv422_yuy2'}
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_JPEG_MAGIC = b'\xff\xd8'


def _as_bytes_view(data) -> np.ndarray:
    """Return the message payload as a flat uint8 array without copying where possible."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(list(data), dtype=np.uint8)


def _check_size(height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise InvalidImage('empty', f'image has zero size ({width}x{height})')
    if height * width > max_pixels:
        raise InvalidImage('too_large', f'image {width}x{height} has {height * width} pixels, '
                           f'more than max_pixels={max_pixels}')


def decode_image(msg, max_pixels: int = vocabulary.MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/Image-like message to contiguous RGB uint8 (H, W, 3)."""
    from rosbags.image.image import convert_color, ImageError  # imports cv2: only when used

    encoding = str(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    _check_size(height, width, max_pixels)
    if encoding not in _ENCODINGS:
        raise InvalidImage('unknown_encoding', f"unsupported encoding '{encoding}'; supported: "
                           f"{', '.join(SUPPORTED_ENCODINGS)}")
    dtype_code, channels, source = _ENCODINGS[encoding]
    itemsize = np.dtype(dtype_code).itemsize
    row_bytes = width * channels * itemsize
    if encoding in _YUV422 and width % 2:
        raise InvalidImage('size_mismatch', f'{encoding} needs an even width, got {width}')
    if step < row_bytes:
        raise InvalidImage('size_mismatch', f'step {step} is shorter than one row of {width} '
                           f'{encoding} pixels ({row_bytes} bytes)')
    buf = _as_bytes_view(msg.data)
    expected = step * height
    if buf.size < expected:
        raise InvalidImage('truncated', f'data has {buf.size} bytes, step*height needs '
                           f'{expected} ({width}x{height} {encoding}, step {step})')
    if buf.size > expected:
        raise InvalidImage('size_mismatch', f'data has {buf.size} bytes, more than step*height '
                           f'= {expected} ({width}x{height} {encoding}, step {step})')

    rows = buf.reshape(height, step)[:, :row_bytes]
    order = '>' if bool(msg.is_bigendian) else '<'
    dtype = np.dtype(order + dtype_code) if itemsize > 1 else np.dtype(dtype_code)
    # A copy makes the padded rows contiguous before reinterpreting them as pixels.
    pixels = np.ascontiguousarray(rows).view(dtype)
    if itemsize > 1:   # to native order (no copy when it already is)
        pixels = pixels.astype(dtype.newbyteorder('='), copy=False)
    pixels = pixels.reshape((height, width, channels) if channels > 1 else (height, width))

    if dtype.kind == 'f':
        if not np.isfinite(pixels).all():
            raise InvalidImage('nan', f'{encoding} image contains NaN or infinite values')
        pixels = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    try:
        rgb = convert_color(pixels, source, 'rgb8')
    except (ImageError, ValueError) as exc:   # cv2.error is an Exception subclass
        raise InvalidImage('decode_failed', f'cannot convert {encoding} to rgb8: {exc}') \
            from exc
    except Exception as exc:  # cv2.error: e.g. Bayer demosaicing of a 1-pixel image
        raise InvalidImage('decode_failed', f'cannot convert {encoding} to rgb8: '
                           f'{str(exc).strip().splitlines()[-1]}') from exc
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _png_size(data: bytes) -> tuple[int, int] | None:
    # IHDR is the first chunk: 8-byte magic, length, 'IHDR', width, height (big-endian).
    if len(data) >= 24 and data[12:16] == b'IHDR':
        width, height = struct.unpack('>II', data[16:24])
        return height, width
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments up to the first start-of-frame, which holds the size.
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], 'big')
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            height, width = struct.unpack('>HH', data[i + 5:i + 9])
            return height, width
        i += 2 + length
    return None


def decode_compressed(msg, max_pixels: int = vocabulary.MAX_PIXELS) -> np.ndarray:
    """
    Return a sensor_msgs/CompressedImage-like message (JPEG or PNG) -> RGB uint8 (H, W, 3).

    The size is read from the JPEG/PNG header first, so an oversized image is rejected
    before it is decompressed.
    """
    import cv2

    buf = _as_bytes_view(msg.data)
    fmt = str(getattr(msg, 'format', '')).lower()
    if buf.size == 0:
        raise InvalidImage('empty', f"compressed image ('{fmt}') has no data")
    head = buf[:65536].tobytes()
    if head.startswith(_PNG_MAGIC):
        size = _png_size(head)
    elif head.startswith(_JPEG_MAGIC):
        size = _jpeg_size(buf.tobytes() if buf.size <= 65536 else head)
    else:
        raise InvalidImage('unknown_encoding', f"compressed data (format '{fmt}') is neither "
                           f"JPEG nor PNG; supported: {', '.join(COMPRESSED_FORMATS)}")
    if 'compresseddepth' in fmt.replace(' ', ''):
        raise InvalidImage('unknown_encoding', f"format '{fmt}' is a compressed depth image, "
                           'not a camera image')
    if size is None:
        raise InvalidImage('decode_failed', f"compressed image ('{fmt}') has no readable size "
                           'header')
    _check_size(size[0], size[1], max_pixels)
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise InvalidImage('decode_failed', f"cannot decode compressed image ('{fmt}'): "
                           f'{str(exc).strip().splitlines()[-1]}') from exc
    if bgr is None or bgr.size == 0:
        raise InvalidImage('decode_failed', f"cannot decode compressed image ('{fmt}', "
                           f'{buf.size} bytes): corrupt or truncated data')
    return np.ascontiguousarray(bgr[:, :, ::-1])


def decode(msg, max_pixels: int = vocabulary.MAX_PIXELS) -> np.ndarray:
    """Image or CompressedImage (told apart by the `format` field) -> RGB uint8 (H, W, 3)."""
    if hasattr(msg, 'format') and not hasattr(msg, 'encoding'):
        return decode_compressed(msg, max_pixels)
    return decode_image(msg, max_pixels)


def _fields(arr: np.ndarray, encoding: str) -> dict:
    # `data` is the array.array('B') a message field holds, filled with one copy from the
    # array's buffer; new_message() hands it to the message without copying it again.
    height, width = arr.shape[:2]
    step = width * (arr.shape[2] if arr.ndim == 3 else 1) * arr.itemsize
    data = array.array('B')
    data.frombytes(memoryview(np.ascontiguousarray(arr)).cast('B'))
    return {'encoding': encoding, 'height': int(height), 'width': int(width),
            'step': int(step), 'is_bigendian': int(sys.byteorder == 'big'), 'data': data}


def new_message(msg_type, **fields):
    """
    msg_type(**fields), taking over an array.array `data` without copying it.

    Generated messages copy a sequence passed to the constructor, and (unless built with
    check_fields=True, where rosidl has that option) copy an array.array assigned to the
    field too: two extra copies of every 1 MB image, about 0.2 ms per image on our CPUs.
    """
    data = fields.pop('data', None)
    if _takes_check_fields(msg_type):
        msg = msg_type(check_fields=True, **fields)
    else:
        msg = msg_type(**fields)
    if data is not None:
        msg.data = data
    return msg


@functools.lru_cache(maxsize=None)
def _takes_check_fields(msg_type) -> bool:
    """Whether this rosidl's generated constructor accepts check_fields (asked once a type)."""
    try:
        msg_type(check_fields=True)
        return True
    except (TypeError, AssertionError):   # an older rosidl rejects the unknown kwarg
        return False


def depth_to_image_fields(depth: np.ndarray) -> dict:
    """(H, W) float depth -> sensor_msgs/Image fields for a 32FC1 image (native byte order)."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f'depth must be (H, W), got shape {depth.shape}')
    return _fields(depth.astype(np.float32, copy=False), '32FC1')


def bgr_to_image_fields(bgr: np.ndarray) -> dict:
    """(H, W, 3) uint8 BGR -> sensor_msgs/Image fields for a bgr8 image."""
    bgr = np.asarray(bgr)
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f'colour image must be (H, W, 3) uint8, got {bgr.shape} {bgr.dtype}')
    return _fields(bgr, 'bgr8')


# Encodings an OutputImage can hold: encoding -> (dtype, channels).
_OUTPUT_KINDS = {'32FC1': (np.float32, 1), 'bgr8': (np.uint8, 3)}


class OutputImage:
    """
    An outgoing image whose pixels are written in place into its message's `data` buffer.

    Why: copying a finished 640x480 depth and colour image into message buffers touches
    another 4 MB per frame, about 0.45 ms in the node, where each frame starts with cold
    caches. Here the pipeline writes `pixels` (a numpy view of `data`), and fields() hands
    `data` to new_message() without a copy. The view also pins the buffer's size: an
    array.array with a view on it cannot be resized.
    """

    def __init__(self, height: int, width: int, encoding: str):
        if encoding not in _OUTPUT_KINDS:
            raise ValueError(f"output encoding must be one of {', '.join(_OUTPUT_KINDS)}, "
                             f"got '{encoding}'")
        if height <= 0 or width <= 0:
            raise ValueError(f'output image size must be positive, got {width}x{height}')
        dtype, channels = _OUTPUT_KINDS[encoding]
        self.height, self.width, self.encoding = int(height), int(width), encoding
        self.step = self.width * channels * np.dtype(dtype).itemsize
        # One fill pass; the pipeline overwrites every byte.
        self.data = array.array('B', b'\0') * (self.step * self.height)
        shape = (self.height, self.width) + ((channels,) if channels > 1 else ())
        self.pixels = np.frombuffer(self.data, dtype=dtype).reshape(shape)
        self._message = None

    @property
    def key(self) -> tuple[int, int, str]:
        return self.height, self.width, self.encoding

    def fields(self) -> dict:
        """sensor_msgs/Image fields whose `data` is this image's buffer (for new_message)."""
        return {'encoding': self.encoding, 'height': self.height, 'width': self.width,
                'step': self.step, 'is_bigendian': int(sys.byteorder == 'big'),
                'data': self.data}

    def message(self, msg_type, header):
        """
        Return the msg_type message carrying this image, with `header` set.

        Built on the first call and reused after it (only the header changes), since
        constructing a message runs every field's checks in Python: ~10 us warm, several
        times that on a frame that starts with cold caches. Publishing copies the message,
        so reuse is safe once publish() has returned.
        """
        msg = self._message
        if msg is None or type(msg) is not msg_type:
            msg = self._message = new_message(msg_type, **self.fields())
        msg.header = header
        return msg


class OutputImagePool:
    """
    Reuses OutputImages between frames, so no frame allocates or faults in new buffers.

    take() hands out a free image of the asked size and encoding (a new one when none is
    free); give_back() returns it once its message is published: rclpy copies the data
    while publishing, so the buffer may be written again as soon as publish() returns.
    Thread safe; at most `keep_per_size` free images are kept per size and encoding.
    """

    def __init__(self, keep_per_size: int = 4):
        self.keep_per_size = int(keep_per_size)
        self._free: dict[tuple, list[OutputImage]] = {}
        self._lock = threading.Lock()
        self.allocated = 0

    def take(self, height: int, width: int, encoding: str) -> OutputImage:
        with self._lock:
            free = self._free.get((int(height), int(width), encoding))
            if free:
                return free.pop()
            self.allocated += 1
        return OutputImage(height, width, encoding)

    def give_back(self, image: OutputImage) -> None:
        with self._lock:
            free = self._free.setdefault(image.key, [])
            if len(free) < self.keep_per_size and all(f is not image for f in free):
                free.append(image)

    @contextlib.contextmanager
    def lend(self, height: int, width: int, *encodings):
        """One image per encoding (None where an encoding is None), given back on exit."""
        images = [None if e is None else self.take(height, width, e) for e in encodings]
        try:
            yield images
        finally:
            for image in images:
                if image is not None:
                    self.give_back(image)


def rgb_to_image_fields(rgb: np.ndarray) -> dict:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image fields for an rgb8 image (tests, benches)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'RGB image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}')
    return _fields(rgb, 'rgb8')


def image_fields_to_array(fields_or_msg) -> np.ndarray:
    """Read an output 32FC1 / bgr8 image back into numpy (the helpers above, inverted)."""
    get = (fields_or_msg.get if isinstance(fields_or_msg, dict)
           else lambda k: getattr(fields_or_msg, k))
    encoding = get('encoding')
    height, width, step = int(get('height')), int(get('width')), int(get('step'))
    kinds = {'32FC1': ('f4', 1), 'bgr8': ('u1', 3), 'rgb8': ('u1', 3), 'mono8': ('u1', 1)}
    if encoding not in kinds:
        raise InvalidImage('unknown_encoding', f"cannot read back encoding '{encoding}'")
    code, channels = kinds[encoding]
    dtype = np.dtype(('>' if get('is_bigendian') else '<') + code)
    buf = _as_bytes_view(get('data'))
    if buf.size != step * height:
        raise InvalidImage('size_mismatch', f'data {buf.size} bytes != step*height '
                           f'{step * height}')
    rows = np.ascontiguousarray(buf.reshape(height, step)[:, :width * channels * dtype.itemsize])
    arr = rows.view(dtype).astype(dtype.newbyteorder('='), copy=False)
    return arr.reshape((height, width, channels) if channels > 1 else (height, width))


def decode_float_image(msg, max_pixels: int = vocabulary.MAX_PIXELS) -> np.ndarray:
    """
    Return a single-channel 32FC1 / 16UC1 / mono16 Image -> (H, W) float32, values as they are.

    16-bit values are millimetres and come back in metres. Nothing is masked (relative
    inverse depth may be 0); `decode_depth_m` masks unknown pixels.
    """
    encoding = str(msg.encoding)
    scales = {'32FC1': ('f4', 1.0), '16UC1': ('u2', 1e-3), 'mono16': ('u2', 1e-3)}
    if encoding not in scales:
        raise InvalidImage('unknown_encoding', f'depth encoding {encoding!r} is not 32FC1 '
                           '(metres) or 16UC1 (millimetres)')
    code, scale = scales[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    _check_size(height, width, max_pixels)
    dtype = np.dtype(('>' if msg.is_bigendian else '<') + code)
    row_bytes = width * dtype.itemsize
    buf = _as_bytes_view(msg.data)
    if step < row_bytes or buf.size > step * height:
        raise InvalidImage('size_mismatch', f'depth image {width}x{height} {encoding}: '
                           f'step {step}, {buf.size} bytes')
    if buf.size < step * height:
        raise InvalidImage('truncated', f'depth image has {buf.size} bytes, needs '
                           f'{step * height}')
    rows = np.ascontiguousarray(buf.reshape(height, step)[:, :row_bytes])
    return rows.view(dtype).reshape(height, width).astype(np.float32) * np.float32(scale)


def decode_depth_m(msg, max_pixels: int = vocabulary.MAX_PIXELS) -> np.ndarray:
    """
    Return a metric depth image (32FC1 metres, or 16UC1/mono16 millimetres) -> (H, W) float32 m.

    Unknown pixels (0, NaN, inf) come back as NaN; used as the reference for metric fitting
    and as ground truth in bag evaluation.
    """
    depth = decode_float_image(msg, max_pixels)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth
