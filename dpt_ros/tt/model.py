"""
TtDPT: DPT-Large (MiDaS 3.0) as a TTNN program, every stage on device.

Interface (stable; the runtime / backend builds on it):

    cfg = build_configs(hf_config, device='wormhole_n300', image_size=384, batch=1)
    prepared = prepare_weights(hf_model.state_dict(), cfg, weights_id=...)   # cached on disk
    model = TtDPT(prepared.params, hf_config, device, cfg, FallbackCounter(strict=...))
    host = model.preprocess_host(batch_np)       # (N,S,S,3) uint8 pixels -> host ttnn.Tensor
    dev_in = ttnn.allocate_tensor_on_device(host.shape, host.dtype, host.layout, device,
                                            model.input_memory_config)   # persistent input
    ttnn.copy_host_to_device_tensor(host, dev_in, cq_id=...)
    out = model.forward(dev_in)                  # device tensor, predicted_depth
    depth = model.postprocess_host(ttnn.from_device(out))   # np (N, S, S) float32

`build_tt_model(hf_model, device, ...)` does the first three lines. N is `configs.batch`
(per chip; one TtDPT per chip / submesh). Stage split for timing (eager mode):
`backbone(x) -> taps`, `reassembly(taps) -> features`, `fusion_head(features) -> depth`;
`forward` is exactly their composition. The first forward prepares conv weights on device
(ttnn.conv2d returns them) and uploads the upsample matrices: run one eager forward before
capturing a trace. `has_host_stages` is True once any stage fell back to the host — such a
model cannot be traced (host reads are not allowed during capture).
"""
from __future__ import annotations

from dpt_ros.tt.embeddings import TtEmbeddings
from dpt_ros.tt.encoder import TtEncoder
from dpt_ros.tt.fallbacks import FallbackCounter
from dpt_ros.tt.fusion import TtFusion
from dpt_ros.tt.head import TtHead
from dpt_ros.tt.ops import Upsample2x
from dpt_ros.tt.reassemble import TtReassemble
from dpt_ros.tt.weights import PAD_CHANNELS
import numpy as np


