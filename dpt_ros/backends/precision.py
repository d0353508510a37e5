"""
CPU compute precision by capability: what `dtype: auto | fp32 | bf16` executes on this CPU.

bf16 pays only where the CPU executes it natively. Elsewhere (an AMD Zen 3: AVX2, no bf16
units) torch emulates it, several times slower than fp32 (its bf16 `@` about 200x), and
OpenVINO cannot run it at all: asked for bf16 it compiles f32. So:

* `auto` (the node's and the tools' default) is bf16 where the CPU runs it natively, else fp32;
* an explicit `bf16` on a CPU without it is a WARN line and runs fp32 (torch would emulate it
  several times slower, OpenVINO cannot run it). Every output names both:
  `bf16 -> fp32 executed`.

Native means: for torch, `avx512_bf16` or `amx_bf16` in the CPU flags; for OpenVINO, its CPU
plugin's OPTIMIZATION_CAPABILITIES containing BF16. Either is overruled by a oneDNN ISA cap
below bf16 (`ONEDNN_MAX_CPU_ISA=AVX2`, how a suite emulates an AVX2-only CPU: OpenVINO still
reports BF16 there, then fails to compile bf16) and, for tests and demos only, by
`DPT_ROS_CPU_NO_BF16=1`, which makes this machine resolve as a CPU without bf16 units.

The resolution is pure (capabilities in, `Precision` out) so tests exercise both branches on
any machine; reading the capabilities is separate. No torch import; openvino only when asked.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from typing import Iterable, Mapping

from dpt_ros.vocabulary import DTYPES

# CPU flags (as /proc/cpuinfo names them) of the bf16 units torch's oneDNN kernels use.
TORCH_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
# Testing knob: '1' resolves this machine as a CPU without native bf16 (a Zen 3, say).
NO_BF16_ENV = 'DPT_ROS_CPU_NO_BF16'
ONEDNN_ISA_ENV = 'ONEDNN_MAX_CPU_ISA'
# oneDNN ISA caps that leave out the bf16 instructions (every later one includes them).
ONEDNN_ISAS_WITHOUT_BF16 = frozenset({'SSE41', 'AVX', 'AVX2', 'AVX2_VNNI', 'AVX2_VNNI_2',
                                      'AVX512_CORE', 'AVX512_CORE_VNNI'})
# OpenVINO's element type names -> ours.
_OV_NAMES = {'f32': 'fp32', 'bf16': 'bf16', 'f16': 'fp16'}


@dataclass(frozen=True)
class Precision:
    """What was asked for, what executes, and on what the decision rests."""

    requested: str       # auto | fp32 | bf16
    executed: str        # fp32 | bf16: what the backend computes in
    native_bf16: bool    # the CPU, as the runtime sees it, executes bf16 natively
    basis: str           # the capability it was read from, for logs

    @property
    def text(self) -> str:
        """'fp32', 'auto -> bf16' or 'bf16 -> fp32 executed': requested and executed both."""
        return describe_dtype(self.requested, self.executed)

    def warning(self, backend: str) -> str | None:
        """Return the one WARN line for an explicit bf16 on a CPU without it, else None."""
        if self.requested != 'bf16' or self.native_bf16:
            return None
        return (f'dtype {self.text}: {backend} cannot run bf16 on this CPU ({self.basis}); '
                'dtype auto picks fp32 here without a warning')


def describe_dtype(requested: str, executed: str) -> str:
    """Name both dtypes where they differ; just the executed one where none was requested."""
    if not requested or requested == executed:
        return executed
    if requested == 'auto':
        return f'auto -> {executed}'
    return f'{requested} -> {executed} executed'


def check_dtype(requested: str) -> None:
    """Raise ValueError naming the choices for a dtype that is not one of DTYPES."""
    if requested not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not '{requested}'")


def resolve(requested: str, native_bf16: bool, basis: str) -> Precision:
    """
    Resolve a requested dtype against a capability (pure).

    fp32 -> fp32; auto and bf16 -> bf16 where native, else fp32 (an emulated bf16 would only
    be slower: torch's bf16 matmul ~200x, its linears ~6x on an AVX2-only CPU).
    """
    check_dtype(requested)
    executed = 'bf16' if requested != 'fp32' and native_bf16 else 'fp32'
    return Precision(requested, executed, bool(native_bf16), basis)


def _override(environ: Mapping[str, str]) -> str:
    """Return why the environment rules native bf16 out ('' when it does not)."""
    if environ.get(NO_BF16_ENV, '').strip() == '1':
        return f'{NO_BF16_ENV}=1, a testing override'
    isa = environ.get(ONEDNN_ISA_ENV, '').strip()
    if isa.upper() in ONEDNN_ISAS_WITHOUT_BF16:
        return f'{ONEDNN_ISA_ENV}={isa}'
    return ''


def torch_bf16_support(flags: Iterable[str], environ: Mapping[str, str] | None = None
                       ) -> tuple[bool, str]:
    """Return (native, basis) for torch on a CPU with these /proc/cpuinfo flags."""
    why_not = _override(os.environ if environ is None else environ)
    if why_not:
        return False, why_not
    have = [f for f in TORCH_BF16_FLAGS if f in set(flags)]
    if have:
        return True, 'cpu flags ' + ' '.join(have)
    return False, 'cpu flags: no ' + ' or '.join(TORCH_BF16_FLAGS)


def openvino_bf16_support(capabilities: Iterable[str],
                          environ: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """Return (native, basis) for OpenVINO's CPU plugin with these OPTIMIZATION_CAPABILITIES."""
    why_not = _override(os.environ if environ is None else environ)
    if why_not:
        return False, why_not
    caps = sorted({str(c).upper() for c in capabilities})
    if 'BF16' in caps:
        return True, 'OpenVINO CPU capabilities include BF16'
    return False, 'OpenVINO CPU capabilities: ' + ' '.join(caps)


def for_torch(requested: str, device: str = 'cpu', flags: Iterable[str] | None = None,
              environ: Mapping[str, str] | None = None) -> Precision:
    """
    Resolve a dtype for the torch backend on `device`.

    On CUDA the CPU's units say nothing: auto keeps fp32, an explicit dtype runs as given.
    """
    if device != 'cpu':
        check_dtype(requested)
        executed = 'fp32' if requested == 'auto' else requested
        return Precision(requested, executed, True, f'{device}: auto keeps fp32')
    native, basis = torch_bf16_support(cpu_flags() if flags is None else flags, environ)
    return resolve(requested, native, basis)


def for_openvino(requested: str, capabilities: Iterable[str] | None = None,
                 environ: Mapping[str, str] | None = None) -> Precision:
    """Resolve a dtype for the OpenVINO CPU backend (capabilities read when not given)."""
    caps = openvino_capabilities() if capabilities is None else capabilities
    native, basis = openvino_bf16_support(caps, environ)
    return resolve(requested, native, basis)


def cpu_flags(path: str = '/proc/cpuinfo') -> frozenset[str]:
    """Return the first CPU's flags from /proc/cpuinfo; empty where it cannot be read."""
    try:
        with open(path, encoding='utf-8') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'flags':
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()   # not Linux: no evidence of bf16 units, so auto stays fp32


def openvino_capabilities(core=None) -> tuple[str, ...]:
    """Return OpenVINO's CPU OPTIMIZATION_CAPABILITIES (imports openvino)."""
    if core is None:
        import openvino
        core = openvino.Core()
    return tuple(str(c) for c in core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))


def from_openvino(element_type: str) -> str:
    """Return our name for an OpenVINO precision ('f32' -> 'fp32')."""
    return _OV_NAMES.get(element_type, element_type)


def summary(backend: str, requested: str = 'auto') -> str:
    """One line for scripts: what `requested` executes on this CPU for backend openvino|torch."""
    p = for_openvino(requested) if backend == 'openvino' else for_torch(requested)
    units = 'bf16 units' if p.native_bf16 else 'no bf16 units'
    return f'{backend} dtype {p.text} ({units}: {p.basis})'
