"""
Helpers for tests and benchmarks that run the real depth node in a subprocess.

`NodeProcess` (dpt_ros.ros.node_process's) starts `python -m dpt_ros.node --ros-args
--params-file <yaml>` with the stand-in backends registered (DPT_ROS_EXTRA_BACKENDS), collects
its log lines on a thread, and stops it with a signal. `Graph` is an in-process rclpy node
with an executor and `spin_until`, so every wait is a condition with a timeout. The caller
sets ROS_DOMAIN_ID / ROS_AUTOMATIC_DISCOVERY_RANGE (test/conftest.py does for tests).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

from dpt_ros.ros import node_process
import numpy as np
from support.paths import pythonpath, ROOT
import yaml

STAND_INS = ','.join(f'standin_{n}=support.doubles.stand_in_backends:create_{n}'
                     for n in ('zero', 'delay', 'flaky', 'failing', 'unavailable', 'busy'))


def write_params(values: dict, path: str | None = None, node_name: str = 'depth_node') -> str:
    """Return a params file for `values` (dotted names nested as the node's yaml is)."""
    tree: dict = {}
    for key, value in values.items():
        parts = key.split('.')
        d = tree
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    if path is None:
        fd, path = tempfile.mkstemp(suffix='.yaml', prefix='dpt_params_')
        os.close(fd)
    with open(path, 'w') as f:
        yaml.safe_dump({node_name: {'ros__parameters': tree}}, f)
    return path


class NodeProcess(node_process.NodeProcess):
    """The depth node in a subprocess with the stand-in backends; `lines` collects its output."""

    def __init__(self, values: dict, extra_args=(), env: dict | None = None,
                 wait_ready: float = 60.0):
        self.params_file = write_params(values)
        full_env = {
            # The device double (imported in-process by other test modules) mocks the TT
            # cluster for this process only; a node subprocess must see the real machine.
            'TT_METAL_MOCK_CLUSTER_DESC_PATH': None,
            'PYTHONPATH': pythonpath(),
            'DPT_ROS_EXTRA_BACKENDS': STAND_INS}
        full_env.update(env or {})
        super().__init__(self.params_file, extra_args=extra_args, env=full_env, cwd=ROOT)
        if wait_ready:
            if not self.wait_ready(wait_ready):
                self.kill()
                raise RuntimeError('depth node did not start:\n' + self.output())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop(signal.SIGINT, 5.0)
        self.kill()
        try:
            os.unlink(self.params_file)
        except OSError:
            pass


class CpuLoad:
    """
    One busy-looping process per core (or `n`), paused (SIGSTOP) until resume().

    Kept paused except around what is measured, so start-ups stay quick and the machine is
    not held busy for a whole test run. Use as a context manager; close() kills them.
    """

    def __init__(self, n: int | None = None):
        n = n or os.cpu_count() or 2
        # Each spins only while its parent lives: a killed test leaves no busy process.
        spin = 'import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass'
        self.procs = [subprocess.Popen([sys.executable, '-c', spin]) for _ in range(n)]
        self.pause()

    def _signal(self, sig) -> None:
        for p in self.procs:
            p.send_signal(sig)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Graph:
    """An in-process rclpy node for publishing inputs and collecting outputs."""

    def __init__(self, name: str = 'dpt_test_graph'):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        self.rclpy = rclpy
        self.context = Context()
        # No rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt, so a benchmark or test
        # run stops and its finally blocks stop the node processes it started.
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.subs: dict = {}

    def collect(self, msg_type, topic: str, qos=10, timed: list | None = None) -> list:
        """Messages on `topic` as they arrive; `timed` also gets each arrival (ns, ROS clock)."""
        box: list = []

        def on_msg(msg):
            if timed is not None:
                timed.append(self.node.get_clock().now().nanoseconds)
            box.append(msg)
        sub = self.node.create_subscription(msg_type, topic, on_msg, qos)
        self.subs[topic] = sub
        return box

    def wait_matched(self, topic: str, timeout: float = 10.0) -> bool:
        """Wait until our subscription to `topic` is matched with a publisher."""
        sub = self.subs[topic]
        return self.spin_until(lambda: sub.get_publisher_count() > 0, timeout)

    def spin_until(self, cond, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            self.executor.spin_once(timeout_sec=0.01)
        return bool(cond())

    def wait_for_subscriber(self, pub, timeout: float = 10.0) -> bool:
        return self.spin_until(lambda: pub.get_subscription_count() > 0, timeout)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def rgb_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Return a smooth RGB test image (gradients + a disc) so outputs vary across the frame."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = (x / max(w - 1, 1) * 255)
    g = (y / max(h - 1, 1) * 255)
    b = ((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(h, w) / 4) ** 2) * 200.0 + seed % 50
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def diag_values(status) -> dict:
    """Return a DiagnosticStatus' key-values as a dict."""
    return {kv.key: kv.value for kv in status.values}


def level_of(status) -> int:
    lvl = status.level
    return lvl[0] if isinstance(lvl, (bytes, bytearray)) else int(lvl)
