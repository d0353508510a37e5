"""
DPT reassemble stage on device: readout 'project', 1x1 projection, resize; then neck convs.

HF: DPTReassembleStage + DPTReassembleLayer (+ DPTNeck.convs). Per tap:
  readout: GELU(Linear_2D->D([token, CLS])) = GELU(token @ Wt + (CLS @ Wc + b)) — the CLS part
  is one row, added with a broadcast instead of materialising the concatenation;
  factor 4 / 2: 1x1 conv + ConvTranspose2d(k=s=f) folded at weight-prep time into ONE linear
  D -> f*f*C, then depth-to-space (reshape / permute / reshape);
  factor 1: 1x1 conv as a linear; factor 0.5: 1x1 conv as a linear, then 3x3 stride-2 conv;
  neck conv: 3x3, C -> fusion channels, no bias.
The patch tokens are rows 0..P²-1 (tile aligned), the CLS token row P² (see weights.py).
On a device failure of the readout the stage runs on the host (counted as
reassembly_readout_fallback_count).
"""
from __future__ import annotations

from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.ops import Spatial, TtConv2d


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

    def _readout_device(self, i, tap):
        import ttnn
        cfg = self.cfg
        dims = cfg.dims
        n, p2, d = cfg.batch, dims.patches, dims.hidden
        ck = cfg.compute['matmul']
        tokens = ttnn.slice(tap, [0, 0, 0], [n, p2, d])
        cls = ttnn.slice(tap, [0, p2, 0], [n, p2 + 1, d])
        t = ttnn.linear(tokens, self.p[f'reassemble.{i}.readout_tokens.weight'],
                        memory_config=ttnn.DRAM_MEMORY_CONFIG, compute_kernel_config=ck)
        c = ttnn.linear(cls, self.p[f'reassemble.{i}.readout_cls.weight'],
                        bias=self.p[f'reassemble.{i}.readout_cls.bias'],
                        memory_config=ttnn.DRAM_MEMORY_CONFIG, compute_kernel_config=ck)
        return ttnn.gelu(ttnn.add(t, c, memory_config=ttnn.DRAM_MEMORY_CONFIG),
                         variant=ttnn.GeluVariant.Accurate,    # HF: exact (erf) GELU
                         memory_config=ttnn.DRAM_MEMORY_CONFIG)

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
            # Depth-to-space: columns are (a, b, c) of the f x f output block of each patch.
            y = ttnn.to_layout(y, ttnn.ROW_MAJOR_LAYOUT)
            y = ttnn.reshape(y, (n * g, g, f, f * c))
            y = ttnn.permute(y, (0, 2, 1, 3))                  # (n*g, f, g, f*c)
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
