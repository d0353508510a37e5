"""
DPT ViT-L encoder on device: 24 pre-LN transformer blocks over padded tokens.

HF: DPTViTLayer = x + attn(LN1(x)); x + FF2(GELU(FF1(LN2(x)))). Tokens stay block sharded in
L1 on the encoder grid for the whole stack (sharded LayerNorm, 2D multicast matmuls with the
GELU fused into FF1, sharded residual adds); only the attention's inside (QKV output to
out-projection input) is interleaved L1. Attention: fused QKV linear -> split heads ->
flash SDPA (non-causal; the padded keys hidden by the windowed mode, windows [0, tokens) and
[tokens, padded), the mask built on the device, so results are exact; the heads written side
by side) -> out projection. Each op's numerics come from the precision profile
(configs.EncoderPrecision). The counted fallback of SDPA is the plain form: ttnn's program
config, an explicit [1, 1, S, S] additive mask, then concatenate_heads. The hidden states
after the layers named by `backbone_out_indices` are copied to DRAM as taps for the reassemble
stage (HF takes `hidden_states[1:]` at those indices, i.e. layer outputs before the final
LayerNorm).
"""
from __future__ import annotations

from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.ops import ensure_memory, tuned_linear


class TtEncoder:
    """`forward(tokens) -> list of taps` ((N, Tp, D) DRAM tensors, one per out index)."""

    def __init__(self, params: dict, configs, device, fb: FallbackCounter):
        self.cfg = configs
        self.fb = fb
        self.p = params
        self.mask = params['encoder.attention_mask']
        self.windows = attention_windows(configs, device)

    def _layer_norm(self, i, name, x):
        import ttnn
        cfg = self.cfg
        w = self.p[f'encoder.{i}.{name}.weight']
        b = self.p[f'encoder.{i}.{name}.bias']
        mem = cfg.memory['tokens']

        def tuned():
            return ttnn.layer_norm(ensure_memory(x, mem), epsilon=cfg.dims.eps, weight=w,
                                   bias=b, memory_config=mem,
                                   program_config=cfg.program['layernorm'],
                                   compute_kernel_config=cfg.compute['norm'])

        def default():
            return ttnn.layer_norm(ensure_memory(x, ttnn.DRAM_MEMORY_CONFIG),
                                   epsilon=cfg.dims.eps, weight=w, bias=b,
                                   memory_config=ttnn.DRAM_MEMORY_CONFIG,
                                   compute_kernel_config=cfg.compute['norm'])
        return self.fb.run_with_config(f'encoder.{name}', tuned, default)

    def _linear(self, i, name, x, in_key, out_key, act=None):
        cfg = self.cfg
        return tuned_linear(self.fb, f'encoder.{name}', x, self.p[f'encoder.{i}.{name}.weight'],
                            self.p[f'encoder.{i}.{name}.bias'],
                            program_config=cfg.program[name], input_memory=cfg.memory[in_key],
                            memory_config=cfg.memory[out_key], compute=cfg.compute[name],
                            activation=act, dtype=cfg.out_dtype(name))

    def _attention(self, i, x):
        import ttnn
        cfg = self.cfg
        dims = cfg.dims
        # QKV writes interleaved L1 and the out-projection reads it: the head split and concat
        # want it, and a sharded matmul end would cost a reshard program each way.
        qkv = self._linear(i, 'qkv', x, 'tokens', 'l1')
        qkv = ensure_memory(qkv, ttnn.L1_MEMORY_CONFIG)
        q, k, v = ttnn.transformer.split_query_key_value_and_split_heads(
            qkv, num_heads=dims.heads, transpose_key=False, memory_config=ttnn.L1_MEMORY_CONFIG)
        ttnn.deallocate(qkv)

        def tuned():      # windowed keys, heads side by side: one device op
            ctx = ttnn.transformer.scaled_dot_product_attention(
                q, k, v, is_causal=False, scale=dims.head_dim ** -0.5,
                cu_window_seqlens=self.windows, output_concat_heads=True,
                program_config=cfg.program['sdpa'], compute_kernel_config=cfg.compute['sdpa'],
                memory_config=ttnn.L1_MEMORY_CONFIG)
            # (N, 1, Tp, D) -> (N, Tp, D) as concatenate_heads returns it (a view, no op)
            return ttnn.reshape(ctx, (cfg.batch, cfg.tokens_padded, dims.hidden))

        def default():    # ttnn's program config, our compute config (never its default)
            ctx = ttnn.transformer.scaled_dot_product_attention(
                q, k, v, attn_mask=self.mask, is_causal=False, scale=dims.head_dim ** -0.5,
                compute_kernel_config=cfg.compute['sdpa'], memory_config=ttnn.DRAM_MEMORY_CONFIG)
            return ttnn.transformer.concatenate_heads(ctx, memory_config=ttnn.L1_MEMORY_CONFIG)
        ctx = self.fb.run_with_config('encoder.sdpa', tuned, default)
        for t in (q, k, v):
            ttnn.deallocate(t)
        return self._linear(i, 'out', ctx, 'l1', 'tokens')

    def layer(self, i, x):
        """One ViT block (HF DPTViTLayer)."""
        import ttnn
        mem = self.cfg.memory['tokens']
        h = self._layer_norm(i, 'ln1', x)
        x = ttnn.add(ensure_memory(self._attention(i, h), mem), ensure_memory(x, mem),
                     memory_config=mem)
        h = self._layer_norm(i, 'ln2', x)
        h = self._linear(i, 'ff1', h, 'tokens', 'ff', act=self.cfg.activation['gelu'])
        h = self._linear(i, 'ff2', h, 'ff', 'tokens')
        return ttnn.add(ensure_memory(h, mem), x, memory_config=mem)

    def forward(self, x) -> list:
        import ttnn
        taps = []
        wanted = set(self.cfg.dims.out_indices)
        for i in range(max(wanted) + 1):     # layers after the last tap do not matter
            x = self.layer(i, x)
            if i in wanted:
                taps.append(ttnn.to_memory_config(x, ttnn.DRAM_MEMORY_CONFIG))
        return taps


def attention_windows(configs, device):
    """
    Return SDPA's cu_window_seqlens [0, tokens, padded] on `device` (None without padding).

    Tokens attend within their window: the real ones to the real keys only, the padding rows
    to the padding (finite, discarded). One tiny uint32 row-major tensor for every layer.
    """
    import torch
    import ttnn
    tokens, padded = configs.dims.tokens, configs.tokens_padded
    if tokens == padded:
        return None
    bounds = torch.tensor([0, tokens, padded], dtype=torch.int32)
    return ttnn.from_torch(bounds, ttnn.uint32, layout=ttnn.ROW_MAJOR_LAYOUT, device=device)
