"""
TEST DOUBLE of a Tenstorrent device: runs TTNN model/runtime code on the CPU.

There is no Tenstorrent card and no simulator on the CI machines, so this module stands in for
the device while everything else stays real ttnn 0.81.1:

* Inside ``tt_device_double()`` (a context manager, also the pytest fixture ``tt_double``)
  every device op the code calls (``ttnn.linear``, ``ttnn.conv2d``,
  ``ttnn.transformer.attention_softmax_`` ...) is replaced by a wrapper built from the REAL
  attribute (a name that ttnn 0.81.1 does not have cannot be wrapped: ``AttributeError``).
  The wrapper
    1. checks the call against the op's real nanobind signature(s): keyword names, argument
       count, and the type of every argument (program/memory/compute/conv configs must be
       instances of the real pybind classes, enums real enums, ...). No overload fits ->
       ``TypeError`` as on the card;
    2. converts tensor arguments to torch with the real ``ttnn.to_torch`` (so their values
       carry the storage rounding of their dtype, bfloat16 or bfloat8_b) and casts floating
       ones to float32;
    3. runs, in float32, ``ttnn.get_golden_function(op)`` (the op's own torch reference in
       ttnn), or for the few ops without one (conv_transpose2d,
       experimental.nlp_create_qkv_heads, experimental.nlp_concat_heads) a plain torch
       reference written here (``_torch_reference_*``);
    4. returns the result through the real ``ttnn.from_torch`` with the op's output dtype and
       layout, so bf16 rounding and bfloat8_b block-float quantization happen as on the card
       (TILE/bfloat8_b host conversion needs the mock cluster descriptor, set up here).
  Ops on host tensors only (weight preparation) run the REAL op.
* Devices: ``open_device`` / ``open_mesh_device`` return ``DoubleMeshDevice`` objects
  (MeshShape, ``create_submeshes``, core grid 8x8 Wormhole, program cache switches).
  Device tensors are ``DeviceTensor`` holders: mutable boxes around a real host tensor.
* Command queues are modelled: commands (host->device copies, event records/waits, trace
  executions) are queued per CQ. CQ0 runs lazily, only when the host blocks (readback,
  ``synchronize_device``, ``event_synchronize``, a blocking ``execute_trace``, or an eager op,
  which runs after everything already queued on CQ0); every other CQ runs as EARLY as its
  event waits allow. That adversarial order makes the classic trace_2cq bug visible: if the
  event that gates the next input copy is recorded before the trace consumed the input, the
  copy overwrites the input and the traced frame computes on the wrong image.
* Traces: ops issued between ``begin_trace_capture`` and ``end_trace_capture`` are recorded
  (function + argument holders + output holders). Their outputs are poisoned with NaN at the
  end of capture (on a card a captured program has not run yet). ``execute_trace`` replays the
  list in order, re-reading the (persistent) input holders and rewriting output holders in
  place. Host writes/reads during capture raise, as they do on a card.
* ``DeviceDouble.log`` records ('copy_h2d', device, cq), ('record_event', device, cq, id),
  ('wait_for_event', device, cq, id), ('execute_trace', device, cq, trace), ('readback',
  device, cq), ('synchronize', device, cq) ... in the order they EXECUTE, so tests can assert
  ordering.

Use: ``with tt_device_double() as double: ...`` (``num_devices=1`` for an N150), or import the
fixture into a test module:
``from support.doubles.tt_device_double import tt_double  # noqa: F401``.
Importing this module on a machine without a card (no /dev/tenstorrent) sets
TT_METAL_MOCK_CLUSTER_DESC_PATH (test/support/data/wormhole_n300_cluster.yaml) for the rest of
the process; outside the double a real ``ttnn.open_mesh_device`` then fails
with a RuntimeError about the missing kernel toolchain instead of "No chips detected" —
code under test must treat any RuntimeError from opening the device as "no device".

* Bookkeeping a card does in hardware, modelled so tests can fail:
    - ``DeviceDouble.compute_calls``: every compute kernel config reaching a device op whose
      real binding takes one (``compute_kernel_config`` / ``compute_config``), None where the
      caller left it to ttnn; ``resolved_compute()`` maps None to ttnn 0.81.1's own default
      for that op on Wormhole (``TTNN_DEFAULT_COMPUTE``, read from a graph capture of each op
      on the mock device: the device operation records the config it resolved).
    - ``DeviceDouble.readback_bytes``: bytes read back to the host (TILE tensors whole tiles,
      row-major ones their values), as the card's PCIe transfer carries them.
    - Trace region: ``end_trace_capture`` sizes the captured commands at
      ``TRACE_BYTES_PER_PROGRAM`` per device program (``_programs()``: conv2d 2 per DRAM
      slice, halo + conv; every other op 1) and raises tt-metal's own error when the live
      traces of a device exceed the region it was opened with. The estimate is ViT-B's 2CQ
      test (~1.75 MB of region for ~220 programs, ~8 KB each); the real size depends on the
      cores and runtime args of each program, so this checks the plumbing and the order of
      magnitude, not a card's fit. ``GetMemoryView(device, TRACE)`` reports it.
    - Dispatch: ``open_mesh_device(dispatch_core_config=WORKER)`` gives chips an 8x7 grid (an
      N300's, two harvested rows plus the dispatch row), and 2 chips x 2 CQs of WORKER dispatch
      fail with ttnn's real error; a program config / shard grid beyond the device's grid raises.
    - Prepared conv weights: conv2d returns weights tagged with the conv config they were
      prepared for (sharding, activation block, slices); passing them to a conv2d with another
      config, or with a DRAM slice config and act_block_h_override 0 (tt-metal #35852: ~50%
      PCC without an error on a card), raises.

What this double CAN show: that the code uses only ttnn 0.81.1 names, keywords and real config
objects; that the numerics of the op sequence (with bf16/bfloat8_b storage rounding) match the
reference; that trace capture/replay and the CQ/event protocol feed each frame its own input.

What it CANNOT show: kernel compilation; whether tensors and circular buffers fit in L1; whether
a core grid / shard shape / program config is accepted by the op's validation on the card
(only basic shard-shape consistency is checked here); math-fidelity effects (LoFi/HiFi2
matmul truncation is not emulated: goldens compute in fp32 on storage-rounded inputs, and
round their output to the op's dtype); speed. Why fp32: the card accumulates in fp32, and on
a CPU without bf16 units (AMD Zen 3) torch's bf16 matmul runs ~200x slower than fp32. Those need
``test_tt_pcc`` / ``test_tt_perf`` on an N300.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import inspect
import itertools
import math
import os
import re
import time
import types
from typing import Any, Callable

import pytest
import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER_DESC = os.path.join(os.path.dirname(_HERE), 'data', 'wormhole_n300_cluster.yaml')


def real_card_present() -> bool:
    """Return True if a Tenstorrent kernel-driver node exists (checked without tt-metal)."""
    try:
        return bool(os.listdir('/dev/tenstorrent'))
    except OSError:
        return False


# Host-side TILE/bfloat8_b conversion needs a cluster description. Without a card, give
# tt-metal the mock N300 one; it must be set before the first such conversion initialises
# tt-metal's (process-wide, lazy) cluster singleton. With a card present the real cluster
# serves, and mocking it would hide the card from the hardware tests in the same session.
if not real_card_present():
    os.environ.setdefault('TT_METAL_MOCK_CLUSTER_DESC_PATH', CLUSTER_DESC)

import ttnn  # noqa: E402  (after the env var on purpose)

# Real callables, captured before any patching.
REAL_FROM_TORCH = ttnn.from_torch
REAL_TO_TORCH = ttnn.to_torch

# Device ops the double replaces (dotted names under ttnn). Each must exist in ttnn 0.81.1.
DEVICE_OPS = (
    'linear', 'matmul', 'layer_norm', 'softmax', 'gelu', 'relu', 'silu', 'add', 'multiply',
    'subtract', 'permute', 'reshape', 'concat', 'pad', 'slice', 'transpose', 'conv2d',
    'conv_transpose2d', 'upsample', 'fold', 'repeat', 'typecast', 'sum', 'mean', 'exp',
    'to_layout', 'to_memory_config', 'interleaved_to_sharded', 'sharded_to_interleaved',
    'reshard', 'tilize', 'untilize', 'clone', 'reallocate', 'fill_implicit_tile_padding',
    'transformer.scaled_dot_product_attention',
    'transformer.split_query_key_value_and_split_heads', 'transformer.concatenate_heads',
    'transformer.attention_softmax_', 'transformer.attention_softmax',
    'experimental.nlp_create_qkv_heads', 'experimental.nlp_concat_heads',
)

# Output layout forced by the op (otherwise: the first tensor argument's layout).
_OUTPUT_LAYOUT = {'tilize': ttnn.TILE_LAYOUT, 'untilize': ttnn.ROW_MAJOR_LAYOUT,
                  'transformer.split_query_key_value_and_split_heads': ttnn.TILE_LAYOUT,
                  'experimental.nlp_create_qkv_heads': ttnn.TILE_LAYOUT}
_IN_PLACE = {'transformer.attention_softmax_'}

# ttnn 0.81.1's compute kernel config on Wormhole for an op given none, bf16 inputs:
# (math fidelity, fp32_dest_acc_en), read from the config each device operation records in a
# graph capture on the mock N150 (test/support/tt_mock_device). LayerNorm's default is the pair
# that tt-metal #38306 shows gives wrong outputs.
TTNN_DEFAULT_COMPUTE = {
    'linear': ('HiFi2', False), 'matmul': ('HiFi2', False), 'layer_norm': ('HiFi4', True),
    'transformer.scaled_dot_product_attention': ('HiFi2', False), 'conv2d': ('HiFi4', False),
    'conv_transpose2d': ('HiFi4', False), 'clone': ('HiFi4', False),
}
_COMPUTE_KEYS = ('compute_kernel_config', 'compute_config')
# Trace commands per device program (ViT-B 2CQ: ~1.75 MB of region for ~220 programs).
TRACE_BYTES_PER_PROGRAM = 8 * 1024
_DRAM_BANKS = 12            # a Wormhole chip's DRAM banks (the trace region is split over them)
_TRACE_PAGE = 4096          # tt-metal pads a trace to whole pages on every bank
# A chip's grid with WORKER dispatch on an N300 (two harvested rows and the dispatch row).
WORKER_DISPATCH_GRID = (8, 7)


class DoubleError(RuntimeError):
    """Misuse the card would also reject (write during capture, deadlocked CQ, ...)."""


# --------------------------------------------------------------------------------------------
# Torch references for the ops whose golden function ttnn does not ship.
# --------------------------------------------------------------------------------------------

def _torch_reference_nlp_create_qkv_heads(x, input_kv=None, *, num_heads, num_kv_heads=None,
                                          transpose_k_heads=True, kv_tied=False, **_):
    """[B,1,S,(nh+2nkv)*dh] -> Q [B,nh,S,dh], K [B,nkv,dh,S] (or [B,nkv,S,dh]), V."""
    if input_kv is not None:
        x = torch.cat([x, input_kv], dim=-1)
    num_kv_heads = num_kv_heads or num_heads
    b, _, s, width = x.shape
    dh = width // (num_heads + 2 * num_kv_heads)
    q = x[..., :num_heads * dh].reshape(b, s, num_heads, dh).permute(0, 2, 1, 3)
    k = x[..., num_heads * dh:(num_heads + num_kv_heads) * dh]
    v = x[..., (num_heads + num_kv_heads) * dh:]
    k = k.reshape(b, s, num_kv_heads, dh).permute(0, 2, 1, 3)
    v = v.reshape(b, s, num_kv_heads, dh).permute(0, 2, 1, 3)
    if transpose_k_heads:
        k = k.transpose(-1, -2)
    return q.contiguous(), k.contiguous(), v.contiguous()


def _torch_reference_nlp_concat_heads(x, **_):
    """[B,nh,S,dh] -> [B,1,S,nh*dh]."""
    b, nh, s, dh = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, 1, s, nh * dh)


def _torch_reference_conv_transpose2d(input_tensor, weight_tensor, *, in_channels, out_channels,
                                      batch_size, input_height, input_width, kernel_size,
                                      stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                                      dilation=(1, 1), groups=1, bias_tensor=None,
                                      conv_config=None, **_):
    """NHWC (or flattened [1,1,NHW,C]) input, torch weight (Cin, Cout/G, kh, kw)."""
    x = input_tensor.reshape(batch_size, input_height, input_width, -1)[..., :in_channels]
    x = x.permute(0, 3, 1, 2).float()
    bias = None if bias_tensor is None else bias_tensor.reshape(-1).float()
    y = torch.nn.functional.conv_transpose2d(
        x, weight_tensor.float(), bias=bias, stride=tuple(stride), padding=tuple(padding[:2]),
        output_padding=tuple(output_padding), groups=groups, dilation=tuple(dilation))
    if conv_config is not None and conv_config.activation is not None:
        from ttnn.operations.matmul import get_golden_function_for_activation
        y = get_golden_function_for_activation(conv_config.activation)(y)
    n, c, h, w = y.shape
    return y.permute(0, 2, 3, 1).reshape(1, 1, n * h * w, c)


_TORCH_REFERENCES = {
    'experimental.nlp_create_qkv_heads': _torch_reference_nlp_create_qkv_heads,
    'experimental.nlp_concat_heads': _torch_reference_nlp_concat_heads,
    'conv_transpose2d': _torch_reference_conv_transpose2d,
}


# --------------------------------------------------------------------------------------------
# Signature checking against the real nanobind bindings.
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Param:
    name: str
    annotation: str
    has_default: bool
    kw_only: bool


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside brackets/quotes."""
    parts, depth, quote, cur, i = [], 0, False, [], 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quote = not quote
        elif not quote and ch in '[(':
            depth += 1
        elif not quote and ch in '])':
            depth -= 1
        if not quote and depth == 0 and text.startswith(sep, i):
            parts.append(''.join(cur))
            cur = []
            i += len(sep)
            continue
        cur.append(ch)
        i += 1
    parts.append(''.join(cur))
    return [p.strip() for p in parts]


