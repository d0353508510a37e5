"""
Offline evaluation: every frame of the image topic straight into `DepthPipeline`.

As fast as the backend allows; the first frames' raw outputs are compared (PCC) with the CPU
fp32 reference on the same weights.
"""
from __future__ import annotations

import collections
import logging
import math
import time

from dpt_ros.backends import BackendError
from dpt_ros.backends.cli_options import options_from_args
from dpt_ros.depth.accuracy import frame_metrics, FrameDepthMetrics
from dpt_ros.depth.metric import AlignmentError
from dpt_ros.errors import EvalError, InvalidImage
from dpt_ros.evaluation import bagio, results
from dpt_ros.evaluation.frames import progress, read_frames
from dpt_ros.evaluation.results import EvalResult
import numpy as np

log = logging.getLogger('dpt_ros.evaluation.offline')

STAGES = ('preprocess', 'inference', 'postprocess', 'colorize')


class _Run:
    """What one offline pass accumulates, frame by frame."""

    def __init__(self, args, pipe, src: bagio.BagSource):
        self.args, self.pipe, self.src = args, pipe, src
        self.bad: collections.Counter = collections.Counter()
        self.align_fail: collections.Counter = collections.Counter()
        self.lat_ms: list[float] = []
        self.out_times: list[float] = []
        self.per_frame: list[FrameDepthMetrics] = []
        self.records: list[dict] = []
        self.pcc_inputs: list[tuple[np.ndarray, np.ndarray]] = []
        self.strips = results.StripPlan(src.frame_count, args.strips)
        self.first_run_ms: float | None = None
        self.t_start: float | None = None

    def warm_up(self, rgb: np.ndarray) -> None:
        """Untimed first calls (they allocate, compile or trace), reported as first_run_ms."""
        for _ in range(max(self.args.warmup, 0)):
            w0 = time.perf_counter()
            self.pipe.process(rgb, want_color=False)
            self.first_run_ms = self.first_run_ms or (time.perf_counter() - w0) * 1e3
        self.first_run_ms = self.first_run_ms or 0.0
        self.t_start = time.perf_counter()

    def frame(self, frame: bagio.Frame) -> None:
        """Time one frame through the pipeline; a bad one is counted and skipped."""
        from dpt_ros.inference.preprocess import preprocess
        try:
            rgb = frame.rgb()
        except InvalidImage as err:
            self.bad[err.reason] += 1
            log.warning('frame %d skipped (%s): %s', frame.index, err.reason, err)
            return
        if self.first_run_ms is None:
            self.warm_up(rgb)
        f0 = time.perf_counter()
        try:
            res = self.pipe.process(rgb, want_color=True)
        except InvalidImage as err:
            self.bad[err.reason] += 1
            return
        now = time.perf_counter()
        self.lat_ms.append((now - f0) * 1e3)
        self.out_times.append(now - self.t_start)
        if len(self.pcc_inputs) < self.args.pcc_frames:
            self.pcc_inputs.append((preprocess(rgb, self.pipe.image_size), res.raw.copy()))
        m = self._metrics(res.depth, frame)
        rec = {'index': frame.index, 'stamp_ns': frame.stamp_ns, 'latency_ms': self.lat_ms[-1],
               **res.timings_ms}
        if m is not None:
            rec.update(m.as_dict())
        self.records.append(rec)
        has_gt = frame.gt_depth is not None
        if self.strips.wants(frame.index, has_gt):
            self.strips.add(*results.strip(frame, rgb, res.depth, res.color, m), has_gt)

    def _metrics(self, depth: np.ndarray, frame: bagio.Frame) -> FrameDepthMetrics | None:
        if frame.gt_depth is None:
            return None
        try:
            m = frame_metrics(depth, frame.gt_depth)
        except AlignmentError as err:
            self.align_fail[err.reason] += 1
            return None
        self.per_frame.append(m)
        return m

    def throughput(self, wall_s: float, load_s: float) -> dict:
        n = len(self.lat_ms)
        # Stage means over the timed frames only (the warm-up is reported as first_run_ms).
        stage_ms = {k: float(np.mean([r[k] for r in self.records if k in r]))
                    for k in STAGES if any(k in r for r in self.records)}
        return {
            'frames_evaluated': n, 'frames_in_bag': self.src.frame_count,
            'frames_skipped': dict(self.bad),
            'fps_e2e': n / wall_s if wall_s > 0 else math.nan,
            'fps': 1e3 / stage_ms['inference'] if stage_ms.get('inference') else math.nan,
            **results.latency_stats(self.lat_ms),
            'first_run_ms': self.first_run_ms, 'model_load_s': load_s,
            'stage_ms_mean': stage_ms,
        }


def _start_pipeline(args):
    from dpt_ros.backends import create_backend
    from dpt_ros.serving.pipeline import DepthPipeline
    from dpt_ros.serving.supervisor import BackendSupervisor
    t0 = time.perf_counter()
    try:
        started = create_backend(args.backend, options_from_args(args),
                                 allow_fallback=not args.no_fallback)
    except BackendError as err:
        raise EvalError(f'backend {args.backend!r} cannot start: {err}') from None
    return DepthPipeline(BackendSupervisor(started)), time.perf_counter() - t0


def run_offline(args, src: bagio.BagSource) -> EvalResult:
    """Frames straight into DepthPipeline; returns the evaluation."""
    pipe, load_s = _start_pipeline(args)
    info = pipe.backend.info
    run = _Run(args, pipe, src)
    limit = args.max_frames or src.frame_count
    bar = progress(args.no_progress, min(limit, src.frame_count), 'offline')
    warnings: list[str] = []
    try:
        for frame in read_frames(src, warnings):
            if frame.index >= limit:
                break
            bar.update(1)
            run.frame(frame)
    finally:
        bar.close()
        wall_s = (time.perf_counter() - run.t_start) if run.t_start else 0.0
        backend = {**info.as_dict(), 'requested': args.backend,
                   'fallback_reason': pipe.supervisor.fallback_reason,
                   'fallback_counts': pipe.backend.fallback_counts()}
        pipe.close()
    pcc_section = pcc_vs_reference(args, info, run.pcc_inputs) if run.pcc_inputs else {}
    return EvalResult(
        mode='offline', evaluated=len(run.lat_ms),
        weights_random=bool(info.extra.get('weights_random', False)),
        throughput=run.throughput(wall_s, load_s), pcc=pcc_section, backend=backend,
        accuracy=results.accuracy(run.per_frame, src, run.align_fail), warnings=warnings,
        frames=run.records, strips=run.strips.items, latencies_ms=run.lat_ms,
        out_times_s=run.out_times, target_fps=None)


def pcc_vs_reference(args, info, inputs) -> dict:
    """Run the CPU fp32 torch reference (same weights and seed) on the first frames."""
    from dpt_ros.backends import reference
    same = (info.name == 'torch' and info.device == 'cpu' and info.dtype == 'fp32'
            and info.execution_mode == 'eager')
    try:
        values = reference.pcc_against_reference(options_from_args(args), inputs)
    except BackendError as err:
        log.warning('CPU fp32 reference cannot start: %s', err)
        return {'error': f'reference cannot start: {err}'}
    return {'pcc_min': float(np.min(values)), 'pcc_mean': float(np.mean(values)),
            'frames': len(values), 'per_frame': values, 'reference': reference.DESCRIPTION,
            'reference_is_evaluated_backend': same}
