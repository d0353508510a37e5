"""
Helpers shared by the TT tests.

Seeded HF reference models, PCC, and converters between HF tensors and the TT model's device
layouts (used with the device double and on a card); the tiny model's inputs and torch output.
"""
# The converters live with the per-stage PCC (dpt_ros/demo/stage_pcc.py); tests import them here.
from dpt_ros.demo.stage_pcc import (spatial_from_tt, spatial_to_tt,  # noqa: F401
                                    tokens_from_tt, tokens_to_tt)
from dpt_ros.inference.hf_model import random_model
import numpy as np
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


def run_model(model, x, device):
    """Eager TtDPT forward on pixel values (N, 3, S, S) -> (N, S, S) torch float32."""
    out = model.forward(ttnn.to_device(model.preprocess_host(x.numpy()), device))
    return torch.from_numpy(model.postprocess_host(out))


def tiny_inputs_and_torch(images, size: int = 64):
    """Return (normalized batch, uint8 pixels, torch fp32 CPU output) for the tiny model."""
    from dpt_ros.backends import BackendOptions, torch_backend
    from dpt_ros.inference.hf_model import load_model
    from dpt_ros.inference.preprocess import preprocess, resize_pixels

    loaded = load_model('tiny-random', image_size=size)
    x = np.stack([preprocess(im, size) for im in images])
    pixels = np.stack([resize_pixels(im, size) for im in images])
    cpu = torch_backend.create(BackendOptions(weights='tiny-random', image_size=size),
                               loaded=loaded)
    try:
        return x, pixels, cpu.infer(x)
    finally:
        cpu.close()
