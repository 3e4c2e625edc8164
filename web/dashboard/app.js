// Sparebox node dashboard. Polls the node's loopback API every 2 s (not while
// the tab is hidden) and offers the owner actions (pause offers, prices, stop
// agent) with the owner token. Plain JS, no external resources.
// API and element ids: /work/notes/web-contract.md ("Node dashboard").
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "sparebox.ownerToken";
const TOKEN_HINT = "Paste the owner token that sparebox node printed at startup";

const $ = (id) => document.getElementById(id);

// ---- State --------------------------------------------------------------

const state = {
  token: null,
  accepting: null,      // bool once known
  currency: "usd",
  prices: null,         // PriceList from /api/owner
  priceDirty: false,    // the owner has edited the price form since it was filled
  logAgent: null,       // {id, name} whose logs are open
  busy: false,          // a poll is in flight
  timer: null,
};

// ---- Formatting ---------------------------------------------------------

function num(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function fmtInt(v) {
  v = num(v);
  return v == null ? "–" : Math.round(v).toLocaleString();
}

function fmtDuration(secs) {
  secs = num(secs);
  if (secs == null) return "–";
  secs = Math.max(0, Math.floor(secs));
  const d = Math.floor(secs / 86400);
  const h = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

function fmtMib(mib) {
  mib = num(mib);
  if (mib == null) return "–";
  if (Math.abs(mib) >= 1024) return `${(mib / 1024).toFixed(1).replace(/\.0$/, "")} GiB`;
  return `${Math.round(mib)} MiB`;
}

function fmtBytes(b) {
  b = num(b);
  return b == null ? "–" : fmtMib(b / (1024 * 1024));
}

function fmtCores(millis) {
  millis = num(millis);
  if (millis == null) return "–";
  const cores = millis / 1000;
  return `${Number.isInteger(cores) ? cores : cores.toFixed(2).replace(/0$/, "")} CPU`;
}

function fmtPercent(v) {
  v = num(v);
  return v == null ? "–" : `${v < 10 ? v.toFixed(1) : Math.round(v)}%`;
}

function fmtMoney(cents, currency) {
  cents = num(cents);
  if (cents == null) return "–";
  const cur = String(currency || state.currency || "usd").toUpperCase();
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: cur }).format(cents / 100);
  } catch {
    return `${(cents / 100).toFixed(2)} ${cur}`;
  }
}

function fmtTime(unixSecs) {
  unixSecs = num(unixSecs);
  return unixSecs == null ? "–" : new Date(unixSecs * 1000).toLocaleString();
}

function fmtAgo(unixSecs) {
  unixSecs = num(unixSecs);
  if (unixSecs == null) return "–";
  const d = Math.round(Date.now() / 1000 - unixSecs);
  if (d < 5) return "just now";
  if (d < 60) return `${d} s ago`;
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return new Date(unixSecs * 1000).toLocaleDateString();
}

function shortId(id, keep = 10) {
  id = String(id ?? "");
  return id.length > keep + 4 ? `${id.slice(0, keep)}…${id.slice(-4)}` : id;
}

// ---- DOM helpers --------------------------------------------------------

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  e.append(...children.filter((c) => c != null));
  return e;
}

// Only touch the DOM when the text changes (keeps selection and screen readers calm).
function setText(node, text) {
  if (!node) return;
  text = String(text ?? "");
  if (node.textContent !== text) node.textContent = text;
}

function setBadge(node, text, kind, extra) {
  if (!node) return;
  setText(node, text);
  const cls = `badge badge-${kind || "gray"}${extra ? ` ${extra}` : ""}`;
  if (node.className !== cls) node.className = cls;
}

// A compact id shown in full in the tooltip and to screen readers.
function idCell(td, id) {
  id = String(id ?? "");
  if (td.dataset.full === id) return;
  td.dataset.full = id;
  td.replaceChildren(id ? el("span", { class: "mono", title: id, "aria-label": id, text: shortId(id) }) : "–");
}

// Keyed table rows, updated in place every poll so focus and text selection
// survive. columns: [{cls, set(td, item, isNew)}].
function syncTable(table, items, keyAttr, keyOf, columns, emptyNode) {
  const tbody = table.tBodies[0];
  const byKey = new Map();
  for (const tr of [...tbody.rows]) {
    if (tr.dataset[keyAttr] != null) byKey.set(tr.dataset[keyAttr], tr);
    else tr.remove(); // the empty / loading row
  }
  if (!items.length) {
    for (const tr of byKey.values()) tr.remove();
    tbody.append(el("tr", { class: "empty-row" },
      el("td", { class: "empty-cell", colspan: String(columns.length) }, emptyNode)));
    return;
  }
  items.forEach((item, i) => {
    const key = String(keyOf(item));
    let tr = byKey.get(key);
    const isNew = !tr;
    if (isNew) {
      tr = document.createElement("tr");
      tr.dataset[keyAttr] = key;
      for (const c of columns) tr.append(el("td", { class: c.cls }));
    }
    byKey.delete(key);
    columns.forEach((c, j) => c.set(tr.cells[j], item, isNew));
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
  });
  for (const tr of byKey.values()) tr.remove();
}

