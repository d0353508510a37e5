"""
PIL's bicubic resize of uint8 RGB, bit for bit, fused with the processor's normalisation.

Why this exists: the model input must equal what Intel/dpt-large's image processor produces,
and that processor resizes with Pillow's bicubic filter on the uint8 image. Pillow does that
in scalar C on 4 bytes per pixel (about 2.3 ms for 640x480 -> 384x384 on our CPUs, the largest
part of the node's per-frame overhead). This module computes the same integers in compiled,
vectorisable loops (numba). `resize_compiled` returns the uint8 image (the input of backends that
take pixels, see backends/base.py); `resize_normalize` writes the normalised float32 CHW
tensor in the second pass instead of a uint8 image that is then transposed and looked up.

Same result, by construction: Pillow's resampling is separable (two 1-D passes, each
rounded and clipped to uint8; which one runs first depends on the Pillow version and the
shapes, see pillow_vertical_first). Each output sample is a
weighted sum of the inputs inside the filter's support, the support is stretched by the scale
factor when shrinking (anti-aliasing), the weights of each sample are normalised to sum 1 in
double precision and then turned into fixed-point integers with 22 fractional bits, the sum
starts at one half (round to nearest) and is shifted back and clipped to 0..255. The weights
below are computed with the same double arithmetic in the same order, so every integer sum is
identical; tests compare against Pillow at many sizes, aspect ratios and random contents.

Where numba is missing, `available()` is False and callers use Pillow itself (same result).
Pure numpy + OpenCV (+ numba); no torch, no rclpy.
"""
from __future__ import annotations

import functools
import math

import cv2
from dpt_ros.inference import jit
import numpy as np

# Fixed-point fraction bits of Pillow's 8-bit resampling: 32-bit sums, 8 bits of value, two
# bits of headroom for the bicubic kernel's negative lobes and overshoot.
FRACTION_BITS = 22
_HALF = 1 << (FRACTION_BITS - 1)
# Pillow's bicubic is the Keys kernel with a = -0.5 and a support of 2 input pixels.
_BICUBIC_A = -0.5
_BICUBIC_SUPPORT = 2.0


def available() -> bool:
    """Return True when the compiled path can run (numba importable)."""
    return jit.numba is not None


