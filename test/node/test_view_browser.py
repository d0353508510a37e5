"""
The depth view in a real headless Chromium, over real DDS on loopback.

A fake camera publishes `image`, `depth_relative/color` and `/diagnostics`; `depth_view` runs as
its own process (frames as PNG, so the page's pixels can be compared exactly); Debian's
chromium opens the page through playwright. Without chromium the tests skip and say how to
install it; scripts/test.sh as root installs it and sets DPT_ROS_BROWSER_REQUIRED=1, so CI
fails rather than skips.
"""
import contextlib
import http.server
import os
import threading
import time

from dpt_ros.ros import image_codec
import numpy as np
import pytest
from sensor_msgs.msg import Image
from support.ros_harness import NodeProcess
from support.view import browser_missing, chromium, FakeCamera, pattern, RANDOM_WEIGHTS
from support.view import ViewProcess

H, W = 48, 64
# A name that resolves to this machine, as a DNS-rebinding attacker's name does after the flip.
REBIND_RULE = '--host-resolver-rules=MAP rebind.test 127.0.0.1'
FRAMES_SHOWN = 'dptView.frames[0] > 0 && dptView.frames[1] > 0'
READ_CANVAS = """(i) => {
  const c = document.getElementById('frame' + i);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
  return {w: c.width, h: c.height, data: Array.from(d.data)};
}"""


@pytest.fixture(scope='module')
def browser():
    missing = browser_missing()
    if missing and os.environ.get('DPT_ROS_BROWSER_REQUIRED') == '1':
        pytest.fail(f'the view browser tests are required here: {missing}')
    if missing:
        pytest.skip(missing)
    with chromium((REBIND_RULE,)) as context:
        yield context


@pytest.fixture(scope='module')
def camera():
    with FakeCamera(pattern(H, W, 1), pattern(H, W, 2)) as cam:
        yield cam


@pytest.fixture(scope='module')
def view(camera):
    with ViewProcess('png') as v:
        yield v


def _open(browser, view, timeout_ms=30000):
    page = browser.new_page()
    page.goto(view.url)
    page.wait_for_function(FRAMES_SHOWN, timeout=timeout_ms)
    return page


def _canvas_rgb(page, i: int) -> np.ndarray:
    got = page.evaluate(READ_CANVAS, i)
    return np.array(got['data'], np.uint8).reshape(got['h'], got['w'], 4)[..., :3]


def _wait(cond, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)   # polling a condition in another process
    return bool(cond())


def test_page_shows_the_published_input_and_colour_depth_exactly(browser, view, camera):
    page = _open(browser, view)
    try:
        np.testing.assert_array_equal(_canvas_rgb(page, 0), camera.rgb)
        np.testing.assert_array_equal(_canvas_rgb(page, 1), camera.color_bgr[..., ::-1])
        assert page.text_content('#conn') == 'live'
        assert camera.color_pub.get_subscription_count() == 1   # subscribed while open
    finally:
        page.close()


def test_plots_gain_points_as_diagnostics_arrive(browser, view, camera):
    page = _open(browser, view)
    try:
        page.wait_for_function('dptView.points >= 2', timeout=20000)
        n = page.evaluate("document.getElementById('plot-fps').data[0].x.length")
        page.wait_for_function(f"document.getElementById('plot-fps').data[0].x.length > {n}",
                               timeout=20000)
        fps = page.evaluate("document.getElementById('plot-fps').data[0].y")
        p95 = page.evaluate("document.getElementById('plot-latency').data[1].y")
        levels = page.evaluate("document.getElementById('plot-level').data[0].y")
        # What the fake camera sends: fps 20..24, p95 60..70, level OK or WARN.
        assert fps and all(20.0 <= f <= 24.0 for f in fps)
        assert p95 and all(60.0 <= v <= 70.0 for v in p95)
        assert set(levels) <= {0, 1}
        assert 'torch' in page.text_content('#info')
    finally:
        page.close()


def test_banner_shows_for_random_weights_only(browser, view, camera):
    page = _open(browser, view)
    try:
        camera.weights = RANDOM_WEIGHTS
        page.locator('#banner').wait_for(state='visible', timeout=20000)
        assert 'WEIGHTS ARE RANDOM' in page.text_content('#banner')
        camera.weights = 'Intel/dpt-large'
        page.locator('#banner').wait_for(state='hidden', timeout=20000)
        page.wait_for_function("document.getElementById('info').textContent"
                               ".includes('Intel/dpt-large')", timeout=20000)
    finally:
        camera.weights = RANDOM_WEIGHTS
        page.close()


def test_second_page_gets_the_latest_frames_at_once(browser, view, camera):
    first = _open(browser, view)
    try:
        camera.publishing.clear()   # nothing new: the second page must get the held frames
        second = _open(browser, view, timeout_ms=10000)
        np.testing.assert_array_equal(_canvas_rgb(second, 1), camera.color_bgr[..., ::-1])
        assert view.state()['clients'] == 2
        second.close()
    finally:
        camera.publishing.set()
        first.close()


