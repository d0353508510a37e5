"""
Backend faults through the real node (rclpy + Fast DDS on loopback, node subprocess).

The backends are the fault doubles of test/support/doubles/fault_backends.py: one raises on every
Nth call, one is switched by a control file (raise / hang past the watchdog / NaN output / wrong
shape / die), one dies for good after a few calls. Frames go in lock step, so each frame's fate is
known: processed, or failed with a reason. What must hold:

  - a failing call costs exactly that frame (counted failed, with its reason), never the node;
  - diagnostics go WARN/ERROR with the reason while it happens, and back to OK once healthy;
  - a call that hangs past `backend_timeout_s` is counted failed (timeout) at the deadline and
    its late result is thrown away, so the camera's output order holds;
  - counts reconcile exactly: received = processed + dropped + rejected + failed.
"""
from __future__ import annotations

import time

from dpt_ros.ros import image_codec
from sensor_msgs.msg import Image
from support.node_cases import subscribed_publisher
from support.reliability import (Diagnostics, ERROR, no_crash_signs, NodeLines, OK, Pacer,
                                 reconciles, send_lock_step, start_node, wait_until, WARN)
from support.ros_harness import level_of, rgb_image

BASE = {'image_size': 32, 'diagnostics_rate': 20.0}


class Rig:
    """A running node plus the test side: input publisher, depth list, diagnostics."""

    def __init__(self, graph, node):
        self.graph, self.node = graph, node
        self.diags = Diagnostics(graph)
        self.depth = graph.collect(Image, 'depth_relative')
        self.pub = subscribed_publisher(graph, node)
        assert graph.wait_matched('depth_relative'), node.output()
        self.lines = NodeLines(node)
        self.n = 0

    def send(self, timeout: float = 30.0):
        self.n += 1
        msg = Image(**image_codec.rgb_to_image_fields(rgb_image(24, 32, seed=self.n)))
        return send_lock_step(self.graph, self.node, self.pub, self.depth, msg, f'f{self.n}',
                              timeout, self.lines)

    def mark(self) -> int:
        """Index of the next node status (for 'a status after this point')."""
        return len(self.diags.node_statuses())

    def settled_counts(self) -> dict:
        assert self.diags.wait_idle(received=self.n, timeout=10), self.diags.values()
        c = self.diags.counts()
        assert reconciles(c), c
        return c

    def assert_healthy_process(self):
        assert self.node.proc.poll() is None, self.node.output()
        assert not no_crash_signs(self.node.output()), self.node.output()[-3000:]


def test_every_third_call_raises_only_those_frames_fail_and_status_returns_to_ok(graph):
    with start_node(dict(BASE, backend='fault_every'),
                    env={'DPT_ROS_FAULT_EVERY': '3'}) as node:
        rig = Rig(graph, node)
        since = rig.mark()
        outcomes = [rig.send() for _ in range(15)]
        # Call 1 was the node's warm-up, so frame k is call k + 1.
        expected = ['failed' if (k + 1) % 3 == 0 else 'ok' for k in range(1, 16)]
        assert [o[0] for o in outcomes] == expected, outcomes
        assert all(o[1] == 'backend_error' for o in outcomes if o[0] == 'failed')
        c = rig.settled_counts()
        assert (c['frames_processed'], c['frames_failed'], c['frames_dropped']) == (10, 5, 0)
        assert rig.diags.reasons() == {'frames_failed:backend_error': 5}
        statuses = rig.diags.node_statuses()[since:]
        bad = [s for s in statuses if level_of(s) != OK]
        assert bad and all('failed' in s.message for s in bad), [s.message for s in statuses]
        # No more failures: the next status judged is OK again.
        assert rig.diags.wait_level(OK, 5, since=rig.mark()) is not None
        assert 'fault double raised on call' in rig.diags.values()['last_failure']
        rig.assert_healthy_process()


