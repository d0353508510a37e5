"""backends/reference.py: the reference a run is held to is CPU fp32 with the run's weights."""
from dpt_ros.backends import BackendOptions
from dpt_ros.backends.reference import reference_options


def test_reference_options_are_cpu_fp32_with_the_same_weights():
    opts = BackendOptions(weights='random', device='wormhole_n300', dtype='bf16', dp=2,
                          batch_size=2, strict=True, compile=True, seed=3, image_size=64)
    ref = reference_options(opts)
    assert (ref.device, ref.dtype, ref.dp, ref.batch_size, ref.strict, ref.compile) == \
        ('cpu', 'fp32', 1, 1, False, False)
    assert (ref.weights, ref.seed, ref.image_size) == ('random', 3, 64)
