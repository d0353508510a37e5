"""
Small building blocks shared by the TT stages: tuned linear, conv2d, exact x2 upsample.

Spatial activations travel as flat NHWC tensors (1, 1, N*H*W, C) with (N, H, W) tracked in
Python, the layout ttnn.conv2d consumes and produces.
"""
from __future__ import annotations

from dataclasses import dataclass

from dpt_ros.tt.configs import TILE
from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.weights import bilinear_matrix
import numpy as np


@dataclass
class Spatial:
    """A flat NHWC device tensor plus its geometry."""

    tensor: object
    n: int
    h: int
    w: int
    c: int


def ensure_memory(x, memory_config):
    """Return x in `memory_config` (no op when it already is)."""
    import ttnn
    if x.memory_config() == memory_config:
        return x
    return ttnn.to_memory_config(x, memory_config)


def tuned_linear(fb: FallbackCounter, name: str, x, weight, bias, *, program_config,
                 input_memory, memory_config, compute, activation=None,
                 dtype=None):
    """
    Run ttnn.linear with a sharded program config, falling back (counted) to the default.

    The tuned path reshards the input to `input_memory`; the default is the interleaved
    config. `activation` (a ttnn.UnaryWithParam) is what the default path applies; the tuned
    one fuses its own.
    """
    import ttnn
    dtype = dtype or ttnn.bfloat16

    def tuned():
        return ttnn.linear(ensure_memory(x, input_memory), weight, bias=bias,
                           program_config=program_config, memory_config=memory_config,
                           dtype=dtype, compute_kernel_config=compute)

    def default():
        return ttnn.linear(ensure_memory(x, ttnn.DRAM_MEMORY_CONFIG), weight, bias=bias,
                           activation=activation, memory_config=ttnn.DRAM_MEMORY_CONFIG,
                           dtype=dtype, compute_kernel_config=compute)
    return fb.run_with_config(name, tuned, default)


class TtConv2d:
    """
    ttnn.conv2d with the config from configs.conv[name], its weights prepared once per path.

    The tuned path (configs.conv) and the counted fallback (configs.conv_default) each keep
    the weights ttnn.conv2d prepared on their first call, so later calls (and the trace) skip
    host-side preparation. Each path prepares from the original host weights: weights prepared
    for one conv config are wrong for another (tt-metal #35852: ~50% PCC, no error).
    A conv's input is dead at every call site of the model: it is freed once the conv has
    returned (any copy made for the conv too), never before, so a failed tuned conv leaves
    its input to the counted fallback.
    """

    def __init__(self, name: str, weight, bias, *, kernel: int, stride: int, padding: int,
                 configs, device, fb: FallbackCounter):
        self.name = name
        self.host_weight, self.host_bias = weight, bias        # never replaced
        self.prepared: dict[str, tuple] = {}                   # 'tuned' | 'default' -> (w, b)
        self.out_channels, self.in_channels = int(weight.shape[0]), int(weight.shape[1])
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.configs = configs
        self.device = device
        self.fb = fb

    def __call__(self, x: Spatial) -> Spatial:
        import ttnn
        cfg = self.configs
        dram = cfg.conv_path[self.name] == 'dram'

        sources = [x.tensor]

        def tuned():
            # dram: DRAM slices need a DRAM input; l1 (L1Full) shards from DRAM or L1 itself.
            src = ensure_memory(x.tensor, ttnn.DRAM_MEMORY_CONFIG) if dram else x.tensor
            sources.append(src)
            # sharded: the conv's own output sharding, read as it is by the next conv
            out_mem = {'dram': ttnn.DRAM_MEMORY_CONFIG, 'l1': ttnn.L1_MEMORY_CONFIG,
                       'sharded': None}[cfg.conv_out[self.name]]
            return self._conv('tuned', src, x, cfg.conv[self.name], cfg.conv_slice[self.name],
                              out_mem)

        def default():
            src = ensure_memory(x.tensor, ttnn.DRAM_MEMORY_CONFIG)
            sources.append(src)
            return self._conv('default', src, x, cfg.conv_default[self.name],
                              cfg.conv_default_slice[self.name], ttnn.DRAM_MEMORY_CONFIG)

        out, (oh, ow) = self.fb.run_with_config(f'conv.{self.name}', tuned, default)
        for t in {id(t): t for t in sources}.values():      # the dead input, and its copies
            ttnn.deallocate(t)
        return Spatial(out, x.n, oh, ow, self.out_channels)

    def _conv(self, path: str, tensor, geometry: Spatial, conv_config, slice_config,
              memory_config):
        import ttnn
        cfg = self.configs
        weight, bias = self.prepared.get(path, (self.host_weight, self.host_bias))
        out, hw, self.prepared[path] = ttnn.conv2d(
            input_tensor=tensor, weight_tensor=weight, bias_tensor=bias,
            device=self.device, in_channels=self.in_channels, out_channels=self.out_channels,
            batch_size=geometry.n, input_height=geometry.h, input_width=geometry.w,
            kernel_size=(self.kernel, self.kernel), stride=(self.stride, self.stride),
            padding=(self.padding, self.padding), dtype=getattr(ttnn, cfg.conv_dtype[self.name]),
            conv_config=conv_config,
            compute_config=cfg.compute['conv'], memory_config=memory_config,
            slice_config=slice_config, return_output_dim=True, return_weights_and_bias=True)
        return out, hw


