"""
The TT runtime's stand-in device program, and the check of a chip's trace_2cq event order.

`ToyProgram` is a few real ttnn ops whose torch reference is one line (`reference`), so the
runtime's tests (test_tt_executor.py, test_tt_selfcheck.py) isolate the runtime from the DPT
model. `check_2cq_order` reads the device double's log (support/doubles/tt_device_double.py).
"""
from dpt_ros.tt.executor import CQ_COMPUTE
import numpy as np
import torch

S = 32   # image side for the stand-in program (one tile)


class ToyProgram:
    """relu(2x + 1) summed over channels: (1,3,S,S) -> (1,1,S,S), on device ops only."""

    def __init__(self, fallbacks=None, force_fallback=False):
        self.fallbacks = fallbacks
        self.force_fallback = force_fallback

    def __call__(self, x):
        import ttnn
        x = ttnn.to_layout(x, ttnn.TILE_LAYOUT)
        y = ttnn.relu(ttnn.add(ttnn.multiply(x, 2.0), 1.0))
        if self.fallbacks is None:
            return ttnn.sum(y, dim=1, keepdim=True)

        def tuned():
            if self.force_fallback:
                # A keyword ttnn.sum does not have: the real binding (and the double) reject it
                # with TypeError, as a bad tuned config is rejected on the card.
                return ttnn.sum(y, dim=1, keepdim=True, program_config='tuned')
            return ttnn.sum(y, dim=1, keepdim=True)
        return self.fallbacks.run_with_config(
            'channel_sum', tuned, lambda: ttnn.sum(y, dim=1, keepdim=True))


def reference(frames: np.ndarray) -> np.ndarray:
    """Torch reference of ToyProgram for (N,3,S,S) -> (N,S,S), with the bf16 input rounding."""
    x = torch.from_numpy(frames).bfloat16().float()
    return torch.relu(2 * x + 1).sum(1).numpy()


def frames(n: int, seed: int = 0) -> np.ndarray:
    """Return n frames that clearly differ (each offset by its index, so no two are alike)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 3, S, S)).astype(np.float32)
    return base + np.arange(n, dtype=np.float32)[:, None, None, None] * 0.5


def assert_own_output(outs: np.ndarray, inputs: np.ndarray) -> None:
    """Each output matches its own input's reference, and not a neighbour's."""
    ref = reference(inputs)
    for i in range(len(inputs)):
        err_own = float(np.abs(outs[i] - ref[i]).max())
        assert err_own < 0.25, f'frame {i}: max error {err_own} vs its own reference'
        for j in range(len(inputs)):
            if j != i:
                assert float(np.abs(outs[i] - ref[j]).max()) > 1.0, f'frame {i} looks like {j}'


def post_capture(log, device_ids):
    """Return the log entries of one chip after its last trace capture ended."""
    entries = [e for e in log if len(e) > 1 and e[1] == tuple(device_ids)]
    last_end = max(i for i, e in enumerate(entries) if e[0] == 'end_trace_capture')
    return entries[last_end + 1:]


def check_2cq_order(entries, trace_in: int) -> int:
    """
    Check the trace_2cq event order in a chip's log; return the number of copies checked.

    Raise AssertionError unless every input copy (after the first) waited on CQ1 for an
    event that CQ0 recorded after the previous frame's input-consuming trace (trace_in).
    """
    recorded_at = {}         # CQ0 event id -> log position
    exec_in_since_copy = None
    awaited = None           # the event CQ1 last waited for
    copies = 0
    for i, e in enumerate(entries):
        kind = e[0]
        if kind == 'record_event' and e[2] == CQ_COMPUTE:
            recorded_at[e[3]] = i
        elif kind == 'execute_trace' and e[3] == trace_in:
            exec_in_since_copy = i
        elif kind == 'wait_for_event' and e[2] == 1:
            awaited = e[3]
        elif kind == 'copy_h2d':
            assert e[2] == 1, f'input copy on CQ{e[2]}, expected CQ1'
            if copies:   # the first copy after capture follows the capture's own event
                ok = (exec_in_since_copy is not None and awaited in recorded_at
                      and recorded_at[awaited] > exec_in_since_copy)
                assert ok, (f'copy {copies} waited for an event recorded before the previous '
                            'trace consumed its input')
            copies += 1
            exec_in_since_copy = None
    return copies


def toy_factory(force_fallback=False):
    """Return a tt_backend model factory that builds a ToyProgram per chip."""
    def factory(loaded, chip, opts, fallbacks, prepared):
        return ToyProgram(fallbacks, force_fallback=force_fallback)
    return factory
