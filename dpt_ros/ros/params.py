"""
The depth node's parameters: one declaration each, validation, and the topic names.

This module is the single source of the node's defaults. `descriptors.py` declares each entry of
`PARAMS` with a ParameterDescriptor built from it, `config/dpt.yaml` mirrors the same names and
defaults with a comment each (a test checks both), and the launch file passes only what a user
overrides. Backend defaults come from `BackendOptions`, so the two never drift apart, but for
dtype: auto here (vocabulary.DEFAULT_DTYPE), fp32 for code that builds options itself.

No rclpy here: validation is plain Python and is tested without a ROS graph.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
import re
from typing import Callable, Iterable, Mapping

from dpt_ros import vocabulary
from dpt_ros.backends import BackendOptions, BACKENDS
from dpt_ros.backends.cli_options import options_from_values
from dpt_ros.backends.openvino_backend import auto_streams, AUTO_STREAMS_TEXT

_BACKEND_DEFAULTS = BackendOptions()


@dataclass(frozen=True)
class Param:
    """One node parameter: its name, default (which also fixes its type) and constraints."""

    name: str
    default: object
    description: str
    choices: tuple | Callable[[], Iterable[str]] | None = None
    min: float | None = None  # noqa: A003 -- the descriptor range, named as ROS names it
    max: float | None = None  # noqa: A003
    step: int = 0                  # integer parameters: valid values are min + k * step
    read_only: bool = True         # False: may be changed at runtime via `ros2 param set`
    free_form: str = ''            # words saying which values beyond `choices` are accepted

    @property
    def type_name(self) -> str:
        """'bool', 'int', 'float', 'str' or 'str_list' (derived from the default)."""
        d = self.default
        if isinstance(d, bool):
            return 'bool'
        if isinstance(d, int):
            return 'int'
        if isinstance(d, float):
            return 'float'
        if isinstance(d, str):
            return 'str'
        if isinstance(d, list):
            return 'str_list'
        raise TypeError(f'unsupported default for {self.name}: {d!r}')

    def choice_list(self) -> tuple[str, ...]:
        """Return the valid choices now (registries may grow at start-up), or () for none."""
        if self.choices is None:
            return ()
        if callable(self.choices):
            return tuple(self.choices())
        return tuple(self.choices)

    def constraint_text(self) -> str:
        """Human-readable constraints for the descriptor and error messages."""
        parts = []
        choices = self.choice_list()
        if choices:
            parts.append('one of: ' + ', '.join(choices))
        if self.free_form:
            parts.append(('or ' if choices else '') + self.free_form)
        if self.min is not None or self.max is not None:
            lo = '-inf' if self.min is None else _fmt(self.min)
            hi = 'inf' if self.max is None else _fmt(self.max)
            step = f' in steps of {self.step}' if self.step else ''
            parts.append(f'range [{lo}, {hi}]{step}')
        return '; '.join(parts)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _colormaps() -> tuple[str, ...]:
    from dpt_ros.inference.colorize import COLORMAPS  # cv2 import only when asked
    return tuple(COLORMAPS)


def _norm_modes() -> tuple[str, ...]:
    from dpt_ros.inference.colorize import NORM_MODES
    return tuple(NORM_MODES)


def _backends() -> tuple[str, ...]:
    return tuple(sorted(BACKENDS))


PARAMS: tuple[Param, ...] = (
    # --- inputs ---
    Param('cameras', [''],
          'Camera namespaces served by this node, one entry per camera. Each reads '
          '<ns>/image (or <ns>/image/compressed) and <ns>/camera_info and publishes under '
          "<ns>. '' is the node's own namespace, so plain `image:=...` remapping works."),
    Param('transport', 'raw', 'Input transport: raw sensor_msgs/Image on <ns>/image, or '
          'sensor_msgs/CompressedImage (jpeg/png) on <ns>/image/compressed.',
          choices=('raw', 'compressed')),
    Param('qos_reliability', 'auto',
          'Input reliability. auto matches the publishers (best_effort if any publisher is '
          'best-effort, else reliable), as rosbag2 does; history depth is always 1. Plain '
          'best_effort loses most large images on Fast DDS.',
          choices=('auto', 'reliable', 'best_effort')),
    # --- outputs ---
    Param('qos_output_reliability', 'reliable',
          'Reliability of every output topic (depth, colour, compressed, camera_info, points). '
          'best_effort suits a lossy link where late frames are worthless, but a reliable '
          'subscriber (the ros2 CLI default) will not match it; and rmw_zenoh drops large '
          'best-effort messages silently (ros2/rmw_zenoh#696) and lets them starve beside '
          'reliable topics: keep reliable there.', choices=('reliable', 'best_effort')),
    Param('qos_output_depth', 5, 'History depth (keep last N) of every output topic.',
          min=1, max=1000),
    Param('max_pixels', vocabulary.MAX_PIXELS,
          'Frames with more pixels than this are rejected (reason too_large); the default, '
          '2**25, admits 8K UHD.',
          min=1, max=1 << 30),
    # --- backend (defaults from BackendOptions) ---
    Param('backend', 'openvino',
          'Inference backend: openvino (cpu; the fastest CPU backend), torch (cpu/cuda; the '
          'numerical reference) or tt (Tenstorrent TTNN; with device wormhole_n300 and dp 2 '
          'for both chips). Without openvino installed, openvino falls back to torch on cpu '
          '(allow_fallback).', choices=_backends),
    Param('allow_fallback', True,
          'When the requested backend cannot start (no ttnn, no device, no CUDA), run torch on '
          'cpu instead (counted in backend_fallback_count, diagnostics WARN); false: exit.'),
    Param('weights', _BACKEND_DEFAULTS.weights,
          'Model weights. auto = Intel/dpt-large from the HF cache/hub, random weights with the '
          'DPT-Large config if unreachable (flagged); random and tiny-random are for tests.',
          choices=('auto', 'Intel/dpt-large', 'random', 'tiny-random'),
          free_form='a local save_pretrained() directory or another hub id'),
    Param('image_size', _BACKEND_DEFAULTS.image_size,
          'Square model input side S (DPT-Large: 384). Frames are stretched to SxS.',
          min=32, max=1024, step=16),
    Param('device', _BACKEND_DEFAULTS.device,
          'Backend device. openvino: cpu; torch: cpu | cuda | cuda:N; tt: '
          + ' | '.join(vocabulary.TT_DEVICES) + '.'),
    Param('dtype', vocabulary.DEFAULT_DTYPE, 'torch / openvino compute dtype. auto: bf16 '
          'where the CPU runs it natively (avx512_bf16 / AMX; OpenVINO: BF16 capability), else '
          'fp32. An explicit bf16 elsewhere: WARN and fp32 (emulated bf16 is slower). tt: '
          'its own dtype (this applies to its CPU fallback).', choices=vocabulary.DTYPES),
    Param('compile', _BACKEND_DEFAULTS.compile, 'torch.compile the model (torch backend; the '
          'first frames are slow while it compiles).'),
    Param('execution_mode', _BACKEND_DEFAULTS.execution_mode,
          'tt execution mode: eager, trace, or trace with 2 command queues.',
          choices=vocabulary.EXECUTION_MODES),
    Param('dp', _BACKEND_DEFAULTS.dp,
          'Data-parallel degree: chips of a tt board, one frame each (at most its chips: '
          + ', '.join(f'{d} {n}' for d, n in vocabulary.TT_DEVICES.items()) + ').',
          min=1, max=max(vocabulary.TT_DEVICES.values())),
    Param('strict', _BACKEND_DEFAULTS.strict,
          'tt: a program-config fallback raises instead of being counted.'),
    Param('selfcheck', _BACKEND_DEFAULTS.selfcheck,
          'tt: after compile, run a bundled picture through each chip and compare its depth '
          'with torch fp32 on cpu (computed once, cached in cache_dir); a chip below '
          'selfcheck_min_pcc leaves the rotation, with none left the backend does not start '
          '(allow_fallback: torch on cpu, the reason in diagnostics). false: no check.'),
    Param('selfcheck_min_pcc', _BACKEND_DEFAULTS.selfcheck_min_pcc,
          'tt: the PCC a chip must reach in the selfcheck.', min=0.0, max=1.0),
    Param('trace_region_mb', _BACKEND_DEFAULTS.trace_region_mb,
          'tt trace region per chip (MiB) for trace / trace_2cq; a trace larger than it stops '
          'start-up with one line naming this parameter.', min=1, max=1024),
    Param('dispatch_core', _BACKEND_DEFAULTS.dispatch_core,
          "tt dispatch cores: auto (ttnn's choice: ethernet on an N300 / T3000), eth, or worker "
          '(a row of Tensix cores: an N300 chip then computes on 8x7; not with trace_2cq on 2+ '
          'chips).', choices=vocabulary.TT_DISPATCH_CORES),
    Param('precision', _BACKEND_DEFAULTS.precision,
          'tt encoder numerics: accurate (matmuls HiFi2, bf16 activations, exact GELU and exp, '
          'LayerNorm / SDPA HiFi3 + fp32) or fast (as the tt-metal ViT demo: LoFi matmuls, '
          'bfloat8_b out of QKV / FF1, approximate GELU and exp, LayerNorm HiFi2). fast is '
          'faster by the estimate and unproven on a card: keep the selfcheck on with it.',
          choices=vocabulary.TT_PRECISIONS),
    Param('chip_batch', _BACKEND_DEFAULTS.chip_batch,
          'tt frames per chip per device run. 2 is the throughput mode for several cameras: '
          'two frames share every device program (more frames a second; each frame waits for '
          'its partner and takes the longer run: see docs/running_on_n300.md for the '
          'estimate). A frame alone after chip_batch_wait_ms runs with a copy of itself.',
          min=1, max=max(vocabulary.TT_CHIP_BATCHES)),
    Param('chip_batch_wait_ms', _BACKEND_DEFAULTS.chip_batch_wait_ms,
          'tt, chip_batch 2: how long a frame waits for a second one to share its run (ms).',
          min=0.0, max=1000.0),
    Param('cache_dir', _BACKEND_DEFAULTS.cache_dir,
          'tt prepared-weight, tt selfcheck-reference and openvino converted-model cache '
          "directory ('' = $DPT_ROS_CACHE or ~/.cache/dpt_ros)."),
    Param('seed', _BACKEND_DEFAULTS.seed, 'Seed for random weights.', min=0, max=2**31 - 1),
    Param('threads', _BACKEND_DEFAULTS.threads,
          'torch intra-op / openvino inference threads (0 = the library default).',
          min=0, max=256),
    Param('streams', 0,
          'openvino: frames inferred at once. 1 = the LATENCY hint (each frame as fast as the '
          'cores allow); N > 1 = the THROUGHPUT hint with N streams (the cores split between '
          'N frames: more frames per second in all, each one slower); 0 = auto: '
          + AUTO_STREAMS_TEXT + ' (docs/benchmarks.md).', min=0, max=64),
    Param('backend_timeout_s', 30.0,
          'An inference call running longer than this is counted failed (reason timeout) and '
          'diagnostics go ERROR; its late result is discarded. 0 disables the watchdog.',
          min=0.0, max=3600.0),
    Param('reject_log_interval_s', 5.0,
          'A rejected input frame logs a WARN line with its reason; further rejections of '
          'the same reason on the same camera within this many seconds are only counted '
          '(frames_rejected:<reason> in diagnostics), and the next line says how many were '
          'not logged. 0 logs every rejection.', min=0.0, max=3600.0),
    Param('fallback_after_failures', 10,
          'After this many consecutive failed inference calls (the backend died after '
          'start-up), replace it with torch on cpu, like a start-up fallback: counted in '
          'backend_fallback_count (reason runtime: <error>), diagnostics WARN. Needs '
          'allow_fallback; never when torch on cpu is already running. 0 = never.',
          min=0, max=1_000_000),
    # --- colourised output (runtime-changeable) ---
    Param('colormap', 'turbo', 'Colormap of depth_relative/color.', choices=_colormaps,
          read_only=False),
    Param('norm', 'percentile', 'Colour normalisation: percentile (norm_low/norm_high are '
          'percentiles of each frame) or fixed (they are inverse-depth values).',
          choices=_norm_modes, read_only=False),
    Param('norm_low', 2.0, 'Lower end of the colour range (percentile or value).',
          read_only=False),
    Param('norm_high', 98.0, 'Upper end of the colour range (percentile or value).',
          read_only=False),
    # --- compressed outputs (image_transport formats, encoded only while subscribed) ---
    Param('compressed.jpeg_quality', 95, 'JPEG quality of depth_relative/color/compressed '
          "(compressed_image_transport's default 95).", min=1, max=100),
    Param('compressed.depth_max', 100.0,
          'depth/compressedDepth: depths (m) at or beyond this are sent as invalid (NaN '
          'after decoding); compressed_depth_image_transport calls it depth_max.',
          min=0.1, max=1000.0),
    Param('compressed.depth_quantization', 100.0,
          'depth/compressedDepth: Z0 of the inverse-depth quantisation (larger = finer far '
          'away; nearest storable depth about Z0 (Z0 + 1) / 65535 m); as '
          'compressed_depth_image_transport.', min=1.0, max=1000.0),
    Param('compressed.png_level', 3, 'depth/compressedDepth: PNG compression level (0 = '
          'fastest, 9 = smallest).', min=0, max=9),
    # --- diagnostics ---
    Param('diagnostics_rate', 1.0, 'Rate (Hz) of DiagnosticArray messages on /diagnostics.',
          min=0.1, max=50.0, read_only=False),
    Param('min_fps', 0.0, 'Diagnostics WARN when frames arrive but output FPS is below this '
          '(0 disables the check).', min=0.0, max=1000.0, read_only=False),
    # --- metric depth (REP 118 `depth`, metres) ---
    Param('metric.mode', 'none',
          'none: no metric output. fixed: depth_m = 1 / (scale * pred + shift). reference: '
          'scale/shift fitted (robust, smoothed) against metric.reference_topic. Depths are '
          'clamped to [metric.min_depth, metric.max_depth]; pixels with no valid depth '
          '(scale * pred + shift <= 0) are NaN.',
          choices=('none', 'fixed', 'reference')),
    Param('metric.scale', 1.0, 'fixed mode: scale (> 0) from relative inverse depth to '
          '1/metres.'),
    Param('metric.shift', 0.0, 'fixed mode: shift in 1/metres.'),
    Param('metric.min_depth', 0.1, 'Metric depths nearer than this (m) are clamped up to it '
          '(not made NaN); also the nearest reference depth used in a fit. '
          '0 < metric.min_depth < metric.max_depth.', min=0.0, max=1e6),
    Param('metric.max_depth', 100.0, 'Metric depths farther than this (m) are clamped down to '
          'it (not made NaN); also the farthest reference depth used in a fit.',
          min=0.0, max=1e6),
    Param('metric.smoothing', 0.8, 'reference mode: weight of the previous fit in the running '
          'scale/shift (0 = use each new fit as is).', min=0.0, max=0.999),
    Param('metric.reference_topic', 'depth_reference',
          'reference mode: metric depth (32FC1 metres or 16UC1 millimetres) relative to each '
          'camera namespace, e.g. from a depth sensor or lidar projection.'),
    Param('metric.reference_max_dt_s', 0.1,
          'reference mode: a frame is fitted against the buffered reference whose header '
          'stamp is nearest its own, if that is at most this many seconds away; otherwise '
          'the frame keeps the running fit (diagnostics: metric_references_unmatched).',
          min=0.0, max=3600.0),
    # --- point cloud from metric depth (metric.mode != none, camera_info needed) ---
    Param('points.stride', 1,
          'points: use every stride-th pixel of `depth` in both directions (1 = all; 2 = a '
          'quarter of the points).', min=1, max=64),
    Param('points.dense', False,
          'points: false = organised cloud (the image layout, width x height, NaN x/y/z where '
          'depth is invalid); true = invalid points dropped (height 1, is_dense).'),
    Param('points.rgb', True,
          "points: add the input image's colour as the PCL/RViz packed `rgb` field "
          '(0x00RRGGBB as float32).'),
    Param('points.camera_model', 'raw',
          "points: raw = camera_info's K with its distortion D honoured (the input is the "
          "camera's raw image); rectified = the left 3x3 of P, D ignored (the input is "
          'already rectified, e.g. image_rect).', choices=('raw', 'rectified')),
    # --- lifecycle ---
    Param('autostart', True,
          'Configure and activate the (managed) node at start, as a plain node would (a bad '
          'configuration then exits with code 2). false: wait in unconfigured for a lifecycle '
          'manager (<node>/change_state).'),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
RUNTIME_CHANGEABLE = tuple(p.name for p in PARAMS if not p.read_only)


def defaults() -> dict[str, object]:
    """Every parameter's default value (lists copied)."""
    return {p.name: (list(p.default) if isinstance(p.default, list) else p.default)
            for p in PARAMS}


