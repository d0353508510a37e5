"""
Shutdown benchmark (issue 16): how long a serving depth node takes to exit after a signal.

Each stop starts the node (python -m dpt_ros.node, as the console script runs it) in a
subprocess, lets it publish depth for some 320x240 rgb8 frames (in lock step by default, so
nothing is in its pipeline at the stop; --in-flight keeps them coming at 30 Hz, so an
inference call usually runs when the signal comes), puts the CPU under load (one busy process
per core, resumed only around the stop so that start-ups stay quick and the machine is not
held busy for the whole run), sends SIGINT or SIGTERM and times until the process has exited.
The node's last line says how much of that it waited for its workers. A stop counts as clean
only with exit code 0, that last line, and none of the
leak or crash lines in the node's output. Cases, taken in turn:

  tt_fallback  backend tt on wormhole_n300: no card here, so the node falls back to torch on
               cpu (tiny-random weights) after importing ttnn; nanobind's leak report at
               interpreter exit is what this case watches for
  torch        torch on cpu, tiny-random weights
  zero         the zero-cost stand-in backend (test/support/doubles/stand_in_backends.py)

Prints one line per stop and a summary per signal (count, clean, max / median seconds, how
many took 1 s or more) and writes generated/bench_shutdown.json.

    .venv/bin/python bench/bench_shutdown.py [--stops 50] [--cases tt_fallback,torch,zero]
        [--in-flight]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys

import bench_env  # noqa: I100  (first: sets up sys.path and DDS)

ROOT = bench_env.setup()

from support.reliability import STOP_CASES, STOP_LOAD_LEAD_S, timed_stop  # noqa: E402
from support.ros_harness import CpuLoad, Graph  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n\n')[0])
    ap.add_argument('--stops', type=int, default=50, help='stops per signal (SIGINT, SIGTERM)')
    ap.add_argument('--cases', default='tt_fallback,torch,zero',
                    help=f"comma-separated, taken in turn: {', '.join(STOP_CASES)}")
    ap.add_argument('--load', type=int, default=os.cpu_count() or 2,
                    help='busy processes during each stop (default: one per core)')
    ap.add_argument('--frames', type=int, default=5, help='outputs served before each stop')
    ap.add_argument('--in-flight', action='store_true',
                    help='keep frames coming at 30 Hz until the signal, so an inference call '
                         'is usually running (the node lets it finish, for at most 1 s); '
                         'default: frames in lock step, nothing in the pipeline at the stop')
    ap.add_argument('--json', default=os.path.join(ROOT, 'generated', 'bench_shutdown.json'))
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(',') if c.strip()]
    unknown = set(cases) - set(STOP_CASES)
    if unknown:
        ap.error(f"unknown case(s) {sorted(unknown)}; choose from {', '.join(STOP_CASES)}")

    graph = Graph('dpt_bench_shutdown')
    load = CpuLoad(args.load)
    records = []
    try:
        plan = [(sig, cases[i % len(cases)]) for i in range(args.stops)
                for sig in (signal.SIGINT, signal.SIGTERM)]
        for n, (sig, case) in enumerate(plan, 1):
            r = timed_stop(case, sig, load, graph, frames=args.frames, in_flight=args.in_flight)
            out = r.pop('output')
            if not r['clean']:   # the node's whole output goes into the JSON, and here
                r['output'] = out
            records.append(r)
            print(f"{n:3d}/{len(plan)} {r['signal']:7s} {case:11s} exit {r['exit_code']} "
                  f"in {r['seconds']:.3f} s ({r['worker_wait_s']:.3f} s for the workers, "
                  f"{r['rest_s']:.3f} s the rest), served {r['served']}"
                  + (f", UNCLEAN: {r['unclean_signs']}" if not r['clean'] else ''), flush=True)
            if not r['clean']:
                print('    ' + out.replace('\n', '\n    '), flush=True)
    finally:
        load.close()
        graph.close()

    summary = {}
    for name in ('SIGINT', 'SIGTERM'):
        rs = [r for r in records if r['signal'] == name]
        if not rs:
            continue
        secs = [r['seconds'] for r in rs]
        summary[name] = {'stops': len(rs), 'clean': sum(r['clean'] for r in rs),
                         'max_s': max(secs), 'p50_s': statistics.median(secs),
                         'over_1s': sum(x >= 1.0 for x in secs),
                         'max_worker_wait_s': max(r['worker_wait_s'] for r in rs),
                         'max_rest_s': max(r['rest_s'] for r in rs),
                         'max_by_case': {c: max(r['seconds'] for r in rs if r['case'] == c)
                                         for c in cases if any(r['case'] == c for r in rs)}}
        s = summary[name]
        print(f"{name}: {s['clean']}/{s['stops']} clean (exit 0, no leak/crash lines), "
              f"max {s['max_s']:.3f} s, median {s['p50_s']:.3f} s, {s['over_1s']} >= 1 s; "
              f"max waiting for the workers {s['max_worker_wait_s']:.3f} s, max of the rest "
              f"{s['max_rest_s']:.3f} s; max by case "
              + ', '.join(f'{c} {v:.3f} s' for c, v in s['max_by_case'].items()))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump({'in_flight': args.in_flight, 'load_processes': args.load,
                   'cpu_count': os.cpu_count(),
                   'load_lead_s': STOP_LOAD_LEAD_S, 'summary': summary, 'stops': records}, f,
                  indent=1)
    print(f'wrote {args.json}')
    return 0 if records and all(r['clean'] for r in records) else 1


if __name__ == '__main__':
    sys.exit(main())
