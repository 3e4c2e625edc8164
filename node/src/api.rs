//! The node's HTTP API: health, the agent API, metrics, the loopback-only
//! dashboard API and the embedded dashboard.
//!
//! - `POST /api/agents/{id}/messages` `{content, threadId?, author?, context?, mentions?}`
//!   → 202 `{taskId, status}`; needs `Authorization: Bearer <token>` (the
//!   token `sparebox deploy` printed).
//! - `GET /api/tasks/{id}` → `{taskId, status, result, durationMs, tokensUsed, error}`;
//!   same token.
//! - `GET /api/health` → `{status, uptimeS, version, peerId, tasksCompleted, agents}`.
//! - `GET /metrics`: Prometheus text format.
//! - Dashboard API, answered only to loopback callers: `GET /api/node`,
//!   `/api/peers`, `/api/adverts`, `/api/agents`, `/api/usage`,
//!   `/api/history`, `/api/offers`, `/api/earnings`,
//!   `/api/agents/{id}/logs?tail=N`, `/api/owner`.
//! - Owner actions, loopback plus `Authorization: Bearer <owner token>`
//!   ([`crate::owner`]): `POST /api/owner/agents/{id}/stop`,
//!   `POST /api/owner/offers {accepting}`, `PUT /api/owner/prices`.
//!
//! `app(state)` builds the whole router, so tests can drive it with
//! `tower::ServiceExt::oneshot` and no socket. Errors are one [`ApiError`]
//! type rendered as `{"error": {"code", "message"}}` with a stable code;
//! internal errors are logged and returned as a generic 500.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::agents::tasks::NewMessage;
use crate::agents::{AgentError, Agents};
use crate::capacity::Caps;
use sparebox_network::Client;
use sparebox_network::adverts::AdvertIndex;
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::now_secs;

/// Shared state behind the API.
#[derive(Debug)]
pub struct ApiState {
    /// `api.dashboard_hosts`: names the dashboard answers to besides loopback.
    pub dashboard_hosts: Vec<String>,
    /// `api.trusted_proxy`.
    pub trusted_proxy: bool,
    pub started: Instant,
    pub node: PublicKey,
    pub agents: Arc<Agents>,
    pub adverts: Arc<AdvertIndex>,
    pub net: Client,
    pub caps: Caps,
}

/// An API error with a stable code.
#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    Conflict(&'static str, String),
    Internal(String),
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::UnknownAgent(_) => ApiError::NotFound(e.to_string()),
            AgentError::Unauthorized(_) => ApiError::Unauthorized(e.to_string()),
            AgentError::NotRunning(_) => ApiError::Conflict("not_running", e.to_string()),
            AgentError::BadRequest(m) => ApiError::BadRequest(m),
            AgentError::Store(s) => ApiError::Internal(s.to_string()),
            AgentError::Random(_) | AgentError::Billing(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::Conflict(code, m) => (StatusCode::CONFLICT, code, m),
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
    pub tasks_completed: u64,
    pub agents: usize,
}

/// The node's router. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`: the dashboard API
/// checks that the caller is on loopback.
pub fn app(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/agents/{id}/messages", post(post_message))
        .route("/api/tasks/{id}", get(get_task))
        .route("/metrics", get(metrics))
        .route("/api/node", get(node_info))
        .route("/api/peers", get(peers))
        .route("/api/adverts", get(adverts))
        .route("/api/agents", get(agents))
        .route("/api/usage", get(usage))
        .route("/api/history", get(history))
        .route("/api/offers", get(offers))
        .route("/api/earnings", get(earnings))
        .route("/api/agents/{id}/logs", get(agent_logs))
        .route("/api/owner", get(owner))
        .route("/api/owner/agents/{id}/stop", post(owner_stop))
        .route("/api/owner/offers", post(owner_offers))
        .route("/api/owner/prices", axum::routing::put(owner_prices))
        .route("/", get(dashboard_index))
        .route("/assets/{*path}", get(dashboard_asset))
        .merge(sparebox_service::web::shared_routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn(
            sparebox_service::web::security_headers,
        ))
        .with_state(state)
}

async fn health(State(state): State<Arc<ApiState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        uptime_s: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        peer_id: state.node.to_peer_id(),
        tasks_completed: state.agents.tasks_completed(),
        agents: state.agents.count(),
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn post_message(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    state.agents.authorize(&id, bearer(&headers))?;
    let msg: NewMessage = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body must be {{content, threadId?, author?, context?, mentions?}}: {e}"
        ))
    })?;
    if msg.content.trim().is_empty() {
        return Err(ApiError::BadRequest("content is empty".into()));
    }
    let task = state.agents.submit(&id, msg)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"taskId": task.task_id, "status": task.status})),
    )
        .into_response())
}

