// llm-agent console: tiles from /api/v1/console, charts from Prometheus' query API on the
// same port. No library: charts are drawn on canvases below. Every text from the agent
// (labels come from targets, which may be hostile) goes in through textContent, never HTML.
"use strict";

const RANGES = {3600: "1 h", 86400: "24 h", 604800: "7 d", 2592000: "30 d"};
const POINTS = 240;
const COLOURS = ["#2b6cb0", "#dd6b20", "#38a169", "#d53f8c", "#805ad5", "#319795", "#c05621", "#718096"];
// `needs`: the section of the console state a chart belongs to: no GPU charts on a host without GPUs
const CHARTS = [
  {title: "GPU utilisation (%)", query: "DCGM_FI_DEV_GPU_UTIL", by: "gpu", max: 100, needs: s => s.gpus.length},
  {title: "GPU temperature (°C)", query: "DCGM_FI_DEV_GPU_TEMP", by: "gpu", needs: s => s.gpus.length},
  {title: "GPU power (W)", query: "DCGM_FI_DEV_POWER_USAGE", by: "gpu", needs: s => s.gpus.length},
  {title: "GPU memory used (MiB)", query: "DCGM_FI_DEV_FB_USED", by: "gpu", needs: s => s.gpus.length},
  {title: "Generated tokens/s", query: "llm_agent_generation_tokens_per_second", by: "server", needs: s => s.targets.length},
  {title: "Probe time to first token, p95 (s)", needs: s => s.targets.length,
   query: "histogram_quantile(0.95, sum by (server, le) (rate(llm_agent_probe_ttft_seconds_bucket[$w])))", by: "server"},
  {title: "Probe success (share)", query: "avg_over_time(llm_agent_probe_success[$w])", by: "server", max: 1,
   needs: s => s.targets.length},
  {title: "Server up", query: "llm_agent_target_up", by: "server", max: 1, needs: s => s.targets.length},
  {title: "Cost per hour", query: "llm_agent_cost_per_hour", by: "currency", needs: s => s.cost.per_hour !== undefined},
];
let shownCharts = CHARTS;

let range = 3600;
let refreshMs = 10000;
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin"});
  const doc = await response.json();
  if (doc.status === "error") throw new Error(doc.error);
  return doc;
}

function query(expr, seconds, step) {
  const end = Date.now() / 1000;
  const params = new URLSearchParams({query: expr, start: (end - seconds).toFixed(3), end: end.toFixed(3), step: String(step)});
  return getJSON("/api/v1/query_range?" + params);
}

function instant(expr) {
  return getJSON("/api/v1/query?" + new URLSearchParams({query: expr}));
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 1e9) return (value / 1e9).toFixed(1) + " G";
  if (abs >= 1e6) return (value / 1e6).toFixed(1) + " M";
  if (abs >= 1e4) return (value / 1e3).toFixed(1) + " k";
  return value.toFixed(digits === undefined ? (abs >= 100 ? 0 : abs >= 10 ? 1 : 2) : digits);
}

function since(iso) {
  const seconds = Math.max(0, Date.now() / 1000 - Date.parse(iso) / 1000);
  return duration(seconds) + " ago";
}

function duration(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}

// -- drawing ---------------------------------------------------------------------------------

function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300, height = canvas.clientHeight || 150;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return {ctx, width, height, style: getComputedStyle(document.body)};
}

