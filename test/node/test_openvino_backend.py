"""
Tests of the OpenVINO backend.

Covered: the registry and numerics against the torch reference (tiny config), its on-disk
cache (miss, hit, damaged entries rebuilt), option errors, the fallback where openvino is
missing, and the same outputs through the pipeline, runner, bag_eval and the node.

DPT-Large's PCC and the speed figures come from bench/bench_cpu.py (a conversion of the full
model takes about a minute here: too slow for the suite).
"""
import json
import logging
import os
import shutil
import subprocess
import sys
import threading

from dpt_ros.backends import (BackendError, BackendOptions, BACKENDS, BackendUnavailable,
                              create_backend)
from dpt_ros.backends import openvino_backend as ovb
from dpt_ros.backends import precision
from dpt_ros.depth.pcc import pcc
from dpt_ros.inference.preprocess import preprocess, resize_pixels
from dpt_ros.ros import params
from dpt_ros.serving.pipeline import DepthPipeline
from dpt_ros.serving.supervisor import BackendSupervisor
import numpy as np
import pytest
from support.paths import DOUBLES, pythonpath, ROOT

pytest.importorskip('openvino')

NO_OPENVINO_PATH = pythonpath(os.path.join(DOUBLES, 'no_openvino'))
SIZE = 64                      # the tiny config at 64 px converts in about a second
SMALL = {'weights': 'tiny-random', 'image_size': SIZE}


def _rgb(h=120, w=160, seed=0):
    """Return a natural picture (astronaut, resized) for seed 0, uniform noise otherwise."""
    if seed:
        return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    import cv2
    from skimage import data
    return cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_AREA)


def _entry(cache_dir):
    """Return the one converted-model folder under cache_dir."""
    root = os.path.join(str(cache_dir), 'openvino')
    found = [os.path.join(root, n) for n in os.listdir(root)
             if n != 'compiled' and not n.startswith('.')]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope='module')
def reference():
    """Yield the numerical reference: torch fp32 on the CPU, tiny-random at 64 px."""
    from dpt_ros.backends.torch_backend import create
    backend = create(BackendOptions(**SMALL))
    yield backend
    backend.close()


@pytest.fixture(scope='module')
def warm_cache(tmp_path_factory):
    """Return a new cache folder holding the converted tiny model (and its compiled blob)."""
    d = tmp_path_factory.mktemp('ov_cache')
    b = ovb.create(BackendOptions(cache_dir=str(d), **SMALL))
    assert b.info.extra['cache'] == 'miss'
    b.close()
    return d


def _copy_cache(src, tmp_path):
    dst = tmp_path / 'cache'
    shutil.copytree(src, dst)
    return dst


def test_registered_and_the_default_cpu_backend():
    assert 'openvino' in BACKENDS
    assert 'openvino' in params.BY_NAME['backend'].choice_list()
    assert params.defaults()['backend'] == 'openvino'
    assert params.validate({'backend': 'openvino', 'dtype': 'bf16'}) == []


@pytest.mark.parametrize('dtype', ['fp32', 'bf16', 'auto'])
def test_pcc_against_torch_fp32_tiny_config_at_384(dtype):
    from dpt_ros.backends.torch_backend import create
    # What executes is what this CPU's OpenVINO capabilities predict (bf16 only with BF16).
    executed = precision.for_openvino(dtype).executed
    min_pcc = {'fp32': 0.99999, 'bf16': 0.999}[executed]
    rgb = _rgb(480, 640)
    ref = create(BackendOptions(weights='tiny-random', dtype='fp32'))
    started = create_backend('openvino', BackendOptions(weights='tiny-random', dtype=dtype),
                             allow_fallback=False)
    pipe = DepthPipeline(BackendSupervisor(started))
    try:
        info = pipe.backend.info
        assert (info.name, info.device, info.dtype, info.dtype_requested, info.input_format) == (
            'openvino', 'cpu', executed, dtype, 'pixels')
        assert info.extra['inference_precision'] == {'fp32': 'f32', 'bf16': 'bf16'}[executed]
        out = pipe.process(rgb, want_color=False)
        expected = ref.infer(preprocess(rgb)[None])[0]
        assert out.raw.shape == (384, 384)
        assert pcc(out.raw, expected) >= min_pcc
        assert pipe.perf.snapshot()['backend_fallback_count'] == 0
    finally:
        pipe.close()
        ref.close()


