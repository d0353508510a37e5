"""
The reassemble stage's readout and depth-to-space (dpt_ros/tt/reassemble.py) on the TEST DOUBLE.

Against HF's DPTReassembleStage (tiny config of the same architecture, factors 4, 2, 1, 0.5):
each layer's output before the neck conv. The readout is one matmul per tap with the CLS term
as its bias and the GELU fused (per-chip batch 1), the depth-to-space a TILE reshape and a
permutation matmul (no row-major round trip). Two images per chip (a broadcast add of each
image's CLS term): test_tt_model_golden's batch test. What the double cannot judge: the fused
GELU's and the matmuls' fidelity on silicon, L1.
"""
from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.model import build_tt_model
from dpt_ros.tt.reassemble import depth_to_space_matrix
import numpy as np
import pytest
from support.doubles.tt_device_double import tt_device_double
from support.tt_reference import pcc, pixels, reference_model, spatial_from_tt, tokens_to_tt
import torch

ttnn = pytest.importorskip('ttnn')


def test_depth_to_space_matrix_puts_each_block_pixel_in_its_image_row():
    """Check reshape + permutation against the (gy, gx, a, b, c) -> (gy*f+a, gx*f+b, c) map."""
    for g, f in ((24, 4), (24, 2), (32, 4), (8, 2)):
        c = 3
        y = np.random.default_rng(g * f).standard_normal((g, g, f, f, c))
        rows = y.reshape(g, g * f * f, c)                  # the device reshape of (P², f*f*C)
        got = (depth_to_space_matrix(g, f) @ rows).reshape(g * f, g * f, c)
        want = y.transpose(0, 2, 1, 3, 4).reshape(g * f, g * f, c)
        np.testing.assert_array_equal(got, want)


@pytest.fixture(scope='module')
def double():
    with tt_device_double(num_devices=1) as d:
        yield d


@pytest.fixture(scope='module')
def device(double):
    dev = ttnn.open_mesh_device(ttnn.MeshShape(1, 1), l1_small_size=24576)
    yield dev
    ttnn.close_mesh_device(dev)


@pytest.fixture(scope='module')
def tiny():
    return reference_model('tiny', seed=0)


def _reference(model, x):
    """Return HF's reassemble layer outputs (before the neck convs) for pixel values x."""
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
        hidden = [out.hidden_states[1:][i] for i in model.config.backbone_out_indices]
        return hidden, model.neck.reassemble_stage(hidden, None, None)


def _calls(double, fn):
    """Run fn; return (its result, device op calls by name, the linears' keyword sets)."""
    before = dict(double.op_counts)
    real, linears = ttnn.linear, []

    def spy(*args, **kwargs):
        linears.append(kwargs)
        return real(*args, **kwargs)
    ttnn.linear = spy
    try:
        out = fn()
    finally:
        ttnn.linear = real
    ops = {k: v - before.get(k, 0) for k, v in double.op_counts.items()
           if v != before.get(k, 0)}
    return out, ops, linears


def test_each_layer_matches_hf_with_one_readout_matmul_and_a_tile_depth_to_space(
        tiny, double, device):
    tt = build_tt_model(tiny, device, use_cache=False, fallbacks=FallbackCounter(strict=True))
    hidden, ref = _reference(tiny, pixels(1, 384, seed=4))
    for i, (h, want) in enumerate(zip(hidden, ref)):
        tap = tokens_to_tt(h, tt.cfg, device)
        got, ops, linears = _calls(double, lambda: tt.reassemble.layer(i, tap))
        assert pcc(spatial_from_tt(got), want) > 0.999, i
        # readout: CLS linear + token linear (CLS term as bias, GELU fused) + the next linear
        assert 'gelu' not in ops and 'add' not in ops, (i, ops)
        readout = linears[1]
        assert readout['program_config'].fused_activation is not None
        assert readout['bias'] is not None
        assert 'to_layout' not in ops and 'permute' not in ops, (i, ops)
        factor = tt.cfg.dims.factors[i]
        assert ops.get('matmul', 0) == (1 if factor > 1 else 0), (i, ops)
    assert tt.fb.snapshot()['program_config_fallback_total'] == 0
