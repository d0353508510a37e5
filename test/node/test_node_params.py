"""
Parameters and missing pieces at start-up and at runtime, through the real node.

Start-up: every kind of invalid value (wrong type, out of range, unknown choice, inconsistent
pair, unreadable params file, unknown weights) must stop the node with exit code 2 and one
clear error line naming the parameter, never a traceback. The cases only reach parameter
parsing, so they run a few at a time.

Missing pieces: weights not found offline, ttnn absent (test/support/doubles/no_ttnn hides it),
no TT device (the real "No chips detected"), no CUDA: a clear message and the documented fallback
(torch on cpu, counted, diagnostics WARN), or exit 2 with one line when fallback is off.

Runtime: every runtime-changeable parameter rejects bad values with a reason and keeps its old
value (read back through the real parameter services, and seen in the colour output).
"""
from __future__ import annotations

import math
import os
import tempfile
import time

from dpt_ros.ros import image_codec
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
from sensor_msgs.msg import Image
from support.node_cases import subscribed_publisher
from support.paths import DOUBLES, pythonpath
from support.reliability import Diagnostics, no_crash_signs, start_node, WARN
from support.ros_harness import rgb_image

BASE = {'backend': 'fault_ok', 'image_size': 32, 'diagnostics_rate': 10.0}
NO_TTNN_PATH = pythonpath(os.path.join(DOUBLES, 'no_ttnn'))
_TMP = tempfile.mkdtemp(prefix='dpt_rel_params_')
_EMPTY_HF = os.path.join(_TMP, 'empty_hf_home')
_NOT_A_MODEL = os.path.join(_TMP, 'not_a_model')
os.makedirs(_EMPTY_HF, exist_ok=True)
os.makedirs(_NOT_A_MODEL, exist_ok=True)


def _file(name: str, text: str) -> str:
    path = os.path.join(_TMP, name)
    with open(path, 'w') as f:
        f.write(text)
    return path


def _p(*pairs):
    args = []
    for pair in pairs:
        args += ['-p', pair]
    return args


# id -> (extra args, values over BASE, env, words the one error line must contain)
STARTUP = {
    # wrong type
    'int_given_text': (_p('image_size:=big'), {}, {}, ["'image_size'", 'integer']),
    'bool_given_text': (_p('allow_fallback:=maybe'), {}, {},
                        ["'allow_fallback'", 'true or false']),
    'str_given_bool': (_p('colormap:=true'), {}, {}, ["'colormap'", 'string']),
    'list_given_int': (_p('cameras:=5'), {}, {}, ["'cameras'", 'list of strings']),
    # out of range
    'image_size_step': (_p('image_size:=40'), {}, {}, ["'image_size'", 'steps of 16']),
    'rate_zero': (_p('diagnostics_rate:=0.0'), {}, {}, ["'diagnostics_rate'", 'range']),
    'threads_negative': (_p('threads:=-1'), {}, {}, ["'threads'", 'range']),
    'nan': (_p('norm_low:=.nan'), {}, {}, ["'norm_low'", 'finite']),
    # unknown choice
    'qos': (_p('qos_reliability:=fast'), {}, {}, ["'qos_reliability'", 'best_effort']),
    'backend': (_p('backend:=nosuch'), {}, {}, ["'backend'", 'torch', 'tt']),
    'execution_mode': (_p('execution_mode:=turbo'), {}, {}, ["'execution_mode'", 'trace_2cq']),
    'metric_mode': (_p('metric.mode:=lidar'), {}, {}, ["'metric.mode'", 'reference']),
    # values that are fine alone but not together
    'norm_order': (_p('norm_low:=99.0'), {}, {}, ["'norm_low'", 'below norm_high']),
    'dp_needs_tt': (_p('backend:=torch', 'dp:=2'), {}, {}, ["'dp'", 'wormhole_n300']),
    'bad_namespace': ([], {'cameras': ['1bad']}, {}, ["'cameras'", '1bad']),
    # unreadable params files
    'params_missing': (['--params-file', os.path.join(_TMP, 'missing.yaml')], {}, {},
                       ['cannot start', 'missing.yaml']),
    'params_directory': (['--params-file', _TMP], {}, {}, ['cannot start']),
    'params_bad_yaml': (['--params-file', _file('bad.yaml', 'depth_node: {ros__parameters: '
                                                            '{image_size: [1, 2\n')], {}, {},
                        ['cannot start', 'bad.yaml']),
    # unknown weights / weights not found offline (these start torch, which then finds out)
    'dpt_large_not_cached': (_p('backend:=torch', 'weights:=Intel/dpt-large'), {},
                             {'HF_HOME': _EMPTY_HF}, ["'Intel/dpt-large' not found", 'cache']),
    'weights_dir_not_a_model': (_p('backend:=torch', f'weights:={_NOT_A_MODEL}'), {}, {},
                                ["backend 'torch'", 'not a DPT save_pretrained() directory']),
    # missing pieces with allow_fallback false: one line, exit 2
    'ttnn_absent_no_fallback': (_p('backend:=tt', 'device:=wormhole_n300',
                                   'allow_fallback:=false'), {}, {'PYTHONPATH': NO_TTNN_PATH},
                                ["backend 'tt'", 'ttnn is not installed']),
    'device_absent_no_fallback': (_p('backend:=tt', 'device:=wormhole_n300',
                                     'allow_fallback:=false'), {}, {},
                                  ["backend 'tt'", 'no Tenstorrent device']),
    'cuda_absent_no_fallback': (_p('backend:=torch', 'device:=cuda', 'allow_fallback:=false',
                                   'weights:=tiny-random'), {}, {},
                                ["backend 'torch'", 'CUDA is not available']),
}
PARALLEL = 4


