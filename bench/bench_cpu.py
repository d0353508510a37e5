"""
CPU throughput and start-up of DPT-Large 384x384: transformers vs our torch and OpenVINO modes.

The transformers baseline and our torch and OpenVINO backend modes are measured in one run:

    .venv/bin/python bench/bench_cpu.py [--iters 7] [--modes fp32,auto,auto+compile,ov-fp32,
        ov-auto,ov-auto-normalized] [--no-startup] [--out generated/bench_cpu.json]

One run, one machine, one input (scikit-image's astronaut, 512x512 RGB), random weights with
the exact DPT-Large config (seed 0; no weights can be downloaded here — speed does not depend
on the values). Per frame, each mode does the whole depth job without colourisation:

  baseline      transformers' DPTImageProcessor (Intel/dpt-large settings) + DPTForDepthEstimation
                fp32 eager + post_process_depth_estimation to the input size — what
                pipeline('depth-estimation') runs, minus its PIL conversion of the output;
  fp32 / auto / auto+compile (bf16 / bf16+compile / fp32+compile on request)
                our DepthPipeline (processor-exact preprocess, torch backend, resize);
  ov-fp32 / ov-auto (ov-bf16 on request)
                our DepthPipeline on the OpenVINO backend: the host only resizes to uint8
                pixels, OpenVINO's preprocessing normalises inside the compiled graph;
  ov-auto-normalized
                the same compiled model fed the processor's float32 tensor from the host, to
                measure whether the pixel input pays.

Each mode runs in its own worker process (as in a node: one runtime per process, so torch's
and OpenVINO's idle threads never compete with another mode's frame), and the parent runs
interleaved rounds (one frame of each mode per round) so that load from other processes on a
shared machine falls on all of them alike. Per mode: median and best wall time,
median process CPU time per frame, median preprocess / inference stage, PCC of the input-sized
depth against the baseline's (torch fp32). Start-up (unless --no-startup) is measured in
fresh processes, one after another: OpenVINO cold (empty cache: load, convert, save, compile)
and cached, torch.compile cold (empty inductor cache) and cached, torch eager. The CPU's
matmul features and a fp32/bf16 GEMM probe are recorded, because they decide the ratios.
`auto` is the product's default dtype: bf16 where the CPU has bf16 units, fp32 elsewhere (an
explicit bf16 there runs fp32 in torch and OpenVINO alike, with a warning);
each mode records the dtype it asked for and the one that executed.
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

os.environ.setdefault('HF_HUB_OFFLINE', '1')

from dpt_ros.depth.pcc import pcc  # noqa: E402
from dpt_ros.perf.report import host, MATMUL_CPU_FLAGS, versions, write_json  # noqa: E402
import numpy as np  # noqa: E402

# mode -> (backend, options); 'input' forces the model input format the pipeline hands over.
MODES = {
    'fp32': ('torch', {'dtype': 'fp32', 'compile': False}),
    'bf16': ('torch', {'dtype': 'bf16', 'compile': False}),
    'bf16+compile': ('torch', {'dtype': 'bf16', 'compile': True}),
    'fp32+compile': ('torch', {'dtype': 'fp32', 'compile': True}),
    'auto': ('torch', {'dtype': 'auto', 'compile': False}),
    'auto+compile': ('torch', {'dtype': 'auto', 'compile': True}),
    'ov-fp32': ('openvino', {'dtype': 'fp32'}),
    'ov-bf16': ('openvino', {'dtype': 'bf16'}),
    'ov-auto': ('openvino', {'dtype': 'auto'}),
    'ov-auto-normalized': ('openvino', {'dtype': 'auto', 'input': 'normalized'}),
}
DEFAULT_MODES = 'fp32,auto,auto+compile,ov-fp32,ov-auto,ov-auto-normalized'
TARGETS = {'openvino_vs_best_torch': 1.3, 'openvino_vs_baseline': 2.5, 'cached_startup_s': 5.0}


def make_baseline(model, rgb):
    """
    Build the transformers baseline -> (run, description).

    transformers processor + model (fp32 eager) + post_process_depth_estimation.
    """
    import torch
    from transformers import DPTImageProcessor
    proc = DPTImageProcessor(do_resize=True, size={'height': 384, 'width': 384},
                             keep_aspect_ratio=False, ensure_multiple_of=1, resample=3,
                             do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                             image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    h, w = rgb.shape[:2]

    def run():
        inputs = proc(images=rgb, return_tensors='pt', input_data_format='channels_last')
        with torch.inference_mode():
            outputs = model(**inputs)
        post = proc.post_process_depth_estimation(outputs, target_sizes=[(h, w)])
        return post[0]['predicted_depth'].numpy(), None

    return run, f'transformers {type(proc).__name__} + DPTForDepthEstimation fp32 eager + ' \
        'post_process_depth_estimation'


class _InputFormatView:
    """A backend seen with another input format (the pipeline then prepares that one)."""

    def __init__(self, backend, input_format: str):
        import copy
        self._backend = backend
        self.info = copy.copy(backend.info)
        self.info.input_format = input_format
        self.max_concurrency = backend.max_concurrency

    def infer(self, batch):
        return self._backend.infer(batch)

    def fallback_counts(self):
        return self._backend.fallback_counts()

    def close(self):
        self._backend.close()


def make_ours(loaded, rgb, mode, cache_dir):
    """Our DepthPipeline in one mode -> (run, pipeline)."""
    from dpt_ros.backends import BackendOptions, create_backend, StartedBackend
    from dpt_ros.serving.pipeline import DepthPipeline
    from dpt_ros.serving.supervisor import BackendSupervisor
    name, kw = MODES[mode]
    kw = dict(kw)
    input_format = kw.pop('input', None)
    opts = BackendOptions(weights='random', device='cpu', cache_dir=cache_dir, **kw)
    backend = create_backend(name, opts, allow_fallback=False, loaded=loaded).backend
    if input_format:
        backend = _InputFormatView(backend, input_format)
    pipe = DepthPipeline(BackendSupervisor(StartedBackend(backend, requested=name)))

    def run():
        res = pipe.process(rgb, want_color=False)
        return res.depth, res.timings_ms

    return run, pipe


def _timed(fn):
    """Call fn once and return (result, wall ms, process CPU ms)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def gemm_peak(reps: int = 20) -> dict:
    """Achieved GFLOPS of one ViT-L FF1-sized linear in fp32 and bf16 (best of reps)."""
    import torch
    out = {}
    g = torch.Generator().manual_seed(0)
    for name, dt in (('fp32', torch.float32), ('bf16', torch.bfloat16)):
        a = torch.randn(577, 1024, generator=g).to(dt)
        w = torch.randn(4096, 1024, generator=g).to(dt)
        with torch.inference_mode():
            for _ in range(3):
                torch.nn.functional.linear(a, w)
            best = min(_timed(lambda: torch.nn.functional.linear(a, w))[1]
                       for _ in range(reps))
        out[f'{name}_ms'] = best
        out[f'{name}_gflops'] = 2 * 577 * 1024 * 4096 / (best / 1e3) / 1e9
    out['bf16_over_fp32'] = out['bf16_gflops'] / out['fp32_gflops']
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# --- start-up, each in a fresh process ---------------------------------------------------------

