"""
Dry-run the TT backend on a MOCK card (TEST DOUBLE; see test/support/tt_mock_device/__init__.py).

Run by tt_mock_device.dry_run() in a process with the mock's environment. It builds the
backend exactly as the node does (dpt_ros.backends.tt_backend.create: open the device, prepare
the weights, build one TtDPT per chip, compile, capture traces), feeds it frames, closes it,
once per execution mode, and writes a JSON report: per mode ok / error, fallback counters and
reasons, the mode each chip really ran; every ttnn op call and failure; and, with --graph, the
device-op list with per-op L1 use from a graph capture of one forward.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import faulthandler
import json
import logging
import os
import sys
import time

faulthandler.enable()

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, ROOT)

import oplist  # noqa: E402

# Ops the model calls, counted (calls and failures) through a wrapper around the real op.
_COUNTED = ('linear', 'matmul', 'layer_norm', 'add', 'reshape', 'permute', 'to_memory_config',
            'to_layout', 'slice', 'pad', 'relu', 'gelu', 'conv2d', 'clone', 'to_device',
            'deallocate', 'execute_trace', 'begin_trace_capture', 'end_trace_capture',
            'release_trace', 'record_event', 'wait_for_event', 'copy_host_to_device_tensor')
STAGES = ('backbone', 'reassembly', 'fusion_head')     # TtDPT's stage methods, in order
# ViT-B/16 dims in the DPT architecture (only the backbone runs): calibrates the estimator.
VIT_B = {'hidden_size': 768, 'num_hidden_layers': 12, 'num_attention_heads': 12,
         'intermediate_size': 3072, 'backbone_out_indices': [2, 5, 8, 11],
         'neck_hidden_sizes': [96, 192, 384, 768]}
_COUNTED_TRANSFORMER = ('scaled_dot_product_attention', 'split_query_key_value_and_split_heads',
                        'concatenate_heads')


def summarize(exc: BaseException) -> str:
    from dpt_ros.tt.device import summarize_error
    return f'{type(exc).__name__}: {summarize_error(exc)}'[:600]


class OpCounter:
    """Wraps ttnn ops: calls and failures per op, and the failure messages."""

    def __init__(self, ttnn):
        self.ttnn = ttnn
        self.calls, self.fails = collections.Counter(), collections.Counter()
        # chip ids -> op -> calls / failures: each chip of a data-parallel run apart
        self.chip_calls = collections.defaultdict(collections.Counter)
        self.chip_fails = collections.defaultdict(collections.Counter)
        self.messages = collections.Counter()
        self.settings = collections.defaultdict(collections.deque)  # during graph capture
        for name in _COUNTED:
            self._wrap(ttnn, name, 'ttnn.')
        for name in _COUNTED_TRANSFORMER:
            self._wrap(ttnn.transformer, name, 'ttnn.transformer.')

    def _wrap(self, module, name, prefix):
        real = getattr(module, name)
        key = prefix + name

        def counted(*args, **kwargs):
            self.calls[key] += 1
            if self.ttnn.graph.is_graph_capture_active():
                self.settings[key].append(call_settings(key, kwargs))
            chip = _chips_of(args, kwargs)
            if chip is not None:
                self.chip_calls[chip][key] += 1
            try:
                return real(*args, **kwargs)
            except Exception as exc:
                self.fails[key] += 1
                if chip is not None:
                    self.chip_fails[chip][key] += 1
                self.messages[f'{key}: {summarize(exc)}'] += 1
                raise
        setattr(module, name, counted)


def _enum_name(value) -> str | None:
    return None if value is None else str(value).split('.')[-1].split('::')[-1]


def _activation(act) -> str | None:
    """Name a fused activation: 'gelu' (accurate), 'gelu_approx', 'relu', ... or None."""
    if act is None or isinstance(act, str):
        return act
    kind = (_enum_name(getattr(act, 'op_type', None)) or '').lower()
    params = list(getattr(act, 'params', None) or [])
    # ttnn's GELU parameter: 0 selects the accurate kernel, non-zero the fast approximation.
    return f'{kind}_approx' if kind == 'gelu' and params and params[0] else kind


def call_settings(key: str, kwargs: dict) -> dict:
    """
    Return what the estimator needs from one op call: its compute and program config.

    Math fidelity, fp32 accumulation and approximate mode of the compute kernel config, the
    program config's grid, SDPA chunk sizes and exp mode, and the fused / applied activation.
    """
    out: dict = {}
    config = kwargs.get('compute_kernel_config') or kwargs.get('compute_config')
    if config is not None:
        out.update(fidelity=_enum_name(getattr(config, 'math_fidelity', None)),
                   fp32_acc=bool(getattr(config, 'fp32_dest_acc_en', False)),
                   approx=bool(getattr(config, 'math_approx_mode', False)))
    program = kwargs.get('program_config')
    grid = getattr(program, 'compute_with_storage_grid_size', None)
    if grid is not None:
        out['grid'] = [int(grid.x), int(grid.y)] if hasattr(grid, 'x') else list(grid)
    for attr, name in (('q_chunk_size', 'q_chunk'), ('k_chunk_size', 'k_chunk'),
                       ('exp_approx_mode', 'exp_approx')):
        if getattr(program, attr, None) is not None:
            out[name] = getattr(program, attr)
    if getattr(program, 'matmul_math_fidelity', None) is not None:     # SDPA's own override
        out['matmul_fidelity'] = _enum_name(program.matmul_math_fidelity)
    act = kwargs.get('activation') or getattr(program, 'fused_activation', None) or \
        getattr(kwargs.get('conv_config'), 'activation', None)
    if key == 'ttnn.gelu':
        variant = _enum_name(kwargs.get('variant')) or 'Accurate'
        act = 'gelu' if variant == 'Accurate' else f'gelu_{variant.lower()}'
    elif key == 'ttnn.relu':
        act = 'relu'
    if act is not None:
        out['activation'] = _activation(act)
    return out


def _chips_of(args, kwargs) -> str | None:
    """Return the chips ('4', or '0,4' for a mesh) an op runs on: its first tensor's."""
    first = args[0] if args else kwargs.get('input_tensor', kwargs.get('device'))
    if first is None:
        return None
    try:
        device = first if hasattr(first, 'get_device_ids') else first.device()
        return None if device is None else ','.join(map(str, device.get_device_ids()))
    except Exception:  # a host tensor, a list, a number: no device
        return None


