"""
The ROS 2 depth node, a managed (lifecycle) node: camera topics in, depth and diagnostics out.

Glue only: parameters (descriptors, params), camera I/O (cameras), the backend's owner
(serving.supervisor), scheduling (serving.scheduler), health (serving.health), the model
(serving.pipeline). Topics per camera namespace <ns> (parameter `cameras`):

  in   <ns>/image, <ns>/image/compressed, <ns>/camera_info, <ns>/depth_reference (metric)
  out  <ns>/depth_relative (32FC1 relative inverse depth, NOT metres), .../color (bgr8, only
       while subscribed; .../color/compressed JPEG), .../camera_info; <ns>/depth + camera_info
       (REP 118 metres, when metric.mode != none; depth/compressedDepth); <ns>/points
       (PointCloud2 of `depth`, needs camera_info, only while subscribed; ros/points.py);
       /diagnostics

Every output carries the input header. Lifecycle: configure = parameters checked, backend
started and warmed up, output (lifecycle) publishers created; activate = subscriptions live,
publishers enabled; deactivate = serving stops, publishers quiet, the backend stays; cleanup /
shutdown = backend (device, traces) and publishers released. Start-up parameters can be set
only while unconfigured. With `autostart` (default) the entry point (entry.py) configures and
activates at once.
"""
from __future__ import annotations

import logging
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from dpt_ros import vocabulary
from dpt_ros.backends import BackendError, create_backend
from dpt_ros.errors import StartAborted, StartupError
from dpt_ros.perf.stats import PerfStats
from dpt_ros.ros import descriptors, image_codec, log_bridge, params
from dpt_ros.ros.cameras import CameraIO
from dpt_ros.serving import tuning
from dpt_ros.serving.health import HealthReport
from dpt_ros.serving.scheduler import FrameScheduler
from dpt_ros.serving.supervisor import BackendSupervisor, cpu_fallback_starter
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

# How long close() lets the workers end their frames (a running inference call) before it
# closes the backend anyway; launch/depth.launch.py's SIGTERM timeout allows for it.
WORKER_STOP_TIMEOUT_S = 1.0
_SUCCESS, _FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
_ERROR = TransitionCallbackReturn.ERROR


