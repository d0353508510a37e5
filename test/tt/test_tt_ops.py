"""
The x2 align-corners upsample (dpt_ros/tt/ops.py Upsample2x) on the device TEST DOUBLE.

Every map size DPT-Large resizes at 384 and 512 px (fusion 12..96 / 16..128 with 256
channels, the head's 192 / 256 with 128; fewer channels here, the geometry is what differs),
batch 1 and 2: the output matches torch's bilinear align_corners=True (HF DPT), not
align_corners=False (ttnn.upsample's sampling); the device ops stay in TILE layout (no
untilize / tilize / row-major reshape); the plan is one Kronecker matmul where its matrix is
small, two 1-D matmuls between two tile transposes elsewhere. What the double cannot judge:
the matmuls' math fidelity, tile padding contents (its goldens see only the logical values),
L1.
"""
from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.ops import KRON_MAX_BYTES, Spatial, Upsample2x
import pytest
from support.doubles.tt_device_double import tt_device_double
from support.tt_reference import pcc
import torch

ttnn = pytest.importorskip('ttnn')

# (input side) of every x2 resize of DPT-Large: fusion layers 0-3 then the head.
SIDES = {384: (12, 24, 48, 96, 192), 512: (16, 32, 64, 128, 256)}
# Device ops an upsample may call, per plan (reshapes are views where sides are tile multiples).
ALLOWED = {'matmul', 'permute', 'reshape', 'fill_implicit_tile_padding'}


@pytest.fixture(scope='module')
def double():
    with tt_device_double(num_devices=1) as d:
        yield d


@pytest.fixture(scope='module')
def device(double):
    dev = ttnn.open_mesh_device(ttnn.MeshShape(1, 1), l1_small_size=24576)
    yield dev
    ttnn.close_mesh_device(dev)


def _run(double, device, n, side, channels, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, side, side, generator=gen)
    flat = x.permute(0, 2, 3, 1).reshape(1, 1, n * side * side, channels)
    up = Upsample2x(device, FallbackCounter(strict=True))
    up.prepare(n, side, side)
    before = dict(double.op_counts)
    out = up(Spatial(ttnn.from_torch(flat, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                                     device=device), n, side, side, channels))
    ops = {k: v - before.get(k, 0) for k, v in double.op_counts.items()
           if v != before.get(k, 0)}
    assert (out.n, out.h, out.w, out.c) == (n, 2 * side, 2 * side, channels)
    assert out.tensor.layout == ttnn.TILE_LAYOUT
    got = ttnn.to_torch(out.tensor).float().reshape(n, 2 * side, 2 * side, channels)
    return x, got.permute(0, 3, 1, 2), ops, up


@pytest.mark.parametrize('size', [384, 512])
def test_every_dpt_resize_is_align_corners_exact_in_tile_layout(double, device, size):
    """
    Check each resize of the model at `size` against torch's align_corners=True bilinear.

    Values stored in bf16 (the matrices' weights and the output): max error within a few
    bf16 steps of the input's range. align_corners=False is far off on the same input.
    """
    for side in SIDES[size]:
        channels = 32 if side >= 96 else 64
        x, got, ops, up = _run(double, device, 1, side, channels)
        ref = torch.nn.functional.interpolate(x, scale_factor=2, mode='bilinear',
                                              align_corners=True)
        other = torch.nn.functional.interpolate(x, scale_factor=2, mode='bilinear',
                                                align_corners=False)
        err = (got - ref).abs().max().item()
        assert err <= 3 * 2 ** -8 * x.abs().max().item(), (side, err)
        assert pcc(got, ref) > 0.99999, side
        assert (got - other).abs().max().item() > 20 * err, side
        assert set(ops) <= ALLOWED, (side, ops)
        expected = 1 if up.plan(side, side) == 'kron' else 2
        assert ops['matmul'] == expected, (side, ops)
        assert ops.get('permute', 0) == 2 * (expected - 1), (side, ops)


def test_two_images_per_chip_stay_apart(double, device):
    """Check batch 2 for both plans: each image resized on its own, none mixed in."""
    for side in (12, 48):
        x, got, ops, _ = _run(double, device, 2, side, 32, seed=side)
        ref = torch.nn.functional.interpolate(x, scale_factor=2, mode='bilinear',
                                              align_corners=True)
        for i in range(2):
            assert pcc(got[i], ref[i]) > 0.99999, (side, i)
        assert set(ops) <= ALLOWED


def test_the_kron_plan_only_where_its_matrix_is_small():
    """
    Check the plan and the sizes of the constant matrices.

    One Kronecker matmul for 12, 24 (384 px) and 16 (512 px), its bf16 matrix at most
    KRON_MAX_BYTES (48 -> 96 would take 42 MB); two 1-D matmuls for every larger map.
    """
    plan = {side: Upsample2x.plan(side, side) for sides in SIDES.values() for side in sides}
    assert {s for s, p in plan.items() if p == 'kron'} == {12, 16, 24}
    for side, p in plan.items():
        kron_bytes = 2 * (2 * side) ** 2 * side ** 2
        assert (kron_bytes <= KRON_MAX_BYTES) == (p == 'kron'), side
    assert 2 * 96 ** 2 * 48 ** 2 > 40 << 20
