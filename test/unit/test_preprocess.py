"""preprocess() against transformers' own DPT image processor (Intel/dpt-large settings)."""
import logging

from dpt_ros.errors import InvalidImage
from dpt_ros.inference.preprocess import preprocess, preprocess_batch
import numpy as np
import pytest


@pytest.fixture(scope='module')
def hf_processor():
    """Build transformers' DPTImageProcessor with Intel/dpt-large's settings (no hub)."""
    import transformers
    logging.getLogger('transformers').setLevel(logging.ERROR)
    return transformers.DPTImageProcessor(
        do_resize=True, size={'height': 384, 'width': 384}, keep_aspect_ratio=False,
        ensure_multiple_of=1, resample=3, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


def _reference(proc, rgb, size=384):
    out = proc(images=rgb, size={'height': size, 'width': size}, return_tensors='np',
               input_data_format='channels_last')
    return out['pixel_values'][0]


@pytest.mark.parametrize('method', ['compiled', 'pillow'])
@pytest.mark.parametrize('hw', [(480, 640), (384, 384), (1, 1), (2, 3), (1000, 37),
                                (37, 1000), (721, 1281)])
def test_matches_transformers_processor(hf_processor, hw, method):
    rng = np.random.default_rng(sum(hw))
    rgb = rng.integers(0, 256, size=hw + (3,), dtype=np.uint8)
    ours = preprocess(rgb, method=method)
    ref = _reference(hf_processor, rgb)
    assert ours.shape == ref.shape == (3, 384, 384)
    assert ours.dtype == np.float32
    assert float(np.abs(ours - ref).max()) <= 1e-5


@pytest.mark.parametrize('method', ['compiled', 'pillow'])
def test_matches_on_a_natural_image_and_other_size(hf_processor, method):
    from skimage import data
    rgb = np.ascontiguousarray(data.coffee())       # 400x600, smooth regions and edges
    for size in (384, 256):
        ours = preprocess(rgb, size, method=method)
        ref = _reference(hf_processor, rgb, size)
        assert ours.shape == (3, size, size)
        assert float(np.abs(ours - ref).max()) <= 1e-5


def test_value_range_and_channel_order():
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 0] = 255     # pure red
    x = preprocess(rgb)
    assert np.allclose(x[0], 1.0) and np.allclose(x[1], -1.0) and np.allclose(x[2], -1.0)


def test_non_contiguous_input_is_fine():
    rgb = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert np.array_equal(preprocess(rgb[:, ::-1]), preprocess(np.ascontiguousarray(
        rgb[:, ::-1])))


@pytest.mark.parametrize('bad, reason', [
    (np.zeros((10, 10, 3), np.float32), 'bad_dtype'),
    (np.zeros((10, 10), np.uint8), 'bad_shape'),
    (np.zeros((10, 10, 4), np.uint8), 'bad_shape'),
    (np.zeros((0, 10, 3), np.uint8), 'empty'),
    ([[1, 2, 3]], 'bad_type'),
])
def test_invalid_images_raise_with_reason(bad, reason):
    with pytest.raises(InvalidImage) as err:
        preprocess(bad)
    assert err.value.reason == reason
    assert str(err.value)


def test_bad_size_method_and_batch():
    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError):
        preprocess(rgb, 0)
    with pytest.raises(ValueError, match='auto, compiled, pillow'):
        preprocess(rgb, method='cv2')
    batch = preprocess_batch([rgb, np.full((5, 9, 3), 200, np.uint8)])
    assert batch.shape == (2, 3, 384, 384) and batch.dtype == np.float32
    assert not np.array_equal(batch[0], batch[1])