def startup_probe(mode: str, cache_dir: str) -> dict:
    """In a fresh process: imports, backend start and the first frame, timed (seconds)."""
    t0 = time.perf_counter()
    from dpt_ros.backends import BackendOptions, create_backend
    name, kw = MODES[mode]
    kw = {k: v for k, v in kw.items() if k != 'input'}
    opts = BackendOptions(weights='random', device='cpu', cache_dir=cache_dir, **kw)
    t1 = time.perf_counter()
    loaded, load_s = None, None
    if name == 'torch':          # the torch backend always builds the model: time it apart
        from dpt_ros.inference.hf_model import load_model
        loaded = load_model('random', seed=0)
        load_s = time.perf_counter() - t1
    backend = create_backend(name, opts, allow_fallback=False, loaded=loaded).backend
    t2 = time.perf_counter()
    s = backend.info.image_size
    x = (np.zeros((1, s, s, 3), np.uint8) if backend.info.input_format == 'pixels'
         else np.zeros((1, 3, s, s), np.float32))
    backend.infer(x)             # the first call pays torch.compile; OpenVINO is ready before
    t3 = time.perf_counter()
    # serving_s: imports + backend start, when a node would start serving; ready_s adds the
    # first frame (which pays torch.compile's compilation, and is one fp32 frame's time).
    return {'mode': mode, 'import_s': t1 - t0, 'load_weights_s': load_s,
            'backend_start_s': t2 - t1, 'serving_s': t2 - t0, 'first_frame_s': t3 - t2,
            'ready_s': t3 - t0,
            'cache': backend.info.extra.get('cache'),
            'dtype': backend.info.dtype, 'dtype_requested': backend.info.dtype_requested,
            'backend_startup_s': backend.info.extra.get('startup_s'),
            'torch_imported': 'torch' in sys.modules}


