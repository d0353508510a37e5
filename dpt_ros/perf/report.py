"""
Perf JSON + header JSON, readable by scripts written for the reference runner.

`build_perf()` turns one measured run (a `RunTimings`, the backend, the pipeline's PerfStats)
into a flat dict that carries the reference's keys (mode, tt_execution_mode, latency_ms_mean,
fps, inference_time_s, setting, stage_breakdown_ms, fallback_counts, ...) plus ours (fps_e2e,
per-stage ms, latency p50/p95, weights, versions, host). `dtype` is what executed (the
figures' dtype), with `dtype_requested` (auto | fp32 | bf16) and `dtype_executed` beside it:
they differ for auto and for a bf16 this CPU cannot run. `build_header()` makes the header
written beside it as `<perf stem>_header.json`. Non-finite numbers become null so the files
are strict JSON. No rclpy, no torch import.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
import json
import math
import os
import platform
import socket
import sys

from dpt_ros.perf.stats import FALLBACK_KEYS, PerfStats, STAGES
import numpy as np

# What each stage of the reference's breakdown covers, for people reading the JSON.
MODULES = {
    'backbone': 'ViT (patch embedding + transformer encoder)',
    'reassembly': 'reassemble stage (readout project, 1x1 conv, resample) + neck 3x3 convs',
    'fusion_head': 'feature fusion blocks + depth head',
}
BREAKDOWN_KEYS = ('backbone_ms', 'reassembly_ms', 'fusion_head_ms')


@dataclass
class RunTimings:
    """What the runner measured; all times in ms unless the name says otherwise."""

    iter_ms: list = field(default_factory=list)       # one infer() call each (timed repeats)
    iter_images: list = field(default_factory=list)   # images in each of those calls
    e2e_ms: list = field(default_factory=list)        # preprocess + infer + post (+ colour)
    e2e_images: list = field(default_factory=list)
    total_ms: float = float('nan')                    # wall time of all timed repeats
    first_run_s: float = float('nan')                 # first warm-up call (includes compile)
    warmup: int = 0
    repeat: int = 0
    stage_breakdown_ms: dict | None = None            # backbone/reassembly/fusion_head ms
    stage_breakdown_ms_per_worker: list | None = None
    stage_breakdown_source: str = ''


def _finite(v):
    """float(v) when finite, else None (JSON has no NaN)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _clean(obj):
    """Recursively make a structure strict-JSON safe (NaN/inf -> null, numpy -> python)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _finite(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def versions() -> dict:
    """Versions of the packages that decide the numbers."""
    out = {'python': platform.python_version()}
    for dist in ('dpt_ros', 'numpy', 'torch', 'transformers', 'ttnn', 'openvino',
                 'opencv-python-headless', 'pillow'):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# CPU features that decide CPU inference speed: bf16 matrix units (AMX) make bf16 several
# times faster than fp32; without them bf16 gains under 2x. Recorded so figures from
# different machines can be told apart.
MATMUL_CPU_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'avx512_vnni', 'amx_tile',
                    'amx_bf16', 'amx_fp16', 'amx_int8')


def host() -> dict:
    """Where the run happened."""
    model, flags = None, None
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:     # the first processor's block is enough
                key, _, value = line.partition(':')
                if key.strip() == 'model name' and model is None:
                    model = value.strip()
                elif key.strip() == 'flags' and flags is None:
                    present = set(value.split())
                    flags = [fl for fl in MATMUL_CPU_FLAGS if fl in present]
                if model is not None and flags is not None:
                    break
    except OSError:
        pass
    cpu = model or platform.processor() or ''
    flags = flags or []
    return {'hostname': socket.gethostname(), 'platform': platform.platform(), 'cpu': cpu,
            'cpu_matmul_flags': flags, 'cpu_count': os.cpu_count(),
            'python_executable': sys.executable}


def _mean_std(values) -> tuple[float, float]:
    if not values:
        return float('nan'), float('nan')
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std())


def _rates(timings: RunTimings, info, snap: dict) -> dict:
    """Return the run's latency and FPS figures (NaN where nothing was timed)."""
    ex = info.extra
    r = {'n_iter_images': timings.iter_images[0] if timings.iter_images else info.batch_size}
    r['lat_mean'], r['lat_std'] = _mean_std(timings.iter_ms)
    per_image = [ms / max(n, 1) for ms, n in zip(timings.iter_ms, timings.iter_images)]
    r['per_img_mean'], r['per_img_std'] = _mean_std(per_image)
    r['inf_fps'] = _rate(sum(timings.iter_images), timings.iter_ms)
    r['fps_e2e'] = _rate(sum(timings.e2e_images), timings.e2e_ms)
    device_fps = _finite(ex.get('device_fps'))
    if device_fps is None and math.isfinite(snap.get('device_fps', float('nan'))):
        device_fps = snap['device_fps'] * max(1, info.dp)
    r['device_fps'] = device_fps
    compile_s = _finite(ex.get('compile_time_s'))
    if (compile_s is None and math.isfinite(timings.first_run_s)
            and math.isfinite(r['lat_mean'])):
        # The first call pays compilation (torch.compile / trace capture) and warm-up.
        compile_s = max(0.0, timings.first_run_s - r['lat_mean'] / 1e3)
    r['compile_s'] = compile_s
    return r


