"""
PCC of a backend against the CPU fp32 reference, per image, plus its speed.

    python -m dpt_ros.eval_pcc [--image X | --images-dir D] [--device cpu|cuda|wormhole_n300..]
        [--tt-run] [--backend auto|openvino|torch] [--dtype auto|fp32|bf16] [--compile]
        [--weights auto]
        --dump-json X.json

The backend under test is the runner's (OpenVINO on the CPU where it is installed). The
reference is the torch backend on the CPU in fp32, eager, with the same weights. Both
outputs are compared on the model's raw `predicted_depth` (S x S) — the tensor every backend
produces — and on the input-sized depth after post-processing. `--backend torch --dtype fp32`
is the baseline: PCC 1.0 by construction, and its FPS is the CPU reference speed. `--dtype`
defaults to auto (bf16 where the CPU runs it natively, else fp32); the JSON's backend names
`dtype` (executed) and `dtype_requested`. `--min-pcc` turns the result into a pass/fail exit
status for scripts.

Exit status: 0 when every processed image passed (or no --min-pcc), 1 when nothing could be
processed, 2 for invalid command lines, 3 when some image's PCC is below --min-pcc.
"""
from __future__ import annotations

import logging
import sys
import time

from dpt_ros.demo import runner
from dpt_ros.depth.pcc import max_abs_diff, pcc
from dpt_ros.errors import InvalidImage
import numpy as np

log = logging.getLogger('dpt_ros.demo.eval_pcc')


def build_parser():
    """eval_pcc's flags: the runner's source/device/backend flags plus its own."""
    p = runner.build_parser('dpt_ros.demo.eval_pcc',
                            'PCC of a backend vs the CPU fp32 reference (same weights).')
    p.add_argument('--dump-json', help='write the per-image results and summary here')
    p.add_argument('--min-pcc', type=float, default=None,
                   help='exit 3 when any image scores below this PCC')
    p.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    return p


