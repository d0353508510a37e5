"""
The OpenVINO backend: DPT-Large on the CPU through OpenVINO, fp32 or bf16.

What a user without a card runs: on the 2-core build machines it is faster than our best torch
mode and starts in about a second once its caches are warm (figures: docs/benchmarks.md).
torch stays the numerical reference (eval_pcc, tests); this backend is compared with it.

Start-up (all in `create`):

1. The converted model (OpenVINO IR, fp16 weights: half the disk of fp32, PCC unchanged) is
   looked up in `<cache>/openvino/<key>/`, key = sha256 of the weights' identity, the image
   size, the OpenVINO version and this module's format version. The identity is worked out
   without loading the model where possible (random weights: config + seed + torch and
   transformers versions; a local directory: its path and its files' sizes and mtimes; a hub
   id: the cached snapshot's commit), so a cache hit never imports torch.
2. On a miss the HF model is loaded and converted (`ov.convert_model`, traced from torch;
   about a minute for DPT-Large on 2 cores), each step logged with its time, and saved
   atomically (a temporary folder renamed into place). An entry that cannot be read (no or
   bad meta.json, wrong file sizes, an IR OpenVINO rejects) is logged, removed and rebuilt.
3. The IR is read, given its input format with OpenVINO's preprocessing (below), and
   compiled for the CPU with `INFERENCE_PRECISION_HINT` f32 or bf16 (set explicitly: on CPUs
   with bf16 units OpenVINO would pick bf16 by itself) and the LATENCY hint, or with
   `streams` > 1 the THROUGHPUT hint with that many streams: the cores split between
   streams, each frame slower, several frames at once (`max_concurrency` = streams, one infer
   request each; figures in docs/benchmarks.md). dtype auto is bf16 where the plugin's
   OPTIMIZATION_CAPABILITIES has BF16, f32 elsewhere; an explicit bf16 there compiles f32 (one
   WARN line). The executed precision is read back from the compiled model (precision.py).
   `<cache>/openvino/compiled/<precision>-threads<n>[-streams<k>]/` is OpenVINO's own
   CACHE_DIR of compiled blobs, one per setting (OpenVINO's blob key ignores the precision),
   so a second start skips the compilation too (OpenVINO recompiles over a damaged blob).

Input: `input_format` 'pixels'. The IR takes the processor's normalised (1, 3, S, S) float
tensor; the preprocessing steps put uint8 (1, S, S, 3) pixels in front of it (convert,
subtract 127.5, divide by 127.5, NHWC -> NCHW, all inside the compiled graph), so the host
only resizes. Normalised float batches are accepted too (a second compiled model, built on
first use). Both give the same output bit for bit.
"""
from __future__ import annotations

import hashlib
from importlib import metadata
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings

from dpt_ros import vocabulary
from dpt_ros.backends import BackendOptions, precision
from dpt_ros.backends.base import BackendInfo, batch_format
from dpt_ros.errors import BackendError, BackendUnavailable
import numpy as np

log = logging.getLogger('dpt_ros.backends.openvino')

DTYPES = vocabulary.DTYPES
DEVICES = ('cpu',)
PRECISION_HINTS = {'fp32': 'f32', 'bf16': 'bf16'}
FORMAT_VERSION = 1          # bump when the saved IR changes meaning
IR_NAME = 'model.xml'
META_NAME = 'meta.json'
PIXEL_CENTRE = 127.5        # (v / 255 - 0.5) / 0.5 == (v - 127.5) / 127.5


# What `streams: 0` picks (docs/benchmarks.md, 2-core Xeon, DPT-Large fp32, loaded): 2
# streams gave two cameras 1.5-1.6x the frames; one camera keeps the freshest-frame hint.
AUTO_STREAMS_TEXT = 'the LATENCY hint (1) for one camera, 2 THROUGHPUT streams for several'


def auto_streams(cameras: int) -> int:
    """Return the streams `streams: 0` (auto) runs for `cameras` cameras."""
    return 2 if cameras >= 2 else 1


