"""
Frame scheduling between camera callbacks and the backend: no stale queues, in-order output.

Three kinds of threads, so that the executor callback only drops a message into a slot:

  submit()      (executor thread)  latest-frame slot per camera; a newer frame replaces a
                                   waiting one, which is counted dropped (reason stale)
  prepare       (1 thread)         decode + preprocess the next frame, round-robin over the
                                   cameras, while inference of the previous one runs
  infer         (`concurrency` threads, = backend.max_concurrency: one per TT chip)
  finish        (1 thread)         postprocess, colourise, publish; per camera in arrival
                                   order (a reorder buffer holds frames that finished early
                                   on another chip). While `concurrency` results already
                                   wait for it, no new frame is prepared: a slow publish
                                   stage drops stale frames instead of queueing them

Per camera at most one frame waits in the slot and at most one prepared frame waits for a
free inference worker. A prepared frame waiting while inference runs grows old: just before
the running call is expected to end (running estimates of the inference and prepare times),
the newest frame in the slot is prepared too and replaces it (the older one is counted
dropped, stale). So a frame starts inference at most about one input period + one prepare
time after it arrived, and its output is out about one inference time later, while the
prepare thread does not preprocess every frame of a fast camera. Every received frame ends in
exactly one counter once the pipeline is idle or stopped:

  frames_received = frames_processed + frames_dropped + frames_rejected + frames_failed

with reasons (`frames_dropped:stale`, `frames_rejected:truncated`, `frames_failed:timeout`,
...). An inference call running past `timeout_s` is counted failed and its late result
discarded, so one hung call cannot stall a camera's output order. `on_failure` hears of every
failed inference (outside the lock), so the owner can replace a backend that keeps failing.

A rejected frame is logged with its reason, but a camera sending garbage at 30 Hz would write
30 lines a second: after one line per camera and reason, further rejections of that kind are
only counted until `reject_log_interval_s` has passed, and the next line says how many went
unlogged (`RejectLogThrottle`). The counters are exact either way.

Two latencies per published frame:

  latency_ms       receive (submit) -> publish, on this process' clock: always meaningful;
                   goes into PerfStats (`latency_ms_p50/p95/p99` of its snapshot)
  e2e_latency_ms   header stamp -> publish: includes the camera and transport delay, but only
                   when the stamp is on the same clock; a stamp more than E2E_MAX_SKEW_S away
                   from now (a replayed bag, sim time, a camera with its own clock) is not
                   sampled, and with no samples the percentiles are NaN

Pure Python: the stages are callables, so this is tested without rclpy or a model.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
import logging
import threading
import time
from typing import Callable

from dpt_ros.errors import InvalidImage
from dpt_ros.perf.stats import percentile, PerfStats


class RejectLogThrottle:
    """
    Decides which rejections are logged: one line per (camera, reason) per interval.

    `admit(camera, reason, now)` returns None while a line for that key was written less than
    `interval_s` ago (the rejection is then only counted here), else the number of rejections
    of that key that were not logged since its last line. `interval_s` 0 logs every one.
    """

    def __init__(self, interval_s: float):
        if interval_s < 0:
            raise ValueError(f'reject log interval must be >= 0 s, got {interval_s}')
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}      # key -> time of its last line
        self._unlogged: dict[tuple[str, str], int] = {}

    def admit(self, camera: str, reason: str, now: float) -> int | None:
        key = (camera, reason)
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._unlogged[key] = self._unlogged.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._unlogged.pop(key, 0)


OUTCOMES = ('frames_processed', 'frames_dropped', 'frames_rejected', 'frames_failed')
# A header stamp further than this from the node's clock is not on that clock (bag replay,
# sim time): its stamp -> publish time would be meaningless, so it is not sampled.
E2E_MAX_SKEW_S = 60.0
E2E_KEYS = ('e2e_latency_ms_p50', 'e2e_latency_ms_p95', 'e2e_latency_ms_p99')
# Weight of the newest sample in the running inference / prepare time estimates.
_EWMA = 0.2


@dataclass
class Frame:
    """One received message on its way through the pipeline."""

    camera: str
    msg: object
    stamp_ns: int                 # source stamp (header), 0 when unknown
    received_ns: int              # wall clock at submit()
    seq: int = -1                 # per-camera publication order, given when inference starts
    prepared: object = None       # what prepare() returned
    infer_started: float = 0.0    # monotonic


class LatencyWindow:
    """The last `window` latency samples (ms) with their percentiles; thread-safe."""

    def __init__(self, window: int = 300):
        self._samples: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._samples.append(float(ms))

    def __len__(self) -> int:
        return len(self._samples)

    def percentiles(self, prefix: str = 'e2e_latency_ms') -> dict[str, float]:
        """{prefix_p50, prefix_p95, prefix_p99}; NaN when there are no samples."""
        with self._lock:
            values = list(self._samples)
        return {f'{prefix}_p{q}': percentile(values, q) for q in (50, 95, 99)}


@dataclass
class _Camera:
    name: str
    perf: PerfStats
    e2e: LatencyWindow = field(default_factory=LatencyWindow)
    slot: Frame | None = None
    waiting_prepared: int = 0     # prepared frames of this camera not yet inferring (0 or 1)
    next_seq: int = 0
    next_release: int = 0
    done: dict = field(default_factory=dict)   # seq -> (frame, result) or (frame, None) failed
    max_pending: int = 0


@dataclass
class Health:
    """What the diagnostics need to judge the backend."""

    consecutive_failures: int = 0
    last_failure: str = ''
    last_failure_time: float = 0.0    # monotonic
    hung_calls: int = 0               # timed-out calls that have not returned yet
    last_success_time: float = 0.0


class FrameScheduler:
    """
    Latest-frame slots, a prepare thread, `concurrency` inference workers, a finish thread.

    prepare(frame) -> prepared      may raise InvalidImage (counted rejected, with reason)
    infer(prepared) -> result       any exception counts the frame failed
    finish(frame, result) -> None   publishes; an exception counts the frame failed
    on_failure(health) -> None      optional: after each failed inference (error or timeout),
                                    called on a worker thread without the lock held
    reject_log_interval_s           one 'frame rejected' line per camera and reason per
                                    this many seconds (0: every rejection); see module doc
    """

    def __init__(self, cameras: list[str], prepare: Callable, infer: Callable,
                 finish: Callable, *, concurrency: int = 1, timeout_s: float = 0.0,
                 total: PerfStats | None = None, clock_ns: Callable[[], int] = time.time_ns,
                 logger: logging.Logger | None = None,
                 on_failure: Callable[['Health'], None] | None = None,
                 reject_log_interval_s: float = 0.0):
        if concurrency < 1:
            raise ValueError(f'concurrency must be >= 1, got {concurrency}')
        self._prepare, self._infer, self._finish = prepare, infer, finish
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.total = total if total is not None else PerfStats()
        self._clock_ns = clock_ns
        self._log = logger or logging.getLogger('dpt_ros.serving.scheduler')
        self._reject_log = RejectLogThrottle(reject_log_interval_s)   # prepare thread only
        self._cams = {c: _Camera(c, PerfStats()) for c in cameras}
        self._order = list(cameras)
        self._rr = 0
        self._cond = threading.Condition()
        self._ready: collections.deque[Frame] = collections.deque()
        self._finish_q: collections.deque[tuple[Frame, object]] = collections.deque()
        self._inflight: dict[int, Frame] = {}      # id(frame) -> frame, while inferring
        self._timed_out: set[int] = set()          # ids of timed-out calls still running
        self._preparing: Frame | None = None
        self._finishing: Frame | None = None
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.health = Health()
        self._on_failure = on_failure
        self._failures_to_report = 0               # failures not yet passed to on_failure
        self._e2e_total = LatencyWindow()
        self._infer_est = 0.0                      # s, running estimates (0 = none yet)
        self._prepare_est = 0.0

    # ----- public API -----
    def start(self) -> None:
        """Start the threads (daemon: a backend call that never returns cannot block exit)."""
        specs = [('dpt-prepare', self._prepare_loop), ('dpt-finish', self._finish_loop)]
        specs += [(f'dpt-infer-{i}', self._infer_loop) for i in range(self.concurrency)]
        for name, target in specs:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, camera: str, msg: object, stamp_ns: int = 0) -> None:
        """Offer a new frame; a frame still waiting in this camera's slot is dropped."""
        cam = self._cams[camera]
        frame = Frame(camera, msg, int(stamp_ns), self._clock_ns())
        self._count(cam, 'frames_received')
        cam.perf.input_rate.tick()
        self.total.input_rate.tick()
        with self._cond:
            if self._stopping:
                self._count(cam, 'frames_dropped', 'shutdown')
                return
            if cam.slot is not None:
                self._count(cam, 'frames_dropped', 'stale')
            cam.slot = frame
            cam.max_pending = max(cam.max_pending, 1 + cam.waiting_prepared)
            self._cond.notify_all()

    def stop(self, timeout: float = 1.0) -> bool:
        """
        Stop all threads; frames not yet published are counted dropped (shutdown).

        Returns True when every thread ended within `timeout` (a hung backend call may not).
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        clean = not any(t.is_alive() for t in self._threads)
        with self._cond:
            leftovers = [c.slot for c in self._cams.values() if c.slot is not None]
            leftovers += list(self._ready) + [f for f, _ in self._finish_q]
            leftovers += [f for c in self._cams.values() for f, _ in c.done.values()]
            leftovers += list(self._inflight.values())
            leftovers += [f for f in (self._preparing, self._finishing) if f is not None]
            for c in self._cams.values():
                c.slot = None
                c.done.clear()
            self._ready.clear()
            self._finish_q.clear()
            self._inflight.clear()
            self._preparing = self._finishing = None
        for f in leftovers:
            self._count(self._cams[f.camera], 'frames_dropped', 'shutdown')
        return clean

    @property
    def cameras(self) -> list[str]:
        return list(self._order)

    def perf(self, camera: str) -> PerfStats:
        return self._cams[camera].perf

    def counts(self, camera: str | None = None) -> dict[str, int]:
        """received/processed/dropped/rejected/failed and the frames still in the pipeline."""
        perf = self.total if camera is None else self._cams[camera].perf
        with perf._lock:
            c = {k: perf.counters.get(k, 0) for k in ('frames_received',) + OUTCOMES}
        c['in_pipeline'] = c['frames_received'] - sum(c[k] for k in OUTCOMES)
        return c

    def e2e_latency(self, camera: str | None = None) -> dict[str, float]:
        """Header stamp -> publish percentiles (E2E_KEYS); NaN without comparable stamps."""
        return (self._e2e_total if camera is None else self._cams[camera].e2e).percentiles()

    def alive_threads(self) -> list[str]:
        """Names of this scheduler's threads still running (after stop(): stuck in a call)."""
        return [t.name for t in self._threads if t.is_alive()]

    def pending(self, camera: str) -> int:
        """Frames of `camera` waiting (slot + prepared, not yet inferring)."""
        with self._cond:
            cam = self._cams[camera]
            return int(cam.slot is not None) + cam.waiting_prepared

    def max_pending(self, camera: str) -> int:
        """Return the most frames of `camera` ever waiting at once (slot + prepared)."""
        return self._cams[camera].max_pending

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no frame is anywhere in the pipeline (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.counts()['in_pipeline'] == 0:
                return True
            time.sleep(0.005)
        return self.counts()['in_pipeline'] == 0

    # ----- internals -----
    def _count(self, cam: _Camera, key: str, reason: str | None = None) -> None:
        cam.perf.count(key, reason=reason)
        self.total.count(key, reason=reason)

    def _pick_camera(self) -> tuple[_Camera | None, float | None]:
        """
        Return the camera whose slot frame to prepare now, or (None, seconds until one is due).

        Round robin so one fast camera cannot starve the others. A camera with no prepared
        frame waiting is due at once (while a worker can still take it); one whose prepared
        frame waits behind running inference is due shortly before that inference should end,
        so the frame it then prepares is the freshest one available when a worker frees up.
        """
        if len(self._finish_q) >= self.concurrency:
            # Publishing is the slow stage (big frames, colour): starting more frames would
            # only queue them behind it, stale. They wait in their slots (latest only) and
            # the finish thread wakes us when it takes the next one.
            return None, None
        now = time.monotonic()
        n = len(self._order)
        wait = None
        for i in range(n):
            cam = self._cams[self._order[(self._rr + i) % n]]
            if cam.slot is None:
                continue
            if cam.waiting_prepared == 0:
                if len(self._ready) >= self.concurrency:
                    continue
            elif not self._inflight:
                continue   # a worker is about to take the prepared frame: nothing to win
            else:
                ends = min(f.infer_started for f in self._inflight.values()) + self._infer_est
                # Early enough that the fresh frame is ready before the call ends (the
                # estimates and the wake-up both jitter); frames arriving in this window
                # are prepared as they come, each replacing the last.
                due = ends - (2.0 * self._prepare_est + 0.1 * self._infer_est + 0.002)
                if due > now:
                    wait = due - now if wait is None else min(wait, due - now)
                    continue
            self._rr = (self._rr + i + 1) % n
            return cam, None
        return None, wait

    def _prepare_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    cam, wait = self._pick_camera()
                    if cam is not None:
                        break
                    self._cond.wait(wait)
                if self._stopping:
                    return
                frame, cam.slot = cam.slot, None
                self._preparing = frame
            t0 = time.monotonic()
            try:
                frame.prepared = self._prepare(frame)
            except InvalidImage as exc:
                unlogged = self._reject_log.admit(frame.camera, exc.reason, time.monotonic())
                if unlogged is not None:
                    self._log.warning('camera %r: frame rejected (%s): %s%s',
                                      frame.camera or '/', exc.reason, exc,
                                      f' ({unlogged} more of this kind not logged since the '
                                      'last such line)' if unlogged else '')
                self._settle_unsequenced(frame, 'frames_rejected', exc.reason)
                continue
            except Exception as exc:  # a bug or a resource error: count it, keep serving
                self._log.error('camera %r: preparing a frame failed: %s: %s',
                                frame.camera or '/', type(exc).__name__, exc)
                self._settle_unsequenced(frame, 'frames_failed', 'prepare_error')
                continue
            with self._cond:
                if self._preparing is not frame:   # stop() gave up waiting and counted it
                    return
                self._preparing = None
                self._prepare_est = _ewma(self._prepare_est, time.monotonic() - t0)
                if self._stopping:
                    self._count(cam, 'frames_dropped', 'shutdown')
                    return
                older = next((f for f in self._ready if f.camera == frame.camera), None)
                if older is not None:      # not taken yet: the fresher frame goes instead
                    self._ready.remove(older)
                    self._count(cam, 'frames_dropped', 'stale')
                else:
                    cam.waiting_prepared += 1
                cam.max_pending = max(cam.max_pending,
                                      int(cam.slot is not None) + cam.waiting_prepared)
                self._ready.append(frame)
                self._cond.notify_all()

    def _settle_unsequenced(self, frame: Frame, key: str, reason: str) -> None:
        with self._cond:
            if self._preparing is not frame:      # stop() already counted it
                return
            self._preparing = None
            self._count(self._cams[frame.camera], key, reason)

    def _infer_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._ready:
                    self._cond.wait()
                if self._stopping:
                    return
                frame = self._ready.popleft()
                cam = self._cams[frame.camera]
                cam.waiting_prepared -= 1
                # Order is fixed here, not when prepared: a prepared frame may still be
                # replaced by a fresher one until a worker takes it.
                frame.seq = cam.next_seq
                cam.next_seq += 1
                frame.infer_started = time.monotonic()
                self._inflight[id(frame)] = frame
                self._cond.notify_all()
            error = None
            try:
                result = self._infer(frame.prepared)
            except Exception as exc:  # any backend failure is this frame's failure
                result, error = None, f'{type(exc).__name__}: {exc}'
            took = time.monotonic() - frame.infer_started
            with self._cond:
                if self._inflight.pop(id(frame), None) is not None:
                    # Hung calls (popped by the watchdog) would skew it for long: left out.
                    self._infer_est = _ewma(self._infer_est, took)
                else:
                    # Timed out (already counted failed) or stopped: the late result is
                    # discarded so outputs stay in order and counts stay exact.
                    if id(frame) in self._timed_out:
                        self._timed_out.discard(id(frame))
                        self.health.hung_calls = len(self._timed_out)
                    continue
                if error is None:
                    self.health.consecutive_failures = 0
                    self.health.last_success_time = time.monotonic()
                    self._complete(frame, result, ok=True)
                else:
                    self._fail_locked(frame, 'backend_error', error)
            self._report_failures()

    def _report_failures(self) -> None:
        # Outside the lock: the owner may start a new backend, log, or read our state.
        with self._cond:
            n, self._failures_to_report = self._failures_to_report, 0
        if n and self._on_failure is not None:
            try:
                self._on_failure(self.health)
            except Exception as exc:  # the owner's bug must not kill a worker
                self._log.error('on_failure handler failed: %s: %s', type(exc).__name__, exc)

    def _fail_locked(self, frame: Frame, reason: str, message: str) -> None:
        h = self.health
        h.consecutive_failures += 1
        h.last_failure = f'{reason}: {message}'
        h.last_failure_time = time.monotonic()
        self._log.error('camera %r: inference failed (%s): %s', frame.camera or '/', reason,
                        message)
        self._count(self._cams[frame.camera], 'frames_failed', reason)
        self._failures_to_report += 1
        self._complete(frame, None, ok=False)

    def _complete(self, frame: Frame, result: object, ok: bool) -> None:
        # Called with the lock held: park the outcome, then release what is now in order.
        cam = self._cams[frame.camera]
        cam.done[frame.seq] = (frame, result if ok else _FAILED)
        while cam.next_release in cam.done:
            f, r = cam.done.pop(cam.next_release)
            cam.next_release += 1
            if r is not _FAILED:
                self._finish_q.append((f, r))
        self._cond.notify_all()

    def _check_timeouts_locked(self) -> None:
        if self.timeout_s <= 0:
            return
        now = time.monotonic()
        for key, frame in list(self._inflight.items()):
            if now - frame.infer_started > self.timeout_s:
                del self._inflight[key]
                self._timed_out.add(key)
                self.health.hung_calls = len(self._timed_out)
                self._fail_locked(frame, 'timeout', f'inference took longer than '
                                  f'{self.timeout_s:g} s (backend hung?)')

    def _finish_loop(self) -> None:
        poll = None if self.timeout_s <= 0 else min(0.05, self.timeout_s / 4)
        while True:
            with self._cond:
                while not self._stopping and not self._finish_q:
                    self._cond.wait(poll)
                    self._check_timeouts_locked()
                    if self._failures_to_report:
                        break
                if self._stopping:
                    return
                frame, result = self._finish_q.popleft() if self._finish_q else (None, None)
                self._finishing = frame
                self._cond.notify_all()   # room behind publishing: preparing may go on
            if frame is None:        # woke up only to report timed-out calls
                self._report_failures()
                continue
            cam = self._cams[frame.camera]
            try:
                self._finish(frame, result)
            except Exception as exc:  # publishing/postprocessing bug: count, keep serving
                self._log.error('camera %r: finishing a frame failed: %s: %s',
                                frame.camera or '/', type(exc).__name__, exc)
                with self._cond:
                    if self._finishing is frame:
                        self._finishing = None
                        self._count(cam, 'frames_failed', 'finish_error')
                continue
            now = self._clock_ns()
            latency_ms = (now - frame.received_ns) / 1e6
            e2e_ms = (now - frame.stamp_ns) / 1e6 if frame.stamp_ns > 0 else None
            if e2e_ms is not None and abs(e2e_ms) > E2E_MAX_SKEW_S * 1e3:
                e2e_ms = None      # stamp not on our clock (bag replay, sim time)
            with self._cond:
                if self._finishing is not frame:   # stop() already counted it
                    return
                self._finishing = None
                cam.perf.frame_done(latency_ms)
                self.total.frame_done(latency_ms)
                if e2e_ms is not None:
                    cam.e2e.add(e2e_ms)
                    self._e2e_total.add(e2e_ms)


_FAILED = object()


def _ewma(estimate: float, sample: float) -> float:
    return sample if estimate <= 0.0 else (1.0 - _EWMA) * estimate + _EWMA * sample
