"""
The depth view node (`depth_view`): the depth node's topics, live on a page on localhost.

Subscribes (relative names, so namespaces and remappings apply):
    image                 sensor_msgs/Image       only while a page is open
    depth_relative/color  sensor_msgs/Image       only while a page is open (the depth node
                                                  colourises only while someone subscribes)
    /diagnostics          diagnostic_msgs/DiagnosticArray

A separate process, so the depth node pays nothing for it. Callbacks only keep the newest
message; decoding and encoding happen on the server's threads, once per frame, only for open
pages (dpt_ros/view/). Requests from other sites or under foreign Host names are refused
(view/access.py); `token` guards the page, and serving beyond loopback always needs one.
Exit codes: 0 stopped, 2 a bad parameter or the port in use.
"""
from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from dpt_ros import vocabulary
from dpt_ros.errors import ViewError
from dpt_ros.ros import image_codec
from dpt_ros.ros.cameras import wanted_reliability
from dpt_ros.ros.descriptors import descriptor
from dpt_ros.ros.params import check_param, Param
from dpt_ros.view.frames import FrameSlot, IMAGE_FORMATS
from dpt_ros.view.history import StatsHistory
from dpt_ros.view.server import ViewServer
import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile
from sensor_msgs.msg import Image

STREAMS = (vocabulary.TOPIC_IMAGE, vocabulary.TOPIC_DEPTH_RELATIVE_COLOR)
# The view's parameters, in the node's table format (ros/params.Param).
PARAMS = (
    Param('port', 8090, 'TCP port of the page; 0 = any free port (the URL is logged)',
          min=0, max=65535),
    Param('host', '127.0.0.1', 'Address the page is served on; 127.0.0.1 keeps it on this '
          'machine, 0.0.0.0 opens it to the network (then a token is required)'),
    Param('token', '', 'Access token the page and its data need (?token=..., printed once in '
          "the URL at start-up). '' on loopback: none; '' beyond loopback: one is generated."),
    Param('allowed_hosts', [''], 'More Host names the page may be opened under (a DNS or mDNS '
          "name of this machine); IP addresses, localhost and this machine's host name always "
          'are. Other names are refused (DNS rebinding).'),
    Param('history_s', 300.0, 'Seconds of diagnostics the plots show', min=1.0, max=86400.0),
    Param('image_format', 'jpeg', 'Frames to the page as jpeg (small) or png (exact pixels)',
          choices=tuple(IMAGE_FORMATS)),
    Param('jpeg_quality', 80, 'JPEG quality of the frames (1-100)', min=1, max=100),
    Param('status_name', '', "DiagnosticStatus to plot; empty = the first one with 'backend' "
          "and 'output_fps' (the depth node's pipeline status)"),
)


def _check(values: dict) -> None:
    errors = [msg for p in PARAMS if (msg := check_param(p, values[p.name]))]
    if errors:
        raise ValueError('; '.join(errors))


class ViewNode(Node):
    """Feeds the view server: latest frame per stream, diagnostics into the history."""

    def __init__(self, **kwargs):
        super().__init__('depth_view', **kwargs)
        for p in PARAMS:
            self.declare_parameter(p.name, p.default, descriptor(p))
        v = {p.name: self.get_parameter(p.name).value for p in PARAMS}
        _check(v)
        self.history = StatsHistory(v['history_s'], v['status_name'])
        self.slots = [FrameSlot(t, image_codec.decode, v['image_format'], v['jpeg_quality'])
                      for t in STREAMS]
        self._image_subs: list = []
        self._guard = self.create_guard_condition(self._sync_subscriptions)
        self.server = ViewServer(self.slots, self.history, v['host'], v['port'],
                                 on_clients=lambda n: self._guard.trigger(), token=v['token'],
                                 allowed_hosts=[h for h in v['allowed_hosts'] if h])
        self.create_subscription(DiagnosticArray, vocabulary.TOPIC_DIAGNOSTICS,
                                 self._on_diagnostics, 10)
        self.server.start()
        # The one place the token is printed: the URL to open.
        self.get_logger().info(f'serving {self.server.page_url} (input '
                               f'{self.resolve_topic_name(STREAMS[0])}, colour depth '
                               f'{self.resolve_topic_name(STREAMS[1])})')
        if self.server.token_generated:
            self.get_logger().warning(f"host {v['host']} serves beyond this machine: a token "
                                      'was generated (the URL above carries it); set the '
                                      '`token` parameter to choose one')

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if self.history.add(msg.status):
            self.server.notify()

    def _sync_subscriptions(self) -> None:
        # Runs on the executor: pages opened or closed. Subscribe only while one is open.
        want = self.server.clients > 0
        if want and not self._image_subs:
            self._image_subs = [self._subscribe(slot) for slot in self.slots]
        elif not want and self._image_subs:
            for sub in self._image_subs:
                self.destroy_subscription(sub)
            self._image_subs = []

    def _subscribe(self, slot: FrameSlot):
        def on_image(msg, slot=slot):
            slot.put(msg)
            self.server.notify()
        # Reliable unless a publisher offers only best effort (the depth node's `auto` rule).
        reliability = wanted_reliability(self, 'auto', self.resolve_topic_name(slot.name), None)
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        return self.create_subscription(Image, slot.name, on_image, qos)

    def close(self) -> None:
        """Close the pages and the server."""
        self.server.stop()


def main(args=None) -> None:
    """Console script `depth_view`: serve until SIGINT/SIGTERM."""
    rclpy.init(args=args)
    node, code = None, 0
    try:
        node = ViewNode()
        rclpy.spin(node)
    except (ViewError, ValueError, ParameterException) as exc:   # one line, exit 2
        print(f'depth_view: {exc}', file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(code)