// series: [{name, points: [[t, v], ...]}]; draws lines over [t0, t1], axes when not a sparkline
function drawLines(canvas, series, t0, t1, opts) {
  const {ctx, width, height, style} = prepare(canvas);
  const spark = opts.spark;
  const left = spark ? 1 : 46, right = 4, top = 4, bottom = spark ? 1 : 18;
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const [, v] of s.points) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  lo = Math.min(lo, 0);
  if (opts.max !== undefined) hi = Math.max(hi, opts.max);
  if (hi === lo) hi = lo + 1;
  const x = t => left + (t - t0) / (t1 - t0) * (width - left - right);
  const y = v => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = style.getPropertyValue("--muted") || "#888";
  ctx.strokeStyle = style.getPropertyValue("--line") || "#ddd";
  ctx.lineWidth = 1;
  if (!spark) {
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(width - right, yy); ctx.stroke();
      ctx.fillText(fmt(v), 2, yy + 4);
    }
    const label = t => {
      const d = new Date(t * 1000);
      return t1 - t0 > 172800 ? d.toLocaleDateString([], {month: "short", day: "numeric"})
        : d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
    };
    // as many time labels as fit side by side (a phone's narrow chart gets two), none cut at an edge
    const room = ctx.measureText(label(t1)).width + 16;
    const n = Math.max(1, Math.min(3, Math.floor((width - left - right) / room) - 1));
    const drawn = [];  // each label's [left, right] in px, kept on the canvas for the tests to check
    for (let i = 0; i <= n; i++) {
      const t = t0 + (t1 - t0) * i / n, text = label(t), w = ctx.measureText(text).width;
      const at = i === 0 ? left : i === n ? width - right : x(t);
      ctx.textAlign = i === 0 ? "left" : i === n ? "right" : "center";
      ctx.fillText(text, at, height - 4);
      const from = i === 0 ? at : i === n ? at - w : at - w / 2;
      drawn.push([from, from + w]);
    }
    canvas.dataset.labels = JSON.stringify({width, spans: drawn});
    ctx.textAlign = "left";
  }
  series.forEach((s, i) => {
    ctx.strokeStyle = COLOURS[i % COLOURS.length];
    ctx.lineWidth = spark ? 1.5 : 1.8;
    ctx.beginPath();
    let drawing = false, last = null;
    for (const [t, v] of s.points) {
      if (!Number.isFinite(v) || (last !== null && t - last > opts.gap)) { drawing = false; }
      if (!Number.isFinite(v)) { last = null; continue; }
      if (drawing) ctx.lineTo(x(t), y(v)); else { ctx.moveTo(x(t), y(v)); drawing = true; }
      last = t;
    }
    ctx.stroke();
    const end = s.points.filter(([, v]) => Number.isFinite(v)).pop();  // "now": visible however short the series
    if (end) {
      ctx.fillStyle = COLOURS[i % COLOURS.length];
      ctx.beginPath(); ctx.arc(x(end[0]), y(end[1]), spark ? 2 : 3, 0, 2 * Math.PI); ctx.fill();
    }
  });
  if (!series.length && !spark) {
    ctx.fillText("no data in this range", width / 2 - 50, height / 2);
  }
}

function toSeries(doc, by) {
  return doc.data.result.map(r => ({name: r.metric[by] !== undefined ? `${by} ${r.metric[by]}` : JSON.stringify(r.metric),
                                     points: r.values.map(([t, v]) => [t, parseFloat(v)])}));
}

// -- tiles -------------------------------------------------------------------------------------

function renderHeader(state) {
  document.getElementById("host").textContent = state.hostname;
  document.title = `${state.hostname} · llm-agent`;
  const verdict = document.getElementById("verdict");
  // the host's one verdict (agent/verdict.py): the same /healthz, `llm-agent check` and the report give
  const status = state.health.status;
  verdict.textContent = status === "ok" ? "healthy" : status;
  verdict.className = "verdict " + ({ok: "ok", warning: "warn", maintenance: "maintenance"}[status] || "degraded");
  const reasons = document.getElementById("reasons");
  reasons.replaceChildren(...(state.health.reasons || []).map(r => el("li", {}, r)),
                          ...(state.health.held || []).map(r => el("li", {class: "muted"}, r)));
  const windows = state.maintenance || [];
  const banner = document.getElementById("maintenance");
  banner.hidden = !windows.length;  // `llm-agent maintenance`: pages silenced, /healthz 503
  banner.textContent = windows.map(w => `Maintenance of ${w.target ? "target " + w.target : "this host"} until ` +
    `${new Date(w.until * 1000).toLocaleString()}: ${w.comment}`).join(" · ");
  const when = state.time ? new Date(state.time * 1000).toLocaleTimeString() : "–";
  document.getElementById("updated").textContent = `last cycle ${when} · every ${state.interval}s`;
}