def _error_lines(lines):
    # rcl logs its own generic "[rcl]: Failed to parse global arguments" before the node can
    # say which file and why; the node's line is the one that must be there, once.
    return [ln for ln in lines if ('[ERROR]' in ln and '[rcl]:' not in ln) or
            'cannot start:' in ln or 'Traceback' in ln]


@pytest.fixture(scope='module')
def startup_results():
    """Start every STARTUP case (PARALLEL at a time); id -> (exit code, output lines)."""
    results, running = {}, []
    pending = list(STARTUP.items())
    while pending or running:
        while pending and len(running) < PARALLEL:
            cid, (args, values, env, _) = pending.pop(0)
            running.append((cid, start_node(dict(BASE, **values), extra_args=args, env=env,
                                            wait_ready=0), time.monotonic()))
        for item in list(running):
            cid, node, t0 = item
            if node.proc.poll() is not None or time.monotonic() - t0 > 90:
                rc = node.wait(1) if node.proc.poll() is not None else None
                node.kill()
                results[cid] = (rc, list(node.lines))
                running.remove(item)
        time.sleep(0.02)   # polling several child processes, each with its own deadline
    return results


@pytest.mark.parametrize('case', list(STARTUP))
def test_invalid_startup_value_one_clear_line_and_exit_2(startup_results, case):
    rc, lines = startup_results[case]
    words = STARTUP[case][3]
    text = '\n'.join(lines)
    assert rc == 2, text
    errors = _error_lines(lines)
    assert len(errors) == 1, text
    for w in words:
        assert w in errors[0], (w, errors[0])
    assert not no_crash_signs(text), text
    assert not any('serving' in ln for ln in lines)


# ----- missing pieces with the documented fallback -----

def _serve_one_frame(graph, node):
    depth = graph.collect(Image, 'depth_relative')
    pub = subscribed_publisher(graph, node)
    assert graph.wait_matched('depth_relative'), node.output()
    pub.publish(Image(**image_codec.rgb_to_image_fields(rgb_image(24, 32))))
    assert graph.spin_until(lambda: depth, 30), node.output()
    return depth[0]


