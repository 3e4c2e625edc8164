// My agents: list (live via SSE), signed commands (start/stop/restart/undeploy/status/logs/message),
// a detail panel with chat, logs and spend/usage charts.
"use strict";

let account = null;
const deployments = new Map(); // agentId -> Deployment
const chats = new Map(); // agentId -> [Element] (chat entries, kept while the page is open)
const busy = new Set(); // agentIds with a command in flight
let selected = null;
let charts = null; // {spend, usage}
let lastChartLoad = 0;

const tbody = $("#agents tbody");

// ---------------------------------------------------------------- helpers

function runtimeName(kind) {
  return kind === "openclaw" ? "OpenClaw" : kind === "wasi" ? "WASI" : String(kind || "–");
}

function stateBadge(state, cls = "state") {
  const s = state || "unknown";
  return h("span", { class: `${cls} badge state-${s.replace(/[^a-z_-]/gi, "")}` }, s);
}

/** Which actions make sense in a state. Unknown states allow everything. */
function actionsFor(state) {
  switch (state) {
    case "running":
      return ["stop", "restart", "undeploy"];
    case "deploying":
      return ["stop", "undeploy"];
    case "stopped":
    case "failed":
      return ["start", "restart", "undeploy"];
    case "undeployed":
      return [];
    default:
      return ["start", "stop", "restart", "undeploy"];
  }
}

const ACTION_LABELS = { start: "Start", stop: "Stop", restart: "Restart", undeploy: "Undeploy" };
const ACTION_PROGRESS = { start: "Starting", stop: "Stopping", restart: "Restarting", undeploy: "Undeploying", status: "Asking the host about", logs: "Fetching logs of" };

function spentText(d) {
  return `${fmt.money(d.spentCents ?? 0)} / ${fmt.money(d.maxTotalCents)}`;
}

function announce(text) {
  setText("action-status", text);
}

// ---------------------------------------------------------------- list

function agentRow(d) {
  const allowed = actionsFor(d.state);
  const isBusy = busy.has(d.agentId);
  const isSel = selected === d.agentId;
  return h(
    "tr",
    { dataset: { agentId: d.agentId }, class: isSel ? "selected" : null },
    h(
      "td",
      { "data-label": "Name" },
      h(
        "button",
        { type: "button", class: "link-button select-agent", "aria-controls": "agent-detail", "aria-expanded": isSel ? "true" : "false", title: d.agentId },
        d.name || fmt.short(d.agentId),
      ),
    ),
    h("td", { "data-label": "Runtime" }, runtimeName(d.runtime)),
    h("td", { "data-label": "Host" }, d.host ? h("a", { href: "/hosts/" + encodeURIComponent(d.host), class: "mono", title: d.host }, fmt.short(d.host, 6, 4)) : "–"),
    h("td", { "data-label": "State" }, stateBadge(d.state), d.reason ? h("span", { class: "hint block reason" }, d.reason) : null),
    h("td", { "data-label": "Spent / cap" }, spentText(d)),
    h("td", { "data-label": "Updated" }, agoEl(d.updatedAt || d.createdAt)),
    h(
      "td",
      { "data-label": "Actions" },
      h(
        "div",
        { class: "row-actions" },
        ["start", "stop", "restart", "undeploy"].map((a) =>
          h(
            "button",
            {
              type: "button",
              class: `small ${a === "undeploy" ? "danger" : "secondary"}`,
              dataset: { action: a },
              disabled: isBusy || !allowed.includes(a),
              "aria-label": `${ACTION_LABELS[a]} ${d.name || d.agentId}`,
            },
            ACTION_LABELS[a],
          ),
        ),
      ),
    ),
  );
}

function renderList() {
  const list = Array.from(deployments.values()).sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
  document.getElementById("agents-loading").hidden = true;
  document.getElementById("agents").hidden = list.length === 0;
  document.getElementById("agents-empty").hidden = list.length !== 0;
  setChildren(tbody, list.map(agentRow));
}

/** Insert or update one deployment (from the API or an SSE event). */
function upsert(d) {
  if (!d || !d.agentId) return;
  const prev = deployments.get(d.agentId);
  deployments.set(d.agentId, { ...(prev || {}), ...d });
  const merged = deployments.get(d.agentId);
  const row = $(`tr[data-agent-id="${CSS.escape(d.agentId)}"]`, tbody);
  if (row) {
    // Keep focus on the same button when the row is redrawn.
    const focusedAction = document.activeElement && row.contains(document.activeElement) ? document.activeElement.dataset.action || "select" : null;
    const fresh = agentRow(merged);
    row.replaceWith(fresh);
    if (focusedAction) {
      const target = focusedAction === "select" ? $(".select-agent", fresh) : $(`button[data-action="${focusedAction}"]`, fresh);
      if (target && !target.disabled) target.focus();
    }
  } else {
    renderList();
  }
  if (selected === d.agentId) {
    renderDetail();
    maybeReloadCharts();
  }
  if (prev && prev.state !== merged.state) announce(`${merged.name || fmt.short(merged.agentId)} is now ${merged.state}.`);
}

