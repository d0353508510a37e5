"""
TT DPT model vs the HF reference, executed on the device TEST DOUBLE (ttnn goldens on CPU).

The code path is the perf path: the same build_configs() configs (sharded program configs,
bfloat8_b weights, SDPA with the key mask, exact align_corners upsample), strict fallbacks
(any program-config or host fallback raises). Per stage, each TT stage is fed the HF
reference input of that stage, so a failure points at one stage. Then the whole model, tiny
and full DPT-Large (random weights, fixed seed), and a trace captured once and replayed on
different inputs.
"""
import logging

from dpt_ros.tt.configs import build_configs, conv_plan, MATH_FIDELITIES
from dpt_ros.tt.device import TRACE_REGION_SIZE
from dpt_ros.tt.fallbacks import FallbackCounter, FallbackError
from dpt_ros.tt.model import build_tt_model, TtDPT
from dpt_ros.tt.ops import TtConv2d
from dpt_ros.tt.weights import prepare_weights
import numpy as np
import pytest
from support.doubles.tt_device_double import (_programs, resolved_compute,
                                              TRACE_BYTES_PER_PROGRAM, tt_device_double)
from support.tt_reference import (pcc, pixels, reference_model, run_model, spatial_from_tt,
                                  spatial_to_tt, tokens_from_tt, tokens_to_tt)
import torch

ttnn = pytest.importorskip('ttnn')

log = logging.getLogger(__name__)
MIN_PCC = 0.99


@pytest.fixture(scope='module')
def double():
    with tt_device_double() as d:
        yield d


@pytest.fixture(scope='module')
def device(double):
    dev = ttnn.open_mesh_device(ttnn.MeshShape(1, 1), l1_small_size=24576,
                                trace_region_size=8 << 20, num_command_queues=2)
    yield dev
    ttnn.close_mesh_device(dev)


@pytest.fixture(scope='module')
def tiny():
    return reference_model('tiny', seed=0)


@pytest.fixture(scope='module')
def tiny_prepared(tiny):
    cfg = build_configs(tiny.config, 'wormhole_n300', 384)
    return cfg, prepare_weights(tiny.state_dict(), cfg, use_cache=False)


@pytest.fixture(scope='module')
def tiny_tt(tiny, tiny_prepared, device):
    cfg, prepared = tiny_prepared
    return TtDPT(prepared.params, tiny.config, device, cfg, FallbackCounter(strict=True))


@pytest.fixture(scope='module')
def tiny_ref(tiny):
    x = pixels(1, 384, seed=1)
    with torch.no_grad():
        out = tiny(pixel_values=x, output_hidden_states=True)
        emb = tiny.dpt.embeddings(x).last_hidden_states
        hidden = [out.hidden_states[1:][i] for i in tiny.config.backbone_out_indices]
        feats = tiny.neck.reassemble_stage(hidden, None, None)
        feats = [conv(f) for conv, f in zip(tiny.neck.convs, feats)]
        fused = tiny.neck.fusion_stage(feats)[-1]
    return {'x': x, 'depth': out.predicted_depth, 'emb': emb, 'hidden': hidden, 'feats': feats,
            'fused': fused}


# ---- per stage -----------------------------------------------------------------------------

def test_embeddings_stage(tiny_tt, tiny_ref, device):
    host = tiny_tt.preprocess_host(tiny_ref['x'].numpy())
    assert tuple(host.shape) == tiny_tt.input_shape and host.dtype == ttnn.bfloat16
    out = tiny_tt.embeddings.forward(ttnn.to_device(host, device))
    cfg = tiny_tt.cfg
    assert list(out.shape) == [1, cfg.tokens_padded, cfg.dims.hidden]
    assert out.memory_config() == cfg.memory['tokens']
    got = tokens_from_tt(out, cfg)
    assert pcc(got, tiny_ref['emb']) > 0.999
    assert torch.all(ttnn.to_torch(out).float()[:, cfg.dims.tokens:] == 0)   # padding rows


def test_encoder_stage(tiny_tt, tiny_ref, device):
    cfg = tiny_tt.cfg
    taps = tiny_tt.encoder.forward(tokens_to_tt(tiny_ref['emb'], cfg, device))
    assert len(taps) == len(cfg.dims.out_indices)
    for i, (tap, ref) in enumerate(zip(taps, tiny_ref['hidden'])):
        value = pcc(tokens_from_tt(tap, cfg), ref)
        log.info('encoder tap %d PCC %.5f', i, value)
        assert value > 0.995, i