def test_pixels_and_normalised_input_give_the_same_depth(warm_cache, reference):
    b = ovb.create(BackendOptions(cache_dir=str(warm_cache), **SMALL))
    try:
        frames = [_rgb(), _rgb(seed=3)]
        pixels = np.stack([resize_pixels(f, SIZE) for f in frames])
        normalised = np.stack([preprocess(f, SIZE) for f in frames])
        a, b2 = b.infer(pixels), b.infer(normalised)
        assert a.shape == (2, SIZE, SIZE) and a.dtype == np.float32
        np.testing.assert_allclose(a, b2, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))
        for i in range(2):
            assert pcc(a[i], reference.infer(normalised[i:i + 1])[0]) >= 0.99999
        with pytest.raises(BackendError):
            b.infer(np.zeros((1, SIZE, SIZE), np.uint8))
    finally:
        b.close()
    with pytest.raises(BackendError, match='closed'):
        b.infer(pixels)


def test_two_streams_compile_for_throughput_and_run_two_frames_at_once(warm_cache, tmp_path,
                                                                       monkeypatch):
    cache = str(_copy_cache(warm_cache, tmp_path))   # its own compiled blobs: a copy
    latency = ovb.create(BackendOptions(cache_dir=cache, **SMALL))
    b = ovb.create(BackendOptions(cache_dir=cache, streams=2, **SMALL))
    try:
        assert (latency.max_concurrency, latency.info.extra['performance_hint'],
                latency.info.extra['streams']) == (1, 'LATENCY', 1)
        assert (b.max_concurrency, b.info.extra['performance_hint'],
                b.info.extra['streams']) == (2, 'THROUGHPUT', 2)
        frames = [resize_pixels(_rgb(seed=k), SIZE)[None] for k in (1, 2)]
        want = [latency.infer(f) for f in frames]
        # Each call waits inside its inference for the other: both must be in flight at once
        # (a backend that ran one call at a time would break the barrier after its timeout).
        barrier = threading.Barrier(2, timeout=60)
        take = b._take_request

        class Meeting:
            def __init__(self, req):
                self.req = req

            def infer(self, *args, **kwargs):
                barrier.wait()
                return self.req.infer(*args, **kwargs)

            def get_output_tensor(self, i):
                return self.req.get_output_tensor(i)
        monkeypatch.setattr(b, '_take_request', lambda kind: Meeting(take(kind)))
        got = [None, None]
        threads = [threading.Thread(target=lambda k=k: got.__setitem__(k, b.infer(frames[k])))
                   for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not barrier.broken
        assert sorted(os.listdir(os.path.join(cache, 'openvino', 'compiled'))) == [
            'f32-threadsauto', 'f32-threadsauto-streams2']
        for k in (0, 1):
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4,
                                       atol=1e-5 * float(np.abs(want[k]).max()))
    finally:
        b.close()
        latency.close()


def test_streams_auto_follow_the_camera_count():
    opts = params.backend_options
    assert opts(params.defaults()).streams == 1
    assert opts(dict(params.defaults(), cameras=['front', 'rear'])).streams == 2
    assert opts(dict(params.defaults(), cameras=['front', 'rear'], streams=1)).streams == 1
    assert opts(dict(params.defaults(), streams=3)).streams == 3


