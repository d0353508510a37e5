"""
What the node tests share: the stand-in node's base parameters, the frame size, messages.

The node runs with the zero-cost stand-in backend (support/doubles/stand_in_backends.py) at a
small input size; frames are H x W; `raw_msg` builds a sensor_msgs/Image from an array and
`stamp` sets its header, so an output can be matched to its input by stamp (`by_stamp`);
`subscribed_publisher` returns a publisher once the node has subscribed to it.
"""
import numpy as np
from sensor_msgs.msg import Image
from support.ros_harness import STAND_INS

H, W = 48, 64
BASE = {'backend': 'standin_zero', 'image_size': 64, 'diagnostics_rate': 20.0}
# The stand-ins plus one whose output holds NaN and +inf (support/doubles/metric_stand_ins.py).
HOLES_ENV = {'DPT_ROS_EXTRA_BACKENDS':
             STAND_INS + ',standin_holes=support.doubles.metric_stand_ins:create_holes'}


def stamp(msg, sec, nsec=0, frame_id='cam'):
    """Set `msg`'s header stamp and frame; return `msg`."""
    msg.header.stamp.sec = sec
    msg.header.stamp.nanosec = nsec
    msg.header.frame_id = frame_id
    return msg


def raw_msg(encoding, arr, step=None):
    """Return a sensor_msgs/Image of `arr` (row step: its bytes per row unless given)."""
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    row = arr.nbytes // h
    return Image(encoding=encoding, height=h, width=w, step=step or row, is_bigendian=0,
                 data=arr.tobytes())


def latest_status(diags, name_part):
    """Return the newest DiagnosticStatus whose name holds `name_part`, or None."""
    for arr in reversed(diags):
        for s in arr.status:
            if name_part in s.name:
                return s
    return None


def by_stamp(msgs, sec):
    """Return the message of `msgs` stamped `sec` seconds, or None."""
    return next((m for m in msgs if m.header.stamp.sec == sec), None)


def subscribed_publisher(graph, node, topic='image', msg_type=Image, qos=10):
    """Return a publisher on `topic` once `node` subscribes to it (asserted; message: its log)."""
    pub = graph.node.create_publisher(msg_type, topic, qos)
    assert graph.wait_for_subscriber(pub), node.output()
    return pub
