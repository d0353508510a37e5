"""
`ros2 launch dpt_ros depth.launch.py` as a user meets it: real processes, exit codes, Ctrl-C.

Runs test/support/launch_cli.py (what `ros2 launch` runs: the real launch packages when importable,
else test/support/doubles/launch_ros_double.py) in its own process group from an ament prefix whose
depth_node records each start. Ctrl-C is SIGINT to the whole group, as a terminal sends it.
"""
from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time

from dpt_ros.ros.lifecycle_client import LifecycleClient
from dpt_ros.ros.node_process import ChildProcess
import pytest
from support.launch_cli import make_prefix, RVIZ_ARGS_ENV, STARTS_ENV
from support.paths import pythonpath, ROOT, SUPPORT
from support.reliability import wait_until
from support.ros_harness import Graph, STAND_INS
import yaml

CLI = os.path.join(SUPPORT, 'launch_cli.py')


class Launch(ChildProcess):
    """`ros2 launch dpt_ros depth.launch.py ARGS` in a new process group."""

    reader_join_s = 5.0

    def __init__(self, prefix: str, tmp_path, args: list[str], interactive: bool = False):
        self.starts = tmp_path / 'node_starts'
        self.rviz_args = tmp_path / 'rviz_args'
        env = dict(os.environ)
        env.pop('TT_METAL_MOCK_CLUSTER_DESC_PATH', None)   # the node sees the real machine
        env.update({
            'AMENT_PREFIX_PATH': prefix, STARTS_ENV: str(self.starts),
            RVIZ_ARGS_ENV: str(self.rviz_args), 'DPT_ROS_EXTRA_BACKENDS': STAND_INS,
            'PYTHONPATH': pythonpath(),
            'PYTHONUNBUFFERED': '1', 'RCUTILS_LOGGING_BUFFERED_STREAM': '0'})
        self._tty = None
        stdin = subprocess.DEVNULL
        if interactive:   # a terminal on stdin: ros2 launch then does not forward Ctrl-C
            self._tty, stdin = pty.openpty()
        super().__init__([sys.executable, CLI, 'dpt_ros', 'depth.launch.py', *args], env=env,
                         cwd=str(tmp_path), stdin=stdin, start_new_session=True)
        if interactive:
            os.close(stdin)

    def node_pids(self) -> list[int]:
        return [int(x) for x in self.starts.read_text().split()] if self.starts.exists() \
            else []

    def wait_line(self, pattern: str, timeout: float) -> bool:
        rx = re.compile(pattern)
        return wait_until(lambda: any(rx.search(line) for line in self.lines) or
                          self.proc.poll() is not None, timeout, poll=0.01) and \
            any(rx.search(line) for line in self.lines)

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        for pid in self.node_pids():   # the real launch may orphan a node (issue 16)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._tty is not None:
            os.close(self._tty)
        super().close()


@pytest.fixture
def launch(tmp_path):
    started = []

    def start(args, rviz=False, interactive=False):
        prefix = make_prefix(tmp_path / 'prefix', rviz=rviz)
        lr = Launch(prefix, tmp_path, args, interactive=interactive)
        started.append(lr)
        return lr
    yield start
    for lr in started:
        lr.close()


def params_file(tmp_path, **values) -> str:
    """Return the installed config/dpt.yaml with `values` changed (small images: quick start)."""
    doc = yaml.safe_load(open(os.path.join(ROOT, 'config', 'dpt.yaml')))
    key = next(iter(doc))
    doc[key]['ros__parameters'].update(values)
    path = tmp_path / 'params.yaml'
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def error_lines(lr: Launch) -> list[str]:
    return [line for line in lr.lines if '[ERROR]' in line]


def test_rviz_without_rviz2_is_refused_before_the_node_starts(launch):
    lr = launch(['rviz:=true'])
    rc = lr.wait(60)
    assert rc == 1, lr.output()
    # The node must never start when the launch will fail: a started one was left running.
    assert lr.node_pids() == [], lr.output()
    [line] = error_lines(lr)
    assert "package 'rviz2' is not installed" in line and 'nothing started' in line, line


def test_missing_params_file_is_refused_before_the_node_starts(launch, tmp_path):
    missing = tmp_path / 'no_such.yaml'
    lr = launch([f'params_file:={missing}'])
    rc = lr.wait(60)
    assert rc == 1, lr.output()
    assert lr.node_pids() == [], lr.output()
    [line] = error_lines(lr)
    assert f'params_file:={missing} is not a file' in line, line