function renderAlerts(alerts) {
  const box = document.getElementById("alerts");
  const firing = alerts.filter(a => a.state === "firing");
  if (!firing.length) { box.replaceChildren(el("p", {class: "muted"}, "Nothing firing.")); return; }
  box.replaceChildren(...firing.map(a => {
    const severity = a.labels.severity || "warning";
    const runbook = a.annotations.runbook_url || a.annotations.runbook;
    // a silenced or inhibited alert is shown as such, never as an unexplained critical
    return el("div", {class: "item " + (a.held ? "held" : severity), "data-alert": a.labels.alertname},
      el("strong", {}, a.labels.alertname), " ", el("span", {class: "badge " + (severity === "critical" ? "bad" : "warn")}, severity),
      " ", el("span", {class: "muted"}, "since " + since(a.activeAt)),
      a.held ? el("div", {class: "muted held"}, a.held.slice(a.held.indexOf(" ", a.labels.alertname.length) + 1)) : null,
      el("div", {}, a.annotations.summary || ""),
      runbook && /^https?:\/\//.test(runbook) ? el("a", {href: runbook, rel: "noopener"}, "runbook") : null);
  }));
}

function tile(title, badge, badgeClass, rows, sparkId) {
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v));
  return el("div", {class: "tile"}, el("h3", {}, el("span", {}, title), el("span", {class: "badge " + badgeClass}, badge)),
    dl, sparkId ? el("canvas", {class: "spark", id: sparkId, "aria-label": title + ", last hour"}) : null);
}

function renderTargets(targets) {
  const box = document.getElementById("targets");
  if (!targets.length) { box.replaceChildren(el("p", {class: "muted"}, "No inference server found or configured.")); return; }
  box.replaceChildren(...targets.map(t => {
    const slots = t.slots && t.slots.busy !== undefined ? `${t.slots.busy} busy / ${t.slots.busy + t.slots.idle}` : "–";
    const node = tile(t.server, t.state, t.healthy ? "" : (t.state === "up" ? "warn" : "bad"), [
      ["model", t.model || "–"], ["tokens/s", fmt(t.tokens_per_second)],
      ["TTFT p50 / p95", el("span", {"data-ttft": t.server}, "–")],
      ["requests running", fmt(t.requests_running, 0)], ["deferred", fmt(t.requests_deferred, 0)], ["slots", slots],
    ], "spark-target-" + t.server);
    node.dataset.server = t.server;
    if (t.reasons.length) node.append(el("p", {class: "muted"}, t.reasons.join("; ")));
    return node;
  }));
}

function renderGpus(gpus) {
  const box = document.getElementById("gpus");
  box.closest("section").hidden = !gpus.length;  // a host without GPUs has no GPU section
  if (!gpus.length) { box.replaceChildren(); return; }
  box.replaceChildren(...gpus.map(g => {
    const memory = g.memory_total_mib ? `${fmt(g.memory_used_mib / 1024, 1)} / ${fmt(g.memory_total_mib / 1024, 1)} GiB` : "–";
    return tile(`GPU ${g.gpu} ${g.model || ""}`, g.up ? "up" : "lost", g.up ? "" : "bad", [
      ["utilisation", g.utilisation === null ? "–" : fmt(g.utilisation, 0) + " %"], ["memory", memory],
      ["temperature", g.temperature === null ? "–" : fmt(g.temperature, 0) + " °C"],
      ["power", g.power_watts === null ? "–" : fmt(g.power_watts, 0) + " W"],
      ["clocks SM / mem", `${fmt(g.sm_clock_mhz, 0)} / ${fmt(g.memory_clock_mhz, 0)} MHz`],
      ["throttled by", g.throttle_reasons.length ? g.throttle_reasons.join(", ") : "nothing"],
      ["XID events", fmt(g.xid_events, 0)],
      ["used by", !g.up ? "–" : g.used_by.length ? g.used_by.map(u => `${u.server} (${u.model || "?"})` +
        (u.memory_mib === undefined ? "" : ` ${fmt(u.memory_mib / 1024, 1)} GiB`)).join(", ") : "no model"],
    ], "spark-gpu-" + g.gpu);
  }));
}

