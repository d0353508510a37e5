"""
Tests of the device TEST DOUBLE itself (test/support/doubles/tt_device_double.py).

If the double were wrong, every TT model/runtime test built on it would be meaningless, so its
numerics, its strictness about ttnn names/types and its trace/CQ semantics are checked here.
"""
import pytest
from support.doubles.tt_device_double import (DeviceDouble, DoubleError, real_card_present,
                                              tt_device_double)
import torch

ttnn = pytest.importorskip('ttnn')


def pcc(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


@pytest.fixture
def double():
    with tt_device_double() as d:
        yield d


def _dev(double, **kw):
    kw.setdefault('trace_region_size', 1 << 20)
    return ttnn.open_mesh_device(ttnn.MeshShape(1, 1), **kw)


def test_linear_through_double_matches_torch_with_bf16_and_bfp8_rounding(double):
    torch.manual_seed(0)
    dev = _dev(double)
    x = torch.randn(1, 64, 96)
    w = torch.randn(96, 128) / 10
    b = torch.randn(128)
    tx = ttnn.from_torch(x, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)
    tw = ttnn.from_torch(w, ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT, device=dev)
    tb = ttnn.from_torch(b.reshape(1, -1), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)
    out = ttnn.linear(tx, tw, bias=tb, activation='gelu', memory_config=ttnn.L1_MEMORY_CONFIG,
                      compute_kernel_config=ttnn.WormholeComputeKernelConfig(
                          math_fidelity=ttnn.MathFidelity.HiFi2))
    assert out.dtype == ttnn.bfloat16 and out.layout == ttnn.TILE_LAYOUT
    assert out.memory_config() == ttnn.L1_MEMORY_CONFIG
    got = ttnn.to_torch(out).float()
    ref = torch.nn.functional.gelu(x @ w + b)
    assert pcc(got, ref) > 0.999
    # Storage rounding happened: bf16 output, bfloat8_b weights (not bit-equal to fp32).
    assert got.dtype == torch.float32 or got.dtype == torch.bfloat16
    assert not torch.equal(got, ref)
    assert double.op_counts['linear'] == 1


def test_unknown_op_name_is_refused(double):
    with pytest.raises(AttributeError):
        double.make_op('linear_that_does_not_exist')
    with pytest.raises(AttributeError):
        double.make_op('experimental.no_such_op')


def test_wrong_keyword_or_config_type_is_refused_like_the_binding(double):
    dev = _dev(double)
    t = ttnn.from_torch(torch.randn(32, 32), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)
    with pytest.raises(TypeError, match='unknown keyword'):
        ttnn.relu(t, no_such_kwarg=1)
    with pytest.raises(TypeError, match='program_config'):
        ttnn.matmul(t, t, program_config={'not': 'a config'})
    with pytest.raises(TypeError, match='memory_config'):
        ttnn.add(t, t, memory_config='L1')
    # A real config object is accepted.
    cfg = ttnn.MatmulMultiCoreReuseProgramConfig(
        compute_with_storage_grid_size=(1, 1), in0_block_w=1, out_subblock_h=1,
        out_subblock_w=1, per_core_M=1, per_core_N=1)
    assert list(ttnn.matmul(t, t, program_config=cfg).shape) == [32, 32]


def test_host_ops_run_for_real_outside_device(double):
    host = ttnn.from_torch(torch.arange(12.).reshape(3, 4), ttnn.bfloat16)
    out = ttnn.reshape(host, (4, 3))
    assert isinstance(out, ttnn.Tensor)
    assert torch.equal(ttnn.to_torch(out).float(), torch.arange(12.).reshape(4, 3))


def test_conv2d_return_convention_and_golden(double):
    torch.manual_seed(1)
    dev = _dev(double, l1_small_size=24576)
    x = torch.randn(1, 8, 8, 16)
    w = torch.randn(24, 16, 3, 3) / 10
    b = torch.randn(24)
    tx = ttnn.from_torch(x, ttnn.bfloat16, device=dev)
    tw = ttnn.from_torch(w, ttnn.float32)
    tb = ttnn.from_torch(b.reshape(1, 1, 1, -1), ttnn.float32)
    cfg = ttnn.Conv2dConfig(weights_dtype=ttnn.bfloat16, activation=ttnn.UnaryWithParam(
        ttnn.UnaryOpType.RELU))
    out, (oh, ow), (w2, b2) = ttnn.conv2d(
        input_tensor=tx, weight_tensor=tw, bias_tensor=tb, device=dev, in_channels=16,
        out_channels=24, batch_size=1, input_height=8, input_width=8, kernel_size=(3, 3),
        stride=(2, 2), padding=(1, 1), conv_config=cfg, return_output_dim=True,
        return_weights_and_bias=True)
    assert (oh, ow) == (4, 4)
    # The weights come back prepared on the device for this conv config (a tagged holder).
    assert w2.host is tw and w2.device() is dev and w2.prepared_for and b2 is tb
    ref = torch.relu(torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w, b, stride=2,
                                                padding=1))
    got = ttnn.to_torch(out).float().reshape(1, 4, 4, 24).permute(0, 3, 1, 2)
    assert pcc(got, ref) > 0.999


