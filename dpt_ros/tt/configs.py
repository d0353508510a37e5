"""
Every TTNN program / memory / compute / conv config of the model, built in ONE place.

`build_configs(hf_config, device='wormhole_n300', image_size=384, grid=(8, 8))` derives all of
them from the model dimensions, the image size and the chip's compute grid (read from the
opened device: 8x8 on a Wormhole with ETH dispatch, 8x7 under WORKER dispatch; data parallel
gives each chip its own copy, so per-chip configs are the same).

Layout decisions (why):
* Tokens are padded to `tokens_padded`, the fewest tiles whose count (x batch) splits evenly
  over all rows of the chip's grid (577 -> 768 at 384: 24 tiles, 3 per row of an 8x8 grid; the
  smallest padding, 640 on an 8x5 grid, left 24 cores idle in every matmul and gave each of the
  other 40 four tiles; the bench/estimate_tt.py figures in docs/benchmarks.md weigh it against
  the larger attention). Padded keys are hidden in attention so results are exact.
* Encoder activations are block sharded in L1 over that grid; QKV / out-proj / FF1 (+GELU
  fused) / FF2 use 2D multicast matmuls whose per-core blocks equal the shards (QKV writes
  and the out-projection reads interleaved L1: the head split / concat want it, and no
  reshard program is spent either side); LayerNorm is the sharded variant on the same grid.
* Attention is ttnn's flash SDPA (non-causal, additive key mask) on the full grid: a
  [heads, T, T] score tensor would not fit L1 at 512 (T=1152).
* Convolutions take an explicit path, never ttnn's choice at call time (which depends on the
  L1 free at that moment, so the compile run and the trace capture could build different
  programs): `l1` (slice config L1Full: the input is sharded straight from DRAM or L1, the
  output stays in L1) or `dram` (DRAMSliceHeight with a slice count fixed here; output in
  DRAM). Block sharding where channels are many (each core then holds 1/8 of the weights;
  height sharding would put all 3x3x256x256 of them in every core's L1), height sharding where
  they are few (the head). Each conv's counted fallback (`conv_default`) leaves the sharding to
  ttnn but not the rest: DRAM slices with a fixed count and an explicit activation block of one
  tile row. With a DRAM slice config and act_block_h_override 0, prepared weights give ~50%
  PCC without an error (tt-metal #35852); the fallback also prepares its own weights from the
  host copy (ops.TtConv2d), never reusing those prepared for the tuned sharding.
* Weights bfloat8_b by default (bf16 selectable), activations bf16 (but the fast profile's
  QKV / FF1 outputs and the conv outputs, bfloat8_b). Compute kernel configs
  (`compute`), every op gets one explicitly: `matmul` and `conv` take `math_fidelity` (HiFi2
  by default) without fp32 accumulation; `norm` and `sdpa` (LayerNorm and SDPA, whose
  statistics and softmax sums need fp32) are HiFi3 + fp32 accumulation whatever
  `math_fidelity` says (the accurate profile; fast: HiFi2 + fp32);
  `upsample` (the x2 interpolation matmuls) is `math_fidelity` but never below HiFi2 (LoFi
  would quantise the interpolation weights). No config pairs HiFi4 with fp32 accumulation:
  on Wormhole that pair corrupts single outputs by powers of two (tt-metal #38306, no fix on
  Wormhole silicon; ttnn moved its own defaults to HiFi3 + fp32, #40089, and the 0.81.1 wheel
  warns about the pair). LayerNorm is the op whose ttnn 0.81.1 default IS that pair (seen in
  a graph capture on the mock: matmul HiFi2, SDPA HiFi2, conv2d and clone HiFi4, all without
  fp32; LayerNorm HiFi4 + fp32), so it must never run on ttnn's default.
* The encoder's numerics are named per-op settings (`EncoderPrecision`: QKV / out-proj / FF1 /
  FF2 fidelity and output dtype, GELU kernel, LayerNorm and SDPA fidelity, fp32 accumulation,
  SDPA matmul fidelity and exp mode) in two profiles (`PRECISION_PROFILES`): `accurate`,
  today's numerics and the default, and `fast`, the tt-metal ViT demo's (LoFi matmuls,
  bfloat8_b out of QKV and FF1, approximate GELU and exp, LayerNorm HiFi2). The device double
  computes in bf16/fp32 whatever the fidelity and exp mode say, so only a card can show the
  fast profile holds PCC (bench/first_card.py runs both).
* Attention runs in one round over the grid where it can: the q chunk is the one whose
  (batch x heads x q chunks) units fill the cores best (640 tokens at 384: 160, 4 x 16 = 64
  units on 64 cores; 128 gave 80 units, two rounds). The padded keys are hidden by ttnn's
  windowed SDPA (`cu_window_seqlens` [0, tokens, padded]: the mask is built on the device, no
  [S, S] mask is read per head and no op rescales it per call), and SDPA writes the heads
  side by side (no concatenate_heads op).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import math

from dpt_ros.vocabulary import TT_DEVICES, TT_PRECISIONS

TILE = 32
WORMHOLE_GRID = (8, 8)          # compute_with_storage_grid_size (x, y) with ETH dispatch
WEIGHT_DTYPES = ('bfloat8_b', 'bfloat16')
MATH_FIDELITIES = ('LoFi', 'HiFi2', 'HiFi3', 'HiFi4')
# Where fp32 accumulation is needed (LayerNorm, SDPA): HiFi3, the most a Wormhole gives with
# fp32 accumulation without tt-metal #38306's wrong outputs.
FP32_ACC_FIDELITY = 'HiFi3'
# The least the x2 interpolation matmuls run at (LoFi would quantise their weights).
UPSAMPLE_MIN_FIDELITY = 'HiFi2'
ACTIVATION_DTYPES = ('bfloat16', 'bfloat8_b')


@dataclass(frozen=True)
class EncoderPrecision:
    """
    The ViT encoder's numerics, op by op (one profile of PRECISION_PROFILES).

    A matmul fidelity of None follows build_configs' `math_fidelity`. `*_dtype` is the dtype of
    the activations an op writes; `norm_fp32` / `sdpa_fp32` turn on fp32 accumulation (never
    with HiFi4: tt-metal #38306); `sdpa_matmul_fidelity` is SDPA's QK and PV matmuls (None:
    `sdpa_fidelity`), `sdpa_exp_approx` its exp kernel.
    """

    qkv_fidelity: str | None
    out_fidelity: str | None
    ff1_fidelity: str | None
    ff2_fidelity: str | None
    qkv_dtype: str
    ff1_dtype: str
    gelu_approx: bool
    norm_fidelity: str
    norm_fp32: bool
    sdpa_fidelity: str
    sdpa_fp32: bool
    sdpa_matmul_fidelity: str | None
    sdpa_exp_approx: bool

    def describe(self) -> dict:
        """Plain dict for logs and perf headers."""
        return dataclasses.asdict(self)


PRECISION_PROFILES = {
    # Today's numerics: matmuls at math_fidelity, bf16 activations, exact (erf) GELU as HF,
    # LayerNorm and SDPA HiFi3 + fp32 (statistics and softmax sums), accurate exp.
    'accurate': EncoderPrecision(
        qkv_fidelity=None, out_fidelity=None, ff1_fidelity=None, ff2_fidelity=None,
        qkv_dtype='bfloat16', ff1_dtype='bfloat16', gelu_approx=False,
        norm_fidelity=FP32_ACC_FIDELITY, norm_fp32=True, sdpa_fidelity=FP32_ACC_FIDELITY,
        sdpa_fp32=True, sdpa_matmul_fidelity=None, sdpa_exp_approx=False),
    # The tt-metal ViT demo's (ttnn_optimized_sharded_vit_wh.py): LoFi matmuls, bfloat8_b out
    # of QKV and FF1, approximate GELU, LayerNorm HiFi2, QK / PV at LoFi with a fast exp. fp32
    # accumulation stays on in LayerNorm and SDPA (HiFi2, never the #38306 pair): ViT-L sums
    # 1,024 features over 24 layers and softmax over up to 1,152 keys, more than ViT-B's demo.
    'fast': EncoderPrecision(
        qkv_fidelity='LoFi', out_fidelity='LoFi', ff1_fidelity='LoFi', ff2_fidelity='LoFi',
        qkv_dtype='bfloat8_b', ff1_dtype='bfloat8_b', gelu_approx=True,
        norm_fidelity='HiFi2', norm_fp32=True, sdpa_fidelity='HiFi2', sdpa_fp32=True,
        sdpa_matmul_fidelity='LoFi', sdpa_exp_approx=True),
}
assert tuple(PRECISION_PROFILES) == TT_PRECISIONS
# The encoder's linears, their names in cfg.program / cfg.compute / the prepared weights.
ENCODER_LINEARS = ('qkv', 'out', 'ff1', 'ff2')


@dataclass(frozen=True)
class ModelDims:
    """The DPT dimensions the TT model needs (from a transformers DPTConfig)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    patch: int
    image_size: int
    out_indices: tuple
    neck: tuple
    factors: tuple
    fusion: int
    eps: float

    @classmethod
    def from_hf(cls, hf_config, image_size: int | None = None) -> 'ModelDims':
        if getattr(hf_config, 'is_hybrid', False) or hf_config.readout_type != 'project':
            raise ValueError('the TT model implements DPT-Large (ViT, readout "project") only')
        if getattr(hf_config, 'add_projection', False) or \
                getattr(hf_config, 'use_batch_norm_in_fusion_residual', False):
            raise ValueError('head projection / fusion batch norm variants are not supported')
        return cls(hidden=hf_config.hidden_size, layers=hf_config.num_hidden_layers,
                   heads=hf_config.num_attention_heads,
                   intermediate=hf_config.intermediate_size, patch=hf_config.patch_size,
                   image_size=int(image_size or hf_config.image_size),
                   out_indices=tuple(hf_config.backbone_out_indices),
                   neck=tuple(hf_config.neck_hidden_sizes),
                   factors=tuple(hf_config.reassemble_factors),
                   fusion=hf_config.fusion_hidden_size, eps=hf_config.layer_norm_eps)

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch

    @property
    def patches(self) -> int:
        return self.grid * self.grid

    @property
    def tokens(self) -> int:
        """Patch tokens + CLS."""
        return self.patches + 1

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def _largest_divisor(n: int, at_most: int, at_least: int = 1) -> int | None:
    for d in range(min(n, at_most), at_least - 1, -1):
        if n % d == 0:
            return d
    return None


