"""
Data-parallel scaling of the serving path: dp 1 vs dp 8 chips with a fixed device time.

    .venv/bin/python bench/bench_dp.py [--dps 1,8] [--device-ms 40] [--cameras 4] [--rate 60]
        [--seconds 6] [--width 320 --height 240] [--color] [--out generated/bench_dp.json]

No card exists here, so each chip is a stand-in (test/support/doubles/chip_stand_in.py: the
ChipPipeline interface, `--device-ms` per frame on the chip's own clock, a timed wait on a
condition standing for device time). Everything above it is the real code: the TT backend
(`TtBackend`, `DataParallel` rotation over the chips), the `DepthPipeline` (resize to
384x384 uint8 pixels; the output resized back to the frame size, colourised with --color)
and the `FrameScheduler` with one inference worker per chip. Cameras offer WxH RGB frames
at `--rate` Hz each, more than dp 8 can take (4 x 60 Hz vs 8 / 40 ms = 200 FPS), so the
output rate is the capacity; stale frames are dropped in the latest-frame slots, counted.

Per dp, after a 1 s warm-up, over `--seconds`: output FPS, its ratio to the ideal
(dp x 1000 / device-ms), latency p50/p95, per-chip frames, each camera's stamp order and the
exact accounting (received = processed + dropped + rejected + failed). Prints a table, the
dp 8 / dp 1 ratio (target >= 7.5), and writes JSON.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import bench_env  # noqa: I100  (first: sets up sys.path)

_ROOT = bench_env.setup()

import cv2  # noqa: E402
from dpt_ros.backends import StartedBackend  # noqa: E402
from dpt_ros.perf.report import host, versions, write_json  # noqa: E402
from dpt_ros.serving.pipeline import DepthPipeline  # noqa: E402
from dpt_ros.serving.scheduler import FrameScheduler, OUTCOMES  # noqa: E402
from dpt_ros.serving.supervisor import BackendSupervisor  # noqa: E402
import numpy as np  # noqa: E402
from support.doubles.chip_stand_in import stand_in_backend  # noqa: E402


TARGET_RATIO = 7.5


def camera_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """One WxH RGB picture per camera (scikit-image's astronaut, shifted per camera)."""
    from skimage import data
    base = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(np.roll(base, 17 * i, axis=1)) for i in range(n)]


def feed(s: FrameScheduler, cam: str, image: np.ndarray, rate: float,
         stop: threading.Event) -> None:
    """Offer `image` every 1/rate s (absolute schedule, stamps on the wall clock)."""
    period, t_next = 1.0 / rate, time.monotonic()
    while not stop.is_set():
        s.submit(cam, image, stamp_ns=time.time_ns())
        t_next += period
        stop.wait(max(0.0, t_next - time.monotonic()))