def test_reassemble_stage(tiny_tt, tiny_ref, device):
    cfg = tiny_tt.cfg
    taps = [tokens_to_tt(h, cfg, device) for h in tiny_ref['hidden']]
    feats = tiny_tt.reassembly(taps)
    for i, (sp, ref) in enumerate(zip(feats, tiny_ref['feats'])):
        got = spatial_from_tt(sp)
        assert got.shape == ref.shape, i
        assert pcc(got, ref) > 0.995, i


def test_fusion_stage(tiny_tt, tiny_ref, device):
    feats = [spatial_to_tt(f, device) for f in tiny_ref['feats']]
    got = spatial_from_tt(tiny_tt.fusion.forward(feats))
    assert got.shape == tiny_ref['fused'].shape
    assert pcc(got, tiny_ref['fused']) > 0.995


def test_head_stage(tiny, tiny_tt, tiny_ref, device):
    out = tiny_tt.head.forward(spatial_to_tt(tiny_ref['fused'], device))
    got = torch.from_numpy(tiny_tt.postprocess_host(out))
    with torch.no_grad():
        ref = tiny.head([tiny_ref['fused']])
    assert got.shape == ref.shape
    assert pcc(got, ref) > 0.995
    assert got.min() >= 0                          # final ReLU


# ---- whole model ---------------------------------------------------------------------------

def test_full_tiny_model_pcc(tiny_tt, tiny_ref, device, double):
    got = run_model(tiny_tt, tiny_ref['x'], device)
    value = pcc(got, tiny_ref['depth'])
    log.info('tiny DPT 384 full-model PCC %.5f', value)
    assert value >= MIN_PCC
    assert tiny_tt.fb.snapshot()['program_config_fallback_total'] == 0
    # Every stage really ran as device ops (no host stage).
    assert not tiny_tt.has_host_stages
    for op in ('transformer.scaled_dot_product_attention', 'conv2d', 'layer_norm', 'matmul'):
        assert double.op_counts[op] > 0, op


def test_tiny_model_at_512_interpolates_position_embeddings(tiny, device):
    """
    Check the tiny model at 512 px, where both models resize the position table.

    The HF model is configured for 384; at 512 both resize the position table (HF per
    frame, TT once at weight preparation).
    """
    model = build_tt_model(tiny, device, image_size=512, use_cache=False,
                           fallbacks=FallbackCounter(strict=True))
    assert model.cfg.tokens_padded == 1280          # 1025 tokens: 40 tiles over 8 rows
    x = pixels(1, 512, seed=2)
    with torch.no_grad():
        ref = tiny(pixel_values=x).predicted_depth
    got = run_model(model, x, device)
    assert got.shape == ref.shape == (1, 512, 512)
    value = pcc(got, ref)
    log.info('tiny DPT 512 full-model PCC %.5f', value)
    assert value >= MIN_PCC


def test_trace_capture_once_replay_with_new_inputs(tiny, tiny_tt, device):
    """The forward is traceable (no host work inside) and the trace re-reads the input."""
    model = tiny_tt
    first = model.preprocess_host(pixels(1, 384, seed=10).numpy())
    dev_in = ttnn.allocate_tensor_on_device(first.shape, first.dtype, first.layout, device,
                                            model.input_memory_config)
    ttnn.copy_host_to_device_tensor(first, dev_in, cq_id=0)
    model.forward(dev_in)                                  # compile / weight-prep run
    tid = ttnn.begin_trace_capture(device, cq_id=0)
    out = model.forward(dev_in)
    ttnn.end_trace_capture(device, tid, cq_id=0)
    try:
        for seed in (11, 12):
            x = pixels(1, 384, seed=seed)
            with torch.no_grad():
                ref = tiny(pixel_values=x).predicted_depth
            ttnn.copy_host_to_device_tensor(model.preprocess_host(x.numpy()), dev_in, cq_id=0)
            ttnn.execute_trace(device, tid, cq_id=0, blocking=False)
            got = torch.from_numpy(model.postprocess_host(ttnn.from_device(out)))
            assert pcc(got, ref) >= MIN_PCC, seed
    finally:
        ttnn.release_trace(device, tid)


