"""
Command-line runner, flag-compatible with tt-metal's DPT-Large demo runner.

    python -m dpt_ros.runner [--image X | --images-dir D] [--device cpu|cuda|wormhole_n150|
        wormhole_n300|wormhole_t3000] [--tt-run] [--dp 1..8] [--batch-size N] [--warmup 1]
        [--repeat 3] [--tt-execution-mode eager|trace|trace_2cq] [--dump-depth X.npy]
        [--dump-depth-color X.png] [--dump-perf X.json] [--weights auto] [--dtype auto|fp32|bf16]
        [--backend auto|openvino|torch] [--no-selfcheck] [--selfcheck-min-pcc 0.99]

With neither --image nor --images-dir it runs on a bundled offline picture (scikit-image's
astronaut). Depth dumps are input-sized float32 relative inverse depth (.npy) and a colour PNG.
The perf JSON carries the reference's keys plus ours; `<stem>_header.json` sits beside it.

Backend: --tt-run runs the TT model; otherwise `--backend auto` (the default) runs OpenVINO on
the CPU where openvino is importable, and torch where it is not (said in the log), or when
--device cuda or --compile asks for torch; `--backend torch --dtype fp32` is the numerical
reference. `--dtype auto` (the default) is bf16 where the CPU runs it natively, else fp32; the
log, the summary line and the perf JSON name requested and executed dtype both.

Fallback policy: a CPU/CUDA run that asks for CUDA where there is none falls back to the CPU
(counted). A --tt-run is strict by default: it refuses to run anywhere but on the TT device and
turns any TT program-config/host fallback into an error, because its perf figures would
otherwise describe something else. --no-strict lets it fall back to the torch CPU backend,
recorded in the JSON as backend_fallback_count=1 with the reason. --no-fallback refuses the
backend fallback on any run. A --tt-run first checks each chip's depth on the bundled picture
against torch fp32 (--selfcheck-min-pcc, --no-selfcheck): strict, any chip below fails the run.

Exit status: 0 when at least one image was processed (bad files are skipped with a message and
counted), 1 when nothing could be processed, 2 for invalid command lines.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import cv2
from dpt_ros.backends import BackendOptions, create_backend
from dpt_ros.backends.cli_options import options_from_args
from dpt_ros.demo.image_files import (default_image, list_images, load_image,
                                      SUPPORTED_EXTENSIONS)
from dpt_ros.errors import BackendError, InvalidImage, RunFailed, WeightsNotFound
from dpt_ros.inference.colorize import COLORMAPS, DEFAULT_COLORMAP, NORM_MODES
from dpt_ros.inference.hf_model import make_config
from dpt_ros.perf.report import build_header, build_perf, header_path, RunTimings, write_perf
from dpt_ros.perf.stats import PerfStats
from dpt_ros.serving.pipeline import DepthPipeline
from dpt_ros.serving.supervisor import BackendSupervisor
from dpt_ros.vocabulary import (CPU_BACKEND_CHOICES, DEFAULT_DTYPE, DEVICES, DTYPES,
                                EXECUTION_MODES, TT_CHIP_BATCHES, TT_DEVICES,
                                TT_DISPATCH_CORES, TT_PRECISIONS)
import numpy as np

log = logging.getLogger('dpt_ros.demo.runner')

_DEFAULTS = BackendOptions()


def build_parser(prog: str = 'dpt_ros.demo.runner',
                 description: str = 'Run DPT-Large depth on images.') -> argparse.ArgumentParser:
    """Return the runner's flags (shared with eval_pcc)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    src = p.add_mutually_exclusive_group()
    src.add_argument('--image', help='one image file (%s); default: a bundled offline picture'
                     % ' '.join(SUPPORTED_EXTENSIONS))
    src.add_argument('--images-dir', help='a folder of images (%s)'
                     % ' '.join(SUPPORTED_EXTENSIONS))
    p.add_argument('--device', default='cpu', choices=DEVICES,
                   help='cpu/cuda run the torch backend; a TT device needs --tt-run')
    p.add_argument('--tt-run', action='store_true',
                   help='run the TTNN model on the TT device given by --device')
    p.add_argument('--backend', default='auto', choices=CPU_BACKEND_CHOICES,
                   help='without --tt-run: auto = openvino where it is installed (cpu), else '
                   'torch; torch is the numerical reference (default %(default)s)')
    p.add_argument('--image-size', type=int, default=_DEFAULTS.image_size,
                   help='square model input side (default %(default)s)')
    p.add_argument('--dp', type=int, default=1,
                   choices=range(1, max(TT_DEVICES.values()) + 1), metavar='N',
                   help="data-parallel chips, up to the TT board's chip count (default 1)")
    p.add_argument('--batch-size', type=int, default=None,
                   help='images per inference call (default: dp; must equal dp when dp > 1)')
    p.add_argument('--warmup', type=int, default=1, help='untimed warm-up iterations')
    p.add_argument('--repeat', type=int, default=3, help='timed passes over the images')
    p.add_argument('--tt-execution-mode', default=_DEFAULTS.execution_mode,
                   choices=EXECUTION_MODES, help='TT execution mode (default %(default)s)')
    p.add_argument('--trace-region-mb', type=int, default=_DEFAULTS.trace_region_mb,
                   help='TT trace region per chip, MiB (default %(default)s)')
    p.add_argument('--dispatch-core', default=_DEFAULTS.dispatch_core,
                   choices=TT_DISPATCH_CORES,
                   help='TT dispatch cores (default %(default)s: ethernet on an N300)')
    p.add_argument('--tt-precision', dest='precision', default=_DEFAULTS.precision,
                   choices=TT_PRECISIONS,
                   help='TT encoder numerics: accurate, or fast (the per-op settings of the '
                   'tt-metal ViT demo; unproven on a card) (default %(default)s)')
    p.add_argument('--chip-batch', type=int, default=_DEFAULTS.chip_batch,
                   choices=TT_CHIP_BATCHES,
                   help='TT frames per chip per device run: 2 is the throughput mode (more '
                   'frames a second, each frame later) (default %(default)s)')
    p.add_argument('--weights', default=_DEFAULTS.weights,
                   help='auto | Intel/dpt-large | <local dir> | random | tiny-random '
                   '(auto: hub/cache, else random weights, flagged loudly)')
    p.add_argument('--dtype', default=None, choices=DTYPES,
                   help='torch / openvino precision; auto = bf16 where the CPU runs it '
                   f'natively, else fp32 (default {DEFAULT_DTYPE})')
    p.add_argument('--compile', action='store_true', help='torch.compile the torch backend')
    p.add_argument('--threads', type=int, default=_DEFAULTS.threads,
                   help='torch / openvino CPU threads (0 = the library default)')
    p.add_argument('--seed', type=int, default=_DEFAULTS.seed, help='seed for random weights')
    strict = p.add_mutually_exclusive_group()
    strict.add_argument('--strict', dest='strict', action='store_true', default=None,
                        help='refuse any fallback (default with --tt-run)')
    strict.add_argument('--no-strict', dest='strict', action='store_false',
                        help='allow a --tt-run to fall back (counted in the perf JSON)')
    p.add_argument('--no-fallback', action='store_true',
                   help='fail instead of falling back to the torch CPU backend')
    p.add_argument('--no-selfcheck', dest='selfcheck', action='store_false',
                   help='--tt-run: skip the start-up check of each chip against torch fp32')
    p.add_argument('--selfcheck-min-pcc', type=float, default=_DEFAULTS.selfcheck_min_pcc,
                   help='--tt-run: PCC vs torch fp32 each chip must reach at start-up; a chip '
                   'below leaves the rotation, none left fails (default %(default)s)')
    return p


