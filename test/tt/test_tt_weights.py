"""
Tests of TT weight preparation.

Layouts/dtypes, the algebra of every fold against the HF modules, the on-disk cache (hit,
invalidation, damaged entry) and bfloat8_b round trips.

Host only (real ttnn host tensors through the mock N300 cluster descriptor that the device
double module installs); no device ops.
"""
import json
import os

from dpt_ros.inference.hf_model import random_model
from dpt_ros.inference.preprocess import normalize
from dpt_ros.tt.configs import build_configs
from dpt_ros.tt.weights import (bilinear_matrix, cache_key, prepare_weights,
                                resize_position_embeddings, weights_fingerprint)
import pytest
# The device double's module sets TT_METAL_MOCK_CLUSTER_DESC_PATH (bfloat8_b needs a cluster).
import support.doubles.tt_device_double  # noqa: F401
from support.tt_reference import pcc, randomize_embeddings
import torch

ttnn = pytest.importorskip('ttnn')


def t(x):
    return ttnn.to_torch(x).float()


@pytest.fixture(scope='module')
def tiny():
    return randomize_embeddings(random_model('tiny', seed=3))


@pytest.fixture(scope='module')
def prepared_bf16(tiny):
    """bf16 weights: exact enough to check the folds' algebra tightly."""
    cfg = build_configs(tiny.config, 'wormhole_n300', 384, weight_dtype='bfloat16')
    return cfg, prepare_weights(tiny.state_dict(), cfg, use_cache=False).params


def test_layouts_and_dtypes(tiny):
    cfg = build_configs(tiny.config, 'wormhole_n300', 384)
    params = prepare_weights(tiny.state_dict(), cfg, use_cache=False).params
    d = cfg.dims.hidden
    qkv = params['encoder.0.qkv.weight']
    assert list(qkv.shape) == [d, 3 * d]
    assert qkv.dtype == ttnn.bfloat8_b and qkv.layout == ttnn.TILE_LAYOUT
    assert params['encoder.0.qkv.bias'].dtype == ttnn.bfloat16
    assert list(params['encoder.0.qkv.bias'].shape) == [1, 3 * d]
    assert list(params['embeddings.patch.weight'].shape) == [16 * 16 * 4, d]
    assert list(params['embeddings.additive'].shape) == [1, cfg.tokens_padded, d]
    assert list(params['encoder.attention_mask'].shape) == [1, 1, cfg.tokens_padded,
                                                            cfg.tokens_padded]
    conv = params['fusion.1.res1.conv1.weight']
    f = tiny.config.fusion_hidden_size
    assert conv.layout == ttnn.ROW_MAJOR_LAYOUT and list(conv.shape) == [f, f, 3, 3]
    neck = tiny.config.neck_hidden_sizes
    assert list(params['fusion.1.res1.conv1.bias'].shape) == [1, 1, 1, f]
    assert list(params['reassemble.0.resize.weight'].shape) == [d, 4 * 4 * neck[0]]
    assert list(params['reassemble.1.resize.weight'].shape) == [d, 2 * 2 * neck[1]]
    assert 'reassemble.2.resize.weight' not in params       # factor 1: identity
    assert list(params['reassemble.3.resize.conv_weight'].shape) == [neck[3], neck[3], 3, 3]
    assert 'fusion.0.res1.conv1.weight' not in params        # HF never uses it
    assert len(params) == len(set(params))


def test_fused_qkv_and_transposes_equal_hf(tiny, prepared_bf16):
    _, p = prepared_bf16
    att = tiny.dpt.encoder.layer[1].attention.attention
    ref = torch.cat([att.query.weight, att.key.weight, att.value.weight], 0).t()
    assert pcc(t(p['encoder.1.qkv.weight']), ref) > 0.9999
    assert torch.allclose(t(p['encoder.1.qkv.weight']), ref.detach(), atol=1e-2)
    ff1 = tiny.dpt.encoder.layer[1].intermediate.dense
    x = torch.randn(5, tiny.config.hidden_size)
    assert pcc(x @ t(p['encoder.1.ff1.weight']) + t(p['encoder.1.ff1.bias']), ff1(x)) > 0.9999


def test_patch_matrix_and_additive_table_reproduce_hf_embeddings(tiny, prepared_bf16):
    cfg, p = prepared_bf16
    dims = cfg.dims
    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (1, 384, 384, 3), dtype=torch.uint8)
    # HF takes the processor's normalised tensor; the prepared weights take the pixels.
    px = torch.from_numpy(normalize(pixels.numpy()))
    with torch.no_grad():
        ref = tiny.dpt.embeddings(px).last_hidden_states[0]        # CLS first
    # Same patchify as the device: NHWC, RGB padded to 4, (kh, kw, c) per patch.
    g = dims.grid
    x = torch.nn.functional.pad(pixels.float() - 127.5, (0, 1))   # pixel - centre
    x = x.reshape(g, 16, g, 64).permute(0, 2, 1, 3).reshape(g * g, 1024)
    emb = x @ t(p['embeddings.patch.weight']) + t(p['embeddings.additive'])[0, :g * g]
    assert pcc(emb, ref[1:]) > 0.9999
    cls = t(p['embeddings.additive'])[0, g * g]
    assert pcc(cls, ref[0]) > 0.9999
    assert torch.all(t(p['embeddings.additive'])[0, dims.tokens:] == 0)
    mask = t(p['encoder.attention_mask'])[0, 0]
    assert torch.all(mask[:, :dims.tokens] == 0) and torch.all(mask[:, dims.tokens:] < -1e8)


