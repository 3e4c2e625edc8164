//! Hosts' payouts: Stripe Connect onboarding, earnings and transfers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::ApiResult;
use super::extract::SignedIn;
use crate::billing::Return;
use crate::ledger::{Account as LedgerAccount, Cause};
use crate::state::AppState;

pub(super) async fn onboarding(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, mut a) = signed;
    let connect = match &a.connect_account {
        Some(c) => c.clone(),
        None => {
            let c = s.billing.connect_account(&a.email).await?;
            a.connect_account = Some(c.id.clone());
            a.payouts_enabled = c.payouts_enabled;
            s.accounts.save(&a)?;
            c.id
        }
    };
    let back = Return {
        success_url: format!("{}/host/payouts?onboarded=1", s.public_url),
        cancel_url: format!("{}/host/payouts?refresh=1", s.public_url),
    };
    let url = s.billing.onboarding_link(&connect, &back).await?;
    Ok(Json(
        json!({"connectAccount": connect, "url": url, "payoutsEnabled": a.payouts_enabled}),
    ))
}

pub(super) async fn payouts(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let mut nodes = Vec::new();
    for n in &a.nodes {
        nodes.push(json!({"nodeId": n.to_string(), "earningsCents": s.ledger.balance(&LedgerAccount::Earnings(n.to_string()))?}));
    }
    let mine: Vec<LedgerAccount> = a
        .nodes
        .iter()
        .map(|n| LedgerAccount::Earnings(n.to_string()))
        .collect();
    let mut transfers = Vec::new();
    let mut earned = Vec::new();
    for e in s.ledger.entries()? {
        let Some((acc, cents)) = e.postings.iter().find(|(acc, _)| mine.contains(acc)) else {
            continue;
        };
        match &e.cause {
            Cause::Transfer(id) => {
                let sent: i64 = e
                    .postings
                    .iter()
                    .filter(|(a, _)| *a == LedgerAccount::Payouts)
                    .map(|(_, c)| *c)
                    .sum();
                let fee: i64 = e
                    .postings
                    .iter()
                    .filter(|(a, _)| *a == LedgerAccount::Fees)
                    .map(|(_, c)| *c)
                    .sum();
                transfers.push(json!({"transferId": id, "at": e.at, "node": acc, "sentCents": sent, "feeCents": fee}));
            }
            Cause::UsageReport(id) => {
                earned.push(json!({"reportId": id, "at": e.at, "node": acc, "cents": cents}))
            }
            _ => {}
        }
    }
    Ok(Json(json!({
        "connectAccount": a.connect_account,
        "payoutsEnabled": a.payouts_enabled,
        "feeBps": s.cfg.fee_bps,
        "nodes": nodes,
        "earnings": earned,
        "transfers": transfers,
    })))
}
