"""
Build small rosbag2 sample bags from images that ship offline with scikit-image.

Frames cycle through astronaut, coffee, chelsea, rocket and the Middlebury 2014 "Motorcycle"
left view (`skimage.data.stereo_motorcycle()`). The Motorcycle frame also gets metric ground
truth from its disparity map, Z = f·B / (d + doffs) (f = 994.978 px, B = 193.001 mm,
doffs = 31.086 px at the quarter resolution skimage ships; unknown disparity -> NaN), as a
32FC1 metres image on its own topic with the image's header stamp.

Topics: /camera/image_raw (rgb8 Image, or CompressedImage on /camera/image_raw/compressed
with --compressed), /camera/camera_info, /camera/depth_gt. Usage:

    make_sample_bag OUT_DIR [--storage mcap|sqlite3] [--frames N] [--rate 30] [--size 640x480]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import logging
from pathlib import Path
import sys

from dpt_ros.evaluation import bagio
import numpy as np

log = logging.getLogger('dpt_ros.evaluation.sample_bag')

SOURCES = ('astronaut', 'coffee', 'chelsea', 'rocket', 'motorcycle')
IMAGE_TOPIC = '/camera/image_raw'
COMPRESSED_TOPIC = '/camera/image_raw/compressed'
CAMERA_INFO_TOPIC = '/camera/camera_info'
DEPTH_GT_TOPIC = '/camera/depth_gt'
FRAME_ID = 'camera_optical_frame'
DEFAULT_RATE_HZ = 30.0
DEFAULT_SIZE = (640, 480)
# First stamp: a fixed instant so bags built on different days are identical.
START_NS = 1_700_000_000_000_000_000

# Middlebury 2014 Motorcycle calibration at the quarter resolution scikit-image ships.
MOTORCYCLE_F_PX = 994.978
MOTORCYCLE_BASELINE_MM = 193.001
MOTORCYCLE_DOFFS_PX = 31.086


def motorcycle_depth_m(disparity: np.ndarray) -> np.ndarray:
    """Middlebury disparity (px) -> metric depth (m) float32; unknown/invalid -> NaN."""
    d = np.asarray(disparity, dtype=np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
        z_mm = MOTORCYCLE_F_PX * MOTORCYCLE_BASELINE_MM / (d + MOTORCYCLE_DOFFS_PX)
    z = (z_mm / 1000.0).astype(np.float32)
    z[~(np.isfinite(d) & np.isfinite(z) & (z > 0))] = np.nan
    return z


@dataclass
class SampleImage:
    """One source picture: RGB uint8, optional metric ground truth, focal lengths in px."""

    name: str
    rgb: np.ndarray
    depth_m: np.ndarray | None
    fx: float
    fy: float


def load_source(name: str) -> SampleImage:
    """Load one of SOURCES from skimage.data (no network: these ship with the wheel)."""
    import skimage.data as data
    if name == 'motorcycle':
        left, _right, disp = data.stereo_motorcycle()
        return SampleImage(name, np.ascontiguousarray(left), motorcycle_depth_m(disp),
                           MOTORCYCLE_F_PX, MOTORCYCLE_F_PX)
    if name not in SOURCES:
        raise ValueError(f'unknown sample image {name!r}; choose from {", ".join(SOURCES)}')
    rgb = getattr(data, name)()
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    # No calibration exists for these pictures: a nominal ~60 degree horizontal field of view.
    f = 0.866 * rgb.shape[1]
    return SampleImage(name, np.ascontiguousarray(rgb[:, :, :3]), None, f, f)


def _resize(img: SampleImage, size: tuple[int, int] | None) -> SampleImage:
    if size is None or (img.rgb.shape[1], img.rgb.shape[0]) == size:
        return img
    import cv2
    w, h = size
    sx, sy = w / img.rgb.shape[1], h / img.rgb.shape[0]
    rgb = cv2.resize(img.rgb, (w, h), interpolation=cv2.INTER_AREA)
    depth = None
    if img.depth_m is not None:
        # Nearest only: interpolating depth would invent surfaces between edges and smear NaN.
        depth = cv2.resize(img.depth_m, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return SampleImage(img.name, rgb, depth, img.fx * sx, img.fy * sy)


@dataclass
class SampleBagInfo:
    """What `make_sample_bag` wrote."""

    path: Path
    storage: str
    frames: int
    gt_frames: int
    rate_hz: float
    topics: dict[str, int]
    sources: tuple[str, ...]


def make_sample_bag(path: str | Path, storage: str = 'mcap', frames: int | None = None,
                    rate_hz: float = DEFAULT_RATE_HZ,
                    size: tuple[int, int] | None = DEFAULT_SIZE,
                    sources: tuple[str, ...] = SOURCES, compressed: bool = False,
                    overwrite: bool = False) -> SampleBagInfo:
    """
    Write a sample bag; returns what was written.

    :param path: bag directory to create.
    :param storage: 'mcap' or 'sqlite3'.
    :param frames: number of camera frames (cycling through `sources`); None = one per source.
    :param rate_hz: frame rate of the stamps.
    :param size: (width, height) every frame is resized to; None keeps each picture's size.
    :param sources: which pictures, in order (names from SOURCES).
    :param compressed: write JPEG CompressedImage on COMPRESSED_TOPIC instead of raw rgb8.
    :param overwrite: replace an existing bag at `path`.
    """
    if rate_hz <= 0:
        raise ValueError(f'rate must be > 0 Hz, got {rate_hz}')
    if not sources:
        raise ValueError('no sample images chosen')
    images = [_resize(load_source(s), size) for s in sources]
    n = len(images) if frames is None else int(frames)
    if n <= 0:
        raise ValueError(f'frames must be > 0, got {n}')
    gt_frames = 0
    with bagio.BagWriter(path, storage, overwrite=overwrite) as bag:
        for i in range(n):
            img = images[i % len(images)]
            t = START_NS + int(round(i * 1e9 / rate_hz))
            h, w = img.rgb.shape[:2]
            if compressed:
                bag.write(COMPRESSED_TOPIC, bagio.COMPRESSED_TYPE, t,
                          bagio.compressed_msg(img.rgb, t, FRAME_ID))
            else:
                bag.write(IMAGE_TOPIC, bagio.IMAGE_TYPE, t,
                          bagio.image_msg(img.rgb, 'rgb8', t, FRAME_ID))
            bag.write(CAMERA_INFO_TOPIC, bagio.CAMERA_INFO_TYPE, t,
                      bagio.camera_info_msg(w, h, img.fx, img.fy, (w - 1) / 2.0,
                                            (h - 1) / 2.0, t, FRAME_ID))
            if img.depth_m is not None:
                bag.write(DEPTH_GT_TOPIC, bagio.IMAGE_TYPE, t,
                          bagio.image_msg(img.depth_m, '32FC1', t, FRAME_ID))
                gt_frames += 1
        counts = dict(bag.counts)
    return SampleBagInfo(Path(path), storage, n, gt_frames, rate_hz, counts, tuple(sources))


def _parse_size(text: str) -> tuple[int, int] | None:
    if text.lower() in ('none', 'native', '0'):
        return None
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must look like 640x480 or "native", '
                                         f'not {text!r}') from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f'size must be positive, got {text!r}')
    return w, h


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of make_sample_bag."""
    p = argparse.ArgumentParser(
        prog='make_sample_bag', description='Write a small rosbag2 of offline sample images '
        '(scikit-image) with Middlebury ground-truth depth, for bag_eval and tests.')
    p.add_argument('output', help='bag directory to create')
    p.add_argument('--storage', choices=bagio.STORAGES, default='mcap',
                   help='rosbag2 storage plugin (default: mcap)')
    p.add_argument('--frames', type=int, default=None,
                   help='number of frames, cycling through the pictures '
                   '(default: one per picture)')
    p.add_argument('--rate', type=float, default=DEFAULT_RATE_HZ,
                   help='frame rate in Hz (default: %(default)s)')
    p.add_argument('--size', type=_parse_size, default=DEFAULT_SIZE,
                   help='WIDTHxHEIGHT every frame is resized to, or "native" '
                   '(default: 640x480)')
    p.add_argument('--sources', default=','.join(SOURCES),
                   help='comma-separated pictures, in order (default: %(default)s)')
    p.add_argument('--compressed', action='store_true',
                   help=f'write JPEG CompressedImage on {COMPRESSED_TOPIC} instead of rgb8')
    p.add_argument('--overwrite', action='store_true', help='replace an existing bag')
    return p


def main(argv: list[str] | None = None) -> int:
    """Console entry point; prints what was written. Exit 1 with a message on bad input."""
    args = build_parser().parse_args(argv)
    sources = tuple(s.strip() for s in args.sources.split(',') if s.strip())
    bad = [s for s in sources if s not in SOURCES]
    if bad:
        print(f'make_sample_bag: unknown picture(s) {", ".join(bad)}; choose from '
              f'{", ".join(SOURCES)}', file=sys.stderr)
        return 1
    try:
        info = make_sample_bag(args.output, args.storage, args.frames, args.rate, args.size,
                               sources, args.compressed, args.overwrite)
    except (ValueError, bagio.BagError) as err:
        print(f'make_sample_bag: {err}', file=sys.stderr)
        return 1
    topics = ', '.join(f'{k} ({v})' for k, v in info.topics.items())
    print(f'wrote {info.path} [{info.storage}]: {info.frames} frames at {info.rate_hz:g} Hz, '
          f'{info.gt_frames} with ground-truth depth; topics: {topics}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
