"""
Load DPT-Large (MiDaS 3.0) for the backends: HF hub/cache, a local directory, or random.

`weights` values:
  auto            Intel/dpt-large from the HF cache or hub; where neither can be reached,
                  random weights with the exact DPT-Large config, flagged loudly.
  Intel/dpt-large (or any hub id) — the cache/hub only; missing -> WeightsNotFound.
  <directory>     a local save_pretrained() directory.
  random          exact DPT-Large config, seeded random weights (benchmarks).
  tiny-random     a small config of the same architecture, seeded (tests).
"""
from __future__ import annotations

from dataclasses import dataclass
import logging
import os

from dpt_ros.errors import WeightsNotFound

log = logging.getLogger('dpt_ros.inference.hf_model')

HUB_ID = 'Intel/dpt-large'
WEIGHT_CHOICES = ('auto', HUB_ID, 'random', 'tiny-random', '<local directory>')

# DPT-Large as published (DPTConfig() defaults are NOT this). 343,030,465 parameters.
DPT_LARGE_CONFIG = dict(  # noqa: C408 -- keyword form: these are DPTConfig(**kwargs)
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    image_size=384, patch_size=16, qkv_bias=True, readout_type='project',
    backbone_out_indices=[5, 11, 17, 23], reassemble_factors=[4, 2, 1, 0.5],
    neck_hidden_sizes=[256, 512, 1024, 1024], fusion_hidden_size=256, is_hybrid=False,
    hidden_act='gelu', layer_norm_eps=1e-12,
)
# Same architecture, small enough for CI, and valid on a card: a head size of 32 and every
# channel count a multiple of the 32-wide tile (ttnn's attention refuses a head size of 16).
TINY_CONFIG = dict(DPT_LARGE_CONFIG, hidden_size=64, num_hidden_layers=4, num_attention_heads=2,
                   intermediate_size=128, backbone_out_indices=[0, 1, 2, 3],
                   neck_hidden_sizes=[32, 64, 64, 64], fusion_hidden_size=64)


@dataclass
class LoadedModel:
    model: object            # transformers.DPTForDepthEstimation, eval mode, fp32, cpu
    weights: str             # what was loaded, human readable
    is_random: bool          # True when the weights are random (results are not depth!)
    config_name: str         # 'dpt-large' | 'tiny' | 'pretrained'

    @property
    def config(self):
        return self.model.config


def make_config(name: str = 'dpt-large', image_size: int = 384):
    """Return a DPTConfig for 'dpt-large' or 'tiny' at the given square input size."""
    from transformers import DPTConfig
    base = {'dpt-large': DPT_LARGE_CONFIG, 'tiny': TINY_CONFIG}[name]
    return DPTConfig(**dict(base, image_size=image_size))


def random_model(name: str = 'dpt-large', seed: int = 0, image_size: int = 384):
    """Build a DPTForDepthEstimation with seeded random weights (the same every run)."""
    import torch
    from transformers import DPTForDepthEstimation
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = DPTForDepthEstimation(make_config(name, image_size))
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """
    Whether the HF hub endpoint answers a TCP connect within timeout_s.

    huggingface_hub retries an unreachable hub five times with back-off (about 30-50 s);
    one quick probe first keeps `weights: auto` start-up short where there is no network.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == 'https' else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _from_pretrained(source: str, local_only: bool):
    from transformers import DPTForDepthEstimation
    return DPTForDepthEstimation.from_pretrained(source, local_files_only=local_only).eval()


def load_model(weights: str = 'auto', *, seed: int = 0, image_size: int = 384,
               logger: logging.Logger | None = None) -> LoadedModel:
    """Load the model named by `weights` (see module doc). Raises WeightsNotFound."""
    logger = logger or log
    if weights == 'random':
        return LoadedModel(random_model('dpt-large', seed, image_size),
                           f'random (DPT-Large config, seed {seed})', True, 'dpt-large')
    if weights == 'tiny-random':
        return LoadedModel(random_model('tiny', seed, image_size),
                           f'tiny-random (seed {seed})', True, 'tiny')
    if os.path.isdir(weights):
        try:
            return LoadedModel(_from_pretrained(weights, True), os.path.abspath(weights),
                               False, 'pretrained')
        except (OSError, ValueError) as exc:
            raise WeightsNotFound(f"'{weights}' is not a DPT save_pretrained() directory: "
                                  f'{exc}') from exc
    if os.path.isabs(weights) or weights.startswith(('.', '~')):
        # A path, not a hub id: say so rather than the hub's "Repo id must be in the form".
        tilde = '; ~ is not expanded, give the full path' if weights.startswith('~') else ''
        raise WeightsNotFound(f"weights '{weights}': no such directory (a local "
                              f'save_pretrained() directory was meant{tilde})')
    source = HUB_ID if weights == 'auto' else weights
    errors = []
    for local_only in (True, False):   # cache first: no network round trip when cached
        try:
            return LoadedModel(_from_pretrained(source, local_only), source, False,
                               'pretrained')
        except Exception as exc:  # hub/network errors come in many types
            errors.append(f'{type(exc).__name__}: {str(exc).splitlines()[0][:200]}')
            if not local_only:
                break
            if os.environ.get('HF_HUB_OFFLINE') == '1':
                break
            if not hub_reachable():
                errors.append('the hub is not reachable from this machine')
                break
    if weights == 'auto':
        logger.warning(
            '*** WEIGHTS: %s is not in the HF cache and the hub cannot be reached; running '
            'with RANDOM weights (DPT-Large config, seed %d). Outputs are NOT depth. Put the '
            'weights in the HF cache or pass weights:=<directory> for real results. ***',
            source, seed)
        return LoadedModel(random_model('dpt-large', seed, image_size),
                           f'random (DPT-Large config, seed {seed}; {source} unavailable)',
                           True, 'dpt-large')
    raise WeightsNotFound(
        f"weights '{weights}' not found in the HF cache, on the hub, or as a local directory "
        f"({'; '.join(errors)}). Options: {', '.join(WEIGHT_CHOICES)}.")
