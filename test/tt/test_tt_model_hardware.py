"""
Per-stage PCC of TtDPT ON A CARD (Wormhole N150/N300), strict: every tuned config accepted.

The golden tests (test_tt_model_golden.py) prove the op sequence on CPU goldens; what only a
card shows is whether every kernel compiles, fits L1 and accepts its program config. When the
whole-model hardware PCC (test_tt_backend_hardware.py) fails, this file says which stage broke.
Skipped without a device, with the reason ttnn gives.

    .venv/bin/python -m pytest test/tt/test_tt_model_hardware.py -v
"""
import logging
import os

from dpt_ros.tt import device as tt_device
import pytest
import torch

HAVE_DEVICE, NO_DEVICE_REASON = tt_device.detect()
pytestmark = pytest.mark.skipif(
    not HAVE_DEVICE, reason=f'TT hardware test: {NO_DEVICE_REASON or "no device"}')

log = logging.getLogger(__name__)
WEIGHTS = os.environ.get('DPT_TT_WEIGHTS', 'auto')
STAGE_PCC = 0.99


@pytest.fixture(scope='module', params=[384, 512], ids=lambda s: f'{s}px')
def setup(request):
    import ttnn

    from dpt_ros.inference.hf_model import load_model
    from dpt_ros.tt.fallbacks import FallbackCounter
    from dpt_ros.tt.model import build_tt_model
    from support.tt_reference import pixels
    size = request.param
    loaded = load_model(WEIGHTS, image_size=size)
    hf = loaded.model
    x = pixels(1, size, seed=0)
    with torch.no_grad():
        out = hf(pixel_values=x, output_hidden_states=True)
        emb = hf.dpt.embeddings(x).last_hidden_states
        hidden = [out.hidden_states[1:][i] for i in hf.config.backbone_out_indices]
        feats = hf.neck.reassemble_stage(hidden, None, None)
        feats = [conv(f) for conv, f in zip(hf.neck.convs, feats)]
        fused = hf.neck.fusion_stage(feats)[-1]
    device = ttnn.open_mesh_device(ttnn.MeshShape(1, 1), l1_small_size=24576,
                                   trace_region_size=8 << 20)
    fb = FallbackCounter(strict=True)
    model = build_tt_model(hf, device, image_size=size, fallbacks=fb)
    ref = {'x': x, 'depth': out.predicted_depth, 'emb': emb, 'hidden': hidden, 'feats': feats,
           'fused': fused, 'hf': hf}
    yield model, ref, device
    ttnn.close_mesh_device(device)


def test_embeddings_on_card(setup):
    import ttnn

    from support.tt_reference import pcc, tokens_from_tt
    model, ref, device = setup
    out = model.embeddings.forward(ttnn.to_device(model.preprocess_host(ref['x'].numpy()),
                                                  device))
    assert pcc(tokens_from_tt(out, model.cfg), ref['emb']) >= STAGE_PCC


def test_encoder_on_card(setup):
    from support.tt_reference import pcc, tokens_from_tt, tokens_to_tt
    model, ref, device = setup
    taps = model.encoder.forward(tokens_to_tt(ref['emb'], model.cfg, device))
    for i, (tap, hf) in enumerate(zip(taps, ref['hidden'])):
        value = pcc(tokens_from_tt(tap, model.cfg), hf)
        log.info('card encoder tap %d PCC %.5f', i, value)
        assert value >= STAGE_PCC, i


def test_reassembly_on_card(setup):
    from support.tt_reference import pcc, spatial_from_tt, tokens_to_tt
    model, ref, device = setup
    feats = model.reassembly([tokens_to_tt(h, model.cfg, device) for h in ref['hidden']])
    for i, (sp, hf) in enumerate(zip(feats, ref['feats'])):
        assert pcc(spatial_from_tt(sp), hf) >= STAGE_PCC, i


def test_fusion_and_head_on_card(setup):
    from support.tt_reference import pcc, spatial_from_tt, spatial_to_tt
    model, ref, device = setup
    fused = model.fusion.forward([spatial_to_tt(f, device) for f in ref['feats']])
    assert pcc(spatial_from_tt(fused), ref['fused']) >= STAGE_PCC
    depth = torch.from_numpy(model.postprocess_host(
        model.head.forward(spatial_to_tt(ref['fused'], device))))
    with torch.no_grad():
        expected = ref['hf'].head([ref['fused']])
    assert pcc(depth, expected) >= STAGE_PCC


def test_whole_model_on_card_without_fallbacks(setup):
    from support.tt_reference import pcc, run_model
    model, ref, device = setup
    value = pcc(run_model(model, ref['x'], device), ref['depth'])
    log.info('card whole-model PCC %.5f at %d', value, model.cfg.image_size)
    assert value >= STAGE_PCC
    snap = model.fb.snapshot()
    assert snap['program_config_fallback_total'] == 0 and snap['host_fallback_count'] == 0
