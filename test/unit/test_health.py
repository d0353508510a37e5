"""serving/health.py: diagnostics levels, messages and key-values, judged without rclpy."""
from __future__ import annotations

import threading

from dpt_ros.backends import StartedBackend
from dpt_ros.backends.base import BackendInfo
from dpt_ros.depth.metric import MetricDepth, ReferenceBuffer
from dpt_ros.errors import InvalidImage
from dpt_ros.perf.conventions import GREENWAVE_KEYS, TopicTimes
from dpt_ros.perf.stats import FALLBACK_KEYS, PerfStats, STAGES
from dpt_ros.serving import health
from dpt_ros.serving.scheduler import E2E_KEYS, FrameScheduler
from dpt_ros.serving.supervisor import BackendSupervisor
import pytest

WAIT = 10.0
PIPELINE_KEYS = [
    'backend', 'backend_requested', 'fallback_reason', 'device', 'execution_mode', 'dp',
    'batch', 'workers', 'image_size', 'model', 'weights', 'dtype', 'dtype_requested',
    'model_input',
    'input_fps', 'output_fps', 'device_fps', 'latency_ms_p50', 'latency_ms_p95',
    'latency_ms_p99', *E2E_KEYS, *[f'{s}_ms' for s in STAGES],
    'frames_received', 'frames_processed', 'frames_dropped', 'frames_rejected',
    'frames_failed', 'in_pipeline', *FALLBACK_KEYS, 'tt_only_counter', 'reasons',
    'last_failure', 'hung_calls']
CAMERA_KEYS = [
    'input_topic', 'output_topic', 'reliability', 'publishers', 'input_fps', 'output_fps',
    'latency_ms_p50', 'latency_ms_p95', 'latency_ms_p99', *E2E_KEYS, 'camera_info',
    'max_waiting_frames', 'frames_received', 'frames_processed', 'frames_dropped',
    'frames_rejected', 'frames_failed', 'in_pipeline', 'reasons', *GREENWAVE_KEYS]


class Backend:
    def __init__(self, name='tt', device='wormhole_n300'):
        self.info = BackendInfo(name=name, device=device, dtype='bf16', image_size=384,
                                execution_mode='trace_2cq', dp=2, batch_size=1,
                                model_name='dpt-large', weights='random')
        self.max_concurrency = 2

    def fallback_counts(self):
        return {'host_fallback_count': 0, 'tt_only_counter': 7}

    def close(self):
        pass


class Rig:
    """A real scheduler with stage callables: outcomes decided per message."""

    def __init__(self, reason=None):
        self.perf = PerfStats()
        self.sup = BackendSupervisor(StartedBackend(Backend(), requested='tt',
                                                    fallback_reason=reason), perf=self.perf)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.sched = FrameScheduler(['', 'left'], self._prepare, self._infer, self._finish,
                                    concurrency=1, total=self.perf)
        self.report = health.HealthReport('depth_node', requested_backend='tt',
                                          requested_device='wormhole_n300', timeout_s=30.0,
                                          min_fps=0.0)
        self.sched.start()

    def _prepare(self, frame):
        if frame.msg == 'bad':
            raise InvalidImage('truncated', 'short buffer')
        return frame.msg

    def _infer(self, msg):
        self.entered.set()
        assert self.gate.wait(WAIT)
        if msg == 'fail':
            raise RuntimeError('device died')
        return msg

    def _finish(self, frame, result):
        pass

    def feed(self, camera, *msgs):
        for m in msgs:
            self.sched.submit(camera, m)
            assert self.sched.wait_idle(WAIT)

    def statuses(self, cameras=None):
        views = cameras if cameras is not None else [
            health.CameraView(key='', input_topic='/image',
                              output_topic='/depth_relative', reliability='reliable',
                              publishers=1, camera_info=True),
            health.CameraView(key='left', input_topic='/left/image',
                              output_topic='/left/depth_relative')]
        return self.report.statuses(self.sched, self.perf, self.sup, 'pixels', views)

    def close(self):
        self.gate.set()
        self.sched.stop(1.0)


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def test_keys_names_and_ok_level(rig):
    rig.feed('', 'a', 'b')
    node, cam, left = rig.statuses()
    assert list(node.values) == PIPELINE_KEYS
    assert list(cam.values) == CAMERA_KEYS
    assert (node.level, node.message, node.name, node.hardware_id) == (
        health.OK, 'running', 'depth_node: depth pipeline', 'wormhole_n300')
    # Named by the output topic: greenwave's dashboard files a status under the text from
    # its first '/' on (its _extract_topic_name), so these land on the topics' rows.
    assert (cam.name, left.name) == ('depth_node: camera /depth_relative',
                                     'depth_node: camera /left/depth_relative')
    kv = dict(node.key_values())
    assert kv['frames_received'] == '2' and kv['frames_processed'] == '2'
    assert kv['model_input'] == 'pixels' and kv['workers'] == '1' and kv['reasons'] == 'none'
    # No dtype option applies (tt): requested reads as what runs.
    assert (kv['dtype'], kv['dtype_requested']) == ('bf16', 'bf16')
    assert dict(cam.key_values())['camera_info'] == 'yes'
    assert dict(left.key_values())['camera_info'] == 'not received'
    assert dict(left.key_values())['frames_received'] == '0'


