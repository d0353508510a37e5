"""
The TT speed estimate's arithmetic (dpt_ros/perf/tt_estimate.py) on small synthetic op lists.

Each figure is computed here by hand from the op's shapes and the module's published constants
and compared; the levers later work is judged by (fidelity, GELU mode, SDPA chunking, mask,
op count, bfloat8_b activations) must move the estimate the way the model says. A last test
runs the estimator on a real dry-run op list (the tiny config on a mock N150), where the
mock-device harness can be built.
"""
import copy
import math
import os

from dpt_ros.perf import tt_estimate as te
import pytest
from support import paths
from support.tt_op_lists import CONFIGS, matmul, op, sdpa, t, vit_like


def central():
    return te.assumptions('central')


def test_matmul_work_is_its_tile_padded_flops_at_its_fidelity():
    w = te.op_work(matmul(m=577, k=1024, n=1000), CONFIGS)
    flops = 2.0 * 608 * 1024 * 1024          # 577 and 1000 padded to tiles
    assert w['flops'] == flops
    assert w['lofi_cycles'] == flops / 4096 and w['matmul_phases'] == 2      # HiFi2
    assert w['cores'] == 40                           # the program config's 8x5 grid
    a = central()
    r = te.roofline_s(w, a)
    assert r['fpu'] == pytest.approx(flops / 4096 * (1 + a['fidelity_phase_cost']) / 40 / 1e9)
    # DRAM: the bfloat8_b weight (1088 bytes per 1024 values); L1: activation in and out.
    assert r['dram'] == pytest.approx(1024 * 1024 * 1088 / 1024 / 288e9)
    assert r['l1'] == pytest.approx((608 * 1024 + 608 * 1024) * 2 / (40 * 64 * 1e9))


def test_fidelity_scales_compute_and_unknown_fidelity_is_ttnn_default():
    def fpu(o, level='pessimistic'):
        return te.roofline_s(te.op_work(o, CONFIGS), te.assumptions(level))['fpu']
    lofi = fpu(matmul(fidelity='LoFi'))
    assert fpu(matmul(fidelity='HiFi4')) == pytest.approx(4 * lofi)   # FPU-bound: 4 phases
    # Measured matmuls gain less than the phase count (GEMM_FLOPS tech report).
    s = te.assumptions('optimistic')['fidelity_phase_cost']
    assert fpu(matmul(fidelity='HiFi4'), 'optimistic') == pytest.approx(
        (1 + 3 * s) * fpu(matmul(fidelity='LoFi'), 'optimistic'))
    plain = matmul()
    plain['settings'] = {}
    plain['fidelity'] = None
    assert fpu(plain) == pytest.approx(3 * lofi)      # ttnn's default HiFi3 (PR #40089)


def test_fused_gelu_costs_its_output_tiles_of_sfpu_accurate_or_approx():
    a = central()
    acc = te.op_work(matmul(n=4096, act='gelu'), CONFIGS)
    approx = te.op_work(matmul(n=4096, act='gelu_approx'), CONFIGS)
    out_tiles = 20 * 128
    assert acc['sfpu_tiles'] == {'gelu_accurate': out_tiles}
    assert approx['sfpu_tiles'] == {'gelu_approx': out_tiles}
    diff = te.roofline_s(acc, a)['sfpu'] - te.roofline_s(approx, a)['sfpu']
    assert diff == pytest.approx(out_tiles * (a['gelu_accurate_cycles_per_tile']
                                              - a['gelu_approx_cycles_per_tile']) / 40 / 1e9)


def test_sdpa_costs_exp_per_score_tile_mask_per_head_and_kv_per_chunk():
    w = te.op_work(sdpa(), CONFIGS)
    score_tiles = 16 * 20 * 20
    assert w['sfpu_tiles'] == {'exp_accurate': score_tiles}
    assert w['softmax_tiles'] == score_tiles
    # 16 heads x 5 q chunks = 80 units on 64 cores: two rounds, 40 cores' worth each.
    assert (w['units'], w['rounds'], w['compute_cores']) == (80, 2, 40.0)
    mask = 640 * 640 * 2
    qkvo = 4 * 16 * 640 * 64 * 2
    kv = 2 * 16 * 640 * 64 * 2
    assert w['dram'] == 16 * mask                     # read once per head
    assert w['l1'] == qkvo + 4 * kv                   # K and V again for 4 more q chunks
    assert w['flops'] == 4.0 * 16 * 640 * 640 * 64
    assert w['lofi_cycles'] == w['flops'] / 4096 and w['matmul_phases'] == 4   # HiFi4


def test_sdpa_chunking_that_fills_the_grid_in_one_round_is_faster():
    a = central()
    two_rounds = te.roofline_s(te.op_work(sdpa(chunk=128), CONFIGS), a)
    one_round = te.roofline_s(te.op_work(sdpa(chunk=160), CONFIGS), a)   # 16 x 4 = 64 units
    assert one_round['fpu'] == pytest.approx(two_rounds['fpu'] * 40 / 64)
    assert one_round['sfpu'] == pytest.approx(two_rounds['sfpu'] * 40 / 64)