def add_output_args(p: argparse.ArgumentParser) -> None:
    """Runner-only outputs."""
    p.add_argument('--dump-depth', help='depth .npy path (a folder or a {name} template '
                   'for several images)')
    p.add_argument('--dump-depth-color', help='colour depth .png path (folder/template too)')
    p.add_argument('--dump-perf', help='perf JSON path; <stem>_header.json is written beside')
    p.add_argument('--colormap', default=DEFAULT_COLORMAP, choices=tuple(COLORMAPS),
                   help='colormap of the colour dump (default %(default)s)')
    p.add_argument('--norm', default='percentile', choices=NORM_MODES,
                   help='colour normalisation (default %(default)s)')
    p.add_argument('--norm-low', type=float, default=2.0, help='low percentile/value')
    p.add_argument('--norm-high', type=float, default=98.0, help='high percentile/value')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('-v', '--verbose', action='store_true', help='debug logging')


def check_args(p: argparse.ArgumentParser, args) -> None:
    """Return the reference's flag rules, plus ours; p.error() exits 2 with the message."""
    tt_device = args.device in TT_DEVICES
    if args.tt_run and not tt_device:
        p.error(f'--tt-run needs a TT device (--device {" | ".join(TT_DEVICES)}), '
                f'not {args.device}')
    if tt_device and not args.tt_run:
        p.error(f'--device {args.device} runs the TT model: add --tt-run')
    chips = TT_DEVICES.get(args.device, 1) if args.tt_run else 1
    if args.dp > chips:
        multi = ', '.join(f'{d} ({n} chips)' for d, n in TT_DEVICES.items() if n > 1)
        p.error(f'--dp {args.dp} needs --tt-run on a board with that many chips: {multi}')
    if args.chip_batch > 1 and not args.tt_run:
        p.error('--chip-batch needs --tt-run')
    per_call = args.dp * args.chip_batch
    if args.batch_size is None:
        args.batch_size = per_call
    if args.batch_size < 1:
        p.error('--batch-size must be >= 1')
    if per_call > 1 and args.batch_size != per_call:
        p.error(f'--batch-size must equal --dp x --chip-batch when that is > 1 (got '
                f'{args.batch_size} vs {per_call}): {args.chip_batch} image(s) per chip')
    if args.image_size < 16 or args.image_size % 16:
        p.error('--image-size must be a positive multiple of the 16 px patch')
    if args.warmup < 0 or args.repeat < 1:
        p.error('--warmup must be >= 0 and --repeat >= 1')
    if not 0.0 <= args.selfcheck_min_pcc <= 1.0:
        p.error('--selfcheck-min-pcc must be in [0, 1]')
    if args.tt_run and args.dtype is not None:
        log.info('--dtype applies to the CPU backends (a --no-strict fallback); the TT model '
                 'runs bf16/bfp8_b')
    if args.dtype is None:
        args.dtype = DEFAULT_DTYPE
    if args.strict is None:
        args.strict = bool(args.tt_run)
    args.backend = resolve_backend(p, args)


