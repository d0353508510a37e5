"""
view/access.py and the view server's guard: Host, Origin and token, checked with aiohttp.

The server runs for real on 127.0.0.1 (port 0); requests carry the headers a browser would
send: a rebinding page names its own host, a foreign page its own Origin.
"""
import asyncio
import json
import socket

import aiohttp
from dpt_ros.view.access import AccessPolicy, effective_token, host_name, is_loopback
from dpt_ros.view.frames import FrameSlot
from dpt_ros.view.history import StatsHistory
from dpt_ros.view.server import ViewServer
import pytest
from support.ros_harness import rgb_image


def test_loopback_and_generated_tokens():
    assert is_loopback('127.0.0.1') and is_loopback('::1') and is_loopback('localhost')
    assert not is_loopback('0.0.0.0') and not is_loopback('192.168.1.5')
    assert effective_token('127.0.0.1', '') == ('', False)
    assert effective_token('0.0.0.0', 'mine') == ('mine', False)
    token, generated = effective_token('0.0.0.0', '')
    assert generated and len(token) >= 20
    assert effective_token('::', '')[0] != token          # a fresh one each time


def test_host_names_and_origins():
    p = AccessPolicy('127.0.0.1', allowed_hosts=['robot.lan'])
    assert host_name('LocalHost:8090') == 'localhost' and host_name('[::1]:80') == '::1'
    for ok in ('127.0.0.1:8090', 'localhost:8090', '[::1]:8090', '10.0.0.7', 'robot.lan:1',
               f'{socket.gethostname()}:8090'):
        assert p.host_ok(ok), ok
    for bad in ('evil.example:8090', 'evil.example', '127.0.0.1.evil.example', '', None):
        assert not p.host_ok(bad), bad
    assert p.origin_ok(None, 'localhost:8090')                   # not a browser
    assert p.origin_ok('http://localhost:8090', 'localhost:8090')
    assert not p.origin_ok('http://localhost:9999', 'localhost:8090')   # another port: site
    assert not p.origin_ok('http://evil.example', 'localhost:8090')
    assert not p.origin_ok('null', 'localhost:8090')             # sandboxed or file:// page


def test_token_is_compared_in_constant_time_and_optional():
    assert AccessPolicy('127.0.0.1').token_ok(None)
    p = AccessPolicy('127.0.0.1', token='s3cret')
    assert p.token_ok(None, 's3cret') and p.token_ok('s3cret', None)
    assert not p.token_ok(None, None) and not p.token_ok('s3cre', 'x')


class _Served:
    def __init__(self, **kw):
        self.slots = [FrameSlot(n, lambda m: m, 'png') for n in ('image', 'color')]
        self.server = ViewServer(self.slots, StatsHistory(60.0), port=0, **kw)
        self.server.start()
        self.base = f'http://127.0.0.1:{self.server.port}'

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.stop()


async def _get(url, headers=None, cookies=None):
    async with aiohttp.ClientSession(cookies=cookies) as s:
        async with s.get(url, headers=headers or {}) as r:
            return r.status, await r.text(), {k: v.value for k, v in r.cookies.items()}


async def _ws(url, headers=None):
    """Return 'open' (and the first message's type) or the refused handshake's status."""
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(url, headers=headers or {})
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        msg = await ws.receive_json(timeout=10)
        await ws.close()
        return f"open {msg['type']}"


def test_a_rebound_host_name_is_refused_on_every_route():
    with _Served() as s:
        evil = {'Host': f'rebind.example:{s.server.port}'}
        for path in ('/', '/state', '/view.js'):
            status, text, _ = asyncio.run(_get(s.base + path, evil))
            assert status == 403 and 'Host' in text, path
        assert asyncio.run(_ws(s.base + '/ws', evil)) == 403
        assert asyncio.run(_get(s.base + '/state'))[0] == 200   # its own address: served
        assert asyncio.run(_get(s.base + '/', {'Host': f'localhost:{s.server.port}'}))[0] == 200
        status, text, _ = asyncio.run(_get(s.base + '/state'))
        assert json.loads(text)['refused'] == {'host': 4, 'origin': 0, 'token': 0}


def test_a_foreign_origin_may_not_open_the_websocket_or_read_the_state():
    with _Served() as s:
        s.slots[0].put(rgb_image(8, 8))
        own = {'Origin': s.base}
        foreign = {'Origin': 'http://evil.example'}
        other_port = {'Origin': 'http://127.0.0.1:1'}
        assert asyncio.run(_ws(s.base + '/ws', own)) == 'open hello'
        assert asyncio.run(_ws(s.base + '/ws')) == 'open hello'      # a script, no Origin
        assert asyncio.run(_ws(s.base + '/ws', foreign)) == 403
        assert asyncio.run(_ws(s.base + '/ws', other_port)) == 403
        assert asyncio.run(_get(s.base + '/state', foreign))[0] == 403
        assert asyncio.run(_get(s.base + '/', foreign))[0] == 200   # the page holds no data
        assert s.server.refused == {'host': 0, 'origin': 3, 'token': 0}
        assert s.server.connections_total == 2


def test_with_a_token_the_page_sets_a_cookie_its_data_requests_carry():
    with _Served(token='s3cret') as s:
        assert s.server.page_url == s.base + '/?token=s3cret'
        assert asyncio.run(_get(s.base + '/'))[0] == 403
        assert asyncio.run(_get(s.base + '/?token=wrong'))[0] == 403
        assert asyncio.run(_get(s.base + '/state'))[0] == 403
        assert asyncio.run(_ws(s.base + '/ws')) == 403
        assert asyncio.run(_get(s.base + '/view.js'))[0] == 200      # public code
        status, _, cookies = asyncio.run(_get(s.server.page_url))
        assert status == 200 and cookies == {s.server.access.cookie: 's3cret'}
        assert asyncio.run(_get(s.base + '/state', cookies=cookies))[0] == 200
        assert asyncio.run(_ws(s.base + '/ws?token=s3cret')) == 'open hello'
        assert s.server.refused == {'host': 0, 'origin': 0, 'token': 4}


@pytest.mark.parametrize('host', ['0.0.0.0', '::'])
def test_beyond_loopback_a_token_is_always_required(host):
    server = ViewServer([], StatsHistory(), host=host, port=0)   # not started: no bind
    assert server.token_generated and server.token
    assert server.page_url.endswith(f'/?token={server.token}')
