"""
Load and soak through the real node (rclpy + Fast DDS on loopback, node subprocess).

Load: a camera publishing 320x240 rgb8 at 2x and 10x the rate of a 300 ms backend (the
`fault_ok` double with a fixed delay) for LOAD_S seconds. CI runs 12 s per rate; the full
60 s runs are bench/bench_stress.py's job. What must hold:

  - counts reconcile exactly (received = processed + dropped + rejected + failed) and the
    only drops are stale frames; the backend is kept busy;
  - memory stays flat (RSS growth after warm-up < 50 MB), threads and fds do not grow;
  - outputs stay in stamp order, never more than two frames wait per camera;
  - latency p99 (header stamp -> publish) < 2 x backend time + 20 ms (finding R2: before
    2f375b2 a frame prepared during inference waited behind it, ~2 x backend + one period).

Soak: SOAK_FRAMES frames through the real torch backend with the tiny-random model, one at a
time; RSS, threads and open fds must not grow after warm-up (bench: 10,000 frames).
"""
from __future__ import annotations

import pytest
from support.reliability import ERROR, no_crash_signs, reconciles, run_load, run_soak, start_node
from support.ros_harness import Graph

DELAY_MS = 300.0
LOAD_S = 12.0
WARMUP_S = 3.0
SOAK_FRAMES = 1500
SOAK_WARMUP = 200
LOAD_VALUES = {'backend': 'fault_ok', 'image_size': 64, 'diagnostics_rate': 4.0}


@pytest.fixture(scope='module', params=[2, 10], ids=['2x', '10x'])
def load_run(request):
    """One load run per input/backend rate ratio; the tests below read its figures."""
    graph = Graph('dpt_load_graph')
    try:
        with start_node(LOAD_VALUES, env={'DPT_ROS_FAULT_DELAY_MS': str(DELAY_MS)}) as node:
            run = run_load(graph, node, hz=request.param * 1e3 / DELAY_MS, duration_s=LOAD_S,
                           warmup_s=WARMUP_S, size=(240, 320))
            run['alive'] = node.proc.poll() is None
            run['crash_signs'] = no_crash_signs(node.output())
        yield run
    finally:
        graph.close()


def test_load_counts_reconcile_and_only_stale_frames_are_dropped(load_run):
    r = load_run
    c = r['counts']
    assert r['idle'] and r['alive'] and not r['crash_signs'], r
    assert reconciles(c), c
    assert c['frames_rejected'] == c['frames_failed'] == 0, c
    assert set(r['reasons']) == {'frames_dropped:stale'}, r['reasons']
    assert r['reasons']['frames_dropped:stale'] == c['frames_dropped'] > 0
    # Depth-1 input: DDS replaces a sample the node's executor has not taken yet; that
    # happens below the node, where it cannot be counted, so it is bounded here (at these
    # rates it is a few frames; bench_stress.py reports it at 100 Hz, where it is not).
    assert 0.9 * r['sent'] <= c['frames_received'] <= r['sent'], (r['sent'], c)
    # The backend was kept busy: about one frame per backend time came out.
    busy = LOAD_S * 1e3 / r['inference_ms']
    assert c['frames_processed'] >= 0.8 * busy, (c, busy)
    assert r['outputs_seen'] == c['frames_processed']


def test_load_memory_threads_and_fds_flat_after_warmup(load_run):
    r = load_run
    assert r['rss_growth_after_warmup_mb'] < 50.0, r['rss_mb']
    assert r['threads']['end'] <= r['threads']['after_warmup'], r['threads']
    assert r['fds']['end'] <= r['fds']['after_warmup'], r['fds']


def test_load_diagnostics_warn_drops_rising_and_never_error(load_run):
    levels = load_run['diag_levels']
    assert load_run['diag_drop_warnings'] >= 1, levels
    assert levels[ERROR] == 0, levels


def test_load_outputs_in_order_and_at_most_two_frames_waiting(load_run):
    assert load_run['outputs_in_order']
    assert 1 <= load_run['max_waiting_frames'] <= 2, load_run['max_waiting_frames']


def test_load_p99_latency_within_two_backend_times_plus_20ms(load_run):
    r = load_run
    bound = 2 * r['inference_ms'] + 20.0
    assert r['node_latency_ms']['p99'] < bound, (r['node_latency_ms'], bound)


@pytest.fixture(scope='module')
def soak_run():
    graph = Graph('dpt_soak_graph')
    try:
        values = {'backend': 'torch', 'weights': 'tiny-random', 'image_size': 32,
                  'threads': 1, 'diagnostics_rate': 2.0}
        with start_node(values) as node:
            run = run_soak(graph, node, frames=SOAK_FRAMES, warmup_frames=SOAK_WARMUP,
                           sample_every=100)
            run['alive'] = node.proc.poll() is None
            run['crash_signs'] = no_crash_signs(node.output())
        yield run
    finally:
        graph.close()


def test_soak_every_frame_processed_through_the_tiny_model(soak_run):
    c = soak_run['counts']
    assert soak_run['alive'] and not soak_run['crash_signs']
    assert c['frames_received'] == c['frames_processed'] == SOAK_FRAMES, c
    assert reconciles(c) and not soak_run['reasons'], soak_run['reasons']


def test_soak_no_growth_in_rss_threads_or_fds_after_warmup(soak_run):
    rss, th, fds = soak_run['rss_mb'], soak_run['threads'], soak_run['fds']
    # A leak of one 160x120 float output per frame would be ~100 MB over this run.
    assert rss['end'] - rss['after_warmup'] < 8.0, rss
    assert rss['end'] - rss['mid'] < 4.0, rss
    assert th['end'] <= th['after_warmup'] and th['peak'] <= th['after_warmup'] + 1, th
    assert fds['end'] <= fds['after_warmup'] and fds['peak'] <= fds['after_warmup'] + 1, fds
