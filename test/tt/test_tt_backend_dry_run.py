"""
The TT backend through ttnn's own host-side checks on a mock N150 / N300 / T3000 (dry-run).

Each run builds the backend as the node does (test/support/tt_mock_device/dry_run_process.py)
in a process where the real ttnn 0.81.1 validates every op, allocates every buffer against the
real L1 / DRAM banks, checks circular buffers against L1 buffers and creates every program; only
the kernel compiler and device execution are stood in for (support/tt_mock_device: TEST DOUBLE).
What a mock cannot show: kernel compilation, numerics (readbacks are zeros), hangs, the fit of
the trace region, speed. The numerics are test_tt_model_golden's. The WORKER-dispatch runs use
ttnn's own core descriptors (8x7 per N300 chip), not the harness's widened one.

Needs binutils for RISC-V and a C/C++ compiler; scripts/test.sh installs them where it runs
as root and sets DPT_TT_MOCK_REQUIRED=1, so CI fails rather than skips when the harness
cannot be built. Elsewhere the tests skip, naming the command to run.
"""
import json
import os
import pathlib

import pytest

pytest.importorskip('ttnn')

from support import paths, tt_mock_device  # noqa: E402

ROOT = pathlib.Path(paths.ROOT)
OPS_JSON = ROOT / 'generated' / 'tt_dry_run_ops.json'
FRAMES = 3
STRICT = ['--strict']
WORKER = STRICT + ['--dispatch', 'worker']
# name -> (device, dp, size, weights, modes, extra args)
RUNS = {
    'n150-384': ('wormhole_n150', 1, 384, 'random', 'eager', STRICT + ['--graph']),
    'n150-512': ('wormhole_n150', 1, 512, 'random', 'eager', STRICT + ['--graph']),
    'n300-384': ('wormhole_n300', 2, 384, 'random', 'eager,trace,trace_2cq', STRICT),
    'n300-512': ('wormhole_n300', 2, 512, 'random', 'eager,trace_2cq', STRICT),
    'n300-defaults': ('wormhole_n300', 2, 384, 'random', 'eager,trace_2cq',
                      ['--force-defaults']),
    'n300-defaults-512': ('wormhole_n300', 2, 512, 'random', 'eager', ['--force-defaults']),
    # The fast precision profile (tt/configs.py): its op list, and both chips at 512.
    'n150-384-fast': ('wormhole_n150', 1, 384, 'random', 'eager',
                      STRICT + ['--graph', '--precision', 'fast']),
    'n300-512-fast': ('wormhole_n300', 2, 512, 'random', 'eager,trace_2cq',
                      STRICT + ['--precision', 'fast']),
    # Throughput mode: two frames per chip (chip_batch 2).
    'n300-384-b2': ('wormhole_n300', 2, 384, 'random', 'eager,trace_2cq',
                    STRICT + ['--batch', '2']),
    'n150-512-b2': ('wormhole_n150', 1, 512, 'random', 'eager', STRICT + ['--batch', '2']),
    'n150-tiny': ('wormhole_n150', 1, 384, 'tiny-random', 'eager,trace_2cq', STRICT),
    # Eight chips (test/support/data/wormhole_t3000_cluster.yaml): 35-60 s on 2 cores.
    't3000-384': ('wormhole_t3000', 8, 384, 'random', 'eager,trace_2cq', STRICT),
    # WORKER dispatch on ttnn's own (unpatched) N300 core descriptor: 8x7 per chip. Two chips
    # with 2 CQs each have too few dispatch cores (refused before opening), so eager + trace.
    'n300-worker-384': ('wormhole_n300', 2, 384, 'random', 'eager,trace', WORKER),
    'n300-worker-512': ('wormhole_n300', 2, 512, 'random', 'eager,trace', WORKER),
}
STRICT_RUNS = [name for name, run in RUNS.items() if '--strict' in run[5]]
# The ops whose tuned config has a default to fall back to (FallbackCounter names).
TUNED_ENCODER_OPS = ('encoder.ln1', 'encoder.qkv', 'encoder.sdpa', 'encoder.out', 'encoder.ln2',
                     'encoder.ff1', 'encoder.ff2')
TUNED_HEAD_OPS = ('reassemble.readout', 'fusion.proj')
# Device programs per frame (N150, graph capture of one forward): 613 at 384 and 633 at 512
# before issue 22's program-count work; its target is <= 400 at 384.
MAX_PROGRAMS = {384: 400, 512: 420}


@pytest.fixture(scope='session')
def harness():
    try:
        return tt_mock_device.prepare()
    except tt_mock_device.Unavailable as exc:
        if os.environ.get('DPT_TT_MOCK_REQUIRED') == '1':
            pytest.fail(f'mock-device harness required here but unavailable: {exc}')
        pytest.skip(f'mock-device dry-run: {exc}')


