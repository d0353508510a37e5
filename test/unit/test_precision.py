"""
backends/precision.py: dtype auto | fp32 | bf16 resolved against injected CPU capabilities.

Both branches (a CPU with bf16 units and one without) run on every machine: the capabilities
are given, never read from this CPU, except in the last tests, which check the reading.
"""
import os

from dpt_ros.backends import precision
from dpt_ros.backends.base import BackendInfo
import pytest

XEON_AMX = {'avx2', 'avx512f', 'avx512_bf16', 'amx_tile', 'amx_bf16'}
ZEN4 = {'avx2', 'avx512f', 'avx512_bf16'}
ZEN3 = {'avx2', 'fma', 'sse4_2'}
NO_ENV: dict = {}
# OPTIMIZATION_CAPABILITIES as OpenVINO 2026.4 reports them on an AMX Xeon and on a Zen 3.
OV_XEON = ('BF16', 'WINOGRAD', 'FP32', 'FP16', 'INT8', 'BIN', 'EXPORT_IMPORT')
OV_ZEN3 = ('FP32', 'INT8', 'BIN', 'EXPORT_IMPORT')


@pytest.mark.parametrize('flags, native', [(XEON_AMX, True), (ZEN4, True), (ZEN3, False),
                                           ({'amx_bf16'}, True), (set(), False)])
def test_torch_auto_is_bf16_exactly_where_the_cpu_has_bf16_units(flags, native):
    p = precision.for_torch('auto', 'cpu', flags, NO_ENV)
    assert (p.executed, p.native_bf16) == ('bf16' if native else 'fp32', native)
    assert p.text == f'auto -> {p.executed}'
    assert p.warning('torch') is None


def test_torch_explicit_dtypes():
    fp32 = precision.for_torch('fp32', 'cpu', XEON_AMX, NO_ENV)
    assert (fp32.executed, fp32.text, fp32.warning('torch')) == ('fp32', 'fp32', None)
    native = precision.for_torch('bf16', 'cpu', ZEN4, NO_ENV)
    assert (native.executed, native.text, native.warning('torch')) == ('bf16', 'bf16', None)
    # No bf16 units: fp32 runs (emulated bf16 is only slower), with one warning naming both.
    zen3 = precision.for_torch('bf16', 'cpu', ZEN3, NO_ENV)
    assert (zen3.executed, zen3.native_bf16, zen3.text) == ('fp32', False, 'bf16 -> fp32 executed')
    warning = zen3.warning('torch')
    assert 'bf16 -> fp32 executed' in warning and 'avx512_bf16' in warning and '\n' not in warning


def test_torch_on_cuda_keeps_fp32_for_auto_and_runs_explicit_dtypes():
    assert precision.for_torch('auto', 'cuda', ZEN3, NO_ENV).executed == 'fp32'
    p = precision.for_torch('bf16', 'cuda', ZEN3, NO_ENV)
    assert (p.executed, p.warning('torch')) == ('bf16', None)


@pytest.mark.parametrize('caps, native', [(OV_XEON, True), (OV_ZEN3, False), ((), False)])
def test_openvino_follows_its_optimization_capabilities(caps, native):
    auto = precision.for_openvino('auto', caps, NO_ENV)
    assert auto.executed == ('bf16' if native else 'fp32') and auto.warning('openvino') is None
    bf16 = precision.for_openvino('bf16', caps, NO_ENV)
    if native:
        assert (bf16.executed, bf16.text, bf16.warning('openvino')) == ('bf16', 'bf16', None)
    else:
        # OpenVINO cannot run bf16 here: fp32 executes, and every output says so.
        assert (bf16.executed, bf16.text) == ('fp32', 'bf16 -> fp32 executed')
        assert 'bf16 -> fp32 executed' in bf16.warning('openvino')
    assert precision.for_openvino('fp32', caps, NO_ENV).executed == 'fp32'


@pytest.mark.parametrize('environ, native', [
    ({precision.NO_BF16_ENV: '1'}, False),
    ({precision.NO_BF16_ENV: '0'}, True),
    ({precision.ONEDNN_ISA_ENV: 'avx2'}, False),
    ({precision.ONEDNN_ISA_ENV: 'AVX512_CORE_VNNI'}, False),
    ({precision.ONEDNN_ISA_ENV: 'AVX512_CORE_BF16'}, True),
    ({precision.ONEDNN_ISA_ENV: 'AVX512_CORE_AMX'}, True),
])
def test_overrides_rule_native_bf16_out_for_both_backends(environ, native):
    assert precision.for_torch('auto', 'cpu', XEON_AMX, environ).native_bf16 is native
    p = precision.for_openvino('auto', OV_XEON, environ)
    assert (p.native_bf16, p.executed) == (native, 'bf16' if native else 'fp32')
    if not native:
        assert list(environ)[0] in p.basis


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match='auto, fp32, bf16'):
        precision.resolve('fp16', True, '')


def test_texts_name_requested_and_executed():
    assert precision.describe_dtype('fp32', 'fp32') == 'fp32'
    assert precision.describe_dtype('auto', 'bf16') == 'auto -> bf16'
    assert precision.describe_dtype('bf16', 'fp32') == 'bf16 -> fp32 executed'
    assert precision.describe_dtype('', 'bf16 activations, bfloat8_b weights') == \
        'bf16 activations, bfloat8_b weights'      # tt: no dtype option applies
    info = BackendInfo(name='openvino', device='cpu', dtype='fp32', image_size=64,
                       dtype_requested='bf16')
    assert info.dtype_text == 'bf16 -> fp32 executed'
    assert info.as_dict()['dtype_requested'] == 'bf16'
    assert precision.from_openvino('f32') == 'fp32' and precision.from_openvino('bf16') == 'bf16'


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nmodel name\t: AMD EPYC 7B13\n'
                       'flags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nflags\t\t: other\n')
    assert precision.cpu_flags(str(cpuinfo)) == {'fpu', 'sse2', 'avx2', 'fma'}
    assert precision.cpu_flags(str(tmp_path / 'missing')) == frozenset()


def test_by_default_this_cpu_and_this_environment_are_read():
    assert precision.for_torch('auto') == precision.for_torch('auto', 'cpu',
                                                              precision.cpu_flags(), os.environ)
    p = precision.for_torch('auto')
    line = precision.summary('torch')
    assert p.text in line and p.basis in line and '\n' not in line
