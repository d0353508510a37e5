"""
Prepare ttnn weights from a HF `DPTForDepthEstimation` state dict, cached on disk.

All reshaping and algebraic folding happens here, once on the host (folds in float64), never
per frame:

* patch embedding conv (D,3,16,16) -> one matrix (16*16*4, D) matching the device patchify
  order (kh, kw, c) with RGB padded to 4 channels; conv bias folded into the additive table.
  The processor's normalisation (per channel pixel * scale + offset, preprocess.pixel_affine)
  is folded in too: the device takes pixel - centre (preprocess.pixel_centre: exact in bf16),
  the weights are multiplied by scale, and what is left of the offset (scale * centre +
  offset, zero for DPT's mean of 0.5) goes into the additive table through the conv.
* additive table (1, Tp, D): rows 0..P²-1 = position embeddings (interpolated to the image size
  exactly as HF does) + patch bias; row P² = CLS + its position embedding; padding rows 0.
  The TT model keeps the CLS token AFTER the patch tokens (attention is permutation-equivariant
  per token, so results are identical) so that the patch rows start tile aligned at row 0.
* attention mask (1,1,Tp,Tp): 0 for real keys, -1e9 for padded keys.
* fused QKV (D, 3D) + bias; every linear weight transposed to (in, out).
* readout 'project' Linear(2D -> D) split into a token part and a CLS part (both (D, D)).
* reassemble: the 1x1 projection conv is folded INTO the following ConvTranspose2d (kernel ==
  stride, so it is a per-pixel linear map): one (D, f*f*C) matrix + bias, columns (a, b, c).
  Factor 1 / 0.5: the 1x1 projection as a (D, C) linear; the 3x3 stride-2 conv stays a conv.
* 3x3 convs: torch (O, I, kh, kw) row-major host tensors, which ttnn.conv2d prepares on its
  first call (it returns the prepared device weights; the model keeps those).
* fusion 1x1 projection as a (C, C) linear (the model applies it BEFORE the x2 upsample:
  both are linear and the bilinear weights of every output pixel sum to 1, so they commute).
* head 1x1 conv 32 -> 1 as a (32, 1) linear.

Linear weights are stored in `configs.weight_dtype` (bfloat8_b by default) TILE layout;
biases, norms and tables bf16 TILE. Cache: $DPT_ROS_CACHE or ~/.cache/dpt_ros, one folder per
sha256 of (weights id, prepared-weight config, ttnn version, format version).
"""
from __future__ import annotations

from dataclasses import dataclass
import hashlib
import json
import logging
import os
import shutil
import tempfile

from dpt_ros.vocabulary import cache_folder
import numpy as np

log = logging.getLogger('dpt_ros.tt.weights')

FORMAT_VERSION = 2    # 2: normalisation folded into the patch embedding
MASK_VALUE = -1e9
PAD_CHANNELS = 4    # RGB padded to 4 so that one patch row is 16*4 = 64 values


@dataclass
class PreparedWeights:
    """Host ttnn tensors by name, plus where they came from."""

    params: dict
    key: str
    path: str | None
    cache_hit: bool


def weights_fingerprint(state_dict) -> str:
    """Return a cheap content id for a state dict: names, shapes, a strided value sample."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().reshape(-1)
        h.update(name.encode())
        h.update(str(tuple(state_dict[name].shape)).encode())
        step = max(1, t.numel() // 4096)
        h.update(t[::step].float().numpy().tobytes())
    return h.hexdigest()[:16]


def ttnn_version() -> str:
    """Return the installed ttnn distribution's version (the module has no __version__)."""
    from importlib import metadata
    try:
        return metadata.version('ttnn')
    except metadata.PackageNotFoundError:
        import ttnn
        return getattr(ttnn, '__version__', 'unknown')


