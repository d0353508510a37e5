"""serving/supervisor.py and the pipeline over it: calls in flight, fallbacks, close once."""
from __future__ import annotations

from dataclasses import dataclass
import threading

from dpt_ros.backends import StartedBackend
from dpt_ros.backends.base import BackendInfo
from dpt_ros.perf.stats import PerfStats
from dpt_ros.serving.pipeline import DepthPipeline
from dpt_ros.serving.supervisor import BackendSupervisor
import numpy as np
import pytest

S = 32
WAIT = 10.0


class FakeBackend:
    """Returns zeros; `gate` (an Event) holds every call until set; `fail` makes it raise."""

    def __init__(self, name: str, device: str = 'test', gate: threading.Event | None = None):
        self.info = BackendInfo(name=name, device=device, dtype='fp32', image_size=S,
                                execution_mode='eager', dp=1, batch_size=1, model_name='fake',
                                weights='none', input_format='normalized')
        self.gate = gate
        self.entered = threading.Event()
        self.fail = False
        self.calls = 0
        self.closed = 0
        self.closed_while_running = False
        self._running = 0

    def infer(self, batch):
        self.calls += 1
        self._running += 1
        self.entered.set()
        try:
            if self.gate is not None:
                assert self.gate.wait(WAIT)
            if self.fail:
                raise RuntimeError(f'{self.info.name} died')
            return np.zeros((len(batch), S, S), np.float32)
        finally:
            self._running -= 1

    def fallback_counts(self):
        return {}

    def close(self):
        self.closed_while_running |= self._running > 0
        self.closed += 1


@dataclass
class Health:
    consecutive_failures: int
    last_failure: str


def make(primary, *, after=3, start_fallback=None, fallback=None):
    perf = PerfStats()
    if start_fallback is None and fallback is not None:
        def start_fallback():
            return fallback
    sup = BackendSupervisor(StartedBackend(primary, requested='tt'),
                            start_fallback=start_fallback, fallback_after=after, drain_s=WAIT,
                            perf=perf)
    return sup, perf


def test_using_counts_calls_in_flight_per_backend():
    gate = threading.Event()
    b = FakeBackend('tt', gate=gate)
    sup, _ = make(b)

    def call():
        with sup.using() as backend:
            backend.infer(np.zeros((1, 3, S, S)))
    t = threading.Thread(target=call)
    t.start()
    assert b.entered.wait(WAIT)
    assert sup.in_flight(b) == 1
    gate.set()
    t.join(WAIT)
    assert sup.in_flight(b) == 0


def test_fewer_failures_than_the_limit_do_not_swap():
    b, fb = FakeBackend('tt'), FakeBackend('torch', 'cpu')
    sup, perf = make(b, after=3, fallback=fb)
    sup.on_failure(Health(2, 'backend_error: x'))
    assert sup.wait_swap(WAIT)
    assert sup.backend is b and perf.counters.get('backend_fallback_count', 0) == 0


def test_swap_counts_reason_then_closes_the_old_backend_once():
    b, fb = FakeBackend('tt'), FakeBackend('torch', 'cpu')
    sup, perf = make(b, after=3, fallback=fb)
    for n in (3, 4, 5):   # repeated reports: one swap
        sup.on_failure(Health(n, 'backend_error: RuntimeError: tt died'))
    assert sup.wait_swap(WAIT)
    assert sup.backend is fb
    assert sup.fallback_reason == 'runtime: backend_error: RuntimeError: tt died'
    assert sup.started.requested == 'tt'
    assert perf.counters['backend_fallback_count'] == 1
    assert perf.snapshot()['reasons'] == {
        'backend_fallback_count:runtime: backend_error: RuntimeError: tt died': 1}
    assert b.closed == 1 and fb.calls == 1   # the fallback's warm-up call
    sup.close()
    sup.close()
    assert fb.closed == 1 and b.closed == 1


def test_swap_while_a_call_is_in_flight_waits_for_it_before_closing():
    gate = threading.Event()
    b, fb = FakeBackend('tt', gate=gate), FakeBackend('torch', 'cpu')
    sup, perf = make(b, after=1, fallback=fb)
    pipe = DepthPipeline(sup)
    out = []
    t = threading.Thread(target=lambda: out.append(pipe.infer(np.zeros((1, 3, S, S),
                                                                       np.float32))))
    t.start()
    assert b.entered.wait(WAIT)
    sup.on_failure(Health(1, 'timeout: hung'))
    assert sup.wait_fallback(WAIT)
    # The new backend takes new calls while the old call still runs inside the old one.
    ok = threading.Event()
    threading.Thread(target=lambda: ok.set() if pipe.infer(
        np.zeros((1, 3, S, S), np.float32)) is not None else None).start()
    assert ok.wait(WAIT)
    assert pipe.backend is fb and sup.fallback_reason == 'runtime: timeout: hung'
    assert b.closed == 0 and sup.in_flight(b) == 1
    gate.set()
    t.join(WAIT)
    assert sup.wait_swap(WAIT)
    assert out and out[0].shape == (1, S, S)
    assert b.closed == 1 and not b.closed_while_running


def test_already_on_the_fallback_or_disabled_never_swaps():
    cpu = FakeBackend('torch', 'cpu')
    sup, _ = make(cpu, after=1, fallback=FakeBackend('torch', 'cpu'))
    sup.on_failure(Health(5, 'x'))
    assert sup.alive_threads() == [] and sup.backend is cpu
    b = FakeBackend('tt')
    sup, _ = make(b, after=0, fallback=FakeBackend('torch', 'cpu'))
    sup.on_failure(Health(5, 'x'))
    assert sup.backend is b
    sup, _ = make(b, after=1, start_fallback=None)
    sup.on_failure(Health(5, 'x'))
    assert sup.backend is b


