"""
The two model-input formats (backends/base.py).

The processor's normalised float32 tensor and the resized uint8 pixels, for backends that fold the
normalisation into their weights. The pipeline hands each backend the one it names; the values
agree with transformers'.
"""
from types import SimpleNamespace

from dpt_ros.backends import StartedBackend
from dpt_ros.backends.base import BackendInfo, batch_format
from dpt_ros.errors import BackendError
from dpt_ros.inference.preprocess import (normalize, pixel_affine, pixel_centre, preprocess,
                                          resize_pillow, resize_pixels)
from dpt_ros.serving.pipeline import DepthPipeline
from dpt_ros.serving.supervisor import BackendSupervisor
import numpy as np
import pytest


def _rgb(hw=(480, 640), seed=0):
    return np.random.default_rng(seed).integers(0, 256, hw + (3,), dtype=np.uint8)


@pytest.mark.parametrize('method', ['compiled', 'pillow'])
@pytest.mark.parametrize('hw', [(480, 640), (384, 384), (1000, 37), (2000, 100), (5, 7)])
def test_pixels_are_the_processor_resize_and_normalise_to_its_tensor(hw, method):
    rgb = _rgb(hw, sum(hw))
    pixels = resize_pixels(rgb, method=method)
    assert pixels.shape == (384, 384, 3) and pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous and pixels.flags.writeable
    assert np.array_equal(pixels, resize_pillow(rgb))                       # Pillow's bicubic
    assert np.array_equal(normalize(pixels), preprocess(rgb, method=method))
    assert not np.shares_memory(pixels, rgb)


def test_same_size_pixels_are_a_copy_not_the_camera_buffer():
    rgb = _rgb((384, 384))
    for method in ('compiled', 'pillow'):
        pixels = resize_pixels(rgb, method=method)
        assert np.array_equal(pixels, rgb) and not np.shares_memory(pixels, rgb)


def test_normalize_takes_a_batch():
    pixels = np.stack([resize_pixels(_rgb(seed=1)), resize_pixels(_rgb(seed=2))])
    batch = normalize(pixels)
    assert batch.shape == (2, 3, 384, 384) and batch.dtype == np.float32
    assert np.array_equal(batch[1], normalize(pixels[1]))


def test_affine_and_centre_describe_the_table():
    scale, offset = pixel_affine()
    values = np.arange(256, dtype=np.float64)
    table = normalize(np.tile(values.astype(np.uint8)[None, :, None], (1, 1, 3)))
    for c in range(3):
        np.testing.assert_allclose(table[c, 0], values * scale[c] + offset[c], atol=1e-6)
    centre = pixel_centre()
    np.testing.assert_array_equal(centre, [127.5, 127.5, 127.5])
    # pixel - centre is exact in bfloat16 for every uint8 value (the TT model's input).
    import torch
    centred = torch.from_numpy(values - centre[0])
    assert torch.equal(centred.to(torch.bfloat16).double(), centred)


def test_resize_pixels_rejects_what_preprocess_rejects():
    from dpt_ros.errors import InvalidImage
    with pytest.raises(InvalidImage):
        resize_pixels(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match='auto, compiled, pillow'):
        resize_pixels(_rgb((4, 4)), method='cv2')
    with pytest.raises(ValueError, match='positive'):
        resize_pixels(_rgb((4, 4)), 0)


def test_batch_format_names_both_formats_or_says_what_it_got():
    assert batch_format(np.zeros((2, 3, 8, 8), np.float32), 8) == 'normalized'
    assert batch_format(np.zeros((1, 8, 8, 3), np.uint8), 8) == 'pixels'
    for bad in (np.zeros((1, 8, 8, 3), np.float32), np.zeros((1, 3, 8, 8), np.uint8),
                np.zeros((0, 3, 8, 8), np.float32), np.zeros((3, 8, 8), np.float32),
                np.zeros((1, 3, 9, 9), np.float32)):
        with pytest.raises(BackendError, match=r'\(N, 3, 8, 8\) float batch or \(N, 8, 8, 3\)'):
            batch_format(bad, 8)


def _pipeline(backend, fallback=None):
    start = (lambda: fallback) if fallback is not None else None
    return DepthPipeline(BackendSupervisor(StartedBackend(backend, requested='recording'),
                                           start_fallback=start, fallback_after=1))


class RecordingBackend:
    """Test double: records what infer() was given; returns zeros."""

    max_concurrency = 1

    def __init__(self, input_format, size=32):
        self.info = BackendInfo(name=f'recording_{input_format}', device='test-double',
                                dtype='fp32', image_size=size, input_format=input_format)
        self.seen = []

    def infer(self, batch):
        self.seen.append((batch_format(batch, self.info.image_size), batch.copy()))
        return np.zeros((batch.shape[0], self.info.image_size, self.info.image_size),
                        np.float32)

    def fallback_counts(self):
        return {}

    def close(self):
        pass


def test_pipeline_gives_each_backend_the_format_it_names():
    rgb = _rgb((48, 64))
    for fmt, expected in (('pixels', resize_pixels(rgb, 32)),
                          ('normalized', preprocess(rgb, 32))):
        backend = RecordingBackend(fmt)
        pipe = _pipeline(backend)
        assert pipe.input_format == fmt
        res = pipe.process(rgb)
        assert res.depth.shape == (48, 64)
        kind, seen = backend.seen[0]
        assert kind == fmt and np.array_equal(seen[0], expected)
        assert np.isfinite(pipe.perf.stage_ms_mean()['preprocess'])     # timed as before


def test_frames_prepared_as_pixels_are_normalised_for_a_replacing_backend():
    # A runtime fallback swaps the backend while frames prepared for the old one are in
    # flight: they must still run, normalised exactly as preprocess() would have done.
    rgb = _rgb((48, 64))
    replacement = RecordingBackend('normalized')
    pipe = _pipeline(RecordingBackend('pixels'), fallback=replacement)
    prepared = pipe.prepare(rgb)
    pipe.supervisor.on_failure(SimpleNamespace(consecutive_failures=1, last_failure='x'))
    assert pipe.supervisor.wait_fallback(10.0) and pipe.backend is replacement
    pipe.infer(prepared)
    kind, seen = replacement.seen[-1]
    assert kind == 'normalized' and np.array_equal(seen[0], preprocess(rgb, 32))


def test_an_unknown_input_format_is_refused_at_start():
    with pytest.raises(BackendError, match="unknown input format 'nchw'"):
        _pipeline(RecordingBackend('nchw'))
