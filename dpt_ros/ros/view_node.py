"""
The depth view node (`depth_view`): the depth node's topics, live on a page on localhost.

Subscribes (relative names, so namespaces and remappings apply):
    image                 sensor_msgs/Image       only while a page is open
    depth_relative/color  sensor_msgs/Image       only while a page is open (the depth node
                                                  colourises only while someone subscribes)
    /diagnostics          diagnostic_msgs/DiagnosticArray

A separate process, so the depth node pays nothing for it. Callbacks only keep the newest
message; decoding and encoding happen on the server's threads, once per frame, only for open
pages (dpt_ros/view/). Exit codes: 0 stopped, 2 a bad parameter or the port in use.
"""
from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from dpt_ros import vocabulary
from dpt_ros.errors import ViewError
from dpt_ros.ros import image_codec
from dpt_ros.view.frames import FrameSlot, IMAGE_FORMATS
from dpt_ros.view.history import StatsHistory
from dpt_ros.view.server import ViewServer
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

STREAMS = (vocabulary.TOPIC_IMAGE, vocabulary.TOPIC_DEPTH_RELATIVE_COLOR)
# (name, default, description, descriptor range or choices)
PARAMS = (
    ('port', 8090, 'TCP port of the page; 0 = any free port (the URL is logged)',
     IntegerRange(from_value=0, to_value=65535, step=1)),
    ('host', '127.0.0.1', 'Address the page is served on; 127.0.0.1 keeps it on this machine, '
                          '0.0.0.0 opens it to the network', None),
    ('history_s', 300.0, 'Seconds of diagnostics the plots show',
     FloatingPointRange(from_value=1.0, to_value=86400.0, step=0.0)),
    ('image_format', 'jpeg', 'Frames to the page as jpeg (small) or png (exact pixels)',
     tuple(IMAGE_FORMATS)),
    ('jpeg_quality', 80, 'JPEG quality of the frames (1-100)',
     IntegerRange(from_value=1, to_value=100, step=1)),
    ('status_name', '', "DiagnosticStatus to plot; empty = the first one with 'backend' and "
                        "'output_fps' (the depth node's pipeline status)", None),
)


def _descriptor(description: str, limits) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=True)
    if isinstance(limits, IntegerRange):
        d.integer_range = [limits]
    elif isinstance(limits, FloatingPointRange):
        d.floating_point_range = [limits]
    elif limits:
        d.additional_constraints = 'one of: ' + ', '.join(limits)
    return d


def _check(values: dict) -> None:
    if values['image_format'] not in IMAGE_FORMATS:
        raise ValueError(f"image_format '{values['image_format']}': use one of "
                         f"{', '.join(IMAGE_FORMATS)}")
    for name, _, _, limits in PARAMS:
        lo, hi = (getattr(limits, 'from_value', None), getattr(limits, 'to_value', None))
        if lo is not None and not lo <= values[name] <= hi:
            raise ValueError(f'{name}={values[name]}: must be in [{lo}, {hi}]')


class ViewNode(Node):
    """Feeds the view server: latest frame per stream, diagnostics into the history."""

    def __init__(self, **kwargs):
        super().__init__('depth_view', **kwargs)
        for name, default, description, limits in PARAMS:
            self.declare_parameter(name, default, _descriptor(description, limits))
        v = {name: self.get_parameter(name).value for name, *_ in PARAMS}
        _check(v)
        self.history = StatsHistory(v['history_s'], v['status_name'])
        self.slots = [FrameSlot(t, image_codec.decode, v['image_format'], v['jpeg_quality'])
                      for t in STREAMS]
        self._image_subs: list = []
        self._guard = self.create_guard_condition(self._sync_subscriptions)
        self.server = ViewServer(self.slots, self.history, v['host'], v['port'],
                                 on_clients=lambda n: self._guard.trigger())
        self.create_subscription(DiagnosticArray, vocabulary.TOPIC_DIAGNOSTICS,
                                 self._on_diagnostics, 10)
        url = self.server.start()
        self.get_logger().info(f'serving {url} (input {self.resolve_topic_name(STREAMS[0])}, '
                               f'colour depth {self.resolve_topic_name(STREAMS[1])})')

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
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=self._reliability(slot.name))
        return self.create_subscription(Image, slot.name, on_image, qos)

    def _reliability(self, topic: str) -> ReliabilityPolicy:
        # A reliable reader never matches a best-effort camera; best-effort loses most large
        # images in Fast DDS, so take reliable unless a publisher offers only best effort.
        pubs = self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
        if any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in pubs):
            return ReliabilityPolicy.BEST_EFFORT
        return ReliabilityPolicy.RELIABLE

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
    except (ViewError, ValueError) as exc:
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