def test_a_node_that_fails_fails_the_launch_naming_node_and_code(launch, tmp_path):
    # An invalid parameter: the node says so and exits 2.
    lr = launch([f'params_file:={params_file(tmp_path, image_size=64)}',
                 'backend:=no_such_backend'])
    rc = lr.wait(120)
    assert rc == 1, lr.output()
    assert len(lr.node_pids()) == 1, lr.output()
    assert any('exit code 2' in line for line in lr.lines), lr.output()
    assert any('depth_node exited with code 2 (invalid parameter' in line
               for line in error_lines(lr)), lr.output()


@pytest.mark.parametrize('interactive', [True, False], ids=['terminal', 'non-interactive'])
def test_weights_argument_reaches_the_node_and_ctrl_c_exits_0(launch, tmp_path, interactive):
    lr = launch([f'params_file:={params_file(tmp_path, image_size=64)}', 'backend:=torch',
                 'device:=cpu', 'weights:=tiny-random'], interactive=interactive)
    assert lr.wait_line(r'\[depth_node-\d+\] .*serving .* weights tiny-random', 180), \
        lr.output()
    t0 = time.monotonic()
    lr.ctrl_c()
    rc = lr.wait(30)
    took = time.monotonic() - t0
    assert rc == 0, lr.output()
    out = lr.output()
    assert 'process has finished cleanly' in out, out
    assert 'stopping on SIGINT' in out and 'exit code 0' in out, out
    for sign in ('escalating', 'leaked', 'Traceback', 'exited with code'):
        assert sign not in out, (sign, out)
    assert took < 5.0, took   # launch's own escalation would start at 10 s
    print(f'ctrl-c ({"terminal" if interactive else "non-interactive"}): launch exited 0 '
          f'{took:.2f} s after SIGINT')


def test_node_stopped_on_its_own_shuts_the_launch_down_with_exit_0(launch, tmp_path):
    lr = launch([f'params_file:={params_file(tmp_path, image_size=64)}',
                 'backend:=standin_zero', 'rviz:=true', 'image:=/cam/image_raw'], rviz=True)
    assert lr.wait_line(r'serving 1 camera', 120), lr.output()
    assert wait_until(lambda: lr.rviz_args.exists(), 30), lr.output()
    assert '-d ' in lr.rviz_args.read_text()
    [pid] = lr.node_pids()
    os.kill(pid, signal.SIGTERM)    # e.g. `kill` from another terminal: exit 0
    rc = lr.wait(30)
    assert rc == 0, lr.output()     # and rviz2 was stopped with it: the launch ended
    assert 'exited with code' not in lr.output()


def test_autostart_false_from_the_launch_line_leaves_the_node_unconfigured(launch, tmp_path):
    """Issue 24: `autostart:=false` was ignored (not an argument) and the node came up active."""
    lr = launch([f'params_file:={params_file(tmp_path, image_size=64)}',
                 'backend:=standin_zero', 'autostart:=false'])
    assert lr.wait_line(r'waiting for a lifecycle manager', 120), lr.output()
    with LifecycleClient('/depth_node') as manager:
        assert manager.state(30.0) == 'unconfigured', lr.output()
    assert not any('serving' in line for line in lr.lines), lr.output()
    lr.ctrl_c()
    assert lr.wait(30) == 0, lr.output()


def test_cameras_and_metric_mode_from_the_launch_line(launch, tmp_path):
    lr = launch([f'params_file:={params_file(tmp_path, image_size=64)}',
                 'backend:=standin_zero', 'cameras:=[front,rear]', 'metric.mode:=fixed'])
    assert lr.wait_line(r"serving 2 camera\(s\) \['/front/image', '/rear/image'\]", 120), \
        lr.output()
    graph = Graph('_dpt_launch_observer')
    try:   # metric `depth` is published only with metric.mode fixed or reference
        assert graph.spin_until(lambda: graph.node.count_publishers('/front/depth') == 1 and
                                graph.node.count_publishers('/rear/depth') == 1, 30.0)
    finally:
        graph.close()
    lr.ctrl_c()
    assert lr.wait(30) == 0, lr.output()


def test_an_unknown_argument_is_refused_before_the_node_starts(launch):
    lr = launch(['autostrat:=false'])
    assert lr.wait(60) == 1, lr.output()
    assert lr.node_pids() == [], lr.output()
    [line] = error_lines(lr)
    assert 'unknown argument(s) autostrat:= (see --show-args); nothing started' in line, line
