"""
Estimate DPT-Large's device FPS on Wormhole boards from the mock dry-run's op list (a RANGE).

An ESTIMATE, not a measurement (no card here): dpt_ros/perf/tt_estimate.py holds the model,
its published sources and its named assumptions. This script dry-runs the program on a mock
chip (test/support/tt_mock_device) to get the device-op list of one forward at each size,
and ViT-B/16 224 batch 8 (our encoder with ViT-B dims) to calibrate on the tt-metal ViT
demo's published figures; then prints per stage and per board (N150, one N300
chip, N300 dp 2, T3000 dp 8) the low / central / high FPS and the op count, and writes JSON.

    .venv/bin/python bench/estimate_tt.py [--sizes 384,512] [--json generated/tt_estimate.json]
        [--keep-reports DIR | --reports DIR]     # save / reuse the dry-run reports
        [--precision accurate|fast] [--batch 1|2]  # the program's profile, per-chip batch

The calibration's ViT-B run is always built the same way (accurate, batch 8) and shown with
the demo's settings: only the DPT program changes with --precision / --batch.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_env  # noqa: E402

bench_env.import_paths()

from dpt_ros import vocabulary  # noqa: E402
from dpt_ros.perf import tt_estimate  # noqa: E402
from support import tt_mock_device  # noqa: E402  (the mock-device dry-run, test/support)

TARGET_FPS = 40.0                 # DPT-Large at 384, N300 dp 2 (the bounty's stage 3)
BOARD_NAMES = {'n150': 'N150', 'n300_chip': 'one N300 chip', 'n300_dp2': 'N300 dp 2',
               't3000_dp8': 'T3000 dp 8'}
VIT_ARGS = ['--size', '224', '--config', 'vit-b', '--backbone-only', '--batch',
            str(tt_estimate.VIT_BATCH)]


def dpt_args(size: int, precision: str = 'accurate', batch: int = 1) -> list[str]:
    return ['--size', str(size), '--modes', 'eager', '--strict', '--graph', '--frames', '1',
            '--precision', precision, '--batch', str(batch)]


def dry_runs(sizes: list[int], device: str, folder: pathlib.Path, reuse: bool,
             precision: str = 'accurate', batch: int = 1) -> dict:
    """Return {'vit-b': report, 384: report, ...}, run (or read from `folder` with reuse)."""
    wanted = {'vit-b': VIT_ARGS,
              **{size: dpt_args(size, precision, batch) for size in sizes}}
    reports = {}
    harness = None
    for key, args in wanted.items():
        path = folder / f'{"vit-b" if key == "vit-b" else f"dpt-{key}"}.json'
        if not reuse:
            if harness is None:
                harness = tt_mock_device.prepare()
            rep, tail = tt_mock_device.dry_run(harness, path, device=device, args=args)
            failed = {m: r.get('error') for m, r in rep.get('modes', {}).items()
                      if not r.get('ok')}
            if 'ops' not in rep or failed:     # a partial op list would under-count the frame
                raise SystemExit(f'dry-run {args} failed ({failed or "no ops"}):\n'
                                 f'{tail[-2000:]}')
        reports[key] = rep if not reuse else json.loads(path.read_text())
    return reports


def run(sizes: list[int], device: str, reports_dir: str | None, keep: str | None,
        precision: str = 'accurate', batch: int = 1) -> dict:
    """Estimate every size from fresh (or reused) dry-runs; return the JSON-ready result."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(reports_dir or keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        reports = dry_runs(sizes, device, folder, reuse=reports_dir is not None,
                           precision=precision, batch=batch)
    cal = tt_estimate.calibrate(reports['vit-b'])
    sizes_out = {}
    for size in sizes:
        est = tt_estimate.estimate(reports[size], cal)
        est['configs'] = reports[size].get('configs')
        sizes_out[str(size)] = est
    return {'what': 'ESTIMATE from the mock dry-run op list (no card): per-op roofline '
                    'calibrated like for like on the tt-metal ViT-B demo, per-op dispatch gap '
                    'per board, published dp scaling; a range, not a measurement',
            'device_of_dry_run': device, 'precision': precision, 'batch': batch,
            'sizes': sizes_out, 'calibration': cal,
            'dp_ratios': tt_estimate.dp_ratios(), 'sources': tt_estimate.sources(),
            'target_fps_n300_dp2_384': TARGET_FPS, 'seconds': time.perf_counter() - t0}


def print_table(result: dict) -> None:
    cal = result['calibration']
    print("Calibration (ViT-B/16 224 b8 with the demo's settings; per published row):")
    for row in cal['rows']:
        print(f"  kernel {row['kernel_samples_per_s']:.0f}/s, wall N150 "
              f"{row['wall_n150_samples_per_s']:.0f} / N300 {row['wall_n300_samples_per_s']:.0f}"
              f"/s -> gap {1e6 * row['gap_n150_s']:.2f} / {1e6 * row['gap_n300_s']:.2f} us/op, "
              'eff ' + ' / '.join(f"{row['eff'][lv]:.3f}" for lv in tt_estimate.LEVELS))
    for size, est in result['sizes'].items():
        chip = est['boards']['n300_chip']['stages_ms']
        print(f"\nDPT-Large {size}px — ESTIMATE (no card), {est['op_count']} device programs "
              'per frame:')
        print(f"{'stage':<12} {'ops':>5} {'GFLOP':>8} {'roofline ms':>12} "
              f"{'N300 chip ms: pess / central / opt':>36}")
        for name, st in est['stages'].items():
            c = chip[name]
            print(f"{name:<12} {st['ops']:>5} {st['gflop']:>8.1f} {st['roofline_ms']:>12.2f} "
                  f"{c['pessimistic']:>14.2f} / {c['central']:>7.2f} / {c['optimistic']:>6.2f}")
        print(f"{'board':<16} {'FPS low':>8} {'central':>8} {'high':>8}")
        for board, name in BOARD_NAMES.items():
            f = est['boards'][board]['fps']
            print(f"{name:<16} {f['low']:>8.1f} {f['central']:>8.1f} {f['high']:>8.1f}")
        runs = ', '.join(f"{BOARD_NAMES[b]} {est['boards'][b]['ms']['central']:.1f}"
                         for b in ('n150', 'n300_chip'))
        print(f"device ms per run of {est['batch']} frame(s) per chip, central (a frame's "
              f'device latency; dp adds chips, not latency): {runs}')
        top = list(est['by_op_ms'].items())[:6]
        print('central kernel ms by device op: ' + ', '.join(f'{k} {v:.2f}' for k, v in top))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--sizes', default='384,512')
    p.add_argument('--device', default='wormhole_n150', help='mock chip of the dry-runs')
    p.add_argument('--json', default=str(ROOT / 'generated' / 'tt_estimate.json'))
    p.add_argument('--reports', help='read the dry-run reports from this folder (no dry-run)')
    p.add_argument('--keep-reports', help='write the dry-run reports to this folder')
    p.add_argument('--precision', default='accurate', choices=vocabulary.TT_PRECISIONS,
                   help="the DPT program's encoder profile (tt/configs.py)")
    p.add_argument('--batch', type=int, default=1, help='frames per chip (throughput mode: 2)')
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(',')]
    try:
        result = run(sizes, args.device, args.reports, args.keep_reports, args.precision,
                     args.batch)
    except tt_mock_device.Unavailable as exc:
        print(f'estimate_tt: {exc}', file=sys.stderr)
        return 2
    print_table(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
