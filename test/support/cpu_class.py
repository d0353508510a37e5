"""
Run the tests (or a benchmark) as a CPU of another class would: ``DPT_ROS_CPU_CLASS``.

CI can land on CPUs without AVX-512 or bf16 units (AMD Zen 3). There torch's bf16 matmul
leaves oneDNN for a plain loop, ~200x slower than fp32. On any x86 machine the class ``avx2``
makes torch act as on such a CPU (measured by bench/bench_cpu_class.py, figures in
docs/benchmarks.md):

* ``ONEDNN_MAX_CPU_ISA=AVX2`` caps oneDNN. torch asks oneDNN (ideep's bf16 check,
  ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) before it routes a bf16 matmul or conv
  there, so capped, bf16 takes the slow fallback as on a Zen 3. oneDNN reads the cap once per
  process, and OpenVINO carries a oneDNN of its own that reads the same variable but decides
  bf16 from the CPU itself: capped, it accepts bf16 and then cannot compile it. So apply() caps
  torch's oneDNN only (sets the variable, makes torch read it, removes it again).
* ``ATEN_CPU_CAPABILITY=avx2``: torch's own vectorised kernels, AVX2 instead of AVX-512.
* ``MKL_ENABLE_INSTRUCTIONS=AVX2``: MKL (torch's fp32 GEMM) capped as well.
* ``DPT_ROS_CPU_NO_BF16=1``: the product's own capability check (dpt_ros/backends/precision.py)
  resolves as on such a CPU, for torch and OpenVINO, so `auto` and an explicit bf16 run fp32
  as they would there (OpenVINO itself still sees this machine's units).

Not reached: OpenVINO's kernels (they run as on this machine), and the oneDNN cap in child
processes (nodes, dry-runs), which inherit the other variables only.

Use: ``DPT_ROS_CPU_CLASS=avx2 scripts/test.sh``; test/conftest.py calls apply() before
anything imports torch. ``python test/support/cpu_class.py avx2`` prints the ``export`` lines of
the inherited variables.
"""
import os
import sys

VARIABLE = 'DPT_ROS_CPU_CLASS'
CLASSES = {
    # This machine as it is.
    'native': {},
    # AVX2 only, no AVX-512, no bf16 units: AMD Zen 3 (and Intel before Skylake-SP).
    'avx2': {'ATEN_CPU_CAPABILITY': 'avx2', 'MKL_ENABLE_INSTRUCTIONS': 'AVX2',
             'ONEDNN_MAX_CPU_ISA': 'AVX2', 'DPT_ROS_CPU_NO_BF16': '1'},
}
# Read once per process by torch's oneDNN and by OpenVINO's alike: set for torch only.
TORCH_ONLY = ('ONEDNN_MAX_CPU_ISA',)


def settings(name: str | None) -> dict:
    """Return every variable of CPU class `name` ('' or None: native); ValueError if unknown."""
    name = name or 'native'
    if name not in CLASSES:
        raise ValueError(f'{VARIABLE}={name!r} is not a CPU class; choose one of '
                         f'{", ".join(CLASSES)}')
    return dict(CLASSES[name])


def inherited(name: str | None) -> dict:
    """Return the variables of class `name` that child processes inherit."""
    return {k: v for k, v in settings(name).items() if k not in TORCH_ONLY}


def apply() -> dict:
    """Make this process the class named by $DPT_ROS_CPU_CLASS; return the class's variables."""
    wanted = settings(os.environ.get(VARIABLE))
    if not wanted:
        return wanted
    os.environ.update(inherited(os.environ.get(VARIABLE)))
    saved = {k: os.environ.get(k) for k in TORCH_ONLY}
    os.environ.update({k: v for k, v in wanted.items() if k in TORCH_ONLY})
    try:
        import torch
        bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()   # torch's oneDNN reads it here
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    # ATen and oneDNN read these once, at first use: too late would be silently native.
    if torch.backends.cpu.get_cpu_capability().lower() != wanted['ATEN_CPU_CAPABILITY'] \
            or (wanted.get('ONEDNN_MAX_CPU_ISA') == 'AVX2' and bf16):
        raise RuntimeError(f'{VARIABLE} applied after torch chose its CPU kernels; set it in '
                           'the environment of the process instead')
    return wanted


if __name__ == '__main__':
    try:
        for key, value in inherited(sys.argv[1] if len(sys.argv) > 1 else None).items():
            print(f'export {key}={value}')
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(2)