def test_torch_reference_for_op_without_golden(double):
    dev = _dev(double)
    x = torch.randn(2, 1, 64, 3 * 4 * 32)
    tx = ttnn.from_torch(x, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)
    q, k, v = ttnn.experimental.nlp_create_qkv_heads(tx, num_heads=4)
    assert list(q.shape) == [2, 4, 64, 32] and list(k.shape) == [2, 4, 32, 64]
    back = ttnn.experimental.nlp_concat_heads(v)
    assert torch.allclose(ttnn.to_torch(back).float(),
                          x[..., 8 * 32:].bfloat16().float(), atol=0)


def test_trace_replay_rereads_the_persistent_input(double):
    dev = _dev(double)
    w = ttnn.from_torch(torch.randn(32, 32), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                        device=dev)
    host0 = ttnn.from_torch(torch.zeros(32, 32), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)
    x = ttnn.allocate_tensor_on_device(host0.shape, ttnn.bfloat16, ttnn.TILE_LAYOUT, dev,
                                       ttnn.DRAM_MEMORY_CONFIG)
    ttnn.copy_host_to_device_tensor(host0, x)
    ttnn.relu(ttnn.matmul(x, w))   # compile run, as a runtime would do
    tid = ttnn.begin_trace_capture(dev, cq_id=0)
    out = ttnn.relu(ttnn.matmul(x, w))
    ttnn.end_trace_capture(dev, tid, cq_id=0)
    assert torch.isnan(ttnn.to_torch(out).float()).all()   # not executed yet
    wt = ttnn.to_torch(w).float()
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        xi = torch.randn(32, 32)
        ttnn.copy_host_to_device_tensor(
            ttnn.from_torch(xi, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT), x)
        ttnn.execute_trace(dev, tid, cq_id=0, blocking=False)
        got = ttnn.to_torch(out).float()
        assert pcc(got, torch.relu(xi.bfloat16().float() @ wt)) > 0.999
    ttnn.release_trace(dev, tid)
    with pytest.raises(DoubleError):
        ttnn.execute_trace(dev, tid, cq_id=0)


def test_host_write_during_capture_is_refused(double):
    dev = _dev(double)
    host = ttnn.from_torch(torch.zeros(32, 32), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)
    x = ttnn.allocate_tensor_on_device(host.shape, ttnn.bfloat16, ttnn.TILE_LAYOUT, dev)
    tid = ttnn.begin_trace_capture(dev, cq_id=0)
    with pytest.raises(DoubleError, match='captur'):
        ttnn.copy_host_to_device_tensor(host, x)
    ttnn.end_trace_capture(dev, tid, cq_id=0)