def resolve_backend(p: argparse.ArgumentParser, args) -> str:
    """Return the backend name the flags ask for: tt, openvino or torch (see module doc)."""
    if args.tt_run:
        if args.backend not in ('auto', 'tt'):
            p.error(f'--backend {args.backend} runs on the CPU; --tt-run runs the TT model')
        return 'tt'
    if args.backend == 'openvino':
        if args.device != 'cpu':
            p.error(f'--backend openvino runs on cpu, not {args.device} (use --backend torch)')
        if args.compile:
            p.error('--compile is torch.compile: use it with --backend torch')
        return 'openvino'
    if args.backend == 'torch' or args.device != 'cpu' or args.compile:
        return 'torch'
    try:
        import openvino  # noqa: F401  (about 0.1 s; the backend needs it next anyway)
    except ImportError as exc:
        log.info('openvino is not importable (%s): running the torch backend on the CPU '
                 '(pip install openvino for the faster CPU backend)', exc)
        return 'torch'
    return 'openvino'


def backend_options(args) -> BackendOptions:
    """Return the BackendOptions the checked flags ask for (backends.cli_options)."""
    return options_from_args(args)


def start_backend(args, loaded=None):
    """
    Start the backend the flags ask for under the fallback policy -> StartedBackend.

    Raises RunFailed (clear message) when it cannot start and fallback is not allowed.
    """
    opts = backend_options(args)
    allow = not (args.no_fallback or args.strict)
    name = args.backend
    try:
        return create_backend(name, opts, allow_fallback=allow, loaded=loaded)
    except WeightsNotFound as exc:
        raise RunFailed(str(exc)) from exc
    except BackendError as exc:
        why = ('strict --tt-run refuses to fall back' if args.strict
               else '--no-fallback was given')
        hint = ('; use --no-strict to allow a counted CPU fallback'
                if args.tt_run and args.strict else '')
        if allow:
            raise RunFailed(f"backend '{name}' could not start: {exc}") from exc
        raise RunFailed(f"backend '{name}' could not start ({why}): {exc}{hint}") from exc
    except Exception as exc:  # a backend bug must still end in one clear line
        log.debug('backend start-up failure', exc_info=True)
        raise RunFailed(f"backend '{name}' failed to start: {type(exc).__name__}: "
                        f'{exc} (run with -v for the traceback)') from exc


