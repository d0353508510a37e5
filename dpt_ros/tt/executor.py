"""Run a TT model on one chip (eager | trace | trace_2cq) and on N chips in data parallel.

A `ChipPipeline` owns one chip (a 1x1 submesh) and one model built for it. It

* compiles once (an eager run fills the program cache),
* in trace modes allocates a persistent device input, captures the whole device program
  (input move to where the model reads it, the model, the output move to DRAM) as one trace,
  and replays it per frame after rewriting that persistent input in place.

trace_2cq per frame (CQ0 = compute, CQ1 = input writes)::

    CQ1: wait(first_op_done[k-1]) -> copy host->device input -> record write_done[k]
    CQ0: wait(write_done[k]) -> execute_trace(blocking=False)
         -> record first_op_done[k] -> record last_op_done[k]
    CQ1: wait(last_op_done[k]) -> read the output back

'first op done' is recorded only after execute_trace: the first traced op reads the
persistent input, and CQ0 can only say it has been consumed once the command that consumes it
has run. Recording it before the trace (the known bug in early 2CQ demos) lets the next CQ1
copy overwrite the input while the trace still reads it. Because `infer()` is synchronous per
chip (the output is read before the chip takes another frame) this costs no overlap.

`DataParallel` holds one pipeline per chip and hands chips to callers: each frame of a batch
goes to its own chip, all chips in flight at once (submit all, then barrier, then read), and
outputs come back in input order. It is thread-safe: concurrent callers each get free chips.

Device time: `trace_wall_ms` is measured from the first execute_trace to a
`ttnn.synchronize_device` barrier on every chip used, so device FPS = frames / trace_wall_ms.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dpt_ros.backends.base import BackendError
from dpt_ros.tt.device import EXECUTION_MODES, import_ttnn

log = logging.getLogger('dpt_ros.tt.executor')

CQ_COMPUTE = 0   # the trace (and eager ops) run here
CQ_INPUT = 1     # trace_2cq: host->device input writes and output reads


@dataclass
class FramePerf:
    """Timings of one submission (one frame per chip used)."""

    frames: int = 0
    trace_wall_ms: float = float('nan')   # execute -> synchronize_device barrier (all chips)
    prepare_ms: float = 0.0                 # host-side input tensor build
    readback_ms: float = 0.0              # device->host + to numpy
    total_ms: float = 0.0                 # the whole infer of these frames

    @property
    def device_fps(self) -> float:
        if not self.trace_wall_ms or not np.isfinite(self.trace_wall_ms):
            return float('nan')
        return 1e3 * self.frames / self.trace_wall_ms


def _default_prepare_input(ttnn, frame: np.ndarray):
    """(1,3,S,S) float32 -> host ttnn tensor, bf16 row-major NCHW (the model decides more)."""
    import torch
    return ttnn.from_torch(torch.from_numpy(np.ascontiguousarray(frame)), dtype=ttnn.bfloat16,
                           layout=ttnn.ROW_MAJOR_LAYOUT)


def _default_output_to_numpy(out, size: int) -> np.ndarray:
    """Torch tensor of any (1,...,S,S)-compatible shape -> (1,S,S) float32."""
    arr = out.float().numpy() if hasattr(out, 'numpy') else np.asarray(out, np.float32)
    arr = np.asarray(arr, dtype=np.float32)
    if arr.size != size * size:
        # Tile padding on the last two dims: crop back to S x S.
        arr = arr.reshape(-1, *arr.shape[-2:])[..., :size, :size]
    return arr.reshape(1, size, size)


class ChipPipeline:
    """One model on one chip, run eagerly or as a replayed trace.

    `model` is the device program for this chip: `model(x: ttnn.Tensor) -> ttnn.Tensor`,
    optionally with `prepare_input(frame (1,3,S,S) float32) -> host ttnn.Tensor`,
    `input_memory_config` (where it wants its input; default: DRAM, no move) and
    `output_to_numpy(torch_tensor) -> (1,S,S)`.
    """

    def __init__(self, chip, model, mode: str, image_size: int, *, chip_id: str = 'tt:0'):
        if mode not in EXECUTION_MODES:
            raise BackendError(f"unknown tt execution mode '{mode}'; choose one of: "
                               f"{', '.join(EXECUTION_MODES)}")
        self.ttnn = import_ttnn()
        self.chip = chip
        self.model = model
        self.mode = mode
        self.image_size = int(image_size)
        self.chip_id = chip_id
        self.trace_id = None
        self.dev_input = None        # persistent input (trace modes)
        self.dev_output = None       # the trace's output tensor (trace modes)
        self._pending_eager = None   # eager: output of the submitted frame
        self.first_op_done = None    # trace_2cq: CQ0 has consumed the persistent input
        self.last_op_done = None     # trace_2cq: the output is complete in DRAM
        self.compiled = False
        self.released = False
        self.frames_run = 0

    # -- the device program ------------------------------------------------------------------
    def _prepare_input(self, frame: np.ndarray):
        prep: Callable | None = getattr(self.model, 'prepare_input', None)
        if prep is not None:
            return prep(frame)
        return _default_prepare_input(self.ttnn, frame)

    def _program(self, x):
        """Input move -> model -> output to DRAM: everything that runs on the chip per frame."""
        ttnn = self.ttnn
        in_cfg = getattr(self.model, 'input_memory_config', None)
        if in_cfg is not None:
            x = ttnn.to_memory_config(x, in_cfg)
        out = self.model(x)
        # Reading back from DRAM interleaved never depends on the model's last shard layout.
        return ttnn.to_memory_config(out, ttnn.DRAM_MEMORY_CONFIG)

    def _to_numpy(self, out) -> np.ndarray:
        t = self.ttnn.to_torch(out)
        conv: Callable | None = getattr(self.model, 'output_to_numpy', None)
        if conv is not None:
            return np.asarray(conv(t), dtype=np.float32).reshape(1, self.image_size,
                                                                  self.image_size)
        return _default_output_to_numpy(t, self.image_size)

    # -- start-up ----------------------------------------------------------------------------
    def compile(self, sample: np.ndarray) -> float:
        """Compile (one eager run) and, in trace modes, capture the trace. Returns seconds."""
        ttnn = self.ttnn
        t0 = time.perf_counter()
        host = self._prepare_input(sample)
        if self.mode == 'eager':
            x = ttnn.to_device(host, self.chip, memory_config=ttnn.DRAM_MEMORY_CONFIG)
            out = self._program(x)
            ttnn.synchronize_device(self.chip)
            ttnn.deallocate(out)
            self.compiled = True
            return time.perf_counter() - t0
        self.dev_input = ttnn.allocate_tensor_on_device(
            host.shape, host.dtype, host.layout, self.chip, ttnn.DRAM_MEMORY_CONFIG)
        two_cq = self.mode == 'trace_2cq'
        if two_cq:
            # Nothing has read the input yet: an event CQ1 can wait on before its first copy.
            self.first_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)
        # 1) compile run: kernels built, program cache filled (a trace cannot compile).
        self._write_input(host)
        out = self._program(self.dev_input)
        if two_cq:
            self.first_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)
        ttnn.synchronize_device(self.chip)
        ttnn.deallocate(out)
        # 2) capture: the same program, reading the persistent input.
        self._write_input(host)
        trace_id = ttnn.begin_trace_capture(self.chip, cq_id=CQ_COMPUTE)
        try:
            self.dev_output = self._program(self.dev_input)
        finally:
            ttnn.end_trace_capture(self.chip, trace_id, cq_id=CQ_COMPUTE)
        self.trace_id = trace_id
        if two_cq:
            self.first_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)
        ttnn.synchronize_device(self.chip)
        self.compiled = True
        log.info('%s: compiled and captured %s in %.2f s', self.chip_id, self.mode,
                 time.perf_counter() - t0)
        return time.perf_counter() - t0

    def _write_input(self, host) -> None:
        """Rewrite the persistent input; in 2CQ on CQ1, ordered against CQ0 by events."""
        ttnn = self.ttnn
        if self.mode == 'trace_2cq':
            # Never overwrite an input the previous trace may still be reading.
            ttnn.wait_for_event(CQ_INPUT, self.first_op_done)
            ttnn.copy_host_to_device_tensor(host, self.dev_input, cq_id=CQ_INPUT)
            write_done = ttnn.record_event(self.chip, CQ_INPUT)
            ttnn.wait_for_event(CQ_COMPUTE, write_done)
        else:
            ttnn.copy_host_to_device_tensor(host, self.dev_input, cq_id=CQ_COMPUTE)

    # -- per frame ---------------------------------------------------------------------------
    def prepare(self, frame: np.ndarray):
        """Host side of a frame: (1,3,S,S) float32 -> the host ttnn tensor the chip takes."""
        return self._prepare_input(frame)

    def submit(self, host) -> None:
        """Enqueue one prepared frame (see `prepare`) without waiting for it."""
        if not self.compiled:
            raise BackendError(f'{self.chip_id}: submit() before compile()')
        if self.released:
            raise BackendError(f'{self.chip_id}: pipeline already released')
        ttnn = self.ttnn
        if self.mode == 'eager':
            x = ttnn.to_device(host, self.chip, memory_config=ttnn.DRAM_MEMORY_CONFIG)
            self._pending_eager = self._program(x)
            return
        self._write_input(host)
        ttnn.execute_trace(self.chip, self.trace_id, cq_id=CQ_COMPUTE, blocking=False)
        if self.mode == 'trace_2cq':
            # Only now has the trace consumed the input (see module doc).
            self.first_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)
            # The trace ends with the output in DRAM: that is what readback waits for.
            self.last_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)

    def barrier(self) -> None:
        """Host waits until everything enqueued on this chip has finished."""
        self.ttnn.synchronize_device(self.chip)

    def collect(self) -> np.ndarray:
        """Read the submitted frame's output: (1,S,S) float32."""
        ttnn = self.ttnn
        if self.mode == 'eager':
            out, self._pending_eager = self._pending_eager, None
            if out is None:
                raise BackendError(f'{self.chip_id}: collect() without submit()')
            try:
                return self._to_numpy(out)
            finally:
                ttnn.deallocate(out)
        if self.mode == 'trace_2cq':
            ttnn.wait_for_event(CQ_INPUT, self.last_op_done)
            host = ttnn.from_device(self.dev_output, blocking=True, queue_id=CQ_INPUT)
        else:
            host = ttnn.from_device(self.dev_output, blocking=True, queue_id=CQ_COMPUTE)
        self.frames_run += 1
        return self._to_numpy(host)

    def run(self, frame: np.ndarray) -> tuple[np.ndarray, FramePerf]:
        """submit + barrier + collect for one frame, with its timings."""
        perf = FramePerf(frames=1)
        t0 = time.perf_counter()
        host = self.prepare(frame)
        perf.prepare_ms = (time.perf_counter() - t0) * 1e3
        t_exec = time.perf_counter()
        self.submit(host)
        self.barrier()
        perf.trace_wall_ms = (time.perf_counter() - t_exec) * 1e3
        t_rb = time.perf_counter()
        out = self.collect()
        perf.readback_ms = (time.perf_counter() - t_rb) * 1e3
        perf.total_ms = (time.perf_counter() - t0) * 1e3
        return out, perf

    def release(self) -> None:
        """Release the trace (before the device closes). Idempotent."""
        if self.released:
            return
        self.released = True
        if self.trace_id is not None:
            try:
                self.ttnn.release_trace(self.chip, self.trace_id)
            except Exception as exc:  # closing must go on; say what happened
                log.warning('%s: release_trace failed: %s', self.chip_id, exc)
            self.trace_id = None
        self.dev_output = None
        self.dev_input = None


