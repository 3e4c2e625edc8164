// Account: balance and credit, the browser's deployer key, the ledger.
"use strict";

let account = null;

// ---- credit

function showBalance(balanceCents, reservedCents) {
  if (balanceCents !== undefined && balanceCents !== null) setText("balance", fmt.money(balanceCents));
  if (reservedCents !== undefined && reservedCents !== null) setText("reserved", fmt.money(reservedCents));
}

async function loadCredit() {
  try {
    const c = await api("GET", "/api/v1/credit");
    showBalance(c.balanceCents, c.reservedCents);
  } catch (e) {
    if (!handleAuthError(e)) setText("reserved", "–");
  }
}

// ---- key card

async function renderKey() {
  const statusEl = document.getElementById("key-status");
  const button = document.getElementById("generate-key");
  const st = await KeyStore.status(account);

  if (!st.support.ok) {
    setChildren(statusEl, st.support.reason);
    statusEl.className = "key-status warn";
    button.hidden = true;
  } else if (st.registered) {
    setChildren(statusEl, "This browser's key is registered: ", h("code", { class: "break" }, st.peerId));
    statusEl.className = "key-status ok";
    button.hidden = true;
  } else if (st.record) {
    setChildren(statusEl, "This browser holds a key that your account does not know yet. Add it to your account to deploy from here.");
    statusEl.className = "key-status warn";
    button.textContent = "Add this browser's key to my account";
    button.hidden = false;
  } else {
    setChildren(statusEl, "This browser holds no deployer key yet. Create one to deploy agents from this browser.");
    statusEl.className = "key-status";
    button.textContent = "Create and register a key";
    button.hidden = false;
  }

  const keys = account.deployerKeys || [];
  setChildren(
    document.getElementById("deployer-keys"),
    keys.length
      ? keys.map((k) =>
          h("li", { dataset: { key: k } }, h("code", { class: "break" }, k), k === st.peerId ? h("span", { class: "badge ok" }, "this browser") : null),
        )
      : h("li", { class: "muted" }, "No keys yet. Create one here, or register a CLI key with ", h("code", null, "sparebox market register-key"), "."),
  );
}

async function registerKey() {
  const button = document.getElementById("generate-key");
  const statusEl = document.getElementById("key-status");
  showMessage("key-error", "");
  button.disabled = true;
  statusEl.textContent = "Creating and registering the key…";
  try {
    try {
      await KeyStore.register(account);
    } catch (e) {
      // The stored key belongs to another account: start over with a fresh key.
      if (e.code !== "key_taken") throw e;
      await KeyStore.generate(account.id);
      await KeyStore.register(account);
    }
    account = await currentAccount({ force: true });
  } catch (e) {
    if (handleAuthError(e)) return;
    showMessage("key-error", e.message);
  } finally {
    button.disabled = false;
    await renderKey();
  }
}

// ---- ledger

// Causes come as {kind, id} (serde tag/content) or {"StripeEvent": id}; accounts as "payments",
// {"credit": id} or {"Credit": id}. Normalise both to snake_case kinds.
function snake(s) {
  return String(s).replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

function normalizeTagged(v) {
  if (v === null || v === undefined) return { kind: "", id: "" };
  if (typeof v === "string") return { kind: snake(v), id: "" };
  if (typeof v === "object" && "kind" in v) return { kind: snake(v.kind), id: v.id ?? "" };
  const [k, id] = Object.entries(v)[0] || ["", ""];
  return { kind: snake(k), id };
}

function describeEntry(e) {
  const cause = normalizeTagged(e.cause);
  const postings = (e.postings || []).map((p) => ({ account: normalizeTagged(p.account), cents: Number(p.cents) || 0 }));
  const sum = (kind) => postings.filter((p) => p.account.kind === kind).reduce((n, p) => n + p.cents, 0);
  const has = (kind) => postings.some((p) => p.account.kind === kind);

  let amount;
  let note = "";
  if (has("credit")) amount = sum("credit");
  else if (has("earnings")) amount = sum("earnings");
  else {
    amount = sum("reserved");
    note = " (from reserved credit)";
  }

  let what;
  switch (cause.kind) {
    case "stripe_event":
      what = amount >= 0 ? "Credit bought by card" : "Card payment refunded";
      break;
    case "usage_report":
      what = has("earnings") ? "Earned from an agent's usage" : "Agent usage";
      break;
    case "transfer":
      what = "Payout to your Stripe account";
      break;
    case "voucher_reserve":
      what = "Reserved for an agent's budget";
      break;
    case "voucher_release":
      what = "Unused reservation returned";
      break;
    default:
      what = cause.kind ? cause.kind.replace(/_/g, " ") : "Ledger entry";
  }
  if (e.memo && !String(e.memo).includes("/")) what += ` — ${e.memo}`;
  return { what: what + note, amount };
}

async function loadLedger() {
  const tbody = $("#ledger tbody");
  try {
    const data = await api("GET", "/api/v1/account/ledger");
    const entries = ((data && data.entries) || []).slice().sort((a, b) => (b.at || 0) - (a.at || 0));
    if (!entries.length) {
      setChildren(
        tbody,
        h("tr", { class: "empty" }, h("td", { colspan: "3" }, "Nothing here yet. ", h("a", { href: "#buy-amount" }, "Buy credit"), " to get started; payments, agent usage and payouts will show up here.")),
      );
      return;
    }
    setChildren(
      tbody,
      entries.map((e) => {
        const d = describeEntry(e);
        return h(
          "tr",
          null,
          h("td", { "data-label": "Date" }, h("time", { datetime: fmt.iso(e.at) }, fmt.date(e.at))),
          h("td", { "data-label": "What" }, d.what),
          h("td", { "data-label": "Amount", class: "num " + (d.amount < 0 ? "negative" : "positive") }, (d.amount > 0 ? "+" : "") + fmt.money(d.amount)),
        );
      }),
    );
  } catch (e) {
    if (handleAuthError(e)) return;
    setChildren(tbody, h("tr", null, h("td", { colspan: "3", class: "form-alert" }, `The ledger could not be loaded: ${e.message}`)));
  }
}

// ---- start

(async () => {
  account = await requireSession();
  setText("account-email", account.email);
  showBalance(account.balanceCents);
  setupBuyCredit(document.getElementById("buy-form"));
  document.getElementById("generate-key").addEventListener("click", registerKey);
  await Promise.all([loadCredit(), renderKey().catch((e) => showMessage("key-error", e.message)), loadLedger()]);
  openEvents({
    balance(d) {
      showBalance(d.balanceCents, d.reservedCents);
      loadLedger();
    },
  });
})().catch(showPageError);
