"""
The first-card acceptance run: does DPT-Large work on this Tenstorrent board, how fast.

    .venv/bin/python bench/first_card.py --device wormhole_n300
        [--sizes 384,512] [--warmup 2] [--repeat 20] [--soak 500] [--hang-timeout 60]
        [--modes eager,trace,trace_2cq] [--precisions accurate,fast] [--weights auto]
        [--estimate generated/tt_estimate.json] [--out generated/first_card]

One report, <out>/first_card.json and <out>/first_card.html, with: the board (chips, grid per
chip, dispatch, harvesting, ttnn version); per-stage PCC against torch fp32 (embeddings, the
four taps, reassemble, each fusion level, head, depth) at each size and encoder precision
profile (accurate, fast: tt/configs.py) on every chip; compile and trace-capture times and
trace sizes; device FPS and e2e FPS per profile and mode (eager, trace, trace_2cq) at dp 1 and
dp = the board's chips, each beside the estimate (dpt_ros/perf/tt_estimate.py, on the op list
captured from this board, calibrated by bench/estimate_tt.py's JSON); and an
N-frame soak on all chips with a hang watchdog: a frame not back within --hang-timeout is
reported as a hang (the report is written, the process exits 3) instead of waited for.

Without a card it exits 2 and writes nothing. `--double` runs the same plan on the device
double (test/support/doubles; its numbers are a CPU stand-in's), `--mock` on a mock board
(test/support/tt_mock_device: ttnn's host-side checks; no numerics, no speed); both say in the
report which parts only a card can answer, and why they were skipped.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import html
import json
import logging
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))

import bench_env  # noqa: E402

bench_env.import_paths()   # the device double and the mock: `support` (test/support)

from dpt_ros import vocabulary  # noqa: E402
import numpy as np  # noqa: E402

log = logging.getLogger('first_card')
EXIT_NO_DEVICE, EXIT_FAILED, EXIT_HANG = 2, 1, 3
MODES = ('eager', 'trace', 'trace_2cq')
PCC_MIN = 0.99
NOT_A_CARD = {'double': 'the device double computes on the CPU: not a card figure',
              'mock': 'a mock board runs no kernels (readbacks are zeros, ops take no time)'}
BOARD_OF = {('wormhole_n150', 1): 'n150', ('wormhole_n300', 1): 'n300_chip',
            ('wormhole_n300', 2): 'n300_dp2', ('wormhole_t3000', 8): 't3000_dp8'}
# The start-up self-check compares each chip's depth with torch: on a mock (zeros) it would
# refuse every strict start, so there the timed runs go without it (and say so).
SELFCHECK_OFF = {'mock': 'selfcheck off: ' + NOT_A_CARD['mock']}


def skipped(reason: str, **extra) -> dict:
    return {'status': 'skipped', 'reason': reason, **extra}


# ---- the board -------------------------------------------------------------------------------

def board_section(kind: str, target: str) -> dict:
    """Chips, grid per chip, dispatch, harvesting, ttnn version (opened once, eager)."""
    from importlib import metadata

    import ttnn

    from dpt_ros.tt.configs import device_grid
    from dpt_ros.tt.device import open_devices
    out = {'device': kind, 'chips': vocabulary.TT_DEVICES[kind], 'target': target,
           'ttnn_version': metadata.version('ttnn')}
    devices = open_devices(kind, vocabulary.TT_DEVICES[kind], execution_mode='eager')
    try:
        out['grid_per_chip'] = [list(device_grid(c)) for c in devices.chips]
        out['device_ids'] = list(devices.ids)
    finally:
        devices.close()
    grids = {tuple(g) for g in out['grid_per_chip']}
    # ttnn 0.81.1 does not say which dispatch a device opened with; the grid shows it.
    out['dispatch'] = ('worker, inferred from the 8x7 grid' if (8, 7) in grids else
                       'ethernet, inferred from the 8x8 grid' if kind != 'wormhole_n150'
                       else 'worker cores outside the 8x8 grid (N150)')
    if target == 'double':
        out['harvesting'] = skipped('the device double has no cluster to describe')
    else:
        out['harvesting'] = _harvesting(ttnn)
    return out


def _harvesting(ttnn) -> dict:
    """Harvest masks and board types from the cluster descriptor ttnn serialises."""
    import yaml
    try:
        path = ttnn.cluster.serialize_cluster_descriptor()
        desc = yaml.safe_load(pathlib.Path(path).read_text())
    except Exception as exc:  # an older ttnn or a driver without the call
        return skipped(f'cluster descriptor unavailable: {exc}')
    harvesting = desc.get('harvesting') or {}
    masks = {str(chip): v.get('harvest_mask') for chip, v in harvesting.items()}
    boards = [{k: v for item in b for k, v in item.items()} for b in desc.get('boards') or []]
    return {'status': 'ok', 'harvest_mask_per_chip': masks, 'boards': boards,
            'arch': desc.get('arch'), 'chips_with_mmio': desc.get('chips_with_mmio')}


# ---- per-stage PCC on every chip -------------------------------------------------------------

def bundled_input(size: int) -> np.ndarray:
    """Return the astronaut picture as the processor's normalised (1, 3, S, S) tensor."""
    from skimage import data

    from dpt_ros.inference.preprocess import preprocess
    return preprocess(data.astronaut(), size)[None]