# (label, mode, cache state) in the order they run; 'cold' empties the cache first.
STARTUP_RUNS = (
    ('openvino auto, cold (empty cache)', 'ov-auto', 'cold'),
    ('openvino auto, cached', 'ov-auto', 'cached'),
    ('openvino fp32, model cached, first compile', 'ov-fp32', 'cached'),
    ('openvino fp32, cached', 'ov-fp32', 'cached'),
    ('torch fp32 eager', 'fp32', 'cached'),
    ('torch auto+compile, cold (empty inductor cache)', 'auto+compile', 'cold'),
    ('torch auto+compile, cached', 'auto+compile', 'cached'),
)


def measure_startup(work_dir: str) -> list[dict]:
    """Run STARTUP_RUNS one after another, each `python bench_cpu.py --startup-probe`."""
    ov_cache = os.path.join(work_dir, 'dpt_ros_cache')
    inductor = os.path.join(work_dir, 'inductor')
    rows = []
    for label, mode, state in STARTUP_RUNS:
        if state == 'cold':
            shutil.rmtree(ov_cache if MODES[mode][0] == 'openvino' else inductor,
                          ignore_errors=True)
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=inductor, PYTHONPATH=_ROOT)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--startup-probe',
                               mode, '--cache-dir', ov_cache], env=env, capture_output=True,
                              text=True, timeout=1800)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f'start-up probe {label!r} failed:\n{proc.stderr[-2000:]}', flush=True)
            rows.append({'label': label, 'mode': mode, 'error': proc.stderr[-500:]})
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row.update(label=label, process_wall_s=wall)
        rows.append(row)
        print(f"start-up: {label:<48} serving after {row['serving_s']:5.1f} s, first frame "
              f"out after {row['ready_s']:6.1f} s (process {wall:.1f} s; cache {row['cache']})",
              flush=True)
    return rows


# --- the interleaved run: one worker process per mode -------------------------------------------

