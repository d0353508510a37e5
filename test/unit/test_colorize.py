"""colorize(): BGR uint8 output, robust normalisation, NaN safety, parameter validation."""
import cv2
from dpt_ros.inference.colorize import (colorize, COLORMAPS, NORM_MODES, PERCENTILE_SAMPLES,
                                        validate, value_range)
import numpy as np
import pytest


def _ramp(h=20, w=256):
    return np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))


def test_default_is_turbo_bgr_and_ends_match_opencv():
    out = colorize(_ramp(), norm='percentile', low=0.0, high=100.0)
    assert out.shape == (20, 256, 3) and out.dtype == np.uint8
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_TURBO)[0]
    assert np.array_equal(out[0, 0], lut[0])      # smallest value -> cold end
    assert np.array_equal(out[0, -1], lut[255])   # largest (nearest) -> hot end


def test_gray_is_monotonic():
    out = colorize(_ramp(), colormap='gray', low=0.0, high=100.0)
    g = out[0, :, 0].astype(int)
    assert np.all(np.diff(g) >= 0) and g[0] == 0 and g[-1] == 255
    assert np.array_equal(out[..., 0], out[..., 2])


def test_percentiles_ignore_outliers():
    d = _ramp()
    d[0, 0] = 1e6          # one wild pixel must not wash the image out
    out = colorize(d, colormap='gray')
    assert out[5, 128, 0] > 60 and out[5, 128, 0] < 200
    assert value_range(d)[1] < 2.0


def test_fixed_range_clips():
    d = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0]], np.float32)
    out = colorize(d, colormap='gray', norm='fixed', low=0.0, high=1.0)[0, :, 0]
    assert list(out[[0, 1, 3, 4]]) == [0, 0, 255, 255]
    assert 120 <= out[2] <= 135


def test_nan_and_inf_are_black_and_do_not_spoil_the_rest():
    d = _ramp()
    d[:, :10] = np.nan
    d[:, 10] = np.inf
    out = colorize(d)
    assert not out[:, :11].any()
    assert out[:, 128:].any()
    assert not colorize(np.full((4, 4), np.nan, np.float32)).any()


def test_flat_map_draws_mid_scale():
    out = colorize(np.full((3, 3), 7.0, np.float32), colormap='gray')
    assert np.all(out == out[0, 0]) and 100 < out[0, 0, 0] < 160


@pytest.mark.parametrize('name', list(COLORMAPS))
def test_every_colormap_runs(name):
    assert colorize(_ramp(4, 16), colormap=name).shape == (4, 16, 3)


@pytest.mark.parametrize('args', [('nope', 'percentile', 2, 98), ('turbo', 'log', 2, 98),
                                  ('turbo', 'percentile', 98, 2),
                                  ('turbo', 'percentile', -1, 98),
                                  ('turbo', 'fixed', 1.0, float('nan')),
                                  ('turbo', 'fixed', 'a', 3)])
def test_bad_settings_raise_with_choices(args):
    with pytest.raises(ValueError) as err:
        validate(*args)
    assert str(err.value)
    if args[0] == 'nope':
        assert 'turbo' in str(err.value)
    if args[1] == 'log':
        assert all(m in str(err.value) for m in NORM_MODES)


def test_bad_shapes():
    with pytest.raises(ValueError):
        colorize(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError):
        colorize(np.zeros((0, 5), np.float32))


def test_percentile_range_equals_numpy_percentile():
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (3, 5), (480, 640), (1000, 1000)]:
        d = rng.standard_normal(shape).astype(np.float32)
        d[rng.random(shape) < 0.01] = np.nan
        for low, high in [(2.0, 98.0), (0.0, 100.0), (10.5, 33.3)]:
            flat = d.ravel()
            if flat.size > PERCENTILE_SAMPLES:   # value_range samples large maps so
                flat = flat[::flat.size // PERCENTILE_SAMPLES]
            ref = np.percentile(flat[np.isfinite(flat)], [low, high])
            assert np.allclose(value_range(d, 'percentile', low, high), ref, rtol=1e-6,
                               atol=1e-7)


def test_compiled_and_opencv_paths_agree(monkeypatch):
    # With numba the colours come from one compiled pass; without it, from OpenCV's
    # convertScaleAbs + applyColorMap. Same levels, but for float ties at .5 rounding.
    from dpt_ros.inference import jit
    assert jit.available()   # pinned in requirements.txt: the compiled path is what runs
    rng = np.random.default_rng(11)
    d = (rng.standard_normal((480, 640)) * 3).astype(np.float32)
    d[rng.random(d.shape) < 0.02] = np.nan
    d[0, :5] = [np.inf, -np.inf, 1e30, -1e30, 0.0]
    fixed = {'norm': 'fixed', 'low': -2.0, 'high': 2.0}
    compiled = [colorize(d, 'gray'), colorize(d, 'turbo'), colorize(d, 'gray', **fixed),
                colorize(np.full((4, 4), 2.0, np.float32), 'gray')]
    monkeypatch.setattr(jit, 'numba', None)
    opencv = [colorize(d, 'gray'), colorize(d, 'turbo'), colorize(d, 'gray', **fixed),
              colorize(np.full((4, 4), 2.0, np.float32), 'gray')]
    for a, b in zip(compiled, opencv):
        assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
        differ = (a != b).any(axis=2)
        assert differ.mean() < 1e-4
    for a, b in ((compiled[0], opencv[0]), (compiled[2], opencv[2])):   # gray: BGR = level
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert (compiled[0][~np.isfinite(d)] == 0).all()
    assert (compiled[3] == 128).all()      # a flat map draws mid-scale


@pytest.mark.parametrize('numba_on', [True, False])
def test_out_receives_the_same_colours(monkeypatch, numba_on):
    # The node draws straight into the buffer of the message that carries the colours.
    from dpt_ros.inference import jit
    if not numba_on:
        monkeypatch.setattr(jit, 'numba', None)
    rng = np.random.default_rng(5)
    d = rng.random((30, 41)).astype(np.float32)
    d[3, 4] = np.nan
    out = np.full((30, 41, 3), 7, np.uint8)
    assert colorize(d, 'turbo', out=out) is out
    assert np.array_equal(out, colorize(d, 'turbo'))
    nothing = np.full((2, 3), np.nan, np.float32)            # nothing finite: all black
    out = np.full((2, 3, 3), 7, np.uint8)
    assert colorize(nothing, out=out) is out and not out.any()
    for bad in (np.zeros((30, 41, 3), np.float32), np.zeros((41, 30, 3), np.uint8)):
        with pytest.raises(ValueError, match='out must be'):
            colorize(d, out=bad)


def test_range_problem_is_the_one_check_for_runner_and_node_parameters():
    from dpt_ros.inference.colorize import range_problem
    from dpt_ros.ros.params import check_colorization
    assert range_problem('percentile', 2.0, 98.0) is None
    assert range_problem('fixed', -5.0, 500.0) is None
    assert 'below norm_high' in range_problem('fixed', 5.0, 5.0)
    assert 'must lie in [0, 100]' in range_problem('percentile', 2.0, 101.0)
    assert 'finite' in range_problem('fixed', float('nan'), 1.0)
    assert check_colorization('turbo', 'fixed', 9.0, 1.0) == range_problem('fixed', 9.0, 1.0)
    with pytest.raises(ValueError, match='below norm_high'):
        validate('turbo', 'fixed', 9.0, 1.0)
