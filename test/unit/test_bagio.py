"""bagio: topic detection, ground-truth decoding, and a clear BagError for each bad input."""
from dpt_ros.errors import InvalidImage
from dpt_ros.evaluation import bagio
from dpt_ros.evaluation.sample_bag import make_sample_bag
import numpy as np
import pytest

T0 = 1_000_000_000


@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp('bags') / 'sample'
    make_sample_bag(path, frames=5, size=(64, 48))
    return path


def _bag(path, topics, storage='mcap'):
    """Write a bag from {topic: [(msgtype, msg), ...]} with 1 ms between messages."""
    with bagio.BagWriter(path, storage) as w:
        for topic, msgs in topics.items():
            for i, (msgtype, msg) in enumerate(msgs):
                w.write(topic, msgtype, T0 + i * 1_000_000, msg)
    return path


def test_missing_bag(tmp_path):
    with pytest.raises(bagio.BagError, match='does not exist') as e:
        bagio.inspect_bag(tmp_path / 'nope')
    assert e.value.reason == 'missing'


def test_not_a_bag_and_corrupt(tmp_path, sample):
    (tmp_path / 'plain').mkdir()
    with pytest.raises(bagio.BagError, match='no metadata.yaml') as e:
        bagio.inspect_bag(tmp_path / 'plain')
    assert e.value.reason == 'corrupt'
    lone = tmp_path / 'lone.mcap'
    lone.write_bytes(b'\x89MCAP0\r\n')
    with pytest.raises(bagio.BagError, match='without a rosbag2 metadata.yaml'):
        bagio.inspect_bag(lone)
    broken = tmp_path / 'broken'
    broken.mkdir()
    meta = (sample / 'metadata.yaml').read_text()
    (broken / 'metadata.yaml').write_text(meta)
    (broken / 'sample_0.mcap').write_bytes(b'this is not an mcap file at all' * 10)
    with pytest.raises(bagio.BagError, match='cannot read bag') as e:
        bagio.inspect_bag(broken)
    assert e.value.reason == 'corrupt'
    garbled = tmp_path / 'garbled'
    garbled.mkdir()
    (garbled / 'metadata.yaml').write_text('rosbag2_bagfile_information: [unclosed')
    with pytest.raises(bagio.BagError, match='cannot read bag'):
        bagio.inspect_bag(garbled)


def test_storage_file_inside_bag_dir_is_accepted(sample):
    (mcap,) = sample.glob('*.mcap')
    assert bagio.inspect_bag(mcap).path == sample


def test_missing_topic_lists_the_topics(sample):
    with pytest.raises(bagio.BagError) as e:
        bagio.inspect_bag(sample, image_topic='/front/image')
    assert e.value.reason == 'no_topic'
    msg = str(e.value)
    assert "'/front/image'" in msg
    for t in ('/camera/image_raw', '/camera/camera_info', '/camera/depth_gt'):
        assert t in msg
    with pytest.raises(bagio.BagError, match='/camera/image_raw') as e:
        bagio.inspect_bag(sample, gt_topic='/lidar/depth')
    assert e.value.reason == 'no_topic'


def test_wrong_type(sample):
    with pytest.raises(bagio.BagError, match='CameraInfo, expected sensor_msgs/msg/Image') as e:
        bagio.inspect_bag(sample, image_topic='/camera/camera_info')
    assert e.value.reason == 'wrong_type'


def test_no_image_topic_and_zero_frames(tmp_path):
    ts = bagio.typestore()
    s = ts.types['std_msgs/msg/String'](data='hello')
    path = _bag(tmp_path / 'strings', {'/chatter': [('std_msgs/msg/String', s)]})
    with pytest.raises(bagio.BagError, match='no sensor_msgs/Image') as e:
        bagio.inspect_bag(path)
    assert e.value.reason == 'no_topic' and '/chatter' in str(e.value)
    empty = tmp_path / 'empty'
    with bagio.BagWriter(empty, 'sqlite3'):
        pass
    with pytest.raises(bagio.BagError, match='no messages') as e:
        bagio.inspect_bag(empty)
    assert e.value.reason == 'no_frames'


def test_ambiguous_image_topics(tmp_path):
    img = bagio.image_msg(np.zeros((4, 4, 3), np.uint8), 'rgb8', T0, 'cam')
    path = _bag(tmp_path / 'two', {'/left/image': [(bagio.IMAGE_TYPE, img)],
                                   '/right/image': [(bagio.IMAGE_TYPE, img)]})
    with pytest.raises(bagio.BagError, match='--image-topic') as e:
        bagio.inspect_bag(path)
    assert e.value.reason == 'ambiguous'
    assert bagio.inspect_bag(path, image_topic='/right/image').image_topic == '/right/image'


def test_16uc1_ground_truth_and_bad_gt(tmp_path):
    rgb = np.full((4, 6, 3), 100, np.uint8)
    mm = np.arange(24, dtype=np.uint16).reshape(4, 6) * 250      # 0 = unknown
    frames = [(bagio.IMAGE_TYPE, bagio.image_msg(rgb, 'rgb8', T0 + k, 'cam')) for k in range(3)]
    gts = [(bagio.IMAGE_TYPE, bagio.image_msg(mm, '16UC1', T0 + 0, 'cam')),
           (bagio.IMAGE_TYPE, bagio.image_msg(rgb, 'rgb8', T0 + 2, 'cam'))]
    path = _bag(tmp_path / 'mm', {'/cam/image': frames, '/cam/depth': gts}, 'sqlite3')
    src = bagio.inspect_bag(path)
    assert src.image_topic == '/cam/image' and src.gt_topic == '/cam/depth'
    out = list(bagio.iter_frames(src))
    assert len(out) == 3
    gt = out[0].gt_depth
    assert np.isnan(gt[0, 0])
    np.testing.assert_allclose(gt.ravel()[1:], mm.ravel()[1:] / 1000.0, rtol=1e-6)
    assert out[1].gt_depth is None
    assert out[2].gt_depth is None and src.bad_gt == {'unknown_encoding': 1}
    assert bagio.inspect_bag(path, gt_topic='').gt_topic is None


def test_decode_depth_rejects_short_data():
    m = bagio.image_msg(np.ones((4, 4), np.float32), '32FC1', T0, 'cam')
    m.data = m.data[:10]
    with pytest.raises(InvalidImage) as e:
        bagio.decode_depth(m)
    assert e.value.reason == 'size_mismatch'


def test_writer_refuses_existing_and_bad_storage(tmp_path, sample):
    with pytest.raises(bagio.BagError, match='exists already') as e:
        bagio.BagWriter(sample)
    assert e.value.reason == 'exists'
    with pytest.raises(bagio.BagError, match='not one of'):
        bagio.BagWriter(tmp_path / 'z', storage='rosbag1')