async fn get_task(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<sparebox_protocol::rpc::TaskView>, ApiError> {
    match state.agents.task(&id, bearer(&headers)) {
        Ok(t) => Ok(Json(t)),
        Err(AgentError::BadRequest(m)) => Err(ApiError::NotFound(m)),
        Err(e) => Err(e.into()),
    }
}

async fn metrics(State(state): State<Arc<ApiState>>, _dashboard: Dashboard) -> Response {
    let m = &state.agents.metrics;
    state.agents.update_gauges();
    m.adverts.set(state.adverts.len(now_secs()) as i64);
    if let Ok(info) = state.net.info().await {
        m.peers.set(info.peers.len() as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

/// A caller of the dashboard API: the owner's own browser or tools on
/// this machine. Three checks, all required:
/// - the peer address is loopback;
/// - the `Host` header names loopback (`localhost`, `127.x`, `[::1]`) or a
///   name in `api.dashboard_hosts`, so a web page that rebinds its own name
///   to 127.0.0.1 is refused;
/// - the request did not come through a reverse proxy, unless
///   `api.trusted_proxy` says the proxy authenticates the owner.
#[derive(Debug)]
pub struct Dashboard;

impl axum::extract::FromRequestParts<Arc<ApiState>> for Dashboard {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        if !peer.is_some_and(|p| p.ip().is_loopback()) {
            return Err(ApiError::Forbidden(
                "the dashboard API answers only on loopback".into(),
            ));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !dashboard_host(host, &state.dashboard_hosts) {
            return Err(ApiError::Forbidden(format!(
                "the dashboard answers to localhost, not to Host `{host}` (add the name to api.dashboard_hosts if it is yours)"
            )));
        }
        let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"]
            .iter()
            .any(|h| parts.headers.contains_key(*h));
        if proxied && !state.trusted_proxy {
            return Err(ApiError::Forbidden(
                "the dashboard does not answer through a reverse proxy unless api.trusted_proxy is set".into(),
            ));
        }
        Ok(Dashboard)
    }
}

/// Whether `host` (a `Host` header: name or address, optional port) is
/// loopback or one of `allowed`.
fn dashboard_host(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return false;
    }
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
}

async fn node_info(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
) -> Result<Json<serde_json::Value>, ApiError> {
    let net = state
        .net
        .info()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let reserved = state.agents.reserved();
    let (free, slots) = crate::capacity::free(&state.caps, &reserved);
    Ok(Json(serde_json::json!({
        "peerId": state.node.to_peer_id(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeS": state.started.elapsed().as_secs(),
        "listenAddrs": net.listen_addrs,
        "externalAddrs": net.external_addrs,
        "natStatus": net.nat_status,
        "peers": net.peers.len(),
        "capacity": {
            "total": state.caps.resources,
            "maxAgents": state.caps.agents,
            "reserved": reserved.resources,
            "agents": reserved.agents,
            "free": free,
            "freeAgentSlots": slots,
        },
        "usage": state.agents.usage_totals(),
        "tasksCompleted": state.agents.tasks_completed(),
        "acceptingOffers": state.agents.owner.accepting(),
    })))
}

async fn peers(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
) -> Result<Json<Vec<sparebox_network::PeerView>>, ApiError> {
    let net = state
        .net
        .info()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(net.peers))
}

async fn adverts(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
) -> Result<Json<Vec<sparebox_network::adverts::AdvertView>>, ApiError> {
    Ok(Json(state.adverts.list(now_secs())))
}

async fn agents(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
) -> Result<Json<Vec<sparebox_protocol::rpc::AgentView>>, ApiError> {
    Ok(Json(state.agents.list()))
}

async fn usage(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
) -> Result<Json<serde_json::Value>, ApiError> {
    let per_agent: Vec<_> = state
        .agents
        .list()
        .into_iter()
        .map(
            |a| serde_json::json!({"agentId": a.agent_id, "offerId": a.offer_id, "usage": a.usage}),
        )
        .collect();
    Ok(Json(serde_json::json!({
        "total": state.agents.usage_totals(),
        "agents": per_agent,
    })))
}

/// The dashboard's files, from `web/dashboard`, embedded at build time.
#[derive(Debug, rust_embed::Embed)]
#[folder = "../web/dashboard"]
struct DashboardAssets;

async fn dashboard_index() -> Response {
    sparebox_service::web::file(DashboardAssets::get("index.html"), "index.html")
}

async fn dashboard_asset(Path(path): Path<String>) -> Response {
    sparebox_service::web::file(DashboardAssets::get(&path), &path)
}

async fn history(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::json!({
        "intervalSecs": crate::owner::SAMPLE_SECS,
        "points": state.agents.owner.history(),
    })))
}

async fn offers(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({"offers": state.agents.owner.offers()}),
    ))
}

