"""
The fallback policy.

A backend that cannot start falls back to torch CPU, counted, or fails clearly when fallback is
disabled.

Here there is no Tenstorrent card, so asking for 'tt' cannot start: either the tt backend
module opens no device ("No chips detected") or it cannot be imported; both must end in
BackendUnavailable. Where a card exists these tests skip (the TT hardware tests cover it).
"""
import json
import logging

from dpt_ros.backends import BackendOptions, BackendUnavailable, create_backend
from dpt_ros.serving.pipeline import DepthPipeline
from dpt_ros.serving.supervisor import BackendSupervisor
import numpy as np
import pytest

TT_OPTS = BackendOptions(weights='tiny-random', device='wormhole_n300', dp=2, batch_size=2)


@pytest.fixture
def started_tt(caplog):
    with caplog.at_level(logging.WARNING, logger='dpt_ros.backends'):
        started = create_backend('tt', TT_OPTS)
    if not started.fell_back:
        started.backend.close()
        pytest.skip('a TT device opened here: the no-device fallback path cannot be exercised')
    yield started
    started.backend.close()


def test_tt_without_device_falls_back_to_torch_cpu(started_tt, caplog):
    assert started_tt.requested == 'tt'
    assert started_tt.backend.info.name == 'torch'
    assert started_tt.backend.info.device == 'cpu'
    assert started_tt.backend.info.dp == 1
    assert started_tt.fallback_reason and started_tt.fallback_reason.strip()
    warnings = [r.getMessage() for r in caplog.get_records('setup')
                if r.levelno >= logging.WARNING]
    assert any(started_tt.fallback_reason in m and 'falling back' in m for m in warnings)


def test_pipeline_counts_the_fallback_and_still_runs(started_tt):
    pipe = DepthPipeline(BackendSupervisor(started_tt))
    assert pipe.supervisor.started.fell_back and pipe.supervisor.started.requested == 'tt'
    res = pipe.process(np.full((120, 160, 3), 90, np.uint8))
    assert res.depth.shape == (120, 160)
    snap = pipe.perf.snapshot()
    assert snap['backend_fallback_count'] == 1
    assert snap['reasons'] == {f'backend_fallback_count:{started_tt.fallback_reason}': 1}


def test_fallback_disabled_fails_clearly():
    try:
        started = create_backend('tt', TT_OPTS, allow_fallback=False)
    except BackendUnavailable as exc:
        msg = str(exc)
        assert msg.strip()
        assert 'tt' in msg.lower() or 'device' in msg.lower() or 'chips' in msg.lower()
        assert '\n' not in msg.strip()   # one line a person can read, not a traceback
        return
    started.backend.close()
    pytest.skip('a TT device opened here')


def test_runner_records_a_non_strict_tt_fallback(tmp_path):
    from dpt_ros.demo import runner
    perf = tmp_path / 'perf.json'
    rc = runner.main(['--tt-run', '--device', 'wormhole_n300', '--dp', '2', '--no-strict',
                      '--weights', 'tiny-random', '--warmup', '0', '--repeat', '1',
                      '--dump-perf', str(perf)])
    assert rc == 0
    data = json.loads(perf.read_text())
    if not data['backend']['fell_back']:
        pytest.skip('a TT device opened here')
    assert data['backend_fallback_count'] == 1
    assert data['fallback_counts']['backend_fallback_count'] == 1
    assert data['backend']['requested'] == 'tt' and data['backend']['running'] == 'torch'
    assert data['backend']['fallback_reason']
    assert any(k.startswith('backend_fallback_count:') for k in data['fallback_reasons'])
    header = json.loads((tmp_path / 'perf_header.json').read_text())
    assert header['fallback_counts']['backend_fallback_count'] == 1


def test_strict_tt_run_refuses_to_fall_back(tmp_path, capsys):
    from dpt_ros.demo import runner
    perf = tmp_path / 'perf.json'
    rc = runner.main(['--tt-run', '--device', 'wormhole_n150', '--weights', 'tiny-random',
                      '--warmup', '0', '--repeat', '1', '--dump-perf', str(perf)])
    if rc == 0 and json.loads(perf.read_text())['backend']['running'] == 'tt':
        pytest.skip('a TT device opened here')
    assert rc == 1
    err = capsys.readouterr().err
    assert 'nothing processed' in err and '--no-strict' in err
    assert not perf.exists()


def test_cuda_request_without_cuda_falls_back_in_the_runner(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip('CUDA exists here')
    from dpt_ros.demo import runner
    perf = tmp_path / 'perf.json'
    assert runner.main(['--device', 'cuda', '--weights', 'tiny-random', '--warmup', '0',
                        '--repeat', '1', '--dump-perf', str(perf)]) == 0
    data = json.loads(perf.read_text())
    assert data['backend_fallback_count'] == 1 and 'CUDA' in data['backend']['fallback_reason']
    assert runner.main(['--device', 'cuda', '--no-fallback', '--weights', 'tiny-random',
                        '--warmup', '0', '--repeat', '1']) == 1
