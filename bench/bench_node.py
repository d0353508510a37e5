"""
Node benchmark (issue 3): what the ROS node adds around the model, measured over real DDS.

Three processes: a camera publisher (640x480 rgb8 at --rate Hz for --duration s, stamps =
publish time), the depth node (python -m dpt_ros.node), and this process, which subscribes to
the outputs (depth_relative and depth_relative/color, so colourising is included) and to
/diagnostics. Cases:

  zero      zero-cost stand-in backend taking uint8 pixels, as the TT backend does (the
            normalisation folded into its weights): the node's own overhead and latency
  zero_normalized  the same stand-in taking the normalised float32 tensor, as the torch
            backend does: the node also normalises each frame
  tiny      the real torch backend with tiny-random weights (same architecture, small)
  dp1, dp2  a fixed 40 ms stand-in backend with max_concurrency 1 and 2, fed faster than both
            (--dp-rate Hz): output FPS ratio dp2/dp1 (target >= 1.9)
  ov_lat1, ov_thr1, ov_lat2, ov_thr2  OpenVINO with DPT-Large (random weights, --ov-dtype,
            384 px) for 1 and 2 cameras (each at --ov-rate Hz for --ov-duration s): the LATENCY
            hint (streams 1) against the THROUGHPUT hint with 2 streams

Reported per case: frames sent / received by the node / processed / dropped (stale) / lost in
DDS, output FPS, node overhead per frame (decode + preprocess + postprocess + colourise +
publish, node's own stage means), e2e latency p50/p95/p99 (stamp -> arrival here) and the
node's stamp -> publish latency, and ros2_benchmark's BasicPerformanceMetrics (`ros2_benchmark`:
keyed by camera namespace when there are several). Writes generated/bench_node.json.

    .venv/bin/python bench/bench_node.py [--duration 20] [--rate 30]
        [--cases zero,zero_normalized,tiny,dp1,dp2] [--cases ov_lat1,ov_thr1,ov_lat2,ov_thr2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import bench_env  # noqa: I100  (first: sets up sys.path and DDS)

ROOT = bench_env.setup()

from dpt_ros.perf.conventions import benchmark_metrics  # noqa: E402
import numpy as np  # noqa: E402

OVERHEAD_STAGES = ('decode', 'preprocess', 'postprocess', 'colorize', 'publish')


def process_cpu_s(pid: int) -> float:
    """
    User + system CPU seconds of a process so far (Linux /proc), NaN where unreadable.

    The stage means are the node's own wall times per stage; the process's CPU time per frame
    adds what no stage covers (receiving the input, DDS threads, diagnostics): together they
    say what the node costs.
    """
    fields = _proc_stat(pid)
    if fields is None:
        return float('nan')
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def process_minor_faults(pid: int) -> float:
    """Minor page faults of a process so far (each costs a zeroed page), NaN if unreadable."""
    fields = _proc_stat(pid)
    return float(fields[7]) if fields is not None else float('nan')


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (field 3 onwards), or None."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()
    except OSError:
        return None


def run_publisher(rate: float, duration: float, height: int, width: int,
                  cameras: list[str]) -> None:
    """
    Child process: publish rgb8 frames at `rate` for `duration` on each camera's `image`.

    Prints the count sent and every stamp (= publish time; the same for all cameras).
    """
    from dpt_ros.vocabulary import in_namespace
    from dpt_ros.ros.image_codec import rgb_to_image_fields
    import rclpy
    from rclpy.duration import Duration
    from sensor_msgs.msg import Image
    from support.ros_harness import rgb_image
    rclpy.init()
    node = rclpy.create_node('bench_camera')
    pubs = [node.create_publisher(Image, in_namespace(ns, 'image'), 10) for ns in cameras]
    msg = Image(**rgb_to_image_fields(rgb_image(height, width)))
    msg.header.frame_id = 'bench_camera'
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() == 0 for p in pubs) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    print('READY', flush=True)
    sys.stdin.readline()   # the parent says go once its own subscriptions are matched
    period = 1.0 / rate
    t0 = time.monotonic()
    sent, slot, skipped, stamps = 0, 0, [], []
    first_stamp_ns = 0
    while slot * period < duration:
        t_slot = t0 + slot * period
        delay = t_slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif -delay > period / 2:
            # This process was held up past the slot: skip it, as a camera drops a frame,
            # rather than send two frames back to back (a burst no camera makes, which a
            # depth-1 subscriber answers by keeping only the newer).
            skipped.append(slot)
            slot += 1
            continue
        msg.header.stamp = node.get_clock().now().to_msg()
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if sent == 0:
            first_stamp_ns = stamp_ns
        for pub in pubs:
            pub.publish(msg)
        stamps.append(stamp_ns)
        sent += 1
        slot += 1
    # A reliable frame is delivered only while its writer lives: let the last ones arrive.
    for pub in pubs:
        pub.wait_for_all_acked(Duration(seconds=5))
    print(f'SENT {sent} {time.monotonic() - t0:.3f} {first_stamp_ns} {slot} '
          f"{','.join(map(str, skipped)) or '-'} {','.join(map(str, stamps)) or '-'}",
          flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def run_case(name: str, values: dict, env: dict, rate: float, duration: float,
             height: int, width: int, cameras: tuple = ('',)) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from dpt_ros.vocabulary import in_namespace
    from sensor_msgs.msg import Image
    from support.ros_harness import diag_values, Graph, NodeProcess
    graph = Graph(f'bench_sink_{name}')
    arrivals = {ns: [] for ns in cameras}
    depth = {ns: graph.collect(Image, in_namespace(ns, 'depth_relative'), timed=arrivals[ns])
             for ns in cameras}
    for ns in cameras:
        graph.collect(Image, in_namespace(ns, 'depth_relative/color'))
    diags = graph.collect(DiagnosticArray, '/diagnostics')
    node = NodeProcess(dict(values, cameras=list(cameras)), env=env, wait_ready=600)
    cam = subprocess.Popen([sys.executable, __file__, '--publisher', '--rate', str(rate),
                            '--duration', str(duration), '--height', str(height),
                            '--width', str(width), '--cameras', ','.join(cameras)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ))
    try:
        assert cam.stdout.readline().strip() == 'READY', 'publisher did not start'
        ok = all(graph.wait_matched(in_namespace(ns, t), 30) for ns in cameras
                 for t in ('depth_relative', 'depth_relative/color'))
        assert ok, 'outputs not matched:\n' + node.output()
        cpu_at_go = process_cpu_s(node.proc.pid)
        faults_at_go = process_minor_faults(node.proc.pid)
        cam.stdin.write('go\n')
        cam.stdin.flush()
        t_start = time.monotonic()
        sent_line = ''
        while not sent_line:
            graph.executor.spin_once(timeout_sec=0.01)
            if cam.poll() is not None or time.monotonic() - t_start > duration + 60:
                sent_line = cam.stdout.readline()
                break
            if time.monotonic() - t_start > duration:
                import select
                if select.select([cam.stdout], [], [], 0)[0]:
                    sent_line = cam.stdout.readline()
        fields = sent_line.split()
        sent, first_sent_ns, slots = int(fields[1]), int(fields[3]), int(fields[4])
        skipped = [] if fields[5] == '-' else [int(k) for k in fields[5].split(',')]
        sent_stamps = [] if fields[6] == '-' else [int(k) for k in fields[6].split(',')]

        def settled():
            for arr in reversed(diags):
                for s in arr.status:
                    if 'depth pipeline' in s.name:
                        v = diag_values(s)
                        return v['in_pipeline'] == '0' and \
                            int(v['frames_processed']) == sum(map(len, depth.values()))
            return False
        graph.spin_until(settled, 300)
        node_cpu_s = process_cpu_s(node.proc.pid) - cpu_at_go
        node_faults = process_minor_faults(node.proc.pid) - faults_at_go
        graph.spin_until(lambda: False, 1.5)   # one more diagnostics period for fresh means
        v = next(diag_values(s) for arr in reversed(diags) for s in arr.status
                 if 'depth pipeline' in s.name)
    finally:
        rc, took = node.stop()
        cam.kill()
        graph.close()
    all_out = sorted((t, _stamp_ns(m)) for ns in cameras for m, t in zip(depth[ns], arrivals[ns]))
    lat = np.array([(t - st) / 1e6 for t, st in all_out])
    span = (all_out[-1][0] - all_out[0][0]) / 1e9 if len(all_out) > 1 else float('nan')
    # Which sent frames never came out here (by stamp: frame k was stamped about k periods
    # after the first), to tell a loss at start-up (discovery) from one mid-run (overload).
    first_slot = min(set(range(slots)) - set(skipped), default=0)
    first_ns = cameras[0]
    seen = {first_slot + round((_stamp_ns(m) - first_sent_ns) * rate / 1e9)
            for m in depth[first_ns]}
    missing = sorted(set(range(slots)) - set(skipped) - seen)
    # ros2_benchmark's figures per camera: sent = the camera's stamps, received = arrivals.
    bench = {ns: benchmark_metrics({st: st for st in sent_stamps},
                                   {_stamp_ns(m): t for m, t in zip(depth[ns], arrivals[ns])})
             for ns in cameras}
    stage = {s: float(v[f'{s}_ms']) for s in OVERHEAD_STAGES}
    received = int(v['frames_received'])
    delivered = len(all_out)
    out = {
        'case': name, 'input': f'{len(cameras)} x {width}x{height} rgb8 @ {rate:g} Hz for '
        f'{duration:g} s',
        'cameras': len(cameras),
        'backend': v['backend'], 'model_input': v['model_input'],
        'dtype': v.get('dtype'), 'dtype_requested': v.get('dtype_requested'),
        'workers': int(v['workers']), 'dp': int(v['dp']),
        'frames_sent': sent * len(cameras), 'camera_slots_skipped': len(skipped),
        'frames_received_by_node': received,
        'frames_lost_in_dds': sent * len(cameras) - received,
        'frames_processed': int(v['frames_processed']),
        'frames_dropped': int(v['frames_dropped']),
        'frames_rejected': int(v['frames_rejected']), 'frames_failed': int(v['frames_failed']),
        'outputs_delivered_here': delivered,
        'missing_here_frame_indices': missing[:50],
        'output_fps': (delivered - 1) / span if span == span and span > 0 else 0.0,
        'node_overhead_ms_per_frame': sum(stage.values()),
        # Everything the node process spent, per processed frame: its stages, receiving the
        # input, diagnostics, DDS threads and the backend (for `zero`, next to nothing).
        'node_process_cpu_ms_per_frame': 1e3 * node_cpu_s / max(1, int(v['frames_processed'])),
        'node_minor_faults_per_frame': node_faults / max(1, int(v['frames_processed'])),
        'stage_ms': dict(stage, inference=float(v['inference_ms'])),
        'e2e_latency_ms': {f'p{q}': float(np.percentile(lat, q)) if lat.size else None
                           for q in (50, 95, 99)},
        'node_latency_ms': {f'p{q}': float(v[f'latency_ms_p{q}']) for q in (50, 95, 99)},
        'reasons': v['reasons'], 'node_exit_code': rc, 'node_exit_s': round(took, 3),
        # As ros2_benchmark writes it: flat for one camera, keyed by namespace for several.
        'ros2_benchmark': bench[cameras[0]] if len(cameras) == 1 else bench,
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    ap.add_argument('--duration', type=float, default=20.0)
    ap.add_argument('--rate', type=float, default=30.0)
    ap.add_argument('--dp-rate', type=float, default=100.0,
                    help='camera rate for the dp1/dp2 cases (must exceed 2 x 25 FPS)')
    ap.add_argument('--dp-duration', type=float, default=10.0)
    ap.add_argument('--dp-size', default='320x240',
                    help='WxH of the dp1/dp2 frames: at 640x480 and 100 Hz Fast DDS here hands '
                         'a depth-1 reader only 5-10%% of the frames, which would measure DDS')
    ap.add_argument('--height', type=int, default=480)
    ap.add_argument('--width', type=int, default=640)
    ap.add_argument('--tiny-image-size', type=int, default=384)
    ap.add_argument('--ov-rate', type=float, default=30.0, help='camera rate, ov_* cases')
    ap.add_argument('--ov-duration', type=float, default=90.0)
    ap.add_argument('--ov-dtype', default='fp32', choices=('fp32', 'bf16'))
    ap.add_argument('--cases', default='zero,zero_normalized,tiny,dp1,dp2')
    ap.add_argument('--out', default=os.path.join(ROOT, 'generated', 'bench_node.json'))
    ap.add_argument('--publisher', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--cameras', default='', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.publisher:
        run_publisher(a.rate, a.duration, a.height, a.width, a.cameras.split(','))
        return 0

    base = {'diagnostics_rate': 2.0, 'backend_timeout_s': 0.0}
    dp_w, dp_h = (int(v) for v in a.dp_size.lower().split('x'))
    cases = {
        'zero': ({'backend': 'standin_zero'}, {'DPT_ROS_STANDIN_INPUT': 'pixels'}, a.rate,
                 a.duration, a.height, a.width),
        'zero_normalized': ({'backend': 'standin_zero'}, {'DPT_ROS_STANDIN_INPUT': 'normalized'},
                            a.rate, a.duration, a.height, a.width),
        'tiny': ({'backend': 'torch', 'weights': 'tiny-random',
                  'image_size': a.tiny_image_size}, {}, a.rate, a.duration, a.height, a.width),
        'dp1': ({'backend': 'standin_delay', 'dp': 1}, {'DPT_ROS_STANDIN_DELAY_MS': '40'},
                a.dp_rate, a.dp_duration, dp_h, dp_w),
        'dp2': ({'backend': 'standin_delay', 'dp': 2}, {'DPT_ROS_STANDIN_DELAY_MS': '40'},
                a.dp_rate, a.dp_duration, dp_h, dp_w),
    }
    ov = {'backend': 'openvino', 'weights': 'random', 'image_size': 384, 'dtype': a.ov_dtype}
    for n_cams in (1, 2):
        for hint, streams in (('lat', 1), ('thr', 2)):
            cases[f'ov_{hint}{n_cams}'] = (dict(ov, streams=streams), {}, a.ov_rate,
                                           a.ov_duration, a.height, a.width,
                                           ('',) if n_cams == 1 else ('cam0', 'cam1'))
    results = {}
    for name in a.cases.split(','):
        values, env, rate, duration, height, width, *cams = cases[name]
        load_before = os.getloadavg()
        r = run_case(name, dict(base, **values), env, rate, duration, height, width,
                     *cams)
        r['load_average_1min'] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
        results[name] = r
        lat = r['e2e_latency_ms']
        print(f"{name:15s} {r['backend']:14s} {r['model_input']:10s} "
              f"sent {r['frames_sent']:4d} node got {r['frames_received_by_node']:4d} "
              f"processed {r['frames_processed']:4d} "
              f"dropped {r['frames_dropped']:4d} delivered {r['outputs_delivered_here']:4d} | "
              f"out {r['output_fps']:6.2f} FPS | overhead {r['node_overhead_ms_per_frame']:.2f} "
              f"ms/frame (node CPU {r['node_process_cpu_ms_per_frame']:.2f} ms/frame) | "
              f'e2e p50/p95/p99 {lat["p50"]:.1f}/{lat["p95"]:.1f}/{lat["p99"]:.1f} ms'
              f" | exit {r['node_exit_code']} in {r['node_exit_s']} s"
              f" | infer {r['stage_ms']['inference']:.0f} ms | load {r['load_average_1min']}",
              flush=True)
    summary = {}
    for n in (1, 2):
        lat, thr = results.get(f'ov_lat{n}'), results.get(f'ov_thr{n}')
        if lat and thr and lat['output_fps'] > 0:
            summary[f'ov_throughput_over_latency_output_fps_{n}cam'] = \
                thr['output_fps'] / lat['output_fps']
            print(f'{n} camera(s): THROUGHPUT (2 streams) / LATENCY output FPS = '
                  f"{thr['output_fps'] / lat['output_fps']:.2f}")
    if 'dp1' in results and 'dp2' in results and results['dp1']['output_fps'] > 0:
        ratio = results['dp2']['output_fps'] / results['dp1']['output_fps']
        summary['dp2_over_dp1_output_fps'] = ratio
        print(f'dp2/dp1 output FPS with a 40 ms stand-in backend: {ratio:.2f} (target >= 1.9)')
    if 'zero' in results:
        z = results['zero']
        summary['zero_backend_frames_lost'] = z['frames_sent'] - z['frames_processed']
        summary['zero_backend_overhead_ms'] = z['node_overhead_ms_per_frame']
    if 'zero_normalized' in results:
        summary['zero_normalized_backend_overhead_ms'] = \
            results['zero_normalized']['node_overhead_ms_per_frame']
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, 'w') as f:
        json.dump({'cases': results, 'summary': summary,
                   'machine': f'{os.cpu_count()} CPU cores, no accelerator'}, f, indent=2)
    print(f'wrote {a.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