def _parse_nb_signature(sig: str) -> list[_Param]:
    inner = sig[sig.index('(') + 1:]
    depth, end = 1, 0
    for end, ch in enumerate(inner):
        depth += ch in '[('
        depth -= ch in '])'
        if depth == 0:
            break
    params, kw_only = [], False
    for item in _split_top(inner[:end], ','):
        if not item or item == 'self':
            continue
        if item == '*':
            kw_only = True
            continue
        if item.startswith('*'):
            continue
        name, _, rest = item.partition(':')
        annotation, eq, _ = rest.partition(' = ')
        params.append(_Param(name.strip(), annotation.strip(), bool(eq), kw_only))
    return params


def _real_signatures(op) -> list[list[_Param]] | None:
    fn = getattr(op, 'function', op)
    nb = getattr(type(fn).__call__, '__nb_signature__', None) \
        or getattr(fn, '__nb_signature__', None)
    if not nb:
        return None
    return [_parse_nb_signature(entry[0]) for entry in nb]


@functools.lru_cache(maxsize=None)
def _resolve_type(name: str):
    """'tensor.MemoryConfig' / 'ttnn._ttnn.tensor.MemoryConfig' -> class (None = unknown)."""
    name = name.strip()
    if name.startswith('ttnn._ttnn.'):
        name = name[len('ttnn._ttnn.'):]
    obj = ttnn._ttnn
    for part in name.split('.'):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None