def _type_ok(p: Param, value: object) -> bool:
    t = p.type_name
    if t == 'bool':
        return isinstance(value, bool)
    if t == 'int':
        return isinstance(value, int) and not isinstance(value, bool)
    if t == 'float':
        # ROS yaml `1` is an integer; accept it for a float parameter as rclpy cannot.
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == 'str':
        return isinstance(value, str)
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


_TYPE_WORDS = {'bool': 'true or false', 'int': 'an integer', 'float': 'a number',
               'str': 'a string', 'str_list': 'a list of strings'}
_NAMESPACE_RE = re.compile(r'^/?([A-Za-z_][A-Za-z0-9_]*)(/[A-Za-z_][A-Za-z0-9_]*)*$')
_CUDA_RE = re.compile(r'^cuda(:\d+)?$')


def check_value(name: str, value: object) -> str | None:
    """Why `value` is not valid for parameter `name` on its own, or None when it is."""
    p = BY_NAME.get(name)
    if p is None:
        return f"unknown parameter '{name}'"
    return check_param(p, value)


def check_param(p: Param, value: object) -> str | None:
    """Why `value` is not valid for the table entry `p` (of any node), or None when it is."""
    name = p.name
    if not _type_ok(p, value):
        return (f"parameter '{name}' must be {_TYPE_WORDS[p.type_name]}, got {value!r} "
                f'({type(value).__name__})')
    if p.type_name == 'float' and not math.isfinite(float(value)):
        return f"parameter '{name}' must be finite, got {value!r}"
    choices = p.choice_list()
    if choices and not p.free_form and value not in choices:
        return (f"parameter '{name}' has unknown value {value!r}; "
                f"choose one of: {', '.join(choices)}")
    if p.min is not None and value < p.min or p.max is not None and value > p.max:
        return f"parameter '{name}' = {value!r} is out of range; {p.constraint_text()}"
    if p.step and (value - p.min) % p.step:
        return f"parameter '{name}' = {value!r} is not valid; {p.constraint_text()}"
    return None


