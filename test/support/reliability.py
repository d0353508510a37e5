"""
Shared pieces of the reliability suite (tests and bench/bench_stress.py).

The node runs in a subprocess (`ros_harness.NodeProcess`) with both the stand-in and the fault
backends registered; these helpers read its counters from /diagnostics, sample its RSS, threads
and file descriptors from /proc, pace publishers, and wait on conditions with deadlines.
"""
from __future__ import annotations

import os
import re
import threading
import time

from support.doubles.fault_backends import FAULTS
from support.ros_harness import diag_values, level_of, NodeProcess, STAND_INS

COUNT_KEYS = ('frames_received', 'frames_processed', 'frames_dropped', 'frames_rejected',
              'frames_failed')
OK, WARN, ERROR = 0, 1, 2
_REASON_RE = re.compile(r'([a-z_]+):([A-Za-z0-9_]+)=(\d+)')


def start_node(values: dict, env: dict | None = None, **kwargs) -> NodeProcess:
    """Return the depth node in a subprocess with stand-in and fault backends registered."""
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

    def camera_values(self) -> dict:
        """Key-values of the latest per-camera status."""
        for a in reversed(self.arrays):
            for s in a.status:
                if ': camera ' in s.name:
                    return diag_values(s)
        return {}

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
    """Check received == processed + dropped + rejected + failed (pipeline idle)."""
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
    """
    Publish `msg` (frame_id `tag`, stamped now) and wait for what became of it.

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


def percentiles(values, qs=(50, 95, 99)) -> dict:
    """{'p50': .., 'p95': .., 'p99': .., 'max': ..} of a list (NaN when empty)."""
    import numpy as np
    if not values:
        return {**{f'p{q}': float('nan') for q in qs}, 'max': float('nan')}
    arr = np.asarray(values, dtype=np.float64)
    return {**{f'p{q}': float(np.percentile(arr, q)) for q in qs}, 'max': float(arr.max())}


class PacedPublisher:
    """
    Publishes one prepared image at a fixed rate from its own thread and rclpy context.

    Each message is stamped with the current time just before it is published, so the node's
    stamp -> publish latency is the real end-to-end delay.
    """

    def __init__(self, topic: str, image_fields: dict, hz: float, name: str = 'dpt_load_pub'):
        from support.ros_harness import Graph
        from sensor_msgs.msg import Image
        self.graph = Graph(name)
        self.pub = self.graph.node.create_publisher(Image, topic, 10)
        self.msg = Image(**image_fields)
        self.msg.header.frame_id = 'load'
        self.hz = hz
        self.sent = 0
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def wait_subscriber(self, timeout: float = 10.0) -> bool:
        return self.graph.wait_for_subscriber(self.pub, timeout)

    def start(self, duration_s: float) -> None:
        def loop():
            pacer = Pacer(self.hz)
            end = time.monotonic() + duration_s
            while not self.stop_event.is_set() and time.monotonic() < end:
                self.msg.header.stamp = self.graph.node.get_clock().now().to_msg()
                self.pub.publish(self.msg)
                self.sent += 1
                pacer.wait(self.stop_event)
        self.thread = threading.Thread(target=loop, name='paced-publisher', daemon=True)
        self.thread.start()

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def close(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(5)
        self.graph.close()


def run_load(graph, node, *, hz: float, duration_s: float, warmup_s: float,
             size=(240, 320), sample_every_s: float = 0.25) -> dict:
    """
    Drive `node` with `size` rgb8 frames at `hz` for `duration_s`; return the figures.

    Figures: frames sent and the node's counters and reasons once it is idle; RSS / threads /
    fds at start, after warm-up, peak and end; latency percentiles from the node (header stamp
    -> publish, and receive -> publish) and measured here (stamp -> arrival, after warm-up).
    """
    from dpt_ros.ros import image_codec
    from support.ros_harness import rgb_image
    from sensor_msgs.msg import Image
    diags = Diagnostics(graph)
    seen: list[tuple[int, int]] = []    # (stamp ns, arrival ns): outputs are not kept

    def on_depth(msg):
        seen.append((msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                     graph.node.get_clock().now().nanoseconds))
    sub = graph.node.create_subscription(Image, 'depth_relative', on_depth, 10)
    assert graph.spin_until(lambda: sub.get_publisher_count() > 0, 10), node.output()
    pub = PacedPublisher('image', image_codec.rgb_to_image_fields(rgb_image(*size)), hz)
    try:
        assert pub.wait_subscriber(), node.output()
        pid = node.proc.pid
        t_start = time.monotonic()
        pub.start(duration_s)
        samples = []
        next_sample = t_start
        while pub.running():
            graph.executor.spin_once(timeout_sec=0.005)
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - t_start, proc_stats(pid)))
                next_sample += sample_every_s
            assert node.proc.poll() is None, node.output()
        sent = pub.sent
    finally:
        pub.close()
    # Everything sent has reached the node's counters and left the pipeline.
    idle = diags.wait_counts(lambda c: c['in_pipeline'] == 0 and c['frames_received'] > 0 and
                             time.monotonic() > t_start + duration_s + 0.5, 15)
    counts, reasons, values = diags.counts(), diags.reasons(), diags.values()
    statuses = diags.node_statuses()
    samples.append((time.monotonic() - t_start, proc_stats(node.proc.pid)))
    after = [s for t, s in samples if t >= warmup_s]
    warm = after[0] if after else samples[-1]
    peak = {k: max(s[k] for _, s in samples) for k in ('rss_mb', 'threads', 'fds')}
    graph.node.destroy_subscription(sub)
    warm_ns = seen[0][0] + int(warmup_s * 1e9) if seen else 0
    own = [(t_arr - stamp) / 1e6 for stamp, t_arr in seen if stamp >= warm_ns]
    stamps = [stamp for stamp, _ in seen]

    def f(key):
        try:
            return float(values.get(key, 'nan'))
        except ValueError:
            return float('nan')
    return {
        'hz': hz, 'duration_s': duration_s, 'image': f'{size[1]}x{size[0]} rgb8',
        'sent': sent, 'idle': idle, 'counts': counts, 'reasons': reasons,
        'outputs_seen': len(seen), 'outputs_in_order': stamps == sorted(stamps),
        'inference_ms': f('inference_ms'),
        # The node's own figures: header stamp -> publish (e2e) and receive -> publish.
        'node_latency_ms': {q: f(f'e2e_latency_ms_{q}') if f'e2e_latency_ms_{q}' in values
                            else f(f'latency_ms_{q}') for q in ('p50', 'p95', 'p99')},
        'node_receive_latency_ms': {q: f(f'latency_ms_{q}') for q in ('p50', 'p95', 'p99')},
        'arrival_latency_ms': percentiles(own),
        'max_waiting_frames': int(diags.camera_values().get('max_waiting_frames', -1)),
        'diag_levels': {lvl: sum(level_of(st) == lvl for st in statuses)
                        for lvl in (OK, WARN, ERROR)},
        'diag_drop_warnings': sum('drops rising' in st.message for st in statuses),
        'rss_mb': {'start': samples[0][1]['rss_mb'], 'after_warmup': warm['rss_mb'],
                   'peak': peak['rss_mb'], 'end': samples[-1][1]['rss_mb']},
        'threads': {'start': samples[0][1]['threads'], 'after_warmup': warm['threads'],
                    'peak': peak['threads'], 'end': samples[-1][1]['threads']},
        'fds': {'start': samples[0][1]['fds'], 'after_warmup': warm['fds'],
                'peak': peak['fds'], 'end': samples[-1][1]['fds']},
        'rss_growth_after_warmup_mb': max(s['rss_mb'] for s in after or [warm]) -
        warm['rss_mb'],
    }


def run_soak(graph, node, *, frames: int, warmup_frames: int, size=(120, 160),
             sample_every: int = 50, per_frame_timeout: float = 30.0) -> dict:
    """
    Push `frames` frames through the node one at a time; sample RSS / threads / fds.

    The next frame is sent when the last came out, so none is dropped; samples are taken
    every `sample_every`.
    """
    from dpt_ros.ros import image_codec
    from support.ros_harness import rgb_image
    from sensor_msgs.msg import Image
    diags = Diagnostics(graph)
    arrivals: list[int] = []
    depth = graph.collect(Image, 'depth_relative', timed=arrivals)
    assert graph.wait_matched('depth_relative'), node.output()
    pub = graph.node.create_publisher(Image, 'image', 10)
    assert graph.wait_for_subscriber(pub), node.output()
    msg = Image(**image_codec.rgb_to_image_fields(rgb_image(*size)))
    msg.header.frame_id = 'soak'
    pid = node.proc.pid
    samples = [(0, proc_stats(pid))]
    latency = []
    t0 = time.monotonic()
    for i in range(frames):
        msg.header.stamp = graph.node.get_clock().now().to_msg()
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        pub.publish(msg)
        if not graph.spin_until(lambda: len(depth) > i, per_frame_timeout):
            raise AssertionError(f'frame {i} did not come out:\n{node.output()[-3000:]}')
        if i >= warmup_frames:
            latency.append((arrivals[i] - stamp_ns) / 1e6)
        if (i + 1) % sample_every == 0:
            samples.append((i + 1, proc_stats(pid)))
        # Keep only what is needed: the outputs themselves would grow this process.
        depth[i] = None
    wall = time.monotonic() - t0
    assert diags.wait_idle(received=frames, timeout=10), diags.values()
    warm = next(s for n, s in samples if n >= warmup_frames)
    after = [s for n, s in samples if n >= warmup_frames]
    half = after[len(after) // 2]
    return {
        'frames': frames, 'warmup_frames': warmup_frames, 'image': f'{size[1]}x{size[0]} rgb8',
        'wall_s': wall, 'fps': frames / wall, 'counts': diags.counts(),
        'reasons': diags.reasons(), 'arrival_latency_ms': percentiles(latency),
        'samples': [{'frame': n, **s} for n, s in samples],
        'rss_mb': {'start': samples[0][1]['rss_mb'], 'after_warmup': warm['rss_mb'],
                   'mid': half['rss_mb'], 'peak': max(s['rss_mb'] for _, s in samples),
                   'end': samples[-1][1]['rss_mb']},
        'threads': {'start': samples[0][1]['threads'], 'after_warmup': warm['threads'],
                    'peak': max(s['threads'] for _, s in samples),
                    'end': samples[-1][1]['threads']},
        'fds': {'start': samples[0][1]['fds'], 'after_warmup': warm['fds'],
                'peak': max(s['fds'] for _, s in samples), 'end': samples[-1][1]['fds']},
    }


# Node configurations for timed stops (bench/bench_shutdown.py and the shutdown tests).
STOP_CASES = {
    # No card here: ttnn is imported, opening the device fails, torch on cpu takes over.
    'tt_fallback': {'backend': 'tt', 'device': 'wormhole_n300', 'weights': 'tiny-random'},
    'torch': {'backend': 'torch', 'device': 'cpu', 'weights': 'tiny-random'},
    'zero': {'backend': 'standin_zero'},
}
# Output that a clean stop never has: nanobind's leak report at interpreter exit, crashes,
# a launch escalating to the next signal, a worker left inside a backend call.
UNCLEAN_STOP_SIGNS = ('leaked', 'Traceback', 'terminate called', 'Segmentation', 'escalating',
                      'still inside a backend call')
# Seconds of CPU load before the signal, so a stop meets a machine that is already busy.
STOP_LOAD_LEAD_S = 0.5
# The node's last line names how long it waited for its workers (the running inference call).
_STOP_LINE = re.compile(r'stopping on SIG\w+: released in \d+ ms \((\d+) ms of it for the workers')


def timed_stop(case: str, sig, load, graph, frames: int = 5, size=(240, 320),
               hz: float = 30.0, in_flight: bool = True) -> dict:
    """
    Start a node of STOP_CASES[case], serve `frames` outputs, stop it with `sig`, time it.

    in_flight: frames keep coming at `hz` until the signal, so an inference call is usually
    running when it comes (the node lets it finish, for at most 1 s). Otherwise frames go in
    lock step (one, then its output) and the stop meets a serving node with nothing in its
    pipeline: the time is then the node's own stop. `load` (a ros_harness.CpuLoad) runs from
    STOP_LOAD_LEAD_S before the signal until the node has exited. Returns the figures: exit
    code, seconds from signal to exit, of that the wait for the workers and the rest, outputs
    served, unclean signs seen, 'clean'.
    """
    import signal as _signal

    from dpt_ros.ros import image_codec
    from support.ros_harness import rgb_image
    from sensor_msgs.msg import Image
    fields = image_codec.rgb_to_image_fields(rgb_image(*size))
    got: list[int] = []
    sub = graph.node.create_subscription(Image, 'depth_relative', lambda m: got.append(1), 10)
    pub = graph.node.create_publisher(Image, 'image', 10)
    node = start_node(dict(STOP_CASES[case], image_size=64, diagnostics_rate=5.0),
                      wait_ready=120.0)
    try:
        # Both ends matched first: a frame sent before discovery is lost, not served.
        assert graph.wait_for_subscriber(pub, 30.0), node.output()
        assert graph.spin_until(lambda: sub.get_publisher_count() > 0, 30.0), node.output()
        next_pub = time.monotonic()

        def feed_until(cond, timeout):
            nonlocal next_pub
            deadline = time.monotonic() + timeout
            while not cond() and time.monotonic() < deadline:
                if time.monotonic() >= next_pub:
                    pub.publish(Image(**fields))
                    next_pub += 1 / hz
                graph.executor.spin_once(timeout_sec=0.002)
        if in_flight:
            feed_until(lambda: len(got) >= frames, 60.0)
        else:
            for _ in range(frames):
                want = len(got) + 1
                pub.publish(Image(**fields))
                graph.spin_until(lambda: len(got) >= want, 30.0)
        served = len(got)
        load.resume()
        t_load = time.monotonic()
        if in_flight:
            feed_until(lambda: time.monotonic() - t_load >= STOP_LOAD_LEAD_S,
                       STOP_LOAD_LEAD_S + 1)
        else:
            graph.spin_until(lambda: time.monotonic() - t_load >= STOP_LOAD_LEAD_S,
                             STOP_LOAD_LEAD_S + 1)
        rc, took = node.stop(sig, timeout=30.0)
        load.pause()
        out = node.output()
        signs = sorted(s for s in UNCLEAN_STOP_SIGNS if s in out)
        m = _STOP_LINE.search(out)
        worker_s = float(m.group(1)) / 1e3 if m else float('nan')
        return {'case': case, 'signal': _signal.Signals(sig).name, 'in_flight': in_flight,
                'exit_code': rc,
                'seconds': round(took, 4), 'worker_wait_s': round(worker_s, 4),
                'rest_s': round(took - worker_s, 4), 'served': served, 'unclean_signs': signs,
                'clean': rc == 0 and not signs and served >= frames and m is not None,
                'output': out}
    finally:
        load.pause()
        node.kill()
        graph.node.destroy_subscription(sub)
        graph.node.destroy_publisher(pub)
