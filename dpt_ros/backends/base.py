"""The one small interface every depth backend implements, and its error type.

A backend takes a preprocessed batch (N, 3, S, S) float32 (already normalised exactly as the
Intel/dpt-large processor does) and returns the model's raw `predicted_depth` (N, S, S)
float32: relative inverse depth at model resolution. Resizing back to the camera image is the
pipeline's job, so every backend is compared on the same tensor.

`max_concurrency` says how many `infer` calls may run at once from different threads (1 for
torch; the data-parallel degree for TT, one call per chip). Callers that want dp > 1
throughput run that many worker threads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


class BackendError(RuntimeError):
    """A backend could not start or could not run; the message says why and what to do."""


class BackendUnavailable(BackendError):
    """The requested backend cannot start here (missing package, no device, no CUDA)."""


@dataclass
class BackendInfo:
    """What a backend is, for logs, diagnostics and perf JSON."""

    name: str                    # registry name: 'torch', 'tt', ...
    device: str                  # 'cpu', 'cuda:0', 'wormhole_n300:0', ...
    dtype: str                   # 'fp32', 'bf16', 'bf16/bfp8_b weights', ...
    image_size: int              # model input side S (square)
    execution_mode: str = 'eager'  # eager | compile | trace | trace_2cq
    dp: int = 1                  # data-parallel degree (chips)
    batch_size: int = 1          # frames per infer() call the backend is tuned for
    model_name: str = 'Intel/dpt-large'
    weights: str = 'unknown'     # what was actually loaded: hub id, path, 'random (seed 0)'
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != 'extra'}
        d.update(self.extra)
        return d


@runtime_checkable
class DepthBackend(Protocol):
    """Batch in, depth maps out, close."""

    info: BackendInfo
    max_concurrency: int

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on (N, 3, S, S) float32; return (N, S, S) float32 predicted_depth."""
        ...

    def fallback_counts(self) -> dict[str, int]:
        """Counters of fallbacks inside the backend (host fallbacks, program configs)."""
        ...

    def close(self) -> None:
        """Release the device, traces and memory. Safe to call twice."""
        ...