_REPORTS: dict = {}


@pytest.fixture
def report(harness, tmp_path_factory, request):
    """(run name, dry-run report, log tail) of RUNS[request.param]; each run once a session."""
    name = request.param
    if name not in _REPORTS:
        device, dp, size, weights, modes, extra = RUNS[name]
        out = tmp_path_factory.mktemp('dry_run') / f'{name}.json'
        args = ['--dp', str(dp), '--size', str(size), '--weights', weights, '--modes', modes,
                '--frames', str(FRAMES), *extra]
        # WORKER runs get ttnn's own core descriptors, without the harness's widened grid.
        widened = 'worker' not in extra
        _REPORTS[name] = (name, *tt_mock_device.dry_run(harness, out, device=device, args=args,
                                                        widened=widened))
    return _REPORTS[name]


def _modes(name):
    return RUNS[name][4].split(',')


def _per_call(name, rep):
    """Frames per inference call of a run: dp x its frames per chip (--batch)."""
    extra = RUNS[name][5]
    return rep['dp'] * (int(extra[extra.index('--batch') + 1]) if '--batch' in extra else 1)


@pytest.mark.parametrize('report', STRICT_RUNS, indirect=True)
def test_strict_run_passes_every_op_without_fallback(report):
    """
    Check that a strict run builds, runs and closes every mode without any fallback.

    Strict: any tuned config that fails validation / allocation raises. Every mode builds,
    runs FRAMES inferences per chip and closes; no fallback of any kind; every chip runs the
    mode asked for (a host stage would force eager).
    """
    name, rep, tail = report
    assert rep['op_failures'] == {}, rep['failure_messages']
    for mode in _modes(name):
        result = rep['modes'][mode]
        assert result['ok'], f'{mode}: {result.get("error")}\n{tail}'
        assert result['closed']
        assert result['effective_mode'] == mode
        assert result['frames'] == FRAMES * _per_call(name, rep)
        assert result['output_shapes'] == \
            [str([_per_call(name, rep), rep['size'], rep['size']])] * FRAMES
        assert len(result['device_ids']) == rep['dp']
        counts = result['fallback_counts']
        assert counts['program_config_fallback_total'] == 0, result['fallback_reasons']
        assert counts['host_fallback_count'] == 0
        assert result['num_command_queues'] == (2 if mode == 'trace_2cq' else 1)


@pytest.mark.parametrize('report', ['n300-384'], indirect=True)
def test_traces_captured_replayed_and_released_on_both_chips(report):
    """
    Check trace and trace_2cq through the real ttnn trace runtime, on both chips.

    The shim does no replay on a mock. Per chip two traces are captured (input move, model),
    replayed per frame, then released; trace_2cq's events are recorded and waited on.
    """
    _, rep, _ = report
    calls = rep['op_calls']
    chips, traced_modes = rep['dp'], 2
    assert calls['ttnn.begin_trace_capture'] == calls['ttnn.end_trace_capture'] \
        == 2 * chips * traced_modes
    assert calls['ttnn.execute_trace'] == 2 * chips * FRAMES * traced_modes
    assert calls['ttnn.release_trace'] == 2 * chips * traced_modes
    # trace_2cq only: per frame first-op-done + last-op-done + write-done, and at compile.
    assert calls['ttnn.record_event'] >= 3 * chips * FRAMES
    assert calls['ttnn.wait_for_event'] >= 3 * chips * FRAMES


@pytest.mark.parametrize('report', ['n300-384', 't3000-384', 'n300-worker-384',
                                    'n300-worker-512'], indirect=True)
def test_every_op_passes_on_every_chip(report):
    """
    Check that each chip of a data-parallel run ran the same ops, none of them failing.

    Per (sub)mesh: the model's device ops (linear, layer_norm, SDPA, conv2d) are called as
    often on every chip, and no op failed on any chip.
    """
    name, rep, _ = report
    per_chip = rep['op_calls_per_chip']
    model_ops = ('ttnn.linear', 'ttnn.layer_norm', 'ttnn.conv2d',
                 'ttnn.transformer.scaled_dot_product_attention')
    chips = {c: n for c, n in per_chip.items() if n.get('ttnn.linear')}
    assert len(chips) == rep['dp'], sorted(per_chip)
    counts = {op: {n.get(op, 0) for n in chips.values()} for op in model_ops}
    assert all(len(v) == 1 and v != {0} for v in counts.values()), counts
    assert rep['op_failures_per_chip'] == {} and rep['op_failures'] == {}
    for mode in _modes(name):
        assert rep['modes'][mode]['frames'] == FRAMES * rep['dp']


@pytest.mark.parametrize('report', ['n300-worker-384', 'n300-worker-512', 'n300-384'],
                         indirect=True)