def _type_ok(value, annotation: str) -> bool:
    if not annotation:
        return True
    for alt in _split_top(annotation, '|'):
        if _one_type_ok(value, alt):
            return True
    return False


def _one_type_ok(value, alt: str) -> bool:
    if alt == 'None':
        return value is None
    if alt in ('object', 'typing.Any'):
        return True
    if alt.startswith('"') or '::' in alt:
        # A C++ type nanobind prints raw: it can only be some ttnn binding object.
        return type(value).__module__.startswith('ttnn')
    if alt == 'int':
        return isinstance(value, int)
    if alt == 'float':
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if alt == 'bool':
        return isinstance(value, bool)
    if alt == 'str':
        return isinstance(value, str)
    if alt.startswith(('collections.abc.Sequence', 'list', 'tuple', 'typing.Sequence')):
        if not isinstance(value, (list, tuple, ttnn.Shape)):
            return False
        m = re.match(r'[\w.]+\[(.*)\]$', alt)
        if m and value and alt.startswith('collections.abc.Sequence'):
            return all(_type_ok(v, m.group(1)) for v in value)
        return True
    cls = _resolve_type(alt)
    if cls is None:
        return True           # unknown spelling: accept rather than invent a failure
    if cls is ttnn.Tensor:
        return isinstance(value, (ttnn.Tensor, DeviceTensor))
    if cls is ttnn.MeshDevice:
        return isinstance(value, DoubleMeshDevice)
    if cls is ttnn.QueueId:
        return isinstance(value, (int, ttnn.QueueId))
    if cls is ttnn.Shape:
        return isinstance(value, (ttnn.Shape, list, tuple))
    return isinstance(value, cls)


def check_binding(name: str, signatures, args, kwargs) -> None:
    """Raise TypeError unless some real overload accepts (args, kwargs) by name and type."""
    if signatures is None:
        return
    problems = []
    for params in signatures:
        problem = _match(params, args, kwargs)
        if problem is None:
            return
        problems.append(problem)
    raise TypeError(f'ttnn.{name}: no overload of the real binding accepts this call: '
                    + ' | '.join(problems))


def _match(params: list[_Param], args, kwargs) -> str | None:
    positional = [p for p in params if not p.kw_only]
    if len(args) > len(positional):
        return f'{len(args)} positional args > {len(positional)}'
    by_name = {p.name: p for p in params}
    bound = {}
    for p, value in zip(positional, args):
        bound[p.name] = value
    for key, value in kwargs.items():
        if key not in by_name:
            return f'unknown keyword {key!r}'
        if key in bound:
            return f'{key!r} given twice'
        bound[key] = value
    for p in params:
        if p.name not in bound:
            if not p.has_default:
                return f'missing {p.name!r}'
            continue
        if not _type_ok(bound[p.name], p.annotation):
            return (f'{p.name}={type(bound[p.name]).__name__} is not {p.annotation}')
    return None


# --------------------------------------------------------------------------------------------
# Device objects.
# --------------------------------------------------------------------------------------------

class DeviceTensor:
    """
    A tensor 'on the device': a mutable holder of a real host ttnn.Tensor.

    Mutable so that trace replay and `copy_host_to_device_tensor` can rewrite its content in
    place while the code keeps referring to the same object, as with a device buffer.
    """

    def __init__(self, host: ttnn.Tensor, device: 'DoubleMeshDevice', memory_config=None):
        self.host = host
        self._device = device
        self._memory_config = memory_config or ttnn.DRAM_MEMORY_CONFIG
        self.deallocated = False

    # The subset of ttnn.Tensor's API model/runtime code reads.
    @property
    def shape(self):
        return self.host.shape

    @property
    def padded_shape(self):
        return self.host.padded_shape

    @property
    def dtype(self):
        return self.host.dtype

    @property
    def layout(self):
        return self.host.layout

    def get_dtype(self):
        return self.host.dtype

    def get_layout(self):
        return self.host.layout

    def memory_config(self):
        return self._memory_config

    def is_sharded(self) -> bool:
        return self._memory_config.is_sharded()

    def storage_type(self):
        return ttnn.StorageType.DEVICE

    def device(self):
        return self._device

    def is_allocated(self) -> bool:
        return not self.deallocated

    def cpu(self, blocking: bool = True, cq_id=None):
        return _active().from_device(self, blocking, queue_id=cq_id)

    def __repr__(self):
        return (f'DeviceTensor(shape={list(self.shape)}, dtype={self.dtype}, '
                f'layout={self.layout}, device={self._device.device_ids})')


class DoubleEvent:
    """What ttnn.record_event returns here (a MeshEvent cannot exist without a card)."""

    _ids = itertools.count()

    def __init__(self, device: 'DoubleMeshDevice', cq: int):
        self.device = device
        self.cq = cq
        self.id = next(self._ids)
        self.completed = False

    def __repr__(self):
        return f'DoubleEvent({self.id}, cq={self.cq}, done={self.completed})'


