"""
Per-stage PCC (dpt_ros/demo/stage_pcc.py) of the TT program on the device TEST DOUBLE.

The tiny config at 128 px, strict: every stage correlates with HF fp32, and a fault put into
one stage shows in that stage (and the whole forward) while the stages fed HF's inputs after
it stay clean, so a per-stage report names the broken stage.
"""
from dpt_ros.demo import stage_pcc
from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.model import build_tt_model
import pytest
from support.doubles.tt_device_double import tt_device_double
from support.tt_reference import pixels, reference_model

ttnn = pytest.importorskip('ttnn')
SIZE = 128


@pytest.fixture(scope='module')
def setup():
    model = reference_model('tiny', seed=0, image_size=SIZE)
    with tt_device_double(num_devices=1):
        device = ttnn.open_mesh_device(ttnn.MeshShape(1, 1), l1_small_size=24576)
        tt = build_tt_model(model, device, device_name='wormhole_n150', image_size=SIZE,
                            use_cache=False, fallbacks=FallbackCounter(strict=True))
        ref = stage_pcc.reference_stages(model, pixels(1, SIZE, seed=3))
        yield model, tt, device, ref
        ttnn.close_mesh_device(device)


def test_every_stage_matches_hf_on_the_double(setup):
    _, tt, device, ref = setup
    scores = stage_pcc.compare(ref, stage_pcc.tt_stages(tt, device, ref))
    assert list(scores) == stage_pcc.stage_names()
    assert all(v >= 0.99 for v in scores.values()), scores


def test_a_broken_stage_is_the_one_named(setup, monkeypatch):
    _, tt, device, ref = setup
    real = tt.reassemble.forward

    def negate_third_map(taps):
        feats = real(taps)
        t = feats[2].tensor
        feats[2].tensor = ttnn.multiply(t, -1.0)
        return feats
    monkeypatch.setattr(tt.reassemble, 'forward', negate_third_map)
    scores = stage_pcc.compare(ref, stage_pcc.tt_stages(tt, device, ref))
    assert scores['reassemble2'] < -0.99
    broken = {name for name, v in scores.items() if v < 0.99}
    assert broken == {'reassemble2', 'depth'}, scores
