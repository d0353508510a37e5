"""The torch backend: protocol, numerics against transformers, dtypes, compile fallback."""
import logging

from dpt_ros.backends import BackendError, BackendOptions, BackendUnavailable, DepthBackend
from dpt_ros.backends.torch_backend import create
from dpt_ros.depth.pcc import pcc
from dpt_ros.inference.hf_model import load_model
from dpt_ros.inference.preprocess import preprocess
import numpy as np
import pytest
import torch

TINY = BackendOptions(weights='tiny-random')


@pytest.fixture(scope='module')
def tiny_loaded():
    return load_model('tiny-random')


@pytest.fixture(scope='module')
def batch():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
            rng.integers(0, 256, (500, 300, 3), dtype=np.uint8)]
    return np.stack([preprocess(im) for im in imgs])


def test_protocol_and_info(tiny_loaded):
    b = create(TINY, tiny_loaded)
    try:
        assert isinstance(b, DepthBackend)
        assert b.info.name == 'torch' and b.info.device == 'cpu' and b.info.dtype == 'fp32'
        assert b.info.dtype_text == 'fp32'      # requested fp32, executed fp32
        assert b.info.image_size == 384 and b.info.execution_mode == 'eager'
        assert b.info.weights == tiny_loaded.weights
        assert b.info.extra['weights_random'] is True
        assert b.max_concurrency == 1
        assert b.fallback_counts() == {'compile_fallback_count': 0}
    finally:
        b.close()
        b.close()   # idempotent
    with pytest.raises(BackendError):
        b.infer(np.zeros((1, 3, 384, 384), np.float32))


def test_output_equals_transformers_model_and_batches_are_consistent(tiny_loaded, batch):
    b = create(TINY, tiny_loaded)
    try:
        out = b.infer(batch)
        assert out.shape == (2, 384, 384) and out.dtype == np.float32
        with torch.inference_mode():
            ref = tiny_loaded.model(pixel_values=torch.from_numpy(batch)).predicted_depth
        np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)
        one = b.infer(batch[1:2])
        np.testing.assert_allclose(one[0], out[1], rtol=1e-4, atol=1e-4)
        assert np.all(out >= 0)    # DPT ends with a ReLU: relative inverse depth >= 0
    finally:
        b.close()


@pytest.mark.parametrize('shape', [(3, 384, 384), (1, 3, 256, 256), (1, 1, 384, 384),
                                   (0, 3, 384, 384)])
def test_bad_batch_shapes_raise(tiny_loaded, shape):
    b = create(TINY, tiny_loaded)
    try:
        with pytest.raises(BackendError) as err:
            b.infer(np.zeros(shape, np.float32))
        assert '384' in str(err.value)
    finally:
        b.close()


def test_bad_options():
    with pytest.raises(BackendError):
        create(TINY.replace(dtype='fp16'))
    with pytest.raises(BackendError):
        create(TINY.replace(device='wormhole_n300'))


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA exists here; the no-CUDA path '
                    'cannot be exercised')