def test_uint8_pixels_in_with_the_normalisation_folded_into_the_weights(tiny, tiny_tt, device):
    """
    Check the model on the node's input: a camera image's resized uint8 pixels.

    The model (normalisation in its patch embedding) matches HF fed the processor's
    normalised tensor, and gives the same output as when it is given that tensor itself.
    """
    from skimage import data

    from dpt_ros.inference.preprocess import normalize, resize_pixels
    u8 = resize_pixels(np.ascontiguousarray(data.coffee()), 384)[None]
    x = torch.from_numpy(normalize(u8))
    with torch.no_grad():
        ref = tiny(pixel_values=x).predicted_depth
    host = tiny_tt.preprocess_host(u8)
    assert ttnn.to_torch(host).float().abs().max() == 127.5          # pixel - centre
    got = torch.from_numpy(tiny_tt.postprocess_host(tiny_tt.forward(ttnn.to_device(host,
                                                                                   device))))
    value = pcc(got, ref)
    log.info('tiny DPT 384 uint8-pixel input PCC %.5f', value)
    assert value >= MIN_PCC
    torch.testing.assert_close(got, run_model(tiny_tt, x, device), rtol=0, atol=0)


def test_preprocess_rejects_wrong_shape(tiny_tt):
    with pytest.raises(ValueError, match='expected pixel batch'):
        tiny_tt.preprocess_host(np.zeros((1, 3, 256, 256), np.float32))
    with pytest.raises(ValueError, match='expected pixel batch'):      # pixels must be uint8
        tiny_tt.preprocess_host(np.zeros((1, 384, 384, 3), np.float32))


# ---- fallbacks -----------------------------------------------------------------------------

def _fail_when(monkeypatch, attr, predicate, message):
    real = getattr(ttnn, attr)

    def flaky(*args, **kwargs):
        if predicate(args, kwargs):
            raise RuntimeError(message)
        return real(*args, **kwargs)
    monkeypatch.setattr(ttnn, attr, flaky)


def test_program_config_fallback_is_counted_or_raises_in_strict(tiny, tiny_prepared, device,
                                                                tiny_ref, monkeypatch):
    cfg, prepared = tiny_prepared
    _fail_when(monkeypatch, 'layer_norm', lambda a, k: k.get('program_config') is not None,
               'Statically allocated circular buffers clash with L1 buffers (injected)')
    strict = TtDPT(prepared.params, tiny.config, device, cfg, FallbackCounter(strict=True))
    with pytest.raises(FallbackError, match='encoder.ln1'):
        run_model(strict, tiny_ref['x'], device)
    fb = FallbackCounter(strict=False)
    model = TtDPT(prepared.params, tiny.config, device, cfg, fb)
    got = run_model(model, tiny_ref['x'], device)
    snap = fb.snapshot()
    # Counted once per op (ln1, ln2), not once per layer or per frame.
    assert snap['program_config_fallback_total'] == 2
    assert snap['program_config_fallback.encoder.ln1'] == 1
    assert any('injected' in r for r in snap['reasons'])
    run_model(model, tiny_ref['x'], device)
    assert fb.snapshot()['program_config_fallback_total'] == 2
    assert pcc(got, tiny_ref['depth']) >= MIN_PCC        # the default config is still right


def test_host_fallback_is_counted_or_raises_in_strict(tiny, tiny_prepared, device, tiny_ref,
                                                      monkeypatch):
    cfg, prepared = tiny_prepared

    def interpolation(a, k):    # the x2 upsample's matmuls: in0 2 or 4 times as tall as wide
        return a[0].shape[-2] in (2 * a[0].shape[-1], 4 * a[0].shape[-1])
    _fail_when(monkeypatch, 'matmul', interpolation, 'matmul kernel failed (injected)')
    strict = TtDPT(prepared.params, tiny.config, device, cfg, FallbackCounter(strict=True))
    with pytest.raises(FallbackError, match='upsample_host_fallback_count'):
        run_model(strict, tiny_ref['x'], device)
    fb = FallbackCounter(strict=False)
    model = TtDPT(prepared.params, tiny.config, device, cfg, fb)
    got = run_model(model, tiny_ref['x'], device)
    snap = fb.snapshot()
    assert snap['upsample_host_fallback_count'] == 1 and snap['host_fallback_count'] == 1
    assert model.has_host_stages
    assert pcc(got, tiny_ref['depth']) >= MIN_PCC


# ---- full DPT-Large ------------------------------------------------------------------------

