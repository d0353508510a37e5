"""
The numerical reference every PCC in the project is measured against: torch, CPU, fp32, eager.

eval_pcc and bag_eval's offline mode start it with the same weights and seed as the backend
under test and run it on the same prepared inputs; dpt_ros.depth.pcc compares the outputs.
"""
from __future__ import annotations

import time

from dpt_ros.backends import BackendOptions, create_backend, DepthBackend
from dpt_ros.depth.pcc import pcc
import numpy as np

DESCRIPTION = 'torch cpu fp32'


def reference_options(opts: BackendOptions) -> BackendOptions:
    """Return `opts` (same weights, seed, size, threads) as the CPU fp32 eager reference."""
    return opts.replace(device='cpu', dtype='fp32', compile=False, dp=1, batch_size=1,
                        strict=False)


def start_reference(opts: BackendOptions, loaded=None) -> DepthBackend:
    """Start the reference for `opts`; raise BackendError when torch cannot start (no fallback)."""
    return create_backend('torch', reference_options(opts), allow_fallback=False,
                          loaded=loaded).backend


def run_reference(reference: DepthBackend, inputs, warmup: int = 0
                  ) -> tuple[list[np.ndarray], list[float]]:
    """Run each prepared (C, S, S) input alone; return the raw outputs and ms per input."""
    for _ in range(warmup if inputs else 0):
        reference.infer(inputs[0][None])   # oneDNN kernel selection
    outputs, times_ms = [], []
    for x in inputs:
        t0 = time.perf_counter()
        outputs.append(reference.infer(x[None])[0])
        times_ms.append((time.perf_counter() - t0) * 1e3)
    return outputs, times_ms


def pcc_against_reference(opts: BackendOptions, pairs, loaded=None) -> list[float]:
    """
    PCC of each (prepared input, raw output) pair's output against the reference's.

    The reference is started for the comparison and closed after it.
    """
    ref = start_reference(opts, loaded)
    try:
        ref_raw, _ = run_reference(ref, [prepared for prepared, _ in pairs])
    finally:
        ref.close()
    return [pcc(raw, r) for (_, raw), r in zip(pairs, ref_raw)]
