"""
Image -> model input, identical to the Intel/dpt-large image processor.

The published processor stretches any image to S x S (no aspect-ratio keeping, no crop) with
PIL's bicubic filter on the uint8 image, rescales by 1/255 and normalises with mean = std = 0.5.
We compute Pillow's exact resize (OpenCV's cubic kernel gives different pixels) and map
uint8 -> float through a 256-entry table computed with the processor's float32 arithmetic, so
the result matches transformers' `DPTImageProcessor` to float rounding.

Two model-input formats (backends/base.py): 'normalized', the processor's float32 CHW
tensor (`preprocess`), and 'pixels', the resized uint8 HWC image alone (`resize_pixels`), for
backends that apply the normalisation themselves at no cost (the TT model folds it into its
patch-embedding weights, see `pixel_affine`).

Two ways to the same bits: `resample.resize_normalize` (compiled with numba, about 3.5x faster
than Pillow + table at 640x480, and it releases the GIL) and Pillow itself followed by the
table. `method='auto'` takes the compiled one where numba is importable; tests hold the two
equal, and both equal to transformers.
Pure numpy + PIL + OpenCV (+ numba); no torch, no rclpy.
"""
from __future__ import annotations

import cv2
from dpt_ros import vocabulary
from dpt_ros.errors import InvalidImage
from dpt_ros.inference import resample
import numpy as np
from PIL import Image

DEFAULT_SIZE = 384
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
RESCALE = 1.0 / 255.0
RESAMPLE = Image.Resampling.BICUBIC
METHODS = ('auto', 'compiled', 'pillow')


def _channel_luts() -> np.ndarray:
    """(3, 256) float32: value v of channel c -> (v / 255 - mean_c) / std_c, processor order."""
    v = np.arange(256, dtype=np.float32) * np.float32(RESCALE)
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32)[:, None]
    std = np.asarray(IMAGE_STD, dtype=np.float32)[:, None]
    return ((v[None, :] - mean) / std).astype(np.float32)


_LUT = _channel_luts()


def check_rgb(rgb) -> np.ndarray:
    """Validate an RGB frame: (H, W, 3) uint8, non-empty. Raises InvalidImage otherwise."""
    if not isinstance(rgb, np.ndarray):
        raise InvalidImage('bad_type', f'expected a numpy array, got {type(rgb).__name__}')
    if rgb.dtype != np.uint8:
        raise InvalidImage('bad_dtype', f'expected uint8 RGB, got dtype {rgb.dtype}')
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidImage('bad_shape', f'expected an (H, W, 3) RGB image, got shape {rgb.shape}')
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InvalidImage('empty', f'image has no pixels (shape {rgb.shape})')
    if rgb.shape[0] * rgb.shape[1] > vocabulary.MAX_PIXELS:
        raise InvalidImage('too_large', f'image {rgb.shape[1]}x{rgb.shape[0]} exceeds '
                           f'{vocabulary.MAX_PIXELS} pixels')
    return rgb


def resize_pillow(rgb: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Stretch an (H, W, 3) uint8 image to (size, size, 3) uint8 with PIL bicubic."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    img = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(img.resize((size, size), resample=RESAMPLE))


def normalize(resized: np.ndarray) -> np.ndarray:
    """
    (S, S, 3) uint8 -> (3, S, S) float32 with the processor's rescale + normalise.

    A batch (N, S, S, 3) -> (N, 3, S, S).
    """
    resized = np.asarray(resized)
    if resized.ndim == 4:
        return np.stack([normalize(im) for im in resized])
    # cv2.LUT with a float32 table gives exactly the table's values (as np.take did) at a
    # tenth of the cost, and releases the GIL, so the node's other threads keep running.
    chw = np.ascontiguousarray(resized.transpose(2, 0, 1))
    out = np.empty(chw.shape, dtype=np.float32)
    for c in range(3):
        cv2.LUT(chw[c], _LUT[c], dst=out[c])
    return out


def pixel_affine() -> tuple[np.ndarray, np.ndarray]:
    """
    (scale, offset), each (3,) float64: normalised_c = pixel_c * scale_c + offset_c.

    The processor's rescale + normalise is affine per channel, so a model whose first layer
    is linear (DPT's patch-embedding conv) can absorb it into that layer's weights and bias
    and take the uint8 pixels directly.
    """
    mean = np.asarray(IMAGE_MEAN, dtype=np.float64)
    std = np.asarray(IMAGE_STD, dtype=np.float64)
    return RESCALE / std, -mean / std


def pixel_centre() -> np.ndarray:
    """
    (3,) float64: per channel, the half-integer nearest the mean in pixel units (127.5).

    A model that folds the normalisation in takes pixel - centre: exact in bfloat16 for every
    uint8 value (|v| <= 127.5 has 8 significant bits), and centred, so its first layer does
    not build a large sum that its bias then has to cancel in low precision.
    """
    scale, offset = pixel_affine()
    return np.round(-offset / scale * 2.0) / 2.0


def _compiled(size, method: str, rgb) -> bool:
    """
    Check the arguments of preprocess / resize_pixels.

    True when the compiled resize runs, False for Pillow.
    """
    if not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f'size must be a positive integer, got {size!r}')
    if method not in METHODS:
        raise ValueError(f"unknown preprocess method '{method}'; choose one of: "
                         f"{', '.join(METHODS)}")
    check_rgb(rgb)
    return method == 'compiled' or (method == 'auto' and resample.available())


def preprocess(rgb: np.ndarray, size: int = DEFAULT_SIZE, method: str = 'auto') -> np.ndarray:
    """
    (H, W, 3) uint8 RGB of any size/aspect -> (3, size, size) float32 model input.

    method: 'auto' (compiled where numba is importable, else Pillow), 'compiled', 'pillow';
    all give identical results. Raises InvalidImage for a wrong dtype/shape or an empty image.
    """
    if _compiled(size, method, rgb):
        return resample.resize_normalize(rgb, int(size), _LUT)
    return normalize(resize_pillow(rgb, int(size)))


def resize_pixels(rgb: np.ndarray, size: int = DEFAULT_SIZE, method: str = 'auto') -> np.ndarray:
    """
    (H, W, 3) uint8 RGB of any size/aspect -> (size, size, 3) uint8 RGB.

    The processor's resize without its normalisation, the input of backends whose `input_format` is
    'pixels'.

    Always a new array (the caller may hand it to another thread while the frame's message
    is reused). Same methods and errors as `preprocess`; both give the same pixels.
    """
    if _compiled(size, method, rgb):
        return resample.resize_compiled(rgb, int(size))
    return np.array(resize_pillow(rgb, int(size)))


def preprocess_batch(images, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Preprocess a list of RGB frames into one (N, 3, size, size) float32 batch."""
    return np.stack([preprocess(im, size) for im in images])


def warm_up() -> None:
    """Compile (or load from numba's cache) the resize kernels before the first frame."""
    resample.warm_up(_LUT)