// Wh per 1,000 tokens per model: over the last minute (the snapshot) and since local midnight (the history)
function energyTile(energy) {
  const dl = el("dl", {id: "energy"}), cells = new Map();
  for (const e of energy) {
    const dd = el("dd", {}, fmt(e.wh_per_1k_tokens, 3) + " now");
    cells.set(JSON.stringify([e.server, e.model]), dd);
    dl.append(el("dt", {}, `${e.server} ${e.model || ""}`.trim()), dd);
  }
  const midnight = new Date(); midnight.setHours(0, 0, 0, 0);
  const span = Math.max(60, Math.round((Date.now() - midnight) / 1000)) + "s";
  instant(`sum by (server, model) (increase(llm_agent_energy_joules_total[${span}])) / ` +
          `sum by (server, model) (increase(llm_agent_generation_tokens_total[${span}])) / 3.6`).then(doc => {
    for (const r of doc.data.result) {
      const dd = cells.get(JSON.stringify([r.metric.server, r.metric.model || ""]));
      if (dd && isFinite(parseFloat(r.value[1]))) dd.textContent += ` · ${fmt(parseFloat(r.value[1]), 3)} today`;
    }
  }).catch(() => {});
  return el("div", {class: "tile"}, el("h3", {}, "Energy, Wh per 1K tokens"), dl);
}

function renderCost(cost, targets, energy, remote) {
  const rows = [];
  if (cost.per_hour !== undefined) {
    rows.push(tile("Cost", cost.currency || "", "", [
      ["per hour", fmt(cost.per_hour)], ["today", fmt(cost.today)], ["month, projected", fmt(cost.month_projection)],
      ["month budget", cost.month_budget === undefined ? "–" : fmt(cost.month_budget)],
      ["per 1K tokens", cost.per_1k_tokens === undefined ? "–" : fmt(cost.per_1k_tokens, 4)]]));
  }
  if (energy && energy.length) rows.push(energyTile(energy));
  for (const r of remote || []) {
    rows.push(tile("Remote write " + r.name, r.up ? "sending" : "retrying", r.up ? "" : "warn", [
      ["behind", r.lag_seconds === null ? "–" : duration(r.lag_seconds)], ["samples sent", fmt(r.sent, 0)]]));
  }
  const slo = el("div", {class: "tile"}, el("h3", {}, "Availability, last 30 days"), el("dl", {id: "slo"}));
  rows.push(slo);
  document.getElementById("cost").replaceChildren(...rows);
  instant("avg_over_time(llm_agent_probe_success[30d])").then(doc => {
    const dl = document.getElementById("slo");
    if (!dl) return;
    dl.replaceChildren(...doc.data.result.flatMap(r => [el("dt", {}, r.metric.server),
                                                          el("dd", {}, (parseFloat(r.value[1]) * 100).toFixed(3) + " %")]));
    if (!doc.data.result.length) dl.append(el("dt", {}, "no probes yet"));
  }).catch(() => {});
}

function renderPerformance(perf) {
  // each target's last benchmark against its baseline (a regression beyond 15% marked), and the quality set
  const tiles = (perf || []).map(p => {
    const rows = p.figures.map(f => {
      const worse = f.slowdown !== null && f.slowdown > 1.15;
      const vs = f.slowdown === null ? "no baseline" : ((1 / f.slowdown - 1) * 100).toFixed(1) + " %";
      return [f.figure.replace(/_/g, " "), fmt(f.value, 3) + "  (" + vs + (worse ? ", regressed" : "") + ")"];
    });
    if (p.quality) {
      rows.push(["quality set", (p.quality.score * 100).toFixed(0) + " %" +
                 (p.quality.baseline === null || p.quality.baseline === undefined ? "" :
                  " (baseline " + (p.quality.baseline * 100).toFixed(0) + " %)")]);
    }
    const regressed = p.figures.some(f => f.slowdown !== null && f.slowdown > 1.15) ||
      (p.quality && p.quality.baseline !== null && p.quality.baseline !== undefined && p.quality.score < p.quality.baseline);
    const changed = p.figures.map(f => f.changed).find(c => c && !c.startsWith("nothing"));
    if (changed) rows.push(["changed", changed]);
    return tile(p.server, regressed ? "regressed" : "as usual", regressed ? "warn" : "ok", rows);
  });
  document.getElementById("performance").replaceChildren(
    ...(tiles.length ? tiles : [el("p", {class: "muted"}, "no benchmark yet (every 6 h, or `llm-agent bench NAME`)")]));
}

