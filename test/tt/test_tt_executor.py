"""
Tests of the TT runtime (dpt_ros/tt/executor.py, device.py) under the device double.

Device opening, trace capture/replay, the trace_2cq event protocol, data parallel over two
and eight chips (a chip that fails leaves the rotation), shutdown order, strict mode.

The device program here is a small stand-in (`ToyProgram` of support/toy_program.py: a few
real ttnn ops whose torch reference is one line), so these tests isolate the runtime; the DPT
model itself runs through the same runtime in test_tt_backend.py.
`test/support/doubles/tt_device_double.py` runs CQ1 as early as its event waits allow and CQ0
as late as possible, so a wrongly placed event shows up as a frame computed on another frame's
input.
"""
import threading

from dpt_ros.backends import BackendOptions
from dpt_ros.tt.device import L1_SMALL_SIZE, open_devices, TRACE_REGION_SIZE
from dpt_ros.tt.executor import ChipPipeline, CQ_COMPUTE, DataParallel, FrameGather
from dpt_ros.tt.fallbacks import FallbackError
import numpy as np
import pytest
from support.doubles.tt_device_double import tt_device_double
from support.toy_program import (assert_own_output, check_2cq_order, frames, post_capture, S,
                                 toy_factory, ToyProgram)


# ---------------------------------------------------------------------------- devices

def test_n300_opens_one_mesh_with_two_cqs_split_into_two_chips():
    with tt_device_double() as dd:
        devs = open_devices('wormhole_n300', 2, execution_mode='trace_2cq')
        assert list(devs.mesh.shape) == [1, 2]
        assert devs.mesh.num_command_queues == 2
        assert devs.mesh.trace_region_size == TRACE_REGION_SIZE
        assert devs.mesh.l1_small_size == L1_SMALL_SIZE
        assert len(devs.chips) == 2
        assert [c.get_device_ids() for c in devs.chips] == [[0], [1]]
        assert all(list(c.shape) == [1, 1] for c in devs.chips)
        assert devs.ids == ['wormhole_n300:0', 'wormhole_n300:1']
        devs.close()
        devs.close()   # idempotent
        closes = [e for e in dd.log if e[0] == 'close']
        assert closes == [('close', (0,)), ('close', (1,)), ('close', (0, 1))]


@pytest.mark.parametrize('mode, cqs, traced', [('eager', 1, False), ('trace', 1, True),
                                               ('trace_2cq', 2, True)])
def test_single_chip_modes_open_what_they_need(mode, cqs, traced):
    with tt_device_double(num_devices=1):
        devs = open_devices('wormhole_n150', 1, execution_mode=mode)
        assert devs.chips == [devs.mesh]
        assert devs.mesh.num_command_queues == cqs
        assert (devs.mesh.trace_region_size > 0) == traced
        assert devs.ids == ['wormhole_n150:0']
        devs.close()


# ---------------------------------------------------------------------------- traces

def _toy_pipe(mode='trace_2cq', cls=ChipPipeline):
    """Open one chip of an n300 in `mode`; return (devices, its compiled toy `cls` pipeline)."""
    devs = open_devices('wormhole_n300', 1, execution_mode=mode)
    pipe = cls(devs.chips[0], ToyProgram(), mode, S)
    pipe.compile(np.zeros((1, 3, S, S), np.float32))
    return devs, pipe


def _streamed(pipe, x):
    """Return `pipe`'s outputs for the frames of `x` streamed one at a time, concatenated."""
    return np.concatenate(list(pipe.stream(x[i:i + 1] for i in range(len(x)))))