def test_dtype_names_requested_and_executed(rig):
    info = rig.sup.backend.info
    info.name, info.device, info.dtype, info.dtype_requested = 'openvino', 'cpu', 'fp32', 'bf16'
    kv = dict(rig.statuses()[0].key_values())
    assert (kv['dtype'], kv['dtype_requested']) == ('fp32', 'bf16')


def test_failures_are_error_then_recovered_is_warn_then_ok(rig):
    rig.feed('', 'fail')
    node, cam, _ = rig.statuses()
    assert node.level == cam.level == health.ERROR
    assert node.message == ('backend failing: 1 frame(s) failed '
                            '(backend_error: RuntimeError: device died)')
    rig.feed('', 'fail', 'ok')
    node, _, _ = rig.statuses()
    assert (node.level, node.message) == (health.WARN, '1 frame(s) failed, backend recovered')
    node, _, _ = rig.statuses()
    assert node.level == health.OK   # nothing new since the last call


def test_rejected_and_dropped_frames_warn(rig):
    rig.feed('left', 'bad')
    node, cam, left = rig.statuses()
    assert (left.level, left.message) == (health.WARN, '1 bad input frame(s) rejected')
    assert cam.level == health.OK
    assert dict(left.key_values())['reasons'] == 'frames_rejected:truncated=1'
    rig.gate.clear()
    rig.entered.clear()
    rig.sched.submit('', 'a')
    assert rig.entered.wait(WAIT)    # 'a' held in inference
    for m in ('b', 'c', 'd'):        # one slot + one prepared frame: one of them is stale
        rig.sched.submit('', m)
    rig.gate.set()
    assert rig.sched.wait_idle(WAIT)
    node, cam, _ = rig.statuses()
    dropped = rig.sched.counts('')['frames_dropped']
    assert dropped >= 1
    assert cam.level == node.level == health.WARN
    assert cam.message == (f'drops rising: {dropped} stale frame(s) dropped '
                           '(backend slower than input)')


def test_fallback_active_warns_on_the_pipeline_only():
    r = Rig(reason='tt: no chips detected')
    try:
        r.feed('', 'a')
        node, cam, _ = r.statuses()
        assert node.level == health.WARN and cam.level == health.OK
        assert node.message == ('fallback active: running tt on wormhole_n300 instead of tt on '
                                'wormhole_n300 (tt: no chips detected)')
        assert dict(node.key_values())['fallback_reason'] == 'tt: no chips detected'
    finally:
        r.close()