async function loadList() {
  try {
    const data = await api("GET", "/api/v1/deployments");
    const list = (data && data.deployments) || [];
    const seen = new Set(list.map((d) => d.agentId));
    for (const id of Array.from(deployments.keys())) if (!seen.has(id)) deployments.delete(id);
    for (const d of list) deployments.set(d.agentId, d);
    renderList();
    if (selected) renderDetail();
    showMessage("page-error", "");
  } catch (e) {
    if (handleAuthError(e)) return;
    document.getElementById("agents-loading").hidden = true;
    showMessage("page-error", `Your agents could not be loaded: ${e.message}`);
  }
}

// ---------------------------------------------------------------- commands

/** prepare -> sign with the browser key -> submit. Returns the command result. */
async function runCommand(agentId, action, extra = {}) {
  const base = "/api/v1/deployments/" + encodeURIComponent(agentId) + "/commands";
  const prep = await api("POST", base + "/prepare", { action, ...extra });
  const signature = await KeyStore.sign(prep.signing, account.id);
  const out = await api("POST", base, { commandId: prep.commandId, signature });
  if (out && out.result === "agent") applyAgentResult(agentId, out);
  return out;
}

function applyAgentResult(agentId, out) {
  if (out.deployment) {
    upsert(out.deployment);
  } else if (out.agent && deployments.has(agentId)) {
    upsert({ agentId, state: out.agent.state, reason: out.agent.reason ?? null, updatedAt: Math.floor(Date.now() / 1000) });
  }
}

function commandErrorText(e) {
  let text = e.message;
  if (e.code === "no_key") text += " Go to the Account page to create one.";
  if (e.status === 409 && e.code) text = `The host refused: ${e.message} (${e.code})`;
  return text;
}

async function doAction(agentId, action) {
  const d = deployments.get(agentId);
  const name = (d && d.name) || fmt.short(agentId);
  if (action === "undeploy" && !confirm(`Undeploy ${name}? The agent is stopped and removed from the host. This cannot be undone.`)) return;
  busy.add(agentId);
  upsert(deployments.get(agentId));
  announce(`${ACTION_PROGRESS[action] || action} ${name}…`);
  showMessage("page-error", "");
  try {
    const out = await runCommand(agentId, action);
    const now = deployments.get(agentId);
    announce(`${name}: ${action} done${now && now.state ? `, now ${now.state}` : ""}.`);
    return out;
  } catch (e) {
    if (handleAuthError(e)) return;
    announce("");
    showMessage("page-error", `${ACTION_LABELS[action] || action} ${name}: ${commandErrorText(e)}`);
  } finally {
    busy.delete(agentId);
    if (deployments.has(agentId)) upsert(deployments.get(agentId));
  }
}

tbody.addEventListener("click", (ev) => {
  const btn = ev.target.closest("button");
  if (!btn) return;
  const row = btn.closest("tr[data-agent-id]");
  if (!row) return;
  const id = row.dataset.agentId;
  if (btn.classList.contains("select-agent")) selectAgent(id);
  else if (btn.dataset.action) doAction(id, btn.dataset.action);
});

// ---------------------------------------------------------------- detail panel

function renderDetail() {
  const d = deployments.get(selected);
  if (!d) return;
  const u = d.usage || {};
  setText("detail-name", d.name || "");
  setText("detail-id", d.agentId);
  setChildren(document.getElementById("detail-state"), stateBadge(d.state, "detail-state-badge"), d.reason ? h("span", { class: "hint" }, ` ${d.reason}`) : null);
  setChildren(document.getElementById("detail-host"), d.host ? h("a", { href: "/hosts/" + encodeURIComponent(d.host), class: "mono break" }, d.host) : "–");
  setText("detail-runtime", runtimeName(d.runtime));
  setText("detail-created", fmt.date(d.createdAt));
  setText("detail-price", d.centsPerHour != null ? fmt.perHour(d.centsPerHour) : "–");
  setText("detail-spent", spentText(d));
  setText(
    "detail-usage",
    `${fmt.int(res(u, "tasks") ?? 0)} tasks, ${fmt.int(res(u, "tokens") ?? 0)} tokens, ${fmt.duration(res(u, "wall_secs") ?? 0)} running, ${trimNumber((res(u, "cpu_ms") ?? 0) / 1000, 1)} CPU-seconds`,
  );
}