def collect_sources(args) -> list[str] | None:
    """
    File paths to load, or None for the bundled image.

    Raises InvalidImage for a missing or empty folder (the message names the supported extensions).
    """
    if args.image:
        return [args.image]
    if args.images_dir:
        return list_images(args.images_dir)
    return None


def load_sources(paths, perf):
    """Load images (timed as 'decode'); bad files are skipped, logged and counted."""
    if paths is None:
        with perf.stage('decode'):
            img = default_image()
        log.info('no --image/--images-dir: using the bundled image %s (%dx%d)', img.path,
                 img.rgb.shape[1], img.rgb.shape[0])
        return [img], []
    loaded, failed, names = [], [], set()
    for path in paths:
        try:
            with perf.stage('decode'):
                img = load_image(path)
        except InvalidImage as exc:
            log.error('skipping %s: %s', path, exc)
            perf.count('invalid_image_count', 1, reason=exc.reason)
            failed.append({'path': path, 'reason': exc.reason, 'message': str(exc)})
            continue
        if img.name in names:   # a.png and a.jpg: keep both, with distinct output names
            img.name = os.path.basename(path).replace('.', '_')
        names.add(img.name)
        loaded.append(img)
    return loaded, failed


def output_path(spec: str | None, name: str, ext: str, multi: bool) -> str | None:
    """Where one image's dump goes: a folder, a {name} template, or a file (+ _name if many)."""
    if not spec:
        return None
    if '{name}' in spec or '{stem}' in spec:
        return spec.format(name=name, stem=name)
    if spec.endswith(os.sep) or os.path.isdir(spec) or not os.path.splitext(spec)[1]:
        return os.path.join(spec, name + ext)
    if multi:
        root, e = os.path.splitext(spec)
        return f'{root}_{name}{e}'
    return spec


