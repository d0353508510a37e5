"""
Estimate DPT-Large's device time on a Wormhole chip from the mock-device dry-run's op list.

An ESTIMATE, not a measurement (no card here). Per device op of one forward (the dry-run's
graph capture of the compile run, test/tt_mock_device), a lower bound is the larger of:
  compute  matmul / conv / SDPA FLOPs (tile-padded) over the op's cores at the per-core rate of
           its math fidelity (1 GHz; LoFi 4, HiFi2 2, HiFi3 1.33, HiFi4 1 TFLOPS per core);
  DRAM     bytes of its DRAM inputs and outputs at 288 GB/s per chip;
  L1/NoC   bytes of its L1 inputs and outputs at 64 B per cycle per core (two NoCs).
Ops are summed per stage and per frame. The same estimator runs on a ViT-B/16 at 224, batch 8
(the same encoder code with ViT-B dims), whose published device figure on one Wormhole chip
is 1,560 samples/s (tt-metal): the ratio published / estimated is applied to DPT as the
correction for what a lower bound leaves out (dispatch, op gaps, imperfect overlap).

    .venv/bin/python bench/estimate_tt.py [--size 384] [--json generated/tt_estimate.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_env  # noqa: E402  (borrows the mock-device dry-run from test/)

CLOCK_HZ = 1e9
TFLOPS_PER_CORE = {'LoFi': 4.0, 'HiFi2': 2.0, 'HiFi3': 1.33, 'HiFi4': 1.0}
DRAM_BYTES_PER_S = 288e9
NOC_BYTES_PER_CYCLE_PER_CORE = 64
VIT_B_PUBLISHED = 1560.0          # samples/s, ViT-B/16 224, one Wormhole chip (tt-metal)
TARGET_FPS = 40.0                 # DPT-Large at 384, N300 dp 2 (the bounty's stage 3)
BYTES = {'BFLOAT16': 2.0, 'BFLOAT8_B': 1088 / 1024, 'FLOAT32': 4.0, 'UINT32': 4.0,
         'INT32': 4.0, 'UINT16': 2.0}
COMPUTE_OPS = ('MatmulDeviceOperation', 'Conv2dDeviceOperation', 'SDPAOperation')


def dims(shape: str) -> list[int]:
    return [int(v) for v in re.findall(r'\d+', shape)]


def padded(n: int) -> int:
    return 32 * math.ceil(n / 32)


def tensor_bytes(t: dict) -> float:
    d = dims(t['shape'])
    if not d:
        return 0.0
    if t['layout'] == 'TILE' and len(d) >= 2:
        d[-1], d[-2] = padded(d[-1]), padded(d[-2])
    return math.prod(d) * BYTES.get(t['dtype'], 2.0)


def flops(op: dict) -> float:
    """Tile-padded multiply-add FLOPs of a matmul, conv or SDPA (0 for anything else)."""
    ins = [dims(t['shape']) for t in op['inputs']]
    if op['name'] == 'MatmulDeviceOperation' and len(ins) >= 2:
        a, b = ins[0], ins[1]
        m, k, n = padded(a[-2]), padded(a[-1]), padded(b[-1])
        return 2.0 * math.prod(a[:-2] or [1]) * m * k * n
    if op['name'] == 'Conv2dDeviceOperation' and len(ins) >= 2 and op['outputs']:
        out = dims(op['outputs'][0]['shape'])
        w = ins[1]
        return 2.0 * padded(out[-2]) * padded(w[-2]) * padded(w[-1])
    if op['name'] == 'SDPAOperation' and len(ins) >= 2:
        q, k = ins[0], ins[1]
        return 4.0 * q[0] * q[1] * padded(q[2]) * padded(k[2]) * padded(q[3])
    return 0.0


def op_cores(op: dict, configs: dict) -> int:
    """
    Return the number of cores an op runs on.

    That is its circular buffers' cores where the graph has them, the attention grid for SDPA,
    the encoder grid for block-sharded inputs (the sharded matmuls and LayerNorm), else the
    whole chip.
    """
    if op.get('cb_cores'):
        return op['cb_cores']
    gx, gy = configs['grid']
    if op['name'] == 'SDPAOperation':
        ax, ay = configs['attention_grid']
        return ax * ay
    if any(t['memory'].endswith('BLOCK_SHARDED') for t in op['inputs']):
        ex, ey = configs['encoder_grid']
        return ex * ey
    return gx * gy


def op_time(op: dict, configs: dict) -> dict:
    cores = op_cores(op, configs)
    rate = TFLOPS_PER_CORE.get(op.get('fidelity') or 'HiFi4', 1.0) * 1e12
    tensors = op['inputs'] + op['outputs']
    dram = sum(tensor_bytes(t) for t in tensors if t['memory'].startswith('DRAM'))
    l1 = sum(tensor_bytes(t) for t in tensors if t['memory'].startswith('L1'))
    parts = {'compute': flops(op) / (cores * rate), 'dram': dram / DRAM_BYTES_PER_S,
             'l1': l1 / (cores * NOC_BYTES_PER_CYCLE_PER_CORE * CLOCK_HZ)}
    bound = max(parts, key=parts.get)
    return {'s': parts[bound], 'bound': bound, 'flops': flops(op), **parts}


def stage_of(op: dict, starts: dict) -> str:
    index = op.get('python_index')
    stage = 'io'
    for name, start in sorted(starts.items(), key=lambda kv: kv[1]):
        if index is not None and index >= start:
            stage = name
    return stage


def estimate(report: dict) -> dict:
    configs, starts = report['configs'], report.get('stage_starts', {})
    stages: dict[str, dict] = {}
    kinds: dict[str, float] = {}
    last = 'io'
    for op in report['ops']:
        t = op_time(op, configs)
        stage = stage_of(op, starts) if op.get('python_index') is not None else last
        last = stage
        agg = stages.setdefault(stage, {'ms': 0.0, 'ops': 0, 'compute_bound_ms': 0.0,
                                        'gflop': 0.0})
        agg['ms'] += 1e3 * t['s']
        agg['ops'] += 1
        agg['gflop'] += t['flops'] / 1e9
        if t['bound'] == 'compute':
            agg['compute_bound_ms'] += 1e3 * t['s']
        kinds[op['name']] = kinds.get(op['name'], 0.0) + 1e3 * t['s']
    total = sum(s['ms'] for s in stages.values())
    return {'frame_ms': total, 'stages': stages,
            'by_op': dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
            'batch': configs['batch']}


def dry_run(harness, out: pathlib.Path, device: str, args: list[str]) -> dict:
    rep, tail = bench_env.borrow('tt_mock_device').dry_run(harness, out, device=device, args=args)
    if 'ops' not in rep:
        raise SystemExit(f'dry-run of {args} captured no ops:\n{tail[-2000:]}')
    return rep


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--size', type=int, default=384)
    p.add_argument('--json', default=str(ROOT / 'generated' / 'tt_estimate.json'))
    args = p.parse_args(argv)
    tt_mock_device = bench_env.borrow('tt_mock_device')
    try:
        harness = tt_mock_device.prepare()
    except tt_mock_device.Unavailable as exc:
        print(f'estimate_tt: {exc}', file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dpt = dry_run(harness, pathlib.Path(tmp, 'dpt.json'), 'wormhole_n150',
                      ['--size', str(args.size), '--modes', 'eager', '--strict', '--graph',
                       '--frames', '1'])
        vit = dry_run(harness, pathlib.Path(tmp, 'vit.json'), 'wormhole_n150',
                      ['--size', '224', '--config', 'vit-b', '--backbone-only', '--batch', '8'])
    est_dpt, est_vit = estimate(dpt), estimate(vit)
    vit_fps = est_vit['batch'] * 1e3 / est_vit['frame_ms']
    ratio = VIT_B_PUBLISHED / vit_fps
    fps_chip = 1e3 / est_dpt['frame_ms']
    result = {
        'what': 'ESTIMATE from the mock dry-run op list (no card); lower bound per op, '
                'calibrated on ViT-B/16 224 b8 against its published 1,560 samples/s',
        'image_size': args.size, 'constants': {
            'clock_hz': CLOCK_HZ, 'tflops_per_core': TFLOPS_PER_CORE,
            'dram_bytes_per_s': DRAM_BYTES_PER_S,
            'noc_bytes_per_cycle_per_core': NOC_BYTES_PER_CYCLE_PER_CORE},
        'dpt': est_dpt, 'vit_b': est_vit,
        'vit_b_estimated_samples_per_s': vit_fps, 'vit_b_published_samples_per_s':
            VIT_B_PUBLISHED, 'calibration_ratio': ratio,
        'dpt_fps_per_chip_lower_bound': fps_chip, 'dpt_fps_per_chip_calibrated': fps_chip * ratio,
        'dpt_fps_dp2_calibrated': 2 * fps_chip * ratio, 'target_fps_dp2': TARGET_FPS,
        'configs': dpt['configs'], 'seconds': time.perf_counter() - t0}
    print_table(result)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'wrote {args.json}')
    return 0


def print_table(r: dict) -> None:
    d = r['dpt']
    print(f"DPT-Large {r['image_size']}px, one chip — ESTIMATE (no card):")
    print(f"{'stage':<12} {'ms (lower bound)':>16} {'ops':>5} {'GFLOP':>8} "
          f"{'compute-bound ms':>17}")
    for name, s in sorted(d['stages'].items(), key=lambda kv: -kv[1]['ms']):
        print(f"{name:<12} {s['ms']:>16.2f} {s['ops']:>5} {s['gflop']:>8.1f} "
              f"{s['compute_bound_ms']:>17.2f}")
    print(f"{'frame':<12} {d['frame_ms']:>16.2f}")
    print('by device op (ms):', ', '.join(f'{k} {v:.2f}' for k, v in list(d['by_op'].items())[:6]))
    print(f"ViT-B/16 224 b8: estimated {r['vit_b_estimated_samples_per_s']:.0f} samples/s, "
          f"published {r['vit_b_published_samples_per_s']:.0f} -> ratio "
          f"{r['calibration_ratio']:.3f}")
    print(f"DPT-Large FPS per chip: lower bound {r['dpt_fps_per_chip_lower_bound']:.1f}, "
          f"calibrated {r['dpt_fps_per_chip_calibrated']:.1f}; dp 2 calibrated "
          f"{r['dpt_fps_dp2_calibrated']:.1f} (target {r['target_fps_dp2']:.0f})")


if __name__ == '__main__':
    sys.exit(main())
