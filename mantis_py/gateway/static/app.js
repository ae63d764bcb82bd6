// mantis_py dashboard: plain JS, no build step, no network other than this gateway.
// Protocol: SYSTEM.md §3.3 (WS /v1/query), POST /v1/check, GET /v1/alerts.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const TOKEN = params.get("token");
  const MAX_POINTS = 120;     // per series
  const MAX_SERIES = 12;      // lines drawn (the largest latest values)
  const MAX_RAW_ROWS = 200;   // raw rows kept in the table
  const COLORS = ["#4fb3ff", "#3fb950", "#d29922", "#f85149", "#a371f7", "#39c5cf",
                  "#ff7b72", "#e3b341", "#56d364", "#bc8cff", "#79c0ff", "#ffa657"];

  // [id, label, query]; open /?preset=<id> to run one (the demo prints /?preset=plays)
  const PRESETS = [
    ["plays", "Plays/s by country",
     "select country, count(*) as pps from playback where event == 'play' window 1 group by country"],
    ["latency", "p99 latency by device",
     "select device, p99(latency_ms) as p99_ms from playback window 5 group by device"],
    ["errors", "Playback errors (raw)",
     "select _instance, title, country, status, latency_ms from playback where status >= 500"],
    ["edge", "Edge cache hit/miss",
     "select cache, count(*) as requests from edge window 2 group by cache"],
    ["logins", "Logins by result",
     "select result, count(*) as logins from login window 5 group by result"],
    ["routes", "p99 latency by route",
     "select route, p99(latency_ms) from playback/requests window 5 group by route"],
    ["errorlogs", "ERROR logs",
     "select _instance, logger, message, title, status from playback/log where level == 'ERROR'"],
  ];

  // ------------------------------------------------------------------ helpers

  function authHeaders() {
    return TOKEN ? { Authorization: "Bearer " + TOKEN } : {};
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function fmtNum(v) {
    if (!isNum(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4).replace(/\.?0+$/, "");
  }

  function fmtCell(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "object") return JSON.stringify(v);
    return isNum(v) ? fmtNum(v) : String(v);
  }

  function toSeconds(t) { return t > 1e11 ? t / 1000 : t; } // accept ms or s

  function fmtTime(t) {
    const d = new Date(toSeconds(t) * 1000);
    return d.toTimeString().slice(0, 8);
  }

  // ------------------------------------------------------------------ query box + check

  const queryBox = $("query");
  const backdrop = $("backdrop");
  let checkTimer = null;
  let checkSeq = 0;
  let lastError = null;

  function renderBackdrop() {
    // Mirror the text; wrap the error span (code points, MQL.md §5.2) in <mark>.
    const text = queryBox.value;
    if (!lastError) { backdrop.innerHTML = escapeHtml(text) + "\n"; return; }
    const cps = Array.from(text);
    const lines = [];
    let lineStart = 0;
    for (let i = 0; i <= cps.length; i++) {
      if (i === cps.length || cps[i] === "\n") { lines.push(lineStart); lineStart = i + 1; }
    }
    const line = Math.max(1, Math.min(lastError.line || 1, lines.length));
    let start = lines[line - 1] + Math.max(0, (lastError.column || 1) - 1);
    start = Math.min(start, cps.length);
    const len = Math.max(0, lastError.length || 0);
    const end = Math.min(cps.length, start + len);
    const before = escapeHtml(cps.slice(0, start).join(""));
    const marked = escapeHtml(cps.slice(start, end).join(""));
    const after = escapeHtml(cps.slice(end).join(""));
    backdrop.innerHTML = before +
      '<mark id="error-mark" class="' + (end > start ? "" : "empty") + '" data-line="' + line +
      '" data-column="' + (lastError.column || 1) + '" data-length="' + len + '">' + marked + "</mark>" +
      after + "\n";
  }

  function syncScroll() { backdrop.scrollTop = queryBox.scrollTop; }

  function extractError(body) {
    if (!body || typeof body !== "object") return null;
    if (body.error && typeof body.error === "object") return body.error;
    if (body.code && body.line) return body;
    return null;
  }

  function showError(err) {
    lastError = err;
    const box = $("error");
    const check = $("check");
    if (!err) {
      box.hidden = true;
      box.textContent = "";
      renderBackdrop();
      return;
    }
    let text = (err.code ? err.code + " " : "") + (err.message || "bad query") +
      " (line " + (err.line || 1) + ", column " + (err.column || 1) + ")";
    if (err.snippet) text += "\n" + err.snippet;
    if (err.suggestion) text += "\ndid you mean: " + err.suggestion;
    if (err.hint) text += "\nhint: " + err.hint;
    box.textContent = text;
    box.hidden = false;
    check.className = "check bad";
    check.textContent = err.message || "bad query";
    renderBackdrop();
  }

  async function checkNow() {
    const text = queryBox.value;
    const seq = ++checkSeq;
    const check = $("check");
    if (!text.trim()) { showError(null); check.textContent = ""; return; }
    let body = null;
    try {
      const resp = await fetch("/v1/check", {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
        body: JSON.stringify({ query: text, mode: "live" }),
      });
      body = await resp.json().catch(() => null);
    } catch (e) {
      if (seq === checkSeq) { check.className = "check"; check.textContent = "check unavailable"; }
      return;
    }
    if (seq !== checkSeq) return; // a newer keystroke won
    const err = extractError(body);
    if (err) { showError(err); return; }
    showError(null);
    check.className = "check ok";
    const canonical = body && (body.canonical || (body.plan && body.plan.canonical));
    check.textContent = canonical ? "✓ " + canonical : "✓ valid";
  }

  queryBox.addEventListener("input", () => {
    renderBackdrop();
    clearTimeout(checkTimer);
    checkTimer = setTimeout(checkNow, 250);
  });
  queryBox.addEventListener("scroll", syncScroll);
  queryBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runQuery(); }
  });

  // ------------------------------------------------------------------ results state

  let ws = null;
  let wsReady = null;
  let seq = 0;
  let currentId = null;
  let series = new Map();   // key -> {points: [[x, y]], color}
  let colorOf = new Map();
  let rawRows = [];
  let rawColumns = [];
  let windowsSeen = 0;

  function resetResults() {
    series = new Map(); colorOf = new Map(); rawRows = []; rawColumns = []; windowsSeen = 0;
    $("chart").innerHTML = ""; $("chart").dataset.points = "0"; $("legend").innerHTML = "";
    $("chart-panel").hidden = true; $("table-panel").hidden = true;
    document.querySelector("#rows thead").innerHTML = "";
    document.querySelector("#rows tbody").innerHTML = "";
    $("table-info").textContent = ""; $("chart-info").textContent = "";
    $("st-window").textContent = ""; $("st-coverage").textContent = ""; $("st-dropped").textContent = "";
  }

  function setConn(state, text) {
    const el = $("conn");
    el.className = "pill " + state;
    el.textContent = text;
  }

  function wsUrl() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return proto + "//" + location.host + "/v1/query" + (TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "");
  }

  function openSocket() {
    if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) return wsReady;
    ws = new WebSocket(wsUrl());
    wsReady = new Promise((resolve, reject) => {
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error("cannot connect"));
    });
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (currentId !== null) {
        setConn("error", "disconnected" + (ev.reason ? ": " + ev.reason : ""));
        $("st-query").textContent = "connection closed (" + ev.code + ")";
        currentId = null;
        $("stop").disabled = true;
      }
      ws = null;
    };
    return wsReady;
  }

  async function runQuery() {
    const text = queryBox.value.trim();
    if (!text) return;
    stopQuery();
    resetResults();
    const id = "q" + (++seq);
    currentId = id;
    setConn("idle", "connecting…");
    try {
      await openSocket();
    } catch (e) {
      setConn("error", "cannot connect");
      currentId = null;
      return;
    }
    if (currentId !== id) return;
    ws.send(JSON.stringify({ type: "query", id: id, query: text }));
    $("stop").disabled = false;
    $("st-query").textContent = "submitted " + id;
    const url = new URL(location.href);
    url.searchParams.set("q", text);
    history.replaceState(null, "", url);
  }

  function stopQuery() {
    if (currentId !== null && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "cancel", id: currentId }));
    }
    currentId = null;
    $("stop").disabled = true;
    setConn("idle", "idle");
  }

  function onMessage(msg) {
    if (!msg || msg.id !== currentId) return;
    switch (msg.type) {
      case "accepted":
        setConn("live", "live");
        showError(null);
        $("st-query").textContent = "running: " + (msg.canonical || "") +
          (msg.agents !== undefined ? " · " + msg.agents + " agent" + (msg.agents === 1 ? "" : "s") : "");
        break;
      case "error":
        setConn("error", "refused");
        showError(msg.error || { message: "query refused" });
        $("st-query").textContent = "refused: " + ((msg.error && msg.error.message) || "");
        currentId = null;
        $("stop").disabled = true;
        break;
      case "rows":
        onRows(msg);
        break;
      case "meta":
        onMeta(msg);
        break;
      case "complete":
        setConn("idle", "complete");
        $("st-query").textContent = "complete: " + (msg.reason || "");
        currentId = null;
        $("stop").disabled = true;
        break;
    }
  }

  // ------------------------------------------------------------------ rows

  function onRows(msg) {
    const rows = Array.isArray(msg.rows) ? msg.rows : [];
    if (Array.isArray(msg.window)) {
      windowsSeen++;
      $("st-window").textContent = "window " + fmtTime(msg.window[0]) + "–" + fmtTime(msg.window[1]) +
        " · " + windowsSeen + " windows";
      addWindowToChart(msg.window, rows);
      renderTable(rows, "last window: " + rows.length + " row" + (rows.length === 1 ? "" : "s"));
    } else {
      for (const r of rows) rawRows.unshift(r);
      if (rawRows.length > MAX_RAW_ROWS) rawRows.length = MAX_RAW_ROWS;
      renderTable(rawRows, rawRows.length + " most recent rows, newest first");
    }
  }

  function groupLabel(row, numericCols) {
    const parts = [];
    for (const [k, v] of Object.entries(row)) {
      if (numericCols.includes(k)) continue;
      parts.push(v === null || v === undefined ? "null" : fmtCell(v));
    }
    return parts.join(" / ");
  }

  function addWindowToChart(win, rows) {
    const x = toSeconds(win[1]);
    let added = 0;
    for (const row of rows) {
      const numericCols = Object.keys(row).filter((k) => isNum(row[k]) && typeof row[k] !== "boolean");
      if (!numericCols.length) continue;
      const label = groupLabel(row, numericCols);
      for (const col of numericCols) {
        const key = label ? (numericCols.length > 1 ? label + " · " + col : label) : col;
        let s = series.get(key);
        if (!s) {
          if (!colorOf.has(key)) colorOf.set(key, COLORS[colorOf.size % COLORS.length]);
          s = { points: [], color: colorOf.get(key) };
          series.set(key, s);
        }
        s.points.push([x, row[col]]);
        if (s.points.length > MAX_POINTS) s.points.shift();
        added++;
      }
    }
    if (added || series.size) drawChart();
  }

  function niceStep(range, ticks) {
    const raw = range / Math.max(1, ticks);
    const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    const n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
  }

  function drawChart() {
    const svg = $("chart");
    $("chart-panel").hidden = false;
    const W = 900, H = 300, L = 52, R = 10, T = 10, B = 24;
    // The largest latest values get a line; the rest are summarised in the legend.
    const all = [...series.entries()];
    all.sort((a, b) => {
      const la = a[1].points[a[1].points.length - 1][1], lb = b[1].points[b[1].points.length - 1][1];
      return lb - la;
    });
    const shown = all.slice(0, MAX_SERIES);
    let xmin = Infinity, xmax = -Infinity, ymin = 0, ymax = -Infinity, total = 0;
    for (const [, s] of shown) {
      for (const [x, y] of s.points) {
        xmin = Math.min(xmin, x); xmax = Math.max(xmax, x);
        ymin = Math.min(ymin, y); ymax = Math.max(ymax, y);
        total++;
      }
    }
    if (!isFinite(xmin)) return;
    if (xmax === xmin) { xmin -= 1; xmax += 1; }
    if (ymax <= ymin) ymax = ymin + 1;
    const step = niceStep(ymax - ymin, 5);
    ymax = Math.ceil(ymax / step) * step;
    ymin = Math.floor(ymin / step) * step;
    const sx = (x) => L + (x - xmin) / (xmax - xmin) * (W - L - R);
    const sy = (y) => T + (1 - (y - ymin) / (ymax - ymin)) * (H - T - B);
    let out = "";
    for (let y = ymin; y <= ymax + step / 2; y += step) {
      out += '<line class="grid" x1="' + L + '" x2="' + (W - R) + '" y1="' + sy(y) + '" y2="' + sy(y) + '"/>';
      out += '<text class="axis" x="' + (L - 6) + '" y="' + (sy(y) + 4) + '" text-anchor="end">' + fmtNum(+y.toPrecision(6)) + "</text>";
    }
    const xticks = 5;
    for (let i = 0; i <= xticks; i++) {
      const x = xmin + (xmax - xmin) * i / xticks;
      out += '<text class="axis" x="' + sx(x) + '" y="' + (H - 6) + '" text-anchor="' + (i === 0 ? "start" : i === xticks ? "end" : "middle") + '">' + fmtTime(x) + "</text>";
    }
    for (const [key, s] of shown) {
      const pts = s.points.map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" ");
      out += '<polyline data-series="' + escapeHtml(key) + '" stroke="' + s.color + '" points="' + pts + '"/>';
      if (s.points.length === 1) {
        const [x, y] = s.points[0];
        out += '<circle cx="' + sx(x) + '" cy="' + sy(y) + '" r="3" fill="' + s.color + '"/>';
      }
    }
    svg.innerHTML = out;
    svg.dataset.points = String(total);
    svg.dataset.series = String(shown.length);
    $("chart-info").textContent = shown.length + " series" + (all.length > shown.length ? " (top " + shown.length + " of " + all.length + ")" : "") + " · " + total + " points";
    $("legend").innerHTML = shown.map(([key, s]) => {
      const last = s.points[s.points.length - 1][1];
      return '<span><i style="background:' + s.color + '"></i>' + escapeHtml(key) + " <b>" + fmtNum(last) + "</b></span>";
    }).join("");
  }

  function renderTable(rows, info) {
    $("table-panel").hidden = false;
    const cols = [];
    const seen = new Set(rawColumns);
    for (const c of rawColumns) cols.push(c);
    for (const r of rows) for (const k of Object.keys(r)) if (!seen.has(k)) { seen.add(k); cols.push(k); }
    rawColumns = cols;
    document.querySelector("#rows thead").innerHTML = "<tr>" + cols.map((c) => "<th>" + escapeHtml(c) + "</th>").join("") + "</tr>";
    document.querySelector("#rows tbody").innerHTML = rows.map((r) => "<tr>" + cols.map((c) => {
      const v = r[c];
      return '<td class="' + (isNum(v) ? "num" : "") + '">' + escapeHtml(fmtCell(v)) + "</td>";
    }).join("") + "</tr>").join("");
    $("table-info").textContent = info;
  }

  // ------------------------------------------------------------------ meta

  function onMeta(msg) {
    const cov = msg.coverage;
    const el = $("st-coverage");
    if (cov && cov.expected !== undefined) {
      const ratio = cov.expected ? cov.reporting / cov.expected : 0;
      el.textContent = "coverage " + cov.reporting + "/" + cov.expected;
      el.className = ratio >= 0.95 ? "" : "warn";
    }
    const dropped = msg.dropped || {};
    const parts = Object.entries(dropped).filter(([, n]) => n).map(([k, n]) => k + " " + n);
    const d = $("st-dropped");
    d.textContent = parts.length ? "dropped: " + parts.join(", ") : "no drops";
    d.className = parts.length ? "bad" : "";
  }

  // ------------------------------------------------------------------ alerts

  async function refreshAlerts() {
    let body;
    try {
      const resp = await fetch("/v1/alerts", { headers: authHeaders() });
      if (!resp.ok) { $("alerts-info").textContent = "unavailable (" + resp.status + ")"; return; }
      body = await resp.json();
    } catch (e) {
      $("alerts-info").textContent = "unavailable";
      return;
    }
    const list = Array.isArray(body) ? body : (body && Array.isArray(body.alerts) ? body.alerts : []);
    $("alerts-info").textContent = list.length ? list.length + " rule" + (list.length === 1 ? "" : "s") : "none configured";
    $("alerts").innerHTML = list.map((a) => {
      const state = String(a.state || "insufficient_data");
      const since = a.since ? " since " + fmtTime(a.since) : "";
      return '<li data-alert="' + escapeHtml(a.name) + '" data-state="' + escapeHtml(state) + '">' +
        '<span class="alert-name">' + escapeHtml(a.name) + '</span><span class="state ' + escapeHtml(state) + '">' +
        escapeHtml(state.replace("_", " ")) + "</span>" +
        '<div class="alert-cond">' + escapeHtml(a.condition || "") + (a.windows > 1 ? " for " + a.windows + " windows" : "") + "</div>" +
        '<div class="alert-reason">' + escapeHtml((a.reason || "") + since) + "</div></li>";
    }).join("");
  }

  // ------------------------------------------------------------------ wiring

  function setQuery(text) {
    queryBox.value = text;
    renderBackdrop();
    checkNow();
  }

  const nav = $("presets");
  PRESETS.forEach(([id, label, q], i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.dataset.preset = String(i);
    b.dataset.presetId = id;
    b.title = q;
    b.addEventListener("click", () => { setQuery(q); runQuery(); });
    nav.appendChild(b);
  });
  $("run").addEventListener("click", runQuery);
  $("stop").addEventListener("click", stopQuery);

  refreshAlerts();
  setInterval(refreshAlerts, 2000);

  const preset = PRESETS.find(([id], i) => id === params.get("preset") || String(i) === params.get("preset"));
  const initial = params.get("q") || (preset && preset[2]);
  if (initial) { setQuery(initial); runQuery(); } else { renderBackdrop(); }

  // for tests and curious users
  window.mantis = { runQuery, stopQuery, setQuery, series: () => series };
})();
