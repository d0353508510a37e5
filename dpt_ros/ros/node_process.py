"""
The depth node as a child process: `python -m dpt_ros.node --ros-args ...`.

`ChildProcess` runs any command with its stdout+stderr collected line by line on a thread
(optionally copied to a log file) and stops it with a signal; `NodeProcess` builds the node's
command line from a params file, parameter overrides and remappings, and tells when it is
ready from its lifecycle state (<node>/get_state, asked through lifecycle_client.py, which
imports rclpy only then).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Iterable, Mapping

from dpt_ros import vocabulary

log = logging.getLogger('dpt_ros.ros.node_process')

# The lifecycle state of a node that subscribes and serves (see ros/node.py).
READY_STATE = 'active'
NODE_NAME = vocabulary.NODE_NAME
# A remapping of the node's name or namespace on its command line (`-r [node:]__ns:=/x`).
_NAME_REMAP = re.compile(r'^(?:[^:=]+:)?(__ns|__node):=(.*)$')


class ChildProcess:
    """A command in a subprocess; `lines` collects its stdout+stderr as they come."""

    # How long wait() lets the reader catch up with the output once the process ended.
    reader_join_s = 2.0

    def __init__(self, cmd: list[str], env: Mapping[str, str] | None = None,
                 cwd: str | None = None, log_path: str | Path | None = None,
                 stdin=subprocess.DEVNULL, start_new_session: bool = False):
        self.cmd = list(cmd)
        self.log_path = Path(log_path) if log_path is not None else None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._log = open(self.log_path, 'w') if self.log_path is not None else None
        log.debug('starting: %s', ' '.join(self.cmd))
        self.proc = subprocess.Popen(self.cmd, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors='replace',
                                     env=dict(env) if env is not None else None, cwd=cwd,
                                     start_new_session=start_new_session)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            with self._changed:
                self.lines.append(line.rstrip('\n'))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return '\n'.join(self.lines)

    def tail(self, n: int = 25) -> str:
        return '\n'.join(self.lines[-n:])

    def wait_for_line(self, text: str, timeout: float) -> bool:
        """Wait until a line contains `text`; False on timeout or when the process ended."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if not self._reader.is_alive():
                    return False
                self._changed.wait(min(left, 0.1))
        return True

    def wait(self, timeout: float) -> int | None:
        """Wait for the exit; return its code, or None when still running after `timeout`."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(self.reader_join_s)
        return rc

    def stop(self, sig=signal.SIGINT, timeout: float = 5.0) -> tuple[int | None, float]:
        """Send `sig`; return (exit code or None, seconds until exit)."""
        t0 = time.monotonic()
        if self.alive():
            self.proc.send_signal(sig)
        rc = self.wait(timeout)
        return rc, time.monotonic() - t0

    def shutdown(self, timeout: float = 15.0) -> int | None:
        """SIGINT (the clean shutdown path), then SIGTERM, then SIGKILL; return the exit code."""
        for sig, wait_s in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0),
                            (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            rc, _ = self.stop(sig, wait_s)
            if rc is None:
                log.warning('%s did not exit after %s', self.cmd[0], signal.Signals(sig).name)
        self.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)

    def close(self) -> None:
        """Let the reader finish and close the log file (the process must have ended)."""
        self._reader.join(self.reader_join_s)
        if self._reader.is_alive():
            return
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()


def node_command(params_file: str | None = None, params: Mapping[str, object] | None = None,
                 remaps: Iterable[tuple[str, str]] = (), extra_args: Iterable[str] = (),
                 python: str = sys.executable) -> list[str]:
    """Return `python -m dpt_ros.node --ros-args` with remaps, a params file and -p overrides."""
    cmd = [python, '-m', 'dpt_ros.node', '--ros-args']
    for name, target in remaps:
        cmd += ['-r', f'{name}:={target}']
    if params_file:
        cmd += ['--params-file', str(params_file)]
    for key, value in (params or {}).items():
        cmd += ['-p', f'{key}:={value}']
    cmd += list(extra_args)
    return cmd


def node_fqn(cmd: Iterable[str]) -> str:
    """Return the node's fully qualified name from the name remappings in its command line."""
    names = {'__ns': '/', '__node': NODE_NAME}
    for arg in cmd:
        m = _NAME_REMAP.match(arg)
        if m:
            names[m.group(1)] = m.group(2)
    ns = '/' + names['__ns'].strip('/')
    return ns.rstrip('/') + '/' + names['__node']


class NodeProcess(ChildProcess):
    """
    The depth node in a subprocess.

    `env` entries are added to this process' environment; a None value removes that variable.
    """

    def __init__(self, params_file: str | None = None,
                 params: Mapping[str, object] | None = None,
                 remaps: Iterable[tuple[str, str]] = (), extra_args: Iterable[str] = (),
                 env: Mapping[str, str | None] | None = None, **kwargs):
        full_env = dict(os.environ)
        # Log lines as they happen: readiness is read from them.
        full_env.update({'PYTHONUNBUFFERED': '1', 'RCUTILS_LOGGING_BUFFERED_STREAM': '0'})
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = str(value)
        super().__init__(node_command(params_file, params, remaps, extra_args), env=full_env,
                         **kwargs)
        self.env = full_env

    @property
    def node_fqn(self) -> str:
        """Return the fully qualified name of the node this process runs."""
        return node_fqn(self.cmd)

    def wait_ready(self, timeout: float, state: str = READY_STATE) -> bool:
        """
        Wait until the node's lifecycle state is `state` (default: active, serving).

        False when the process ended or the state was not reached within `timeout`.
        """
        from dpt_ros.ros.lifecycle_client import LifecycleClient
        deadline = time.monotonic() + timeout
        domain = self.env.get('ROS_DOMAIN_ID')
        with LifecycleClient(self.node_fqn, int(domain) if domain else None,
                             name='_dpt_readiness_probe') as client:
            while self.alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                now = client.state(min(left, 1.0))
                if now == state:
                    return self.alive()
                if now is not None:
                    time.sleep(0.05)   # answered, not there yet: ask again shortly
        return False
