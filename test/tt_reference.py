"""
Helpers shared by the TT tests.

Seeded HF reference models, PCC, and converters between HF tensors and the TT model's device
layouts (used with the device double and on a card).
"""
from dpt_ros.inference.hf_model import random_model
from dpt_ros.tt.ops import Spatial
import torch
import ttnn


def pcc(a, b) -> float:
    """Pearson correlation of two tensors (flattened, float64)."""
    a = torch.as_tensor(a).flatten().double()
    b = torch.as_tensor(b).flatten().double()
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def randomize_embeddings(model, seed: int = 0):
    """
    Make a model's CLS and position embeddings random (seeded) so that tests exercise them.

    HF initialises both to zero.
    """
    gen = torch.Generator().manual_seed(seed)
    emb = model.dpt.embeddings
    with torch.no_grad():
        emb.cls_token.copy_(torch.randn(emb.cls_token.shape, generator=gen) * 0.5)
        emb.position_embeddings.copy_(
            torch.randn(emb.position_embeddings.shape, generator=gen) * 0.5)
    return model


def reference_model(name: str = 'tiny', seed: int = 0, image_size: int = 384):
    """Seeded random DPTForDepthEstimation (eval, fp32) with random CLS/position tables."""
    return randomize_embeddings(random_model(name, seed=seed, image_size=image_size), seed)


def pixels(n: int = 1, size: int = 384, seed: int = 0) -> torch.Tensor:
    """Seeded pixel values in the processor's range [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=gen) * 2 - 1


# ---- converters between HF tensors and the TT model's device layouts ----------------------

def tokens_to_tt(hs, cfg, device):
    """HF (N, 1+P², D) with CLS first -> TT (N, Tp, D): patches, CLS, zero padding."""
    n, t, d = hs.shape
    out = torch.zeros(n, cfg.tokens_padded, d)
    out[:, :t - 1] = hs[:, 1:]
    out[:, t - 1] = hs[:, 0]
    return ttnn.from_torch(out, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=device,
                           memory_config=ttnn.DRAM_MEMORY_CONFIG)


def tokens_from_tt(t, cfg):
    """TT (N, Tp, D) -> HF order (N, 1+P², D)."""
    x = ttnn.to_torch(t).float()
    p2 = cfg.dims.patches
    return torch.cat([x[:, p2:p2 + 1], x[:, :p2]], dim=1)


def spatial_to_tt(nchw, device):
    """HF (N, C, H, W) -> TT flat NHWC Spatial on the device."""
    n, c, h, w = nchw.shape
    flat = nchw.permute(0, 2, 3, 1).reshape(1, 1, n * h * w, c)
    return Spatial(ttnn.from_torch(flat, ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=device),
                   n, h, w, c)


def spatial_from_tt(sp):
    """TT Spatial -> (N, C, H, W) float32."""
    return ttnn.to_torch(sp.tensor).float().reshape(sp.n, sp.h, sp.w, sp.c).permute(0, 3, 1, 2)


def run_model(model, x, device):
    """Eager TtDPT forward on pixel values (N, 3, S, S) -> (N, S, S) torch float32."""
    out = model.forward(ttnn.to_device(model.preprocess_host(x.numpy()), device))
    return torch.from_numpy(model.postprocess_host(out))
