"""
Tests of the `tt` backend behind the registry.

Start-up failures, CPU fallback, and (under the device double) the whole backend against the
torch reference.

No Tenstorrent card exists here, so `create` meets the real ttnn 0.81.1 and its real
'No chips detected' error; the full-backend test runs the same code under
`test/support/doubles/tt_device_double.py` (golden-function ops on an emulated device).
"""
import sys

from dpt_ros.backends import BackendOptions, create_backend
from dpt_ros.errors import BackendError, BackendUnavailable
import numpy as np
import pytest

# The no-device checks run in a fresh interpreter: once the device double has pointed
# TT_METAL_MOCK_CLUSTER_DESC_PATH at its mock N300 in this process, the real ttnn reports two
# (mock) chips, and a second real open_mesh_device half-succeeds and then crashes in device
# calls. A clean process sees what a machine without a card sees.
_NO_DEVICE_SCRIPT = r"""
import json, logging, sys
import numpy as np
from dpt_ros.backends import BackendOptions, create_backend
from dpt_ros.backends import tt_backend
from dpt_ros.tt import device as tt_device
opts = BackendOptions(weights='tiny-random', image_size=64, device='wormhole_n300', dp=2,
                      execution_mode='trace_2cq')
res = {'detect': list(tt_device.detect())}
def attempt(key, fn):
    try:
        res[key] = {'ok': fn()}
    except Exception as exc:
        res[key] = {'error': type(exc).__name__, 'message': str(exc),
                    'unavailable': isinstance(exc, tt_device.BackendUnavailable)}
attempt('create', lambda: repr(tt_backend.create(opts)))
def fallback():
    started = create_backend('tt', opts, allow_fallback=True)
    try:
        out = started.backend.infer(np.zeros((1, 3, 64, 64), np.float32))
        return {'fell_back': started.fell_back, 'requested': started.requested,
                'reason': started.fallback_reason, 'name': started.backend.info.name,
                'device': started.backend.info.device, 'shape': list(out.shape),
                'finite': bool(np.isfinite(out).all())}
    finally:
        started.backend.close()
attempt('fallback', fallback)
attempt('no_fallback', lambda: repr(create_backend('tt', opts, allow_fallback=False)))
print('RESULT ' + json.dumps(res))
"""


