"""
DPT reassemble stage on device: readout 'project', 1x1 projection, resize; then neck convs.

HF: DPTReassembleStage + DPTReassembleLayer (+ DPTNeck.convs). Per tap:
  readout: GELU(Linear_2D->D([token, CLS])) = GELU(token @ Wt + (CLS @ Wc + b)) — the CLS part
  is one row per image, computed per frame and handed to the token matmul as its row bias,
  the GELU fused into that matmul (per-chip batch 1; with more images the per-image rows are
  a broadcast add, then the GELU);
  factor 4 / 2: 1x1 conv + ConvTranspose2d(k=s=f) folded at weight-prep time into ONE linear
  D -> f*f*C, then depth-to-space in TILE layout: a reshape to one row per output pixel of
  each patch row, (gx, a, b) order, and a 0/1 permutation matmul to (a, gx, b) order;
  factor 1: 1x1 conv as a linear; factor 0.5: 1x1 conv as a linear, then 3x3 stride-2 conv;
  neck conv: 3x3, C -> fusion channels, no bias.
The patch tokens are rows 0..P²-1 (tile aligned), the CLS token row P² (see weights.py).
On a device failure of the readout the stage runs on the host (counted as
reassembly_readout_fallback_count).
"""
from __future__ import annotations

from dpt_ros.tt.configs import TILE
from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.ops import Spatial, TtConv2d
import numpy as np


