"""
The monitoring keys other ROS tools already read, computed the way those tools compute them.

- greenwave_monitor / Isaac ROS NITROS diagnostics (NVIDIA-ISAAC-ROS/greenwave_monitor
  `greenwave_diagnostics.hpp`, its "Diagnostics Contract"): per published topic
  `frame_rate_node` (Hz from the publish times of the last 300 messages), `frame_rate_msg`
  (Hz from their header stamps), `current_delay_from_realtime_ms` (publish time minus header
  stamp of the newest message; 'N/A' when negative or over a year), `expected_frequency`,
  `tolerance` (percent) and `total_dropped_frames`. `TopicTimes` keeps the times.
- ros2_benchmark (NVIDIA-ISAAC-ROS/ros2_benchmark `basic_performance_calculator.py`):
  `BasicPerformanceMetrics.*` from the send and receive times of each message,
  `benchmark_metrics()`.

Pure Python; the formulas follow those sources (read, not copied), quirks included.
"""
from __future__ import annotations

import collections
import math
import threading

# greenwave's default filter_window_size: rates are means over this many interarrivals.
WINDOW = 300
# greenwave's kNonsenseLatencyMs: a delay beyond a year (or negative) is reported as 'N/A'.
NONSENSE_DELAY_MS = 365 * 24 * 60 * 60 * 1000
GREENWAVE_KEYS = ('frame_rate_node', 'frame_rate_msg', 'current_delay_from_realtime_ms',
                  'expected_frequency', 'tolerance', 'total_dropped_frames')
BENCHMARK_PREFIX = 'BasicPerformanceMetrics.'


class _Interarrivals:
    """The last `window` gaps between message times (microseconds, as greenwave keeps them)."""

    def __init__(self, window: int):
        self.gaps: collections.deque[int] = collections.deque(maxlen=window)
        self.total = 0
        self.prev_us: int | None = None

    def add(self, t_us: int) -> None:
        if self.prev_us is not None:
            if len(self.gaps) == self.gaps.maxlen:
                self.total -= self.gaps[0]
            gap = t_us - self.prev_us
            self.gaps.append(gap)
            self.total += gap
        self.prev_us = t_us

    def rate_hz(self) -> float:
        if not self.gaps or self.total == 0:
            return 0.0
        return 1e6 / (self.total / len(self.gaps))


class TopicTimes:
    """One published topic's message times: greenwave's frame rates and delay from realtime."""

    def __init__(self, window: int = WINDOW):
        self._lock = threading.Lock()
        self._node = _Interarrivals(window)
        self._msg = _Interarrivals(window)
        self._delay_ms = float('nan')
        self.messages = 0

    def add(self, stamp_ns: int, now_ns: int) -> None:
        """Record one message published at `now_ns` with header stamp `stamp_ns`."""
        stamp_us, now_us = int(stamp_ns) // 1000, int(now_ns) // 1000
        delay = (now_us - stamp_us) / 1000.0
        with self._lock:
            self._node.add(now_us)
            self._msg.add(stamp_us)
            self._delay_ms = delay if 0.0 <= delay <= NONSENSE_DELAY_MS else float('nan')
            self.messages += 1

    def values(self) -> dict:
        """frame_rate_node, frame_rate_msg (Hz) and current_delay_from_realtime_ms."""
        with self._lock:
            delay = self._delay_ms
            return {'frame_rate_node': self._node.rate_hz(),
                    'frame_rate_msg': self._msg.rate_hz(),
                    'current_delay_from_realtime_ms': 'N/A' if math.isnan(delay) else delay}


def greenwave_values(times: TopicTimes | None, expected_hz: float, counts: dict) -> dict:
    """
    Return the greenwave keys of one camera's output topic.

    `expected_frequency` is the rate its input arrives at (what the output would reach with
    nothing dropped), `tolerance` 0 (the node judges its own level), `total_dropped_frames`
    every received frame that never became an output: dropped + rejected + failed.
    """
    rates = times.values() if times is not None else {
        'frame_rate_node': 0.0, 'frame_rate_msg': 0.0, 'current_delay_from_realtime_ms': 'N/A'}
    expected = float(expected_hz) if expected_hz == expected_hz else 0.0
    lost = sum(int(counts.get(k, 0))
               for k in ('frames_dropped', 'frames_rejected', 'frames_failed'))
    return {**rates, 'expected_frequency': expected, 'tolerance': 0.0,
            'total_dropped_frames': lost}


def benchmark_metrics(sent_ns: dict, received_ns: dict) -> dict:
    """
    Return ros2_benchmark's BasicPerformanceMetrics of one run, keyed as its JSON is.

    `sent_ns` / `received_ns` map a message key (here the header stamp) to the time it was
    sent / received, each in the order it happened. Durations and latencies in ms, rates in
    fps, jitter = |second difference| of the receive times (ms). As in ros2_benchmark, the
    rates divide the message count (not the intervals) by the span, and a metric it would
    leave out for lack of data is left out here too.
    """
    p = BENCHMARK_PREFIX
    out: dict[str, float] = {}
    ends = [t / 1e6 for t in received_ns.values()]
    starts = [t / 1e6 for t in sent_ns.values()]
    if not ends:
        return out
    received_ms = ends[-1] - ends[0]
    out[p + 'RECEIVED_DURATION'] = received_ms
    if len(starts) > 1:
        out[p + 'MEAN_PLAYBACK_FRAME_RATE'] = len(starts) / ((starts[-1] - starts[0]) / 1e3)
        out[p + 'FIRST_SENT_RECEIVED_LATENCY'] = ends[0] - starts[0]
        out[p + 'LAST_SENT_RECEIVED_LATENCY'] = ends[-1] - starts[-1]
        out[p + 'NUM_MISSED_FRAMES'] = len(starts) - len(ends)
        out[p + 'NUM_FRAMES_SENT'] = len(starts)
    if received_ms > 0:
        out[p + 'MEAN_FRAME_RATE'] = len(ends) / (received_ms / 1e3)
    latencies = [(received_ns[k] - t) / 1e6 for k, t in sent_ns.items() if k in received_ns]
    if latencies:
        out[p + 'FIRST_INPUT_LATENCY'] = latencies[0]
        out[p + 'LAST_INPUT_LATENCY'] = latencies[-1]
        out[p + 'MAX_LATENCY'] = max(latencies)
        out[p + 'MIN_LATENCY'] = min(latencies)
        out[p + 'MEAN_LATENCY'] = sum(latencies) / len(latencies)
    if len(ends) > 2:
        gaps = [b - a for a, b in zip(ends, ends[1:])]
        jitter = [abs(b - a) for a, b in zip(gaps, gaps[1:])]
        mean = sum(jitter) / len(jitter)
        out[p + 'MAX_JITTER'] = max(jitter)
        out[p + 'MIN_JITTER'] = min(jitter)
        out[p + 'MEAN_JITTER'] = mean
        out[p + 'STD_DEV_JITTER'] = math.sqrt(sum((j - mean) ** 2 for j in jitter) / len(jitter))
    return out
