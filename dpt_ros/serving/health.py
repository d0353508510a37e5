"""
The node's health: a level, a message and key-values, from the counters and perf snapshots.

`HealthReport.statuses()` judges one status for the pipeline and one per camera, each level
from what changed since the previous call (drops rising, failures, fallback active, FPS below
`min_fps`, hung calls). The ROS node only turns each `Status` into a DiagnosticStatus. More
key-values for the pipeline status (per-chip figures, a points counter) are one
`add_section()` away; nothing else needs to change. No rclpy here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from dpt_ros.perf.conventions import greenwave_values
from dpt_ros.perf.stats import FALLBACK_KEYS, STAGES

# diagnostic_msgs/DiagnosticStatus levels.
OK, WARN, ERROR = 0, 1, 2


@dataclass
class Status:
    """One diagnostic status: level, name, hardware id, message, key-values (raw values)."""

    level: int
    name: str
    hardware_id: str
    message: str
    values: dict = field(default_factory=dict)

    def key_values(self) -> list[tuple[str, str]]:
        """Return the key-values as strings, the way a person reads them in rqt."""
        return [(k, format_value(v)) for k, v in self.values.items()]


@dataclass
class CameraView:
    """What the ROS side knows of one camera (topics, QoS, side channels)."""

    key: str                      # the scheduler's camera name (its namespace, '' = own)
    input_topic: str
    output_topic: str             # resolved; also the status name's topic (greenwave reads it)
    reliability: str = ''
    publishers: int = 0
    camera_info: bool = False
    metric: object | None = None  # depth.metric.MetricDepth
    refs: object | None = None    # depth.metric.ReferenceBuffer (metric.mode reference)
    outputs: dict = field(default_factory=dict)   # key-values of further outputs (points)
    topic_times: object | None = None  # perf.conventions.TopicTimes of output_topic


class HealthReport:
    """Judge the pipeline and its cameras; remembers the counts of the previous call."""

    def __init__(self, node_name: str, *, requested_backend: str, requested_device: str,
                 timeout_s: float, min_fps: float):
        self.node_name = node_name
        self.requested_backend = requested_backend
        self.requested_device = requested_device
        self.timeout_s = timeout_s
        self.min_fps = min_fps
        self._sections: list[Callable[[], dict]] = []
        self._last_node: dict = {}
        self._last_camera: dict[str, dict] = {}

    def add_section(self, values: Callable[[], dict]) -> None:
        """Add key-values (a callable returning a dict) to the pipeline status."""
        self._sections.append(values)

    def reset_cameras(self) -> None:
        """Forget the per-camera counts (a new scheduler starts from zero)."""
        self._last_camera.clear()

    def statuses(self, scheduler, perf, supervisor, input_format: str,
                 cameras: list[CameraView]) -> list[Status]:
        """One status for the pipeline and one per camera, judged since the last call."""
        out = [self._pipeline(scheduler, perf, supervisor, input_format)]
        hw = out[0].hardware_id
        out += [self._camera(scheduler, cam, hw) for cam in cameras]
        return out

    # ----- the pipeline status -----
    def _pipeline(self, scheduler, perf, supervisor, input_format: str) -> Status:
        backend = supervisor.backend
        info = backend.info
        health = scheduler.health
        snap = perf.snapshot()
        counts = scheduler.counts()
        delta = _delta(counts, self._last_node)
        self._last_node = counts
        fallback = supervisor.fallback_reason
        chips = backend.chip_stats() if hasattr(backend, 'chip_stats') else {}
        level, why = self.judge(snap, delta, health, fallback=self._fallback_text(
            info, fallback) if fallback is not None else None, chips_out=_chips_out(chips))
        kv = {
            'backend': info.name, 'backend_requested': self.requested_backend,
            'fallback_reason': fallback or '',
            'device': info.device, 'execution_mode': info.execution_mode, 'dp': info.dp,
            'batch': info.batch_size, 'workers': scheduler.concurrency,
            'image_size': info.image_size, 'model': info.model_name, 'weights': info.weights,
            # executed, and what was asked for (auto, or a bf16 this CPU cannot run)
            'dtype': info.dtype, 'dtype_requested': info.dtype_requested or info.dtype,
            'model_input': input_format,
            'input_fps': snap['input_fps'], 'output_fps': snap['output_fps'],
            'device_fps': _device_fps(snap, backend, scheduler.concurrency),
            # receive -> publish: always valid. e2e (header stamp -> publish): NaN while the
            # stamps are not on this clock (bag replay, sim time).
            'latency_ms_p50': snap['latency_ms_p50'], 'latency_ms_p95': snap['latency_ms_p95'],
            'latency_ms_p99': snap['latency_ms_p99'],
            **scheduler.e2e_latency(),
        }
        for s in STAGES:
            kv[f'{s}_ms'] = snap.get(f'{s}_ms', float('nan'))
        kv.update(counts)
        for k in FALLBACK_KEYS:
            kv[k] = snap.get(k, 0)
        if hasattr(backend, 'fallback_counts'):
            for k, val in backend.fallback_counts().items():
                kv.setdefault(k, val)
        kv['reasons'] = format_reasons(snap['reasons'])
        kv['last_failure'] = health.last_failure
        kv['hung_calls'] = health.hung_calls
        kv.update(chips)   # per chip beside the totals (multi-chip TT)
        for section in self._sections:
            kv.update(section())
        hw = info.device if info.device else 'unknown'
        return Status(level, f'{self.node_name}: depth pipeline', hw, why, kv)

    def _fallback_text(self, info, reason: str) -> str:
        return (f'fallback active: running {info.name} on {info.device} instead of '
                f'{self.requested_backend} on {self.requested_device} ({reason})')

    # ----- one camera's status -----
    def _camera(self, scheduler, cam: CameraView, hw: str) -> Status:
        cs = scheduler.perf(cam.key).snapshot()
        cc = scheduler.counts(cam.key)
        delta = _delta(cc, self._last_camera.get(cam.key, {}))
        self._last_camera[cam.key] = cc
        level, why = self.judge(cs, delta, scheduler.health)
        kv = {
            'input_topic': cam.input_topic, 'output_topic': cam.output_topic,
            'reliability': cam.reliability, 'publishers': cam.publishers,
            'input_fps': cs['input_fps'], 'output_fps': cs['output_fps'],
            'latency_ms_p50': cs['latency_ms_p50'], 'latency_ms_p95': cs['latency_ms_p95'],
            'latency_ms_p99': cs['latency_ms_p99'],
            **scheduler.e2e_latency(cam.key),
            'camera_info': 'yes' if cam.camera_info else 'not received',
            # Slot + prepared frame waiting for a worker; never more than 2 by design.
            'max_waiting_frames': scheduler.max_pending(cam.key),
        }
        kv.update(cc)
        kv['reasons'] = format_reasons(cs['reasons'])
        m = cam.metric
        if m is not None:
            kv.update(metric_mode=m.mode, metric_ready=m.ready, metric_scale=m.scale,
                      metric_shift=m.shift)
            if m.mode == 'reference' and cam.refs is not None:
                kv['metric_references_fitted'] = cam.refs.taken
                kv['metric_references_unmatched'] = cam.refs.unmatched
        kv.update(cam.outputs)
        # greenwave_monitor / NITROS keys beside ours; greenwave's dashboard files a status
        # under the topic that starts at the name's first '/', here the output topic.
        kv.update(greenwave_values(cam.topic_times, cs['input_fps'], cc))
        return Status(level, f'{self.node_name}: camera {cam.output_topic}', hw, why, kv)

    # ----- levels -----
    def judge(self, snap: dict, delta: dict, health, fallback: str | None = None,
              chips_out: str | None = None):
        """Return (level, message) from a snapshot, the counts' change and the health."""
        errors, warns = [], []
        if chips_out:
            warns.append(chips_out)
        if health.hung_calls:
            errors.append(f'{health.hung_calls} inference call(s) hung past '
                          f'{self.timeout_s:g} s')
        if delta['frames_failed'] and health.consecutive_failures:
            errors.append(f"backend failing: {delta['frames_failed']} frame(s) failed "
                          f'({health.last_failure})')
        elif delta['frames_failed']:
            warns.append(f"{delta['frames_failed']} frame(s) failed, backend recovered")
        if fallback:
            warns.append(fallback)
        if self.min_fps > 0 and snap['input_fps'] > 0 and snap['output_fps'] < self.min_fps:
            warns.append(f"output {snap['output_fps']:.1f} FPS below min_fps {self.min_fps:g}")
        if delta['frames_dropped']:
            warns.append(f"drops rising: {delta['frames_dropped']} stale frame(s) dropped "
                         '(backend slower than input)')
        if delta['frames_rejected']:
            warns.append(f"{delta['frames_rejected']} bad input frame(s) rejected")
        if errors:
            return ERROR, '; '.join(errors + warns)
        if warns:
            return WARN, '; '.join(warns)
        return OK, 'running'