def subblock_w(per_core_n: int, limit: int = 8) -> int:
    """out_subblock_w for out_subblock_h=1: the largest divisor of per_core_N <= limit."""
    return _largest_divisor(per_core_n, limit)


def pad_tokens(tokens: int, batch: int = 1, rows: int = WORMHOLE_GRID[1]) -> tuple[int, int]:
    """
    Return (tokens_padded, rows) for a sequence of `tokens` tokens.

    tokens_padded is the fewest whole tiles >= tokens whose batch x tiles split evenly over all
    `rows` rows of the grid: every core of the encoder grid holds token rows (at 384 px 577 ->
    768, 3 tiles a core on 8x8; 640 left 8x3 cores idle on an 8x5 grid with 4 tiles each).
    """
    tiles = math.ceil(tokens / TILE)
    while (batch * tiles) % rows:
        tiles += 1
    return tiles * TILE, rows


@dataclass
class TtConfigs:
    """Everything ttnn-config-shaped the model uses; see module doc for the choices."""

    device: str
    chips: int
    image_size: int
    batch: int                      # per chip
    dims: ModelDims
    weight_dtype_name: str
    math_fidelity_name: str
    tokens_padded: int
    encoder_grid: tuple             # (x, y)
    attention_grid: tuple           # (x, y)
    sdpa_chunk: int = 0             # q chunk
    sdpa_k_chunk: int = 0
    precision_name: str = 'accurate'
    precision: EncoderPrecision = PRECISION_PROFILES['accurate']
    encoder_dtype: dict = field(default_factory=dict)   # linear -> activation dtype name out
    memory: dict = field(default_factory=dict)
    program: dict = field(default_factory=dict)
    compute: dict = field(default_factory=dict)
    activation: dict = field(default_factory=dict)      # name -> ttnn.UnaryWithParam
    grid: tuple = WORMHOLE_GRID     # the chip's compute_with_storage_grid_size (x, y)
    conv: dict = field(default_factory=dict)
    conv_slice: dict = field(default_factory=dict)      # name -> Op2DSliceConfig (always set)
    conv_shard: dict = field(default_factory=dict)
    conv_path: dict = field(default_factory=dict)       # name -> 'l1' | 'dram'
    conv_out_dram: dict = field(default_factory=dict)   # name -> output to DRAM (else L1)
    conv_out: dict = field(default_factory=dict)        # name -> 'dram' | 'l1' | 'sharded'
    conv_dtype: dict = field(default_factory=dict)      # name -> output dtype name
    # The counted fallback of each conv: ttnn's own sharding through explicit DRAM slices.
    conv_default: dict = field(default_factory=dict)        # name -> Conv2dConfig
    conv_default_slice: dict = field(default_factory=dict)  # name -> Op2DSliceConfig

    @property
    def weight_dtype(self):
        import ttnn
        return getattr(ttnn, self.weight_dtype_name)

    def dram_slices(self, name: str) -> int:
        """Return the DRAM slice count of conv `name` (1 for a conv on the L1 path)."""
        return self.conv_slice[name].num_slices if self.conv_path[name] == 'dram' else 1

    def weight_key(self) -> dict:
        """Return what prepared weights depend on (part of the on-disk cache key)."""
        return {'dims': dataclasses.asdict(self.dims), 'image_size': self.image_size,
                'tokens_padded': self.tokens_padded, 'weight_dtype': self.weight_dtype_name}

    def describe(self) -> dict:
        """Plain summary for logs / perf headers."""
        return {'device': self.device, 'image_size': self.image_size, 'batch': self.batch,
                'tokens': self.dims.tokens, 'tokens_padded': self.tokens_padded,
                'encoder_grid': list(self.encoder_grid),
                'attention_grid': list(self.attention_grid), 'grid': list(self.grid),
                'conv_dram_slices': {name: self.dram_slices(name) for name, path
                                     in self.conv_path.items() if path == 'dram'},
                'weight_dtype': self.weight_dtype_name,
                'math_fidelity': self.math_fidelity_name, 'precision': self.precision_name,
                'sdpa_chunks': [self.sdpa_chunk, self.sdpa_k_chunk]}

    def out_dtype(self, linear: str):
        """Return the ttnn dtype encoder linear `linear` writes (its precision setting)."""
        import ttnn
        return getattr(ttnn, self.encoder_dtype.get(linear, 'bfloat16'))


