"""
Set up a benchmark process the way every DDS benchmark here needs it.

The checkout and test/ on sys.path, so `dpt_ros` and the test support package `support`
(test/support: the ROS harness, the reliability suite's runs, the stand-in backends, the
mock-device dry-run, the CPU classes) import as they do in the tests; DDS on loopback in a
domain of its own, no model-hub access, ROS logs under /tmp (setup). Import it first, before
rclpy; a benchmark without DDS calls import_paths() only.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST = os.path.join(ROOT, 'test')


def import_paths() -> str:
    """Put the checkout and test/ on sys.path (`dpt_ros`, `support`); return the checkout root."""
    for path in (ROOT, TEST):
        if path not in sys.path:
            sys.path.insert(0, path)
    return ROOT


def setup(domain_base: int = 120, domains: int = 100) -> str:
    """Prepare sys.path and the environment; return the checkout root."""
    import_paths()
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_DOMAIN_ID', str(domain_base + os.getpid() % domains))
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('ROS_LOG_DIR', '/tmp/dpt_ros_bench_logs')
    return ROOT


def commit() -> str | None:
    """Return the checkout's short commit, None where git cannot tell."""
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