def pcc_section(kind: str, size: int, weights: str, target: str,
                precision: str = 'accurate') -> dict:
    """Per-stage PCC of every chip's TtDPT against HF fp32: one size and profile (eager)."""
    from dpt_ros.demo import stage_pcc
    from dpt_ros.inference.hf_model import load_model
    from dpt_ros.tt.configs import build_configs, device_grid
    from dpt_ros.tt.device import open_devices
    from dpt_ros.tt.fallbacks import FallbackCounter
    from dpt_ros.tt.model import TtDPT
    from dpt_ros.tt.weights import prepare_weights
    loaded = load_model(weights, image_size=size)
    ref = stage_pcc.reference_stages(loaded.model, bundled_input(size))
    devices = open_devices(kind, vocabulary.TT_DEVICES[kind], execution_mode='eager')
    chips = {}
    try:
        cfg = build_configs(loaded.config, kind, size, 1, grid=device_grid(devices.chips[0]),
                            precision=precision)
        prepared = prepare_weights(loaded.model.state_dict(), cfg)
        for cid, chip in zip(devices.ids, devices.chips):
            tt = TtDPT(prepared.params, loaded.config, chip, cfg, FallbackCounter(strict=True))
            chips[cid] = stage_pcc.compare(ref, stage_pcc.tt_stages(tt, chip, ref))
    finally:
        devices.close()
    worst = min(min(v.values()) for v in chips.values())
    out = {'weights': loaded.weights, 'precision': precision, 'per_chip': chips,
           'worst': worst}
    if target == 'mock':
        return dict(out, status='skipped', reason='ran every stage on every chip (host checks '
                    'passed), but ' + NOT_A_CARD['mock'] + ': no PCC to judge')
    return dict(out, status='ok' if worst >= PCC_MIN else 'failed', min_pcc=PCC_MIN)


# ---- speed per mode and dp, compile and capture ----------------------------------------------

class CaptureTimer:
    """Time each trace capture of the executor (ChipPipeline._capture), in this process."""

    def __init__(self):
        from dpt_ros.tt.executor import ChipPipeline
        self.seconds: list[float] = []
        real = ChipPipeline._capture

        def timed(pipe, program, attr):
            t0 = time.perf_counter()
            try:
                return real(pipe, program, attr)
            finally:
                self.seconds.append(time.perf_counter() - t0)
        ChipPipeline._capture = timed


