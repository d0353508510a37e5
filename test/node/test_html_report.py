"""Report pieces: FPS binning, charts that always decode, strict JSON, the random banner."""
import json
import os

import cv2
from dpt_ros.evaluation import html_report as report
import numpy as np
import pytest


def test_fps_series_bins_arrivals():
    t, f = report.fps_series([0.1, 0.2, 0.3, 1.5, 2.7], origin=0.0)
    assert t == [0.5, 1.5, 2.5] and f == [3.0, 1.0, 1.0]
    t, f = report.fps_series([10.0, 10.5, 11.2])           # from the first arrival
    assert t == [0.5, 1.5] and f == [2.0, 1.0]
    assert report.fps_series([]) == ([], [])


def test_latency_chart_is_a_histogram_of_the_finite_latencies_with_percentiles():
    fig = report.latency_figure([5.0, 6.0, 7.5, 30.0, float('nan'), None])
    assert fig['data'][0]['type'] == 'histogram'
    assert fig['data'][0]['x'] == [5.0, 6.0, 7.5, 30.0]
    assert '(4 frames)' in fig['layout']['title']['text']
    marks = [shape['x0'] for shape in fig['layout']['shapes']]
    assert marks == pytest.approx([float(np.percentile([5, 6, 7.5, 30], q))
                                   for q in (50, 95, 99)])
    assert [a['text'] for a in fig['layout']['annotations']] == ['p50', 'p95', 'p99']


def test_fps_chart_marks_the_input_rate_and_both_charts_say_when_there_is_no_data():
    fig = report.fps_figure([0.5, 1.5], [30, 29], target=30)
    assert (fig['data'][0]['x'], fig['data'][0]['y']) == ([0.5, 1.5], [30.0, 29.0])
    assert fig['layout']['shapes'][0]['y0'] == 30
    assert fig['layout']['annotations'][0]['text'] == 'input 30 Hz'
    for empty in (report.latency_figure([]), report.fps_figure([], [])):
        assert empty['data'] == [] and empty['layout']['annotations'][0]['text'] == 'no data'


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
    assert set(data['report_files']) == {'json', 'html', 'strips'}
    # Self-contained: plotly.js inline, both charts drawn by it, nothing fetched.
    assert html.count('* plotly.js v') == 1 and '<script src=' not in html
    assert html.count('Plotly.newPlot(') == 2
    assert not (tmp_path / 'a' / 'latency.png').exists()
    paths = report.write_report(tmp_path / 'b', dict(res, weights_random=True), [])
    assert 'WEIGHTS ARE RANDOM' in open(paths['html']).read()


def test_the_report_draws_its_charts_in_a_browser_without_network(tmp_path):
    from support.view import browser_missing, chromium
    missing = browser_missing()
    if missing and os.environ.get('DPT_ROS_BROWSER_REQUIRED') == '1':
        pytest.fail(f'the browser tests are required here: {missing}')
    if missing:
        pytest.skip(missing)
    paths = report.write_report(tmp_path, {'title': 't'}, [], [4.0, 5.0, 9.0], [0.2, 0.6, 1.4],
                                target_fps=2.0)
    fetched = []
    with chromium() as browser:
        page = browser.new_page()
        page.route('**/*', lambda route: (fetched.append(route.request.url), route.abort())
                   if not route.request.url.startswith('file:') else route.continue_())
        page.goto('file://' + paths['html'])
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg')"
                               '.length >= 4', timeout=30000)
        drawn = page.evaluate("""() => ['latency', 'fps'].map(id => {
            const el = document.getElementById(id);
            return {n: el.data[0].x.length, bars: el.querySelectorAll('.bars path').length,
                    points: el.querySelectorAll('.scatterlayer .point').length};
        })""")
    assert fetched == []
    assert drawn[0]['n'] == 3 and drawn[0]['bars'] >= 1
    assert drawn[1]['n'] == 2 and drawn[1]['points'] == 2
