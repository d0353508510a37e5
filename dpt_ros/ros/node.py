"""
The ROS 2 depth node: camera topics in; relative depth, colour, metric depth, diagnostics out.

Thin glue. Parameters come from `params.py`, decoding from `image_codec`, scheduling from
`scheduler`, the model from `pipeline` + `backends`; this module only wires them to rclpy.

Per camera namespace <ns> (parameter `cameras`; '' = the node's own namespace):

  in   <ns>/image                sensor_msgs/Image (transport raw)
       <ns>/image/compressed     sensor_msgs/CompressedImage (transport compressed)
       <ns>/camera_info          optional
       <ns>/depth_reference      metric.mode reference only (metric.reference_topic);
                                 each frame is fitted against the one nearest its stamp
  out  <ns>/depth_relative       32FC1 relative inverse depth: larger = nearer, unknown scale
                                 and shift (NOT metres, hence not `depth`)
       <ns>/depth_relative/color bgr8, computed only while someone subscribes
       <ns>/depth_relative/camera_info   the input camera_info with the output header
       <ns>/depth, <ns>/depth/camera_info   REP 118 metres, when metric.mode != none
       <ns>/points               PointCloud2 of `depth` (ros/points.py), needs camera_info;
                                 computed only while someone subscribes
       /diagnostics              diagnostic_msgs/DiagnosticArray

Every output carries the input header (stamp, frame_id) unchanged.

A backend that dies after start-up (`fallback_after_failures` consecutive failed calls) is
replaced by torch on cpu when `allow_fallback` is true, the same policy as at start-up:
counted in backend_fallback_count (reason 'runtime: <error>'), diagnostics WARN.

Extra backends (test doubles, plug-ins) are registered at start-up from the environment:
DPT_ROS_EXTRA_BACKENDS='name=module:factory,...'; the `backend` parameter then accepts
`name`. Nothing else is loaded dynamically.

Exit codes: 0 after SIGINT/SIGTERM (workers stopped, backend closed, node destroyed), 2 for
an invalid parameter or a backend that cannot start, 1 for an unexpected error. A second
signal during shutdown exits at once with 1 (cleanup skipped), except a repeated SIGINT within
REPEATED_SIGINT_WINDOW_S (one Ctrl-C that reached us twice). After the cleanup the process
ends with os._exit, skipping interpreter teardown (see _exit_now()).
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from dpt_ros import vocabulary
from dpt_ros.backends import BackendError, create_backend, register_backend, StartedBackend
from dpt_ros.depth.metric import MetricDepth, ReferenceBuffer
from dpt_ros.errors import StartAborted, StartupError
from dpt_ros.perf.stats import FALLBACK_KEYS, PerfStats, STAGES
from dpt_ros.ros import image_codec, params
from dpt_ros.ros.points import PointsOutput
from dpt_ros.serving import tuning
from dpt_ros.serving.scheduler import FrameScheduler
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterException)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

# How long close() lets the workers end their frames (a running inference call) before it
# closes the backend anyway; launch/depth.launch.py's SIGTERM timeout allows for it.
WORKER_STOP_TIMEOUT_S = 1.0
# The runtime fallback: the backend (and device) that replaces one that died after start-up.
RUNTIME_FALLBACK_BACKEND, RUNTIME_FALLBACK_DEVICE = 'torch', 'cpu'

EXTRA_BACKENDS_ENV = 'DPT_ROS_EXTRA_BACKENDS'
EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
_OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
# Reference depth messages kept per camera for matching by stamp (metric.mode reference): a
# 30 Hz reference sensor covers ~0.27 s, more than a frame's time in the pipeline on a card.
REFERENCE_BUFFER = 8


def register_extra_backends(spec: str | None = None) -> list[str]:
    """Register 'name=module:factory,...' (default: $DPT_ROS_EXTRA_BACKENDS); returns names."""
    spec = os.environ.get(EXTRA_BACKENDS_ENV, '') if spec is None else spec
    names = []
    for item in filter(None, (s.strip() for s in spec.split(','))):
        name, sep, target = item.partition('=')
        if not sep or ':' not in target or not name.strip():
            raise StartupError(f"{EXTRA_BACKENDS_ENV}: '{item}' is not name=module:factory")
        register_backend(name.strip(), target.strip())
        names.append(name.strip())
    return names


def _descriptor(p: params.Param) -> ParameterDescriptor:
    d = ParameterDescriptor(name=p.name, description=p.description, read_only=p.read_only,
                            additional_constraints=p.constraint_text())
    if p.type_name == 'int' and (p.min is not None or p.max is not None):
        d.integer_range = [IntegerRange(from_value=int(p.min), to_value=int(p.max),
                                        step=int(p.step or 1))]
    elif p.type_name == 'float' and (p.min is not None or p.max is not None):
        d.floating_point_range = [FloatingPointRange(from_value=float(p.min),
                                                     to_value=float(p.max), step=0.0)]
    return d


def _topic(ns: str, name: str) -> str:
    return f'{ns.rstrip("/")}/{name}' if ns else name


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class _RosLogHandler(logging.Handler):
    """Forward the pure modules' `logging` records to the node's rclpy logger."""

    def __init__(self, ros_logger):
        super().__init__()
        self._ros = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.ERROR:
                self._ros.error(msg)
            elif record.levelno >= logging.WARNING:
                self._ros.warning(msg)
            elif record.levelno >= logging.INFO:
                self._ros.info(msg)
            else:
                self._ros.debug(msg)
        except Exception:  # logging must never take the node down
            pass


class _Camera:
    """One camera's topics, publishers and latest side-channel messages."""

    def __init__(self, ns: str):
        self.ns = ns
        self.image_topic = ''
        self.sub = None
        self.reliability = None
        self.info_sub = None
        self.info_reliability = None
        self.latest_info: CameraInfo | None = None
        self.ref_sub = None
        self.ref_reliability = None
        self.refs = ReferenceBuffer(REFERENCE_BUFFER)
        self.metric = None
        self.pub_depth = self.pub_color = self.pub_info = None
        self.pub_metric = self.pub_metric_info = None
        self.points: PointsOutput | None = None
        self.last_counts: dict = {}


