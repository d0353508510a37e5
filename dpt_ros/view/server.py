"""
The view's web server: one page, its script, plotly.min.js and a websocket per open page.

aiohttp runs on its own thread and event loop, so nothing here blocks the ROS executor. Each
page gets the newest frame of each stream and acknowledges it once drawn; until then newer
frames for that page are skipped and counted as its drops, so a slow or vanished browser costs
one frame in flight per stream, never a queue. Stats go out whenever the history changes.
Every request passes the access policy first (access.py: Host, Origin, token), refusals are
answered 403 and counted.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import importlib.util
import json
import logging
import os
import threading

from aiohttp import web, WSMsgType
from dpt_ros.errors import ViewError
from dpt_ros.view.access import AccessPolicy, effective_token, REASONS

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
# A page that vanished without closing its socket is dropped after missing pongs this long.
HEARTBEAT_S = 5.0
# Pages send only acks: a few bytes each.
MAX_CLIENT_MESSAGE = 1024
# Stats (the whole history, redrawn) go to a page at most this often, whatever the node's rate.
STATS_PERIOD_S = 1.0
# What each route serves (access.KINDS); any other path is answered 404 after the Host check.
ROUTE_KINDS = {'/': 'page', '/view.js': 'static', '/plotly.min.js': 'static', '/ws': 'data',
               '/state': 'data'}
REFUSED = {
    'host': 'refused: this Host is not a name of this server (a rebound DNS name?); add the '
            'name to the allowed_hosts parameter to serve it',
    'origin': 'refused: a page of another site may not read the view',
    'token': 'refused: this view needs its token: open the URL with ?token= that depth_view '
             'printed at start-up'}
log = logging.getLogger('dpt_ros.view')


def plotly_js() -> str | None:
    """Path of plotly.min.js inside the installed plotly package, or None without it."""
    spec = importlib.util.find_spec('plotly')
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], 'package_data', 'plotly.min.js')
    return path if os.path.isfile(path) else None


class _Client:
    """One open page: what it was sent, what it still has to acknowledge, its drops."""

    def __init__(self, ws, n_streams: int):
        self.ws = ws
        self.wake = asyncio.Event()
        self.sent = [0] * n_streams
        self.busy = [False] * n_streams
        self.dropped = [0] * n_streams
        self.stats_sent = -1
        self.stats_at = float('-inf')

    def ack(self, text: str, n_streams: int) -> None:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            i = int(json.loads(text)['ack'])
            if 0 <= i < n_streams:
                self.busy[i] = False
                self.wake.set()


class ViewServer:
    """
    Serve the view for `slots` (FrameSlot, in page order) and `history` (StatsHistory).

    :param on_clients: called (from the server thread) with the number of open pages
        whenever it changes; the ROS glue subscribes to the image topics only while it is > 0.
    :param token: required by the page and the data routes when set; beyond loopback one is
        generated when none is given (`token_generated`).
    :param allowed_hosts: more Host names to serve under (a DNS name of this machine).
    """

    def __init__(self, slots, history, host: str = '127.0.0.1', port: int = 8090,
                 on_clients=None, token: str = '', allowed_hosts=()):
        self.slots = list(slots)
        self.history = history
        self.host, self.port = host, int(port)
        self.token, self.token_generated = effective_token(host, token)
        self.access = AccessPolicy(host, self.token, allowed_hosts, self.port)
        self.refused = dict.fromkeys(REASONS, 0)
        self._on_clients = on_clients
        self._clients: set[_Client] = set()
        self.connections_total = 0
        n = len(self.slots)
        self.sent, self.dropped = [0] * n, [0] * n
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix='dpt-view-enc')

    # ----- life cycle (any thread) -----
    def start(self, timeout: float = 10.0) -> str:
        """Bind and serve on a thread; return the page's URL. ViewError when it cannot bind."""
        self._thread = threading.Thread(target=self._run, name='dpt-view-http', daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ViewError(f'the view server did not start within {timeout:g} s')
        if self._start_error is not None:
            self._thread.join(timeout)
            raise self._start_error
        return self.url

    @property
    def url(self) -> str:
        host = f'[{self.host}]' if ':' in self.host else self.host
        return f'http://{host}:{self.port}/'

    @property
    def page_url(self) -> str:
        """Return the page's URL with its token: to be printed once, where the user reads it."""
        return self.url + (f'?token={self.token}' if self.token else '')

    @property
    def clients(self) -> int:
        """Pages open now."""
        return len(self._clients)

    def notify(self) -> None:
        """Wake the pages' senders: a new frame or new stats (no-op without pages)."""
        loop = self._loop
        if self._clients and loop is not None:
            with contextlib.suppress(RuntimeError):   # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake_all)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every page and the listening socket; safe to call twice."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ----- the server thread -----
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            runner = loop.run_until_complete(self._bind())
        except BaseException as exc:  # handed to start()
            self._start_error = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_until_complete(self._stop.wait())
            loop.run_until_complete(runner.cleanup())
        finally:
            self._loop = None
            loop.close()

    async def _bind(self) -> web.AppRunner:
        self._stop = asyncio.Event()
        app = web.Application(middlewares=[self._guard])
        app.router.add_get('/', self._page)
        app.router.add_get('/view.js', self._script)
        app.router.add_get('/plotly.min.js', self._plotly)
        app.router.add_get('/ws', self._websocket)
        app.router.add_get('/state', self._state)
        app.on_shutdown.append(self._close_all)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ViewError(_bind_error(self.host, self.port, exc)) from None
        self.port = runner.addresses[0][1]
        self.access.set_port(self.port)
        return runner

    @web.middleware
    async def _guard(self, request, handler):
        kind = ROUTE_KINDS.get(request.path, 'static')
        why = self.access.refusal(kind, request.headers, request.query, request.cookies)
        if why is not None:
            self.refused[why] += 1
            if self.refused[why] == 1:   # the first of each kind; the state counts them all
                log.warning('depth_view: %s (Host %r, Origin %r)', REFUSED[why],
                            request.headers.get('Host'), request.headers.get('Origin'))
            raise web.HTTPForbidden(text=REFUSED[why] + '\n')
        response = await handler(request)
        if kind == 'page' and self.token and 'token' in request.query:
            # The page's own requests (websocket, state) then carry the token by themselves.
            response.set_cookie(self.access.cookie, self.token, httponly=True,
                                samesite='Strict', path='/')
        return response

    async def _close_all(self, app) -> None:
        for client in list(self._clients):
            await client.ws.close(code=1001, message=b'server stopping')

    def _wake_all(self) -> None:
        for client in self._clients:
            client.wake.set()

    # ----- routes -----
    async def _page(self, request) -> web.StreamResponse:
        return web.FileResponse(os.path.join(STATIC, 'view.html'),
                                headers={'Cache-Control': 'no-cache'})

    async def _script(self, request) -> web.StreamResponse:
        return web.FileResponse(os.path.join(STATIC, 'view.js'),
                                headers={'Cache-Control': 'no-cache'})

    async def _plotly(self, request) -> web.StreamResponse:
        path = plotly_js()
        if path is None:
            raise web.HTTPNotFound(text='plotly is not installed: pip install plotly')
        return web.FileResponse(path, headers={'Cache-Control': 'max-age=86400'})

    async def _state(self, request) -> web.Response:
        return web.json_response(self.state())

    def state(self) -> dict:
        """Pages, connections, per-stream counters and the loop's task count (server thread)."""
        streams = {s.name: {**s.stats(), 'sent': self.sent[i], 'dropped': self.dropped[i] + sum(
            self._pending_drops(c, i) for c in self._clients)} for i, s in enumerate(self.slots)}
        return {'clients': self.clients, 'connections_total': self.connections_total,
                'streams': streams, 'tasks': len(asyncio.all_tasks()),
                'refused': dict(self.refused)}

    async def _websocket(self, request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_CLIENT_MESSAGE)
        await ws.prepare(request)
        client = _Client(ws, len(self.slots))
        self._clients.add(client)
        self.connections_total += 1
        self._clients_changed()
        sender = asyncio.create_task(self._send_loop(client))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    client.ack(msg.data, len(self.slots))
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            self._clients.discard(client)
            for i in range(len(self.slots)):
                self.dropped[i] += self._pending_drops(client, i)
            self._clients_changed()
        return ws

    def _clients_changed(self) -> None:
        if self._on_clients is not None:
            try:
                self._on_clients(self.clients)
            except Exception:  # the ROS side's trouble must not break the page
                pass

    # ----- pushing to one page -----
    async def _send_loop(self, client: _Client) -> None:
        await client.ws.send_json({'type': 'hello', 'streams': [s.name for s in self.slots],
                                   'mime': [s.mime for s in self.slots]})
        client.wake.set()
        while not client.ws.closed:
            await client.wake.wait()
            client.wake.clear()
            await self._send_stats(client)
            for i in range(len(self.slots)):
                await self._send_frame(client, i)

    async def _send_stats(self, client: _Client) -> None:
        if self.history.version == client.stats_sent:
            return
        loop = asyncio.get_running_loop()
        wait = client.stats_at + STATS_PERIOD_S - loop.time()
        if wait > 0:
            loop.call_later(wait, client.wake.set)   # the newest stats then, not each one
            return
        client.stats_sent, client.stats_at = self.history.version, loop.time()
        await client.ws.send_json(self._stats(client))

    async def _send_frame(self, client: _Client, i: int) -> None:
        slot = self.slots[i]
        if client.busy[i] or slot.version == client.sent[i]:
            return
        loop = asyncio.get_running_loop()
        version, data = await loop.run_in_executor(self._pool, slot.encoded)
        if version <= client.sent[i]:
            return
        if client.sent[i]:
            skipped = version - client.sent[i] - 1
            client.dropped[i] += skipped
            self.dropped[i] += skipped
        client.sent[i] = version
        if data is None:
            return
        client.busy[i] = True
        self.sent[i] += 1
        await client.ws.send_bytes(bytes((i,)) + data)

    def _pending_drops(self, client: _Client, i: int) -> int:
        # Frames that came while the page still drew its last one, bar the newest (it is next).
        if not client.busy[i]:
            return 0
        return max(0, self.slots[i].version - client.sent[i] - 1)

    def _stats(self, client: _Client) -> dict:
        drops = {s.name: client.dropped[i] + self._pending_drops(client, i)
                 for i, s in enumerate(self.slots)}
        return {'type': 'stats', **self.history.snapshot(), 'drops': drops,
                'clients': self.clients}


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f'port {port} on {host} is in use (another depth_view, or another server): '
                'stop it or choose another with the `port` parameter (0 = any free port)')
    if exc.errno == errno.EADDRNOTAVAIL:
        return f'cannot bind {host}:{port}: {host} is not an address of this machine'
    return f'cannot bind {host}:{port}: {exc.strerror or exc}'