@pytest.mark.parametrize('env, why', [
    ({'PYTHONPATH': NO_TTNN_PATH}, 'ttnn is not installed'),   # test/support/doubles/no_ttnn
    ({}, 'No chips detected'),                                 # the real ttnn, no card here
], ids=['ttnn_absent', 'device_absent'])
def test_tt_missing_falls_back_to_torch_cpu_counted_and_warns(graph, env, why):
    values = {'backend': 'tt', 'device': 'wormhole_n300', 'weights': 'tiny-random',
              'image_size': 32, 'threads': 1, 'diagnostics_rate': 10.0}
    with start_node(values, env=env, wait_ready=120) as node:
        diags = Diagnostics(graph)
        out = _serve_one_frame(graph, node)
        assert (out.height, out.width) == (24, 32)
        warn = diags.wait_level(WARN, 10)
        assert warn is not None and 'fallback active' in warn.message
        assert why in warn.message, warn.message
        v = diags.values()
        assert (v['backend'], v['backend_requested'], v['backend_fallback_count']) == (
            'torch', 'tt', '1')
        assert sum('falling back' in ln for ln in node.lines) == 1, node.output()
        assert not no_crash_signs(node.output()), node.output()


def test_weights_auto_offline_runs_random_weights_flagged_loudly(graph):
    values = {'backend': 'torch', 'weights': 'auto', 'image_size': 32, 'threads': 1,
              'diagnostics_rate': 10.0}
    with start_node(values, env={'HF_HOME': _EMPTY_HF}, wait_ready=180) as node:
        flagged = [ln for ln in node.lines if 'RANDOM weights' in ln and '[WARN]' in ln]
        assert flagged and 'Outputs are NOT depth' in flagged[0], node.output()
        diags = Diagnostics(graph)
        _serve_one_frame(graph, node)
        assert diags.wait_counts(lambda c: c['frames_processed'] == 1, 10)
        assert 'random' in diags.values()['weights'].lower()
        assert not no_crash_signs(node.output()), node.output()


def test_cuda_absent_falls_back_to_cpu_counted(graph):
    values = {'backend': 'torch', 'device': 'cuda', 'weights': 'tiny-random',
              'image_size': 32, 'threads': 1, 'diagnostics_rate': 10.0}
    node = start_node(values, wait_ready=0)
    try:
        assert node.wait_for_line('serving', 60), node.output()
        diags = Diagnostics(graph)
        _serve_one_frame(graph, node)
        warn = diags.wait_level(WARN, 10)
        assert warn is not None and 'CUDA' in warn.message
        assert diags.values()['backend_fallback_count'] == '1'
    finally:
        node.stop()
        node.kill()


# ----- runtime changes -----

def _value(v) -> ParameterValue:
    pv = ParameterValue()
    if isinstance(v, bool):
        pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, v
    elif isinstance(v, int):
        pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, v
    elif isinstance(v, float):
        pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, v
    elif isinstance(v, str):
        pv.type, pv.string_value = ParameterType.PARAMETER_STRING, v
    else:
        pv.type, pv.string_array_value = ParameterType.PARAMETER_STRING_ARRAY, list(v)
    return pv


def _plain(pv: ParameterValue):
    return {ParameterType.PARAMETER_BOOL: pv.bool_value,
            ParameterType.PARAMETER_INTEGER: pv.integer_value,
            ParameterType.PARAMETER_DOUBLE: pv.double_value,
            ParameterType.PARAMETER_STRING: pv.string_value,
            ParameterType.PARAMETER_STRING_ARRAY: list(pv.string_array_value)}.get(pv.type)


# name -> invalid values (each rejected alone); read-only parameters reject any change.
RUNTIME_BAD = {
    'colormap': ['rainbow', '', 5, True],
    'norm': ['minmax', 1.0],
    'norm_low': [float('nan'), 99.5, -1.0, 'low', 3],
    'norm_high': [float('inf'), 101.0, 1.0, False],
    'diagnostics_rate': [0.0, 100.0, -1.0, float('nan'), 'fast', 5],
    'min_fps': [-1.0, 2000.0, float('inf'), 'x'],
    'backend': ['torch'], 'image_size': [64], 'transport': ['compressed'],
    'cameras': [['x']], 'weights': ['random'], 'backend_timeout_s': [1.0],
    'qos_reliability': ['reliable'], 'max_pixels': [100], 'metric.mode': ['fixed'],
}


