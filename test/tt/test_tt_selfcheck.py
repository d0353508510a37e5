"""
The TT backend's start-up self-check (dpt_ros/backends/tt_selfcheck.py).

Each chip runs the bundled picture by its served path and is compared with torch fp32 on the
CPU before the backend serves. On the device double (the real tiny DPT): a fault injected into
one chip's output takes that chip out with the figure, the other serves, the traces stay as
captured; the reference is cached on disk by the weights' content. With a stand-in program:
strict, all-out and off. On the mock card (readbacks are zeros, test/support/tt_mock_device): the
real node falls back to the CPU naming the figure, and the strict runner fails.
"""
import os
import pathlib
import sys

from dpt_ros.backends import BackendOptions, create_backend, tt_selfcheck
from dpt_ros.errors import BackendUnavailable, SelfCheckFailed
from dpt_ros.tt.executor import ChipPipeline
import numpy as np
import pytest
from support.doubles.tt_device_double import tt_device_double

SIZE = 64     # the tiny DPT's side on the double (as test_tt_backend)


def _opts(**kw):
    base = {'weights': 'tiny-random', 'image_size': SIZE, 'device': 'wormhole_n300', 'dp': 2,
            'execution_mode': 'trace_2cq'}
    base.update(kw)
    return BackendOptions(**base)


def _tiny(seed=0, size=SIZE):
    from dpt_ros.inference.hf_model import load_model
    return load_model('tiny-random', seed=seed, image_size=size)


@pytest.fixture
def forwards(monkeypatch):
    """Count the self-check's CPU forward passes; each still runs."""
    calls = []
    real = tt_selfcheck.compute_reference

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(tt_selfcheck, 'compute_reference', counted)
    return calls


def _corrupt_reads(monkeypatch, chip_ids):
    """Fault injection: the outputs of these chips come back with powers-of-two errors."""
    real = ChipPipeline.read
    rng = np.random.default_rng(0)

    def read(self):
        out = real(self)
        if self.chip_id in chip_ids:
            out = out * np.where(rng.random(out.shape) < 0.2, 4.0, 1.0).astype(np.float32)
        return out
    monkeypatch.setattr(ChipPipeline, 'read', read)


def _held(pipe):
    """Return a pipeline's traces and persistent device tensors (by identity)."""
    return (pipe.trace_in, pipe.trace_main, id(pipe.staging), id(pipe.dev_input),
            id(pipe.dev_output))


# ------------------------------------------------------------------ judging and the cache

def test_judge_fails_a_low_pcc_non_finite_values_and_a_wrong_size():
    rng = np.random.default_rng(1)
    ref = rng.random((8, 8)).astype(np.float32)
    assert tt_selfcheck.judge(ref * 3 + 1, ref, 0.99)[1] == ''
    score, why = tt_selfcheck.judge(rng.random((8, 8)), ref, 0.99)
    assert score < 0.99 and why == f'pcc {tt_selfcheck.format_pcc(score)}'
    bad = ref.copy()
    bad[0, 0] = np.nan      # pcc() would skip the pair: the check must not
    assert tt_selfcheck.judge(bad, ref, 0.99)[1] == '1 non-finite output values'
    assert 'expected 64' in tt_selfcheck.judge(ref[:4], ref, 0.99)[1]
    assert tt_selfcheck.judge(np.zeros((8, 8)), ref, 0.99)[1] == 'pcc 0.00'   # the mock's
    assert tt_selfcheck.format_pcc(0.98996) == '0.9899'    # never rounded up to a threshold


def test_the_reference_is_cached_by_the_weights_content(tmp_path, forwards):
    opts = _opts(cache_dir=str(tmp_path))
    _, normalized = tt_selfcheck.check_input(SIZE, 'pixels')
    loaded = _tiny(seed=0)
    first, cached = tt_selfcheck.reference_depth(opts, loaded, normalized)
    assert not cached and len(forwards) == 1 and first.shape == (SIZE, SIZE)
    again, cached = tt_selfcheck.reference_depth(opts, _tiny(seed=0), normalized)
    assert cached and len(forwards) == 1
    np.testing.assert_array_equal(again, first)
    other, cached = tt_selfcheck.reference_depth(opts, _tiny(seed=1), normalized)
    assert not cached and len(forwards) == 2      # other weights, same name and size
    assert not np.array_equal(other, first)
    assert len(list((tmp_path / 'selfcheck_reference').glob('*.npz'))) == 2
    # A damaged entry is recomputed, not fatal.
    for f in (tmp_path / 'selfcheck_reference').glob('*.npz'):
        f.write_bytes(b'not an npz')
    again, cached = tt_selfcheck.reference_depth(opts, loaded, normalized)
    assert not cached and len(forwards) == 3
    np.testing.assert_array_equal(again, first)


# ------------------------------------------------------------------ the real tiny DPT

