// The quotagate dashboard. It holds no data of its own: everything comes
// from the admin API with the token the user typed, which is kept in this
// tab's sessionStorage and sent as a bearer header. The live feed is read
// with fetch, because EventSource cannot send headers. Every value from
// the server is put in the page as text, never as HTML.
'use strict';
(() => {
  const KEY = 'quotagate.admin.token';
  const W = 600, H = 200;
  // Allowed decisions are drawn in cool colours, refusals in warm ones.
  const COOL = ['#2e7d32', '#1565c0', '#00838f', '#558b2f', '#283593', '#6a1b9a'];
  const WARM = ['#c62828', '#ef6c00', '#ad1457', '#f9a825', '#4e342e', '#d84315'];
  const MAX_REJECTIONS = 25;
  const $ = (id) => document.getElementById(id);
  let abort = null;
  let traceURL = '';
  let alerts = [];
  const colors = new Map();
  let cool = 0;
  let warm = 0;

  const token = () => sessionStorage.getItem(KEY) || '';

  async function api(path, opts = {}) {
    const headers = Object.assign({ Authorization: 'Bearer ' + token() }, opts.headers || {});
    const res = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store' }));
    if (!res.ok) {
      let msg = 'HTTP ' + res.status;
      try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
      const err = new Error(msg);
      err.status = res.status;
      throw err;
    }
    return res;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) tr.appendChild(c instanceof Node ? c : el('td', c));
    return tr;
  }

  function setStatus(s) { $('status').textContent = s; }

  function show(signedIn) {
    $('login').hidden = signedIn;
    $('board').hidden = !signedIn;
    $('logout').hidden = !signedIn;
    if (!signedIn) {
      $('health').hidden = true;
    }
  }

  async function signIn(t) {
    sessionStorage.setItem(KEY, t);
    $('login-error').textContent = '';
    try {
      const body = await (await api('/v1/tiers')).json();
      renderTiers(body.tiers || []);
    } catch (e) {
      sessionStorage.removeItem(KEY);
      $('login-error').textContent = 'Sign-in failed: ' + e.message;
      setStatus('signed out');
      return;
    }
    show(true);
    stream();
  }

  function signOut(msg) {
    if (abort) abort.abort();
    sessionStorage.removeItem(KEY);
    show(false);
    setStatus('signed out');
    $('login-error').textContent = msg || '';
  }

  async function stream() {
    abort = new AbortController();
    const signal = abort.signal;
    setStatus('connecting');
    try {
      const res = await api('/v1/stream', { signal, headers: { Accept: 'text/event-stream' } });
      setStatus('live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          handle(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e.status === 401 || e.status === 403) {
        signOut('The server refused the token: ' + e.message);
        return;
      }
    }
    if (!signal.aborted) {
      setStatus('reconnecting');
      setTimeout(() => { if (!signal.aborted) stream(); }, 2000);
    }
  }

  function handle(block) {
    let event = 'message';
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trim();
    }
    if (!data) return;
    const v = JSON.parse(data);
    if (event === 'snapshot') renderSnapshot(v);
    else if (event === 'alert') {
      alerts = [v].concat(alerts.filter((a) => a.id !== v.id));
      renderAlerts();
    }
  }

  function renderTiers(tiers) {
    const tb = $('tiers').tBodies[0];
    tb.replaceChildren();
    for (const t of tiers) {
      const limits = (t.limits || []).map((l) => l.max + ' ' + (l.unit || 'calls') + '/' + l.period).join(', ');
      const tokens = t.tokens && t.tokens.unlimited ? 'unlimited'
        : t.tokens && t.tokens.amount ? t.tokens.amount + '/' + t.tokens.period : '';
      tb.appendChild(row([t.name + (t.default ? ' (default)' : ''), t.priority, limits || 'none', tokens]));
    }
  }

  function renderSnapshot(s) {
    traceURL = /^https?:\/\//.test(s.trace_url || '') ? s.trace_url : '';
    renderChart(s.series || []);
    renderTop(s.top || []);
    renderRejections(s.rejections || []);
    alerts = s.alerts || [];
    renderAlerts();
    renderHealth(s);
    const c = s.capacity || {};
    $('capacity').textContent = c.requests_per_second
      ? `Capacity ${c.requests_per_second} req/s, admitted ${c.admitted_rate.toFixed(1)} req/s (${(100 * c.utilization).toFixed(0)}%), factor ${c.factor}`
      : `Shedding off, factor ${c.factor}`;
  }

  // renderHealth shows what an operator must know first: a degraded
  // server (its shared store does not answer) and a refused reload.
  function renderHealth(s) {
    const lines = [];
    if (s.degraded) {
      lines.push('Degraded: ' + s.degraded);
    }
    const c = s.config || {};
    if (c.last_error) {
      lines.push('Configuration reload refused; the previous configuration is serving: ' + c.last_error);
    }
    const el = $('health');
    el.textContent = lines.join('\n');
    el.hidden = lines.length === 0;
  }

  function colorOf(s) {
    const key = s.tier + ' / ' + s.outcome;
    if (!colors.has(key)) {
      colors.set(key, s.outcome === 'ok' ? COOL[cool++ % COOL.length] : WARM[warm++ % WARM.length]);
    }
    return colors.get(key);
  }

  function svg(tag, attrs) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    return e;
  }

  function renderChart(series) {
    const chart = $('chart');
    const legend = $('legend');
    chart.replaceChildren();
    legend.replaceChildren();
    let max = 1;
    let last = 0;
    for (const s of series) {
      for (const n of s.counts) max = Math.max(max, n);
      last += s.counts.length > 1 ? s.counts[s.counts.length - 2] : 0;
    }
    for (const [x, anchor, text] of [[4, 'start', '60 s ago'], [W - 4, 'end', 'now']]) {
      const label = svg('text', { x, y: H - 3, 'font-size': 10, fill: '#6b7380', 'text-anchor': anchor });
      label.textContent = text;
      chart.appendChild(label);
    }
    for (const f of [0.5, 1]) {
      const y = H - f * (H - 10);
      chart.appendChild(svg('line', { x1: 0, x2: W, y1: y, y2: y, stroke: '#e6e8eb' }));
      const label = svg('text', { x: 4, y: y - 2, 'font-size': 10, fill: '#6b7380' });
      label.textContent = String(Math.round(f * max));
      chart.appendChild(label);
    }
    for (const s of series) {
      const key = s.tier + ' / ' + s.outcome;
      const n = s.counts.length;
      const pts = s.counts.map((c, i) => `${(i * W / (n - 1)).toFixed(1)},${(H - c / max * (H - 10)).toFixed(1)}`);
      chart.appendChild(svg('polyline', { points: pts.join(' '), fill: 'none', stroke: colorOf(s), 'stroke-width': 2, 'data-series': key }));
      const item = el('span', key);
      item.style.setProperty('--c', colorOf(s));
      legend.appendChild(item);
    }
    $('rate-now').textContent = `(${last} in the last second)`;
    $('rate-now').dataset.total = String(last);
  }

  function renderTop(top) {
    const tb = $('top').tBodies[0];
    tb.replaceChildren();
    for (const t of top) {
      tb.appendChild(row([t.subject, t.tier, el('td', t.used, 'num'), el('td', t.limit, 'num'), el('td', t.percent.toFixed(0), 'num')]));
    }
  }

  function decisionCell(r) {
    const td = el('td');
    const id = el('code', r.decision_id);
    if (traceURL && /^[0-9a-fA-F]{16,32}$/.test(r.trace_id || '')) {
      const a = el('a');
      a.href = traceURL.split('{trace_id}').join(encodeURIComponent(r.trace_id));
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.title = 'Trace ' + r.trace_id;
      a.appendChild(id);
      td.appendChild(a);
    } else {
      td.appendChild(id);
    }
    return td;
  }

  function renderRejections(rs) {
    const tb = $('rejections').tBodies[0];
    tb.replaceChildren();
    for (const r of rs.slice(0, MAX_REJECTIONS)) {
      const tr = row([new Date(r.time).toLocaleTimeString(), r.subject, r.tier,
        r.reason + (r.limit ? ` (${r.used}/${r.limit})` : ''), decisionCell(r)]);
      tr.dataset.decisionId = r.decision_id;
      tb.appendChild(tr);
    }
  }

  function renderAlerts() {
    const ul = $('alerts');
    ul.replaceChildren();
    for (const a of alerts) {
      const li = el('li', `${new Date(a.time).toLocaleString()} ${a.kind} ${a.subject}${a.limit ? ' ' + a.limit : ''}: ${a.message}`);
      li.dataset.alertId = a.id;
      if (a.acked) li.className = 'acked';
      else {
        const b = el('button', 'Acknowledge');
        b.type = 'button';
        b.addEventListener('click', () => ack(a.id, b));
        li.appendChild(b);
      }
      ul.appendChild(li);
    }
  }

  async function ack(id, button) {
    button.disabled = true;
    try {
      await api('/v1/alerts/' + encodeURIComponent(id) + '/ack', { method: 'POST' });
      for (const a of alerts) if (a.id === id) a.acked = true;
      renderAlerts();
    } catch (e) {
      button.disabled = false;
      setStatus('acknowledge failed: ' + e.message);
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      $('token').value = '';
      if (t) signIn(t);
    });
    $('logout').addEventListener('click', () => signOut(''));
    if (token()) signIn(token());
  });
})();
