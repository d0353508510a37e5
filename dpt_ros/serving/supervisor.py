"""
The started backend's owner: calls in flight, failure judgement, the fallbacks' count.

`BackendSupervisor` holds the backend the node, the runner and the evaluation tools serve
with (the pipeline calls it only through the supervisor). A fallback that happened at start-up
(`StartedBackend.fallback_reason`) is counted in `backend_fallback_count` with its reason when
the supervisor takes the backend. Every inference call goes through `using()`, which counts
the calls running inside each backend (the only such count). After `fallback_after_failures`
consecutive failed calls (`on_failure`, fed by the scheduler's health) it starts the CPU
fallback (torch on cpu) on its own thread, counts the swap in `backend_fallback_count` with
reason 'runtime: <error>' before the first frame can reach the new backend, and closes the
replaced one only once no call runs inside it. `close()` releases whatever is current, once.
No rclpy here.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Iterator

from dpt_ros.perf.stats import PerfStats

# The runtime fallback: the backend (and device) that replaces one that died after start-up.
RUNTIME_FALLBACK_BACKEND, RUNTIME_FALLBACK_DEVICE = 'torch', 'cpu'
# How long a replaced backend waits for its running calls when no watchdog limit is set.
DEFAULT_DRAIN_S = 30.0


class BackendSupervisor:
    """
    Own one started backend; swap it for the CPU fallback when it keeps failing.

    started:          a backends.StartedBackend (backend, requested, fallback_reason)
    start_fallback:   () -> DepthBackend, the CPU fallback (slow: loads a model); None = never
                      (the runner and the evaluation tools: their backend is fixed)
    fallback_after:   consecutive failed calls before the swap (0 disables it)
    drain_s:          how long a replaced backend waits for its running calls before closing
    """

    def __init__(self, started, *, start_fallback: Callable[[], object] | None = None,
                 fallback_after: int = 0, drain_s: float = 0.0,
                 perf: PerfStats | None = None, logger: logging.Logger | None = None):
        self._started = started
        self._start_fallback = start_fallback
        self.fallback_after = int(fallback_after)
        self.drain_s = drain_s or DEFAULT_DRAIN_S
        self.perf = perf if perf is not None else PerfStats()
        self._log = logger or logging.getLogger('dpt_ros.serving.supervisor')
        if started.fallback_reason:
            self.perf.count('backend_fallback_count', 1, reason=started.fallback_reason)
        self._lock = threading.Lock()
        self._calls = threading.Condition(self._lock)
        self._active: dict[int, int] = {}        # id(backend) -> calls running inside it
        self._swap_thread: threading.Thread | None = None
        self._swap_tried = False
        self._fallback_serving = threading.Event()
        self._closed = False
        self._released = None

    # ----- what runs -----
    @property
    def started(self):
        """Return the current StartedBackend (its fallback_reason says why, if swapped)."""
        return self._started

    @property
    def backend(self):
        """Return the backend new calls go to."""
        return self._started.backend

    @property
    def fallback_reason(self) -> str | None:
        return self._started.fallback_reason

    @property
    def closed(self) -> bool:
        return self._closed

    def in_flight(self, backend=None) -> int:
        """Return the calls running inside `backend` (default: the current one)."""
        with self._lock:
            return self._active.get(id(backend or self.backend), 0)

    @contextlib.contextmanager
    def using(self) -> Iterator[object]:
        """Yield the current backend for one call, counted in flight while it runs."""
        with self._lock:
            backend = self._started.backend
            key = id(backend)
            self._active[key] = self._active.get(key, 0) + 1
        try:
            yield backend
        finally:
            with self._calls:
                self._active[key] -= 1
                if not self._active[key]:
                    del self._active[key]
                self._calls.notify_all()

    # ----- failure judgement and the swap -----
    def is_fallback(self) -> bool:
        info = self.backend.info
        return (info.name, info.device) == (RUNTIME_FALLBACK_BACKEND, RUNTIME_FALLBACK_DEVICE)

    def on_failure(self, health) -> None:
        """After a failed call: start the swap once `health.consecutive_failures` reaches it."""
        if self.fallback_after <= 0 or self._start_fallback is None or self._closed:
            return
        if self.is_fallback() or health.consecutive_failures < self.fallback_after:
            return
        with self._lock:
            if self._swap_tried or self._closed:
                return
            self._swap_tried = True
            reason = f'runtime: {health.last_failure}'
            # Starting torch takes seconds (model load): not on the caller's thread, a
            # scheduler worker, which would stall the watchdog and the other cameras.
            self._swap_thread = threading.Thread(target=self._swap, args=(reason,),
                                                 name='dpt-fallback', daemon=True)
            self._swap_thread.start()

    def wait_fallback(self, timeout: float) -> bool:
        """Wait until the fallback takes new calls (tests); True when it does."""
        return self._fallback_serving.wait(timeout)

    def wait_swap(self, timeout: float) -> bool:
        """Wait for a running swap to end (tests); True when none runs."""
        t = self._swap_thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()

    def _swap(self, reason: str) -> None:
        old = self.backend
        self._log.error(f"backend '{old.info.name}' on {old.info.device} failed "
                        f'{self.fallback_after} times in a row ({reason}); starting '
                        f"'{RUNTIME_FALLBACK_BACKEND}' on {RUNTIME_FALLBACK_DEVICE} "
                        '(counted in backend_fallback_count)')
        new = self._start_and_check(old)
        if new is None:
            return   # the old one stays: diagnostics stay ERROR with its reason
        with self._lock:
            if self._closed:          # shut down while we were starting it
                self._close_quietly(new)
                return
            # Counted before the first frame can reach the new backend, so no output is
            # ever published by a fallback that diagnostics do not show yet.
            self.perf.count('backend_fallback_count', 1, reason=reason)
            self._started = type(self._started)(new, requested=self._started.requested,
                                                fallback_reason=reason)
            self._fallback_serving.set()
        self._log.warning(f"running '{new.info.name}' on {new.info.device} instead of "
                          f"'{old.info.name}' from now on ({reason})")
        # A device must not be released under a running call; a call stuck past the drain
        # limit is not waited for.
        with self._calls:
            self._calls.wait_for(lambda: self._closed or not self._active.get(id(old)),
                                 self.drain_s)
        self._close_quietly(old)

    def _start_and_check(self, old):
        try:
            new = self._start_fallback()
        except Exception as exc:
            self._log.error(f'runtime fallback failed to start: {type(exc).__name__}: {exc}')
            return None
        try:
            # First call outside `perf`: it pays for lazy imports and allocations.
            import numpy as np
            s = int(old.info.image_size)
            new.infer(np.zeros((1, 3, s, s), np.float32))
        except Exception as exc:
            self._log.error(f'runtime fallback failed its first inference: '
                            f'{type(exc).__name__}: {exc}')
            self._close_quietly(new)
            return None
        return new

    # ----- shutdown -----
    def close(self, timeout: float = 1.0) -> None:
        """Release the current backend once; a running swap gets `timeout` to end first."""
        with self._calls:
            first, self._closed = not self._closed, True
            self._calls.notify_all()   # a swap waiting to close the old one: go now
        swap = self._swap_thread
        if first and swap is not None:
            # It closes the backend it replaced (or the fallback it was still starting).
            swap.join(max(0.0, timeout))
        with self._lock:
            backend = self._started.backend
            if self._released is backend:
                return
            self._released = backend
        self._close_quietly(backend)

    def alive_threads(self) -> list[str]:
        """Return the swap thread's name while it still runs (after close(): stuck)."""
        t = self._swap_thread
        return [t.name] if t is not None and t.is_alive() else []

    def _close_quietly(self, backend) -> None:
        try:
            backend.close()
        except Exception as exc:  # report, keep going
            self._log.error(f'closing backend {backend.info.name} failed: '
                            f'{type(exc).__name__}: {exc}')


def cpu_fallback_starter(options, create: Callable | None = None,
                         logger: logging.Logger | None = None) -> Callable[[], object]:
    """Return the `start_fallback` for `options` (backends.BackendOptions): torch on cpu."""
    def start():
        from dpt_ros.backends import create_backend
        make = create or create_backend
        opts = options.replace(device=RUNTIME_FALLBACK_DEVICE, dp=1, batch_size=1)
        return make(RUNTIME_FALLBACK_BACKEND, opts, allow_fallback=False,
                    logger=logger or logging.getLogger('dpt_ros.backends')).backend
    return start
