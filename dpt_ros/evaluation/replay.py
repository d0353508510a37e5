"""
Replay: the bag's frames (and camera_info) published over DDS to a depth node, outputs timed.

Frames go out at the recorded rate times --rate with their header stamps, to a running depth
node or to one `ReplaySession` starts (--start-node). The node's outputs are recorded to an
output bag and matched to the inputs by stamp (replay_results.py).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
import logging
import os
from pathlib import Path
import time

from dpt_ros import vocabulary
from dpt_ros.errors import EvalError
from dpt_ros.evaluation import bagio, results
from dpt_ros.evaluation.frames import progress, read_frames
from dpt_ros.evaluation.recorder import Recorder, RecorderNode, with_stamp
from dpt_ros.ros.node_process import NodeProcess

log = logging.getLogger('dpt_ros.evaluation.replay')

# Replay warm-up stops early after this long (seconds) in total.
WARMUP_BUDGET_S = 10.0
# Frames a node may hold between receipt and output (decode/infer/publish overlap).
IN_FLIGHT = 3


def default_params_file() -> str | None:
    """Return the package's config/dpt.yaml (checkout, else the ament share), or None."""
    cand = Path(__file__).resolve().parents[2] / 'config' / 'dpt.yaml'
    if cand.exists():
        return str(cand)
    with contextlib.suppress(Exception):
        from ament_index_python.packages import get_package_share_directory
        cand = Path(get_package_share_directory('dpt_ros')) / 'config' / 'dpt.yaml'
        if cand.exists():
            return str(cand)
    return None


def parent_ns(topic: str) -> str:
    ns = topic.rsplit('/', 1)[0]
    return ns if ns else '/'


def join_ns(ns: str, name: str) -> str:
    return (ns.rstrip('/') + '/' + name) if ns not in ('', '/') else '/' + name