def _bicubic(x: float) -> float:
    x = -x if x < 0.0 else x
    if x < 1.0:
        return ((_BICUBIC_A + 2.0) * x - (_BICUBIC_A + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * _BICUBIC_A
    return 0.0


@functools.lru_cache(maxsize=64)
def bicubic_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Fixed-point weights of a 1-D bicubic resample in_size -> out_size (whole image).

    Returns (bounds, weights): bounds[i] = (first input index, number of taps) of output i,
    weights[i, :taps] the int32 weights (sum about 2**22). Computed once per size pair.
    """
    if in_size <= 0 or out_size <= 0:
        raise ValueError(f'sizes must be positive, got {in_size} -> {out_size}')
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)          # shrinking widens the kernel: anti-aliasing
    support = _BICUBIC_SUPPORT * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    inv = 1.0 / filterscale
    bounds = np.zeros((out_size, 2), np.int64)
    weights = np.zeros((out_size, ksize), np.int32)
    one = float(1 << FRACTION_BITS)
    for i in range(out_size):
        center = (i + 0.5) * scale
        first = max(int(center - support + 0.5), 0)     # int() truncates, as C's cast does
        taps = min(int(center + support + 0.5), in_size) - first
        w = [_bicubic((t + first - center + 0.5) * inv) for t in range(taps)]
        total = 0.0
        for v in w:                         # summed in order: the rounding must match
            total += v
        if total != 0.0:
            w = [v / total for v in w]
        for t, v in enumerate(w):
            weights[i, t] = int(v * one - 0.5) if v < 0 else int(v * one + 0.5)
        bounds[i] = (first, taps)
    return bounds, weights


if jit.available():
    @jit.kernel
    def _clip8(acc):
        v = acc >> FRACTION_BITS
        if v < 0:
            return 0
        if v > 255:
            return 255
        return v

    @jit.kernel
    def _accumulate(flat, first, taps, weights, j, acc):
        """
        Compute acc = one half + sum of taps: row (first + t) x weight, whole rows at a time.

        The inner loop runs over a contiguous row (width x 3 values), which LLVM vectorises;
        this is why both passes are written as row passes (the column pass works on a
        transposed image).
        """
        n = acc.shape[0]
        for k in range(n):
            acc[k] = _HALF
        for t in range(taps):
            w = weights[j, t]
            line = flat[first + t]
            for k in range(n):
                acc[k] += np.int32(line[k]) * w

    @jit.kernel
    def _resample_rows(src, row0, bounds, weights, out):
        """Resample (R, C, 3) uint8 along axis 0 into out (S, C, 3) uint8; src[0] is row row0."""
        n = src.shape[1] * 3
        flat = src.reshape(src.shape[0], n)
        dst = out.reshape(out.shape[0], n)
        acc = np.empty(n, np.int32)
        for j in range(out.shape[0]):
            _accumulate(flat, bounds[j, 0] - row0, bounds[j, 1], weights, j, acc)
            for k in range(n):
                dst[j, k] = _clip8(acc[k])

    @jit.kernel
    def _resample_rows_to_chw(src, row0, bounds, weights, lut, out):
        """
        As _resample_rows, but writes lut[c, value] into out (3, S, C) float32.

        Each output row is clipped to uint8 in one vectorised loop, then looked up plane by
        plane, so every write is contiguous (~25% faster than one interleaved loop).
        """
        n = src.shape[1] * 3
        w = src.shape[1]
        flat = src.reshape(src.shape[0], n)
        acc = np.empty(n, np.int32)
        row = np.empty(n, np.uint8)
        for j in range(out.shape[1]):
            _accumulate(flat, bounds[j, 0] - row0, bounds[j, 1], weights, j, acc)
            for k in range(n):
                row[k] = _clip8(acc[k])
            for c in range(3):
                table = lut[c]
                plane_row = out[c, j]
                for i in range(w):
                    plane_row[i] = table[row[3 * i + c]]

    @jit.kernel
    def _lut_to_chw(src, lut, out):
        """out[c, y, x] = lut[c, src[y, x, c]] (the size already matches)."""
        for y in range(src.shape[0]):
            for x in range(src.shape[1]):
                for c in range(3):
                    out[c, y, x] = lut[c, src[y, x, c]]


def _pillow_major() -> int:
    try:
        import PIL
        return int(PIL.__version__.split('.')[0])
    except Exception:  # noqa: BLE001 - an odd version string: assume the newer behaviour
        return 99


# Read once: the pass order is decided per frame.
_PILLOW_MAJOR = _pillow_major()


def pillow_vertical_first(in_h: int, in_w: int, out_h: int, out_w: int) -> bool:
    """
    Which pass Pillow runs first; the intermediate is rounded to uint8, so order matters.

    Pillow before 13 always resamples horizontally first. Pillow 13 runs the vertical pass
    first when the height shrinks by more than twice as many pixels as the width does.
    """
    if _PILLOW_MAJOR < 13:
        return False
    dy = in_h - out_h
    return dy > 0 and dy > 2 * (in_w - out_w)


def _resample_columns(src: np.ndarray, out_w: int) -> np.ndarray:
    """(R, W, 3) uint8 -> (R, out_w, 3): a row pass on the transposed image, transposed back."""
    bounds, weights = bicubic_weights(src.shape[1], out_w)
    src_t = cv2.transpose(src)
    out_t = np.empty((out_w, src.shape[0], 3), np.uint8)
    _resample_rows(src_t, 0, bounds, weights, out_t)
    return cv2.transpose(out_t)


def _resize(rgb: np.ndarray, size: int, lut: np.ndarray | None) -> np.ndarray:
    """
    Pillow's bicubic resize to size x size.

    Uint8 (size, size, 3) when lut is None, else the normalised float32 (3, size, size) written in
    the last pass (no uint8 image between).
    """
    if not available():
        raise RuntimeError(f'numba is not importable ({jit.IMPORT_ERROR}); use Pillow')
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    need_h, need_v = w != size, h != size

    def finish(tmp: np.ndarray) -> np.ndarray:
        # The size already matches: only the table (or a private copy of the pixels) is left.
        if lut is None:
            return tmp if tmp is not rgb else rgb.copy()
        out = np.empty((3, size, size), np.float32)
        _lut_to_chw(tmp, lut, out)
        return out

    if need_v and pillow_vertical_first(h, w, size, size):
        vb, vw = bicubic_weights(h, size)
        tmp = np.empty((size, w, 3), np.uint8)
        _resample_rows(rgb, 0, vb, vw, tmp)
        return finish(_resample_columns(tmp, size) if need_h else tmp)
    row0 = 0
    tmp = rgb
    if need_v:
        vb, vw = bicubic_weights(h, size)
        if need_h:
            # Only the rows the vertical pass reads need the horizontal pass.
            row0, row1 = int(vb[0, 0]), int(vb[-1, 0] + vb[-1, 1])
            tmp = rgb[row0:row1]
    if need_h:
        tmp = _resample_columns(np.ascontiguousarray(tmp), size)
    if not need_v:
        return finish(tmp)
    if lut is None:
        out = np.empty((size, size, 3), np.uint8)
        _resample_rows(tmp, row0, vb, vw, out)
    else:
        out = np.empty((3, size, size), np.float32)
        _resample_rows_to_chw(tmp, row0, vb, vw, lut, out)
    return out


def resize_compiled(rgb: np.ndarray, size: int) -> np.ndarray:
    """
    Resize (H, W, 3) uint8 to (size, size, 3) uint8, equal to Pillow's bicubic resize.

    Equal to Image.resize((size, size), BICUBIC); always a new C-contiguous array. Requires
    available().
    """
    return _resize(rgb, size, None)


def resize_normalize(rgb: np.ndarray, size: int, lut: np.ndarray) -> np.ndarray:
    """
    (H, W, 3) uint8 -> (3, size, size) float32: Pillow bicubic, then lut[c, value].

    Requires available(). The uint8 image after resizing equals Pillow's
    Image.resize((size, size), BICUBIC) exactly; `lut` is the (3, 256) float32 table of the
    processor's rescale + normalise.
    """
    return _resize(rgb, size, lut)


def warm_up(lut: np.ndarray) -> None:
    """Compile (or load from numba's cache) every kernel, so no frame pays for it."""
    if not available():
        return
    # Shapes that take every path: both passes (either order), one pass, none.
    for hw in ((8, 12), (4, 4), (4, 9), (9, 4), (40, 5)):
        resize_normalize(np.zeros(hw + (3,), np.uint8), 4, lut)
        resize_compiled(np.zeros(hw + (3,), np.uint8), 4)
