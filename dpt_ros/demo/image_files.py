"""
Image files and folders for the command-line tools (runner, eval_pcc).

Reads .jpg .jpeg .png .bmp into RGB uint8. Grayscale, 16-bit, palette and RGBA files are
converted to 8-bit RGB with a logged note (alpha is dropped: the model sees colour only).
Problems raise `InvalidImage` with a message naming the file and what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
import logging
import os

from dpt_ros.errors import InvalidImage
import numpy as np

log = logging.getLogger('dpt_ros.demo.image_files')

SUPPORTED_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
DEFAULT_IMAGE_NAME = 'astronaut'


@dataclass
class LoadedImage:
    """An RGB frame and where it came from."""

    name: str           # file stem (or 'astronaut' for the bundled image)
    path: str           # file path, or 'skimage.data.astronaut' for the bundled image
    rgb: np.ndarray     # (H, W, 3) uint8
    note: str = ''      # conversion applied, if any (e.g. 'grayscale -> RGB')


def default_image() -> LoadedImage:
    """Return the bundled offline test image: scikit-image's astronaut (512x512 RGB)."""
    from skimage import data
    rgb = np.ascontiguousarray(data.astronaut()[..., :3], dtype=np.uint8)
    return LoadedImage(DEFAULT_IMAGE_NAME, 'skimage.data.astronaut', rgb)


def _to_rgb8(img) -> tuple[np.ndarray, str]:
    """Convert a PIL image in any mode to (H, W, 3) uint8, with a note saying how."""
    mode = img.mode
    if mode == 'RGB':
        return np.asarray(img, dtype=np.uint8), ''
    if mode in ('I;16', 'I;16B', 'I;16L', 'I'):
        # 16/32-bit grey: scale the full range into 8 bits rather than clipping at 255.
        a = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith('I;16') or a.max() <= 65535 else float(a.max())
        g = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2), f'{mode} grayscale -> 8-bit RGB'
    if mode == 'F':
        a = np.asarray(img, dtype=np.float64)
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        g = np.clip(np.nan_to_num((a - lo) / max(hi - lo, 1e-12)) * 255.0, 0, 255)
        g = np.round(g).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2), 'float grayscale -> 8-bit RGB (min-max)'
    kind = {'L': 'grayscale', 'LA': 'grayscale+alpha', '1': '1-bit', 'P': 'palette',
            'PA': 'palette+alpha', 'RGBA': 'RGBA', 'CMYK': 'CMYK', 'YCbCr': 'YCbCr',
            'RGBX': 'RGBX', 'LAB': 'LAB', 'HSV': 'HSV'}.get(mode, mode)
    note = f'{kind} -> RGB' + (' (alpha dropped)' if 'A' in mode else '')
    return np.asarray(img.convert('RGB'), dtype=np.uint8), note


def load_image(path: str) -> LoadedImage:
    """Read one image file as RGB uint8. Raises InvalidImage with a clear message."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.exists(path):
        raise InvalidImage('not_found', f'image file not found: {path}')
    if os.path.isdir(path):
        raise InvalidImage('is_directory', f'{path} is a folder; use --images-dir for folders')
    ext = os.path.splitext(path)[1].lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InvalidImage('unsupported_extension',
                           f"{path}: unsupported file type '{ext or '(none)'}'; supported: "
                           f"{' '.join(SUPPORTED_EXTENSIONS)}")
    try:
        with Image.open(path) as img:
            img.load()
            rgb, note = _to_rgb8(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage('decode_failed',
                           f'{path}: not a readable image ({type(exc).__name__}: {exc})') from exc
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InvalidImage('empty', f'{path}: image has no pixels')
    if note:
        log.info('%s: %s', path, note)
    return LoadedImage(os.path.splitext(os.path.basename(path))[0], path,
                       np.ascontiguousarray(rgb), note)


def list_images(folder: str) -> list[str]:
    """
    Supported image files in a folder (not recursive), sorted by name.

    Raises InvalidImage when the folder does not exist or holds no supported file; the message
    names the supported extensions.
    """
    if not os.path.isdir(folder):
        raise InvalidImage('not_found', f'image folder not found: {folder}')
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if os.path.splitext(f)[1].lower() in SUPPORTED_EXTENSIONS
                   and os.path.isfile(os.path.join(folder, f)))
    if not files:
        raise InvalidImage('empty_folder',
                           f'no images in {folder}: supported extensions are '
                           f"{' '.join(SUPPORTED_EXTENSIONS)} (case-insensitive)")
    return files