function selectAgent(id) {
  if (!deployments.has(id)) return;
  const changed = selected !== id;
  selected = id;
  for (const row of $$("tr[data-agent-id]", tbody)) {
    const on = row.dataset.agentId === id;
    row.classList.toggle("selected", on);
    $(".select-agent", row).setAttribute("aria-expanded", on ? "true" : "false");
  }
  const panel = document.getElementById("agent-detail");
  panel.hidden = false;
  renderDetail();
  if (changed) {
    renderChat();
    setText("detail-status", "");
    setText("logs", "");
    setText("logs-status", "");
    const url = new URL(location.href);
    url.searchParams.set("agent", id);
    history.replaceState(null, "", url);
    loadLogs();
    loadCharts();
  }
  panel.focus();
  panel.scrollIntoView({ block: "start", behavior: "smooth" });
}

function closeDetail() {
  const id = selected;
  selected = null;
  document.getElementById("agent-detail").hidden = true;
  for (const row of $$("tr[data-agent-id]", tbody)) {
    row.classList.remove("selected");
    $(".select-agent", row).setAttribute("aria-expanded", "false");
  }
  const url = new URL(location.href);
  url.searchParams.delete("agent");
  history.replaceState(null, "", url);
  const back = id && $(`tr[data-agent-id="${CSS.escape(id)}"] .select-agent`, tbody);
  if (back) back.focus();
}

async function refreshStatus() {
  const id = selected;
  if (!id) return;
  const btn = document.getElementById("refresh-status");
  btn.disabled = true;
  setText("detail-status", "Asking the host…");
  try {
    await runCommand(id, "status");
    const d = deployments.get(id);
    if (selected === id) setText("detail-status", `Status refreshed ${new Date().toLocaleTimeString()}: ${d ? d.state : "unknown"}.`);
  } catch (e) {
    if (handleAuthError(e)) return;
    if (selected === id) setText("detail-status", `Could not refresh the status: ${commandErrorText(e)}`);
  } finally {
    btn.disabled = false;
  }
}

// ---- chat

function renderChat() {
  setChildren(document.getElementById("chat-log"), chats.get(selected) || []);
  if (!(chats.get(selected) || []).length) {
    document.getElementById("chat-log").append(h("p", { class: "muted chat-empty" }, "No messages yet. Say hello."));
  }
}

function addChatEntry(agentId, el) {
  if (!chats.has(agentId)) chats.set(agentId, []);
  chats.get(agentId).push(el);
  if (selected === agentId) {
    const log = document.getElementById("chat-log");
    const empty = $(".chat-empty", log);
    if (empty) empty.remove();
    log.append(el);
    log.scrollTop = log.scrollHeight;
  }
}

