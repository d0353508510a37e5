"""
rosbag2 reading and writing for the sample-bag maker and bag_eval, through `rosbags`.

No rclpy: bags are read and written with the pure-Python `rosbags` library (mcap and sqlite3
storage), so evaluation works on machines without a ROS install. Every failure a person can
cause (a missing or corrupt bag, a topic that is not there, a topic of the wrong type, a bag
without frames) becomes a `BagError` whose message says what is wrong and what exists.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
import functools
import logging
from pathlib import Path
import shutil
from typing import Iterable, Iterator

from dpt_ros.errors import BagError, InvalidImage
from dpt_ros.ros import image_codec
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

log = logging.getLogger('dpt_ros.evaluation.bagio')

STORAGES = ('mcap', 'sqlite3')
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
DEPTH_ENCODINGS = ('32FC1', '16UC1', 'mono16')
# rosbag2 format version written: 8 is what Jazzy writes; Jazzy and later read it.
BAG_VERSION = 8


@functools.lru_cache(maxsize=1)
def typestore():
    """
    Return the message type store used to write bags (ROS 2 Kilted definitions).

    sensor_msgs/Image, CompressedImage and CameraInfo are identical from Humble to Kilted,
    so bags written with it read everywhere.
    """
    return get_typestore(Stores.ROS2_KILTED)


def _stamp(stamp_ns: int):
    t = typestore().types['builtin_interfaces/msg/Time']
    return t(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def header(stamp_ns: int, frame_id: str):
    """Return a rosbags std_msgs/Header."""
    return typestore().types['std_msgs/msg/Header'](stamp=_stamp(stamp_ns), frame_id=frame_id)


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time (rosbags or rclpy) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_msg(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    """Return a rosbags sensor_msgs/Image holding `array` (H, W[, C]) with the given encoding."""
    a = np.ascontiguousarray(array)
    h, w = a.shape[:2]
    return typestore().types[IMAGE_TYPE](
        header=header(stamp_ns, frame_id), height=h, width=w, encoding=encoding,
        is_bigendian=0, step=int(a.strides[0]),
        data=np.frombuffer(a.tobytes(), dtype=np.uint8))


def compressed_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str, fmt: str = 'jpeg'):
    """Return a rosbags CompressedImage of an RGB image (stored as BGR, as cv2 encodes)."""
    import cv2
    ok, buf = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png',
                           cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f'could not encode a {rgb.shape} image as {fmt}')
    return typestore().types[COMPRESSED_TYPE](
        header=header(stamp_ns, frame_id), format=f'bgr8; {fmt} compressed bgr8',
        data=np.asarray(buf, dtype=np.uint8).ravel())


def camera_info_msg(width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                    stamp_ns: int, frame_id: str):
    """Return a rosbags sensor_msgs/CameraInfo for an undistorted pinhole camera."""
    types = typestore().types
    k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64)
    p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64)
    roi = types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    return types[CAMERA_INFO_TYPE](
        header=header(stamp_ns, frame_id), height=int(height), width=int(width),
        distortion_model='plumb_bob', d=np.zeros(5), k=k, r=np.eye(3).ravel(), p=p,
        binning_x=0, binning_y=0, roi=roi)


class BagWriter:
    """
    Write a rosbag2 (mcap or sqlite3) with `rosbags`; a context manager.

    `write(topic, msgtype, t_ns, msg)` takes a rosbags message object; `write_raw` takes CDR
    bytes (e.g. received with an rclpy raw subscription). Connections are added on first use.
    """

    def __init__(self, path: str | Path, storage: str = 'mcap', overwrite: bool = False):
        if storage not in STORAGES:
            raise BagError('bad_storage', f'storage {storage!r} is not one of '
                           f'{", ".join(STORAGES)}')
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise BagError('exists', f'{self.path} exists already; remove it or pass '
                               '--overwrite')
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=plugin)
        self._writer.open()
        self._conns: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def _conn(self, topic: str, msgtype: str):
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._conns[topic] = conn
            self.counts[topic] = 0
        return conn

    def write(self, topic: str, msgtype: str, t_ns: int, msg) -> None:
        """Serialise a rosbags message and store it at bag time `t_ns`."""
        self.write_raw(topic, msgtype, t_ns, typestore().serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, t_ns: int, data: bytes | memoryview) -> None:
        """Store already serialised CDR bytes."""
        self._writer.write(self._conn(topic, msgtype), int(t_ns), data)
        self.counts[topic] += 1

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml). Safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class TopicSummary:
    """One topic of a bag."""

    name: str
    msgtype: str | None
    count: int


def resolve_bag_path(path: str | Path) -> Path:
    """Return the rosbag2 directory for a directory or a storage file inside one."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BagError('missing', f'bag {str(path)!r} does not exist')
    if p.is_file():
        if (p.parent / 'metadata.yaml').exists():
            return p.parent
        raise BagError('corrupt', f'{p} is a file without a rosbag2 metadata.yaml beside it; '
                       'pass the bag directory (recreate a lost metadata.yaml with '
                       '"ros2 bag reindex <dir>")')
    if not (p / 'metadata.yaml').exists():
        raise BagError('corrupt', f'{p} is not a rosbag2 directory (no metadata.yaml in it)')
    return p


