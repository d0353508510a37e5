"""
Console script `depth_node` (and `python -m dpt_ros.node`): run the depth node until a signal.

With `autostart` (default) the node is configured and activated at once; the slow configure
(model load, warm-up) runs on its own thread so a signal during it is honoured. With
`autostart: false` it waits in unconfigured for a lifecycle manager.

Extra backends (test doubles, plug-ins) are registered at start-up from the environment:
DPT_ROS_EXTRA_BACKENDS='name=module:factory,...'; the `backend` parameter then accepts
`name`. Nothing else is loaded dynamically.

Exit codes: 0 after SIGINT/SIGTERM (workers stopped, backend closed, node destroyed), 2 for
an invalid parameter or a backend that cannot start (autostart), 1 for an unexpected error. A
second signal during shutdown exits at once with 1 (cleanup skipped), except a repeated
SIGINT within REPEATED_SIGINT_WINDOW_S (one Ctrl-C that reached us twice). After the cleanup
the process ends with os._exit, skipping interpreter teardown (see _exit_now()).
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time

from dpt_ros import vocabulary
from dpt_ros.backends import register_backend
from dpt_ros.errors import StartAborted, StartupError
from dpt_ros.ros.node import DepthNode, WORKER_STOP_TIMEOUT_S  # noqa: F401 (the stop bound)
from dpt_ros.serving import tuning
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

EXTRA_BACKENDS_ENV = 'DPT_ROS_EXTRA_BACKENDS'
EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
# How long a signal during start-up waits for the current start-up step before giving up on it.
STARTUP_ABORT_WAIT_S = 1.0
# A SIGINT this soon after the first is the same Ctrl-C delivered twice (by the terminal to the
# process group, and again by a non-interactive `ros2 launch`), not a request to force the exit.
REPEATED_SIGINT_WINDOW_S = 1.0


def register_extra_backends(spec: str | None = None) -> list[str]:
    """Register 'name=module:factory,...' (default: $DPT_ROS_EXTRA_BACKENDS); returns names."""
    spec = os.environ.get(EXTRA_BACKENDS_ENV, '') if spec is None else spec
    names = []
    for item in filter(None, (s.strip() for s in spec.split(','))):
        name, sep, target = item.partition('=')
        if not sep or ':' not in target or not name.strip():
            raise StartupError(f"{EXTRA_BACKENDS_ENV}: '{item}' is not name=module:factory")
        register_backend(name.strip(), target.strip())
        names.append(name.strip())
    return names


def main(args=None) -> None:
    """
    Console script `depth_node`: run until SIGINT/SIGTERM, then end the process.

    See the module doc for the exit codes. The process ends inside this call (os._exit) once
    the node's cleanup is done: see _exit_now().
    """
    _exit_now(*run(args))


class _Signals:
    """The first stopping signal; a second one (not a repeated SIGINT) exits at once."""

    def __init__(self):
        self.stop = threading.Event()
        self.first: tuple[int, float] | None = None
        self.node: DepthNode | None = None

    def __call__(self, signum, _frame) -> None:
        if self.stop.is_set():
            sig0, t0 = self.first
            if signum == sig0 == signal.SIGINT and \
                    time.monotonic() - t0 < REPEATED_SIGINT_WINDOW_S:
                return
            os._exit(EXIT_ERROR)   # a second signal: the user wants out now
        self.first = (signum, time.monotonic())
        self.stop.set()
        if self.node is not None:
            self.node.abort_start()   # a configure in progress stops at its next step

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


def run(args=None) -> tuple[int, list[str]]:
    """Run the node until a signal; release everything; return (exit code, stuck threads)."""
    sigs = _Signals()
    args = sys.argv if args is None else args
    # Before anything loads torch: the same OpenMP waits whichever path configures the node.
    tuning.quiet_openmp_waits()
    try:
        # Our own handlers: rclpy's would shut the context down under the running workers.
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # unreadable params file, bad --ros-args
        print(f'depth_node: cannot start: {str(exc).splitlines()[0]}', file=sys.stderr)
        return EXIT_CONFIG, []
    sigs.install()
    node = starter = None
    code = EXIT_OK
    try:
        register_extra_backends()
        node = sigs.node = DepthNode()
        if node.autostart:
            starter, code = _autostart(node, sigs.stop)
        else:
            node.get_logger().info(
                'unconfigured (autostart false): waiting for a lifecycle manager, e.g. ros2 '
                f'lifecycle set {node.get_fully_qualified_name()} configure')
        if code == EXIT_OK and not sigs.stop.is_set():
            _spin(node, sigs.stop)
    except StartupError as exc:
        rclpy.logging.get_logger(vocabulary.NODE_NAME).error(f'invalid configuration: {exc}')
        code = EXIT_CONFIG
    except (KeyboardInterrupt, ExternalShutdownException, StartAborted):
        pass
    except Exception as exc:  # a bug: say what, exit non-zero, still release the device
        rclpy.logging.get_logger(vocabulary.NODE_NAME).error(
            f'unexpected error: {type(exc).__name__}: {exc}')
        code = EXIT_ERROR
    finally:
        stuck = _finish(node, starter, sigs, code)
    return code, stuck


def _autostart(node: DepthNode, stop: threading.Event) -> tuple[threading.Thread, int]:
    """Configure (on a thread, so a signal is honoured) and activate; return its exit code."""
    # Configure (model load, warm-up) takes minutes on a TT card while traces compile; launch
    # systems escalate to a second signal after a few seconds, which would skip the release.
    starter = threading.Thread(target=node.trigger_configure, name='dpt-startup', daemon=True)
    starter.start()
    while starter.is_alive() and not stop.is_set():
        starter.join(0.05)
    if starter.is_alive():
        node.get_logger().info('signal during start-up: stopping')
        node.abort_start()
        starter.join(STARTUP_ABORT_WAIT_S)   # let the current step end if it is quick
        if starter.is_alive():
            return starter, EXIT_OK
    if node.start_failure is None and not stop.is_set():
        node.trigger_activate()
    return starter, _exit_code(node.start_failure)


def _exit_code(failure: BaseException | None) -> int:
    # The node has logged its one line already.
    if failure is None or isinstance(failure, StartAborted):
        return EXIT_OK
    return EXIT_CONFIG if isinstance(failure, StartupError) else EXIT_ERROR


def _spin(node: DepthNode, stop: threading.Event) -> None:
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop_waking = _wake_executor_on_signals(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        stop_waking()


def _finish(node, starter, sigs: _Signals, code: int) -> list[str]:
    stuck = []
    if node is not None:
        # Also closes the backend under a start-up step that is still running (a hung
        # warm-up call); that thread is then left to the forced exit below.
        node.close()
        stuck = node.stuck_threads()
        if starter is not None and starter.is_alive():
            stuck.append(starter.name)
        if sigs.first is not None:
            took = (time.monotonic() - sigs.first[1]) * 1e3
            node.get_logger().info(
                f'stopping on {signal.Signals(sigs.first[0]).name}: released in '
                f'{took:.0f} ms ({node.stop_wait_ms:.0f} ms of it for the workers to end '
                f'their frames); exit code {code}')
        if starter is None or not starter.is_alive():
            node.destroy_node()    # never under the start-up thread still using it
    rclpy.try_shutdown()    # also flushes and closes the ROS log files
    return stuck


def _wake_executor_on_signals(node: DepthNode):
    """
    Make a signal end the executor's wait at once instead of at its next timeout.

    Python runs a signal handler only when the main thread is back in Python code, and the
    main thread spends its time inside rcl's wait. The C-level handler writes each signal to
    the wake-up fd at once; a thread reading it triggers a guard condition, rcl's wait
    returns, and our handler runs. Returns a function that undoes it and ends the thread.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    guard = node.create_guard_condition(lambda: None)

    def wake() -> None:
        while os.read(read_fd, 64):   # b'' once the write end is closed: done
            try:
                guard.trigger()
            except Exception:  # the node is already destroyed: the stop is under way
                return
        os.close(read_fd)
    thread = threading.Thread(target=wake, name='dpt-signal-wake', daemon=True)
    thread.start()
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def undo() -> None:
        signal.set_wakeup_fd(-1)
        os.close(write_fd)
        thread.join(1.0)
    return undo


def _exit_now(code: int, stuck: list[str]) -> None:
    """
    End the process with `code` now that the node has released everything it holds.

    What a normal interpreter exit would still do is only slow, and sometimes harmful:
    unloading torch, numba and ttnn took 0.45-2.5 s (over 5 s under disk load), long enough
    for a launch system to escalate to SIGTERM; after a tt -> cpu fallback nanobind reports
    every ttnn object still referenced as leaked (~40 lines); and with a worker still inside a
    backend call in native code (torch, ttnn) that ignores our stop request, finalization
    races that thread: when the call returns, re-taking the GIL ends the thread with a forced
    unwind through C++ frames, which aborts the process ('terminate called without an active
    exception', exit 134). So: run the Python exit handlers (as a normal exit would, also
    while daemon threads still run), flush the streams, leave.
    """
    if stuck:
        rclpy.logging.get_logger(vocabulary.NODE_NAME).warning(
            f"exiting while {', '.join(stuck)} is still inside a backend call")
    try:
        atexit._run_exitfuncs()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe must not change the exit code
                pass
        os._exit(code)


if __name__ == '__main__':
    sys.exit(main())