class DepthNode(LifecycleNode):
    """Subscribes to camera images while active, runs the pipeline off the executor."""

    def __init__(self, node_name: str = vocabulary.NODE_NAME, **kwargs):
        # Every override becomes readable through the public API (descriptors.py).
        kwargs.setdefault('automatically_declare_parameters_from_overrides', True)
        super().__init__(node_name, **kwargs)
        self._log_handler = log_bridge.attach(self.get_logger())
        self._overrides = descriptors.take_overrides(self)
        # Values the user gave wrongly, each until it is set again (configure refuses them).
        self._bad_values = descriptors.declare_all(self, self._overrides)
        self.values = descriptors.read_all(self)
        self.supervisor = self.pipeline = self.scheduler = self.report = None
        self.cameras: dict[str, CameraIO] = {}
        self.start_failure: BaseException | None = None
        self._abort = threading.Event()
        self._closed = False
        self._serving = False
        self._serve_timers: dict = {}
        self._diag_pub = None
        self._tuned = False
        self.stop_wait_ms = 0.0     # stopping the workers (mostly the running call)
        # Buffers the outputs are drawn into and published from (no copy per frame).
        self._out_images = image_codec.OutputImagePool()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def autostart(self) -> bool:
        """Return the `autostart` parameter: configure and activate at start."""
        return bool(self.values.get('autostart', True))

    def abort_start(self) -> None:
        """Ask a running configure to stop at its next step (it cannot cut a call short)."""
        self._abort.set()

    def _check_abort(self, step: str) -> None:
        if self._abort.is_set():
            raise StartAborted(f'start-up aborted after {step}')

    # ----- configure: parameters, backend, warm-up -----
    def on_configure(self, state) -> TransitionCallbackReturn:
        self.start_failure = None
        try:
            self._configure()
        except StartupError as exc:
            return self._failed(exc, f'invalid configuration: {exc}', _FAILURE)
        except StartAborted as exc:
            return self._failed(exc, '', _FAILURE)
        except Exception as exc:  # a bug: say what; the node stays alive, unconfigured
            return self._failed(exc, f'unexpected error: {type(exc).__name__}: {exc}', _ERROR)
        return _SUCCESS

    def _failed(self, exc, line: str, code) -> TransitionCallbackReturn:
        self.start_failure = exc
        if line:
            self.get_logger().error(line)
        self._release()
        return code

    def _configure(self) -> None:
        if self._bad_values:
            raise StartupError('; '.join(self._bad_values.values()))
        v = descriptors.read_all(self)
        for name in descriptors.unknown(self._overrides):
            self.get_logger().warning(f"ignoring unknown parameter '{name}' (typo?); known: "
                                      f"{', '.join(p.name for p in params.PARAMS)}")
        errors = params.validate(v)
        if errors:
            raise StartupError('; '.join(errors))
        self.values = v
        self._check_abort('reading parameters')
        self.perf = PerfStats()
        fallback = cpu_fallback_starter(params.backend_options(v)) if v['allow_fallback'] \
            else None
        self.supervisor = BackendSupervisor(
            self._start_backend(v), start_fallback=fallback,
            fallback_after=v['fallback_after_failures'], drain_s=v['backend_timeout_s'],
            perf=self.perf, logger=logging.getLogger('dpt_ros.serving.supervisor'))
        self._check_abort('starting the backend')
        started = self.supervisor.started
        if started.fell_back:
            self.get_logger().warning(
                f"running backend '{started.backend.info.name}' on "
                f"{started.backend.info.device} instead of '{v['backend']}': "
                f'{started.fallback_reason}')
        from dpt_ros.serving.pipeline import DepthPipeline  # torch/cv2 heavy: import late
        self.pipeline = DepthPipeline(self.supervisor, colormap=v['colormap'], norm=v['norm'],
                                      norm_low=v['norm_low'], norm_high=v['norm_high'])
        took, error = self.pipeline.warm_up()
        if error:   # the backend is judged frame by frame; say it now too
            self.get_logger().error(f'warm-up inference failed: {error}')
        self.get_logger().info(f'warm-up took {took:.2f} s')
        self._check_abort('the warm-up')
        self.cameras = {ns: CameraIO(ns, v) for ns in v['cameras']}
        self.report = HealthReport(self.get_name(), requested_backend=v['backend'],
                                   requested_device=v['device'],
                                   timeout_s=v['backend_timeout_s'], min_fps=v['min_fps'])
        # Lifecycle publishers: they exist from here to cleanup and publish only while active.
        for cam in self.cameras.values():
            cam.open_outputs(self)
        self._diag_pub = self.create_lifecycle_publisher(
            DiagnosticArray, vocabulary.TOPIC_DIAGNOSTICS, 10)

    def _start_backend(self, v: dict):
        # The fallback policy (tt without a card, torch on cuda without CUDA -> torch on cpu)
        # lives in create_backend, shared with the runner.
        try:
            return create_backend(v['backend'], params.backend_options(v),
                                  allow_fallback=v['allow_fallback'],
                                  logger=logging.getLogger('dpt_ros.backends'))
        except BackendError as exc:
            raise StartupError(f"backend '{v['backend']}' cannot start: {exc}") from None

    # ----- activate / deactivate: serving -----
    def on_activate(self, state) -> TransitionCallbackReturn:
        super().on_activate(state)   # the lifecycle publishers publish from now on
        try:
            self._activate()
        except Exception as exc:  # a bug: say what; back to inactive
            self.start_failure = exc
            self.get_logger().error(f'unexpected error: {type(exc).__name__}: {exc}')
            self._stop_serving(WORKER_STOP_TIMEOUT_S)
            super().on_deactivate(state)
            return _FAILURE
        return _SUCCESS

    def _activate(self) -> None:
        v = self.values
        backend = self.supervisor.backend
        concurrency = max(1, int(getattr(backend, 'max_concurrency', 1)))
        self.scheduler = FrameScheduler(
            list(self.cameras), self._prepare, self.pipeline.infer_prepared, self._finish,
            concurrency=concurrency, timeout_s=v['backend_timeout_s'], total=self.perf,
            logger=logging.getLogger('dpt_ros.serving.scheduler'),
            on_failure=self.supervisor.on_failure,
            reject_log_interval_s=v['reject_log_interval_s'])
        self.report.reset_cameras()
        self._serving = True
        for cam in self.cameras.values():
            cam.start(self, self.scheduler.submit)
        self._start_diag_timer(v['diagnostics_rate'])
        if v['qos_reliability'] == 'auto':
            # Publishers may appear later or change: re-match their reliability (rosbag2 style).
            self._serve_timers['qos'] = self.create_timer(
                0.5, lambda: [c.subscribe(self) for c in self.cameras.values()])
        self.scheduler.start()
        info = backend.info
        topics = [c.image_topic for c in self.cameras.values()]
        self.get_logger().info(
            f'serving {len(self.cameras)} camera(s) {topics}'
            f' with {info.name} on {info.device} (dtype {info.dtype_text}, '
            f'{info.execution_mode}, dp {info.dp}, '
            f'{concurrency} worker(s), {info.image_size}x{info.image_size}, '
            f'weights {info.weights})')
        if not self._tuned:
            self._tuned = True
            tuned = tuning.tune_process_for_serving()
            self.get_logger().info('serving-time tuning: ' + ', '.join(
                f'{k} {v}' for k, v in tuned.items()))

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.get_logger().info('deactivating: serving stops, the backend stays')
        self._stop_serving(WORKER_STOP_TIMEOUT_S)
        self._publish_diag()   # the final counts of this activation
        counts = self.scheduler.counts()
        self.get_logger().info('inactive: ' + ', '.join(f'{k} {n}' for k, n in counts.items()))
        return super().on_deactivate(state)   # the lifecycle publishers go quiet

    def _stop_serving(self, timeout: float, releasing: bool = False) -> None:
        if not self._serving:
            return
        self._serving = False
        for timer in self._serve_timers.values():
            self.destroy_timer(timer)
        self._serve_timers.clear()
        if self.scheduler is not None:
            t0 = time.monotonic()
            stopped = self.scheduler.stop(timeout)
            # Mostly the running inference call, which is let finish: said at exit.
            self.stop_wait_ms = (time.monotonic() - t0) * 1e3
            if not stopped:
                then = 'closing the backend anyway' if releasing else 'stopped without it'
                self.get_logger().warning('an inference call did not return within '
                                          f'{timeout:g} s; {then}')
        for cam in self.cameras.values():
            cam.close(self)

    # ----- cleanup / shutdown / error: release -----
    def on_cleanup(self, state) -> TransitionCallbackReturn:
        return self._released('cleaned up: backend released; unconfigured')

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        return self._released('shut down: backend released; finalized')

    def on_error(self, state) -> TransitionCallbackReturn:
        return self._released('after the error: backend released; unconfigured')

    def _released(self, line: str) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info(line)
        return _SUCCESS   # (on_error too: back to unconfigured, alive)

    def _release(self, timeout: float = WORKER_STOP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        self._stop_serving(timeout, releasing=True)
        if self.supervisor is not None:
            self.supervisor.close(max(0.0, deadline - time.monotonic()))
        for cam in self.cameras.values():
            cam.close_outputs(self)
        if self._diag_pub is not None:
            self.destroy_lifecycle_publisher(self._diag_pub)
            self._diag_pub = None
        self.pipeline = None

    def close(self, timeout: float | None = None) -> None:
        """Stop serving, release the backend (device, traces). Safe to call twice."""
        first, self._closed = not self._closed, True
        self._abort.set()
        self.stop_wait_ms = 0.0   # this stop's wait only, not an earlier deactivate's
        self._release(WORKER_STOP_TIMEOUT_S if timeout is None else timeout)
        if first:
            log_bridge.detach(self._log_handler)

    def destroy_node(self) -> None:
        """Destroy the node and its lifecycle state machine: it leaves the graph at once."""
        super().destroy_node()
        # rclpy's LifecycleNode leaves its state machine, which holds the rcl node: the node
        # then outlived destroy_node, and after os._exit stayed listed for the DDS lease (~20 s).
        self._state_machine.destroy_when_not_in_use()

    def stuck_threads(self) -> list[str]:
        """Names of the node's threads still alive after close() (stuck in a backend call)."""
        names = self.scheduler.alive_threads() if self.scheduler is not None else []
        return names + (self.supervisor.alive_threads() if self.supervisor else [])

    # ----- pipeline stages (scheduler threads) -----
    def _prepare(self, frame):
        msg = frame.msg
        with self.perf.stage('decode'):
            rgb = image_codec.decode(msg, self.values['max_pixels'])
        # rgb travels along as the colour of `points`.
        return self.pipeline.prepare_frame(rgb, (msg.header, rgb))

    def _finish(self, frame, raw) -> None:
        hw, (header, rgb) = frame.prepared.out_hw, frame.prepared.context
        cam = self.cameras[frame.camera]
        want_color = cam.wants_color()
        # Outputs are drawn into the buffers their messages carry; publish() copies them,
        # so the buffers go back to the pool as soon as the messages are out.
        with self._out_images.lend(hw[0], hw[1], '32FC1',
                                   'bgr8' if want_color else None) as (depth_img, color_img):
            res = self.pipeline.finish(
                raw, hw, want_color=want_color, depth_out=depth_img.pixels,
                color_out=color_img.pixels if color_img else None)
            metric = cam.metric_depth(res.depth, frame.stamp_ns, self.perf, self.get_logger())
            self.perf.add_stage('publish', cam.publish(header, depth_img, color_img,
                                                       metric, rgb))

    # ----- runtime parameters -----
    def _on_set_parameters(self, changes) -> SetParametersResult:
        new = {p.name: p.value for p in changes}
        reason = params.check_runtime_change(new, self.values,
                                             self._state_machine.current_state[1],
                                             self.get_fully_qualified_name())
        if reason:
            self.get_logger().warning(f'rejected parameter change: {reason}')
            return SetParametersResult(successful=False, reason=reason)
        merged = dict(self.values, **new)
        if self.pipeline is not None and any(
                k in new for k in ('colormap', 'norm', 'norm_low', 'norm_high')):
            try:   # checked above already; set_colorization checks once more, as its API
                self.pipeline.set_colorization(merged['colormap'], merged['norm'],
                                               merged['norm_low'], merged['norm_high'])
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if 'diag' in self._serve_timers and merged['diagnostics_rate'] != self.values[
                'diagnostics_rate']:
            self.destroy_timer(self._serve_timers['diag'])
            self._start_diag_timer(merged['diagnostics_rate'])
        if self.report is not None:
            self.report.min_fps = merged['min_fps']
        for name in new:              # a start-up value put right while unconfigured
            self._bad_values.pop(name, None)
        self.values = merged
        self.get_logger().info(f'parameters changed: {new}')
        return SetParametersResult(successful=True)

    # ----- diagnostics -----
    def _start_diag_timer(self, rate: float) -> None:
        self._serve_timers['diag'] = self.create_timer(1.0 / rate, self._publish_diag)

    def _publish_diag(self) -> None:
        try:
            arr = DiagnosticArray()
            arr.header.stamp = self.get_clock().now().to_msg()
            arr.status = self.diagnostics()
            self._diag_pub.publish(arr)
        except Exception as exc:  # diagnostics must never stop the node
            self.get_logger().error(f'diagnostics failed: {type(exc).__name__}: {exc}',
                                    throttle_duration_sec=10.0)

    def diagnostics(self) -> list[DiagnosticStatus]:
        """One status for the node and one per camera, with levels judged since last time."""
        views = [cam.view(self) for cam in self.cameras.values()]
        statuses = self.report.statuses(self.scheduler, self.perf, self.supervisor,
                                        self.pipeline.input_format, views)
        return [DiagnosticStatus(level=bytes([s.level]), name=s.name,
                                 hardware_id=s.hardware_id, message=s.message,
                                 values=[KeyValue(key=k, value=t) for k, t in s.key_values()])
                for s in statuses]