@pytest.mark.parametrize('mode', ['eager', 'trace', 'trace_2cq'])
def test_capture_once_replay_with_different_inputs(mode):
    x = frames(5)
    with tt_device_double() as dd:
        devs, pipe = _toy_pipe(mode)
        outs = np.concatenate([pipe.run(x[i:i + 1])[0] for i in range(len(x))])
        assert_own_output(outs, x)
        # Streaming (input write of k+1 overlapping trace k) gives the same answers.
        streamed = _streamed(pipe, x)
        assert_own_output(streamed, x)
        captures = [e for e in dd.log if e[0] == 'begin_trace_capture']
        replays = [e for e in dd.log if e[0] == 'execute_trace']
        if mode == 'eager':
            assert not captures and not replays
        else:
            assert len(captures) == 2                  # trace_in + trace_main, captured once
            assert len(replays) == 2 * 2 * len(x)      # both traces, every frame, twice
        pipe.release()
        devs.close()


def test_trace_2cq_event_order_copy_never_before_input_consumed():
    x = frames(6, seed=1)
    with tt_device_double() as dd:
        devs, pipe = _toy_pipe()
        outs = _streamed(pipe, x)
        assert_own_output(outs, x)
        entries = post_capture(dd.log, devs.chips[0].get_device_ids())
        assert check_2cq_order(entries, pipe.trace_in) == len(x)
        # Reads happen on CQ1 only after CQ0's last-op event.
        reads = [i for i, e in enumerate(entries) if e[0] == 'readback']
        assert len(reads) == len(x) and all(entries[i][2] == 1 for i in reads)
        pipe.release()
        devs.close()


class EarlyEventPipeline(ChipPipeline):
    """The known bug, on purpose: 'first op done' recorded before the input is consumed."""

    def execute(self):
        import ttnn
        self._written, self._unread = None, True
        self.first_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)
        ttnn.execute_trace(self.chip, self.trace_in, cq_id=CQ_COMPUTE, blocking=False)
        ttnn.execute_trace(self.chip, self.trace_main, cq_id=CQ_COMPUTE, blocking=False)
        self.last_op_done = ttnn.record_event(self.chip, CQ_COMPUTE)


def test_the_checks_catch_an_event_recorded_too_early():
    """
    Prove that the two tests above can fail.

    The buggy order mixes frames up and the event order check rejects its log.
    """
    x = frames(4, seed=2)
    with tt_device_double() as dd:
        devs, pipe = _toy_pipe(cls=EarlyEventPipeline)
        outs = _streamed(pipe, x)
        with pytest.raises(AssertionError):
            assert_own_output(outs, x)
        with pytest.raises(AssertionError, match='before the previous trace consumed'):
            check_2cq_order(post_capture(dd.log, devs.chips[0].get_device_ids()),
                            pipe.trace_in)
        pipe.release()
        devs.close()


# ---------------------------------------------------------------------------- data parallel

def _dp(dd, device='wormhole_n300', n=2, mode='trace_2cq', batch=1):
    devs = open_devices(device, n, execution_mode=mode)
    pipes = []
    for c, cid in zip(devs.chips, devs.ids):
        program = ToyProgram()
        program.batch = batch            # frames per chip per run (throughput mode: 2)
        pipes.append(ChipPipeline(c, program, mode, S, chip_id=cid))
    dp = DataParallel(pipes)
    dp.compile(np.zeros((1, 3, S, S), np.float32))
    return devs, dp


def test_dp2_runs_one_frame_per_chip_at_once_and_keeps_order():
    import ttnn
    x = frames(2, seed=3)
    with tt_device_double() as dd:
        devs, dp = _dp(dd)
        # The double logs commands when they RUN (CQ0 lazily); to see what is in flight,
        # look at both chips' queues each time the host blocks on a barrier.
        in_flight = []
        real_sync = ttnn.synchronize_device

        def spy(device, *args, **kwargs):
            in_flight.append({tuple(c.get_device_ids()): sum(
                kind == 'trace' for kind, _, _ in c.queues[CQ_COMPUTE]) for c in devs.chips})
            return real_sync(device, *args, **kwargs)
        ttnn.synchronize_device = spy     # restored before the double uninstalls itself
        try:
            outs = dp.infer(x)
        finally:
            ttnn.synchronize_device = real_sync
        assert_own_output(outs, x)
        # At the first barrier both chips hold their frame's traces (trace_in + trace_main).
        assert in_flight[0] == {(0,): 2, (1,): 2}
        assert dp.last_perf.frames == 2 and dp.last_perf.trace_wall_ms > 0
        # More frames than chips: round robin, order kept.
        x5 = frames(5, seed=4)
        assert_own_output(dp.infer(x5), x5)
        dp.release()
        devs.close()