def test_failing_backend_error_with_reason_then_ok_when_healthy(graph, tmp_path):
    ctl = tmp_path / 'mode'
    ctl.write_text('ok')
    with start_node(dict(BASE, backend='fault_ctl'),
                    env={'DPT_ROS_FAULT_CONTROL': str(ctl)}) as node:
        rig = Rig(graph, node)
        assert rig.send()[0] == 'ok'
        assert rig.diags.wait_level(OK, 5, since=rig.mark()) is not None
        ctl.write_text('raise')
        since = rig.mark()
        assert [rig.send() for _ in range(4)] == [('failed', 'backend_error')] * 4
        err = rig.diags.wait_level(ERROR, 5, since=since)
        assert err is not None, [s.message for s in rig.diags.node_statuses()[since:]]
        assert 'backend failing' in err.message and 'fault double raised' in err.message
        # A wrong-shaped result is the backend's failure too, not the node's.
        ctl.write_text('shape')
        kind, reason = rig.send()
        assert (kind, reason) == ('failed', 'backend_error')
        assert wait_until(lambda: any('returned shape' in ln for ln in node.lines), 5)
        # An all-NaN result must not break post-processing or colourisation.
        ctl.write_text('nan')
        kind, out = rig.send()
        assert kind in ('ok', 'failed'), kind
        if kind == 'ok':
            d = image_codec.image_fields_to_array(out)
            assert d.shape == (24, 32)
        # Healthy again: frames come out, and the status goes back to OK.
        ctl.write_text('ok')
        assert [rig.send()[0] for _ in range(3)] == ['ok'] * 3
        ok = rig.diags.wait_level(OK, 5, since=rig.mark())
        assert ok is not None and ok.message == 'running'
        c = rig.settled_counts()
        assert c['frames_failed'] == 5 + (kind == 'failed') and c['frames_dropped'] == 0
        assert rig.diags.reasons()['frames_failed:backend_error'] == c['frames_failed']
        rig.assert_healthy_process()


def test_hung_call_times_out_late_result_discarded_then_ok(graph, tmp_path):
    ctl, events = tmp_path / 'mode', tmp_path / 'events'
    ctl.write_text('ok')
    env = {'DPT_ROS_FAULT_CONTROL': str(ctl), 'DPT_ROS_FAULT_EVENTS': str(events)}
    with start_node(dict(BASE, backend='fault_ctl', backend_timeout_s=0.5), env=env) as node:
        rig = Rig(graph, node)
        assert rig.send()[0] == 'ok'
        ctl.write_text('hang 2.5')
        since = rig.mark()
        t0 = time.monotonic()
        assert rig.send(timeout=10) == ('failed', 'timeout')
        took = time.monotonic() - t0
        assert 0.4 < took < 2.0, took        # counted at the watchdog, not when it returns
        err = rig.diags.wait_level(ERROR, 5, since=since)
        assert err is not None and 'hung past 0.5 s' in err.message, err
        assert rig.diags.values()['hung_calls'] == '1'
        # The device answers again; a frame sent while the call still hangs waits for the
        # worker and comes out; the hung frame's late result is never published (lock step
        # would see its frame_id).
        ctl.write_text('ok')
        assert rig.send(timeout=10)[0] == 'ok'
        assert 'end 3' in events.read_text().split('\n')   # the hung call did return
        assert rig.send()[0] == 'ok'
        ok = rig.diags.wait_level(OK, 5, since=rig.mark())
        assert ok is not None and rig.diags.values()['hung_calls'] == '0'
        c = rig.settled_counts()
        assert (c['frames_processed'], c['frames_failed']) == (3, 1), c
        assert rig.diags.reasons() == {'frames_failed:timeout': 1}
        rig.assert_healthy_process()


def test_backend_that_dies_counts_every_frame_failed_error_and_node_stays_up(graph):
    with start_node(dict(BASE, backend='fault_dying'),
                    env={'DPT_ROS_FAULT_DIE_AFTER': '3'}) as node:
        rig = Rig(graph, node)
        since = rig.mark()
        outcomes = [rig.send()[0] for _ in range(8)]
        assert outcomes == ['ok', 'ok'] + ['failed'] * 6, outcomes
        err = rig.diags.wait_level(ERROR, 5, since=since)
        assert err is not None and 'device lost' in err.message
        c = rig.settled_counts()
        assert (c['frames_processed'], c['frames_failed']) == (2, 6)
        assert int(rig.diags.values()['frames_failed']) == 6
        rig.assert_healthy_process()