def test_a_page_that_never_draws_gets_drops_not_a_queue(browser, view, camera):
    dropped = view.state()['streams']['depth_relative/color']['dropped']
    stalled = browser.new_page()
    stalled.add_init_script('WebSocket.prototype.send = function () {};')   # never acks
    stalled.goto(view.url)
    stalled.wait_for_function(FRAMES_SHOWN, timeout=30000)
    live = _open(browser, view)
    try:
        n = live.evaluate('dptView.frames[1]')
        live.wait_for_function(f'dptView.frames[1] > {n + 20}', timeout=30000)
        assert stalled.evaluate('dptView.frames') == [1, 1]
        assert _wait(lambda: view.state()['streams']['depth_relative/color']['dropped'] >=
                     dropped + 20)
    finally:
        live.close()
        stalled.close()


def test_opening_and_closing_many_pages_leaks_nothing(browser, view, camera):
    _open(browser, view).close()
    assert _wait(lambda: view.state()['clients'] == 0)
    before, rss_before = view.state(), view.rss_kib()
    cycles = 30
    for _ in range(cycles):
        _open(browser, view).close()
    assert _wait(lambda: view.state()['clients'] == 0)
    after = view.state()
    assert after['connections_total'] == before['connections_total'] + cycles
    assert after['tasks'] == before['tasks']
    growth_mib = (view.rss_kib() - rss_before) / 1024
    assert growth_mib < 25, f'depth_view grew {growth_mib:.1f} MiB over {cycles} pages'
    # No page open: the view unsubscribed, so the depth node would stop colourising.
    assert _wait(lambda: camera.color_pub.get_subscription_count() == 0)


def test_with_the_real_depth_node_the_page_shows_what_it_publishes(browser, monkeypatch):
    # A domain of its own: the fake depth node of the other tests publishes the same topics.
    monkeypatch.setenv('ROS_DOMAIN_ID', str(int(os.environ['ROS_DOMAIN_ID']) + 100))
    values = {'backend': 'standin_zero', 'image_size': 64, 'diagnostics_rate': 5.0}
    with FakeCamera(pattern(H, W, 3), None) as cam, NodeProcess(values) as node, \
            ViewProcess('png') as view:
        colors = cam.graph.collect(Image, 'depth_relative/color')
        page = _open(browser, view)
        try:
            page.wait_for_function('dptView.points >= 2', timeout=20000)
            assert cam.graph.spin_until(lambda: colors, 10), node.output()
            published = image_codec.decode(colors[-1])   # the stand-in: the same every frame
            np.testing.assert_array_equal(_canvas_rgb(page, 1), published)
            np.testing.assert_array_equal(_canvas_rgb(page, 0), cam.rgb)
            assert 'standin_zero' in page.text_content('#info')
            assert not page.locator('#banner').is_visible()   # weights: none (test double)
        finally:
            page.close()


OPEN_WS = """(url) => new Promise((resolve) => {
  const seen = [];
  const ws = new WebSocket(url);
  ws.onopen = () => seen.push('open');
  ws.onmessage = () => { seen.push('message'); ws.close(); };
  ws.onerror = () => seen.push('error');
  ws.onclose = () => resolve(seen);
})"""
READ_STATE = """(url) => fetch(url).then((r) => r.status).catch((e) => e.name)"""


@contextlib.contextmanager
def _foreign_site():
    """Serve a blank page on another port of 127.0.0.1: another origin, as any site is."""
    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self):   # noqa: N802 -- the stdlib's name
            body = b'<!doctype html><title>another site</title>'
            self.send_response(200)
            self.send_header('Content-Type', 'text/html')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Blank)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}/'
    finally:
        server.shutdown()
        thread.join(5)


def test_a_page_of_another_site_cannot_open_the_websocket_or_read_the_state(
        browser, view, camera):
    refused = view.state().get('refused', {}).get('origin', 0)
    ws_url = view.url.replace('http://', 'ws://') + 'ws'
    with _foreign_site() as foreign:
        page = browser.new_page()
        try:
            page.goto(foreign)
            seen = page.evaluate(OPEN_WS, ws_url)
            assert 'open' not in seen and 'message' not in seen, seen
            assert page.evaluate(READ_STATE, view.url + 'state') == 'TypeError'
        finally:
            page.close()
    assert view.state()['refused']['origin'] == refused + 2
    page = _open(browser, view)          # and the page itself still works
    try:
        assert page.evaluate(OPEN_WS, ws_url) == ['open', 'message']
        assert page.evaluate(READ_STATE, view.url + 'state') == 200
    finally:
        page.close()


def test_a_rebound_dns_name_is_refused(browser, view):
    port = view.url.rsplit(':', 1)[1].strip('/')
    page = browser.new_page()
    try:
        response = page.goto(f'http://rebind.test:{port}/')
        assert response.status == 403 and 'Host' in page.text_content('body')
        # Same origin for the browser, so it would let the page read it: the server says no.
        assert page.evaluate(READ_STATE, f'http://rebind.test:{port}/state') == 403
        assert page.goto(f'http://localhost:{port}/').status == 200   # a name of this machine
    finally:
        page.close()


def test_with_a_token_the_page_works_and_without_it_is_refused(browser, camera):
    with ViewProcess('png', extra=('-p', 'token:=s3cret')) as view:
        assert view.page_url.endswith('/?token=s3cret')
        page = browser.new_page()
        try:
            assert page.goto(view.url).status == 403
            page.goto(view.page_url)
            page.wait_for_function(FRAMES_SHOWN, timeout=30000)
            np.testing.assert_array_equal(_canvas_rgb(page, 0), camera.rgb)
            assert page.evaluate(READ_STATE, view.url + 'state') == 200   # the cookie
        finally:
            page.close()
        assert view.state()['refused']['token'] == 1
