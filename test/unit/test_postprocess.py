"""resize_depth() against transformers' post_process_depth_estimation."""
import logging

from dpt_ros.inference.postprocess import resize_depth
import numpy as np
import pytest
import torch


@pytest.fixture(scope='module')
def hf_processor():
    import transformers
    logging.getLogger('transformers').setLevel(logging.ERROR)
    return transformers.DPTImageProcessor()


def _reference(proc, raw, hw):
    from transformers.modeling_outputs import DepthEstimatorOutput
    out = DepthEstimatorOutput(predicted_depth=torch.from_numpy(raw)[None])
    return proc.post_process_depth_estimation(out, target_sizes=[hw])[0]['predicted_depth']


@pytest.fixture(scope='module')
def raw():
    # Smooth structure plus noise, positive like DPT's ReLU output.
    yy, xx = np.mgrid[0:384, 0:384].astype(np.float32)
    noise = np.random.default_rng(0).random((384, 384)).astype(np.float32)
    return (10 + 5 * np.sin(xx / 17) * np.cos(yy / 23) + noise).astype(np.float32)


@pytest.mark.parametrize('hw', [(1, 1), (479, 641), (4000, 3000), (384, 384), (100, 50),
                                (2, 700)])
def test_matches_transformers(hf_processor, raw, hw):
    ours = resize_depth(raw, hw)
    ref = _reference(hf_processor, raw, hw).reshape(hw).numpy()
    assert ours.shape == hw
    assert ours.dtype == np.float32
    assert float(np.abs(ours - ref).max()) <= 1e-5 * float(np.abs(ref).max())


@pytest.mark.parametrize('hw', [(1, 1), (479, 641), (4000, 3000), (100, 50), (2, 700)])
def test_cv2_method_matches_transformers_to_float_rounding(hf_processor, raw, hw):
    # The pipeline resizes with cv2 (about 10x faster at 640x480); it must stay equivalent.
    ref = _reference(hf_processor, raw, hw).reshape(hw).numpy()
    fast = resize_depth(raw, hw, method='cv2')
    assert fast.shape == hw
    assert float(np.abs(fast - ref).max()) <= 1e-4 * float(np.abs(ref).max())


def test_accepts_1xSxS_and_rejects_bad_input(raw):
    assert resize_depth(raw[None], (10, 12)).shape == (10, 12)
    with pytest.raises(ValueError):
        resize_depth(raw, (0, 5))
    with pytest.raises(ValueError):
        resize_depth(raw, 'big')
    with pytest.raises(ValueError):
        resize_depth(np.zeros((2, 3, 4), np.float32), (5, 5))
    with pytest.raises(ValueError):
        resize_depth(raw, (5, 5), method='nearest')


@pytest.mark.parametrize('method', ['cv2', 'torch'])
@pytest.mark.parametrize('hw', [(479, 641), (384, 384), (1, 1)])
def test_out_receives_the_same_result(raw, method, hw):
    # The node resizes straight into the buffer of the message that carries the depth.
    out = np.full(hw, np.nan, np.float32)
    got = resize_depth(raw, hw, method=method, out=out)
    assert got is out
    assert np.array_equal(out, resize_depth(raw, hw, method=method))


def test_out_of_the_wrong_kind_is_refused(raw):
    for bad in (np.zeros((10, 13), np.float32), np.zeros((10, 12), np.float64),
                np.zeros((12, 10), np.float32).T):
        with pytest.raises(ValueError, match='out must be'):
            resize_depth(raw, (10, 12), method='cv2', out=bad)