function taskText(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

async function sendChat(ev) {
  ev.preventDefault();
  const id = selected;
  const input = document.getElementById("chat-input");
  const content = input.value.trim();
  if (!id || !content) {
    input.focus();
    return;
  }
  const send = document.getElementById("chat-send");
  send.disabled = true;
  input.value = "";
  addChatEntry(id, h("div", { class: "chat-message user" }, h("span", { class: "visually-hidden" }, "You: "), content));
  const pending = h("div", { class: "chat-message pending muted", "aria-hidden": "true" }, "Waiting for the reply…");
  addChatEntry(id, pending);
  try {
    const out = await runCommand(id, "message", { content });
    const task = (out && out.task) || {};
    const failed = task.error || task.status === "failed" || task.status === "error";
    const meta = [task.durationMs != null ? `${trimNumber(task.durationMs / 1000, 1)} s` : null, task.tokensUsed ? `${fmt.int(task.tokensUsed)} tokens` : null].filter(Boolean).join(" · ");
    // `.reply` holds exactly the reply text; the speaker label and timing sit beside it.
    const reply = h(
      "div",
      { class: `chat-message agent${failed ? " failed" : ""}` },
      h("span", { class: "visually-hidden" }, failed ? "Agent error: " : "Agent: "),
      h("div", { class: `reply${failed ? " failed" : ""}` }, failed ? `Error: ${taskText(task.error) || task.status}` : taskText(task.result) || "(empty reply)"),
      meta ? h("div", { class: "reply-meta hint" }, meta) : null,
    );
    pending.replaceWith(reply);
    swapEntry(id, pending, reply);
  } catch (e) {
    if (handleAuthError(e)) return;
    const err = h("div", { class: "chat-message chat-error", role: "alert" }, `Not delivered: ${commandErrorText(e)}`);
    pending.replaceWith(err);
    swapEntry(id, pending, err);
    if (!input.value) input.value = content; // let the user retry
  } finally {
    send.disabled = false;
    if (selected === id) input.focus();
  }
}

function swapEntry(agentId, oldEl, newEl) {
  const list = chats.get(agentId) || [];
  const i = list.indexOf(oldEl);
  if (i >= 0) list[i] = newEl;
}

// ---- logs

async function loadLogs() {
  const id = selected;
  if (!id) return;
  const btn = document.getElementById("logs-refresh");
  btn.disabled = true;
  setText("logs-status", "Fetching the last 200 lines…");
  try {
    const out = await runCommand(id, "logs", { tail: 200 });
    if (selected !== id) return;
    const lines = (out && out.lines) || [];
    const pre = document.getElementById("logs");
    pre.textContent = lines.length ? lines.join("\n") : "(no log lines yet)";
    pre.scrollTop = pre.scrollHeight;
    setText("logs-status", `${lines.length} line${lines.length === 1 ? "" : "s"}, fetched ${new Date().toLocaleTimeString()}.`);
  } catch (e) {
    if (handleAuthError(e)) return;
    if (selected === id) setText("logs-status", `Could not fetch the logs: ${commandErrorText(e)}`);
  } finally {
    btn.disabled = false;
  }
}

// ---- charts

function ensureCharts() {
  if (charts) return charts;
  if (!window.SpareChart) {
    for (const id of ["spend-chart", "usage-chart"]) setText(id, "Charts are unavailable (the chart script did not load).");
    return null;
  }
  charts = {
    spend: SpareChart.timeSeries(document.getElementById("spend-chart"), { title: "Spend over time", unit: "$", series: [{ label: "Spent ($)" }], points: [] }),
    usage: SpareChart.timeSeries(document.getElementById("usage-chart"), {
      title: "Usage over time",
      unit: "",
      series: [{ label: "Tasks" }, { label: "Tokens" }],
      points: [],
    }),
  };
  return charts;
}

async function loadCharts() {
  const id = selected;
  if (!id) return;
  lastChartLoad = Date.now();
  const c = ensureCharts();
  if (!c) return;
  try {
    const data = await api("GET", "/api/v1/deployments/" + encodeURIComponent(id) + "/usage");
    if (selected !== id) return;
    const points = ((data && data.points) || []).slice().sort((a, b) => a.at - b.at);
    c.spend.update(points.map((p) => [p.at, (Number(p.spentCents) || 0) / 100]));
    c.usage.update(points.map((p) => [p.at, p.tasks ?? null, p.tokens ?? null]));
  } catch (e) {
    if (handleAuthError(e)) return;
    c.spend.update([]);
    c.usage.update([]);
  }
}

function maybeReloadCharts() {
  if (Date.now() - lastChartLoad > 10000) loadCharts();
}

// ---------------------------------------------------------------- start

async function checkBrowserKey() {
  const st = await KeyStore.status(account);
  const warn = document.getElementById("key-warning");
  if (st.registered) return;
  setChildren(
    warn,
    st.support.ok
      ? ["Commands are signed with your deployer key, and this browser has no registered key. ", h("a", { href: "/account" }, "Set one up on the Account page"), ", or use the CLI that deployed the agents."]
      : st.support.reason,
  );
  warn.hidden = false;
}

(async () => {
  account = await requireSession();
  document.getElementById("close-detail").addEventListener("click", closeDetail);
  document.getElementById("refresh-status").addEventListener("click", refreshStatus);
  document.getElementById("logs-refresh").addEventListener("click", loadLogs);
  document.getElementById("chat-form").addEventListener("submit", sendChat);
  document.getElementById("chat-input").addEventListener("keydown", (ev) => {
    // Enter sends, Shift+Enter adds a line.
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      document.getElementById("chat-form").requestSubmit();
    }
  });
  checkBrowserKey().catch(() => {});
  await loadList();
  const want = queryParam("agent");
  if (want && deployments.has(want)) selectAgent(want);
  openEvents({ deployment: upsert });
  setInterval(() => {
    if (document.hidden) return;
    loadList();
    if (selected) maybeReloadCharts();
  }, 30000);
})().catch(showPageError);
