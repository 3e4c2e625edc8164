//! Host search and detail.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::now_secs;

use super::error::{ApiError, ApiResult};
use crate::hosts;
use crate::state::AppState;

pub(super) async fn search_hosts(
    State(s): State<Arc<AppState>>,
    q: Result<Query<hosts::Query>, QueryRejection>,
) -> ApiResult<Json<hosts::Page>> {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let page = s
        .hosts
        .search(&q, now_secs())
        .map_err(|e| ApiError::bad("bad_query", e.to_string()))?;
    Ok(Json(page))
}

pub(super) async fn host_detail(
    State(s): State<Arc<AppState>>,
    Path(peer): Path<String>,
) -> ApiResult<Json<Value>> {
    let key: PublicKey = peer
        .parse()
        .map_err(|e| ApiError::bad("bad_peer_id", format!("`{peer}` is not a peer id: {e}")))?;
    let h = s.hosts.get(&key, None, now_secs()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_host",
            format!("no live advert from {peer}"),
        )
    })?;
    let linked = s.accounts.by_node(&key)?.is_some();
    let mut v = serde_json::to_value(h).map_err(|e| ApiError::from(anyhow::Error::from(e)))?;
    v["linked"] = json!(linked);
    Ok(Json(v))
}
