"""
An ESTIMATE of a TTNN program's device time on Wormhole boards, from its device-op list.

No card exists where this was built, so nothing here is a measurement. The input is the op list of
one forward (test/support/tt_mock_device's dry-run with --graph, or a graph capture on a card): per
device program its name, the Python call it came from, that call's settings (math fidelity, fp32
accumulation, program grid, SDPA chunks and exp mode, fused activation), and its input and output
tensors (shape, dtype, layout, memory). Nothing about today's model choices is assumed: change a
fidelity, a dtype, a chunk size or the number of ops, and the estimate follows.

Per op, a roofline time at 1 GHz is the larger of
  compute  FPU work (tile-padded matmul / conv / SDPA FLOPs at the op's fidelity: LoFi 4096
           FLOP per cycle per core, each higher fidelity one more phase; LayerNorm and softmax
           as FPU tile ops) plus SFPU work (exp, GELU, other activations, in cycles per tile),
           on the op's cores (SDPA: its head x q-chunk units over the grid, in whole rounds);
  DRAM     bytes of its DRAM tensors at 288 GB/s (SDPA adds its mask read once per head and
           its K/V read once per q chunk);
  L1/NoC   bytes of its L1 tensors at 64 B per cycle per core.
Data movement reaches an assumed share of peak bandwidth. Compute reaches a fraction `eff`
of its roofline, calibrated like for like: the same
estimator on ViT-B/16 224 batch 8 (our encoder code with ViT-B dims, shown with the tt-metal
demo's own settings: LoFi matmuls, bfloat8_b activations, approximate GELU and exp, no mask,
224 tokens) must take the demo's published kernel time. Each op then takes the longest of
a kernel floor, its compute over `eff` (SFPU cycles are measured figures, not derated) and
its data movement; each board
adds its per-op dispatch gap, derived from the demo's trace-wall figure on that board:
gap = (trace-wall time - kernel time) / the demo's 220 device programs per batch.
Data parallel scales the N150 figure by published dp 2 / N150 ratios of heavy models.

Every constant is either a cited public figure (`SOURCES`) or a named assumption with a
pessimistic / central / optimistic value (`ASSUMPTIONS`); the range printed is the spread over
the published calibration rows and those assumptions. API (stable; bench/estimate_tt.py and
bench/first_card.py use it, and so do before/after comparisons of program changes):

    cal = calibrate(vit_report)          # dry-run report of ViT-B (--config vit-b ...)
    est = estimate(report, cal)          # DPT report -> op_count, stages, boards (FPS range)
    with_settings(report, ...)           # what-if: the same ops under other settings
"""
from __future__ import annotations

import copy
import math
import re
import statistics

TILE = 32
CLOCK_HZ = 1e9
LOFI_FLOP_PER_CYCLE = 4096.0        # per core: a 32x32x32 tile matmul in 16 cycles at LoFi
PHASES = {'LoFi': 1, 'HiFi2': 2, 'HiFi3': 3, 'HiFi4': 4}
# ttnn 0.81.1's Wormhole default where a call passes no compute config (tt-metal PR #40089).
DEFAULT_FIDELITY = 'HiFi3'
DRAM_BYTES_PER_S = 288e9            # Wormhole chip peak (tt-perf-report's Wormhole spec)
NOC_BYTES_PER_CYCLE = 64.0          # per core, both NoCs
FPU_CYCLES_PER_TILE_OP = 8.0        # eltwise: 8x16 values per cycle per fidelity phase
# (tech_reports/matrix_engine/matrix_engine.md)
DEFAULT_SDPA_CHUNK = 32
BYTES = {'BFLOAT16': 2.0, 'BFLOAT8_B': 1088 / 1024, 'BFLOAT4_B': 576 / 1024, 'FLOAT32': 4.0,
         'UINT32': 4.0, 'INT32': 4.0, 'UINT16': 2.0, 'UINT8': 1.0}
LEVELS = ('pessimistic', 'central', 'optimistic')
BOARDS = ('n150', 'n300_chip', 'n300_dp2', 't3000_dp8')