// ---- API ----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, fields) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = Array.isArray(fields) ? fields : [];
  }
}

async function api(method, path, body, { owner = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (owner && state.token) headers.Authorization = `Bearer ${state.token}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "unreachable", "Cannot reach the node. Is sparebox node still running?");
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    let message = e.message || `${method} ${path} failed: HTTP ${res.status}`;
    if (res.status === 401 || e.code === "unauthorized") {
      message = state.token
        ? "The node did not accept the owner token. " + TOKEN_HINT + "."
        : TOKEN_HINT + ".";
    }
    throw new ApiError(res.status, e.code || `http_${res.status}`, message, e.fields);
  }
  return data;
}

// ---- Errors -------------------------------------------------------------

function showPollError(message) {
  setText($("error"), message || "");
}

function showActionError(message) {
  const box = $("action-error");
  if (!message) { box.replaceChildren(); return; }
  box.replaceChildren(
    el("span", { text: message }),
    el("button", { type: "button", class: "btn btn-sm", text: "Dismiss", onclick: () => showActionError(null) }),
  );
}

function handleOwnerError(e) {
  if (e.status === 401 || e.code === "unauthorized") setToken(null);
  showActionError(e.message);
}

// ---- Owner token --------------------------------------------------------

function loadToken() {
  // http://127.0.0.1:PORT/#token=<token> from the startup banner.
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromHash = hash.get("token");
  if (fromHash) {
    try { sessionStorage.setItem(TOKEN_KEY, fromHash); } catch { /* storage disabled */ }
    history.replaceState(null, "", location.pathname + location.search);
    return fromHash;
  }
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}

function setToken(token) {
  state.token = token || null;
  try {
    if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lives until reload */ }
  renderOwnerControls();
}

function renderOwnerControls() {
  const has = Boolean(state.token);
  setBadge($("token-badge"), has ? "set" : "not set", has ? "green" : "gray", "badge-plain");
  const status = $("token-status");
  if (status.dataset.has !== String(has)) {
    status.dataset.has = String(has);
    status.replaceChildren(...(has
      ? ["Owner actions are enabled in this browser tab. The token is kept in this tab's session storage only."]
      : ["Paste the owner token that ", el("code", { text: "sparebox node" }),
        " printed at startup to pause offers, change prices and stop agents."]));
  }
  $("forget-token").hidden = !has;
  $("owner-token-section").classList.toggle("is-set", has);
  $("owner-hint").hidden = has;
  for (const b of document.querySelectorAll(".owner-action")) {
    b.disabled = !has || (b.dataset.busy === "1");
    if (has) b.removeAttribute("title");
    else b.title = TOKEN_HINT;
  }
  // Stop buttons also depend on the agent's state.
  for (const b of document.querySelectorAll('#agents button[data-action="stop"]')) {
    b.disabled = !has || b.dataset.stoppable !== "1" || b.dataset.busy === "1";
    b.title = has ? (b.dataset.stoppable === "1" ? "" : "Only running agents can be stopped") : TOKEN_HINT;
  }
  renderAccepting();
}

// ---- Identity, capacity -------------------------------------------------

const NAT_HINTS = {
  public: "reachable from the internet",
  private: "behind NAT; peers reach this node through relays",
  unknown: "not determined yet",
};

function renderAddrList(ul, addrs, emptyText) {
  const list = Array.isArray(addrs) ? addrs.map(String) : [];
  const key = list.join("\n") || `empty:${emptyText}`;
  if (ul.dataset.key === key) return;
  ul.dataset.key = key;
  ul.replaceChildren(...(list.length
    ? list.map((a) => el("li", { class: "mono", text: a }))
    : [el("li", { class: "muted", text: emptyText })]));
}

function renderNode(n) {
  setText($("peer-id"), n.peerId || "unknown");
  setText($("version"), n.version || "–");
  setText($("footer-version"), n.version ? `v${n.version}` : "");
  setText($("uptime"), fmtDuration(n.uptimeS));
  const nat = ["public", "private"].includes(n.natStatus) ? n.natStatus : "unknown";
  setBadge($("nat-status"), nat, nat);
  setText($("nat-hint"), NAT_HINTS[nat]);
  setText($("peer-count"), fmtInt(n.peers));
  setText($("tasks-completed"), fmtInt(n.tasksCompleted));
  renderAddrList($("listen-addrs"), n.listenAddrs, "none");
  renderAddrList($("external-addrs"), n.externalAddrs, "none confirmed yet");
  if (typeof n.acceptingOffers === "boolean") state.accepting = n.acceptingOffers;
  renderAccepting();
  renderCapacity(n.capacity || {});
}

function renderStat(id, used, total, valueText, subText) {
  const box = $(id);
  setText(box.querySelector(".stat-value"), valueText);
  setText(box.querySelector(".stat-sub"), subText);
  const bar = box.querySelector(".bar");
  const pct = total > 0 && used != null ? Math.min(100, Math.max(0, (used / total) * 100)) : 0;
  bar.firstElementChild.style.width = `${pct}%`;
  bar.classList.toggle("warn", pct >= 75 && pct < 95);
  bar.classList.toggle("full", pct >= 95);
}

let latestHistory = null; // newest /api/history point, for measured usage

function renderCapacity(cap) {
  const total = cap.total || {};
  const reserved = cap.reserved || {};
  const live = latestHistory || {};
  const pctOf = (a, b) => (num(a) != null && num(b) > 0 ? ` (${Math.round((a / b) * 100)}%)` : "");

  renderStat("cap-cpu", num(reserved.cpu_millis), num(total.cpu_millis),
    `${fmtCores(reserved.cpu_millis).replace(" CPU", "")} / ${fmtCores(total.cpu_millis)}`,
    num(live.cpuPercent) != null
      ? `machine ${fmtPercent(live.cpuPercent)} busy, agents ${fmtPercent(live.agentsCpuPercent)}`
      : `reserved${pctOf(reserved.cpu_millis, total.cpu_millis)}`);

  renderStat("cap-memory", num(reserved.memory_mib), num(total.memory_mib),
    `${fmtMib(reserved.memory_mib)} / ${fmtMib(total.memory_mib)}`,
    num(live.agentsRssMib) != null
      ? `agents use ${fmtMib(live.agentsRssMib)}; machine ${fmtMib(live.memoryUsedMib)} of ${fmtMib(live.memoryTotalMib)}`
      : `reserved${pctOf(reserved.memory_mib, total.memory_mib)}`);

  renderStat("cap-disk", num(reserved.disk_mib), num(total.disk_mib),
    `${fmtMib(reserved.disk_mib)} / ${fmtMib(total.disk_mib)}`,
    `reserved${pctOf(reserved.disk_mib, total.disk_mib)}`);

  const slots = num(cap.maxAgents);
  const used = num(cap.agents) ?? (slots != null && num(cap.freeAgentSlots) != null ? slots - cap.freeAgentSlots : null);
  renderStat("cap-slots", used, slots,
    `${fmtInt(used)} / ${fmtInt(slots)}`,
    num(cap.freeAgentSlots) != null ? `${fmtInt(cap.freeAgentSlots)} free` : "");
}

function renderAccepting() {
  const a = state.accepting;
  const badge = $("accepting");
  const toggle = $("pause-toggle");
  if (a == null) {
    setBadge(badge, "…", "gray");
  } else {
    setBadge(badge, a ? "accepting offers" : "paused", a ? "accepting" : "paused");
  }
  setText(toggle, a === false ? "Resume offers" : "Pause offers");
  toggle.setAttribute("aria-pressed", a === false ? "true" : "false");
  const cls = a === false ? "btn btn-primary owner-action" : "btn owner-action";
  if (toggle.className !== cls) toggle.className = cls;
  toggle.disabled = !state.token || a == null || toggle.dataset.busy === "1";
}

// ---- Charts -------------------------------------------------------------

let cpuChart = null;
let memChart = null;

function initCharts() {
  if (!window.SpareChart) {
    setText($("history-note"), "Charts unavailable: /common/chart.js did not load.");
    return;
  }
  cpuChart = SpareChart.timeSeries($("cpu-chart"), {
    title: "CPU", unit: "%",
    series: [{ label: "Machine" }, { label: "Agents" }],
    points: [],
  });
  memChart = SpareChart.timeSeries($("memory-chart"), {
    title: "Memory", unit: "MiB",
    series: [{ label: "Machine used" }, { label: "Agents (RSS)" }, { label: "Reserved" }],
    points: [],
  });
}

function renderHistory(h) {
  const points = Array.isArray(h && h.points) ? h.points : [];
  latestHistory = points.length ? points[points.length - 1] : null;
  const interval = num(h && h.intervalSecs);
  setText($("history-note"), interval ? `one sample every ${interval} s` : "");
  if (cpuChart) cpuChart.update(points.map((p) => [p.t, num(p.cpuPercent), num(p.agentsCpuPercent)]));
  if (memChart) memChart.update(points.map((p) => [p.t, num(p.memoryUsedMib), num(p.agentsRssMib), num(p.reservedMemoryMib)]));
}

// ---- Agents -------------------------------------------------------------

const AGENT_STATES = ["deploying", "running", "stopped", "failed", "undeployed"];
const STOPPABLE = new Set(["running", "deploying"]);

function usageText(u) {
  if (!u) return "–";
  const parts = [];
  if (num(u.cpu_ms) != null) parts.push(`CPU ${fmtDuration(u.cpu_ms / 1000)}`);
  if (num(u.wall_secs) != null) parts.push(`up ${fmtDuration(u.wall_secs)}`);
  if (num(u.tokens)) parts.push(`${fmtInt(u.tokens)} tokens`);
  if (num(u.tasks) != null) parts.push(`${fmtInt(u.tasks)} task${u.tasks === 1 ? "" : "s"}`);
  return parts.join(" · ") || "–";
}

const agentColumns = [
  { cls: "wrap name", set: (td, a) => {
    setText(td, a.name || "(unnamed)");
    td.title = a.deployer ? `Deployer ${a.deployer}` : "";
  } },
  { cls: "", set: (td, a) => idCell(td, a.agentId) },
  { cls: "", set: (td, a) => setText(td, a.runtime || "–") },
  { cls: "state", set: (td, a, isNew) => {
    // The test reads this cell's text: the state and nothing else.
    if (isNew) td.append(el("span", { class: "badge" }));
    const s = String(a.state || "unknown");
    setBadge(td.firstElementChild, s, AGENT_STATES.includes(s) ? s : "gray");
    td.title = a.reason ? `Reason: ${a.reason}` : "";
  } },
  { cls: "num", set: (td, a) => setText(td, fmtPercent(a.cpuPercent)) },
  { cls: "num", set: (td, a) => setText(td, fmtBytes(a.rssBytes)) },
  { cls: "small", set: (td, a) => setText(td, usageText(a.usage)) },
  { cls: "actions-cell", set: (td, a, isNew) => {
    if (isNew) {
      td.append(
        el("button", { type: "button", class: "btn btn-sm", dataset: { action: "logs" }, text: "Logs" }),
        el("button", { type: "button", class: "btn btn-sm btn-danger", dataset: { action: "stop" }, text: "Stop" }),
      );
    }
    const name = a.name || a.agentId;
    const [logs, stop] = td.querySelectorAll("button");
    logs.setAttribute("aria-label", `Logs of ${name}`);
    stop.setAttribute("aria-label", `Stop ${name}`);
    stop.dataset.stoppable = STOPPABLE.has(a.state) ? "1" : "0";
    stop.disabled = !state.token || !STOPPABLE.has(a.state) || stop.dataset.busy === "1";
    stop.title = !state.token ? TOKEN_HINT : STOPPABLE.has(a.state) ? "" : "Only running agents can be stopped";
  } },
];

const agentsById = new Map();

function renderAgents(list) {
  const agents = Array.isArray(list) ? list : [];
  agentsById.clear();
  for (const a of agents) agentsById.set(String(a.agentId), a);
  // Running first, then newest.
  const order = { running: 0, deploying: 1, failed: 2, stopped: 3, undeployed: 4 };
  agents.sort((x, y) => (order[x.state] ?? 5) - (order[y.state] ?? 5) || (num(y.createdAt) ?? 0) - (num(x.createdAt) ?? 0));
  syncTable($("agents"), agents, "agentId", (a) => a.agentId, agentColumns,
    el("span", {}, el("strong", { text: "No agents yet." }), " ",
      "Deployers find this node through the marketplace; see ", el("code", { text: "docs/node.md" }), "."));
  const running = agents.filter((a) => a.state === "running").length;
  setText($("agents-summary"), agents.length ? `${running} running of ${agents.length}` : "");
  if (state.logAgent && agentsById.has(state.logAgent.id)) {
    const a = agentsById.get(state.logAgent.id);
    setText($("log-h"), `Logs: ${a.name || a.agentId} (${a.state})`);
  }
}

async function stopAgent(id, button) {
  if (!state.token) { showActionError(TOKEN_HINT + "."); return; }
  button.dataset.busy = "1";
  button.disabled = true;
  setText(button, "Stopping…");
  try {
    const view = await api("POST", `/api/owner/agents/${encodeURIComponent(id)}/stop`, undefined, { owner: true });
    showActionError(null);
    if (view && view.agentId) {
      const tr = $("agents").querySelector(`tr[data-agent-id="${CSS.escape(String(view.agentId))}"]`);
      if (tr) agentColumns.forEach((c, j) => c.set(tr.cells[j], view, false));
    }
  } catch (e) {
    handleOwnerError(e);
  } finally {
    delete button.dataset.busy;
    setText(button, "Stop");
    renderOwnerControls();
    poll();
  }
}

// ---- Logs ---------------------------------------------------------------

async function openLogs(id) {
  const a = agentsById.get(id);
  state.logAgent = { id };
  const panel = $("log-panel");
  panel.hidden = false;
  setText($("log-h"), `Logs: ${(a && (a.name || a.agentId)) || id}${a ? ` (${a.state})` : ""}`);
  setText($("agent-logs"), "Loading…");
  for (const tr of $("agents").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.agentId === id);
  panel.scrollIntoView({ block: "nearest", behavior: "smooth" });
  await refreshLogs();
  $("log-refresh").focus({ preventScroll: true });
}

async function refreshLogs() {
  const agent = state.logAgent;
  if (!agent) return;
  const pre = $("agent-logs");
  try {
    const r = await api("GET", `/api/agents/${encodeURIComponent(agent.id)}/logs?tail=200`);
    if (state.logAgent !== agent) return; // closed or switched meanwhile
    const lines = Array.isArray(r && r.lines) ? r.lines : [];
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    setText(pre, lines.length ? lines.join("\n") : "No log lines yet. The agent's stdout and stderr show up here.");
    if ($("log-follow").checked && atBottom) pre.scrollTop = pre.scrollHeight;
    setText($("log-error"), "");
  } catch (e) {
    if (state.logAgent === agent) setText($("log-error"), `Could not load logs: ${e.message}`);
  }
}

function closeLogs() {
  const id = state.logAgent && state.logAgent.id;
  state.logAgent = null;
  $("log-panel").hidden = true;
  setText($("log-error"), "");
  for (const tr of $("agents").tBodies[0].rows) tr.classList.remove("selected");
  if (id) {
    const b = $("agents").querySelector(`tr[data-agent-id="${CSS.escape(id)}"] button[data-action="logs"]`);
    if (b) b.focus();
  }
}

// ---- Offers -------------------------------------------------------------

const offerColumns = [
  { cls: "", set: (td, o) => { setText(td, fmtAgo(o.at)); td.title = fmtTime(o.at); } },
  { cls: "outcome", set: (td, o, isNew) => {
    if (isNew) td.append(el("span", { class: "badge" }));
    const out = String(o.outcome || "unknown");
    setBadge(td.firstElementChild, out, out === "accepted" ? "accepted" : out === "rejected" ? "rejected" : "gray");
  } },
  { cls: "wrap", set: (td, o) => setText(td, o.name || "–") },
  { cls: "", set: (td, o) => setText(td, o.runtime || "–") },
  { cls: "", set: (td, o) => idCell(td, o.deployer) },
  { cls: "wrap reason", set: (td, o) => {
    const key = `${o.code ?? ""}\n${o.message ?? ""}`;
    if (td.dataset.key === key) return;
    td.dataset.key = key;
    if (!o.code && !o.message) { td.replaceChildren(el("span", { class: "muted", text: "–" })); return; }
    td.replaceChildren(
      o.code ? el("code", { text: o.code }) : "",
      o.message ? el("span", { class: "reason-message", text: ` ${o.message}` }) : "",
    );
  } },
  { cls: "", set: (td, o) => idCell(td, o.agentId) },
];

function renderOffers(r) {
  const offers = Array.isArray(r && r.offers) ? r.offers : [];
  syncTable($("offers"), offers, "offerId", (o) => o.offerId, offerColumns,
    el("span", {}, el("strong", { text: "No offers received yet." }), " ",
      state.accepting === false
        ? "This node is paused; resume accepting offers to receive new deployments."
        : "Offers appear here when deployers try to run agents on this node."));
  const rejected = offers.filter((o) => o.outcome === "rejected").length;
  setText($("offers-summary"), offers.length ? `${offers.length - rejected} accepted, ${rejected} rejected` : "");
}

// ---- Earnings -----------------------------------------------------------

const agreementColumns = [
  { cls: "", set: (td, g) => idCell(td, g.offerId) },
  { cls: "", set: (td, g) => idCell(td, g.agentId) },
  { cls: "wrap", set: (td, g) => setText(td, g.market || "direct") },
  { cls: "num", set: (td, g) => setText(td, fmtMoney(g.chargedCents)) },
  { cls: "num", set: (td, g) => setText(td, fmtInt(g.seq)) },
  { cls: "", set: (td, g) => { setText(td, fmtAgo(g.lastReportAt)); td.title = fmtTime(g.lastReportAt); } },
  { cls: "", set: (td, g, isNew) => {
    if (isNew) td.append(el("span", { class: "badge" }));
    const pending = Boolean(g.pending);
    setBadge(td.firstElementChild, pending ? "report pending" : "reported", pending ? "pending" : "ok");
  } },
];

function renderEarnings(r) {
  if (!r) return;
  if (r.currency) state.currency = r.currency;
  setText($("earned"), fmtMoney(num(r.earnedCents) ?? 0, r.currency));
  setText($("pending-reports"), fmtInt(r.pendingReports ?? 0));
  setText($("rejected-reports"), fmtInt(r.rejectedReports ?? 0));
  const list = Array.isArray(r.agreements) ? r.agreements : [];
  syncTable($("agreements"), list, "offerId", (g) => g.offerId, agreementColumns,
    el("span", {}, el("strong", { text: "Nothing earned yet." }), " ",
      "Each agent a deployer pays for gets a row here, with what has been charged so far."));
}

// ---- Peers --------------------------------------------------------------

const peerColumns = [
  { cls: "", set: (td, p) => idCell(td, p.peerId) },
  { cls: "", set: (td, p) => {
    const addrs = Array.isArray(p.addresses) ? p.addresses : [];
    setText(td, addrs.length ? addrs[0] + (addrs.length > 1 ? ` (+${addrs.length - 1})` : "") : "–");
    td.title = addrs.join("\n");
    td.classList.add("mono", "small");
  } },
  { cls: "", set: (td, p) => setText(td, p.agentVersion || "–") },
  { cls: "num", set: (td, p) => setText(td, num(p.rttMs) == null ? "–" : `${Math.round(p.rttMs)} ms`) },
  { cls: "num", set: (td, p) => setText(td, num(p.gossipScore) == null ? "–" : p.gossipScore.toFixed(1)) },
];

function renderPeers(list) {
  const peers = Array.isArray(list) ? list : [];
  syncTable($("peers"), peers, "peerId", (p) => p.peerId, peerColumns,
    el("span", {}, el("strong", { text: "Not connected to any peer." }), " ",
      "Add a bootstrap peer with ", el("code", { text: "--bootstrap MULTIADDR" }),
      " or ", el("code", { text: "network.bootstrap" }), " in the config; on a LAN, mDNS finds peers by itself."));
  setText($("peers-summary"), peers.length ? `${peers.length} connected` : "");
}

// ---- Prices -------------------------------------------------------------

function classPrice(c) {
  return num(c.cents_per_hour) ?? num(c.centsPerHour);
}

function classDescription(c) {
  const max = c.max || {};
  const parts = [];
  if (c.runtime) parts.push(c.runtime);
  if (num(max.cpu_millis) != null) parts.push(`up to ${fmtCores(max.cpu_millis)}`);
  if (num(max.memory_mib) != null) parts.push(fmtMib(max.memory_mib));
  if (num(max.disk_mib) != null) parts.push(`${fmtMib(max.disk_mib)} disk`);
  return parts.join(", ");
}

function tokenPrice(prices) {
  const models = Array.isArray(prices && prices.models) ? prices.models : [];
  const m = models.find((x) => num(x.cents_per_1k_tokens ?? x.centsPer1kTokens) != null);
  return m ? num(m.cents_per_1k_tokens ?? m.centsPer1kTokens) : null;
}

// Rebuilds the form when the node's prices change, unless the owner is
// editing it (typed something, or an input has focus).
let renderedPrices = null;
function renderPrices(prices, { force = false } = {}) {
  if (!prices) return;
  state.prices = prices;
  if (prices.currency) state.currency = prices.currency;
  const sig = JSON.stringify(prices);
  if (!force) {
    if (sig === renderedPrices) return;
    if (state.priceDirty || $("price-form").contains(document.activeElement)) return;
  }
  renderedPrices = sig;
  const classes = Array.isArray(prices.classes) ? prices.classes : [];
  const box = $("price-fields");
  const fields = classes.map((c, i) => {
    const id = `price-class-${i}`;
    const cents = classPrice(c);
    return el("div", { class: "field price-field" },
      el("label", { for: id }, `${c.class || `class ${i + 1}`} `,
        el("span", { class: "muted small", text: classDescription(c) })),
      el("div", { class: "input-suffix" },
        el("input", {
          id, name: `classes[${i}].centsPerHour`, type: "number", min: "0", step: "1", inputmode: "numeric",
          value: cents == null ? "" : String(cents), "data-class": c.class ?? "",
          "aria-describedby": `${id}-hint`,
        }),
        el("span", { class: "suffix muted", "aria-hidden": "true", text: "¢ / hour" })),
      el("span", { id: `${id}-hint`, class: "hint", text: `cents per hour; now ${fmtMoney(cents)} per hour` }),
    );
  });
  box.replaceChildren(...(fields.length ? fields
    : [el("p", { class: "empty", text: "This node offers no price classes. Set them in the node's config (see docs/node.md) and restart it." })]));
  const tokens = tokenPrice(prices);
  $("price-tokens").value = tokens == null ? "" : String(tokens);
  $("price-tokens").closest(".field").hidden = !(Array.isArray(prices.models) && prices.models.length);
  state.priceDirty = false;
  renderOwnerControls();
}

function clearFieldErrors(form) {
  for (const input of form.querySelectorAll('[aria-invalid="true"]')) {
    input.removeAttribute("aria-invalid");
    const errId = `${input.id}-error`;
    const desc = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter((x) => x && x !== errId);
    if (desc.length) input.setAttribute("aria-describedby", desc.join(" "));
    else input.removeAttribute("aria-describedby");
  }
  for (const e of form.querySelectorAll(".field-error")) e.remove();
}

// Shows each {field, message} next to the input whose name is `field`;
// returns the messages that matched no input.
function showFieldErrors(form, fields) {
  const unmatched = [];
  let first = null;
  for (const f of fields) {
    const input = f && f.field ? form.querySelector(`[name="${CSS.escape(String(f.field))}"]`) : null;
    if (!input) { if (f && f.message) unmatched.push(f.field ? `${f.field}: ${f.message}` : f.message); continue; }
    const errId = `${input.id}-error`;
    let msg = document.getElementById(errId);
    if (!msg) {
      msg = el("span", { id: errId, class: "field-error" });
      input.closest(".field").append(msg);
    }
    setText(msg, f.message || "Invalid value");
    input.setAttribute("aria-invalid", "true");
    const desc = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
    if (!desc.includes(errId)) input.setAttribute("aria-describedby", [errId, ...desc].join(" "));
    first = first || input;
  }
  if (first) first.focus();
  return unmatched;
}

async function savePrices(ev) {
  ev.preventDefault();
  const form = $("price-form");
  clearFieldErrors(form);
  setText($("price-error"), "");
  setText($("price-status"), "");
  if (!state.token) { setText($("price-error"), TOKEN_HINT + "."); return; }

  const local = [];
  const classes = [...form.querySelectorAll('input[name^="classes["]')].map((input) => {
    const raw = input.value.trim();
    const n = Number(raw);
    if (raw === "" || !Number.isFinite(n)) local.push({ field: input.name, message: "Enter a price in whole cents per hour, e.g. 12." });
    return { class: input.dataset.class, centsPerHour: n };
  });
  const body = { classes };
  const tokensInput = $("price-tokens");
  if (!tokensInput.closest(".field").hidden && tokensInput.value.trim() !== "") {
    const n = Number(tokensInput.value.trim());
    if (!Number.isFinite(n)) local.push({ field: "centsPer1kTokens", message: "Enter a price in whole cents per 1,000 tokens." });
    body.centsPer1kTokens = n;
  }
  if (local.length) {
    showFieldErrors(form, local);
    setText($("price-error"), "Some prices are not valid numbers.");
    return;
  }

  const save = $("price-save");
  save.dataset.busy = "1";
  save.disabled = true;
  setText(save, "Saving…");
  try {
    const r = await api("PUT", "/api/owner/prices", body, { owner: true });
    state.priceDirty = false;
    renderPrices((r && r.prices) || state.prices, { force: true });
    setText($("price-status"), "Prices saved.");
  } catch (e) {
    if (e.status === 401 || e.code === "unauthorized") setToken(null);
    const unmatched = showFieldErrors(form, e.fields);
    setText($("price-error"), [e.message, ...unmatched].join(" "));
  } finally {
    delete save.dataset.busy;
    setText(save, "Save prices");
    renderOwnerControls();
  }
}

// ---- Pause / resume -----------------------------------------------------

async function togglePause() {
  if (!state.token || state.accepting == null) return;
  const toggle = $("pause-toggle");
  const want = !state.accepting;
  toggle.dataset.busy = "1";
  toggle.disabled = true;
  try {
    const r = await api("POST", "/api/owner/offers", { accepting: want }, { owner: true });
    state.accepting = r && typeof r.acceptingOffers === "boolean" ? r.acceptingOffers : want;
    showActionError(null);
  } catch (e) {
    handleOwnerError(e);
  } finally {
    delete toggle.dataset.busy;
    renderAccepting();
  }
}

// ---- Polling ------------------------------------------------------------

async function poll() {
  if (state.busy) return;
  state.busy = true;
  clearTimeout(state.timer);
  try {
    const [node, history, agents, offers, earnings, peers, owner] = await Promise.allSettled([
      api("GET", "/api/node"),
      api("GET", "/api/history"),
      api("GET", "/api/agents"),
      api("GET", "/api/offers"),
      api("GET", "/api/earnings"),
      api("GET", "/api/peers"),
      api("GET", "/api/owner"),
    ]);
    const failed = [];
    const take = (r, name, fn) => {
      if (r.status === "fulfilled") {
        try { fn(r.value); } catch (e) { failed.push(`${name}: ${e.message}`); console.error(e); }
      } else {
        failed.push(`${name}: ${r.reason.message}`);
      }
    };
    // History first: the capacity cards show its newest point.
    take(history, "history", renderHistory);
    take(node, "node", (n) => renderNode(n || {}));
    take(agents, "agents", renderAgents);
    take(offers, "offers", renderOffers);
    take(earnings, "earnings", renderEarnings);
    take(peers, "peers", renderPeers);
    take(owner, "prices", (o) => {
      if (o && typeof o.acceptingOffers === "boolean") state.accepting = o.acceptingOffers;
      renderAccepting();
      renderPrices(o && o.prices);
    });
    if (state.logAgent) refreshLogs();

    const unreachable = [node, agents].every((r) => r.status === "rejected" && r.reason.code === "unreachable");
    if (unreachable) {
      showPollError(`Cannot reach the node at ${location.host}. Is sparebox node still running? Retrying every ${POLL_MS / 1000} s.`);
      setText($("last-update"), "Node unreachable");
    } else {
      showPollError(failed.length ? `Some data could not be loaded. ${failed.join("; ")}` : "");
      setText($("last-update"), `Updated ${new Date().toLocaleTimeString()}`);
    }
  } finally {
    state.busy = false;
    schedule();
  }
}

function schedule() {
  clearTimeout(state.timer);
  if (!document.hidden) state.timer = setTimeout(poll, POLL_MS);
}

// ---- Wiring -------------------------------------------------------------

async function copyPeerId() {
  const text = $("peer-id").textContent.trim();
  const status = $("copy-status");
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
    } else {
      const range = document.createRange();
      range.selectNodeContents($("peer-id"));
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      if (!document.execCommand("copy")) throw new Error("copy refused");
      sel.removeAllRanges();
    }
    setText(status, "Copied");
  } catch {
    setText(status, "Copy failed; select the ID and copy it by hand");
  }
  setTimeout(() => setText(status, ""), 2500);
}

function init() {
  state.token = loadToken();

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("owner-token");
    const t = input.value.trim();
    if (!t) { input.focus(); return; }
    input.value = "";
    setToken(t);
    showActionError(null);
  });
  $("forget-token").addEventListener("click", () => { setToken(null); $("owner-token").focus(); });
  $("pause-toggle").addEventListener("click", togglePause);
  $("copy-peer-id").addEventListener("click", copyPeerId);

  $("agents").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    const tr = b && b.closest("tr[data-agent-id]");
    if (!tr) return;
    if (b.dataset.action === "stop") stopAgent(tr.dataset.agentId, b);
    else if (b.dataset.action === "logs") openLogs(tr.dataset.agentId);
  });
  $("log-refresh").addEventListener("click", refreshLogs);
  $("log-close").addEventListener("click", closeLogs);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && state.logAgent && $("log-panel").contains(document.activeElement)) closeLogs();
  });

  const form = $("price-form");
  form.addEventListener("submit", savePrices);
  form.addEventListener("input", () => { state.priceDirty = true; setText($("price-status"), ""); });
  $("price-reset").addEventListener("click", () => {
    clearFieldErrors(form);
    setText($("price-error"), "");
    setText($("price-status"), "");
    state.priceDirty = false;
    renderPrices(state.prices, { force: true });
  });

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) clearTimeout(state.timer);
    else poll();
  });
  window.addEventListener("hashchange", () => {
    const t = loadToken();
    if (t && t !== state.token) setToken(t);
  });

  initCharts();
  renderOwnerControls();
  poll();
}

init();