def worker(mode: str, cache_dir: str, warmup: int, out_npy: str) -> int:
    """
    Run one mode in its own process: warm up, then one timed frame per 'frame' line on stdin.

    Separate processes keep one runtime's idle worker threads (torch's OpenMP, OpenVINO's
    TBB) off the next mode's frame, and give each mode its own CPU-time figure, as in a node.
    """
    from skimage import data
    rgb = np.ascontiguousarray(data.astronaut())
    if mode == 'baseline':
        from dpt_ros.inference.hf_model import load_model
        fn, what = make_baseline(load_model('random', seed=0).model, rgb)
        info = {}
    else:
        loaded = None
        if MODES[mode][0] == 'torch':     # OpenVINO starts from its cache without torch
            from dpt_ros.inference.hf_model import load_model
            loaded = load_model('random', seed=0)
        fn, pipe = make_ours(loaded, rgb, mode, cache_dir)
        binfo = pipe.backend.info
        what = f'dpt_ros DepthPipeline, {MODES[mode][0]} backend {mode}, ' \
            f'{binfo.input_format} input'
        info = {'execution_mode': binfo.execution_mode, 'input_format': binfo.input_format,
                'dtype': binfo.dtype, 'dtype_requested': binfo.dtype_requested,
                'fallback_counts': pipe.backend.fallback_counts(),
                'backend_extra': {k: v for k, v in binfo.extra.items()
                                  if k in ('inference_precision', 'threads', 'cache',
                                           'startup_s', 'weights_on_disk', 'torch_version')}}
    (out, _), first_ms, _ = _timed(fn)
    for _ in range(warmup - 1):
        out, _ = fn()
    print(json.dumps({'what': what, 'first_call_s': first_ms / 1e3, **info}), flush=True)
    for line in sys.stdin:
        if line.strip() != 'frame':
            break
        (out, stages), ms, cpu_ms = _timed(fn)
        print(json.dumps({'ms': ms, 'cpu_ms': cpu_ms, 'stages': stages or {}}), flush=True)
    np.save(out_npy, out)
    return 0


class _Worker:
    """The parent's handle on one worker process (line-based JSON over its pipes)."""

    def __init__(self, mode: str, cache_dir: str, warmup: int, work_dir: str):
        self.mode = mode
        self.npy = os.path.join(work_dir, f'{mode}.npy')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), '--worker', mode, '--cache-dir',
             cache_dir, '--warmup', str(warmup), '--worker-out', self.npy],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONPATH=_ROOT))
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'bench worker {self.mode} exited (rc {self.proc.wait()})')
        return json.loads(line)

    def frame(self) -> dict:
        self.proc.stdin.write('frame\n')
        self.proc.stdin.flush()
        return self._read()

    def finish(self) -> np.ndarray:
        self.proc.stdin.close()
        if self.proc.wait(120) != 0:
            raise RuntimeError(f'bench worker {self.mode} failed')
        return np.load(self.npy)


def _rounds(modes, cache_dir: str, iters: int, warmup: int, work_dir: str) -> dict:
    """Start a worker per mode (one after another), then interleaved rounds."""
    workers = {}
    for name in ['baseline'] + modes:
        t0 = time.perf_counter()
        workers[name] = _Worker(name, cache_dir, warmup, work_dir)
        print(f'{name:<20} started and warm in {time.perf_counter() - t0:.1f} s (first call '
              f"{workers[name].ready['first_call_s']:.1f} s)", flush=True)
    results = {n: dict(w.ready, ms_all=[], cpu_ms_all=[], preprocess_ms_all=[],
                       inference_ms_all=[]) for n, w in workers.items()}
    # Interleaved rounds: on a shared machine, load changes hit every mode alike.
    for i in range(iters):
        for name, w in workers.items():
            f = w.frame()
            r = results[name]
            r['ms_all'].append(f['ms'])
            r['cpu_ms_all'].append(f['cpu_ms'])
            r['preprocess_ms_all'].append(f['stages'].get('preprocess'))
            r['inference_ms_all'].append(f['stages'].get('inference'))
        print(f'round {i + 1}/{iters}: ' + ', '.join(
            f"{n} {results[n]['ms_all'][-1]:.0f}" for n in workers) + ' ms', flush=True)
    outputs = {n: w.finish() for n, w in workers.items()}
    for name, r in results.items():
        r['ms_per_frame'] = statistics.median(r['ms_all'])
        r['ms_min'] = min(r['ms_all'])
        r['cpu_ms_per_frame'] = statistics.median(r['cpu_ms_all'])
        for stage in ('preprocess', 'inference'):
            vals = [v for v in r.pop(f'{stage}_ms_all') if v is not None]
            r[f'{stage}_ms'] = statistics.median(vals) if vals else None
        r['pcc_vs_fp32'] = pcc(outputs[name], outputs['baseline'])
    return results


