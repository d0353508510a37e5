"""Sample bags: written with rosbags in both storage formats and read back field by field."""
from dpt_ros.evaluation import bagio, sample_bag
from dpt_ros.evaluation.sample_bag import (CAMERA_INFO_TOPIC, DEPTH_GT_TOPIC, IMAGE_TOPIC,
                                           make_sample_bag, motorcycle_depth_m, START_NS)
import numpy as np
import pytest
import skimage.data


def test_motorcycle_depth_formula_and_invalid_pixels():
    disp = np.array([[0.0, 64.0, np.inf, -31.086, np.nan]], np.float32)
    z = motorcycle_depth_m(disp)
    # Z = f B / (d + doffs), mm -> m
    assert z[0, 0] == pytest.approx(994.978 * 193.001 / 31.086 / 1000, rel=1e-6)
    assert z[0, 1] == pytest.approx(994.978 * 193.001 / (64.0 + 31.086) / 1000, rel=1e-6)
    assert np.isnan(z[0, 2:]).all()
    _, _, real = skimage.data.stereo_motorcycle()
    zr = motorcycle_depth_m(real)
    assert np.isnan(zr).sum() == (~np.isfinite(real)).sum() > 0
    assert 1.5 < np.nanmin(zr) < np.nanmax(zr) < 6.0     # a motorcycle a few metres away


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_round_trip(tmp_path, storage):
    path = tmp_path / f'bag_{storage}'
    info = make_sample_bag(path, storage=storage, frames=7, rate_hz=30.0)
    assert info.frames == 7 and info.gt_frames == 1    # motorcycle is the 5th picture
    src = bagio.inspect_bag(path)
    assert src.storage == storage
    assert src.image_topic == IMAGE_TOPIC and src.gt_topic == DEPTH_GT_TOPIC
    assert src.camera_info_topic == CAMERA_INFO_TOPIC
    assert src.frame_count == 7 and src.gt_count == 1
    frames = list(bagio.iter_frames(src))
    assert [f.index for f in frames] == list(range(7))
    stamps = np.array([f.stamp_ns for f in frames])
    assert stamps[0] == START_NS
    np.testing.assert_allclose(np.diff(stamps), 1e9 / 30.0, atol=1)
    assert all(f.bag_time_ns == f.stamp_ns for f in frames)
    # Pixels survive exactly: frame 0 is astronaut resized, frame 5 cycles back to it.
    rgb0 = frames[0].rgb()
    assert rgb0.shape == (480, 640, 3) and rgb0.dtype == np.uint8
    np.testing.assert_array_equal(rgb0, frames[5].rgb())
    assert abs(rgb0.astype(float).mean() - skimage.data.astronaut().mean()) < 3
    gt_frames = [f for f in frames if f.gt_depth is not None]
    assert [f.index for f in gt_frames] == [4]
    gt = gt_frames[0].gt_depth
    assert gt.shape == (480, 640) and gt.dtype == np.float32
    expect = motorcycle_depth_m(skimage.data.stereo_motorcycle()[2])
    # Nearest resize picks existing values only: every GT value is one of the originals.
    assert np.isin(gt[np.isfinite(gt)], expect[np.isfinite(expect)]).all()
    assert 0.02 < np.isnan(gt).mean() < 0.2
    infos = list(bagio.iter_topic(path, CAMERA_INFO_TOPIC))
    assert len(infos) == 7
    _, _, _, ci = infos[4]
    assert (ci.width, ci.height) == (640, 480)
    assert ci.k[0] == pytest.approx(994.978 * 640 / 741)
    assert bagio.stamp_to_ns(ci.header.stamp) == frames[4].stamp_ns


def test_native_size_compressed_and_cli(tmp_path, capsys):
    path = tmp_path / 'c'
    rc = sample_bag.main([str(path), '--size', 'native', '--compressed', '--frames', '2',
                          '--sources', 'coffee,rocket', '--rate', '10', '--storage', 'sqlite3'])
    assert rc == 0
    assert 'wrote' in capsys.readouterr().out
    src = bagio.inspect_bag(path)
    assert src.image_type == bagio.COMPRESSED_TYPE and src.gt_topic is None
    frames = list(bagio.iter_frames(src))
    assert frames[0].rgb().shape == skimage.data.coffee().shape
    assert frames[1].rgb().shape == skimage.data.rocket().shape
    assert frames[1].stamp_ns - frames[0].stamp_ns == 100_000_000
    # JPEG is lossy; the picture is still the same one.
    assert np.abs(frames[0].rgb().astype(int) - skimage.data.coffee()).mean() < 4


def test_cli_bad_input(tmp_path, capsys):
    assert sample_bag.main([str(tmp_path / 'x'), '--sources', 'lena']) == 1
    assert 'unknown picture' in capsys.readouterr().err
    assert sample_bag.main([str(tmp_path / 'x'), '--frames', '0']) == 1
    assert 'frames must be > 0' in capsys.readouterr().err
    (tmp_path / 'exists').mkdir()
    assert sample_bag.main([str(tmp_path / 'exists')]) == 1
    assert 'exists already' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sample_bag.main([str(tmp_path / 'y'), '--size', '640by480'])
