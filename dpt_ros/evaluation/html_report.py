"""
The evaluation report: report.json for scripts, report.html (+ PNGs) for people.

Charts are drawn with OpenCV and numpy (no matplotlib here): a latency histogram, FPS over
time, and per-frame strips RGB | predicted colour depth | ground truth | error. A red
"WEIGHTS ARE RANDOM" banner heads the page whenever the model ran random weights, so nobody
mistakes an untrained model's output for depth. No rclpy.
"""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import cv2
from dpt_ros.inference import colorize as colorize_mod
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)
_GRID = (225, 225, 225)
_BAR = (200, 120, 40)        # BGR: a calm blue
_LINE = (40, 110, 220)       # BGR: orange
STRIP_HEIGHT = 240


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values spanning [lo, hi] (1/2/5 x 10^k steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt_tick(v: float) -> str:
    return f'{v:.0f}' if abs(v - round(v)) < 1e-9 or abs(v) >= 100 else f'{v:.3g}'


class _Chart:
    """A white canvas with a plotting area, axes, ticks and labels."""

    def __init__(self, title: str, xlabel: str, ylabel: str, x_range, y_range,
                 size=(720, 360)):
        self.w, self.h = size
        self.img = np.full((self.h, self.w, 3), 255, np.uint8)
        self.left, self.right, self.top, self.bottom = 70, self.w - 20, 40, self.h - 50
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0
        cv2.putText(self.img, title, (self.left, 25), _FONT, 0.6, _INK, 1, cv2.LINE_AA)
        for t in _nice_ticks(self.y0, self.y1):
            y = self.py(t)
            cv2.line(self.img, (self.left, y), (self.right, y), _GRID, 1)
            cv2.putText(self.img, _fmt_tick(t), (5, y + 4), _FONT, 0.4, _INK, 1, cv2.LINE_AA)
        for t in _nice_ticks(self.x0, self.x1, 8):
            x = self.px(t)
            cv2.line(self.img, (x, self.bottom), (x, self.bottom + 4), _INK, 1)
            cv2.putText(self.img, _fmt_tick(t), (x - 10, self.bottom + 18), _FONT, 0.4, _INK, 1,
                        cv2.LINE_AA)
        cv2.line(self.img, (self.left, self.bottom), (self.right, self.bottom), _INK, 1)
        cv2.line(self.img, (self.left, self.top), (self.left, self.bottom), _INK, 1)
        cv2.putText(self.img, xlabel, ((self.left + self.right) // 2 - 4 * len(xlabel),
                                       self.h - 12), _FONT, 0.45, _INK, 1, cv2.LINE_AA)
        cv2.putText(self.img, ylabel, (5, self.top - 8), _FONT, 0.45, _INK, 1, cv2.LINE_AA)

    def px(self, x: float) -> int:
        return int(round(self.left + (x - self.x0) / (self.x1 - self.x0)
                         * (self.right - self.left)))

    def py(self, y: float) -> int:
        return int(round(self.bottom - (y - self.y0) / (self.y1 - self.y0)
                         * (self.bottom - self.top)))


def _no_data(title: str, size=(720, 360)) -> np.ndarray:
    img = np.full((size[1], size[0], 3), 255, np.uint8)
    cv2.putText(img, title, (20, 30), _FONT, 0.6, _INK, 1, cv2.LINE_AA)
    cv2.putText(img, 'no data', (size[0] // 2 - 40, size[1] // 2), _FONT, 0.8, (0, 0, 200), 2,
                cv2.LINE_AA)
    return img


def latency_histogram(latencies_ms, title: str = 'Per-frame latency') -> np.ndarray:
    """BGR histogram of latencies with p50/p95/p99 marked."""
    v = np.asarray([x for x in latencies_ms if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return _no_data(title)
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    bins = int(np.clip(np.sqrt(v.size) * 2, 5, 40))
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    ch = _Chart(f'{title} ({v.size} frames)', 'latency (ms)', 'frames', (lo, hi),
                (0, counts.max() * 1.1))
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            cv2.rectangle(ch.img, (ch.px(a) + 1, ch.py(c)), (ch.px(b) - 1, ch.bottom), _BAR, -1)
    for q, colour in ((50, (0, 140, 0)), (95, (0, 120, 220)), (99, (0, 0, 200))):
        x = ch.px(float(np.percentile(v, q)))
        cv2.line(ch.img, (x, ch.top), (x, ch.bottom), colour, 1)
        cv2.putText(ch.img, f'p{q}', (x + 2, ch.top + 12 * (q // 45)), _FONT, 0.4, colour, 1,
                    cv2.LINE_AA)
    return ch.img


def fps_chart(times_s, fps, title: str = 'Output FPS over time',
              target: float | None = None) -> np.ndarray:
    """BGR line chart of FPS against time (seconds from the first output)."""
    t = np.asarray(times_s, float)
    f = np.asarray(fps, float)
    if t.size == 0:
        return _no_data(title)
    top = max(float(np.nanmax(f)) if f.size else 1.0, target or 0.0) * 1.15 or 1.0
    ch = _Chart(title, 'time since the first input frame (s)', 'FPS',
                (0.0, float(max(t.max() + 0.5, 1.0))),
                (0, top))
    if target:
        y = ch.py(target)
        cv2.line(ch.img, (ch.left, y), (ch.right, y), (0, 160, 0), 1, cv2.LINE_AA)
        cv2.putText(ch.img, f'input {target:g} Hz', (ch.right - 110, y - 5), _FONT, 0.4,
                    (0, 140, 0), 1, cv2.LINE_AA)
    pts = np.array([[ch.px(a), ch.py(b)] for a, b in zip(t, f)], np.int32)
    if len(pts) > 1:
        cv2.polylines(ch.img, [pts], False, _LINE, 2, cv2.LINE_AA)
    for p in pts:
        cv2.circle(ch.img, tuple(int(c) for c in p), 3, _LINE, -1, cv2.LINE_AA)
    return ch.img


def fps_series(times_s, window_s: float = 1.0,
               origin: float | None = None) -> tuple[list[float], list[float]]:
    """
    Output FPS per `window_s` bin from output arrival times (s). Returns (bin centres, fps).

    Times are taken from `origin` (default: the first arrival), e.g. 0 = the first input.
    """
    t = np.sort(np.asarray(times_s, float))
    if t.size == 0:
        return [], []
    t = t - (t[0] if origin is None else origin)
    t = t[t >= 0]
    n_bins = max(1, int(math.ceil((t[-1] + 1e-9) / window_s)))
    counts, edges = np.histogram(t, bins=n_bins, range=(0.0, n_bins * window_s))
    centres = (edges[:-1] + edges[1:]) / 2
    return centres.tolist(), (counts / window_s).tolist()


def _panel(img: np.ndarray, label: str, height: int = STRIP_HEIGHT) -> np.ndarray:
    h, w = img.shape[:2]
    width = max(1, int(round(w * height / h)))
    body = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    band = np.full((24, width, 3), 255, np.uint8)
    cv2.putText(band, label, (6, 17), _FONT, 0.5, _INK, 1, cv2.LINE_AA)
    return np.vstack([band, body])


def frame_strip(rgb: np.ndarray, color_bgr: np.ndarray, gt_depth: np.ndarray | None = None,
                abs_rel_err: np.ndarray | None = None, title: str = '',
                err_max: float = 0.5) -> np.ndarray:
    """
    One BGR strip: RGB | predicted colour depth | ground truth | |error| (when given).

    Ground truth is drawn as inverse depth with the prediction's colormap (near = hot, as in
    the prediction); the error panel maps AbsRel 0..err_max to inferno; unknown = black.
    """
    panels = [_panel(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 'input ' + title),
              _panel(color_bgr, 'predicted (relative inverse depth)')]
    if gt_depth is not None:
        with np.errstate(divide='ignore', invalid='ignore'):
            inv = np.where(np.isfinite(gt_depth) & (gt_depth > 0), 1.0 / gt_depth, np.nan)
        panels.append(_panel(colorize_mod.colorize(inv.astype(np.float32)),
                             'ground truth (1/depth)'))
    if abs_rel_err is not None:
        err = colorize_mod.colorize(abs_rel_err.astype(np.float32), 'inferno', 'fixed', 0.0,
                                    err_max)
        panels.append(_panel(err, f'AbsRel error 0..{err_max:g}'))
    gap = np.full((STRIP_HEIGHT + 24, 6, 3), 255, np.uint8)
    out = panels[0]
    for p in panels[1:]:
        out = np.hstack([out, gap, p])
    return out


def write_png(path: str | Path, bgr: np.ndarray) -> str:
    """Write a PNG; raises OSError when it cannot be written."""
    path = str(path)
    if not cv2.imwrite(path, bgr):
        raise OSError(f'cannot write {path}')
    return path


def _json_safe(obj):
    """NaN/inf -> None so the JSON is standard (browsers and jq reject NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


def _fmt_value(v) -> str:
    if v is None:
        return '–'
    if isinstance(v, bool):
        return 'yes' if v else 'no'
    if isinstance(v, float):
        if not math.isfinite(v):
            return '–'
        return f'{v:.4g}'
    if isinstance(v, (list, tuple)):
        return ', '.join(_fmt_value(x) for x in v)
    if isinstance(v, dict):
        return ', '.join(f'{k}: {_fmt_value(x)}' for k, x in v.items()) or '–'
    return str(v)


def _table(rows: dict) -> str:
    cells = ''.join(f'<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt_value(v))}'
                    '</td></tr>' for k, v in rows.items())
    return f'<table>{cells}</table>'


_CSS = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
.banner{background:#c0392b;color:#fff;padding:14px 18px;font-size:20px;font-weight:bold;
border-radius:4px;margin-bottom:18px}
.warn{background:#f6e05e;padding:10px 14px;border-radius:4px;margin:8px 0}
table{border-collapse:collapse;margin:8px 0 18px}th,td{border:1px solid #ccc;padding:4px 10px;
text-align:left;font-size:14px}th{background:#f3f3f3;font-weight:normal;color:#555}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}h2{margin-top:28px}
.muted{color:#777;font-size:13px}"""


def write_report(out_dir: str | Path, results: dict, strips: list[tuple[str, np.ndarray]],
                 latencies_ms=(), out_times_s=(), target_fps: float | None = None) -> dict:
    """
    Write report.json, report.html, latency.png, fps.png and strips/*.png under `out_dir`.

    :param results: JSON-able dict. Recognised sections: 'summary' (table at the top),
        'accuracy', 'throughput', 'pcc', 'backend', 'input', 'warnings' (list of str),
        'weights_random' (bool: the banner), 'frames' (per-frame records, JSON only).
    :param strips: (caption, BGR image) per illustrated frame.
    :param latencies_ms: per-frame latencies for the histogram.
    :param out_times_s: output arrival times (s) for FPS over time.
    :param target_fps: the input rate, drawn as a reference line.

    :returns: {'json': path, 'html': path, 'latency_png': path, 'fps_png': path, 'strips': [paths]}
    """
    out = Path(out_dir)
    (out / 'strips').mkdir(parents=True, exist_ok=True)
    paths = {'json': str(out / 'report.json'), 'html': str(out / 'report.html')}
    paths['latency_png'] = write_png(out / 'latency.png', latency_histogram(latencies_ms))
    # out_times_s count from the first input frame, so a slow start shows as a gap.
    t, f = fps_series(out_times_s, origin=0.0)
    paths['fps_png'] = write_png(out / 'fps.png', fps_chart(t, f, target=target_fps))
    paths['strips'] = []
    for i, (caption, img) in enumerate(strips):
        paths['strips'].append(write_png(out / 'strips' / f'frame_{i:03d}.png', img))
    results = dict(results)
    results['report_files'] = {k: (os.path.relpath(v, out) if isinstance(v, str)
                                   else [os.path.relpath(x, out) for x in v])
                               for k, v in paths.items()}
    with open(paths['json'], 'w') as fh:
        json.dump(_json_safe(results), fh, indent=2, sort_keys=False)
    Path(paths['html']).write_text(_html(results, strips, paths, out))
    return paths


def _html(results: dict, strips, paths: dict, out: Path) -> str:
    parts = ['<!doctype html><html><head><meta charset="utf-8">',
             f'<title>dpt_ros evaluation: {html.escape(str(results.get("title", "")))}</title>',
             f'<style>{_CSS}</style></head><body>']
    if results.get('weights_random'):
        parts.append('<div class="banner">WEIGHTS ARE RANDOM — the model ran with random '
                     'weights, so the depth images and accuracy figures below are NOT '
                     'meaningful. Throughput and latency are. Provide Intel/dpt-large '
                     '(HF cache or a local directory) for real depth.</div>')
    parts.append(f'<h1>dpt_ros evaluation: {html.escape(str(results.get("title", "")))}</h1>')
    for w in results.get('warnings', []):
        parts.append(f'<div class="warn">{html.escape(str(w))}</div>')
    for key, heading in (('summary', 'Summary'), ('throughput', 'Throughput and latency'),
                         ('accuracy', 'Depth accuracy vs ground truth (MiDaS protocol: '
                          'per-frame scale and shift fitted in inverse depth)'),
                         ('pcc', 'Agreement with the CPU fp32 reference'),
                         ('backend', 'Backend'), ('input', 'Input')):
        if results.get(key):
            parts.append(f'<h2>{html.escape(heading)}</h2>{_table(results[key])}')
    parts.append('<h2>Latency</h2><img src="' + os.path.relpath(paths['latency_png'], out)
                 + '" alt="latency histogram">')
    parts.append('<h2>FPS over time</h2><img src="' + os.path.relpath(paths['fps_png'], out)
                 + '" alt="fps over time">')
    if strips:
        parts.append('<h2>Frames</h2><p class="muted">input | predicted colour depth | ground '
                     'truth | AbsRel error (the last two where the bag has ground truth)</p>')
        for (caption, _), p in zip(strips, paths['strips']):
            parts.append(f'<p>{html.escape(caption)}</p><img src="{os.path.relpath(p, out)}" '
                         f'alt="{html.escape(caption)}">')
    parts.append('<p class="muted">Machine-readable figures: report.json</p></body></html>')
    return '\n'.join(parts)