def test_cache_miss_converts_once_and_a_hit_gives_the_same_output(tmp_path, caplog):
    opts = BackendOptions(cache_dir=str(tmp_path), **SMALL)
    x = resize_pixels(_rgb(), SIZE)[None]
    with caplog.at_level(logging.INFO, logger='dpt_ros.backends.openvino'):
        first = ovb.create(opts)
    steps = [r.getMessage() for r in caplog.records if '[2/3]' in r.getMessage()]
    assert first.info.extra['cache'] == 'miss' and steps, caplog.text
    assert 'converted in' in steps[-1]          # the progress line says how long it took
    assert {'load_s', 'convert_s', 'save_s'} <= set(first.info.extra['startup_s'])
    out1 = first.infer(x)
    first.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger='dpt_ros.backends.openvino'):
        second = ovb.create(opts)
    assert second.info.extra['cache'] == 'hit'
    assert 'converting' not in caplog.text and 'load_s' not in second.info.extra['startup_s']
    assert second.info.extra['cache_entry'] == first.info.extra['cache_entry']
    assert second.info.weights == first.info.weights and second.info.extra['weights_random']
    # The first start serves the saved IR too (fp16 weights), so the two agree exactly.
    np.testing.assert_array_equal(second.infer(x), out1)
    second.close()
    meta = json.loads(open(os.path.join(_entry(tmp_path), 'meta.json')).read())
    assert meta['image_size'] == SIZE and meta['openvino'] == ovb.openvino_version()
    assert os.listdir(os.path.join(str(tmp_path), 'openvino', 'compiled', 'f32-threadsauto'))


def test_a_cache_hit_starts_without_importing_torch(warm_cache):
    code = ('import json, sys\n'
            'from dpt_ros.backends import BackendOptions, create_backend\n'
            f'b = create_backend("openvino", BackendOptions(weights="tiny-random", '
            f'image_size={SIZE}, cache_dir={str(warm_cache)!r}), allow_fallback=False).backend\n'
            'print(json.dumps({"cache": b.info.extra["cache"], '
            '"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        'cache': 'hit', 'torch': False, 'transformers': False}


def _truncate_bin(entry):
    with open(os.path.join(entry, 'model.bin'), 'r+b') as f:
        f.truncate(100)


def _garbage_xml(entry):
    # Same size, so only OpenVINO's reader can tell.
    path = os.path.join(entry, 'model.xml')
    size = os.path.getsize(path)
    with open(path, 'wb') as f:
        f.write(b'<not-an-ir' + b'x' * (size - 10))


def _bad_meta(entry):
    with open(os.path.join(entry, 'meta.json'), 'w') as f:
        f.write('{"format": ')


def _no_meta(entry):
    os.unlink(os.path.join(entry, 'meta.json'))


@pytest.mark.parametrize('damage', [_truncate_bin, _garbage_xml, _bad_meta, _no_meta],
                         ids=['truncated_bin', 'garbage_xml', 'bad_meta', 'no_meta'])
def test_a_damaged_entry_is_rebuilt_not_fatal(warm_cache, reference, tmp_path, caplog, damage):
    cache = _copy_cache(warm_cache, tmp_path)
    damage(_entry(cache))
    opts = BackendOptions(cache_dir=str(cache), **SMALL)
    with caplog.at_level(logging.WARNING, logger='dpt_ros.backends.openvino'):
        b = ovb.create(opts)
    try:
        assert b.info.extra['cache'] == 'rebuilt'
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                  and 'rebuilding' in r.getMessage()]
        assert len(warned) == 1 and '\n' not in warned[0], caplog.text
        x = preprocess(_rgb(), SIZE)[None]
        assert pcc(b.infer(x)[0], reference.infer(x)[0]) >= 0.99999
    finally:
        b.close()
    again = ovb.create(opts)          # the rebuilt entry is complete: a plain hit now
    assert again.info.extra['cache'] == 'hit'
    again.close()


def test_a_damaged_compiled_blob_is_recompiled(warm_cache, reference, tmp_path):
    cache = _copy_cache(warm_cache, tmp_path)
    blob_dir = os.path.join(str(cache), 'openvino', 'compiled', 'f32-threadsauto')
    blobs = os.listdir(blob_dir)
    assert blobs
    for name in blobs:
        path = os.path.join(blob_dir, name)
        os.chmod(path, 0o644)
        with open(path, 'r+b') as f:
            f.seek(64)
            f.write(b'\xff' * 256)
    b = ovb.create(BackendOptions(cache_dir=str(cache), **SMALL))
    try:
        x = preprocess(_rgb(), SIZE)[None]
        assert pcc(b.infer(x)[0], reference.infer(x)[0]) >= 0.99999
    finally:
        b.close()