def test_dp2_concurrent_callers_each_get_their_own_frames():
    with tt_device_double() as dd:
        devs, dp = _dp(dd)
        results, errors = {}, []
        inputs = {t: frames(3, seed=10 + t) for t in range(2)}

        def worker(t):
            try:
                results[t] = np.concatenate([dp.infer(inputs[t][i:i + 1])
                                             for i in range(3)])
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert not errors, errors
        for t in range(2):
            assert_own_output(results[t], inputs[t])
        assert sum(p.frames_run for p in dp.pipelines) == 6
        dp.release()
        devs.close()


# ------------------------------------------------------------- throughput mode: 2 per chip

@pytest.mark.parametrize('mode', ['eager', 'trace_2cq'])
def test_two_frames_per_chip_each_frame_gets_its_own_output(mode):
    """
    Check chip_batch 2: groups of two consecutive frames per chip, order and counts kept.

    4 frames on 2 chips: one run each; 5: chip 0 runs groups 0 and 2 (frames 0-1, 4 + a
    filled copy whose output is dropped), chip 1 group 1; 1 frame: one filled run.
    """
    with tt_device_double():
        devs, dp = _dp(None, mode=mode, batch=2)
        assert dp.batch == 2 and [p.batch for p in dp.pipelines] == [2, 2]
        for n, seed in ((4, 20), (5, 21), (1, 22), (3, 23)):
            x = frames(n, seed=seed)
            out = dp.infer(x)
            assert out.shape == (n, S, S)
            assert_own_output(out, x)
        # runs: n=4 -> 1 + 1, n=5 -> 2 + 1, n=1 -> 1, n=3 -> 1 + 1; the frames served (the
        # filled copies not counted) per chip, whichever chip the pool lent first
        assert sum(p.frames_run for p in dp.pipelines) == 8
        assert sum(st['frames'] for st in dp.chip_stats()) == 4 + 5 + 1 + 3
        assert dp.frames == 13
        dp.release()
        devs.close()


def _gather(size=2, wait_s=5.0, fail=False):
    runs = []

    def run(x):
        runs.append(len(x))
        if fail:
            raise RuntimeError('device run failed (injected)')
        return x * 10.0
    return FrameGather(size, wait_s, run), runs


def _concurrently(fn, args):
    results, errors = {}, {}

    def call(i):
        try:
            results[i] = fn(args[i])
        except Exception as exc:  # surfaced by the callers' assertions
            errors[i] = exc
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(args))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    return results, errors


def test_concurrent_single_frame_calls_share_one_run():
    """Two callers of one frame each (two cameras): one run of two, each its own output."""
    gather, runs = _gather(wait_s=30.0)          # full before the wait ends: no waiting out
    x = [np.full((1, 2), float(i + 1), np.float32) for i in range(2)]
    results, errors = _concurrently(gather, x)
    assert not errors and runs == [2] and (gather.groups, gather.frames) == (1, 2)
    for i in range(2):
        assert np.array_equal(results[i], x[i] * 10.0)


def test_a_lone_call_runs_after_the_wait_and_a_full_call_at_once():
    gather, runs = _gather(wait_s=0.05)
    assert np.array_equal(gather(np.ones((1, 2), np.float32)), np.full((1, 2), 10.0))
    assert np.array_equal(gather(np.ones((2, 2), np.float32)), np.full((2, 2), 10.0))
    assert runs == [1, 2] and gather.groups == 1       # the full call bypasses the gather