def test_cuda_without_cuda_is_unavailable():
    with pytest.raises(BackendUnavailable) as err:
        create(TINY.replace(device='cuda'))
    assert 'CUDA' in str(err.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_matches_cpu(tiny_loaded, batch):
    cpu = create(TINY, tiny_loaded)
    gpu = create(TINY.replace(device='cuda'), tiny_loaded)
    try:
        assert pcc(gpu.infer(batch), cpu.infer(batch)) > 0.9999
    finally:
        cpu.close()
        gpu.close()


def test_bf16_keeps_the_shared_model_fp32(tiny_loaded, batch):
    from dpt_ros.backends import precision
    b = create(TINY.replace(dtype='bf16'), tiny_loaded)
    try:
        out = b.infer(batch)
        assert out.dtype == np.float32
        assert b.info.dtype == precision.for_torch('bf16').executed
        assert b.info.dtype_requested == 'bf16'
        assert next(tiny_loaded.model.parameters()).dtype == torch.float32
    finally:
        b.close()


def test_auto_runs_what_the_cpu_capability_predicts(tiny_loaded, batch):
    from dpt_ros.backends import precision
    predicted = precision.for_torch('auto')
    b = create(TINY.replace(dtype='auto'), tiny_loaded)
    try:
        assert (b.info.dtype, b.info.dtype_requested) == (predicted.executed, 'auto')
        assert b.info.dtype_text == f'auto -> {predicted.executed}'
        assert b.info.extra['bf16_native'] is predicted.native_bf16
        assert next(b._eager.parameters()).dtype == {'fp32': torch.float32,
                                                     'bf16': torch.bfloat16}[predicted.executed]
        assert b.infer(batch[:1]).dtype == np.float32
    finally:
        b.close()


def test_on_a_cpu_without_bf16_auto_is_fp32_and_bf16_warns_once(tiny_loaded, monkeypatch,
                                                                caplog):
    from dpt_ros.backends import precision
    monkeypatch.setenv(precision.NO_BF16_ENV, '1')     # resolve as a Zen 3 would
    with caplog.at_level(logging.WARNING, logger='dpt_ros.backends.torch'):
        auto = create(TINY.replace(dtype='auto'), tiny_loaded)
        assert (auto.info.dtype, auto.info.dtype_text) == ('fp32', 'auto -> fp32')
        auto.close()
        assert not [r for r in caplog.records if 'dtype' in r.getMessage()]
        b = create(TINY.replace(dtype='bf16'), tiny_loaded)
    try:
        # An explicit bf16 runs fp32 (emulated bf16 is only slower), said in one WARN line.
        assert (b.info.dtype, b.info.dtype_requested, b.info.extra['bf16_native']) == (
            'fp32', 'bf16', False)
        assert next(b._eager.parameters()).dtype == torch.float32
        warned = [r.getMessage() for r in caplog.records
                  if r.levelno == logging.WARNING and 'dtype' in r.getMessage()]
        assert len(warned) == 1 and 'bf16 -> fp32 executed' in warned[0] and \
            precision.NO_BF16_ENV in warned[0], warned
    finally:
        b.close()


def test_stage_breakdown(tiny_loaded, batch):
    b = create(TINY, tiny_loaded)
    try:
        stages = b.stage_breakdown_ms(batch[:1])
        assert set(stages) == {'backbone_ms', 'reassembly_ms', 'fusion_head_ms'}
        assert all(v > 0 for v in stages.values())
    finally:
        b.close()


def test_threads_option_sets_torch_threads(tiny_loaded):
    before = torch.get_num_threads()
    try:
        b = create(TINY.replace(threads=1), tiny_loaded)
        assert torch.get_num_threads() == 1 and b.info.extra['threads'] == 1
        b.close()
    finally:
        torch.set_num_threads(before)


def test_compile_failure_falls_back_to_eager(tiny_loaded, batch, caplog, monkeypatch):
    """A real inductor failure (its C++ compiler does not exist) must not stop frames."""
    import torch._dynamo
    import torch._inductor.config as inductor_config
    monkeypatch.setattr(inductor_config.cpp, 'cxx', ('/nonexistent/dpt-ros-no-compiler',))
    monkeypatch.setattr(inductor_config, 'force_disable_caches', True)
    torch._dynamo.reset()
    b = create(TINY.replace(compile=True), tiny_loaded)
    try:
        assert b.info.execution_mode == 'compile'
        with caplog.at_level(logging.WARNING, logger='dpt_ros.backends.torch'):
            out = b.infer(batch[:1])
        eager = create(TINY, tiny_loaded)
        np.testing.assert_allclose(out, eager.infer(batch[:1]), rtol=1e-5, atol=1e-5)
        eager.close()
        assert b.fallback_counts()['compile_fallback_count'] == 1
        assert b.info.execution_mode == 'eager' and b.info.extra['compile_error']
        assert any('torch.compile failed' in r.getMessage() for r in caplog.records)
    finally:
        b.close()
        torch._dynamo.reset()


def test_bf16_pcc_on_full_dpt_large():
    """bf16 against fp32 on the exact DPT-Large config (random weights): PCC >= 0.999."""
    loaded = load_model('random', seed=0)
    from skimage import data
    x = preprocess(np.ascontiguousarray(data.astronaut()))[None]
    fp32 = create(BackendOptions(weights='random'), loaded)
    ref = fp32.infer(x)
    fp32.close()
    bf16 = create(BackendOptions(weights='random', dtype='bf16'), loaded)
    out = bf16.infer(x)
    bf16.close()
    value = pcc(out, ref)
    assert value >= 0.999, f'bf16 vs fp32 PCC {value:.6f}'
    # What the CPU predicts: bf16 where it has bf16 units, else fp32 (an emulated bf16 would
    # only be slower), i.e. the fp32 reference again.
    from dpt_ros.backends import precision
    if precision.for_torch('bf16').executed == 'bf16':
        assert bf16.info.dtype == 'bf16' and value < 1.0    # it really ran in bf16
    else:
        assert bf16.info.dtype == 'fp32' and value > 0.99999
