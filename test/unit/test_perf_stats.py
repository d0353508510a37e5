"""PerfStats / RollingRate / percentile (dpt_ros.perf.stats)."""
import math
import threading

from dpt_ros.perf.stats import FALLBACK_KEYS, percentile, PerfStats, RollingRate, STAGES
import numpy as np


def test_percentile_known_values_and_empty():
    vals = list(range(1, 101))
    assert percentile(vals, 50) == np.percentile(vals, 50)
    assert percentile(vals, 95) == np.percentile(vals, 95)
    assert math.isnan(percentile([], 50))


def test_rolling_rate_with_explicit_clock():
    r = RollingRate(window_s=2.0)
    for i in range(11):
        r.tick(now=100.0 + 0.1 * i)            # 10 intervals over 1 s
    assert abs(r.rate(now=101.0) - 10.0) < 1e-9
    assert r.rate(now=110.0) == 0.0            # everything aged out of the window
    assert RollingRate().rate() == 0.0


def test_stages_latency_and_snapshot():
    p = PerfStats()
    for ms in (10.0, 20.0, 30.0):
        p.add_stage('inference', ms)
    with p.stage('preprocess'):
        pass
    for lat in range(1, 101):
        p.frame_done(float(lat))
    snap = p.snapshot()
    assert snap['inference_ms'] == 20.0
    assert snap['preprocess_ms'] >= 0.0
    assert math.isnan(snap['decode_ms'])
    assert snap['latency_ms_p50'] == np.percentile(range(1, 101), 50)
    assert snap['latency_ms_p95'] == np.percentile(range(1, 101), 95)
    assert snap['frames_processed'] == 100
    for s in STAGES:
        assert f'{s}_ms' in snap
    for k in FALLBACK_KEYS:
        assert snap[k] == 0
    assert math.isnan(snap['device_fps'])
    p.add_device_ms(50.0)
    assert abs(p.snapshot()['device_fps'] - 20.0) < 1e-9


def test_counters_reasons_and_merge():
    p = PerfStats()
    p.count('backend_fallback_count', reason='No chips detected')
    p.count('invalid_image_count', 2, reason='bad_shape')
    p.merge_counts({'program_config_fallback_total': 3})
    p.merge_counts({'program_config_fallback_total': 5})   # absolute, not added
    snap = p.snapshot()
    assert snap['backend_fallback_count'] == 1
    assert snap['invalid_image_count'] == 2
    assert snap['program_config_fallback_total'] == 5
    assert snap['reasons'] == {'backend_fallback_count:No chips detected': 1,
                               'invalid_image_count:bad_shape': 2}


def test_thread_safe_counting():
    p = PerfStats(window=10000)
    n_threads, n = 4, 2000
    start = threading.Barrier(n_threads)

    def work():
        start.wait()
        for i in range(n):
            p.count('x')
            p.add_stage('inference', 1.0)
            p.frame_done(float(i))

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    snap = p.snapshot()
    assert snap['x'] == n_threads * n
    assert snap['frames_processed'] == n_threads * n
    assert snap['inference_ms'] == 1.0