# Channels (in and out) from which a conv is block sharded; below, height sharded (the weights
# are then small enough for every core to hold all of them).
_BLOCK_SHARDED_MIN_CHANNELS = 128
# Bytes of a conv's input + output per core above which it is sliced through DRAM, and the
# most per slice: 480 KiB (30 MiB over 8x8) keeps head.conv1 in L1 at 384 (28 MB; 3 DRAM
# slices under the old rule of 8 MiB of the larger side) and head.conv2 at 2 slices (5). In
# the dry-run one slice of head.conv2 at 384 ran out of L1, fusion.3 at 512 with two frames a
# chip (33.5 MB) clashed with L1 in one piece, and so did head.conv2 in 3 slices with two
# frames a chip on 8x7 (WORKER dispatch; 47 KB left on 8x8): the budget goes with the cores.
_CONV_BYTES_PER_CORE = 480 << 10
# Most tile rows of a conv's activation block (act_block_h_override) on the L1 path.
_ACT_BLOCK_TILES = 8
# The fallback conv's activation block: one tile row (divides every core's height; never 0,
# tt-metal #35852).
_FALLBACK_ACT_BLOCK_H = TILE


def build_configs(hf_config, device: str = 'wormhole_n300', image_size: int | None = None,
                  batch: int = 1, weight_dtype: str = 'bfloat8_b',
                  math_fidelity: str = 'HiFi2', grid: tuple | None = None,
                  precision: str = 'accurate') -> TtConfigs:
    """
    Build every config for (model, device, image size, per-chip batch, chip grid, precision).

    `grid` is the chip's compute_with_storage_grid_size as (x, y) (default 8x8); pass what the
    opened device reports (`device_grid`). `precision` names the encoder's profile
    (PRECISION_PROFILES).
    """
    dims = _checked_dims(hf_config, device, image_size, batch, weight_dtype, math_fidelity)
    if precision not in PRECISION_PROFILES:
        raise ValueError(f'precision {precision!r}: one of {TT_PRECISIONS}')
    prec = PRECISION_PROFILES[precision]
    gx, gy_max = tuple(int(v) for v in (grid or WORMHOLE_GRID))
    if gx < 1 or gy_max < 4:
        raise ValueError(f'compute grid {gx}x{gy_max}: the encoder needs at least 4 rows')
    if batch > 1 and (gx, gy_max) != WORMHOLE_GRID:
        # On 8x7 the head's full-resolution conv of two frames clashed with L1 in the
        # dry-run in 3, 4 and (at 512) 7 DRAM slices.
        raise ValueError(f'{batch} frames a chip need the 8x8 grid, not {gx}x{gy_max} (WORKER '
                         'dispatch): the head does not fit L1')
    hidden_t = dims.hidden // TILE
    inter_t = dims.intermediate // TILE
    x = _largest_divisor(math.gcd(hidden_t, inter_t), gx)
    tokens_padded, y = pad_tokens(dims.tokens, batch, gy_max)
    cfg = TtConfigs(device=device, chips=TT_DEVICES[device], image_size=dims.image_size,
                    batch=batch, dims=dims, weight_dtype_name=weight_dtype,
                    math_fidelity_name=math_fidelity, tokens_padded=tokens_padded,
                    encoder_grid=(x, y), attention_grid=(0, 0), grid=(gx, gy_max),
                    precision_name=precision, precision=prec,
                    encoder_dtype={'qkv': prec.qkv_dtype, 'ff1': prec.ff1_dtype})
    cfg.compute.update(compute_configs(math_fidelity, prec))
    _plan_encoder(cfg, x, y)
    _plan_attention(cfg)
    _plan_reassemble(cfg)
    _plan_fusion(cfg)
    # Convolutions of the neck / fusion / head: (name, in_ch, out_ch, in_hw, kernel, act).
    for name, cin, cout, hw, relu in conv_plan(dims):
        _plan_conv(cfg, name, cin, cout, batch * hw * hw, relu)
    return cfg