def _ratios(results: dict) -> dict:
    base = results['baseline']
    for r in results.values():
        r['fps'] = 1e3 / r['ms_per_frame']
        r['ratio_vs_baseline'] = base['ms_per_frame'] / r['ms_per_frame']
        r['ratio_min_vs_baseline_min'] = base['ms_min'] / r['ms_min']
        r['cpu_time_ratio_vs_baseline'] = base['cpu_ms_per_frame'] / r['cpu_ms_per_frame']

    def best(kind):
        ok = {k: v for k, v in results.items() if k != 'baseline' and MODES[k][0] == kind
              and v['pcc_vs_fp32'] >= 0.999}
        return max(ok, key=lambda k: ok[k]['ratio_min_vs_baseline_min']) if ok else None

    bt, bo = best('torch'), best('openvino')
    out = {'best_torch_mode': bt, 'best_openvino_mode': bo}
    if bt and bo:
        t, o = results[bt], results[bo]
        out['openvino_vs_best_torch'] = {'median': t['ms_per_frame'] / o['ms_per_frame'],
                                         'best': t['ms_min'] / o['ms_min'],
                                         'cpu_time': t['cpu_ms_per_frame'] /
                                         o['cpu_ms_per_frame']}
    if bo:
        o = results[bo]
        out['openvino_vs_baseline'] = {'median': o['ratio_vs_baseline'],
                                       'best': o['ratio_min_vs_baseline_min'],
                                       'cpu_time': o['cpu_time_ratio_vs_baseline']}
    return out