def _batches(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run(args) -> dict:
    """Run the flags' job; returns a summary dict. Raises RunFailed when nothing ran."""
    perf = PerfStats(window=100000)
    try:
        paths = collect_sources(args)
    except InvalidImage as exc:
        raise RunFailed(str(exc)) from exc
    images, failed = load_sources(paths, perf)
    if not images:
        raise RunFailed('no image could be read: ' + '; '.join(f['message'] for f in failed))

    started = start_backend(args)
    pipe = DepthPipeline(BackendSupervisor(started, perf=perf), colormap=args.colormap,
                         norm=args.norm, norm_low=args.norm_low, norm_high=args.norm_high)
    _log_backend(started, args)
    timings = RunTimings(warmup=args.warmup, repeat=args.repeat)
    try:
        batches = list(_batches(images, args.batch_size))
        prepared0 = np.stack([pipe.model_input(im.rgb) for im in batches[0]])
        _warm_up(started.backend, prepared0, args.warmup, timings)
        outputs, infer_failures = _timed_runs(pipe, batches, args, perf, timings)
        written = _write_dumps(outputs, args)
        summary_images = {'processed': len(outputs), 'failed': failed,
                          'inference_failures': infer_failures,
                          'names': list(outputs),
                          'source_hw': [list(im.rgb.shape[:2]) for im, _ in outputs.values()],
                          'notes': {im.name: im.note for im, _ in outputs.values() if im.note}}
        perf_json = None
        if args.dump_perf:
            perf_json = _write_perf(args, started, pipe, perf, timings, prepared0,
                                    summary_images, written)
        return {'perf': perf_json, 'written': written, 'images': summary_images,
                'timings': timings, 'info': started.backend.info,
                'fallback_reason': started.fallback_reason}
    finally:
        pipe.close()


def _log_backend(started, args) -> None:
    info = started.backend.info
    if info.extra.get('weights_random'):
        log.warning('*** RANDOM WEIGHTS (%s): the depth maps are NOT real depth; perf figures '
                    'are valid. Recorded as weights_random=true in the outputs. ***',
                    info.weights)
    log.info('backend %s on %s, dtype %s, %s, dp=%d, batch=%d%s', info.name, info.device,
             info.dtype_text,
             info.execution_mode, info.dp, args.batch_size,
             f' (fell back: {started.fallback_reason})' if started.fell_back else '')


def _warm_up(backend, prepared0, warmup: int, timings) -> None:
    """
    Call the backend `warmup` times on the first batch; the first call's time is first_run_s.

    The first call compiles (torch.compile) or captures the trace (TT). It bypasses the
    pipeline so the stage statistics hold timed iterations only.
    """
    info = backend.info
    for i in range(warmup):
        t0 = time.perf_counter()
        try:
            backend.infer(prepared0)
        except Exception as exc:  # e.g. a strict TT run hitting a fallback
            raise RunFailed(f'warm-up inference failed on {info.name}/{info.device}: '
                            f'{type(exc).__name__}: {exc}') from exc
        if i == 0:
            timings.first_run_s = time.perf_counter() - t0


def _timed_runs(pipe, batches, args, perf, timings) -> tuple[dict, list]:
    """Run every batch `repeat` times, timed; return the last run's outputs and the failures."""
    outputs: dict[str, object] = {}
    failures = []
    bar = None
    if args.images_dir and not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=args.repeat * sum(len(b) for b in batches), unit='img', desc='depth',
                   file=sys.stderr)
    t_all = time.perf_counter()
    for rep in range(args.repeat):
        for batch in batches:
            results = _timed_batch(pipe, batch, bool(args.dump_depth_color), perf, timings,
                                   failures)
            if results is not None and rep == args.repeat - 1:
                for im, res in zip(batch, results):
                    outputs[im.name] = (im, res)
            if bar:
                bar.update(len(batch))
    timings.total_ms = (time.perf_counter() - t_all) * 1e3
    if bar:
        bar.close()
    if not outputs:
        raise RunFailed('inference failed on every image: ' +
                        '; '.join(f['error'] for f in failures))
    return outputs, failures


def _timed_batch(pipe, batch, want_color: bool, perf, timings, failures: list):
    """Prepare, infer and finish one batch, timed; None (failure recorded) when it raised."""
    t0 = time.perf_counter()
    try:
        x = np.stack([pipe.prepare(im.rgb) for im in batch])
        t1 = time.perf_counter()
        raw = pipe.infer(x)
        t2 = time.perf_counter()
        results = [pipe.finish(r, im.rgb.shape[:2], want_color) for r, im in zip(raw, batch)]
    except Exception as exc:  # one bad batch must not end the run
        log.error('inference failed on %s: %s', [im.name for im in batch], exc)
        perf.count('inference_error_count', 1, reason=type(exc).__name__)
        failures.append({'images': [im.name for im in batch],
                         'error': f'{type(exc).__name__}: {exc}'})
        return None
    t3 = time.perf_counter()
    timings.iter_ms.append((t2 - t1) * 1e3)
    timings.iter_images.append(len(batch))
    timings.e2e_ms.append((t3 - t0) * 1e3)
    timings.e2e_images.append(len(batch))
    for _ in batch:
        perf.frame_done((t3 - t0) * 1e3)
    return results


