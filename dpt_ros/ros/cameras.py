"""
One camera's ROS side: topic names, QoS matching, subscriptions, publishers, publishing.

A `CameraIO` is made when the node is configured, with its output publishers: lifecycle
publishers, which publish only while the node is active (its metric-depth state lives as long
as they do); its subscriptions exist only while the node is active. The compressed outputs
(transport_codec) are encoded only while they have a subscriber.
"""
from __future__ import annotations

import time

from dpt_ros import vocabulary
from dpt_ros.depth.metric import CameraMetric, MetricDepth
from dpt_ros.perf.conventions import TopicTimes
from dpt_ros.ros import image_codec, transport_codec
from dpt_ros.ros.points import PointsOutput
from dpt_ros.serving.health import CameraView
from dpt_ros.vocabulary import in_namespace as topic
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

# Counters of the compressed outputs shown per camera (zero or not).
COMPRESSED_KEYS = ('compressed_color_published', 'compressed_depth_published')
# Reference depth messages kept per camera for matching by stamp (metric.mode reference): a
# 30 Hz reference sensor covers ~0.27 s, more than a frame's time in the pipeline on a card.
REFERENCE_BUFFER = 8


def stamp_ns(header) -> int:
    """Return a header's stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def with_header(info: CameraInfo, header) -> CameraInfo:
    """Return a copy of `info` carrying `header`."""
    out = CameraInfo(height=info.height, width=info.width,
                     distortion_model=info.distortion_model, d=info.d, k=info.k, r=info.r,
                     p=info.p, binning_x=info.binning_x, binning_y=info.binning_y, roi=info.roi)
    out.header = header
    return out


def wanted_reliability(node, mode: str, name: str, current):
    """Return the reliability to subscribe `name` with (`qos_reliability` mode)."""
    if mode == 'reliable':
        return ReliabilityPolicy.RELIABLE
    if mode == 'best_effort':
        return ReliabilityPolicy.BEST_EFFORT
    pubs = node.get_publishers_info_by_topic(name)
    if not pubs:
        # Nobody publishes yet: keep what we have; reliable matches reliable publishers
        # at once and the timer switches if a best-effort one shows up.
        return current or ReliabilityPolicy.RELIABLE
    if any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in pubs):
        return ReliabilityPolicy.BEST_EFFORT   # a reliable reader would not match it
    return ReliabilityPolicy.RELIABLE


def output_qos(values: dict) -> QoSProfile:
    """Return the QoS of every output (qos_output_reliability, qos_output_depth)."""
    reliability = (ReliabilityPolicy.BEST_EFFORT
                   if values['qos_output_reliability'] == 'best_effort'
                   else ReliabilityPolicy.RELIABLE)
    return QoSProfile(depth=values['qos_output_depth'], history=HistoryPolicy.KEEP_LAST,
                      reliability=reliability)


class _Sub:
    """One subscription and the reliability it was made with."""

    def __init__(self):
        self.sub = None
        self.reliability = None

    def ensure(self, node, mode, name, msg_type, callback, depth) -> bool:
        want = wanted_reliability(node, mode, name, self.reliability)
        if self.sub is not None and want == self.reliability:
            return False
        if self.sub is not None:
            node.destroy_subscription(self.sub)
        qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=want)
        self.sub = node.create_subscription(msg_type, name, callback, qos)
        changed = self.reliability is not None
        self.reliability = want
        return changed

    def close(self, node) -> None:
        if self.sub is not None:
            node.destroy_subscription(self.sub)
        self.sub = self.reliability = None


class CameraIO:
    """One camera's topics, publishers and latest side-channel messages."""

    def __init__(self, ns: str, values: dict):
        self.ns = ns
        self.values = values
        self.image_topic = ''
        self.latest_info: CameraInfo | None = None
        self.metric: CameraMetric | None = None
        if values['metric.mode'] != 'none':
            fit = MetricDepth(values['metric.mode'], scale=values['metric.scale'],
                              shift=values['metric.shift'], min_depth=values['metric.min_depth'],
                              max_depth=values['metric.max_depth'],
                              smoothing=values['metric.smoothing'])
            self.metric = CameraMetric(fit, values['metric.reference_max_dt_s'],
                                       REFERENCE_BUFFER)
        self._image, self._info, self._ref = _Sub(), _Sub(), _Sub()
        self._pubs: dict = {}
        self.points: PointsOutput | None = None   # <ns>/points, with metric depth only
        self.topic_times = TopicTimes()           # of depth_relative (greenwave keys)
        self.compressed = dict.fromkeys(COMPRESSED_KEYS, 0)
        self._clock = None

    @property
    def reliability(self):
        return self._image.reliability

    # ----- configure / cleanup -----
    def open_outputs(self, node) -> None:
        """Create the output publishers (lifecycle publishers of the managed `node`)."""
        outs = {'depth': (Image, vocabulary.TOPIC_DEPTH_RELATIVE),
                'color': (Image, vocabulary.TOPIC_DEPTH_RELATIVE_COLOR),
                'color_jpeg': (CompressedImage, vocabulary.TOPIC_DEPTH_RELATIVE_COLOR_COMPRESSED),
                'info': (CameraInfo, vocabulary.TOPIC_DEPTH_RELATIVE_INFO)}
        if self.metric is not None:
            outs.update(metric=(Image, vocabulary.TOPIC_DEPTH_METRIC),
                        metric_info=(CameraInfo, vocabulary.TOPIC_DEPTH_METRIC_INFO),
                        metric_png=(CompressedImage, vocabulary.TOPIC_DEPTH_METRIC_COMPRESSED))
        qos = output_qos(self.values)
        self._pubs = {k: node.create_lifecycle_publisher(t, topic(self.ns, n), qos)
                      for k, (t, n) in outs.items()}
        if self.metric is not None:
            self.points = PointsOutput(node, self.ns, self.values, qos)
        self._clock = node.get_clock()

    def close_outputs(self, node) -> None:
        """Destroy the output publishers."""
        for pub in self._pubs.values():
            node.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self.points is not None:
            node.destroy_lifecycle_publisher(self.points.pub)
            self.points = None

    # ----- activate / deactivate -----
    def start(self, node, submit) -> None:
        """Subscribe; `submit(ns, msg, stamp_ns)` takes frames."""
        self.image_topic = self._input_topic(node)
        self._submit = submit
        self.topic_times = TopicTimes()   # rates and counts of this activation
        self.compressed = dict.fromkeys(COMPRESSED_KEYS, 0)
        self.subscribe(node)

    def close(self, node) -> None:
        """Destroy the subscriptions (the publishers and the metric fit are kept)."""
        for s in (self._image, self._info, self._ref):
            s.close(node)

    def _input_topic(self, node) -> str:
        raw = node.resolve_topic_name(topic(self.ns, vocabulary.TOPIC_IMAGE))
        if self.values['transport'] != 'compressed':
            return raw
        # image_transport style: <image>/compressed follows a remapped `image`; a remap of
        # `image/compressed` itself wins.
        name = topic(self.ns, f'{vocabulary.TOPIC_IMAGE}/{vocabulary.COMPRESSED_SUFFIX}')
        resolved = node.resolve_topic_name(name)
        if resolved != node.resolve_topic_name(name, only_expand=True):
            return resolved
        return f'{raw}/{vocabulary.COMPRESSED_SUFFIX}'

    def subscribe(self, node) -> None:
        """(Re)subscribe where the publishers' reliability asks for it (qos_reliability)."""
        v = self.values
        mode = v['qos_reliability']
        msg_type = Image if v['transport'] == 'raw' else CompressedImage
        ns, submit = self.ns, self._submit
        if self._image.ensure(node, mode, self.image_topic, msg_type,
                              lambda msg: submit(ns, msg, stamp_ns(msg.header)), 1):
            node.get_logger().info(f'{self.image_topic}: reliability now '
                                   f'{self._image.reliability.name.lower()} to match its '
                                   'publishers')
        info_topic = node.resolve_topic_name(topic(ns, vocabulary.TOPIC_CAMERA_INFO))
        self._info.ensure(node, mode, info_topic, CameraInfo,
                          lambda msg: setattr(self, 'latest_info', msg), 1)
        if v['metric.mode'] == 'reference':
            ref_topic = node.resolve_topic_name(topic(ns, v['metric.reference_topic']))
            self._ref.ensure(node, mode, ref_topic, Image,
                             lambda msg: self.metric.add_reference(stamp_ns(msg.header), msg),
                             REFERENCE_BUFFER)

    # ----- per frame (finish thread) -----
    def _wanted(self, key: str) -> bool:
        pub = self._pubs.get(key)
        return pub is not None and pub.get_subscription_count() > 0

    def wants_color(self) -> bool:
        """Whether the colour image is wanted: raw or JPEG colour has a subscriber."""
        return self._wanted('color') or self._wanted('color_jpeg')

    def metric_depth(self, depth, stamp: int, perf, logger):
        """Return the frame's metres or None (no metric mode or fit yet); decodes its reference."""
        if self.metric is None:
            return None
        ref, ref_m = self.metric.reference_for(stamp), None
        if ref is not None:
            try:
                ref_m = image_codec.decode_depth_m(ref, self.values['max_pixels'])
            except image_codec.InvalidImage as exc:
                perf.count('reference_rejected', reason=exc.reason)
                logger.warning(f'reference depth rejected ({exc.reason}): {exc}',
                               throttle_duration_sec=5.0)
        return self.metric.apply(depth, ref_m)

    def publish(self, header, depth_img, color_img, metric, rgb=None) -> float:
        """
        Publish one frame's outputs with the input header; return the ms the images took.

        The point cloud (metric depth, only while subscribed) is timed on its own (points_ms).
        """
        t0 = time.perf_counter()
        pubs = self._pubs
        pubs['depth'].publish(depth_img.message(Image, header))
        self.topic_times.add(stamp_ns(header), self._clock.now().nanoseconds)
        if color_img is not None:
            self._publish_color(header, color_img)
        info = self.latest_info
        out_info = with_header(info, header) if info is not None else None
        if out_info is not None:
            pubs['info'].publish(out_info)
        if metric is not None:
            pubs['metric'].publish(image_codec.new_message(
                Image, header=header, **image_codec.depth_to_image_fields(metric)))
            if out_info is not None:
                pubs['metric_info'].publish(out_info)
            if self._wanted('metric_png'):
                v = self.values
                pubs['metric_png'].publish(image_codec.new_message(
                    CompressedImage, header=header, **transport_codec.compressed_depth_fields(
                        metric, depth_max=v['compressed.depth_max'],
                        depth_quantization=v['compressed.depth_quantization'],
                        png_level=v['compressed.png_level'])))
                self.compressed['compressed_depth_published'] += 1
        ms = (time.perf_counter() - t0) * 1e3
        if metric is not None and self.points is not None:
            self.points.publish(metric, header, info, rgb)
        return ms

    def _publish_color(self, header, color_img) -> None:
        if self._wanted('color'):
            self._pubs['color'].publish(color_img.message(Image, header))
        if self._wanted('color_jpeg'):
            self._pubs['color_jpeg'].publish(image_codec.new_message(
                CompressedImage, header=header, **transport_codec.jpeg_fields(
                    color_img.pixels, self.values['compressed.jpeg_quality'])))
            self.compressed['compressed_color_published'] += 1

    def view(self, node) -> CameraView:
        """Return what diagnostics show of this camera."""
        rel = self._image.reliability
        outputs = dict(self.compressed)
        if self.points is not None:
            outputs.update(self.points.diagnostics())
        return CameraView(
            key=self.ns, input_topic=self.image_topic,
            output_topic=node.resolve_topic_name(topic(self.ns, vocabulary.TOPIC_DEPTH_RELATIVE)),
            reliability=rel.name.lower() if rel else '',
            publishers=node.count_publishers(self.image_topic),
            camera_info=self.latest_info is not None,
            metric=self.metric.fit if self.metric else None,
            refs=self.metric.refs if self.metric else None,
            outputs=outputs, topic_times=self.topic_times)
