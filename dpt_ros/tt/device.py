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
import threading

from dpt_ros.errors import BackendError, BackendUnavailable
from dpt_ros.vocabulary import EXECUTION_MODES, TT_DEVICES

log = logging.getLogger('dpt_ros.tt.device')

# Same sizes as the reference DPT-Large demo: conv2d halo buffers live in L1_SMALL; one
# DPT-Large trace (24 ViT-L blocks + neck + head) fits in 8 MiB of trace region.
L1_SMALL_SIZE = 24576
TRACE_REGION_SIZE = 8 * 1024 * 1024
# Set only by the tests' mock-device dry-run (test/tt_mock_device), never by users.
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


def open_devices(device: str = 'wormhole_n300', dp: int = 1, *, execution_mode: str = 'trace_2cq',
                 l1_small_size: int = L1_SMALL_SIZE,
                 trace_region_size: int | None = None) -> TtDevices:
    """
    Open `device` for `dp` data-parallel pipelines (one chip each).

    dp 1 opens a 1x1 mesh (an N150, or one chip of a bigger board); dp > 1 opens a 1xdp mesh
    (N300: 1x2, T3000: up to 1x8) and splits it into dp 1x1 submeshes. trace modes get a
    trace region, trace_2cq two command queues. Raises BackendUnavailable when ttnn is
    missing or no device opens, BackendError for an impossible request (dp larger than the
    board).
    """
    if execution_mode not in EXECUTION_MODES:
        raise BackendError(f"unknown tt execution mode '{execution_mode}'; choose one of: "
                           f"{', '.join(EXECUTION_MODES)}")
    chips = chips_for(device)
    if dp < 1 or dp > chips:
        raise BackendError(f'dp {dp} is not possible on {device} ({chips} chip(s)); use dp 1'
                           + (f' to {chips}' if chips > 1 else ''))
    ttnn = import_ttnn()
    num_cqs = 2 if execution_mode == 'trace_2cq' else 1
    if trace_region_size is None:
        trace_region_size = int(os.environ.get('DPT_TT_TRACE_REGION_SIZE', TRACE_REGION_SIZE))
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
        mesh = ttnn.open_mesh_device(mesh_shape=ttnn.MeshShape(1, dp),
                                     l1_small_size=l1_small_size,
                                     trace_region_size=trace_region_size,
                                     num_command_queues=num_cqs)
    except Exception as exc:  # RuntimeError('TT_FATAL ... No chips detected ...') here
        raise BackendUnavailable(
            f'no Tenstorrent device could be opened as {device} (mesh 1x{dp}, '
            f'{num_cqs} CQ): {summarize_error(exc)}') from exc
    chips_list = _split(ttnn, mesh, device, dp)
    ids = [f'{device}:{i}' for i in range(dp)]
    log.info('opened %s as %s (%d CQ, trace region %d B, l1_small %d B)', device,
             ', '.join(ids), num_cqs, trace_region_size, l1_small_size)
    return TtDevices(mesh=mesh, chips=chips_list, kind=device, num_command_queues=num_cqs,
                     trace_region_size=trace_region_size, ids=ids)


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