def _two_cq_frame(dev, tid, x, host, op_event, ordered):
    """One trace_2cq frame; `ordered` records the gating event after the trace (correct)."""
    ttnn.wait_for_event(1, op_event)
    ttnn.copy_host_to_device_tensor(host, x, cq_id=1)
    write_event = ttnn.record_event(dev, 1)
    ttnn.wait_for_event(0, write_event)
    if not ordered:
        op_event = ttnn.record_event(dev, 0)   # BUG: before the trace read x
    ttnn.execute_trace(dev, tid, cq_id=0, blocking=False)
    if ordered:
        op_event = ttnn.record_event(dev, 0)
    return op_event


@pytest.mark.parametrize('ordered', [True, False])
def test_two_cq_event_order_and_overwrite_race(double, ordered):
    dev = _dev(double, num_command_queues=2)
    w = ttnn.from_torch(torch.eye(32) * 2, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)
    zero = ttnn.from_torch(torch.zeros(32, 32), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)
    x = ttnn.allocate_tensor_on_device(zero.shape, ttnn.bfloat16, ttnn.TILE_LAYOUT, dev)
    ttnn.copy_host_to_device_tensor(zero, x, cq_id=0)
    tid = ttnn.begin_trace_capture(dev, cq_id=0)
    out = ttnn.matmul(x, w)
    ttnn.end_trace_capture(dev, tid, cq_id=0)
    frames = [torch.full((32, 32), float(i + 1)) for i in range(3)]
    hosts = [ttnn.from_torch(f, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT) for f in frames]
    op_event = ttnn.record_event(dev, 0)
    double.log.clear()
    op_event = _two_cq_frame(dev, tid, x, hosts[0], op_event, ordered)
    # Frame 2 is queued before frame 1's output is read (pipelining); with the bug its copy
    # overwrites x before frame 1's trace ran.
    op_event = _two_cq_frame(dev, tid, x, hosts[1], op_event, ordered)
    first = ttnn.to_torch(out).float()
    kinds = [e[0] for e in double.log]
    assert kinds.index('copy_h2d') < kinds.index('execute_trace')
    if ordered:
        assert torch.all(first == 4.0)      # frame 2 (value 2) x 2: both traces ran in order
        copies = [i for i, k in enumerate(kinds) if k == 'copy_h2d']
        traces = [i for i, k in enumerate(kinds) if k == 'execute_trace']
        assert copies[0] < traces[0] < copies[1] < traces[1]
    else:
        # The second copy landed before the first trace: frame 1 computed on frame 2's input.
        copies = [i for i, k in enumerate(kinds) if k == 'copy_h2d']
        traces = [i for i, k in enumerate(kinds) if k == 'execute_trace']
        assert copies[1] < traces[0]
    ttnn.synchronize_device(dev)
    ttnn.close_mesh_device(dev)


def test_submeshes_and_device_queries(double):
    assert ttnn.GetNumAvailableDevices() == 2
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 2), l1_small_size=24576,
                                 trace_region_size=8 << 20, num_command_queues=2)
    subs = mesh.create_submeshes(ttnn.MeshShape(1, 1))
    assert [s.get_device_ids() for s in subs] == [[0], [1]]
    assert subs[0].compute_with_storage_grid_size().x == 8
    with pytest.raises(RuntimeError):
        ttnn.open_mesh_device(ttnn.MeshShape(1, 4))
    ttnn.close_mesh_device(mesh)


def test_ttnn_is_restored_after_the_double():
    real_linear = ttnn.linear
    with tt_device_double():
        assert ttnn.linear is not real_linear
        assert ttnn.linear.__tt_double__ == 'linear'
    assert ttnn.linear is real_linear
    assert not hasattr(ttnn.open_mesh_device, '__self__') or \
        not isinstance(ttnn.open_mesh_device.__self__, DeviceDouble)
    if not real_card_present():
        with pytest.raises(RuntimeError):      # the real device path again: no card here
            ttnn.open_mesh_device(ttnn.MeshShape(1, 1))


