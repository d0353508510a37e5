"""
Per-stage PCC of the TT DPT program against HF DPTForDepthEstimation in torch fp32.

`reference_stages` runs the HF model once and keeps what each stage hands the next; `tt_stages`
runs each TT stage on the HF input of that stage (so a broken stage is named, not the stages
after it), plus the whole TT forward; `compare` turns both into one PCC per stage:

    embeddings, tap0..tap3 (encoder outputs at backbone_out_indices), reassemble0..3 (after
    the neck convs), fusion0..3 (each fusion layer's output, coarsest first), head (fed HF's
    last fusion output) and depth (the whole TT forward from pixels).

Converters between HF tensors and the TT model's device layouts live here too (tests share
them). Eager only: the fusion levels are read back while the forward runs.
"""
from __future__ import annotations

from dpt_ros.depth.pcc import pcc
from dpt_ros.tt.ops import Spatial

TAPS = 4


def stage_names(levels: int = TAPS) -> list[str]:
    """Return the stage names in program order."""
    return (['embeddings'] + [f'tap{i}' for i in range(levels)]
            + [f'reassemble{i}' for i in range(levels)]
            + [f'fusion{i}' for i in range(levels)] + ['head', 'depth'])


def reference_stages(model, pixel_values) -> dict:
    """Return HF's intermediates (torch fp32) for normalised (N, 3, S, S) pixel values."""
    import torch
    x = torch.as_tensor(pixel_values, dtype=torch.float32)
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
        ref = {'x': x, 'embeddings': model.dpt.embeddings(x).last_hidden_states}
        taps = [out.hidden_states[1:][i] for i in model.config.backbone_out_indices]
        feats = model.neck.reassemble_stage(taps, None, None)
        feats = [conv(f) for conv, f in zip(model.neck.convs, feats)]
        fused = model.neck.fusion_stage(feats)
    for i, t in enumerate(taps):
        ref[f'tap{i}'] = t
    for i, f in enumerate(feats):
        ref[f'reassemble{i}'] = f
    for i, f in enumerate(fused):
        ref[f'fusion{i}'] = f
    ref['head'] = ref['depth'] = out.predicted_depth
    return ref


def tt_stages(tt, device, ref: dict) -> dict:
    """
    Run each stage of a TtDPT on `device`, fed HF's input of that stage; return host tensors.

    'depth' is the whole forward from the pixels; every other stage starts from `ref`.
    """
    import ttnn
    cfg = tt.cfg
    levels = len(cfg.dims.out_indices)
    got = {}
    host = tt.preprocess_host(ref['x'].numpy())
    got['embeddings'] = tokens_from_tt(tt.embeddings.forward(ttnn.to_device(host, device)), cfg)
    taps = tt.encoder.forward(tokens_to_tt(ref['embeddings'], cfg, device))
    for i, tap in enumerate(taps):
        got[f'tap{i}'] = tokens_from_tt(tap, cfg)
    feats = tt.reassembly([tokens_to_tt(ref[f'tap{i}'], cfg, device) for i in range(levels)])
    for i, sp in enumerate(feats):
        got[f'reassemble{i}'] = spatial_from_tt(sp)

    def level(i, sp):
        got[f'fusion{i}'] = spatial_from_tt(sp)
    tt.fusion.forward([spatial_to_tt(ref[f'reassemble{i}'], device) for i in range(levels)],
                      on_level=level)
    last = ref[f'fusion{levels - 1}']
    got['head'] = tt.postprocess_host(tt.head.forward(spatial_to_tt(last, device)))
    got['depth'] = tt.postprocess_host(tt.forward(ttnn.to_device(host, device)))
    return got


def compare(ref: dict, got: dict) -> dict:
    """Return {stage: PCC} for every stage both hold (NaN where a stage has no finite pair)."""
    return {name: pcc(got[name], ref[name]) for name in stage_names(TAPS)
            if name in got and name in ref}


# ---- converters between HF tensors and the TT model's device layouts ----------------------

def tokens_to_tt(hs, cfg, device):
    """Convert HF (N, 1+P², D), CLS first, to TT (N, Tp, D): patches, CLS, zero padding."""
    import torch
    import ttnn
    n, t, d = hs.shape
    out = torch.zeros(n, cfg.tokens_padded, d)
    out[:, :t - 1] = hs[:, 1:]
    out[:, t - 1] = hs[:, 0]
    return ttnn.from_torch(out, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=device,
                           memory_config=ttnn.DRAM_MEMORY_CONFIG)


def tokens_from_tt(t, cfg):
    """Convert TT (N, Tp, D) to HF order (N, 1+P², D)."""
    import torch
    import ttnn
    x = ttnn.to_torch(t).float()
    p2 = cfg.dims.patches
    return torch.cat([x[:, p2:p2 + 1], x[:, :p2]], dim=1)


def spatial_to_tt(nchw, device):
    """Convert HF (N, C, H, W) to a TT flat NHWC Spatial on the device."""
    import ttnn
    n, c, h, w = nchw.shape
    flat = nchw.permute(0, 2, 3, 1).reshape(1, 1, n * h * w, c)
    return Spatial(ttnn.from_torch(flat, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=device),
                   n, h, w, c)


def spatial_from_tt(sp):
    """Convert a TT Spatial to (N, C, H, W) float32."""
    import ttnn
    return ttnn.to_torch(sp.tensor).float().reshape(sp.n, sp.h, sp.w, sp.c).permute(0, 3, 1, 2)
