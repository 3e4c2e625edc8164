// After Stripe Checkout: poll GET /api/v1/credit/checkout/{id} every second (and listen to the
// `balance` event) until the session is paid, then show the new balance.
"use strict";

const sessionId = queryParam("session");
const statusEl = document.getElementById("checkout-status");
let done = false;
let started = Date.now();
let events = null;

function finish(c) {
  if (done) return;
  done = true;
  statusEl.textContent = c.amountCents != null ? `Payment confirmed: paid ${fmt.money(c.amountCents)}` : "Payment confirmed: paid";
  statusEl.classList.add("ok");
  if (c.balanceCents != null) setText("balance", fmt.money(c.balanceCents));
  document.getElementById("next-steps").hidden = false;
  if (events) events.close();
}

async function poll() {
  while (!done) {
    try {
      const c = await api("GET", "/api/v1/credit/checkout/" + encodeURIComponent(sessionId));
      if (c.balanceCents != null) setText("balance", fmt.money(c.balanceCents));
      if (c.status === "paid") {
        finish(c);
        return;
      }
      showMessage("page-error", "");
      const waited = (Date.now() - started) / 1000;
      const text =
        waited > 60
          ? "Still waiting for the payment to be confirmed… Stripe can take a few minutes; this page keeps checking, and the credit also shows up on your account page."
          : "Waiting for the payment to be confirmed…";
      if (statusEl.textContent !== text) statusEl.textContent = text;
    } catch (e) {
      if (handleAuthError(e)) return;
      if (e.status === 404) {
        showMessage("page-error", "This payment session is unknown to the marketplace. If you were charged, the credit will still appear on your account page.");
        return;
      }
      showMessage("page-error", `Could not check the payment: ${e.message} Retrying…`);
    }
    await sleep(document.hidden ? 5000 : 1000);
  }
}

(async () => {
  const account = await requireSession();
  setText("balance", fmt.money(account.balanceCents));
  if (!sessionId) {
    statusEl.textContent = "No payment session was given.";
    showMessage("page-error", "This page needs the ?session= that Stripe returns. Your balance is shown above; check your account page for recent payments.");
    document.getElementById("next-steps").hidden = false;
    return;
  }
  started = Date.now();
  events = openEvents({
    balance(d) {
      if (d.balanceCents != null) setText("balance", fmt.money(d.balanceCents));
    },
  });
  await poll();
})().catch(showPageError);