@pytest.fixture(scope='module')
def dpt_large():
    """Build the seeded random DPT-Large (343M parameters) once for every size."""
    return reference_model('dpt-large', seed=0)


@pytest.mark.slow
@pytest.mark.parametrize('size', [384, 512])
def test_full_dpt_large_random_weights_pcc_on_both_chips(double, dpt_large, size,
                                                         tmp_path_factory):
    """
    Check full DPT-Large on both chips of an N300: PCC >= 0.99 per frame vs HF.

    DPT-Large config (343M parameters), random weights seed 0, bfloat8_b weights, strict,
    the perf path's configs: weights prepared once, one TtDPT per chip of an N300 (1x2 mesh
    split into submeshes), each chip a different frame; PCC >= 0.99 per frame vs HF.
    """
    model = dpt_large
    x = torch.cat([pixels(1, size, seed=5), pixels(1, size, seed=6)])
    with torch.no_grad():
        ref = model(pixel_values=x).predicted_depth
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 2), l1_small_size=24576,
                                 trace_region_size=8 << 20, num_command_queues=2)
    try:
        chips = list(mesh.create_submeshes(ttnn.MeshShape(1, 1)))
        cfg = build_configs(model.config, 'wormhole_n300', size, grid=(8, 8))
        prepared = prepare_weights(model.state_dict(), cfg, weights_id='random-dpt-large-seed0',
                                   cache_dir=str(tmp_path_factory.mktemp('tt_cache')))
        for i, chip in enumerate(chips):
            tt = build_tt_model(model, chip, image_size=size, prepared=prepared,
                                fallbacks=FallbackCounter(strict=True))
            assert tt.cfg.weight_dtype_name == 'bfloat8_b'
            start = len(double.compute_calls)
            with _DevicePrograms(double) as programs:
                got = run_model(tt, x[i:i + 1], chip)
            value = pcc(got, ref[i:i + 1])
            log.info('DPT-Large %d random-weights full-model PCC chip %d: %.5f', size, i, value)
            assert value >= MIN_PCC, (size, i)
            _check_compute_configs(double.compute_calls[start:], 'HiFi2')
            # The trace region at ~8 KB per device program (the double's estimate).
            trace = programs[0] * TRACE_BYTES_PER_PROGRAM
            log.info('DPT-Large %d: %d device programs, ~%.1f MB of trace', size, programs[0],
                     trace / 1e6)
            assert trace * 4 < TRACE_REGION_SIZE
    finally:
        ttnn.close_mesh_device(mesh)


def test_two_frames_per_chip_batch(tiny, device):
    """Per-chip batch 2 (configs, kron'd upsample matrices, conv batch) stays exact per frame."""
    model = build_tt_model(tiny, device, batch=2, use_cache=False,
                           fallbacks=FallbackCounter(strict=True))
    x = pixels(2, 384, seed=3)
    with torch.no_grad():
        ref = tiny(pixel_values=x).predicted_depth
    got = run_model(model, x, device)
    assert got.shape == (2, 384, 384)
    for i in range(2):
        assert pcc(got[i], ref[i]) >= MIN_PCC, i
    assert pcc(got[0], got[1]) < 0.99           # two different frames, not one repeated


def test_fallback_counter_keys_and_validation():
    fb = FallbackCounter()
    snap = fb.snapshot()
    for key in ('program_config_fallback_total', 'host_fallback_count',
                'vit_backbone_fallback_count', 'reassembly_readout_fallback_count',
                'upsample_host_fallback_count'):
        assert snap[key] == 0, key
    with pytest.raises(ValueError):
        fb.host_fallback('no_such_stage', 'x')
    assert fb.run_with_config('op', lambda: 1, lambda: 2) == 1
    assert not fb.uses_default('op')

    def boom():
        raise TypeError('bad kwarg')
    assert fb.run_with_config('op', boom, lambda: 2) == 2
    assert fb.uses_default('op') and fb.snapshot()['program_config_fallback_total'] == 1


def test_fallback_reason_is_the_tt_fatal_info_line():
    """Check a TT_FATAL's reason is its 'info' line, not 'TT_THROW @ file:line'."""
    fb = FallbackCounter()

    def clash():
        raise RuntimeError('TT_THROW @ /project/tt_metal/impl/program/program.cpp:2624: '
                           'tt::exception\ninfo:\nStatically allocated circular buffers '
                           'clash with L1 buffers\nbacktrace:\n --- frame')
    fb.run_with_config('conv.x', clash, lambda: 0)
    (reason,) = fb.snapshot()['reasons']
    assert reason == ('conv.x: RuntimeError: Statically allocated circular buffers clash '
                      'with L1 buffers')


