"""
Run the tests (or a benchmark) as a CPU of another class would: ``DPT_ROS_CPU_CLASS``.

CI can land on CPUs without AVX-512 or bf16 units (AMD Zen 3). There torch's bf16 matmul
leaves oneDNN for a plain loop, ~200x slower than fp32. On any x86 machine these
environment variables make torch, oneDNN and MKL act as on such a CPU (measured by
bench/bench_cpu_class.py, figures in docs/benchmarks.md):

* ``ONEDNN_MAX_CPU_ISA`` caps oneDNN's ISA. torch asks oneDNN (ideep's bf16 support check,
  ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) before it routes a bf16 matmul there, so
  capped at AVX2 bf16 ``a @ b`` takes the slow fallback, as on a Zen 3.
* ``ATEN_CPU_CAPABILITY`` picks torch's own vectorised kernels (AVX2 instead of AVX-512).
* ``MKL_ENABLE_INSTRUCTIONS`` caps MKL (torch's fp32 GEMM) to the class's ISA.

Not reached: OpenVINO's CPU plugin reads the CPU itself and still reports (and runs) BF16
under ``avx2``; a test of what OpenVINO executes must ask OpenVINO, not this module.

Use: ``DPT_ROS_CPU_CLASS=avx2 scripts/test.sh`` (scripts/test.sh exports the variables, so
every process of the run inherits them; test/conftest.py applies them too, for a plain
pytest run). ``python test/cpu_class.py avx2`` prints the ``export`` lines.
"""
import os
import sys

VARIABLE = 'DPT_ROS_CPU_CLASS'
CLASSES = {
    # This machine as it is.
    'native': {},
    # AVX2 only, no AVX-512, no bf16 units: AMD Zen 3 (and Intel before Skylake-SP).
    'avx2': {'ATEN_CPU_CAPABILITY': 'avx2', 'ONEDNN_MAX_CPU_ISA': 'AVX2',
             'MKL_ENABLE_INSTRUCTIONS': 'AVX2'},
}


def settings(name: str | None) -> dict:
    """Return the environment of CPU class `name` ('' or None: native); ValueError if unknown."""
    name = name or 'native'
    if name not in CLASSES:
        raise ValueError(f'{VARIABLE}={name!r} is not a CPU class; choose one of '
                         f'{", ".join(CLASSES)}')
    return dict(CLASSES[name])


def apply(environ=os.environ) -> dict:
    """Set the variables of the class named by $DPT_ROS_CPU_CLASS in `environ`; return them."""
    wanted = settings(environ.get(VARIABLE))
    environ.update(wanted)
    if wanted and 'torch' in sys.modules and environ is os.environ:
        # ATen and oneDNN read these once, at first use: too late would be silently native.
        import torch
        if torch.backends.cpu.get_cpu_capability().lower() != wanted['ATEN_CPU_CAPABILITY']:
            raise RuntimeError(f'{VARIABLE} applied after torch chose its CPU kernels; set it '
                               'in the environment of the process instead')
    return wanted


if __name__ == '__main__':
    try:
        for key, value in settings(sys.argv[1] if len(sys.argv) > 1 else None).items():
            print(f'export {key}={value}')
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(2)