def compute_configs(math_fidelity: str,
                    precision: EncoderPrecision = PRECISION_PROFILES['accurate']) -> dict:
    """
    Return the compute kernel configs by use (module doc).

    matmul, conv, upsample (the model outside the encoder), and the encoder's own per op:
    qkv, out, ff1, ff2, norm (LayerNorm), sdpa. None pairs HiFi4 with fp32 accumulation
    (tt-metal #38306).
    """
    upsample = max(math_fidelity, UPSAMPLE_MIN_FIDELITY, key=MATH_FIDELITIES.index)

    def config(fidelity, fp32):
        import ttnn
        if fidelity not in MATH_FIDELITIES:
            raise ValueError(f'math fidelity {fidelity!r}: one of {MATH_FIDELITIES}')
        if fp32 and fidelity == 'HiFi4':
            raise ValueError('HiFi4 with fp32 accumulation gives wrong outputs on Wormhole '
                             '(tt-metal #38306)')
        return ttnn.WormholeComputeKernelConfig(
            math_fidelity=getattr(ttnn.MathFidelity, fidelity), math_approx_mode=False,
            fp32_dest_acc_en=fp32, packer_l1_acc=not fp32)
    out = {'matmul': config(math_fidelity, False), 'conv': config(math_fidelity, False),
           'upsample': config(upsample, False),
           'norm': config(precision.norm_fidelity, precision.norm_fp32),
           'sdpa': config(precision.sdpa_fidelity, precision.sdpa_fp32)}
    for name in ENCODER_LINEARS:
        out[name] = config(getattr(precision, f'{name}_fidelity') or math_fidelity, False)
    return out