def check_options(opts: BackendOptions) -> None:
    """
    Check the options and raise BackendError for any this backend can never take.

    These are configuration errors: they stop start-up with one line (no fallback).
    """
    if opts.device not in DEVICES:
        raise BackendError(f"the openvino backend runs on cpu, not '{opts.device}' "
                           '(cuda is the torch backend, wormhole_* the tt backend)')
    if opts.dtype not in DTYPES:
        raise BackendError(f"openvino backend dtype must be one of {', '.join(DTYPES)}, "
                           f"not '{opts.dtype}'")
    if opts.image_size % 16 or opts.image_size < 32:
        raise BackendError(f'image_size {opts.image_size} must be a multiple of the 16 px patch')


def import_openvino():
    """Import openvino, or raise BackendUnavailable (so the registry falls back to torch)."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailable(f'openvino is not installed ({exc}); pip install '
                                 'openvino (see requirements.txt)') from exc
    return openvino


def openvino_version() -> str:
    """Return the installed OpenVINO runtime's version, e.g. '2026.4.1-22982-...'."""
    import openvino
    return openvino.get_version()


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return 'none'


def _random_identity(config_name: str, seed: int) -> str:
    # Seeded random initialisation is only reproducible for the same torch and transformers.
    return (f'random:{config_name}:seed={seed}:torch={_dist_version("torch")}:'
            f'transformers={_dist_version("transformers")}')


def _dir_identity(path: str) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            st = os.stat(full)
            h.update(f'{name}:{st.st_size}:{st.st_mtime_ns};'.encode())
    return f'dir:{os.path.abspath(path)}:{h.hexdigest()[:16]}'


def _hub_commit(repo: str) -> str | None:
    """Return the commit of `repo`'s snapshot in the HF cache, or None when it is not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(repo, 'config.json')
    except Exception:  # an odd repo id or cache layout: not resolvable, load instead
        return None
    if not isinstance(found, str):
        return None
    parts = os.path.normpath(found).split(os.sep)
    return parts[-2] if len(parts) >= 2 and parts[-3:-2] == ['snapshots'] else None


def weights_identity(weights: str, seed: int) -> str | None:
    """
    Identify what `model.load_model(weights, seed=seed)` would load, without loading it.

    Return None when that cannot be known beforehand (a hub id that is not cached and may
    download).
    """
    from dpt_ros.inference.hf_model import HUB_ID
    if weights == 'random':
        return _random_identity('dpt-large', seed)
    if weights == 'tiny-random':
        return _random_identity('tiny', seed)
    if os.path.isdir(weights):
        return _dir_identity(weights)
    repo = HUB_ID if weights == 'auto' else weights
    commit = _hub_commit(repo)
    if commit:
        return f'hub:{repo}@{commit}'
    if weights == 'auto':
        from dpt_ros.inference.hf_model import hub_reachable
        if os.environ.get('HF_HUB_OFFLINE') == '1' or not hub_reachable():
            return _random_identity('dpt-large', seed)   # what load_model falls back to
    return None


def fingerprint(loaded) -> str:
    """Return a cheap content id of a loaded model (names, shapes, a strided sample of values)."""
    h = hashlib.sha256()
    state = loaded.model.state_dict()
    for name in sorted(state):
        t = state[name].detach().reshape(-1)
        h.update(f'{name}{tuple(state[name].shape)}'.encode())
        h.update(t[::max(1, t.numel() // 4096)].float().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(identity: str, image_size: int, ov_version: str) -> str:
    """sha256 over what the saved IR depends on."""
    payload = {'weights': identity, 'image_size': int(image_size), 'openvino': ov_version,
               'format': FORMAT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


class ModelCache:
    """Converted models on disk: `<root>/<key>/{model.xml, model.bin, meta.json}`."""

    def __init__(self, root: str):
        self.root = root

    def folder(self, key: str) -> str:
        return os.path.join(self.root, key)

    def lookup(self, key: str) -> tuple[dict | None, str | None]:
        """
        Look up the cached entry for `key` and check that it is complete.

        Return (meta with 'xml', its IR path; None) for a complete entry, (None, None) for
        none, (None, why) for a damaged one, which is removed (warning) so the caller
        rebuilds it.
        """
        folder = self.folder(key)
        if not os.path.isdir(folder):
            return None, None
        try:
            with open(os.path.join(folder, META_NAME), encoding='utf-8') as f:
                meta = json.load(f)
            if meta.get('format') != FORMAT_VERSION or meta.get('key') != key:
                raise ValueError('meta.json describes another entry')
            for name, size in meta['files'].items():
                actual = os.path.getsize(os.path.join(folder, name))
                if actual != size:
                    raise ValueError(f'{name} has {actual} bytes, meta.json says {size}')
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = f'{type(exc).__name__}: {exc}'
            self.discard(key, why)
            return None, why
        meta['xml'] = os.path.join(folder, IR_NAME)
        return meta, None

    def discard(self, key: str, why: str) -> None:
        """Remove a damaged entry so it is rebuilt; never fatal."""
        log.warning('openvino: cached model %s is unreadable (%s); rebuilding it',
                    self.folder(key), why)
        shutil.rmtree(self.folder(key), ignore_errors=True)

    def store(self, key: str, ov_model, meta: dict) -> dict:
        """Save an IR with fp16 weights and its meta, atomically; returns the meta."""
        import openvino as ov
        os.makedirs(self.root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix='.tmp-', dir=self.root)
        try:
            ov.save_model(ov_model, os.path.join(tmp, IR_NAME), compress_to_fp16=True)
            files = {n: os.path.getsize(os.path.join(tmp, n)) for n in sorted(os.listdir(tmp))}
            meta = dict(meta, key=key, format=FORMAT_VERSION, files=files)
            with open(os.path.join(tmp, META_NAME), 'w', encoding='utf-8') as f:
                json.dump(meta, f, indent=1)
            folder = self.folder(key)
            shutil.rmtree(folder, ignore_errors=True)
            try:
                os.rename(tmp, folder)    # readers never see a half-written entry
            except OSError:               # another process stored the same entry first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dict(meta, xml=os.path.join(self.folder(key), IR_NAME))


def convert(loaded, image_size: int):
    """Convert the HF model to an ov.Model taking the normalised (1, 3, S, S) float32 tensor."""
    import openvino as ov
    import torch

    class _Depth(torch.nn.Module):
        """predicted_depth only: the traced graph then has one plain tensor output."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values).predicted_depth

    shape = (1, 3, int(image_size), int(image_size))
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns about shape checks it freezes; the input shape is fixed, so they hold.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        return ov.convert_model(_Depth(loaded.model).eval(), example_input=torch.zeros(shape),
                                input=[shape])


