"""
The evaluation package's small units: the result dataclass and its JSON, flags -> options.

Pure: no ROS graph, no model.
"""
import json

from dpt_ros.backends import BackendOptions
from dpt_ros.backends.cli_options import options_from_args, options_from_values
from dpt_ros.backends.reference import reference_options
from dpt_ros.demo import runner
from dpt_ros.evaluation import cli
from dpt_ros.evaluation.replay import ReplayTopics, ros_environment
from dpt_ros.evaluation.results import EvalResult
from dpt_ros.ros import params
import numpy as np

OFFLINE_KEYS = ['mode', 'evaluated', 'weights_random', 'throughput', 'pcc', 'backend',
                'accuracy', 'warnings', 'frames', 'title', 'input', 'summary']


def _result(**changes) -> EvalResult:
    values = {
        'mode': 'offline', 'evaluated': 2, 'weights_random': True,
        'throughput': {'frames_evaluated': 2, 'fps_e2e': 12.5,
                       'stage_ms_mean': {'inference': 3.0}},
        'pcc': {'pcc_min': 0.99, 'per_frame': [0.99, 1.0]}, 'backend': {'name': 'torch'},
        'accuracy': {}, 'warnings': ['w'], 'frames': [{'index': 0, 'latency_ms': 4.0}],
        'title': 'bag (offline)', 'input': {'bag': '/x'}, 'summary': {'mode': 'offline'},
        'strips': [('frame 0', np.zeros((4, 8, 3), np.uint8))], 'latencies_ms': [4.0, 5.0],
        'out_times_s': [0.1, 0.2], 'target_fps': None}
    values.update(changes)
    return EvalResult(**values)


def test_result_json_keeps_the_report_keys_and_round_trips():
    res = _result()
    doc = json.loads(json.dumps(res.as_json()))
    assert list(doc) == OFFLINE_KEYS
    assert not {'strips', 'latencies_ms', 'out_times_s', 'target_fps'} & set(doc)
    again = EvalResult.from_json(doc)
    assert json.dumps(again.as_json()) == json.dumps(res.as_json())
    assert again.strips == [] and again.latencies_ms == []


def test_replay_result_has_no_pcc_section():
    res = _result(mode='replay', pcc=None)
    keys = list(res.as_json())
    assert 'pcc' not in keys
    assert keys == [k for k in OFFLINE_KEYS if k != 'pcc']
    assert EvalResult.from_json(res.as_json()).pcc is None


def test_offline_without_pcc_frames_writes_an_empty_section():
    assert _result(pcc={}).as_json()['pcc'] == {}


def test_write_report_adds_only_report_files(tmp_path):
    res = _result()
    paths = res.write_report(tmp_path)
    doc = json.loads((tmp_path / 'report.json').read_text())
    assert list(doc) == OFFLINE_KEYS + ['report_files']
    assert len(paths['strips']) == 1 and doc['report_files']['strips'] == ['strips/frame_000.png']


def test_runner_flags_become_options():
    p = runner.build_parser()
    runner.add_output_args(p)
    args = p.parse_args(['--tt-run', '--device', 'wormhole_n300', '--dp', '2', '--weights',
                         'random', '--tt-execution-mode', 'trace', '--seed', '5'])
    runner.check_args(p, args)
    assert options_from_args(args) == BackendOptions(
        weights='random', device='wormhole_n300', dp=2, batch_size=2, strict=True,
        execution_mode='trace', seed=5, dtype='auto')
    args = p.parse_args(['--no-strict', '--compile', '--threads', '3'])
    runner.check_args(p, args)
    assert options_from_args(args) == BackendOptions(compile=True, threads=3, dtype='auto')


def test_bag_eval_flags_become_options():
    p = cli.build_parser()
    assert options_from_args(p.parse_args(['offline', 'bag'])) == BackendOptions(dtype='auto')
    args = p.parse_args(['offline', 'bag', '--execution-mode', 'eager', '--dtype', 'bf16',
                         '--image-size', '64', '--dp', '2'])
    assert options_from_args(args) == BackendOptions(execution_mode='eager', dtype='bf16',
                                                     image_size=64, dp=2)
    assert options_from_args(args, dp=1).dp == 1     # overrides win


def test_node_parameters_give_the_same_options_as_params_py():
    values = params.defaults()
    assert options_from_values(values, batch_size=1) == params.backend_options(values)


def test_reference_options_are_cpu_fp32_with_the_same_weights():
    opts = BackendOptions(weights='random', device='wormhole_n300', dtype='bf16', dp=2,
                          batch_size=2, strict=True, compile=True, seed=3, image_size=64)
    ref = reference_options(opts)
    assert (ref.device, ref.dtype, ref.dp, ref.batch_size, ref.strict, ref.compile) == \
        ('cpu', 'fp32', 1, 1, False, False)
    assert (ref.weights, ref.seed, ref.image_size) == ('random', 3, 64)


def test_ros_environment_leaves_the_callers_environment_alone():
    environ = {'PATH': '/bin'}
    env = ros_environment(start_node=True, environ=environ)
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert 1 <= int(env['ROS_DOMAIN_ID']) <= 100
    assert environ == {'PATH': '/bin'}
    given = {'ROS_DOMAIN_ID': '42', 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}
    assert ros_environment(start_node=True, environ=given) == given
    assert 'ROS_DOMAIN_ID' not in ros_environment(start_node=False, environ={})


class _Src:
    image_topic = '/front/image_raw/compressed'
    image_type = 'sensor_msgs/msg/CompressedImage'
    camera_info_topic = '/front/camera_info'


def test_replay_topics_and_node_remaps():
    args = cli.build_parser().parse_args(['replay', 'bag'])
    t = ReplayTopics.plan(args, _Src())
    assert (t.publish, t.image_base, t.ns, t.info) == (
        '/front/image_raw/compressed', '/front/image_raw', '/front', '/front/camera_info')
    assert t.depth == '/front/depth_relative' and t.compressed
    assert t.remaps() == [('__ns', '/front'), ('image/compressed', '/front/image_raw/compressed')]
    assert t.outputs(color=False) == ['/front/depth_relative', '/front/depth']
