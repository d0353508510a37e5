"""
Run a TT model on one chip (eager | trace | trace_2cq) and on N chips in data parallel.

A `ChipPipeline` owns one chip (a 1x1 submesh) and the model built for it. At start-up it
compiles once (an eager run fills the program cache) and, in trace modes, allocates a
persistent DRAM *staging* input and captures two traces:

* `trace_in`   - move the staging input to where the model reads it (`model.input_memory_config`,
  default DRAM) into a persistent *model input* tensor;
* `trace_main` - the model on that tensor, ending with its output moved to DRAM.

Per frame, trace_2cq (CQ0 = compute, CQ1 = input writes and output reads)::

    CQ1: wait(first_op_done[k-1]) -> copy host->staging -> record write_done[k]
    CQ0: wait(write_done[k]) -> execute(trace_in) -> record first_op_done[k]
         -> execute(trace_main) -> record last_op_done[k]
    CQ1: wait(last_op_done[k]) -> read the output back

`first_op_done` is recorded only after the CQ0 work that consumes what CQ1 wrote
(`trace_in`) - never before it. Recording it earlier (the known bug of early 2CQ demos, where
the trace read the CQ1 buffer directly and the event was recorded before the trace) lets the
next copy overwrite the input while it is still being read. Because the model reads its own
persistent copy, frame k+1's copy overlaps frame k's `trace_main`: the point of the second CQ.
Plain `trace` writes on CQ0, in order, with no events.

`DataParallel` holds one pipeline per chip (1, 2 or 8 of them) and lends chips to callers:
frame i of a batch goes to chip i % k, every chip has a frame in flight at once (write all,
execute all, one barrier, read all), and outputs come back in input order. Concurrent callers
each get their own free chips (taken atomically, so two batch callers can never deadlock). A
chip whose device step raises is taken out of the rotation (counted, WARN once) and the call
runs again on the others; per-chip frames, device FPS and failures are kept (`chip_stats`).

Throughput mode: a model built for B frames per chip (`model.batch`, B = 2: the encoder then
holds 2 x 640 tokens at 384 px instead of 768 padded ones, and each device program serves two
frames) takes groups of B consecutive frames per chip; a short group is filled with copies of
its last frame, whose outputs are dropped. `FrameGather` merges concurrent calls of fewer
frames (a node serving several cameras calls with one frame each) into groups of B.

Device time: `trace_wall_ms` runs from the first enqueue to a `ttnn.synchronize_device`
barrier on every chip used, so device FPS = frames / trace_wall_ms; readback and host work
are timed separately (e2e).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import logging
import threading
import time
from typing import Callable, Iterable, Iterator

from dpt_ros.errors import BackendError, ChipFault
from dpt_ros.tt.device import import_ttnn, trace_bytes
from dpt_ros.vocabulary import EXECUTION_MODES
import numpy as np

log = logging.getLogger('dpt_ros.tt.executor')

CQ_COMPUTE = 0   # traces and eager ops run here
CQ_INPUT = 1     # trace_2cq: host->device input writes and output reads


@dataclass
class FramePerf:
    """Timings of one infer() call (its frames spread over the chips it used)."""

    frames: int = 0
    trace_wall_ms: float = float('nan')   # first enqueue -> synchronize_device (all chips)
    prepare_ms: float = 0.0               # host-side input tensor build
    readback_ms: float = 0.0              # device->host + to numpy (after the barrier)
    total_ms: float = 0.0                 # the whole call

    @property
    def device_fps(self) -> float:
        if not self.trace_wall_ms or not np.isfinite(self.trace_wall_ms):
            return float('nan')
        return 1e3 * self.frames / self.trace_wall_ms


def _default_prepare_input(ttnn, frame: np.ndarray):
    """(1,3,S,S) float32 -> host ttnn tensor, bf16 row-major NCHW."""
    import torch
    return ttnn.from_torch(torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)),
                           dtype=ttnn.bfloat16, layout=ttnn.ROW_MAJOR_LAYOUT)


def _default_output_to_numpy(out, size: int, frames: int = 1) -> np.ndarray:
    """Torch tensor of frames x S*S values (tile padding allowed) -> (frames,S,S)."""
    arr = np.asarray(out.float().numpy() if hasattr(out, 'numpy') else out, dtype=np.float32)
    if arr.size != frames * size * size:
        arr = arr.reshape(-1, *arr.shape[-2:])[..., :size, :size]
    return arr.reshape(frames, size, size)


def _fill(frames: np.ndarray, n: int) -> np.ndarray:
    """Return `frames` grown to n by repeating its last frame (a short group of a chip)."""
    if len(frames) >= n:
        return frames
    return np.concatenate([frames] + [frames[-1:]] * (n - len(frames)))


class ChipPipeline:
    """
    One model on one chip, run eagerly or as replayed traces.

    `model(x: ttnn.Tensor) -> ttnn.Tensor` is the device program. Optional attributes:
    `batch` (frames per run, B; default 1), `prepare_input(frames) -> host ttnn.Tensor`
    (frames (B,3,S,S) float32, or (B,S,S,3) uint8 for a model whose `input_format` is
    'pixels'; default: bf16 row-major NCHW), `input_memory_config` (where it reads its input;
    default DRAM interleaved) and `output_to_numpy(torch.Tensor) -> array of B*S*S values`.
    A run takes up to B frames (a short group is filled) and reads back (B,S,S).
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
        self.batch = int(getattr(model, 'batch', 1))    # frames per device run
        self.trace_in = None         # trace ids (trace modes)
        self.trace_main = None
        self.staging = None          # persistent DRAM input the host writes
        self.dev_input = None        # persistent input the model reads (output of trace_in)
        self.dev_output = None       # persistent output (DRAM) of trace_main
        self.first_op_done = None    # trace_2cq: CQ0 has consumed the staging input
        self.last_op_done = None     # trace_2cq: the output is complete in DRAM
        self._write_done = None      # trace_2cq: CQ1 has finished the staging write
        self._written = None         # a frame is written and not yet executed
        self._pending_eager = None   # eager: output of the executed frame
        self._unread = False         # a frame is executed and its output not yet read
        self.compiled = False
        self.released = False
        self.frames_run = 0
        self.trace_bytes = None      # trace region bytes the captured traces hold (a card's)

    @property
    def two_cq(self) -> bool:
        return self.mode == 'trace_2cq'

    # -- the device program ------------------------------------------------------------------
    def _move_in(self, staging):
        """Staging (DRAM interleaved) -> a new tensor where the model reads its input."""
        ttnn = self.ttnn
        cfg = getattr(self.model, 'input_memory_config', None) or ttnn.DRAM_MEMORY_CONFIG
        if cfg.is_sharded():
            return ttnn.to_memory_config(staging, cfg)
        # clone always copies (to_memory_config to the same config may hand back the input,
        # which would leave the model reading the buffer CQ1 overwrites).
        return ttnn.clone(staging, memory_config=cfg)

    def _model_out(self, x):
        """Model, then output to DRAM (readback never depends on the model's last layout)."""
        out = self.model(x)
        return self.ttnn.to_memory_config(out, self.ttnn.DRAM_MEMORY_CONFIG)

    def _to_numpy(self, out) -> np.ndarray:
        t = self.ttnn.to_torch(out)
        conv: Callable | None = getattr(self.model, 'output_to_numpy', None)
        if conv is not None:
            t = conv(t)
        return _default_output_to_numpy(t, self.image_size, self.batch)

    # -- start-up ----------------------------------------------------------------------------
    def compile(self, sample: np.ndarray) -> float:  # noqa: A003 -- the backend's step name
        """Compile (one eager run) and, in trace modes, capture both traces. Returns seconds."""
        ttnn = self.ttnn
        t0 = time.perf_counter()
        host = self.prepare(sample)
        if self.mode == 'eager':
            out = self._model_out(self._move_in(
                ttnn.to_device(host, self.chip, memory_config=ttnn.DRAM_MEMORY_CONFIG)))
            ttnn.synchronize_device(self.chip)
            ttnn.deallocate(out)
            self.compiled = True
            return time.perf_counter() - t0
        self.staging = ttnn.allocate_tensor_on_device(
            host.shape, host.dtype, host.layout, self.chip, ttnn.DRAM_MEMORY_CONFIG)
        if self.two_cq:
            # Nothing reads the staging input yet: an event CQ1 can wait on before copy 1.
            self.first_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)
        # 1) compile run: kernels built, program cache filled (a trace cannot compile).
        self._write_staging(host)
        x = self._move_in(self.staging)
        if self.two_cq:
            self.first_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)
        out = self._model_out(x)
        ttnn.synchronize_device(self.chip)
        ttnn.deallocate(out)
        ttnn.deallocate(x)
        if getattr(self.model, 'has_host_stages', False):
            # A stage fell back to the host (counted by the model): such a program cannot be
            # captured, so this chip runs eagerly from now on.
            log.warning('%s: the model has host stages; running eager instead of %s',
                        self.chip_id, self.mode)
            self.mode = 'eager'
            self.staging = None
            self.compiled = True
            return time.perf_counter() - t0
        # 2) capture. The model input allocated in trace_in stays alive (we hold it), so
        #    trace_main keeps reading the address trace_in writes.
        self._write_staging(host)
        self.trace_in = self._capture(lambda: self._move_in(self.staging), 'dev_input')
        self.trace_main = self._capture(lambda: self._model_out(self.dev_input), 'dev_output')
        if self.two_cq:
            self.first_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)
        ttnn.synchronize_device(self.chip)
        self.compiled = True
        self.trace_bytes = trace_bytes(self.chip)
        log.info('%s: compiled and captured %s in %.2f s; traces hold %s B of the trace region',
                 self.chip_id, self.mode, time.perf_counter() - t0,
                 'unknown' if self.trace_bytes is None else self.trace_bytes)
        return time.perf_counter() - t0

    def _capture(self, program: Callable, attr: str):
        ttnn = self.ttnn
        trace_id = ttnn.begin_trace_capture(self.chip, cq_id=CQ_COMPUTE)
        try:
            setattr(self, attr, program())
        finally:
            ttnn.end_trace_capture(self.chip, trace_id, cq_id=CQ_COMPUTE)
        return trace_id

    def _write_staging(self, host) -> None:
        """Rewrite the staging input: on CQ1 gated by events (2CQ), else in order on CQ0."""
        ttnn = self.ttnn
        if self.two_cq:
            # Never overwrite a staging input CQ0 has not consumed yet.
            ttnn.wait_for_event(CQ_INPUT, self.first_op_done)
            ttnn.copy_host_to_device_tensor(host, self.staging, cq_id=CQ_INPUT)
            self._write_done = ttnn.record_event(self.chip, CQ_INPUT)
            ttnn.wait_for_event(CQ_COMPUTE, self._write_done)
        else:
            ttnn.copy_host_to_device_tensor(host, self.staging, cq_id=CQ_COMPUTE)

    # -- per frame: prepare (host) -> write -> execute -> read ------------------------------
    def prepare(self, frame: np.ndarray):
        """
        Convert up to B frames to the host ttnn tensor the chip takes (the host side of a run).

        The frames are (n,3,S,S) float32, or (n,S,S,3) uint8 pixels for a model whose
        input_format is 'pixels', n <= B (fewer are filled with copies of the last).
        """
        if len(frame) > self.batch:
            raise BackendError(f'{self.chip_id}: {len(frame)} frames for a chip that runs '
                               f'{self.batch} at a time')
        frame = _fill(frame, self.batch)
        prep: Callable | None = getattr(self.model, 'prepare_input', None)
        if prep is not None:
            return prep(frame)
        return _default_prepare_input(self.ttnn, frame)

    def _check_ready(self) -> None:
        if not self.compiled:
            raise BackendError(f'{self.chip_id}: used before compile()')
        if self.released:
            raise BackendError(f'{self.chip_id}: pipeline already released')

    def write(self, host) -> None:
        """Enqueue the copy of the next frame's input (CQ1 in trace_2cq: may overlap a trace)."""
        self._check_ready()
        if self._written is not None:
            raise BackendError(f'{self.chip_id}: write() twice without execute()')
        if self.mode == 'eager':
            self._written = self.ttnn.to_device(host, self.chip,
                                                memory_config=self.ttnn.DRAM_MEMORY_CONFIG)
            return
        self._write_staging(host)
        self._written = True

    def execute(self) -> None:
        """Enqueue the written frame on CQ0. The previous output must have been read."""
        self._check_ready()
        if self._written is None:
            raise BackendError(f'{self.chip_id}: execute() without write()')
        if self._unread:
            raise BackendError(f'{self.chip_id}: execute() would overwrite an unread output')
        ttnn = self.ttnn
        written, self._written = self._written, None
        self._unread = True
        if self.mode == 'eager':
            x = self._move_in(written)
            ttnn.deallocate(written)
            self._pending_eager = self._model_out(x)
            ttnn.deallocate(x)
            return
        ttnn.execute_trace(self.chip, self.trace_in, cq_id=CQ_COMPUTE, blocking=False)
        if self.two_cq:
            # trace_in has consumed the staging input: only now may CQ1 overwrite it.
            self.first_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)
        ttnn.execute_trace(self.chip, self.trace_main, cq_id=CQ_COMPUTE, blocking=False)
        if self.two_cq:
            self.last_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)

    def submit(self, host) -> None:
        """Enqueue one prepared frame without waiting for it: write, then execute."""
        self.write(host)
        self.execute()

    def barrier(self) -> None:
        """Host waits until everything enqueued on this chip (all CQs) has finished."""
        self.ttnn.synchronize_device(self.chip)

    def read(self) -> np.ndarray:
        """Block until the executed run's output is ready; return it as (B,S,S) float32."""
        ttnn = self.ttnn
        if not self._unread:
            raise BackendError(f'{self.chip_id}: read() without execute()')
        self._unread = False
        self.frames_run += 1
        if self.mode == 'eager':
            out, self._pending_eager = self._pending_eager, None
            try:
                return self._to_numpy(out)
            finally:
                ttnn.deallocate(out)
        if self.two_cq:
            # A staging write queued ahead on CQ1 does not touch the output.
            ttnn.wait_for_event(CQ_INPUT, self.last_op_done)
            host = ttnn.from_device(self.dev_output, blocking=True, queue_id=CQ_INPUT)
        else:
            host = ttnn.from_device(self.dev_output, blocking=True, queue_id=CQ_COMPUTE)
        return self._to_numpy(host)

    def run(self, frame: np.ndarray) -> tuple[np.ndarray, FramePerf]:
        """One run of up to B frames, synchronously, with its timings: (n,S,S) outputs."""
        perf = FramePerf(frames=len(frame))
        t0 = time.perf_counter()
        host = self.prepare(frame)
        perf.prepare_ms = (time.perf_counter() - t0) * 1e3
        t_exec = time.perf_counter()
        self.submit(host)
        self.barrier()
        perf.trace_wall_ms = (time.perf_counter() - t_exec) * 1e3
        t_rb = time.perf_counter()
        out = self.read()[:len(frame)]
        perf.readback_ms = (time.perf_counter() - t_rb) * 1e3
        perf.total_ms = (time.perf_counter() - t0) * 1e3
        return out, perf

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """
        Yield one (B,S,S) output per run of B frames, overlapping input writes with traces.

        Frame k+1's input write overlaps frame k's trace. Order per frame: write(k+1), read(k),
        execute(k+1) - the read comes before the next execute because both traces share one
        persistent output.
        """
        pending = False
        for frame in frames:
            self.write(self.prepare(frame))
            if pending:
                yield self.read()
            self.execute()
            pending = True
        if pending:
            yield self.read()

    def settle(self) -> None:
        """
        Finish what a failed call left on this chip: run a written frame, drop an unread one.

        Afterwards the next write() / execute() / read() sequence starts clean. The outputs
        are discarded (they are no frames served).
        """
        if self._unread:
            self.read()
            self.frames_run -= 1
        if self._written is not None:
            self.execute()
            self.read()
            self.frames_run -= 1

    def release(self) -> None:
        """Release the traces (before the device closes). Idempotent."""
        if self.released:
            return
        self.released = True
        for attr in ('trace_main', 'trace_in'):
            trace_id = getattr(self, attr)
            if trace_id is None:
                continue
            try:
                self.ttnn.release_trace(self.chip, trace_id)
            except Exception as exc:  # closing must go on; say what happened
                log.warning('%s: release_trace(%s) failed: %s', self.chip_id, attr, exc)
            setattr(self, attr, None)
        self.dev_output = self.dev_input = self.staging = None