def _checked_dims(hf_config, device, image_size, batch, weight_dtype, math_fidelity):
    """Return the model dims for this image size; ValueError names the first bad argument."""
    if device not in TT_DEVICES:
        raise ValueError(f'device {device!r}: one of {sorted(TT_DEVICES)}')
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f'weight_dtype {weight_dtype!r}: one of {WEIGHT_DTYPES}')
    if math_fidelity not in MATH_FIDELITIES:
        raise ValueError(f'math_fidelity {math_fidelity!r}: one of {MATH_FIDELITIES}')
    dims = ModelDims.from_hf(hf_config, image_size)
    s = dims.image_size
    if s % (2 * dims.patch) or s <= 0:
        # An odd patch grid makes the stride-2 reassemble conv and the x2 fusion upsamples
        # disagree by one pixel (HF then resizes the residual); only even grids are supported.
        raise ValueError(f'image_size {s} must be a positive multiple of {2 * dims.patch}')
    if batch < 1:
        raise ValueError('batch must be >= 1')
    if dims.hidden % TILE or dims.intermediate % TILE:
        raise ValueError('hidden and intermediate sizes must be multiples of 32')
    return dims


def _plan_encoder(cfg: TtConfigs, x: int, y: int) -> None:
    """Block-sharded token memory on an x by y grid, LayerNorm and multicast matmul configs."""
    import ttnn
    dims, batch, tokens_padded = cfg.dims, cfg.batch, cfg.tokens_padded
    m_t = batch * tokens_padded // TILE // y    # per-core token tiles
    w_t = dims.hidden // TILE // x              # per-core hidden tiles
    i_t = dims.intermediate // TILE // x        # per-core intermediate tiles
    core_grid = ttnn.CoreGrid(y=y, x=x)

    def block(width):
        return ttnn.create_sharded_memory_config(
            (batch, tokens_padded, width), core_grid=core_grid,
            strategy=ttnn.ShardStrategy.BLOCK, orientation=ttnn.ShardOrientation.ROW_MAJOR)

    cfg.memory.update(dram=ttnn.DRAM_MEMORY_CONFIG, l1=ttnn.L1_MEMORY_CONFIG,
                      tokens=block(dims.hidden), qkv=block(3 * dims.hidden),
                      ff=block(dims.intermediate))

    def mcast(k_t, n_t, act=None):
        return ttnn.MatmulMultiCoreReuseMultiCastProgramConfig(  # 2D multicast, block shards
            compute_with_storage_grid_size=(x, y), in0_block_w=_largest_divisor(k_t, 8),
            out_subblock_h=1, out_subblock_w=subblock_w(n_t), per_core_M=m_t, per_core_N=n_t,
            transpose_mcast=False, fused_activation=act)

    # HF's ViT uses exact (erf) GELU; in ttnn's fused matmul activation a GELU parameter of 0
    # selects the accurate kernel and non-zero the fast approximation: say which, never omit it.
    cfg.activation['gelu'] = ttnn.UnaryWithParam(
        ttnn.UnaryOpType.GELU, 1.0 if cfg.precision.gelu_approx else 0.0)
    ln = ttnn.LayerNormShardedMultiCoreProgramConfig(
        compute_with_storage_grid_size=(x, y), subblock_w=subblock_w(w_t, 4), block_h=m_t,
        block_w=w_t, inplace=False)
    cfg.program.update(layernorm=ln, qkv=mcast(w_t, 3 * w_t), out=mcast(w_t, w_t),
                       ff1=mcast(w_t, i_t, cfg.activation['gelu']), ff2=mcast(i_t, w_t))


