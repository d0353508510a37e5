"""
The TT backend: DPT-Large as a traced TTNN program on Tenstorrent Wormhole (N150/N300/T3000).

Start-up (all in `create`, so a node either has a working backend or a clear reason why not):
open the device (`tt.device`: 1x1, or 1xdp split into per-chip submeshes), load the HF model,
prepare its weights once for TTNN (cached on disk by the TT model code), build one `TtDPT` per
chip, compile + capture a trace per chip (`tt.executor`), then prove each chip's depth against
torch fp32 on the CPU (`tt_selfcheck`: a failing chip leaves the rotation; with none left,
SelfCheckFailed). A failure after the device is open releases what was built before the error
propagates.

`infer` takes uint8 pixels (N,S,S,3) (`input_format` 'pixels': the normalisation is in the
patch-embedding weights) or the normalised (N,3,S,S) tensor. It is thread-safe;
`max_concurrency` = dp: each call takes free chips, one frame per chip in flight at once. In
throughput mode (`chip_batch` 2) each chip runs two frames per program: `max_concurrency` is
2 x dp and concurrent calls of one frame (a node's cameras) are paired, a call waiting up to
`chip_batch_wait_ms` for its partner (alone, its run is filled with a copy of its frame).
Device time (`trace_wall_ms`, to a synchronize_device barrier) and the host-side end-to-end
time are kept in `info.extra` after every call; `chip_stats()` gives frames, device FPS,
failures and rotation per chip. A chip that fails is taken out of the rotation and the others
keep serving; only when every chip is out does `infer` raise (the node then falls back).

Where ttnn is missing or no device opens ("No chips detected" here), `create` raises
`BackendUnavailable` with that reason: the registry then falls back to torch CPU, counted.
"""
from __future__ import annotations

import logging
import threading
import time

from dpt_ros.backends import BackendOptions, tt_selfcheck
from dpt_ros.backends.base import BackendInfo, batch_format
from dpt_ros.errors import BackendError, BackendUnavailable
from dpt_ros.tt.device import (check_dispatch, import_ttnn, open_devices,
                               trace_region_refusal, TtDevices)
from dpt_ros.tt.executor import ChipPipeline, DataParallel, FrameGather
from dpt_ros.tt.fallbacks import FallbackCounter, HOST_FALLBACK_COUNT, HOST_STAGE_KEYS
from dpt_ros.vocabulary import EXECUTION_MODES, TT_CHIP_BATCHES, TT_DEVICES, TT_PRECISIONS
import numpy as np

log = logging.getLogger('dpt_ros.backends.tt')

# Counters every TT backend reports, even when zero (the perf JSON's fallback_counts keys).
HOST_FALLBACK_KEYS = (HOST_FALLBACK_COUNT,) + HOST_STAGE_KEYS


def _check_options(opts: BackendOptions) -> None:
    """Raise configuration errors (not 'unavailable'): they stop start-up, no fallback."""
    if opts.device not in TT_DEVICES:
        raise BackendError(f"the tt backend runs on {' | '.join(sorted(TT_DEVICES))}, not "
                           f"'{opts.device}' (device cpu/cuda is the torch backend)")
    if opts.execution_mode not in EXECUTION_MODES:
        raise BackendError(f"tt execution_mode must be one of {', '.join(EXECUTION_MODES)}, "
                           f"not '{opts.execution_mode}'")
    if opts.dp < 1 or opts.dp > TT_DEVICES[opts.device]:
        raise BackendError(f'dp {opts.dp} is not possible on {opts.device} '
                           f'({TT_DEVICES[opts.device]} chip(s))')
    if opts.image_size % 16 or opts.image_size < 32:
        raise BackendError(f'image_size {opts.image_size} must be a multiple of the 16 px patch')
    if opts.trace_region_mb < 1:
        raise BackendError(f'trace_region_mb {opts.trace_region_mb} must be >= 1')
    check_dispatch(opts.dispatch_core, opts.execution_mode, opts.dp)
    if opts.chip_batch not in TT_CHIP_BATCHES:
        raise BackendError(f"tt chip_batch must be one of {', '.join(map(str, TT_CHIP_BATCHES))}"
                           f', not {opts.chip_batch}')
    if opts.chip_batch > 1 and opts.dispatch_core == 'worker':
        raise BackendError(f'chip_batch {opts.chip_batch} needs the 8x8 grid of ethernet '
                           'dispatch; dispatch_core worker gives an N300 chip 8x7, where the '
                           "head's convs of two frames do not fit L1")
    if opts.chip_batch_wait_ms < 0:
        raise BackendError(f'chip_batch_wait_ms {opts.chip_batch_wait_ms} must be >= 0')
    if opts.precision not in TT_PRECISIONS:
        raise BackendError(f"tt precision must be one of {', '.join(TT_PRECISIONS)}, not "
                           f"'{opts.precision}'")