def _chips_out(chips: dict) -> str | None:
    """Say which chips left the rotation (a WARN while the others serve), or None."""
    out = [i for i in range(int(chips.get('chips', 0))) if not chips.get(f'chip{i} in_rotation')]
    if not out:
        return None
    names = ', '.join(f"chip{i} ({chips.get(f'chip{i} last_error') or 'failed'})" for i in out)
    return f"{len(out)} of {chips['chips']} chips out of rotation: {names}"


def _delta(counts: dict, last: dict) -> dict:
    return {k: counts[k] - last.get(k, 0) for k in counts}


def _device_fps(snap: dict, backend, workers: int) -> float:
    fps = snap['device_fps']
    if fps != fps:   # NaN: no trace wall time; use the backend's figure or the infer time
        fps = backend.info.extra.get('device_fps', float('nan'))
    if fps != fps and snap['inference_ms'] == snap['inference_ms']:
        parallel = min(workers, max(1, int(getattr(backend, 'max_concurrency', 1))))
        fps = parallel * 1e3 / snap['inference_ms']
    return fps


def format_reasons(reasons: dict) -> str:
    """Return 'key=count, ...' sorted, or 'none'."""
    return ', '.join(f'{k}={v}' for k, v in sorted(reasons.items())) or 'none'


def format_value(value) -> str:
    """Return a key-value's text: floats to 3 places ('nan'), booleans as true/false."""
    if isinstance(value, float):
        return 'nan' if value != value else f'{value:.3f}'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)