def run_case(dp: int, args, images: list[np.ndarray]) -> dict:
    """Serve the cameras with `dp` stand-in chips; return the figures of the timed window."""
    cameras = [f'cam{i}' for i in range(args.cameras)]
    backend = stand_in_backend(dp, args.device_ms, image_size=args.size)
    pipeline = DepthPipeline(BackendSupervisor(StartedBackend(backend, requested='tt')))
    stamps = {c: [] for c in cameras}

    def prepare(frame):
        return pipeline.prepare(frame.msg), frame.msg.shape[:2]

    def infer(prepared):
        return pipeline.infer(prepared[0][None])[0]

    def finish(frame, raw):
        pipeline.finish(raw, frame.prepared[1], want_color=args.color)
        stamps[frame.camera].append(frame.stamp_ns)

    s = FrameScheduler(cameras, prepare, infer, finish, concurrency=backend.max_concurrency)
    s.start()
    stop = threading.Event()
    feeders = [threading.Thread(target=feed, args=(s, c, im, args.rate, stop), daemon=True)
               for c, im in zip(cameras, images)]
    for t in feeders:
        t.start()
    cpu0 = time.process_time()
    stop.wait(1.0)                                    # warm-up: the pipeline fills
    done0, t0, cpu0 = s.counts()['frames_processed'], time.monotonic(), time.process_time()
    stop.wait(args.seconds)
    done1, t1, cpu1 = s.counts()['frames_processed'], time.monotonic(), time.process_time()
    stop.set()
    for t in feeders:
        t.join()
    idle = s.wait_idle(10)
    s.stop()
    snap = s.total.snapshot()
    counts = s.counts()
    chips = backend.chip_stats()
    backend.close()
    fps = (done1 - done0) / (t1 - t0)
    ideal = dp * 1e3 / args.device_ms
    return {
        'dp': dp, 'fps': fps, 'ideal_fps': ideal, 'of_ideal': fps / ideal,
        'latency_ms_p50': snap['latency_ms_p50'], 'latency_ms_p95': snap['latency_ms_p95'],
        'host_cpu_ms_per_frame': 1e3 * (cpu1 - cpu0) / max(1, done1 - done0),
        'counts': counts, 'reasons': snap['reasons'],
        'accounting_exact': idle and counts['frames_received'] == sum(counts[k]
                                                                      for k in OUTCOMES),
        'camera_order_kept': all(v == sorted(v) for v in stamps.values()),
        'per_camera_processed': {c: len(v) for c, v in stamps.items()},
        'chip_frames': [chips[f'chip{i} frames'] for i in range(dp)],
        'chip_fps_device': [chips[f'chip{i} fps_device'] for i in range(dp)],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('--dps', default='1,8', help='comma-separated dp values (default 1,8)')
    ap.add_argument('--device-ms', type=float, default=40.0, help='device time per frame')
    ap.add_argument('--cameras', type=int, default=4)
    ap.add_argument('--rate', type=float, default=60.0, help='Hz per camera')
    ap.add_argument('--seconds', type=float, default=6.0, help='timed window per dp')
    ap.add_argument('--width', type=int, default=320)
    ap.add_argument('--height', type=int, default=240)
    ap.add_argument('--size', type=int, default=384, help='model input side')
    ap.add_argument('--color', action='store_true', help='colourise every output too')
    ap.add_argument('--out', default=os.path.join(_ROOT, 'generated', 'bench_dp.json'))
    args = ap.parse_args(argv)
    dps = [int(d) for d in args.dps.split(',')]
    images = camera_frames(args.cameras, args.width, args.height)
    cases = [run_case(dp, args, images) for dp in dps]
    print(f'{args.cameras} cameras x {args.rate:g} Hz, {args.width}x{args.height} -> '
          f'{args.size}px, {args.device_ms:g} ms per frame per chip, colour {args.color}')
    print(f'{"dp":>3} {"FPS":>7} {"ideal":>6} {"of ideal":>8} {"p50 ms":>7} {"p95 ms":>7} '
          f'{"cpu ms/f":>8} {"order":>5} {"exact":>5}  chip frames')
    for c in cases:
        print(f'{c["dp"]:>3} {c["fps"]:7.1f} {c["ideal_fps"]:6.0f} {c["of_ideal"]:8.3f} '
              f'{c["latency_ms_p50"]:7.1f} {c["latency_ms_p95"]:7.1f} '
              f'{c["host_cpu_ms_per_frame"]:8.2f} {str(c["camera_order_kept"]):>5} '
              f'{str(c["accounting_exact"]):>5}  {c["chip_frames"]}')
    by_dp = {c['dp']: c for c in cases}
    ratio = (by_dp[max(dps)]['fps'] / by_dp[min(dps)]['fps']
             if len(by_dp) > 1 and by_dp[min(dps)]['fps'] > 0 else None)
    if ratio is not None:
        verdict = 'meets' if ratio >= TARGET_RATIO * max(dps) / 8 else 'misses'
        print(f'dp {max(dps)} / dp {min(dps)}: {ratio:.2f}x ({verdict} the target '
              f'{TARGET_RATIO:g}x for dp 8 / dp 1)')
    write_json(args.out, {'args': vars(args), 'cases': cases, 'ratio': ratio,
                          'target_ratio': TARGET_RATIO, 'commit': bench_env.commit(),
                          'versions': versions(), 'host': host()})
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
