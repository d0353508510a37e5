"""
bag_eval end to end.

Offline on a sample bag, each bad input's message, and a replay through the real depth node over
loopback DDS (a tiny random model at a small input size is the fast backend; real rclpy, real Fast
DDS, real rosbag2 files).
"""
import json
import math
import os

import cv2
from dpt_ros.evaluation import bagio
from dpt_ros.evaluation import cli as bag_eval
from dpt_ros.evaluation.sample_bag import DEPTH_GT_TOPIC, IMAGE_TOPIC, make_sample_bag
import pytest

FAST = ['--weights', 'tiny-random', '--image-size', '32', '--threads', '1', '--no-progress']


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('bags') / 'sample'
    # 6 frames: the five pictures (motorcycle with ground truth at index 4) and astronaut again.
    make_sample_bag(path, frames=6, size=(160, 120))
    return path


def _run(argv, capsys):
    rc = bag_eval.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_offline_report(bag, tmp_path, capsys):
    out_dir = tmp_path / 'report'
    # fp32 explicitly: the default (auto) may run bf16 here, and this checks the reference path.
    rc, out, err = _run(['offline', str(bag), '-o', str(out_dir), '--pcc-frames', '2',
                         '--strips', '3', '--dtype', 'fp32'] + FAST, capsys)
    assert rc == 0, err
    assert 'WEIGHTS ARE RANDOM' in out and 'report:' in out
    res = json.loads((out_dir / 'report.json').read_text())
    thr, acc, pcc = res['throughput'], res['accuracy'], res['pcc']
    assert res['mode'] == 'offline' and res['weights_random'] is True
    assert thr['frames_evaluated'] == thr['frames_in_bag'] == 6
    for k in ('fps', 'fps_e2e', 'latency_ms_mean', 'latency_ms_p50', 'latency_ms_p95',
              'latency_ms_p99', 'first_run_ms'):
        assert _finite(thr[k]) and thr[k] > 0, k
    assert thr['latency_ms_p50'] <= thr['latency_ms_p95'] <= thr['latency_ms_p99']
    assert set(thr['stage_ms_mean']) == {'preprocess', 'inference', 'postprocess', 'colorize'}
    # Same weights on the same CPU fp32 path: the reference must agree to rounding.
    assert pcc['frames'] == 2 and pcc['pcc_min'] >= 0.9999
    assert pcc['reference_is_evaluated_backend'] is True
    assert res['summary']['backend'] == 'torch cpu dtype fp32'
    assert acc['frames'] == 1 and acc['gt_topic'] == DEPTH_GT_TOPIC
    for k in ('abs_rel', 'rmse', 'delta1', 'delta2', 'delta3', 'scale', 'shift'):
        assert _finite(acc[k]), k
    assert 0 <= acc['delta1'] <= acc['delta2'] <= acc['delta3'] <= 1
    assert acc['abs_rel'] > 0 and acc['rmse'] > 0
    gt_rec = [f for f in res['frames'] if f['index'] == 4][0]
    assert gt_rec['n_valid'] > 0.8 * 160 * 120
    # Report files exist and decode; the charts are in the page, with every frame's latency.
    files = res['report_files']
    assert 3 <= len(files['strips']) <= 6
    widths = []
    for p in files['strips']:
        img = cv2.imread(str(out_dir / p))
        assert img is not None and img.shape[0] == 264
        widths.append(img.shape[1])
    assert max(widths) > 1.8 * min(widths)     # the GT frame's strip has 4 panels, others 2
    html = (out_dir / 'report.html').read_text()
    assert html.index('WEIGHTS ARE RANDOM') < html.index('<h1>')
    for p in files['strips']:
        assert f'src="{p}"' in html
    assert 'Per-frame latency (6 frames)' in html and html.count('Plotly.newPlot(') == 2
    for word in ('AbsRel', 'RMSE', 'PCC vs CPU fp32'):
        assert word in html


def test_offline_compressed_without_gt(tmp_path, capsys):
    path = tmp_path / 'jpeg'
    make_sample_bag(path, frames=2, size=(96, 64), sources=('coffee', 'rocket'),
                    compressed=True, storage='sqlite3')
    rc, out, err = _run(['offline', str(path), '-o', str(tmp_path / 'r'), '--pcc-frames',
                         '0'] + FAST, capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / 'r' / 'report.json').read_text())
    assert res['input']['image_type'] == bagio.COMPRESSED_TYPE
    assert res['throughput']['frames_evaluated'] == 2
    assert res['accuracy'] == {} and res['pcc'] == {}


@pytest.mark.parametrize('case', ['missing', 'corrupt', 'no_topic', 'wrong_type', 'no_frames',
                                  'gt_missing'])
