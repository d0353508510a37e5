"""
The torch backend: DPT-Large on CPU or CUDA, fp32 or bf16, eager or torch.compile.

dtype auto runs bf16 where the CPU has bf16 units, fp32 elsewhere; an explicit bf16 where it has
none runs fp32 too (emulated bf16 is several times slower) with one WARN line (precision.py).

It is also the reference every other backend is compared with (CPU fp32, same weights) and the
fallback when the TT backend cannot start.

Speed choices (DPT-Large 384x384, one frame, 2-core Zen 4 CPU with AVX512-BF16, no AMX):
- bf16 casts the weights (`model.to(torch.bfloat16)`) rather than using autocast, which
  re-casts every weight on every call (measured 2.24 s vs 2.14 s per frame eager); outputs
  are returned as float32. PCC vs fp32 on random DPT-Large weights: 0.9996.
- torch.compile (inductor, with freezing so weights are pre-packed for oneDNN) fuses the
  elementwise work between the GEMMs (GELU, LayerNorm, residual adds): 1.43 s vs 1.68 s
  without freezing in the same conditions; about 1.65 s vs 2.83 s for the fp32 transformers
  baseline when the machine was quiet (bench/bench_cpu.py). The model is GEMM/conv bound and
  a bf16 GEMM here runs at about 1.85x the fp32 rate, which bounds the bf16 speed-up.
  Compilation happens on the first call; if it fails (no C++ compiler, unsupported op) the
  backend logs a warning and carries on eagerly, counting it in compile_fallback_count.
- channels_last only changes the conv layers (neck and head); it is on for CUDA, where cuDNN
  prefers NHWC, and off on CPU, where it measured no faster (1.45 s vs 1.43 s compiled).
"""
from __future__ import annotations

import dataclasses
import logging
import threading

from dpt_ros import vocabulary
from dpt_ros.backends import BackendOptions, precision
from dpt_ros.backends.base import BackendInfo
from dpt_ros.errors import BackendError, BackendUnavailable
import numpy as np

log = logging.getLogger('dpt_ros.backends.torch')

DTYPES = vocabulary.DTYPES


def _torch_device(device: str):
    import torch
    if device == 'cpu':
        return torch.device('cpu')
    if device == 'cuda' or device.startswith('cuda:'):
        if not torch.cuda.is_available():
            raise BackendUnavailable(f"device '{device}' requested but CUDA is not available "
                                     '(no GPU or a CPU-only torch); use device cpu')
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendUnavailable(f"device '{device}' requested but only "
                                     f'{torch.cuda.device_count()} CUDA device(s) exist')
        return dev
    raise BackendError(f"the torch backend runs on 'cpu' or 'cuda[:N]', not '{device}'")


def _own_model(opts: BackendOptions, loaded, dtype: str):
    """Load the weights, or take the caller's model (a copy where .to() would change it)."""
    if loaded is None:
        from dpt_ros.inference.hf_model import load_model
        return load_model(opts.weights, seed=opts.seed, image_size=opts.image_size)
    if dtype != 'fp32' or opts.device != 'cpu':
        # .to() converts a module in place: keep the caller's fp32 CPU model intact
        # (eval_pcc runs its reference on it).
        import copy
        return dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))
    return loaded


