"""The runner end to end on the CPU with tiny-random weights, its flags and bad inputs."""
import json
import os
import subprocess
import sys

import cv2
from dpt_ros.demo import runner
from dpt_ros.demo.image_files import SUPPORTED_EXTENSIONS
import numpy as np
from PIL import Image
import pytest
from support.paths import ROOT

FAST = ['--weights', 'tiny-random', '--warmup', '1', '--repeat', '2']

PERF_KEYS = (
    # the reference runner's keys
    'mode', 'tt_execution_mode', 'latency_ms_mean', 'latency_ms_std', 'total_ms',
    'num_images_per_iter', 'per_image_ms_mean', 'per_image_ms_std', 'fps', 'inference_time_s',
    'inference_time_std_s', 'throughput_iter_per_s', 'first_run_s', 'compile_time_s', 'device',
    'dtype', 'input_h', 'input_w', 'batch_size', 'per_chip_batch_size', 'data_parallel_degree',
    'model_name', 'setting', 'modules', 'stage_breakdown_ms', 'stage_breakdown_ms_per_worker',
    'stage_breakdown_s', 'fallback_counts',
    # ours
    'fps_e2e', 'stage_ms', 'latency_ms_p50', 'latency_ms_p95', 'program_config_fallback_total',
    'backend_fallback_count', 'trace_wall_ms', 'dp', 'image_size', 'weights', 'weights_random',
    'versions', 'host', 'backend')
HEADER_KEYS = ('model', 'input_shape', 'patch_size', 'num_tokens', 'device', 'dtype',
               'tt_execution_mode', 'mode', 'data_parallel_degree', 'latency_ms',
               'inference_time_s', 'throughput_iter_per_s', 'first_run_s', 'compile_time_s',
               'fps', 'stage_breakdown_ms', 'stage_breakdown_s', 'fallback_counts', 'weights',
               'weights_random', 'versions', 'host')


def test_cpu_smoke_default_image(tmp_path, capsys):
    depth, color, perf = tmp_path / 'd.npy', tmp_path / 'd.png', tmp_path / 'perf.json'
    rc = runner.main(FAST + ['--dump-depth', str(depth), '--dump-depth-color', str(color),
                             '--dump-perf', str(perf)])
    assert rc == 0
    d = np.load(depth)
    assert d.shape == (512, 512) and d.dtype == np.float32     # astronaut is 512x512
    assert np.isfinite(d).all() and d.std() > 0
    c = cv2.imread(str(color), cv2.IMREAD_UNCHANGED)
    assert c.shape == (512, 512, 3) and c.dtype == np.uint8
    data = json.loads(perf.read_text())
    for k in PERF_KEYS:
        assert k in data, k
    assert data['mode'] == 'cpu' and data['device'] == 'cpu'
    # dtype auto by default: what executes is what this CPU's capability predicts.
    assert data['dtype'] == data['dtype_executed'] == _predicted(data['backend']['running'])
    assert data['dtype_requested'] == 'auto'
    assert data['input_h'] == data['input_w'] == 384
    assert data['batch_size'] == 1 and data['data_parallel_degree'] == 1
    assert data['setting'] == 'cpu-384x384-b1-dp1'
    assert data['fps'] > 0 and data['fps_e2e'] > 0 and data['fps_e2e'] <= data['fps']
    assert data['latency_ms_p95'] >= data['latency_ms_p50'] > 0
    for s in ('preprocess', 'inference', 'postprocess', 'colorize'):
        assert data['stage_ms'][s] > 0
    assert data['program_config_fallback_total'] == 0
    assert data['fallback_counts']['backend_fallback_count'] == 0
    assert data['weights_random'] is True and 'tiny-random' in data['weights']
    assert set(data['stage_breakdown_ms']) >= {'backbone_ms', 'reassembly_ms',
                                               'fusion_head_ms', 'total_ms'}
    assert data['versions']['torch'] and data['host']['hostname']
    header = json.loads((tmp_path / 'perf_header.json').read_text())
    for k in HEADER_KEYS:
        assert k in header, k
    assert header['model']['num_layers'] == 4 and header['input_shape'] == [1, 3, 384, 384]
    assert header['num_tokens'] == 577 and header['weights_random'] is True
    assert (header['dtype'], header['dtype_requested']) == (data['dtype'], 'auto')
    out = capsys.readouterr().out
    assert 'FPS' in out and str(depth) in out and f"dtype auto -> {data['dtype']}" in out


def _predicted(backend: str, dtype: str = 'auto') -> str:
    from dpt_ros.backends import precision
    resolve = precision.for_openvino if backend == 'openvino' else precision.for_torch
    return resolve(dtype).executed