def validate(values: Mapping[str, object]) -> list[str]:
    """
    Check a full parameter set (missing names take defaults); one message per problem.

    Each message names the parameter, what is wrong and what would be valid, so a start-up
    failure is one readable line.
    """
    v = defaults()
    v.update(values)
    errors = [msg for name in v if (msg := check_value(name, v[name]))]
    if errors:
        return errors  # cross-checks below assume well-typed values

    cams = list(v['cameras'])
    if not cams:
        errors.append("parameter 'cameras' must list at least one namespace ('' = the node's "
                      'own namespace)')
    for ns in cams:
        if ns and not _NAMESPACE_RE.match(ns):
            errors.append(f"parameter 'cameras': {ns!r} is not a valid ROS namespace "
                          '(letters, digits, _ and /, not starting with a digit)')
    if len(set(cams)) != len(cams):
        errors.append(f"parameter 'cameras' lists a namespace twice: {cams}")

    backend, device, dp = v['backend'], v['device'], v['dp']
    if backend == 'torch' and device != 'cpu' and not _CUDA_RE.match(device):
        errors.append(f"parameter 'device' = {device!r} is not a torch device; "
                      'use cpu, cuda or cuda:N')
    if backend == 'openvino' and device != 'cpu':
        errors.append(f"parameter 'device' = {device!r} is not an openvino device; use cpu "
                      '(or backend torch for cuda)')
    tt_devices = vocabulary.TT_DEVICES
    if backend == 'tt' and device not in tt_devices:
        errors.append(f"parameter 'device' = {device!r} is not a Tenstorrent device; "
                      f"use {' or '.join(tt_devices)} with backend tt")
    chips = tt_devices.get(device, 1) if backend == 'tt' else 1
    if dp > chips and backend in ('torch', 'tt', 'openvino'):
        multi = ', '.join(f'{d} ({n} chips)' for d, n in tt_devices.items() if n > 1)
        errors.append(f"parameter 'dp' = {dp} needs backend tt on a board with that many "
                      f'chips: {multi}; use dp 1 otherwise')

    msg = check_colorization(v['colormap'], v['norm'], v['norm_low'], v['norm_high'])
    if msg:
        errors.append(msg)
    lo, hi = v['metric.min_depth'], v['metric.max_depth']
    if not 0.0 < lo < hi:
        errors.append(f"parameters 'metric.min_depth' ({lo}) and 'metric.max_depth' ({hi}) "
                      'must satisfy 0 < metric.min_depth < metric.max_depth (metres; depths '
                      'are clamped to that range)')
    if v['metric.mode'] == 'fixed' and v['metric.scale'] <= 0.0:
        errors.append(f"parameter 'metric.scale' = {v['metric.scale']} must be > 0 in "
                      'metric.mode fixed (larger prediction = nearer)')
    if v['metric.mode'] == 'reference' and not v['metric.reference_topic']:
        errors.append("parameter 'metric.reference_topic' must name a topic in metric.mode "
                      'reference')
    return errors