def test_fp32_and_bf16_share_the_model_entry_but_not_compiled_blobs(
        warm_cache, reference, tmp_path):
    # OpenVINO's blob key ignores the precision hint: a bf16 start that imported the f32 blob
    # returned zeros. Each precision has its own CACHE_DIR.
    cache = _copy_cache(warm_cache, tmp_path)
    x = preprocess(_rgb(), SIZE)[None]
    expected = reference.infer(x)[0]
    # A bf16 request compiles bf16 only where this CPU's OpenVINO runs it (else f32 executes).
    bf16 = precision.for_openvino('bf16').executed == 'bf16'
    for dtype, min_pcc in (('bf16', 0.999), ('fp32', 0.99999), ('bf16', 0.999)):
        b = ovb.create(BackendOptions(cache_dir=str(cache), dtype=dtype, **SMALL))
        try:
            assert b.info.extra['cache'] == 'hit'
            assert pcc(b.infer(x)[0], expected) >= min_pcc, dtype
        finally:
            b.close()
    assert sorted(os.listdir(os.path.join(str(cache), 'openvino', 'compiled'))) == (
        ['bf16-threadsauto', 'f32-threadsauto'] if bf16 else ['f32-threadsauto'])


def _dtype_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and 'dtype' in r.getMessage()]


