// Buy credit on its own page (/credit, ?cancelled=1 after a cancelled Checkout).
"use strict";

if (queryParam("cancelled") === "1") document.getElementById("cancelled-notice").hidden = false;

(async () => {
  const account = await requireSession();
  setText("balance", fmt.money(account.balanceCents));
  setupBuyCredit(document.getElementById("buy-form"));
  const amount = queryParam("amount");
  if (amount && Number(amount) >= 5) document.getElementById("buy-amount").value = amount;
})().catch(showPageError);