def test_backend_that_dies_is_replaced_by_the_cpu_fallback_counted(graph):
    """
    A permanently dead backend must not end depth output for good (issue 6.

    The node recovers or falls back to CPU, counted). Here the CPU fallback is torch + tiny-random.
    """
    values = dict(BASE, backend='fault_dying', weights='tiny-random')
    with start_node(values, env={'DPT_ROS_FAULT_DIE_AFTER': '2'}) as node:
        rig = Rig(graph, node)
        assert rig.send()[0] == 'ok'
        # From now on every call fails; after fallback_after_failures (10) in a row the node
        # starts torch on cpu on a thread of its own, which takes seconds (importing torch and
        # transformers, loading the model). A camera goes on sending meanwhile: each of those
        # frames must be counted failed, none lost, until the node says it has swapped.
        swapped = "running 'torch' on cpu instead of 'fault_dying'"
        pacer = Pacer(10.0)
        deadline = time.monotonic() + 90.0
        outcomes = []
        while not any(swapped in ln for ln in node.lines) and time.monotonic() < deadline:
            outcomes.append(rig.send()[0])
            pacer.wait()
        assert any(swapped in ln for ln in node.lines), (outcomes, node.output()[-3000:])
        # (the last frame may have reached the new backend just before the line was written)
        assert len(outcomes) >= 10 and set(outcomes[:-1]) == {'failed'}, outcomes
        assert rig.send()[0] == 'ok', node.output()[-3000:]     # served by the fallback
        # Diagnostics are periodic: the latest one may predate the swap that the 'ok' frame
        # came through, so wait for one that shows the fallback backend.
        graph.spin_until(lambda: rig.diags.values().get('backend') == 'torch', 5)
        v = rig.diags.values()
        assert int(v['backend_fallback_count']) >= 1 and v['backend'] == 'torch', v
        warn = rig.diags.wait_level(WARN, 5, since=rig.mark())
        assert warn is not None and 'fallback' in warn.message
        rig.assert_healthy_process()


def test_faults_on_two_workers_keep_each_camera_in_order_and_counts_exact(graph):
    """
    Run dp 2 (two inference workers, like two TT chips).

    A failing call on one worker must not reorder or stall the other's outputs; every frame still
    ends in exactly one counter.
    """
    values = dict(BASE, backend='fault_every', dp=2, cameras=['left', 'right'])
    env = {'DPT_ROS_FAULT_EVERY': '4', 'DPT_ROS_FAULT_DELAY_MS': '40'}
    with start_node(values, env=env) as node:
        diags = Diagnostics(graph)
        outs = {ns: graph.collect(Image, f'{ns}/depth_relative', qos=100)
                for ns in ('left', 'right')}
        pubs = {ns: graph.node.create_publisher(Image, f'{ns}/image', 10)
                for ns in ('left', 'right')}
        for ns in pubs:
            assert graph.wait_for_subscriber(pubs[ns]), node.output()
            assert graph.wait_matched(f'{ns}/depth_relative'), node.output()
        msg = Image(**image_codec.rgb_to_image_fields(rgb_image(24, 32)))
        sent, period = 90, 1 / 30.0
        t0 = time.monotonic()
        for i in range(sent):
            for ns, pub in pubs.items():
                msg.header.stamp = graph.node.get_clock().now().to_msg()
                msg.header.frame_id = ns
                pub.publish(msg)
            # Pace the cameras at 30 Hz while taking the outputs as they come.
            next_at = t0 + (i + 1) * period
            while (left := next_at - time.monotonic()) > 0:
                graph.executor.spin_once(timeout_sec=left)
        assert diags.wait_counts(lambda c: c['in_pipeline'] == 0 and
                                 c['frames_received'] >= 2 * sent * 0.9, 15), diags.values()
        c = diags.counts()
        assert reconciles(c), c
        assert c['frames_failed'] > 0 and c['frames_processed'] > 0, c
        assert set(diags.reasons()) <= {'frames_failed:backend_error', 'frames_dropped:stale'}
        graph.spin_until(lambda: sum(map(len, outs.values())) >= c['frames_processed'], 5)
        assert sum(map(len, outs.values())) == c['frames_processed']
        for ns, msgs in outs.items():
            stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in msgs]
            assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), ns
            assert all(m.header.frame_id == ns for m in msgs)
        assert int(diags.values()['workers']) == 2
        assert node.proc.poll() is None and not no_crash_signs(node.output())
