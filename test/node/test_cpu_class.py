"""
The CPU classes the suite can run as (test/support/cpu_class.py, DPT_ROS_CPU_CLASS).

Each class is checked in a fresh process, through the same apply() that test/conftest.py runs
before torch is imported: what torch then reports about its CPU kernels and about oneDNN's bf16
support (the check torch makes before it sends a bf16 matmul or conv to oneDNN), and that
OpenVINO is left as it is.
"""
import json
import os
import platform
import subprocess
import sys

import pytest
from support import cpu_class
from support.paths import ROOT, SUPPORT

PROBE = """
import json, os, cpu_class
cpu_class.apply()
import openvino, torch
print(json.dumps({
    'capability': torch.backends.cpu.get_cpu_capability(),
    'bf16': bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    'openvino': openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'),
    'env': {k: os.environ.get(k) for k in ('ATEN_CPU_CAPABILITY', 'MKL_ENABLE_INSTRUCTIONS',
                                           'ONEDNN_MAX_CPU_ISA', 'DPT_ROS_CPU_NO_BF16')}}))
"""
x86_only = pytest.mark.skipif(platform.machine() != 'x86_64',
                              reason='the CPU classes cap x86 instruction sets')


def _probe(name: str | None, code: str = PROBE) -> dict:
    """
    Return what a fresh process started with DPT_ROS_CPU_CLASS=name reports.

    None: with this process's environment as it is.
    """
    env = dict(os.environ)
    if name is not None:
        keys = set().union(*cpu_class.CLASSES.values()) | {cpu_class.VARIABLE}
        env = {k: v for k, v in env.items() if k not in keys}
        env[cpu_class.VARIABLE] = name
    env['PYTHONPATH'] = SUPPORT
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@x86_only
def test_avx2_class_caps_torch_and_leaves_openvino_as_it_is():
    import openvino
    got = _probe('avx2')
    assert (got['capability'], got['bf16']) == ('AVX2', False)
    # OpenVINO's own oneDNN uncapped: it reports what it reports here (FP16 on a CPU with it).
    assert got['openvino'] == openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    # Children inherit the ATen and MKL caps and the product's no-bf16 resolution, not the
    # oneDNN cap (their OpenVINO must work).
    assert got['env'] == {'ATEN_CPU_CAPABILITY': 'avx2', 'MKL_ENABLE_INSTRUCTIONS': 'AVX2',
                          'ONEDNN_MAX_CPU_ISA': None, 'DPT_ROS_CPU_NO_BF16': '1'}


def test_native_sets_nothing_and_an_unknown_class_is_one_clear_error():
    assert cpu_class.settings('native') == cpu_class.settings('') == {}
    assert cpu_class.settings(None) == cpu_class.inherited(None) == {}
    with pytest.raises(ValueError, match="'zen9' is not a CPU class; choose one of native"):
        cpu_class.settings('zen9')
    proc = subprocess.run([sys.executable, os.path.join(SUPPORT, 'cpu_class.py'), 'zen9'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ''
    assert proc.stderr.count('\n') == 1 and 'not a CPU class' in proc.stderr


def test_shell_lines_export_what_children_inherit():
    out = subprocess.run([sys.executable, os.path.join(SUPPORT, 'cpu_class.py'), 'avx2'],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines() == ['export ATEN_CPU_CAPABILITY=avx2',
                                'export MKL_ENABLE_INSTRUCTIONS=AVX2',
                                'export DPT_ROS_CPU_NO_BF16=1']


@x86_only
def test_a_class_applied_after_torch_chose_its_kernels_is_refused():
    code = ('import json, os, torch, cpu_class\n'
            'torch.ones(64, 64) @ torch.ones(64, 64)\n'
            'native = (torch.backends.cpu.get_cpu_capability(), '
            'torch.ops.mkldnn._is_mkldnn_bf16_supported())\n'
            f'os.environ["{cpu_class.VARIABLE}"] = "avx2"\n'
            'try:\n    cpu_class.apply()\n    refused = None\n'
            'except RuntimeError as exc:\n    refused = str(exc)\n'
            'print(json.dumps({"native": native, "refused": refused}))\n')
    got = _probe('native', code)
    if got['native'] == ['AVX2', False]:     # a CPU of that class already: nothing to refuse
        assert got['refused'] is None
    else:
        assert 'set it in the environment of the process' in got['refused']


def test_the_avx2_class_resolves_the_products_dtypes_as_a_cpu_without_bf16():
    code = ('import json, cpu_class\ncpu_class.apply()\n'
            'from dpt_ros.backends import precision\n'
            'print(json.dumps([precision.for_torch(d).executed for d in ("auto", "bf16")]))\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SUPPORT, ROOT]))
    for key in set().union(*cpu_class.CLASSES.values()):
        env.pop(key, None)
    env[cpu_class.VARIABLE] = 'avx2'
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ['fp32', 'fp32']


def test_this_session_runs_as_its_class():
    """test/conftest.py applied $DPT_ROS_CPU_CLASS before torch chose its kernels."""
    import torch
    for key, value in cpu_class.inherited(os.environ.get(cpu_class.VARIABLE)).items():
        assert os.environ[key] == value, key
    here = {'capability': torch.backends.cpu.get_cpu_capability(),
            'bf16': bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}
    fresh = _probe(None)
    assert here == {'capability': fresh['capability'], 'bf16': fresh['bf16']}