def test_on_a_cpu_without_bf16_a_bf16_request_runs_fp32_and_says_so(
        warm_cache, reference, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(precision.NO_BF16_ENV, '1')     # resolve as a Zen 3 would
    cache = _copy_cache(warm_cache, tmp_path)
    x = preprocess(_rgb(), SIZE)[None]
    with caplog.at_level(logging.WARNING, logger='dpt_ros.backends.openvino'):
        auto = ovb.create(BackendOptions(cache_dir=str(cache), dtype='auto', **SMALL))
        assert (auto.info.dtype, auto.info.dtype_text) == ('fp32', 'auto -> fp32')
        auto.close()
        assert _dtype_warnings(caplog) == []
        b = ovb.create(BackendOptions(cache_dir=str(cache), dtype='bf16', **SMALL))
    try:
        assert (b.info.dtype, b.info.dtype_requested, b.info.extra['inference_precision']) == (
            'fp32', 'bf16', 'f32')
        assert b.info.dtype_text == 'bf16 -> fp32 executed'
        warned = _dtype_warnings(caplog)
        assert len(warned) == 1 and 'bf16 -> fp32 executed' in warned[0], caplog.text
        assert pcc(b.infer(x)[0], reference.infer(x)[0]) >= 0.99999
    finally:
        b.close()


def test_the_executed_dtype_is_read_back_from_the_compiled_model(
        warm_cache, tmp_path, monkeypatch, caplog):
    # Make every compile ask OpenVINO for f32: whatever the capability said, fp32 executes.
    monkeypatch.setattr(ovb, 'PRECISION_HINTS', {'fp32': 'f32', 'bf16': 'f32'})
    cache = _copy_cache(warm_cache, tmp_path)
    with caplog.at_level(logging.WARNING, logger='dpt_ros.backends.openvino'):
        b = ovb.create(BackendOptions(cache_dir=str(cache), dtype='bf16', **SMALL))
    try:
        assert (b.info.dtype, b.info.extra['inference_precision']) == ('fp32', 'f32')
        warned = _dtype_warnings(caplog)
        assert len(warned) == 1 and 'bf16 -> fp32 executed' in warned[0], caplog.text
    finally:
        b.close()


def test_a_cache_that_cannot_be_written_is_not_fatal(reference, tmp_path, caplog):
    blocker = tmp_path / 'a_file'
    blocker.write_text('a file where the cache folder would go')
    with caplog.at_level(logging.WARNING, logger='dpt_ros.backends.openvino'):
        b = ovb.create(BackendOptions(cache_dir=str(blocker), **SMALL))
    try:
        assert b.info.extra['cache'] == 'not saved' and b.info.extra['cache_entry'] is None
        assert 'could not save' in caplog.text
        x = preprocess(_rgb(), SIZE)[None]
        expected = reference.infer(x)[0]
        assert pcc(b.infer(x)[0], expected) >= 0.99999
        assert pcc(b.infer(resize_pixels(_rgb(), SIZE)[None])[0], expected) >= 0.99999
    finally:
        b.close()


def test_a_given_model_unlike_its_weights_name_is_keyed_by_its_content(warm_cache, tmp_path):
    from dpt_ros.backends.torch_backend import create
    from dpt_ros.inference.hf_model import load_model
    cache = _copy_cache(warm_cache, tmp_path)
    other = load_model('tiny-random', seed=1, image_size=SIZE)     # options still say seed 0
    b = ovb.create(BackendOptions(cache_dir=str(cache), **SMALL), other)
    ref = create(BackendOptions(seed=1, **SMALL), other)
    try:
        assert b.info.extra['cache'] == 'miss'
        x = preprocess(_rgb(), SIZE)[None]
        assert pcc(b.infer(x)[0], ref.infer(x)[0]) >= 0.99999
    finally:
        b.close()
        ref.close()


@pytest.mark.parametrize('change, words', [
    ({'device': 'cuda'}, ['openvino', 'cpu', "'cuda'"]),
    ({'device': 'wormhole_n300'}, ['openvino', "'wormhole_n300'"]),
    ({'dtype': 'fp16'}, ['dtype', 'fp32, bf16', "'fp16'"]),
    ({'image_size': 40}, ['image_size 40']),
])
def test_bad_options_rejected_at_start_up_with_one_line(change, words):
    opts = BackendOptions(**dict(SMALL, **change))
    with pytest.raises(BackendError) as exc:
        create_backend('openvino', opts)          # fallback allowed: still an error
    assert not isinstance(exc.value, BackendUnavailable)
    msg = str(exc.value)
    assert '\n' not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_openvino_absent_falls_back_to_torch_cpu_counted(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, 'openvino', None)     # `import openvino` now fails
    with caplog.at_level(logging.WARNING, logger='dpt_ros.backends'):
        started = create_backend('openvino', BackendOptions(**SMALL))
    pipe = DepthPipeline(BackendSupervisor(started))
    try:
        assert started.fell_back and started.requested == 'openvino'
        assert (pipe.backend.info.name, pipe.backend.info.device) == ('torch', 'cpu')
        assert 'openvino is not installed' in started.fallback_reason
        assert 'falling back' in caplog.text and 'backend_fallback_count' in caplog.text
        assert pipe.process(_rgb()).depth.shape == (120, 160)
        assert pipe.perf.snapshot()['backend_fallback_count'] == 1
    finally:
        pipe.close()
    with pytest.raises(BackendUnavailable) as exc:
        create_backend('openvino', BackendOptions(**SMALL), allow_fallback=False)
    assert 'openvino is not installed' in str(exc.value) and '\n' not in str(exc.value)


def test_runner_auto_is_openvino_where_importable_else_torch_said_in_the_log(monkeypatch,
                                                                             caplog, capsys):
    from dpt_ros.demo import runner
    p = runner.build_parser()
    args = p.parse_args([])
    runner.check_args(p, args)
    assert args.backend == 'openvino'
    for argv in (['--backend', 'torch'], ['--compile']):
        args = p.parse_args(argv)
        runner.check_args(p, args)
        assert args.backend == 'torch'
    for argv, words in ((['--backend', 'openvino', '--device', 'cuda'], 'runs on cpu'),
                        (['--backend', 'openvino', '--compile'], 'torch.compile'),
                        (['--tt-run', '--device', 'wormhole_n300', '--backend', 'openvino'],
                         '--tt-run')):
        with pytest.raises(SystemExit) as exc:
            runner.check_args(p, p.parse_args(argv))
        assert exc.value.code == 2 and words in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, 'openvino', None)
    args = p.parse_args([])
    with caplog.at_level(logging.INFO, logger='dpt_ros.demo.runner'):
        runner.check_args(p, args)
    assert args.backend == 'torch' and 'openvino is not importable' in caplog.text


