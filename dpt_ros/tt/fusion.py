"""
DPT feature fusion stage on device (HF DPTFeatureFusionStage / DPTFeatureFusionLayer).

From the coarsest map to the finest: h = h + RCU1(feature) (not for the first layer);
h = RCU2(h); h = project(upsample_x2(h)). RCU (pre-activation residual conv unit):
x + conv2(relu(conv1(relu(x)))), the inner ReLU fused into conv1.
The 1x1 projection runs BEFORE the upsample (4x fewer pixels): a 1x1 conv and a bilinear
resize are both linear and every output pixel's bilinear weights sum to 1, so
project(up(h)) == up(project(h)) including the bias, up to rounding. The x2 resize is the
exact align_corners=True bilinear of ops.Upsample2x.
"""
from __future__ import annotations

from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.ops import Spatial, TtConv2d, Upsample2x


class TtFusion:
    """`forward(features finest-first) -> Spatial` (the last, finest fused map)."""

    def __init__(self, params: dict, configs, device, fb: FallbackCounter,
                 upsample: Upsample2x):
        self.cfg = configs
        self.fb = fb
        self.p = params
        self.up = upsample
        self.convs = {}
        for layer in range(len(configs.dims.neck)):
            for res in ((1, 2) if layer else (2,)):
                for conv in (1, 2):
                    name = f'fusion.{layer}.res{res}.conv{conv}'
                    self.convs[name] = TtConv2d(
                        name, params[name + '.weight'], params[name + '.bias'], kernel=3,
                        stride=1, padding=1, configs=configs, device=device, fb=fb)

    def _rcu(self, layer, res, x: Spatial) -> Spatial:
        """Return x + conv2(relu(conv1(relu(x)))); x stays the caller's, the rest is freed."""
        import ttnn
        h = Spatial(ttnn.relu(x.tensor), x.n, x.h, x.w, x.c)
        h1 = self.convs[f'fusion.{layer}.res{res}.conv1'](h)     # + fused ReLU
        ttnn.deallocate(h.tensor)
        h2 = self.convs[f'fusion.{layer}.res{res}.conv2'](h1)
        ttnn.deallocate(h1.tensor)
        out = ttnn.add(h2.tensor, _tile(x.tensor), memory_config=ttnn.L1_MEMORY_CONFIG)
        ttnn.deallocate(h2.tensor)
        return Spatial(out, x.n, x.h, x.w, x.c)

    def forward(self, features, on_level=None) -> Spatial:
        """
        Fuse the maps (finest first), freeing each map as soon as it is used.

        At 512 px the finest layer's convs need the L1 the earlier maps would hold.
        `on_level(layer, Spatial)` (eager runs only: per-stage PCC) sees each layer's output.
        """
        import ttnn
        h = None
        for layer, feat in enumerate(reversed(features)):
            if h is None:
                h = feat
            else:
                r = self._rcu(layer, 1, feat)
                ttnn.deallocate(feat.tensor)
                merged = ttnn.add(_tile(h.tensor), r.tensor, memory_config=ttnn.L1_MEMORY_CONFIG)
                ttnn.deallocate(r.tensor)
                ttnn.deallocate(h.tensor)
                h = Spatial(merged, h.n, h.h, h.w, h.c)
            fused = self._rcu(layer, 2, h)
            ttnn.deallocate(h.tensor)
            proj = _project(self.fb, self.cfg, layer, self.p, _tile(fused.tensor))
            ttnn.deallocate(fused.tensor)
            h = self.up(Spatial(proj, fused.n, fused.h, fused.w, fused.c))
            ttnn.deallocate(proj)
            if on_level is not None:
                on_level(layer, h)
        return h


def _tile(t):
    import ttnn
    return t if t.layout == ttnn.TILE_LAYOUT else ttnn.to_layout(t, ttnn.TILE_LAYOUT)


def _project(fb: FallbackCounter, cfg, layer: int, params: dict, x):
    """
    Fusion layer `layer`'s 1x1 projection (a linear) with its bias in the same program.

    From an L1 input ttnn's own matmul choice adds the bias in a program of its own; the
    planned 1D multicast config (configs.program['fusion.<layer>.proj']) fuses it.
    """
    import ttnn
    w, b = params[f'fusion.{layer}.proj.weight'], params[f'fusion.{layer}.proj.bias']
    # bf16 out: the upsample's reshapes and transposes would typecast bfloat8_b there and back.
    kw = {'bias': b, 'memory_config': ttnn.DRAM_MEMORY_CONFIG, 'dtype': ttnn.bfloat16,
          'compute_kernel_config': cfg.compute['matmul']}
    return fb.run_with_config(
        'fusion.proj',
        lambda: ttnn.linear(x, w, program_config=cfg.program[f'fusion.{layer}.proj'], **kw),
        lambda: ttnn.linear(x, w, **kw))
