//! The Stripe webhook endpoint.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sparebox_protocol::now_secs;

use super::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::webhooks::{HandleError, Outcome};

pub(super) async fn webhook(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let Some(secret) = &s.webhook_secret else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_stripe_mode",
            "this marketplace runs --billing test-ledger; it takes no Stripe webhooks",
        ));
    };
    let payload = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad("bad_event", "the body is not UTF-8"))?;
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let ev = crate::stripe::verify_webhook(payload, sig, secret).map_err(|e| {
        tracing::warn!(code = e.code(), "webhook refused: {e}");
        ApiError::bad(e.code(), e.to_string())
    })?;
    let outcome = s.webhooks.handle(&ev, now_secs()).map_err(|e| match e {
        HandleError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_event", m),
        HandleError::Ledger(l) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ledger", l.to_string())
        }
        HandleError::Storage(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", m),
    })?;
    tracing::info!(event = %ev.id, "webhook: {outcome:?}");
    let (result, detail) = match outcome {
        Outcome::Applied(d) => ("applied", d),
        Outcome::Duplicate => ("duplicate", String::new()),
        Outcome::Parked => ("parked", "waiting for its payment".into()),
        Outcome::Ignored(d) => ("ignored", d),
    };
    Ok(Json(
        json!({"received": true, "event": ev.id, "result": result, "detail": detail}),
    ))
}