def test_each_chip_reports_the_dispatch_and_grid_it_opened_with(report):
    """
    Check WORKER dispatch on the unpatched N300 descriptor: 8x7 per chip, configs for 8x7.

    ttnn's own core descriptor (no widened grid): with WORKER dispatch each N300 chip computes
    on 8x7, the configs are built for it and every op passes (the strict runs above); the
    default opens ethernet dispatch, 8x8.
    """
    name, rep, _ = report
    worker = 'worker' in RUNS[name][5]
    kind, grid = ('worker', [8, 7]) if worker else ('eth', [8, 8])
    for mode in _modes(name):
        result = rep['modes'][mode]
        assert result['ok'], result.get('error')
        assert result['dispatch_core'] == kind
        assert result['chip_grids'] == ['x'.join(map(str, grid))] * rep['dp']
        assert result['grid'] == grid
        traced = mode != 'eager'
        assert [b is not None for b in result['trace_bytes']] == [traced] * rep['dp']


@pytest.mark.parametrize('report', ['n300-defaults', 'n300-defaults-512'], indirect=True)
def test_every_default_config_passes_and_each_fallback_is_counted(report):
    """
    Check that with every tuned config refused, each op falls back once and is counted.

    Each op falls back once to its default config, counted per op, and the defaults too pass
    ttnn's checks (eager and trace_2cq, both chips).
    """
    name, rep, tail = report
    from dpt_ros.inference.hf_model import make_config
    from dpt_ros.tt.configs import build_configs, conv_plan
    dims = build_configs(make_config('dpt-large', 384), 'wormhole_n300', 384).dims
    expected = set(TUNED_ENCODER_OPS) | set(TUNED_HEAD_OPS) | {f'conv.{c[0]}'
                                                               for c in conv_plan(dims)}
    assert rep['op_failures'] == {}, rep['failure_messages']
    for mode in _modes(name):
        result = rep['modes'][mode]
        assert result['ok'], f'{mode}: {result.get("error")}\n{tail}'
        assert result['effective_mode'] == mode
        counts = result['fallback_counts']
        per_op = {k.split('.', 1)[1]: v for k, v in counts.items()
                  if k.startswith('program_config_fallback.')}
        assert per_op == dict.fromkeys(expected, 1)
        assert counts['program_config_fallback_total'] == len(expected)
        assert counts['host_fallback_count'] == 0
        assert all('refused by the dry-run' in r for r in result['fallback_reasons'])


@pytest.mark.parametrize('report', ['n150-384', 'n150-512', 'n150-384-fast'], indirect=True)
def test_op_list_with_l1_headroom_is_written(report):
    """
    Write the device-op list of a compile run and check that it leaves L1 headroom.

    The list (graph capture, program cache off so every op's circular buffers are seen) goes to
    generated/tt_dry_run_ops.json; no op's circular buffers reach into live L1 buffers. (ttnn's
    graph records the circular buffers of the convs, halos and eltwise ops, not the dataflow
    buffers of matmuls, SDPA and LayerNorm: for those ttnn's own clash check at program
    creation is the evidence.)
    """
    from support.tt_mock_device import oplist
    _, rep, _ = report
    ops = rep['ops']
    names = {op['name'] for op in ops}
    for needed in ('MatmulDeviceOperation', 'LayerNormDeviceOperation', 'SDPAOperation',
                   'Conv2dDeviceOperation', 'HaloDeviceOperation'):
        assert needed in names
    assert all(op['cores'] > 0 for op in ops if op['name'] == 'Conv2dDeviceOperation')
    fast = rep['configs']['precision'] == 'fast'
    fidelities = {op['fidelity'] for op in ops if op['call'] == 'ttnn.linear'}
    assert fidelities == ({'LoFi', 'HiFi2'} if fast else {'HiFi2'})
    _check_encoder_and_attention(rep, fast)
    # What each device op really ran with (ttnn's default where none was passed): never
    # HiFi4 with fp32 accumulation (tt-metal #38306).
    computes = [(op['name'], op['compute']) for op in ops if op['compute'] is not None]
    names = {name for name, _ in computes}
    assert {'MatmulDeviceOperation', 'LayerNormDeviceOperation', 'SDPAOperation',
            'Conv2dDeviceOperation'} <= names, names
    bad = {name for name, c in computes if c['fidelity'] == 'HiFi4' and c['fp32_dest_acc']}
    assert not bad, bad
    measured = [op for op in ops if op['l1_headroom_bytes'] is not None]
    convs = [op for op in ops if op['name'] in ('Conv2dDeviceOperation', 'HaloDeviceOperation')]
    assert convs and all(op['l1_headroom_bytes'] is not None for op in convs)
    assert min(op['l1_headroom_bytes'] for op in measured) >= 0
    summary = oplist.summary(ops)
    OPS_JSON.parent.mkdir(exist_ok=True)
    data = json.loads(OPS_JSON.read_text()) if OPS_JSON.exists() else {}
    key = f'{rep["device"]}-{rep["size"]}' + ('-fast' if fast else '')
    data[key] = {'summary': summary, 'ops': ops}
    OPS_JSON.write_text(json.dumps(data, indent=1))
    assert summary['tightest']['l1_headroom_bytes'] == min(
        op['l1_headroom_bytes'] for op in measured)