def test_layernorm_fidelity_and_the_floor_and_the_efficiency():
    ln = op('LayerNormDeviceOperation', [t([1, 640, 1024])], [t([1, 640, 1024])],
            call='ttnn.layer_norm', fidelity='HiFi4', grid=[8, 5])
    a = central()
    w4 = te.op_work(ln, CONFIGS)
    ln2 = copy.deepcopy(ln)
    ln2['settings']['fidelity'] = 'HiFi2'
    w2 = te.op_work(ln2, CONFIGS)
    fpu4 = te.roofline_s(w4, a)['fpu']
    per_phase = 640 * a['layernorm_fpu_ops_per_tile'] * 8 / 40 / 1e9     # 8 cycles a tile op
    s = a['fidelity_phase_cost']
    assert fpu4 == pytest.approx(per_phase * (1 + 3 * s))
    assert te.roofline_s(w2, a)['fpu'] == pytest.approx(per_phase * (1 + s))
    # A tiny op takes the floor; a large one its roofline over the efficiency.
    tiny = te.op_work(op('ReshapeViewDeviceOperation', [t([32, 32], 'DRAM/INTERLEAVED')],
                         [t([32, 32], 'DRAM/INTERLEAVED')]), CONFIGS)
    assert te.kernel_s(tiny, a, 0.5) == a['kernel_floor_us'] * 1e-6
    big = te.op_work(matmul(m=6400), CONFIGS)
    r = te.roofline_s(big, a)
    data = a['data_movement_efficiency']
    assert te.kernel_s(big, a, 0.25) == pytest.approx(max(r['fpu'] / 0.25 + r['sfpu'],
                                                          r['dram'] / data, r['l1'] / data))
    assert te.kernel_s(big, a, 0.25) == pytest.approx(r['fpu'] / 0.25)     # compute-bound


def test_with_settings_shows_the_same_ops_under_the_demo_settings():
    rep = {'configs': dict(CONFIGS, tokens_padded=256), 'ops': [
        matmul(m=256, act='gelu'), sdpa(tokens=256),
        op('BinaryNgDeviceOperation', [t([1, 1, 256, 256], 'DRAM/INTERLEAVED')],
           [t([1, 1, 256, 256], 'DRAM/INTERLEAVED')],
           call='ttnn.transformer.scaled_dot_product_attention')]}
    demo = te.with_settings(rep, **te.VIT_DEMO_SETTINGS)
    assert len(rep['ops']) == 3 and len(demo['ops']) == 2          # mask preparation gone
    mm, at = demo['ops']
    assert mm['settings']['fidelity'] == 'LoFi' and mm['settings']['activation'] == 'gelu_approx'
    assert mm['inputs'][0] == t([1, 224, 1024], dtype='BFLOAT8_B')
    assert at['settings']['exp_approx'] is True and len(at['inputs']) == 3
    assert at['inputs'][0]['shape'] == '[1, 16, 224, 64]'
    assert rep['ops'][0]['settings']['fidelity'] == 'HiFi2'          # the input is untouched


def test_dispatch_gap_is_the_wall_time_left_over_kernels_per_demo_op():
    rows = te.dispatch_gaps(((1540.0, 1470.0, 1323.0, 'x'),))
    gap150 = (8 / 1470 - 8 / 1540) / 220
    gap300 = (8 / 1323 - 8 / 1540) / 220
    assert rows[0]['gap_n150_s'] == pytest.approx(gap150)
    assert rows[0]['gap_n300_s'] == pytest.approx(gap300)
    assert 1.0e-6 < gap150 < 1.2e-6 and 3.8e-6 < gap300 < 4.0e-6    # ~1.1 and ~3.9 us/op


def test_calibration_matches_each_published_kernel_time_exactly():
    cal = te.calibrate(vit_like())
    demo_ws = te.works(te.with_settings(vit_like(), **te.VIT_DEMO_SETTINGS))
    for row in cal['rows']:
        for level in te.LEVELS:
            a = te.assumptions(level)
            total = sum(te.kernel_s(w, a, row['eff'][level]) for w in demo_ws)
            assert total == pytest.approx(8 / row['kernel_samples_per_s'], rel=1e-6)


