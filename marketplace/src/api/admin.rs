//! Admin routes behind the admin token.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use sparebox_protocol::now_secs;

use super::error::{ApiError, ApiResult};
use super::extract::Body;
use crate::config::BillingMode;
use crate::ledger::{Account as LedgerAccount, moves};
use crate::state::AppState;

pub(super) fn admin(s: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let ok = sparebox_protocol::token::bearer_matches(sent, &s.admin_token);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not_admin",
            "missing or wrong admin token (see admin.token in the data dir)",
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantReq {
    email: String,
    cents: u64,
}

pub(super) async fn grant_credit(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Body(r): Body<GrantReq>,
) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    if s.cfg.billing != BillingMode::TestLedger {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_test_ledger",
            "grant-credit works only with --billing test-ledger",
        ));
    }
    if r.cents == 0 || r.cents > 100_000_000 {
        return Err(ApiError::bad("bad_amount", "cents must be 1 to 100000000"));
    }
    let a = s.accounts.by_email(&r.email)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_account",
            format!("no account with email {}", r.email),
        )
    })?;
    let id = sparebox_protocol::token::random_hex(12, "grant id")
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let cause = format!("test_grant_{id}");
    let cents = i64::try_from(r.cents).unwrap_or(i64::MAX);
    s.ledger
        .post(&moves::payment(&cause, &a.id, cents, now_secs()))?;
    let balance = s.ledger.balance(&LedgerAccount::Credit(a.id.clone()))?;
    Ok(Json(
        json!({"account": a.id, "grantedCents": r.cents, "balanceCents": balance}),
    ))
}

pub(super) async fn settle_now(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    let paid = s.settle().await?;
    Ok(Json(json!({
        "payouts": paid.iter().map(|p| json!({"host": p.host, "transferId": p.transfer_id, "earnedCents": p.earned, "feeCents": p.fee})).collect::<Vec<_>>()
    })))
}