def test_weights_identity_without_loading(tmp_path, monkeypatch):
    assert ovb.weights_identity('random', 0).startswith('random:dpt-large:seed=0:torch=')
    assert ovb.weights_identity('tiny-random', 3).startswith('random:tiny:seed=3:')
    assert ovb.weights_identity('random', 0) != ovb.weights_identity('random', 1)
    (tmp_path / 'config.json').write_text('{}')
    (tmp_path / 'model.safetensors').write_bytes(b'1234')
    before = ovb.weights_identity(str(tmp_path), 0)
    assert before.startswith('dir:')
    (tmp_path / 'model.safetensors').write_bytes(b'12345')
    assert ovb.weights_identity(str(tmp_path), 0) != before
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'empty_hf'))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr('huggingface_hub.constants.HF_HUB_CACHE', str(tmp_path / 'empty_hf'))
    # auto offline without a cached Intel/dpt-large: load_model runs random weights.
    assert ovb.weights_identity('auto', 0) == ovb.weights_identity('random', 0)
    monkeypatch.delenv('HF_HUB_OFFLINE')
    monkeypatch.setattr('dpt_ros.inference.hf_model.hub_reachable', lambda: False)
    assert ovb.weights_identity('auto', 0) == ovb.weights_identity('random', 0)
    monkeypatch.setattr('dpt_ros.inference.hf_model.hub_reachable', lambda: True)
    assert ovb.weights_identity('auto', 0) is None     # load_model may download: load first
    assert ovb.weights_identity('someone/not-cached', 0) is None
    assert ovb.cache_key('a', 384, 'v1') != ovb.cache_key('a', 512, 'v1') != ovb.cache_key(
        'a', 384, 'v2')


# ----- the same outputs through runner, bag_eval and the node -----

def _expected_depth(rgb):
    pipe = DepthPipeline(BackendSupervisor(create_backend('openvino', BackendOptions(**SMALL),
                                                          allow_fallback=False)))
    try:
        return pipe.process(rgb, want_color=False).depth
    finally:
        pipe.close()


def test_runner_and_bag_eval_run_openvino_with_the_pipeline_output(tmp_path, capsys):
    from PIL import Image

    from dpt_ros.demo import runner

    from dpt_ros.evaluation import cli as bag_eval
    from dpt_ros.evaluation.sample_bag import make_sample_bag
    rgb = _rgb()
    Image.fromarray(rgb).save(tmp_path / 'a.png')
    depth, perf = tmp_path / 'd.npy', tmp_path / 'perf.json'
    # fp32 explicitly: auto may run bf16 here, and the output is compared with fp32's.
    assert runner.main(['--image', str(tmp_path / 'a.png'), '--weights', 'tiny-random',
                        '--dtype', 'fp32', '--image-size', str(SIZE), '--warmup', '0',
                        '--repeat', '1',
                        '--dump-depth', str(depth), '--dump-perf', str(perf)]) == 0
    data = json.loads(perf.read_text())
    assert data['backend']['running'] == 'openvino' and data['backend_fallback_count'] == 0
    assert data['versions']['openvino'] and data['compile_time_s'] is not None
    expected = _expected_depth(rgb)
    np.testing.assert_allclose(np.load(depth), expected, rtol=1e-5,
                               atol=1e-5 * float(np.abs(expected).max()))
    bag = tmp_path / 'bag'
    make_sample_bag(bag, frames=3, size=(160, 120))
    out_dir = tmp_path / 'eval'
    assert bag_eval.main(['offline', str(bag), '-o', str(out_dir), '--backend', 'openvino',
                          '--weights', 'tiny-random', '--dtype', 'fp32', '--image-size', str(SIZE),
                          '--pcc-frames', '3', '--no-progress']) == 0
    capsys.readouterr()
    res = json.loads((out_dir / 'report.json').read_text())
    assert res['backend']['name'] == 'openvino' and res['backend']['input_format'] == 'pixels'
    assert res['pcc']['reference_is_evaluated_backend'] is False
    assert res['pcc']['frames'] == 3 and res['pcc']['pcc_min'] >= 0.99999


def _node_depth(graph, node, rgb):
    from sensor_msgs.msg import Image

    from dpt_ros.ros import image_codec
    from support.node_cases import subscribed_publisher
    depth = graph.collect(Image, 'depth_relative')
    pub = subscribed_publisher(graph, node)
    assert graph.wait_matched('depth_relative'), node.output()
    pub.publish(Image(**image_codec.rgb_to_image_fields(rgb)))
    assert graph.spin_until(lambda: depth, 60), node.output()
    msg = depth[0]
    assert msg.encoding == '32FC1'
    return np.frombuffer(bytes(msg.data), np.float32).reshape(msg.height, msg.width)