class TorchBackend:
    """DPTForDepthEstimation behind the DepthBackend protocol."""

    max_concurrency = 1   # torch already uses every core for one call

    def __init__(self, opts: BackendOptions, loaded=None):
        import torch

        if opts.dtype not in DTYPES:
            raise BackendError(f"torch backend dtype must be one of {', '.join(DTYPES)}, "
                               f"not '{opts.dtype}'")
        self._device = _torch_device(opts.device)
        self.precision = precision.for_torch(opts.dtype, self._device.type)
        if self.precision.warning('torch'):
            log.warning('%s', self.precision.warning('torch'))
        if opts.threads and opts.threads > 0:
            # Process-wide setting: the node and runner own the process, so this is theirs.
            torch.set_num_threads(int(opts.threads))
        loaded = _own_model(opts, loaded, self.precision.executed)
        self.loaded = loaded
        model = loaded.model.eval()
        model_size = int(model.config.image_size)
        if model_size != opts.image_size:
            raise BackendError(f'model was built for {model_size}px input, options ask for '
                               f'{opts.image_size}px')
        self._dtype = torch.bfloat16 if self.precision.executed == 'bf16' else torch.float32
        self._channels_last = self._device.type == 'cuda'
        model = model.to(self._device, dtype=self._dtype)
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        self._eager = model
        self._compiled = None
        self._compile_fallbacks = 0
        self._compile_error = ''
        if opts.compile:
            try:
                # freezing: weights become constants, so inductor pre-packs them for oneDNN
                # (measured 1.43 s vs 1.68 s per DPT-Large frame in bf16 on 2 cores).
                self._compiled = torch.compile(model, dynamic=False,
                                               options={'freezing': True})
            except Exception as exc:  # torch.compile raises many types
                self._compile_failed(exc)
        self._lock = threading.Lock()
        self._closed = False
        self.image_size = int(opts.image_size)
        model_name = ('dpt-tiny (same architecture, small config)'
                      if loaded.config_name == 'tiny' else 'Intel/dpt-large')
        self.info = BackendInfo(
            name='torch', device=str(self._device), dtype=self.precision.executed,
            dtype_requested=opts.dtype, image_size=self.image_size,
            execution_mode='compile' if self._compiled is not None else 'eager',
            dp=1, batch_size=max(1, int(opts.batch_size)), model_name=model_name,
            weights=loaded.weights,
            extra={'weights_random': bool(loaded.is_random),
                   'config_name': loaded.config_name,
                   'torch_version': torch.__version__,
                   'threads': torch.get_num_threads(),
                   'channels_last': self._channels_last,
                   'compile_requested': bool(opts.compile),
                   'bf16_native': self.precision.native_bf16,
                   'dtype_basis': self.precision.basis})
        if loaded.is_random:
            log.warning('torch backend is running RANDOM weights (%s): outputs are not depth',
                        loaded.weights)

    def _compile_failed(self, exc: BaseException) -> None:
        self._compile_fallbacks += 1
        self._compile_error = f'{type(exc).__name__}: {str(exc).splitlines()[0][:300]}' \
            if str(exc) else type(exc).__name__
        self._compiled = None
        log.warning('torch.compile failed (%s); running eagerly instead', self._compile_error)
        if hasattr(self, 'info'):
            self.info.execution_mode = 'eager'
            self.info.extra['compile_error'] = self._compile_error

    def _run(self, x):
        if self._compiled is not None:
            try:
                return self._compiled(pixel_values=x).predicted_depth
            except Exception as exc:  # inductor/dynamo failures surface on first call
                self._compile_failed(exc)
        return self._eager(pixel_values=x).predicted_depth

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 -> (N, S, S) float32 predicted_depth."""
        import torch

        if self._closed:
            raise BackendError('torch backend is closed')
        batch = np.asarray(batch)
        s = self.image_size
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s) or batch.shape[0] == 0:
            raise BackendError(f'expected a (N, 3, {s}, {s}) batch, got shape {batch.shape}')
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self._device, dtype=self._dtype)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._lock, torch.inference_mode():
            out = self._run(x)
            out = out.float().cpu().numpy()
        return out.reshape(batch.shape[0], s, s)

    def stage_breakdown_ms(self, batch: np.ndarray) -> dict[str, float]:
        """
        Time backbone / reassembly / fusion+head in one extra eager pass (forward hooks).

        Compiled graphs have no module boundaries, so this always runs the eager model (same
        dtype and device); the figures show where time goes, not the compiled total.
        """
        import time

        import torch

        model = self._eager
        if model is None:
            raise BackendError('torch backend is closed')
        marks: dict[str, float] = {}
        sync = torch.cuda.synchronize if self._device.type == 'cuda' else (lambda: None)

        def mark(name):
            def hook(*_args):
                sync()
                marks[name] = time.perf_counter()
            return hook

        handles = [
            model.dpt.register_forward_pre_hook(mark('start')),
            model.neck.register_forward_pre_hook(mark('neck')),
            model.neck.fusion_stage.register_forward_pre_hook(mark('fusion')),
            model.head.register_forward_hook(mark('end')),
        ]
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self._device, dtype=self._dtype)
        try:
            with self._lock, torch.inference_mode():
                model(pixel_values=x)
        finally:
            for h in handles:
                h.remove()
        return {'backbone_ms': (marks['neck'] - marks['start']) * 1e3,
                'reassembly_ms': (marks['fusion'] - marks['neck']) * 1e3,
                'fusion_head_ms': (marks['end'] - marks['fusion']) * 1e3}

    def fallback_counts(self) -> dict[str, int]:
        """compile_fallback_count: 1 when torch.compile was asked for but eager runs."""
        return {'compile_fallback_count': self._compile_fallbacks}

    def close(self) -> None:
        """Drop the model (frees its memory once no one else holds it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._compiled = None
        self._eager = None
        if self._device.type == 'cuda':
            import torch
            torch.cuda.empty_cache()


def create(opts: BackendOptions, loaded=None) -> TorchBackend:
    """
    Create the backend for the registry (`create_backend('torch', opts)`).

    `loaded` (a model.LoadedModel) lets callers share one loaded model between backends,
    e.g. eval_pcc's fp32 reference and the bf16 run under test.
    """
    return TorchBackend(opts, loaded)