def check_colorization(colormap: str, norm: str, low: float, high: float) -> str | None:
    """Why a colourisation setting is invalid (message naming the parameters), or None."""
    from dpt_ros.inference.colorize import range_problem
    return range_problem(norm, float(low), float(high))


def check_runtime_change(changes: Mapping[str, object], current: Mapping[str, object],
                         state: str = 'active', node: str = '<node>') -> str | None:
    """
    Why a parameter change must be rejected (old values are then kept), or None.

    Start-up parameters may change only while the lifecycle `state` is 'unconfigured' (a
    failed configure is put right in place); runtime ones in any state.
    """
    startup = sorted(k for k in changes if k in BY_NAME and BY_NAME[k].read_only)
    if startup and state != 'unconfigured':
        steps = {'active': 'deactivate, then cleanup', 'inactive': 'cleanup'}.get(
            state, 'wait for the transition to end')
        return (f"{', '.join(startup)}: start-up parameter(s), read-only unless the node is "
                f'unconfigured (it is {state}): ros2 lifecycle set {node} {steps}')
    for name, value in changes.items():
        if name not in BY_NAME:
            return f"unknown parameter '{name}'"
        msg = check_value(name, value)
        if msg:
            return msg
    if len(startup) == len(changes):
        return None
    merged = dict(current)
    merged.update(changes)
    return check_colorization(merged['colormap'], merged['norm'], merged['norm_low'],
                              merged['norm_high'])


def backend_options(values: Mapping[str, object]) -> BackendOptions:
    """Return the BackendOptions a validated parameter set asks for (one frame per call)."""
    streams = values.get('streams', 0) or auto_streams(len(values.get('cameras', [''])))
    return options_from_values(values, batch_size=1, streams=streams)