def test_a_failed_run_reaches_every_call_of_its_group():
    gather, runs = _gather(wait_s=30.0, fail=True)
    results, errors = _concurrently(gather, [np.ones((1, 2), np.float32)] * 2)
    assert not results and len(errors) == 2 and runs == [2]
    assert all('injected' in str(e) for e in errors.values())


# ------------------------------------------------------------- data parallel over a T3000

def test_t3000_opens_one_1x8_mesh_with_two_cqs_split_into_eight_chips():
    with tt_device_double(num_devices=8) as dd:
        devs = open_devices('wormhole_t3000', 8, execution_mode='trace_2cq')
        assert list(devs.mesh.shape) == [1, 8]
        assert devs.mesh.num_command_queues == 2
        assert devs.mesh.trace_region_size == TRACE_REGION_SIZE
        assert [c.get_device_ids() for c in devs.chips] == [[i] for i in range(8)]
        assert all(list(c.shape) == [1, 1] for c in devs.chips)
        assert devs.ids == [f'wormhole_t3000:{i}' for i in range(8)]
        devs.close()
        closes = [e for e in dd.log if e[0] == 'close']
        assert closes == [('close', (i,)) for i in range(8)] + [('close', tuple(range(8)))]
        with pytest.raises(Exception, match='dp 9 is not possible on wormhole_t3000'):
            open_devices('wormhole_t3000', 9)


def test_dp8_runs_one_frame_per_chip_at_once_and_keeps_order():
    with tt_device_double(num_devices=8) as dd:
        devs, dp = _dp(dd, 'wormhole_t3000', 8)
        x = frames(8, seed=21)
        assert_own_output(dp.infer(x), x)
        assert [p.frames_run for p in dp.pipelines] == [1] * 8
        x11 = frames(11, seed=22)             # more frames than chips: round robin, in order
        assert_own_output(dp.infer(x11), x11)
        stats = dp.chip_stats()
        assert sum(st['frames'] for st in stats) == 19 == dp.frames
        assert all(st['fps_device'] > 0 and st['failures'] == 0 and st['in_rotation']
                   for st in stats)
        dp.release()
        devs.close()


def test_dp8_a_failing_chip_leaves_the_rotation_and_the_others_serve(caplog):
    """
    Check that chip 5 failing in a call of 8 frames costs no frame and no other chip.

    Its execute raises from its second frame on: the call is run again on the 7 others (the
    healthy chips of the failed call are settled first), one WARN names the chip, and later
    calls never give it a frame.
    """
    with tt_device_double(num_devices=8) as dd:
        devs, dp = _dp(dd, 'wormhole_t3000', 8)
        bad = dp.pipelines[5]
        real_execute, calls = bad.execute, []

        def execute():
            calls.append(1)
            if len(calls) >= 2:
                raise RuntimeError('TT_FATAL: ethernet core timed out')
            return real_execute()
        bad.execute = execute
        x = frames(8, seed=23)
        assert_own_output(dp.infer(x), x)
        with caplog.at_level('WARNING', logger='dpt_ros.tt.executor'):
            x2 = frames(8, seed=24)
            assert_own_output(dp.infer(x2), x2)
            for i in range(6):                # one frame per call, as the scheduler sends
                xi = frames(1, seed=30 + i)
                assert_own_output(dp.infer(xi), xi)
        warns = [r for r in caplog.records if 'out of the rotation' in r.getMessage()]
        assert len(warns) == 1 and 'wormhole_t3000:5' in warns[0].getMessage()
        stats = dp.chip_stats()
        assert [st['in_rotation'] for st in stats] == [i != 5 for i in range(8)]
        assert stats[5]['failures'] == 1 and 'ethernet core' in stats[5]['last_error']
        assert stats[5]['frames'] == 1 and len(calls) == 2
        assert sum(st['frames'] for st in stats) == 8 + 8 + 6 == dp.frames
        assert dp.in_rotation == 7
        dp.release()
        devs.close()


