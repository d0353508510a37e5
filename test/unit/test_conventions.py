"""perf/conventions.py: greenwave_monitor's and ros2_benchmark's figures from known times."""
import math

from dpt_ros.perf import conventions
from dpt_ros.perf.conventions import benchmark_metrics, greenwave_values, TopicTimes
import pytest

MS = 1_000_000
P = conventions.BENCHMARK_PREFIX


def test_rates_are_means_over_the_last_window_of_interarrivals():
    t = TopicTimes(window=4)
    assert t.values() == {'frame_rate_node': 0.0, 'frame_rate_msg': 0.0,
                          'current_delay_from_realtime_ms': 'N/A'}
    t.add(0, 5 * MS)
    assert t.values()['frame_rate_node'] == 0.0          # one message: no interarrival yet
    assert t.values()['current_delay_from_realtime_ms'] == 5.0
    # Stamps 50 ms apart; published 100 ms apart, then four at 25 ms: the window of 4 gaps
    # forgets the 100 ms ones.
    pub = [5, 105, 205, 230, 255, 280, 305]
    for k, p in enumerate(pub[1:], start=1):
        t.add(k * 50 * MS, p * MS)
    v = t.values()
    assert v['frame_rate_node'] == pytest.approx(40.0)     # 25 ms gaps
    assert v['frame_rate_msg'] == pytest.approx(20.0)      # 50 ms gaps
    assert v['current_delay_from_realtime_ms'] == pytest.approx(5.0)   # 305 - 300
    assert t.messages == 7


def test_delay_is_na_when_negative_or_beyond_a_year_as_greenwave_has_it():
    t = TopicTimes()
    t.add(10 * MS, 9 * MS)            # stamped after it was published: another clock
    assert t.values()['current_delay_from_realtime_ms'] == 'N/A'
    t.add(0, 400 * 24 * 3600 * 1000 * MS)   # stamp 0 = unknown: 400 days
    assert t.values()['current_delay_from_realtime_ms'] == 'N/A'
    t.add(1000 * MS, 1250 * MS)
    assert t.values()['current_delay_from_realtime_ms'] == pytest.approx(250.0)


def test_greenwave_values_of_a_camera():
    t = TopicTimes()
    for k in range(3):
        t.add(k * 200 * MS, k * 200 * MS + 30 * MS)
    counts = {'frames_received': 12, 'frames_processed': 3, 'frames_dropped': 6,
              'frames_rejected': 2, 'frames_failed': 1, 'in_pipeline': 0}
    v = greenwave_values(t, 30.0, counts)
    assert list(v) == list(conventions.GREENWAVE_KEYS)
    assert v['frame_rate_node'] == pytest.approx(5.0) and v['frame_rate_msg'] == \
        pytest.approx(5.0)
    assert v['current_delay_from_realtime_ms'] == pytest.approx(30.0)
    assert (v['expected_frequency'], v['tolerance'], v['total_dropped_frames']) == (30.0, 0.0, 9)
    none = greenwave_values(None, float('nan'), {})
    assert none['expected_frequency'] == 0.0 and none['current_delay_from_realtime_ms'] == 'N/A'


def test_benchmark_metrics_match_ros2_benchmark_on_a_known_run():
    # Sent every 100 ms from t=0: 5 frames (keys = stamps). Frame 300 never arrives; the rest
    # arrive 40, 60, 50, 70 ms after they were sent.
    sent = {k * 100 * MS: k * 100 * MS for k in range(5)}
    received = {0: 40 * MS, 100 * MS: 160 * MS, 200 * MS: 250 * MS, 400 * MS: 470 * MS}
    m = benchmark_metrics(sent, received)
    assert m[P + 'NUM_FRAMES_SENT'] == 5 and m[P + 'NUM_MISSED_FRAMES'] == 1
    assert m[P + 'RECEIVED_DURATION'] == pytest.approx(430.0)
    assert m[P + 'MEAN_PLAYBACK_FRAME_RATE'] == pytest.approx(5 / 0.4)   # count / span
    assert m[P + 'MEAN_FRAME_RATE'] == pytest.approx(4 / 0.43)
    assert m[P + 'FIRST_SENT_RECEIVED_LATENCY'] == pytest.approx(40.0)
    assert m[P + 'LAST_SENT_RECEIVED_LATENCY'] == pytest.approx(70.0)
    assert (m[P + 'FIRST_INPUT_LATENCY'], m[P + 'LAST_INPUT_LATENCY']) == \
        pytest.approx((40.0, 70.0))
    assert (m[P + 'MIN_LATENCY'], m[P + 'MAX_LATENCY'], m[P + 'MEAN_LATENCY']) == \
        pytest.approx((40.0, 70.0, 55.0))
    # Receive gaps 120, 90, 220 ms: jitter |90-120| = 30, |220-90| = 130.
    assert (m[P + 'MIN_JITTER'], m[P + 'MAX_JITTER'], m[P + 'MEAN_JITTER']) == \
        pytest.approx((30.0, 130.0, 80.0))
    assert m[P + 'STD_DEV_JITTER'] == pytest.approx(50.0)
    # Every member of ros2_benchmark's BasicPerformanceMetrics enum, nothing else.
    assert set(m) == {P + k for k in (
        'RECEIVED_DURATION', 'MEAN_PLAYBACK_FRAME_RATE', 'MEAN_FRAME_RATE', 'NUM_MISSED_FRAMES',
        'NUM_FRAMES_SENT', 'FIRST_SENT_RECEIVED_LATENCY', 'LAST_SENT_RECEIVED_LATENCY',
        'FIRST_INPUT_LATENCY', 'LAST_INPUT_LATENCY', 'MAX_LATENCY', 'MIN_LATENCY',
        'MEAN_LATENCY', 'MAX_JITTER', 'MIN_JITTER', 'MEAN_JITTER', 'STD_DEV_JITTER')}


def test_benchmark_metrics_leave_out_what_they_cannot_compute():
    assert benchmark_metrics({}, {}) == {}
    m = benchmark_metrics({0: 0}, {0: 5 * MS})
    assert m == {P + 'RECEIVED_DURATION': 0.0, P + 'FIRST_INPUT_LATENCY': 5.0,
                 P + 'LAST_INPUT_LATENCY': 5.0, P + 'MAX_LATENCY': 5.0,
                 P + 'MIN_LATENCY': 5.0, P + 'MEAN_LATENCY': 5.0}
    assert not any(math.isnan(v) for v in m.values())
