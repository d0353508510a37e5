"""
One evaluation's results: the sections of report.json and what only the report's charts need.

`EvalResult.as_json()` is report.json's content (before the report adds `report_files`), in
the key order bag_eval has always written; the strips, per-frame latencies, output times and
target FPS are fields of their own, drawn into the charts and strips but not written as JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math

from dpt_ros.backends.precision import describe_dtype
from dpt_ros.depth.accuracy import error_map, FrameDepthMetrics, summarize
from dpt_ros.evaluation import bagio
from dpt_ros.perf.stats import percentile
import numpy as np


@dataclass
class EvalResult:
    """The outcome of `offline` or `replay`; `pcc` is None in replay (no section there)."""

    mode: str
    evaluated: int
    weights_random: bool
    throughput: dict
    backend: dict
    accuracy: dict
    warnings: list[str]
    frames: list[dict]
    pcc: dict | None = None
    title: str = ''
    input: dict = field(default_factory=dict)  # noqa: A003 -- report.json's key
    summary: dict = field(default_factory=dict)
    strips: list[tuple[str, np.ndarray]] = field(default_factory=list, repr=False)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    out_times_s: list[float] = field(default_factory=list, repr=False)
    target_fps: float | None = None

    def as_json(self) -> dict:
        """Return report.json's sections, in its key order."""
        out = {'mode': self.mode, 'evaluated': self.evaluated,
               'weights_random': self.weights_random, 'throughput': self.throughput}
        if self.pcc is not None:
            out['pcc'] = self.pcc
        out.update({'backend': self.backend, 'accuracy': self.accuracy,
                    'warnings': self.warnings, 'frames': self.frames, 'title': self.title,
                    'input': self.input, 'summary': self.summary})
        return out

    @classmethod
    def from_json(cls, doc: dict) -> 'EvalResult':
        """Rebuild the JSON part from report.json's content (the chart-only fields stay empty)."""
        names = ('mode', 'evaluated', 'weights_random', 'throughput', 'pcc', 'backend',
                 'accuracy', 'warnings', 'frames', 'title', 'input', 'summary')
        return cls(**{k: doc[k] for k in names if k in doc})

    def write_report(self, out_dir) -> dict:
        """Write report.json, report.html, charts and strips; return their paths."""
        from dpt_ros.evaluation import html_report
        return html_report.write_report(out_dir, self.as_json(), self.strips,
                                        self.latencies_ms, self.out_times_s, self.target_fps)


def latency_stats(lat_ms: list[float], prefix: str = 'latency_ms') -> dict:
    """Return mean, p50/p95/p99 and max of per-frame latencies (NaN when there are none)."""
    out = {f'{prefix}_mean': float(np.mean(lat_ms)) if lat_ms else math.nan}
    for q in (50, 95, 99):
        out[f'{prefix}_p{q}'] = percentile(lat_ms, q)
    out[f'{prefix}_max'] = float(np.max(lat_ms)) if lat_ms else math.nan
    return out


class StripPlan:
    """
    Chooses which frames get an illustration strip.

    Ground-truth frames first (up to half), the rest spread evenly over the bag.
    """

    def __init__(self, total_frames: int, n: int):
        self.n = max(0, n)
        self.planned = set(np.linspace(0, max(total_frames - 1, 0), self.n).round().astype(int)
                           .tolist()) if self.n else set()
        self.items: list[tuple[str, np.ndarray]] = []
        self.gt_items = 0

    def wants(self, index: int, has_gt: bool) -> bool:
        if len(self.items) >= 2 * self.n:
            return False
        if has_gt and self.gt_items < max(1, self.n // 2):
            return True
        return index in self.planned

    def add(self, caption: str, img: np.ndarray, has_gt: bool) -> None:
        self.items.append((caption, img))
        self.gt_items += int(has_gt)


def strip(frame: bagio.Frame, rgb: np.ndarray, depth_rel: np.ndarray, color: np.ndarray | None,
          metrics: FrameDepthMetrics | None) -> tuple[str, np.ndarray]:
    """Return (caption, BGR strip) for one frame: input, colour depth, GT and error if any."""
    from dpt_ros.evaluation import html_report as report
    from dpt_ros.inference import colorize as colorize_mod
    if color is None:
        color = colorize_mod.colorize(depth_rel)
    err = None
    if frame.gt_depth is not None and metrics is not None:
        err = error_map(depth_rel, frame.gt_depth)
    caption = f'frame {frame.index} (stamp {frame.stamp_ns / 1e9:.3f} s)'
    if metrics is not None:
        caption += (f': AbsRel {metrics.abs_rel:.3f}, RMSE {metrics.rmse:.3f} m, '
                    f'δ<1.25 {metrics.delta1:.3f}, scale {metrics.scale:.4g}, '
                    f'shift {metrics.shift:.4g}')
    return caption, report.frame_strip(rgb, color, frame.gt_depth, err,
                                       title=f'#{frame.index}')


def accuracy(per_frame: list[FrameDepthMetrics], src: bagio.BagSource, failures: dict) -> dict:
    """Return the accuracy section ({} for a bag without ground truth)."""
    if not src.gt_topic:
        return {}
    acc = summarize(per_frame)
    acc['gt_topic'] = src.gt_topic
    acc['gt_messages'] = src.gt_count
    acc['alignment'] = 'per-frame least squares, inverse depth, depth capped at max GT'
    if failures:
        acc['frames_not_aligned'] = dict(failures)
    if src.bad_gt:
        acc['gt_unusable'] = dict(src.bad_gt)
    return acc


def input_section(src: bagio.BagSource) -> dict:
    """Return the `input` section: what was read from the bag."""
    return {'bag': str(src.path), 'storage': src.storage,
            'image_topic': src.image_topic, 'image_type': src.image_type,
            'gt_topic': src.gt_topic, 'camera_info_topic': src.camera_info_topic,
            'frames': src.frame_count, 'gt_frames': src.gt_count,
            'duration_s': src.duration_ns / 1e9}


def summary_section(res: EvalResult, weights: str) -> dict:
    """Return the table at the top of the report (`weights`: what was asked for)."""
    thr, acc = res.throughput, res.accuracy or {}
    summary = {'mode': res.mode, 'weights': res.backend.get('weights', weights),
               'weights_random': res.weights_random}
    if res.backend.get('name') and res.backend.get('dtype'):
        # requested and executed dtype both ('auto -> bf16', 'bf16 -> fp32 executed')
        summary['backend'] = (f"{res.backend['name']} {res.backend.get('device', '')} dtype "
                              + describe_dtype(res.backend.get('dtype_requested') or '',
                                               res.backend['dtype']))
    if res.mode == 'offline':
        summary.update({'frames evaluated': thr['frames_evaluated'], 'fps_e2e': thr['fps_e2e'],
                        'PCC vs CPU fp32 (min)': (res.pcc or {}).get('pcc_min')})
    else:
        summary.update({'frames delivered': f"{thr['frames_delivered']} / {thr['frames_sent']}",
                        'frames dropped': thr['frames_dropped'],
                        'output FPS': thr['output_fps'],
                        'input FPS': thr['input_fps_actual']})
    summary['latency p50 / p95 / p99 (ms)'] = [thr['latency_ms_p50'], thr['latency_ms_p95'],
                                               thr['latency_ms_p99']]
    if acc.get('frames'):
        summary.update({'AbsRel': acc['abs_rel'], 'RMSE (m)': acc['rmse'],
                        'δ<1.25': acc['delta1'], 'δ<1.25²': acc['delta2'],
                        'δ<1.25³': acc['delta3']})
    return summary