def cache_key(weights_id: str, configs) -> str:
    """sha256 over what prepared weights depend on."""
    payload = {'weights_id': weights_id, 'config': configs.weight_key(),
               'ttnn': ttnn_version(), 'format': FORMAT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def prepare_weights(state_dict, configs, *, weights_id: str | None = None,
                    cache_dir: str | None = None, use_cache: bool = True) -> PreparedWeights:
    """Host ttnn tensors for TtDPT, from the cache when present (else prepared and stored)."""
    import ttnn
    weights_id = weights_id or f'sd:{weights_fingerprint(state_dict)}'
    key = cache_key(weights_id, configs)
    folder = os.path.join(cache_folder('tt_weights', cache_dir), key)
    manifest_path = os.path.join(folder, 'manifest.json')
    if use_cache and os.path.isfile(manifest_path):
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
            params = {name: ttnn.load_tensor(os.path.join(folder, entry['file']))
                      for name, entry in manifest['tensors'].items()}
            log.info('prepared TT weights loaded from cache %s', folder)
            return PreparedWeights(params, key, folder, True)
        except Exception as exc:  # a damaged cache entry is rebuilt, not fatal
            log.warning('TT weight cache %s unreadable (%s); rebuilding', folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
    params = _prepare(state_dict, configs)
    if use_cache:
        _store(params, folder, weights_id, configs)
    return PreparedWeights(params, key, folder if use_cache else None, False)


def _store(params: dict, folder: str, weights_id: str, configs) -> None:
    import ttnn
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tmp-', dir=parent)
    try:
        tensors = {}
        for i, (name, t) in enumerate(sorted(params.items())):
            fname = f'{i:04d}.tensorbin'
            ttnn.dump_tensor(os.path.join(tmp, fname), t)
            tensors[name] = {'file': fname, 'shape': list(t.shape), 'dtype': str(t.dtype),
                             'layout': str(t.layout)}
        with open(os.path.join(tmp, 'manifest.json'), 'w') as f:
            json.dump({'weights_id': weights_id, 'config': configs.weight_key(),
                       'tensors': tensors}, f, indent=1)
        try:
            os.rename(tmp, folder)       # atomic: readers never see a half-written entry
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)   # another process stored it first
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------
# The preparation itself.
# ---------------------------------------------------------------------------------------------

def resize_position_embeddings(pos, grid: int):
    """HF DPTViTEmbeddings._resize_pos_embed: (1, 1+g0², D) -> (1, 1+grid², D), bilinear."""
    import torch
    tok, table = pos[:, :1], pos[0, 1:]
    g0 = int(round(table.shape[0] ** 0.5))
    table = table.reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    table = torch.nn.functional.interpolate(table, size=(grid, grid), mode='bilinear')
    table = table.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([tok, table], dim=1)


def bilinear_matrix(n: int) -> np.ndarray:
    """(2n, n) matrix of a x2 bilinear resize with align_corners=True (HF fusion / head)."""
    out = np.zeros((2 * n, n), dtype=np.float64)
    if n == 1:
        out[:, 0] = 1.0
        return out
    scale = (n - 1) / (2 * n - 1)
    for i in range(2 * n):
        src = i * scale
        i0 = min(int(np.floor(src)), n - 1)
        frac = src - i0
        out[i, i0] += 1.0 - frac
        if frac > 0:
            out[i, i0 + 1] += frac
    return out


class _Convert:
    """A state dict's tensors turned into the host ttnn tensors prepare_weights() returns."""

    def __init__(self, sd, weight_dtype):
        import torch
        import ttnn
        self.sd, self.wdt, self.torch, self.ttnn = sd, weight_dtype, torch, ttnn

    def f32(self, name):
        return self.sd[name].detach().float()

    def f64(self, name):        # only where values are combined (folds, tables)
        return self.sd[name].detach().to(self.torch.float64)

    def linear_w(self, w_in_out):   # (in, out) matrix in the weight dtype, TILE
        return self.ttnn.from_torch(w_in_out.float().contiguous(), self.wdt,
                                    layout=self.ttnn.TILE_LAYOUT)

    def row(self, v):           # (1, n) bf16 TILE: biases, norm weights
        return self.ttnn.from_torch(v.float().reshape(1, -1).contiguous(), self.ttnn.bfloat16,
                                    layout=self.ttnn.TILE_LAYOUT)

    def tile16(self, t):        # any tensor as bf16 TILE
        return self.ttnn.from_torch(t.float().contiguous(), self.ttnn.bfloat16,
                                    layout=self.ttnn.TILE_LAYOUT)

    def conv_w(self, w):        # torch (O, I, kh, kw), row-major host, bf16
        return self.ttnn.from_torch(w.float().contiguous(), self.ttnn.bfloat16)

    def conv_b(self, b):
        return self.ttnn.from_torch(b.float().reshape(1, 1, 1, -1).contiguous(),
                                    self.ttnn.bfloat16)


def _embeddings(c: _Convert, dims, tp: int) -> dict:
    import torch

    from dpt_ros.inference.preprocess import pixel_affine, pixel_centre
    d, e, patch = dims.hidden, 'dpt.embeddings.', dims.patch
    pw = c.f64(e + 'patch_embeddings.projection.weight')            # (D, 3, p, p)
    scale, offset = (torch.from_numpy(v).reshape(1, -1, 1, 1) for v in pixel_affine())
    centre = torch.from_numpy(pixel_centre()).reshape(1, -1, 1, 1)
    pw4 = torch.zeros(d, PAD_CHANNELS, patch, patch, dtype=torch.float64)
    pw4[:, :pw.shape[1]] = pw * scale
    # conv(pixel * scale + offset) = conv(w * scale)(pixel - centre) + sum over (c, kh, kw)
    # of w * (scale * centre + offset)_c, the last a per-channel constant: into the table.
    offset_bias = (pw * (scale * centre + offset)).sum(dim=(1, 2, 3))        # (D,)
    pos = resize_position_embeddings(c.f64(e + 'position_embeddings'), dims.grid)[0]
    table = torch.zeros(tp, d, dtype=torch.float64)
    table[:dims.patches] = (pos[1:] + c.f64(e + 'patch_embeddings.projection.bias')
                            + offset_bias)
    table[dims.patches] = c.f64(e + 'cls_token').reshape(-1) + pos[0]
    mask = torch.zeros(1, 1, tp, tp)
    mask[..., dims.tokens:] = MASK_VALUE
    # Device patch vector order is (kh, kw, c) — see embeddings.py.
    return {'embeddings.patch.weight': c.linear_w(pw4.permute(2, 3, 1, 0).reshape(-1, d)),
            'embeddings.additive': c.tile16(table.reshape(1, tp, d)),
            'encoder.attention_mask': c.tile16(mask)}


def _encoder(c: _Convert, dims) -> dict:
    import torch
    params = {}
    for i in range(dims.layers):
        src, dst = f'dpt.encoder.layer.{i}.', f'encoder.{i}.'
        att = src + 'attention.attention.'
        wq, wk, wv = (c.f32(att + n + '.weight') for n in ('query', 'key', 'value'))
        bq, bk, bv = (c.f32(att + n + '.bias') for n in ('query', 'key', 'value'))
        params[dst + 'qkv.weight'] = c.linear_w(torch.cat([wq, wk, wv], 0).t())
        params[dst + 'qkv.bias'] = c.row(torch.cat([bq, bk, bv]))
        for name, hf in (('out', 'attention.output.dense'), ('ff1', 'intermediate.dense'),
                         ('ff2', 'output.dense')):
            params[dst + name + '.weight'] = c.linear_w(c.f32(src + hf + '.weight').t())
            params[dst + name + '.bias'] = c.row(c.f32(src + hf + '.bias'))
        for name, hf in (('ln1', 'layernorm_before'), ('ln2', 'layernorm_after')):
            params[dst + name + '.weight'] = c.row(c.f32(src + hf + '.weight'))
            params[dst + name + '.bias'] = c.row(c.f32(src + hf + '.bias'))
    return params


def _reassemble(c: _Convert, dims) -> dict:
    import torch
    params, r, d = {}, 'neck.reassemble_stage.', dims.hidden
    for i, factor in enumerate(dims.factors):
        dst = f'reassemble.{i}.'
        ro = c.f32(r + f'readout_projects.{i}.0.weight')             # (D, 2D): [tokens | cls]
        params[dst + 'readout_tokens.weight'] = c.linear_w(ro[:, :d].t())
        params[dst + 'readout_cls.weight'] = c.linear_w(ro[:, d:].t())
        params[dst + 'readout_cls.bias'] = c.row(c.f32(r + f'readout_projects.{i}.0.bias'))
        proj_w = c.f64(r + f'layers.{i}.projection.weight')[:, :, 0, 0]   # (C, D)
        proj_b = c.f64(r + f'layers.{i}.projection.bias')
        if factor > 1:
            ct_w = c.f64(r + f'layers.{i}.resize.weight')            # (C, C, f, f)
            ct_b = c.f64(r + f'layers.{i}.resize.bias')
            fused = torch.einsum('cd,coab->dabo', proj_w, ct_w).reshape(d, -1)
            fused_b = (torch.einsum('c,coab->abo', proj_b, ct_w) + ct_b).reshape(-1)
            params[dst + 'resize.weight'] = c.linear_w(fused)
            params[dst + 'resize.bias'] = c.row(fused_b)
            continue
        params[dst + 'project.weight'] = c.linear_w(proj_w.t())
        params[dst + 'project.bias'] = c.row(proj_b)
        if factor < 1:
            params[dst + 'resize.conv_weight'] = c.conv_w(c.f32(r + f'layers.{i}.resize.weight'))
            params[dst + 'resize.conv_bias'] = c.conv_b(c.f32(r + f'layers.{i}.resize.bias'))
    for i in range(len(dims.neck)):
        params[f'neck.{i}.weight'] = c.conv_w(c.f32(f'neck.convs.{i}.weight'))
    return params


def _fusion(c: _Convert, dims) -> dict:
    params = {}
    for layer in range(len(dims.neck)):
        src, dst = f'neck.fusion_stage.layers.{layer}.', f'fusion.{layer}.'
        for res in ((1, 2) if layer else (2,)):
            for conv in (1, 2):
                hf = f'{src}residual_layer{res}.convolution{conv}.'
                params[f'{dst}res{res}.conv{conv}.weight'] = c.conv_w(c.f32(hf + 'weight'))
                params[f'{dst}res{res}.conv{conv}.bias'] = c.conv_b(c.f32(hf + 'bias'))
        params[dst + 'proj.weight'] = c.linear_w(
            c.f32(src + 'projection.weight')[:, :, 0, 0].t())
        params[dst + 'proj.bias'] = c.row(c.f32(src + 'projection.bias'))
    return params


def _head(c: _Convert) -> dict:
    params = {}
    for i, hf in ((1, 0), (2, 2)):
        params[f'head.conv{i}.weight'] = c.conv_w(c.f32(f'head.head.{hf}.weight'))
        params[f'head.conv{i}.bias'] = c.conv_b(c.f32(f'head.head.{hf}.bias'))
    # The last 1x1 conv has one output channel: keep it bf16 (bfloat8_b's shared exponents
    # buy nothing on 32 values and cost precision at the very output).
    params['head.conv3.weight'] = c.tile16(c.f64('head.head.4.weight')[:, :, 0, 0].t())
    params['head.conv3.bias'] = c.row(c.f32('head.head.4.bias'))
    return params


def _prepare(sd, configs) -> dict:
    c, dims = _Convert(sd, configs.weight_dtype), configs.dims
    params = _embeddings(c, dims, configs.tokens_padded)
    for stage in (_encoder(c, dims), _reassemble(c, dims), _fusion(c, dims), _head(c)):
        params.update(stage)
    return params
