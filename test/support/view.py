"""
Helpers for the depth view's tests: a fake camera + depth node, the view process, Chromium.

`FakeCamera` publishes `image`, `depth_relative/color` and `/diagnostics` from an in-process
rclpy node (no depth node needed). `ViewProcess` runs `python -m dpt_ros.depth_view` on a free
port.
`chromium()` starts Debian's chromium through playwright (never a downloaded browser) or says
why it cannot. Run as a module (`python -m support.view`, test/ and the checkout on
PYTHONPATH) it writes the screenshot docs/view.png.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from dpt_ros.ros import image_codec
import numpy as np
from sensor_msgs.msg import Image
from support.paths import ROOT
from support.ros_harness import Graph

CHROMIUM = os.environ.get('DPT_ROS_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                 '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']
NO_BROWSER = ('no Chromium at {path}: install it with `apt-get install -y chromium` (as root: '
              'scripts/setup_system.sh does) and `pip install -r requirements.txt` (playwright)')
RANDOM_WEIGHTS = 'random (DPT-Large config, seed 0)'


def browser_missing() -> str:
    """Return why the browser tests cannot run here, or '' when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return NO_BROWSER.format(path=CHROMIUM) + ' [playwright missing]'
    return '' if os.access(CHROMIUM, os.X_OK) else NO_BROWSER.format(path=CHROMIUM)


@contextlib.contextmanager
def chromium(extra_args: tuple = ()):
    """Yield a playwright Browser on Debian's chromium with a fresh temp profile."""
    from playwright.sync_api import sync_playwright
    profile = tempfile.mkdtemp(prefix='dpt_view_chromium_')
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(extra_args),
                headless=True,
                viewport={'width': 1400, 'height': 900})
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def pattern(h: int, w: int, seed: int) -> np.ndarray:
    """Return an RGB uint8 image of noise: pixel-exact comparison means something on it."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def status(weights: str, fps: float, p50: float, p95: float, level: int = 0):
    """Return a pipeline DiagnosticStatus shaped as the depth node's."""
    kv = {'backend': 'torch', 'fallback_reason': '', 'device': 'cpu',
          'execution_mode': 'eager', 'weights': weights, 'model': 'dpt-large',
          'input_fps': f'{fps:.3f}', 'output_fps': f'{fps:.3f}',
          'latency_ms_p50': f'{p50:.3f}', 'latency_ms_p95': f'{p95:.3f}'}
    return DiagnosticStatus(level=bytes((level,)), name='depth_node: depth pipeline',
                            hardware_id='cpu', message='running',
                            values=[KeyValue(key=k, value=v) for k, v in kv.items()])


class FakeCamera:
    """
    Publishes frames and diagnostics from a thread until close(); all settable.

    With color_bgr None it is only a camera (`image`), for a real depth node to answer.
    """

    def __init__(self, rgb: np.ndarray, color_bgr: np.ndarray, weights: str = RANDOM_WEIGHTS,
                 rate_hz: float = 20.0, diag_hz: float = 4.0):
        self.graph = Graph('dpt_view_fake_camera')
        node = self.graph.node
        self.image_pub = node.create_publisher(Image, 'image', 1)
        self.color_pub = node.create_publisher(Image, 'depth_relative/color', 1)
        self.diag_pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.rgb, self.color_bgr, self.weights = rgb, color_bgr, weights
        self.diagnostics_sent = 0
        self.publishing = threading.Event()
        self.publishing.set()
        self._stop = threading.Event()
        self._period, self._diag_every = 1.0 / rate_hz, max(1, round(rate_hz / diag_hz))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self._period):   # the camera's frame rate, not a sync
            if not self.publishing.is_set():
                continue
            self.image_pub.publish(image_codec.new_message(
                Image, **image_codec.rgb_to_image_fields(self.rgb)))
            if self.color_bgr is None:
                continue
            self.color_pub.publish(image_codec.new_message(
                Image, **image_codec.bgr_to_image_fields(self.color_bgr)))
            if i % self._diag_every == 0:
                self._publish_diag(i // self._diag_every)
            i += 1

    def _publish_diag(self, i: int) -> None:
        # Values that move (fps 20..24, p50 40..46, p95 60..70, WARN now and then) so plots show.
        arr = DiagnosticArray()
        arr.status = [status(self.weights, 20.0 + i % 5, 40.0 + i % 7, 60.0 + i % 11,
                             level=1 if i % 20 >= 16 else 0)]
        self.diag_pub.publish(arr)
        self.diagnostics_sent += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.graph.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ViewProcess:
    """
    `python -m dpt_ros.depth_view` on a free port; stopped on exit.

    `page_url` is the URL it printed (with `?token=` when it has one), `url` the same without
    the query, `token` the token or ''.
    """

    def __init__(self, image_format: str = 'png', extra: tuple = (), timeout: float = 30.0):
        cmd = [sys.executable, '-m', 'dpt_ros.depth_view', '--ros-args', '-p', 'port:=0',
               '-p', f'image_format:={image_format}', *extra]
        env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0')
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd=ROOT, env=env)
        self.lines: list[str] = []
        self._serving = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._serving.wait(timeout):
            self.close()
            raise RuntimeError('depth_view did not start:\n' + '\n'.join(self.lines))
        line = next(x for x in self.lines if 'serving http' in x)
        self.page_url = line.split('serving ')[1].split()[0]
        self.url, _, query = self.page_url.partition('?')
        self.token = query.partition('token=')[2]

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))
            if 'serving http' in line:
                self._serving.set()
        self._serving.set()   # it ended: stop waiting

    def state(self) -> dict:
        query = f'?token={self.token}' if self.token else ''
        with urllib.request.urlopen(self.url + 'state' + query, timeout=5) as r:
            return json.loads(r.read())

    def rss_kib(self) -> int:
        with open(f'/proc/{self.proc.pid}/status') as f:
            return int(next(x for x in f if x.startswith('VmRSS')).split()[1])

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self._reader.join(5)
        if not self._reader.is_alive():
            self.proc.stdout.close()
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def screenshot(path: str, points: int = 40) -> None:
    """Write a screenshot of the page: astronaut, stand-in depth, fake diagnostics."""
    from dpt_ros.inference.colorize import colorize
    from skimage import data
    from support.doubles.backend_base import brightness
    rgb = data.astronaut()
    color = colorize(brightness(rgb[None])[0])   # the stand-in backend's 'depth': no model
    with FakeCamera(rgb, color), ViewProcess('jpeg') as view, chromium() as context:
        page = context.new_page()
        page.goto(view.url)
        page.wait_for_function(f'dptView.frames[1] > 0 && dptView.points >= {points}',
                               timeout=60000)
        page.screenshot(path=path, full_page=True)
    from PIL import Image
    # 256 colours: a third of the size, no visible loss on a page of flat colours and plots.
    Image.open(path).convert('RGB').quantize(256).save(path, optimize=True)


if __name__ == '__main__':
    # PYTHONPATH=.:test .venv/bin/python -m support.view docs/view.png
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
    screenshot(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'docs', 'view.png'))