class DoubleMeshDevice:
    """Stands in for ttnn.MeshDevice: a mesh of Wormhole chips with an 8x8 worker grid."""

    GRID = (8, 8)    # Wormhole N150/N300 compute_with_storage_grid_size (x, y), ETH dispatch

    def __init__(self, double: 'DeviceDouble', mesh_shape, device_ids, *, num_command_queues=1,
                 trace_region_size=0, l1_small_size=0, parent=None, grid=None):
        self.double = double
        self.grid = tuple(grid or self.GRID)
        self.trace_bytes: dict[int, int] = {}      # live trace id -> bytes in the region
        self.mesh_shape = ttnn.MeshShape(*list(mesh_shape))
        self.device_ids = list(device_ids)
        self.num_command_queues = num_command_queues
        self.trace_region_size = trace_region_size
        self.l1_small_size = l1_small_size
        self.parent = parent
        self.submeshes: list[DoubleMeshDevice] = []
        self.closed = False
        self.program_cache_enabled = True
        self.queues: dict[int, collections.deque] = {
            cq: collections.deque() for cq in range(num_command_queues)}
        self.traces: dict[int, list] = {}
        self.capturing: tuple[int, int] | None = None   # (trace id, cq)

    # ttnn.MeshDevice API subset
    @property
    def shape(self):
        return self.mesh_shape

    def get_num_devices(self) -> int:
        return len(self.device_ids)

    def get_device_ids(self) -> list[int]:
        return list(self.device_ids)

    def id(self) -> int:  # noqa: A003 -- the name of the real ttnn.MeshDevice.id()
        return self.device_ids[0]

    def arch(self):
        return ttnn.device.Arch.WORMHOLE_B0

    def compute_with_storage_grid_size(self):
        return ttnn.CoreCoord(*self.grid)

    @property
    def core_grid(self):
        return ttnn.CoreGrid(y=self.grid[1], x=self.grid[0])

    def num_program_cache_entries(self) -> int:
        return 0

    def enable_program_cache(self):
        self.program_cache_enabled = True

    def disable_and_clear_program_cache(self):
        self.program_cache_enabled = False

    def create_submeshes(self, submesh_shape):
        rows, cols = list(submesh_shape)
        if rows * cols <= 0 or len(self.device_ids) % (rows * cols):
            raise DoubleError(f'cannot split mesh {list(self.mesh_shape)} into {rows}x{cols}')
        per = rows * cols
        self.submeshes = [
            DoubleMeshDevice(self.double, (rows, cols), self.device_ids[i:i + per],
                             num_command_queues=self.num_command_queues,
                             trace_region_size=self.trace_region_size,
                             l1_small_size=self.l1_small_size, parent=self, grid=self.grid)
            for i in range(0, len(self.device_ids), per)]
        return list(self.submeshes)

    def __repr__(self):
        return f'DoubleMeshDevice(ids={self.device_ids}, cqs={self.num_command_queues})'


# --------------------------------------------------------------------------------------------
# The double.
# --------------------------------------------------------------------------------------------

def _resolve(root, dotted: str):
    obj = root
    for part in dotted.split('.'):
        obj = getattr(obj, part)   # AttributeError: the name does not exist in ttnn
    return obj


def _walk(value, fn):
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(v, fn) for v in value)
    return fn(value)


def _is_tensor(v) -> bool:
    return isinstance(v, (ttnn.Tensor, DeviceTensor))


_ACTIVE: list['DeviceDouble'] = []


def _active() -> 'DeviceDouble':
    if not _ACTIVE:
        raise DoubleError('no tt_device_double() is active')
    return _ACTIVE[-1]


