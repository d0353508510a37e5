"""
The depth node as a managed node, driven through its real lifecycle services over DDS.

A client node calls <node>/change_state and <node>/get_state as a lifecycle manager would; the
node runs in a subprocess with `autostart: false` and the stand-in backends. Every wait is a
condition with a timeout; a frame "in flight" is held at a FIFO gate the test opens.
"""
import os
import re
import signal
from types import SimpleNamespace

from diagnostic_msgs.msg import DiagnosticArray
from dpt_ros.ros.lifecycle_client import LifecycleClient
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter as RclpyParameter
from sensor_msgs.msg import Image
from support.node_cases import BASE, H, raw_msg, W
from support.ros_harness import diag_values, Graph, NodeProcess, rgb_image, STAND_INS

MANAGED = dict(BASE, autostart=False)
GATED = STAND_INS + ',standin_gated=support.doubles.gated_backend:create_gated'
ANSWER_S = 30.0   # how long the node may take to answer a lifecycle request


@pytest.fixture
def manager():
    """Return the node's lifecycle manager: dpt_ros's own client, in a context of its own."""
    with LifecycleClient('/depth_node', name='dpt_lifecycle_manager') as client:
        yield client


def answering(manager: LifecycleClient) -> LifecycleClient:
    """Return `manager` once the node's lifecycle services answer it."""
    assert manager.state(ANSWER_S) is not None, 'no lifecycle response'
    return manager


def frame():
    return raw_msg('rgb8', rgb_image(H, W))


@pytest.fixture
def gated(tmp_path):
    """Return the gated stand-in's FIFO gate, events file and the node's env for it."""
    gate, events = tmp_path / 'gate', tmp_path / 'events'
    os.mkfifo(gate)
    env = {'DPT_ROS_EXTRA_BACKENDS': GATED, 'DPT_ROS_STANDIN_GATE': str(gate),
           'DPT_ROS_STANDIN_EVENTS': str(events)}
    return SimpleNamespace(gate=gate, events=events, env=env)


def hold_a_frame(graph: Graph, node: NodeProcess, events):
    """Publish a frame; return the publisher once the gated backend holds the frame's call."""
    pub = graph.node.create_publisher(Image, '/image', 10)
    assert graph.wait_for_subscriber(pub)
    pub.publish(frame())
    assert graph.spin_until(lambda: events.exists() and 'start 2' in events.read_text(),
                            30.0), node.output()
    return pub


def open_gate(gate):
    """Open the FIFO gate: the held call returns."""
    fd = os.open(gate, os.O_WRONLY)
    os.write(fd, b'x')
    os.close(fd)


def counts_line(node: NodeProcess) -> dict:
    assert node.wait_for_line('inactive: frames_received', 10.0), node.output()
    line = [x for x in node.lines if 'inactive: frames_received' in x][-1]
    return {k: int(v) for k, v in re.findall(r'(\w+) (\d+)', line.split('inactive: ')[1])}


def test_transitions_gate_the_outputs_and_release_the_backend(graph, manager, tmp_path):
    closed = tmp_path / 'closed'
    env = {'DPT_ROS_STANDIN_CLOSED_FILE': str(closed)}
    with NodeProcess(MANAGED, env=env, wait_ready=0) as node:
        m = answering(manager)
        assert m.state(ANSWER_S) == 'unconfigured'
        pub = graph.node.create_publisher(Image, '/image', 10)
        out = graph.collect(Image, '/depth_relative')
        assert m.transition('configure') and m.state(ANSWER_S) == 'inactive'
        assert graph.node.count_subscribers('/image') == 0
        for round_ in range(2):
            assert m.transition('activate') and m.state(ANSWER_S) == 'active'
            assert graph.wait_for_subscriber(pub) and graph.wait_matched('/depth_relative')
            n = len(out)
            assert graph.spin_until(lambda: pub.publish(frame()) or len(out) > n, 30.0)
            assert m.transition('deactivate') and m.state(ANSWER_S) == 'inactive'
            assert graph.spin_until(lambda: graph.node.count_subscribers('/image') == 0, 10.0)
            assert not closed.exists(), 'deactivate must keep the backend'
        assert m.transition('cleanup') and m.state(ANSWER_S) == 'unconfigured'
        assert closed.read_text().count('closed') == 1
        assert m.transition('unconfigured_shutdown') and m.state(ANSWER_S) == 'finalized'
        assert 'serving' in node.output() and 'Traceback' not in node.output()
        rc, _ = node.stop(signal.SIGINT, 10.0)
        assert rc == 0, node.output()
    assert closed.read_text().count('closed') == 1   # released once, not again at exit


