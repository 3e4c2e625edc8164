//! Credit: the balance, Stripe Checkout, and a Checkout session's status.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::{Body, SignedIn};
use crate::billing::Return;
use crate::ledger::Account as LedgerAccount;
use crate::state::AppState;

pub(super) async fn credit(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let balance = s.ledger.balance(&LedgerAccount::Credit(a.id.clone()))?;
    let mut reserved = 0;
    let mut vouchers = Vec::new();
    for v in s.vouchers.for_account(&a.id) {
        let left = s
            .ledger
            .balance(&LedgerAccount::Reserved(v.voucher_id.clone()))?;
        reserved += left;
        vouchers.push(json!({"voucherId": v.voucher_id, "capCents": v.cap_cents, "remainingCents": left, "expiresAt": v.expires_at, "released": v.released, "deployer": v.deployer.to_string()}));
    }
    Ok(Json(
        json!({"balanceCents": balance, "reservedCents": reserved, "vouchers": vouchers}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CheckoutReq {
    amount_cents: u64,
}

pub(super) async fn checkout(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    Body(r): Body<CheckoutReq>,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    if r.amount_cents < s.cfg.min_checkout_cents || r.amount_cents > 1_000_000 {
        return Err(ApiError::bad(
            "bad_amount",
            format!("buy between {} and 1000000 cents", s.cfg.min_checkout_cents),
        ));
    }
    let back = Return {
        success_url: format!(
            "{}/credit/done?session={{CHECKOUT_SESSION_ID}}",
            s.public_url
        ),
        cancel_url: format!("{}/credit?cancelled=1", s.public_url),
    };
    let c = s.billing.checkout(&a.id, r.amount_cents, &back).await?;
    tracing::info!(account = %a.id, session = %c.id, cents = r.amount_cents, "checkout created");
    Ok(Json(json!({"id": c.id, "url": c.url})))
}

pub(super) async fn checkout_status(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let balance = s.ledger.balance(&LedgerAccount::Credit(a.id.clone()))?;
    let paid = s
        .webhooks
        .checkout(&id)
        .map_err(|e| ApiError::from(anyhow::anyhow!("{e}")))?
        .filter(|(account, _)| *account == a.id);
    Ok(Json(json!({
        "id": id,
        "status": if paid.is_some() { "paid" } else { "pending" },
        "amountCents": paid.map(|(_, c)| c),
        "balanceCents": balance,
    })))
}
