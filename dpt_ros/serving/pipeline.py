"""
The depth pipeline: RGB frame -> preprocess -> backend.infer -> resize -> colourise.

One `DepthPipeline` calls the backend a `BackendSupervisor` holds and is shared by the runner,
the node and the evaluation tools, so every consumer gets the same numbers and the same stage
timings. Decoding ROS messages happens before this (image_codec); metric depth and publishing
after it. No rclpy here.

For throughput with batches or data-parallel backends the three steps are exposed separately:
`prepare` (per frame, any thread), `infer` (one call per batch), `finish` (per frame).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import logging
import threading
import time

from dpt_ros import vocabulary
from dpt_ros.errors import BackendError
from dpt_ros.inference import colorize as colorize_mod
from dpt_ros.inference.postprocess import resize_depth
from dpt_ros.inference.preprocess import (check_rgb, normalize, preprocess, resize_pixels,
                                          warm_up as warm_up_resize)
from dpt_ros.serving.supervisor import BackendSupervisor
import numpy as np

log = logging.getLogger('dpt_ros.serving.pipeline')


@dataclass
class DepthResult:
    """
    One frame's outputs.

    depth: (H, W) float32 relative inverse depth at input size (larger = nearer).
    color: (H, W, 3) uint8 BGR false colour, or None when not asked for.
    raw:   (S, S) float32 model output (`predicted_depth`).
    timings_ms: stage name (perf.STAGES) -> milliseconds spent on this frame.
    """

    depth: np.ndarray
    color: np.ndarray | None
    raw: np.ndarray
    timings_ms: dict = field(default_factory=dict)


@dataclass
class PreparedFrame:
    """A frame prepare()d for inference; `context` rides along to finish (the caller's)."""

    model_input: np.ndarray
    out_hw: tuple
    context: object = None


class DepthPipeline:
    """
    Preprocess, infer, postprocess and colourise frames with the backend `supervisor` holds.

    Every call goes through the supervisor (which counts the calls in flight and may swap the
    backend at runtime); stage timings go to its `perf`, where it also counts the fallbacks.
    """

    def __init__(self, supervisor: BackendSupervisor,
                 colormap: str = colorize_mod.DEFAULT_COLORMAP, norm: str = 'percentile',
                 norm_low: float = 2.0, norm_high: float = 98.0, resize_method: str = 'cv2'):
        if not isinstance(supervisor, BackendSupervisor):
            raise TypeError('DepthPipeline takes a serving.supervisor.BackendSupervisor, not '
                            f'{type(supervisor).__name__}')
        self.supervisor = supervisor
        self.perf = supervisor.perf
        # cv2 bicubic equals transformers' torch resize to float rounding (tested) and is
        # about 10x faster at 640x480: it is on the per-frame path of the node.
        self.resize_method = resize_method
        self.image_size = int(self.backend.info.image_size)
        if self.input_format not in vocabulary.INPUT_FORMATS:
            known = ', '.join(vocabulary.INPUT_FORMATS)
            raise BackendError(f'backend {self.backend.info.name} names an unknown input format '
                               f"'{self.input_format}' (known: {known})")
        self._color_lock = threading.Lock()
        self.set_colorization(colormap, norm, norm_low, norm_high)

    @property
    def backend(self):
        """Return the backend the next call goes to (the supervisor's)."""
        return self.supervisor.backend

    def set_colorization(self, colormap: str, norm: str, low: float, high: float) -> None:
        """Change the colour mapping (validated; ValueError names the valid choices)."""
        colorize_mod.validate(colormap, norm, low, high)
        with self._color_lock:
            self._color = (colormap, norm, float(low), float(high))

    @property
    def colorization(self) -> tuple[str, str, float, float]:
        """(colormap, norm, low, high) currently used."""
        return self._color

    @property
    def input_format(self) -> str:
        """
        Return what prepare() hands the current backend (backends/base.py).

        The resized uint8 pixels when it normalises them itself, else the processor's float32
        tensor.
        """
        return self.backend.info.input_format

    def model_input(self, rgb: np.ndarray) -> np.ndarray:
        """
        (H, W, 3) uint8 RGB -> one frame in the backend's input format, unmeasured.

        (S, S, 3) uint8 pixels or (3, S, S) float32. Raises InvalidImage on bad frames.
        """
        if self.input_format == 'pixels':
            return resize_pixels(rgb, self.image_size)
        return preprocess(rgb, self.image_size)

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """model_input, timed as the 'preprocess' stage."""
        with self.perf.stage('preprocess'):
            return self.model_input(rgb)

    def prepare_frame(self, rgb: np.ndarray, context: object = None) -> PreparedFrame:
        """prepare() one frame for the scheduler's stages, `context` riding along to finish."""
        return PreparedFrame(self.prepare(rgb), rgb.shape[:2], context)

    def infer_prepared(self, prepared: PreparedFrame) -> np.ndarray:
        """Infer one PreparedFrame: (S, S) float32 raw predicted_depth (a scheduler stage)."""
        return self.infer(prepared.model_input[None])[0]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """
        Run a batch of prepare() outputs: (N, S, S) float32 raw predicted_depth.

        One frame without the N axis is fine.
        """
        batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        with self.supervisor.using() as backend:
            if batch.dtype != np.uint8:
                batch = batch.astype(np.float32, copy=False)
            elif backend.info.input_format != 'pixels':
                # Prepared for a backend that took pixels, which a runtime fallback has
                # replaced since: normalise here rather than fail the frames in flight.
                batch = normalize(batch)
            t0 = time.perf_counter()
            out = backend.infer(batch)
            ms = (time.perf_counter() - t0) * 1e3
        self.perf.add_stage('inference', ms)
        if backend.info.device_ms is not None:
            self.perf.add_device_ms(float(backend.info.device_ms))
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (batch.shape[0], self.image_size, self.image_size):
            raise BackendError(f'backend {backend.info.name} returned shape {out.shape} '
                               f'for a batch of shape {batch.shape}')
        self.sync_counts()
        return out

    def sync_counts(self) -> None:
        """Copy the backend's own fallback counters into perf (they are absolute)."""
        try:
            counts = self.backend.fallback_counts()
        except Exception as exc:  # a backend bug must not stop frames
            log.debug('fallback_counts() failed: %s', exc)
            return
        self.perf.merge_counts({k: v for k, v in counts.items()
                                if k != 'backend_fallback_count'})

    def finish(self, raw: np.ndarray, out_hw, want_color: bool = True,
               depth_out: np.ndarray | None = None,
               color_out: np.ndarray | None = None) -> DepthResult:
        """
        (S, S) raw output -> DepthResult at out_hw (and colour when asked).

        depth_out / color_out: arrays to write the depth / colour into (the node passes its
        messages' buffers, see image_codec.OutputImage); new arrays when None.
        """
        timings = {}
        t0 = time.perf_counter()
        depth = resize_depth(raw, out_hw, method=self.resize_method, out=depth_out)
        timings['postprocess'] = (time.perf_counter() - t0) * 1e3
        self.perf.add_stage('postprocess', timings['postprocess'])
        color = None
        if want_color:
            cmap, norm, low, high = self._color
            t0 = time.perf_counter()
            color = colorize_mod.colorize(depth, cmap, norm, low, high, out=color_out)
            timings['colorize'] = (time.perf_counter() - t0) * 1e3
            self.perf.add_stage('colorize', timings['colorize'])
        return DepthResult(depth=depth, color=color, raw=np.asarray(raw), timings_ms=timings)

    def process(self, rgb: np.ndarray, want_color: bool = True) -> DepthResult:
        """One RGB frame -> DepthResult (timings include preprocess and inference)."""
        return self.process_batch([rgb], want_color)[0]

    def process_batch(self, images, want_color: bool = True) -> list[DepthResult]:
        """Several frames in one backend call; one DepthResult per frame, in order."""
        images = list(images)
        if not images:
            return []
        for im in images:
            check_rgb(im)
        t0 = time.perf_counter()
        batch = np.stack([self.prepare(im) for im in images])
        pre_ms = (time.perf_counter() - t0) * 1e3 / len(images)
        t0 = time.perf_counter()
        raw = self.infer(batch)
        inf_ms = (time.perf_counter() - t0) * 1e3 / len(images)
        results = []
        for im, r in zip(images, raw):
            res = self.finish(r, im.shape[:2], want_color)
            res.timings_ms = {'preprocess': pre_ms, 'inference': inf_ms, **res.timings_ms}
            results.append(res)
        return results

    def warm_up(self) -> tuple[float, str | None]:
        """
        One frame through every stage, outside `perf`; return (seconds, error or None).

        First calls import torch for the resize, build traces, compile kernels: done before
        serving so that no figure includes them. A failing inference is returned, not raised.
        """
        t0 = time.monotonic()
        warm_up_resize()   # the compiled resize: JIT or numba's cache load, not on the first frame
        s = self.image_size
        batch = self.model_input(np.zeros((s, s, 3), np.uint8))[None]
        error = None
        try:
            raw = np.asarray(self.backend.infer(batch), dtype=np.float32)[0]
        except Exception as exc:  # the backend is judged frame by frame
            error = f'{type(exc).__name__}: {exc}'
            raw = np.zeros((s, s), np.float32)
        # A size other than S x S: same-size resizes take a shortcut that imports nothing.
        colorize_mod.colorize(resize_depth(raw, (s // 2 + 1, s)), *self.colorization)
        return time.monotonic() - t0, error

    def close(self) -> None:
        """Close the backend (releases device / memory), through the supervisor."""
        self.supervisor.close()
