"""
bench/first_card.py end to end without a card: on the device double and on a mock board.

The double gives numbers (a CPU stand-in's, marked as such): every stage's PCC on both chips
of an N300, every mode at dp 1 and 2, a soak; the mock gives ttnn's host-side checks and the
op list the estimate is computed on. Both leave the card-only parts skipped with a reason.
The soak's hang watchdog is tested with a backend that never answers. The tiny config at
128 px keeps it cheap; the plumbing is the point.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import threading

from dpt_ros.demo.stage_pcc import stage_names
import numpy as np
import pytest
from support import paths

ROOT = pathlib.Path(paths.ROOT)
# One size, two modes (trace and trace_2cq take the same path here), one timed call each.
SMALL = ['--sizes', '128', '--weights', 'tiny-random', '--modes', 'eager,trace_2cq',
         '--warmup', '1', '--repeat', '1']


def first_card():
    spec = importlib.util.spec_from_file_location('first_card', ROOT / 'bench' / 'first_card.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Stuck:
    """A backend whose third call never returns (until released)."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def infer(self, batch):
        self.calls += 1
        if self.calls == 3:
            self.release.wait()
        return np.zeros((len(batch), 4, 4), np.float32)


def test_a_call_that_does_not_come_back_is_reported_as_a_hang():
    fc = first_card()
    stuck = _Stuck()
    try:
        result = fc.soak(stuck, np.zeros((2, 4, 4, 3), np.uint8), frames=10, timeout_s=0.5)
    finally:
        stuck.release.set()
    assert result['status'] == 'hang'
    assert result['hang'] == {'frame': 2, 'timeout_s': 0.5}
    assert result['frames_done'] == 2 and stuck.calls == 3       # no call after the hang


def test_failed_calls_are_counted_and_the_soak_goes_on():
    fc = first_card()

    class Flaky:
        calls = 0

        def infer(self, batch):
            Flaky.calls += 1
            if Flaky.calls == 2:
                raise RuntimeError('chip fault')
            return np.ones((len(batch), 4, 4), np.float32)
    result = fc.soak(Flaky(), np.zeros((1, 4, 4, 3), np.uint8), frames=4, timeout_s=30)
    assert result['status'] == 'failed' and result['frames_done'] == 3
    assert result['failures'] == [{'frame': 1, 'error': 'RuntimeError: chip fault'}]


def test_the_whole_run_on_the_device_double(tmp_path):
    pytest.importorskip('ttnn')
    fc = first_card()
    rc = fc.main(['--device', 'wormhole_n300', '--double', *SMALL, '--soak', '2',
                  '--hang-timeout', '300', '--out', str(tmp_path)])
    rep = json.loads((tmp_path / 'first_card.json').read_text())
    page = (tmp_path / 'first_card.html').read_text()
    assert rc == 0, rep['verdict']
    assert rep['verdict'] == {'works': True, 'failed': [], 'hang': False,
                              'skipped': []}
    assert rep['target'] == 'double' and 'not a card' in rep['not_a_card']
    board = rep['board']
    assert board['grid_per_chip'] == [[8, 8], [8, 8]] and board['ttnn_version'] == '0.81.1'
    assert board['harvesting']['status'] == 'skipped'
    assert rep['precisions'] == ['accurate', 'fast']        # both profiles by default
    for run in ('128 accurate', '128 fast'):
        chips = rep['pcc'][run]['per_chip']
        assert sorted(chips) == ['wormhole_n300:0', 'wormhole_n300:1']
        for scores in chips.values():
            assert sorted(scores) == sorted(stage_names()) and min(scores.values()) >= 0.99
    assert sorted(rep['perf']) == sorted(f'128 {p} {m} dp{d}' for p in ('accurate', 'fast')
                                         for m in ('eager', 'trace_2cq') for d in (1, 2))
    for name, p in rep['perf'].items():
        assert p['status'] == 'ok' and p['fps_device'] > 0 and p['fps_e2e'] > 0, name
        assert p['program_config_fallback_total'] == 0
        assert p['estimate']['status'] == 'skipped' and p['timing_note']
        assert (p['captures'] > 0) == (p['mode'] != 'eager'), name   # 2 traces per chip
    assert rep['perf']['128 fast trace_2cq dp2']['captures'] == 4
    assert rep['estimate']['128 accurate']['status'] == 'skipped'
    soak = rep['soak']
    assert soak['status'] == 'ok' and soak['frames_done'] == 2 and soak['images'] == 4
    assert soak['chip_stats']['chip0 frames'] == soak['chip_stats']['chip1 frames'] == 2
    assert 'WORKS' in page and 'wormhole_n300:1' in page and 'fusion3' in page


def test_the_whole_run_on_a_mock_board(tmp_path):
    """Host checks on a mock N150 in its own process; speed and PCC skipped, with reasons."""
    pytest.importorskip('ttnn')
    from support import tt_mock_device
    try:
        tt_mock_device.prepare()
    except tt_mock_device.Unavailable as exc:
        if os.environ.get('DPT_TT_MOCK_REQUIRED') == '1':
            pytest.fail(f'mock-device harness required here but unavailable: {exc}')
        pytest.skip(f'mock-device dry-run: {exc}')
    estimate = tmp_path / 'estimate.json'
    estimate.write_text(json.dumps({'calibration': _calibration()}))
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'bench' / 'first_card.py'), '--device', 'wormhole_n150',
         '--mock', *SMALL, '--soak', '2', '--precisions', 'accurate',     # fast: dry-run's
         '--estimate', str(estimate), '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=1200, cwd=str(ROOT))
    tail = (proc.stdout + proc.stderr)[-3000:]
    rep = json.loads((tmp_path / 'first_card.json').read_text())
    assert rep['target'] == 'mock', tail
    assert 'readbacks are zeros' in rep['selfcheck']
    assert rep['board']['harvesting']['status'] == 'ok'
    assert rep['board']['grid_per_chip'] == [[8, 8]]
    pcc = rep['pcc']['128 accurate']
    assert pcc['status'] == 'skipped' and 'readbacks are zeros' in pcc['reason'], pcc
    assert set(pcc['per_chip']['wormhole_n150:0']) >= {'embeddings', 'fusion3', 'depth'}
    for name, p in rep['perf'].items():
        assert p['status'] == 'ok' and 'no kernels' in p['timing_note'], (name, p)
    est = rep['estimate']['128 accurate']
    assert est['status'] == 'ok' and est['op_count'] > 100, est
    assert rep['perf']['128 accurate trace_2cq dp1']['estimate']['board'] == 'n150'
    assert rep['soak']['status'] == 'ok' and rep['soak']['frames_done'] == 2
    assert rep['verdict']['failed'] == [] and rep['verdict']['skipped'] == ['pcc 128 accurate']
    assert proc.returncode == 0, tail


def _calibration():
    """Return a calibration from a small synthetic ViT op list (any one serves here)."""
    from dpt_ros.perf import tt_estimate
    from support.tt_op_lists import vit_like
    return tt_estimate.calibrate(vit_like())