@pytest.mark.parametrize('backend', ['torch', 'openvino'])
def test_without_bf16_units_auto_is_fp32_and_bf16_names_both(backend, tmp_path, monkeypatch,
                                                             capsys):
    if backend == 'openvino':
        pytest.importorskip('openvino')
    from dpt_ros.backends import precision
    monkeypatch.setenv(precision.NO_BF16_ENV, '1')     # resolve as a Zen 3 would
    args = FAST + ['--backend', backend, '--image-size', '64', '--repeat', '1']
    perf = tmp_path / 'perf.json'
    assert runner.main(args + ['--dump-perf', str(perf)]) == 0
    data = json.loads(perf.read_text())
    assert (data['dtype'], data['dtype_requested'], data['dtype_executed']) == (
        'fp32', 'auto', 'fp32')
    capsys.readouterr()
    assert runner.main(args + ['--dtype', 'bf16', '--dump-perf', str(perf)]) == 0
    data = json.loads(perf.read_text())
    # Without bf16 units an explicit bf16 runs fp32 on either backend, and says so.
    assert (data['dtype'], data['dtype_requested'], data['dtype_executed']) == (
        'fp32', 'bf16', 'fp32')
    assert 'bf16 -> fp32 executed' in capsys.readouterr().out


def test_module_cli_runs_and_says_random_weights_loudly(tmp_path):
    depth = tmp_path / 'x.npy'
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, '-m', 'dpt_ros.runner', *FAST, '--repeat', '1',
                           '--dump-depth', str(depth)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'RANDOM WEIGHTS' in proc.stderr
    assert np.load(depth).shape == (512, 512)


def _write_folder(folder):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(folder / 'a.png')
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(folder / 'b.JPG')
    Image.fromarray(rng.integers(0, 256, (50, 70), dtype=np.uint8)).save(folder / 'gray.png')
    Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)).save(folder / 'rgba.png')
    (folder / 'broken.png').write_text('this is not an image')
    (folder / 'notes.txt').write_text('ignored: not an image extension')


def test_folder_run_with_bad_and_odd_files(tmp_path, caplog):
    src = tmp_path / 'in'
    src.mkdir()
    _write_folder(src)
    out = tmp_path / 'out'
    perf = tmp_path / 'perf.json'
    rc = runner.main(FAST + ['--images-dir', str(src), '--dump-depth', str(out) + os.sep,
                             '--dump-depth-color', str(tmp_path / 'col' / '{name}_c.png'),
                             '--dump-perf', str(perf), '--batch-size', '2'])
    assert rc == 0
    for name, hw in (('a', (90, 120)), ('b', (64, 48)), ('gray', (50, 70)),
                     ('rgba', (40, 40))):
        assert np.load(out / f'{name}.npy').shape == hw
        assert cv2.imread(str(tmp_path / 'col' / f'{name}_c.png')).shape == hw + (3,)
    assert not (out / 'broken.npy').exists()
    data = json.loads(perf.read_text())
    assert data['images']['processed'] == 4
    assert [f['reason'] for f in data['images']['failed']] == ['decode_failed']
    assert 'grayscale' in data['images']['notes']['gray']
    assert 'RGBA' in data['images']['notes']['rgba']
    assert data['batch_size'] == 2 and data['num_images_per_iter'] == 2
    assert 'broken.png' in caplog.text


def test_single_file_dump_names_for_many_images(tmp_path):
    src = tmp_path / 'in'
    src.mkdir()
    for i in range(2):
        Image.fromarray(np.full((20, 30, 3), 60 * i, np.uint8)).save(src / f'im{i}.bmp')
    rc = runner.main(FAST + ['--images-dir', str(src), '--dump-depth',
                             str(tmp_path / 'depth.npy'), '--no-progress'])
    assert rc == 0
    assert np.load(tmp_path / 'depth_im0.npy').shape == (20, 30)
    assert np.load(tmp_path / 'depth_im1.npy').shape == (20, 30)


def test_grayscale_single_image_is_processed_with_a_note(tmp_path, caplog):
    path = tmp_path / 'g.png'
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (32, 1))).save(path)
    caplog.set_level('INFO')
    rc = runner.main(FAST + ['--image', str(path), '--dump-depth', str(tmp_path / 'g.npy')])
    assert rc == 0
    assert np.load(tmp_path / 'g.npy').shape == (32, 64)
    assert 'grayscale -> RGB' in caplog.text


def test_missing_image_fails_clearly(tmp_path, capsys):
    rc = runner.main(FAST + ['--image', str(tmp_path / 'nope.jpg')])
    assert rc == 1
    err = capsys.readouterr().err
    assert 'not found' in err and 'nope.jpg' in err and 'Traceback' not in err