def with_pixel_input(ov_model, image_size: int):
    """
    Put uint8 (1, S, S, 3) pixels in front of the model with OpenVINO's preprocessing.

    The processor's normalisation and the NHWC -> NCHW transpose run in the compiled graph.
    """
    import openvino as ov
    from openvino.preprocess import PrePostProcessor
    ppp = PrePostProcessor(ov_model)
    inp = ppp.input()
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout('NHWC')).set_shape(
        [1, int(image_size), int(image_size), 3])
    inp.model().set_layout(ov.Layout('NCHW'))
    inp.preprocess().convert_element_type(ov.Type.f32).mean(PIXEL_CENTRE).scale(PIXEL_CENTRE)
    return ppp.build()


def _model_name(config_name: str) -> str:
    return ('dpt-tiny (same architecture, small config)' if config_name == 'tiny'
            else 'Intel/dpt-large')


class OpenVinoBackend:
    """DPT compiled by OpenVINO for the CPU behind the DepthBackend protocol."""

    def __init__(self, opts: BackendOptions, loaded=None):
        import openvino as ov

        t_start = time.perf_counter()
        self._opts = opts
        self.image_size = int(opts.image_size)
        # LATENCY: one stream already uses every core for one frame. THROUGHPUT: `streams`
        # frames at once, one infer request each.
        self.streams = max(1, int(opts.streams))
        self.max_concurrency = self.streams
        self._core = ov.Core()
        self.precision = precision.for_openvino(
            opts.dtype, precision.openvino_capabilities(self._core))
        root = vocabulary.cache_folder('openvino', opts.cache_dir or None)
        self._cache = ModelCache(root)
        # One CACHE_DIR per compile setting: OpenVINO 2026.4's CPU plugin leaves the precision
        # hint out of its blob key (CACHING_PROPERTIES is FULL_DEVICE_NAME only), and a bf16
        # start that imports an f32 blob returns all zeros.
        self._blob_dir = os.path.join(root, 'compiled', f'{self._hint}-threads'
                                      f'{int(opts.threads) if opts.threads > 0 else "auto"}'
                                      + (f'-streams{self.streams}' if self.streams > 1 else ''))
        self._lock = threading.Lock()
        self._closed = False
        self._compiled: dict[str, object] = {}
        self._requests: dict[str, list] = {}     # kind -> idle infer requests
        if opts.compile:
            log.info('openvino: compile=true is a torch option; OpenVINO always compiles')
        self._startup: dict[str, float] = {}
        meta, ov_model, loaded = self._model(opts, loaded)
        self.loaded = loaded            # None on a cache hit: torch was never needed
        self._meta = meta
        # The normalised-input model is built from the same IR on first use; an unsaved
        # conversion keeps its in-memory copy for that (preprocessing changes it in place).
        self._plain = None if meta['xml'] else ov_model.clone()
        t0 = time.perf_counter()
        self._compiled['pixels'] = self._compile(with_pixel_input(ov_model, self.image_size))
        self._startup['compile_s'] = time.perf_counter() - t0
        self._startup['total_s'] = time.perf_counter() - t_start
        self.info = self._make_info(meta)
        self._warn_precision()
        log.info('openvino backend ready: dtype %s (compiled %s), model %s, compiled in '
                 '%.2f s, start-up %.2f s', self.info.dtype_text,
                 self.info.extra['inference_precision'], self.info.extra['cache'],
                 self._startup['compile_s'], self._startup['total_s'])
        if meta.get('is_random'):
            log.warning('openvino backend is running RANDOM weights (%s): outputs are not '
                        'depth', meta.get('weights'))

    # --- start-up -------------------------------------------------------------------------

    def _model(self, opts: BackendOptions, loaded):
        """(meta, ov.Model, loaded) from the cache, or converted and stored on a miss."""
        ov_ver = openvino_version()
        identity = weights_identity(opts.weights, opts.seed)
        if identity is None:              # only loading tells what these weights are
            loaded = loaded or self._load(opts)
            identity = (weights_identity(opts.weights, opts.seed)
                        or (_random_identity(loaded.config_name, opts.seed)
                            if loaded.is_random else f'sd:{fingerprint(loaded)}'))
        key = cache_key(identity, self.image_size, ov_ver)
        meta, damaged = self._cache.lookup(key)
        if meta is not None and loaded is not None and meta.get('fingerprint') != (
                fp := fingerprint(loaded)):
            # The caller's model is not what its weights option names: key it by content.
            identity = f'sd:{fp}'
            key = cache_key(identity, self.image_size, ov_ver)
            meta, damaged = self._cache.lookup(key)
        self._cache_status = 'hit' if meta is not None else 'rebuilt' if damaged else 'miss'
        if meta is not None:
            t0 = time.perf_counter()
            try:
                ov_model = self._core.read_model(meta['xml'])
                self._startup['read_s'] = time.perf_counter() - t0
                return meta, ov_model, loaded
            except RuntimeError as exc:
                self._cache.discard(key, str(exc).strip().splitlines()[-1][:200])
                self._cache_status = 'rebuilt'
        meta, ov_model, loaded = self._convert(opts, loaded, key, identity, ov_ver)
        return meta, ov_model, loaded

    def _load(self, opts: BackendOptions):
        from dpt_ros.inference.hf_model import load_model
        t0 = time.perf_counter()
        loaded = load_model(opts.weights, seed=opts.seed, image_size=opts.image_size)
        self._startup['load_s'] = time.perf_counter() - t0
        return loaded

    def _convert(self, opts: BackendOptions, loaded, key: str, identity: str, ov_ver: str):
        """Load (if needed), convert and store; one log line per step with its time."""
        folder = self._cache.folder(key)
        log.info('openvino: no converted model for weights %r at %dpx yet: converting once '
                 '(load weights, trace and convert, save; about a minute for DPT-Large on '
                 '2 cores) into %s', opts.weights, self.image_size, folder)
        t_all = time.perf_counter()
        if loaded is None:
            log.info('openvino: [1/3] loading the weights (%s)', opts.weights)
            loaded = self._load(opts)
            log.info('openvino: [1/3] weights loaded in %.1f s', self._startup['load_s'])
        if int(loaded.config.image_size) != self.image_size:
            raise BackendError(f'model was built for {loaded.config.image_size}px input, '
                               f'options ask for {self.image_size}px')
        log.info('openvino: [2/3] tracing the torch model and converting it to OpenVINO')
        t0 = time.perf_counter()
        try:
            ov_model = convert(loaded, self.image_size)
        except Exception as exc:  # conversion raises many types; torch can still run it
            raise BackendUnavailable('OpenVINO could not convert the model: '
                                     f'{type(exc).__name__}: {str(exc)[:300]}') from exc
        self._startup['convert_s'] = time.perf_counter() - t0
        log.info('openvino: [2/3] converted in %.1f s; [3/3] saving it with fp16 weights',
                 self._startup['convert_s'])
        meta = {'identity': identity, 'fingerprint': fingerprint(loaded),
                'image_size': self.image_size, 'openvino': ov_ver, 'weights': loaded.weights,
                'is_random': bool(loaded.is_random), 'config_name': loaded.config_name,
                'created': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                'convert_s': round(self._startup['convert_s'], 2)}
        t0 = time.perf_counter()
        try:
            meta = self._cache.store(key, ov_model, meta)
            # Serve what was saved (fp16 weights), not the in-memory fp32 conversion, so a
            # first start computes exactly what every later start from the cache computes.
            ov_model = self._core.read_model(meta['xml'])
        except (OSError, RuntimeError) as exc:   # a full or read-only disk is not fatal
            log.warning('openvino: could not save the converted model in %s (%s); serving '
                        'it from memory, the next start converts again', folder, exc)
            self._cache_status = 'not saved'
            meta = dict(meta, xml=None)
            return meta, ov_model, loaded
        self._startup['save_s'] = time.perf_counter() - t0
        mb = sum(meta['files'].values()) / 1e6
        log.info('openvino: [3/3] saved %.0f MB in %.1f s; conversion took %.1f s in all '
                 '(later starts read it from the cache)', mb, self._startup['save_s'],
                 time.perf_counter() - t_all)
        return meta, ov_model, loaded

    @property
    def _hint(self) -> str:
        return PRECISION_HINTS[self.precision.executed]

    def _warn_precision(self) -> None:
        """One WARN line for a bf16 this CPU cannot run, or a compiled precision not asked for."""
        executed = self.info.dtype
        if executed != self.precision.executed:
            log.warning('openvino: dtype %s: the compiled model runs %s although %s was asked '
                        'for (%s)', self.info.dtype_text, executed, self.precision.executed,
                        self.precision.basis)
        elif self.precision.warning('openvino'):
            log.warning('%s', self.precision.warning('openvino'))

    def _compile(self, ov_model):
        config = {'INFERENCE_PRECISION_HINT': self._hint,
                  'PERFORMANCE_HINT': 'LATENCY'}
        if self.streams > 1:
            config.update(PERFORMANCE_HINT='THROUGHPUT', NUM_STREAMS=self.streams)
        if self._opts.threads and self._opts.threads > 0:
            config['INFERENCE_NUM_THREADS'] = int(self._opts.threads)
        if self._blob_dir:
            try:
                os.makedirs(self._blob_dir, exist_ok=True)
                config['CACHE_DIR'] = self._blob_dir
            except OSError as exc:     # OpenVINO would refuse to compile: go without it
                log.warning('openvino: compiled-blob cache %s unusable (%s); compiling '
                            'without it', self._blob_dir, exc)
                self._blob_dir = None
        try:
            return self._core.compile_model(ov_model, 'CPU', config)
        except RuntimeError as exc:
            raise BackendUnavailable('OpenVINO could not compile the model for the CPU: '
                                     f'{str(exc).strip().splitlines()[-1][:300]}') from exc

    def _make_info(self, meta: dict) -> BackendInfo:
        compiled = self._compiled['pixels']
        # What runs is what the compiled model says, not what was asked for.
        inference_precision = compiled.get_property('INFERENCE_PRECISION_HINT').to_string()
        return BackendInfo(
            name='openvino', device='cpu', dtype=precision.from_openvino(inference_precision),
            dtype_requested=self._opts.dtype,
            image_size=self.image_size, execution_mode='openvino', dp=1,
            batch_size=max(1, int(self._opts.batch_size)),
            model_name=_model_name(meta.get('config_name', '')),
            weights=meta.get('weights', self._opts.weights), input_format='pixels',
            extra={'weights_random': bool(meta.get('is_random')),
                   'config_name': meta.get('config_name'),
                   'openvino_version': meta.get('openvino'),
                   'inference_precision': inference_precision,
                   'bf16_native': self.precision.native_bf16,
                   'dtype_basis': self.precision.basis,
                   'threads': int(compiled.get_property('INFERENCE_NUM_THREADS')),
                   'performance_hint': str(compiled.get_property('PERFORMANCE_HINT')),
                   'streams': int(compiled.get_property('NUM_STREAMS')),
                   'weights_on_disk': 'fp16',
                   'cache': self._cache_status,
                   'cache_entry': os.path.dirname(meta['xml']) if meta['xml'] else None,
                   'compiled_cache_dir': self._blob_dir,
                   'startup_s': {k: round(v, 3) for k, v in self._startup.items()},
                   'compile_time_s': self._startup['compile_s']})

    # --- serving --------------------------------------------------------------------------

    def _take_request(self, kind: str):
        """
        Take an idle infer request for an input format (called with the lock held).

        The normalised-input model is compiled on first use (the pipeline hands this backend
        pixels, so normally it never is). With several streams each concurrent call gets a
        request of its own; at most `streams` exist, as at most that many calls run at once.
        """
        idle = self._requests.setdefault(kind, [])
        if idle:
            return idle.pop()
        if kind not in self._compiled:
            t0 = time.perf_counter()
            plain = self._plain or self._core.read_model(self._meta['xml'])
            self._compiled[kind] = self._compile(plain)
            log.info('openvino: compiled the normalised-input model on first use '
                     '(%.2f s)', time.perf_counter() - t0)
        return self._compiled[kind].create_infer_request()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """
        Run the model on a batch, one frame at a time; return (N, S, S) float32 predicted_depth.

        The batch is (N, S, S, 3) uint8 pixels or (N, 3, S, S) normalised float.
        """
        batch = np.asarray(batch)
        kind = batch_format(batch, self.image_size)
        s = self.image_size
        out = np.empty((batch.shape[0], s, s), dtype=np.float32)
        with self._lock:
            if self._closed:
                raise BackendError('openvino backend is closed')
            req = self._take_request(kind)
        try:   # outside the lock: with several streams, calls run side by side
            for i in range(batch.shape[0]):
                x = batch[i:i + 1]
                x = (np.ascontiguousarray(x) if kind == 'pixels'
                     else np.ascontiguousarray(x, dtype=np.float32))
                req.infer({0: x}, share_inputs=True)
                out[i] = req.get_output_tensor(0).data.reshape(s, s)
        finally:
            with self._lock:
                if not self._closed:
                    self._requests.setdefault(kind, []).append(req)
        return out

    def fallback_counts(self) -> dict[str, int]:
        """No fallbacks inside this backend: it runs the whole model or fails to start."""
        return {}

    def close(self) -> None:
        """Drop the compiled models and their memory. Idempotent."""
        with self._lock:
            self._closed = True
            self._requests.clear()
            self._compiled.clear()


def create(opts: BackendOptions, loaded=None) -> OpenVinoBackend:
    """
    Create the backend for the registry (`create_backend('openvino', opts)`).

    Raises BackendError for options this backend can never take (device, dtype: no fallback),
    BackendUnavailable where openvino is not installed (the registry falls back to torch on
    the CPU, counted). `loaded` shares an already loaded HF model (used on a cache miss, and
    checked against the cached entry's fingerprint on a hit).
    """
    check_options(opts)
    import_openvino()
    return OpenVinoBackend(opts, loaded)


__all__ = ['OpenVinoBackend', 'create', 'DTYPES', 'weights_identity']
