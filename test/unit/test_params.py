"""params.py: the one parameter spec, its mirror in config/dpt.yaml, and validation messages."""
import os

from dpt_ros.backends import BackendOptions
from dpt_ros.ros import params
import pytest
from support.paths import ROOT
import yaml

YAML_PATH = os.path.join(ROOT, 'config', 'dpt.yaml')


def flatten(d, prefix=''):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


def yaml_params():
    with open(YAML_PATH) as f:
        doc = yaml.safe_load(f)
    assert list(doc) == ['/**/depth_node'], 'parameters sit under the node name, any namespace'
    return flatten(doc['/**/depth_node']['ros__parameters'])


def test_yaml_mirrors_every_declared_parameter_and_default():
    y = yaml_params()
    assert set(y) == set(params.BY_NAME)
    for name, value in y.items():
        default = params.BY_NAME[name].default
        assert value == default and type(value) is type(default), name


def test_yaml_has_a_comment_for_every_parameter():
    lines = open(YAML_PATH).read().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith('#') and ':' in stripped:
            key = stripped.split(':')[0]
            if stripped.endswith(':'):      # a mapping (node name, ros__parameters, metric)
                continue
            assert lines[i - 1].strip().startswith('#'), f'no comment above {key!r}'


def test_backend_defaults_come_from_backend_options():
    opts = BackendOptions()
    d = params.defaults()
    for field in ('weights', 'image_size', 'device', 'compile', 'execution_mode',
                  'dp', 'strict', 'cache_dir', 'seed', 'threads', 'selfcheck',
                  'selfcheck_min_pcc'):
        assert d[field] == getattr(opts, field), field
    # dtype: the node resolves by the CPU's capability; code building options gets the
    # machine-independent fp32 reference.
    assert (d['dtype'], opts.dtype) == ('auto', 'fp32')
    assert params.backend_options(d) == opts.replace(batch_size=1, dtype='auto')


def test_defaults_validate_and_every_param_is_described():
    assert params.validate({}) == []
    for p in params.PARAMS:
        assert len(p.description) > 15, p.name
        assert p.type_name in ('bool', 'int', 'float', 'str', 'str_list')
    assert set(params.RUNTIME_CHANGEABLE) >= {'colormap', 'norm', 'norm_low', 'norm_high',
                                              'diagnostics_rate'}
    assert 'backend' not in params.RUNTIME_CHANGEABLE


def test_constraint_text_lists_choices_and_ranges():
    assert 'turbo' in params.BY_NAME['colormap'].constraint_text()
    # The largest board (a T3000) has 8 chips.
    assert params.BY_NAME['dp'].constraint_text() == 'range [1, 8]'
    assert 'steps of 16' in params.BY_NAME['image_size'].constraint_text()
    assert 'local save_pretrained' in params.BY_NAME['weights'].constraint_text()
    assert 'torch' in params.BY_NAME['backend'].choice_list()


@pytest.mark.parametrize('changes, words', [
    ({'transport': 'h264'}, ["'transport'", "'h264'", 'raw, compressed']),
    ({'qos_reliability': 'sensor_data'}, ["'qos_reliability'", 'auto, reliable, best_effort']),
    ({'dp': 9}, ["'dp'", 'out of range', '[1, 8]']),
    ({'dp': 3}, ["'dp'", 'wormhole_t3000 (8 chips)']),
    ({'backend': 'tt', 'device': 'wormhole_n300', 'dp': 3}, ["'dp'", 'wormhole_n300 (2 chips)']),
    ({'image_size': 390}, ["'image_size'", 'steps of 16']),
    ({'image_size': '384'}, ["'image_size'", 'must be an integer']),
    ({'diagnostics_rate': 0.0}, ["'diagnostics_rate'", 'out of range']),
    ({'diagnostics_rate': float('nan')}, ["'diagnostics_rate'", 'finite']),
    ({'colormap': 'rainbow'}, ["'colormap'", 'turbo']),
    ({'backend': 'onnx'}, ["'backend'", 'torch', 'tt']),
    ({'backend': 'torch', 'device': 'gpu'}, ["'device'", 'cuda:N']),
    # openvino (the default backend) runs on the CPU only; the message names the way to CUDA.
    ({'device': 'gpu'}, ["'device'", 'openvino', 'use cpu']),
    ({'backend': 'openvino', 'device': 'cuda'}, ["'device'", 'openvino', 'backend torch']),
    ({'backend': 'openvino', 'dtype': 'fp16'}, ["'dtype'", 'auto, fp32, bf16']),
    ({'backend': 'tt', 'device': 'cpu'}, ["'device'", 'wormhole_n300']),
    ({'dp': 2}, ["'dp'", 'wormhole_n300']),
    ({'norm_low': 50.0, 'norm_high': 10.0}, ["'norm_low'", 'below norm_high']),
    ({'norm_high': 150.0}, ['percentiles', '[0, 100]']),
    ({'cameras': []}, ["'cameras'", 'at least one']),
    ({'cameras': ['left', 'left']}, ["'cameras'", 'twice']),
    ({'cameras': ['1cam']}, ["'cameras'", 'not a valid ROS namespace']),
    ({'metric.mode': 'stereo'}, ["'metric.mode'", 'none, fixed, reference']),
    ({'metric.min_depth': 5.0, 'metric.max_depth': 1.0},
     ["'metric.max_depth'", '0 < metric.min_depth < metric.max_depth']),
    ({'metric.min_depth': 2.0, 'metric.max_depth': 2.0}, ['0 < metric.min_depth <']),
    # 0 m would divide by zero in a fit and clamp everything to the camera: refused.
    ({'metric.min_depth': 0.0}, ["'metric.min_depth' (0.0)", 'clamped']),
    ({'metric.max_depth': -1.0}, ["'metric.max_depth'", 'out of range']),
    ({'fallback_after_failures': -1}, ["'fallback_after_failures'", 'out of range']),
    ({'fallback_after_failures': 2.5}, ["'fallback_after_failures'", 'integer']),
    ({'metric.mode': 'fixed', 'metric.scale': -1.0}, ["'metric.scale'", '> 0']),
    ({'compile': 'yes'}, ["'compile'", 'true or false']),
    ({'selfcheck_min_pcc': 1.5}, ["'selfcheck_min_pcc'", 'range [0, 1]']),
    ({'selfcheck': 'off'}, ["'selfcheck'", 'true or false']),
    ({'no_such_param': 1}, ["unknown parameter 'no_such_param'"]),
])
def test_invalid_values_give_one_clear_message(changes, words):
    errors = params.validate(changes)
    assert len(errors) == 1, errors
    for w in words:
        assert w in errors[0], (w, errors[0])
    assert '\n' not in errors[0]


