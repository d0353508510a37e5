"""
Process-wide settings for a process that serves frames (the node), applied after start-up.

Pure Python (ctypes + gc); no rclpy. The node's entry point calls quiet_openmp_waits() before
anything loads torch, and tune_process_for_serving() once the model is loaded and warmed up;
test/node/test_serving_tuning.py measures its effect.
"""
from __future__ import annotations

import gc
import os
import sys
from typing import MutableMapping

# How OpenMP threads wait for each other. libgomp (torch's OpenMP on Linux) spins up to 300,000
# times (~3 ms) before it sleeps, unless it counts more of its threads than CPUs: then 100. Its
# count includes the idle thread pool of every live thread that once ran torch. A lifecycle
# manager's configure runs the model on the main thread, whose pool stays: the count exceeds 2
# CPUs and the waits are short. Autostart configures on a thread that ends, so the count does
# not, and each worker spins while its partner is preempted by DDS, the other stages or other
# processes: 4-7x slower inference on 2 cores (issue 24; bench/bench_start_paths.py).
# PASSIVE (sleep at once) makes both start paths the same. A user's own choice is kept.
OPENMP_WAIT_ENV = ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')
OPENMP_WAIT_POLICY = 'PASSIVE'

# glibc malloc options (mallopt): every frame allocates a few MB of short-lived buffers
# (decoded image, model input, depth, colour, message copies). By default glibc maps buffers
# of this size fresh from the kernel and unmaps them on free, so each frame page-faults its
# way through them again: about 1,100 faults (36,000/s) per 640x480 frame, 1.5 ms of the
# node's overhead. Keeping them in the heap, and not giving freed heap back, removes that.
# The cost is that the node keeps its high-water mark of frame buffers resident (a few tens
# of MB); model weights are loaded before this is applied, so they are not affected.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_MMAP_THRESHOLD_BYTES = 32 << 20   # glibc's maximum; larger buffers are still mapped
MALLOC_TRIM_THRESHOLD_BYTES = 256 << 20
MALLOC_TOP_PAD_BYTES = 16 << 20


def _tune_malloc() -> bool:
    """Apply the options above where the C library is glibc; False elsewhere (no harm)."""
    try:
        import ctypes
        libc = ctypes.CDLL('libc.so.6')
        return all(libc.mallopt(opt, val) == 1 for opt, val in (
            (_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES),
            (_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES),
            (_M_TOP_PAD, MALLOC_TOP_PAD_BYTES)))
    except (OSError, AttributeError):
        return False


_openmp_waits: str | None = None     # what quiet_openmp_waits() put in force, for the log


def _waits_in(env) -> str:
    """Return the OpenMP wait settings `env` holds, as 'K=V, ...' ('' for none)."""
    return ', '.join(f'{k}={env[k]}' for k in OPENMP_WAIT_ENV if env.get(k))


def quiet_openmp_waits(environ: MutableMapping[str, str] | None = None) -> str:
    """
    Have OpenMP threads sleep while they wait, unless the environment already says how.

    Takes effect only when called before torch (and so libgomp) is loaded, which reads it
    once. Returns what is in force, for the log (tune_process_for_serving reports it).
    """
    global _openmp_waits
    env = os.environ if environ is None else environ
    chosen = _waits_in(env)
    if chosen:
        _openmp_waits = chosen + ' (from the environment)'
    elif 'torch' in sys.modules:
        _openmp_waits = 'the OpenMP default (torch was loaded before the node could choose)'
    else:
        env['OMP_WAIT_POLICY'] = OPENMP_WAIT_POLICY
        _openmp_waits = f'OMP_WAIT_POLICY={OPENMP_WAIT_POLICY}'
    return _openmp_waits


def tune_process_for_serving() -> dict:
    """
    Process-wide settings for serving frames, applied once start-up is done.

    The malloc options (above), and gc.freeze(): torch, transformers and rclpy leave some
    400,000 long-lived objects, and a full collection walks them all while holding the GIL
    (about 100-140 ms on our CPUs: 3-4 camera frames in which nothing moves; one happened in
    a 20 s bench_node run). Frozen start-up objects are never scanned again; objects made
    while serving are collected as usual. Returns what was applied, for the log.
    """
    gc.collect()
    gc.freeze()
    return {'gc_frozen_objects': gc.get_freeze_count(), 'malloc_tuned': _tune_malloc(),
            'openmp_waits': _openmp_waits or _waits_in(os.environ) or 'libgomp default'}
