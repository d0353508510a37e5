"""
Tests of the TT configs and of the ttnn names the TT code uses (real ttnn 0.81.1).

The configs are built with the real ttnn 0.81.1 pybind constructors and are internally
consistent with the tensor shapes they will see; every ttnn name the TT code uses exists in
ttnn 0.81.1.
"""
import ast
import os

from dpt_ros.inference.hf_model import make_config
from dpt_ros.tt.configs import (build_configs, conv_plan, MATH_FIDELITIES, pad_tokens,
                                PRECISION_PROFILES, sdpa_q_chunk, TILE)
from dpt_ros.vocabulary import TT_PRECISIONS
import pytest
from support.paths import ROOT

ttnn = pytest.importorskip('ttnn')

TT_DIR = os.path.join(ROOT, 'dpt_ros', 'tt')
CASES = [(dev, size, name) for dev in ('wormhole_n150', 'wormhole_n300')
         for size in (384, 512) for name in ('dpt-large', 'tiny')]


@pytest.fixture(scope='module', params=CASES, ids=lambda c: f'{c[0]}-{c[1]}-{c[2]}')
def cfg(request):
    device, size, name = request.param
    return build_configs(make_config(name, size), device, size)


def test_config_objects_are_real_ttnn_types(cfg):
    p = cfg.program
    for key in ('qkv', 'out', 'ff1', 'ff2'):
        assert isinstance(p[key], ttnn.MatmulMultiCoreReuseMultiCastProgramConfig), key
    assert isinstance(p['layernorm'], ttnn.LayerNormShardedMultiCoreProgramConfig)
    assert isinstance(p['sdpa'], ttnn.SDPAProgramConfig)
    for key in ('matmul', 'norm', 'conv'):
        assert isinstance(cfg.compute[key], ttnn.WormholeComputeKernelConfig)
    for key in ('tokens', 'qkv', 'ff'):
        assert isinstance(cfg.memory[key], ttnn.MemoryConfig)
        assert cfg.memory[key].memory_layout == ttnn.TensorMemoryLayout.BLOCK_SHARDED
    for name, conv in cfg.conv.items():
        assert isinstance(conv, ttnn.Conv2dConfig), name
        assert conv.weights_dtype == cfg.weight_dtype
        assert isinstance(cfg.conv_slice[name], ttnn.Op2DSliceConfig), name
    assert p['ff1'].fused_activation.op_type == ttnn.UnaryOpType.GELU
    # 0 selects ttnn's accurate (erf) GELU, as HF; non-zero would be the fast approximation.
    assert list(p['ff1'].fused_activation.params) == [0.0]
    gelu = cfg.activation['gelu']       # the default path applies the same activation
    assert (gelu.op_type, list(gelu.params)) == (ttnn.UnaryOpType.GELU, [0.0])
    assert p['qkv'].fused_activation is None
    # the default profile is today's numerics: bf16 activations, accurate exp
    assert cfg.precision_name == 'accurate'
    assert cfg.out_dtype('qkv') == cfg.out_dtype('ff1') == ttnn.bfloat16
    assert p['sdpa'].exp_approx_mode is False