class TtReassemble:
    """`forward(taps) -> list[Spatial]` (finest first), already through the neck convs."""

    def __init__(self, params: dict, configs, device, fb: FallbackCounter):
        self.cfg = configs
        self.fb = fb
        self.p = params
        self.device = device
        self._readout_on_host = False
        dims = configs.dims
        self.resize_convs = {}
        for i, factor in enumerate(dims.factors):
            if factor < 1:
                self.resize_convs[i] = TtConv2d(
                    f'reassemble.{i}.resize', params[f'reassemble.{i}.resize.conv_weight'],
                    params[f'reassemble.{i}.resize.conv_bias'], kernel=3,
                    stride=int(round(1 / factor)), padding=1, configs=configs, device=device,
                    fb=fb)
        self.neck_convs = [
            TtConv2d(f'neck.{i}', params[f'neck.{i}.weight'], None, kernel=3, stride=1,
                     padding=1, configs=configs, device=device, fb=fb)
            for i in range(len(dims.neck))]
        self.d2s = {int(f): _to_device(depth_to_space_matrix(dims.grid, int(f)), device)
                    for f in dims.factors if f > 1}

    def _readout_device(self, i, tap):
        import ttnn
        cfg = self.cfg
        dims = cfg.dims
        n, p2, d = cfg.batch, dims.patches, dims.hidden
        dram, ck = ttnn.DRAM_MEMORY_CONFIG, cfg.compute['matmul']
        wt = self.p[f'reassemble.{i}.readout_tokens.weight']
        tokens = ttnn.slice(tap, [0, 0, 0], [n, p2, d])
        cls = ttnn.slice(tap, [0, p2, 0], [n, p2 + 1, d])
        c = ttnn.linear(cls, self.p[f'reassemble.{i}.readout_cls.weight'],
                        bias=self.p[f'reassemble.{i}.readout_cls.bias'], memory_config=dram,
                        compute_kernel_config=ck)                     # (n, 1, d)
        if n > 1:      # one CLS row per image: not a matmul row bias
            t = ttnn.linear(tokens, wt, memory_config=dram, compute_kernel_config=ck)
            return ttnn.gelu(ttnn.add(t, c, memory_config=dram),
                             variant=ttnn.GeluVariant.Accurate,    # HF: exact (erf) GELU
                             memory_config=dram)
        bias = ttnn.reshape(c, (1, d))

        def tuned():
            return ttnn.linear(tokens, wt, bias=bias, program_config=cfg.program['readout'],
                               memory_config=dram, compute_kernel_config=ck)

        def default():
            return ttnn.linear(tokens, wt, bias=bias, activation=cfg.activation['gelu'],
                               memory_config=dram, compute_kernel_config=ck)
        return self.fb.run_with_config('reassemble.readout', tuned, default)

    def _readout_host(self, i, tap):
        import torch
        import ttnn
        dims = self.cfg.dims
        x = ttnn.to_torch(tap).float()
        tokens, cls = x[:, :dims.patches], x[:, dims.patches:dims.patches + 1]
        wt = ttnn.to_torch(self.p[f'reassemble.{i}.readout_tokens.weight']).float()
        wc = ttnn.to_torch(self.p[f'reassemble.{i}.readout_cls.weight']).float()
        bc = ttnn.to_torch(self.p[f'reassemble.{i}.readout_cls.bias']).float()
        r = torch.nn.functional.gelu(tokens @ wt + (cls @ wc + bc))
        return ttnn.from_torch(r, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=self.device)

    def readout(self, i, tap):
        """GELU(Linear([token, CLS])) for tap i: (N, P², D)."""
        if not self._readout_on_host:
            try:
                return self._readout_device(i, tap)
            except Exception as exc:
                self.fb.host_fallback('reassembly_readout_fallback_count',
                                      f'device readout failed: {exc}')
                self._readout_on_host = True
        return self._readout_host(i, tap)

    def layer(self, i, tap) -> Spatial:
        import ttnn
        cfg = self.cfg
        dims = cfg.dims
        n, g = cfg.batch, dims.grid
        factor = dims.factors[i]
        c = dims.neck[i]
        ck = cfg.compute['matmul']
        r = self.readout(i, tap)
        if factor > 1:
            f = int(factor)
            y = ttnn.linear(r, self.p[f'reassemble.{i}.resize.weight'],
                            bias=self.p[f'reassemble.{i}.resize.bias'],
                            memory_config=ttnn.DRAM_MEMORY_CONFIG, compute_kernel_config=ck)
            # Depth-to-space: columns are (a, b, c) of the f x f output block of each patch;
            # per patch row, rows (gx, a, b) -> (a, gx, b) by a permutation matmul.
            rows = g * f * f
            y = ttnn.reshape(y, (n * g, rows, c))
            if rows % TILE:
                y = ttnn.fill_implicit_tile_padding(y, 0.0)
            y = ttnn.matmul(self.d2s[f], y, memory_config=ttnn.DRAM_MEMORY_CONFIG,
                            compute_kernel_config=cfg.compute['permute'])
            y = ttnn.reshape(y, (1, 1, n * g * f * g * f, c))
            return Spatial(y, n, g * f, g * f, c)
        y = ttnn.linear(r, self.p[f'reassemble.{i}.project.weight'],
                        bias=self.p[f'reassemble.{i}.project.bias'],
                        memory_config=ttnn.DRAM_MEMORY_CONFIG, compute_kernel_config=ck)
        y = Spatial(ttnn.reshape(y, (1, 1, n * g * g, c)), n, g, g, c)
        if factor < 1:
            y = self.resize_convs[i](y)
        return y

    def forward(self, taps) -> list:
        return [self.neck_convs[i](self.layer(i, tap)) for i, tap in enumerate(taps)]


def depth_to_space_matrix(g: int, f: int) -> np.ndarray:
    """
    Return the (1, g*f*f, g*f*f) 0/1 matrix of depth-to-space in one patch row.

    It takes the row's output pixels from (gx, a, b) order (patch, then row and column inside
    its f x f block) to (a, gx, b) order (image rows, left to right).
    """
    rows = g * f * f
    out = np.zeros((1, rows, rows), dtype=np.float32)
    for gx in range(g):
        for a in range(f):
            for b in range(f):
                out[0, (a * g + gx) * f + b, (gx * f + a) * f + b] = 1.0
    return out


def _to_device(array: np.ndarray, device):
    import torch
    import ttnn
    return ttnn.from_torch(torch.from_numpy(array), ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                           device=device, memory_config=ttnn.DRAM_MEMORY_CONFIG)
