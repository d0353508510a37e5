"""
The evaluation report: report.json for scripts, report.html (+ strip PNGs) for people.

Charts are plotly figures (a latency histogram, FPS over time) drawn in the page by
plotly.min.js, which is inlined from the installed plotly package, so the page works offline
and alone; per-frame strips RGB | predicted colour depth | ground truth | error are PNGs. A red
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
from plotly import offline as plotly_offline
import plotly.io as pio

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)
_BAR = '#2878c8'
_LINE = '#dc6e28'
_PERCENTILES = ((50, '#008c00'), (95, '#dc7800'), (99, '#c80000'))
STRIP_HEIGHT = 240
CHART_HEIGHT_PX = 360


def _layout(title: str, xlabel: str, ylabel: str, **more) -> dict:
    return {'title': {'text': title}, 'xaxis': {'title': {'text': xlabel}},
            'yaxis': {'title': {'text': ylabel}, 'rangemode': 'tozero'},
            'height': CHART_HEIGHT_PX, 'margin': {'t': 50, 'b': 50}, 'showlegend': False,
            **more}


def _no_data(layout: dict) -> dict:
    note = {'text': 'no data', 'showarrow': False, 'xref': 'paper', 'yref': 'paper',
            'x': 0.5, 'y': 0.5, 'font': {'size': 20, 'color': '#c80000'}}
    return {'data': [], 'layout': dict(layout, annotations=[note])}


def latency_figure(latencies_ms, title: str = 'Per-frame latency') -> dict:
    """Return a plotly figure: histogram of the finite latencies, p50/p95/p99 marked."""
    v = [float(x) for x in latencies_ms if x is not None and math.isfinite(x)]
    layout = _layout(f'{title} ({len(v)} frames)', 'latency (ms)', 'frames', bargap=0.04)
    if not v:
        return _no_data(layout)
    marks = [(q, colour, float(np.percentile(v, q))) for q, colour in _PERCENTILES]
    layout['shapes'] = [{'type': 'line', 'x0': x, 'x1': x, 'y0': 0, 'y1': 1, 'yref': 'paper',
                         'line': {'color': colour, 'width': 1}} for _, colour, x in marks]
    layout['annotations'] = [{'text': f'p{q}', 'x': x, 'y': 1 - 0.06 * i, 'yref': 'paper',
                              'showarrow': False, 'xanchor': 'left', 'font': {'color': colour}}
                             for i, (q, colour, x) in enumerate(marks)]
    return {'data': [{'type': 'histogram', 'x': v, 'marker': {'color': _BAR},
                      'nbinsx': int(np.clip(np.sqrt(len(v)) * 2, 5, 40))}],
            'layout': layout}


def fps_figure(times_s, fps, title: str = 'Output FPS over time',
               target: float | None = None) -> dict:
    """Return a plotly figure: FPS against seconds from the first input, the input rate marked."""
    layout = _layout(title, 'time since the first input frame (s)', 'FPS')
    if len(times_s) == 0:
        return _no_data(layout)
    if target:
        layout['shapes'] = [{'type': 'line', 'x0': 0, 'x1': 1, 'xref': 'paper', 'y0': target,
                             'y1': target, 'line': {'color': '#00a000', 'dash': 'dot'}}]
        layout['annotations'] = [{'text': f'input {target:g} Hz', 'x': 1, 'xref': 'paper',
                                  'y': target, 'xanchor': 'right', 'yanchor': 'bottom',
                                  'showarrow': False, 'font': {'color': '#008c00'}}]
    return {'data': [{'type': 'scatter', 'mode': 'lines+markers',
                      'x': [float(t) for t in times_s], 'y': [float(f) for f in fps],
                      'line': {'color': _LINE}}],
            'layout': layout}


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
    Write report.json, report.html (with its charts) and strips/*.png under `out_dir`.

    :param results: JSON-able dict. Recognised sections: 'summary' (table at the top),
        'accuracy', 'throughput', 'pcc', 'backend', 'input', 'warnings' (list of str),
        'weights_random' (bool: the banner), 'frames' (per-frame records, JSON only).
    :param strips: (caption, BGR image) per illustrated frame.
    :param latencies_ms: per-frame latencies for the histogram.
    :param out_times_s: output arrival times (s) for FPS over time.
    :param target_fps: the input rate, drawn as a reference line.

    :returns: {'json': path, 'html': path, 'strips': [paths]}
    """
    out = Path(out_dir)
    (out / 'strips').mkdir(parents=True, exist_ok=True)
    paths = {'json': str(out / 'report.json'), 'html': str(out / 'report.html')}
    # out_times_s count from the first input frame, so a slow start shows as a gap.
    t, f = fps_series(out_times_s, origin=0.0)
    charts = [('Latency', 'latency', latency_figure(latencies_ms)),
              ('FPS over time', 'fps', fps_figure(t, f, target=target_fps))]
    paths['strips'] = []
    for i, (caption, img) in enumerate(strips):
        paths['strips'].append(write_png(out / 'strips' / f'frame_{i:03d}.png', img))
    results = dict(results)
    results['report_files'] = {k: (os.path.relpath(v, out) if isinstance(v, str)
                                   else [os.path.relpath(x, out) for x in v])
                               for k, v in paths.items()}
    with open(paths['json'], 'w') as fh:
        json.dump(_json_safe(results), fh, indent=2, sort_keys=False)
    Path(paths['html']).write_text(_html(results, strips, paths, out, charts))
    return paths


def chart_html(div_id: str, figure: dict) -> str:
    """Return a plotly figure as a <div> and the script drawing it (plotly.js not included)."""
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id,
                       default_height=f'{CHART_HEIGHT_PX}px', validate=False,
                       config={'displaylogo': False, 'responsive': True})


def _html(results: dict, strips, paths: dict, out: Path, charts) -> str:
    # plotly.js inline (about 4.6 MB): the page needs no network and no file beside it.
    parts = ['<!doctype html><html><head><meta charset="utf-8">',
             f'<title>dpt_ros evaluation: {html.escape(str(results.get("title", "")))}</title>',
             f'<style>{_CSS}</style>',
             f'<script>{plotly_offline.get_plotlyjs()}</script></head><body>']
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
    for heading, div_id, figure in charts:
        parts.append(f'<h2>{heading}</h2>' + chart_html(div_id, figure))
    if strips:
        parts.append('<h2>Frames</h2><p class="muted">input | predicted colour depth | ground '
                     'truth | AbsRel error (the last two where the bag has ground truth)</p>')
        for (caption, _), p in zip(strips, paths['strips']):
            parts.append(f'<p>{html.escape(caption)}</p><img src="{os.path.relpath(p, out)}" '
                         f'alt="{html.escape(caption)}">')
    parts.append('<p class="muted">Machine-readable figures: report.json</p></body></html>')
    return '\n'.join(parts)