def ros_environment(start_node: bool, environ=None) -> dict[str, str]:
    """
    Return the DDS settings for this replay: the caller's, with loopback discovery by default.

    A node started here gets a private domain unless one is set, so it meets no other graph.
    """
    environ = os.environ if environ is None else environ
    env = {'ROS_AUTOMATIC_DISCOVERY_RANGE': environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE',
                                                        'LOCALHOST')}
    if 'ROS_DOMAIN_ID' in environ:
        env['ROS_DOMAIN_ID'] = environ['ROS_DOMAIN_ID']
    elif start_node:
        env['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 100)
    return env


@dataclass
class ReplayTopics:
    """Where frames go and where the node's outputs come from."""

    publish: str
    image_base: str        # the image topic without /compressed
    ns: str                # the node's namespace
    info: str | None       # camera_info (None when the bag has none)
    depth: str
    color: str
    metric: str
    compressed: bool

    @classmethod
    def plan(cls, args, src: bagio.BagSource) -> 'ReplayTopics':
        publish = args.publish_topic or src.image_topic
        compressed = src.image_type == bagio.COMPRESSED_TYPE
        base = publish
        if compressed and publish.endswith('/' + vocabulary.COMPRESSED_SUFFIX):
            base = publish[:-len(vocabulary.COMPRESSED_SUFFIX) - 1]
        ns = args.node_ns or parent_ns(base)
        info = args.camera_info_topic or (
            join_ns(parent_ns(base), vocabulary.TOPIC_CAMERA_INFO)
            if src.camera_info_topic else None)
        return cls(publish, base, ns, info, join_ns(ns, vocabulary.TOPIC_DEPTH_RELATIVE),
                   join_ns(ns, vocabulary.TOPIC_DEPTH_RELATIVE_COLOR),
                   join_ns(ns, vocabulary.TOPIC_DEPTH_METRIC), compressed)

    def outputs(self, color: bool) -> list[str]:
        return [self.depth, self.metric] + ([self.color] if color else [])

    def remaps(self) -> list[tuple[str, str]]:
        """Node remappings so it reads what we publish from its own namespace."""
        out = [('__ns', self.ns)]
        if self.image_base != join_ns(self.ns, vocabulary.TOPIC_IMAGE):
            key = vocabulary.TOPIC_IMAGE + ('/' + vocabulary.COMPRESSED_SUFFIX
                                            if self.compressed else '')
            out.append((key, self.publish))
        if self.info and self.info != join_ns(self.ns, vocabulary.TOPIC_CAMERA_INFO):
            out.append((vocabulary.TOPIC_CAMERA_INFO, self.info))
        return out


def node_overrides(args, compressed: bool) -> dict:
    """Return the node parameters this replay's flags set (before the --node-param extras)."""
    values = {'backend': args.backend, 'weights': args.weights, 'image_size': args.image_size,
              'device': args.device, 'dtype': args.dtype, 'seed': args.seed,
              'threads': args.threads, 'execution_mode': args.execution_mode, 'dp': args.dp,
              'transport': 'compressed' if compressed else 'raw'}
    if args.compile:
        values['compile'] = 'true'
    return values


class ReplaySession:
    """One replay: frames loaded, the node started if asked, frames paced out, outputs timed."""

    def __init__(self, args, src: bagio.BagSource, environ=None):
        _import_ros()
        self.args, self.src = args, src
        self.out_dir = Path(args.output)
        self.topics = ReplayTopics.plan(args, src)
        self.ros_env = ros_environment(args.start_node, environ)
        self.warnings: list[str] = []
        self.frames = self._load_frames()
        self.infos = self._load_infos()
        self.node: NodeProcess | None = None
        self.node_rc: int | None = None
        self.writer: bagio.BagWriter | None = None
        self.out_bag = Path(args.output_bag) if args.output_bag else self.out_dir / 'outputs_bag'
        self.recorder: Recorder | None = None
        self.strip_frames: list[bagio.Frame] = []
        self.pub_times: dict[int, float] = {}
        self.t_start = self.t_end_pub = 0.0

    def _load_frames(self) -> list[bagio.Frame]:
        # Everything to publish, loaded up front so disk reads never disturb the pacing.
        limit = self.args.max_frames or self.src.frame_count
        frames = []
        for fr in read_frames(self.src, self.warnings):
            if fr.index >= limit:
                break
            frames.append(fr)
        if not frames:
            raise EvalError('the bag has no frames to replay')
        return frames

    def _load_infos(self) -> dict[int, bytes]:
        infos: dict[int, bytes] = {}
        if self.src.camera_info_topic and self.topics.info:
            for _, _, raw, msg in bagio.iter_topic(self.src.path, self.src.camera_info_topic):
                infos[bagio.stamp_to_ns(msg.header.stamp)] = raw
        return infos

    def start_node(self) -> NodeProcess:
        """Start `python -m dpt_ros.node` for this replay; its log goes to <output>/node.log."""
        params_file = self.args.params_file or default_params_file()
        extra = [a for p in self.args.node_param for a in ('-p', p)]
        self.node = NodeProcess(params_file, node_overrides(self.args, self.topics.compressed),
                                remaps=self.topics.remaps(), extra_args=extra,
                                env=self.ros_env, log_path=self.out_dir / 'node.log')
        log.info('starting node: %s', ' '.join(self.node.cmd))
        return self.node

    def _plan_recording(self) -> Recorder:
        if not self.args.no_output_bag:
            self.writer = bagio.BagWriter(self.out_bag, self.args.output_storage, overwrite=True)
        rec = Recorder(self.writer)
        depth, color = self.topics.depth, self.topics.color
        rec.keep_payload[depth] = {fr.stamp_ns for fr in self.frames if fr.gt_depth is not None}
        # Strips need the node's own output for a few frames.
        plan = results.StripPlan(len(self.frames), self.args.strips)
        for fr in self.frames:
            if plan.wants(fr.index, fr.gt_depth is not None):
                plan.add('', None, fr.gt_depth is not None)
                self.strip_frames.append(fr)
        rec.keep_payload[depth] |= {fr.stamp_ns for fr in self.strip_frames}
        rec.keep_payload[color] |= {fr.stamp_ns for fr in self.strip_frames}
        return rec

    def run(self) -> 'ReplaySession':
        """Do the replay (start the node if asked); the node and the graph are closed after."""
        if self.args.start_node:
            self.start_node()
        graph = None
        try:
            self.recorder = self._plan_recording()
            graph = RecorderNode(self.recorder, self.ros_env)
            graph.subscribe(self.topics.outputs(color=not self.args.no_color))
            pubs = _Publishers(graph.node, self.topics, bool(self.infos))
            graph.start()
            self._wait_connected(pubs.image, graph.subs[0])
            drain_s = self._warm_up(pubs)
            self._play(pubs)
            self.recorder.wait_for(self.topics.depth, self.pub_times.keys(), drain_s)
        finally:
            if graph is not None:
                graph.close()
            self.node_rc = self.node.shutdown() if self.node is not None else None
            if self.writer is not None:
                self.writer.close()
        return self

    def _warm_up(self, pubs) -> float:
        """
        Send warm-up frames (stamps before the bag's first) one by one; return the drain time.

        The first inference allocates/compiles and would otherwise cost the first frames.
        """
        first, rec, wait_s = self.frames[0], self.recorder, self.args.wait_node_s
        for k in range(max(self.args.warmup, 0)):
            stamp = first.stamp_ns - (k + 1) * 1_000_000_000
            if pubs.info is not None and first.stamp_ns in self.infos:
                pubs.info.publish(with_stamp(self.infos[first.stamp_ns], stamp))
            w0 = time.perf_counter()
            pubs.image.publish(with_stamp(first.raw, stamp))
            if not rec.wait_for(self.topics.depth, [stamp], wait_s):
                raise EvalError(f'the node did not answer a warm-up frame on '
                                f'{self.topics.depth} within {wait_s:g} s' + self.node_tail())
            rec.warmup_rtt_s.append(time.perf_counter() - w0)
            if sum(rec.warmup_rtt_s) > WARMUP_BUDGET_S:
                break   # a model this slow drops frames at camera rates anyway
        # Frames still in the node's pipeline at the end need about one round trip each.
        return self.args.drain_s + IN_FLIGHT * max(rec.warmup_rtt_s, default=0.0)

    def _play(self, pubs) -> None:
        """Publish every frame at the recorded rate x --rate."""
        t0_bag = self.frames[0].bag_time_ns
        bar = progress(self.args.no_progress, len(self.frames), 'replay')
        self.t_start = time.perf_counter()
        for fr in self.frames:
            due = self.t_start + (fr.bag_time_ns - t0_bag) / 1e9 / self.args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)     # pacing to the recording's clock, not synchronisation
            if pubs.info is not None and fr.stamp_ns in self.infos:
                pubs.info.publish(self.infos[fr.stamp_ns])
            self.pub_times[fr.stamp_ns] = time.perf_counter()
            pubs.image.publish(fr.raw)
            bar.update(1)
            if self.node is not None and not self.node.alive():
                self.warnings.append('the node exited during the replay')
                break
        bar.close()
        self.t_end_pub = time.perf_counter()

    def node_tail(self) -> str:
        if self.node is None:
            return ''
        state = 'running' if self.node.alive() else f'exited with {self.node.returncode}'
        return f'\nthe node ({state}) logged:\n{self.node.tail()}'

    def _wait_connected(self, img_pub, depth_sub) -> None:
        """Wait (bounded) until the node subscribes to our images and publishes depth to us."""
        deadline = time.monotonic() + self.args.wait_node_s
        while time.monotonic() < deadline:
            if img_pub.get_subscription_count() > 0 and depth_sub.get_publisher_count() > 0:
                return
            if self.node is not None and not self.node.alive():
                raise EvalError('the node exited before the replay started' + self.node_tail())
            time.sleep(0.05)      # polling DDS discovery state; there is no event for it here
        missing = []
        if img_pub.get_subscription_count() == 0:
            missing.append(f'nobody subscribes to {self.topics.publish}')
        if depth_sub.get_publisher_count() == 0:
            missing.append(f'nobody publishes {self.topics.depth}')
        raise EvalError(f'no depth node found within {self.args.wait_node_s:g} s '
                        f'(ROS_DOMAIN_ID={self.ros_env.get("ROS_DOMAIN_ID", "0")}): '
                        + '; '.join(missing) + '. Start one (or pass --start-node), or set '
                        '--node-ns / --publish-topic to match it.' + self.node_tail())


class _Publishers:
    """The replay's image and camera_info publishers (RELIABLE, as the node subscribes)."""

    def __init__(self, node, topics: ReplayTopics, with_info: bool):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         history=HistoryPolicy.KEEP_LAST)
        self.image = node.create_publisher(CompressedImage if topics.compressed else Image,
                                           topics.publish, qos)
        self.info = (node.create_publisher(CameraInfo, topics.info, qos)
                     if with_info and topics.info else None)


def _import_ros() -> None:
    try:
        import rclpy  # noqa: F401
        from sensor_msgs.msg import CameraInfo  # noqa: F401
    except ImportError as err:
        raise EvalError(f'replay needs ROS 2 rclpy and sensor_msgs ({err}); use offline mode '
                        'or source a ROS 2 install') from None