def test_a_fault_in_one_chips_output_takes_it_out_and_the_other_serves(
        tmp_path, monkeypatch, forwards):
    """
    Check that chip 1, whose readback has powers-of-two errors, leaves at start-up.

    The check runs through the captured traces (trace_2cq, dp 2) after capture: no trace is
    captured again, every input copy after capture waits for its event (support/toy_program's
    check), the persistent tensors stay the ones captured. Chip 0 then serves every frame,
    each matching torch; chip_stats say why chip 1 is out.
    """
    from skimage import data

    from dpt_ros.depth.pcc import pcc
    from support.toy_program import check_2cq_order, post_capture
    from support.tt_reference import tiny_inputs_and_torch
    _, pixels, expected = tiny_inputs_and_torch((data.coffee(), data.chelsea()), SIZE)
    _corrupt_reads(monkeypatch, {'wormhole_n300:1'})
    held = []
    real_run = tt_selfcheck.run

    def run(dp, *args, **kwargs):
        held.append([_held(p) for p in dp.pipelines])
        return real_run(dp, *args, **kwargs)
    monkeypatch.setattr(tt_selfcheck, 'run', run)
    with tt_device_double() as dd:
        backend = create_backend('tt', _opts(cache_dir=str(tmp_path)),
                                 allow_fallback=False).backend
        try:
            stats = backend.chip_stats()
            extra = dict(backend.info.extra)
            pipes = backend._dp.pipelines
            assert held == [[_held(p) for p in pipes]]
            trace_in = pipes[0].trace_in
            got = backend.infer(pixels)
            after = backend.chip_stats()
        finally:
            backend.close()
        captures = [e for e in dd.log if e[0] == 'begin_trace_capture']
        assert len(captures) == 4            # two per chip, none for the check
        entries = post_capture(dd.log, [0])
        # chip 0 after capture: the check's frame, then the two served ones
        assert check_2cq_order(entries, trace_in) == 3
    assert len(forwards) == 1 and extra['selfcheck_reference'] == 'computed'
    assert extra['selfcheck'] == '1 of 2 chips out'
    p0, p1 = extra['selfcheck_pcc']
    assert p0 >= 0.99 > p1
    assert stats['chip0 selfcheck_pcc'] == p0 and stats['chip1 selfcheck_pcc'] == p1
    assert stats['chips_in_rotation'] == 1 and extra['chips_in_rotation'] == 1
    assert stats['chip0 in_rotation'] and not stats['chip1 in_rotation']
    assert stats['chip1 failures'] == 1 and stats['chip0 failures'] == 0
    assert stats['chip1 last_error'].startswith(
        f'selfcheck pcc {tt_selfcheck.format_pcc(p1)} on chip 1 (wormhole_n300:1;')
    assert stats['chip0 frames'] == stats['chip1 frames'] == 0    # the check serves nothing
    assert after['chip0 frames'] == 2 and after['chip1 frames'] == 0
    scores = [pcc(got[i], expected[i]) for i in range(2)]
    assert all(s >= 0.99 for s in scores), scores


def test_a_second_start_reuses_the_reference_and_other_weights_do_not(tmp_path, forwards):
    """Three N150 starts (eager, the cheapest): computed, then cached, then other weights."""
    seen = []
    with tt_device_double(num_devices=1):
        for seed in (0, 0, 1):
            opts = _opts(device='wormhole_n150', dp=1, execution_mode='eager', seed=seed,
                         cache_dir=str(tmp_path))
            backend = create_backend('tt', opts, allow_fallback=False).backend
            try:
                extra = backend.info.extra
                seen.append((extra['selfcheck'], extra['selfcheck_reference'], len(forwards)))
                assert extra['selfcheck_pcc'][0] >= 0.99
            finally:
                backend.close()
    assert seen == [('passed', 'computed', 1), ('passed', 'cached', 1),
                    ('passed', 'computed', 2)]


# ------------------------------------------------------------------ a stand-in program

def _toy(strict=False, selfcheck=True, reference=None, chips=2):
    from dpt_ros.backends import tt_backend
    from support.toy_program import reference as toy_reference, S, toy_factory
    opts = BackendOptions(weights='tiny-random', image_size=S, device='wormhole_n300',
                          dp=chips, execution_mode='trace_2cq', strict=strict,
                          selfcheck=selfcheck)
    ref = reference or (lambda frame: toy_reference(frame)[0])
    return tt_backend.create(opts, _tiny(size=S), model_factory=toy_factory(),
                             selfcheck_reference=ref)


def test_strict_refuses_one_chip_out(monkeypatch):
    _corrupt_reads(monkeypatch, {'wormhole_n300:0'})
    with tt_device_double() as dd:
        with pytest.raises(SelfCheckFailed, match=r'^selfcheck pcc [-0-9.]+ on chip 0 '
                           r'\(wormhole_n300:0; needs pcc >= 0.99\) \(strict'):
            _toy(strict=True)
        assert ('close', (0, 1)) in dd.log        # the device released
        backend = _toy(strict=False)              # not strict: chip 1 serves
        try:
            assert backend.info.extra['selfcheck'] == '1 of 2 chips out'
            assert backend._dp.in_rotation == 1
        finally:
            backend.close()