# The x2 upsample of a small map is ONE matmul with the Kronecker matrix of both directions,
# (2h*2w, h*w): up to this size in bf16 (12->24 and 24->48 at 384 px, 16->32 at 512). Above,
# the matrix grows as (h*w)^2 (48->96 would be 42 MB read per frame): two 1-D matmuls instead.
KRON_MAX_BYTES = 4 << 20


class Upsample2x:
    """
    Exact x2 bilinear resize with align_corners=True (HF DPT fusion and head), in TILE layout.

    ttnn.upsample's bilinear mode samples like align_corners=False, which is not what DPT
    uses (on DPT-Large with random weights it costs the depth ~0.16 of PCC: docs/benchmarks.md).
    The resize is linear, so it runs as matmuls with constant interpolation matrices (in0,
    broadcast over the batch) against the flat NHWC map (in1), never leaving TILE layout:

    * small maps (`kron` plan): out = (A_h kron A_w) @ X, one matmul over (h*w, C);
    * larger maps (`separable` plan): X as (n, h, w, C) -> permute (n, w, h, C) -> A_h @ ->
      permute (n, 2h, w, C) -> A_w @ -> (n, 2h, 2w, C); the reshapes are free views where w
      (and 2w) are tile multiples, the permutes are tile transposes.

    Where a matmul contracts over a dimension that is not a tile multiple, its tile padding
    must be zero (0 x NaN from stale padding would reach every output): ttnn's permute and
    reshape fill the padding they create with zero, and the kron plan fills it explicitly.
    Exact up to the bf16 storage of the matrices' weights and the matmul fidelity (at least
    HiFi2: the caller's `compute`). On failure it runs on the host (counted as
    upsample_host_fallback_count).
    """

    def __init__(self, device, fb: FallbackCounter, compute=None):
        self.device = device
        self.fb = fb
        self.compute = compute                  # the matmuls' compute kernel config
        self._mats: dict[tuple, object] = {}
        self._host = False

    @staticmethod
    def plan(h: int, w: int) -> str:
        """Return 'kron' (one matmul) or 'separable' (two) for an h x w map."""
        return 'kron' if 2 * (4 * h * w) * (h * w) <= KRON_MAX_BYTES else 'separable'

    def _matrix(self, key: tuple, array: np.ndarray):
        import ttnn
        if key not in self._mats:
            self._mats[key] = ttnn.from_torch(
                _torch().from_numpy(array.astype(np.float32)), ttnn.bfloat16,
                layout=ttnn.TILE_LAYOUT, device=self.device,
                memory_config=ttnn.DRAM_MEMORY_CONFIG)
        return self._mats[key]

    def _matrices(self, h: int, w: int) -> tuple:
        """Return the device matrices of an h x w map: (kron,) or (A_h, A_w), batch-broadcast."""
        if self.plan(h, w) == 'kron':
            k = np.kron(bilinear_matrix(h), bilinear_matrix(w))
            return (self._matrix(('kron', h, w), k[None]),)
        return (self._matrix(('sep', h), bilinear_matrix(h)[None, None]),
                self._matrix(('sep', w), bilinear_matrix(w)[None, None]))

    def prepare(self, n: int, h: int, w: int) -> None:
        """Upload the matrices for an h x w map ahead of time (outside any trace capture)."""
        self._matrices(h, w)

    def __call__(self, x: Spatial) -> Spatial:
        if not self._host:
            try:
                return self._device(x)
            except Exception as exc:
                self.fb.host_fallback('upsample_host_fallback_count',
                                      f'device x2 bilinear failed: {exc}')
                self._host = True
        return self._on_host(x)

    def _device(self, x: Spatial) -> Spatial:
        import ttnn
        n, h, w, c = x.n, x.h, x.w, x.c
        mats = self._matrices(h, w)
        dram = ttnn.DRAM_MEMORY_CONFIG
        mm = {'memory_config': dram, 'compute_kernel_config': self.compute}
        if len(mats) == 1:
            t = ttnn.reshape(x.tensor, (n, h * w, c))
            if (h * w) % TILE:
                t = ttnn.fill_implicit_tile_padding(t, 0.0)
            t = ttnn.matmul(mats[0], t, **mm)                  # (n, 4hw, c)
        else:
            t = ttnn.reshape(x.tensor, (n, h, w, c))
            t = ttnn.permute(t, (0, 2, 1, 3), memory_config=dram)      # (n, w, h, c)
            t = ttnn.matmul(mats[0], t, **mm)                  # (n, w, 2h, c)
            t = ttnn.permute(t, (0, 2, 1, 3), memory_config=dram)      # (n, 2h, w, c)
            t = ttnn.matmul(mats[1], t, **mm)                  # (n, 2h, 2w, c)
        return Spatial(ttnn.reshape(t, (1, 1, n * 4 * h * w, c)), n, 2 * h, 2 * w, c)

    def _on_host(self, x: Spatial) -> Spatial:
        import ttnn
        torch = _torch()
        t = ttnn.to_torch(x.tensor).float().reshape(x.n, x.h, x.w, x.c).permute(0, 3, 1, 2)
        t = torch.nn.functional.interpolate(t, scale_factor=2, mode='bilinear',
                                            align_corners=True)
        t = t.permute(0, 2, 3, 1).reshape(1, 1, -1, x.c)
        dev = ttnn.from_torch(t, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=self.device)
        return Spatial(dev, x.n, 2 * x.h, 2 * x.w, x.c)


def _torch():
    import torch
    return torch
