"""
Start-path benchmark (issue 24): torch speed when the node starts itself vs when a manager does.

The real node (python -m dpt_ros.node) with torch on the CPU, tiny-random weights, 384x384
model input, started two ways: `autostart` (it configures and activates itself, configure on a
thread of its own) and `lifecycle` (autostart false; this process calls configure and activate
through <node>/change_state, as `ros2 lifecycle set` does). Each with two OpenMP settings:

  libgomp_default  GOMP_SPINCOUNT=300000, libgomp's own default made explicit, which the node
                   keeps: what every start did before issue 24
  node_default     nothing set: the node chooses OMP_WAIT_POLICY=PASSIVE (serving/tuning.py)

Frames (640x480 rgb8) go in lock step: one is published, its depth_relative awaited, then the
next, so only the model's own speed differs. Per case: median round trip, the node's
inference_ms (diagnostics), node CPU ms per frame (spinning threads burn CPU) and the spin
count libgomp read (OMP_DISPLAY_ENV). Cases are interleaved over --rounds so machine load
drifts hit all alike; the ratios autostart / lifecycle per setting are the result. Writes
generated/bench_start_paths.json.

    .venv/bin/python bench/bench_start_paths.py [--frames 15] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import bench_env  # noqa: I100  (first: sets up sys.path and DDS)

ROOT = bench_env.setup()

from bench_node import process_cpu_s  # noqa: E402
from dpt_ros.ros.lifecycle_client import LifecycleClient  # noqa: E402
from support.ros_harness import diag_values, Graph, NodeProcess, rgb_image  # noqa: E402

VALUES = {'backend': 'torch', 'device': 'cpu', 'weights': 'tiny-random', 'image_size': 384,
          'diagnostics_rate': 2.0}
OPENMP = {'libgomp_default': {'GOMP_SPINCOUNT': '300000', 'OMP_WAIT_POLICY': None},
          'node_default': {'GOMP_SPINCOUNT': None, 'OMP_WAIT_POLICY': None}}
PATHS = ('autostart', 'lifecycle')


def start(path: str, openmp: str):
    """Start the node on `path` with the `openmp` setting; return it once active."""
    env = dict(OPENMP[openmp], OMP_DISPLAY_ENV='VERBOSE')
    node = NodeProcess(dict(VALUES, autostart=path == 'autostart'), env=env, wait_ready=0)
    if path == 'lifecycle':
        if not node.wait_ready(300, state='unconfigured'):
            raise RuntimeError('node not up:\n' + node.output())
        with LifecycleClient(node.node_fqn) as manager:
            if not (manager.transition('configure', 300) and manager.transition('activate')):
                raise RuntimeError('configure/activate failed:\n' + node.output())
    if not node.wait_ready(300):
        raise RuntimeError('node not active:\n' + node.output())
    return node


def spin_count(node) -> str:
    """Return the GOMP_SPINCOUNT libgomp printed at load (OMP_DISPLAY_ENV), or '?'."""
    for line in node.lines:
        if 'GOMP_SPINCOUNT' in line:
            return line.split('=')[1].strip().strip("'")
    return '?'


def run_case(graph, pub, depth, diags, path: str, openmp: str, frames: int) -> dict:
    """One node start: warm-up frames, then `frames` in lock step; return the figures."""
    from sensor_msgs.msg import Image
    from dpt_ros.ros.image_codec import rgb_to_image_fields
    msg = Image(**rgb_to_image_fields(rgb_image(480, 640)))
    node = start(path, openmp)
    try:
        if not graph.wait_for_subscriber(pub, 30) or not graph.wait_matched('depth_relative'):
            raise RuntimeError('not connected:\n' + node.output())
        rtts, cpu0 = [], 0.0
        for k in range(frames + 2):   # the first two warm caches and are not counted
            if k == 2:
                cpu0 = process_cpu_s(node.proc.pid)
            n = len(depth)
            t0 = time.perf_counter()
            if not graph.spin_until(lambda: pub.publish(msg) or len(depth) > n, 120.0):
                raise RuntimeError('no output:\n' + node.output())
            if k >= 2:
                rtts.append((time.perf_counter() - t0) * 1e3)
        cpu_ms = (process_cpu_s(node.proc.pid) - cpu0) * 1e3 / frames
        del diags[:]
        graph.spin_until(lambda: len(diags) >= 2, 10.0)   # a fresh one, after the last frame
        v = next((diag_values(s) for arr in reversed(diags) for s in arr.status
                  if 'depth pipeline' in s.name), {})
    finally:
        node.stop()
        node.kill()
    return {'path': path, 'openmp': openmp, 'gomp_spincount': spin_count(node),
            'frames': frames, 'rtt_ms_median': statistics.median(rtts),
            'inference_ms': float(v.get('inference_ms', 'nan')),
            'node_cpu_ms_per_frame': cpu_ms}


def summarize(runs: list[dict]) -> dict:
    """Median over rounds per case, and autostart / lifecycle per OpenMP setting."""
    out = {}
    for openmp in OPENMP:
        row = {}
        for path in PATHS:
            mine = [r for r in runs if r['path'] == path and r['openmp'] == openmp]
            row[path] = {k: statistics.median(r[k] for r in mine)
                         for k in ('rtt_ms_median', 'inference_ms', 'node_cpu_ms_per_frame')}
            row[path]['gomp_spincount'] = mine[0]['gomp_spincount']
        row['ratio_autostart_over_lifecycle'] = {
            k: row['autostart'][k] / row['lifecycle'][k]
            for k in ('rtt_ms_median', 'inference_ms')}
        out[openmp] = row
    return out


def _machine() -> dict:
    from dpt_ros.perf import report
    return {**report.host(), 'load_avg_start': os.getloadavg(), 'commit': bench_env.commit()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n\n')[0])
    ap.add_argument('--frames', type=int, default=15, help='timed frames per case')
    ap.add_argument('--rounds', type=int, default=2, help='times each case runs, interleaved')
    ap.add_argument('--json', default=os.path.join(ROOT, 'generated',
                                                   'bench_start_paths.json'))
    args = ap.parse_args()
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    machine = _machine()
    graph = Graph('_dpt_bench_start_paths')
    pub = graph.node.create_publisher(Image, 'image', 10)
    depth = graph.collect(Image, 'depth_relative')
    diags = graph.collect(DiagnosticArray, '/diagnostics')
    runs = []
    try:
        for rnd in range(args.rounds):
            for openmp in OPENMP:
                for path in PATHS:
                    r = run_case(graph, pub, depth, diags, path, openmp, args.frames)
                    runs.append(dict(r, round=rnd))
                    print(f'round {rnd + 1} {openmp:15} {path:9}: round trip '
                          f"{r['rtt_ms_median']:7.0f} ms, inference {r['inference_ms']:7.0f}"
                          f" ms, node CPU {r['node_cpu_ms_per_frame']:7.0f} ms/frame, "
                          f"spin count {r['gomp_spincount']}", flush=True)
    finally:
        graph.close()
    summary = summarize(runs)
    for openmp, row in summary.items():
        ratio = row['ratio_autostart_over_lifecycle']
        print(f"{openmp}: autostart {row['autostart']['inference_ms']:.0f} ms vs lifecycle "
              f"{row['lifecycle']['inference_ms']:.0f} ms inference "
              f"({ratio['inference_ms']:.2f}x; round trip {ratio['rtt_ms_median']:.2f}x)")
    machine['load_avg_end'] = os.getloadavg()
    from dpt_ros.perf import report
    report.write_json(args.json, {'machine': machine, 'values': VALUES, 'summary': summary,
                                  'runs': runs})
    print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
