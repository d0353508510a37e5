"""
Backend registry and the fallback policy.

`create_backend('tt', opts)` imports the backend module lazily (so a machine without ttnn or
torch still imports dpt_ros), starts it, and when it cannot start either falls back to the
torch CPU backend — counted in `backend_fallback_count` and logged with the reason — or, with
`allow_fallback=False`, raises `BackendUnavailable` with that reason.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import importlib
import logging
from typing import Callable

from dpt_ros.backends.base import BackendInfo, DepthBackend

from dpt_ros.errors import BackendError, BackendUnavailable

__all__ = ['BackendError', 'BackendInfo', 'BackendOptions', 'BackendUnavailable',
           'DepthBackend', 'StartedBackend', 'create_backend', 'register_backend',
           'BACKENDS']

log = logging.getLogger('dpt_ros.backends')


@dataclass
class BackendOptions:
    """
    Everything a backend needs to start.

    These are the node parameters' defaults but for dtype (fp32 here, the machine-independent
    reference for code that builds options; the node and the command lines default to auto).
    What each one means, for which backend, is said once, in the parameter table
    (dpt_ros/ros/params.py), which config/dpt.yaml and the launch arguments are generated from.
    """

    weights: str = 'auto'            # every backend
    image_size: int = 384            # every backend
    device: str = 'cpu'              # openvino: cpu; torch: cpu | cuda[:i]; tt: a board
    dtype: str = 'fp32'              # torch and openvino: auto | fp32 | bf16 (precision.py)
    compile: bool = False  # noqa: A003 -- torch.compile (torch only); the runner's flag
    execution_mode: str = 'trace_2cq'  # tt only
    dp: int = 1                      # tt only: chips used in data parallel
    batch_size: int = 1
    strict: bool = False             # tt only
    cache_dir: str = ''              # tt prepared weights and openvino converted models
    seed: int = 0                    # random weights (every backend)
    threads: int = 0                 # torch intra-op and openvino inference threads
    streams: int = 1                 # openvino only: >1 = THROUGHPUT hint, frames at once
    trace_region_mb: int = 32        # tt only: trace region per chip, MiB
    dispatch_core: str = 'auto'      # tt only: vocabulary.TT_DISPATCH_CORES
    precision: str = 'accurate'      # tt only: vocabulary.TT_PRECISIONS (encoder numerics)
    chip_batch: int = 1              # tt only: frames per chip per device run (throughput: 2)
    chip_batch_wait_ms: float = 10.0  # tt only: how long a run waits for its other frames
    selfcheck: bool = True           # tt only: prove each chip against torch fp32 first
    selfcheck_min_pcc: float = 0.99  # tt only: a chip below this PCC leaves the rotation

    def replace(self, **changes) -> 'BackendOptions':
        return dataclasses.replace(self, **changes)


@dataclass
class StartedBackend:
    """A running backend plus what happened while starting it."""

    backend: DepthBackend
    requested: str
    fallback_reason: str | None = None   # why the requested backend is not the one running

    @property
    def fell_back(self) -> bool:
        return self.fallback_reason is not None


# name -> 'module:factory'; factories take BackendOptions and return a DepthBackend.
BACKENDS: dict[str, str] = {
    'torch': 'dpt_ros.backends.torch_backend:create',
    'openvino': 'dpt_ros.backends.openvino_backend:create',
    'tt': 'dpt_ros.backends.tt_backend:create',
}


def register_backend(name: str, target: str) -> None:
    """Add a backend ('module:factory'); tests use this for their stand-in backends."""
    BACKENDS[name] = target


def _factory(name: str) -> Callable[[BackendOptions], DepthBackend]:
    if name not in BACKENDS:
        raise BackendError(
            f"unknown backend '{name}'; choose one of: {', '.join(sorted(BACKENDS))}")
    module_name, attr = BACKENDS[name].split(':')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend '{name}' needs a package that is not installed: {exc}") from exc
    except Exception as exc:  # a broken install must end in one clear line, not a traceback
        raise BackendUnavailable(
            f"backend '{name}' could not be imported ({module_name}): "
            f'{type(exc).__name__}: {exc}') from exc
    return getattr(module, attr)


def create_backend(name: str, opts: BackendOptions, *, allow_fallback: bool = True,
                   fallback: str = 'torch', loaded=None,
                   logger: logging.Logger | None = None) -> StartedBackend:
    """
    Start backend `name`; on BackendUnavailable fall back to torch CPU or raise.

    Falls back for any request that is not already torch on the CPU: tt without ttnn or a
    device, torch on CUDA without CUDA. The caller counts `backend_fallback_count` from
    `StartedBackend.fell_back` and shows the reason (diagnostics WARN, perf JSON).
    `loaded` (an inference.hf_model.LoadedModel) lets a caller that already holds the model share
    it with the backend, and with the fallback, instead of loading it twice.
    """
    logger = logger or log
    try:
        return StartedBackend(_make(name, opts, loaded), requested=name)
    except BackendUnavailable as exc:
        # Falling back means torch on the CPU; a request that already was exactly that has
        # nowhere to go. torch on CUDA without CUDA does fall back (same policy as tt).
        already_cpu_fallback = name == fallback and opts.device == 'cpu'
        if not allow_fallback or already_cpu_fallback:
            raise
        reason = str(exc)
    logger.warning("backend '%s' (device %s) unavailable (%s); falling back to '%s' on cpu "
                   '(counted in backend_fallback_count)', name, opts.device, reason, fallback)
    cpu_opts = opts.replace(device='cpu', dp=1, batch_size=1)
    backend = _make(fallback, cpu_opts, loaded)
    requested = name if name != fallback else f'{name}:{opts.device}'
    return StartedBackend(backend, requested=requested, fallback_reason=reason)


def _make(name: str, opts: BackendOptions, loaded) -> DepthBackend:
    factory = _factory(name)
    return factory(opts) if loaded is None else factory(opts, loaded)
