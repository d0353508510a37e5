"""eval_pcc end to end (tiny-random): exact on the CPU baseline, bf16 gated, fallback named."""
import json

from dpt_ros.demo import eval_pcc
import numpy as np
import pytest

FAST = ['--weights', 'tiny-random', '--warmup', '1', '--repeat', '1']


def _predicted(backend: str, dtype: str) -> str:
    from dpt_ros.backends import precision
    resolve = precision.for_openvino if backend == 'openvino' else precision.for_torch
    return resolve(dtype).executed


def test_cpu_baseline_is_exact(tmp_path, capsys):
    out = tmp_path / 'e.json'
    assert eval_pcc.main(FAST + ['--backend', 'torch', '--dtype', 'fp32', '--dump-json',
                                 str(out)]) == 0
    data = json.loads(out.read_text())
    assert data['baseline'] is True and data['num_images'] == 1
    assert data['pcc_min'] == pytest.approx(1.0, abs=1e-9)
    assert data['images'][0]['name'] == 'astronaut'
    assert data['images'][0]['hw'] == [512, 512]
    assert data['fps'] > 0 and data['reference']['fps'] > 0
    assert data['weights_random'] is True
    assert 'astronaut' in capsys.readouterr().out


def test_default_cpu_backend_is_openvino_held_to_the_torch_reference(tmp_path):
    pytest.importorskip('openvino')
    out = tmp_path / 'e.json'
    assert eval_pcc.main(FAST + ['--dump-json', str(out), '--min-pcc', '0.999']) == 0
    data = json.loads(out.read_text())
    assert data['backend']['running'] == 'openvino' and not data['backend']['fell_back']
    assert data['baseline'] is False and data['reference']['backend'] == 'torch'
    assert 0.999 <= data['pcc_min'] < 1.0 and data['pcc_depth_min'] >= 0.999
    assert data['backend']['dtype_requested'] == 'auto'
    assert data['backend']['dtype'] == _predicted('openvino', 'auto')


def test_bf16_scores_high_but_not_exact_and_min_pcc_gates(tmp_path):
    out = tmp_path / 'e.json'
    assert eval_pcc.main(FAST + ['--dtype', 'bf16', '--dump-json', str(out),
                                 '--min-pcc', '0.99']) == 0
    data = json.loads(out.read_text())
    assert data['baseline'] is False and data['passed'] is True
    assert 0.99 <= data['pcc_min'] < 1.0
    b = data['backend']
    # OpenVINO runs bf16 only where this CPU has it; the JSON names both either way.
    assert (b['dtype'], b['dtype_requested']) == (_predicted(b['running'], 'bf16'), 'bf16')
    # No backend can beat PCC 1: the gate must fail and say so with exit status 3.
    assert eval_pcc.main(FAST + ['--dtype', 'bf16', '--min-pcc', '1.01']) == 3


def test_folder_and_tt_fallback(tmp_path):
    from PIL import Image
    src = tmp_path / 'imgs'
    src.mkdir()
    Image.fromarray(np.full((30, 40, 3), 100, np.uint8)).save(src / 'flat.png')
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (33, 44, 3), dtype=np.uint8)).save(src / 'noise.jpg')
    (src / 'junk.png').write_text('not an image')
    out = tmp_path / 'e.json'
    assert eval_pcc.main(FAST + ['--images-dir', str(src), '--tt-run', '--device',
                                 'wormhole_n300', '--no-strict', '--dump-json', str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r['name'] for r in data['images']] == ['flat', 'noise']
    assert [f['reason'] for f in data['failed_images']] == ['decode_failed']
    if data['backend']['fell_back']:
        assert data['fallback_counts']['backend_fallback_count'] == 1
        assert data['backend']['fallback_reason']
        # The torch fallback runs dtype auto: fp32 (exact) on a CPU without bf16 units.
        assert data['backend']['dtype'] == _predicted('torch', 'auto')
        if data['backend']['dtype'] == 'fp32':
            assert data['pcc_min'] == pytest.approx(1.0, abs=1e-9)
        else:
            assert 0.99 <= data['pcc_min'] < 1.0


def test_nothing_to_evaluate_exits_1(tmp_path, capsys):
    assert eval_pcc.main(FAST + ['--image', str(tmp_path / 'missing.png')]) == 1
    assert 'not found' in capsys.readouterr().err
