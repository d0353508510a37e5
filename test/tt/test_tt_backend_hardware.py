"""
Hardware tests for the TT backend: run them on a machine with a Wormhole N150/N300.

Without a Tenstorrent device they are skipped with the reason ttnn gives (here: 'No chips
detected in the cluster'). On a card:

    DPT_TT_DEVICE=wormhole_n300 .venv/bin/python -m pytest test/tt/test_tt_backend_hardware.py -v
    DPT_MIN_FPS=40 .venv/bin/python -m pytest test/tt/test_tt_backend_hardware.py -k perf -v

Weights: `DPT_TT_WEIGHTS` (default 'auto': Intel/dpt-large from the HF cache, else random
weights with the exact DPT-Large config — PCC is meaningful either way, depth is not).
"""
import json
import os
import pathlib

from dpt_ros import vocabulary
from dpt_ros.tt import device as tt_device
import numpy as np
import pytest
from support import paths

HAVE_DEVICE, NO_DEVICE_REASON = tt_device.detect()
pytestmark = pytest.mark.skipif(
    not HAVE_DEVICE, reason=f'TT hardware test: {NO_DEVICE_REASON or "no device"}')

ROOT = pathlib.Path(paths.ROOT)
PCC_MIN = 0.99
WEIGHTS = os.environ.get('DPT_TT_WEIGHTS', 'auto')
IMAGES = ('astronaut', 'coffee', 'chelsea')


def _device_kind() -> str:
    """DPT_TT_DEVICE, else the largest board the visible chips make (T3000, N300, N150)."""
    kind = os.environ.get('DPT_TT_DEVICE')
    if kind:
        return kind
    import ttnn
    chips = int(ttnn.GetNumAvailableDevices())
    return max((n, d) for d, n in vocabulary.TT_DEVICES.items() if n <= max(chips, 1))[1]


def _batch(size: int, names=IMAGES, pixels: bool = False) -> np.ndarray:
    """
    Return the bundled images as normalised tensors, or as uint8 pixels with pixels=True.

    The tensors are the processor's (the CPU reference's input); the uint8 pixels are what the
    node gives the TT backend.
    """
    from skimage import data

    from dpt_ros.inference.preprocess import preprocess, resize_pixels
    prep = resize_pixels if pixels else preprocess
    return np.stack([prep(getattr(data, n)(), size) for n in names])


@pytest.fixture(scope='module', params=[384, 512], ids=lambda s: f'{s}px')
def reference(request):
    """(size, loaded model, torch fp32 CPU outputs for the bundled images)."""
    from dpt_ros.backends import BackendOptions
    from dpt_ros.backends import torch_backend
    from dpt_ros.inference.hf_model import load_model
    size = request.param
    loaded = load_model(WEIGHTS, image_size=size)
    cpu = torch_backend.create(BackendOptions(weights=WEIGHTS, image_size=size, device='cpu'),
                               loaded=loaded)
    try:
        expected = cpu.infer(_batch(size))
    finally:
        cpu.close()
    return size, loaded, _batch(size, pixels=True), expected


@pytest.mark.parametrize('dp', [1, 2, 8], ids=lambda d: f'dp{d}')
def test_tt_pcc(reference, dp):
    """TT (trace_2cq, strict) vs torch CPU fp32: PCC >= 0.99 per bundled image."""
    from dpt_ros.backends import BackendOptions
    from dpt_ros.backends import tt_backend
    from dpt_ros.depth.pcc import pcc
    size, loaded, batch, expected = reference
    kind = _device_kind()
    if dp > vocabulary.TT_DEVICES.get(kind, 1):
        pytest.skip(f'dp {dp} needs a board with {dp} chips; this machine is {kind}')
    backend = tt_backend.create(
        BackendOptions(weights=WEIGHTS, image_size=size, device=kind, dp=dp,
                       execution_mode='trace_2cq', strict=True), loaded=loaded)
    try:
        # Send the three images as one batch: with dp 2 two frames are in flight at once and
        # the outputs must still come back in input order.
        got = backend.infer(batch)
        assert got.shape == expected.shape
        scores = {n: pcc(got[i], expected[i]) for i, n in enumerate(IMAGES)}
        assert all(v >= PCC_MIN for v in scores.values()), scores
        assert backend.fallback_counts()['program_config_fallback_total'] == 0
    finally:
        backend.close()


def test_tt_perf():
    """
    Measure device and e2e FPS at 384 px, dp = chips, trace_2cq, strict.

    Writes the smoke JSON through the runner's perf JSON writer (same keys as the runner's
    --dump-perf).
    """
    from bench.bench_tt import measure
    from dpt_ros.perf.report import write_perf
    kind = _device_kind()
    dp = vocabulary.TT_DEVICES.get(kind, 1)
    record, header = measure(device=kind, dp=dp, image_size=384, mode='trace_2cq',
                             weights=WEIGHTS, warmup=2,
                             repeat=int(os.environ.get('DPT_PERF_REPEAT', '20')))
    out = ROOT / 'generated' / 'dpt_large_tt_perf_smoke.json'
    write_perf(str(out), record, header)
    saved = json.loads(out.read_text())
    assert saved['fallback_counts']['program_config_fallback_total'] == 0
    assert saved['tt_execution_mode'] == 'trace_2cq' and saved['data_parallel_degree'] == dp
    assert saved['fps'] > 0 and saved['fps_e2e'] > 0 and saved['trace_wall_ms'] > 0
    min_fps = os.environ.get('DPT_MIN_FPS')
    if min_fps:
        assert saved['fps'] >= float(min_fps), (
            f"device FPS {saved['fps']:.1f} < DPT_MIN_FPS {min_fps}")
