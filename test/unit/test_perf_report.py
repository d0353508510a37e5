"""
The perf header JSON against the reference runner's (tt-metal's DPT-Large demo).

Scripts written for the reference read `<perf stem>_header.json`; every key its runner writes
(models/experimental/dpt_large/demo/runner.py, tt-metal PR #33123) must be in ours, with the
value of the perf JSON's key of the same meaning.
"""
import json

from dpt_ros.backends.base import BackendInfo
from dpt_ros.inference.hf_model import make_config
from dpt_ros.perf.report import build_header, build_perf, RunTimings, write_perf
from dpt_ros.perf.stats import PerfStats

# The reference runner's header keys, in its order.
REFERENCE_HEADER_KEYS = (
    'model', 'input_shape', 'patch_size', 'num_tokens', 'device', 'dtype', 'tt_execution_mode',
    'mode', 'data_parallel_degree', 'latency_ms', 'inference_time_s', 'throughput_iter_per_s',
    'first_run_s', 'compile_time_s', 'fps', 'stage_breakdown_ms', 'stage_breakdown_s',
    'fallback_counts')
REFERENCE_MODEL_KEYS = ('name', 'type', 'backbone', 'num_layers', 'hidden_size', 'num_heads',
                        'intermediate_size')
# Header key -> the perf JSON key it repeats (the reference's latency_ms is its total_ms, the
# mean latency of an iteration).
SAME_AS_PERF = {'latency_ms': 'latency_ms_mean', 'inference_time_s': 'inference_time_s',
                'throughput_iter_per_s': 'throughput_iter_per_s', 'first_run_s': 'first_run_s',
                'compile_time_s': 'compile_time_s', 'fps': 'fps', 'device': 'device',
                'dtype': 'dtype', 'mode': 'mode', 'tt_execution_mode': 'tt_execution_mode',
                'data_parallel_degree': 'data_parallel_degree',
                'stage_breakdown_ms': 'stage_breakdown_ms',
                'stage_breakdown_s': 'stage_breakdown_s', 'fallback_counts': 'fallback_counts'}


def _tt_run():
    """Return a measured tt run as the runner records it: 2 frames per call on 2 chips."""
    info = BackendInfo(name='tt', device='wormhole_n300:0,wormhole_n300:1',
                       dtype='bf16 activations, bfloat8_b weights', image_size=384,
                       execution_mode='trace_2cq', dp=2, batch_size=2,
                       extra={'tt_execution_mode': 'trace_2cq', 'compile_time_s': 41.5,
                              'device_fps': 60.0, 'per_chip_batch_size': 1,
                              'dispatch_core': 'eth', 'chip_grids': ['8x8', '8x8'],
                              'selfcheck': 'passed', 'selfcheck_pcc': [0.999, 0.998]})
    timings = RunTimings(iter_ms=[40.0, 42.0, 38.0], iter_images=[2, 2, 2],
                         e2e_ms=[45.0, 47.0, 43.0], e2e_images=[2, 2, 2], total_ms=120.0,
                         first_run_s=43.0, warmup=1, repeat=3)
    perf = build_perf(timings, info, PerfStats(), requested_backend='tt', fallback_reason=None,
                      device_arg='wormhole_n300', strict=True)
    return perf, info


def test_header_carries_every_key_of_the_reference_header(tmp_path):
    perf, info = _tt_run()
    header = build_header(perf, info, make_config('dpt-large', 384))
    missing = [k for k in REFERENCE_HEADER_KEYS if k not in header]
    assert not missing, missing
    assert all(k in header['model'] for k in REFERENCE_MODEL_KEYS)
    for key, perf_key in SAME_AS_PERF.items():
        assert header[key] == perf[perf_key], key
    # the four timing keys hold numbers, not nulls
    assert header['inference_time_s'] == 0.04 and header['throughput_iter_per_s'] == 25.0
    assert header['first_run_s'] == 43.0 and header['compile_time_s'] == 41.5
    assert header['input_shape'] == [2, 3, 384, 384] and header['num_tokens'] == 577
    paths = write_perf(str(tmp_path / 'dpt_perf.json'), perf, header)
    assert paths[1] == str(tmp_path / 'dpt_perf_header.json')
    on_disk = json.loads((tmp_path / 'dpt_perf_header.json').read_text())
    assert set(REFERENCE_HEADER_KEYS) <= set(on_disk)


def test_perf_json_says_how_each_chip_was_opened():
    perf, _ = _tt_run()
    assert perf['dispatch_core'] == 'eth' and perf['chip_grids'] == ['8x8', '8x8']
    assert perf['selfcheck'] == 'passed' and perf['selfcheck_pcc'] == [0.999, 0.998]
