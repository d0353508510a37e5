"""
bf16 and fp32 matmul speed per CPU class: DPT_ROS_CPU_CLASS against a CPU without bf16.

On an AMD Zen 3 (AVX2 only, no bf16 units) torch's bf16 ``a @ b`` ran at 0.3 GFLOPS against
63-74 for fp32, bf16 ``F.linear`` at 13 (2 threads, 640x1024 @ 1024x4096; issue 25). This
measures the same products on this machine, once per CPU class (test/support/cpu_class.py), each in
a subprocess made that class as the tests' processes are, all in one run, rounds interleaved so
that load from other jobs falls on every class alike. It also records what each class makes
torch (CPU capability, oneDNN bf16 support) and OpenVINO (optimisation capabilities) report.

    .venv/bin/python bench/bench_cpu_class.py [--classes native,avx2] [--threads 2]
        [--rounds 3] [--seconds 1.0] [--out generated/bench_cpu_class.json]

Prints GFLOPS per class and product (median over rounds), writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import bench_env  # noqa: I100  (first: sets up sys.path)

ROOT = bench_env.setup()

from support import cpu_class  # noqa: E402  (test/support/cpu_class.py)

M, K, N = 640, 1024, 4096
PRODUCTS = ('bf16_matmul', 'fp32_matmul', 'bf16_linear', 'fp32_linear')


def measure(threads: int, seconds: float) -> dict:
    """GFLOPS of each product in this process (at least one call, about `seconds` each)."""
    import torch
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(M, K, generator=gen)
    b = torch.randn(K, N, generator=gen)
    w = b.t().contiguous()
    calls = {'bf16_matmul': (torch.matmul, a.bfloat16(), b.bfloat16()),
             'fp32_matmul': (torch.matmul, a, b),
             'bf16_linear': (torch.nn.functional.linear, a.bfloat16(), w.bfloat16()),
             'fp32_linear': (torch.nn.functional.linear, a, w)}
    out = {}
    for name in PRODUCTS:
        fn, x, y = calls[name]
        start = time.perf_counter()
        fn(x, y)                  # warm-up (oneDNN primitive creation), unless it is slow
        n, first = 1, time.perf_counter() - start
        if first < seconds:       # a slow path's one call is its figure (it takes a minute)
            n, start = 0, time.perf_counter()
            while n == 0 or time.perf_counter() - start < seconds:
                fn(x, y)
                n += 1
        out[name] = 2 * M * K * N * n / (time.perf_counter() - start) / 1e9
    return out


def capabilities() -> dict:
    """Return what torch and OpenVINO report about this process's CPU."""
    import torch
    info = {'torch_cpu_capability': torch.backends.cpu.get_cpu_capability(),
            'torch_mkldnn_bf16_supported': bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}
    try:
        from dpt_ros.backends.precision import openvino_capabilities
        info['openvino_capabilities'] = list(openvino_capabilities())
    except Exception as exc:    # OpenVINO absent or broken: say so, the torch figures stand
        info['openvino_capabilities'] = f'unavailable: {exc}'
    return info


def child(args) -> int:
    """Measure in this process, made its class first (as test/conftest.py does); JSON out."""
    cpu_class.apply()
    result = {'gflops': measure(args.threads, args.seconds)}
    if args.capabilities:
        result.update(capabilities())
    print(json.dumps(result))
    return 0


def run_class(name: str, args, capabilities_too: bool) -> dict:
    env = {k: v for k, v in os.environ.items()        # from native, whatever the shell had
           if k not in set().union(*cpu_class.CLASSES.values())}
    env[cpu_class.VARIABLE] = name
    cmd = [sys.executable, os.path.abspath(__file__), '--child', '--threads', str(args.threads),
           '--seconds', str(args.seconds)] + (['--capabilities'] if capabilities_too else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--classes', default='native,avx2')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--seconds', type=float, default=1.0)
    p.add_argument('--out', default=os.path.join(ROOT, 'generated', 'bench_cpu_class.json'))
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--capabilities', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    from dpt_ros.perf.report import host, versions, write_json
    classes = args.classes.split(',')
    load_before = os.getloadavg()
    rounds = {c: [] for c in classes}
    info = {}
    for r in range(args.rounds):
        for c in classes:
            res = run_class(c, args, capabilities_too=(r == 0))
            rounds[c].append(res['gflops'])
            if r == 0:
                info[c] = {k: v for k, v in res.items() if k != 'gflops'}
    median = {c: {prod: statistics.median(g[prod] for g in rounds[c]) for prod in PRODUCTS}
              for c in classes}
    print(f'{M}x{K} @ {K}x{N}, {args.threads} threads, GFLOPS (median of {args.rounds} rounds)')
    print(f'{"class":<12}' + ''.join(f'{prod:>13}' for prod in PRODUCTS)
          + f'{"bf16@/fp32@":>13}')
    for c in classes:
        g = median[c]
        print(f'{c:<12}' + ''.join(f'{g[prod]:>13.2f}' for prod in PRODUCTS)
              + f'{g["bf16_matmul"] / g["fp32_matmul"]:>13.4f}')
        print(f'{"":<12}{json.dumps(info[c])}')
    print(f'load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}')
    write_json(args.out, {
        'benchmark': 'bench_cpu_class', 'shape': [M, K, N], 'threads': args.threads,
        'rounds': args.rounds, 'host': host(), 'versions': versions(),
        'load_average_before': load_before, 'load_average_after': os.getloadavg(),
        'classes': {c: {'settings': cpu_class.settings(c),
                        'gflops_median': median[c], 'gflops_rounds': rounds[c], **info[c]}
                    for c in classes}})
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