def test_valid_non_default_sets():
    assert params.validate({'backend': 'tt', 'device': 'wormhole_n300', 'dp': 2}) == []
    assert params.validate({'backend': 'tt', 'device': 'wormhole_t3000', 'dp': 8}) == []
    assert params.validate({'backend': 'torch', 'device': 'cuda:1', 'dtype': 'bf16'}) == []
    assert params.validate({'backend': 'openvino', 'dtype': 'bf16', 'threads': 2}) == []
    assert params.validate({'weights': '/models/dpt-large'}) == []   # free-form directory
    assert params.validate({'cameras': ['left', '/rig/right'], 'metric.scale': 2}) == []
    assert params.validate({'norm': 'fixed', 'norm_low': -5.0, 'norm_high': 500.0}) == []


def test_runtime_changes():
    cur = params.defaults()
    assert params.check_runtime_change({'colormap': 'inferno'}, cur) is None
    assert params.check_runtime_change({'diagnostics_rate': 5.0}, cur) is None
    assert 'read-only' in params.check_runtime_change({'backend': 'tt'}, cur)
    assert 'turbo' in params.check_runtime_change({'colormap': 'nope'}, cur)
    assert 'below norm_high' in params.check_runtime_change({'norm_low': 99.0}, cur)
    # Changing several at once is judged on the combined result.
    assert params.check_runtime_change(
        {'norm': 'fixed', 'norm_low': 0.0, 'norm_high': 1000.0}, cur) is None


def test_startup_parameters_change_only_while_unconfigured():
    cur = params.defaults()
    for state, step in (('active', 'deactivate, then cleanup'), ('inactive', 'cleanup'),
                        ('configuring', 'wait for the transition to end')):
        why = params.check_runtime_change({'image_size': 512, 'backend': 'tt'}, cur, state,
                                          '/cam/depth_node')
        assert why.startswith('backend, image_size: start-up parameter(s), read-only')
        assert f'(it is {state}): ros2 lifecycle set /cam/depth_node {step}' in why
    assert params.check_runtime_change({'image_size': 512}, cur, 'unconfigured') is None
    assert "'image_size'" in params.check_runtime_change({'image_size': 50}, cur,
                                                         'unconfigured')
    # start-up and runtime together: each judged, the colourisation on the combined result
    assert 'below norm_high' in params.check_runtime_change(
        {'image_size': 512, 'norm_low': 99.0}, cur, 'unconfigured')
    assert "unknown parameter 'nope'" == params.check_runtime_change({'nope': 1}, cur,
                                                                     'unconfigured')


def test_metric_range_words_match_what_metric_depth_does():
    """
    The parameters promise clamping to [min_depth, max_depth] (NaN only where no depth exists).

    The real MetricDepth built from the defaults must do exactly that.
    """
    from dpt_ros.depth.metric import MetricDepth
    import numpy as np
    d = params.defaults()
    for name in ('metric.min_depth', 'metric.max_depth'):
        assert 'clamped' in params.BY_NAME[name].description, name
    assert 'NaN' in params.BY_NAME['metric.mode'].description
    m = MetricDepth('fixed', scale=1.0, shift=0.0, min_depth=d['metric.min_depth'],
                    max_depth=d['metric.max_depth'], smoothing=d['metric.smoothing'])
    # 1/pred metres: 1000 m (too far), 0.001 m (too near), 2 m, and no depth (pred <= 0).
    out = m.to_metric(np.array([[1e-3, 1e3, 0.5, -1.0]], np.float32))
    assert out[0, 0] == np.float32(d['metric.max_depth'])
    assert out[0, 1] == np.float32(d['metric.min_depth'])
    assert out[0, 2] == np.float32(2.0) and np.isnan(out[0, 3])


def test_fallback_after_failures_is_read_only_and_defaults_on():
    p = params.BY_NAME['fallback_after_failures']
    assert p.read_only and p.default > 0 and p.min == 0
    assert '0 = never' in p.description
