"""
The depth node as a managed node, driven through its real lifecycle services over DDS.

A client node calls <node>/change_state and <node>/get_state as a lifecycle manager would; the
node runs in a subprocess with `autostart: false` and the stand-in backends. Every wait is a
condition with a timeout; a frame "in flight" is held at a FIFO gate the test opens.
"""
import os
import re
import signal

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
from ros_harness import diag_values, Graph, NodeProcess, rgb_image, STAND_INS
from sensor_msgs.msg import Image
from test_node import BASE, H, raw_msg, W

MANAGED = dict(BASE, autostart=False)
GATED = STAND_INS + ',standin_gated=doubles.gated_backend:create_gated'
T = Transition


@pytest.fixture
def graph():
    g = Graph('dpt_lifecycle_manager')
    yield g
    g.close()


class Manager:
    """Lifecycle client of /depth_node over the test graph."""

    def __init__(self, graph: Graph, node: str = '/depth_node'):
        self.graph = graph
        self.change = graph.node.create_client(ChangeState, f'{node}/change_state')
        self.get = graph.node.create_client(GetState, f'{node}/get_state')
        assert graph.spin_until(lambda: self.change.service_is_ready() and
                                self.get.service_is_ready(), 30.0)

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def send(self, transition_id: int):
        return self.change.call_async(ChangeState.Request(transition=T(id=transition_id)))

    def transition(self, transition_id: int, timeout: float = 60.0) -> bool:
        return self.result(self.send(transition_id), timeout).success

    def result(self, future, timeout: float = 60.0):
        assert self.graph.spin_until(future.done, timeout), 'no lifecycle response'
        return future.result()

    def _call(self, client, request):
        return self.result(client.call_async(request), 30.0)


def frame():
    return raw_msg('rgb8', rgb_image(H, W))


def counts_line(node: NodeProcess) -> dict:
    assert node.wait_for_line('inactive: frames_received', 10.0), node.output()
    line = [x for x in node.lines if 'inactive: frames_received' in x][-1]
    return {k: int(v) for k, v in re.findall(r'(\w+) (\d+)', line.split('inactive: ')[1])}


def test_transitions_gate_the_outputs_and_release_the_backend(graph, tmp_path):
    closed = tmp_path / 'closed'
    env = {'DPT_ROS_STANDIN_CLOSED_FILE': str(closed)}
    with NodeProcess(MANAGED, env=env, wait_ready=0) as node:
        m = Manager(graph)
        assert m.state() == 'unconfigured'
        pub = graph.node.create_publisher(Image, '/image', 10)
        out = graph.collect(Image, '/depth_relative')
        assert m.transition(T.TRANSITION_CONFIGURE) and m.state() == 'inactive'
        assert graph.node.count_publishers('/depth_relative') == 0
        assert graph.node.count_subscribers('/image') == 0
        for round_ in range(2):
            assert m.transition(T.TRANSITION_ACTIVATE) and m.state() == 'active'
            assert graph.wait_for_subscriber(pub) and graph.wait_matched('/depth_relative')
            n = len(out)
            assert graph.spin_until(lambda: pub.publish(frame()) or len(out) > n, 30.0)
            assert m.transition(T.TRANSITION_DEACTIVATE) and m.state() == 'inactive'
            assert graph.spin_until(
                lambda: graph.node.count_publishers('/depth_relative') == 0 and
                graph.node.count_subscribers('/image') == 0, 10.0)
            assert not closed.exists(), 'deactivate must keep the backend'
        assert m.transition(T.TRANSITION_CLEANUP) and m.state() == 'unconfigured'
        assert closed.read_text().count('closed') == 1
        assert m.transition(T.TRANSITION_UNCONFIGURED_SHUTDOWN) and m.state() == 'finalized'
        assert 'serving' in node.output() and 'Traceback' not in node.output()
        rc, _ = node.stop(signal.SIGINT, 10.0)
        assert rc == 0, node.output()
    assert closed.read_text().count('closed') == 1   # released once, not again at exit


def test_deactivate_with_a_frame_in_flight_loses_no_accounting(graph, tmp_path):
    gate, events = tmp_path / 'gate', tmp_path / 'events'
    os.mkfifo(gate)
    env = {'DPT_ROS_EXTRA_BACKENDS': GATED, 'DPT_ROS_STANDIN_GATE': str(gate),
           'DPT_ROS_STANDIN_EVENTS': str(events)}
    with NodeProcess(dict(MANAGED, backend='standin_gated'), env=env, wait_ready=0) as node:
        m = Manager(graph)
        diags = graph.collect(DiagnosticArray, '/diagnostics')
        assert m.transition(T.TRANSITION_CONFIGURE) and m.transition(T.TRANSITION_ACTIVATE)
        pub = graph.node.create_publisher(Image, '/image', 10)
        assert graph.wait_for_subscriber(pub)
        pub.publish(frame())
        assert graph.spin_until(lambda: events.exists() and 'start 2' in events.read_text(),
                                30.0), node.output()
        reply = m.send(T.TRANSITION_DEACTIVATE)
        assert node.wait_for_line('deactivating', 30.0)
        fd = os.open(gate, os.O_WRONLY)   # the held call returns
        os.write(fd, b'x')
        os.close(fd)
        assert m.result(reply).success and m.state() == 'inactive'
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
def test_failing_configure_leaves_the_managed_node_alive_and_unconfigured(graph, bad, why):
    with NodeProcess(dict(MANAGED, **bad), wait_ready=0) as node:
        m = Manager(graph)
        assert not m.transition(T.TRANSITION_CONFIGURE)
        assert m.state() == 'unconfigured'
        assert node.proc.poll() is None
        errors = [x for x in node.lines if 'invalid configuration' in x]
        assert len(errors) == 1, node.output()
        assert why in errors[0]
        assert not m.transition(T.TRANSITION_CONFIGURE)   # again: same answer, still alive
        assert m.state() == 'unconfigured' and 'Traceback' not in node.output()
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
