"""
Evaluate depth on a rosbag2: offline through the pipeline, or replayed through a live node.

    bag_eval offline BAG [--backend torch|openvino|tt] [--weights auto] [--pcc-frames 2] [-o DIR]
    bag_eval replay  BAG [--start-node] [--rate 1.0] [--params-file config/dpt.yaml] [-o DIR]

offline: every frame of the image topic goes straight into `DepthPipeline`, as fast as the
    backend allows; PCC of the first frames against the CPU fp32 reference (same weights).
replay: the bag's frames (and camera_info) are published over DDS at the recorded rate times
    --rate with their header stamps, to a running depth node (or one started here with
    --start-node); its outputs are recorded to an output bag and matched to the inputs by
    stamp: delivered / dropped frames, output FPS, latency p50/p95/p99 — what a robot sees.

Both: with a ground-truth depth topic (32FC1 m or 16UC1 mm; auto-detected), AbsRel, RMSE and
delta accuracies after per-frame scale-and-shift alignment in inverse depth (MiDaS protocol).
The report (report.json + report.html with charts and frame strips) goes to --output.
Exit status: 0 when at least one frame was evaluated, 1 when nothing could be, 2 for usage.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

from dpt_ros import vocabulary

from dpt_ros.backends import BackendError, BackendOptions
from dpt_ros.depth.accuracy import error_map, frame_metrics, FrameDepthMetrics, summarize
from dpt_ros.depth.metric import AlignmentError
from dpt_ros.errors import EvalError, InvalidImage
from dpt_ros.evaluation import bagio
from dpt_ros.perf.stats import percentile
import numpy as np

log = logging.getLogger('dpt_ros.evaluation.bag_eval')

MODES = ('offline', 'replay')
DEFAULT_STRIPS = 6
DEFAULT_PCC_FRAMES = 2
# torch's first two or three calls are much slower than the rest (allocator and kernel
# caches); a replayed stream must not pay for that in dropped frames, so replay warms up more.
DEFAULT_WARMUP = {'offline': 1, 'replay': 3}
# Replay warm-up stops early after this long (seconds) in total.
WARMUP_BUDGET_S = 10.0
# Frames a node may hold between receipt and output (decode/infer/publish overlap).
_IN_FLIGHT = 3


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _latency_stats(lat_ms: list[float], prefix: str = 'latency_ms') -> dict:
    out = {f'{prefix}_mean': float(np.mean(lat_ms)) if lat_ms else math.nan}
    for q in (50, 95, 99):
        out[f'{prefix}_p{q}'] = percentile(lat_ms, q)
    out[f'{prefix}_max'] = float(np.max(lat_ms)) if lat_ms else math.nan
    return out


class _Strips:
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


def _strip(frame: bagio.Frame, rgb: np.ndarray, depth_rel: np.ndarray, color: np.ndarray | None,
           metrics: FrameDepthMetrics | None) -> tuple[str, np.ndarray]:
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


def _accuracy(per_frame: list[FrameDepthMetrics], src: bagio.BagSource, failures: dict) -> dict:
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


def _frames(src: bagio.BagSource, warnings: list[str]):
    """
    Yield bagio.iter_frames, but end at a read error part-way, with a warning.

    So the frames already evaluated are not lost (a truncated recording is still worth a
    report).
    """
    it = bagio.iter_frames(src)
    while True:
        try:
            frame = next(it)
        except StopIteration:
            return
        except Exception as err:  # rosbags/mcap/sqlite errors on a damaged tail
            warnings.append(f'reading the bag stopped early: {err}')
            log.warning('reading the bag stopped early: %s', err)
            return
        yield frame


def _backend_options(args) -> BackendOptions:
    return BackendOptions(weights=args.weights, image_size=args.image_size, device=args.device,
                          dtype=args.dtype, compile=args.compile, seed=args.seed,
                          threads=args.threads, execution_mode=args.execution_mode, dp=args.dp)


def _progress(args, total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='frame', disable=args.no_progress,
                dynamic_ncols=True, leave=False)


# ---------------------------------------------------------------------------------------------
# offline


def run_offline(args, src: bagio.BagSource) -> dict:
    """Frames straight into DepthPipeline. Returns the evaluation (see `_finish`)."""
    from dpt_ros.backends import create_backend
    from dpt_ros.depth.pcc import pcc
    from dpt_ros.inference.pipeline import DepthPipeline
    from dpt_ros.inference.preprocess import preprocess
    from dpt_ros.perf.stats import PerfStats

    opts = _backend_options(args)
    t0 = time.perf_counter()
    try:
        started = create_backend(args.backend, opts, allow_fallback=not args.no_fallback)
    except BackendError as err:
        raise EvalError(f'backend {args.backend!r} cannot start: {err}') from None
    load_s = time.perf_counter() - t0
    pipe = DepthPipeline(started, perf=PerfStats())
    info = pipe.backend.info
    bad: collections.Counter = collections.Counter()
    align_fail: collections.Counter = collections.Counter()
    lat_ms: list[float] = []
    out_times: list[float] = []
    per_frame: list[FrameDepthMetrics] = []
    records: list[dict] = []
    pcc_inputs: list[tuple[np.ndarray, np.ndarray]] = []
    strips = _Strips(src.frame_count, args.strips)
    limit = args.max_frames or src.frame_count
    first_run_ms = None
    t_start = None
    bar = _progress(args, min(limit, src.frame_count), 'offline')
    warnings: list[str] = []
    try:
        for frame in _frames(src, warnings):
            if frame.index >= limit:
                break
            bar.update(1)
            try:
                rgb = frame.rgb()
            except InvalidImage as err:
                bad[err.reason] += 1
                log.warning('frame %d skipped (%s): %s', frame.index, err.reason, err)
                continue
            if first_run_ms is None:
                # Warm-up: first calls allocate, compile or trace; the reference runner
                # reports them apart from steady-state timing, and so do we.
                for _ in range(max(args.warmup, 0)):
                    w0 = time.perf_counter()
                    pipe.process(rgb, want_color=False)
                    first_run_ms = first_run_ms or (time.perf_counter() - w0) * 1e3
                first_run_ms = first_run_ms or 0.0
                t_start = time.perf_counter()
            f0 = time.perf_counter()
            try:
                res = pipe.process(rgb, want_color=True)
            except InvalidImage as err:
                bad[err.reason] += 1
                continue
            now = time.perf_counter()
            lat_ms.append((now - f0) * 1e3)
            out_times.append(now - t_start)
            if len(pcc_inputs) < args.pcc_frames:
                pcc_inputs.append((preprocess(rgb, pipe.image_size), res.raw.copy()))
            m = None
            if frame.gt_depth is not None:
                try:
                    m = frame_metrics(res.depth, frame.gt_depth)
                    per_frame.append(m)
                except AlignmentError as err:
                    align_fail[err.reason] += 1
            rec = {'index': frame.index, 'stamp_ns': frame.stamp_ns, 'latency_ms': lat_ms[-1],
                   **res.timings_ms}
            if m is not None:
                rec.update(m.as_dict())
            records.append(rec)
            has_gt = frame.gt_depth is not None
            if strips.wants(frame.index, has_gt):
                strips.add(*_strip(frame, rgb, res.depth, res.color, m), has_gt)
    finally:
        bar.close()
        wall_s = (time.perf_counter() - t_start) if t_start else 0.0
        fallback_counts = pipe.backend.fallback_counts()
        fell_back = pipe.fallback_reason
        pipe.close()

    n = len(lat_ms)
    # Stage means over the timed frames only (the warm-up is reported as first_run_ms).
    stage_ms = {k: float(np.mean([r[k] for r in records if k in r]))
                for k in ('preprocess', 'inference', 'postprocess', 'colorize')
                if any(k in r for r in records)}
    pcc_section = {}
    if pcc_inputs:
        pcc_section = _pcc_vs_reference(args, opts, info, pcc_inputs, pcc)
    throughput = {
        'frames_evaluated': n, 'frames_in_bag': src.frame_count,
        'frames_skipped': dict(bad),
        'fps_e2e': n / wall_s if wall_s > 0 else math.nan,
        'fps': 1e3 / stage_ms['inference'] if stage_ms.get('inference') else math.nan,
        **_latency_stats(lat_ms),
        'first_run_ms': first_run_ms, 'model_load_s': load_s,
        'stage_ms_mean': stage_ms,
    }
    backend = {**info.as_dict(), 'requested': args.backend,
               'fallback_reason': fell_back, 'fallback_counts': fallback_counts}
    return {
        'mode': 'offline', 'evaluated': n,
        'weights_random': bool(info.extra.get('weights_random', False)),
        'throughput': throughput, 'pcc': pcc_section, 'backend': backend,
        'accuracy': _accuracy(per_frame, src, align_fail), 'warnings': warnings,
        'frames': records, '_strips': strips.items, '_latencies': lat_ms,
        '_out_times': out_times, '_target_fps': None,
    }


def _pcc_vs_reference(args, opts: BackendOptions, info, inputs, pcc) -> dict:
    """Run the CPU fp32 torch reference (same weights and seed) on the first frames."""
    from dpt_ros.backends import create_backend
    ref_opts = opts.replace(device='cpu', dtype='fp32', compile=False, dp=1, batch_size=1)
    same = (info.name == 'torch' and info.device == 'cpu' and info.dtype == 'fp32'
            and info.execution_mode == 'eager')
    try:
        ref = create_backend('torch', ref_opts, allow_fallback=False).backend
    except BackendError as err:
        log.warning('CPU fp32 reference cannot start: %s', err)
        return {'error': f'reference cannot start: {err}'}
    try:
        values = []
        for prepared, raw in inputs:
            ref_raw = ref.infer(prepared[None])[0]
            values.append(pcc(raw, ref_raw))
    finally:
        ref.close()
    return {'pcc_min': float(np.min(values)), 'pcc_mean': float(np.mean(values)),
            'frames': len(values), 'per_frame': values, 'reference': 'torch cpu fp32',
            'reference_is_evaluated_backend': same}


# ---------------------------------------------------------------------------------------------
# replay


def _default_params_file() -> str | None:
    here = Path(__file__).resolve().parent
    for cand in (here.parents[1] / 'config' / 'dpt.yaml',):
        if cand.exists():
            return str(cand)
    with contextlib.suppress(Exception):
        from ament_index_python.packages import get_package_share_directory
        cand = Path(get_package_share_directory('dpt_ros')) / 'config' / 'dpt.yaml'
        if cand.exists():
            return str(cand)
    return None


def _parent_ns(topic: str) -> str:
    ns = topic.rsplit('/', 1)[0]
    return ns if ns else '/'


def _join(ns: str, name: str) -> str:
    return (ns.rstrip('/') + '/' + name) if ns not in ('', '/') else '/' + name


class _NodeProcess:
    """The depth node as a child process (python -m dpt_ros.node), stopped with SIGINT."""

    def __init__(self, cmd: list[str], log_path: Path, env: dict):
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        log.info('starting node: %s', ' '.join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 25) -> str:
        self._log.flush()
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors='replace').splitlines()
            return '\n'.join(lines[-n:])
        return ''

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGINT (the node's clean shutdown path), then SIGTERM, then SIGKILL."""
        if self.alive():
            for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5.0),
                                (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
                try:
                    self.proc.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    log.warning('node did not exit after %s', signal.Signals(sig).name)
        self._log.close()
        return self.proc.returncode


def _cdr_stamp(raw: bytes | memoryview) -> int:
    """Header stamp (ns) of a CDR-serialised message whose first field is std_msgs/Header."""
    b = bytes(raw[:12])
    order = '<' if b[1] & 1 else '>'
    sec, nsec = np.frombuffer(b[4:12], dtype=np.dtype(order + 'i4'), count=2)
    return int(sec) * 1_000_000_000 + int(np.uint32(nsec))


def _with_stamp(raw: bytes, stamp_ns: int) -> bytes:
    """Return a copy of CDR bytes with the header stamp replaced (for warm-up frames)."""
    order = '<' if raw[1] & 1 else '>'
    head = np.array([stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000],
                    dtype=np.dtype(order + 'i4')).tobytes()
    return raw[:4] + head + raw[12:]


class _Recorder:
    """Receives the node's outputs (raw CDR), notes arrival times, writes the output bag."""

    def __init__(self, writer: bagio.BagWriter | None):
        self.writer = writer
        self.cond = threading.Condition()
        self.arrivals: dict[str, dict[int, float]] = collections.defaultdict(dict)
        self.payload: dict[str, dict[int, bytes]] = collections.defaultdict(dict)
        self.keep_payload: dict[str, set[int]] = collections.defaultdict(set)
        self.counts: collections.Counter = collections.Counter()
        self.diagnostics: dict[str, dict] = {}
        self.write_errors = 0
        self.warmup_rtt_s: list[float] = []      # warm-up frames' round trips

    def callback(self, topic: str, msgtype: str):
        def on_msg(raw):
            now = time.perf_counter()
            try:
                stamp = _cdr_stamp(raw)
            except Exception:
                stamp = -1
            with self.cond:
                self.arrivals[topic].setdefault(stamp, now)
                self.counts[topic] += 1
                if stamp in self.keep_payload[topic]:
                    self.payload[topic][stamp] = bytes(raw)
                if self.writer is not None:
                    try:
                        self.writer.write_raw(topic, msgtype, time.time_ns(), raw)
                    except Exception as err:  # a full disk must not stop the measurement
                        self.write_errors += 1
                        log.debug('output bag write failed: %s', err)
                self.cond.notify_all()
        return on_msg

    def on_diagnostics(self, msg) -> None:
        with self.cond:
            for st in msg.status:
                self.diagnostics[st.name] = {
                    'level': int.from_bytes(st.level, 'little') if isinstance(st.level, bytes)
                    else int(st.level),
                    'message': st.message, 'hardware_id': st.hardware_id,
                    'values': {kv.key: kv.value for kv in st.values}}

    def wait_for(self, topic: str, stamps, timeout_s: float) -> bool:
        """Block until every stamp arrived on `topic` (or timeout)."""
        want = set(stamps)
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not want.issubset(self.arrivals[topic].keys()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
        return True


def _random_weights_in(diagnostics: dict) -> bool | None:
    """From the node's diagnostics: True/False when a 'weights' value says, else None."""
    for st in diagnostics.values():
        for k, v in st.get('values', {}).items():
            if k.lower() == 'weights_random':
                return str(v).lower() in ('true', '1', 'yes')
            if k.lower() == 'weights':
                return 'random' in str(v).lower()
    return None


def run_replay(args, src: bagio.BagSource) -> dict:
    """Publish the bag to a depth node over DDS and measure what comes back."""
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    if args.start_node and 'ROS_DOMAIN_ID' not in os.environ:
        # A private domain: the node started here must not meet other graphs on this host.
        os.environ['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 100)
    try:
        import rclpy
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    except ImportError as err:
        raise EvalError(f'replay needs ROS 2 rclpy and sensor_msgs ({err}); use offline mode '
                        'or source a ROS 2 install') from None
    from dpt_ros import vocabulary

    out_dir = Path(args.output)
    publish_topic = args.publish_topic or src.image_topic
    compressed = src.image_type == bagio.COMPRESSED_TYPE
    if compressed and publish_topic.endswith('/' + vocabulary.COMPRESSED_SUFFIX):
        image_base = publish_topic[:-len(vocabulary.COMPRESSED_SUFFIX) - 1]
    else:
        image_base = publish_topic
    ns = args.node_ns or _parent_ns(image_base)
    info_topic = args.camera_info_topic or (
        _join(_parent_ns(image_base), vocabulary.TOPIC_CAMERA_INFO)
        if src.camera_info_topic else None)
    depth_topic = _join(ns, vocabulary.TOPIC_DEPTH_RELATIVE)
    color_topic = _join(ns, vocabulary.TOPIC_DEPTH_RELATIVE_COLOR)
    metric_topic = _join(ns, vocabulary.TOPIC_DEPTH_METRIC)

    # Everything to publish, loaded up front so disk reads never disturb the pacing.
    frames = []
    warnings: list[str] = []
    limit = args.max_frames or src.frame_count
    for fr in _frames(src, warnings):
        if fr.index >= limit:
            break
        frames.append(fr)
    if not frames:
        raise EvalError('the bag has no frames to replay')
    infos: dict[int, bytes] = {}
    if src.camera_info_topic and info_topic:
        for _, _, raw, msg in bagio.iter_topic(src.path, src.camera_info_topic):
            infos[bagio.stamp_to_ns(msg.header.stamp)] = raw

    node_proc = None
    env = dict(os.environ)
    if args.start_node:
        params_file = args.params_file or _default_params_file()
        cmd = [sys.executable, '-m', 'dpt_ros.node', '--ros-args', '-r', f'__ns:={ns}']
        if image_base != _join(ns, vocabulary.TOPIC_IMAGE):
            key = vocabulary.TOPIC_IMAGE + ('/' + vocabulary.COMPRESSED_SUFFIX
                                            if compressed else '')
            cmd += ['-r', f'{key}:={publish_topic}']
        if info_topic and info_topic != _join(ns, vocabulary.TOPIC_CAMERA_INFO):
            cmd += ['-r', f'{vocabulary.TOPIC_CAMERA_INFO}:={info_topic}']
        if params_file:
            cmd += ['--params-file', params_file]
        node_overrides = {'backend': args.backend, 'weights': args.weights,
                          'image_size': args.image_size, 'device': args.device,
                          'dtype': args.dtype, 'seed': args.seed, 'threads': args.threads,
                          'execution_mode': args.execution_mode, 'dp': args.dp,
                          'transport': 'compressed' if compressed else 'raw'}
        if args.compile:
            node_overrides['compile'] = 'true'
        for k, v in node_overrides.items():
            cmd += ['-p', f'{k}:={v}']
        for extra in args.node_param:
            cmd += ['-p', extra]
        node_proc = _NodeProcess(cmd, out_dir / 'node.log', env)

    writer = None
    out_bag = Path(args.output_bag) if args.output_bag else out_dir / 'outputs_bag'
    if not args.no_output_bag:
        writer = bagio.BagWriter(out_bag, args.output_storage, overwrite=True)
    rec = _Recorder(writer)
    gt_stamps = {fr.stamp_ns for fr in frames if fr.gt_depth is not None}
    rec.keep_payload[depth_topic] = set(gt_stamps)
    # Strips need the node's own output for a few frames.
    strip_plan = _Strips(len(frames), args.strips)
    strip_frames = []
    for fr in frames:
        if strip_plan.wants(fr.index, fr.gt_depth is not None):
            strip_plan.add('', np.zeros((1, 1, 3), np.uint8), fr.gt_depth is not None)
            strip_frames.append(fr)
    rec.keep_payload[depth_topic] |= {fr.stamp_ns for fr in strip_frames}
    rec.keep_payload[color_topic] |= {fr.stamp_ns for fr in strip_frames}

    rclpy.init()
    ros_node = rclpy.create_node(f'bag_eval_{os.getpid()}')
    qos_out = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         history=HistoryPolicy.KEEP_LAST)
    qos_in = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
    img_pub = ros_node.create_publisher(CompressedImage if compressed else Image,
                                        publish_topic, qos_out)
    info_pub = (ros_node.create_publisher(CameraInfo, info_topic, qos_out)
                if infos and info_topic else None)
    subs = []
    outputs = [depth_topic, metric_topic] + ([] if args.no_color else [color_topic])
    for topic in outputs:
        msg_cls, msgtype = Image, bagio.IMAGE_TYPE
        subs.append(ros_node.create_subscription(msg_cls, topic,
                                                 rec.callback(topic, msgtype), qos_in,
                                                 raw=True))
    with contextlib.suppress(ImportError):
        from diagnostic_msgs.msg import DiagnosticArray
        subs.append(ros_node.create_subscription(DiagnosticArray, '/diagnostics',
                                                 rec.on_diagnostics, 10))
    from rclpy.executors import SingleThreadedExecutor
    executor = SingleThreadedExecutor()
    executor.add_node(ros_node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    pub_times: dict[int, float] = {}
    try:
        _wait_connected(args, img_pub, subs[0], node_proc, publish_topic, depth_topic)
        # Warm-up frames (stamps before the bag's first) wake the model up: the first
        # inference allocates/compiles and would otherwise cost the first replayed frames.
        first = frames[0]
        warm_rtt = rec.warmup_rtt_s
        for k in range(max(args.warmup, 0)):
            stamp = first.stamp_ns - (k + 1) * 1_000_000_000
            if info_pub is not None and first.stamp_ns in infos:
                info_pub.publish(_with_stamp(infos[first.stamp_ns], stamp))
            w0 = time.perf_counter()
            img_pub.publish(_with_stamp(first.raw, stamp))
            if not rec.wait_for(depth_topic, [stamp], args.wait_node_s):
                raise EvalError(f'the node did not answer a warm-up frame on {depth_topic} '
                                f'within {args.wait_node_s:g} s'
                                + _node_tail(node_proc))
            warm_rtt.append(time.perf_counter() - w0)
            if sum(warm_rtt) > WARMUP_BUDGET_S:
                break   # a model this slow drops frames at camera rates anyway
        # Frames still in the node's pipeline when the replay ends need about one model
        # round trip each; the node keeps a few in flight.
        drain_s = args.drain_s + _IN_FLIGHT * (max(warm_rtt) if warm_rtt else 0.0)
        # Paced replay at the recorded rate x --rate.
        t0_bag = frames[0].bag_time_ns
        bar = _progress(args, len(frames), 'replay')
        t_start = time.perf_counter()
        for fr in frames:
            due = t_start + (fr.bag_time_ns - t0_bag) / 1e9 / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)     # pacing to the recording's clock, not synchronisation
            if info_pub is not None and fr.stamp_ns in infos:
                info_pub.publish(infos[fr.stamp_ns])
            pub_times[fr.stamp_ns] = time.perf_counter()
            img_pub.publish(fr.raw)
            bar.update(1)
            if node_proc is not None and not node_proc.alive():
                warnings.append('the node exited during the replay')
                break
        bar.close()
        t_end_pub = time.perf_counter()
        rec.wait_for(depth_topic, pub_times.keys(), drain_s)
    finally:
        executor.shutdown(timeout_sec=2.0)
        ros_node.destroy_node()
        rclpy.try_shutdown()
        spin.join(timeout=5.0)
        node_rc = node_proc.stop() if node_proc is not None else None
        if writer is not None:
            writer.close()
    return _replay_results(args, src, frames, pub_times, t_start, t_end_pub, rec, depth_topic,
                           color_topic, metric_topic, strip_frames, node_proc, node_rc,
                           out_bag if writer else None, warnings, publish_topic)


def _node_tail(node_proc) -> str:
    if node_proc is None:
        return ''
    state = 'running' if node_proc.alive() else f'exited with {node_proc.proc.returncode}'
    return f'\nthe node ({state}) logged:\n{node_proc.tail()}'


def _wait_connected(args, img_pub, depth_sub, node_proc, publish_topic, depth_topic) -> None:
    """Wait (bounded) until the node subscribes to our images and publishes depth to us."""
    deadline = time.monotonic() + args.wait_node_s
    while time.monotonic() < deadline:
        if img_pub.get_subscription_count() > 0 and depth_sub.get_publisher_count() > 0:
            return
        if node_proc is not None and not node_proc.alive():
            raise EvalError('the node exited before the replay started' + _node_tail(node_proc))
        time.sleep(0.05)      # polling DDS discovery state; there is no event for it here
    missing = []
    if img_pub.get_subscription_count() == 0:
        missing.append(f'nobody subscribes to {publish_topic}')
    if depth_sub.get_publisher_count() == 0:
        missing.append(f'nobody publishes {depth_topic}')
    raise EvalError(f'no depth node found within {args.wait_node_s:g} s '
                    f'(ROS_DOMAIN_ID={os.environ.get("ROS_DOMAIN_ID", "0")}): '
                    + '; '.join(missing) + '. Start one (or pass --start-node), or set '
                    '--node-ns / --publish-topic to match it.' + _node_tail(node_proc))


def _replay_results(args, src, frames, pub_times, t_start, t_end_pub, rec: _Recorder,
                    depth_topic, color_topic, metric_topic, strip_frames, node_proc, node_rc,
                    out_bag, warnings, publish_topic) -> dict:
    arrivals = rec.arrivals[depth_topic]
    lat_ms, out_t, records = [], [], []
    per_frame: list[FrameDepthMetrics] = []
    align_fail: collections.Counter = collections.Counter()
    ts = bagio.typestore()
    strips = []
    strip_stamps = {fr.stamp_ns for fr in strip_frames}
    for fr in frames:
        if fr.stamp_ns not in pub_times:
            continue
        got = arrivals.get(fr.stamp_ns)
        rec_ = {'index': fr.index, 'stamp_ns': fr.stamp_ns, 'delivered': got is not None}
        if got is not None:
            lat = (got - pub_times[fr.stamp_ns]) * 1e3
            lat_ms.append(lat)
            out_t.append(got - t_start)
            rec_['latency_ms'] = lat
        m = None
        raw = rec.payload[depth_topic].get(fr.stamp_ns)
        depth = None
        if raw is not None:
            depth = bagio.decode_float_image(ts.deserialize_cdr(raw, bagio.IMAGE_TYPE))
        if fr.gt_depth is not None and depth is not None:
            try:
                m = frame_metrics(depth, fr.gt_depth)
                per_frame.append(m)
                rec_.update(m.as_dict())
            except AlignmentError as err:
                align_fail[err.reason] += 1
        if fr.stamp_ns in strip_stamps and depth is not None:
            color_raw = rec.payload[color_topic].get(fr.stamp_ns)
            color = None
            if color_raw is not None:
                from dpt_ros.ros import image_codec
                with contextlib.suppress(InvalidImage):
                    cmsg = ts.deserialize_cdr(color_raw, bagio.IMAGE_TYPE)
                    color = image_codec.decode_image(cmsg)[:, :, ::-1].copy()   # RGB -> BGR
            try:
                strips.append(_strip(fr, fr.rgb(), depth, color, m))
            except InvalidImage:
                pass
        records.append(rec_)
    sent = len(pub_times)
    delivered = len(lat_ms)
    span_out = (max(out_t) - min(out_t)) if len(out_t) > 1 else 0.0
    span_in = ((max(pub_times.values()) - min(pub_times.values()))
               if len(pub_times) > 1 else 0.0)
    bag_rate = ((len(frames) - 1) / ((frames[-1].bag_time_ns - frames[0].bag_time_ns) / 1e9)
                if len(frames) > 1 and frames[-1].bag_time_ns > frames[0].bag_time_ns
                else math.nan)
    throughput = {
        'frames_sent': sent, 'frames_delivered': delivered, 'frames_dropped': sent - delivered,
        'delivered_frac': delivered / sent if sent else math.nan,
        'input_fps_target': bag_rate * args.rate if math.isfinite(bag_rate) else math.nan,
        'input_fps_actual': (sent - 1) / span_in if span_in > 0 else math.nan,
        'output_fps': (delivered - 1) / span_out if span_out > 0 else math.nan,
        **_latency_stats(lat_ms),
        'color_frames': len([s for s in rec.arrivals[color_topic] if s in pub_times]),
        'metric_depth_frames': len([s for s in rec.arrivals[metric_topic] if s in pub_times]),
        'rate_factor': args.rate,
        'warmup_round_trip_ms': [x * 1e3 for x in rec.warmup_rtt_s],
    }
    rnd = _random_weights_in(rec.diagnostics)
    if rnd is None and args.start_node:
        rnd = args.weights in ('random', 'tiny-random')
    if rnd is None:
        warnings.append("could not tell from the node's diagnostics whether it runs real "
                        'weights')
    backend = {'node_started_here': bool(args.start_node), 'node_namespace': args.node_ns
               or _parent_ns(publish_topic), 'published_to': publish_topic,
               'depth_topic': depth_topic}
    if node_proc is not None:
        backend['node_command'] = ' '.join(node_proc.cmd)
        backend['node_exit_code'] = node_rc
        backend['node_log'] = str(node_proc.log_path)
    for name, st in rec.diagnostics.items():
        backend[f'diagnostics: {name}'] = {'level': st['level'], 'message': st['message'],
                                           **st['values']}
    if out_bag is not None:
        backend['output_bag'] = str(out_bag)
        if rec.write_errors:
            warnings.append(f'{rec.write_errors} outputs could not be written to the bag')
    return {
        'mode': 'replay', 'evaluated': delivered, 'weights_random': bool(rnd),
        'throughput': throughput, 'backend': backend,
        'accuracy': _accuracy(per_frame, src, align_fail), 'warnings': warnings,
        'frames': records, '_strips': strips, '_latencies': lat_ms, '_out_times': out_t,
        '_target_fps': throughput['input_fps_target'],
    }


# ---------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    """Return the bag_eval command line."""
    p = argparse.ArgumentParser(
        prog='bag_eval', description='Evaluate DPT depth on a rosbag2 (mcap or sqlite3): '
        'offline through the pipeline, or replayed through a running depth node.')
    p.add_argument('mode', choices=MODES, help='offline: frames straight into the pipeline; '
                   'replay: publish to a depth node over DDS and measure its outputs')
    p.add_argument('bag', help='rosbag2 directory (or a .mcap/.db3 file inside one)')
    p.add_argument('-o', '--output', default=None,
                   help='report directory (default: generated/bag_eval/<bag>-<mode>)')
    p.add_argument('--image-topic', default=None, help='camera image topic (default: the '
                   'only Image/CompressedImage topic not named like depth)')
    p.add_argument('--gt-topic', default='auto', help='ground-truth depth topic (32FC1 m or '
                   "16UC1 mm); 'auto' (default) = the one Image topic named like depth; "
                   "'none' = no accuracy metrics")
    p.add_argument('--max-frames', type=int, default=0, help='evaluate at most N frames')
    p.add_argument('--strips', type=int, default=DEFAULT_STRIPS,
                   help='frames illustrated in the report (default: %(default)s)')
    p.add_argument('--warmup', type=int, default=None,
                   help='untimed warm-up runs (offline) or frames sent and answered one by '
                   'one before the replay (default: offline %d, replay %d)'
                   % (DEFAULT_WARMUP['offline'], DEFAULT_WARMUP['replay']))
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    d = BackendOptions()
    g = p.add_argument_group('model/backend (offline; passed to the node with --start-node)')
    g.add_argument('--backend', default='torch',
                   help='torch | openvino | tt (default: %(default)s)')
    g.add_argument('--weights', default=d.weights,
                   help='auto | Intel/dpt-large | <dir> | random | tiny-random '
                   '(default: %(default)s)')
    g.add_argument('--image-size', type=int, default=d.image_size)
    g.add_argument('--device', default=d.device)
    g.add_argument('--dtype', default=d.dtype, choices=('fp32', 'bf16'))
    g.add_argument('--compile', action='store_true', default=d.compile)
    g.add_argument('--execution-mode', default=d.execution_mode,
                   choices=vocabulary.EXECUTION_MODES)
    g.add_argument('--dp', type=int, default=d.dp)
    g.add_argument('--seed', type=int, default=d.seed)
    g.add_argument('--threads', type=int, default=d.threads)
    g.add_argument('--no-fallback', action='store_true',
                   help='offline: fail instead of falling back to torch cpu')
    o = p.add_argument_group('offline')
    o.add_argument('--pcc-frames', type=int, default=DEFAULT_PCC_FRAMES,
                   help='frames compared with the CPU fp32 reference (0 = skip; '
                   'default: %(default)s)')
    r = p.add_argument_group('replay')
    r.add_argument('--rate', type=float, default=1.0,
                   help='replay speed factor on the recorded rate (default: %(default)s)')
    r.add_argument('--start-node', action='store_true',
                   help='start the depth node here (python -m dpt_ros.node) and stop it after')
    r.add_argument('--params-file', default=None,
                   help='params file for --start-node (default: the package config/dpt.yaml)')
    r.add_argument('--node-param', action='append', default=[], metavar='NAME:=VALUE',
                   help='extra node parameter for --start-node (repeatable)')
    r.add_argument('--node-ns', default=None, help='namespace the node publishes its outputs '
                   "under (default: the image topic's namespace)")
    r.add_argument('--publish-topic', default=None,
                   help="topic the frames are published on (default: the bag's topic)")
    r.add_argument('--camera-info-topic', default=None,
                   help='topic camera_info is published on (default: <image ns>/camera_info)')
    r.add_argument('--wait-node-s', type=float, default=120.0,
                   help='how long to wait for the node to appear and answer (default: '
                   '%(default)s s; a DPT-Large start on CPU takes tens of seconds)')
    r.add_argument('--drain-s', type=float, default=5.0,
                   help='how long to wait for outstanding outputs after the last frame, on '
                   'top of 3 model round trips as measured in the warm-up (default: '
                   '%(default)s s)')
    r.add_argument('--output-bag', default=None,
                   help="where the node's outputs are recorded (default: <output>/outputs_bag)")
    r.add_argument('--output-storage', default='mcap', choices=bagio.STORAGES)
    r.add_argument('--no-color', action='store_true',
                   help='do not subscribe to the colour output (the node then skips colouring)')
    r.add_argument('--no-output-bag', action='store_true', help='do not record outputs')
    return p


def _check_args(p: argparse.ArgumentParser, args) -> None:
    if args.warmup is None:
        args.warmup = DEFAULT_WARMUP[args.mode]
    if args.rate <= 0 or not math.isfinite(args.rate):
        p.error(f'--rate must be > 0, got {args.rate}')
    for name in ('max_frames', 'strips', 'warmup', 'pcc_frames'):
        if getattr(args, name) < 0:
            p.error(f'--{name.replace("_", "-")} must be >= 0')
    if args.image_size < 32 or args.image_size % 16:
        p.error(f'--image-size must be a multiple of 16 and >= 32, got {args.image_size}')


def _print_summary(res: dict, paths: dict) -> None:
    thr = res.get('throughput', {})
    lines = []
    if res.get('weights_random'):
        lines.append('WEIGHTS ARE RANDOM: depth and accuracy figures are not meaningful.')
    if res['mode'] == 'offline':
        lines.append(f"frames: {thr['frames_evaluated']}/{thr['frames_in_bag']}  "
                     f"fps_e2e: {thr['fps_e2e']:.2f}  latency ms p50/p95/p99: "
                     f"{thr['latency_ms_p50']:.1f}/{thr['latency_ms_p95']:.1f}/"
                     f"{thr['latency_ms_p99']:.1f}")
        if res.get('pcc', {}).get('pcc_min') is not None:
            lines.append(f"PCC vs CPU fp32 reference: min {res['pcc']['pcc_min']:.6f} over "
                         f"{res['pcc']['frames']} frames")
    else:
        lines.append(f"delivered {thr['frames_delivered']}/{thr['frames_sent']} "
                     f"(dropped {thr['frames_dropped']})  output fps: {thr['output_fps']:.2f} "
                     f"(input {thr['input_fps_actual']:.2f})  latency ms p50/p95/p99: "
                     f"{thr['latency_ms_p50']:.1f}/{thr['latency_ms_p95']:.1f}/"
                     f"{thr['latency_ms_p99']:.1f}")
    acc = res.get('accuracy') or {}
    if acc.get('frames'):
        lines.append(f"accuracy over {acc['frames']} GT frames: AbsRel {acc['abs_rel']:.4f}  "
                     f"RMSE {acc['rmse']:.4f} m  δ1 {acc['delta1']:.4f}  δ2 {acc['delta2']:.4f}"
                     f"  δ3 {acc['delta3']:.4f}  (scale {acc['scale']:.4g}, shift "
                     f"{acc['shift']:.4g})")
    for w in res.get('warnings', []):
        lines.append(f'warning: {w}')
    lines.append(f"report: {paths['html']}")
    lines.append(f"json:   {paths['json']}")
    print('\n'.join(lines))


def evaluate(args) -> tuple[dict, dict]:
    """Run the chosen mode and write the report; returns (results, report paths)."""
    from dpt_ros.evaluation import html_report as report
    gt = None if str(args.gt_topic).lower() in ('none', '', 'off') else args.gt_topic
    src = bagio.inspect_bag(args.bag, image_topic=args.image_topic, gt_topic=gt)
    if args.output is None:
        args.output = str(Path('generated') / 'bag_eval' / f'{src.path.name}-{args.mode}')
    Path(args.output).mkdir(parents=True, exist_ok=True)
    log.info('bag %s [%s]: %d frames on %s, ground truth: %s', src.path, src.storage,
             src.frame_count, src.image_topic, src.gt_topic or 'none')
    res = run_offline(args, src) if args.mode == 'offline' else run_replay(args, src)
    res['title'] = f'{src.path.name} ({args.mode})'
    res['input'] = {'bag': str(src.path), 'storage': src.storage,
                    'image_topic': src.image_topic, 'image_type': src.image_type,
                    'gt_topic': src.gt_topic, 'camera_info_topic': src.camera_info_topic,
                    'frames': src.frame_count, 'gt_frames': src.gt_count,
                    'duration_s': src.duration_ns / 1e9}
    thr, acc = res['throughput'], res.get('accuracy') or {}
    summary = {'mode': args.mode, 'weights': res['backend'].get('weights', args.weights),
               'weights_random': res['weights_random']}
    if args.mode == 'offline':
        summary.update({'backend': f"{res['backend']['name']} {res['backend']['device']} "
                        f"{res['backend']['dtype']}",
                        'frames evaluated': thr['frames_evaluated'], 'fps_e2e': thr['fps_e2e'],
                        'PCC vs CPU fp32 (min)': res.get('pcc', {}).get('pcc_min')})
    else:
        summary.update({'frames delivered': f"{thr['frames_delivered']} / {thr['frames_sent']}",
                        'frames dropped': thr['frames_dropped'],
                        'output FPS': thr['output_fps'],
                        'input FPS': thr['input_fps_actual']})
    summary.update({'latency p50 / p95 / p99 (ms)': [thr['latency_ms_p50'],
                                                     thr['latency_ms_p95'],
                                                     thr['latency_ms_p99']]})
    if acc.get('frames'):
        summary.update({'AbsRel': acc['abs_rel'], 'RMSE (m)': acc['rmse'],
                        'δ<1.25': acc['delta1'], 'δ<1.25²': acc['delta2'],
                        'δ<1.25³': acc['delta3']})
    res['summary'] = summary
    strips = res.pop('_strips')
    lat, out_t, target = res.pop('_latencies'), res.pop('_out_times'), res.pop('_target_fps')
    paths = report.write_report(args.output, res, strips, lat, out_t, target)
    return res, paths


def main(argv: list[str] | None = None) -> int:
    """Console entry point. 0: something was evaluated; 1: nothing could be; 2: usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='[%(levelname)s] %(name)s: %(message)s')
    try:
        res, paths = evaluate(args)
    except bagio.BagError as err:
        print(f'bag_eval: {err}', file=sys.stderr)
        return 1
    except EvalError as err:
        print(f'bag_eval: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('bag_eval: interrupted', file=sys.stderr)
        return 1
    _print_summary(res, paths)
    if res['evaluated'] == 0:
        print('bag_eval: no frame could be evaluated', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