@contextlib.contextmanager
def open_bag(path: str | Path):
    """
    Open a rosbag2 directory (mcap or sqlite3) with rosbags' AnyReader; BagError on failure.

    Yields the open AnyReader.
    """
    p = resolve_bag_path(path)
    try:
        reader = AnyReader([p], default_typestore=typestore())
        reader.open()
    except BagError:
        raise
    except Exception as err:  # rosbags, sqlite3, mcap and yaml errors all mean "unreadable"
        raise BagError('corrupt', f'cannot read bag {str(p)!r}: {err}') from None
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def list_topics(reader_or_path) -> dict[str, TopicSummary]:
    """Topics of an open reader (or a bag path): name -> TopicSummary."""
    if isinstance(reader_or_path, (str, Path)):
        with open_bag(reader_or_path) as reader:
            return list_topics(reader)
    return {name: TopicSummary(name, info.msgtype, int(info.msgcount))
            for name, info in reader_or_path.topics.items()}


def describe_topics(topics: dict[str, TopicSummary]) -> str:
    """One line per topic, for error messages."""
    if not topics:
        return '  (the bag has no topics)'
    return '\n'.join(f'  {t.name}  [{t.msgtype}]  {t.count} msgs' for t in topics.values())


def _looks_like_depth(name: str) -> bool:
    return 'depth' in name.lower() or 'disparity' in name.lower()


def detect_image_topic(topics: dict[str, TopicSummary]) -> str:
    """Return the camera image topic: the one Image/CompressedImage topic not named like depth."""
    cands = [t for t in topics.values() if t.msgtype in IMAGE_TYPES and t.count > 0]
    if len(cands) > 1:
        cands = [t for t in cands if not _looks_like_depth(t.name)] or cands
    if len(cands) == 1:
        return cands[0].name
    if not cands:
        raise BagError('no_topic', 'no sensor_msgs/Image or CompressedImage topic with '
                       'messages in the bag; topics:\n' + describe_topics(topics))
    raise BagError('ambiguous', 'several image topics; choose one with --image-topic:\n'
                   + describe_topics({t.name: t for t in cands}))


def detect_depth_topic(topics: dict[str, TopicSummary], image_topic: str) -> str | None:
    """Return a ground-truth depth topic: the one Image topic named like depth, else None."""
    cands = [t.name for t in topics.values()
             if t.msgtype == IMAGE_TYPE and t.name != image_topic and _looks_like_depth(t.name)
             and t.count > 0]
    return cands[0] if len(cands) == 1 else None


def check_topic(topics: dict[str, TopicSummary], name: str, allowed: Iterable[str],
                role: str) -> TopicSummary:
    """Return the named topic, or raise a BagError naming the topics / types there are."""
    allowed = tuple(allowed)
    t = topics.get(name)
    if t is None:
        raise BagError('no_topic', f'{role} topic {name!r} is not in the bag; topics:\n'
                       + describe_topics(topics))
    if t.msgtype not in allowed:
        raise BagError('wrong_type', f'{role} topic {name!r} carries {t.msgtype}, expected '
                       + ' or '.join(allowed))
    if t.count == 0:
        raise BagError('no_frames', f'{role} topic {name!r} has no messages')
    return t


def decode_depth(msg) -> np.ndarray:
    """
    Return a depth Image message -> (H, W) float32 metres, NaN = unknown.

    32FC1 is metres (REP 118); 16UC1/mono16 is millimetres with 0 = unknown.
    """
    return _bag_reason(image_codec.decode_depth_m, msg)


def decode_float_image(msg) -> np.ndarray:
    """Convert a 32FC1 / 16UC1 / mono16 Image to (H, W) float32 as is (16-bit: mm -> m)."""
    return _bag_reason(image_codec.decode_float_image, msg)


def _bag_reason(decode, msg) -> np.ndarray:
    try:
        return decode(msg)
    except InvalidImage as err:
        # Bag reports have always counted short depth data (gt_unusable) as size_mismatch.
        if err.reason != 'truncated':
            raise
        raise InvalidImage('size_mismatch', str(err)) from None


def decode_rgb(msg, msgtype: str) -> np.ndarray:
    """Decode an Image/CompressedImage message to (H, W, 3) uint8 RGB (dpt_ros.ros.image_codec)."""
    if msgtype == COMPRESSED_TYPE:
        return image_codec.decode_compressed(msg)
    return image_codec.decode_image(msg)


@dataclass
class Frame:
    """One camera frame from a bag, with its ground truth when the bag has some."""

    index: int                 # 0-based position among the image topic's messages
    stamp_ns: int              # header stamp
    bag_time_ns: int           # recording time
    frame_id: str
    msgtype: str
    raw: bytes                 # the CDR bytes as recorded (replay publishes these)
    msg: object                # the rosbags message
    gt_depth: np.ndarray | None = None  # (H, W) float32 metres, NaN unknown
    _rgb: np.ndarray | None = field(default=None, repr=False)

    def rgb(self) -> np.ndarray:
        """Return the decoded RGB uint8 (cached); raise InvalidImage if undecodable."""
        if self._rgb is None:
            self._rgb = decode_rgb(self.msg, self.msgtype)
        return self._rgb