@pytest.mark.parametrize('broken', ['start', 'first_call'])
def test_a_fallback_that_cannot_start_keeps_the_old_backend(broken):
    b, fb = FakeBackend('tt'), FakeBackend('torch', 'cpu')
    fb.fail = broken == 'first_call'

    def start():
        if broken == 'start':
            raise RuntimeError('no torch')
        return fb
    sup, perf = make(b, after=1, start_fallback=start)
    sup.on_failure(Health(1, 'x'))
    assert sup.wait_swap(WAIT)
    assert sup.backend is b and perf.counters.get('backend_fallback_count', 0) == 0
    assert b.closed == 0 and fb.closed == (1 if broken == 'first_call' else 0)


def test_close_during_the_swap_releases_both_backends_once():
    started, release = threading.Event(), threading.Event()
    b, fb = FakeBackend('tt'), FakeBackend('torch', 'cpu')

    def start():
        started.set()
        assert release.wait(WAIT)
        return fb
    sup, perf = make(b, after=1, start_fallback=start)
    sup.on_failure(Health(1, 'x'))
    assert started.wait(WAIT)
    sup.close(timeout=0.0)        # the swap is still starting the fallback
    assert b.closed == 1
    release.set()
    assert sup.wait_swap(WAIT)
    assert fb.closed == 1 and sup.backend is b
    assert perf.counters.get('backend_fallback_count', 0) == 0


class Quirky(FakeBackend):
    """A backend with a device time, a wrong output shape or broken counters, on request."""

    def __init__(self, shape=None, counts_fail=False):
        super().__init__('tt')
        self.info.device_ms = 4.0
        self.shape, self.counts_fail = shape, counts_fail

    def infer(self, batch):
        out = super().infer(batch)
        return np.zeros(self.shape, np.float32) if self.shape else out

    def fallback_counts(self):
        if self.counts_fail:
            raise RuntimeError('counter bug')
        return {'host_fallback_count': 2}


def pipeline(backend) -> DepthPipeline:
    """Return a pipeline over a fixed backend: a supervisor without a fallback starter."""
    return DepthPipeline(make(backend, after=0)[0])


def test_pipeline_records_device_time_and_refuses_a_wrong_output_shape():
    pipe = pipeline(Quirky())
    pipe.infer(np.zeros((1, 3, S, S), np.float32))
    assert pipe.perf.snapshot()['host_fallback_count'] == 2
    assert pipe.perf.snapshot()['device_fps'] == pytest.approx(250.0)   # 4 ms on the device
    bad = pipeline(Quirky(shape=(1, S, S + 1)))
    with pytest.raises(Exception, match=r'returned shape \(1, 32, 33\)'):
        bad.infer(np.zeros((1, 3, S, S), np.float32))
    quiet = pipeline(Quirky(counts_fail=True))
    assert quiet.infer(np.zeros((1, 3, S, S), np.float32)).shape == (1, S, S)  # counters skipped
    assert quiet.process_batch([]) == [] and quiet.backend.calls == 1   # no frames, no call


def test_warm_up_runs_every_stage_and_returns_a_failing_call_instead_of_raising():
    b = FakeBackend('torch', 'cpu')
    pipe = pipeline(b)
    took, error = pipe.warm_up()
    assert error is None and took >= 0.0 and b.calls == 1
    snap = pipe.perf.snapshot()
    assert snap['inference_ms'] != snap['inference_ms']   # NaN: the warm-up is not a figure
    b.fail = True
    took, error = pipeline(b).warm_up()
    assert error == 'RuntimeError: torch died'


def test_the_pipeline_takes_a_supervisor_only():
    with pytest.raises(TypeError, match='takes a serving.supervisor.BackendSupervisor, not '
                                        'FakeBackend'):
        DepthPipeline(FakeBackend('tt'))
    with pytest.raises(TypeError, match='not StartedBackend'):
        DepthPipeline(StartedBackend(FakeBackend('tt'), requested='tt'))


def test_a_start_up_fallback_is_counted_once_by_the_supervisor_with_its_reason():
    perf = PerfStats()
    started = StartedBackend(FakeBackend('torch', 'cpu'), requested='tt',
                             fallback_reason='tt: no chips detected')
    pipe = DepthPipeline(BackendSupervisor(started, perf=perf))
    assert pipe.perf is perf
    pipe.infer(np.zeros((1, 3, S, S), np.float32))
    assert perf.counters['backend_fallback_count'] == 1
    assert perf.snapshot()['reasons'] == {'backend_fallback_count:tt: no chips detected': 1}
    sup, perf = make(FakeBackend('tt'))
    DepthPipeline(sup)
    assert perf.counters.get('backend_fallback_count', 0) == 0


def test_close_releases_the_backend_through_the_supervisor_once():
    b = FakeBackend('tt')
    pipe = pipeline(b)
    pipe.close()
    pipe.close()
    assert b.closed == 1 and pipe.supervisor.closed


def test_a_prepared_frame_carries_its_size_and_context_through_one_inference():
    b = FakeBackend('torch', 'cpu')
    pipe = pipeline(b)
    rgb = np.full((20, 30, 3), 128, np.uint8)
    prepared = pipe.prepare_frame(rgb, context=('header', 'rgb'))
    assert prepared.out_hw == (20, 30) and prepared.context == ('header', 'rgb')
    assert prepared.model_input.shape == (3, S, S)
    raw = pipe.infer_prepared(prepared)
    assert raw.shape == (S, S) and b.calls == 1
    assert pipe.finish(raw, prepared.out_hw, want_color=False).depth.shape == (20, 30)