class DeviceDouble:
    """The patched-ttnn session. Use through `tt_device_double()`."""

    def __init__(self, num_devices: int = 2, eager_cqs: tuple[int, ...] = (1,)):
        self.num_devices = num_devices
        self.eager_cqs = set(eager_cqs)
        self.log: list[tuple] = []
        self.op_counts: collections.Counter[str] = collections.Counter()
        self.op_seconds: collections.Counter[str] = collections.Counter()   # CPU time per op
        self.devices: list[DoubleMeshDevice] = []
        self._trace_ids = itertools.count(1)
        self._patches: list[tuple[Any, str, Any]] = []
        self._replaying = False
        self.compute_calls: list[tuple[str, Any]] = []   # (op, its compute config or None)
        self.readback_bytes = 0                           # device -> host, all readbacks

    # ---- patching -----------------------------------------------------------------------
    def make_op(self, dotted: str) -> Callable:
        """Wrap device op `ttnn.<dotted>` for the double (AttributeError if it is not real)."""
        real = _resolve(ttnn, dotted)
        try:
            golden = ttnn.get_golden_function(real)
        except RuntimeError:
            golden = _TORCH_REFERENCES.get(dotted)
        signatures = _real_signatures(real)
        compute_key = next((k for k in _COMPUTE_KEYS
                            if any(p.name == k for sig in signatures or [] for p in sig)), None)
        accepts_any_kw = golden is not None and any(
            p.kind is inspect.Parameter.VAR_KEYWORD
            for p in inspect.signature(golden).parameters.values())

        @functools.wraps(getattr(real, 'function', real))
        def op(*args, **kwargs):
            check_binding(dotted, signatures, args, kwargs)
            on_device = any(isinstance(v, DeviceTensor) for v in _flat(args, kwargs))
            if not on_device:
                return real(*args, **kwargs)      # host op: the real thing
            if golden is None:
                raise DoubleError(f'ttnn.{dotted} has no golden function and no torch '
                                  'reference in the double')
            if compute_key is not None and not self._replaying:
                self.compute_calls.append((dotted, kwargs.get(compute_key)))
            return self._device_op(dotted, golden, accepts_any_kw, args, kwargs)

        op.__tt_double__ = dotted
        # ttnn's own goldens look activations up by op (ttnn.get_golden_function(ttnn.gelu)).
        op.golden_function = getattr(real, 'golden_function', None)
        return op

    def _patch(self, owner, attr, value):
        self._patches.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)

    def install(self):
        for dotted in DEVICE_OPS:
            owner_path, _, attr = dotted.rpartition('.')
            owner = _resolve(ttnn, owner_path) if owner_path else ttnn
            self._patch(owner, attr, self.make_op(dotted))
        for attr in ('open_device', 'open_mesh_device', 'close_device', 'close_mesh_device',
                     'synchronize_device', 'get_device_ids', 'GetNumAvailableDevices',
                     'get_num_devices', 'record_event', 'wait_for_event', 'event_synchronize',
                     'allocate_tensor_on_device', 'copy_host_to_device_tensor', 'to_device',
                     'from_device', 'from_torch', 'to_torch', 'deallocate',
                     'begin_trace_capture', 'end_trace_capture', 'execute_trace',
                     'release_trace'):
            getattr(ttnn, attr)            # must exist in the real module
            self._patch(ttnn, attr, getattr(self, attr))
        self._patch(ttnn._ttnn.device, 'GetMemoryView', self.GetMemoryView)
        _ACTIVE.append(self)

    def uninstall(self):
        while self._patches:
            owner, attr, value = self._patches.pop()
            setattr(owner, attr, value)
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    # ---- device management ---------------------------------------------------------------
    def get_device_ids(self):
        return list(range(self.num_devices))

    def GetNumAvailableDevices(self):   # noqa: N802 (ttnn's name)
        return self.num_devices

    def get_num_devices(self):
        return self.num_devices

    def open_device(self, *, device_id=0, l1_small_size=0, trace_region_size=0,
                    dispatch_core_config=None, worker_l1_size=0, num_command_queues=1):
        if device_id >= self.num_devices:
            raise RuntimeError(f'device {device_id} not found (double has {self.num_devices})')
        dev = DoubleMeshDevice(self, (1, 1), [device_id], num_command_queues=num_command_queues,
                               trace_region_size=trace_region_size, l1_small_size=l1_small_size,
                               grid=self._grid(dispatch_core_config, 1, num_command_queues))
        self.devices.append(dev)
        return dev

    def _grid(self, dispatch_core_config, chips: int, num_command_queues: int):
        """Return a chip's grid under this dispatch (an N300 chip's: 8x7 with WORKER dispatch)."""
        worker = dispatch_core_config is not None and \
            dispatch_core_config.type == ttnn.DispatchCoreType.WORKER
        if not worker or self.num_devices < 2:
            return DoubleMeshDevice.GRID
        if chips > 1 and num_command_queues > 1:
            # ttnn 0.81.1 on a mock N300 (tt_metal/impl/dispatch/dispatch_core_manager.cpp).
            raise RuntimeError('TT_THROW @ tt_metal/impl/dispatch/dispatch_core_manager.cpp:363: '
                               'tt::exception\ninfo:\nNo more available dispatch cores on '
                               'device 0 to assign. Expand dispatch cores specified in core '
                               'descriptor YAML\nbacktrace:\n --- (double)')
        return WORKER_DISPATCH_GRID

    def open_mesh_device(self, mesh_shape=None, l1_small_size=0, trace_region_size=0,
                         num_command_queues=1, dispatch_core_config=None, offset=None,
                         physical_device_ids=(), worker_l1_size=0):
        shape = list(mesh_shape) if mesh_shape is not None else [1, self.num_devices]
        n = math.prod(shape)
        if n > self.num_devices or n <= 0:
            raise RuntimeError(f'mesh {shape} needs {n} chips; the double has '
                               f'{self.num_devices}')
        if num_command_queues not in (1, 2):
            raise RuntimeError('num_command_queues must be 1 or 2')
        ids = list(physical_device_ids) or list(range(n))
        dev = DoubleMeshDevice(self, shape, ids, num_command_queues=num_command_queues,
                               trace_region_size=trace_region_size, l1_small_size=l1_small_size,
                               grid=self._grid(dispatch_core_config, n, num_command_queues))
        self.devices.append(dev)
        return dev

    def close_device(self, device):
        self.close_mesh_device(device)

    def close_mesh_device(self, mesh_device):
        self.synchronize_device(mesh_device)
        for sub in mesh_device.submeshes:
            sub.closed = True
        mesh_device.closed = True
        self.log.append(('close', tuple(mesh_device.device_ids)))

    # ---- command queues ------------------------------------------------------------------
    def _cq(self, device: DoubleMeshDevice, cq_id) -> int:
        cq = 0 if cq_id is None else int(cq_id)   # ints and ttnn.QueueId both accepted
        if cq >= device.num_command_queues:
            raise DoubleError(f'cq_id {cq} but the device was opened with '
                              f'{device.num_command_queues} command queue(s)')
        if device.closed:
            raise DoubleError('device is closed')
        return cq

    def _enqueue(self, device: DoubleMeshDevice, cq: int, kind: str, run: Callable,
                 event: DoubleEvent | None = None):
        device.queues[cq].append((kind, run, event))
        self._run_eager(device)

    def _runnable(self, device, cq) -> bool:
        q = device.queues[cq]
        if not q:
            return False
        kind, _, event = q[0]
        return kind != 'wait' or event.completed

    def _step(self, device, cq):
        kind, run, event = device.queues[cq].popleft()
        run()

    def _run_eager(self, device):
        progressed = True
        while progressed:
            progressed = False
            for cq in sorted(self.eager_cqs):
                while cq in device.queues and self._runnable(device, cq):
                    self._step(device, cq)
                    progressed = True

    def _drain(self, device, cq, until: Callable[[], bool] | None = None):
        """Run CQ `cq` until empty (or `until()`), running other CQs only as needed."""
        done = until or (lambda: not device.queues[cq])
        while not done():
            if self._runnable(device, cq):
                self._step(device, cq)
                self._run_eager(device)
                continue
            # Head of `cq` waits on an event: let the other queues run one command at a time.
            for other in device.queues:
                if other != cq and self._runnable(device, other):
                    self._step(device, other)
                    break
            else:
                if not device.queues[cq] and until is not None:
                    raise DoubleError('waiting for an event that no queue will record')
                pending = {c: [k for k, _, _ in q] for c, q in device.queues.items()}
                raise DoubleError(
                    f'deadlock: CQ{cq} waits for an event that is never recorded '
                    f'(queues: {pending})')

    def synchronize_device(self, device, cq_id=None, sub_device_ids=()):
        cqs = [self._cq(device, cq_id)] if cq_id is not None else list(device.queues)
        for d in [device] + device.submeshes:
            for cq in cqs:
                if cq in d.queues:
                    self._drain(d, cq)
            # a full barrier: every queue empty
            if cq_id is None:
                for cq in d.queues:
                    self._drain(d, cq)
        self.log.append(('synchronize', tuple(device.device_ids),
                         None if cq_id is None else int(cq_id)))

    def record_event(self, mesh_device, cq_id=None, sub_device_ids=(), device_range=None):
        cq = self._cq(mesh_device, cq_id)
        event = DoubleEvent(mesh_device, cq)

        def run():
            event.completed = True
            self.log.append(('record_event', tuple(mesh_device.device_ids), cq, event.id))
        self._enqueue(mesh_device, cq, 'record', run, event)
        return event

    def wait_for_event(self, cq_id=None, mesh_event=None):
        if not isinstance(mesh_event, DoubleEvent):
            raise TypeError('wait_for_event needs the event returned by ttnn.record_event')
        device = mesh_event.device
        cq = self._cq(device, cq_id)

        def run():
            self.log.append(('wait_for_event', tuple(device.device_ids), cq, mesh_event.id))
        self._enqueue(device, cq, 'wait', run, mesh_event)

    def event_synchronize(self, mesh_event):
        device = mesh_event.device
        self._drain(device, mesh_event.cq, until=lambda: mesh_event.completed)

    # ---- tensors in and out --------------------------------------------------------------
    def _check_not_capturing(self, device, what):
        if device.capturing is not None:
            raise DoubleError(f'{what} while a trace is being captured: not allowed on a card '
                              '(host reads/writes must happen outside capture)')

    def from_torch(self, tensor=None, dtype=None, *, device=None, memory_config=None,
                   cq_id=None, **kwargs):
        host = REAL_FROM_TORCH(tensor, dtype, **kwargs)
        if device is None:
            return host
        return self.to_device(host, device, memory_config, queue_id=cq_id)

    def to_device(self, tensor, device, memory_config=None, *, queue_id=None):
        if isinstance(tensor, DeviceTensor):
            return tensor
        if not isinstance(device, DoubleMeshDevice):
            raise TypeError(f'to_device needs a device, got {type(device).__name__}')
        self._check_not_capturing(device, 'to_device')
        cq = self._cq(device, queue_id)
        self._drain(device, cq)   # a blocking write
        out = DeviceTensor(tensor, device, memory_config)
        _check_shard_fit('to_device', out)
        self.log.append(('to_device', tuple(device.device_ids), cq))
        return out

    def allocate_tensor_on_device(self, *args, **kwargs):
        if isinstance(args[0] if args else kwargs.get('tensor_spec'), ttnn.TensorSpec):
            spec = args[0] if args else kwargs['tensor_spec']
            device = args[1] if len(args) > 1 else kwargs['mesh_device']
            shape, dtype, layout = spec.shape, spec.dtype, spec.layout
            memory_config = spec.memory_config
        else:
            names = ('shape', 'dtype', 'layout', 'mesh_device', 'memory_config')
            bound = dict(zip(names, args), **kwargs)
            shape, dtype, layout = bound['shape'], bound['dtype'], bound['layout']
            device, memory_config = bound['mesh_device'], bound.get('memory_config')
        host = REAL_FROM_TORCH(torch.zeros(list(shape)), dtype, layout=layout)
        out = DeviceTensor(host, device, memory_config)
        _check_shard_fit('allocate_tensor_on_device', out)
        return out

    def copy_host_to_device_tensor(self, host_tensor, device_tensor, cq_id=None):
        if not isinstance(device_tensor, DeviceTensor):
            raise TypeError('copy_host_to_device_tensor: destination must be a device tensor')
        if isinstance(host_tensor, DeviceTensor):
            raise TypeError('copy_host_to_device_tensor: source must be a host tensor')
        device = device_tensor.device()
        self._check_not_capturing(device, 'copy_host_to_device_tensor')
        if (list(host_tensor.shape) != list(device_tensor.shape)
                or host_tensor.dtype != device_tensor.dtype
                or host_tensor.layout != device_tensor.layout):
            raise DoubleError(
                f'copy_host_to_device_tensor: host {list(host_tensor.shape)} {host_tensor.dtype}'
                f' {host_tensor.layout} does not match device {list(device_tensor.shape)} '
                f'{device_tensor.dtype} {device_tensor.layout}')
        cq = self._cq(device, cq_id)
        # The host buffer is read when the command runs; snapshot it like a staged write.
        staged = REAL_FROM_TORCH(REAL_TO_TORCH(host_tensor), host_tensor.dtype,
                                 layout=host_tensor.layout)

        def run():
            device_tensor.host = staged
            self.log.append(('copy_h2d', tuple(device.device_ids), cq))
        self._enqueue(device, cq, 'copy', run)

    def from_device(self, tensor, blocking=True, *, queue_id=None, cq_id=None):
        if not isinstance(tensor, DeviceTensor):
            return tensor
        device = tensor.device()
        self._check_not_capturing(device, 'from_device')
        qid = queue_id if queue_id is not None else cq_id
        cq = self._cq(device, qid)
        self._drain(device, cq)
        self._check_alive(tensor, 'from_device')
        size = host_bytes(tensor.host)
        self.readback_bytes += size
        self.log.append(('readback', tuple(device.device_ids), cq, size))
        return tensor.host

    def to_torch(self, tensor, dtype=None, *, torch_rank=None, mesh_composer=None, device=None,
                 cq_id=None):
        if isinstance(tensor, DeviceTensor):
            tensor = self.from_device(tensor, True, queue_id=cq_id)
        return REAL_TO_TORCH(tensor, dtype, torch_rank=torch_rank, mesh_composer=mesh_composer)

    def deallocate(self, tensor, force=True):
        if isinstance(tensor, DeviceTensor):
            tensor.deallocated = True

    def _check_alive(self, tensor, what):
        if tensor.deallocated and not self._replaying:
            raise DoubleError(f'{what}: tensor was deallocated (use after ttnn.deallocate)')

    # ---- traces -------------------------------------------------------------------------
    def begin_trace_capture(self, mesh_device, *, cq_id=None):
        cq = self._cq(mesh_device, cq_id)
        if mesh_device.trace_region_size <= 0:
            raise DoubleError('begin_trace_capture: device opened without trace_region_size')
        if mesh_device.capturing is not None:
            raise DoubleError('begin_trace_capture: already capturing')
        self._drain(mesh_device, cq)
        tid = next(self._trace_ids)
        mesh_device.traces[tid] = []
        mesh_device.capturing = (tid, cq)
        self.log.append(('begin_trace_capture', tuple(mesh_device.device_ids), cq, tid))
        return tid

    def end_trace_capture(self, mesh_device, trace_id, *, cq_id=None):
        cq = self._cq(mesh_device, cq_id)
        if mesh_device.capturing != (trace_id, cq):
            raise DoubleError(f'end_trace_capture({trace_id}, cq {cq}) does not match the '
                              f'capture in progress {mesh_device.capturing}')
        mesh_device.capturing = None
        self._fit_trace(mesh_device, trace_id)
        # A captured program has not run on a card: its outputs hold garbage until executed.
        for *_, outputs in mesh_device.traces[trace_id]:
            for holder in outputs:
                _poison(holder)
        self.log.append(('end_trace_capture', tuple(mesh_device.device_ids), cq, trace_id))

    def _fit_trace(self, mesh_device, trace_id):
        """Size the captured trace; raise tt-metal's error when the live traces overflow."""
        programs = sum(_programs(dotted, kwargs)
                       for dotted, _, _, _, kwargs, _ in mesh_device.traces[trace_id])
        whole = _TRACE_PAGE * _DRAM_BANKS
        size = -(-programs * TRACE_BYTES_PER_PROGRAM // whole) * whole
        total = sum(mesh_device.trace_bytes.values()) + size
        if total > mesh_device.trace_region_size:
            del mesh_device.traces[trace_id]
            raise RuntimeError(
                'TT_FATAL @ tt_metal/distributed/mesh_trace.cpp:78: '
                'mesh_cq.device()->get_trace_buffers_size() <= trace_region_size\ninfo:\n'
                f'Creating trace buffers of size {total}B on MeshDevice {mesh_device.id()}, '
                f'but only {mesh_device.trace_region_size}B is allocated for trace region.\n'
                'backtrace:\n --- (double)')
        mesh_device.trace_bytes[trace_id] = size

    def GetMemoryView(self, device, buffer_type):  # noqa: N802 (ttnn's name)
        """Return the TRACE view of a double device: its live traces' estimated bytes."""
        if buffer_type != ttnn.BufferType.TRACE:
            raise DoubleError('GetMemoryView: the double models the TRACE region only')
        used = sum(device.trace_bytes.values())
        return types.SimpleNamespace(num_banks=_DRAM_BANKS,
                                     total_bytes_allocated_per_bank=used // _DRAM_BANKS,
                                     total_bytes_per_bank=device.trace_region_size
                                     // _DRAM_BANKS)

    def execute_trace(self, mesh_device, trace_id, *, cq_id=None, blocking=True):
        cq = self._cq(mesh_device, cq_id)
        if trace_id not in mesh_device.traces:
            raise DoubleError(f'execute_trace: unknown or released trace {trace_id}')
        if mesh_device.capturing is not None:
            raise DoubleError('execute_trace during capture')
        recorded = mesh_device.traces[trace_id]

        def run():
            self.log.append(('execute_trace', tuple(mesh_device.device_ids), cq, trace_id))
            self._replaying = True
            try:
                for dotted, golden, any_kw, args, kwargs, outputs in recorded:
                    fresh = self._compute(dotted, golden, any_kw, args, kwargs)
                    for holder, new in zip(outputs, fresh):
                        holder.host = new.host
                        holder.deallocated = False
            finally:
                self._replaying = False
        self._enqueue(mesh_device, cq, 'trace', run)
        if blocking:
            self._drain(mesh_device, cq)

    def release_trace(self, mesh_device, trace_id):
        if mesh_device.traces.pop(trace_id, None) is None:
            raise DoubleError(f'release_trace: unknown trace {trace_id}')
        mesh_device.trace_bytes.pop(trace_id, None)
        self.log.append(('release_trace', tuple(mesh_device.device_ids), trace_id))

    # ---- device ops ---------------------------------------------------------------------
    def _device_op(self, dotted, golden, any_kw, args, kwargs):
        device = next(v.device() for v in _flat(args, kwargs) if isinstance(v, DeviceTensor))
        for v in _flat(args, kwargs):
            if isinstance(v, DeviceTensor):
                self._check_alive(v, f'ttnn.{dotted}')
        _check_grid(dotted, device, kwargs)
        capturing = device.capturing is not None
        if not capturing:
            self._drain(device, 0)        # ops run on CQ0 after what is queued there
        start = time.perf_counter()
        outputs = self._compute(dotted, golden, any_kw, args, kwargs)
        self.op_seconds[dotted] += time.perf_counter() - start
        self.op_counts[dotted] += 1
        if capturing:
            device.traces[device.capturing[0]].append(
                (dotted, golden, any_kw, args, kwargs, outputs))
        return self._shape_result(dotted, kwargs, outputs)

    def _shape_result(self, dotted, kwargs, outputs):
        if dotted in ('conv2d', 'conv_transpose2d'):
            out, (oh, ow) = outputs[0], outputs[0]._conv_hw
            weights = (_prepared_weight(kwargs), kwargs.get('bias_tensor'))
            if kwargs.get('return_output_dim') and kwargs.get('return_weights_and_bias'):
                return out, (oh, ow), weights
            if kwargs.get('return_output_dim'):
                return out, (oh, ow)
            if kwargs.get('return_weights_and_bias'):
                return out, weights
            return out
        if len(outputs) == 1:
            return outputs[0]
        return tuple(outputs)

    def _compute(self, dotted, golden, any_kw, args, kwargs) -> list[DeviceTensor]:
        first = next(v for v in _flat(args, kwargs) if isinstance(v, DeviceTensor))
        device = first.device()
        t_args = _walk(list(args), _to_torch_value)
        t_kwargs = {k: _walk(v, _to_torch_value) for k, v in kwargs.items()}
        if dotted in ('conv2d', 'conv_transpose2d'):
            _check_prepared_weight(dotted, kwargs)
            t_kwargs['weight_tensor'] = _quantize_conv_weight(
                t_kwargs['weight_tensor'], kwargs.get('conv_config'))
        call_kwargs = t_kwargs if any_kw else {
            k: v for k, v in t_kwargs.items()
            if k in inspect.signature(golden).parameters}
        result = golden(*t_args, **call_kwargs)
        if dotted == 'conv2d' and isinstance(result, list):
            result = result[0]
        if dotted == 'transformer.scaled_dot_product_attention' and \
                kwargs.get('output_concat_heads'):
            # ttnn's golden leaves this keyword to the op: heads side by side, [b, 1, s, h*d]
            result = _torch_reference_nlp_concat_heads(result)
        results = list(result) if isinstance(result, (tuple, list)) else [result]

        dtype = _out_dtype(dotted, args, kwargs, first)
        layout = _out_layout(dotted, args, kwargs, first)
        mem = _out_memory_config(dotted, args, kwargs, first)
        out = []
        for r in results:
            if dtype == ttnn.bfloat8_b and layout != ttnn.TILE_LAYOUT:
                raise DoubleError(f'ttnn.{dotted}: bfloat8_b output needs TILE layout')
            host = REAL_FROM_TORCH(r.float() if r.dtype != torch.float32 else r, dtype,
                                   layout=layout)
            holder = DeviceTensor(host, device, mem)
            _check_shard_fit(dotted, holder)
            out.append(holder)
        if dotted in ('conv2d', 'conv_transpose2d'):
            out[0]._conv_hw = _conv_out_hw(dotted, kwargs)
        if dotted in _IN_PLACE and isinstance(args[0], DeviceTensor):
            args[0].host = out[0].host
            out[0] = args[0]
        conv_config = kwargs.get('conv_config')
        if dotted == 'conv2d' and getattr(conv_config, 'deallocate_activation', False):
            # ttnn frees the input of a conv told so: a later read of it is a use after free.
            kwargs['input_tensor'].deallocated = True
        return out


def resolved_compute(dotted: str, config) -> tuple[str, bool]:
    """(math fidelity, fp32 accumulation) an op runs with: its config, else ttnn's default."""
    if config is None:
        return TTNN_DEFAULT_COMPUTE[dotted]
    return str(config.math_fidelity).rsplit('.', 1)[-1], bool(config.fp32_dest_acc_en)


def host_bytes(t: ttnn.Tensor) -> int:
    """Bytes a device->host read of `t` carries: whole tiles for TILE, values for rows."""
    shape = t.padded_shape if t.layout == ttnn.TILE_LAYOUT else t.shape
    per = {ttnn.bfloat16: 2.0, ttnn.float32: 4.0, ttnn.uint32: 4.0, ttnn.int32: 4.0,
           ttnn.bfloat8_b: 1088 / 1024, ttnn.uint8: 1.0}.get(t.dtype, 4.0)
    return int(math.prod(list(shape)) * per)


def _programs(dotted: str, kwargs: dict) -> int:
    """Device programs one call of `dotted` runs (conv2d: halo + conv per DRAM slice)."""
    if dotted not in ('conv2d', 'conv_transpose2d'):
        return 1
    slices = getattr(kwargs.get('slice_config'), 'num_slices', 1) or 1
    return 2 * max(1, int(slices))


def _conv_key(kwargs: dict) -> tuple:
    """Return what ttnn's prepared conv weights depend on (sharding, blocks, slices, dtype)."""
    cc, sc = kwargs.get('conv_config'), kwargs.get('slice_config')
    return (str(getattr(cc, 'shard_layout', None)), getattr(cc, 'act_block_h_override', 0),
            getattr(cc, 'act_block_w_div', 1), str(getattr(cc, 'weights_dtype', None)),
            str(getattr(sc, 'slice_type', None)), getattr(sc, 'num_slices', 0))


def _prepared_weight(kwargs: dict):
    """Return the weights ttnn.conv2d hands back: prepared on the device for this config."""
    w = kwargs['weight_tensor']
    if isinstance(w, DeviceTensor):
        return w
    holder = DeviceTensor(w, kwargs['device'])
    holder.prepared_for = _conv_key(kwargs)
    return holder


def _check_prepared_weight(dotted: str, kwargs: dict):
    """Refuse prepared weights a card would silently get wrong (tt-metal #35852)."""
    w = kwargs['weight_tensor']
    if not isinstance(w, DeviceTensor):
        return
    key = _conv_key(kwargs)
    if getattr(w, 'prepared_for', key) != key:
        raise DoubleError(f'ttnn.{dotted}: weights prepared for conv config {w.prepared_for} '
                          f'passed to a conv with {key}: wrong outputs on a card')
    dram = 'DRAM' in key[4]
    if dram and not key[1]:
        raise DoubleError(f'ttnn.{dotted}: prepared weights with a DRAM slice config and '
                          'act_block_h_override 0 give ~50% PCC without an error on a card '
                          '(tt-metal #35852)')


def _check_grid(dotted: str, device, kwargs: dict):
    """Refuse a program config or shard grid larger than the device's grid (as a card)."""
    gx, gy = device.grid
    grids = []
    pc = kwargs.get('program_config')
    size = getattr(pc, 'compute_with_storage_grid_size', None)
    if size is not None:
        grids.append((int(size.x), int(size.y)))
    for key in ('memory_config',):
        mem = kwargs.get(key)
        spec = getattr(mem, 'shard_spec', None) if isinstance(mem, ttnn.MemoryConfig) else None
        if spec is not None:
            box = spec.grid.bounding_box()
            grids.append((box.end.x + 1, box.end.y + 1))
    for x, y in grids:
        if x > gx or y > gy:
            raise DoubleError(f'ttnn.{dotted}: a {x}x{y} core grid on a device whose compute '
                              f'grid is {gx}x{gy}')


def _flat(args, kwargs):
    for v in itertools.chain(args, kwargs.values()):
        if isinstance(v, (list, tuple)):
            yield from v
        else:
            yield v


def _to_torch_value(v):
    if isinstance(v, DeviceTensor):
        v = v.host
    if not isinstance(v, ttnn.Tensor):
        return v
    t = REAL_TO_TORCH(v)
    # The values keep their storage rounding (bf16 / bfloat8_b); the golden computes in fp32,
    # as the card accumulates, and torch's bf16 matmul is ~200x slower without bf16 units.
    return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t


def _poison(holder: DeviceTensor):
    t = REAL_TO_TORCH(holder.host)
    if t.is_floating_point():
        holder.host = REAL_FROM_TORCH(torch.full_like(t.float(), float('nan')),
                                      holder.host.dtype, layout=holder.host.layout)


def _quantize_conv_weight(weight: torch.Tensor, conv_config):
    """Apply conv_config.weights_dtype as the card stores prepared weights ([K, O] matrix)."""
    wdtype = getattr(conv_config, 'weights_dtype', None)
    if wdtype is None or weight.dim() != 4:
        return weight
    o, i, kh, kw = weight.shape
    matrix = weight.permute(2, 3, 1, 0).reshape(kh * kw * i, o).float()
    q = REAL_TO_TORCH(REAL_FROM_TORCH(matrix, wdtype, layout=ttnn.TILE_LAYOUT)).float()
    return q.reshape(kh, kw, i, o).permute(3, 2, 0, 1).contiguous()


def _conv_out_hw(dotted, kw):
    k = kw['kernel_size']
    s = kw.get('stride', (1, 1))
    p = kw.get('padding', (0, 0))
    d = kw.get('dilation', (1, 1))
    p4 = (p[0], p[0], p[1], p[1]) if len(p) == 2 else tuple(p)
    h, w = kw['input_height'], kw['input_width']
    if dotted == 'conv2d':
        oh = (h + p4[0] + p4[1] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        ow = (w + p4[2] + p4[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    else:
        op = kw.get('output_padding', (0, 0))
        oh = (h - 1) * s[0] - 2 * p[0] + d[0] * (k[0] - 1) + op[0] + 1
        ow = (w - 1) * s[1] - 2 * p[1] + d[1] * (k[1] - 1) + op[1] + 1
    return oh, ow


def _out_dtype(dotted, args, kwargs, first):
    for key in ('dtype', 'output_dtype'):
        if isinstance(kwargs.get(key), ttnn.DataType):
            return kwargs[key]
    if dotted == 'typecast':
        return args[-1] if len(args) > 1 else kwargs['dtype']
    if dotted in ('interleaved_to_sharded', 'sharded_to_interleaved', 'to_layout',
                  'to_memory_config') and len(args) > 2 and isinstance(args[2], ttnn.DataType):
        return args[2]
    if dotted == 'interleaved_to_sharded' and len(args) > 5 and args[5] is not None:
        return args[5]
    if first.dtype == ttnn.bfloat8_b and _out_layout(dotted, args, kwargs, first) \
            != ttnn.TILE_LAYOUT:
        return ttnn.bfloat16
    return first.dtype


def _out_layout(dotted, args, kwargs, first):
    if dotted in _OUTPUT_LAYOUT:
        return _OUTPUT_LAYOUT[dotted]
    if dotted == 'to_layout':
        return args[1] if len(args) > 1 else kwargs['layout']
    if dotted in ('conv2d', 'conv_transpose2d'):
        cfg = kwargs.get('conv_config')
        return cfg.output_layout if cfg is not None else ttnn.TILE_LAYOUT
    return first.layout


def _out_memory_config(dotted, args, kwargs, first):
    for key in ('memory_config', 'sharded_memory_config', 'output_memory_config'):
        if isinstance(kwargs.get(key), ttnn.MemoryConfig):
            return kwargs[key]
    if dotted in ('to_memory_config', 'interleaved_to_sharded', 'sharded_to_interleaved',
                  'reshard') and len(args) > 1 and isinstance(args[1], ttnn.MemoryConfig):
        return args[1]
    if dotted == 'sharded_to_interleaved':
        return ttnn.DRAM_MEMORY_CONFIG
    return first.memory_config()


def _check_shard_fit(what: str, t: DeviceTensor):
    """Check an explicit shard spec for basic consistency with the tensor's padded shape."""
    mem = t.memory_config()
    if not mem.is_sharded() or mem.shard_spec is None:
        return
    spec = mem.shard_spec
    sh, sw = spec.shape
    padded = list(t.padded_shape)
    height, width = math.prod(padded[:-1]), padded[-1]
    box = spec.grid.bounding_box()
    cols = box.end.x - box.start.x + 1
    rows = box.end.y - box.start.y + 1
    ncores = spec.grid.num_cores()
    layout = mem.memory_layout
    problem = None
    if layout == ttnn.TensorMemoryLayout.HEIGHT_SHARDED:
        if sw != width:
            problem = f'height shard width {sw} != tensor width {width}'
        elif math.ceil(height / sh) > ncores:
            problem = f'{height} rows need {math.ceil(height / sh)} shards of {sh} > {ncores}'
    elif layout == ttnn.TensorMemoryLayout.WIDTH_SHARDED:
        if sh != height:
            problem = f'width shard height {sh} != tensor height {height}'
        elif math.ceil(width / sw) > ncores:
            problem = f'{width} cols need {math.ceil(width / sw)} shards of {sw} > {ncores}'
    elif layout == ttnn.TensorMemoryLayout.BLOCK_SHARDED:
        if spec.orientation == ttnn.ShardOrientation.COL_MAJOR:
            rows, cols = cols, rows
        if math.ceil(height / sh) > rows or math.ceil(width / sw) > cols:
            problem = (f'block shards {sh}x{sw} of {height}x{width} need '
                       f'{math.ceil(height / sh)}x{math.ceil(width / sw)} cores > {rows}x{cols}')
    if problem is None and t.layout == ttnn.TILE_LAYOUT and (sh % 32 or sw % 32):
        problem = f'shard {sh}x{sw} is not a multiple of 32x32 tiles'
    if problem:
        raise DoubleError(f'{what}: shard spec does not fit tensor {padded}: {problem}')


@contextlib.contextmanager
def tt_device_double(num_devices: int = 2, eager_cqs: tuple[int, ...] = (1,)):
    """Patch ttnn so device code runs on CPU goldens for the duration (see module doc)."""
    double = DeviceDouble(num_devices=num_devices, eager_cqs=eager_cqs)
    double.install()
    try:
        yield double
    finally:
        double.uninstall()


@pytest.fixture
def tt_double():
    """Provide `tt_device_double()` as a pytest fixture (an N300: two chips)."""
    with tt_device_double() as double:
        yield double
