"""A finished replay -> EvalResult: outputs matched to inputs by stamp, latency, accuracy."""
from __future__ import annotations

import collections
import contextlib
import math

from dpt_ros.depth.accuracy import frame_metrics, FrameDepthMetrics
from dpt_ros.depth.metric import AlignmentError
from dpt_ros.errors import InvalidImage
from dpt_ros.evaluation import bagio, results
from dpt_ros.evaluation.recorder import random_weights_in
from dpt_ros.evaluation.replay import parent_ns, ReplaySession
from dpt_ros.evaluation.results import EvalResult


class _Matched:
    """Per-frame records of one replay, built from what the recorder saw."""

    def __init__(self, session: ReplaySession):
        self.s = session
        self.ts = bagio.typestore()
        self.lat_ms: list[float] = []
        self.out_t: list[float] = []
        self.records: list[dict] = []
        self.per_frame: list[FrameDepthMetrics] = []
        self.align_fail: collections.Counter = collections.Counter()
        self.strips: list = []
        strip_stamps = {fr.stamp_ns for fr in session.strip_frames}
        for fr in session.frames:
            if fr.stamp_ns in session.pub_times:
                self._frame(fr, fr.stamp_ns in strip_stamps)

    def _decode(self, topic: str, stamp_ns: int):
        from dpt_ros.ros import image_codec
        raw = self.s.recorder.payload[topic].get(stamp_ns)
        if raw is None:
            return None
        msg = self.ts.deserialize_cdr(raw, bagio.IMAGE_TYPE)
        if topic == self.s.topics.color:
            return image_codec.decode_image(msg)[:, :, ::-1].copy()   # RGB -> BGR
        return image_codec.decode_float_image(msg)

    def _frame(self, fr: bagio.Frame, wants_strip: bool) -> None:
        got = self.s.recorder.arrivals[self.s.topics.depth].get(fr.stamp_ns)
        rec = {'index': fr.index, 'stamp_ns': fr.stamp_ns, 'delivered': got is not None}
        if got is not None:
            lat = (got - self.s.pub_times[fr.stamp_ns]) * 1e3
            self.lat_ms.append(lat)
            self.out_t.append(got - self.s.t_start)
            rec['latency_ms'] = lat
        m = None
        depth = self._decode(self.s.topics.depth, fr.stamp_ns)
        if fr.gt_depth is not None and depth is not None:
            try:
                m = frame_metrics(depth, fr.gt_depth)
                self.per_frame.append(m)
                rec.update(m.as_dict())
            except AlignmentError as err:
                self.align_fail[err.reason] += 1
        if wants_strip and depth is not None:
            color = None
            with contextlib.suppress(InvalidImage):
                color = self._decode(self.s.topics.color, fr.stamp_ns)
            with contextlib.suppress(InvalidImage):
                self.strips.append(results.strip(fr, fr.rgb(), depth, color, m))
        self.records.append(rec)


def _throughput(s: ReplaySession, m: _Matched) -> dict:
    frames, pub_times, rec = s.frames, s.pub_times, s.recorder
    sent, delivered = len(pub_times), len(m.lat_ms)
    span_out = (max(m.out_t) - min(m.out_t)) if len(m.out_t) > 1 else 0.0
    span_in = ((max(pub_times.values()) - min(pub_times.values()))
               if len(pub_times) > 1 else 0.0)
    bag_rate = ((len(frames) - 1) / ((frames[-1].bag_time_ns - frames[0].bag_time_ns) / 1e9)
                if len(frames) > 1 and frames[-1].bag_time_ns > frames[0].bag_time_ns
                else math.nan)
    return {
        'frames_sent': sent, 'frames_delivered': delivered, 'frames_dropped': sent - delivered,
        'delivered_frac': delivered / sent if sent else math.nan,
        'input_fps_target': bag_rate * s.args.rate if math.isfinite(bag_rate) else math.nan,
        'input_fps_actual': (sent - 1) / span_in if span_in > 0 else math.nan,
        'output_fps': (delivered - 1) / span_out if span_out > 0 else math.nan,
        **results.latency_stats(m.lat_ms),
        'color_frames': len([t for t in rec.arrivals[s.topics.color] if t in pub_times]),
        'metric_depth_frames': len([t for t in rec.arrivals[s.topics.metric]
                                    if t in pub_times]),
        'rate_factor': s.args.rate,
        'warmup_round_trip_ms': [x * 1e3 for x in rec.warmup_rtt_s],
    }


def _backend(s: ReplaySession, warnings: list[str]) -> dict:
    backend = {'node_started_here': bool(s.args.start_node),
               'node_namespace': s.args.node_ns or parent_ns(s.topics.publish),
               'published_to': s.topics.publish, 'depth_topic': s.topics.depth}
    if s.node is not None:
        backend['node_command'] = ' '.join(s.node.cmd)
        backend['node_exit_code'] = s.node_rc
        backend['node_log'] = str(s.node.log_path)
    for name, st in s.recorder.diagnostics.items():
        backend[f'diagnostics: {name}'] = {'level': st['level'], 'message': st['message'],
                                           **st['values']}
        v = st['values']
        if 'dtype' in v:        # the pipeline status: what ran, for the summary
            backend.update(name=v.get('backend'), device=v.get('device'), dtype=v['dtype'],
                           dtype_requested=v.get('dtype_requested'))
    if s.writer is not None:
        backend['output_bag'] = str(s.out_bag)
        if s.recorder.write_errors:
            warnings.append(f'{s.recorder.write_errors} outputs could not be written to the bag')
    return backend


def replay_results(s: ReplaySession) -> EvalResult:
    """Return the evaluation of a finished ReplaySession."""
    m = _Matched(s)
    throughput = _throughput(s, m)
    warnings = s.warnings
    rnd = random_weights_in(s.recorder.diagnostics)
    if rnd is None and s.args.start_node:
        rnd = s.args.weights in ('random', 'tiny-random')
    if rnd is None:
        warnings.append("could not tell from the node's diagnostics whether it runs real "
                        'weights')
    backend = _backend(s, warnings)
    return EvalResult(
        mode='replay', evaluated=len(m.lat_ms), weights_random=bool(rnd),
        throughput=throughput, backend=backend,
        accuracy=results.accuracy(m.per_frame, s.src, m.align_fail), warnings=warnings,
        frames=m.records, strips=m.strips, latencies_ms=m.lat_ms, out_times_s=m.out_t,
        target_fps=throughput['input_fps_target'])