# ---- the N300 hazards (issue 21) ------------------------------------------------------------

def _check_compute_configs(calls, fidelity):
    """
    Check compute configs as device ops received them (ttnn's default where none was given).

    No HiFi4 with fp32 accumulation (tt-metal #38306), LayerNorm never on ttnn's default
    (which is that pair), the upsample matmuls (the model's only ttnn.matmul) at HiFi2 or
    better whatever `math_fidelity` says, linears and convs at `math_fidelity`.
    """
    order = list(MATH_FIDELITIES)
    ops = {op for op, _ in calls}
    assert {'linear', 'matmul', 'layer_norm', 'transformer.scaled_dot_product_attention',
            'conv2d'} <= ops, ops
    upsample_min = max(fidelity, 'HiFi2', key=order.index)
    bad = set()
    for op, config in calls:
        fid, fp32 = resolved_compute(op, config)
        if fid == 'HiFi4' and fp32:
            bad.add(f'{op}: HiFi4 with fp32 accumulation')
        if config is None and op in ('layer_norm', 'linear', 'conv2d'):
            bad.add(f'{op}: left to the ttnn default')
        if op == 'matmul' and order.index(fid) < order.index(upsample_min):
            bad.add(f'upsample matmul at {fid}')
        if op in ('linear', 'conv2d') and fid != fidelity:
            bad.add(f'{op} at {fid}, not {fidelity}')
    assert not bad, sorted(bad)


def _force_defaults(monkeypatch):
    """Every tuned program config is refused: each op runs its counted default."""
    real = FallbackCounter.run_with_config

    def forced(self, op_name, tuned_call, default_call):
        def refused():
            raise RuntimeError('tuned config refused (forced)')
        return real(self, op_name, refused, default_call)
    monkeypatch.setattr(FallbackCounter, 'run_with_config', forced)


class _DevicePrograms:
    """Count device programs (double estimate) run inside the block: `with ... as n: n[0]`."""

    def __init__(self, double):
        self.double, self.count = double, [0]

    def __enter__(self):
        self.real = self.double._device_op

        def counting(dotted, golden, any_kw, args, kwargs):
            self.count[0] += _programs(dotted, kwargs)
            return self.real(dotted, golden, any_kw, args, kwargs)
        self.double._device_op = counting
        return self.count

    def __exit__(self, *exc):
        self.double._device_op = self.real


@pytest.mark.parametrize('fidelity', MATH_FIDELITIES)
def test_every_compute_config_a_device_op_receives(tiny, device, double, fidelity, tiny_ref,
                                                   monkeypatch):
    """
    Record every compute config reaching a device op, tuned and fallback paths, per fidelity.

    The tiny model (same ops as DPT-Large) at every `math_fidelity` option: first with its
    tuned configs, then with every tuned config refused (the fallbacks' own calls, SDPA's
    included). The full DPT-Large runs check the same (test_full_dpt_large_...).
    """
    for forced in (False, True):
        if forced:
            _force_defaults(monkeypatch)
        model = build_tt_model(tiny, device, math_fidelity=fidelity, use_cache=False,
                               fallbacks=FallbackCounter(strict=not forced))
        start = len(double.compute_calls)
        got = run_model(model, tiny_ref['x'], device)
        _check_compute_configs(double.compute_calls[start:], fidelity)
        assert pcc(got, tiny_ref['depth']) >= MIN_PCC, (fidelity, forced)
        if forced:
            # 7 encoder ops, the readout, the fusion projection, every conv
            assert model.fb.snapshot()['program_config_fallback_total'] == \
                7 + 2 + len(model.cfg.conv)


