// The depth view page: frames and stats from the websocket; each frame acknowledged once drawn.
'use strict';
const view = {frames: [0, 0], stats: 0, points: 0, mime: [], connected: false};
window.dptView = view;
const INFO = [['backend', 'backend'], ['device', 'device'], ['execution_mode', 'mode'],
  ['fallback_reason', 'fallback reason'], ['weights', 'weights'], ['model', 'model']];

function drawFrame(ws, buf) {
  const bytes = new Uint8Array(buf);
  const i = bytes[0];
  const blob = new Blob([bytes.subarray(1)], {type: view.mime[i] || 'image/jpeg'});
  createImageBitmap(blob, {colorSpaceConversion: 'none', premultiplyAlpha: 'none'})
    .then((bmp) => {
      const canvas = document.getElementById('frame' + i);
      if (canvas.width !== bmp.width || canvas.height !== bmp.height) {
        canvas.width = bmp.width;
        canvas.height = bmp.height;
      }
      canvas.getContext('2d').drawImage(bmp, 0, 0);
      document.getElementById('cap' + i).textContent = `${bmp.width}×${bmp.height}`;
      bmp.close();
      view.frames[i] += 1;
    })
    .catch(() => {})
    .finally(() => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ack: i})); });
}

function showInfo(latest, drops) {
  const rows = INFO.map(([k, label]) => [label, latest[k] || '—']);
  rows.push(['level', `${latest.level_name || '—'}: ${latest.message || ''}`]);
  rows.push(['page drops', Object.entries(drops || {}).map(([k, v]) => `${k} ${v}`).join(', ')]);
  const body = document.querySelector('#info tbody');
  body.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    const td = document.createElement('td');
    th.textContent = k;
    td.textContent = v;
    if (k === 'level') td.className = 'level-' + latest.level;
    tr.append(th, td);
    return tr;
  }));
  document.getElementById('banner').style.display = latest.weights_random ? 'block' : 'none';
}

function layout(title, yaxis) {
  return {title: {text: title, font: {size: 13}}, margin: {l: 40, r: 10, t: 28, b: 30},
    showlegend: true, legend: {orientation: 'h', y: -0.25, font: {size: 10}},
    xaxis: {ticksuffix: ' s', tickfont: {size: 10}}, yaxis: {tickfont: {size: 10}, ...yaxis}};
}

function plot(id, title, traces, yaxis) {
  if (!window.Plotly) return;
  Plotly.react(id, traces, layout(title, yaxis || {}), {staticPlot: true, responsive: false});
}

function showPlots(s) {
  const t = s.t;
  const line = (name, y) => ({x: t, y: y, name: name, mode: 'lines', type: 'scatter'});
  plot('plot-fps', 'FPS', [line('output', s.output_fps), line('input', s.input_fps)]);
  plot('plot-latency', 'latency (ms)',
    [line('p50', s.latency_ms_p50), line('p95', s.latency_ms_p95)]);
  plot('plot-level', 'diagnostics level', [{...line('level', s.level), line: {shape: 'hv'}}],
    {range: [-0.2, 3.2], tickvals: [0, 1, 2, 3], ticktext: ['OK', 'WARN', 'ERROR', 'STALE']});
  view.points = t.length;
}

function onText(text) {
  const msg = JSON.parse(text);
  if (msg.type === 'hello') view.mime = msg.mime;
  if (msg.type !== 'stats') return;
  showInfo(msg.latest, msg.drops);
  showPlots(msg.series);
  view.stats += 1;
}

function connect() {
  // The token cookie is set with the page; the query works where cookies are blocked too.
  const token = new URLSearchParams(location.search).get('token');
  const query = token ? `?token=${encodeURIComponent(token)}` : '';
  const ws = new WebSocket(`ws://${location.host}/ws${query}`);
  ws.binaryType = 'arraybuffer';
  const conn = document.getElementById('conn');
  ws.onopen = () => { view.connected = true; conn.textContent = 'live'; };
  ws.onmessage = (ev) => (typeof ev.data === 'string' ? onText(ev.data) : drawFrame(ws, ev.data));
  ws.onclose = () => {
    view.connected = false;
    conn.textContent = 'disconnected: retrying';
    setTimeout(connect, 1000);
  };
}
connect();