async fn earnings(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(state.agents.earnings()))
}

#[derive(Debug, serde::Deserialize)]
struct TailQuery {
    tail: Option<usize>,
}

async fn agent_logs(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<TailQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lines = state.agents.agent_logs(&id, q.tail.unwrap_or(200))?;
    Ok(Json(serde_json::json!({ "lines": lines })))
}

fn owner_json(state: &ApiState) -> serde_json::Value {
    let p = state.agents.owner.prices();
    serde_json::json!({
        "acceptingOffers": state.agents.owner.accepting(),
        "prices": {
            "currency": p.currency,
            "classes": [
                {"class": "wasi", "runtime": "wasi", "centsPerHour": p.wasi_cents_per_hour},
                {"class": "openclaw", "runtime": "openclaw", "centsPerHour": p.openclaw_cents_per_hour},
            ],
            "centsPer1kTokens": p.cents_per_1k_tokens,
        },
    })
}

async fn owner(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(owner_json(&state)))
}

/// Owner actions: loopback and the owner token.
fn owner_only(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.agents.owner.authorized(auth) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "owner actions need the owner token `sparebox node` printed at startup".into(),
        ))
    }
}

async fn owner_stop(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    owner_only(&state, &headers)?;
    use sparebox_protocol::rpc::ControlResponse;
    match state
        .agents
        .owner_action(&id, sparebox_protocol::ControlAction::Stop)
        .await
    {
        ControlResponse::Agent(view) => {
            state.agents.changed.notify_one();
            Ok(Json(view).into_response())
        }
        ControlResponse::Rejected(r) if r.code == "unknown_agent" => {
            Err(ApiError::NotFound(r.message))
        }
        ControlResponse::Rejected(r) => Err(ApiError::Conflict("refused", r.to_string())),
        _ => Err(ApiError::Internal("unexpected reply to stop".into())),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptingReq {
    accepting: bool,
}

async fn owner_offers(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
    headers: HeaderMap,
    body: Result<Json<AcceptingReq>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    owner_only(&state, &headers)?;
    let Json(r) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    state
        .agents
        .owner
        .set_accepting(r.accepting)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Re-advertise now: paused hosts advertise no free capacity.
    state.agents.changed.notify_one();
    tracing::info!(accepting = r.accepting, "owner changed offer intake");
    Ok(Json(owner_json(&state)))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClassPriceReq {
    class: String,
    cents_per_hour: serde_json::Value,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PricesReq {
    classes: Vec<ClassPriceReq>,
    cents_per_1k_tokens: Option<serde_json::Value>,
}

/// What the form is told about a price that is not one.
const BAD_CENTS: &str = "enter a whole number of cents from 0 to 1000000";

/// A price as the form sent it: a whole number of cents, 0 to 1,000,000.
fn cents(v: &serde_json::Value) -> Option<u64> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.filter(|c| *c <= 1_000_000)
}

async fn owner_prices(
    State(state): State<Arc<ApiState>>,
    _dashboard: Dashboard,
    headers: HeaderMap,
    body: Result<Json<PricesReq>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    owner_only(&state, &headers)?;
    let Json(r) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut prices = state.agents.owner.prices();
    let mut fields = Vec::new();
    for (i, c) in r.classes.iter().enumerate() {
        let field = format!("classes[{i}].centsPerHour");
        match (c.class.as_str(), cents(&c.cents_per_hour)) {
            (_, None) => fields.push(serde_json::json!({"field": field, "message": BAD_CENTS})),
            ("wasi", Some(v)) => prices.wasi_cents_per_hour = v,
            ("openclaw", Some(v)) => prices.openclaw_cents_per_hour = v,
            (other, Some(_)) => fields.push(serde_json::json!({
                "field": format!("classes[{i}].class"),
                "message": format!("`{other}` is not a price class here (wasi, openclaw)"),
            })),
        }
    }
    if let Some(v) = &r.cents_per_1k_tokens {
        match cents(v) {
            Some(v) => prices.cents_per_1k_tokens = v,
            None => {
                fields.push(serde_json::json!({"field": "centsPer1kTokens", "message": BAD_CENTS}))
            }
        }
    }
    if !fields.is_empty() {
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": {
                "code": "invalid",
                "message": "some prices are not valid",
                "fields": fields,
            }})),
        )
            .into_response());
    }
    state
        .agents
        .owner
        .set_prices(prices)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state.agents.changed.notify_one();
    tracing::info!("owner changed prices");
    Ok(Json(owner_json(&state)).into_response())
}