def perf_entry(kind: str, size: int, mode: str, dp: int, args, timer: CaptureTimer,
               estimate: dict | None, target: str, precision: str = 'accurate') -> dict:
    """One strict bench_tt.measure run: device / e2e FPS, compile, capture, trace, estimate."""
    import bench_tt
    n_before = len(timer.seconds)
    try:
        record, _ = bench_tt.measure(device=kind, dp=dp, image_size=size, mode=mode,
                                     weights=args.weights, warmup=args.warmup,
                                     repeat=args.repeat, precision=precision,
                                     selfcheck=target not in SELFCHECK_OFF)
    except Exception as exc:
        return {'status': 'failed', 'error': f'{type(exc).__name__}: {exc}'[:500]}
    captures = timer.seconds[n_before:]
    out = {'status': 'ok', 'fps_device': record.get('fps'), 'fps_e2e': record.get('fps_e2e'),
           'trace_wall_ms': record.get('trace_wall_ms'),
           'compile_time_s': record.get('compile_time_s'),
           'first_run_s': record.get('first_run_s'),
           'capture_s': sum(captures) if captures else None, 'captures': len(captures),
           'program_config_fallback_total':
               record.get('fallback_counts', {}).get('program_config_fallback_total')}
    sizes = {k: v for k, v in record.items()     # whatever the perf JSON says of the traces
             if 'trace' in k and ('bytes' in k or 'size' in k) and k != 'trace_region_size'}
    out['trace_sizes'] = sizes or skipped(
        'this build reports no captured trace size to Python (ttnn 0.81.1 has no call for it)')
    out['trace_region_size'] = record.get('trace_region_size')
    out['estimate'] = estimate_beside(estimate, kind, dp, mode)
    if target != 'card':
        out['timing_note'] = NOT_A_CARD[target]
    return out


def estimate_beside(est: dict | None, kind: str, dp: int, mode: str) -> dict:
    """Return the estimate's FPS range for this board and dp (traced modes only)."""
    if est is None or est.get('status') != 'ok':
        return skipped((est or {}).get('reason', 'no estimate for this size'))
    if mode == 'eager':
        return skipped('eager runs dispatch every op from the host: not modelled')
    board = BOARD_OF.get((kind, dp))
    if board is None:
        return skipped(f'no estimate for {kind} at dp {dp}')
    return {'status': 'ok', 'board': board, 'fps': est['boards'][board]['fps'],
            'source': est['source']}


# ---- the estimate from this board's own op list ----------------------------------------------

def estimate_section(kind: str, size: int, weights: str, target: str, calibration,
                     precision: str = 'accurate') -> dict:
    """te.estimate on an op list captured here (card or mock), one size and profile."""
    from dpt_ros.perf import tt_estimate
    if calibration is None:
        return skipped('no calibration: run bench/estimate_tt.py (it writes the JSON that '
                       '--estimate reads)')
    if target == 'double':
        return skipped('the device double runs no device programs to capture')
    report = capture_op_list(kind, size, weights, precision)
    est = tt_estimate.estimate(report, calibration)
    return {'status': 'ok', 'source': f'op list captured on this {target}', 'op_count':
            est['op_count'], 'boards': est['boards'], 'stages': est['stages']}


def capture_op_list(kind: str, size: int, weights: str, precision: str = 'accurate') -> dict:
    """Graph-capture one eager forward on chip 0 (the dry-run's capture, on this device)."""
    import ttnn

    from dpt_ros.inference.hf_model import load_model
    from dpt_ros.tt.device import open_devices
    from dpt_ros.tt.model import build_tt_model
    from support.tt_mock_device import dry_run_process as dry
    wrapped = {name: getattr(ttnn, name) for name in dry._COUNTED}
    wrapped_tf = {name: getattr(ttnn.transformer, name) for name in dry._COUNTED_TRANSFORMER}
    loaded = load_model(weights, image_size=size)
    devices = open_devices(kind, 1, execution_mode='eager')
    try:
        chip = devices.chips[0]
        tt = build_tt_model(loaded.model, chip, device_name=kind, image_size=size,
                            precision=precision)
        x = ttnn.to_device(tt.preprocess_host(bundled_input(size)), chip)
        tt.forward(x)                                   # weights prepared outside the capture
        report = {'configs': tt.cfg.describe()}
        counter = dry.OpCounter(ttnn)
        try:
            with dry.captured_ops(ttnn, chip, report, counter):
                tt.forward(x)
        finally:   # the counting wrappers must not slow the runs after this one
            for name, fn in wrapped.items():
                setattr(ttnn, name, fn)
            for name, fn in wrapped_tf.items():
                setattr(ttnn.transformer, name, fn)
    finally:
        devices.close()
    return report


