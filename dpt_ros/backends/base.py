"""
The one small interface every depth backend implements, and its error type.

A backend takes a preprocessed batch and returns the model's raw `predicted_depth` (N, S, S)
float32: relative inverse depth at model resolution. Resizing back to the camera image is the
pipeline's job, so every backend is compared on the same tensor. Two input formats:

* 'normalized' — (N, 3, S, S) float, resized and normalised exactly as the Intel/dpt-large
  processor does (`preprocess.preprocess`). Every backend takes it.
* 'pixels' — (N, S, S, 3) uint8 RGB, the same resize without the normalisation
  (`preprocess.resize_pixels`). Taken by backends whose `info.input_format` says 'pixels':
  those apply the normalisation themselves where it costs nothing (the TT model folds it into
  its patch-embedding weights), so the host neither computes nor ships a float32 tensor 4x
  the size. The pipeline gives each backend the format it names.

`max_concurrency` says how many `infer` calls may run at once from different threads (1 for
torch; the data-parallel degree for TT, one call per chip). Callers that want dp > 1
throughput run that many worker threads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dpt_ros.backends.precision import describe_dtype
from dpt_ros.errors import BackendError
import numpy as np


@dataclass
class BackendInfo:
    """What a backend is, for logs, diagnostics and perf JSON."""

    name: str                    # registry name: 'torch', 'tt', ...
    device: str                  # 'cpu', 'cuda:0', 'wormhole_n300:0', ...
    dtype: str                   # executed: 'fp32', 'bf16', 'bf16 activations, ...' (tt)
    image_size: int              # model input side S (square)
    execution_mode: str = 'eager'  # eager | compile | trace | trace_2cq
    dp: int = 1                  # data-parallel degree (chips)
    batch_size: int = 1          # frames per infer() call the backend is tuned for
    model_name: str = 'Intel/dpt-large'
    weights: str = 'unknown'     # what was actually loaded: hub id, path, 'random (seed 0)'
    input_format: str = 'normalized'  # the batch infer() takes: vocabulary.INPUT_FORMATS
    dtype_requested: str = ''    # the dtype option (auto | fp32 | bf16); '' where none applies
    # Device time (ms) of the last infer() call apart from host work; None where a backend
    # cannot tell them apart (the CPU ones). The pipeline's device FPS comes from it.
    device_ms: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dtype_text(self) -> str:
        """Return requested and executed dtype in words, e.g. 'bf16 -> fp32 executed'."""
        return describe_dtype(self.dtype_requested, self.dtype)

    def as_dict(self) -> dict:
        # device_ms is a per-call figure, not what the backend is (TT's is in extra too).
        d = {k: v for k, v in self.__dict__.items() if k not in ('extra', 'device_ms')}
        d.update(self.extra)
        return d


def batch_format(batch: np.ndarray, size: int) -> str:
    """
    Name a batch's format: 'normalized' (N, 3, S, S) float, 'pixels' (N, S, S, 3) uint8.

    A BackendError naming both otherwise.
    """
    shape = tuple(batch.shape)
    if len(shape) == 4 and shape[0] > 0:
        if shape[1:] == (3, size, size) and np.issubdtype(batch.dtype, np.floating):
            return 'normalized'
        if shape[1:] == (size, size, 3) and batch.dtype == np.uint8:
            return 'pixels'
    raise BackendError(f'expected a normalised (N, 3, {size}, {size}) float batch or '
                       f'(N, {size}, {size}, 3) uint8 pixels, got shape {shape} {batch.dtype}')


@runtime_checkable
class DepthBackend(Protocol):
    """Batch in, depth maps out, close."""

    info: BackendInfo
    max_concurrency: int

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """
        Run the model on a batch in a format it takes (see above).

        Return (N, S, S) float32 predicted_depth.
        """
        ...

    def fallback_counts(self) -> dict[str, int]:
        """Counters of fallbacks inside the backend (host fallbacks, program configs)."""
        ...

    def close(self) -> None:
        """Release the device, traces and memory. Safe to call twice."""
        ...
