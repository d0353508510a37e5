"""
The depth view's pure parts (no browser): history, frame slots, the server and its websocket.

The server is driven by aiohttp's own websocket client, in this process; `depth_view` as a
process is test_view_node.py's.
"""
import asyncio
import json
import threading
from types import SimpleNamespace as NS

import cv2
from dpt_ros.view.frames import encode_rgb, FrameSlot
from dpt_ros.view.history import StatsHistory, weights_random
from dpt_ros.view.server import ViewServer
import numpy as np
import pytest
from support.ros_harness import rgb_image


def _status(name='depth_node: depth pipeline', level=b'\x00', **values):
    kv = {'backend': 'torch', 'output_fps': '10.0', **values}
    return NS(name=name, level=level, message='running',
              values=[NS(key=k, value=str(v)) for k, v in kv.items()])


def test_history_takes_the_pipeline_status_and_forgets_old_samples():
    clock = [0.0]
    h = StatsHistory(history_s=10.0, clock=lambda: clock[0])
    camera = NS(name='depth_node: camera /', level=b'\x00', message='', values=[])
    for t in range(15):
        clock[0] = float(t)
        assert h.add([camera, _status(level=bytes((t % 2,)), output_fps=t,
                                      latency_ms_p95='nan', weights='Intel/dpt-large')])
    snap = h.snapshot()
    assert snap['series']['t'] == [float(t) for t in range(4, 15)]
    assert snap['series']['output_fps'] == [float(t) for t in range(4, 15)]
    assert snap['series']['latency_ms_p95'] == [None] * 11
    assert snap['series']['level'] == [t % 2 for t in range(4, 15)]
    assert snap['latest']['level_name'] == 'OK' and not snap['latest']['weights_random']
    assert not h.add([camera])
    assert json.dumps(snap)
    thin = h.snapshot(max_points=4)['series']['t']
    assert thin == [5.0, 8.0, 11.0, 14.0]   # every 3rd, the newest always kept


def test_weights_random_is_decided_as_the_report_does():
    assert weights_random({'weights': 'random (DPT-Large config, seed 0)'})
    assert weights_random({'weights': 'tiny-random (seed 0)'})
    assert not weights_random({'weights': 'Intel/dpt-large'})
    assert weights_random({'weights': 'x', 'weights_random': 'true'})
    with pytest.raises(ValueError):
        StatsHistory(history_s=0)


def test_slot_decodes_only_when_asked_and_once_per_frame():
    calls = []

    def decode(msg):
        calls.append(msg)
        return msg
    slot = FrameSlot('image', decode, 'png')
    assert slot.encoded() == (0, None)
    img = rgb_image(24, 32)
    for _ in range(5):
        slot.put(img)
    assert calls == []              # put() never decodes
    v1, a = slot.encoded()
    v2, b = slot.encoded()
    assert (v1, v2) == (5, 5) and a is b and len(calls) == 1
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(a, np.uint8), 1)[..., ::-1], img)


def test_slot_counts_bad_frames_and_jpeg_stays_close():
    slot = FrameSlot('image', lambda m: 1 / 0, 'jpeg')
    slot.put(object())
    assert slot.encoded() == (1, None) and slot.stats()['errors'] == 1
    assert 'ZeroDivisionError' in slot.stats()['last_error']
    img = rgb_image(96, 128)
    back = cv2.imdecode(np.frombuffer(encode_rgb(img, 'jpeg', 90), np.uint8), 1)[..., ::-1]
    assert np.abs(back.astype(int) - img).mean() < 3
    with pytest.raises(ValueError, match='image_format'):
        FrameSlot('image', None, 'gif')


class _Served:
    """A ViewServer on a free port with two slots of real images."""

    def __init__(self):
        self.counts = []
        self.history = StatsHistory(60.0)
        self.slots = [FrameSlot(n, lambda m: m, 'png') for n in ('image', 'color')]
        self.server = ViewServer(self.slots, self.history, port=0, on_clients=self.counts.append)
        self.server.start()
        self.url = f'ws://127.0.0.1:{self.server.port}/ws'

    def put(self, k: int) -> None:
        for slot in self.slots:
            slot.put(rgb_image(16, 16, seed=k))
        self.server.notify()


async def _frames(ws, n: int, ack: bool) -> list[int]:
    got = []
    while len(got) < n:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type.name == 'BINARY':
            got.append(msg.data[0])
            if ack:
                await ws.send_str(json.dumps({'ack': msg.data[0]}))
    return got


async def _slow_and_fast(s: _Served) -> tuple[int, int]:
    import aiohttp
    async with aiohttp.ClientSession() as session:
        slow = await session.ws_connect(s.url)
        fast = await session.ws_connect(s.url)
        s.put(0)
        assert sorted(await _frames(slow, 2, ack=False)) == [0, 1]
        assert sorted(await _frames(fast, 2, ack=True)) == [0, 1]
        for k in range(1, 31):
            s.put(k)
            await _frames(fast, 2, ack=True)   # each frame reaches the page that acks
        state = s.server.state()
        slow._response.connection.transport.abort()   # vanishes without a close frame
        await fast.close()
    return state['streams']['color']['dropped'], state['streams']['color']['sent']


def test_a_page_that_never_acks_gets_drops_and_a_vanished_one_is_let_go():
    s = _Served()
    try:
        dropped, sent = asyncio.run(_slow_and_fast(s))
        assert dropped == 29         # frames 2..30 skipped for the slow page, newest still due
        assert sent == 1 + 31        # slow: frame 1 only; fast: all 31
        done = threading.Event()
        s.server._on_clients = lambda n: n == 0 and done.set()
        assert s.server.clients == 0 or done.wait(15)
        assert s.counts[:2] == [1, 2] and s.server.clients == 0
    finally:
        s.server.stop()


def test_stats_are_pushed_when_diagnostics_arrive():
    s = _Served()

    async def run():
        import aiohttp
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(s.url)
            assert (await ws.receive_json(timeout=10))['type'] == 'hello'
            s.history.add([_status(weights='random (seed 0)')])
            s.server.notify()
            while True:
                msg = await ws.receive_json(timeout=10)
                if msg['type'] == 'stats' and msg['version'] == 1:
                    return msg
    try:
        msg = asyncio.run(run())
        assert msg['latest']['weights_random'] and msg['series']['output_fps'] == [10.0]
    finally:
        s.server.stop()