def test_fallback_conv_prepares_its_own_weights_from_the_host_copy(tiny, tiny_prepared, device,
                                                                   monkeypatch):
    """
    Check the counted conv fallback: the original host weights, an explicit block and slices.

    A tuned conv ran (its weights are now prepared for the tuned sharding); the tuned config
    then fails (as it can at trace capture, with other L1 in use). The fallback must prepare
    its own weights from the host copy: tuned-prepared weights under another config give
    ~50% PCC without an error on a card (tt-metal #35852).
    """
    cfg, prepared = tiny_prepared
    name, cin, cout, side, relu = next(p for p in conv_plan(cfg.dims)
                                       if cfg.conv_path[p[0]] == 'l1' and p[4])
    weight, bias = prepared.params[f'{name}.weight'], prepared.params[f'{name}.bias']
    conv = TtConv2d(name, weight, bias, kernel=3, stride=1, padding=1, configs=cfg,
                    device=device, fb=FallbackCounter())
    x = torch.randn(1, cin, side, side)
    with torch.no_grad():
        ref = torch.relu(torch.nn.functional.conv2d(
            x, ttnn.to_torch(weight).float(), ttnn.to_torch(bias).float().flatten(),
            padding=1))
    # the conv frees its input (dead at every call site of the model): a fresh one per call
    assert pcc(spatial_from_tt(conv(spatial_to_tt(x, device))), ref) > 0.99    # tuned
    assert conv.prepared['tuned'][0] is not weight
    calls, real = [], ttnn.conv2d

    def tuned_fails(**kw):
        calls.append(kw)
        if kw['conv_config'] is cfg.conv[name]:
            raise RuntimeError('Statically allocated circular buffers clash (injected)')
        return real(**kw)
    monkeypatch.setattr(ttnn, 'conv2d', tuned_fails)
    for _ in range(2):                    # the second call reuses the fallback's own weights
        sp = spatial_to_tt(x, device)
        out = spatial_from_tt(conv(sp))
        assert sp.tensor.deallocated          # freed after the conv, not before the fallback
        assert pcc(out, ref) > 0.99
    default = calls[1]
    assert default['weight_tensor'] is weight and default['bias_tensor'] is bias
    assert default['conv_config'].act_block_h_override > 0
    assert default['slice_config'].slice_type == \
        ttnn.Op2DSliceConfig.SliceTypeEnum.DRAMSliceHeight
    assert calls[2]['weight_tensor'] is conv.prepared['default'][0] is not weight
    assert conv.fb.snapshot()[f'program_config_fallback.conv.{name}'] == 1


def test_forced_fallback_runs_frame_after_frame(tiny, tiny_prepared, device, tiny_ref,
                                                monkeypatch):
    """Every tuned config refused, two frames: the fallbacks reuse their own weights right."""
    cfg, prepared = tiny_prepared
    _force_defaults(monkeypatch)
    model = TtDPT(prepared.params, tiny.config, device, cfg, FallbackCounter())
    for _ in range(2):
        assert pcc(run_model(model, tiny_ref['x'], device), tiny_ref['depth']) >= MIN_PCC


@pytest.mark.slow
def test_dpt_large_with_every_tuned_config_refused_keeps_pcc(double, monkeypatch,
                                                             tmp_path_factory):
    """
    Check the forced-fallback DPT-Large at 384: full-model PCC >= 0.99, not just validation.

    Every tuned program config refused (7 encoder ops, the readout, the fusion projection, 21
    convs, each counted once), random weights; the mock dry-run shows ttnn accepts these
    defaults, this shows their numbers.
    """
    model = reference_model('dpt-large', seed=0)
    x = pixels(1, 384, seed=7)
    with torch.no_grad():
        ref = model(pixel_values=x).predicted_depth
    _force_defaults(monkeypatch)
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 1), l1_small_size=24576,
                                 trace_region_size=TRACE_REGION_SIZE, num_command_queues=1)
    try:
        cfg = build_configs(model.config, 'wormhole_n300', 384)
        prepared = prepare_weights(model.state_dict(), cfg, weights_id='random-dpt-large-seed0',
                                   cache_dir=str(tmp_path_factory.mktemp('tt_cache')))
        fb = FallbackCounter()
        tt = build_tt_model(model, mesh, image_size=384, prepared=prepared, fallbacks=fb)
        start, read = len(double.compute_calls), double.readback_bytes
        got = run_model(tt, x, mesh)
        read = double.readback_bytes - read
    finally:
        ttnn.close_mesh_device(mesh)
    value = pcc(got, ref)
    log.info('DPT-Large 384 forced-fallback full-model PCC %.5f', value)
    assert value >= MIN_PCC
    assert fb.snapshot()['program_config_fallback_total'] == 7 + 2 + 21
    _check_compute_configs(double.compute_calls[start:], 'HiFi2')
    assert read <= 2 * 384 * 384 * 4