def test_token_padding_and_grid_are_consistent(cfg):
    dims = cfg.dims
    tp = cfg.tokens_padded
    x, y = cfg.encoder_grid
    assert dims.tokens == (cfg.image_size // 16) ** 2 + 1
    assert tp >= dims.tokens and tp % TILE == 0
    # the fewest whole tiles whose count fills every row of the chip's grid
    assert tp - dims.tokens < y * TILE
    assert (cfg.batch * tp // TILE) % y == 0 and y == cfg.grid[1] and 1 <= x <= 8
    assert tp % cfg.sdpa_chunk == 0 and tp % cfg.sdpa_k_chunk == 0
    assert cfg.program['sdpa'].q_chunk_size == cfg.sdpa_chunk
    assert cfg.program['sdpa'].k_chunk_size == cfg.sdpa_k_chunk
    if cfg.image_size == 384:
        assert tp == 768 and cfg.encoder_grid[1] == 8


def test_shard_shapes_match_tensor_shapes(cfg):
    dims = cfg.dims
    tp = cfg.tokens_padded
    x, y = cfg.encoder_grid
    rows = cfg.batch * tp
    for key, width in (('tokens', dims.hidden), ('qkv', 3 * dims.hidden),
                       ('ff', dims.intermediate)):
        spec = cfg.memory[key].shard_spec
        sh, sw = spec.shape
        assert rows % sh == 0 and rows // sh == y, key      # shard height divides tokens
        assert width % sw == 0 and width // sw == x, key
        assert sh % TILE == 0 and sw % TILE == 0
        assert spec.grid.num_cores() == x * y


def test_matmul_blocks_match_shards(cfg):
    dims = cfg.dims
    x, y = cfg.encoder_grid
    m_tiles = cfg.batch * cfg.tokens_padded // TILE
    for key, k, n in (('qkv', dims.hidden, 3 * dims.hidden), ('out', dims.hidden, dims.hidden),
                      ('ff1', dims.hidden, dims.intermediate),
                      ('ff2', dims.intermediate, dims.hidden)):
        pc = cfg.program[key]
        assert pc.per_core_M * y == m_tiles, key
        assert pc.per_core_N * x * TILE == n, key
        assert (k // TILE // x) % pc.in0_block_w == 0, key
        assert pc.per_core_N % pc.out_subblock_w == 0, key
        assert pc.out_subblock_h * pc.out_subblock_w <= 8, key
        grid = pc.compute_with_storage_grid_size
        assert (grid.x, grid.y) == (x, y), key
    ln = cfg.program['layernorm']
    assert ln.block_h == m_tiles // y
    assert ln.block_w * x * TILE == dims.hidden and ln.block_w % ln.subblock_w == 0


def test_conv_plan_covers_every_conv(cfg):
    dims = cfg.dims
    plan = conv_plan(dims)
    assert {name for name, *_ in plan} == set(cfg.conv)
    names = [name for name, *_ in plan]
    assert len(names) == len(set(names))
    # 4 neck convs, 7 fusion residual units x 2 convs, 2 head convs, 1 stride-2 resize
    assert len(plan) == 4 + 14 + 2 + 1
    sides = {name: side for name, _, _, side, _ in plan}
    assert sides['head.conv2'] == cfg.image_size       # the full-resolution conv
    kind = ttnn.Op2DSliceConfig.SliceTypeEnum
    for name, cin, cout, side, _ in plan:
        big = cfg.batch * side * side * (cin + cout) * 2       # input + output bytes
        budget = (480 << 10) * cfg.grid[0] * cfg.grid[1]       # 480 KiB a core
        sl = cfg.conv_slice[name]
        # Every conv has an explicit path: never ttnn's automatic slice count.
        if big > budget:
            assert cfg.conv_path[name] == 'dram' and sl.slice_type == kind.DRAMSliceHeight, name
            assert sl.num_slices == cfg.dram_slices(name) == -(-big // budget), name
            assert cfg.conv_out_dram[name] and cfg.conv_out[name] == 'dram', name
        else:
            assert cfg.conv_path[name] == 'l1' and sl.slice_type == kind.L1Full, name
            assert cfg.dram_slices(name) == 1
            assert cfg.conv_out_dram[name] == name.startswith('neck.'), name
        # a residual unit's first conv is read by its second only: left sharded for it
        assert (cfg.conv_out[name] == 'sharded') == (
            name.startswith('fusion.') and name.endswith('.conv1')
            and cfg.conv_path[name] == 'l1'), name
        conv = cfg.conv[name]
        assert conv.enable_act_double_buffer and not conv.reallocate_halo_output, name
        assert conv.enable_weights_double_buffer == (
            cfg.conv_shard[name] == ttnn.TensorMemoryLayout.BLOCK_SHARDED), name
        # ops.TtConv2d frees the input after the conv: never inside it (module doc)
        assert not conv.deallocate_activation and not cfg.conv_default[name].deallocate_activation
        assert cfg.conv_dtype[name] == ('bfloat16' if name.startswith('head.') else 'bfloat8_b')
    if cfg.image_size == 384 and cfg.dims.fusion == 256:
        assert cfg.conv_path['head.conv1'] == 'l1' and cfg.dram_slices('head.conv2') == 2
        block = min(cin, cout) >= 128
        assert (cfg.conv_shard[name] == ttnn.TensorMemoryLayout.BLOCK_SHARDED) == block, name
        block_h = cfg.conv[name].act_block_h_override
        assert block_h % TILE == 0 and block_h <= 8 * TILE, name


def test_configs_follow_the_device_grid():
    """An 8x7 grid (a row of workers running dispatch) gives 8x7-sized program configs."""
    hf = make_config('dpt-large', 384)
    cfg = build_configs(hf, 'wormhole_n150', 384, grid=(8, 7))
    assert cfg.grid == (8, 7) and cfg.attention_grid == (8, 7)
    x, y = cfg.encoder_grid
    assert x <= 8 and y <= 7
    assert cfg.program['qkv'].compute_with_storage_grid_size.y == y
    assert cfg.program['sdpa'].compute_with_storage_grid_size.y == 7
    with pytest.raises(ValueError, match='at least 4 rows'):
        build_configs(hf, 'wormhole_n150', 384, grid=(8, 3))
    with pytest.raises(ValueError, match='2 frames a chip need the 8x8 grid'):
        build_configs(hf, 'wormhole_n300', 384, batch=2, grid=(8, 7))


def test_bad_choices_are_refused():
    hf = make_config('tiny', 384)
    with pytest.raises(ValueError, match='device'):
        build_configs(hf, 'grayskull', 384)
    with pytest.raises(ValueError, match='multiple of 32'):
        build_configs(hf, 'wormhole_n300', 400)
    with pytest.raises(ValueError, match='weight_dtype'):
        build_configs(hf, 'wormhole_n300', 384, weight_dtype='float64')
    with pytest.raises(ValueError, match='math_fidelity'):
        build_configs(hf, 'wormhole_n300', 384, math_fidelity='Ultra')


def test_weight_key_tracks_what_weights_depend_on():
    hf = make_config('tiny', 384)
    a = build_configs(hf, 'wormhole_n300', 384).weight_key()
    assert a == build_configs(hf, 'wormhole_n150', 384).weight_key()   # same per chip
    assert a != build_configs(hf, 'wormhole_n300', 512).weight_key()
    assert a != build_configs(hf, 'wormhole_n300', 384, weight_dtype='bfloat16').weight_key()


def test_pad_tokens_rule():
    """The fewest tiles >= tokens whose count (x batch) splits over every row of the grid."""
    assert pad_tokens(577) == (768, 8)          # 24 tiles, 3 a row (not 640 on 5 rows)
    assert pad_tokens(1025) == (1280, 8)
    assert pad_tokens(577, batch=2) == (640, 8)     # 2 x 20 tiles
    assert pad_tokens(577, rows=7) == (672, 7)      # WORKER dispatch: 8x7
    assert pad_tokens(256) == (256, 8)


def test_sdpa_chunks_fill_the_grid_in_the_fewest_rounds():
    """
    Check the SDPA q chunk: (batch x heads x q chunks) units over the cores, fewest rounds.

    At 384 on 8x8 (768 tokens, 16 heads): 192 gives 4 x 16 = 64 units, one round (128 on 640
    tokens gave 80 units: two rounds, the second on 16 of 64 cores).
    """
    assert sdpa_q_chunk(768, 16, 64) == 192
    assert sdpa_q_chunk(640, 16, 64) == 160
    assert sdpa_q_chunk(1280, 16, 64) == 160       # 128 units: 2 full rounds
    for tp, units, cores in ((768, 16, 64), (1280, 16, 64), (672, 16, 56), (640, 32, 64)):
        q = sdpa_q_chunk(tp, units, cores)
        n = units * tp // q
        assert tp % q == 0 and q % TILE == 0
        assert n % cores == 0 or n < cores or (tp, cores) == (672, 56), (tp, q, n)


def _ttnn_chains(tree):
    """Every ttnn.a.b.c attribute chain in a module's AST."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts = []
            cur = node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == 'ttnn':
                yield '.'.join(reversed(parts))


def test_every_ttnn_name_used_by_the_tt_code_exists():
    used = set()
    for fname in sorted(os.listdir(TT_DIR)):
        if fname.endswith('.py'):
            with open(os.path.join(TT_DIR, fname)) as f:
                used.update(_ttnn_chains(ast.parse(f.read())))
    assert len(used) > 40
    missing = []
    for chain in sorted(used):
        obj = ttnn
        for part in chain.split('.'):
            if not hasattr(obj, part):
                missing.append(chain)
                break
            obj = getattr(obj, part)
    assert not missing, f'not in the installed ttnn: {missing}'


def test_sdpa_and_mcast_configs_accept_their_fields():
    """The constructors reject wrong keywords: building them here is a real check."""
    with pytest.raises(TypeError):
        ttnn.SDPAProgramConfig(compute_with_storage_grid_size=(8, 8), q_chunk=128)
    with pytest.raises(TypeError):
        ttnn.MatmulMultiCoreReuseMultiCastProgramConfig(compute_with_storage_grid_size=(8, 8))


# ---- compute kernel configs (tt-metal #38306) ----------------------------------------------

_BOARDS = (('wormhole_n150', (8, 8)), ('wormhole_n300', (8, 8)), ('wormhole_n300', (8, 7)),
           ('wormhole_t3000', (8, 8)))


@pytest.mark.parametrize('precision', TT_PRECISIONS)
@pytest.mark.parametrize('fidelity', MATH_FIDELITIES)
def test_no_compute_config_pairs_hifi4_with_fp32_accumulation(fidelity, precision):
    """
    Check every compute config the model builds: board, size, fidelity option, profile.

    HiFi4 with fp32 accumulation corrupts single outputs by powers of two on Wormhole
    (tt-metal #38306): LayerNorm / SDPA (fp32 accumulation) run at most HiFi3, the matmuls
    and convs the fidelity asked for without fp32, the x2 upsample never below HiFi2; each
    encoder op as its profile names it (accurate: its linears follow the fidelity asked for).
    """
    order = list(MATH_FIDELITIES)
    prec = PRECISION_PROFILES[precision]
    for device, grid in _BOARDS:
        for size in (384, 512):
            for name in ('dpt-large', 'tiny'):
                cfg = build_configs(make_config(name, size), device, size, grid=grid,
                                    math_fidelity=fidelity, precision=precision)
                fid = {k: str(c.math_fidelity).rsplit('.', 1)[-1]
                       for k, c in cfg.compute.items()}
                for key, c in cfg.compute.items():
                    assert not (fid[key] == 'HiFi4' and c.fp32_dest_acc_en), (device, key)
                sdpa_mm = cfg.program['sdpa'].matmul_math_fidelity
                assert sdpa_mm is None or str(sdpa_mm).rsplit('.', 1)[-1] != 'HiFi4'
                assert (fid['norm'], cfg.compute['norm'].fp32_dest_acc_en) == \
                    (prec.norm_fidelity, prec.norm_fp32)
                assert (fid['sdpa'], cfg.compute['sdpa'].fp32_dest_acc_en) == \
                    (prec.sdpa_fidelity, prec.sdpa_fp32)
                assert fid['matmul'] == fid['conv'] == fidelity
                for linear in ('qkv', 'out', 'ff1', 'ff2'):
                    assert fid[linear] == (getattr(prec, f'{linear}_fidelity') or fidelity)
                assert order.index(fid['upsample']) >= order.index('HiFi2')
                assert order.index(fid['upsample']) >= order.index(fidelity)


def test_precision_profiles_are_named_per_op_settings():
    """
    Check the two profiles: accurate is today's numerics, fast the ViT demo's per-op settings.

    fast: LoFi QKV / out / FF1 / FF2, bfloat8_b out of QKV and FF1 (the others bf16: the
    residual stream stays bf16), approximate GELU in FF1 (ttnn's non-zero GELU parameter),
    LayerNorm HiFi2, SDPA's matmuls LoFi and its exp approximate.
    """
    hf = make_config('dpt-large', 384)
    acc = build_configs(hf, 'wormhole_n300', 384)
    fast = build_configs(hf, 'wormhole_n300', 384, precision='fast')
    name = lambda c: str(c.math_fidelity).rsplit('.', 1)[-1]     # noqa: E731
    assert {k: name(acc.compute[k]) for k in ('qkv', 'out', 'ff1', 'ff2', 'norm', 'sdpa')} == \
        {'qkv': 'HiFi2', 'out': 'HiFi2', 'ff1': 'HiFi2', 'ff2': 'HiFi2', 'norm': 'HiFi3',
         'sdpa': 'HiFi3'}
    assert {k: name(fast.compute[k]) for k in ('qkv', 'out', 'ff1', 'ff2', 'norm', 'sdpa')} == \
        {'qkv': 'LoFi', 'out': 'LoFi', 'ff1': 'LoFi', 'ff2': 'LoFi', 'norm': 'HiFi2',
         'sdpa': 'HiFi2'}
    assert [fast.out_dtype(k) for k in ('qkv', 'out', 'ff1', 'ff2')] == \
        [ttnn.bfloat8_b, ttnn.bfloat16, ttnn.bfloat8_b, ttnn.bfloat16]
    assert list(fast.program['ff1'].fused_activation.params) == [1.0]
    assert list(fast.activation['gelu'].params) == [1.0]
    assert fast.program['sdpa'].exp_approx_mode is True
    assert str(fast.program['sdpa'].matmul_math_fidelity).endswith('LoFi')
    assert acc.program['sdpa'].matmul_math_fidelity is None
    assert fast.describe()['precision'] == 'fast' and acc.describe()['precision'] == 'accurate'
    assert fast.weight_key() == acc.weight_key()      # same prepared weights
    with pytest.raises(ValueError, match='precision'):
        build_configs(hf, 'wormhole_n300', 384, precision='fastest')


def test_fallback_conv_configs_are_explicit():
    """
    Check every conv's counted fallback: an explicit activation block and slice count.

    DRAM slices with act_block_h_override 0 give ~50% PCC with prepared weights and no error
    (tt-metal #35852); the slice count is fixed, never ttnn's choice at call time.
    """
    kind = ttnn.Op2DSliceConfig.SliceTypeEnum
    for size in (384, 512):
        cfg = build_configs(make_config('dpt-large', size), 'wormhole_n300', size)
        assert set(cfg.conv_default) == set(cfg.conv) == set(cfg.conv_default_slice)
        for name, conv in cfg.conv_default.items():
            assert conv.act_block_h_override > 0 and conv.act_block_h_override % TILE == 0
            assert conv.weights_dtype == cfg.weight_dtype
            assert str(conv.activation) == str(cfg.conv[name].activation), name
            sl = cfg.conv_default_slice[name]
            assert sl.slice_type == kind.DRAMSliceHeight
            assert sl.num_slices == cfg.dram_slices(name), name