class TtDPT:
    """DPTForDepthEstimation on a TT device (one chip / submesh, batch `configs.batch`)."""

    def __init__(self, params: dict, config, device, configs, fallbacks: FallbackCounter):
        import ttnn
        self.hf_config = config
        self.device = device
        self.cfg = configs
        self.fb = fallbacks
        self.input_memory_config = ttnn.DRAM_MEMORY_CONFIG
        # TILE tensors (linears, norms, tables) live on the device; row-major ones are conv
        # weights, which ttnn.conv2d prepares from the host copy on its first call.
        self.params = {
            name: (ttnn.to_device(t, device, ttnn.DRAM_MEMORY_CONFIG)
                   if t.layout == ttnn.TILE_LAYOUT else t)
            for name, t in params.items()}
        self.upsample = Upsample2x(device, fallbacks, configs.compute['upsample'])
        self.embeddings = TtEmbeddings(self.params, configs, device, fallbacks)
        self.encoder = TtEncoder(self.params, configs, device, fallbacks)
        self.reassemble = TtReassemble(self.params, configs, device, fallbacks)
        self.fusion = TtFusion(self.params, configs, device, fallbacks, self.upsample)
        self.head = TtHead(self.params, configs, device, fallbacks, self.upsample)
        self._prepare_upsample()
        # The input's constants (preprocess_host, per frame): pixel - centre is what the
        # device takes; scale/offset map a normalised tensor back to pixels.
        import torch

        from dpt_ros.inference.preprocess import pixel_affine, pixel_centre
        self._centre = torch.from_numpy(pixel_centre()).float()
        self._scale, self._offset = (torch.from_numpy(v).float().reshape(1, 3, 1, 1)
                                     for v in pixel_affine())

    def _prepare_upsample(self):
        dims = self.cfg.dims
        side = dims.grid // 2
        for _ in range(len(dims.neck) + 1):     # 4 fusion layers + the head
            self.upsample.prepare(self.cfg.batch, side, side)
            side *= 2

    # ---- host side ----------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple:
        """Shape of the host/device input tensor (N*P, 16, P, 64)."""
        dims = self.cfg.dims
        return (self.cfg.batch * dims.grid, dims.patch, dims.grid, dims.patch * PAD_CHANNELS)

    def preprocess_host(self, batch: np.ndarray):
        """
        Convert a batch to a host ttnn.Tensor in forward's input layout.

        That layout is NHWC pixel - centre (preprocess.pixel_centre: half-integers, exact in
        bf16), RGB padded to 4 channels, viewed as (N*P, 16, P, 64) (a free reshape) for the
        device patchify. The patch-embedding weights hold the rest of the normalisation
        (weights.py).

        Takes (N, S, S, 3) uint8 pixels, or the processor's normalised (N, 3, S, S) float32,
        mapped back to pixel values (the affine inverse; for tests and float callers).
        """
        import torch
        import ttnn
        dims = self.cfg.dims
        s = dims.image_size
        batch = np.asarray(batch)
        n = self.cfg.batch
        if batch.shape == (n, s, s, 3) and batch.dtype == np.uint8:
            x = torch.from_numpy(np.ascontiguousarray(batch)).float() - self._centre
        elif batch.shape == (n, 3, s, s):
            x = torch.from_numpy(np.asarray(batch, dtype=np.float32))
            x = ((x - self._offset) / self._scale).permute(0, 2, 3, 1) - self._centre
        else:
            raise ValueError(f'expected pixel batch {(n, s, s, 3)} uint8 or normalised '
                             f'{(n, 3, s, s)} float32, got {batch.shape} {batch.dtype}')
        x = torch.nn.functional.pad(x, (0, PAD_CHANNELS - 3))
        x = x.reshape(self.input_shape).contiguous()
        return ttnn.from_torch(x, ttnn.bfloat16, layout=ttnn.ROW_MAJOR_LAYOUT)

    def postprocess_host(self, output) -> np.ndarray:
        """Host (or device) ttnn output of forward -> (N, S, S) float32 predicted_depth."""
        import ttnn
        s = self.cfg.dims.image_size
        t = ttnn.to_torch(output).float()
        return t.reshape(self.cfg.batch, s, s).numpy()

    # ---- device side --------------------------------------------------------------------
    def backbone(self, pixels) -> list:
        """Embeddings + encoder -> taps ((N, Tp, D) DRAM)."""
        return self.encoder.forward(self.embeddings.forward(pixels))

    def reassembly(self, taps) -> list:
        """Readout, reassemble and neck convs -> 4 feature maps, finest first."""
        return self.reassemble.forward(taps)

    def fusion_head(self, features):
        """Fusion stage + depth head -> (N, S, S) row-major predicted_depth."""
        return self.head.forward(self.fusion.forward(features))

    def forward(self, pixels):
        """Device input (see preprocess_host) -> device predicted_depth."""
        return self.fusion_head(self.reassembly(self.backbone(pixels)))

    @property
    def has_host_stages(self) -> bool:
        """Return True when a stage fell back to the host (then the model must run eagerly)."""
        return self.upsample._host or self.reassemble._readout_on_host


def build_tt_model(hf_model, device, *, device_name: str = 'wormhole_n300',
                   image_size: int | None = None, batch: int = 1,
                   weight_dtype: str = 'bfloat8_b', math_fidelity: str = 'HiFi2',
                   fallbacks: FallbackCounter | None = None, weights_id: str | None = None,
                   cache_dir: str | None = None, use_cache: bool = True,
                   prepared=None, precision: str = 'accurate') -> TtDPT:
    """
    Configs + (cached) weight preparation + TtDPT for one device / submesh.

    Pass `prepared` (a PreparedWeights) to reuse host weights across the chips of a mesh.
    """
    from dpt_ros.tt.configs import build_configs, device_grid
    from dpt_ros.tt.weights import prepare_weights
    cfg = build_configs(hf_model.config, device_name, image_size, batch, weight_dtype,
                        math_fidelity, grid=device_grid(device), precision=precision)
    if prepared is None:
        prepared = prepare_weights(hf_model.state_dict(), cfg, weights_id=weights_id,
                                   cache_dir=cache_dir, use_cache=use_cache)
    return TtDPT(prepared.params, hf_model.config, device, cfg,
                 fallbacks or FallbackCounter())