def load_calibration(path: str | None):
    if not path or not os.path.exists(path):
        return None
    return json.loads(pathlib.Path(path).read_text()).get('calibration')


# ---- the soak --------------------------------------------------------------------------------

def soak(backend, batch: np.ndarray, frames: int, timeout_s: float) -> dict:
    """
    Run `frames` calls of `batch`, each watched: one not back within timeout_s is a hang.

    A hung call is left behind (a device call cannot be interrupted); the result says which
    frame hung and the caller must not wait for it or close the device under it.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='soak')
    latencies, failures = [], []
    t_all = time.perf_counter()
    try:
        for i in range(frames):
            t0 = time.perf_counter()
            future = pool.submit(backend.infer, batch)
            try:
                out = future.result(timeout=timeout_s)
            except concurrent.futures.TimeoutError:
                return {'status': 'hang', 'hang': {'frame': i, 'timeout_s': timeout_s},
                        'frames_done': i, 'failures': failures}
            except Exception as exc:
                failures.append({'frame': i, 'error': f'{type(exc).__name__}: {exc}'[:300]})
                continue
            latencies.append((time.perf_counter() - t0) * 1e3)
            if not np.all(np.isfinite(out)):
                failures.append({'frame': i, 'error': 'non-finite output'})
    finally:
        pool.shutdown(wait=False)
    wall = time.perf_counter() - t_all
    lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {'status': 'ok' if not failures else 'failed', 'frames_done': len(latencies),
            'frames': frames, 'images': len(latencies) * len(batch), 'failures': failures,
            'latency_ms_p50': float(np.percentile(lat, 50)),
            'latency_ms_max': float(np.max(lat)), 'wall_s': wall}


def soak_section(kind: str, size: int, args, target: str) -> dict:
    """All chips, trace_2cq, strict, --soak calls of one frame per chip, watched."""
    from dpt_ros.backends import BackendOptions, tt_backend
    import bench_tt
    dp = vocabulary.TT_DEVICES[kind]
    # A mock reads back zeros: its self-check rightly refuses every chip (PCC is its own
    # section, skipped there with that reason).
    backend = tt_backend.create(BackendOptions(weights=args.weights, image_size=size,
                                               device=kind, dp=dp, execution_mode='trace_2cq',
                                               strict=True,
                                               selfcheck=target not in SELFCHECK_OFF))
    result = soak(backend, bench_tt._frames(dp, size), args.soak, args.hang_timeout)
    result.update(dp=dp, size=size, mode='trace_2cq')
    if result['status'] == 'hang':
        return result               # closing under a hung call could hang as well
    result['chip_stats'] = backend.chip_stats()
    backend.close()
    if target != 'card':
        result['timing_note'] = NOT_A_CARD[target]
    return result


# ---- the whole run ---------------------------------------------------------------------------

def run(args, target: str) -> dict:
    """Run every check in order; one that raises is reported as failed and the rest go on."""
    kind = args.device
    sizes = [int(s) for s in args.sizes.split(',')]
    profiles = args.precisions.split(',')
    runs = [(s, p) for s in sizes for p in profiles]      # 'size profile' keys the report
    chips = vocabulary.TT_DEVICES[kind]
    dps = sorted({1, chips})
    report = {'what': 'first-card acceptance run (bench/first_card.py)', 'target': target,
              'started': datetime.datetime.now(datetime.timezone.utc).isoformat(),
              'argv': sys.argv[1:], 'device': kind, 'sizes': sizes, 'precisions': profiles}
    if target != 'card':
        report['not_a_card'] = NOT_A_CARD[target]
    if target in SELFCHECK_OFF:
        report['selfcheck'] = SELFCHECK_OFF[target]
    report['board'] = guarded(board_section, kind, target)
    calibration = load_calibration(args.estimate)
    report['estimate'] = {f'{s} {p}': guarded(estimate_section, kind, s, args.weights, target,
                                              calibration, p) for s, p in runs}
    report['pcc'] = {f'{s} {p}': guarded(pcc_section, kind, s, args.weights, target, p)
                     for s, p in runs}
    timer = CaptureTimer()
    report['perf'] = {}
    for s, p in runs:
        for mode in args.modes.split(','):
            for dp in dps:
                report['perf'][f'{s} {p} {mode} dp{dp}'] = dict(
                    guarded(perf_entry, kind, s, mode, dp, args, timer,
                            report['estimate'][f'{s} {p}'], target, p),
                    size=s, precision=p, mode=mode, dp=dp)
    report['soak'] = guarded(soak_section, kind, sizes[0], args, target) if args.soak else \
        skipped('--soak 0')
    report['verdict'] = verdict(report)
    return report


def guarded(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as exc:
        log.exception('%s failed', fn.__name__)
        return {'status': 'failed', 'error': f'{type(exc).__name__}: {exc}'[:500]}


def verdict(report: dict) -> dict:
    """Works here = no check failed and no hang; says which checks failed or were skipped."""
    checks = {'board': report['board'], 'soak': report['soak']}
    checks.update({f'pcc {k}': v for k, v in report['pcc'].items()})
    checks.update({f'perf {k}': v for k, v in report['perf'].items()})
    failed = sorted(k for k, v in checks.items() if v.get('status') in ('failed', 'hang'))
    skipped_ = sorted(k for k, v in checks.items() if v.get('status') == 'skipped')
    return {'works': not failed, 'failed': failed, 'skipped': skipped_,
            'hang': report['soak'].get('status') == 'hang'}


# ---- the page --------------------------------------------------------------------------------

def _fmt(v) -> str:
    if isinstance(v, float):
        return f'{v:.4f}' if abs(v) < 10 else f'{v:.1f}'
    return html.escape(str(v))


def _range(est: dict) -> str:
    if est.get('status') != 'ok':
        return f"<i>{html.escape(est.get('reason', ''))}</i>"
    f = est['fps']
    return f"{f['low']:.1f} – {f['central']:.1f} – {f['high']:.1f}"


def render_html(report: dict) -> str:
    """Return the page a person reads: verdict, board, PCC per stage and chip, speed."""
    v = report['verdict']
    rows = [f"<h1>First-card run: {'WORKS' if v['works'] else 'DOES NOT WORK'} here</h1>",
            f"<p>{html.escape(report['device'])}, target <b>{report['target']}</b>, "
            f"{html.escape(report['started'])}. {html.escape(report.get('not_a_card', ''))}</p>",
            f"<p>Failed: {html.escape(', '.join(v['failed']) or 'none')}. Skipped: "
            f"{html.escape(', '.join(v['skipped']) or 'none')}.</p>", '<h2>Board</h2><table>']
    for k, val in report['board'].items():
        rows.append(f'<tr><th>{html.escape(k)}</th><td>{_fmt(val)}</td></tr>')
    rows.append('</table><h2>PCC vs torch fp32, per stage and chip</h2>')
    for run, sec in report['pcc'].items():      # 'size profile'
        rows.append(f"<h3>{run}: {sec.get('status')} {html.escape(sec.get('reason', ''))}"
                    f"{html.escape(sec.get('error', ''))}</h3>")
        chips = sec.get('per_chip') or {}
        if chips:
            names = list(next(iter(chips.values())))
            rows.append('<table><tr><th>stage</th>' + ''.join(
                f'<th>{html.escape(c)}</th>' for c in chips) + '</tr>')
            for n in names:
                rows.append(f'<tr><td>{n}</td>' + ''.join(
                    f'<td>{_fmt(chips[c][n])}</td>' for c in chips) + '</tr>')
            rows.append('</table>')
    rows.append('<h2>Speed (FPS) beside the estimate (low – central – high)</h2><table><tr>'
                '<th>run</th><th>status</th><th>device FPS</th><th>e2e FPS</th>'
                '<th>estimate</th><th>compile s</th><th>capture s</th></tr>')
    for name, p in report['perf'].items():
        rows.append(f"<tr><td>{name}</td><td>{p.get('status')} "
                    f"{html.escape(p.get('error', ''))}</td><td>{_fmt(p.get('fps_device'))}</td>"
                    f"<td>{_fmt(p.get('fps_e2e'))}</td><td>{_range(p.get('estimate', {}))}</td>"
                    f"<td>{_fmt(p.get('compile_time_s'))}</td><td>{_fmt(p.get('capture_s'))}"
                    '</td></tr>')
    s = report['soak']
    rows += ['</table><h2>Soak</h2><pre>', html.escape(json.dumps(s, indent=1, default=str)),
             '</pre>']
    body = '\n'.join(rows)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>first card '
            f'{html.escape(report["device"])}</title><style>table{{border-collapse:collapse}}'
            f'td,th{{border:1px solid #999;padding:2px 6px}}</style></head><body>{body}'
            '</body></html>')


def write(report: dict, out_dir: str) -> tuple[str, str]:
    """Write <out>/first_card.json and .html; return their paths."""
    from dpt_ros.perf.report import write_json
    os.makedirs(out_dir, exist_ok=True)
    paths = (os.path.join(out_dir, 'first_card.json'), os.path.join(out_dir, 'first_card.html'))
    write_json(paths[0], report)
    pathlib.Path(paths[1]).write_text(render_html(report))
    return paths


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--device', default='wormhole_n300', choices=sorted(vocabulary.TT_DEVICES))
    p.add_argument('--sizes', default='384,512')
    p.add_argument('--modes', default=','.join(MODES))
    p.add_argument('--precisions', default=','.join(vocabulary.TT_PRECISIONS),
                   help='encoder precision profiles to run (each size, mode and dp)')
    p.add_argument('--weights', default='auto')
    p.add_argument('--warmup', type=int, default=2, help='untimed calls per perf run')
    p.add_argument('--repeat', type=int, default=20, help='timed calls per perf run')
    p.add_argument('--soak', type=int, default=500, help='calls in the soak (0: none)')
    p.add_argument('--hang-timeout', type=float, default=60.0, help='s a soak call may take')
    p.add_argument('--estimate', default=str(ROOT / 'generated' / 'tt_estimate.json'),
                   help="bench/estimate_tt.py's JSON (its calibration)")
    p.add_argument('--out', default=str(ROOT / 'generated' / 'first_card'))
    where = p.add_mutually_exclusive_group()
    where.add_argument('--double', action='store_true', help='run on the device double (test)')
    where.add_argument('--mock', action='store_true', help='run on a mock board (host checks)')
    p.add_argument('--in-mock', action='store_true', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    if args.mock:
        return _in_mock(args, argv if argv is not None else sys.argv[1:])
    if args.double:
        target = 'double'
        from support.doubles.tt_device_double import tt_device_double
        with tt_device_double(num_devices=vocabulary.TT_DEVICES[args.device]):
            report = run(args, target)
    elif args.in_mock:
        from dpt_ros.tt import device as tt_device
        tt_device.allow_mock_cluster()
        report = run(args, 'mock')
    else:
        from dpt_ros.tt import device as tt_device
        ok, reason = tt_device.detect()
        if not ok:
            print(f'first_card: no Tenstorrent device: {reason}. Nothing run, nothing written '
                  '(--double / --mock show the report without a card).', file=sys.stderr)
            return EXIT_NO_DEVICE
        report = run(args, 'card')
    paths = write(report, args.out)
    v = report['verdict']
    print(f"first_card: {'WORKS' if v['works'] else 'DOES NOT WORK'} on {args.device} "
          f"({report['target']}); failed: {v['failed'] or 'none'}; wrote {' and '.join(paths)}")
    if v['hang']:
        sys.stdout.flush()
        os._exit(EXIT_HANG)     # a hung device call would block interpreter exit
    return 0 if v['works'] else EXIT_FAILED


def _in_mock(args, argv: list[str]) -> int:
    """Re-run this script on a mock board (the dry-run harness's environment)."""
    from support import tt_mock_device as mock
    try:
        harness = mock.prepare()
    except mock.Unavailable as exc:
        print(f'first_card: {exc}', file=sys.stderr)
        return EXIT_NO_DEVICE
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()),
           *[a for a in argv if a != '--mock'], '--in-mock']
    return subprocess.run(cmd, env=harness.env(args.device), cwd=str(ROOT)).returncode


if __name__ == '__main__':
    sys.exit(main())