def test_use_after_deallocate_is_refused(double):
    dev = _dev(double)
    t = ttnn.from_torch(torch.ones(32, 32), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)
    ttnn.deallocate(t)
    with pytest.raises(DoubleError, match='deallocate'):
        ttnn.relu(t)


def test_conv_weights_are_quantized_as_configured(double):
    torch.manual_seed(2)
    dev = _dev(double, l1_small_size=24576)
    x = torch.randn(1, 4, 4, 32)
    w = torch.randn(32, 32, 3, 3)
    kwargs = {'input_tensor': ttnn.from_torch(x, ttnn.bfloat16, device=dev),
              'weight_tensor': ttnn.from_torch(w, ttnn.float32), 'device': dev,
              'in_channels': 32, 'out_channels': 32, 'batch_size': 1, 'input_height': 4,
              'input_width': 4, 'kernel_size': (3, 3), 'padding': (1, 1)}
    outs = {}
    for dt in (ttnn.bfloat16, ttnn.bfloat8_b):
        out = ttnn.conv2d(conv_config=ttnn.Conv2dConfig(weights_dtype=dt), **kwargs)
        outs[dt] = ttnn.to_torch(out).float()
    ref = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2).bfloat16().float(), w, padding=1)
    ref = ref.permute(0, 2, 3, 1).reshape(outs[ttnn.bfloat16].shape)
    err16 = (outs[ttnn.bfloat16] - ref).abs().mean()
    err8 = (outs[ttnn.bfloat8_b] - ref).abs().mean()
    assert err8 > err16                      # block-float weights really lose precision
    assert pcc(outs[ttnn.bfloat8_b], ref) > 0.999


def test_conv_transpose2d_torch_reference(double):
    torch.manual_seed(3)
    dev = _dev(double)
    x = torch.randn(1, 5, 6, 8)
    w = torch.randn(8, 4, 2, 2)
    b = torch.randn(4)
    out, (oh, ow) = ttnn.conv_transpose2d(
        input_tensor=ttnn.from_torch(x, ttnn.bfloat16, device=dev),
        weight_tensor=ttnn.from_torch(w, ttnn.float32),
        bias_tensor=ttnn.from_torch(b.reshape(1, 1, 1, 4), ttnn.float32), device=dev,
        in_channels=8, out_channels=4, batch_size=1, input_height=5, input_width=6,
        kernel_size=(2, 2), stride=(2, 2), return_output_dim=True)
    assert (oh, ow) == (10, 12)
    ref = torch.nn.functional.conv_transpose2d(x.permute(0, 3, 1, 2).bfloat16().float(), w, b,
                                               stride=2)
    got = ttnn.to_torch(out).float().reshape(1, 10, 12, 4).permute(0, 3, 1, 2)
    assert pcc(got, ref) > 0.999


# ---- the card's bookkeeping the double models -----------------------------------------------

def test_compute_configs_reaching_ops_are_recorded_with_ttnn_defaults(double):
    """Each compute config a device op gets is recorded; None resolves to ttnn's default."""
    from support.doubles.tt_device_double import resolved_compute
    dev = _dev(double)
    x = ttnn.from_torch(torch.randn(64, 64), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)
    hifi3 = ttnn.WormholeComputeKernelConfig(math_fidelity=ttnn.MathFidelity.HiFi3,
                                             fp32_dest_acc_en=True)
    ttnn.matmul(x, x, compute_kernel_config=hifi3)
    ttnn.layer_norm(x)
    ttnn.add(x, x)                          # no compute config in its binding: not recorded
    assert [op for op, _ in double.compute_calls] == ['matmul', 'layer_norm']
    assert double.compute_calls[0][1] is hifi3
    assert resolved_compute('matmul', hifi3) == ('HiFi3', True)
    # ttnn 0.81.1's own LayerNorm default is the pair of tt-metal #38306
    assert resolved_compute('layer_norm', None) == ('HiFi4', True)