@dataclass
class ChipStats:
    """What one chip of a DataParallel has done: frames, device time, failures, rotation."""

    chip_id: str
    frames: int = 0
    failures: int = 0
    in_rotation: bool = True
    device_ms: float = float('nan')    # running mean of device time per frame (EWMA)
    last_error: str = ''
    selfcheck_pcc: float = float('nan')   # start-up check against torch fp32 (NaN: not run)

    @property
    def fps_device(self) -> float:
        if not np.isfinite(self.device_ms) or self.device_ms <= 0:
            return float('nan')
        return 1e3 / self.device_ms


def _on_chip(slot: int, step: Callable, *args):
    """Run one chip's device step; its exception says which chip of the call it was."""
    try:
        return step(*args)
    except Exception as exc:
        raise ChipFault(slot, exc) from exc


@dataclass
class _ChipPool:
    """
    Free chip indices, taken k at a time atomically (no deadlock between batch callers).

    The chip free the longest goes first, so light load still rotates over every chip (each
    one's diagnostics stay fresh). A retired chip is never given back: the pool then lends
    only the chips still in rotation, and with none left `take` raises at once instead of
    waiting.
    """

    size: int
    free: list = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    retired: set = field(default_factory=set)

    @property
    def active(self) -> int:
        return self.size - len(self.retired)

    def take(self, k: int, timeout: float | None) -> list[int]:
        with self.cond:
            def ready():
                return self.active == 0 or len(self.free) >= min(k, self.active)
            if not self.cond.wait_for(ready, timeout=timeout):
                raise BackendError(f'no {k} free TT chip(s) within {timeout} s')
            if self.active == 0:
                raise BackendError(f'no TT chip left in rotation (all {self.size} failed)')
            k = min(k, self.active)
            taken, self.free[:] = self.free[:k], self.free[k:]
            return taken

    def give(self, idx: list[int]) -> None:
        with self.cond:
            self.free.extend(i for i in idx if i not in self.retired)
            self.cond.notify_all()

    def retire(self, idx: int) -> None:
        """Take a chip (currently taken, not free) out of the rotation for good."""
        with self.cond:
            self.retired.add(idx)
            if idx in self.free:
                self.free.remove(idx)
            self.cond.notify_all()


