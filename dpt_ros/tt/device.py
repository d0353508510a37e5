"""
Open and close Tenstorrent devices for the TT backend: N150 (1 chip), N300 (1x2), T3000 (1x8).

dp chips are opened as one 1xdp mesh with two command queues (CQ0 runs the traced model, CQ1
writes inputs), an L1_SMALL region for convolutions and a trace region, and then split into
1x1 submeshes: one independent traced pipeline per chip (data parallel, B=1 per chip). A
T3000's 2x4 mesh opens as a 1x8 line (ttnn maps it onto the board's ethernet ring); data
parallel needs no particular shape, only the chips.

`ttnn` is imported lazily so that `dpt_ros` imports on machines without it. Every way the
device can fail to come up (ttnn missing, "No chips detected", a driver error) is turned into
`BackendUnavailable` whose message says the cause in one line, so the registry can fall back to
CPU and log why, instead of printing a C++ backtrace.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import logging
import os
import re
import threading

from dpt_ros.errors import BackendError, BackendUnavailable
from dpt_ros.tt.configs import device_grid
from dpt_ros.vocabulary import EXECUTION_MODES, TT_DEVICES, TT_DISPATCH_CORES

log = logging.getLogger('dpt_ros.tt.device')

# conv2d halo buffers live in L1_SMALL (the reference DPT-Large demo's size). The trace region
# holds a chip's captured commands: DPT-Large runs ~612 device programs a frame at 384 (more at
# 512); ViT-B's 2CQ test sizes ~1.75 MB for ~220 programs (~8 KB each), so DPT-Large needs
# ~5 MB at that rate, and command size grows with the cores an op runs on. 32 MiB (what
# tt-metal's Depth-Anything-V2 port, ViT-L + DPT head, opens with) leaves a ~6x margin for
# 32 MiB of a chip's 12 GiB of DRAM. `trace_region_mb` overrides it.
L1_SMALL_SIZE = 24576
TRACE_REGION_MB = 32
TRACE_REGION_SIZE = TRACE_REGION_MB << 20
# Dispatch cores (vocabulary.TT_DISPATCH_CORES): auto = ttnn's choice for the board (ETH on an
# N300 / T3000: an 8x8 grid per chip; WORKER on an N150: 8x8), worker = a row of Tensix cores
# dispatches (an N300 chip then computes on 8x7), eth = ethernet cores dispatch.
# Set only by the tests' mock-device dry-run (test/support/tt_mock_device), never by users.
_mock_cluster_allowed = False


def allow_mock_cluster(allowed: bool = True) -> None:
    """
    Let open_devices open a MOCK cluster (or, with allowed=False, refuse one again).

    It is meant for the dry-run harness, which stands in for the kernel compiler and device
    execution. Without it a mocked cluster is refused.
    """
    global _mock_cluster_allowed
    _mock_cluster_allowed = bool(allowed)


def import_ttnn():
    """Import ttnn or raise BackendUnavailable naming the cause."""
    try:
        import ttnn  # noqa: PLC0415 - lazy on purpose: the package imports without ttnn
    except ImportError as exc:
        raise BackendUnavailable(
            f'ttnn is not installed ({exc}); install ttnn==0.81.1 (scripts/setup_env.sh) to '
            'run on a Tenstorrent device') from exc
    except Exception as exc:  # a broken install raises all sorts (OSError on .so, ...)
        raise BackendUnavailable(f'ttnn failed to import: {type(exc).__name__}: '
                                 f'{summarize_error(exc)}') from exc
    return ttnn


def summarize_error(exc: BaseException) -> str:
    r"""
    Return one readable line from a TT_FATAL message (drops the file prefix and backtrace).

    tt-metal errors look like 'TT_FATAL @ file:line: cond\ninfo:\nNo chips detected in the
    cluster\nbacktrace:\n --- ...'; the 'info' line is the part a person can act on.
    """
    text = str(exc).split('backtrace:')[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if 'info:' in lines:
        after = lines[lines.index('info:') + 1:]
        if after:
            return ' '.join(after)
    return lines[0] if lines else type(exc).__name__


def chips_for(device: str) -> int:
    """Return the number of chips of a device kind; raise BackendError for an unknown kind."""
    if device not in TT_DEVICES:
        raise BackendError(f"unknown TT device '{device}'; choose one of: "
                           f"{', '.join(sorted(TT_DEVICES))}")
    return TT_DEVICES[device]


@dataclass
class TtDevices:
    """An opened mesh plus the per-chip devices the pipelines run on."""

    mesh: object                      # ttnn.MeshDevice (the parent 1xdp mesh)
    chips: list                       # one ttnn.MeshDevice per pipeline (1x1 submeshes)
    kind: str                         # 'wormhole_n300', ...
    num_command_queues: int
    trace_region_size: int
    ids: list[str] = field(default_factory=list)   # 'wormhole_n300:0', 'wormhole_n300:1'
    dispatch: str = ''                # the dispatch core type opened with: 'eth' | 'worker'

    def grids(self) -> list[str]:
        """Each chip's compute-with-storage grid as 'XxY' (8x8, or 8x7 under WORKER)."""
        return ['%dx%d' % device_grid(chip) for chip in self.chips]
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def dp(self) -> int:
        return len(self.chips)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """
        Close submeshes, then the parent mesh. Idempotent; never raises on a second call.

        Traces must be released before this (the executors do that in `release()`), because
        a trace lives in the device's trace region and dies with it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        ttnn = import_ttnn()
        errors = []
        for chip in self.chips:
            if chip is self.mesh:
                continue
            try:
                ttnn.close_mesh_device(chip)
            except Exception as exc:  # keep closing the rest; report once below
                errors.append(summarize_error(exc))
        try:
            ttnn.close_mesh_device(self.mesh)
        except Exception as exc:
            errors.append(summarize_error(exc))
        if errors:
            log.warning('closing %s reported: %s', self.kind, '; '.join(errors))
        else:
            log.info('closed %s (%d chip(s))', self.kind, len(self.chips))


def check_dispatch(dispatch: str, execution_mode: str, dp: int) -> None:
    """
    Raise BackendError (one line) for a dispatch setting that cannot open.

    WORKER dispatch of 2+ chips with 2 command queues needs more dispatch cores than a
    Wormhole chip's dispatch row has (ttnn 0.81.1 on an N300: "No more available dispatch
    cores on device 0 to assign").
    """
    if dispatch not in TT_DISPATCH_CORES:
        raise BackendError(f"dispatch_core '{dispatch}': one of "
                           f"{', '.join(TT_DISPATCH_CORES)}")
    if dispatch == 'worker' and execution_mode == 'trace_2cq' and dp > 1:
        raise BackendError(
            f'dispatch_core worker cannot run trace_2cq on {dp} chips: 2 command queues per '
            "chip need more dispatch cores than a Wormhole chip's worker row has; use "
            'dispatch_core auto (ethernet dispatch) or execution_mode trace')


def open_devices(device: str = 'wormhole_n300', dp: int = 1, *, execution_mode: str = 'trace_2cq',
                 l1_small_size: int = L1_SMALL_SIZE, trace_region_size: int | None = None,
                 dispatch: str = 'auto') -> TtDevices:
    """
    Open `device` for `dp` data-parallel pipelines (one chip each).

    dp 1 opens a 1x1 mesh (an N150, or one chip of a bigger board); dp > 1 opens a 1xdp mesh
    (N300: 1x2, T3000: up to 1x8) and splits it into dp 1x1 submeshes. trace modes get a
    trace region (default TRACE_REGION_SIZE), trace_2cq two command queues; `dispatch` picks
    the dispatch cores (vocabulary.TT_DISPATCH_CORES). Raises BackendUnavailable when ttnn is
    missing or no device opens, BackendError for an impossible request (dp larger than the
    board, WORKER dispatch with trace_2cq on 2+ chips).
    """
    if execution_mode not in EXECUTION_MODES:
        raise BackendError(f"unknown tt execution mode '{execution_mode}'; choose one of: "
                           f"{', '.join(EXECUTION_MODES)}")
    chips = chips_for(device)
    if dp < 1 or dp > chips:
        raise BackendError(f'dp {dp} is not possible on {device} ({chips} chip(s)); use dp 1'
                           + (f' to {chips}' if chips > 1 else ''))
    check_dispatch(dispatch, execution_mode, dp)
    ttnn = import_ttnn()
    num_cqs = 2 if execution_mode == 'trace_2cq' else 1
    if trace_region_size is None:
        trace_region_size = TRACE_REGION_SIZE
    if execution_mode == 'eager':
        trace_region_size = 0
    mock = os.environ.get('TT_METAL_MOCK_CLUSTER_DESC_PATH')
    if mock and not _mock_cluster_allowed and \
            getattr(ttnn.open_mesh_device, '__module__', '').startswith('ttnn'):
        # With a mocked cluster tt-metal reports chips that do not exist; a real open then
        # half-succeeds and crashes in the first device call (seen: a segfault), so refuse.
        raise BackendUnavailable(
            f'no Tenstorrent device: the cluster is mocked (TT_METAL_MOCK_CLUSTER_DESC_PATH='
            f'{mock}), so there is no real {device} to open')
    try:
        # Resolving the config needs the cluster: 'No chips detected' may come from here.
        dispatch_config = ttnn.DispatchCoreConfig(
            {'eth': ttnn.DispatchCoreType.ETH,
             'worker': ttnn.DispatchCoreType.WORKER}.get(dispatch))
        mesh = ttnn.open_mesh_device(mesh_shape=ttnn.MeshShape(1, dp),
                                     l1_small_size=l1_small_size,
                                     trace_region_size=trace_region_size,
                                     num_command_queues=num_cqs,
                                     dispatch_core_config=dispatch_config)
    except Exception as exc:  # RuntimeError('TT_FATAL ... No chips detected ...') here
        raise BackendUnavailable(
            f'no Tenstorrent device could be opened as {device} (mesh 1x{dp}, '
            f'{num_cqs} CQ, dispatch {dispatch}): {summarize_error(exc)}') from exc
    chips_list = _split(ttnn, mesh, device, dp)
    ids = [f'{device}:{i}' for i in range(dp)]
    opened = TtDevices(mesh=mesh, chips=chips_list, kind=device, num_command_queues=num_cqs,
                       trace_region_size=trace_region_size, ids=ids,
                       dispatch=str(dispatch_config.type).rsplit('.', 1)[-1].lower())
    log.info('opened %s as %s (%d CQ, %s dispatch, grid %s, trace region %d B, l1_small %d B)',
             device, ', '.join(ids), num_cqs, opened.dispatch, ','.join(opened.grids()),
             trace_region_size, l1_small_size)
    return opened


def trace_bytes(chip) -> int | None:
    """
    Return the bytes of `chip`'s trace region its captured traces hold, or None if unknown.

    ttnn 0.81.1 has no call for a trace's size; its memory view of the TRACE buffer type
    (allocated bytes per DRAM bank, times the banks) is that figure on a card. A mock's trace
    holds no commands (a page per bank).
    """
    ttnn = import_ttnn()
    try:
        view = ttnn._ttnn.device.GetMemoryView(chip, ttnn.BufferType.TRACE)
        return int(view.total_bytes_allocated_per_bank) * int(view.num_banks)
    except Exception:  # an older / newer ttnn, a stand-in device: say unknown
        return None


_TRACE_TOO_BIG = re.compile(r'Creating trace buffers of size (\d+)B on MeshDevice (\S+), but '
                            r'only (\d+)B is allocated for trace region')


def trace_region_refusal(exc: BaseException) -> tuple[int, int] | None:
    """
    Return (bytes needed, bytes in the region) when `exc` is tt-metal refusing a trace.

    tt-metal raises at end_trace_capture (mesh_trace.cpp): 'TT_FATAL ...
    get_trace_buffers_size() <= trace_region_size / info: / Creating trace buffers of size
    123813888B on MeshDevice 0, but only 120000000B is allocated for trace region.'
    """
    m = _TRACE_TOO_BIG.search(str(exc))
    return (int(m.group(1)), int(m.group(3))) if m else None


def _split(ttnn, mesh, device: str, dp: int) -> list:
    """Return the 1xdp mesh as dp 1x1 chips with program caches; close the mesh on failure."""
    try:
        if dp == 1:
            chips_list = [mesh]
        else:
            chips_list = list(mesh.create_submeshes(ttnn.MeshShape(1, 1)))
            if len(chips_list) != dp:
                raise BackendError(f'expected {dp} submeshes of the 1x{dp} mesh, got '
                                   f'{len(chips_list)}')
        for chip in chips_list:
            # Replays hit the program cache; a miss inside a trace would be an error.
            chip.enable_program_cache()
        return chips_list
    except Exception as exc:
        try:
            ttnn.close_mesh_device(mesh)
        except Exception:  # the first error is the one to report
            pass
        if isinstance(exc, BackendError):
            raise
        raise BackendUnavailable(f'{device}: splitting the mesh failed: '
                                 f'{summarize_error(exc)}') from exc


def detect() -> tuple[bool, str]:
    """
    Return (True, '') when a Tenstorrent device is present, else (False, reason).

    Cheap: nothing is opened. Used by the hardware tests and the benchmark to skip/exit with
    a clear reason.
    """
    mock = os.environ.get('TT_METAL_MOCK_CLUSTER_DESC_PATH')
    if mock:
        # tt-metal then reports the chips described in that file, none of which exists.
        card = ('no /dev/tenstorrent on this machine' if not os.path.exists('/dev/tenstorrent')
                else 'a card may exist, but')
        return False, (f'no Tenstorrent device: {card}; TT_METAL_MOCK_CLUSTER_DESC_PATH={mock} '
                       'mocks the cluster in this process')
    try:
        ttnn = import_ttnn()
    except BackendUnavailable as exc:
        return False, str(exc)
    try:
        n = int(ttnn.GetNumAvailableDevices())
    except Exception as exc:  # 'No chips detected in the cluster' raises here
        return False, f'no Tenstorrent device detected: {summarize_error(exc)}'
    if n < 1:
        return False, 'no Tenstorrent device detected (0 devices available)'
    return True, ''