class DepthNode(Node):
    """Subscribes to camera images, runs the depth pipeline off the executor, publishes."""

    def __init__(self, node_name: str = 'depth_node', *, autostart: bool = True, **kwargs):
        """
        Create the rclpy node; with autostart (default) also start() it.

        autostart=False leaves the slow part (backend start, warm-up) to a later start(),
        which main() runs on a thread so that a signal during start-up is honoured.
        """
        super().__init__(node_name, **kwargs)
        self._log_handler = _RosLogHandler(self.get_logger())
        pkg_log = logging.getLogger('dpt_ros')
        pkg_log.addHandler(self._log_handler)
        pkg_log.setLevel(logging.INFO)
        pkg_log.propagate = False
        self.scheduler = None
        self.pipeline = None
        self.started = None
        self._closed = False
        # Runtime fallback state: the swap runs on its own thread, once per node.
        self._swap_lock = threading.Lock()
        self._swap_thread: threading.Thread | None = None
        self._swap_tried = False
        # Inference calls in progress per backend (id), so a replaced backend is closed only
        # once nothing runs inside it any more.
        self._calls = threading.Condition()
        self._active_calls: dict[int, int] = {}
        self._abort = threading.Event()
        self._released = None     # the backend close() has released
        self.stop_wait_ms = 0.0     # close(): waiting for the workers (the running call)
        # Buffers the outputs are drawn into and published from (no copy per frame).
        self._out_images = image_codec.OutputImagePool()
        if autostart:
            try:
                self.start()
            except BaseException:
                self.destroy_node()
                raise

    # ----- start-up -----
    def start(self) -> None:
        """
        Declare and check parameters, start the backend, warm up, start serving.

        Raises StartupError (message for the user) or StartAborted; either way whatever
        was started is closed again.
        """
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def abort_start(self) -> None:
        """Ask a running start() to stop at its next step (it cannot cut a call short)."""
        self._abort.set()

    def _check_abort(self, step: str) -> None:
        if self._abort.is_set():
            raise StartAborted(f'start-up aborted after {step}')

    def _start(self) -> None:
        self.values = self._declare_parameters()
        errors = params.validate(self.values)
        if errors:
            raise StartupError('; '.join(errors))
        v = self.values
        self.max_pixels = v['max_pixels']
        self.min_fps = v['min_fps']

        self._check_abort('reading parameters')
        self.started = self._start_backend(v)
        self._check_abort('starting the backend')
        backend = self.started.backend
        if self.started.fell_back:
            self.get_logger().warning(
                f"running backend '{backend.info.name}' on {backend.info.device} instead of "
                f"'{v['backend']}': {self.started.fallback_reason}")

        from dpt_ros.inference.pipeline import DepthPipeline  # torch/cv2 heavy: import late
        self.perf = PerfStats()
        self.pipeline = DepthPipeline(self.started, colormap=v['colormap'], norm=v['norm'],
                                      norm_low=v['norm_low'], norm_high=v['norm_high'],
                                      perf=self.perf)
        self._warm_up(backend)
        self._check_abort('the warm-up')
        concurrency = max(1, int(getattr(backend, 'max_concurrency', 1)))
        self.cameras = {ns: _Camera(ns) for ns in v['cameras']}
        self._ref_max_dt_ns = int(v['metric.reference_max_dt_s'] * 1e9)
        self.scheduler = FrameScheduler(
            list(self.cameras), self._prepare, self._infer, self._finish,
            concurrency=concurrency, timeout_s=v['backend_timeout_s'], total=self.perf,
            logger=logging.getLogger('dpt_ros.serving.scheduler'),
            on_failure=self._on_backend_failure,
            reject_log_interval_s=v['reject_log_interval_s'])
        for cam in self.cameras.values():
            self._make_camera_io(cam)
        self.diag_pub = self.create_publisher(DiagnosticArray, vocabulary.TOPIC_DIAGNOSTICS, 10)
        self._diag_timer = self.create_timer(1.0 / v['diagnostics_rate'], self._publish_diag)
        self._last_node_counts: dict = {}
        self._last_diag_time = time.monotonic()
        if v['qos_reliability'] == 'auto':
            # Publishers may appear later or change: re-match their reliability (rosbag2 style).
            self._qos_timer = self.create_timer(0.5, self._refresh_auto_qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.scheduler.start()
        info = backend.info
        topics = [c.image_topic for c in self.cameras.values()]
        self.get_logger().info(
            f'serving {len(self.cameras)} camera(s) {topics}'
            f' with {info.name} on {info.device} ({info.execution_mode}, dp {info.dp}, '
            f'{concurrency} worker(s), {info.image_size}x{info.image_size}, '
            f'weights {info.weights})')

    def _start_backend(self, v: dict) -> StartedBackend:
        # The fallback policy (tt without a card, torch on cuda without CUDA -> torch on cpu)
        # lives in create_backend, shared with the runner.
        try:
            return create_backend(v['backend'], params.backend_options(v),
                                  allow_fallback=v['allow_fallback'],
                                  logger=logging.getLogger('dpt_ros.backends'))
        except BackendError as exc:
            raise StartupError(f"backend '{v['backend']}' cannot start: {exc}") from None

    def _warm_up(self, backend) -> None:
        # One frame through every stage before serving: first calls import torch for the
        # resize, build traces, compile kernels. Outside `perf`, so no figure includes them.
        from dpt_ros.inference import colorize
        from dpt_ros.inference.postprocess import resize_depth
        from dpt_ros.inference.preprocess import warm_up
        import numpy as np
        t0 = time.monotonic()
        warm_up()   # the compiled resize: JIT or numba's cache load, not on the first frame
        s = self.pipeline.image_size
        batch = self.pipeline.model_input(np.zeros((s, s, 3), np.uint8))[None]
        try:
            raw = np.asarray(backend.infer(batch), dtype=np.float32)[0]
        except Exception as exc:  # the backend is judged frame by frame; say it now too
            self.get_logger().error(f'warm-up inference failed: {type(exc).__name__}: {exc}')
            raw = np.zeros((s, s), np.float32)
        # A size other than S x S: same-size resizes take a shortcut that imports nothing.
        colorize.colorize(resize_depth(raw, (s // 2 + 1, s)), *self.pipeline.colorization)
        self.get_logger().info(f'warm-up took {time.monotonic() - t0:.2f} s')

    def _declare_parameters(self) -> dict:
        overrides = getattr(self, '_parameter_overrides', {}) or {}
        values, errors = {}, []
        for p in params.PARAMS:
            try:
                default = list(p.default) if isinstance(p.default, list) else p.default
                values[p.name] = self.declare_parameter(p.name, default, _descriptor(p)).value
            except (InvalidParameterTypeException, InvalidParameterValueException,
                    ParameterException) as exc:
                raw = overrides[p.name].value if p.name in overrides else None
                if p.type_name == 'float' and isinstance(raw, int) and not isinstance(raw, bool):
                    errors.append(f"parameter '{p.name}' must be a floating-point number, got "
                                  f'{raw} (write {raw}.0)')
                else:
                    errors.append(params.check_value(p.name, raw) or
                                  f"parameter '{p.name}': {exc}")
        if errors:
            raise StartupError('; '.join(errors))
        for name in sorted(set(overrides) - set(params.BY_NAME) - {'use_sim_time'}):
            self.get_logger().warning(f"ignoring unknown parameter '{name}' (typo?); known: "
                                      f"{', '.join(p.name for p in params.PARAMS)}")
        values['cameras'] = list(values['cameras'])
        return values

    def _make_camera_io(self, cam: _Camera) -> None:
        v = self.values
        ns = cam.ns
        raw_topic = self.resolve_topic_name(_topic(ns, vocabulary.TOPIC_IMAGE))
        cam.image_topic = raw_topic
        if v['transport'] == 'compressed':
            # image_transport style: <image>/compressed follows a remapped `image`; a remap of
            # `image/compressed` itself wins.
            name = _topic(ns, f'{vocabulary.TOPIC_IMAGE}/{vocabulary.COMPRESSED_SUFFIX}')
            resolved = self.resolve_topic_name(name)
            cam.image_topic = (resolved if resolved != self.resolve_topic_name(
                name, only_expand=True) else f'{raw_topic}/{vocabulary.COMPRESSED_SUFFIX}')
        cam.pub_depth = self.create_publisher(Image, _topic(ns, vocabulary.TOPIC_DEPTH_RELATIVE),
                                              _OUTPUT_QOS)
        cam.pub_color = self.create_publisher(
            Image, _topic(ns, vocabulary.TOPIC_DEPTH_RELATIVE_COLOR), _OUTPUT_QOS)
        cam.pub_info = self.create_publisher(
            CameraInfo, _topic(ns, vocabulary.TOPIC_DEPTH_RELATIVE_INFO), _OUTPUT_QOS)
        if v['metric.mode'] != 'none':
            cam.metric = MetricDepth(v['metric.mode'], scale=v['metric.scale'],
                                     shift=v['metric.shift'], min_depth=v['metric.min_depth'],
                                     max_depth=v['metric.max_depth'],
                                     smoothing=v['metric.smoothing'])
            cam.pub_metric = self.create_publisher(
                Image, _topic(ns, vocabulary.TOPIC_DEPTH_METRIC), _OUTPUT_QOS)
            cam.pub_metric_info = self.create_publisher(
                CameraInfo, _topic(ns, vocabulary.TOPIC_DEPTH_METRIC_INFO), _OUTPUT_QOS)
            cam.points = PointsOutput(self, ns, v, _OUTPUT_QOS)
        self._subscribe(cam)

    # ----- QoS and subscriptions -----
    def _wanted_reliability(self, topic: str, current):
        mode = self.values['qos_reliability']
        if mode == 'reliable':
            return ReliabilityPolicy.RELIABLE
        if mode == 'best_effort':
            return ReliabilityPolicy.BEST_EFFORT
        pubs = self.get_publishers_info_by_topic(topic)
        if not pubs:
            # Nobody publishes yet: keep what we have; reliable matches reliable publishers
            # at once and the timer switches if a best-effort one shows up.
            return current or ReliabilityPolicy.RELIABLE
        if any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in pubs):
            return ReliabilityPolicy.BEST_EFFORT   # a reliable reader would not match it
        return ReliabilityPolicy.RELIABLE

    def _subscribe(self, cam: _Camera) -> None:
        v = self.values
        msg_type = Image if v['transport'] == 'raw' else CompressedImage
        want = self._wanted_reliability(cam.image_topic, cam.reliability)
        if cam.sub is None or want != cam.reliability:
            if cam.sub is not None:
                self.destroy_subscription(cam.sub)
            qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=want)
            cam.sub = self.create_subscription(
                msg_type, cam.image_topic,
                lambda msg, ns=cam.ns: self.scheduler.submit(ns, msg, _stamp_ns(msg.header)),
                qos)
            if cam.reliability is not None:
                self.get_logger().info(f'{cam.image_topic}: reliability now {want.name.lower()}'
                                       ' to match its publishers')
            cam.reliability = want
        info_topic = self.resolve_topic_name(_topic(cam.ns, vocabulary.TOPIC_CAMERA_INFO))
        want = self._wanted_reliability(info_topic, cam.info_reliability)
        if cam.info_sub is None or want != cam.info_reliability:
            if cam.info_sub is not None:
                self.destroy_subscription(cam.info_sub)
            cam.info_sub = self.create_subscription(
                CameraInfo, info_topic, lambda msg, c=cam: setattr(c, 'latest_info', msg),
                QoSProfile(depth=1, reliability=want))
            cam.info_reliability = want
        if v['metric.mode'] == 'reference':
            ref_topic = self.resolve_topic_name(_topic(cam.ns, v['metric.reference_topic']))
            want = self._wanted_reliability(ref_topic, cam.ref_reliability)
            if cam.ref_sub is None or want != cam.ref_reliability:
                if cam.ref_sub is not None:
                    self.destroy_subscription(cam.ref_sub)
                cam.ref_sub = self.create_subscription(
                    Image, ref_topic,
                    lambda msg, c=cam: c.refs.add(_stamp_ns(msg.header), msg),
                    QoSProfile(depth=REFERENCE_BUFFER, reliability=want))
                cam.ref_reliability = want

    def _refresh_auto_qos(self) -> None:
        for cam in self.cameras.values():
            self._subscribe(cam)

    # ----- pipeline stages (scheduler threads) -----
    def _prepare(self, frame):
        msg = frame.msg
        with self.perf.stage('decode'):
            rgb = image_codec.decode(msg, self.max_pixels)
        tensor = self.pipeline.prepare(rgb)
        return tensor, rgb.shape[:2], msg.header, rgb   # rgb: the colour of `points`

    def _infer(self, prepared):
        with self._calls:
            key = id(self.pipeline.backend)
            self._active_calls[key] = self._active_calls.get(key, 0) + 1
        try:
            return self.pipeline.infer(prepared[0][None])[0]
        finally:
            with self._calls:
                self._active_calls[key] -= 1
                self._calls.notify_all()

    def _finish(self, frame, raw) -> None:
        _, hw, header, rgb = frame.prepared
        cam = self.cameras[frame.camera]
        want_color = cam.pub_color.get_subscription_count() > 0
        # Outputs are drawn into the buffers their messages carry; publish() copies them,
        # so the buffers go back to the pool as soon as the messages are out.
        with self._out_images.lend(hw[0], hw[1], '32FC1',
                                   'bgr8' if want_color else None) as (depth_img, color_img):
            res = self.pipeline.finish(raw, hw, want_color=want_color,
                                       depth_out=depth_img.pixels,
                                       color_out=color_img.pixels if color_img else None)
            metric = (self._metric_depth(cam, res.depth, frame.stamp_ns)
                      if cam.metric is not None else None)
            t0 = time.perf_counter()
            cam.pub_depth.publish(depth_img.message(Image, header))
            if color_img is not None:
                cam.pub_color.publish(color_img.message(Image, header))
            info = cam.latest_info
            if info is not None:
                out_info = _with_header(info, header)
                cam.pub_info.publish(out_info)
            if metric is not None:
                cam.pub_metric.publish(image_codec.new_message(
                    Image, header=header, **image_codec.depth_to_image_fields(metric)))
                if info is not None:
                    cam.pub_metric_info.publish(out_info)
            self.perf.add_stage('publish', (time.perf_counter() - t0) * 1e3)
        if metric is not None:
            cam.points.publish(metric, header, info, rgb)   # only while subscribed

    def _metric_depth(self, cam: _Camera, depth, stamp_ns: int):
        ref = None
        if cam.metric.mode == 'reference':
            ref, _ = cam.refs.take(stamp_ns, self._ref_max_dt_ns)
        if ref is not None:
            try:
                cam.metric.update_reference(depth, image_codec.decode_depth_m(ref,
                                                                              self.max_pixels))
            except image_codec.InvalidImage as exc:
                self.perf.count('reference_rejected', reason=exc.reason)
                self.get_logger().warning(f'reference depth rejected ({exc.reason}): {exc}',
                                          throttle_duration_sec=5.0)
        return cam.metric.to_metric(depth) if cam.metric.ready else None

    # ----- runtime fallback -----
    def _on_backend_failure(self, health) -> None:
        """Scheduler hook after each failed call: swap in torch cpu once the backend is dead."""
        limit = self.values['fallback_after_failures']
        if limit <= 0 or not self.values['allow_fallback'] or self._closed:
            return
        info = self.pipeline.backend.info
        if (info.name, info.device) == (RUNTIME_FALLBACK_BACKEND, RUNTIME_FALLBACK_DEVICE):
            return   # already the fallback: nothing better to switch to
        if health.consecutive_failures < limit:
            return
        with self._swap_lock:
            if self._swap_tried or self._closed:
                return
            self._swap_tried = True
            reason = f'runtime: {health.last_failure}'
            # Starting torch takes seconds (model load): not on a scheduler worker, which
            # would stall the watchdog and the other cameras.
            self._swap_thread = threading.Thread(target=self._swap_to_fallback, args=(reason,),
                                                 name='dpt-fallback', daemon=True)
            self._swap_thread.start()

    def _swap_to_fallback(self, reason: str) -> None:
        old = self.pipeline.backend
        log = self.get_logger()
        log.error(f"backend '{old.info.name}' on {old.info.device} failed "
                  f"{self.values['fallback_after_failures']} times in a row ({reason}); "
                  f"starting '{RUNTIME_FALLBACK_BACKEND}' on {RUNTIME_FALLBACK_DEVICE} "
                  '(counted in backend_fallback_count)')
        opts = params.backend_options(self.values).replace(
            device=RUNTIME_FALLBACK_DEVICE, dp=1, batch_size=1)
        try:
            new = create_backend(RUNTIME_FALLBACK_BACKEND, opts, allow_fallback=False,
                                 logger=logging.getLogger('dpt_ros.backends')).backend
        except Exception as exc:  # keep the old one: diagnostics stay ERROR with its reason
            log.error(f'runtime fallback failed to start: {type(exc).__name__}: {exc}')
            return
        try:
            # First call outside `perf`: it pays for lazy imports and allocations.
            s = self.pipeline.image_size
            import numpy as np
            new.infer(np.zeros((1, 3, s, s), np.float32))
        except Exception as exc:
            log.error(f'runtime fallback failed its first inference: {type(exc).__name__}: '
                      f'{exc}')
            _close_quietly(new, log)
            return
        with self._swap_lock:
            if self._closed:          # shut down while we were starting it
                _close_quietly(new, log)
                return
            # Counted before the first frame can reach the new backend, so no output is
            # ever published by a fallback that diagnostics do not show yet.
            self.perf.count('backend_fallback_count', 1, reason=reason)
            self.started = StartedBackend(new, requested=self.values['backend'],
                                          fallback_reason=reason)
            self.pipeline.fallback_reason = reason
            self.pipeline.backend = new
        log.warning(f"running '{new.info.name}' on {new.info.device} instead of "
                    f"'{old.info.name}' from now on ({reason})")
        # Close the dead backend only once no call is inside it (a device must not be
        # released under a running trace); a call stuck past the watchdog is not waited for.
        limit = self.values['backend_timeout_s'] or 30.0
        with self._calls:
            self._calls.wait_for(lambda: self._closed or
                                 self._active_calls.get(id(old), 0) == 0, limit)
        _close_quietly(old, log)

    # ----- runtime parameters -----
    def _on_set_parameters(self, changes) -> SetParametersResult:
        new = {p.name: p.value for p in changes}
        reason = params.check_runtime_change(new, self.values)
        if reason:
            self.get_logger().warning(f'rejected parameter change: {reason}')
            return SetParametersResult(successful=False, reason=reason)
        merged = dict(self.values, **new)
        if any(k in new for k in ('colormap', 'norm', 'norm_low', 'norm_high')):
            try:
                self.pipeline.set_colorization(merged['colormap'], merged['norm'],
                                               merged['norm_low'], merged['norm_high'])
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if 'diagnostics_rate' in new and new['diagnostics_rate'] != self.values[
                'diagnostics_rate']:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(1.0 / new['diagnostics_rate'],
                                                 self._publish_diag)
        self.min_fps = merged['min_fps']
        self.values = merged
        self.get_logger().info(f'parameters changed: {new}')
        return SetParametersResult(successful=True)

    # ----- diagnostics -----
    def _publish_diag(self) -> None:
        try:
            arr = DiagnosticArray()
            arr.header.stamp = self.get_clock().now().to_msg()
            arr.status = self.diagnostics()
            self.diag_pub.publish(arr)
        except Exception as exc:  # diagnostics must never stop the node
            self.get_logger().error(f'diagnostics failed: {type(exc).__name__}: {exc}',
                                    throttle_duration_sec=10.0)

    def diagnostics(self) -> list[DiagnosticStatus]:
        """One status for the node and one per camera, with levels judged since last time."""
        now = time.monotonic()
        backend = self.pipeline.backend
        info = backend.info
        health = self.scheduler.health
        snap = self.perf.snapshot()
        counts = self.scheduler.counts()
        delta = {k: counts[k] - self._last_node_counts.get(k, 0) for k in counts}
        self._last_node_counts = counts

        level, why = self._judge(snap, delta, health)
        hw = info.device if info.device else 'unknown'
        device_fps = snap['device_fps']
        if not device_fps == device_fps:   # NaN: no trace wall time; use extra or infer time
            device_fps = info.extra.get('device_fps', float('nan'))
        if not device_fps == device_fps and snap['inference_ms'] == snap['inference_ms']:
            parallel = min(self.scheduler.concurrency,
                           max(1, int(getattr(backend, 'max_concurrency', 1))))
            device_fps = parallel * 1e3 / snap['inference_ms']
        kv = {
            'backend': info.name, 'backend_requested': self.values['backend'],
            'fallback_reason': self.started.fallback_reason or '',
            'device': info.device, 'execution_mode': info.execution_mode, 'dp': info.dp,
            'batch': info.batch_size, 'workers': self.scheduler.concurrency,
            'image_size': info.image_size, 'model': info.model_name, 'weights': info.weights,
            'dtype': info.dtype, 'model_input': self.pipeline.input_format,
            'input_fps': snap['input_fps'], 'output_fps': snap['output_fps'],
            'device_fps': device_fps,
            # receive -> publish: always valid. e2e (header stamp -> publish): NaN while the
            # stamps are not on this clock (bag replay, sim time).
            'latency_ms_p50': snap['latency_ms_p50'], 'latency_ms_p95': snap['latency_ms_p95'],
            'latency_ms_p99': snap['latency_ms_p99'],
            **self.scheduler.e2e_latency(),
        }
        for s in STAGES:
            kv[f'{s}_ms'] = snap.get(f'{s}_ms', float('nan'))
        kv.update({k: counts[k] for k in counts})
        for k in FALLBACK_KEYS:
            kv[k] = snap.get(k, 0)
        for k, val in backend.fallback_counts().items() if hasattr(
                backend, 'fallback_counts') else ():
            kv.setdefault(k, val)
        kv['reasons'] = _reasons(snap['reasons'])
        kv['last_failure'] = health.last_failure
        kv['hung_calls'] = health.hung_calls
        statuses = [_status(level, f'{self.get_name()}: depth pipeline', hw, why, kv)]

        for cam in self.cameras.values():
            cs = self.scheduler.perf(cam.ns).snapshot()
            cc = self.scheduler.counts(cam.ns)
            cd = {k: cc[k] - cam.last_counts.get(k, 0) for k in cc}
            cam.last_counts = cc
            clevel, cwhy = self._judge(cs, cd, health, camera=True)
            ckv = {
                'input_topic': cam.image_topic,
                'output_topic': self.resolve_topic_name(
                    _topic(cam.ns, vocabulary.TOPIC_DEPTH_RELATIVE)),
                'reliability': cam.reliability.name.lower() if cam.reliability else '',
                'publishers': self.count_publishers(cam.image_topic),
                'input_fps': cs['input_fps'], 'output_fps': cs['output_fps'],
                'latency_ms_p50': cs['latency_ms_p50'], 'latency_ms_p95': cs['latency_ms_p95'],
                'latency_ms_p99': cs['latency_ms_p99'],
                **self.scheduler.e2e_latency(cam.ns),
                'camera_info': 'yes' if cam.latest_info is not None else 'not received',
                # Slot + prepared frame waiting for a worker; never more than 2 by design.
                'max_waiting_frames': self.scheduler.max_pending(cam.ns),
            }
            ckv.update(cc)
            ckv['reasons'] = _reasons(cs['reasons'])
            if cam.metric is not None:
                ckv['metric_mode'] = cam.metric.mode
                ckv['metric_ready'] = cam.metric.ready
                ckv['metric_scale'] = cam.metric.scale
                ckv['metric_shift'] = cam.metric.shift
                ckv.update(cam.points.diagnostics())
            if cam.metric is not None and cam.metric.mode == 'reference':
                ckv['metric_references_fitted'] = cam.refs.taken
                ckv['metric_references_unmatched'] = cam.refs.unmatched
            name = f'{self.get_name()}: camera {cam.ns or self.get_namespace()}'
            statuses.append(_status(clevel, name, hw, cwhy, ckv))
        self._last_diag_time = now
        return statuses

    def _judge(self, snap, delta, health, camera: bool = False):
        errors, warns = [], []
        if health.hung_calls:
            errors.append(f'{health.hung_calls} inference call(s) hung past '
                          f"{self.values['backend_timeout_s']:g} s")
        if delta['frames_failed'] and health.consecutive_failures:
            errors.append(f"backend failing: {delta['frames_failed']} frame(s) failed "
                          f'({health.last_failure})')
        elif delta['frames_failed']:
            warns.append(f"{delta['frames_failed']} frame(s) failed, backend recovered")
        if not camera and self.started.fell_back:
            warns.append(f'fallback active: running {self.pipeline.backend.info.name} on '
                         f'{self.pipeline.backend.info.device} instead of '
                         f"{self.values['backend']} on {self.values['device']} "
                         f'({self.started.fallback_reason})')
        if self.min_fps > 0 and snap['input_fps'] > 0 and snap['output_fps'] < self.min_fps:
            warns.append(f"output {snap['output_fps']:.1f} FPS below min_fps {self.min_fps:g}")
        if delta['frames_dropped']:
            warns.append(f"drops rising: {delta['frames_dropped']} stale frame(s) dropped "
                         '(backend slower than input)')
        if delta['frames_rejected']:
            warns.append(f"{delta['frames_rejected']} bad input frame(s) rejected")
        if errors:
            return DiagnosticStatus.ERROR, '; '.join(errors + warns)
        if warns:
            return DiagnosticStatus.WARN, '; '.join(warns)
        return DiagnosticStatus.OK, 'running'

    # ----- shutdown -----
    def close(self, timeout: float | None = None) -> None:
        """
        Stop workers, release the backend (device, traces). Safe to call twice.

        A second call still releases a backend that a start-up step finished starting after
        the first one (a signal arrived while the model was loading).
        """
        timeout = WORKER_STOP_TIMEOUT_S if timeout is None else timeout
        with self._swap_lock:
            first, self._closed = not self._closed, True
        if first:
            deadline = time.monotonic() + timeout
            if self.scheduler is not None:
                t0 = time.monotonic()
                stopped = self.scheduler.stop(timeout)
                # Mostly the running inference call, which is let finish: said at exit.
                self.stop_wait_ms = (time.monotonic() - t0) * 1e3
                if not stopped:
                    self.get_logger().warning('an inference call did not return within '
                                              f'{timeout:g} s; closing the backend anyway')
            with self._calls:
                self._calls.notify_all()   # a fallback waiting to close the old one: go now
            swap = self._swap_thread
            if swap is not None:
                # It closes the backend it replaced (or the fallback it was still starting).
                swap.join(max(0.0, deadline - time.monotonic()))
        started = self.started
        with self._swap_lock:
            backend = started.backend if started is not None else None
            if backend is None or self._released is backend:
                backend = None
            else:
                self._released = backend
        if backend is not None:
            try:
                backend.close()
            except Exception as exc:  # report, keep shutting down
                self.get_logger().error(f'closing the backend failed: {exc}')
        if first:
            logging.getLogger('dpt_ros').removeHandler(self._log_handler)

    def stuck_threads(self) -> list[str]:
        """Names of the node's threads still alive after close() (stuck in a backend call)."""
        names = self.scheduler.alive_threads() if self.scheduler is not None else []
        t = self._swap_thread
        return names + ([t.name] if t is not None and t.is_alive() else [])


def _close_quietly(backend, log) -> None:
    try:
        backend.close()
    except Exception as exc:  # report, keep going
        log.error(f'closing backend {backend.info.name} failed: {type(exc).__name__}: {exc}')


def _with_header(info: CameraInfo, header) -> CameraInfo:
    out = CameraInfo(height=info.height, width=info.width,
                     distortion_model=info.distortion_model, d=info.d, k=info.k, r=info.r,
                     p=info.p, binning_x=info.binning_x, binning_y=info.binning_y, roi=info.roi)
    out.header = header
    return out


def _reasons(reasons: dict) -> str:
    return ', '.join(f'{k}={v}' for k, v in sorted(reasons.items())) or 'none'


def _fmt(value) -> str:
    if isinstance(value, float):
        return 'nan' if value != value else f'{value:.3f}'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def _status(level, name, hardware_id, message, kv: dict) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, hardware_id=hardware_id, message=message,
                            values=[KeyValue(key=k, value=_fmt(v)) for k, v in kv.items()])


# How long a signal during start-up waits for the current start-up step before giving up on it.
STARTUP_ABORT_WAIT_S = 1.0
# A SIGINT this soon after the first is the same Ctrl-C delivered twice (by the terminal to the
# process group, and again by a non-interactive `ros2 launch`), not a request to force the exit.
REPEATED_SIGINT_WINDOW_S = 1.0


def _run_start(node: DepthNode, failure: list) -> None:
    try:
        node.start()
    except BaseException as exc:  # handed to main(), which reports it
        failure.append(exc)


def main(args=None) -> None:
    """
    Console script `depth_node`: run until SIGINT/SIGTERM, then end the process.

    See the module doc for the exit codes. The process ends inside this call (os._exit) once
    the node's cleanup is done: see _exit_now().
    """
    _exit_now(*run(args))


def run(args=None) -> tuple[int, list[str]]:
    """Run the node until a signal; release everything; return (exit code, stuck threads)."""
    stop = threading.Event()
    first_signal: list = []     # (signal number, monotonic time) of the signal that stops us

    def on_signal(signum, _frame):
        if stop.is_set():
            sig0, t0 = first_signal[0]
            if signum == sig0 == signal.SIGINT and \
                    time.monotonic() - t0 < REPEATED_SIGINT_WINDOW_S:
                return
            os._exit(EXIT_ERROR)   # a second signal: the user wants out now
        first_signal.append((signum, time.monotonic()))
        stop.set()

    args = sys.argv if args is None else args
    try:
        # Our own handlers: rclpy's would shut the context down under the running workers.
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # unreadable params file, bad --ros-args
        print(f'depth_node: cannot start: {str(exc).splitlines()[0]}', file=sys.stderr)
        return EXIT_CONFIG, []
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = None
    starter = None
    code = EXIT_OK
    try:
        register_extra_backends()
        node = DepthNode(autostart=False)
        # Start-up (model load, warm-up: minutes on a TT card while traces compile) runs on
        # its own thread so that a signal now is honoured: launch systems escalate to a
        # second signal after a few seconds, which would skip releasing the device.
        failure: list[BaseException] = []
        starter = threading.Thread(target=_run_start, args=(node, failure), name='dpt-startup',
                                   daemon=True)
        starter.start()
        while starter.is_alive() and not stop.is_set():
            starter.join(0.05)
        if starter.is_alive():
            node.get_logger().info('signal during start-up: stopping')
            node.abort_start()
            starter.join(STARTUP_ABORT_WAIT_S)   # let the current step end if it is quick
        if failure:
            raise failure[0]
        if not starter.is_alive() and not stop.is_set():
            tuned = tuning.tune_process_for_serving()
            node.get_logger().info('serving-time tuning: ' + ', '.join(
                f'{k} {v}' for k, v in tuned.items()))
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            stop_waking = _wake_executor_on_signals(node)
            try:
                while not stop.is_set() and rclpy.ok():
                    executor.spin_once(timeout_sec=0.1)
            finally:
                stop_waking()
    except StartupError as exc:
        rclpy.logging.get_logger('depth_node').error(f'invalid configuration: {exc}')
        code = EXIT_CONFIG
    except (KeyboardInterrupt, ExternalShutdownException, StartAborted):
        pass
    except Exception as exc:  # a bug: say what, exit non-zero, still release the device
        rclpy.logging.get_logger('depth_node').error(
            f'unexpected error: {type(exc).__name__}: {exc}')
        code = EXIT_ERROR
    finally:
        stuck = []
        if node is not None:
            # Also closes the backend under a start-up step that is still running (a hung
            # warm-up call); that thread is then left to the forced exit below.
            node.close()
            stuck = node.stuck_threads()
            if starter is not None and starter.is_alive():
                stuck.append(starter.name)
            if first_signal:
                took = (time.monotonic() - first_signal[0][1]) * 1e3
                node.get_logger().info(
                    f'stopping on {signal.Signals(first_signal[0][0]).name}: released in '
                    f'{took:.0f} ms ({node.stop_wait_ms:.0f} ms of it for the workers to end '
                    f'their frames); exit code {code}')
            if starter is None or not starter.is_alive():
                node.destroy_node()    # never under the start-up thread still using it
        rclpy.try_shutdown()    # also flushes and closes the ROS log files
    return code, stuck


def _wake_executor_on_signals(node: DepthNode):
    """
    Make a signal end the executor's wait at once instead of at its next timeout.

    Python runs a signal handler only when the main thread is back in Python code, and the
    main thread spends its time inside rcl's wait. The C-level handler writes each signal to
    the wake-up fd at once; a thread reading it triggers a guard condition, rcl's wait
    returns, and our handler runs. Returns a function that undoes it and ends the thread.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    guard = node.create_guard_condition(lambda: None)

    def wake() -> None:
        while os.read(read_fd, 64):   # b'' once the write end is closed: done
            try:
                guard.trigger()
            except Exception:  # the node is already destroyed: the stop is under way
                return
        os.close(read_fd)
    thread = threading.Thread(target=wake, name='dpt-signal-wake', daemon=True)
    thread.start()
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def undo() -> None:
        signal.set_wakeup_fd(-1)
        os.close(write_fd)
        thread.join(1.0)
    return undo


def _exit_now(code: int, stuck: list[str]) -> None:
    """
    End the process with `code` now that the node has released everything it holds.

    What a normal interpreter exit would still do is only slow, and sometimes harmful:
    unloading torch, numba and ttnn took 0.45-2.5 s (over 5 s under disk load), long enough
    for a launch system to escalate to SIGTERM; after a tt -> cpu fallback nanobind reports
    every ttnn object still referenced as leaked (~40 lines); and with a worker still inside a
    backend call in native code (torch, ttnn) that ignores our stop request, finalization
    races that thread: when the call returns, re-taking the GIL ends the thread with a forced
    unwind through C++ frames, which aborts the process ('terminate called without an active
    exception', exit 134). So: run the Python exit handlers (as a normal exit would, also
    while daemon threads still run), flush the streams, leave.
    """
    if stuck:
        rclpy.logging.get_logger('depth_node').warning(
            f"exiting while {', '.join(stuck)} is still inside a backend call")
    try:
        atexit._run_exitfuncs()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe must not change the exit code
                pass
        os._exit(code)


if __name__ == '__main__':
    sys.exit(main())