def test_reassemble_fold_equals_projection_then_conv_transpose(tiny, prepared_bf16):
    cfg, p = prepared_bf16
    dims = cfg.dims
    for i, f in ((0, 4), (1, 2)):
        layer = tiny.neck.reassemble_stage.layers[i]
        c = dims.neck[i]
        x = torch.randn(1, dims.hidden, 3, 5)
        with torch.no_grad():
            ref = layer(x)                                           # (1, C, 3f, 5f)
        tokens = x.permute(0, 2, 3, 1).reshape(15, dims.hidden)
        y = tokens @ t(p[f'reassemble.{i}.resize.weight']) + t(p[f'reassemble.{i}.resize.bias'])
        # Same depth-to-space as the device.
        y = y.reshape(3, 5, f, f * c).permute(0, 2, 1, 3).reshape(1, 3 * f, 5 * f, c)
        assert pcc(y.permute(0, 3, 1, 2), ref) > 0.999, i


def test_readout_split_equals_hf_concat_projection(tiny, prepared_bf16):
    _, p = prepared_bf16
    proj = tiny.neck.reassemble_stage.readout_projects[2]
    tokens = torch.randn(7, tiny.config.hidden_size)
    cls = torch.randn(1, tiny.config.hidden_size)
    with torch.no_grad():
        ref = proj(torch.cat([tokens, cls.expand_as(tokens)], -1))
    got = torch.nn.functional.gelu(tokens @ t(p['reassemble.2.readout_tokens.weight'])
                                   + cls @ t(p['reassemble.2.readout_cls.weight'])
                                   + t(p['reassemble.2.readout_cls.bias']))
    assert pcc(got, ref) > 0.9999


def test_bilinear_matrix_is_align_corners_true():
    for n in (1, 3, 12, 24):
        x = torch.randn(1, 2, n, n, dtype=torch.float64)
        ref = torch.nn.functional.interpolate(x, scale_factor=2, mode='bilinear',
                                              align_corners=True)
        a = torch.from_numpy(bilinear_matrix(n))
        assert torch.allclose(a @ x @ a.t(), ref, atol=1e-12), n


def test_position_embedding_resize_matches_hf():
    model = randomize_embeddings(random_model('tiny', seed=1, image_size=384))
    emb = model.dpt.embeddings
    got = resize_position_embeddings(emb.position_embeddings.detach(), 32)
    ref = emb._resize_pos_embed(emb.position_embeddings, 32, 32).detach()
    assert got.shape == (1, 1 + 32 * 32, model.config.hidden_size)
    assert torch.allclose(got.float(), ref, atol=1e-6)


def test_bfloat8_b_round_trip_pcc():
    torch.manual_seed(0)
    w = torch.randn(1024, 1024) * 0.02
    back = t(ttnn.from_torch(w, ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT))
    assert back.dtype == torch.float32 and not torch.equal(back, w)     # really quantized
    assert pcc(back, w) > 0.9995


def test_cache_hit_and_invalidation(tiny, tmp_path):
    cfg = build_configs(tiny.config, 'wormhole_n300', 384)
    sd = tiny.state_dict()
    first = prepare_weights(sd, cfg, weights_id='tiny-seed3', cache_dir=str(tmp_path))
    assert not first.cache_hit and os.path.isfile(os.path.join(first.path, 'manifest.json'))
    second = prepare_weights(sd, cfg, weights_id='tiny-seed3', cache_dir=str(tmp_path))
    assert second.cache_hit and second.key == first.key
    for name in ('encoder.0.qkv.weight', 'fusion.2.proj.bias', 'neck.0.weight'):
        a, b = first.params[name], second.params[name]
        assert a.dtype == b.dtype and a.layout == b.layout
        assert torch.equal(t(a), t(b)), name
    # Any change of what the weights depend on is a different entry.
    assert prepare_weights(sd, cfg, weights_id='other', cache_dir=str(tmp_path)).cache_hit \
        is False
    from dpt_ros.tt import weights as weights_mod
    assert weights_mod.ttnn_version()[0].isdigit()     # a real version, not 'unknown'
    with pytest.MonkeyPatch.context() as mp:           # a ttnn upgrade invalidates the entry
        mp.setattr(weights_mod, 'ttnn_version', lambda: '0.82.0')
        assert cache_key('tiny-seed3', cfg) != first.key
    cfg512 = build_configs(tiny.config, 'wormhole_n300', 512)
    assert cache_key('tiny-seed3', cfg512) != first.key
    assert not prepare_weights(sd, cfg512, weights_id='tiny-seed3',
                               cache_dir=str(tmp_path)).cache_hit
    # A damaged entry is rebuilt, not fatal.
    with open(os.path.join(first.path, 'manifest.json'), 'w') as f:
        json.dump({'tensors': {'x': {'file': 'missing.tensorbin'}}}, f)
    again = prepare_weights(sd, cfg, weights_id='tiny-seed3', cache_dir=str(tmp_path))
    assert not again.cache_hit and 'encoder.0.qkv.weight' in again.params


def test_fingerprint_changes_with_values(tiny):
    sd = {k: v.clone() for k, v in tiny.state_dict().items()}
    a = weights_fingerprint(sd)
    sd['dpt.embeddings.cls_token'] += 1.0
    assert weights_fingerprint(sd) != a


def test_default_cache_dir_comes_from_env(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv('DPT_ROS_CACHE', str(tmp_path / 'env_cache'))
    cfg = build_configs(tiny.config, 'wormhole_n150', 384)
    out = prepare_weights(tiny.state_dict(), cfg, weights_id='env')
    assert out.path.startswith(str(tmp_path / 'env_cache'))