@pytest.fixture(scope='module')
def no_device_run():
    import json
    import os
    import subprocess
    from support.paths import ROOT as root
    env = {k: v for k, v in os.environ.items() if k != 'TT_METAL_MOCK_CLUSTER_DESC_PATH'}
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run([sys.executable, '-c', _NO_DEVICE_SCRIPT], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    assert lines, f'no-device run failed (rc {proc.returncode}): {proc.stderr[-2000:]}'
    res = json.loads(lines[-1][len('RESULT '):])
    if res['detect'][0]:
        pytest.skip('a Tenstorrent device is present: the no-device path cannot be shown')
    return res


def _opts(**kw):
    base = {'weights': 'tiny-random', 'image_size': 64, 'device': 'wormhole_n300', 'dp': 2,
            'execution_mode': 'trace_2cq'}
    base.update(kw)
    return BackendOptions(**base)


def test_create_without_device_raises_unavailable_with_cause(no_device_run):
    r = no_device_run['create']
    assert r.get('unavailable'), r
    msg = r['message']
    assert 'No chips detected' in msg       # the cause, as ttnn states it
    assert 'wormhole_n300' in msg
    assert 'backtrace' not in msg           # one readable line, not the C++ trace
    assert '\n' not in msg


def test_create_without_ttnn_raises_unavailable(monkeypatch):
    from dpt_ros.backends import tt_backend
    # A None entry makes `import ttnn` raise ImportError, as on a machine without it.
    monkeypatch.setitem(sys.modules, 'ttnn', None)
    with pytest.raises(BackendUnavailable, match='ttnn is not installed'):
        tt_backend.create(_opts())


@pytest.mark.parametrize('change, words', [
    ({'device': 'cpu'}, 'wormhole_n150 | wormhole_n300'),
    ({'device': 'wormhole_n150', 'dp': 2}, 'dp 2 is not possible'),
    ({'execution_mode': 'fast'}, 'execution_mode'),
    ({'image_size': 100}, 'multiple of the 16 px patch'),
])
def test_impossible_options_are_configuration_errors_not_fallbacks(change, words):
    from dpt_ros.backends import tt_backend
    with pytest.raises(BackendError, match=words) as info:
        tt_backend.create(_opts(**change))
    # A wrong configuration must stop start-up, never silently run on CPU.
    assert not isinstance(info.value, BackendUnavailable)


def test_registry_falls_back_to_torch_cpu_and_says_why(no_device_run):
    r = no_device_run['fallback']['ok']
    assert r['fell_back'] and r['requested'] == 'tt'
    assert 'No chips detected' in r['reason']
    assert r['name'] == 'torch' and r['device'] == 'cpu'
    assert r['shape'] == [1, 64, 64] and r['finite']


def test_registry_without_fallback_raises(no_device_run):
    r = no_device_run['no_fallback']
    assert r.get('unavailable'), r
    assert 'No chips detected' in r['message']


@pytest.mark.parametrize('mode, dp', [('trace_2cq', 2), ('trace', 1), ('eager', 1)])
def test_whole_backend_under_the_device_double_matches_torch(mode, dp, tmp_path):
    """
    Check that every frame the real TT backend gives on the device double matches torch.

    The registry starts the real TT backend (TtDPT, weights, configs, runtime) on the
    device double; every frame's output must correlate >= 0.99 with torch fp32 on CPU.
    """
    pytest.importorskip('dpt_ros.tt.model',
                        reason='the TT model (dpt_ros/tt/model.py) is not in the tree yet')
    from skimage import data

    from dpt_ros.depth.pcc import pcc
    from support.doubles.tt_device_double import tt_device_double
    from support.tt_reference import tiny_inputs_and_torch

    size = 64
    x, pixels, expected = tiny_inputs_and_torch((data.astronaut(), data.coffee()), size)
    opts = _opts(image_size=size, dp=dp, execution_mode=mode, cache_dir=str(tmp_path))
    with tt_device_double():
        started = create_backend('tt', opts, allow_fallback=False)
        backend = started.backend
        try:
            assert not started.fell_back and backend.info.name == 'tt'
            got = backend.infer(x)
            # What the node sends: uint8 pixels, the normalisation folded into the weights.
            # Both reach the device as the same bf16 pixel - 127.5 values: the same output.
            assert backend.info.input_format == 'pixels'
            np.testing.assert_array_equal(backend.infer(pixels), got)
            assert backend.info.extra['tt_execution_mode'] == mode
            assert backend.info.extra['tt_execution_mode_effective'] == mode
            assert backend.fallback_counts()['program_config_fallback_total'] == 0
            extra, stats = dict(backend.info.extra), backend.chip_stats()
        finally:
            backend.close()
    scores = [pcc(got[i], expected[i]) for i in range(len(x))]
    print(f'{mode} dp{dp} PCC vs torch fp32: {scores}')
    assert all(s >= 0.99 for s in scores), scores
    # Every chip passed the start-up self-check (the bundled picture vs torch fp32).
    assert extra['selfcheck'] == 'passed' and extra['selfcheck_min_pcc'] == 0.99
    assert len(extra['selfcheck_pcc']) == dp and min(extra['selfcheck_pcc']) >= 0.99
    assert [stats[f'chip{i} selfcheck_pcc'] for i in range(dp)] == extra['selfcheck_pcc']
    assert stats['chips_in_rotation'] == dp and extra['selfcheck_s'] > 0


def test_dp8_on_a_t3000_under_the_device_double_matches_torch_on_every_chip(tmp_path):
    """
    Check a T3000 (dp 8, trace_2cq): eight frames, one per chip, each matches torch.

    The real backend on the device double with eight chips; each frame's output correlates
    >= 0.99 with torch fp32, and every chip reports the frame it ran.
    """
    pytest.importorskip('dpt_ros.tt.model',
                        reason='the TT model (dpt_ros/tt/model.py) is not in the tree yet')
    from skimage import data

    from dpt_ros.depth.pcc import pcc
    from support.doubles.tt_device_double import tt_device_double
    from support.tt_reference import tiny_inputs_and_torch

    size = 64
    images = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    images += [im[:, ::-1] for im in images]       # eight different frames
    images = [np.ascontiguousarray(im) for im in images]
    _, pixels, expected = tiny_inputs_and_torch(images, size)
    opts = _opts(image_size=size, device='wormhole_t3000', dp=8, cache_dir=str(tmp_path))
    with tt_device_double(num_devices=8):
        started = create_backend('tt', opts, allow_fallback=False)
        backend = started.backend
        try:
            assert not started.fell_back and backend.max_concurrency == 8
            assert backend.info.extra['device_ids'] == [f'wormhole_t3000:{i}' for i in range(8)]
            got = backend.infer(pixels)
            stats = backend.chip_stats()
        finally:
            backend.close()
    scores = [pcc(got[i], expected[i]) for i in range(len(images))]
    print(f'dp8 PCC vs torch fp32: {scores}')
    assert all(s >= 0.99 for s in scores), scores
    assert stats['chips'] == 8 and stats['chips_in_rotation'] == 8
    assert [stats[f'chip{i} frames'] for i in range(8)] == [1] * 8
    assert all(stats[f'chip{i} failures'] == 0 for i in range(8))


# ---- the N300 hazards (issue 21), on the device double --------------------------------------

def _started(opts):
    return create_backend('tt', opts, allow_fallback=False).backend


@pytest.mark.parametrize('mode', ['eager', 'trace_2cq'])
def test_a_frame_reads_back_its_depth_not_tile_padding(mode, tmp_path):
    """
    Check the bytes read back per frame: at most 2 x S x S x 4 (untilized on the device).

    The head's last linear leaves (1, 1, N*S*S, 1) in TILE layout, 32x padded; the model
    reshapes and untilizes it on the device, so only the depth values cross to the host.
    """
    from support.doubles.tt_device_double import tt_device_double
    size = 64
    batch = np.zeros((2, size, size, 3), np.uint8)
    with tt_device_double() as double:
        backend = _started(_opts(image_size=size, dp=2, execution_mode=mode,
                                 cache_dir=str(tmp_path)))
        try:
            backend.infer(batch)                           # the first call may differ
            before = double.readback_bytes
            out = backend.infer(batch)
            per_frame = (double.readback_bytes - before) / len(batch)
        finally:
            backend.close()
    assert out.shape == (2, size, size)
    assert 0 < per_frame <= 2 * size * size * 4, per_frame


def test_a_trace_larger_than_its_region_stops_start_up_in_one_line(tmp_path, caplog):
    """
    Check the trace region: its size is reported, and too small a region stops start-up.

    The double sizes a captured trace (doubles/tt_device_double.py: per device program) and
    refuses it with tt-metal's own error when it exceeds the region; the backend turns that
    into one line naming the override. With the default region the traces fit and each
    chip's trace bytes are logged and kept for the perf JSON.
    """
    import logging

    from support.doubles.tt_device_double import tt_device_double
    from dpt_ros.tt.device import TRACE_REGION_SIZE
    assert TRACE_REGION_SIZE == BackendOptions().trace_region_mb << 20 == 32 << 20
    opts = _opts(image_size=64, dp=2, execution_mode='trace', cache_dir=str(tmp_path))
    with tt_device_double():
        with pytest.raises(BackendError) as info:
            _started(opts.replace(trace_region_mb=1))
        with caplog.at_level(logging.INFO, logger='dpt_ros.tt.executor'):
            backend = _started(opts)
        held = backend.info.extra['trace_bytes']
        backend.close()
    msg = str(info.value)
    assert not isinstance(info.value, BackendUnavailable)      # a setting, not a fallback
    assert '\n' not in msg and 'trace region too small' in msg, msg
    assert 'trace_region_mb 1' in msg and '--trace-region-mb' in msg, msg
    need = int(msg.split('need ')[1].split(' B')[0])
    assert 1 << 20 < need < 32 << 20
    assert len(held) == 2 and all(need // 2 <= b < 32 << 20 for b in held), held
    assert sum('traces hold' in r.getMessage() for r in caplog.records) == 2


def test_worker_dispatch_runs_8x7_and_says_so_in_diagnostics_and_perf_json(tmp_path):
    """
    Check WORKER dispatch on an N300 (8x7 per chip): configs follow, reports say it.

    The default (auto) opens ethernet dispatch, 8x8. trace_2cq on two chips with WORKER
    dispatch cannot open (too few dispatch cores): refused in one line before opening.
    """
    from support.doubles.tt_device_double import tt_device_double
    from dpt_ros.perf.report import build_perf, RunTimings
    from dpt_ros.perf.stats import PerfStats
    size = 64
    batch = np.zeros((2, size, size, 3), np.uint8)
    seen = {}
    with tt_device_double():
        for dispatch in ('worker', 'auto'):
            backend = _started(_opts(image_size=size, dp=2, execution_mode='trace',
                                     dispatch_core=dispatch, cache_dir=str(tmp_path)))
            try:
                assert np.isfinite(backend.infer(batch)).all()
                perf = build_perf(RunTimings(), backend.info, PerfStats(),
                                  requested_backend='tt', fallback_reason=None,
                                  device_arg='wormhole_n300', strict=True)
                seen[dispatch] = (backend.chip_stats(), perf,
                                  [m.tt.cfg.grid for m in backend._models])
            finally:
                backend.close()
        with pytest.raises(BackendError, match='dispatch_core worker cannot run trace_2cq') \
                as info:
            _started(_opts(image_size=size, dp=2, dispatch_core='worker'))
    assert '\n' not in str(info.value)
    for dispatch, kind, grid in (('worker', 'worker', '8x7'), ('auto', 'eth', '8x8')):
        chips, perf, cfg_grids = seen[dispatch]
        for i in range(2):
            assert (chips[f'chip{i} dispatch'], chips[f'chip{i} grid']) == (kind, grid)
        assert perf['dispatch_core'] == kind and perf['chip_grids'] == [grid, grid]
        assert cfg_grids == [tuple(int(v) for v in grid.split('x'))] * 2


def test_trace_region_and_dispatch_reach_the_backend_from_runner_and_node():
    """One parameter each (params table, runner flag) ends up in BackendOptions."""
    from dpt_ros.demo.runner import backend_options, build_parser
    from dpt_ros.ros import params
    args = build_parser().parse_args(['--tt-run', '--device', 'wormhole_n300',
                                      '--trace-region-mb', '64', '--dispatch-core', 'worker'])
    opts = backend_options(args)
    assert (opts.trace_region_mb, opts.dispatch_core) == (64, 'worker')
    table = {p.name: p for p in params.PARAMS}
    assert table['trace_region_mb'].default == BackendOptions().trace_region_mb == 32
    assert table['dispatch_core'].choice_list() == ('auto', 'eth', 'worker')
    opts = params.backend_options({'trace_region_mb': 48, 'dispatch_core': 'eth'})
    assert (opts.trace_region_mb, opts.dispatch_core) == (48, 'eth')


def test_precision_profile_reaches_the_model_from_runner_and_node(tmp_path):
    """
    Check `precision`: one table entry, a runner flag, each chip's configs, the perf info.

    accurate is the default everywhere; fast builds every chip's encoder with the fast
    profile (LoFi linears, bfloat8_b out of QKV / FF1) and says so in backend info; an unknown
    profile stops start-up in one line, not a fallback.
    """
    ttnn = pytest.importorskip('ttnn')
    from support.doubles.tt_device_double import tt_device_double
    from dpt_ros.demo.runner import backend_options, build_parser
    from dpt_ros.ros import params
    assert BackendOptions().precision == 'accurate'
    args = build_parser().parse_args(['--tt-run', '--device', 'wormhole_n300'])
    assert backend_options(args).precision == 'accurate'
    args = build_parser().parse_args(['--tt-run', '--device', 'wormhole_n300',
                                      '--tt-precision', 'fast'])
    assert backend_options(args).precision == 'fast'
    table = {p.name: p for p in params.PARAMS}
    assert table['precision'].choice_list() == ('accurate', 'fast')
    assert params.backend_options({'precision': 'fast'}).precision == 'fast'
    with tt_device_double():
        backend = _started(_opts(precision='fast', execution_mode='trace',
                                 cache_dir=str(tmp_path)))
        try:
            assert np.isfinite(backend.infer(np.zeros((2, 64, 64, 3), np.uint8))).all()
            cfgs = [m.tt.cfg for m in backend._models]
            info = backend.info.extra
        finally:
            backend.close()
        with pytest.raises(BackendError, match='tt precision must be one of') as bad:
            _started(_opts(precision='fastest', cache_dir=str(tmp_path)))
    assert not isinstance(bad.value, BackendUnavailable) and '\n' not in str(bad.value)
    assert info['precision'] == 'fast'
    for cfg in cfgs:
        assert cfg.precision_name == 'fast'
        assert str(cfg.compute['ff1'].math_fidelity).endswith('LoFi')
        assert cfg.out_dtype('qkv') == cfg.out_dtype('ff1') == ttnn.bfloat8_b


def test_throughput_mode_runs_two_frames_per_chip_and_pairs_single_frame_calls(tmp_path):
    """
    Check chip_batch 2 on an N300 (the double): two frames share each chip's program.

    Each chip's model is built for 2 frames (configs batch 2), a call of 4 frames gives each
    frame the depth the one-frame-per-chip backend gives it, two concurrent calls of one frame
    (two cameras) share one run, and the perf info says 2 per chip; a lone call runs filled.
    """
    import threading

    from support.doubles.tt_device_double import tt_device_double
    from dpt_ros.demo.runner import backend_options, build_parser, check_args
    from dpt_ros.ros import params
    parser = build_parser()
    args = parser.parse_args(['--tt-run', '--device', 'wormhole_n300', '--dp', '2',
                              '--chip-batch', '2'])
    check_args(parser, args)
    assert (backend_options(args).chip_batch, args.batch_size) == (2, 4)
    assert params.backend_options({'chip_batch': 2}).chip_batch == 2
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    with tt_device_double():
        one = _started(_opts(execution_mode='trace', cache_dir=str(tmp_path)))
        try:
            ref = one.infer(x[:2])
            ref = np.concatenate([ref, one.infer(x[2:])])
        finally:
            one.close()
        two = _started(_opts(execution_mode='trace', chip_batch=2, chip_batch_wait_ms=30000,
                             cache_dir=str(tmp_path)))
        try:
            assert [m.tt.cfg.batch for m in two._models] == [2, 2]
            assert two.max_concurrency == 4 and two.info.extra['per_chip_batch_size'] == 2
            got = two.infer(x)
            outs = {}
            threads = [threading.Thread(target=lambda i=i: outs.update({i: two.infer(x[i:i + 1])}))
                       for i in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=120)
            paired = (two._gather.groups, two._gather.frames)
            two._gather.wait_s = 0.01
            alone = two.infer(x[3:4])
        finally:
            two.close()
        with pytest.raises(BackendError, match='chip_batch must be one of'):
            _started(_opts(chip_batch=3, cache_dir=str(tmp_path)))
        with pytest.raises(BackendError, match='needs the 8x8 grid') as worker:
            _started(_opts(chip_batch=2, dispatch_core='worker', execution_mode='trace',
                           cache_dir=str(tmp_path)))
    assert '\n' not in str(worker.value)
    for i in range(4):
        assert np.corrcoef(got[i].ravel(), ref[i].ravel())[0, 1] > 0.999, i
    assert paired == (1, 2)
    for i in range(2):
        assert np.array_equal(outs[i][0], got[i])
    assert np.corrcoef(alone[0].ravel(), ref[3].ravel())[0, 1] > 0.999
