"""
The CPU classes the suite can run as (test/cpu_class.py, DPT_ROS_CPU_CLASS).

Each class is checked in a fresh process, through the same apply() that test/conftest.py runs
before torch is imported: what torch then reports about its CPU kernels and about oneDNN's bf16
support (the check torch makes before it sends a bf16 matmul or conv to oneDNN).
"""
import json
import os
import platform
import subprocess
import sys

import cpu_class
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = ('import json, cpu_class; cpu_class.apply(); import torch; print(json.dumps({'
         '"capability": torch.backends.cpu.get_cpu_capability(), '
         '"bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}))')
x86_only = pytest.mark.skipif(platform.machine() != 'x86_64',
                              reason='the CPU classes cap x86 instruction sets')


def _probe(name: str | None) -> dict:
    """
    Return what torch reports in a fresh process started with DPT_ROS_CPU_CLASS=name only.

    None: with this process's environment as it is.
    """
    env = dict(os.environ)
    if name is not None:
        keys = set().union(*cpu_class.CLASSES.values()) | {cpu_class.VARIABLE}
        env = {k: v for k, v in env.items() if k not in keys}
        env[cpu_class.VARIABLE] = name
    env['PYTHONPATH'] = HERE
    proc = subprocess.run([sys.executable, '-c', PROBE], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@x86_only
def test_avx2_class_leaves_torch_without_avx512_and_without_onednn_bf16():
    assert _probe('avx2') == {'capability': 'AVX2', 'bf16': False}


def test_native_sets_nothing_and_an_unknown_class_is_one_clear_error():
    assert cpu_class.settings('native') == cpu_class.settings('') == {}
    assert cpu_class.settings(None) == {}
    with pytest.raises(ValueError, match="'zen9' is not a CPU class; choose one of native"):
        cpu_class.settings('zen9')
    proc = subprocess.run([sys.executable, os.path.join(HERE, 'cpu_class.py'), 'zen9'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ''
    assert proc.stderr.count('\n') == 1 and 'not a CPU class' in proc.stderr


def test_apply_sets_the_class_variables_and_the_shell_lines_say_the_same():
    env = {cpu_class.VARIABLE: 'avx2', 'ONEDNN_MAX_CPU_ISA': 'ALL'}
    assert cpu_class.apply(env) == cpu_class.CLASSES['avx2']
    assert env['ONEDNN_MAX_CPU_ISA'] == 'AVX2' and env['ATEN_CPU_CAPABILITY'] == 'avx2'
    out = subprocess.run([sys.executable, os.path.join(HERE, 'cpu_class.py'), 'avx2'],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines() == [f'export {k}={v}' for k, v in cpu_class.CLASSES['avx2'].items()]


def test_this_session_runs_as_its_class():
    """test/conftest.py applied $DPT_ROS_CPU_CLASS before torch chose its kernels."""
    import torch
    for key, value in cpu_class.settings(os.environ.get(cpu_class.VARIABLE)).items():
        assert os.environ[key] == value, key
    here = {'capability': torch.backends.cpu.get_cpu_capability(),
            'bf16': bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}
    assert here == _probe(None)
