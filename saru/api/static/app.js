/* Saru dashboard: GET api/v1/status, live through the SSE stream api/v1/events, writes with a
 * Bearer token kept in this tab's sessionStorage. No framework, no external assets.
 *
 * Every server-provided string reaches the page through textContent or setAttribute, never
 * innerHTML. Rows are keyed by (proxy, server) and updated in place: a change touches only the
 * cells whose text changed, so 1,000 reals re-render in milliseconds. Fields the daemon may not
 * send (older versions) are read defensively.
 */
"use strict";

(() => {
  const STATUS_URL = "api/v1/status";
  const EVENTS_URL = "api/v1/events";
  const WRITE_URL = "api/v1/servers/";
  const TOKEN_KEY = "saru.token";
  const MIN_GAP_MS = 200;       // at most ~5 status fetches a second, however many events arrive
  const POLL_MS = 5000;         // counters (connections) change without events: refresh anyway
  const POLL_NO_SSE_MS = 2000;  // while the event stream is down
  const EVENTS_SHOWN = 50;
  const STATES = ["UP", "DOWN", "DRAIN", "MAINT", "UNKNOWN"];
  const COLUMNS = [
    ["server", "Real server"], ["state", "State"], ["weight", "Weight (live/conf.)"],
    ["active", "Active"], ["inactive", "Inactive"], ["check", "Last check"],
    ["latency", "Latency"], ["changed", "Since change"], ["actions", "Actions"],
  ];

  const $ = (id) => document.getElementById(id);
  const metrics = {
    firstRenderMs: null, lastRenderMs: null, renders: 0, statusFetches: 0, events: 0,
    lastEvent: null, lastRenderAt: null,
  };
  window.saruDashboard = metrics;  // read by the browser test and the benchmark

  let doc = null;
  let clockOffset = 0;  // server time - browser time, seconds (only when they differ by > 2 s)
  let live = false;
  const vsViews = new Map();   // proxy name -> view of one virtual service
  const sseEvents = [];        // events received on the stream (when status has no event list)

  // ---- names (mirrors saru/api/names.py) -------------------------------------------------------
  function hostport(address, port) {
    return String(address).includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
  }
  function proxyName(v) {
    if (typeof v.proxy === "string") return v.proxy;
    const s = v.service || {};
    if (s.protocol === "fwm") return `fwmark/${s.fwmark}`;
    return `${s.protocol || v.protocol || "tcp"}/${hostport(s.address, s.port)}`;
  }
  function serverName(r) {
    return typeof r.server === "string" ? r.server : hostport(r.address, r.port);
  }

  // ---- small helpers ---------------------------------------------------------------------------
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(e, text) {
    const t = text === null || text === undefined ? "" : String(text);
    if (e.textContent !== t) e.textContent = t;
  }
  function setClass(e, cls) { if (e.className !== cls) e.className = cls; }
  function setAttr(e, name, value) {
    if (value === null || value === undefined || value === "") {
      if (e.hasAttribute(name)) e.removeAttribute(name);
    } else if (e.getAttribute(name) !== String(value)) {
      e.setAttribute(name, String(value));
    }
  }
  function num(x) { return typeof x === "number" && isFinite(x) ? x : null; }
  function first(...xs) {
    for (const x of xs) if (x !== undefined && x !== null && x !== "") return x;
    return null;
  }
  function now() { return Date.now() / 1000 + clockOffset; }
  function fmtAge(at) {
    if (num(at) === null) return "–";
    let s = Math.max(0, Math.round(now() - at));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    s = Math.floor(s / 3600);
    return `${Math.floor(s / 24)}d ${s % 24}h`;
  }
  function fmtTime(at) {
    if (num(at) === null) return "–";
    const d = new Date(at * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }
  function fmtLatency(seconds) {
    if (num(seconds) === null) return "–";
    return seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(2)} s`;
  }

  // ---- token (this tab only: sessionStorage, never a cookie) -----------------------------------
  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }
  function setToken(token) {
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { showNotice("this browser keeps no session storage: the token cannot be kept", true); }
    $("token-form").hidden = Boolean(getToken());
    $("token-set").hidden = !getToken();
    for (const vs of vsViews.values()) for (const row of vs.rows.values()) updateActions(row);
  }

  // ---- notices ---------------------------------------------------------------------------------
  let noticeTimer = null;
  function showNotice(text, bad) {
    const n = $("notice");
    setText(n, text);
    n.className = bad ? "notice bad" : "notice";
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, bad ? 15000 : 6000);
  }

  // ---- what a real's fields mean ---------------------------------------------------------------
  function operatorState(r) {
    let op = first(r.operator, r.admin, r.override, r.operator_state, r.admin_state);
    if (op && typeof op === "object") op = first(op.state, op.action, op.mode);
    return op ? String(op).toLowerCase() : "";
  }
  // [word, note]: the word is the daemon's ``status`` (HAProxy's UP/DOWN/DRAIN/MAINT, as the metrics
  // say it) when it sends one, else derived from ``state``, the table weight and the override.
  function displayState(r) {
    const op = operatorState(r);
    const s = String(r.state || "unknown").toLowerCase();
    const given = typeof r.status === "string" ? r.status.toUpperCase() : "";
    let word = STATES.includes(given) ? given : "";
    if (!word) {
      if (op.startsWith("disable") || s === "disabled" || s === "maintenance" || s === "maint") word = "MAINT";
      else if (s === "down") word = "DOWN";
      else if (s === "drain" || s === "drained" || (s === "up" && (op.startsWith("drain") || (r.in_table && r.weight === 0)))) word = "DRAIN";
      else if (s === "up") word = "UP";
      else word = "UNKNOWN";
    }
    let note = "";
    if (word === "MAINT") note = op.startsWith("disable") ? "disabled by operator" : "maintenance";
    else if (word === "DRAIN") note = op.startsWith("drain") ? "drained by operator" : "weight 0";
    else if (word === "DOWN") note = r.in_table && r.weight === 0 ? "quiescent (weight 0)" : (s === "unknown" ? "not checked yet" : "");
    else if (word === "UP" && r.in_table === false) note = "not in table";
    else if (word === "UNKNOWN") note = "first check pending";
    if (op === "weight") {
      const w = r.operator && typeof r.operator === "object" ? r.operator.weight : null;
      note = [note, `weight ${w === null || w === undefined ? "" : w + " "}set by operator`].filter(Boolean).join("; ");
    }
    return [word, note];
  }
  function checkInfo(r) {
    const c = (r.check && typeof r.check === "object") ? r.check : {};
    const l = (r.last_check && typeof r.last_check === "object") ? r.last_check : {};
    const ok = first(c.ok, l.ok);
    const cls = first(c.result, c["class"], c.result_class, c.status, l.result, l["class"], l.result_class,
      ok === true ? "OK" : ok === false ? "FAIL" : null);
    const reason = first(c.reason, c.message, l.reason, l.message);
    const latency = num(first(c.latency, c.duration, l.latency, l.duration));
    const at = num(first(c.at, c.time, l.at, l.time));
    const transitions = first(r.transitions, c.transitions, l.transitions) || [];
    return { ok, cls, reason, latency, at, transitions: Array.isArray(transitions) ? transitions : [] };
  }
  function transitionTime(t) { return t && typeof t === "object" ? num(first(t.at, t.time, t.since)) : null; }
  function lastChange(r, info) {
    const direct = num(first(r.since, r.last_change, r.changed_at, r.last_transition_at));
    if (direct !== null) return direct;
    let best = null;
    for (const t of info.transitions) {
      const at = transitionTime(t);
      if (at !== null && (best === null || at > best)) best = at;
    }
    return best;
  }
  function transitionText(t) {
    if (!t || typeof t !== "object") return String(t);
    const from = first(t.from, t.old), to = first(t.to, t.new, t.state);
    const arrow = from !== null ? `${from} → ${to}` : String(to || "");
    const why = first(t.reason, t.message);
    return `${fmtTime(transitionTime(t))} ${arrow}${why ? ": " + why : ""}`;
  }

  // ---- one real: a keyed row updated in place --------------------------------------------------
  function createRow(vs, key) {
    const tr = el("tr");
    const cells = {};
    const vals = {};  // one span per cell holds its content (a labelled line at phone width)
    for (const [name, label] of COLUMNS) {
      const td = el("td", name);
      td.setAttribute("data-label", label);
      vals[name] = td.appendChild(el("span", "val"));
      cells[name] = td;
      tr.appendChild(td);
    }
    for (const name of ["weight", "active", "inactive", "latency"]) cells[name].classList.add("num");
    const row = {
      key, vs, tr, cells, vals, proxy: vs.proxy, server: "", search: "", word: "", op: "", busy: false,
      changeAt: null, checkAt: null,
      serverText: el("span"), fwd: el("span", "note"),
      badge: el("span", "badge"), stateNote: el("span", "note"),
      checkText: el("span"), checkNote: el("span", "note"),
      changedText: el("span"), changedNote: el("span", "note"),
    };
    vals.server.append(row.serverText, row.fwd);
    vals.state.append(row.badge, row.stateNote);
    vals.check.append(row.checkText, row.checkNote);
    vals.changed.append(row.changedText, row.changedNote);
    tr.dataset.proxy = vs.proxy;
    return row;
  }
  function updateRow(row, r) {
    const server = serverName(r);
    if (row.server !== server) { row.server = server; row.tr.dataset.server = server; }
    const [word, note] = displayState(r);
    const info = checkInfo(r);
    row.word = word;
    row.op = operatorState(r);
    setClass(row.tr, `row-${word}`);
    if (row.tr.dataset.state !== word) row.tr.dataset.state = word;
    setText(row.serverText, server);
    setText(row.fwd, r.forward || "");
    setText(row.badge, word);
    setClass(row.badge, `badge state-${word}`);
    setText(row.stateNote, note);
    const weight = r.weight === null || r.weight === undefined ? "–" : r.weight;
    setText(row.vals.weight, `${weight} / ${first(r.configured_weight, "–")}`);
    setText(row.vals.active, first(r.active_connections, "–"));
    setText(row.vals.inactive, first(r.inactive_connections, "–"));
    const check = info.cls === null ? "–" : `${info.cls}${info.reason ? " — " + info.reason : ""}`;
    setText(row.checkText, check);
    row.checkAt = info.at;
    setText(row.vals.latency, fmtLatency(info.latency));
    row.changeAt = lastChange(r, info);
    const lastT = info.transitions.length ? info.transitions[info.transitions.length - 1] : null;
    const lastTo = lastT && typeof lastT === "object" ? first(lastT.to, lastT.new, lastT.state) : null;
    setText(row.changedNote, lastTo ? `→ ${lastTo}${lastT.reason ? ": " + lastT.reason : ""}` : "");
    setAttr(row.cells.state, "title", info.transitions.length
      ? "last transitions:\n" + info.transitions.map(transitionText).join("\n") : "");
    row.search = [row.proxy, row.vs.label, server, word, note, info.cls, info.reason, r.forward, row.op]
      .filter((x) => x !== null && x !== undefined && x !== "").join(" ").toLowerCase();
    tickRow(row);
    updateActions(row);
  }
  function tickRow(row) {
    setText(row.changedText, fmtAge(row.changeAt));
    setText(row.checkNote, row.checkAt === null ? "" : `checked ${fmtAge(row.checkAt)} ago`);
  }
  function updateActions(row) {
    const td = row.vals.actions;
    const token = getToken();
    if (!token) {
      if (td.firstChild) td.replaceChildren();
      return;
    }
    if (!td.firstChild) {
      for (const [action, label] of [["drain", "Drain"], ["enable", "Enable"], ["disable", "Disable"]]) {
        const b = el("button", `act-${action}`, label);
        b.type = "button";
        b.dataset.action = action;
        td.appendChild(b);
      }
    }
    for (const b of td.children) {
      b.setAttribute("aria-label", `${b.textContent} ${row.server} in ${row.proxy}`);
      const same = (b.dataset.action === "drain" && row.op.startsWith("drain"))
        || (b.dataset.action === "disable" && row.op.startsWith("disable"));
      b.disabled = row.busy || same;
    }
  }

  // ---- one virtual service ---------------------------------------------------------------------
  function createVs(proxy) {
    const section = el("section", "vs");
    section.dataset.proxy = proxy;
    const header = el("header");
    const title = el("h3", "", proxy);
    const meta = el("span", "muted");
    const summary = el("span");
    header.append(title, meta, summary);
    const table = el("table", "reals");
    const thead = el("thead");
    const htr = el("tr");
    for (const [, label] of COLUMNS) htr.appendChild(el("th", "", label));
    thead.appendChild(htr);
    const tbody = el("tbody");
    table.append(thead, tbody);
    section.append(header, table);
    return { proxy, section, title, meta, summary, tbody, rows: new Map(), label: "", search: "" };
  }
  function updateVs(vs, v, standby) {
    // ldirectord's name of the service ("127.0.0.1:80") is shown only when it says more than the proxy name
    vs.label = v.name && v.name !== vs.proxy && !vs.proxy.endsWith("/" + v.name) ? v.name : "";
    setText(vs.title, vs.label ? `${vs.proxy} (${vs.label})` : vs.proxy);
    const parts = [v.scheduler, v.checktype && `check ${v.checktype}/${v.service_type || ""}`,
      num(v.connections) !== null && `conns ${v.connections}`];
    if (v.fallback) parts.push(`fallback ${v.fallback} ${v.fallback_active ? "ACTIVE" : "standby"}`);
    setText(vs.meta, parts.filter(Boolean).join(" · "));
    const counts = {};
    const seen = new Set();
    let prev = null;
    for (const r of v.reals || []) {
      let key = serverName(r);
      while (seen.has(key)) key += "+";  // the same real twice in one virtual: keep both rows
      seen.add(key);
      let row = vs.rows.get(key);
      if (!row) { row = createRow(vs, key); vs.rows.set(key, row); }
      updateRow(row, r);
      counts[row.word] = (counts[row.word] || 0) + 1;
      const want = prev ? prev.tr.nextSibling : vs.tbody.firstChild;
      if (want !== row.tr) vs.tbody.insertBefore(row.tr, want);
      prev = row;
    }
    for (const [key, row] of vs.rows) {
      if (!seen.has(key)) { row.tr.remove(); vs.rows.delete(key); }
    }
    let text = STATES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(", ") || "no reals";
    if (v.in_table === false) text += standby ? ` · not in table (${standby})` : " · NOT IN TABLE";
    setText(vs.summary, text);
    setClass(vs.summary, v.in_table === false && !standby ? "bad-text" : "");
    vs.search = [vs.proxy, vs.label].join(" ").toLowerCase();
  }

  // ---- the director cards ----------------------------------------------------------------------
  function renderDaemon(d) {
    const bits = [d.version && `v${d.version}`, d.pid && `pid ${d.pid}`,
      num(d.started_at) !== null && `up ${fmtAge(d.started_at)}`];
    setText($("daemon"), bits.filter(Boolean).join(" · "));
    const dp = d.dataplane || {};
    setText($("dp-name"), dp.name || "–");
    setText($("dp-reason"), dp.reason ? `chosen: ${dp.reason}` : "");
    const err = d.apply_error;
    const table = $("dp-table");
    if (d.ready === false) {
      setText(table, err ? `NOT READY: table not programmed: ${err.message}` : "NOT READY: first health checks running");
      setClass(table, "bad-text");
    } else if (err) {
      setText(table, `table not in line with health: last apply failed ${fmtAge(err.at)} ago: ${err.message}`);
      setClass(table, "bad-text");
    } else {
      setText(table, "table programmed");
      setClass(table, "ok-text");
    }
    const drift = d.drift;
    let driftText = "";
    if (drift && drift.checked) {
      driftText = drift.count ? `drift: ${drift.count} found and repaired, last ${fmtAge(drift.last_at)} ago: ${drift.last_detail}`
        : "drift: none found";
      if (drift.check_error) driftText += `; checking fails: ${drift.check_error}`;
    }
    setText($("dp-drift"), driftText);

    setText($("cfg-path"), d.config || "");
    const result = $("cfg-result");
    const errorBox = $("cfg-error");
    const lastReload = d.last_reload && typeof d.last_reload === "object" ? d.last_reload : {};
    const when = num(first(lastReload.at, lastReload.time, d.last_reload_at));
    const reloads = num(d.reloads);
    if (d.last_reload_error) {
      setText(result, "last reload FAILED — running the previous config");
      setClass(result, "bad-text");
      setText(errorBox, d.last_reload_error);
      errorBox.hidden = false;
    } else {
      let text = reloads ? `last reload OK (${reloads} reload${reloads === 1 ? "" : "s"})` : "loaded at start, not reloaded since";
      if (when !== null) text += `, ${fmtAge(when)} ago`;
      setText(result, text);
      setClass(result, "ok-text");
      errorBox.hidden = true;
    }
    renderHa(d.ha);
    renderAlarms(d.alarms);
    const cluster = Array.isArray(d.cluster_events) ? d.cluster_events.map(String) : [];
    $("ha-cluster").hidden = cluster.length === 0;
    const list = $("ha-cluster-list");
    if (Array.from(list.children, (li) => li.textContent).join("\n") !== cluster.join("\n")) {
      list.replaceChildren(...cluster.map((line) => el("li", "", line)));
    }
  }
  function proxyOf(key) {
    if (!key) return "?";
    if (key.protocol === "fwm") return `fwmark/${key.fwmark}`;
    const host = String(key.address).includes(":") ? `[${key.address}]` : key.address;
    return `${key.protocol}/${host}:${key.port}`;
  }
  // the status's alarms in the words of ``saru status`` (local faults, panic mode)
  function renderAlarms(alarms) {
    const lines = [];
    const faults = (alarms && Array.isArray(alarms.local_faults)) ? alarms.local_faults : [];
    if (faults.length) {
      const reasons = Array.from(new Set(faults.map((f) => String(f.reason)))).sort();
      lines.push(`ALARM: local fault (${reasons.join(", ")}): ${faults.length} real(s) cannot be checked; they keep their state`);
    }
    for (const key of (alarms && Array.isArray(alarms.panic)) ? alarms.panic : []) {
      lines.push(`ALARM: panic mode for ${proxyOf(key)}: too many reals failed together; its last known set is kept`);
    }
    $("alarms-none").hidden = lines.length > 0;
    const list = $("alarms-list");
    list.hidden = lines.length === 0;
    if (Array.from(list.children, (li) => li.textContent).join("\n") !== lines.join("\n")) {
      list.replaceChildren(...lines.map((line) => el("li", "", line)));
    }
  }
  function renderHa(ha) {
    $("ha-none").hidden = Boolean(ha);
    $("ha-detail").hidden = !ha;
    if (!ha) return;
    const state = String(ha.state || "init").toUpperCase();
    const role = $("ha-role");
    setText(role, `${state}`);
    setClass(role, `badge ha-${state}`);
    setAttr(role, "title", `vrid ${ha.vrid} on ${ha.interface}`);
    setText($("ha-priority"), `${first(ha.effective_priority, "–")} effective / ${first(ha.priority, "–")} configured`
      + (ha.preempt === false ? " · no preempt" : ""));
    const peers = Object.keys(ha.peer_macs || {});
    let peer = peers.length ? peers.join(", ") : "none heard";
    if (ha.master && state !== "MASTER") peer = `master ${ha.master}` + (peers.length ? ` (peers ${peers.join(", ")})` : "");
    setText($("ha-peer"), peer);
    setText($("ha-vips"), `${(ha.vips || []).join(" ") || "–"} ${ha.vip_up ? "(up here)" : "(not here)"}`);
    setText($("ha-transition"), `${fmtTime(ha.since)} (${fmtAge(ha.since)} ago)${ha.reason ? " — " + ha.reason : ""}`);
    const warn = [];
    if (ha.split_brain) warn.push("SPLIT BRAIN");
    if (ha.conflict) warn.push(`VIPcheck conflict: ${ha.conflict.address} answered by ${ha.conflict.mac}`);
    if (ha.ping && ha.ping.unreachable && ha.ping.unreachable.length) warn.push(`upstream lost: ${ha.ping.unreachable.join(", ")}`);
    if (num(ha.resigned_until) !== null && ha.resigned_until > now()) warn.push(`resigned for ${Math.round(ha.resigned_until - now())}s`);
    const w = $("ha-warnings");
    setText(w, warn.join("; ") || "none");
    setClass(w, warn.length ? "bad-text" : "");
  }
  function renderEvents(d) {
    let lines = Array.isArray(d.events) ? d.events.map(String) : null;
    if (lines === null) lines = sseEvents.map((e) => `${fmtTime(e.time)} ${e.message || e.type || ""}`);
    lines = lines.slice(-EVENTS_SHOWN).reverse();
    const list = $("events");
    const have = list.children;
    let same = have.length === lines.length;
    for (let i = 0; same && i < lines.length; i++) same = have[i].textContent === lines[i];
    if (same) return;
    const items = lines.map((line) => {
      const li = el("li", /fail|error|down|deleted|split brain|refused/i.test(line) ? "bad" : "", line);
      return li;
    });
    list.replaceChildren(...items);
  }

  // ---- the whole page --------------------------------------------------------------------------
  function standbyReason(d) {
    const ha = d.ha;
    return ha && ha.state !== "master" ? `HA ${String(ha.state || "").toUpperCase()}` : "";
  }
  function render(d) {
    const t0 = performance.now();
    renderDaemon(d);
    const container = $("virtuals");
    const standby = standbyReason(d);
    const seen = new Set();
    let prev = null;
    for (const v of d.virtuals || []) {
      const proxy = proxyName(v);
      if (seen.has(proxy)) continue;
      seen.add(proxy);
      let vs = vsViews.get(proxy);
      if (!vs) { vs = createVs(proxy); vsViews.set(proxy, vs); }
      updateVs(vs, v, standby);
      const want = prev ? prev.section.nextSibling : container.firstChild;
      if (want !== vs.section) container.insertBefore(vs.section, want);
      prev = vs;
    }
    for (const [proxy, vs] of vsViews) {
      if (!seen.has(proxy)) { vs.section.remove(); vsViews.delete(proxy); }
    }
    applyFilter();
    renderEvents(d);
    const t1 = performance.now();
    metrics.renders += 1;
    metrics.lastRenderMs = t1 - t0;
    metrics.lastRenderAt = performance.timeOrigin + t1;
    if (metrics.firstRenderMs === null) {
      metrics.firstRenderMs = t1;
      document.body.dataset.ready = "1";
    }
  }

  // ---- filter ----------------------------------------------------------------------------------
  function applyFilter() {
    const words = $("filter").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const match = (text) => words.every((w) => text.includes(w));
    let total = 0, shown = 0;
    const counts = {};
    for (const vs of vsViews.values()) {
      const all = words.length === 0 || match(vs.search);
      let any = false;
      for (const row of vs.rows.values()) {
        total += 1;
        counts[row.word] = (counts[row.word] || 0) + 1;
        const visible = all || match(row.search);
        if (row.tr.hidden === visible) row.tr.hidden = !visible;
        if (visible) { shown += 1; any = true; }
      }
      const hide = !any && !all;
      if (vs.section.hidden !== hide) vs.section.hidden = hide;
    }
    let text = `${total} real${total === 1 ? "" : "s"}: ` +
      (STATES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(", ") || "none");
    if (words.length) text += ` · showing ${shown}`;
    setText($("counts"), text);
  }

  // ---- fetching: one status request at a time, coalescing bursts of events ---------------------
  let inflight = false, again = false, timer = null, lastFetch = 0;
  function refreshSoon() {
    if (inflight) { again = true; return; }
    if (timer !== null) return;
    const wait = Math.max(0, lastFetch + MIN_GAP_MS - performance.now());
    timer = setTimeout(refresh, wait);
  }
  async function refresh() {
    timer = null;
    inflight = true;
    lastFetch = performance.now();
    try {
      const response = await fetch(STATUS_URL, { cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const date = Date.parse(response.headers.get("Date") || "");
      if (!isNaN(date)) {
        const offset = (date - Date.now()) / 1000;
        clockOffset = Math.abs(offset) > 2 ? offset : 0;
      }
      doc = await response.json();
      metrics.statusFetches += 1;
      if (num(doc.now) !== null) clockOffset = doc.now - Date.now() / 1000;
      render(doc);
    } catch (e) {
      setText($("daemon"), `not answering (${e.message || e}); retrying`);
      setLiveText(false, "offline");
    } finally {
      inflight = false;
      if (again) { again = false; refreshSoon(); }
    }
  }

  // ---- live: Server-Sent Events ----------------------------------------------------------------
  function setLiveText(on, text) {
    const l = $("live");
    setText(l, text);
    setClass(l, on ? "live on" : "live off");
  }
  function onEvent(data) {
    metrics.events += 1;
    let event = null;
    try { event = JSON.parse(data); } catch (e) { event = { message: String(data) }; }
    if (event && typeof event === "object") {
      metrics.lastEvent = event;
      sseEvents.push(event);
      if (sseEvents.length > 200) sseEvents.shift();
    }
    refreshSoon();
  }
  let source = null;
  function connectEvents() {
    if (typeof EventSource === "undefined") { setLiveText(false, "polling"); return; }
    source = new EventSource(EVENTS_URL);
    source.onopen = () => { live = true; setLiveText(true, "live"); refreshSoon(); };
    source.onmessage = (e) => onEvent(e.data);
    source.onerror = () => {
      live = false;
      if (source.readyState === EventSource.CLOSED) {
        setLiveText(false, "offline");
        source = null;
        setTimeout(connectEvents, 3000);
      } else {
        setLiveText(false, "reconnecting…");
      }
    };
  }

  // ---- writes ----------------------------------------------------------------------------------
  async function write(row, action) {
    const token = getToken();
    if (!token) return;
    row.busy = true;
    updateActions(row);
    try {
      const response = await fetch(WRITE_URL + action, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ proxy: row.proxy, server: row.server }),
      });
      let answer = null;
      try { answer = await response.json(); } catch (e) { answer = null; }
      if (response.ok) {
        const said = answer && typeof answer === "object" ? first(answer.message, answer.result) : null;
        showNotice(`${action} ${row.server} in ${row.proxy}: done${said ? " — " + said : ""}`, false);
      } else {
        const why = answer && answer.error ? answer.error : `HTTP ${response.status}`;
        const hint = response.status === 401 || response.status === 403 ? " (is the token right? Forget it and enter it again)" : "";
        showNotice(`${action} ${row.server} in ${row.proxy} refused: ${why}${hint}`, true);
      }
    } catch (e) {
      showNotice(`${action} ${row.server}: ${e.message || e}`, true);
    } finally {
      row.busy = false;
      updateActions(row);
      refreshSoon();
    }
  }
  function onClick(e) {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    const tr = button.closest("tr");
    const vs = vsViews.get(tr && tr.dataset.proxy);
    if (!vs) return;
    for (const row of vs.rows.values()) {
      if (row.tr === tr) { write(row, button.dataset.action); return; }
    }
  }

  // ---- start -----------------------------------------------------------------------------------
  function start() {
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = $("token-input");
      const token = input.value.trim();
      input.value = "";
      if (token) setToken(token);
    });
    $("token-forget").addEventListener("click", () => setToken(""));
    let filterTimer = null;
    $("filter").addEventListener("input", () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(applyFilter, 60);
    });
    $("virtuals").addEventListener("click", onClick);
    setToken(getToken());
    refreshSoon();
    connectEvents();
    setInterval(() => {
      for (const vs of vsViews.values()) for (const row of vs.rows.values()) tickRow(row);
      if (doc) { renderDaemon(doc); }
    }, 1000);
    let lastPoll = performance.now();
    setInterval(() => {
      if (document.visibilityState === "hidden") return;
      const every = live ? POLL_MS : POLL_NO_SSE_MS;
      if (performance.now() - lastPoll >= every) { lastPoll = performance.now(); refreshSoon(); }
    }, 500);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
