"""
The op list and per-op L1 use of a ttnn graph capture (ttnn.graph.end_graph_capture()).

A capture is a list of nodes (node_type, params, connections). Per device operation (a
function_start with a program factory) this collects: its name and program factory, the
compute kernel config it resolved (math fidelity, fp32 accumulation: ttnn's default where the
caller gave none), the cores
its program runs on, its input/output tensors (shape, dtype, layout, memory), its circular
buffers, and the L1 buffers alive while it runs. L1 fit is what the card's allocator checks:
circular buffers grow up from the bottom of L1, buffers down from the top, so an op's headroom
is the lowest live L1 buffer address minus the highest circular-buffer end (a clash when < 0).
The graph records the circular buffers of convs, halos and eltwise ops; the dataflow buffers of
the Metal-2 ops (matmul, SDPA, LayerNorm) are not in it, so those have no L1 figures here.
"""
from __future__ import annotations

import json
import re


def _int(value, default=0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _true(value) -> bool:
    return str(value).lower() in ('1', 'true')


def _tensor(params: dict) -> dict:
    mem = params.get('memory_config', '')
    layout = re.search(r'memory_layout=TensorMemoryLayout::(\w+)', mem)
    buffer = re.search(r'buffer_type=BufferType::(\w+)', mem)
    return {'shape': params.get('shape', '').replace('Shape(', '').rstrip(')'),
            'dtype': params.get('dtype', '').replace('DataType::', ''),
            'layout': params.get('layout', '').replace('Layout::', ''),
            'memory': f'{buffer.group(1) if buffer else "?"}/'
                      f'{layout.group(1) if layout else "?"}'}


_COMPUTE = re.compile(r'ComputeKernelConfig\(math_fidelity=(\w+),math_approx_mode=\w+,'
                      r'fp32_dest_acc_en=(\w+)')


def _compute(arguments) -> dict | None:
    """Return the compute config a device op resolved (its recorded attributes), or None."""
    for arg in arguments or ():
        m = _COMPUTE.search(str(arg))
        if m:
            return {'fidelity': m.group(1), 'fp32_dest_acc': _true(m.group(2))}
    return None


def _cores(ranges: str) -> int:
    """Count the cores in a worker_core_ranges JSON list or a '{[0-0 - 7-7]}' range set."""
    try:
        spans = [((r['start']['x'], r['start']['y']), (r['end']['x'], r['end']['y']))
                 for r in json.loads(ranges)]
    except (ValueError, TypeError, KeyError):
        spans = [((int(a), int(b)), (int(c), int(d)))
                 for a, b, c, d in re.findall(r'\[(\d+)-(\d+) - (\d+)-(\d+)\]', ranges or '')]
    return sum((x1 - x0 + 1) * (y1 - y0 + 1) for (x0, y0), (x1, y1) in spans)


def device_ops(graph: list[dict], python_io: list[dict] | None = None) -> list[dict]:
    """
    One record per device operation, in execution order.

    `python_io` (ttnn.graph._python_io_data after the capture, in call order) names the
    Python-level call each device op belongs to ('python_index': its place in that list); a
    record's 'fidelity' and 'settings', where the caller added them, are that call's math
    fidelity and compute / program settings (dry_run.call_settings).
    """
    walker = _Walker(graph, python_io or [])
    for node in graph:
        walker.visit(node)
    return walker.ops


class _Walker:
    """Walks a capture once, keeping the live L1 buffers and the device ops being built."""

    def __init__(self, graph: list[dict], calls: list[dict]):
        self.nodes = {n['counter']: n for n in graph}
        self.readers: dict[int, list[int]] = {}     # op node -> tensor nodes it reads
        for n in graph:
            if n.get('node_type') == 'tensor':
                for c in n.get('connections', []):
                    self.readers.setdefault(c, []).append(n['counter'])
        self.calls, self.next_call, self.n_calls = calls, 0, 0
        self.live = {'1': {}, '3': {}}              # BufferType 1 L1, 3 L1_SMALL: addr -> bytes
        self.ops, self.stack, self.depth, self.top = [], [], 0, {}

    def visit(self, node: dict) -> None:
        kind, p = node.get('node_type'), node.get('params') or {}
        if kind == 'function_start':
            self.depth += 1
            if self.depth == 1:
                self._top_level(p.get('name'))
            if 'program_factory_type' in p:
                self._open(node, p)
        elif kind == 'function_end':
            self.depth -= 1
            if self.stack and p.get('name') == self.stack[-1]['name']:
                self._close(node)
        elif kind in ('buffer_allocate', 'buffer_deallocate'):
            # 'type' says L1 for L1_SMALL too; buffer_type is ttnn's BufferType
            live = self.live.get(str(p.get('buffer_type')))
            if live is not None:
                self._buffer(kind, p, live)
        elif self.stack and kind == 'circular_buffer_allocate' and \
                not _true(p.get('globally_allocated')):
            # (a globally allocated circular buffer lives inside an L1 buffer: not its own room)
            self.stack[-1]['cbs'].append((_int(p.get('address')), _int(p.get('size')),
                                          _cores(p.get('core_range_set', ''))))
        elif self.stack and kind == 'program_execution':
            op = self.stack[-1]
            op['cores'] = max(op['cores'], _cores(p.get('worker_core_ranges')))

    def _top_level(self, name) -> None:
        self.top = {'call': name, 'call_index': self.n_calls}
        self.n_calls += 1
        # Python records exist only for Python-level calls: match the next one by name.
        for i in range(self.next_call, min(self.next_call + 8, len(self.calls))):
            if self.calls[i].get('name') == name:
                self.top.update(fidelity=self.calls[i].get('fidelity'), python_index=i,
                                settings=self.calls[i].get('settings') or {})
                self.next_call = i + 1
                break

    def _buffer(self, kind: str, p: dict, live: dict) -> None:
        if kind == 'buffer_deallocate':
            live.pop(_int(p.get('address')), None)
            return
        live[_int(p.get('address'))] = _int(p.get('max_size_per_bank'))
        if live is self.live['3'] and self.stack:
            op = self.stack[-1]
            op['l1_small_bytes_per_bank'] = max(op['l1_small_bytes_per_bank'],
                                                sum(live.values()))

    def _tensors(self, ids) -> list[dict]:
        return [_tensor(self.nodes[c]['params']) for c in ids
                if self.nodes.get(c, {}).get('node_type') == 'tensor']

    def _open(self, node: dict, p: dict) -> None:
        self.stack.append({
            'name': p.get('name'), 'call': self.top.get('call'),
            'call_index': self.top.get('call_index'),
            'python_index': self.top.get('python_index'), 'fidelity': self.top.get('fidelity'),
            'settings': self.top.get('settings', {}),
            'program': p.get('program_factory_type', ''),
            # what the op runs with: the caller's compute config, or ttnn's default for it
            'compute': _compute(node.get('arguments')),
            'cache_hit': _true(p.get('program_cache_hit')),
            'inputs': self._tensors(self.readers.get(node['counter'], [])),
            'cbs': [], 'cores': 0, 'outputs': [],
            'l1_small_bytes_per_bank': sum(self.live['3'].values())})

    def _close(self, node: dict) -> None:
        op = self.stack.pop()
        op['outputs'] = self._tensors(node.get('connections', []))
        self.ops.append(_finish(op, self.live['1']))


def _finish(op: dict, live_l1: dict[int, int]) -> dict:
    cbs = op.pop('cbs')
    cb_top = max((addr + size for addr, size, _ in cbs), default=0)
    l1_bottom = min(live_l1, default=None)
    op['cb_bytes_per_core'] = sum(size for _, size, _ in cbs)
    op['cb_top'] = cb_top
    op['l1_buffers_bytes_per_bank'] = sum(live_l1.values())
    op['l1_lowest_buffer'] = l1_bottom
    op['l1_headroom_bytes'] = (l1_bottom - cb_top) if (l1_bottom is not None and cbs) else None
    # Cores of the op's circular buffers (its own cores); 'cores' (from the program's
    # execution record) is the sub-device's worker grid.
    op['cb_cores'] = max((n for _, _, n in cbs), default=0)
    op['cores'] = op['cores'] or op['cb_cores']
    return op


def summary(ops: list[dict]) -> dict:
    """Return counts per device op, the tightest op and the peak L1_SMALL use, JSON-ready."""
    counts: dict[str, int] = {}
    for op in ops:
        counts[op['name']] = counts.get(op['name'], 0) + 1
    tight = tightest(ops)
    return {'device_ops': len(ops), 'per_op': counts,
            'ops_with_l1_figures': sum(op['l1_headroom_bytes'] is not None for op in ops),
            'tightest': None if tight is None else {
                k: tight[k] for k in ('call', 'call_index', 'name', 'program', 'cores',
                                      'l1_headroom_bytes', 'cb_bytes_per_core',
                                      'l1_buffers_bytes_per_bank', 'outputs')},
            'l1_small_peak_bytes_per_bank': max((op['l1_small_bytes_per_bank'] for op in ops),
                                                default=0)}


def tightest(ops: list[dict]) -> dict | None:
    """Return the op with the least L1 headroom (None when no op allocated circular buffers)."""
    with_room = [op for op in ops if op.get('l1_headroom_bytes') is not None]
    return min(with_room, key=lambda op: op['l1_headroom_bytes'], default=None)