def test_with_every_chip_out_each_call_fails_at_once():
    from dpt_ros.errors import BackendError
    with tt_device_double() as dd:
        devs, dp = _dp(dd, 'wormhole_n300', 2)
        for p in dp.pipelines:
            p.barrier = lambda: (_ for _ in ()).throw(RuntimeError('chip hung'))
        with pytest.raises(BackendError, match='failed'):
            dp.infer(frames(2, seed=40))
        assert dp.in_rotation == 0
        with pytest.raises(BackendError, match='no TT chip left in rotation'):
            dp.infer(frames(1, seed=41))
        assert [st['failures'] for st in dp.chip_stats()] == [1, 1]
        dp.release()
        devs.close()


# ---------------------------------------------------------------------------- backend

def _tiny_loaded():
    from dpt_ros.inference.hf_model import load_model
    return load_model('tiny-random', image_size=S)


@pytest.fixture(scope='module')
def tiny_loaded():
    return _tiny_loaded()


def test_backend_close_releases_traces_then_devices(tiny_loaded):
    from dpt_ros.backends import tt_backend
    opts = BackendOptions(weights='tiny-random', image_size=S, device='wormhole_n300', dp=2,
                          execution_mode='trace_2cq')
    with tt_device_double() as dd:
        backend = tt_backend.create(opts, tiny_loaded, model_factory=toy_factory())
        assert backend.max_concurrency == 2
        assert backend.info.name == 'tt'
        assert backend.info.device == 'wormhole_n300:0,wormhole_n300:1'
        x = frames(2, seed=5)
        assert_own_output(backend.infer(x), x)
        extra = backend.info.extra
        assert extra['tt_execution_mode'] == 'trace_2cq'
        assert extra['trace_wall_ms'] > 0 and extra['device_fps'] > 0
        assert backend.fallback_counts()['program_config_fallback_total'] == 0
        start = len(dd.log)
        backend.close()
        tail = [e[0] for e in dd.log[start:] if e[0] in ('release_trace', 'close')]
        assert tail == ['release_trace'] * 4 + ['close'] * 3
        n = len(dd.log)
        backend.close()                     # idempotent: nothing more happens
        assert len(dd.log) == n
        with pytest.raises(Exception, match='closed'):
            backend.infer(x)


def test_backend_counts_a_forced_program_config_fallback(tiny_loaded):
    from dpt_ros.backends import tt_backend
    opts = BackendOptions(weights='tiny-random', image_size=S, device='wormhole_n150', dp=1,
                          execution_mode='trace')
    with tt_device_double(num_devices=1):
        backend = tt_backend.create(opts, tiny_loaded,
                                    model_factory=toy_factory(force_fallback=True))
        try:
            x = frames(2, seed=6)
            assert_own_output(backend.infer(x), x)    # the default config still computes
            counts = backend.fallback_counts()
            assert counts['program_config_fallback_total'] == 1
            assert counts['program_config_fallback.channel_sum'] == 1
            assert any('channel_sum' in r for r in backend.info.extra['fallback_reasons'])
        finally:
            backend.close()


def test_backend_strict_raises_on_a_forced_fallback_and_releases_the_device(tiny_loaded):
    from dpt_ros.backends import tt_backend
    opts = BackendOptions(weights='tiny-random', image_size=S, device='wormhole_n300', dp=2,
                          execution_mode='trace_2cq', strict=True)
    with tt_device_double() as dd:
        with pytest.raises(FallbackError, match='channel_sum'):
            tt_backend.create(opts, tiny_loaded, model_factory=toy_factory(force_fallback=True))
        assert ('close', (0, 1)) in dd.log       # nothing left open after the failed start
