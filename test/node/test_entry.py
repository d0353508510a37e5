"""
dpt_ros.ros.entry: how the node process starts and ends, seen from the ROS graph.

The real node in a subprocess (stand-in backends), observed over Fast DDS on loopback by an
in-process graph node. Every wait is a condition with a timeout.
"""
import glob
import importlib.util
import os
import signal

from dpt_ros.ros.lifecycle_client import LifecycleClient
import pytest
from support.node_cases import BASE
from support.ros_harness import NodeProcess

# The bound: a stopped node must be gone from `ros2 node list` this soon after exit.
GONE_WITHIN_S = 2.0


def listed(graph, name: str = 'depth_node') -> bool:
    return any(n == name for n, _ in graph.node.get_node_names_and_namespaces())


@pytest.mark.parametrize('autostart', [True, False], ids=['autostart', 'unconfigured'])
def test_a_stopped_node_leaves_the_graph_at_once(graph, autostart):
    """
    Issue 24: a LifecycleNode ended with os._exit stayed in the graph for Fast DDS' lease (~20 s).

    rclpy's LifecycleNode.destroy_node() left its state machine holding the rcl node, so the
    node was never finalised before the forced exit and no one told the graph it was gone.
    """
    with NodeProcess(dict(BASE, autostart=autostart), wait_ready=60 if autostart else 0) as node:
        assert graph.spin_until(lambda: listed(graph), 30.0), node.output()
        rc, _ = node.stop(signal.SIGINT, 10.0)
        assert rc == 0, node.output()
        assert graph.spin_until(lambda: not listed(graph), GONE_WITHIN_S), \
            f'depth_node still listed {GONE_WITHIN_S} s after it exited 0'


def _torch_uses_libgomp() -> bool:
    spec = importlib.util.find_spec('torch')
    lib = os.path.join(os.path.dirname(spec.origin), 'lib') if spec else ''
    return bool(lib and glob.glob(os.path.join(lib, 'libgomp*')))


def _spin_count(node) -> str:
    """Return the spin count libgomp read at load (OMP_DISPLAY_ENV=VERBOSE prints it)."""
    assert node.wait_for_line('GOMP_SPINCOUNT', 10.0), node.output()
    line = next(x for x in node.lines if 'GOMP_SPINCOUNT' in x)
    return line.split('=')[1].strip().strip("'")


@pytest.mark.skipif(not _torch_uses_libgomp(), reason="this torch's OpenMP is not libgomp")
@pytest.mark.parametrize('path', ['autostart', 'lifecycle'])
def test_openmp_threads_sleep_while_waiting_whichever_path_starts_the_node(path):
    """
    Issue 24: torch ran 4-7x slower under autostart than configured by a lifecycle manager.

    libgomp spun up to 300,000 times per wait unless it counted more of its threads than
    CPUs, and that count depended on which thread had configured the node (see
    serving/tuning.py). The node now starts torch's OpenMP with passive waits (spin count 0),
    the same on both paths; bench/bench_start_paths.py measures the speed.
    """
    values = {'backend': 'torch', 'device': 'cpu', 'weights': 'tiny-random',
              'image_size': 64, 'autostart': path == 'autostart'}
    env = {'OMP_DISPLAY_ENV': 'VERBOSE', 'OMP_WAIT_POLICY': None, 'GOMP_SPINCOUNT': None}
    with NodeProcess(values, env=env, wait_ready=0) as node:
        if path == 'lifecycle':
            assert node.wait_ready(120, state='unconfigured'), node.output()
            with LifecycleClient(node.node_fqn) as manager:
                assert manager.transition('configure') and manager.transition('activate')
        assert node.wait_ready(120), node.output()
        assert _spin_count(node) == '0', node.output()
        rc, _ = node.stop(signal.SIGINT, 10.0)
        assert rc == 0, node.output()
