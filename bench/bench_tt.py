"""
Benchmark the TT backend on a Tenstorrent card: device FPS and end-to-end FPS.

    .venv/bin/python bench/bench_tt.py --device wormhole_n300 --dp 2 \
        --tt-execution-mode trace_2cq --image-size 384 --repeat 50

Device FPS = frames / trace_wall_ms, where trace_wall_ms runs from the first input enqueue to
a `ttnn.synchronize_device` barrier on every chip (mean over the timed repeats). e2e FPS
counts the whole `infer()` (host input build, copies, traces, readback) plus the host
post-processing every frame gets in the node (resize back to a 640x480 camera frame).
Writes generated/bench_tt.json (+ _header.json) with the runner's perf JSON keys.

Strict: any program-config or host fallback raises. Without a Tenstorrent device it prints
why and exits with status 2; it never reports numbers it did not measure on a card.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from dpt_ros import vocabulary  # noqa: E402
from dpt_ros.tt import device as tt_device  # noqa: E402
import numpy as np  # noqa: E402

EXIT_NO_DEVICE = 2
CAMERA_HW = (480, 640)
BUNDLED = ('astronaut', 'coffee', 'chelsea', 'rocket')


def _frames(n: int, size: int) -> np.ndarray:
    """
    Return n bundled pictures (skimage.data) as the node gives them to the TT backend.

    Resized uint8 pixels (the normalisation is in the model's weights), cycling if n > 4.
    """
    from dpt_ros.inference.preprocess import resize_pixels
    from skimage import data
    return np.stack([resize_pixels(getattr(data, BUNDLED[i % len(BUNDLED)])(), size)
                     for i in range(n)])


def measure(*, device: str, dp: int, image_size: int = 384, mode: str = 'trace_2cq',
            weights: str = 'auto', warmup: int = 2, repeat: int = 20,
            batch_size: int | None = None, precision: str = 'accurate',
            selfcheck: bool = True) -> tuple[dict, dict]:
    """Run the TT backend strictly and return (perf JSON dict, header dict)."""
    from dpt_ros.backends import BackendOptions, tt_backend
    from dpt_ros.inference.postprocess import resize_depth
    from dpt_ros.perf.report import build_header, build_perf, RunTimings
    from dpt_ros.perf.stats import PerfStats

    n = int(batch_size or dp)
    opts = BackendOptions(weights=weights, image_size=image_size, device=device, dp=dp,
                          execution_mode=mode, batch_size=n, strict=True, precision=precision,
                          selfcheck=selfcheck)
    backend = tt_backend.create(opts)
    try:
        batch = _frames(n, image_size)
        timings = RunTimings(warmup=warmup, repeat=repeat)
        perf = PerfStats()
        t0 = time.perf_counter()
        backend.infer(batch)
        timings.first_run_s = time.perf_counter() - t0
        for _ in range(max(0, warmup - 1)):
            backend.infer(batch)
        trace_ms = []
        t_all = time.perf_counter()
        for _ in range(repeat):
            t0 = time.perf_counter()
            with perf.stage('inference'):
                raw = backend.infer(batch)
            t1 = time.perf_counter()
            trace_ms.append(float(backend.info.extra['trace_wall_ms']))
            with perf.stage('postprocess'):
                for i in range(n):
                    resize_depth(raw[i], CAMERA_HW)
            t2 = time.perf_counter()
            timings.iter_ms.append((t1 - t0) * 1e3)
            timings.iter_images.append(n)
            timings.e2e_ms.append((t2 - t0) * 1e3)
            timings.e2e_images.append(n)
            perf.add_device_ms(trace_ms[-1] / n)
            perf.frame_done()
        timings.total_ms = (time.perf_counter() - t_all) * 1e3
        perf.merge_counts(backend.fallback_counts())
        mean_trace = float(np.mean(trace_ms))
        record = build_perf(
            timings, backend.info, perf, requested_backend='tt', fallback_reason=None,
            device_arg=device, strict=True,
            extra={'fps': 1e3 * n / mean_trace, 'fps_source': 'device (mean trace_wall_ms)',
                   'trace_wall_ms': mean_trace,
                   'trace_wall_ms_p50': float(np.percentile(trace_ms, 50)),
                   'trace_wall_ms_p95': float(np.percentile(trace_ms, 95)),
                   'postprocess_camera_hw': list(CAMERA_HW)})
        header = build_header(record, backend.info, getattr(backend, 'model_config', None))
        return record, header
    finally:
        backend.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().split('\n\n')[0])
    p.add_argument('--device', default='wormhole_n300', choices=sorted(vocabulary.TT_DEVICES))
    p.add_argument('--dp', type=int, default=None, help='chips (default: all on the board)')
    p.add_argument('--image-size', type=int, default=384)
    p.add_argument('--tt-execution-mode', default='trace_2cq',
                   choices=vocabulary.EXECUTION_MODES)
    p.add_argument('--weights', default='auto')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeat', type=int, default=50)
    p.add_argument('--batch-size', type=int, default=None, help='frames per call (default dp)')
    p.add_argument('--out', default=os.path.join(_ROOT, 'generated', 'bench_tt.json'))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')

    ok, reason = tt_device.detect()
    if not ok:
        print(f'bench_tt: no Tenstorrent device: {reason}. Nothing measured, no JSON written. '
              'Run this on a machine with a Wormhole N150/N300.', file=sys.stderr)
        return EXIT_NO_DEVICE
    from dpt_ros.perf.report import write_perf
    dp = args.dp or vocabulary.TT_DEVICES[args.device]
    record, header = measure(device=args.device, dp=dp, image_size=args.image_size,
                             mode=args.tt_execution_mode, weights=args.weights,
                             warmup=args.warmup, repeat=args.repeat,
                             batch_size=args.batch_size)
    paths = write_perf(args.out, record, header)
    print(f"{record['setting']} {args.tt_execution_mode}: device {record['fps']:.1f} FPS "
          f"(trace_wall_ms {record['trace_wall_ms']:.2f}), e2e {record['fps_e2e']:.1f} FPS, "
          f'program_config_fallback_total '
          f"{record['fallback_counts'].get('program_config_fallback_total')}")
    print('wrote ' + ' and '.join(paths))
    return 0


if __name__ == '__main__':
    sys.exit(main())
