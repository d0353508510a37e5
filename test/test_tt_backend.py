"""The `tt` backend behind the registry: start-up failures, CPU fallback, and (under the device
double) the whole backend against the torch reference.

No Tenstorrent card exists here, so `create` meets the real ttnn 0.81.1 and its real
'No chips detected' error; the full-backend test runs the same code under
`test/tt_device_double.py` (golden-function ops on an emulated device).
"""
import sys

import numpy as np
import pytest

from dpt_ros.backends import BackendOptions, create_backend
from dpt_ros.backends.base import BackendError, BackendUnavailable
from dpt_ros.tt import device as tt_device

HAVE_DEVICE, NO_DEVICE_REASON = tt_device.detect()

needs_no_device = pytest.mark.skipif(
    HAVE_DEVICE, reason='a Tenstorrent device is present: the no-device path cannot be shown')


def _opts(**kw):
    base = dict(weights='tiny-random', image_size=64, device='wormhole_n300', dp=2,
                execution_mode='trace_2cq')
    base.update(kw)
    return BackendOptions(**base)


@needs_no_device
def test_create_without_device_raises_unavailable_with_cause():
    from dpt_ros.backends import tt_backend
    with pytest.raises(BackendUnavailable) as info:
        tt_backend.create(_opts())
    msg = str(info.value)
    assert 'No chips detected' in msg
    assert 'wormhole_n300' in msg
    assert 'backtrace' not in msg          # one readable line, not the C++ trace
    assert '\n' not in msg


def test_create_without_ttnn_raises_unavailable(monkeypatch):
    from dpt_ros.backends import tt_backend
    # A None entry makes `import ttnn` raise ImportError, as on a machine without it.
    monkeypatch.setitem(sys.modules, 'ttnn', None)
    with pytest.raises(BackendUnavailable, match='ttnn is not installed'):
        tt_backend.create(_opts())


@pytest.mark.parametrize('change, words', [
    (dict(device='cpu'), 'wormhole_n150 | wormhole_n300'),
    (dict(device='wormhole_n150', dp=2), 'dp 2 is not possible'),
    (dict(execution_mode='fast'), 'execution_mode'),
    (dict(image_size=100), 'multiple of the 16 px patch'),
])
def test_impossible_options_are_configuration_errors_not_fallbacks(change, words):
    from dpt_ros.backends import tt_backend
    with pytest.raises(BackendError, match=words) as info:
        tt_backend.create(_opts(**change))
    # A wrong configuration must stop start-up, never silently run on CPU.
    assert not isinstance(info.value, BackendUnavailable)


@needs_no_device
def test_registry_falls_back_to_torch_cpu_and_says_why():
    started = create_backend('tt', _opts(), allow_fallback=True)
    try:
        assert started.fell_back
        assert started.requested == 'tt'
        assert 'No chips detected' in started.fallback_reason
        backend = started.backend
        assert backend.info.name == 'torch'
        assert backend.info.device == 'cpu'
        out = backend.infer(np.zeros((1, 3, 64, 64), np.float32))
        assert out.shape == (1, 64, 64)
        assert np.isfinite(out).all()
    finally:
        started.backend.close()


@needs_no_device
def test_registry_without_fallback_raises():
    with pytest.raises(BackendUnavailable, match='No chips detected'):
        create_backend('tt', _opts(), allow_fallback=False)


@pytest.mark.parametrize('mode, dp', [('trace_2cq', 2), ('trace', 1), ('eager', 1)])
def test_whole_backend_under_the_device_double_matches_torch(mode, dp, tmp_path):
    """The registry starts the real TT backend (TtDPT, weights, configs, runtime) on the
    device double; every frame's output correlates >= 0.99 with torch fp32 on CPU."""
    pytest.importorskip('dpt_ros.tt.model',
                        reason='the TT model (dpt_ros/tt/model.py) is not in the tree yet')
    from skimage import data

    from dpt_ros.backends import torch_backend
    from dpt_ros.metrics import pcc
    from dpt_ros.model import load_model
    from dpt_ros.preprocess import preprocess
    from tt_device_double import tt_device_double

    size = 64
    loaded = load_model('tiny-random', image_size=size)
    x = np.stack([preprocess(data.astronaut(), size), preprocess(data.coffee(), size)])
    cpu = torch_backend.create(BackendOptions(weights='tiny-random', image_size=size),
                               loaded=loaded)
    try:
        expected = cpu.infer(x)
    finally:
        cpu.close()
    opts = _opts(image_size=size, dp=dp, execution_mode=mode, cache_dir=str(tmp_path))
    with tt_device_double():
        started = create_backend('tt', opts, allow_fallback=False)
        backend = started.backend
        try:
            assert not started.fell_back and backend.info.name == 'tt'
            got = backend.infer(x)
            assert backend.info.extra['tt_execution_mode'] == mode
            assert backend.fallback_counts()['program_config_fallback_total'] == 0
        finally:
            backend.close()
    scores = [pcc(got[i], expected[i]) for i in range(len(x))]
    assert all(s >= 0.99 for s in scores), scores
