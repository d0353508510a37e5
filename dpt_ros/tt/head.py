"""
DPT depth head on device (HF DPTDepthEstimationHead).

conv3x3 C -> C/2, x2 bilinear (align_corners=True, exact: ops.Upsample2x), conv3x3 -> 32
+ ReLU (fused), conv1x1 32 -> 1 as a linear + ReLU. Output (N, S, S) bf16 ROW_MAJOR:
predicted_depth, relative inverse depth >= 0. The linear leaves (1, 1, N*S*S, 1) in TILE
layout, each value padded to a 32-wide tile row (32x the bytes); it is reshaped to S-wide rows
and untilized on the device, so a frame reads back 2 * S * S bytes, not 64 * S * S.
"""
from __future__ import annotations

from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.ops import Spatial, TtConv2d, Upsample2x


class TtHead:
    """`forward(Spatial) -> device tensor (N, S, S)` row-major."""

    def __init__(self, params: dict, configs, device, fb: FallbackCounter,
                 upsample: Upsample2x):
        self.cfg = configs
        self.p = params
        self.up = upsample
        self.conv1 = TtConv2d('head.conv1', params['head.conv1.weight'],
                              params['head.conv1.bias'], kernel=3, stride=1, padding=1,
                              configs=configs, device=device, fb=fb)
        self.conv2 = TtConv2d('head.conv2', params['head.conv2.weight'],
                              params['head.conv2.bias'], kernel=3, stride=1, padding=1,
                              configs=configs, device=device, fb=fb)

    def forward(self, x: Spatial):
        import ttnn
        h = self.conv1(x)
        h = self.up(h)
        h = self.conv2(h)                                         # + fused ReLU
        t = h.tensor if h.tensor.layout == ttnn.TILE_LAYOUT else \
            ttnn.to_layout(h.tensor, ttnn.TILE_LAYOUT)
        depth = ttnn.linear(t, self.p['head.conv3.weight'], bias=self.p['head.conv3.bias'],
                            activation='relu', memory_config=ttnn.DRAM_MEMORY_CONFIG,
                            compute_kernel_config=self.cfg.compute['matmul'])
        rows = ttnn.reshape(depth, (1, 1, h.n * h.h, h.w))     # S-wide rows: no tile padding
        return ttnn.reshape(ttnn.to_layout(rows, ttnn.ROW_MAJOR_LAYOUT), (h.n, h.h, h.w))