class TtBackend:
    """DPT on 1 to 8 Wormhole chips (one frame per chip) behind the DepthBackend protocol."""

    def __init__(self, opts: BackendOptions, devices: TtDevices, dp: DataParallel, models: list,
                 loaded, fallbacks, compile_s: float):
        self._opts = opts
        self._devices = devices
        self._dp = dp
        self._models = models
        self._fallbacks = fallbacks
        self._lock = threading.Lock()          # guards close() against concurrent infer()
        self._closed = False
        self._active = 0
        self._idle = threading.Condition(self._lock)
        self.image_size = int(opts.image_size)
        # Throughput mode: calls of fewer frames than a chip runs are merged (FrameGather),
        # so as many calls may run at once as the chips hold frames.
        self.max_concurrency = dp.dp * dp.batch
        self._gather = FrameGather(dp.batch, opts.chip_batch_wait_ms / 1e3, dp.infer) \
            if dp.batch > 1 else None
        self.model_config = loaded.config      # for the perf header JSON
        model_name = ('dpt-tiny (same architecture, small config)'
                      if loaded.config_name == 'tiny' else 'Intel/dpt-large')
        dtype = getattr(models[0], 'dtype_name', None) or 'bf16 activations, bf16/bfp8_b weights'
        device_str = devices.ids[0] if dp.dp == 1 else ','.join(devices.ids)
        self.info = BackendInfo(
            name='tt', device=device_str, dtype=str(dtype), image_size=self.image_size,
            execution_mode=opts.execution_mode, dp=dp.dp,
            batch_size=max(1, int(opts.batch_size)), model_name=model_name,
            weights=loaded.weights,
            # The production program folds the normalisation into its patch embedding.
            input_format=getattr(models[0], 'input_format', 'normalized'),
            extra={'tt_execution_mode': opts.execution_mode,
                   # differs only when a host fallback forced a chip to run eagerly
                   'tt_execution_mode_effective': ','.join(sorted({p.mode
                                                                   for p in dp.pipelines})),
                   'tt_device': devices.kind,
                   'device_ids': list(devices.ids),
                   'num_command_queues': devices.num_command_queues,
                   'trace_region_size': devices.trace_region_size,
                   # what each chip holds after capture (None: eager, or unknown)
                   'trace_bytes': [p.trace_bytes for p in dp.pipelines],
                   'dispatch_core': devices.dispatch,
                   'chip_grids': devices.grids(),
                   'per_chip_batch_size': dp.batch,
                   'strict': bool(opts.strict),
                   'precision': opts.precision,
                   'weights_random': bool(loaded.is_random),
                   'config_name': loaded.config_name,
                   'compile_time_s': compile_s,
                   'trace_wall_ms': float('nan'),
                   'device_fps': float('nan'),
                   'e2e_ms': float('nan'),
                   'fps_e2e': float('nan'),
                   'readback_ms': float('nan'),
                   'chips_in_rotation': dp.in_rotation})
        if loaded.is_random:
            log.warning('tt backend is running RANDOM weights (%s): outputs are not depth',
                        loaded.weights)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """
        Return the (N, S, S) float32 predicted_depth of a batch, chip_batch frames per chip.

        The batch is (N, S, S, 3) uint8 pixels (input_format 'pixels', the production model)
        or (N, 3, S, S) normalised float.
        """
        batch = np.asarray(batch)
        kind = batch_format(batch, self.image_size)
        if kind == 'pixels' and self.info.input_format != 'pixels':
            raise BackendError('this tt device program takes normalised (N, 3, S, S) input, '
                               'not pixels')
        batch = (np.ascontiguousarray(batch) if kind == 'pixels'
                 else np.ascontiguousarray(batch, dtype=np.float32))
        with self._lock:
            if self._closed:
                raise BackendError('tt backend is closed')
            self._active += 1
        try:
            t0 = time.perf_counter()
            out = self._dp.infer(batch) if self._gather is None else self._gather(batch)
            e2e_ms = (time.perf_counter() - t0) * 1e3
            perf = self._dp.last_perf
            extra = self.info.extra
            extra['trace_wall_ms'] = self.info.device_ms = perf.trace_wall_ms
            extra['device_fps'] = perf.device_fps
            extra['readback_ms'] = perf.readback_ms
            extra['e2e_ms'] = e2e_ms
            extra['fps_e2e'] = 1e3 * batch.shape[0] / e2e_ms if e2e_ms > 0 else float('nan')
            extra['chips_in_rotation'] = self._dp.in_rotation
            return out
        finally:
            with self._lock:
                self._active -= 1
                self._idle.notify_all()

    def chip_stats(self) -> dict[str, object]:
        """
        Per-chip diagnostics beside the totals, flat and plain (str / int / float / bool).

        'chips', 'chips_in_rotation', and per chip i: 'chip<i> id', 'chip<i> frames',
        'chip<i> fps_device' (NaN before its first frame), 'chip<i> failures',
        'chip<i> in_rotation', 'chip<i> last_error' ('' while it never failed),
        'chip<i> selfcheck_pcc' (its start-up check against torch fp32; NaN when not run),
        'chip<i> dispatch' (eth | worker) and 'chip<i> grid' (its compute grid, '8x8').
        """
        stats = self._dp.chip_stats()
        out: dict[str, object] = {'chips': len(stats),
                                  'chips_in_rotation': sum(s['in_rotation'] for s in stats)}
        grids = self.info.extra['chip_grids']
        for i, st in enumerate(stats):
            for key in ('id', 'frames', 'fps_device', 'failures', 'in_rotation', 'last_error',
                        'selfcheck_pcc'):
                out[f'chip{i} {key}'] = st[key]
            out[f'chip{i} dispatch'] = self.info.extra['dispatch_core']
            out[f'chip{i} grid'] = grids[i]
        return out

    def fallback_counts(self) -> dict[str, int]:
        """program_config_fallback_total (+ per op), host fallbacks (+ per stage)."""
        counts = dict.fromkeys(('program_config_fallback_total',) + HOST_FALLBACK_KEYS, 0)
        snap = self._fallbacks.snapshot()
        reasons = snap.pop('reasons', {})
        counts.update({k: int(v) for k, v in snap.items()})
        # Reasons are text: they go to info.extra (diagnostics, perf JSON), not the counters.
        self.info.extra['fallback_reasons'] = dict(reasons)
        return counts

    def close(self) -> None:
        """Wait for running calls, release traces, then close the device. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # A trace must not be released under a running replay.
            self._idle.wait_for(lambda: self._active == 0, timeout=30.0)
        _teardown(self._dp, self._devices)


def _teardown(dp: DataParallel | None, devices: TtDevices | None) -> None:
    """Traces first (they live in the device's trace region), then the device."""
    try:
        if dp is not None:
            dp.release()
    finally:
        if devices is not None:
            devices.close()


class _TtDPTProgram:
    """TtDPT seen through the executor's device-program interface."""

    input_format = 'pixels'     # TtDPT.preprocess_host takes uint8 pixels (and normalised)

    def __init__(self, tt_dpt):
        self.tt = tt_dpt
        self.batch = tt_dpt.cfg.batch       # frames per chip per run
        self.input_memory_config = tt_dpt.input_memory_config
        self.dtype_name = f'bf16 activations, {tt_dpt.cfg.weight_dtype_name} weights'

    def __call__(self, x):
        return self.tt.forward(x)

    def prepare_input(self, frame):
        return self.tt.preprocess_host(frame)

    @property
    def has_host_stages(self) -> bool:
        return bool(self.tt.has_host_stages)


def _tt_dpt_factory(loaded, chip, opts: BackendOptions, fallbacks, prepared):
    """Return the production model: one TtDPT per chip from the shared prepared weights."""
    from dpt_ros.tt.model import TtDPT
    configs, weights = prepared
    return _TtDPTProgram(TtDPT(weights.params, loaded.config, chip, configs, fallbacks))


def _prepare_weights(loaded, opts: BackendOptions, chip):
    """
    Build the configs and the host-side weights, once for all chips.

    The configs are for (device, size, chip_batch per chip, the chip's grid); one chip's grid
    serves all of them, as the chips of one board have the same grid.

    tt.weights caches them on disk keyed by a fingerprint of the state dict, the prepared-
    weight config and the ttnn version, so a restart skips the preparation.
    """
    from dpt_ros.tt.configs import build_configs, device_grid
    from dpt_ros.tt.weights import prepare_weights
    configs = build_configs(loaded.config, device=opts.device, image_size=opts.image_size,
                            batch=opts.chip_batch, grid=device_grid(chip),
                            precision=opts.precision)
    weights = prepare_weights(loaded.model.state_dict(), configs,
                              cache_dir=opts.cache_dir or None)
    return configs, weights


def _compile(dp: DataParallel, sample: np.ndarray, opts: BackendOptions) -> float:
    """Compile and capture every chip; a trace too big for its region is one clear line."""
    try:
        return dp.compile(sample)
    except RuntimeError as exc:
        refused = trace_region_refusal(exc)
        if refused is None:
            raise
        raise BackendError(
            f'trace region too small: the traces need {refused[0]} B, the region holds '
            f'{refused[1]} B (trace_region_mb {opts.trace_region_mb}); raise trace_region_mb '
            '(runner: --trace-region-mb)') from None


def create(opts: BackendOptions, loaded=None, *, model_factory=None,
           selfcheck_reference=None) -> TtBackend:
    """
    Create the backend for the registry (`create_backend('tt', opts)`).

    Raises BackendUnavailable (no ttnn, no device) so the registry can fall back; BackendError
    for options that can never work; FallbackError (a BackendError) from strict mode.
    `loaded` shares an already loaded HF model; `model_factory(loaded, chip, opts, fallbacks,
    prepared)` replaces TtDPT (runtime tests use a small device program); such a program is
    self-checked only against its own `selfcheck_reference(frame) -> (S, S)` (see tt_selfcheck).
    """
    _check_options(opts)
    import_ttnn()
    devices = open_devices(opts.device, opts.dp, execution_mode=opts.execution_mode,
                           trace_region_size=opts.trace_region_mb << 20,
                           dispatch=opts.dispatch_core)
    dp = None
    try:
        if loaded is None:
            from dpt_ros.inference.hf_model import load_model
            loaded = load_model(opts.weights, seed=opts.seed, image_size=opts.image_size)
        if int(loaded.config.image_size) != opts.image_size:
            raise BackendError(f'model was built for {loaded.config.image_size}px input, '
                               f'options ask for {opts.image_size}px')
        fallbacks = FallbackCounter(strict=opts.strict)
        stand_in = model_factory is not None
        if model_factory is None:
            model_factory = _tt_dpt_factory
            prepared = _prepare_weights(loaded, opts, devices.chips[0])
        else:
            prepared = None
        models = [model_factory(loaded, chip, opts, fallbacks, prepared)
                  for chip in devices.chips]
        pipes = [ChipPipeline(chip, m, opts.execution_mode, opts.image_size, chip_id=cid)
                 for chip, m, cid in zip(devices.chips, models, devices.ids)]
        dp = DataParallel(pipes)
        # Any frame compiles and captures: the trace depends on shapes, not values.
        sample = np.zeros((1, 3, opts.image_size, opts.image_size), dtype=np.float32)
        compile_s = _compile(dp, sample, opts)
        check = tt_selfcheck.check(dp, opts, loaded,
                                   getattr(models[0], 'input_format', 'normalized'),
                                   stand_in=stand_in, reference=selfcheck_reference)
        backend = TtBackend(opts, devices, dp, models, loaded, fallbacks, compile_s)
        backend.info.extra.update(check.extra())
    except BaseException:
        _teardown(dp, devices)
        raise
    log.info('tt backend ready: %s, %s, dp %d, %dpx, compile+capture %.1f s', backend.info.device,
             opts.execution_mode, dp.dp, opts.image_size, compile_s)
    return backend


__all__ = ['TtBackend', 'create', 'BackendUnavailable']
