"""
Perf accounting shared by the runner, the node and the evaluation tools.

One `PerfStats` per stream (a camera, a runner invocation). Stage times go in through
`stage()` or `add_stage()`, frames complete through `frame_done()`, fallbacks through
`count()`. `snapshot()` gives a flat dict of plain numbers for JSON and diagnostics.
No rclpy, no torch: pure Python + numpy.
"""
from __future__ import annotations

import collections
import contextlib
import threading
import time
from typing import Iterator

import numpy as np

# Stage names in pipeline order; keys of the per-stage ms figures everywhere.
STAGES = ('decode', 'preprocess', 'inference', 'postprocess', 'colorize', 'publish')

# Fallback counters every report carries, even when zero, so scripts can rely on the keys.
FALLBACK_KEYS = (
    'backend_fallback_count',            # asked backend could not start; ran another
    'host_fallback_count',               # a TT stage ran on host instead of the device
    'program_config_fallback_total',     # a tuned TT program config failed; default used
    'vit_backbone_fallback_count',
    'reassembly_readout_fallback_count',
    'upsample_host_fallback_count',
)


def percentile(values, q: float) -> float:
    """Percentile of a sequence, NaN when empty (never raises on no data)."""
    if len(values) == 0:
        return float('nan')
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


class RollingRate:
    """Events per second over a sliding time window."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._stamps: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._stamps.append(now)
            self._trim(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._stamps) < 2:
                return 0.0
            span = self._stamps[-1] - self._stamps[0]
            return (len(self._stamps) - 1) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self.window_s:
            self._stamps.popleft()


class PerfStats:
    """Thread-safe per-stage timing, latency percentiles, rates and counters."""

    def __init__(self, window: int = 300, rate_window_s: float = 5.0):
        self._lock = threading.Lock()
        self._stage_ms = {s: collections.deque(maxlen=window) for s in STAGES}
        self._latency_ms: collections.deque[float] = collections.deque(maxlen=window)
        self._device_ms: collections.deque[float] = collections.deque(maxlen=window)
        self.input_rate = RollingRate(rate_window_s)
        self.output_rate = RollingRate(rate_window_s)
        self.counters: collections.Counter[str] = collections.Counter()
        self.reasons: collections.Counter[str] = collections.Counter()
        for k in FALLBACK_KEYS:
            self.counters[k] = 0

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a block as one stage sample (ms)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add_stage(name, (time.perf_counter() - t0) * 1e3)

    def add_stage(self, name: str, ms: float) -> None:
        with self._lock:
            self._stage_ms.setdefault(name, collections.deque(maxlen=300)).append(float(ms))

    def add_device_ms(self, ms: float) -> None:
        """Device-only time of one inference (trace wall time on TT)."""
        with self._lock:
            self._device_ms.append(float(ms))

    def frame_in(self) -> None:
        self.input_rate.tick()
        self.count('frames_received')

    def frame_done(self, latency_ms: float | None = None) -> None:
        """Count a frame whose outputs are out; latency is source stamp (or arrival) to publish."""
        self.output_rate.tick()
        self.count('frames_processed')
        if latency_ms is not None:
            with self._lock:
                self._latency_ms.append(float(latency_ms))

    def count(self, key: str, n: int = 1, reason: str | None = None) -> None:
        """Increment a counter; a reason is tallied separately as 'key:reason'."""
        with self._lock:
            self.counters[key] += n
            if reason:
                self.reasons[f'{key}:{reason}'] += n

    def merge_counts(self, counts: dict[str, int]) -> None:
        """Take a backend's absolute fallback counts (they are owned by the backend)."""
        with self._lock:
            for k, v in counts.items():
                self.counters[k] = int(v)

    def stage_ms_mean(self) -> dict[str, float]:
        with self._lock:
            return {s: (float(np.mean(v)) if v else float('nan'))
                    for s, v in self._stage_ms.items()}

    def snapshot(self) -> dict:
        """Flat dict of numbers: rates, latency percentiles, stage means, counters."""
        with self._lock:
            lat = list(self._latency_ms)
            dev = list(self._device_ms)
            counters = dict(self.counters)
            reasons = dict(self.reasons)
        snap = {
            'input_fps': self.input_rate.rate(),
            'output_fps': self.output_rate.rate(),
            'device_fps': (1e3 / float(np.mean(dev))) if dev else float('nan'),
            'latency_ms_p50': percentile(lat, 50),
            'latency_ms_p95': percentile(lat, 95),
            'latency_ms_p99': percentile(lat, 99),
        }
        for s, ms in self.stage_ms_mean().items():
            snap[f'{s}_ms'] = ms
        snap.update(counters)
        snap['reasons'] = reasons
        return snap