def _check_encoder_and_attention(rep: dict, fast: bool) -> None:
    """
    Check the encoder's ops as the device ran them: profile settings, attention in one op.

    Tokens fill the 8x8 grid (every encoder linear on 64 cores); each SDPA call is one device
    op (the windowed mask is built in the op: no [S, S] mask rescaled per call; heads written
    side by side: no concatenate_heads op) whose units fill whole rounds of the grid; the
    precision profile's settings reach the ops (fast: LoFi linears, bfloat8_b out of QKV and
    FF1, approximate GELU and exp; accurate: bf16, accurate GELU and exp).
    """
    ops, cfg = rep['ops'], rep['configs']
    assert cfg['encoder_grid'] == [8, 8] and cfg['tokens_padded'] % 32 == 0
    names = {op['name'] for op in ops}
    assert 'NLPConcatHeadsDeviceOperation' not in names
    sdpa_calls = [op for op in ops if op['call'].endswith('scaled_dot_product_attention')]
    assert sdpa_calls and all(op['name'] == 'SDPAOperation' for op in sdpa_calls), \
        {op['name'] for op in sdpa_calls}
    for op in sdpa_calls:
        s = op['settings']
        q = op['inputs'][0]['shape'].strip('[]').split(', ')
        units = int(q[0]) * int(q[1]) * (int(q[2]) // s['q_chunk'])
        assert units % 64 == 0, (units, s)                      # whole rounds of 8x8
        assert s['exp_approx'] is fast
    # The encoder's linears: on the 8x8 grid over every padded token (the readout's matmul
    # runs over the patch tokens only).
    linears = [op for op in ops if op['name'] == 'MatmulDeviceOperation'
               and (op['settings'] or {}).get('grid') == [8, 8]
               and op['inputs'][0]['shape'].strip('[]').split(', ')[-2] ==
               str(cfg['tokens_padded'])]
    assert len(linears) == 4 * 24                   # QKV, out, FF1, FF2 of 24 ViT-L layers
    wide = [op for op in linears if op['outputs'][0]['shape'].endswith('3072]')
            or op['outputs'][0]['shape'].endswith('4096]')]      # QKV and FF1
    assert {op['outputs'][0]['dtype'] for op in wide} == \
        {'BFLOAT8_B' if fast else 'BFLOAT16'}
    assert {op['settings']['fidelity'] for op in linears} == {'LoFi' if fast else 'HiFi2'}
    gelu = {op['settings'].get('activation') for op in linears} - {None}
    assert gelu == {'gelu_approx' if fast else 'gelu'}


def test_a_mocked_cluster_is_refused_unless_a_test_allows_it(monkeypatch):
    """
    Check that users never reach a mock.

    With TT_METAL_MOCK_CLUSTER_DESC_PATH set, open_devices refuses before touching ttnn (the
    dry-runs above opt in with allow_mock_cluster()).
    """
    from dpt_ros.errors import BackendUnavailable
    from dpt_ros.tt import device as tt_device
    monkeypatch.setenv('TT_METAL_MOCK_CLUSTER_DESC_PATH',
                       str(tt_mock_device.CLUSTERS['wormhole_n300']))
    assert not tt_device._mock_cluster_allowed
    with pytest.raises(BackendUnavailable, match='the cluster is mocked'):
        tt_device.open_devices('wormhole_n300', 2, execution_mode='eager')
    ok, reason = tt_device.detect()
    assert not ok and 'mocks the cluster' in reason


@pytest.mark.parametrize('report', ['n150-384', 'n150-512'], indirect=True)
def test_device_programs_per_frame(report):
    """
    Check the device programs of one forward against the budget, and no layout round trips.

    After the backbone (readout, depth-to-space, fusion upsamples, head) the maps stay in
    TILE layout: at most one layout conversion, the depth output's own.
    """
    _, rep, _ = report
    ops = rep['ops']
    assert len(ops) <= MAX_PROGRAMS[rep['size']], len(ops)
    start, index, layout = rep['stage_starts']['reassembly'], 0, []
    for op in ops:
        index = op['python_index'] if op['python_index'] is not None else index
        if index >= start and ('ilize' in op['name'] or op['call'] == 'ttnn.to_layout'
                               or op['name'] == 'PermuteDeviceOperation'):
            layout.append(op['name'])
    assert len(layout) <= 1, layout
