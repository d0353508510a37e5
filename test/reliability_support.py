"""Shared pieces of the reliability suite (tests and bench/bench_stress.py).

The node runs in a subprocess (`ros_harness.NodeProcess`) with both the stand-in and the fault
backends registered; these helpers read its counters from /diagnostics, sample its RSS, threads
and file descriptors from /proc, pace publishers, and wait on conditions with deadlines.
"""
from __future__ import annotations

import os
import re
import threading
import time

from ros_harness import STAND_INS, NodeProcess, diag_values, level_of

from fault_backends import FAULTS

COUNT_KEYS = ('frames_received', 'frames_processed', 'frames_dropped', 'frames_rejected',
              'frames_failed')
OK, WARN, ERROR = 0, 1, 2
_REASON_RE = re.compile(r'([a-z_]+):([A-Za-z0-9_]+)=(\d+)')


def start_node(values: dict, env: dict | None = None, **kwargs) -> NodeProcess:
    """The depth node in a subprocess with stand-in and fault backends registered."""
    full = {'DPT_ROS_EXTRA_BACKENDS': f'{STAND_INS},{FAULTS}'}
    full.update(env or {})
    return NodeProcess(values, env=full, **kwargs)


def wait_until(cond, timeout: float, poll: float = 0.002) -> bool:
    """Poll `cond` until it is true or `timeout` seconds pass (no ROS spinning)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll)
    return bool(cond())


def proc_stats(pid: int) -> dict:
    """RSS (MB), OS threads and open file descriptors of a live process, from /proc."""
    rss_kb = threads = 0
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                rss_kb = int(line.split()[1])
            elif line.startswith('Threads:'):
                threads = int(line.split()[1])
    return {'rss_mb': rss_kb / 1024.0, 'threads': threads,
            'fds': len(os.listdir(f'/proc/{pid}/fd'))}


def parse_reasons(text: str) -> dict[str, int]:
    """'frames_dropped:stale=3, frames_rejected:nan=1' -> {'frames_dropped:stale': 3, ...}."""
    return {f'{k}:{r}': int(n) for k, r, n in _REASON_RE.findall(text or '')}


class Diagnostics:
    """Collects the node's /diagnostics and answers questions about the latest status."""

    def __init__(self, graph, node_name: str = 'depth_node'):
        from diagnostic_msgs.msg import DiagnosticArray
        self.graph = graph
        self.arrays = graph.collect(DiagnosticArray, '/diagnostics', qos=50)
        self.prefix = f'{node_name}: depth pipeline'

    def node_statuses(self) -> list:
        return [s for a in self.arrays for s in a.status if s.name.startswith(self.prefix)]

    def latest(self):
        for a in reversed(self.arrays):
            for s in a.status:
                if s.name.startswith(self.prefix):
                    return s
        return None

    def values(self) -> dict:
        s = self.latest()
        return diag_values(s) if s is not None else {}

    def counts(self) -> dict[str, int]:
        v = self.values()
        return {k: int(v[k]) for k in COUNT_KEYS + ('in_pipeline',) if k in v}

    def reasons(self) -> dict[str, int]:
        return parse_reasons(self.values().get('reasons', ''))

    def level(self) -> int | None:
        s = self.latest()
        return None if s is None else level_of(s)

    def wait_counts(self, pred, timeout: float) -> bool:
        """Spin until the latest counts satisfy `pred(counts)`."""
        return self.graph.spin_until(lambda: (c := self.counts()) and pred(c), timeout)

    def wait_idle(self, received: int | None = None, timeout: float = 10.0) -> bool:
        """Spin until nothing is in the pipeline (and, if given, `received` frames arrived)."""
        return self.wait_counts(lambda c: c.get('in_pipeline') == 0 and (
            received is None or c['frames_received'] >= received), timeout)

    def wait_level(self, level: int, timeout: float, since: int = 0) -> object | None:
        """Spin until a node status at `level` arrives after status number `since`."""
        found = []

        def cond():
            sts = self.node_statuses()[since:]
            hit = [s for s in sts if level_of(s) == level]
            if hit:
                found.append(hit[-1])
            return bool(hit)
        return found[-1] if self.graph.spin_until(cond, timeout) else None


def reconciles(c: dict) -> bool:
    """received == processed + dropped + rejected + failed (the pipeline is idle)."""
    return c['frames_received'] == (c['frames_processed'] + c['frames_dropped'] +
                                    c['frames_rejected'] + c['frames_failed'])


class Pacer:
    """Deadlines at a fixed rate for a publisher (pacing, not synchronisation)."""

    def __init__(self, hz: float):
        self.period = 1.0 / hz
        self.next = time.monotonic()

    def wait(self, stop: threading.Event | None = None) -> None:
        self.next += self.period
        delay = self.next - time.monotonic()
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
        elif delay < -1.0:   # fell far behind (loaded machine): do not burst to catch up
            self.next = time.monotonic()


class NodeLines:
    """New node log lines since the last look (the node logs every rejection and failure)."""

    def __init__(self, node):
        self.node = node
        self.pos = len(node.lines)

    def new(self) -> list[str]:
        lines = self.node.lines[self.pos:]
        self.pos += len(lines)
        return lines


def line_outcome(line: str):
    """('rejected', reason) / ('failed', reason) for a node log line about a frame, or None."""
    if 'frame rejected (' in line:
        return 'rejected', line.split('frame rejected (', 1)[1].split(')', 1)[0]
    if 'inference failed (' in line:
        return 'failed', line.split('inference failed (', 1)[1].split(')', 1)[0]
    if 'preparing a frame failed' in line:
        return 'failed', 'prepare_error'
    if 'finishing a frame failed' in line:
        return 'failed', 'finish_error'
    return None


def send_lock_step(graph, node, pub, depth: list, msg, tag: str, timeout: float = 60.0,
                   lines: NodeLines | None = None):
    """Publish `msg` (frame_id `tag`, stamped now) and wait for what became of it.

    Returns ('ok', output Image), ('rejected', reason) or ('failed', reason). Only one frame
    may be in flight: `depth` (a matched depth_relative subscription's list) must be empty.
    """
    lines = lines or NodeLines(node)
    assert not depth, 'an output arrived outside lock step'
    msg.header.stamp = graph.node.get_clock().now().to_msg()
    msg.header.frame_id = tag
    pub.publish(msg)
    got = []
    deadline = time.monotonic() + timeout
    while not got and time.monotonic() < deadline:
        got += [o for o in map(line_outcome, lines.new()) if o]
        if depth:
            out = depth.pop()
            assert not depth, 'more than one output in lock step'
            assert out.header.frame_id == tag, (out.header.frame_id, tag)
            got.append(('ok', out))
        if not got:
            graph.executor.spin_once(timeout_sec=0.002)
        if node.proc.poll() is not None:
            raise AssertionError(f'node exited while {tag} was in flight:\n{node.output()}')
    assert len(got) == 1, (tag, got, node.output()[-2000:])
    return got[0]


def no_crash_signs(text: str) -> list[str]:
    """Words in a node's output that mean something escaped or broke."""
    return [w for w in ('Traceback', 'unexpected error', 'Exception in thread') if w in text]