def test_min_fps_hung_calls_and_metric_keys(rig):
    rig.report.min_fps = 1000.0
    rig.feed('', 'a', 'b')
    node, _, _ = rig.statuses()
    assert node.level == health.WARN and 'FPS below min_fps 1000' in node.message
    rig.sched.health.hung_calls = 1
    node, _, _ = rig.statuses()
    assert node.level == health.ERROR
    assert node.message.startswith('1 inference call(s) hung past 30 s')
    refs = ReferenceBuffer(4)
    view = health.CameraView(key='', input_topic='/image', output_topic='/d',
                             metric=MetricDepth('reference'), refs=refs)
    _, cam = rig.statuses([view])
    kv = dict(cam.key_values())
    assert kv['metric_mode'] == 'reference' and kv['metric_ready'] == 'false'
    assert kv['metric_references_fitted'] == '0' and kv['metric_references_unmatched'] == '0'


def test_a_section_adds_key_values_in_one_place(rig):
    rig.report.add_section(lambda: {'chip0_fps': 20.5, 'points_published': 3})
    node, _, _ = rig.statuses()
    assert list(node.values)[-2:] == ['chip0_fps', 'points_published']
    assert dict(node.key_values())['chip0_fps'] == '20.500'


def test_format_value():
    assert health.format_value(float('nan')) == 'nan'
    assert health.format_value(1.23456) == '1.235'
    assert health.format_value(True) == 'true'
    assert health.format_value(3) == '3'
    assert health.format_reasons({'b': 1, 'a': 2}) == 'a=2, b=1'


class ChipBackend(Backend):
    """A TT backend reporting per-chip stats as TtBackend.chip_stats() does."""

    def __init__(self, out_of_rotation=()):
        super().__init__()
        self.out = set(out_of_rotation)

    def chip_stats(self):
        stats = {'chips': 8, 'chips_in_rotation': 8 - len(self.out)}
        for i in range(8):
            stats.update({f'chip{i} id': i, f'chip{i} frames': 10 * i,
                          f'chip{i} fps_device': 20.0, f'chip{i} failures': int(i in self.out),
                          f'chip{i} in_rotation': i not in self.out,
                          f'chip{i} last_error': 'RuntimeError: eth timeout' if i in self.out
                          else ''})
        return stats


def test_per_chip_key_values_beside_the_totals_and_a_chip_out_warns(rig):
    rig.sup = BackendSupervisor(StartedBackend(ChipBackend(), requested='tt'), perf=rig.perf)
    rig.feed('', 'a')
    node, _, _ = rig.statuses()
    kv = dict(node.key_values())
    assert node.level == health.OK
    assert kv['chips'] == '8' and kv['chips_in_rotation'] == '8'
    assert kv['chip7 frames'] == '70' and kv['chip3 in_rotation'] == 'true'
    assert list(node.values)[:len(PIPELINE_KEYS)] == PIPELINE_KEYS
    rig.sup = BackendSupervisor(StartedBackend(ChipBackend({5}), requested='tt'), perf=rig.perf)
    node, cam, _ = rig.statuses()
    assert (node.level, cam.level) == (health.WARN, health.OK)
    assert node.message == '1 of 8 chips out of rotation: chip5 (RuntimeError: eth timeout)'
    assert dict(node.key_values())['chip5 in_rotation'] == 'false'


def test_camera_status_carries_greenwave_keys_from_its_output_times(rig):
    rig.feed('', 'a', 'b', 'bad')
    times = TopicTimes()
    s = 1_000_000_000
    for k in range(5):   # stamped every 100 ms, published 40 + 10 k ms after the stamp
        times.add(s + k * 100_000_000, s + (k * 100 + 40 + k * 10) * 1_000_000)
    view = health.CameraView(key='', input_topic='/image', output_topic='/cam/depth_relative',
                             topic_times=times)
    _, cam = rig.statuses([view])
    kv = dict(cam.key_values())
    assert cam.name == 'depth_node: camera /cam/depth_relative'
    assert kv['frame_rate_node'] == '9.091' and kv['frame_rate_msg'] == '10.000'
    assert kv['current_delay_from_realtime_ms'] == '80.000'
    assert kv['total_dropped_frames'] == '1'     # the rejected frame never became an output
    assert kv['tolerance'] == '0.000'
    assert float(kv['expected_frequency']) == float(kv['input_fps'])