def _write_dumps(outputs: dict, args) -> dict:
    """Write --dump-depth (.npy) and --dump-depth-color (.png) per image; return the paths."""
    multi = len(outputs) > 1
    written = {'depth': [], 'color': []}
    for name, (im, res) in outputs.items():
        dp_path = output_path(args.dump_depth, name, '.npy', multi)
        if dp_path:
            os.makedirs(os.path.dirname(os.path.abspath(dp_path)), exist_ok=True)
            np.save(dp_path, res.depth.astype(np.float32))
            written['depth'].append(dp_path)
        c_path = output_path(args.dump_depth_color, name, '.png', multi)
        if c_path:
            os.makedirs(os.path.dirname(os.path.abspath(c_path)), exist_ok=True)
            if not cv2.imwrite(c_path, res.color):
                log.error('could not write %s', c_path)
            else:
                written['color'].append(c_path)
    return written


def _write_perf(args, started, pipe, perf, timings, prepared0, images: dict,
                written: dict) -> dict:
    """Build and write the perf JSON and its header; return the perf dict."""
    backend, info = started.backend, started.backend.info
    if hasattr(backend, 'stage_breakdown_ms'):
        try:
            timings.stage_breakdown_ms = backend.stage_breakdown_ms(prepared0)
            timings.stage_breakdown_source = f'one eager {info.name} pass with hooks'
        except Exception as exc:  # the breakdown is informative, never fatal
            log.warning('stage breakdown unavailable: %s', exc)
    pipe.sync_counts()
    perf_json = build_perf(timings, info, perf, requested_backend=started.requested,
                           fallback_reason=started.fallback_reason, device_arg=args.device,
                           strict=bool(args.strict), images=images,
                           extra={'outputs': written})
    header = build_header(perf_json, info, _model_config(backend))
    write_perf(args.dump_perf, perf_json, header)
    log.info('perf: %s (+ %s)', args.dump_perf, header_path(args.dump_perf))
    return perf_json


def _model_config(backend):
    loaded = getattr(backend, 'loaded', None)
    if loaded is not None:
        return loaded.config
    name = 'tiny' if backend.info.extra.get('config_name') == 'tiny' else 'dpt-large'
    return make_config(name, backend.info.image_size)


def setup_logging(verbose: bool = False) -> None:
    """Plain 'LEVEL name: message' lines on stderr."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format='%(levelname)s %(name)s: %(message)s', stream=sys.stderr)


def main(argv=None) -> int:
    """Console entry point; returns the exit status (see module doc)."""
    p = build_parser()
    add_output_args(p)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    check_args(p, args)
    try:
        result = run(args)
    except RunFailed as exc:
        log.error('%s', exc)
        print(f'runner: nothing processed: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        log.error('interrupted')
        return 130
    t = result['timings']
    n = sum(t.e2e_images)
    inf_fps = 1e3 * sum(t.iter_images) / sum(t.iter_ms) if t.iter_ms else float('nan')
    e2e_fps = 1e3 * n / sum(t.e2e_ms) if t.e2e_ms else float('nan')
    info = result['info']
    print(f'processed {result["images"]["processed"]} image(s) x {len(t.iter_ms) and t.repeat} '
          f'repeat(s) on {info.name}/{info.device} (dtype {info.dtype_text}, '
          f'{info.execution_mode}): '
          f'inference {inf_fps:.2f} FPS, end-to-end {e2e_fps:.2f} FPS'
          + (f' [fallback: {result["fallback_reason"]}]' if result['fallback_reason'] else ''))
    for kind, paths in result['written'].items():
        for path in paths:
            print(f'wrote {kind}: {path}')
    if args.dump_perf:
        print(f'wrote perf: {args.dump_perf}')
    if result['images']['failed']:
        print(f'skipped {len(result["images"]["failed"])} unreadable file(s)', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
