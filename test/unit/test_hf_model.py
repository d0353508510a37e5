"""Model loading: every `weights` choice, its errors, and the exact DPT-Large config."""
from dpt_ros.inference.hf_model import load_model, make_config, WeightsNotFound
import numpy as np
import pytest
import torch


def test_dpt_large_config_has_the_published_parameter_count():
    from transformers import DPTForDepthEstimation
    with torch.device('meta'):
        model = DPTForDepthEstimation(make_config('dpt-large'))
    assert sum(p.numel() for p in model.parameters()) == 343_030_465
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (1024, 24, 16)
    assert cfg.backbone_out_indices == [5, 11, 17, 23]
    assert cfg.neck_hidden_sizes == [256, 512, 1024, 1024]


def test_tiny_random_is_seeded_and_flagged_random():
    a, b = load_model('tiny-random', seed=3), load_model('tiny-random', seed=3)
    c = load_model('tiny-random', seed=4)
    assert a.is_random and 'tiny-random' in a.weights
    wa, wb, wc = (m.model.state_dict()['head.head.0.weight'] for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_local_directory_round_trip(tmp_path):
    src = load_model('tiny-random', seed=1)
    src.model.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert not loaded.is_random and loaded.weights == str(tmp_path)
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 384, 384), np.float32))
    with torch.inference_mode():
        ya = src.model(pixel_values=x).predicted_depth
        yb = loaded.model(pixel_values=x).predicted_depth
    assert torch.allclose(ya, yb)


def test_directory_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotFound, match='save_pretrained'):
        load_model(str(tmp_path))


def test_missing_hub_weights_offline_name_the_options(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(WeightsNotFound) as err:
        load_model('Intel/dpt-large')
    msg = str(err.value)
    for option in ('auto', 'random', 'tiny-random', 'local directory'):
        assert option in msg


@pytest.mark.parametrize('path', ['/no/such/dpt', './no_such_dpt', '~/no_such_dpt'])
def test_a_missing_weights_directory_says_so(path):
    """Issue 24: a missing absolute path surfaced the hub's 'Repo id must be in the form'."""
    with pytest.raises(WeightsNotFound) as err:
        load_model(path)
    assert 'no such directory' in str(err.value) and 'Repo id' not in str(err.value)
