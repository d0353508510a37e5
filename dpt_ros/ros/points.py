"""
One camera's `points` topic: metric depth + camera_info -> sensor_msgs/PointCloud2.

Thin glue around `depth.pointcloud`: the cloud is made only while someone subscribes; it
carries the input header (REP 103 optical frame = the input frame_id). Without camera_info,
or with one that cannot project, the frame gets no cloud: counted, and one WARN line says why.
"""
from __future__ import annotations

import collections
import functools
import statistics
import threading
import time

from dpt_ros import vocabulary
from dpt_ros.depth import pointcloud
from dpt_ros.errors import CameraModelError
from dpt_ros.ros import image_codec
from dpt_ros.vocabulary import in_namespace as topic
from sensor_msgs.msg import PointCloud2, PointField

# The counters diagnostics show per camera (all present from the start, zero or not).
COUNTER_KEYS = ('points_published', 'points_skipped_no_camera_info',
                'points_skipped_bad_camera_info')


def to_message(cloud: pointcloud.Cloud, header) -> PointCloud2:
    """Fill a PointCloud2 from a Cloud (its data buffer is taken over, not copied)."""
    return image_codec.new_message(
        PointCloud2, header=header, height=cloud.height, width=cloud.width,
        fields=_point_fields(cloud.fields), is_bigendian=cloud.is_bigendian,
        point_step=cloud.point_step, row_step=cloud.row_step, is_dense=cloud.is_dense,
        data=cloud.data)


@functools.lru_cache(maxsize=8)
def _point_fields(fields: tuple) -> list:
    # Built once per layout; messages share the list (nothing mutates a published message).
    return [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
            for f in fields]


class PointsOutput:
    """The `points` publisher of one camera namespace, its counters and its warnings."""

    def __init__(self, node, ns: str, values: dict, qos):
        """Create <ns>/points with the `points.*` parameters of a validated parameter set."""
        self.pub = node.create_lifecycle_publisher(PointCloud2,
                                                   topic(ns, vocabulary.TOPIC_POINTS), qos)
        self.topic = self.pub.topic_name
        self.info_topic = node.resolve_topic_name(topic(ns, vocabulary.TOPIC_CAMERA_INFO))
        self._log = node.get_logger()
        # reuse: publish() serialises the message before it returns, so one buffer serves.
        self._maker = pointcloud.PointCloudMaker(stride=values['points.stride'],
                                                 dense=values['points.dense'], reuse=True)
        self.want_rgb = bool(values['points.rgb'])
        self.camera_model = values['points.camera_model']
        self.counts = dict.fromkeys(COUNTER_KEYS, 0)
        self._ms: collections.deque[float] = collections.deque(maxlen=300)
        self._lock = threading.Lock()
        self._warned_no_info = False
        self._last_bad = None      # the last bad-camera_info message logged (once per change)
        # The last camera_info seen and its parsed model (or the error refusing it).
        self._info_msg = None
        self._intr: pointcloud.Intrinsics | CameraModelError | None = None

    def wanted(self) -> bool:
        """Return True while someone subscribes (otherwise nothing is computed)."""
        return self.pub.get_subscription_count() > 0

    def publish(self, depth, header, info, rgb=None) -> bool:
        """
        Publish the cloud of one frame's metric depth; return True when one was published.

        info: the camera's latest CameraInfo or None; rgb: the input image (H, W, 3) uint8,
        used when points.rgb is true. Nothing is done while nobody subscribes.
        """
        if not self.wanted():
            return False
        if info is None:
            self._count('points_skipped_no_camera_info')
            if not self._warned_no_info:
                self._warned_no_info = True
                self._log.warning(f'{self.topic}: no camera_info on {self.info_topic} yet, so '
                                  'no points (counted in points_skipped_no_camera_info; said '
                                  'once)')
            return False
        t0 = time.perf_counter()
        try:
            intr = self._intrinsics(info)
        except CameraModelError as exc:
            self._count('points_skipped_bad_camera_info')
            if str(exc) != self._last_bad:
                self._last_bad = str(exc)
                self._log.warning(f'{self.topic}: no points ({exc.reason}): {exc} (counted in '
                                  'points_skipped_bad_camera_info)')
            return False
        cloud = self._maker.make(depth, intr, rgb if self.want_rgb else None)
        self.pub.publish(to_message(cloud, header))
        with self._lock:
            self._ms.append((time.perf_counter() - t0) * 1e3)
        self._count('points_published')
        return True

    def _intrinsics(self, info) -> pointcloud.Intrinsics:
        """Return the camera model of `info`, parsed once per camera_info message."""
        if info is not self._info_msg:
            try:
                self._intr = pointcloud.intrinsics_from_camera_info(
                    info.k, info.d, info.distortion_model, info.width, info.height, p=info.p,
                    model=self.camera_model)
            except CameraModelError as exc:
                self._intr = exc
            self._info_msg = info
        if isinstance(self._intr, CameraModelError):
            raise self._intr
        return self._intr

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def diagnostics(self) -> dict:
        """Key-values for the camera's diagnostics status: counters and points_ms (median)."""
        with self._lock:
            kv = dict(self.counts)
            kv['points_ms'] = statistics.median(self._ms) if self._ms else float('nan')
        return kv
