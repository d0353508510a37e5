"""
image_transport's compressed formats, written the way its subscribers read them. No rclpy.

- `compressed` (compressed_image_transport): a JPEG of a bgr8 image, format
  'bgr8; jpeg compressed bgr8'.
- `compressedDepth` (compressed_depth_image_transport): a 12-byte ConfigHeader (int32 format,
  0 = INV_DEPTH; float32 depthParam[2] = the quantisation A, B; little-endian, as every ROS 2
  platform lays the C struct out) then a 16-bit one-channel PNG, format
  '<encoding>; compressedDepth png'. 32FC1 metres are stored as quantised inverse depth,
  q = A / d + B with A = Z0 (Z0 + 1) and B = 1 - A / depth_max (Z0 = depth_quantization),
  0 = invalid (NaN, d <= 0 or d >= depth_max); a reader gets d = A / (q - B). Depths nearer
  than A / (65535 - B) are stored as 65535 (the C++ encoder's cast would wrap). 16UC1
  millimetres are stored as they are, values above depth_max * 1000 set to 0.
"""
from __future__ import annotations

import struct

import numpy as np

JPEG_FORMAT = 'bgr8; jpeg compressed bgr8'
INV_DEPTH = 0                        # compressed_depth_image_transport's compressionFormat
CONFIG_HEADER = struct.Struct('<iff')
# compressed_depth_image_transport's defaults (its publisher parameters).
DEPTH_MAX = 10.0
DEPTH_QUANTIZATION = 100.0
PNG_LEVEL = 3
JPEG_QUALITY = 95                    # compressed_image_transport's default


def _imencode(ext: str, image: np.ndarray, params: list[int]) -> bytes:
    import cv2   # only when a compressed topic has a subscriber
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f'cv2.imencode({ext}) refused a {image.dtype} {image.shape} image')
    return buf.tobytes()


def jpeg_fields(bgr: np.ndarray, quality: int = JPEG_QUALITY) -> dict:
    """(H, W, 3) uint8 BGR -> sensor_msgs/CompressedImage fields (format, data) as JPEG."""
    bgr = np.asarray(bgr)
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f'colour image must be (H, W, 3) uint8, got {bgr.shape} {bgr.dtype}')
    import cv2
    return {'format': JPEG_FORMAT,
            'data': _imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])}


def quantization(depth_max: float, depth_quantization: float) -> tuple[float, float]:
    """Return the float32 (A, B) of the inverse-depth quantisation."""
    z0 = np.float32(depth_quantization)
    a = np.float32(z0 * (z0 + np.float32(1.0)))
    b = np.float32(np.float32(1.0) - a / np.float32(depth_max))
    return float(a), float(b)


def inverse_depth_u16(depth_m: np.ndarray, depth_max: float,
                      depth_quantization: float) -> tuple[np.ndarray, float, float]:
    """(H, W) float metres -> (quantised uint16 inverse depth, A, B); 0 = invalid."""
    a, b = quantization(depth_max, depth_quantization)
    d = np.asarray(depth_m, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0) & (d < np.float32(depth_max))
    q = np.zeros(d.shape, dtype=np.float32)
    np.divide(np.float32(a), d, out=q, where=valid)
    q += np.float32(b)
    # float -> uint16 truncates, as the C++ cast; clipped first where that cast would wrap.
    out = np.clip(q, 0.0, 65535.0).astype(np.uint16)
    out[~valid] = 0
    return out, a, b


def compressed_depth_fields(depth: np.ndarray, encoding: str = '32FC1', *,
                            depth_max: float = DEPTH_MAX,
                            depth_quantization: float = DEPTH_QUANTIZATION,
                            png_level: int = PNG_LEVEL) -> dict:
    """
    Encode a depth image as sensor_msgs/CompressedImage fields, compressedDepth (PNG).

    `depth`: (H, W) float metres for '32FC1', or uint16 millimetres for '16UC1'.
    """
    import cv2
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f'depth must be a non-empty (H, W) image, got shape {depth.shape}')
    if encoding == '32FC1':
        q, a, b = inverse_depth_u16(depth, depth_max, depth_quantization)
    elif encoding == '16UC1':
        if depth.dtype != np.uint16:
            raise ValueError(f'16UC1 depth must be uint16 millimetres, got {depth.dtype}')
        q = depth.copy()
        q[q > np.uint16(min(65535, int(depth_max * 1000.0)))] = 0
        a = b = 0.0
    else:
        raise ValueError(f"compressedDepth takes 32FC1 or 16UC1 depth, not '{encoding}'")
    png = _imencode('.png', q, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    return {'format': f'{encoding}; compressedDepth png',
            'data': CONFIG_HEADER.pack(INV_DEPTH, a, b) + png}
