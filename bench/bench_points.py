"""
Point-cloud benchmark (issue 15): the `points` stage at 640x480 beside the node's other stages.

One process, no DDS. Per frame, in this order and on the same frame: the pipeline's
postprocess (resize of the 384x384 model output to 640x480) and colourise, the metric stage
(fixed scale/shift to metres), then for each case the pure conversion
(`PointCloudMaker.make`, rays cached) and the PointCloud2 message fill (`ros.points.to_message`,
what the node publishes); the CDR serialisation rclpy's publish() does is timed as well, for
reference (it is a copy of the message into C, not part of the target).

Cases (stride 1, colour from the input image): organised (640x480, NaN kept), dense (invalid
points dropped), and organised without colour. The frame: scikit-image's astronaut resized to
640x480 as the image; its brightness as the model's inverse depth, with a shift that leaves
the darkest pixels with no valid depth (NaN), so the dense case has points to drop.

    .venv/bin/python bench/bench_points.py [--frames 300] [--period-ms 33] [--numpy]
        [--out generated/bench_points.json]

--period-ms sleeps between frames as a 30 Hz camera does (each frame then starts with cold
caches, as in the node); 0 runs back to back. The process is tuned as the node is once it
serves (serving/tuning.py: malloc keeps frame buffers, gc frozen). Prints median / p95 wall
time and median thread CPU time per stage (CPU time shows the work when other jobs share the
cores), writes JSON.
Target: conversion + fill <= 2 ms per frame.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import bench_env  # noqa: I100  (first: sets up sys.path)

ROOT = bench_env.setup()

import numpy as np  # noqa: E402

TARGET_MS = 2.0
H, W, S = 480, 640, 384
CASES = {'organised_rgb': {'dense': False, 'rgb': True},
         'dense_rgb': {'dense': True, 'rgb': True},
         'organised_xyz': {'dense': False, 'rgb': False}}
K = [525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0]


def frame():
    """(rgb 480x640 uint8, raw 384x384 inverse depth) of one realistic frame."""
    import cv2
    from skimage import data
    rgb = cv2.resize(data.astronaut(), (W, H), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(cv2.resize(rgb, (S, S), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_RGB2GRAY)
    return rgb, (gray.astype(np.float32) / 127.5)


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


def _since(a, b) -> tuple[float, float]:
    """(wall ms, this thread's CPU ms) from mark a to mark b."""
    return (b[0] - a[0]) * 1e3, (b[1] - a[1]) * 1e3


def _pct(values, q):
    return float(np.percentile(values, q)) if values else float('nan')


def run(frames: int, period_ms: float, use_jit: bool | None = None) -> dict:
    """Time every stage on `frames` frames; return {stage: [ms, ...]} and frame facts."""
    from dpt_ros.depth import pointcloud
    from dpt_ros.depth.metric import MetricDepth
    from dpt_ros.inference import colorize
    from dpt_ros.inference.postprocess import resize_depth
    from dpt_ros.ros.points import to_message
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    rgb, raw = frame()
    metric = MetricDepth('fixed', scale=1.0, shift=-0.1, min_depth=0.1, max_depth=100.0)
    intr = pointcloud.intrinsics_from_camera_info(K, [0.0] * 5, 'plumb_bob', W, H)
    # reuse=True as the node's points publisher (ros/points.py) makes them.
    makers = {c: pointcloud.PointCloudMaker(dense=o['dense'], reuse=True, use_jit=use_jit)
              for c, o in CASES.items()}
    header = Header(frame_id='camera_optical')
    times: dict[str, list] = {'postprocess': [], 'colorize': [], 'metric': []}
    for c in CASES:
        times.update({f'{c}_convert': [], f'{c}_fill': [], f'{c}_total': [],
                      f'{c}_serialize': []})
    cpu = {k: [] for k in times}
    facts = {}
    for i in range(frames + 5):            # the first 5: warm-up (caches, lazy imports)
        if period_ms:
            time.sleep(period_ms / 1e3)
        marks = [_now()]
        depth_rel = resize_depth(raw, (H, W), method='cv2')
        marks.append(_now())
        colorize.colorize(depth_rel)
        marks.append(_now())
        depth_m = metric.to_metric(depth_rel)
        marks.append(_now())
        t = {k: _since(marks[j], marks[j + 1])
             for j, k in enumerate(('postprocess', 'colorize', 'metric'))}
        for c, opts in CASES.items():
            m0 = _now()
            cloud = makers[c].make(depth_m, intr, rgb if opts['rgb'] else None)
            m1 = _now()
            msg = to_message(cloud, header)
            m2 = _now()
            serialize_message(msg)
            m3 = _now()
            t.update({f'{c}_convert': _since(m0, m1), f'{c}_fill': _since(m1, m2),
                      f'{c}_total': _since(m0, m2), f'{c}_serialize': _since(m2, m3)})
            facts[c] = {'width': cloud.width, 'height': cloud.height,
                        'point_step': cloud.point_step, 'bytes': len(cloud.data)}
        if i >= 5:
            for k, (wall, thread) in t.items():
                times[k].append(wall)
                cpu[k].append(thread)
    facts['invalid_fraction'] = float(np.mean(~np.isfinite(depth_m)))
    return {'times_ms': times, 'cpu_ms': cpu, 'clouds': facts}


def main(argv=None) -> int:
    """Run the benchmark, print a table, write JSON; exit 1 when the target is missed."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--frames', type=int, default=300)
    ap.add_argument('--period-ms', type=float, default=33.0)
    ap.add_argument('--numpy', action='store_true',
                    help='time the numpy fill (what runs where numba is missing)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'generated', 'bench_points.json'))
    args = ap.parse_args(argv)
    from dpt_ros.perf.report import host, versions, write_json
    from dpt_ros.serving import tuning
    tuned = tuning.tune_process_for_serving()   # as the node serves: no page faults per frame
    res = run(args.frames, args.period_ms, use_jit=False if args.numpy else None)
    summary = {k: {'median_ms': float(np.median(v)), 'p95_ms': _pct(v, 95),
                   'cpu_median_ms': float(np.median(res['cpu_ms'][k]))}
               for k, v in res['times_ms'].items()}
    print(f'{args.frames} frames of {W}x{H}, {args.period_ms:g} ms between frames; '
          f"{res['clouds']['invalid_fraction']:.1%} of pixels without depth")
    print(f"{'stage':28s} {'median ms':>10s} {'p95 ms':>8s} {'CPU median ms':>14s}")
    for k, s in summary.items():
        print(f"{k:28s} {s['median_ms']:10.3f} {s['p95_ms']:8.3f} {s['cpu_median_ms']:14.3f}")
    met = {c: summary[f'{c}_total']['median_ms'] <= TARGET_MS for c in CASES}
    met_cpu = {c: summary[f'{c}_total']['cpu_median_ms'] <= TARGET_MS for c in CASES}
    for what, verdict in (('wall', met), ('CPU', met_cpu)):
        print('target conversion + fill <= %.1f ms (median %s time): %s' % (
            TARGET_MS, what, ', '.join(f"{c} {'met' if ok else 'MISSED'}"
                                       for c, ok in verdict.items())))
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(f'1-minute load average {load:.1f} on {os.cpu_count()} CPUs')
    write_json(args.out, {
        'benchmark': 'bench_points', 'frames': args.frames, 'period_ms': args.period_ms,
        'fill': 'numpy' if args.numpy else 'numba (where importable)',
        'size': [W, H], 'stride': 1, 'target_ms': TARGET_MS, 'target_met': met,
        'target_met_cpu_time': met_cpu, 'load_average_1min': load,
        'summary': summary, 'clouds': res['clouds'], 'tuning': tuned, 'commit': bench_env.commit(),
        'host': host(),
        'versions': versions(), 'argv': sys.argv[1:]})
    print(f'wrote {args.out}')
    return 0 if all(met.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