def _pipeline_status(graph, diags, processed=1):
    def status():
        for arr in reversed(diags):
            for s in arr.status:
                if 'depth pipeline' in s.name:
                    return s
        return None
    assert graph.spin_until(lambda: (s := status()) is not None and
                            s.values and {kv.key: kv.value for kv in s.values}
                            .get('frames_processed') == str(processed), 15)
    return status()


def test_node_serves_openvino_with_the_pipeline_output(graph):
    from diagnostic_msgs.msg import DiagnosticArray

    from support.ros_harness import NodeProcess, diag_values, level_of
    rgb = _rgb()
    expected = _expected_depth(rgb)       # also puts the converted model in the session cache
    values = {'backend': 'openvino', 'weights': 'tiny-random', 'image_size': SIZE,
              'dtype': 'fp32', 'diagnostics_rate': 10.0}
    with NodeProcess(values, wait_ready=120) as node:
        diags = graph.collect(DiagnosticArray, '/diagnostics')
        got = _node_depth(graph, node, rgb)
        v = diag_values(_pipeline_status(graph, diags))
        assert (v['backend'], v['backend_fallback_count'], v['model_input']) == (
            'openvino', '0', 'pixels'), v
        assert (v['dtype'], v['dtype_requested']) == ('fp32', 'fp32'), v
        assert level_of(_pipeline_status(graph, diags)) == 0
        assert any('model hit' in ln for ln in node.lines), node.output()
    np.testing.assert_allclose(got, expected, rtol=1e-5,
                               atol=1e-5 * float(np.abs(expected).max()))


def test_node_on_a_cpu_without_bf16_names_requested_and_executed_dtype(graph):
    from diagnostic_msgs.msg import DiagnosticArray

    from support.ros_harness import NodeProcess, diag_values
    values = {'backend': 'openvino', 'weights': 'tiny-random', 'image_size': SIZE,
              'dtype': 'bf16', 'diagnostics_rate': 10.0}
    with NodeProcess(values, env={precision.NO_BF16_ENV: '1'}, wait_ready=120) as node:
        diags = graph.collect(DiagnosticArray, '/diagnostics')
        _node_depth(graph, node, _rgb())
        v = diag_values(_pipeline_status(graph, diags))
        ran = (v['backend'], v['dtype'], v['dtype_requested'])
        assert ran == ('openvino', 'fp32', 'bf16'), v
    warned = [ln for ln in node.lines if '[WARN]' in ln and 'dtype' in ln]
    assert len(warned) == 1 and 'bf16 -> fp32 executed' in warned[0], node.output()
    assert any('dtype bf16 -> fp32 executed' in ln and 'serving' in ln for ln in node.lines)


def test_node_without_openvino_falls_back_to_torch_cpu_counted(graph):
    from diagnostic_msgs.msg import DiagnosticArray

    from support.ros_harness import NodeProcess, diag_values, level_of
    values = {'backend': 'openvino', 'weights': 'tiny-random', 'image_size': 32,
              'threads': 1, 'diagnostics_rate': 10.0}
    with NodeProcess(values, env={'PYTHONPATH': NO_OPENVINO_PATH}, wait_ready=120) as node:
        diags = graph.collect(DiagnosticArray, '/diagnostics')
        assert _node_depth(graph, node, _rgb(24, 32)).shape == (24, 32)
        s = _pipeline_status(graph, diags)
        v = diag_values(s)
        assert (v['backend'], v['backend_requested'], v['backend_fallback_count']) == (
            'torch', 'openvino', '1'), v
        assert level_of(s) == 1 and 'fallback active' in s.message
        assert 'openvino is not installed' in s.message, s.message
        assert sum('falling back' in ln for ln in node.lines) == 1, node.output()


def test_node_rejects_openvino_on_cuda_with_one_line():
    pytest.importorskip('rclpy')
    from support.ros_harness import NodeProcess
    values = {'backend': 'openvino', 'device': 'cuda', 'weights': 'tiny-random'}
    with NodeProcess(values, wait_ready=0) as node:
        assert node.wait(60) == 2, node.output()
    errors = [ln for ln in node.lines if '[ERROR]' in ln and '[rcl]:' not in ln]
    assert len(errors) == 1, node.output()
    assert "'device'" in errors[0] and 'openvino' in errors[0] and 'use cpu' in errors[0]