def test_non_image_file_fails_clearly(tmp_path, capsys):
    bad = tmp_path / 'fake.jpg'
    bad.write_bytes(b'\x00\x01 definitely not a jpeg')
    assert runner.main(FAST + ['--image', str(bad)]) == 1
    assert 'not a readable image' in capsys.readouterr().err
    txt = tmp_path / 'doc.txt'
    txt.write_text('hello')
    assert runner.main(FAST + ['--image', str(txt)]) == 1
    assert 'unsupported file type' in capsys.readouterr().err


def test_empty_folder_names_supported_extensions(tmp_path, capsys):
    (tmp_path / 'readme.txt').write_text('no images here')
    assert runner.main(FAST + ['--images-dir', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert all(ext in err for ext in SUPPORTED_EXTENSIONS)
    assert runner.main(FAST + ['--images-dir', str(tmp_path / 'missing')]) == 1


@pytest.mark.parametrize('argv, words', [
    (['--tt-run'], '--tt-run needs a TT device'),
    (['--device', 'wormhole_n300'], 'add --tt-run'),
    (['--dp', '2'], '--dp 2 needs'),
    (['--tt-run', '--device', 'wormhole_n150', '--dp', '2'], '--dp 2 needs'),
    (['--tt-run', '--device', 'wormhole_n300', '--dp', '2', '--batch-size', '1'],
     'must equal --dp'),
    (['--image-size', '100'], 'multiple'),
    (['--repeat', '0'], '--repeat'),
    (['--device', 'tpu'], 'invalid choice'),
    (['--tt-run', '--device', 'wormhole_n300', '--dp', '8'], '--dp 8 needs'),
    (['--tt-run', '--device', 'wormhole_t3000', '--dp', '9'], 'invalid choice'),
    (['--selfcheck-min-pcc', '1.5'], '--selfcheck-min-pcc must be in [0, 1]'),
    (['--chip-batch', '2'], '--chip-batch needs --tt-run'),
    (['--tt-run', '--device', 'wormhole_n300', '--dp', '2', '--chip-batch', '2',
      '--batch-size', '2'], 'must equal --dp x --chip-batch'),
    (['--tt-run', '--device', 'wormhole_n300', '--chip-batch', '3'], 'invalid choice'),
    (['--tt-run', '--device', 'wormhole_n300', '--tt-precision', 'fastest'], 'invalid choice'),
])
def test_flag_rules(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        runner.main(argv)
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


def test_batch_size_defaults_to_dp():
    p = runner.build_parser()
    runner.add_output_args(p)
    args = p.parse_args(['--tt-run', '--device', 'wormhole_n300', '--dp', '2'])
    runner.check_args(p, args)
    assert args.batch_size == 2 and args.strict is True
    opts = runner.backend_options(args)
    assert opts.dp == 2 and opts.batch_size == 2 and opts.execution_mode == 'trace_2cq'
    assert opts.strict is True
    assert opts.selfcheck is True and opts.selfcheck_min_pcc == 0.99
    args = p.parse_args(['--tt-run', '--device', 'wormhole_n150', '--no-selfcheck',
                         '--selfcheck-min-pcc', '0.95'])
    runner.check_args(p, args)
    opts = runner.backend_options(args)
    assert opts.selfcheck is False and opts.selfcheck_min_pcc == 0.95
    args = p.parse_args([])
    runner.check_args(p, args)
    assert args.batch_size == 1 and args.strict is False and args.dtype == 'auto'
    # A T3000: one image per chip, eight chips.
    args = p.parse_args(['--tt-run', '--device', 'wormhole_t3000', '--dp', '8'])
    runner.check_args(p, args)
    assert runner.backend_options(args).dp == 8 and args.batch_size == 8


def test_image_loading_conversions_and_duplicate_names(tmp_path):
    from dpt_ros.demo.image_files import load_image
    from dpt_ros.perf.stats import PerfStats
    g16 = tmp_path / 'depth16.png'
    Image.fromarray(np.array([[0, 65535], [32768, 1000]], np.uint16)).save(g16)
    im = load_image(str(g16))
    assert im.rgb.dtype == np.uint8 and im.rgb.shape == (2, 2, 3)
    assert im.rgb[0, 1, 0] == 255 and im.rgb[0, 0, 0] == 0 and 'grayscale' in im.note
    pal = tmp_path / 'pal.png'
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).convert('P').save(pal)
    assert load_image(str(pal)).rgb.shape == (8, 8, 3)
    for ext in ('png', 'jpg'):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f'same.{ext}')
    loaded, failed = runner.load_sources([str(tmp_path / 'same.jpg'),
                                          str(tmp_path / 'same.png')], PerfStats())
    assert not failed and len({im.name for im in loaded}) == 2