def force_default_configs() -> None:
    """Every tuned config fails, so every op runs (and is checked with) its default config."""
    from dpt_ros.tt.fallbacks import FallbackCounter
    real = FallbackCounter.run_with_config

    def forced(self, op_name, tuned_call, default_call):
        def failing():
            raise RuntimeError('tuned config refused by the dry-run (--force-defaults)')
        return real(self, op_name, failing, default_call)
    FallbackCounter.run_with_config = forced


def vit_b_model(size: int):
    """Random DPT with ViT-B/16 dims (a LoadedModel, as load_model returns)."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation

    from dpt_ros.inference.hf_model import DPT_LARGE_CONFIG, LoadedModel
    torch.manual_seed(0)
    model = DPTForDepthEstimation(DPTConfig(**dict(DPT_LARGE_CONFIG, **VIT_B, image_size=size)))
    return LoadedModel(model.eval(), 'random (ViT-B/16 dims)', True, 'vit-b')


def pixels(n: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@contextlib.contextmanager
def captured_ops(ttnn, chip, report: dict, counter: OpCounter):
    """
    Graph-capture what runs inside into report['ops'] and report['stage_starts'].

    report['ops'] gets the device ops with their L1 use, report['stage_starts'] the python
    call index where each TtDPT stage began. The program cache is off: an op's circular
    buffers appear in a capture only where its program is built.
    """
    from dpt_ros.tt.model import TtDPT
    stages = report.setdefault('stage_starts', {})
    real = {name: getattr(TtDPT, name) for name in STAGES}

    def marked(name):
        def stage(self, *args):
            stages.setdefault(name, len(getattr(ttnn.graph, '_python_io_data', [])))
            return real[name](self, *args)
        return stage
    for name in STAGES:
        setattr(TtDPT, name, marked(name))
    chip.disable_and_clear_program_cache()
    ttnn.graph.begin_graph_capture(ttnn.graph.RunMode.NORMAL)
    try:
        yield
    finally:
        graph = ttnn.graph.end_graph_capture()
        chip.enable_program_cache()
        for name in STAGES:
            setattr(TtDPT, name, real[name])
        io = list(getattr(ttnn.graph, '_python_io_data', []))
        for record in io:     # each counted call's settings, in call order
            queue = counter.settings.get(record.get('name'))
            if queue:
                record['settings'] = queue.popleft()
                record['fidelity'] = record['settings'].get('fidelity')
        report['ops'] = oplist.device_ops(graph, io)
        if os.environ.get('DPT_DRY_RUN_RAW_GRAPH'):     # for working on oplist.py
            with open(os.environ['DPT_DRY_RUN_RAW_GRAPH'], 'w') as f:
                json.dump({'graph': graph, 'python_io': io}, f, default=str)


def capture_compile(ttnn, report: dict, counter: OpCounter) -> None:
    """Graph-capture the first chip's eager compile run (see captured_ops)."""
    from dpt_ros.tt.executor import ChipPipeline
    real = ChipPipeline.compile

    def compile_captured(self, sample):
        if 'ops' in report:
            return real(self, sample)
        if self.mode != 'eager':
            raise RuntimeError('--graph captures an eager compile: list eager first in --modes')
        report['configs'] = self.model.tt.cfg.describe()
        with captured_ops(ttnn, self.chip, report, counter):
            return real(self, sample)
    ChipPipeline.compile = compile_captured


