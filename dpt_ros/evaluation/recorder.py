"""
The replay's receiving side: an rclpy node that records the depth node's outputs.

`Recorder` (no rclpy) notes each output's arrival by header stamp, keeps the payloads asked
for, writes everything to the output bag and collects /diagnostics. `RecorderNode` is the
rclpy glue: its own context (the caller's environment and global context stay untouched),
raw subscriptions feeding a Recorder, an executor spinning on a thread.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time

from dpt_ros.evaluation import bagio
import numpy as np

log = logging.getLogger('dpt_ros.evaluation.recorder')


def cdr_stamp(raw: bytes | memoryview) -> int:
    """Header stamp (ns) of a CDR-serialised message whose first field is std_msgs/Header."""
    b = bytes(raw[:12])
    order = '<' if b[1] & 1 else '>'
    sec, nsec = np.frombuffer(b[4:12], dtype=np.dtype(order + 'i4'), count=2)
    return int(sec) * 1_000_000_000 + int(np.uint32(nsec))


def with_stamp(raw: bytes, stamp_ns: int) -> bytes:
    """Return a copy of CDR bytes with the header stamp replaced (for warm-up frames)."""
    order = '<' if raw[1] & 1 else '>'
    head = np.array([stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000],
                    dtype=np.dtype(order + 'i4')).tobytes()
    return raw[:4] + head + raw[12:]


def random_weights_in(diagnostics: dict) -> bool | None:
    """From the node's diagnostics: True/False when a 'weights' value says, else None."""
    for st in diagnostics.values():
        for k, v in st.get('values', {}).items():
            if k.lower() == 'weights_random':
                return str(v).lower() in ('true', '1', 'yes')
            if k.lower() == 'weights':
                return 'random' in str(v).lower()
    return None


class Recorder:
    """Receives the node's outputs (raw CDR), notes arrival times, writes the output bag."""

    def __init__(self, writer: bagio.BagWriter | None):
        self.writer = writer
        self.cond = threading.Condition()
        self.arrivals: dict[str, dict[int, float]] = collections.defaultdict(dict)
        self.payload: dict[str, dict[int, bytes]] = collections.defaultdict(dict)
        self.keep_payload: dict[str, set[int]] = collections.defaultdict(set)
        self.counts: collections.Counter = collections.Counter()
        self.diagnostics: dict[str, dict] = {}
        self.write_errors = 0
        self.warmup_rtt_s: list[float] = []      # warm-up frames' round trips

    def callback(self, topic: str, msgtype: str):
        """Return the raw-message callback for `topic`."""
        def on_msg(raw):
            now = time.perf_counter()
            try:
                stamp = cdr_stamp(raw)
            except Exception:
                stamp = -1
            with self.cond:
                self.arrivals[topic].setdefault(stamp, now)
                self.counts[topic] += 1
                if stamp in self.keep_payload[topic]:
                    self.payload[topic][stamp] = bytes(raw)
                if self.writer is not None:
                    try:
                        self.writer.write_raw(topic, msgtype, time.time_ns(), raw)
                    except Exception as err:  # a full disk must not stop the measurement
                        self.write_errors += 1
                        log.debug('output bag write failed: %s', err)
                self.cond.notify_all()
        return on_msg

    def on_diagnostics(self, msg) -> None:
        with self.cond:
            for st in msg.status:
                self.diagnostics[st.name] = {
                    'level': int.from_bytes(st.level, 'little') if isinstance(st.level, bytes)
                    else int(st.level),
                    'message': st.message, 'hardware_id': st.hardware_id,
                    'values': {kv.key: kv.value for kv in st.values}}

    def wait_for(self, topic: str, stamps, timeout_s: float) -> bool:
        """Block until every stamp arrived on `topic` (or timeout)."""
        want = set(stamps)
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not want.issubset(self.arrivals[topic].keys()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
        return True


@contextlib.contextmanager
def _defaults_in_environ(defaults: dict[str, str]):
    """Set missing variables while rcl reads them at init, then restore the environment."""
    added = [k for k in defaults if k not in os.environ]
    for k in added:
        os.environ[k] = defaults[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


class RecorderNode:
    """An rclpy node in a context of its own, subscribed to outputs for a Recorder."""

    def __init__(self, recorder: Recorder, ros_env: dict[str, str]):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.recorder = recorder
        self.context = Context()
        domain = ros_env.get('ROS_DOMAIN_ID')
        with _defaults_in_environ(ros_env):
            rclpy.init(context=self.context,
                       domain_id=int(domain) if domain is not None else None)
        self.node = rclpy.create_node(f'bag_eval_{os.getpid()}', context=self.context)
        self.subs: list = []
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = None

    def subscribe(self, topics: list[str]) -> None:
        """Raw RELIABLE subscriptions to the output `topics`, and /diagnostics when importable."""
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        qos_in = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                            history=HistoryPolicy.KEEP_LAST)
        for topic in topics:
            self.subs.append(self.node.create_subscription(
                Image, topic, self.recorder.callback(topic, bagio.IMAGE_TYPE), qos_in,
                raw=True))
        with contextlib.suppress(ImportError):
            from diagnostic_msgs.msg import DiagnosticArray
            self.subs.append(self.node.create_subscription(
                DiagnosticArray, '/diagnostics', self.recorder.on_diagnostics, 10))

    def start(self) -> None:
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)
        if self._spin is not None:
            self._spin.join(timeout=5.0)