# Published figures this estimate rests on (tenstorrent/tt-metal unless said otherwise).
VIT_DEMO_OPS = 220      # device programs per ViT-B batch in models/demos/wormhole/vit
# (ttnn_optimized_sharded_vit_wh.py: 17 per layer x 12, plus embeddings, classifier, moves)
VIT_DEMO_TOKENS = 224   # the demo pads 197 tokens to 224; our code pads to a 64 multiple
VIT_BATCH = 8
# (kernel samples/s, trace-wall samples/s N150, trace-wall samples/s one N300 chip, source)
VIT_PUBLISHED = (
    (1540.0, 1470.0, 1323.0,
     'models/demos/wormhole/vit/demo/test_vit_device_perf.py expected_kernel_samples_per_sec '
     '1540; models/demos/wormhole/vit/tests/test_demo_vit_ttnn_inference_perf_e2e_2cq_trace.py'
     ' expected 1470 (N150) / 1323 (N300, ethernet dispatch), trace + 2 CQs, 1000 iterations'),
    (1430.0, 1377.0, 1250.0, 'PR #23083 "Improve ViT device and e2e time": device ~1430, '
     'e2e ~1377 N150, ~1250 N300 one chip'),
    (1430.0, 1370.0, 1260.0, 'issue #23173 "E2E perf differences on N300 and N150 single chip '
     'ViT": ~1430 device, ~1370 N150, ~1260 N300 (ethernet dispatch)'),
)
# dp 2 on an N300 vs one N150 chip, models/README.md (last update Nov 3 2025), the models
# whose N150 rate is <= 120 FPS (tens of ms of device work per frame, as DPT-Large).
DP2_PUBLISHED = {
    'YOLOv4 640': (74, 123), 'YOLOv5x 640': (67, 126), 'YOLOv6l 640': (103, 181),
    'YOLOv8x 640': (66, 124), 'YOLOv8s_world 640': (105, 189), 'YOLOv9c 640': (98, 173),
    'YOLOv10x 640': (48, 91), 'YOLOv11m 640': (95, 157), 'YOLOv12x 640': (14, 28),
    'UNet vanilla 480x640': (60, 119), 'YOLOv9c seg 640': (87, 153)}
# T3000 / QuietBox dp 8 vs N300 dp 2, the same README: ResNet-50 and ViT-base.
DP8_OVER_DP2_PUBLISHED = {'ResNet-50 224': (9200, 35800), 'ViT-base 224': (1900, 7700)}

# Named assumptions: (pessimistic, central, optimistic) values and where they come from.
ASSUMPTIONS = {
    'exp_accurate_cycles_per_tile': (
        (2300.0, 1150.0, 700.0), 'accurate bf16 exp: ~1150 cycles/tile (issue #43569), 1344 '
        'on Wormhole after PR #29495; pessimistic 2x Blackhole SDPA exp21f (PR #35618)'),
    'exp_approx_cycles_per_tile': (
        (200.0, 128.0, 64.0), 'fast+approx exp, Wormhole: 128 cycles/tile (PR #29495)'),
    'gelu_accurate_cycles_per_tile': (
        (5700.0, 2850.0, 1400.0), 'accurate GELU 2849 cycles/tile on Blackhole (issue #52407); '
        'Wormhole SFPU ~2x Blackhole for exp (PR #29495) gives the pessimistic end'),
    'gelu_approx_cycles_per_tile': (
        (450.0, 223.0, 120.0), 'GELU LUT 223 cycles/tile on Blackhole (issue #52407)'),
    'other_sfpu_cycles_per_tile': (
        (250.0, 124.0, 64.0), 'relu-like SFPU ops: a plain dest copy is 124 cycles/tile on '
        'Blackhole (PR #54317)'),
    'data_movement_efficiency': (
        (0.45, 0.7, 0.85), 'share of peak DRAM / NoC bandwidth a data-movement op reaches: '
        "~70% (42 B/cycle) in tt-metal's directed DRAM tests (issue #23560); assumption"),
    'kernel_floor_us': (
        (4.6, 2.9, 1.5), 'shortest kernel of a small op: a few-tile binary op 2.9 us compiled, '
        '4.6 us traced (issue #20681)'),
    'conv_efficiency_vs_matmul': (
        (0.4, 0.6, 0.8), 'tuned CNNs reach 8-19 TMAC/s per Wormhole chip against ~24 for the '
        'ViT (ResNet-50 4,700 img/s x 4.1 GMAC; models/README.md); assumption'),
    'fidelity_phase_cost': (
        (1.0, 0.7, 0.5), 'time of each fidelity phase past the first, as a share of the first: '
        '1 = FPU-bound; measured N150 matmuls run LoFi bfp8 1.5-1.9x faster than HiFi2 bf16 and '
        'HiFi2 bfp8 1.5-1.8x faster than HiFi4 bf16 (tech_reports/GEMM_FLOPS/GEMM_FLOPS.md)'),
    'layernorm_fpu_ops_per_tile': (
        (9.0, 6.0, 3.0), 'mean, centre, square, variance, scale, affine: assumption'),
    'softmax_fpu_ops_per_score_tile': (
        (6.0, 4.0, 2.0), 'scale, running max, subtract, sum, rescale: assumption'),
}

