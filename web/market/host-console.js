// Host console: link nodes (challenge -> command to run on the host), Stripe Connect payouts, earnings.
"use strict";

let account = null;
let payouts = null;
let nodesKey = "";
let linkStartedWith = null; // node ids when the current link command was issued
let earningsChart = null;

if (queryParam("onboarded") === "1") document.getElementById("onboarded-notice").hidden = false;
if (queryParam("refresh") === "1") document.getElementById("refresh-notice").hidden = false;

// ---------------------------------------------------------------- 1. link a node

async function newChallenge() {
  const btn = document.getElementById("new-link-challenge");
  showMessage("link-error", "");
  btn.disabled = true;
  try {
    const c = await api("POST", "/api/v1/account/challenges", { purpose: "link-node" });
    const command = c.command || `sparebox market link --market ${location.origin} --challenge ${c.challenge}`;
    setText("link-command", command);
    setChildren(document.getElementById("copy-slot"), copyButton(() => command, "Copy command"));
    setText("link-expiry", c.expiresAt ? `Works once, until ${new Date(c.expiresAt * 1000).toLocaleTimeString()} (${fmt.duration(c.expiresAt - Date.now() / 1000)} from now).` : "Works once.");
    document.getElementById("link-box").hidden = false;
    btn.textContent = "Get a new link command";
    linkStartedWith = new Set((account && account.nodes) || []);
    setText("link-status", "Waiting for the node to be linked… this page checks every few seconds.");
  } catch (e) {
    if (!handleAuthError(e)) showMessage("link-error", e.message);
  } finally {
    btn.disabled = false;
  }
}

function earningsOf(nodeId) {
  const n = payouts && (payouts.nodes || []).find((x) => x.nodeId === nodeId);
  return n ? n.earningsCents : null;
}

function renderNodes() {
  const nodes = (account && account.nodes) || [];
  const key = nodes.join(",") + "|" + nodes.map(earningsOf).join(",");
  if (key === nodesKey) return;
  nodesKey = key;
  const list = document.getElementById("nodes");
  if (!nodes.length) {
    setChildren(list, h("li", { class: "muted empty" }, "No node linked yet. Get a link command above and run it on your host machine."));
    return;
  }
  setChildren(
    list,
    nodes.map((id) => {
      const cents = earningsOf(id);
      return h(
        "li",
        { dataset: { nodeId: id } },
        h("a", { href: "/hosts/" + encodeURIComponent(id), class: "mono break", title: "See this host's public listing" }, id),
        cents != null ? h("span", { class: "hint block" }, `Waiting to be paid: ${fmt.money(cents)}`) : null,
      );
    }),
  );
}

async function pollAccount() {
  try {
    account = await currentAccount({ force: true });
    if (!account) {
      location.assign(signInUrl());
      return;
    }
    renderNodes();
    renderPayoutStatus();
    if (linkStartedWith) {
      const added = (account.nodes || []).filter((n) => !linkStartedWith.has(n));
      if (added.length) {
        setText("link-status", `Linked: ${added.map((n) => fmt.short(n)).join(", ")}. It now appears in your list below.`);
        linkStartedWith = null;
        document.getElementById("link-box").hidden = true;
        loadPayouts();
      }
    }
  } catch (e) {
    // transient; try again on the next tick
  }
}

// ---------------------------------------------------------------- 2. payouts

function renderPayoutStatus() {
  const connect = (payouts && payouts.connectAccount) || (account && account.connectAccount);
  const enabled = Boolean((payouts && payouts.payoutsEnabled) || (account && account.payoutsEnabled));
  const status = document.getElementById("payouts-status");
  const btn = document.getElementById("onboard");
  let text;
  let hint;
  if (enabled) {
    text = "Payouts enabled";
    hint = "Earnings are sent to your Stripe account automatically when they reach the minimum payout.";
    btn.textContent = "Update payout details on Stripe";
  } else if (connect) {
    text = "Onboarding incomplete";
    hint = "Stripe still needs some details before it can send you money. Earnings keep adding up meanwhile.";
    btn.textContent = "Continue onboarding";
  } else {
    text = "Not connected";
    hint = "Earnings keep adding up; they are paid once your Stripe account is set up.";
    btn.textContent = "Set up payouts with Stripe";
  }
  if (status.textContent !== text) status.textContent = text;
  status.className = enabled ? "ok" : "warn";
  setText("payouts-hint", hint);
}