class DataParallel:
    """
    One ChipPipeline per chip; the frames of a call are spread over free chips.

    A chip whose device step raises is taken out of the rotation (counted, one WARN) and the
    call is retried once on the chips left; only with no chip left does every call fail, so
    the owner's fallback can take over.
    """

    def __init__(self, pipelines: list[ChipPipeline], *, acquire_timeout_s: float | None = 60.0,
                 retries: int = 1):
        if not pipelines:
            raise BackendError('DataParallel needs at least one chip pipeline')
        self.pipelines = list(pipelines)
        self.batch = self.pipelines[0].batch        # frames per chip per run
        if any(p.batch != self.batch for p in self.pipelines):
            raise BackendError('DataParallel needs the same frames per run on every chip')
        self.acquire_timeout_s = acquire_timeout_s
        self.retries = int(retries)
        self._pool = _ChipPool(len(pipelines), list(range(len(pipelines))))
        self._perf_lock = threading.Lock()
        self.last_perf = FramePerf()
        self.frames = 0
        self.stats = [ChipStats(p.chip_id) for p in self.pipelines]

    @property
    def dp(self) -> int:
        return len(self.pipelines)

    @property
    def in_rotation(self) -> int:
        """Chips still serving."""
        return self._pool.active

    def compile(self, sample: np.ndarray) -> float:  # noqa: A003 -- as ChipPipeline.compile
        """Compile/capture on every chip; returns total seconds."""
        return sum(p.compile(sample) for p in self.pipelines)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """
        Run a batch on free chips and return its (N,S,S) float32 outputs, in input order.

        The batch is (N,3,S,S) float32 or (N,S,S,3) uint8 pixels. Thread-safe.

        Takes min(groups, chips in rotation) free chips at once, a group being B consecutive
        frames (B = frames per chip per run, 1 but in throughput mode); group g goes to the
        g % k-th, so with N == dp x B every chip holds a group and all are in flight together.
        A chip fault retires that chip and the batch is run again on the others (`retries`
        times).
        """
        n = int(batch.shape[0])
        groups = -(-n // self.batch)
        for attempt in range(self.retries + 1):
            chips = self._pool.take(min(groups, self.dp), self.acquire_timeout_s)
            healthy = chips
            try:
                out, perf = self._run(batch, [self.pipelines[c] for c in chips])
            except ChipFault as fault:
                healthy = self._after_fault(chips, fault)
                if attempt == self.retries or self._pool.active == 0:
                    raise BackendError(f'{self.pipelines[chips[fault.slot]].chip_id} failed: '
                                       f'{fault}') from fault.error
                continue
            finally:
                self._pool.give(healthy)
            self._account(chips, perf, n)
            return out
        raise AssertionError('unreachable')  # pragma: no cover

    def _after_fault(self, chips: list[int], fault: ChipFault) -> list[int]:
        """Retire the failed chip, bring the others of the call to a clean state: the healthy."""
        failed = {chips[fault.slot]: fault.error}
        for c in chips:
            if c in failed:
                continue
            try:
                self.pipelines[c].settle()
            except Exception as exc:  # it cannot even finish its own frame: out as well
                failed[c] = exc
        for c, error in failed.items():
            self._retire(c, error)
        return [c for c in chips if c not in failed]

    def _retire(self, c: int, error: BaseException) -> None:
        self.retire(c, f'{type(error).__name__}: {error}')

    def retire(self, c: int, reason: str) -> None:
        """Take chip `c` out of the rotation for good (counted, one WARN), saying why."""
        st = self.stats[c]
        with self._perf_lock:
            st.failures += 1
            st.in_rotation = False
            st.last_error = reason[:300]
        self._pool.retire(c)
        log.warning('%s failed and is out of the rotation (%d of %d chips left): %s',
                    st.chip_id, self._pool.active, self.dp, st.last_error)

    def _account(self, chips: list[int], perf: FramePerf, n: int) -> None:
        k, b = len(chips), self.batch
        with self._perf_lock:
            self.last_perf = perf
            self.frames += n
            for slot, c in enumerate(chips):
                frames = sum(min(b, n - g * b) for g in range(slot, -(-n // b), k))
                st = self.stats[c]
                st.frames += frames
                if frames and np.isfinite(perf.trace_wall_ms):
                    ms = perf.trace_wall_ms / frames
                    st.device_ms = ms if not np.isfinite(st.device_ms) else \
                        (1.0 - _STATS_EWMA) * st.device_ms + _STATS_EWMA * ms

    def run_alone(self, c: int, frame: np.ndarray) -> np.ndarray:
        """
        Run one frame on chip `c` by its served path; return its (1,S,S) output.

        For start-up checks, before any call runs: the frame is not a served frame (no
        stats); it uses the chip's traces, persistent input and 2CQ events as a served frame
        does, so it leaves them as one leaves them (nothing is captured again).
        """
        pipe = self.pipelines[c]
        out, _ = pipe.run(frame)
        pipe.frames_run -= 1
        return out

    def note_selfcheck(self, c: int, pcc: float) -> None:
        """Keep chip `c`'s start-up check PCC for chip_stats."""
        with self._perf_lock:
            self.stats[c].selfcheck_pcc = float(pcc)

    def chip_stats(self) -> list[dict]:
        """
        Per chip: id, frames, fps_device, failures, in_rotation, last_error, selfcheck_pcc.

        A snapshot.
        """
        with self._perf_lock:
            return [{'id': st.chip_id, 'frames': st.frames, 'fps_device': st.fps_device,
                     'failures': st.failures, 'in_rotation': st.in_rotation,
                     'last_error': st.last_error, 'selfcheck_pcc': st.selfcheck_pcc}
                    for st in self.stats]

    @staticmethod
    def _run(batch: np.ndarray, pipes: list[ChipPipeline]) -> tuple[np.ndarray, FramePerf]:
        n, k, b = int(batch.shape[0]), len(pipes), pipes[0].batch
        side = pipes[0].image_size         # the batch is NCHW floats or NHWC pixels
        out = np.empty((n, side, side), dtype=np.float32)
        perf = FramePerf(frames=n)
        t0 = time.perf_counter()
        spans = [(g * b, min(n, g * b + b)) for g in range(-(-n // b))]    # group -> frames
        hosts = [pipes[g % k].prepare(batch[lo:hi]) for g, (lo, hi) in enumerate(spans)]
        perf.prepare_ms = (time.perf_counter() - t0) * 1e3
        t_exec = time.perf_counter()
        unread: dict[int, int] = {}         # chip slot -> group whose output it still holds

        def take(slot, g):                  # a group's outputs, less its filled frames
            lo, hi = spans[g]
            out[lo:hi] = _on_chip(slot, pipes[slot].read)[:hi - lo]
        for start in range(0, len(spans), k):
            groups = [(g, g % k, pipes[g % k]) for g in range(start, min(len(spans), start + k))]
            for g, slot, pipe in groups:    # inputs go in while the previous traces run
                _on_chip(slot, pipe.write, hosts[g])
            for g, slot, pipe in groups:
                if slot in unread:
                    take(slot, unread.pop(slot))
                _on_chip(slot, pipe.execute)
                unread[slot] = g
        for slot, pipe in enumerate(pipes):     # the barrier device time is measured to
            _on_chip(slot, pipe.barrier)
        perf.trace_wall_ms = (time.perf_counter() - t_exec) * 1e3
        t_rb = time.perf_counter()
        for slot, g in sorted(unread.items()):
            take(slot, g)
        perf.readback_ms = (time.perf_counter() - t_rb) * 1e3
        perf.total_ms = (time.perf_counter() - t0) * 1e3
        return out, perf

    def release(self) -> None:
        """Release every chip's traces. Idempotent."""
        for p in self.pipelines:
            p.release()


# Weight of the newest call in a chip's running device time per frame.
_STATS_EWMA = 0.2


class _Group:
    """One run being gathered: the calls' frames, then the run's outputs or error."""

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.count = 0
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class FrameGather:
    """
    Merge concurrent calls of fewer than `size` frames into runs of up to `size` frames.

    The first call of a group leads: it waits up to `wait_s` for other calls to fill the group
    (no longer once it is full), runs the group's frames with `run(frames) -> outputs` and
    each call gets its own outputs back; a call of `size` frames or more runs alone at once.
    An error of the run reaches every call of its group. Thread-safe; `groups` / `frames`
    count the runs and the frames they carried.
    """

    def __init__(self, size: int, wait_s: float, run: Callable[[np.ndarray], np.ndarray]):
        self.size, self.wait_s, self._run = int(size), float(wait_s), run
        self._cond = threading.Condition()
        self._open: _Group | None = None
        self.groups = self.frames = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        n = len(frames)
        if n >= self.size:
            return self._run(frames)
        with self._cond:
            group, lead = self._open, False
            if group is None or group.count + n > self.size:
                group, lead = _Group(), True
                self._open = group
            start = group.count
            group.parts.append(frames)
            group.count += n
            if group.count >= self.size:        # full: nobody joins any more, the lead goes
                self._open = None
                self._cond.notify_all()
            if lead:
                deadline = time.monotonic() + self.wait_s
                while self._open is group and deadline > time.monotonic():
                    self._cond.wait(deadline - time.monotonic())
                if self._open is group:
                    self._open = None
                self.groups += 1
                self.frames += group.count
        if lead:
            try:
                group.result = self._run(np.concatenate(group.parts))
            except BaseException as exc:  # every call of the group hears of it
                group.error = exc
            finally:
                group.done.set()
        else:
            group.done.wait()
        if group.error is not None:
            raise group.error
        return group.result[start:start + n]
