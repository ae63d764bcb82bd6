// mantis_py dashboard: plain JS, no build step, no network other than this gateway.
// Protocol: docs/protocol.md (WS /v1/query), POST /v1/check, GET /v1/alerts.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const TOKEN = params.get("token");
  const MAX_POINTS = 120;     // per series
  const MAX_SERIES = 12;      // lines drawn (the largest latest values)
  const MAX_RAW_ROWS = 200;   // raw rows kept in the table

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
    // Mirror the text; wrap the error span (code points, docs/mql.md#errors) in <mark>.
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
      if (resp.status === 401 || resp.status === 403) {
        // the token, not the query, is the problem: say so, and keep the query box clean
        if (seq === checkSeq) {
          showError(null);
          check.className = "check bad";
          check.textContent = resp.status === 401 ? "401: the gateway does not know this token" : "403: this token may not run queries";
        }
        return;
      }
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
  //
  // One query at a time ("current"). The socket may die (gateway restart, network): the page
  // then reconnects by itself with jittered exponential backoff (first retry within 0.25 s, at
  // most 10 s apart), resubmits the query under a new id and keeps the chart; a window it already
  // drew is never drawn twice. A refused handshake is probed with GET /v1/apps, so a wrong token
  // reads "401" and a missing right "403" instead of a generic failure.

  let ws = null;
  let wsReady = null;
  let seq = 0;
  let current = null;       // {text, id, canonical, orderBy, windowLen, acceptedAt, lastEnd, waiting}
  let attempt = 0;
  let retryTimer = null;
  let series = new Map();   // key -> {points: [[x, y|null]], col, color, dash}
  let colorOf = new Map();  // key -> slot (colour + dash), stable for the page's life
  let legendOrder = [];     // series keys in the order of the last window's table rows
  let lastKeys = new Set(); // series present in the last window
  let rawRows = [];
  let rawColumns = [];
  let windowsSeen = 0;
  let alertLines = [];      // [{name, condition, col, value}] for rules whose query is on screen
  const alertCanonical = new Map();

  function resetResults() {
    series = new Map(); legendOrder = []; lastKeys = new Set(); rawRows = []; rawColumns = [];
    windowsSeen = 0; alertLines = [];
    $("chart").innerHTML = ""; $("chart").dataset.points = "0"; $("legend").innerHTML = "";
    $("chart-panel").hidden = true; $("table-panel").hidden = true;
    document.querySelector("#rows thead").innerHTML = "";
    document.querySelector("#rows tbody").innerHTML = "";
    $("table-info").textContent = ""; $("chart-info").textContent = "";
    $("st-window").textContent = ""; $("st-coverage").textContent = ""; $("st-dropped").textContent = "";
    $("empty").hidden = true;
  }

  function setConn(state, text) {
    const el = $("conn");
    el.className = "pill " + state;
    el.textContent = text;
    el.dataset.state = state;
  }

  function wsUrl() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return proto + "//" + location.host + "/v1/query" + (TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "");
  }

  function openSocket() {
    if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) return wsReady;
    const sock = new WebSocket(wsUrl());
    ws = sock;
    let opened = false;
    wsReady = new Promise((resolve, reject) => {
      sock.onopen = () => { opened = true; resolve(sock); };
      sock.onerror = () => reject(new Error("cannot connect"));
    });
    wsReady.catch(() => {});
    sock.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      onMessage(msg);
    };
    sock.onclose = (ev) => {
      if (ws === sock) ws = null;
      if (current !== null) connectionLost(opened ? "connection closed (" + ev.code + (ev.reason ? ": " + ev.reason : "") + ")" : "cannot connect", opened);
    };
    return wsReady;
  }

  async function authProblem() {
    // Browsers hide a refused handshake's status; the same token on GET /v1/apps tells it.
    try {
      const resp = await fetch("/v1/apps", { headers: authHeaders() });
      if (resp.status === 401) return { status: 401, text: "401 Unauthorized: the gateway does not know this token" + (TOKEN ? " (?token=…)" : " (add ?token=<your token> to the URL)") };
      if (resp.status === 403) return { status: 403, text: "403 Forbidden: this token may not run queries" };
    } catch (e) { /* gateway down: not an auth problem */ }
    return null;
  }

  async function connectionLost(why, opened) {
    if (current === null) return;
    if (!opened) {
      const auth = await authProblem();
      if (auth && current !== null) {
        setConn("error", String(auth.status));
        showBanner(auth.text);
        $("st-query").textContent = auth.text;
        current = null;
        $("stop").disabled = true;
        hideEmpty();
        return;
      }
    }
    attempt++;
    current.away = true; // windows missed until the resubmitted query answers: a gap, not a line
    // the client library's schedule (mantis_py/client/core.py Backoff): within 0.25 s, x1.5, at most 10 s
    const delay = Math.min(10, 0.25 * Math.pow(1.5, attempt - 1)) * (0.5 + Math.random() * 0.5);
    setConn("reconnecting", "reconnecting…");
    $("st-query").textContent = "reconnecting… (attempt " + attempt + ", " + why + "; next try in " + delay.toFixed(1) + " s)";
    clearTimeout(retryTimer);
    retryTimer = setTimeout(resubmit, delay * 1000);
  }

  async function resubmit() {
    if (current === null) return;
    try {
      await openSocket();
    } catch (e) {
      return; // onclose schedules the next try
    }
    if (current === null || !ws) return;
    current.id = "q" + (++seq);
    ws.send(JSON.stringify({ type: "query", id: current.id, query: current.text }));
  }

  async function checkText(text) {
    // The query's error, or null when it is valid or the check is unavailable.
    try {
      const resp = await fetch("/v1/check", {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
        body: JSON.stringify({ query: text, mode: "live" }),
      });
      if (resp.status === 401 || resp.status === 403) return null; // the socket will say why
      return extractError(await resp.json().catch(() => null));
    } catch (e) {
      return null;
    }
  }

  async function runQuery() {
    const text = queryBox.value.trim();
    if (!text) return;
    // A typo leaves the running query alone: only a query that checks out replaces it.
    const err = await checkText(text);
    if (err) { showError(err); flashCheck(); return; }
    stopQuery(true);
    resetResults();
    showBanner(null);
    attempt = 0;
    const id = "q" + (++seq);
    current = { text: text, id: id, canonical: text, orderBy: /\border\s+by\b/i.test(text),
                windowLen: null, acceptedAt: null, lastEnd: null, waiting: null };
    setConn("idle", "connecting…");
    $("stop").disabled = false;
    try {
      await openSocket();
    } catch (e) {
      return; // onclose: probe auth, then retry
    }
    if (current === null || current.id !== id || !ws) return;
    ws.send(JSON.stringify({ type: "query", id: id, query: text }));
    $("st-query").textContent = "submitted " + id;
    const url = new URL(location.href);
    url.searchParams.set("q", text);
    history.replaceState(null, "", url);
  }

  function stopQuery(replacing) {
    clearTimeout(retryTimer);
    if (current !== null && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "cancel", id: current.id }));
    }
    const was = current;
    current = null;
    $("stop").disabled = true;
    hideEmpty();
    if (replacing === true) return;
    setConn("idle", "stopped");
    if (was) $("st-query").textContent = "stopped: " + (was.canonical || was.text);
    $("st-window").textContent = ""; $("st-coverage").textContent = ""; $("st-dropped").textContent = "";
  }

  function flashCheck() {
    const check = $("check");
    check.classList.remove("flash");
    void check.offsetWidth;
    check.classList.add("flash");
  }

  function showBanner(text) {
    const box = $("error");
    if (!text) { if (box.dataset.kind === "auth") { box.hidden = true; box.textContent = ""; box.dataset.kind = ""; } return; }
    box.textContent = text;
    box.dataset.kind = "auth";
    box.hidden = false;
  }

  function onMessage(msg) {
    if (!msg || current === null || msg.id !== current.id) return;
    switch (msg.type) {
      case "accepted": {
        attempt = 0;
        setConn("live", "live");
        showError(null);
        current.canonical = msg.canonical || current.text;
        current.orderBy = /\bORDER BY\b/.test(current.canonical);
        // time windows read "WINDOW 10" or "WINDOW 60 30" (length, every); count windows "WINDOW |100|"
        const w = /\bWINDOW (\d+(?:\.\d+)?)(?: (\d+(?:\.\d+)?))?/.exec(current.canonical);
        current.windowLen = w ? parseFloat(w[2] || w[1]) : null;
        current.acceptedAt = Date.now() / 1000;
        $("st-query").textContent = "running: " + current.canonical +
          (msg.agents !== undefined ? " · " + msg.agents + " agent" + (msg.agents === 1 ? "" : "s") : "");
        matchAlerts();
        if (windowsSeen === 0 && rawRows.length === 0) showEmpty();
        break;
      }
      case "error": {
        const e = msg.error || { message: "query refused" };
        setConn("error", e.code === "forbidden" ? "403" : "refused");
        showError(e);
        $("st-query").textContent = "refused: " + (e.message || "");
        current = null;
        $("stop").disabled = true;
        hideEmpty();
        break;
      }
      case "rows":
        onRows(msg);
        break;
      case "meta":
        onMeta(msg);
        break;
      case "complete":
        setConn("idle", "complete");
        $("st-query").textContent = "complete: " + (msg.reason || "");
        current = null;
        $("stop").disabled = true;
        hideEmpty();
        break;
    }
  }

  // ------------------------------------------------------------------ empty state

  let emptyTimer = null;

  function showEmpty() {
    $("empty").hidden = false;
    clearInterval(emptyTimer);
    emptyTimer = setInterval(renderEmpty, 250);
    renderEmpty();
  }

  function hideEmpty() {
    clearInterval(emptyTimer);
    emptyTimer = null;
    $("empty").hidden = true;
  }

  function renderEmpty() {
    if (current === null) { hideEmpty(); return; }
    let text;
    if (current.waiting) {
      text = "waiting for agents of " + current.waiting.app +
        (current.waiting.suggestion ? " — did you mean " + current.waiting.suggestion + "?" : "") +
        " (the query runs as soon as one connects)";
    } else if (current.windowLen) {
      // The first window is the first one starting after the query was accepted; the gateway
      // waits a short grace for late partials before it sends it.
      const L = current.windowLen;
      const end = (Math.floor(current.acceptedAt / L) + 2) * L + 1;
      const left = Math.max(0, end - Date.now() / 1000);
      text = left > 0 ? "waiting for the first window: about " + Math.ceil(left) + " s"
                      : "waiting for the first window…";
    } else {
      text = "waiting for the first rows…";
    }
    $("empty").textContent = text;
  }

  // ------------------------------------------------------------------ rows

  function onRows(msg) {
    const rows = Array.isArray(msg.rows) ? msg.rows : [];
    if (Array.isArray(msg.window)) {
      const end = toSeconds(msg.window[1]);
      if (current.lastEnd !== null && end <= current.lastEnd) return; // seen before a reconnect
      if (current.away && current.lastEnd !== null && toSeconds(msg.window[0]) > current.lastEnd) {
        const gapX = (current.lastEnd + toSeconds(msg.window[0])) / 2;
        for (const s of series.values()) s.points.push([gapX, null]);
      }
      current.away = false;
      current.lastEnd = end;
      current.waiting = null;
      hideEmpty();
      windowsSeen++;
      $("st-window").textContent = "window " + fmtTime(msg.window[0]) + "–" + fmtTime(msg.window[1]) +
        " · " + windowsSeen + " windows";
      const ordered = orderRows(rows);
      addWindowToChart(msg.window, ordered);
      renderTable(ordered, "last window: " + rows.length + " row" + (rows.length === 1 ? "" : "s") +
        (current.orderBy ? " (ORDER BY)" : " (largest first)"));
    } else {
      if (rows.length) { current.waiting = null; hideEmpty(); }
      for (const r of rows) rawRows.unshift(r);
      if (rawRows.length > MAX_RAW_ROWS) rawRows.length = MAX_RAW_ROWS;
      renderTable(rawRows, rawRows.length + " most recent rows, newest first");
    }
  }

  function numericCols(row) {
    return Object.keys(row).filter((k) => isNum(row[k]));
  }

  function orderRows(rows) {
    // ORDER BY: the gateway's order. Otherwise the first numeric column, largest first.
    if (current.orderBy || !rows.length) return rows.slice();
    const col = numericCols(rows[0])[0];
    if (col === undefined) return rows.slice();
    return rows.slice().sort((a, b) => (isNum(b[col]) ? b[col] : -Infinity) - (isNum(a[col]) ? a[col] : -Infinity));
  }

  function groupLabel(row, nums) {
    const parts = [];
    for (const [k, v] of Object.entries(row)) {
      if (nums.includes(k)) continue;
      parts.push(v === null || v === undefined ? "null" : fmtCell(v));
    }
    return parts.join(" / ");
  }

  function seriesKeys(row) {
    const nums = numericCols(row);
    const label = groupLabel(row, nums);
    return nums.map((col) => [label ? (nums.length > 1 ? label + " · " + col : label) : col, col]);
  }

  // Colour-blind-safe palette (Okabe & Ito), light enough for the dark background; after seven
  // series the colours repeat with a dash pattern. A group's slot comes from a hash of its key
  // (collisions move to the next free slot) and is remembered for reloads.
  // (their dark blue, too dark here, is left out; white stands in for their black)
  const PALETTE = ["#56b4e9", "#e69f00", "#009e73", "#f0e442", "#cc79a7", "#d55e00", "#dddddd"];
  const DASHES = ["", "7 4", "2 3"];
  const SLOTS = PALETTE.length * DASHES.length;

  function hashKey(key) {
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) { h ^= key.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
    return h >>> 0;
  }

  // Slots given out are remembered in localStorage, so a reload (whichever groups happen to come
  // first) draws every group in the colour it had.
  const STORE = "mantis.colors";
  let remembered = {};
  try { remembered = JSON.parse(localStorage.getItem(STORE) || "{}") || {}; } catch (e) { remembered = {}; }

  function remember(key, slot) {
    remembered[key] = slot;
    const keys = Object.keys(remembered);
    if (keys.length > 500) for (const k of keys.slice(0, keys.length - 500)) delete remembered[k];
    try { localStorage.setItem(STORE, JSON.stringify(remembered)); } catch (e) { /* private mode */ }
  }

  function assignSlots(keys) {
    const used = new Set(colorOf.values());
    // slots remembered for other groups stay theirs while free slots remain: a group new to
    // this page must not take the colour of a remembered group that has not shown up yet
    const reserved = new Set(Object.values(remembered));
    for (const key of keys.slice().sort()) {
      if (colorOf.has(key)) continue;
      let slot = remembered[key];
      if (!Number.isInteger(slot) || slot < 0 || slot >= SLOTS || used.has(slot)) {
        const taken = (s) => used.has(s) || (reserved.has(s) && used.size + reserved.size < SLOTS);
        slot = hashKey(key) % PALETTE.length;
        for (let i = 0; i < SLOTS && taken(slot); i++) slot = (slot + 1) % SLOTS;
        if (used.has(slot)) for (let i = 0; i < SLOTS && used.has(slot); i++) slot = (slot + 1) % SLOTS;
      }
      colorOf.set(key, slot);
      used.add(slot);
      remember(key, slot);
    }
  }

  function addWindowToChart(win, rows) {
    const x = toSeconds(win[1]);
    const present = new Set();
    const order = [];
    const fresh = [];
    for (const row of rows) for (const [key] of seriesKeys(row)) if (!series.has(key) && !fresh.includes(key)) fresh.push(key);
    assignSlots(fresh);
    for (const row of rows) {
      for (const [key, col] of seriesKeys(row)) {
        let s = series.get(key);
        if (!s) {
          const slot = colorOf.get(key);
          s = { points: [], col: col, color: PALETTE[slot % PALETTE.length], dash: DASHES[Math.floor(slot / PALETTE.length) % DASHES.length] };
          series.set(key, s);
        }
        s.points.push([x, row[col]]);
        if (s.points.length > MAX_POINTS) s.points.shift();
        present.add(key);
        order.push(key);
      }
    }
    // A group missing from this window is a gap, never its old value.
    for (const [key, s] of series) {
      if (!present.has(key)) {
        s.points.push([x, null]);
        if (s.points.length > MAX_POINTS) s.points.shift();
      }
    }
    legendOrder = order.concat([...series.keys()].filter((k) => !present.has(k)).sort());
    lastKeys = present;
    if (series.size) drawChart();
  }

  function niceStep(range, ticks) {
    const raw = range / Math.max(1, ticks);
    const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    const n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
  }

  function timeStep(range) {
    for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]) if (range / s <= 6) return s;
    return 7200;
  }

  function drawChart() {
    const svg = $("chart");
    $("chart-panel").hidden = false;
    const W = 900, H = 300, L = 64, R = 12, T = 10, B = 24;
    const shown = legendOrder.slice(0, MAX_SERIES).map((k) => [k, series.get(k)]);
    let xmin = Infinity, xmax = -Infinity, ymin = 0, ymax = -Infinity, total = 0;
    for (const [, s] of shown) {
      for (const [x, y] of s.points) {
        xmin = Math.min(xmin, x); xmax = Math.max(xmax, x);
        if (y === null) continue;
        ymin = Math.min(ymin, y); ymax = Math.max(ymax, y);
        total++;
      }
    }
    if (!isFinite(xmin)) return;
    const cols = [...new Set(shown.map(([, s]) => s.col))];
    const lines = alertLines.filter((a) => cols.includes(a.col));
    for (const a of lines) { ymin = Math.min(ymin, a.value); ymax = Math.max(ymax, a.value); }
    if (xmax === xmin) { xmin -= 1; xmax += 1; }
    if (!isFinite(ymax) || ymax <= ymin) ymax = ymin + 1;
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
    // y-axis label: the charted column(s)
    out += '<text id="y-label" class="axis ylabel" transform="translate(12,' + ((T + H - B) / 2) + ') rotate(-90)" text-anchor="middle">' + escapeHtml(cols.join(", ")) + "</text>";
    // x ticks on whole seconds (or minutes), each label once
    const ts = timeStep(xmax - xmin);
    const labels = [];
    for (let x = Math.ceil(xmin / ts) * ts; x <= xmax + 1e-9; x += ts) {
      const label = fmtTime(x);
      if (labels.includes(label)) continue;
      labels.push(label);
      const px = sx(x);
      const anchor = px > W - R - 32 ? "end" : px < L + 32 ? "start" : "middle";
      out += '<text class="axis xtick" x="' + px + '" y="' + (H - 6) + '" text-anchor="' + anchor + '">' + label + "</text>";
    }
    for (const a of lines) {
      out += '<line class="threshold" data-alert="' + escapeHtml(a.name) + '" x1="' + L + '" x2="' + (W - R) + '" y1="' + sy(a.value) + '" y2="' + sy(a.value) + '"/>';
      out += '<text class="axis threshold-label" x="' + (W - R - 4) + '" y="' + (sy(a.value) - 4) + '" text-anchor="end">alert ' + escapeHtml(a.name) + ": " + escapeHtml(a.condition) + "</text>";
    }
    for (const [key, s] of shown) {
      // one polyline per run of present points: absent windows are gaps
      let run = [];
      const runs = [];
      for (const [x, y] of s.points) {
        if (y === null) { if (run.length) runs.push(run); run = []; continue; }
        run.push([x, y]);
      }
      if (run.length) runs.push(run);
      for (const r of runs) {
        const pts = r.map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" ");
        out += '<polyline data-series="' + escapeHtml(key) + '" stroke="' + s.color + '"' +
          (s.dash ? ' stroke-dasharray="' + s.dash + '"' : "") + ' points="' + pts + '"/>';
        if (r.length === 1) {
          out += '<circle cx="' + sx(r[0][0]) + '" cy="' + sy(r[0][1]) + '" r="3" fill="' + s.color + '"/>';
        }
      }
    }
    svg.innerHTML = out;
    svg.dataset.points = String(total);
    svg.dataset.series = String(shown.length);
    $("chart-info").textContent = shown.length + " series" + (legendOrder.length > shown.length ? " (top " + shown.length + " of " + legendOrder.length + ")" : "") + " · " + total + " points";
    $("legend").innerHTML = shown.map(([key, s]) => {
      const last = s.points[s.points.length - 1][1];
      const value = lastKeys.has(key) && last !== null ? fmtNum(last) : "—";
      const swatch = '<svg class="swatch" width="18" height="10" aria-hidden="true"><line x1="0" y1="5" x2="18" y2="5" stroke="' +
        s.color + '" stroke-width="3"' + (s.dash ? ' stroke-dasharray="' + s.dash + '"' : "") + "/></svg>";
      return '<span data-key="' + escapeHtml(key) + '" data-color="' + s.color + '" data-dash="' + s.dash + '">' + swatch +
        escapeHtml(key) + " <b>" + value + "</b></span>";
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
    if (msg.waiting && typeof msg.waiting === "object") {
      current.waiting = msg.waiting;
      if (windowsSeen === 0 && rawRows.length === 0) showEmpty();
      $("st-coverage").textContent = "waiting for agents of " + msg.waiting.app;
      $("st-coverage").className = "warn";
      return;
    }
    const cov = msg.coverage;
    const el = $("st-coverage");
    if (cov && cov.expected !== undefined && current.canonical) {
      $("st-query").textContent = "running: " + current.canonical + " · " + cov.expected + " agent" + (cov.expected === 1 ? "" : "s");
    }
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

  // ------------------------------------------------------------------ alert thresholds

  let alertRules = [];

  async function canonicalOf(text) {
    if (alertCanonical.has(text)) return alertCanonical.get(text);
    let canonical = null;
    try {
      const resp = await fetch("/v1/check", {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
        body: JSON.stringify({ query: text, mode: "live" }),
      });
      const body = await resp.json().catch(() => null);
      canonical = body && body.canonical ? body.canonical : null;
    } catch (e) { return null; }
    alertCanonical.set(text, canonical);
    return canonical;
  }

  async function matchAlerts() {
    if (current === null) return;
    const canonical = current.canonical;
    const found = [];
    for (const a of alertRules) {
      const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>|==|!=)\s*(-?\d+(?:\.\d+)?)\s*$/.exec(a.condition || "");
      if (!m || !a.query) continue;
      if ((await canonicalOf(a.query)) !== canonical) continue;
      found.push({ name: a.name, condition: a.condition, col: m[1], value: parseFloat(m[3]) });
    }
    if (current === null || current.canonical !== canonical) return;
    alertLines = found;
    if (series.size) drawChart();
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
    const changed = JSON.stringify(list.map((a) => [a.name, a.query, a.condition])) !==
      JSON.stringify(alertRules.map((a) => [a.name, a.query, a.condition]));
    alertRules = list;
    if (changed) matchAlerts();
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
  $("stop").addEventListener("click", () => stopQuery(false));

  refreshAlerts();
  setInterval(refreshAlerts, 2000);

  const preset = PRESETS.find(([id], i) => id === params.get("preset") || String(i) === params.get("preset"));
  const initial = params.get("q") || (preset && preset[2]);
  if (initial) { setQuery(initial); runQuery(); } else { renderBackdrop(); }

  // for tests and curious users
  window.mantis = { runQuery, stopQuery, setQuery, series: () => series, colors: () => colorOf };
})();
