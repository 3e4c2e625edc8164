//! The node's HTTP API: health, the agent API (later issues) and the embedded
//! dashboard.
//!
//! `app(state)` builds the whole router, so tests can drive it with
//! `tower::ServiceExt::oneshot` and no socket. Errors are one [`ApiError`]
//! type rendered as `{"error": {"code", "message"}}` with a stable code;
//! internal errors are logged and returned as a generic 500.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::identity::PublicKey;

/// Shared state behind the API.
#[derive(Debug)]
pub struct ApiState {
    pub started: Instant,
    pub node: PublicKey,
}

/// An API error with a stable code.
#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal API error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_string(),
                )
            }
        };
        (
            status,
            Json(serde_json::json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}

/// `GET /api/health` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: &'static str,
    pub uptime_s: u64,
    pub version: &'static str,
    pub peer_id: String,
}

/// The node's router.
pub fn app(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/", get(dashboard_index))
        .route("/assets/{*path}", get(dashboard_asset))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

async fn health(State(state): State<Arc<ApiState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        uptime_s: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        peer_id: state.node.to_peer_id(),
    })
}

/// The dashboard's files, from `web/dashboard`, embedded at build time.
#[derive(rust_embed::Embed)]
#[folder = "../web/dashboard"]
struct DashboardAssets;

fn asset(path: &str) -> Result<Response, ApiError> {
    let file =
        DashboardAssets::get(path).ok_or_else(|| ApiError::NotFound(format!("no asset {path}")))?;
    let mime = match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        file.data,
    )
        .into_response())
}

async fn dashboard_index() -> Result<Response, ApiError> {
    asset("index.html")
}

async fn dashboard_asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    asset(&path)
}