def _time_backend(backend, x: np.ndarray, warmup: int, repeat: int) -> tuple[np.ndarray, list]:
    """Run x through the backend (warm-up untimed); return the last output and the ms list."""
    out = None
    for _ in range(warmup):
        out = backend.infer(x)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = backend.infer(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return out, times


def _load(args, perf):
    """Return (images, failed files, loaded model); raise RunFailed when nothing can run."""
    from dpt_ros.inference.hf_model import load_model, WeightsNotFound
    try:
        paths = runner.collect_sources(args)
    except InvalidImage as exc:
        raise runner.RunFailed(str(exc)) from exc
    images, failed = runner.load_sources(paths, perf)
    if not images:
        raise runner.RunFailed('no image could be read: ' +
                               '; '.join(f['message'] for f in failed))
    try:
        loaded = load_model(args.weights, seed=args.seed, image_size=args.image_size)
    except WeightsNotFound as exc:
        raise runner.RunFailed(str(exc)) from exc
    if loaded.is_random:
        log.warning('*** RANDOM WEIGHTS (%s): PCC compares two runs of an untrained model; it '
                    'checks numerics, not depth quality. ***', loaded.weights)
    return images, failed, loaded


def _compare(args, pipe, im, r_ref) -> dict:
    """Return one image's row: the backend under test against the reference output."""
    from dpt_ros.inference.postprocess import resize_depth
    # What the node gives this backend: uint8 pixels where it folds the
    # normalisation in (TT), the reference's own tensor otherwise.
    x = pipe.model_input(im.rgb)
    try:
        out, times = _time_backend(pipe.backend, x[None], args.warmup, args.repeat)
    except Exception as exc:  # one failing image must not hide the others
        log.error('%s: backend failed: %s', im.name, exc)
        return {'name': im.name, 'path': im.path, 'error': f'{exc}'}
    raw = out[0]
    t0 = time.perf_counter()
    depth = resize_depth(raw, im.rgb.shape[:2])
    post_ms = (time.perf_counter() - t0) * 1e3
    depth_ref = resize_depth(r_ref, im.rgb.shape[:2])
    row = {
        'name': im.name, 'path': im.path, 'hw': list(im.rgb.shape[:2]),
        'note': im.note or None,
        'pcc': pcc(raw, r_ref), 'pcc_depth': pcc(depth, depth_ref),
        'max_abs_diff': max_abs_diff(raw, r_ref),
        'ref_range': [float(np.min(r_ref)), float(np.max(r_ref))],
        'infer_ms_mean': float(np.mean(times)), 'infer_ms_min': float(np.min(times)),
        'postprocess_ms': post_ms,
    }
    log.info('%s: PCC %.6f (input-sized %.6f), %.1f ms', im.name, row['pcc'],
             row['pcc_depth'], row['infer_ms_mean'])
    return row


def evaluate(args) -> dict:
    """Run the reference then the backend under test; returns the JSON-ready summary."""
    from dpt_ros.backends import reference
    from dpt_ros.inference.preprocess import preprocess
    from dpt_ros.perf.stats import PerfStats
    from dpt_ros.serving.pipeline import DepthPipeline
    from dpt_ros.serving.supervisor import BackendSupervisor

    perf = PerfStats()
    images, failed, loaded = _load(args, perf)
    inputs = [preprocess(im.rgb, args.image_size) for im in images]

    # 1) The reference: torch, CPU, fp32, eager, same weights.
    ref = reference.start_reference(runner.backend_options(args), loaded)
    try:
        ref_raw, ref_ms = reference.run_reference(ref, inputs, warmup=1)
    finally:
        ref.close()

    # 2) The backend under test, started under the runner's fallback policy.
    started = runner.start_backend(args, loaded)
    pipe = DepthPipeline(BackendSupervisor(started, perf=perf))
    try:
        rows = [_compare(args, pipe, im, r_ref) for im, r_ref in zip(images, ref_raw)]
        pipe.sync_counts()
    finally:
        pipe.close()
    return _summary(args, started, loaded, rows, failed, ref_ms, perf.snapshot())


def _summary(args, started, loaded, rows, failed, ref_ms, snap) -> dict:
    from dpt_ros.perf.report import _clean, host, versions
    info = started.backend.info
    ok = [r for r in rows if 'pcc' in r]
    if not ok:
        raise runner.RunFailed('the backend failed on every image: ' +
                               '; '.join(r['error'] for r in rows))
    pccs = [r['pcc'] for r in ok]
    mean_ms = float(np.mean([r['infer_ms_mean'] for r in ok]))
    # The baseline is what executed: torch on the CPU in fp32, eager (auto may resolve so).
    ran = (info.name, info.device, info.dtype, info.execution_mode)
    is_baseline = (args.backend == 'torch' and args.device == 'cpu'
                   and ran == ('torch', 'cpu', 'fp32', 'eager'))
    summary = {
        'device': args.device, 'mode': 'tt' if info.name == 'tt' else info.device,
        'baseline': is_baseline,
        'backend': {'requested': started.requested, 'running': info.name,
                    'running_device': info.device, 'dtype': info.dtype,
                    'dtype_requested': info.dtype_requested or None,
                    'dtype_text': info.dtype_text,
                    'execution_mode': info.execution_mode, 'dp': info.dp,
                    'fell_back': started.fell_back, 'fallback_reason': started.fallback_reason},
        'reference': {'backend': 'torch', 'device': 'cpu', 'dtype': 'fp32', 'mode': 'eager',
                      'fps': 1e3 / float(np.mean(ref_ms)), 'ms_mean': float(np.mean(ref_ms))},
        'weights': loaded.weights, 'weights_random': loaded.is_random,
        'image_size': args.image_size,
        'num_images': len(ok), 'failed_images': failed + [r for r in rows if 'error' in r],
        'pcc_min': float(np.nanmin(pccs)), 'pcc_mean': float(np.nanmean(pccs)),
        'pcc_depth_min': float(np.nanmin([r['pcc_depth'] for r in ok])),
        'min_pcc_required': args.min_pcc,
        'passed': None if args.min_pcc is None else bool(np.nanmin(pccs) >= args.min_pcc),
        'fps': 1e3 / mean_ms,
        'speedup_vs_reference': float(np.mean(ref_ms)) / mean_ms,
        'trace_wall_ms': info.extra.get('trace_wall_ms'),
        'fallback_counts': {k: v for k, v in snap.items()
                            if isinstance(v, int) and (k.endswith('_count') or
                                                       k.endswith('_total'))},
        'warmup': args.warmup, 'repeat': args.repeat,
        'images': rows, 'versions': versions(), 'host': host(),
    }
    return _clean(summary)


def main(argv=None) -> int:
    """Console entry point; returns the exit status (see module doc)."""
    p = build_parser()
    args = p.parse_args(argv)
    runner.setup_logging(args.verbose)
    runner.check_args(p, args)
    try:
        summary = evaluate(args)
    except runner.RunFailed as exc:
        log.error('%s', exc)
        print(f'eval_pcc: nothing evaluated: {exc}', file=sys.stderr)
        return 1
    if args.dump_json:
        from dpt_ros.perf.report import write_json
        write_json(args.dump_json, summary)
    b = summary['backend']
    print(f"{'image':<24} {'PCC':>10} {'PCC(in)':>10} {'ms':>9}")
    for r in summary['images']:
        if 'pcc' in r:
            print(f"{r['name'][:24]:<24} {r['pcc']:>10.6f} {r['pcc_depth']:>10.6f} "
                  f"{r['infer_ms_mean']:>9.1f}")
        else:
            print(f"{r['name'][:24]:<24} failed: {r['error']}")
    print(f"{b['running']}/{b['running_device']} dtype {b['dtype_text']} {b['execution_mode']}: "
          f"PCC min {summary['pcc_min']:.6f} mean {summary['pcc_mean']:.6f}, "
          f"{summary['fps']:.2f} FPS ({summary['speedup_vs_reference']:.2f}x the CPU fp32 "
          f"reference at {summary['reference']['fps']:.2f} FPS)"
          + (f" [fallback: {b['fallback_reason']}]" if b['fell_back'] else '')
          + (' [RANDOM WEIGHTS]' if summary['weights_random'] else ''))
    if args.dump_json:
        print(f'wrote {args.dump_json}')
    if summary['passed'] is False:
        print(f"eval_pcc: PCC {summary['pcc_min']:.6f} is below --min-pcc {args.min_pcc}",
              file=sys.stderr)
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main())