# The ViT demo's settings (ttnn_optimized_sharded_vit_wh.py): matmuls with ttnn's default
# (LoFi) fidelity, bfloat8_b activations, GELU (ttnn.UnaryOpType.GELU, True) = approximate,
# softmax with an approximate exp, LayerNorm HiFi2, no attention mask, 224 tokens.
VIT_DEMO_SETTINGS = {'matmul_fidelity': 'LoFi', 'norm_fidelity': 'HiFi2',
                     'activation_dtype': 'BFLOAT8_B', 'gelu': 'approx', 'exp': 'approx',
                     'mask': False, 'tokens': VIT_DEMO_TOKENS}

COMPUTE_OPS = ('MatmulDeviceOperation', 'Conv2dDeviceOperation', 'SDPAOperation')


# ---- tensors ---------------------------------------------------------------------------------

def dims(shape: str) -> list[int]:
    """Return the integers of a shape string ('[1, 640, 1024]' -> [1, 640, 1024])."""
    return [int(v) for v in re.findall(r'\d+', shape)]


def padded(n: int) -> int:
    """Round up to a tile multiple."""
    return TILE * math.ceil(n / TILE)


def _tile_dims(t: dict) -> list[int]:
    d = dims(t['shape'])
    if t.get('layout') == 'TILE' and len(d) >= 2:
        d[-1], d[-2] = padded(d[-1]), padded(d[-2])
    return d


def tensor_bytes(t: dict) -> float:
    """Bytes a tensor occupies (TILE layout padded to whole tiles)."""
    d = _tile_dims(t)
    return math.prod(d) * BYTES.get(t.get('dtype'), 2.0) if d else 0.0