// -- charts, sparklines, timeline ------------------------------------------------------------------

async function sparklines(state) {
  const now = Date.now() / 1000;
  const jobs = [["DCGM_FI_DEV_GPU_UTIL", "gpu", "spark-gpu-", 100], ["llm_agent_generation_tokens_per_second", "server", "spark-target-"]];
  for (const [expr, by, prefix, max] of jobs) {
    try {
      const doc = await query(expr, 3600, 30);
      for (const r of doc.data.result) {
        const canvas = document.getElementById(prefix + r.metric[by]);
        if (canvas) drawLines(canvas, [{points: r.values.map(([t, v]) => [t, parseFloat(v)])}], now - 3600, now,
                              {spark: true, gap: 90, max});
      }
    } catch (e) { /* the tile keeps its figures */ }
  }
  for (const q of ["0.5", "0.95"]) {
    try {
      const doc = await instant(`histogram_quantile(${q}, sum by (server, le) (increase(llm_agent_probe_ttft_seconds_bucket[1h])))`);
      for (const r of doc.data.result) {
        const cell = document.querySelector(`[data-ttft="${CSS.escape(r.metric.server)}"]`);
        if (!cell) continue;
        const v = parseFloat(r.value[1]);
        const text = Number.isFinite(v) ? (v < 1 ? (v * 1000).toFixed(0) + " ms" : v.toFixed(2) + " s") : "–";
        cell.textContent = q === "0.5" ? text : `${cell.textContent.split(" / ")[0]} / ${text}`;
      }
    } catch (e) { /* no probes yet */ }
  }
}

async function drawCharts() {
  const box = document.getElementById("charts");
  const step = Math.max(5, Math.round(range / POINTS));
  const window = Math.max(300, 4 * step) + "s";
  const now = Date.now() / 1000;
  const notes = new Set();
  const key = shownCharts.map(c => c.title).join("|");
  if (box.dataset.shown !== key) {  // built anew only when the host's sections change (a GPU appears)
    box.dataset.shown = key;
    box.replaceChildren(...shownCharts.map(c => { const i = CHARTS.indexOf(c); return el("figure", {class: "chart"},
      el("h3", {}, c.title), el("canvas", {id: "chart-" + i, "aria-label": c.title}),
      el("figcaption", {class: "legend", id: "legend-" + i})); }));
  }
  await Promise.all(shownCharts.map(async c => {
    const i = CHARTS.indexOf(c);
    const canvas = document.getElementById("chart-" + i);
    try {
      const doc = await query(c.query.replace("$w", window), range, step);
      (doc.warnings || []).forEach(w => notes.add(w.split(":")[0]));
      const series = toSeries(doc, c.by);
      drawLines(canvas, series, now - range, now, {gap: 3 * step + 30, max: c.max});
      document.getElementById("legend-" + i).replaceChildren(
        ...series.map((s, k) => { const span = el("span", {}, s.name); span.style.setProperty("--c", COLOURS[k % COLOURS.length]); return span; }));
    } catch (e) {
      drawLines(canvas, [], now - range, now, {gap: 0});
    }
  }));
  document.getElementById("chart-note").textContent = notes.size ? [...notes].join("; ") : "";
}