def test_deactivate_with_a_frame_in_flight_loses_no_accounting(graph, manager, gated):
    with NodeProcess(dict(MANAGED, backend='standin_gated'), env=gated.env, wait_ready=0) as node:
        m = answering(manager)
        diags = graph.collect(DiagnosticArray, '/diagnostics')
        assert m.transition('configure') and m.transition('activate')
        hold_a_frame(graph, node, gated.events)
        reply = m.send('deactivate')
        assert node.wait_for_line('deactivating', 30.0)
        open_gate(gated.gate)   # the held call returns
        assert m.result(reply) and m.state(ANSWER_S) == 'inactive'
        c = counts_line(node)
        assert c['frames_received'] >= 1 and c['in_pipeline'] == 0
        assert c['frames_received'] == (c['frames_processed'] + c['frames_dropped'] +
                                        c['frames_rejected'] + c['frames_failed'])
        assert graph.spin_until(lambda: any(
            diag_values(s).get('frames_received') == str(c['frames_received'])
            for a in diags for s in a.status if 'depth pipeline' in s.name), 10.0)
        assert 'Traceback' not in node.output()
        rc, _ = node.stop(signal.SIGINT, 10.0)
        assert rc == 0, node.output()


BAD = [({'image_size': 50}, "parameter 'image_size'"),
       ({'backend': 'standin_unavailable', 'allow_fallback': False},
        "backend 'standin_unavailable' cannot start")]


@pytest.mark.parametrize('bad,why', BAD)
def test_failing_configure_leaves_the_managed_node_alive_and_unconfigured(manager, bad, why):
    with NodeProcess(dict(MANAGED, **bad), wait_ready=0) as node:
        m = answering(manager)
        assert not m.transition('configure')
        assert m.state(ANSWER_S) == 'unconfigured'
        assert node.proc.poll() is None
        errors = [x for x in node.lines if 'invalid configuration' in x]
        assert len(errors) == 1, node.output()
        assert why in errors[0]
        assert not m.transition('configure')   # again: same answer, still alive
        assert m.state(ANSWER_S) == 'unconfigured' and 'Traceback' not in node.output()
        rc, _ = node.stop(signal.SIGINT, 10.0)
        assert rc == 0, node.output()


@pytest.mark.parametrize('bad,why', BAD)
def test_autostart_with_a_bad_configuration_exits_2_with_one_line(bad, why):
    with NodeProcess(dict(BASE, **bad), wait_ready=0) as node:
        rc = node.wait(60.0)
        assert rc == 2, node.output()
        errors = [x for x in node.lines if 'ERROR' in x]
        assert len(errors) == 1 and 'invalid configuration' in errors[0], node.output()
        assert why in errors[0]
        assert 'Traceback' not in node.output() and 'serving' not in node.output()


def set_params(graph: Graph, **values) -> list:
    """Set parameters of /depth_node as `ros2 param set` does; return the results."""
    client = graph.node.create_client(SetParameters, '/depth_node/set_parameters')
    assert graph.spin_until(client.service_is_ready, 30.0)
    request = SetParameters.Request(parameters=[
        RclpyParameter(name, value=value).to_parameter_msg() for name, value in values.items()])
    future = client.call_async(request)
    assert graph.spin_until(future.done, 30.0)
    graph.node.destroy_client(client)
    return future.result().results


FIXES = [({'image_size': 50}, {'image_size': 64}),
         ({'backend': 'standin_unavailable', 'allow_fallback': False},
          {'backend': 'standin_zero'})]