def test_estimate_gives_ordered_ranges_per_board_and_the_op_count():
    cal = te.calibrate(vit_like())
    rep = {'configs': CONFIGS, 'stage_starts': {'backbone': 0, 'fusion_head': 3}, 'ops': [
        matmul(index=0), matmul(n=4096, act='gelu', index=1), sdpa(), matmul(index=3),
        op('ReshapeViewDeviceOperation', [t([9216, 64], 'DRAM/INTERLEAVED', layout='ROW')],
           [t([576, 1024], 'DRAM/INTERLEAVED', layout='ROW')], 4)]}
    est = te.estimate(rep, cal)
    assert est['op_count'] == 5
    assert {k: v['ops'] for k, v in est['stages'].items()} == {'backbone': 3, 'fusion_head': 2}
    for board in te.BOARDS:
        f = est['boards'][board]['fps']
        assert 0 < f['low'] <= f['central'] <= f['high'], (board, f)
    n150 = est['boards']['n150']
    # With one published row, one N300 chip differs from an N150 only by its per-op gap.
    one = te.estimate(rep, te.calibrate(vit_like(), published=te.VIT_PUBLISHED[:1]))
    row = te.dispatch_gaps(te.VIT_PUBLISHED[:1])[0]
    for level in te.LEVELS:
        assert one['boards']['n300_chip']['ms'][level] - one['boards']['n150']['ms'][level] \
            == pytest.approx(5 * 1e3 * (row['gap_n300_s'] - row['gap_n150_s']), rel=1e-6)
    low, mid, high = te.dp_ratios()['dp2_over_n150']
    assert 1.6 < low < mid < high <= 2.0
    assert est['boards']['n300_dp2']['fps']['central'] == pytest.approx(
        n150['fps']['central'] * mid)
    stage_sum = sum(s['central'] for s in n150['stages_ms'].values())
    assert stage_sum == pytest.approx(n150['ms']['central'], rel=0.05)


def test_more_ops_and_slower_settings_lower_the_estimate():
    cal = te.calibrate(vit_like())
    base = {'configs': CONFIGS, 'ops': [matmul(index=i) for i in range(4)]}
    more = {'configs': CONFIGS, 'ops': base['ops'] + [
        op('ReshapeViewDeviceOperation', [t([64, 64], 'DRAM/INTERLEAVED')],
           [t([64, 64], 'DRAM/INTERLEAVED')], 9)] * 20}
    fps = [te.estimate(r, cal)['boards']['n300_chip']['fps']['central'] for r in (base, more)]
    assert fps[1] < fps[0]
    slow = te.with_settings(base, matmul_fidelity='HiFi4')
    assert te.estimate(slow, cal)['boards']['n150']['fps']['central'] < \
        te.estimate(base, cal)['boards']['n150']['fps']['central']


def test_estimate_on_a_real_dry_run_op_list(tmp_path):
    """Estimate the tiny config's dry-run on a mock N150: settings recorded, figures sane."""
    pytest.importorskip('ttnn')
    from support import tt_mock_device
    try:
        harness = tt_mock_device.prepare()
    except tt_mock_device.Unavailable as exc:
        if os.environ.get('DPT_TT_MOCK_REQUIRED') == '1':
            pytest.fail(f'mock-device harness required here but unavailable: {exc}')
        pytest.skip(f'mock-device dry-run: {exc}')
    rep, tail = tt_mock_device.dry_run(
        harness, tmp_path / 'tiny.json', device='wormhole_n150',
        args=['--size', '128', '--weights', 'tiny-random', '--modes', 'eager', '--strict',
              '--graph', '--frames', '1'])
    assert rep['modes']['eager']['ok'], tail
    ops = rep['ops']
    sdpas = [o for o in ops if o['name'] == 'SDPAOperation']
    assert sdpas and all(o['settings']['q_chunk'] > 0 and 'exp_approx' in o['settings']
                         for o in sdpas)
    assert {o['settings'].get('activation') for o in ops
            if o['name'] == 'MatmulDeviceOperation'} >= {'gelu', 'relu'}
    cal = te.calibrate(vit_like())
    est = te.estimate(rep, cal)
    assert est['op_count'] == len(ops)
    assert sum(s['ops'] for s in est['stages'].values()) == len(ops)
    assert set(est['stages']) >= {'backbone', 'reassembly', 'fusion_head'}
    for board in te.BOARDS:
        f = est['boards'][board]['fps']
        assert all(math.isfinite(v) and v > 0 for v in f.values())
        assert f['low'] <= f['central'] <= f['high']


def test_estimate_tt_refuses_a_dry_run_that_failed_part_way(tmp_path, monkeypatch):
    """
    Check bench/estimate_tt.py: a dry-run whose mode failed is refused, not estimated.

    A program that fails validation half way still leaves the ops it got through: estimating
    those would under-count the frame (it happened: two frames a chip at 512 clashed with L1
    in fusion.3 and estimated 39 FPS on the ops before it).
    """
    import importlib.util
    import json
    import pathlib
    import types
    root = pathlib.Path(paths.ROOT)
    monkeypatch.syspath_prepend(str(root / 'bench'))
    spec = importlib.util.spec_from_file_location('estimate_tt', root / 'bench' / 'estimate_tt.py')
    est_tt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(est_tt)

    def dry_run(harness, path, *, device, args):
        failed = args[:2] == ['--size', '512']
        rep = {'ops': [], 'modes': {'eager': {'ok': not failed, 'error': 'clash (injected)'}}}
        path.write_text(json.dumps(rep))
        return rep, 'log tail'
    fake = types.SimpleNamespace(prepare=lambda: 'harness', dry_run=dry_run)
    monkeypatch.setattr(est_tt, 'tt_mock_device', fake)
    reports = est_tt.dry_runs([384], 'wormhole_n150', tmp_path, reuse=False)
    assert set(reports) == {'vit-b', 384}
    with pytest.raises(SystemExit, match='clash'):
        est_tt.dry_runs([384, 512], 'wormhole_n150', tmp_path, reuse=False)
