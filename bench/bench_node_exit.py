"""
Ghost benchmark (issue 24): how long a stopped depth node stays in the ROS graph after exit.

Starts the real node (python -m dpt_ros.node, stand-in backend, so start-ups are quick) with
`autostart` true and false, waits until an observer node in this process sees it in the graph
(what `ros2 node list` shows), stops it with SIGINT and times from its exit (code 0) until the
observer no longer lists it. Fast DDS forgets a participant that never said goodbye only when
its lease (20 s) expires, so a node that does not leave the graph itself shows as ~20 s.

Prints one line per stop and a summary per case; writes generated/bench_node_exit.json.

    .venv/bin/python bench/bench_node_exit.py [--stops 5] [--limit 40]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time

import bench_env  # noqa: I100  (first: sets up sys.path and DDS)

ROOT = bench_env.setup()

from support.ros_harness import Graph, NodeProcess  # noqa: E402

VALUES = {'backend': 'standin_zero', 'image_size': 64}


def listed(graph, name: str = 'depth_node') -> bool:
    """Return True while the observer sees a node called `name` in the graph."""
    return any(n == name for n, _ in graph.node.get_node_names_and_namespaces())


def one_stop(graph, autostart: bool, limit_s: float) -> dict:
    """Start, see it listed, SIGINT; return exit code, stop time and seconds listed after."""
    with NodeProcess(dict(VALUES, autostart=autostart),
                     wait_ready=120 if autostart else 0) as node:
        if not graph.spin_until(lambda: listed(graph), 60.0):
            raise RuntimeError('the node never appeared in the graph:\n' + node.output())
        rc, stop_s = node.stop(signal.SIGINT, 15.0)
        t0 = time.monotonic()
        gone = graph.spin_until(lambda: not listed(graph), limit_s)
        listed_s = time.monotonic() - t0
    return {'autostart': autostart, 'exit_code': rc, 'stop_s': round(stop_s, 3),
            'listed_after_exit_s': round(listed_s, 3), 'gone': gone}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n\n')[0])
    ap.add_argument('--stops', type=int, default=5, help='stops per case')
    ap.add_argument('--limit', type=float, default=40.0,
                    help='give up watching a ghost after this many seconds')
    ap.add_argument('--json', default=os.path.join(ROOT, 'generated', 'bench_node_exit.json'))
    args = ap.parse_args()
    graph = Graph('_dpt_bench_exit_observer')
    runs = []
    try:
        for autostart in (True, False):
            for i in range(args.stops):
                r = one_stop(graph, autostart, args.limit)
                runs.append(r)
                state = 'true' if autostart else 'false'
                print(f'autostart {state:5} stop {i + 1}: exit code '
                      f"{r['exit_code']}, stopped in {r['stop_s']:.2f} s, listed "
                      f"{r['listed_after_exit_s']:.2f} s after exit", flush=True)
    finally:
        graph.close()
    summary = {}
    for autostart in (True, False):
        secs = [r['listed_after_exit_s'] for r in runs if r['autostart'] == autostart]
        summary[f'autostart_{str(autostart).lower()}'] = {
            'stops': len(secs), 'listed_after_exit_s_max': max(secs),
            'listed_after_exit_s_median': statistics.median(secs),
            'all_exit_0': all(r['exit_code'] == 0 for r in runs if r['autostart'] == autostart)}
    for name, s in summary.items():
        print(f"{name}: listed after exit median {s['listed_after_exit_s_median']:.2f} s, max "
              f"{s['listed_after_exit_s_max']:.2f} s over {s['stops']} stops")
    from dpt_ros.perf import report
    report.write_json(args.json, {'commit': bench_env.commit(), 'load_avg': os.getloadavg(),
                                  'summary': summary, 'runs': runs})
    print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