@pytest.mark.parametrize('bad,fix', FIXES, ids=['invalid value', 'backend cannot start'])
def test_a_failed_configure_is_put_right_with_param_set(graph, manager, bad, fix):
    """Issue 24: start-up parameters are settable while unconfigured, read-only after."""
    with NodeProcess(dict(MANAGED, **bad), wait_ready=0) as node:
        m = answering(manager)
        assert not m.transition('configure') and m.state(ANSWER_S) == 'unconfigured'
        [ok] = set_params(graph, **fix)
        assert ok.successful, ok.reason
        assert m.transition('configure'), node.output()
        assert m.state(ANSWER_S) == 'inactive'
        [refused] = set_params(graph, image_size=96)
        assert not refused.successful
        assert 'unconfigured' in refused.reason and 'inactive' in refused.reason, refused.reason
        assert m.transition('activate') and m.transition('deactivate')
        assert m.transition('cleanup')
        [again] = set_params(graph, image_size=96)   # unconfigured again: settable
        assert again.successful, again.reason
        assert 'Traceback' not in node.output()


def test_a_wrong_start_up_value_is_refused_while_unconfigured(graph, manager):
    with NodeProcess(MANAGED, wait_ready=0) as node:
        answering(manager)
        [bad] = set_params(graph, image_size=50)   # rclpy's range check says why
        assert not bad.successful and 'image_size' in bad.reason, bad.reason
        [bad] = set_params(graph, transport='carrier_pigeon')
        assert not bad.successful and 'raw' in bad.reason, bad.reason
        assert node.proc.poll() is None


def test_unconfigured_start_cleanup_and_shutdown_are_logged(manager):
    """Issue 24: nothing was logged on an unconfigured start, a cleanup or a shutdown."""
    with NodeProcess(MANAGED, wait_ready=0) as node:
        assert node.wait_ready(60, state='unconfigured'), node.output()
        assert node.wait_for_line('waiting for a lifecycle manager', 10.0), node.output()
        m = answering(manager)
        assert m.transition('configure') and m.transition('cleanup')
        assert node.wait_for_line('cleaned up: backend released; unconfigured', 10.0)
        assert m.transition('configure')
        assert m.transition('inactive_shutdown') and m.state(ANSWER_S) == 'finalized'
        assert node.wait_for_line('shut down: backend released; finalized', 10.0)
        rc, _ = node.stop(signal.SIGINT, 10.0)
        assert rc == 0, node.output()


def test_the_stop_line_after_a_lifecycle_cycle_adds_up(graph, manager, gated):
    """
    Issue 24: 'released in 1 ms (121 ms of it for the workers ...)' after a lifecycle cycle.

    The part was an earlier deactivate's wait for a running call, not this stop's.
    """
    with NodeProcess(dict(MANAGED, backend='standin_gated'), env=gated.env, wait_ready=0) as node:
        m = answering(manager)
        assert m.transition('configure') and m.transition('activate')
        hold_a_frame(graph, node, gated.events)
        # The held call outlasts deactivate's 1 s wait for it: that wait is the earlier part.
        assert m.transition('deactivate') and m.state(ANSWER_S) == 'inactive'
        open_gate(gated.gate)
        rc, _ = node.stop(signal.SIGINT, 10.0)
        assert rc == 0, node.output()
        [line] = [x for x in node.lines if 'stopping on SIGINT' in x]
        whole, part = map(int, re.search(r'released in (\d+) ms \((\d+) ms of it',
                                         line).groups())
        assert part <= whole, line


OUTPUTS = ('/depth_relative', '/depth_relative/color', '/depth_relative/camera_info',
           '/diagnostics')


def test_outputs_are_lifecycle_publishers_made_at_configure(graph, manager):
    """
    Issue 23: output publishers as lifecycle publishers created in configure (ROS convention).

    They exist from configure to cleanup (a subscriber matches while the node is inactive);
    rclpy lets them publish only while active.
    """
    def counts():
        return [graph.node.count_publishers(t) for t in OUTPUTS]
    with NodeProcess(MANAGED, wait_ready=0) as node:
        m = answering(manager)
        assert counts() == [0] * len(OUTPUTS)
        diags = graph.collect(DiagnosticArray, '/diagnostics')
        assert m.transition('configure')
        assert graph.spin_until(lambda: counts() == [1] * len(OUTPUTS), 10.0), counts()
        assert graph.wait_matched('/diagnostics')
        assert m.transition('activate')
        assert graph.spin_until(lambda: len(diags) > 0, 10.0)     # active: it publishes
        assert m.transition('deactivate')
        assert counts() == [1] * len(OUTPUTS)
        assert m.transition('cleanup')
        assert graph.spin_until(lambda: counts() == [0] * len(OUTPUTS), 10.0), counts()
        assert 'Traceback' not in node.output()