async function drawTimeline() {
  const canvas = document.getElementById("timeline");
  const now = Date.now() / 1000, t0 = now - 7 * 86400;
  let events = [];
  try { events = (await getJSON("/api/v1/alerts/history?since=7d")).data; } catch (e) { /* drawn empty */ }
  const open = {}, spans = [];
  for (const e of events) {
    const key = e.fingerprint;
    if (e.state === "pending" || e.state === "firing") {
      if (open[key] && open[key].state !== e.state) { open[key].end = e.time; spans.push(open[key]); }
      if (!open[key] || open[key].state !== e.state) open[key] = {name: e.labels.alertname || "?", severity: e.labels.severity,
                                                                  state: e.state, start: e.time, end: null};
    } else if (open[key]) { open[key].end = e.time; spans.push(open[key]); delete open[key]; }
  }
  for (const s of Object.values(open)) spans.push(s);
  const names = [...new Set(spans.map(s => s.name))].slice(0, 8);
  const {ctx, width, height, style} = prepare(canvas);
  const left = 150, row = Math.max(12, Math.floor((height - 20) / Math.max(names.length, 1)));
  const x = t => left + (Math.max(t, t0) - t0) / (now - t0) * (width - left - 4);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = style.getPropertyValue("--muted") || "#888";
  for (let d = 0; d <= 7; d++) ctx.fillText(new Date((t0 + d * 86400) * 1000).toLocaleDateString([], {weekday: "short"}),
                                             Math.min(x(t0 + d * 86400), width - 30), height - 4);
  if (!names.length) ctx.fillText("no alerts in the last 7 days", left, 20);
  names.forEach((name, i) => {
    ctx.fillStyle = style.getPropertyValue("--fg") || "#000";
    ctx.fillText(name.slice(0, 22), 2, 12 + i * row);
    for (const s of spans.filter(s => s.name === name)) {
      ctx.fillStyle = s.state === "firing" ? (s.severity === "critical" ? "#c53030" : "#b7791f") : "#a0aec0";
      ctx.fillRect(x(s.start), 3 + i * row, Math.max(2, x(s.end || now) - x(s.start)), row - 5);
    }
  });
  const incidents = spans.filter(s => s.state === "firing").sort((a, b) => b.start - a.start).slice(0, 10);
  document.getElementById("incidents").replaceChildren(...incidents.map(s => el("div", {class: "item " + (s.severity || "")},
    el("strong", {}, s.name), " ", new Date(s.start * 1000).toLocaleString(), " · ",
    s.end ? "lasted " + duration(s.end - s.start) : "still firing")));
}

// -- the loop --------------------------------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  try {
    const state = await getJSON("/api/v1/console");
    refreshMs = Math.max(5000, Math.min(60000, state.interval * 2000));
    renderHeader(state);
    renderAlerts(state.alerts);
    renderTargets(state.targets);
    renderGpus(state.gpus);
    renderCost(state.cost, state.targets, state.energy, state.remote_write);
    renderPerformance(state.performance);
    shownCharts = CHARTS.filter(c => c.needs(state));
    await Promise.all([sparklines(state), drawCharts(), drawTimeline()]);
    document.body.dataset.refreshed = String(Date.now());
  } catch (e) {
    const verdict = document.getElementById("verdict");
    verdict.textContent = "agent not answering";
    verdict.className = "verdict degraded";
  }
  timer = setTimeout(refresh, refreshMs);
}

function pick(seconds) {
  range = seconds;
  for (const b of document.querySelectorAll("#ranges button")) b.setAttribute("aria-pressed", String(+b.dataset.range === range));
  drawCharts().then(() => { document.body.dataset.charted = String(range); });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#ranges button")) b.addEventListener("click", () => pick(+b.dataset.range));
  document.addEventListener("keydown", e => {  // 1-4 pick a range, r refreshes
    if (e.target.tagName === "INPUT" || e.altKey || e.ctrlKey || e.metaKey) return;
    const keys = {"1": 3600, "2": 86400, "3": 604800, "4": 2592000};
    if (keys[e.key]) pick(keys[e.key]); else if (e.key === "r") refresh();
  });
  refresh();
});