def backbone_only(args, loaded, ttnn, report: dict, counter: OpCounter) -> None:
    """
    Run embeddings + encoder at per-chip batch --batch, graph-captured.

    This is the ViT part alone: what a ViT's published device figure measures, for
    calibrating bench/estimate_tt.py.
    """
    from dpt_ros.tt.device import open_devices
    from dpt_ros.tt.model import build_tt_model
    devices = open_devices(args.device, 1, execution_mode='eager')
    try:
        chip = devices.chips[0]
        tt = build_tt_model(loaded.model, chip, device_name=args.device, image_size=args.size,
                            batch=args.batch, use_cache=False, precision=args.precision)
        x = ttnn.to_device(tt.preprocess_host(pixels(args.batch, args.size)), chip)
        report['configs'] = tt.cfg.describe()
        with captured_ops(ttnn, chip, report, counter):
            tt.backbone(x)
        report['modes']['backbone'] = {'ok': True, 'batch': args.batch}
    finally:
        devices.close()


def run_mode(args, loaded, mode: str, ttnn, report: dict) -> dict:
    from dpt_ros.backends import BackendOptions
    from dpt_ros.backends import tt_backend
    # A mock reads back zeros: the self-check would (rightly) refuse it; test_tt_selfcheck
    # runs it on the mock on purpose.
    opts = BackendOptions(weights=args.weights, image_size=args.size, device=args.device,
                          dp=args.dp, execution_mode=mode, strict=args.strict, selfcheck=False,
                          dispatch_core=args.dispatch, precision=args.precision,
                          chip_batch=args.batch, batch_size=args.dp * args.batch)
    result = {'ok': False}
    t0 = time.perf_counter()
    try:
        backend = tt_backend.create(opts, loaded=loaded)
    except Exception as exc:
        result.update(error=summarize(exc), stage='create', seconds=time.perf_counter() - t0)
        return result
    try:
        result['create_s'] = time.perf_counter() - t0
        result['compile_s'] = backend.info.extra['compile_time_s']
        batch = pixels(args.dp * args.batch, args.size)
        shapes = []
        for _ in range(args.frames):
            out = backend.infer(batch)
            shapes.append(list(out.shape))
            if not np.all(np.isfinite(out)):
                raise AssertionError('non-finite output from the mock')
        grid = backend._models[0].tt.cfg.grid
        extra = backend.info.extra
        result.update(frames=len(shapes) * args.dp * args.batch, grid=list(grid),
                      dispatch_core=extra['dispatch_core'], chip_grids=extra['chip_grids'],
                      trace_bytes=extra['trace_bytes'],
                      output_shapes=sorted(map(str, shapes)),
                      fallback_counts=backend.fallback_counts(),
                      fallback_reasons=backend.info.extra.get('fallback_reasons', {}),
                      effective_mode=backend.info.extra['tt_execution_mode_effective'],
                      device_ids=backend.info.extra['device_ids'],
                      num_command_queues=backend.info.extra['num_command_queues'], ok=True)
    except Exception as exc:
        result.update(error=summarize(exc), stage='frames')
    finally:
        try:
            backend.close()
            result['closed'] = True
        except Exception as exc:
            result.update(ok=False, error=summarize(exc), stage='close')
    result['seconds'] = time.perf_counter() - t0
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--device', required=True)
    p.add_argument('--dp', type=int, default=1)
    p.add_argument('--size', type=int, default=384)
    p.add_argument('--weights', default='random')
    p.add_argument('--modes', default='eager')
    p.add_argument('--frames', type=int, default=2)
    p.add_argument('--strict', action='store_true')
    p.add_argument('--force-defaults', action='store_true')
    p.add_argument('--dispatch', default='auto', help='dispatch_core: auto | eth | worker')
    p.add_argument('--precision', default='accurate', help='encoder profile (tt/configs.py)')
    p.add_argument('--graph', action='store_true')
    p.add_argument('--backbone-only', action='store_true',
                   help='capture embeddings + encoder only (with --batch, --config vit-b)')
    p.add_argument('--batch', type=int, default=1,
                   help='frames per chip (--backbone-only: the backbone batch; else chip_batch)')
    p.add_argument('--config', choices=('model', 'vit-b'), default='model')
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(name)s %(levelname)s %(message)s')
    t0 = time.perf_counter()
    import ttnn

    from dpt_ros.inference.hf_model import load_model
    from dpt_ros.tt import device as tt_device
    tt_device.allow_mock_cluster()
    if args.force_defaults:
        force_default_configs()
    ops = OpCounter(ttnn)
    report: dict = {}
    if args.graph:
        capture_compile(ttnn, report, ops)
    loaded = load_model(args.weights, seed=0, image_size=args.size)
    if args.config == 'vit-b':
        loaded = vit_b_model(args.size)
    report.update({'device': args.device, 'dp': args.dp, 'size': args.size,
                   'weights': args.weights, 'strict': args.strict,
                   'force_defaults': args.force_defaults, 'modes': {}})
    if args.backbone_only:
        backbone_only(args, loaded, ttnn, report, ops)
    for mode in ([] if args.backbone_only else args.modes.split(',')):
        report['modes'][mode] = run_mode(args, loaded, mode, ttnn, report)
        print(f'dry-run {mode}: {json.dumps(report["modes"][mode])[:400]}', flush=True)
    report.update(op_calls=dict(ops.calls), op_failures=dict(ops.fails),
                  op_calls_per_chip={c: dict(n) for c, n in ops.chip_calls.items()},
                  op_failures_per_chip={c: dict(n) for c, n in ops.chip_fails.items()},
                  failure_messages=dict(ops.messages), wall_s=time.perf_counter() - t0)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=1)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
