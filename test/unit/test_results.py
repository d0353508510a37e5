"""evaluation/results.py: the evaluation result, its JSON (the report's keys) and its files."""
import json

from dpt_ros.evaluation.results import EvalResult
import numpy as np

OFFLINE_KEYS = ['mode', 'evaluated', 'weights_random', 'throughput', 'pcc', 'backend',
                'accuracy', 'warnings', 'frames', 'title', 'input', 'summary']


def _result(**changes) -> EvalResult:
    values = {
        'mode': 'offline', 'evaluated': 2, 'weights_random': True,
        'throughput': {'frames_evaluated': 2, 'fps_e2e': 12.5,
                       'stage_ms_mean': {'inference': 3.0}},
        'pcc': {'pcc_min': 0.99, 'per_frame': [0.99, 1.0]}, 'backend': {'name': 'torch'},
        'accuracy': {}, 'warnings': ['w'], 'frames': [{'index': 0, 'latency_ms': 4.0}],
        'title': 'bag (offline)', 'input': {'bag': '/x'}, 'summary': {'mode': 'offline'},
        'strips': [('frame 0', np.zeros((4, 8, 3), np.uint8))], 'latencies_ms': [4.0, 5.0],
        'out_times_s': [0.1, 0.2], 'target_fps': None}
    values.update(changes)
    return EvalResult(**values)


def test_result_json_keeps_the_report_keys_and_round_trips():
    res = _result()
    doc = json.loads(json.dumps(res.as_json()))
    assert list(doc) == OFFLINE_KEYS
    assert not {'strips', 'latencies_ms', 'out_times_s', 'target_fps'} & set(doc)
    again = EvalResult.from_json(doc)
    assert json.dumps(again.as_json()) == json.dumps(res.as_json())
    assert again.strips == [] and again.latencies_ms == []


def test_replay_result_has_no_pcc_section():
    res = _result(mode='replay', pcc=None)
    keys = list(res.as_json())
    assert 'pcc' not in keys
    assert keys == [k for k in OFFLINE_KEYS if k != 'pcc']
    assert EvalResult.from_json(res.as_json()).pcc is None


def test_offline_without_pcc_frames_writes_an_empty_section():
    assert _result(pcc={}).as_json()['pcc'] == {}


def test_write_report_adds_only_report_files(tmp_path):
    res = _result()
    paths = res.write_report(tmp_path)
    doc = json.loads((tmp_path / 'report.json').read_text())
    assert list(doc) == OFFLINE_KEYS + ['report_files']
    assert len(paths['strips']) == 1 and doc['report_files']['strips'] == ['strips/frame_000.png']