@dataclass
class BagSource:
    """What `open_frames` found: topics chosen, counts, and the frame iterator."""

    path: Path
    storage: str
    topics: dict[str, TopicSummary]
    image_topic: str
    image_type: str
    gt_topic: str | None
    camera_info_topic: str | None
    frame_count: int
    gt_count: int
    start_ns: int
    duration_ns: int
    bad_gt: dict[str, int] = field(default_factory=dict)


def inspect_bag(path: str | Path, image_topic: str | None = None,
                gt_topic: str | None = 'auto') -> BagSource:
    """
    Open a bag and choose its topics; BagError for every way it can be unusable.

    :param image_topic: None = auto-detect (the single image topic not named like depth).
    :param gt_topic: 'auto' = the single Image topic named like depth, if any; None/'' = none;
        otherwise that topic (must exist and be sensor_msgs/Image).
    """
    with open_bag(path) as reader:
        topics = list_topics(reader)
        if not topics or reader.message_count == 0:
            raise BagError('no_frames', f'bag {str(path)!r} has no messages')
        if image_topic:
            t = check_topic(topics, image_topic, IMAGE_TYPES, 'image')
        else:
            t = topics[detect_image_topic(topics)]
        if gt_topic == 'auto':
            gt = detect_depth_topic(topics, t.name)
        elif gt_topic:
            gt = check_topic(topics, gt_topic, (IMAGE_TYPE,), 'ground-truth depth').name
        else:
            gt = None
        info_cands = [x.name for x in topics.values() if x.msgtype == CAMERA_INFO_TYPE]
        base = t.name.rsplit('/', 1)[0]
        cam_info = next((n for n in info_cands if n == base + '/camera_info'),
                        info_cands[0] if len(info_cands) == 1 else None)
        p = resolve_bag_path(path)
        return BagSource(path=p, storage=_storage_of(p), topics=topics,
                         image_topic=t.name, image_type=t.msgtype, gt_topic=gt,
                         camera_info_topic=cam_info, frame_count=t.count,
                         gt_count=topics[gt].count if gt else 0,
                         start_ns=int(reader.start_time), duration_ns=int(reader.duration))


def _storage_of(path: Path) -> str:
    if any(path.glob('*.mcap')):
        return 'mcap'
    if any(path.glob('*.db3')):
        return 'sqlite3'
    return 'unknown'


def iter_frames(src: BagSource, decode_gt: bool = True) -> Iterator[Frame]:
    """
    Yield the frames of the image topic in recording order, each with its ground truth.

    Ground truth is matched by header stamp, when the bag has a ground-truth topic.

    Ground truth is gathered in a first pass (kept as CDR bytes, decoded per frame) so it may
    be recorded before or after its image. Undecodable ground truth is counted in
    `src.bad_gt` and the frame comes without it.
    """
    with open_bag(src.path) as reader:
        conns = {c.topic: [] for c in reader.connections}
        for c in reader.connections:
            conns[c.topic].append(c)
        gt_raw: dict[int, tuple[bytes, str]] = {}
        if src.gt_topic and decode_gt:
            for conn, _, raw in reader.messages(connections=conns[src.gt_topic]):
                msg = _deserialize(reader, raw, conn.msgtype)
                gt_raw[stamp_to_ns(msg.header.stamp)] = (raw, conn.msgtype)
        for i, (conn, t_ns, raw) in enumerate(
                reader.messages(connections=conns[src.image_topic])):
            msg = _deserialize(reader, raw, conn.msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
            gt = None
            if stamp in gt_raw:
                graw, gtype = gt_raw.pop(stamp)
                try:
                    gt = decode_depth(_deserialize(reader, graw, gtype))
                except InvalidImage as err:
                    src.bad_gt[err.reason] = src.bad_gt.get(err.reason, 0) + 1
                    log.warning('ground truth at stamp %d unusable: %s', stamp, err)
            yield Frame(index=i, stamp_ns=stamp, bag_time_ns=int(t_ns),
                        frame_id=str(msg.header.frame_id), msgtype=conn.msgtype,
                        raw=bytes(raw), msg=msg, gt_depth=gt)


def iter_topic(src_path: str | Path, topic: str) -> Iterator[tuple[int, str, bytes, object]]:
    """(bag_time_ns, msgtype, raw CDR, rosbags message) of one topic, in recording order."""
    with open_bag(src_path) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise BagError('no_topic', f'topic {topic!r} is not in the bag; topics:\n'
                           + describe_topics(list_topics(reader)))
        for conn, t_ns, raw in reader.messages(connections=conns):
            yield int(t_ns), conn.msgtype, bytes(raw), _deserialize(reader, raw, conn.msgtype)


def _deserialize(reader, raw, msgtype: str):
    try:
        return reader.deserialize(raw, msgtype)
    except Exception as err:
        raise BagError('corrupt', f'a {msgtype} message cannot be decoded: {err}') from None