def test_runtime_invalid_values_rejected_with_reason_old_value_kept(graph):
    with start_node(dict(BASE, colormap='inferno'),
                    extra_args=_p('colourmap:=jet')) as node:   # a typo: warned, ignored
        assert any("unknown parameter 'colourmap'" in ln for ln in node.lines), node.output()
        setc = graph.node.create_client(SetParameters, '/depth_node/set_parameters')
        atomic = graph.node.create_client(SetParametersAtomically,
                                          '/depth_node/set_parameters_atomically')
        getc = graph.node.create_client(GetParameters, '/depth_node/get_parameters')
        assert graph.spin_until(lambda: all(c.service_is_ready() for c in (setc, atomic, getc)),
                                10), node.output()

        def call(client, req):
            fut = client.call_async(req)
            assert graph.spin_until(fut.done, 10)
            return fut.result()

        def get(names):
            return [_plain(v) for v in call(getc, GetParameters.Request(names=names)).values]

        names = list(RUNTIME_BAD)
        before = get(names)
        rejected = 0
        for name, bad_values in RUNTIME_BAD.items():
            for bad in bad_values:
                res = call(setc, SetParameters.Request(
                    parameters=[Parameter(name=name, value=_value(bad))])).results[0]
                assert not res.successful, (name, bad)
                assert res.reason.strip(), (name, bad)
                rejected += 1
        assert get(names) == before   # NaN compares unequal: no NaN was kept either
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in get(names))
        # The node said why, in its log, for the ones its own callback judged.
        assert any('rejected parameter change' in ln for ln in node.lines)
        # An atomic set with one bad member changes nothing.
        res = call(atomic, SetParametersAtomically.Request(parameters=[
            Parameter(name='colormap', value=_value('jet')),
            Parameter(name='norm_low', value=_value(99.9))])).result
        assert not res.successful and 'norm_low' in res.reason
        assert get(['colormap', 'norm_low']) == ['inferno', 2.0]
        # Undeclared names are refused too.
        res = call(setc, SetParameters.Request(parameters=[
            Parameter(name='nosuch', value=_value(1.0))])).results[0]
        assert not res.successful
        # Valid changes still work afterwards.
        res = call(setc, SetParameters.Request(parameters=[
            Parameter(name='colormap', value=_value('jet')),
            Parameter(name='diagnostics_rate', value=_value(20.0))])).results
        assert all(r.successful for r in res)
        assert get(['colormap', 'diagnostics_rate']) == ['jet', 20.0]
        assert rejected >= 30
        assert node.proc.poll() is None and not no_crash_signs(node.output())


def test_rejected_colormap_change_leaves_the_colour_output_unchanged(graph):
    with start_node(dict(BASE, colormap='inferno')) as node:
        color = graph.collect(Image, 'depth_relative/color')
        pub = graph.node.create_publisher(Image, 'image', 10)
        setc = graph.node.create_client(SetParameters, '/depth_node/set_parameters')
        assert graph.wait_for_subscriber(pub) and graph.wait_matched('depth_relative/color')
        assert graph.spin_until(setc.service_is_ready, 10)
        msg = Image(**image_codec.rgb_to_image_fields(rgb_image(24, 32)))

        def colour_now():
            n = len(color)
            pub.publish(msg)
            assert graph.spin_until(lambda: len(color) > n, 10), node.output()
            return image_codec.image_fields_to_array(color[-1]).copy()

        def set_(name, value):
            fut = setc.call_async(SetParameters.Request(
                parameters=[Parameter(name=name, value=_value(value))]))
            assert graph.spin_until(fut.done, 10)
            return fut.result().results[0].successful

        first = colour_now()
        assert not set_('colormap', 'rainbow') and not set_('norm_low', 150.0)
        assert np.array_equal(colour_now(), first)
        assert set_('colormap', 'bone')
        assert not np.array_equal(colour_now(), first)