def test_no_chip_left_refuses_to_start_as_unavailable_naming_each_figure():
    with tt_device_double() as dd:
        with pytest.raises(BackendUnavailable) as info:
            _toy(reference=lambda frame: -frame[0].sum(0))    # anti-correlated
        assert ('close', (0, 1)) in dd.log
    msg = str(info.value)
    assert isinstance(info.value, SelfCheckFailed) and '\n' not in msg
    assert msg.startswith('selfcheck pcc -')
    assert 'on chip 0 (wormhole_n300:0;' in msg and 'on chip 1 (wormhole_n300:1;' in msg
    assert msg.endswith('no chip left to serve')


def test_off_runs_no_frame(monkeypatch):
    runs = []
    monkeypatch.setattr(tt_selfcheck, 'run', lambda *a, **k: runs.append(1))
    with tt_device_double():
        backend = _toy(selfcheck=False)
        try:
            assert backend.info.extra['selfcheck'] == 'off' and not runs
            assert all(p.frames_run == 0 for p in backend._dp.pipelines)
        finally:
            backend.close()


# ------------------------------------------------------------------ the mock card

@pytest.fixture(scope='module')
def harness():
    pytest.importorskip('ttnn')
    from support import tt_mock_device
    try:
        return tt_mock_device.prepare()
    except tt_mock_device.Unavailable as exc:
        if os.environ.get('DPT_TT_MOCK_REQUIRED') == '1':
            pytest.fail(f'mock-device harness required here but unavailable: {exc}')
        pytest.skip(f'mock-device: {exc}')


def _on_mock(harness, module, args, env=None):
    """Return a ChildProcess running `python -m module args` on a mock N150."""
    from support import tt_mock_device

    from dpt_ros.ros.node_process import ChildProcess
    full = harness.env('wormhole_n150')
    full.update(PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0', **(env or {}))
    return ChildProcess([sys.executable, str(tt_mock_device.HERE / 'run_allowed.py'), module,
                         *args], env=full, cwd=str(tt_mock_device.ROOT))


def test_on_the_mock_the_node_falls_back_naming_the_figure_and_strict_runner_fails(
        harness, tmp_path):
    """
    Check the self-check on a mock N150, whose readbacks are zeros (PCC 0).

    The real node (ttnn's host-side work on the mock, the real self-check) falls back to torch
    on the CPU at start-up and its diagnostics say why; the strict runner exits 1 with one
    line naming the figure.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from support.ros_harness import diag_values, Graph, write_params
    reason = 'selfcheck pcc 0.00 on chip 0 (wormhole_n150:0; needs pcc >= 0.99)'
    common = {'weights': 'tiny-random', 'image_size': SIZE, 'cache_dir': str(tmp_path)}
    params = write_params(dict(common, backend='tt', device='wormhole_n150', dp=1,
                               execution_mode='trace_2cq'), str(tmp_path / 'p.yaml'))
    graph = Graph()
    node = _on_mock(harness, 'dpt_ros.node', ['--ros-args', '--params-file', params])
    try:
        diags = graph.collect(DiagnosticArray, '/diagnostics')
        ok = graph.spin_until(lambda: any('depth pipeline' in s.name for a in diags
                                          for s in a.status), 240.0)
        assert ok, node.tail(40)
        status = next(s for a in diags for s in a.status if 'depth pipeline' in s.name)
    finally:
        node.shutdown()
        graph.close()
    kv = diag_values(status)
    assert kv['backend'] == 'torch' and kv['backend_requested'] == 'tt'
    assert kv['fallback_reason'].startswith(reason), kv['fallback_reason']
    assert reason in status.message and kv['backend_fallback_count'] == '1'
    assert any(f"instead of 'tt': {reason}" in line for line in node.lines), node.tail(40)
    out = tmp_path / 'perf.json'
    runner = _on_mock(harness, 'dpt_ros.runner',
                      ['--tt-run', '--device', 'wormhole_n150', '--weights', 'tiny-random',
                       '--image-size', str(SIZE), '--tt-execution-mode', 'eager',
                       '--dump-perf', str(out)], env={'DPT_ROS_CACHE': str(tmp_path)})
    assert runner.wait(240.0) == 1, runner.tail(40)
    said = [line for line in runner.lines if line.startswith('runner: ')]
    assert len(said) == 1 and reason in said[0], runner.tail(40)
    assert 'strict --tt-run refuses to fall back' in said[0]
    assert not any('Traceback' in line for line in runner.lines)
    assert not out.exists()
    assert pathlib.Path(tmp_path, 'selfcheck_reference').is_dir()   # one forward for both