def tiles(t: dict) -> float:
    """Return the number of 32x32 tiles of a tensor (its last two dims padded)."""
    d = dims(t['shape'])
    if not d:
        return 0.0
    if len(d) == 1:
        d = [1] + d
    return math.prod(d[:-2] or [1]) * (padded(d[-2]) // TILE) * (padded(d[-1]) // TILE)


def _memory(t: dict) -> str:
    return 'dram' if t.get('memory', '').startswith('DRAM') else 'l1'


# ---- per op work -----------------------------------------------------------------------------

def _fidelity(op: dict) -> str:
    s = op.get('settings') or {}
    return s.get('fidelity') or op.get('fidelity') or DEFAULT_FIDELITY


def matmul_flops(op: dict) -> float:
    """Tile-padded FLOPs of a matmul / conv / SDPA (0 for anything else)."""
    ins = [dims(t['shape']) for t in op['inputs']]
    name = op['name']
    if name == 'MatmulDeviceOperation' and len(ins) >= 2:
        a, b = ins[0], ins[1]
        m, k, n = padded(a[-2]), padded(a[-1]), padded(b[-1])
        return 2.0 * math.prod(a[:-2] or [1]) * m * k * n
    if name == 'Conv2dDeviceOperation' and len(ins) >= 2 and op['outputs']:
        out, w = dims(op['outputs'][0]['shape']), ins[1]
        return 2.0 * padded(out[-2]) * padded(w[-2]) * padded(w[-1])
    if name == 'SDPAOperation' and len(ins) >= 2:
        q, k = ins[0], ins[1]
        return 4.0 * q[0] * q[1] * padded(q[2]) * padded(k[2]) * padded(q[3])
    return 0.0


def op_cores(op: dict, configs: dict) -> int:
    """
    Return the cores an op computes on.

    In order: its program config's grid, its circular buffers' cores, the attention grid for
    SDPA, the encoder grid for block-sharded inputs, else the chip's grid.
    """
    s = op.get('settings') or {}
    if s.get('grid'):
        return int(math.prod(s['grid']))
    if op.get('cb_cores'):
        return int(op['cb_cores'])
    if op['name'] == 'SDPAOperation' and configs.get('attention_grid'):
        return int(math.prod(configs['attention_grid']))
    if configs.get('encoder_grid') and \
            any(t['memory'].endswith('BLOCK_SHARDED') for t in op['inputs']):
        return int(math.prod(configs['encoder_grid']))
    return int(math.prod(configs.get('grid') or (8, 8)))


def _sfpu_kind(activation: str | None) -> str | None:
    if not activation:
        return None
    if activation == 'gelu':
        return 'gelu_accurate'
    if activation.startswith('gelu'):
        return 'gelu_approx'
    return 'other'


def _sdpa_work(op: dict, w: dict, cores: int) -> None:
    """SDPA: score tiles (exp + softmax), units in rounds, mask and K/V re-reads."""
    s = op.get('settings') or {}
    q, k, v = op['inputs'][:3]
    b, h, sq, d = dims(q['shape'])
    sk = dims(k['shape'])[2]
    score_tiles = b * h * (padded(sq) // TILE) * (padded(sk) // TILE)
    w['sfpu_tiles']['exp_approx' if s.get('exp_approx') else 'exp_accurate'] = score_tiles
    w['softmax_tiles'] = score_tiles
    chunk = int(s.get('q_chunk') or DEFAULT_SDPA_CHUNK)
    q_chunks = math.ceil(padded(sq) / chunk)
    units = b * h * q_chunks
    rounds = math.ceil(units / cores)
    w.update(units=units, rounds=rounds, compute_cores=units / rounds)
    kv_bytes = tensor_bytes(k) + tensor_bytes(v)
    w[_memory(k)] += (q_chunks - 1) * kv_bytes          # each q chunk reads its head's K, V
    if len(op['inputs']) > 3:
        mask = op['inputs'][3]
        w[_memory(mask)] += (b * h - 1) * tensor_bytes(mask)   # every head reads the mask


def op_work(op: dict, configs: dict) -> dict:
    """
    Work of one device op, independent of the assumptions' values.

    lofi_cycles (matmul core-cycles at LoFi) and the fidelity phases of its matmul and other
    FPU work, sfpu_tiles by kind, layernorm / softmax / eltwise tiles (FPU tile ops), dram and
    l1 bytes, the cores the compute spreads over and whether it is a conv.
    """
    name = op['name']
    cores = op_cores(op, configs)
    phases = PHASES.get(_fidelity(op), PHASES[DEFAULT_FIDELITY])
    s = op.get('settings') or {}
    tensors = op['inputs'] + op['outputs']
    w = {'name': name, 'cores': cores, 'compute_cores': float(cores), 'phases': phases,
         'flops': matmul_flops(op), 'sfpu_tiles': {}, 'layernorm_tiles': 0.0,
         'softmax_tiles': 0.0, 'eltwise_tiles': 0.0, 'conv': name == 'Conv2dDeviceOperation',
         'dram': sum(tensor_bytes(t) for t in tensors if _memory(t) == 'dram'),
         'l1': sum(tensor_bytes(t) for t in tensors if _memory(t) == 'l1')}
    w['matmul_phases'] = phases
    if name == 'SDPAOperation' and len(op['inputs']) >= 3:
        _sdpa_work(op, w, cores)
        w['matmul_phases'] = PHASES.get(s.get('matmul_fidelity') or '', phases)
    w['lofi_cycles'] = w['flops'] / LOFI_FLOP_PER_CYCLE
    kind = _sfpu_kind(s.get('activation'))
    if name in ('MatmulDeviceOperation', 'Conv2dDeviceOperation', 'UnaryDeviceOperation') \
            and kind and op['outputs']:
        w['sfpu_tiles'][kind] = w['sfpu_tiles'].get(kind, 0.0) + tiles(op['outputs'][0])
    if name == 'LayerNormDeviceOperation' and op['inputs']:
        w['layernorm_tiles'] = tiles(op['inputs'][0])
    if name.startswith('Binary') and op['outputs']:
        w['eltwise_tiles'] = tiles(op['outputs'][0])
    return w


# ---- assumptions, scenarios ------------------------------------------------------------------

def assumptions(level: str) -> dict:
    """Return every assumption's value at 'pessimistic' | 'central' | 'optimistic'."""
    i = LEVELS.index(level)
    return {name: values[i] for name, (values, _) in ASSUMPTIONS.items()}


def _sfpu_cycles(w: dict, a: dict) -> float:
    per_tile = {'exp_accurate': a['exp_accurate_cycles_per_tile'],
                'exp_approx': a['exp_approx_cycles_per_tile'],
                'gelu_accurate': a['gelu_accurate_cycles_per_tile'],
                'gelu_approx': a['gelu_approx_cycles_per_tile'],
                'other': a['other_sfpu_cycles_per_tile']}
    return sum(n * per_tile[kind] for kind, n in w['sfpu_tiles'].items())


def phase_factor(phases: int, a: dict) -> float:
    """Time at a fidelity of `phases` phases over the LoFi time."""
    return 1.0 + a['fidelity_phase_cost'] * (phases - 1)


def roofline_s(w: dict, a: dict) -> dict:
    """Return the roofline parts of one op (s, before efficiency): fpu, sfpu, dram, l1."""
    fpu = w['lofi_cycles'] * phase_factor(w['matmul_phases'], a) + FPU_CYCLES_PER_TILE_OP * (
        phase_factor(w['phases'], a) * (
            w['layernorm_tiles'] * a['layernorm_fpu_ops_per_tile']
            + w['softmax_tiles'] * a['softmax_fpu_ops_per_score_tile'])
        + w['eltwise_tiles'])
    if w['conv']:
        fpu /= a['conv_efficiency_vs_matmul']
    cores = w['compute_cores']
    return {'fpu': fpu / cores / CLOCK_HZ, 'sfpu': _sfpu_cycles(w, a) / cores / CLOCK_HZ,
            'dram': w['dram'] / DRAM_BYTES_PER_S,
            'l1': w['l1'] / (w['cores'] * NOC_BYTES_PER_CYCLE * CLOCK_HZ)}


def kernel_s(w: dict, a: dict, eff: float) -> float:
    """
    Return one op's kernel time (s).

    That is the longest of the floor, its compute at the calibrated efficiency `eff` (SFPU
    cycles are measured figures, not derated) and its data movement at the assumed share of
    peak bandwidth.
    """
    r = roofline_s(w, a)
    data = a['data_movement_efficiency']
    return max(a['kernel_floor_us'] * 1e-6, r['fpu'] / eff + r['sfpu'], r['dram'] / data,
               r['l1'] / data)


def works(report: dict) -> list[dict]:
    """op_work of every op of a report, with its stage."""
    configs, starts = report.get('configs') or {}, report.get('stage_starts') or {}
    out, stage = [], 'io'
    order = sorted(starts.items(), key=lambda kv: kv[1])
    for op in report['ops']:
        index = op.get('python_index')
        if index is not None:
            stage = 'io'
            for name, start in order:
                if index >= start:
                    stage = name
        w = op_work(op, configs)
        w['stage'] = stage
        out.append(w)
    return out


# ---- what-if settings ------------------------------------------------------------------------

def with_settings(report: dict, *, matmul_fidelity: str | None = None,
                  norm_fidelity: str | None = None, activation_dtype: str | None = None,
                  gelu: str | None = None, exp: str | None = None, mask: bool = True,
                  tokens: int | None = None) -> dict:
    """
    Return a copy of a report whose ops carry other settings (a what-if, nothing is run).

    matmul_fidelity: matmuls, convs and SDPA; norm_fidelity: LayerNorm; activation_dtype:
    every bf16 TILE tensor; gelu / exp: 'approx' | 'accurate'; mask=False drops SDPA's mask;
    tokens replaces the padded token count (configs['tokens_padded']) in every shape.
    """
    rep = copy.deepcopy(report)
    old_tokens = (rep.get('configs') or {}).get('tokens_padded')
    for op in rep['ops']:
        s = op.setdefault('settings', {})
        if matmul_fidelity and op['name'] in COMPUTE_OPS:
            s['fidelity'] = op['fidelity'] = matmul_fidelity
            s.pop('matmul_fidelity', None)
        if norm_fidelity and op['name'] == 'LayerNormDeviceOperation':
            s['fidelity'] = op['fidelity'] = norm_fidelity
        if gelu and (s.get('activation') or '').startswith('gelu'):
            s['activation'] = 'gelu' if gelu == 'accurate' else 'gelu_approx'
        if exp and op['name'] == 'SDPAOperation':
            s['exp_approx'] = exp == 'approx'
        if not mask and op['name'] == 'SDPAOperation':
            op['inputs'] = op['inputs'][:3]
        for t in op['inputs'] + op['outputs']:
            if activation_dtype and t.get('layout') == 'TILE' and t.get('dtype') == 'BFLOAT16':
                t['dtype'] = activation_dtype
            if tokens and old_tokens:
                t['shape'] = '[' + ', '.join(str(tokens if v == old_tokens else v)
                                             for v in dims(t['shape'])) + ']'
    if not mask:   # the op that prepares the mask goes with it
        rep['ops'] = [op for op in rep['ops'] if not (
            op['name'] != 'SDPAOperation' and op.get('call', '').endswith(
                'scaled_dot_product_attention'))]
    return rep


# ---- calibration -----------------------------------------------------------------------------

def _solve_eff(ws: list[dict], a: dict, target_s: float) -> float:
    """Return the efficiency at which the kernel times add up to target_s (log bisection)."""
    lo, hi = 1e-3, 10.0
    if sum(kernel_s(w, a, hi) for w in ws) > target_s:
        return hi       # even 10x the roofline is too slow: floors dominate; say so upstream
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if sum(kernel_s(w, a, mid) for w in ws) > target_s:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def dispatch_gaps(published=VIT_PUBLISHED, ops: int = VIT_DEMO_OPS,
                  batch: int = VIT_BATCH) -> list[dict]:
    """Per published row: the per-op gap (s) on an N150 and one N300 chip, with the derivation."""
    rows = []
    for kernel, wall_n150, wall_n300, source in published:
        k_s = batch / kernel
        rows.append({'kernel_samples_per_s': kernel, 'wall_n150_samples_per_s': wall_n150,
                     'wall_n300_samples_per_s': wall_n300, 'source': source,
                     'gap_n150_s': (batch / wall_n150 - k_s) / ops,
                     'gap_n300_s': (batch / wall_n300 - k_s) / ops,
                     'kernel_s_per_batch': k_s})
    return rows


def calibrate(vit_report: dict, published=VIT_PUBLISHED, demo: dict | None = None) -> dict:
    """
    Calibrate on ViT-B: per published row and assumption level, the efficiency `eff`.

    vit_report is the dry-run of our encoder with ViT-B dims (batch 8, 224); it is shown with
    the demo's settings (VIT_DEMO_SETTINGS) before its kernel times are matched to the row's
    published kernel time.
    """
    demo = VIT_DEMO_SETTINGS if demo is None else demo
    batch = (vit_report.get('configs') or {}).get('batch', VIT_BATCH)
    ws = works(with_settings(vit_report, **demo))
    rows = dispatch_gaps(published, batch=batch)
    for row in rows:
        row['eff'] = {level: _solve_eff(ws, assumptions(level), row['kernel_s_per_batch'])
                      for level in LEVELS}
    roof = sum(max(roofline_s(w, assumptions('central')).values()) for w in ws)
    return {'rows': rows, 'vit_ops': len(ws), 'vit_batch': batch, 'demo_settings': demo,
            'vit_roofline_s_per_batch': roof,
            'vit_roofline_samples_per_s': batch / roof if roof else float('inf')}


def dp_ratios() -> dict:
    """(low, central, high) dp 2 / N150 and dp 8 / dp 2 from the published pairs."""
    dp2 = sorted(b / a for a, b in DP2_PUBLISHED.values())
    dp8 = sorted(b / a for a, b in DP8_OVER_DP2_PUBLISHED.values())
    return {'dp2_over_n150': (dp2[0], statistics.median(dp2), dp2[-1]),
            'dp8_over_dp2': (dp8[0], statistics.median(dp8), dp8[-1])}


# ---- the estimate ----------------------------------------------------------------------------

def _frame(ws: list[dict], a: dict, eff: float, gap_s: float) -> dict:
    """Per stage kernel + gap seconds, and the frame's, for one scenario and board."""
    stages: dict[str, float] = {}
    for w in ws:
        stages[w['stage']] = stages.get(w['stage'], 0.0) + kernel_s(w, a, eff) + gap_s
    return {'stages': stages, 'frame_s': sum(stages.values())}


def _spread(values_by_level: dict) -> dict:
    """Scenario frame seconds per level (lists over rows) -> pessimistic/central/optimistic."""
    return {'pessimistic': max(values_by_level['pessimistic']),
            'central': statistics.median(values_by_level['central']),
            'optimistic': min(values_by_level['optimistic'])}


def estimate(report: dict, calibration: dict) -> dict:
    """
    Estimate a program's device time per frame on each board, as a range.

    Returns op_count (device programs per forward), per-stage ops / GFLOP / roofline ms, and
    per board ms and FPS per frame at pessimistic / central / optimistic (FPS low / central /
    high). Frame = the report's per-chip batch (fps counts its frames).
    """
    ws = works(report)
    batch = (report.get('configs') or {}).get('batch', 1)
    central = assumptions('central')
    stages: dict[str, dict] = {}
    for w in ws:
        st = stages.setdefault(w['stage'], {'ops': 0, 'gflop': 0.0, 'roofline_ms': 0.0})
        st['ops'] += 1
        st['gflop'] += w['flops'] / 1e9
        st['roofline_ms'] += 1e3 * max(roofline_s(w, central).values())
    boards: dict[str, dict] = {}
    for board, gap_key in (('n150', 'gap_n150_s'), ('n300_chip', 'gap_n300_s')):
        frames = {level: [] for level in LEVELS}
        per_stage = {level: [] for level in LEVELS}
        for row in calibration['rows']:
            for level in LEVELS:
                f = _frame(ws, assumptions(level), row['eff'][level], row[gap_key])
                frames[level].append(f['frame_s'])
                per_stage[level].append(f['stages'])
        ms = {k: 1e3 * v for k, v in _spread(frames).items()}
        boards[board] = {'ms': ms, 'fps': _fps(ms, batch), 'stages_ms': {
            name: {k: 1e3 * v for k, v in _spread(
                {lv: [s.get(name, 0.0) for s in per_stage[lv]] for lv in LEVELS}).items()}
            for name in stages}}
    ratios = dp_ratios()
    n150 = boards['n150']['fps']
    dp2 = {k: n150[k] * r for k, r in zip(('low', 'central', 'high'), ratios['dp2_over_n150'])}
    dp8 = {k: dp2[k] * r for k, r in zip(('low', 'central', 'high'), ratios['dp8_over_dp2'])}
    boards['n300_dp2'] = {'fps': dp2, 'chips': 2}
    boards['t3000_dp8'] = {'fps': dp8, 'chips': 8}
    return {'op_count': len(ws), 'batch': batch, 'stages': stages, 'boards': boards,
            'roofline_ms': sum(s['roofline_ms'] for s in stages.values()),
            'by_op_ms': _by_op(ws, central, calibration)}


def _fps(ms: dict, batch: int) -> dict:
    return {'low': 1e3 * batch / ms['pessimistic'], 'central': 1e3 * batch / ms['central'],
            'high': 1e3 * batch / ms['optimistic']}


def _by_op(ws: list[dict], a: dict, calibration: dict) -> dict:
    """Central kernel ms per device-op name (first calibration row), largest first."""
    eff = calibration['rows'][0]['eff']['central']
    out: dict[str, float] = {}
    for w in ws:
        out[w['name']] = out.get(w['name'], 0.0) + 1e3 * kernel_s(w, a, eff)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def sources() -> dict:
    """Every published figure and named assumption the estimate uses, JSON-ready."""
    return {'vit_published': [list(r) for r in VIT_PUBLISHED], 'vit_demo_ops': VIT_DEMO_OPS,
            'vit_demo_settings': VIT_DEMO_SETTINGS, 'dp2_published': DP2_PUBLISHED,
            'dp8_over_dp2_published': DP8_OVER_DP2_PUBLISHED,
            'assumptions': {k: {'values': list(v), 'source': s}
                            for k, (v, s) in ASSUMPTIONS.items()},
            'constants': {'clock_hz': CLOCK_HZ, 'lofi_flop_per_cycle_per_core':
                          LOFI_FLOP_PER_CYCLE, 'fidelity_phases': PHASES,
                          'default_fidelity': DEFAULT_FIDELITY,
                          'dram_bytes_per_s': DRAM_BYTES_PER_S,
                          'noc_bytes_per_cycle_per_core': NOC_BYTES_PER_CYCLE,
                          'fpu_cycles_per_tile_op': FPU_CYCLES_PER_TILE_OP}}