# The largest SDPA q / k chunks considered (tiles): their score block sits in L1.
_SDPA_MAX_Q_TILES = 8
_SDPA_MAX_K_TILES = 8


def sdpa_q_chunk(tokens_padded: int, units_per_chunk: int, cores: int) -> int:
    """
    Return the SDPA q chunk (tokens) that spreads the attention best over `cores`.

    SDPA gives each (batch, head, q chunk) unit to one core, in rounds of `cores` units. The
    time is rounds x chunk, so the chunk with the fewest rounds per unit wins (the grid filled
    in as few rounds as possible); among equals the larger chunk (fewer K/V re-reads). Chunks
    are tile multiples dividing the padded tokens; `units_per_chunk` is batch x heads.
    """
    tiles = tokens_padded // TILE
    best = None
    for q in range(1, min(tiles, _SDPA_MAX_Q_TILES) + 1):
        if tiles % q == 0:
            units = units_per_chunk * (tiles // q)
            key = (math.ceil(units / cores) / units, -q)
            best = key if best is None else min(best, key)
    return -best[1] * TILE


def _plan_attention(cfg: TtConfigs) -> None:
    """
    Flash-attention SDPA on the whole grid, in as few rounds as the grid allows.

    No [T, T] score tensor in L1 (it would not fit at 512); non-causal, padded keys hidden by
    the windowed mode (module doc); chunks divide the padded token count.
    """
    import ttnn
    gx, gy_max = cfg.grid
    prec = cfg.precision
    q_chunk = sdpa_q_chunk(cfg.tokens_padded, cfg.batch * cfg.dims.heads, gx * gy_max)
    k_chunk = TILE * _largest_divisor(cfg.tokens_padded // TILE, _SDPA_MAX_K_TILES)
    cfg.sdpa_chunk, cfg.sdpa_k_chunk = q_chunk, k_chunk
    matmul = prec.sdpa_matmul_fidelity
    cfg.program['sdpa'] = ttnn.SDPAProgramConfig(
        compute_with_storage_grid_size=(gx, gy_max), q_chunk_size=q_chunk,
        k_chunk_size=k_chunk, exp_approx_mode=prec.sdpa_exp_approx,
        matmul_math_fidelity=getattr(ttnn.MathFidelity, matmul) if matmul else None)
    cfg.attention_grid = (gx, gy_max)


def _plan_reassemble(cfg: TtConfigs) -> None:
    """
    Plan the readout's token matmul (GELU fused) and the depth-to-space matmuls' compute.

    Readout (per-chip batch 1): GELU(tokens @ Wt + c), c = CLS @ Wc + b computed per frame
    and passed as the matmul's row bias: one program. A 2D multicast over the chip grid with
    interleaved (DRAM) operands; rows of cores as many as the token tiles need.
    Depth-to-space multiplies by a 0/1 permutation matrix (in0, the srcB operand) at
    `math_fidelity` but never below HiFi2: the map (in1, srcA) then enters the FPU untruncated
    and the permutation is exact (LoFi would cut the map's mantissa).
    """
    import ttnn
    gx, gy = cfg.grid
    m_t = cfg.batch * math.ceil(cfg.dims.patches / TILE)
    k_t = n_t = cfg.dims.hidden // TILE          # (D, D) token weights
    per_core_m = math.ceil(m_t / gy)
    x = _largest_divisor(n_t, gx)
    cfg.program['readout'] = ttnn.MatmulMultiCoreReuseMultiCastProgramConfig(
        compute_with_storage_grid_size=(x, math.ceil(m_t / per_core_m)),
        in0_block_w=_largest_divisor(k_t, 8), out_subblock_h=1,
        out_subblock_w=subblock_w(n_t // x), per_core_M=per_core_m, per_core_N=n_t // x,
        transpose_mcast=False, fused_activation=cfg.activation['gelu'])
    # The 0/1 permutation is exact for the reason the upsample's matrices are: >= HiFi2.
    cfg.compute['permute'] = cfg.compute['upsample']


def _plan_fusion(cfg: TtConfigs) -> None:
    """
    Plan each fusion layer's 1x1 projection: a 1D multicast matmul, bias fused.

    Rows (pixels) split over the whole grid, all output channels per core, the (C, C) weights
    multicast; small in0 blocks keep the circular buffers small at 512 px (128 x 128 maps).
    """
    import ttnn
    dims = cfg.dims
    gx, gy = cfg.grid
    c_t = dims.fusion // TILE
    sides = [int(dims.grid * f) if f >= 1 else dims.grid // int(1 / f) for f in dims.factors]
    for layer, side in enumerate(reversed(sides)):     # coarsest map first (conv_plan)
        m_t = math.ceil(cfg.batch * side * side / TILE)
        cfg.program[f'fusion.{layer}.proj'] = ttnn.MatmulMultiCoreReuseMultiCast1DProgramConfig(
            compute_with_storage_grid_size=(gx, gy), in0_block_w=_largest_divisor(c_t, 2),
            out_subblock_h=1, out_subblock_w=subblock_w(c_t),
            per_core_M=math.ceil(m_t / (gx * gy)), per_core_N=c_t, fuse_batch=True,
            fused_activation=None, mcast_in0=False)


# Convs followed by the head's upsample (head.conv1) or by the depth output (head.conv2).
_BF16_OUT_CONVS = ('head.conv1', 'head.conv2')


def _plan_conv(cfg: TtConfigs, name: str, cin: int, cout: int, pixels: int, relu: bool) -> None:
    """Shard layout, conv config and an explicit path (l1 | dram + slice count) for one conv."""
    import ttnn
    gx, gy = cfg.grid
    slices = math.ceil(pixels * (cin + cout) * 2 / (_CONV_BYTES_PER_CORE * gx * gy))
    # bfloat8_b out where the next op only reads it (golden PCC on the double); bf16 where a
    # reshape, transpose or the depth output follows (bfloat8_b costs a typecast each way).
    cfg.conv_dtype[name] = 'bfloat16' if name in _BF16_OUT_CONVS else 'bfloat8_b'
    kind = ttnn.Op2DSliceConfig.SliceTypeEnum
    if slices > 1:
        cfg.conv_path[name] = 'dram'
        cfg.conv_slice[name] = ttnn.Op2DSliceConfig(slice_type=kind.DRAMSliceHeight,
                                                    num_slices=slices)
    else:
        cfg.conv_path[name] = 'l1'
        cfg.conv_slice[name] = ttnn.Op2DSliceConfig(slice_type=kind.L1Full)
    # The neck's maps wait in DRAM for the fusion stage (the finest is used last): in L1 they
    # would take the room the fusion convs need. A residual unit's first conv is read by its
    # second only, with the same sharding: its output stays sharded (no reshard either side).
    cfg.conv_out_dram[name] = slices > 1 or name.startswith('neck.')
    cfg.conv_out[name] = 'dram' if cfg.conv_out_dram[name] else \
        'sharded' if name.startswith('fusion.') and name.endswith('.conv1') else 'l1'
    block = min(cin, cout) >= _BLOCK_SHARDED_MIN_CHANNELS
    shard = ttnn.TensorMemoryLayout.BLOCK_SHARDED if block \
        else ttnn.TensorMemoryLayout.HEIGHT_SHARDED
    cfg.conv_shard[name] = shard
    height_tiles = math.ceil(pixels / slices / ((gy if block else gx * gy) * TILE))
    # The im2col activation block defaults to a core's whole output height: its circular
    # buffers then grow with the image. Cap the block at _ACT_BLOCK_TILES tiles of rows.
    block_h = 0 if height_tiles <= _ACT_BLOCK_TILES else \
        TILE * _largest_divisor(height_tiles, _ACT_BLOCK_TILES)
    # Activations and (block sharded: 1/8 of them a core) weights double buffered, so reads
    # overlap compute; the halo output is not moved to defragment L1 (one device op less per
    # conv). The dry-run's L1 headroom says what is left. Every conv's input is dead after it
    # and ops.TtConv2d frees it once the conv returned; deallocate_activation (ttnn freeing it
    # inside the conv) left the tightest op's headroom as it was in the dry-run, added three
    # device ops a frame, and would leave a failed tuned conv's fallback without its input.
    cfg.conv[name] = ttnn.Conv2dConfig(
        weights_dtype=cfg.weight_dtype, shard_layout=shard,
        activation=ttnn.UnaryWithParam(ttnn.UnaryOpType.RELU) if relu else None,
        deallocate_activation=False, reshard_if_not_optimal=True, act_block_h_override=block_h,
        output_layout=ttnn.TILE_LAYOUT, enable_act_double_buffer=True,
        enable_weights_double_buffer=block, reallocate_halo_output=False)
    # The fallback: ttnn's sharding choice, through DRAM with a fixed slice count (never auto:
    # an automatic count depends on the L1 free at call time), an explicit activation block.
    cfg.conv_default[name] = ttnn.Conv2dConfig(
        weights_dtype=cfg.weight_dtype, activation=cfg.conv[name].activation,
        deallocate_activation=False, act_block_h_override=_FALLBACK_ACT_BLOCK_H,
        output_layout=ttnn.TILE_LAYOUT)
    cfg.conv_default_slice[name] = ttnn.Op2DSliceConfig(slice_type=kind.DRAMSliceHeight,
                                                        num_slices=slices)


def device_grid(device) -> tuple:
    """
    Return the (x, y) compute-with-storage grid of an opened ttnn device.

    It is 8x8, or 8x7 when a row of worker cores runs dispatch.
    """
    g = device.compute_with_storage_grid_size()
    return int(g.x), int(g.y)


def conv_plan(dims: ModelDims) -> list[tuple[str, int, int, int, bool]]:
    """(config name, in channels, out channels, input side, fused ReLU) for every conv."""
    g = dims.grid
    f = dims.fusion
    sides = [int(g * factor) if factor >= 1 else g // int(1 / factor)
             for factor in dims.factors]
    plan = []
    for i, factor in enumerate(dims.factors):
        if factor < 1:
            plan.append((f'reassemble.{i}.resize', dims.neck[i], dims.neck[i], g, False))
    for i, c in enumerate(dims.neck):
        plan.append((f'neck.{i}', c, f, sides[i], False))
    # Fusion runs from the coarsest map (last) to the finest.
    for layer, side in enumerate(reversed(sides)):
        for res in ((1, 2) if layer else (2,)):
            plan.append((f'fusion.{layer}.res{res}.conv1', f, f, side, True))
            plan.append((f'fusion.{layer}.res{res}.conv2', f, f, side, False))
    head_side = sides[0] * 2
    plan.append(('head.conv1', f, f // 2, head_side, False))
    plan.append(('head.conv2', f // 2, 32, head_side * 2, True))
    return plan
