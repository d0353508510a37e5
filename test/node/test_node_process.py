"""dpt_ros.ros.node_process: the node's command line, readiness, and stopping by signal."""
import signal
import sys

from dpt_ros.ros.node_process import ChildProcess, node_command, node_fqn, NodeProcess
import pytest
from support.paths import pythonpath, ROOT
from support.ros_harness import STAND_INS, write_params

# Ignores SIGINT, so only the escalation to SIGTERM stops it.
STUBBORN = ('import signal, sys, time\n'
            'signal.signal(signal.SIGINT, signal.SIG_IGN)\n'
            "print('up', flush=True)\n"
            'time.sleep(60)\n')


def test_node_command_order():
    cmd = node_command('p.yaml', {'backend': 'torch', 'dp': 1}, remaps=[('__ns', '/cam')],
                       extra_args=['-p', 'x:=1'], python='py')
    assert cmd == ['py', '-m', 'dpt_ros.node', '--ros-args', '-r', '__ns:=/cam',
                   '--params-file', 'p.yaml', '-p', 'backend:=torch', '-p', 'dp:=1',
                   '-p', 'x:=1']


def test_child_escalates_to_sigterm_and_logs(tmp_path):
    log = tmp_path / 'child.log'
    child = ChildProcess([sys.executable, '-c', STUBBORN], log_path=log)
    assert child.wait_for_line('up', 30), child.output()
    rc = child.shutdown(timeout=0.5)
    assert rc == -signal.SIGTERM
    assert not child.alive() and log.read_text() == 'up\n'


def test_wait_for_line_is_false_when_the_process_ends_without_it():
    child = ChildProcess([sys.executable, '-c', "print('bye')"])
    assert child.wait_for_line('serving', 30) is False
    assert child.wait(30) == 0 and child.lines == ['bye']


def test_node_starts_ready_and_stops_with_exit_code_0(tmp_path):
    pytest.importorskip('rclpy')
    path = write_params({'backend': 'standin_zero', 'image_size': 64},
                        str(tmp_path / 'p.yaml'), node_name='/**')
    env = {'PYTHONPATH': pythonpath(),
           'DPT_ROS_EXTRA_BACKENDS': STAND_INS, 'TT_METAL_MOCK_CLUSTER_DESC_PATH': None}
    node = NodeProcess(path, remaps=[('__ns', '/np_test')], env=env, cwd=ROOT)
    try:
        assert node.wait_ready(120), node.output()
        assert node.shutdown(timeout=15) == 0, node.output()
    finally:
        node.kill()
    assert any('serving' in line for line in node.lines)


def test_a_node_with_a_bad_parameter_exits_2(tmp_path):
    pytest.importorskip('rclpy')
    node = NodeProcess(None, {'backend': 'no_such_backend'}, cwd=ROOT)
    assert node.wait_ready(120) is False
    assert node.wait(30) == 2, node.output()


def _env():
    return {'PYTHONPATH': pythonpath(),
            'DPT_ROS_EXTRA_BACKENDS': STAND_INS, 'TT_METAL_MOCK_CLUSTER_DESC_PATH': None}


def test_node_fqn_follows_the_name_remappings():
    assert node_fqn(node_command()) == '/depth_node'
    assert node_fqn(node_command(remaps=[('__ns', '/cam/')])) == '/cam/depth_node'
    assert node_fqn(node_command(extra_args=['-r', 'depth_node:__node:=d2', '-r',
                                             '__ns:=a/b'])) == '/a/b/d2'


def test_readiness_is_the_lifecycle_state_not_a_log_line(tmp_path):
    """
    Issue 23: ready meant "a line contains 'serving'".

    A managed node (autostart false) never logs it, and is ready for its manager in
    `unconfigured`; `active` comes only when a manager activates it.
    """
    pytest.importorskip('rclpy')
    from dpt_ros.ros.lifecycle_client import LifecycleClient
    path = write_params({'backend': 'standin_zero', 'image_size': 64, 'autostart': False},
                        str(tmp_path / 'p.yaml'), node_name='/**')
    node = NodeProcess(path, remaps=[('__ns', '/np_ready')], env=_env(), cwd=ROOT)
    try:
        assert node.wait_ready(120, state='unconfigured'), node.output()
        assert node.wait_ready(1.0) is False    # not active: nobody activated it
        with LifecycleClient('/np_ready/depth_node') as manager:
            assert manager.transition('configure') and manager.transition('activate')
        assert node.wait_ready(30), node.output()
        assert node.shutdown(timeout=15) == 0, node.output()
    finally:
        node.kill()
