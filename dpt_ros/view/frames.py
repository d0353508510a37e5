"""
The latest frame of one stream, encoded for the page only when a page asks for it.

`put` keeps a reference to the message and nothing else (the subscriber's callback stays
O(1)); `encoded` decodes and encodes the newest one once, however many pages want it. Older
frames are simply replaced: nothing queues. No rclpy import.
"""
from __future__ import annotations

import threading

import numpy as np

IMAGE_FORMATS = {'jpeg': ('.jpg', 'image/jpeg'), 'png': ('.png', 'image/png')}


def encode_rgb(rgb: np.ndarray, image_format: str = 'jpeg', jpeg_quality: int = 80) -> bytes:
    """RGB uint8 (H, W, 3) -> JPEG or PNG bytes."""
    import cv2  # heavy: only when a page is open
    ext, _ = IMAGE_FORMATS[image_format]
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == 'jpeg' else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ValueError(f'{image_format} encoding failed for a {rgb.shape} image')
    return buf.tobytes()


class FrameSlot:
    """
    One stream's latest message and its encoding; thread-safe.

    :param decode: message -> RGB uint8 (H, W, 3); raises on a bad message (counted).
    """

    def __init__(self, name: str, decode, image_format: str = 'jpeg', jpeg_quality: int = 80):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format '{image_format}': use one of "
                             f"{', '.join(IMAGE_FORMATS)}")
        self.name = name
        self.image_format = image_format
        self.mime = IMAGE_FORMATS[image_format][1]
        self._decode = decode
        self._quality = jpeg_quality
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._msg = None
        self._cache: tuple[int, bytes | None] = (0, None)
        self.version = 0          # frames received (the newest one's number)
        self.encoded_count = 0    # frames decoded and encoded for a page
        self.errors = 0           # frames that did not decode or encode
        self.last_error = ''

    def put(self, msg) -> int:
        """Keep `msg` as the latest frame, replacing the one before; return its number."""
        with self._lock:
            self._msg = msg
            self.version += 1
            return self.version

    def encoded(self) -> tuple[int, bytes | None]:
        """Return (number, bytes) of the latest frame, encoded once; (0, None) before any."""
        with self._encode_lock:
            with self._lock:
                version, msg = self.version, self._msg
            if version == self._cache[0]:
                return self._cache
            data = None
            try:
                data = encode_rgb(self._decode(msg), self.image_format, self._quality)
                self.encoded_count += 1
            except Exception as exc:  # a bad frame must not stop the page: counted, skipped
                self.errors += 1
                self.last_error = f'{type(exc).__name__}: {exc}'
            self._cache = (version, data)
            return self._cache

    def stats(self) -> dict:
        """Counters for the page and the tests."""
        return {'received': self.version, 'encoded': self.encoded_count,
                'errors': self.errors, 'last_error': self.last_error}
