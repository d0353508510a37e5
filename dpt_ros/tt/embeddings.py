"""
DPT ViT embeddings on device: patchify + patch projection + CLS + position embeddings.

HF: DPTViTEmbeddings (conv 16x16/16 -> tokens, prepend CLS, add resized position embeddings).
Here the input arrives as (N*P, 16, P, 64) bf16 row-major — NHWC pixels with RGB padded to 4
channels, viewed (for free) so that one permute gathers each 16x16 patch into a row of
16*16*4 = 1024 values in (kh, kw, c) order. The patch conv becomes one matmul against the
prepared (1024, D) matrix; the conv bias, the CLS token and the (pre-resized) position
embeddings are all in one additive (1, Tp, D) table, with the CLS token placed after the
patch tokens (see weights.py) and rows padded to Tp.
"""
from __future__ import annotations

from dpt_ros.tt.fallbacks import FallbackCounter


class TtEmbeddings:
    """`forward(pixels) -> (N, Tp, D)` bf16 TILE tokens, block sharded for the encoder."""

    def __init__(self, params: dict, configs, device, fb: FallbackCounter):
        self.cfg = configs
        self.fb = fb
        self.weight = params['embeddings.patch.weight']
        self.additive = params['embeddings.additive']

    def forward(self, pixels):
        import ttnn
        cfg = self.cfg
        dims = cfg.dims
        n = cfg.batch
        x = ttnn.permute(pixels, (0, 2, 1, 3))                    # (N*P, P, 16, 64)
        x = ttnn.reshape(x, (n, dims.patches, dims.patch * dims.patch * 4))
        x = ttnn.pad(x, [(0, 0), (0, cfg.tokens_padded - dims.patches), (0, 0)], 0.0)
        x = ttnn.to_layout(x, ttnn.TILE_LAYOUT)
        x = ttnn.linear(x, self.weight, memory_config=ttnn.L1_MEMORY_CONFIG,
                        dtype=ttnn.bfloat16, compute_kernel_config=cfg.compute['matmul'])
        x = ttnn.add(x, self.additive, memory_config=ttnn.L1_MEMORY_CONFIG,
                     dtype=ttnn.bfloat16)
        # Interleaved -> block sharded for the encoder (one explicit reshard, not an
        # interleaved-in / sharded-out eltwise).
        return ttnn.to_memory_config(x, cfg.memory['tokens'])
