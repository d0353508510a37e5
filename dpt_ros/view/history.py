"""
The depth node's diagnostics over the last minutes: FPS, latency, level and what it runs.

Fed with DiagnosticStatus-like objects (`name`, `level`, `message`, `values` of `key`/`value`),
so rclpy messages and plain test objects both work. No rclpy import.
"""
from __future__ import annotations

import collections
import math
import threading
import time

# The node's pipeline status carries these keys (dpt_ros/ros/node.py); camera statuses do not.
PIPELINE_KEYS = ('backend', 'output_fps')
SERIES = ('output_fps', 'input_fps', 'latency_ms_p50', 'latency_ms_p95')
INFO_KEYS = ('backend', 'device', 'execution_mode', 'fallback_reason', 'weights', 'model')
LEVEL_NAMES = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}
# A snapshot thins the series to about this many points (a fast diagnostics rate, long history).
MAX_POINTS = 600


def level_number(level) -> int:
    """DiagnosticStatus.level as an int (rclpy gives a one-byte bytes object)."""
    if isinstance(level, (bytes, bytearray)):
        return level[0] if level else 0
    return int(level)


def weights_random(values: dict) -> bool:
    """Tell from the key-values whether the model runs random weights (as the report does)."""
    flag = values.get('weights_random')
    if flag is not None:
        return str(flag).lower() in ('true', '1', 'yes')
    return 'random' in str(values.get('weights', '')).lower()


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class StatsHistory:
    """Rolling samples of the pipeline status, `history_s` long; thread-safe."""

    def __init__(self, history_s: float = 300.0, status_name: str = '', clock=time.monotonic):
        if not history_s > 0:
            raise ValueError(f'history_s must be > 0, got {history_s}')
        self.history_s = float(history_s)
        self.status_name = status_name
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self._samples: collections.deque = collections.deque()
        self._latest: dict = {}
        self.version = 0

    def _wanted(self, status, values: dict) -> bool:
        if self.status_name:
            return str(status.name) == self.status_name
        return all(k in values for k in PIPELINE_KEYS)

    def add(self, statuses, now: float | None = None) -> bool:
        """Take the pipeline status among `statuses`; True when one was taken."""
        now = self._clock() if now is None else now
        for status in statuses:
            values = {str(kv.key): str(kv.value) for kv in status.values}
            if self._wanted(status, values):
                self._take(status, values, now)
                return True
        return False

    def _take(self, status, values: dict, now: float) -> None:
        level = level_number(status.level)
        sample = {'t': now - self._t0, 'level': level,
                  **{k: _number(values.get(k)) for k in SERIES}}
        latest = {k: values.get(k, '') for k in INFO_KEYS}
        latest.update(name=str(status.name), message=str(status.message), level=level,
                      level_name=LEVEL_NAMES.get(level, str(level)),
                      weights_random=weights_random(values))
        with self._lock:
            self._samples.append(sample)
            while self._samples and now - self._t0 - self._samples[0]['t'] > self.history_s:
                self._samples.popleft()
            self._latest = latest
            self.version += 1

    def snapshot(self, max_points: int = MAX_POINTS) -> dict:
        """JSON-able: the series (seconds since start, values or None) and the latest info."""
        with self._lock:
            samples = list(self._samples)
            latest = dict(self._latest)
            version = self.version
        stride = -(-len(samples) // max_points)
        if stride > 1:   # every stride-th sample, counted back from the newest
            samples = samples[::-1][::stride][::-1]
        series = {k: [s[k] for s in samples] for k in ('t', 'level') + SERIES}
        return {'version': version, 'history_s': self.history_s, 'series': series,
                'latest': latest}