def test_bad_input_messages(case, bag, tmp_path, capsys):
    args = ['offline']
    if case == 'missing':
        args += [str(tmp_path / 'nothing_here')]
        expect = ['does not exist']
    elif case == 'corrupt':
        broken = tmp_path / 'broken'
        broken.mkdir()
        (broken / 'metadata.yaml').write_text((bag / 'metadata.yaml').read_text())
        (broken / 'sample_0.mcap').write_bytes(b'\x00garbage' * 64)
        args += [str(broken)]
        expect = ['cannot read bag']
    elif case == 'no_topic':
        args += [str(bag), '--image-topic', '/front/image_raw']
        expect = ["'/front/image_raw' is not in the bag", IMAGE_TOPIC, DEPTH_GT_TOPIC,
                  '/camera/camera_info']
    elif case == 'wrong_type':
        args += [str(bag), '--image-topic', '/camera/camera_info']
        expect = ['carries sensor_msgs/msg/CameraInfo']
    elif case == 'no_frames':
        empty = tmp_path / 'empty'
        with bagio.BagWriter(empty):
            pass
        args += [str(empty)]
        expect = ['has no messages']
    else:
        args += [str(bag), '--gt-topic', '/lidar/depth']
        expect = ["ground-truth depth topic '/lidar/depth' is not in the bag", IMAGE_TOPIC]
    rc, out, err = _run(args + ['-o', str(tmp_path / 'r')] + FAST, capsys)
    assert rc == 1
    assert err.startswith('bag_eval: ')
    for e in expect:
        assert e in err
    assert 'Traceback' not in err + out


def test_usage_errors(bag, capsys):
    for argv in (['replay', str(bag), '--rate', '0'], ['offline', str(bag), '--strips', '-1'],
                 ['sideways', str(bag)], ['offline', str(bag), '--image-size', '30']):
        with pytest.raises(SystemExit) as e:
            bag_eval.main(argv)
        assert e.value.code == 2
        assert 'usage' in capsys.readouterr().err


def test_replay_through_the_node(tmp_path, capsys):
    """Every frame of a 30 Hz bag comes back from the node, matched by stamp, with latency."""
    pytest.importorskip('rclpy')
    assert os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') == 'LOCALHOST'
    path = tmp_path / 'bag30'
    make_sample_bag(path, frames=30, rate_hz=30.0, size=(320, 240))
    out_dir = tmp_path / 'replay'
    rc, out, err = _run(['replay', str(path), '--start-node', '-o', str(out_dir),
                         '--no-color', '--wait-node-s', '90', '--strips', '2'] + FAST, capsys)
    log_text = (out_dir / 'node.log').read_text() if (out_dir / 'node.log').exists() else ''
    assert rc == 0, err + '\nnode log:\n' + log_text
    res = json.loads((out_dir / 'report.json').read_text())
    thr = res['throughput']
    assert thr['frames_sent'] == 30
    assert thr['frames_delivered'] == 30, (thr, [f['index'] for f in res['frames']
                                                 if not f['delivered']])
    assert thr['frames_dropped'] == 0
    assert thr['input_fps_target'] == pytest.approx(30.0, rel=1e-3)
    assert thr['input_fps_actual'] == pytest.approx(30.0, rel=0.1)
    assert thr['output_fps'] == pytest.approx(30.0, rel=0.2)
    for k in ('latency_ms_mean', 'latency_ms_p50', 'latency_ms_p95', 'latency_ms_p99'):
        assert _finite(thr[k]) and 0 < thr[k] < 1000, k
    assert all(f['delivered'] and f['latency_ms'] > 0 for f in res['frames'])
    # The node really ran the model asked for, and said so in its diagnostics.
    assert res['weights_random'] is True
    assert res['backend']['node_exit_code'] == 0, log_text
    diag = [v for k, v in res['backend'].items() if k.startswith('diagnostics:')]
    assert diag and diag[0]['image_size'] == '32'
    # The summary names requested (auto) and executed dtype, as the node's diagnostics do.
    from dpt_ros.backends import precision
    assert res['summary']['backend'] == \
        f"torch cpu dtype auto -> {precision.for_torch('auto').executed}"
    # Accuracy from the node's own output for the ground-truth frames (6 of 30).
    assert res['accuracy']['frames'] == 6 and _finite(res['accuracy']['abs_rel'])
    # The output bag holds every depth frame with the input stamps.
    src = bagio.inspect_bag(out_dir / 'outputs_bag', image_topic='/camera/depth_relative',
                            gt_topic=None)
    assert src.frame_count >= 30      # + warm-up frames
    with bagio.open_bag(out_dir / 'outputs_bag') as reader:
        conns = [c for c in reader.connections if c.topic == '/camera/depth_relative']
        stamps = set()
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            assert msg.encoding == '32FC1' and (msg.width, msg.height) == (320, 240)
            stamps.add(bagio.stamp_to_ns(msg.header.stamp))
    assert {f['stamp_ns'] for f in res['frames']} <= stamps
    assert 'Output FPS over time' in (out_dir / 'report.html').read_text()


def test_replay_without_a_node_says_so(bag, tmp_path, capsys):
    pytest.importorskip('rclpy')
    rc, out, err = _run(['replay', str(bag), '-o', str(tmp_path / 'r'), '--wait-node-s', '1',
                         '--no-output-bag'] + FAST, capsys)
    assert rc == 1
    assert 'no depth node found within 1 s' in err
    assert f'nobody subscribes to {IMAGE_TOPIC}' in err
    assert 'Traceback' not in err
