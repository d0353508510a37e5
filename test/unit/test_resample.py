"""The compiled resize (inference/resample.py) against Pillow itself: the same bits, always."""
from dpt_ros.inference import jit
from dpt_ros.inference import preprocess as pre
from dpt_ros.inference import resample
import numpy as np
from PIL import Image
import pytest

BICUBIC = Image.Resampling.BICUBIC


def _pillow(rgb, w, h):
    return np.asarray(Image.fromarray(rgb).resize((w, h), resample=BICUBIC))


def _compiled_u8(rgb, size):
    """Run the compiled path with an identity table: the resized uint8 image, HWC."""
    identity = np.tile(np.arange(256, dtype=np.float32), (3, 1))
    return resample.resize_normalize(rgb, size, identity).transpose(1, 2, 0).astype(np.uint8)


def test_numba_is_installed_so_the_fast_path_is_what_runs():
    # requirements.txt pins numba; without it every test below would only test Pillow.
    assert resample.available()


@pytest.mark.parametrize('size', [384, 512, 7])
def test_equals_pillow_on_random_shapes_and_contents(size):
    rng = np.random.default_rng(size)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 1300, 2))
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if rng.random() < 0.5:      # hard black/white edges: the kernel's overshoot clips
            rgb = np.where(rgb > 127, 255, 0).astype(np.uint8)
        expected = _pillow(rgb, size, size)
        assert np.array_equal(_compiled_u8(rgb, size), expected), (h, w, size)
        assert np.array_equal(resample.resize_compiled(rgb, size), expected), (h, w, size)


@pytest.mark.parametrize('hw', [(480, 640), (720, 1280), (1080, 1920), (3000, 4000), (1, 1),
                                (384, 384), (384, 640), (480, 384), (2000, 100), (100, 2000)])
def test_equals_pillow_and_the_table_at_camera_sizes(hw):
    rgb = np.random.default_rng(sum(hw)).integers(0, 256, hw + (3,), dtype=np.uint8)
    assert np.array_equal(pre.preprocess(rgb, method='compiled'),
                          pre.preprocess(rgb, method='pillow'))


@pytest.mark.parametrize('hw', [(2000, 100), (900, 500), (480, 640), (240, 320)])
def test_pass_order_rule_matches_the_installed_pillow(hw):
    # The intermediate is rounded to uint8, so the two orders differ; the rule must name the
    # one Pillow took, and the other must really give another image (or the test proves
    # nothing).
    h, w = hw
    rgb = np.random.default_rng(h * w).integers(0, 256, hw + (3,), dtype=np.uint8)
    full = _pillow(rgb, 384, 384)
    vertical_first = _pillow(_pillow(rgb, w, 384), 384, 384)
    horizontal_first = _pillow(_pillow(rgb, 384, h), 384, 384)
    assert not np.array_equal(vertical_first, horizontal_first)
    predicted = vertical_first if resample.pillow_vertical_first(h, w, 384, 384) \
        else horizontal_first
    assert np.array_equal(full, predicted)


def test_weights_cover_the_input_and_sum_to_one():
    for n_in, n_out in [(640, 384), (480, 384), (100, 384), (1, 384), (4000, 7)]:
        bounds, weights = resample.bicubic_weights(n_in, n_out)
        assert bounds.shape == (n_out, 2)
        assert (bounds[:, 0] >= 0).all() and (bounds.sum(axis=1) <= n_in).all()
        assert (bounds[:, 1] >= 1).all()
        sums = weights.sum(axis=1).astype(np.int64)
        # Each weight is rounded on its own: the sum is 1.0 in fixed point to a few units.
        assert np.abs(sums - (1 << resample.FRACTION_BITS)).max() <= bounds[:, 1].max()
    with pytest.raises(ValueError):
        resample.bicubic_weights(0, 384)


def test_without_numba_auto_uses_pillow_and_compiled_says_why(monkeypatch):
    rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    expected = pre.preprocess(rgb, method='pillow')
    monkeypatch.setattr(jit, 'numba', None)
    assert not resample.available()
    assert np.array_equal(pre.preprocess(rgb), expected)
    with pytest.raises(RuntimeError, match='numba is not importable'):
        pre.preprocess(rgb, method='compiled')
    pre.warm_up()   # nothing to compile: must not fail