@dataclass
class _ChipPool:
    """Free chips, taken k at a time atomically so two batch callers never deadlock."""

    size: int
    free: list = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def take(self, k: int, timeout: float | None) -> list[int]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.free) >= k, timeout=timeout):
                raise BackendError(f'no free TT chip within {timeout} s ({self.size} in use)')
            taken, self.free[:] = self.free[:k], self.free[k:]
            return taken

    def give(self, idx: list[int]) -> None:
        with self.cond:
            self.free.extend(idx)
            self.free.sort()
            self.cond.notify_all()


class DataParallel:
    """One ChipPipeline per chip; frames of a batch are spread over free chips."""

    def __init__(self, pipelines: list[ChipPipeline], *, acquire_timeout_s: float | None = 60.0):
        if not pipelines:
            raise BackendError('DataParallel needs at least one chip pipeline')
        self.pipelines = list(pipelines)
        self.acquire_timeout_s = acquire_timeout_s
        self._pool = _ChipPool(len(pipelines), list(range(len(pipelines))))
        self._perf_lock = threading.Lock()
        self.last_perf = FramePerf()
        self.frames = 0

    @property
    def dp(self) -> int:
        return len(self.pipelines)

    def compile(self, sample: np.ndarray) -> float:
        """Compile/capture on every chip; returns total seconds."""
        return sum(p.compile(sample) for p in self.pipelines)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N,3,S,S) float32 -> (N,S,S) float32, in input order. Thread-safe."""
        n = int(batch.shape[0])
        out = np.empty((n, batch.shape[2], batch.shape[3]), dtype=np.float32)
        k = min(n, self.dp)
        chips = self._pool.take(k, self.acquire_timeout_s)
        try:
            for start in range(0, n, k):
                idx = list(range(start, min(start + k, n)))
                perf = self._run_round(batch, idx, chips)
                for i, res in perf.pop('outputs'):
                    out[i] = res[0]
                with self._perf_lock:
                    self.last_perf = perf['perf']
                    self.frames += len(idx)
        finally:
            self._pool.give(chips)
        return out

    def _run_round(self, batch: np.ndarray, idx: list[int], chips: list[int]) -> dict:
        """One frame per chip in flight at once: submit all, one barrier, read all."""
        perf = FramePerf(frames=len(idx))
        t0 = time.perf_counter()
        used = [(i, self.pipelines[c]) for i, c in zip(idx, chips)]
        hosts = [pipe.prepare(batch[i:i + 1]) for i, pipe in used]
        perf.prepare_ms = (time.perf_counter() - t0) * 1e3
        # Device time starts at the first enqueue: input copies + traces, all chips at once.
        t_exec = time.perf_counter()
        for (_, pipe), host in zip(used, hosts):
            pipe.submit(host)
        for _, pipe in used:
            pipe.barrier()
        perf.trace_wall_ms = (time.perf_counter() - t_exec) * 1e3
        t_rb = time.perf_counter()
        outputs = [(i, pipe.collect()) for i, pipe in used]
        perf.readback_ms = (time.perf_counter() - t_rb) * 1e3
        perf.total_ms = (time.perf_counter() - t0) * 1e3
        return {'perf': perf, 'outputs': outputs}

    def release(self) -> None:
        """Release every chip's trace. Idempotent."""
        for p in self.pipelines:
            p.release()