def _rate(images: int, ms: list) -> float:
    return 1e3 * images / sum(ms) if ms and sum(ms) > 0 else float('nan')


def _fallback_counts(snap: dict) -> dict:
    counts = {k: int(snap.get(k, 0) or 0) for k in FALLBACK_KEYS}
    for k, v in snap.items():
        if (k.endswith('_count') or k.endswith('_total')) and isinstance(v, (int, np.integer)):
            counts.setdefault(k, int(v))
    return counts


def _breakdown(timings: RunTimings) -> dict:
    breakdown = dict(timings.stage_breakdown_ms or {})
    if breakdown:
        breakdown.setdefault('total_ms', sum(breakdown.get(k, 0.0) for k in BREAKDOWN_KEYS))
    else:
        breakdown = dict.fromkeys(BREAKDOWN_KEYS + ('total_ms',))
    return breakdown


def _reference_keys(timings: RunTimings, info, r: dict, counts: dict, device_arg: str) -> dict:
    """Return the keys tt-metal's DPT-Large demo writes, with the same meanings."""
    mode = 'tt' if info.name == 'tt' else 'cpu' if info.device == 'cpu' else 'cuda'
    n, lat_mean, lat_std = r['n_iter_images'], r['lat_mean'], r['lat_std']
    breakdown = _breakdown(timings)
    return {
        'mode': mode,
        'tt_execution_mode': info.extra.get('tt_execution_mode') if info.name == 'tt' else None,
        'latency_ms_mean': lat_mean,
        'latency_ms_std': lat_std,
        'total_ms': timings.total_ms,
        'num_images_per_iter': n,
        'per_image_ms_mean': r['per_img_mean'],
        'per_image_ms_std': r['per_img_std'],
        'fps': r['device_fps'] if r['device_fps'] is not None else r['inf_fps'],
        'inference_time_s': lat_mean / 1e3,
        'inference_time_std_s': lat_std / 1e3,
        'throughput_iter_per_s': 1e3 / lat_mean if lat_mean and lat_mean > 0 else None,
        'first_run_s': timings.first_run_s,
        'compile_time_s': r['compile_s'],
        'device': device_arg,
        'dtype': info.dtype,              # what executed (the figures' dtype), as the reference
        'dtype_requested': info.dtype_requested or None,   # auto | fp32 | bf16; None for tt
        'dtype_executed': info.dtype,
        'input_h': info.image_size,
        'input_w': info.image_size,
        'batch_size': n,
        'per_chip_batch_size': int(info.extra.get('per_chip_batch_size',
                                                  max(1, n // max(1, info.dp)))),
        'data_parallel_degree': info.dp,
        'model_name': info.model_name,
        'setting': f'{mode}-{info.image_size}x{info.image_size}-b{n}-dp{info.dp}',
        'modules': dict(MODULES),
        'stage_breakdown_ms': breakdown,
        'stage_breakdown_ms_per_worker': timings.stage_breakdown_ms_per_worker or [],
        'stage_breakdown_s': {k.replace('_ms', '_s'): (v / 1e3 if v is not None else None)
                              for k, v in breakdown.items()},
        'stage_breakdown_source': timings.stage_breakdown_source or None,
        'fallback_counts': counts,
    }


def _our_keys(timings: RunTimings, info, snap: dict, r: dict, counts: dict,
              backend: dict) -> dict:
    """Return the keys this package adds: FPS sources, percentiles, fallbacks, versions, host."""
    return {
        'fps_source': 'device' if r['device_fps'] is not None else 'inference',
        'fps_inference': r['inf_fps'],
        'fps_e2e': r['fps_e2e'],
        'trace_wall_ms': _finite(info.extra.get('trace_wall_ms')),
        # TT: how each chip was opened (dispatch cores, compute grid) and its traces' bytes.
        'dispatch_core': info.extra.get('dispatch_core'),
        'chip_grids': info.extra.get('chip_grids'),
        'trace_region_size': info.extra.get('trace_region_size'),
        'trace_bytes': info.extra.get('trace_bytes'),
        # TT: each chip's start-up self-check (bench_tt's JSON carries it as the runner's)
        **{k: v for k, v in info.extra.items() if k.startswith('selfcheck')},
        'stage_ms': {s: snap.get(f'{s}_ms') for s in STAGES if s != 'publish'},
        'latency_ms_p50': snap.get('latency_ms_p50'),
        'latency_ms_p95': snap.get('latency_ms_p95'),
        'latency_ms_p99': snap.get('latency_ms_p99'),
        'program_config_fallback_total': counts.get('program_config_fallback_total', 0),
        'backend_fallback_count': counts.get('backend_fallback_count', 0),
        'fallback_reasons': snap.get('reasons', {}),
        'backend': backend,
        'dp': info.dp,
        'image_size': info.image_size,
        'warmup': timings.warmup,
        'repeat': timings.repeat,
        'weights': info.weights,
        'weights_random': bool(info.extra.get('weights_random', False)),
        'versions': versions(),
        'host': host(),
    }


def build_perf(timings: RunTimings, backend_info, perf: PerfStats, *, requested_backend: str,
               fallback_reason: str | None, device_arg: str, strict: bool,
               images: dict | None = None, extra: dict | None = None) -> dict:
    """Return the perf JSON dict for one run (see module doc)."""
    info = backend_info
    snap = perf.snapshot()
    r = _rates(timings, info, snap)
    counts = _fallback_counts(snap)
    backend = {'requested': requested_backend, 'running': info.name,
               'running_device': info.device, 'execution_mode': info.execution_mode,
               'fell_back': fallback_reason is not None,
               'fallback_reason': fallback_reason, 'strict': bool(strict)}
    out = _reference_keys(timings, info, r, counts, device_arg)
    out.update(_our_keys(timings, info, snap, r, counts, backend))
    if images is not None:
        out['images'] = images
    if extra:
        out.update(extra)
    return _clean(out)


def build_header(perf_json: dict, backend_info, model_config=None) -> dict:
    """Return the header JSON: model description, input shape, device, mode, headline numbers."""
    cfg = model_config
    s = int(perf_json.get('input_h') or backend_info.image_size)
    patch = int(getattr(cfg, 'patch_size', 16) or 16)
    model = {'name': perf_json.get('model_name'), 'type': 'DPTForDepthEstimation',
             'backbone': 'vit-large-patch16' if getattr(cfg, 'hidden_size', 1024) == 1024
             else f'vit-{getattr(cfg, "hidden_size", "?")}-patch{patch}',
             'num_layers': getattr(cfg, 'num_hidden_layers', None),
             'hidden_size': getattr(cfg, 'hidden_size', None),
             'num_heads': getattr(cfg, 'num_attention_heads', None),
             'intermediate_size': getattr(cfg, 'intermediate_size', None)}
    header = {
        'model': model,
        'input_shape': [int(perf_json.get('batch_size') or 1), 3, s, s],
        'patch_size': patch,
        'num_tokens': (s // patch) ** 2 + 1,
        'device': perf_json.get('device'),
        'dtype': perf_json.get('dtype'),
        'dtype_requested': perf_json.get('dtype_requested'),
        'dtype_executed': perf_json.get('dtype_executed'),
        'tt_execution_mode': perf_json.get('tt_execution_mode'),
        'mode': perf_json.get('mode'),
        'data_parallel_degree': perf_json.get('data_parallel_degree'),
        'latency_ms': perf_json.get('latency_ms_mean'),
        'inference_time_s': perf_json.get('inference_time_s'),
        'throughput_iter_per_s': perf_json.get('throughput_iter_per_s'),
        'first_run_s': perf_json.get('first_run_s'),
        'compile_time_s': perf_json.get('compile_time_s'),
        'fps': perf_json.get('fps'),
        'fps_e2e': perf_json.get('fps_e2e'),
        'stage_breakdown_ms': perf_json.get('stage_breakdown_ms'),
        'stage_breakdown_ms_per_worker': perf_json.get('stage_breakdown_ms_per_worker'),
        'stage_breakdown_s': perf_json.get('stage_breakdown_s'),
        'fallback_counts': perf_json.get('fallback_counts'),
        'backend': perf_json.get('backend'),
        'weights': perf_json.get('weights'),
        'weights_random': perf_json.get('weights_random'),
        'versions': perf_json.get('versions'),
        'host': perf_json.get('host'),
    }
    return _clean(header)


def header_path(perf_path: str) -> str:
    """`<dir>/<stem>_header.json` beside the perf JSON."""
    d, name = os.path.split(perf_path)
    stem = os.path.splitext(name)[0]
    return os.path.join(d, f'{stem}_header.json')


def write_json(path: str, data: dict) -> None:
    """Write strict JSON (NaN -> null), creating the folder."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(_clean(data), f, indent=2, allow_nan=False)
        f.write('\n')


def write_perf(path: str, perf_json: dict, header: dict) -> tuple[str, str]:
    """Write the perf JSON and its header; returns both paths."""
    write_json(path, perf_json)
    hp = header_path(path)
    write_json(hp, header)
    return path, hp
