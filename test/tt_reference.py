"""Helpers shared by the TT tests: seeded HF reference models and PCC."""
import torch

from dpt_ros.model import random_model


def pcc(a, b) -> float:
    """Pearson correlation of two tensors (flattened, float64)."""
    a = torch.as_tensor(a).flatten().double()
    b = torch.as_tensor(b).flatten().double()
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def randomize_embeddings(model, seed: int = 0):
    """HF initialises CLS and position embeddings to zero; make them random (seeded) so that
    tests exercise their path."""
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
