"""Report pieces: FPS binning, charts that always decode, strict JSON, the random banner."""
import json

import cv2
from dpt_ros.evaluation import html_report as report
import numpy as np


def test_fps_series_bins_arrivals():
    t, f = report.fps_series([0.1, 0.2, 0.3, 1.5, 2.7], origin=0.0)
    assert t == [0.5, 1.5, 2.5] and f == [3.0, 1.0, 1.0]
    t, f = report.fps_series([10.0, 10.5, 11.2])           # from the first arrival
    assert t == [0.5, 1.5] and f == [2.0, 1.0]
    assert report.fps_series([]) == ([], [])


def test_charts_with_and_without_data():
    for img in (report.latency_histogram([5.0, 6.0, 7.5, 30.0]), report.latency_histogram([]),
                report.latency_histogram([4.0, 4.0]),
                report.fps_chart([0.5, 1.5], [30, 29], target=30),
                report.fps_chart([], [])):
        assert img.shape == (360, 720, 3) and img.dtype == np.uint8
        assert (img < 250).any()       # something was drawn


def test_strip_panels():
    rgb = np.zeros((60, 80, 3), np.uint8)
    color = np.zeros((60, 80, 3), np.uint8)
    two = report.frame_strip(rgb, color)
    gt = np.full((60, 80), 2.0, np.float32)
    gt[:5] = np.nan
    four = report.frame_strip(rgb, color, gt, np.zeros((60, 80), np.float32))
    assert two.shape[0] == four.shape[0] == report.STRIP_HEIGHT + 24
    assert four.shape[1] > 1.9 * two.shape[1]


def test_write_report_json_is_strict_and_banner_follows_weights(tmp_path):
    res = {'title': 't', 'weights_random': False, 'summary': {'x': float('nan'), 'y': 1.5},
           'throughput': {'latency_ms_p50': float('inf')}}
    paths = report.write_report(tmp_path / 'a', res, [('cap', np.zeros((10, 10, 3), np.uint8))],
                                [1.0, 2.0], [0.1, 0.2])
    text = open(paths['json']).read()
    assert 'NaN' not in text and 'Infinity' not in text
    data = json.loads(text)
    assert data['summary']['x'] is None and data['throughput']['latency_ms_p50'] is None
    html = open(paths['html']).read()
    assert 'WEIGHTS ARE RANDOM' not in html and 'cap' in html
    assert cv2.imread(paths['strips'][0]) is not None
    paths = report.write_report(tmp_path / 'b', dict(res, weights_random=True), [])
    assert 'WEIGHTS ARE RANDOM' in open(paths['html']).read()