async function onboard() {
  const btn = document.getElementById("onboard");
  showMessage("onboard-error", "");
  btn.disabled = true;
  try {
    const out = await api("POST", "/api/v1/payouts/onboarding");
    if (out && out.url) {
      location.assign(out.url);
      return;
    }
    showMessage("onboard-error", "Stripe did not return an onboarding link. Try again in a moment.");
  } catch (e) {
    if (!handleAuthError(e)) showMessage("onboard-error", e.message);
  }
  btn.disabled = false;
}

// ---------------------------------------------------------------- 3. earnings

function sum(list, key) {
  return (list || []).reduce((n, x) => n + (Number(x[key]) || 0), 0);
}

function renderEarnings() {
  const earnings = (payouts.earnings || []).slice().sort((a, b) => a.at - b.at);
  const transfers = (payouts.transfers || []).slice().sort((a, b) => a.at - b.at);
  setText("earned-total", fmt.money(sum(earnings, "cents")));
  setText("paid-total", fmt.money(sum(transfers, "sentCents")));
  setText("pending-total", fmt.money(sum(payouts.nodes, "earningsCents")));
  const bps = Number(payouts.feeBps);
  setText("fee-note", Number.isFinite(bps) ? `The marketplace keeps ${trimNumber(bps / 100, 2)} % of each payout as its fee.` : "");

  // Cumulative earnings and payouts, one row per event.
  const events = [...earnings.map((e) => ({ at: e.at, earned: Number(e.cents) || 0, paid: 0 })), ...transfers.map((t) => ({ at: t.at, earned: 0, paid: Number(t.sentCents) || 0 }))].sort((a, b) => a.at - b.at);
  let earned = 0;
  let paid = 0;
  const points = events.map((e) => {
    earned += e.earned;
    paid += e.paid;
    return [e.at, earned / 100, paid / 100];
  });
  if (window.SpareChart) {
    if (!earningsChart) {
      earningsChart = SpareChart.timeSeries(document.getElementById("earnings-chart"), {
        title: "Cumulative earnings and payouts",
        unit: "$",
        series: [{ label: "Earned ($)" }, { label: "Paid out ($)" }],
        points,
      });
    } else {
      earningsChart.update(points);
    }
  } else {
    setText("earnings-chart", "The chart is unavailable (the chart script did not load).");
  }

  const tbody = $("#transfers tbody");
  if (!transfers.length) {
    setChildren(
      tbody,
      h("tr", { class: "empty" }, h("td", { colspan: "4" }, "No payouts yet. They start once a linked node has earned the minimum payout and payouts are enabled.")),
    );
    return;
  }
  setChildren(
    tbody,
    transfers
      .slice()
      .reverse()
      .map((t) =>
        h(
          "tr",
          { dataset: { transferId: t.transferId } },
          h("td", { "data-label": "Date" }, h("time", { datetime: fmt.iso(t.at) }, fmt.date(t.at))),
          h("td", { "data-label": "Node" }, h("code", { title: t.node }, fmt.short(t.node))),
          h("td", { "data-label": "Sent", class: "num" }, fmt.money(t.sentCents)),
          h("td", { "data-label": "Fee", class: "num" }, fmt.money(t.feeCents)),
        ),
      ),
  );
}

async function loadPayouts() {
  try {
    payouts = await api("GET", "/api/v1/payouts");
    renderEarnings();
    renderPayoutStatus();
    nodesKey = "";
    renderNodes();
  } catch (e) {
    if (handleAuthError(e)) return;
    setText("earned-total", "–");
    setText("paid-total", "–");
    setText("pending-total", "–");
    setChildren($("#transfers tbody"), h("tr", null, h("td", { colspan: "4", class: "form-alert" }, `Earnings could not be loaded: ${e.message}`)));
  }
}

// ---------------------------------------------------------------- start

(async () => {
  account = await requireSession();
  document.getElementById("new-link-challenge").addEventListener("click", newChallenge);
  document.getElementById("onboard").addEventListener("click", onboard);
  renderNodes();
  renderPayoutStatus();
  await loadPayouts();
  setInterval(() => {
    if (!document.hidden) pollAccount();
  }, 3000);
  setInterval(() => {
    if (!document.hidden) loadPayouts();
  }, 30000);
})().catch(showPageError);
