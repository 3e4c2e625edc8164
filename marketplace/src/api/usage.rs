//! Hosts' signed usage reports.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use sparebox_protocol::now_secs;

use super::accounts::unhex;
use super::error::{ApiError, ApiResult};
use super::extract::Body;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageReq {
    report: String,
    agreement: String,
}

pub(super) async fn usage(
    State(s): State<Arc<AppState>>,
    Body(r): Body<UsageReq>,
) -> ApiResult<Json<Value>> {
    let report = unhex("report", &r.report)?;
    let agreement = unhex("agreement", &r.agreement)?;
    let c = s
        .usage
        .ingest(&report, &agreement, now_secs())
        .map_err(|e| {
            tracing::info!(code = e.code(), "usage report refused: {e}");
            ApiError::from(e)
        })?;
    if !c.duplicate {
        s.deployments
            .usage_reported(&c.offer_id, c.counters, c.total_cents, now_secs())?;
    }
    Ok(Json(
        json!({"chargedCents": c.cents, "duplicate": c.duplicate, "capped": c.capped}),
    ))
}