def _print_table(results: dict, ratios: dict, startup: list, peak: dict) -> None:
    print()
    print(f"{'mode':<20} {'ran':>4} {'median ms':>9} {'best ms':>8} {'CPU ms':>8} "
          f"{'pre ms':>7} {'inf ms':>8} {'x base':>7} {'x (best)':>8} {'PCC':>9}")
    for name, r in results.items():
        pre = f"{r['preprocess_ms']:7.2f}" if r['preprocess_ms'] is not None else ' ' * 7
        inf = f"{r['inference_ms']:8.1f}" if r['inference_ms'] is not None else ' ' * 8
        print(f"{name:<20} {r.get('dtype', 'fp32'):>4} {r['ms_per_frame']:9.1f} "
              f"{r['ms_min']:8.1f} "
              f"{r['cpu_ms_per_frame']:8.1f} {pre} {inf} {r['ratio_vs_baseline']:7.2f} "
              f"{r['ratio_min_vs_baseline_min']:8.2f} {r['pcc_vs_fp32']:9.6f}")
    print(f'GEMM probe (577x1024 @ 1024x4096, torch, best of 20): fp32 '
          f"{peak['fp32_gflops']:.0f} GFLOPS, bf16 {peak['bf16_gflops']:.0f} GFLOPS "
          f"({peak['bf16_over_fp32']:.2f}x)")
    for key, what in (('openvino_vs_best_torch', f"best OpenVINO ({ratios['best_openvino_mode']}"
                       f") vs best torch ({ratios['best_torch_mode']})"),
                      ('openvino_vs_baseline', 'best OpenVINO vs the baseline')):
        r = ratios.get(key)
        if r:
            print(f"{what}: {r['median']:.2f}x median, {r['best']:.2f}x best-of-N, "
                  f"{r['cpu_time']:.2f}x CPU time (target {TARGETS[key]}x)")
    for row in startup:
        if 'ready_s' in row:
            print(f"start-up {row['label']:<48} serving {row['serving_s']:5.1f} s, first "
                  f"frame {row['ready_s']:6.1f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    p.add_argument('--iters', type=int, default=7, help='timed frames per mode')
    p.add_argument('--warmup', type=int, default=2, help='untimed frames per mode (>= 1)')
    p.add_argument('--modes', default=DEFAULT_MODES,
                   help=f"comma list from {', '.join(MODES)}")
    p.add_argument('--cache-dir', default=os.path.join(_ROOT, 'generated', 'bench_cpu_cache'),
                   help='OpenVINO model cache of the timed modes (converted once)')
    p.add_argument('--no-startup', action='store_true', help='skip the start-up processes')
    p.add_argument('--startup-probe', help=argparse.SUPPRESS)
    p.add_argument('--worker', help=argparse.SUPPRESS)
    p.add_argument('--worker-out', help=argparse.SUPPRESS)
    p.add_argument('--out', default=os.path.join(_ROOT, 'generated', 'bench_cpu.json'))
    args = p.parse_args(argv)
    if args.startup_probe or args.worker:
        logging.basicConfig(level=logging.ERROR)    # stdout carries JSON lines only
        if args.worker:
            return worker(args.worker, args.cache_dir, args.warmup, args.worker_out)
        print(json.dumps(startup_probe(args.startup_probe, args.cache_dir)))
        return 0
    modes = [m.strip() for m in args.modes.split(',') if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        p.error(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    for name in ('dpt_ros.backends.torch', 'dpt_ros.backends.openvino'):
        logging.getLogger(name).setLevel(logging.ERROR)   # random-weight warnings, per mode

    import torch
    load_before = _loadavg()
    machine = host()
    print(f"CPU: {machine['cpu']} x{machine['cpu_count']}, matmul features: "
          f"{' '.join(machine['cpu_matmul_flags']) or 'none of ' + str(MATMUL_CPU_FLAGS)}; "
          f'load average {load_before}', flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    work = tempfile.mkdtemp(prefix='bench_cpu_', dir=os.path.dirname(os.path.abspath(args.out)))
    try:
        results = _rounds(modes, args.cache_dir, args.iters, args.warmup, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = _loadavg()
    peak = gemm_peak()
    startup = []
    if not args.no_startup:
        work = tempfile.mkdtemp(prefix='bench_cpu_startup_',
                                dir=os.path.dirname(os.path.abspath(args.out)))
        try:
            startup = measure_startup(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    ratios = _ratios(results)
    cached = [r['serving_s'] for r in startup if 'serving_s' in r and r['mode'].startswith(
        'ov-') and r.get('cache') == 'hit' and 'first compile' not in r['label']]
    summary = {
        'model': 'DPT-Large (Intel/dpt-large config), random weights seed 0',
        'input': 'skimage.data.astronaut 512x512 RGB -> 384x384',
        'iters': args.iters, 'warmup': args.warmup, 'modes': modes,
        'results': results, **ratios,
        'startup': startup,
        'openvino_cached_serving_s_max': max(cached) if cached else None,
        'startup_basis': 'serving_s: interpreter start to a started backend (imports, cache '
                         'reads, compilation); ready_s adds the first frame',
        'targets': TARGETS,
        'targets_met': {
            'openvino_vs_best_torch': bool(ratios.get('openvino_vs_best_torch') and ratios[
                'openvino_vs_best_torch']['best'] >= TARGETS['openvino_vs_best_torch']),
            'openvino_vs_baseline': bool(ratios.get('openvino_vs_baseline') and ratios[
                'openvino_vs_baseline']['best'] >= TARGETS['openvino_vs_baseline']),
            'cached_startup_s': bool(cached) and max(cached) <= TARGETS['cached_startup_s']},
        'gemm_peak': peak,
        'torch_threads': torch.get_num_threads(),
        'loadavg_before': load_before, 'loadavg_after_rounds': load_after,
        'loadavg_after': _loadavg(),
        'versions': versions(), 'host': host(),
    }
    write_json(args.out, summary)
    _print_table(results, ratios, startup, peak)
    print(f"targets met: {summary['targets_met']}; load average before {load_before}, after "
          f'the rounds {load_after}')
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