def test_readback_bytes_count_whole_tiles(double):
    """A (1, 1, N, 1) TILE tensor reads back 32x its values: what the card transfers."""
    dev = _dev(double)
    col = ttnn.from_torch(torch.rand(1, 1, 4096, 1), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                          device=dev)
    rows = ttnn.from_torch(torch.rand(64, 64), ttnn.bfloat16, device=dev)   # row-major
    before = double.readback_bytes
    ttnn.to_torch(col)
    assert double.readback_bytes - before == 4096 * 32 * 2
    ttnn.from_device(rows)
    assert double.readback_bytes - before == 4096 * 32 * 2 + 64 * 64 * 2


def test_a_trace_larger_than_the_region_is_refused_with_tt_metals_error(double):
    """end_trace_capture sizes the commands; the live traces must fit the region."""
    from support.doubles.tt_device_double import TRACE_BYTES_PER_PROGRAM
    dev = _dev(double, trace_region_size=256 << 10)
    x = ttnn.from_torch(torch.randn(64, 64), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=dev)

    def capture(ops):
        tid = ttnn.begin_trace_capture(dev, cq_id=0)
        for _ in range(ops):
            ttnn.add(x, x)
        ttnn.end_trace_capture(dev, tid, cq_id=0)
        return tid
    small = capture(4)
    view = ttnn._ttnn.device.GetMemoryView(dev, ttnn.BufferType.TRACE)
    used = view.total_bytes_allocated_per_bank * view.num_banks
    assert 4 * TRACE_BYTES_PER_PROGRAM <= used < 256 << 10
    with pytest.raises(RuntimeError, match=r'Creating trace buffers of size \d+B on MeshDevice '
                                           r'0, but only 262144B is allocated for trace region'):
        capture(256 * 1024 // TRACE_BYTES_PER_PROGRAM)
    ttnn.release_trace(dev, small)
    view = ttnn._ttnn.device.GetMemoryView(dev, ttnn.BufferType.TRACE)
    assert view.total_bytes_allocated_per_bank == 0


def test_worker_dispatch_gives_an_n300_chip_8x7_and_refuses_what_ttnn_refuses(double):
    """WORKER dispatch: 8x7 per N300 chip; 2 chips x 2 CQs run out of dispatch cores."""
    worker = ttnn.DispatchCoreConfig(ttnn.DispatchCoreType.WORKER)
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(1, 2), num_command_queues=1,
                                 dispatch_core_config=worker)
    chips = mesh.create_submeshes(ttnn.MeshShape(1, 1))
    assert [(c.compute_with_storage_grid_size().x, c.compute_with_storage_grid_size().y)
            for c in chips] == [(8, 7), (8, 7)]
    with pytest.raises(RuntimeError, match='No more available dispatch cores'):
        ttnn.open_mesh_device(ttnn.MeshShape(1, 2), num_command_queues=2,
                              dispatch_core_config=worker)
    # a program config for the 8x8 grid does not fit an 8x7 chip
    x = ttnn.from_torch(torch.randn(256, 256), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                        device=chips[0])
    pc = ttnn.MatmulMultiCoreReuseMultiCastProgramConfig(
        compute_with_storage_grid_size=(8, 8), in0_block_w=1, out_subblock_h=1,
        out_subblock_w=1, per_core_M=1, per_core_N=1, transpose_mcast=False,
        fused_activation=None)
    with pytest.raises(DoubleError, match='8x8 core grid on a device whose compute grid is 8x7'):
        ttnn.matmul(x, x, program_config=pc)


def test_conv_weights_prepared_for_another_config_are_refused(double):
    """Weights conv2d prepared for one config are wrong for another (tt-metal #35852)."""
    dev = _dev(double, l1_small_size=24576)
    x = ttnn.from_torch(torch.randn(1, 8, 8, 16), ttnn.bfloat16, device=dev)
    w = ttnn.from_torch(torch.randn(16, 16, 3, 3) / 10, ttnn.float32)
    kind = ttnn.Op2DSliceConfig.SliceTypeEnum

    def conv(weight, act_block_h, slice_type):
        cfg = ttnn.Conv2dConfig(weights_dtype=ttnn.bfloat16, act_block_h_override=act_block_h)
        return ttnn.conv2d(
            input_tensor=x, weight_tensor=weight, device=dev, in_channels=16, out_channels=16,
            batch_size=1, input_height=8, input_width=8, kernel_size=(3, 3), stride=(1, 1),
            padding=(1, 1), conv_config=cfg, slice_config=ttnn.Op2DSliceConfig(
                slice_type=slice_type, num_slices=1), return_weights_and_bias=True)[1][0]
    tuned = conv(w, 32, kind.L1Full)
    assert conv(tuned, 32, kind.L1Full) is tuned          # reused by the same config: fine
    with pytest.raises(DoubleError, match='prepared for conv config'):
        conv(tuned, 32, kind.DRAMSliceHeight)
    dram0 = conv(w, 0, kind.DRAMSliceHeight)              # from host weights: fine
    with pytest.raises(DoubleError, match='35852'):
        conv(dram0, 0, kind.DRAMSliceHeight)


class _LowPrecisionMatmulSpy(torch.utils._python_dispatch.TorchDispatchMode):
    """Record every aten matmul / conv / attention call and which of them had a bf16 operand."""

    HEAVY = ('mm', 'bmm', 'addmm', 'baddbmm', 'addbmm', 'matmul', 'linear', 'dot', 'mv',
             'addmv', 'convolution', '_convolution', 'conv2d', 'conv_transpose2d')

    def __init__(self):
        super().__init__()
        self.calls, self.low = 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split('::')[-1]
        if name in self.HEAVY or 'scaled_dot_product' in name or 'mkldnn' in name:
            self.calls += 1
            operands = [a for a in torch.utils._pytree.tree_leaves((args, kwargs or {}))
                        if isinstance(a, torch.Tensor)]
            dtypes = sorted({str(a.dtype) for a in operands})
            if any(a.dtype in (torch.bfloat16, torch.float16) for a in operands):
                self.low.append(f'{name}{dtypes}')
        return func(*args, **(kwargs or {}))


def test_goldens_reach_torch_with_fp32_matmuls_only(double):
    """
    Check that no golden runs a bf16 matmul / conv / attention in torch (tiny DPT forward).

    On a CPU without bf16 units torch's bf16 `@` is ~200x slower than fp32, so the double
    rounds the inputs to their storage dtype and computes in fp32 (the card accumulates in
    fp32 too).
    """
    from dpt_ros.tt.fallbacks import FallbackCounter
    from dpt_ros.tt.model import build_tt_model
    from support.tt_reference import pixels, reference_model, run_model
    dev = _dev(double, l1_small_size=24576, num_command_queues=2)
    model = build_tt_model(reference_model('tiny', seed=0), dev, use_cache=False,
                           fallbacks=FallbackCounter(strict=True))
    x = pixels(1, 384, seed=1)
    with _LowPrecisionMatmulSpy() as spy:
        got = run_model(model, x, dev)
    for op in ('linear', 'matmul', 'conv2d', 'transformer.scaled_dot_product_attention'):
        assert double.op_counts[op] > 0, op           # the spy saw every kind of heavy golden
    assert spy.calls >= double.op_counts['linear'] + double.op_counts['conv2d']
    assert spy.low == [], f'{len(spy.low)} low-precision calls, first: {spy.low[:5]}'
    assert torch.isfinite(got).all()
