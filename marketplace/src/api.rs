//! The marketplace's HTTP API. Errors are JSON `{"error": {"code",
//! "message"}}` with a stable snake_case code.
//!
//! Sessions are a cookie (`sparebox_session`: HttpOnly, SameSite=Lax,
//! Secure when the public URL is https). Every state-changing request made
//! with a session must carry the session's CSRF token in `x-csrf-token`.
//! Requests from keys (usage reports, key proofs, signed voucher requests)
//! are authenticated by their signatures instead.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /api/health`, `GET /metrics` | – | status, Prometheus text |
//! | `POST /api/v1/accounts` | – | sign up `{email, password}` |
//! | `POST /api/v1/sessions`, `DELETE /api/v1/sessions` | – / session | sign in (rate limited), sign out |
//! | `GET /api/v1/account`, `GET /api/v1/account/ledger` | session | profile, balance, keys; ledger entries |
//! | `POST /api/v1/account/challenges` | session | `{purpose: "deployer-key" \| "link-node"}` → one-time challenge |
//! | `POST /api/v1/keys`, `POST /api/v1/nodes` | signed proof | register a deployer key / link a node |
//! | `GET /api/v1/hosts`, `GET /api/v1/hosts/{peerId}` | – | search, detail |
//! | `POST /api/v1/credit/checkout`, `GET /api/v1/credit` | session | buy credit (Checkout URL); balance |
//! | `POST /api/v1/vouchers` | session, or a signed request | a signed voucher reserving its cap |
//! | `POST /api/v1/usage` | signed report | a host's usage report |
//! | `POST /api/v1/payouts/onboarding`, `GET /api/v1/payouts` | session | Connect onboarding link; earnings and transfers |
//! | `POST /api/v1/stripe/webhook` | Stripe signature | Checkout, refunds, Connect updates |
//! | `POST /api/admin/grant-credit`, `POST /api/admin/settle` | admin token | test-ledger credit; settle now |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use serde_json::{Value, json};
use sparebox_node::identity::PublicKey;
use sparebox_node::protocol::{
    Checks, KeyProof, Message as _, ProofPurpose, VoucherRequest, now_secs, open,
};

use crate::accounts::{Account, AccountError, SESSION_SECS, Session};
use crate::billing::{BillingError, Return};
use crate::hosts;
use crate::ledger::{Account as LedgerAccount, Cause, LedgerError, moves};
use crate::service::{AppState, BillingMode};
use crate::usage::UsageError;
use crate::vouchers::VoucherError;
use crate::webhooks::{HandleError, Outcome};

pub const SESSION_COOKIE: &str = "sparebox_session";

/// An API error: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub retry_after: Option<u64>,
    /// Per-field problems (form field name, message), for `invalid`.
    pub fields: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            fields: Vec::new(),
        }
    }
    /// A form that failed validation: 400 `invalid` with every field's problem.
    pub fn invalid(fields: Vec<(String, String)>) -> Self {
        let message = fields
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            fields,
            ..Self::new(StatusCode::BAD_REQUEST, "invalid", message)
        }
    }
    fn bad(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = %self.code, "{}", self.message);
        }
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.fields.is_empty() {
            error["fields"] = self
                .fields
                .iter()
                .map(|(f, m)| json!({"field": f, "message": m}))
                .collect();
        }
        let body = Json(json!({ "error": error }));
        let mut r = (self.status, body).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = s.to_string().parse()
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let status = match &e {
            AccountError::BadCredentials | AccountError::NoSession => StatusCode::UNAUTHORIZED,
            AccountError::Csrf => StatusCode::FORBIDDEN,
            AccountError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AccountError::EmailTaken | AccountError::KeyTaken => StatusCode::CONFLICT,
            AccountError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut a = ApiError::new(status, e.code(), e.to_string());
        if let AccountError::RateLimited(s) = e {
            a.retry_after = Some(s);
        }
        a
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match &e {
            LedgerError::Insufficient { .. } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_credit",
                e.to_string(),
            ),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ledger", e.to_string()),
        }
    }
}

impl From<VoucherError> for ApiError {
    fn from(e: VoucherError) -> Self {
        match e {
            VoucherError::Ledger(l) => l.into(),
            VoucherError::Invalid => ApiError::bad("bad_voucher_request", e.to_string()),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()),
        }
    }
}

impl From<UsageError> for ApiError {
    fn from(e: UsageError) -> Self {
        let status = match &e {
            UsageError::NotMonotone { .. } => StatusCode::CONFLICT,
            UsageError::NotOurVoucher => StatusCode::FORBIDDEN,
            UsageError::OverCap { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            UsageError::Ledger(LedgerError::Insufficient { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            UsageError::Ledger(_) | UsageError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Ledger(l) => l.into(),
            BillingError::Provider(m) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "payment_provider",
                format!("the payment provider failed: {m}"),
            ),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{e:#}"),
        )
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// JSON bodies whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::new(e.status(), "bad_request", e.body_text())),
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v1/accounts", post(sign_up))
        .route("/api/v1/sessions", post(sign_in).delete(sign_out))
        .route("/api/v1/account", get(account))
        .route("/api/v1/account/ledger", get(account_ledger))
        .route("/api/v1/account/challenges", post(challenge))
        .route("/api/v1/keys", post(register_key))
        .route("/api/v1/nodes", post(link_node))
        .route("/api/v1/hosts", get(search_hosts))
        .route("/api/v1/hosts/{peer}", get(host_detail))
        .route("/api/v1/credit", get(credit))
        .route("/api/v1/credit/checkout", post(checkout))
        .route("/api/v1/vouchers", post(new_voucher))
        .route("/api/v1/usage", post(usage))
        .route("/api/v1/payouts", get(payouts))
        .route("/api/v1/payouts/onboarding", post(onboarding))
        .route("/api/v1/stripe/webhook", post(webhook))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/events", get(events))
        .route("/api/v1/credit/checkout/{id}", get(checkout_status))
        .route("/api/v1/keys/prepare", post(prepare_key))
        .route(
            "/api/v1/artifacts",
            post(upload_artifact).layer(axum::extract::DefaultBodyLimit::max(
                crate::deployments::MAX_UPLOAD_BYTES + 1024,
            )),
        )
        .route(
            "/api/v1/deployments",
            get(list_deployments).post(submit_deployment),
        )
        .route("/api/v1/deployments/prepare", post(prepare_deployment))
        .route("/api/v1/deployments/{agent}/usage", get(deployment_usage))
        .route(
            "/api/v1/deployments/{agent}/commands/prepare",
            post(prepare_command),
        )
        .route("/api/v1/deployments/{agent}/commands", post(submit_command))
        .route("/api/admin/grant-credit", post(grant_credit))
        .route("/api/admin/settle", post(settle_now))
        .merge(crate::web::routes())
        .with_state(state)
}

/// The signed-in account, as an extractor: the session cookie must be
/// valid, and for anything but GET and HEAD the `x-csrf-token` header must
/// match the session's CSRF token.
#[derive(Debug)]
pub struct SignedIn(pub Session, pub Account);

impl axum::extract::FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar
            .get(SESSION_COOKIE)
            .map(|c| c.value().to_string())
            .ok_or(AccountError::NoSession)?;
        let session = s.accounts.session(&token, now_secs())?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            if sent != Some(session.csrf.as_str()) {
                return Err(AccountError::Csrf.into());
            }
        }
        let account = s
            .accounts
            .get(&session.account)?
            .ok_or(AccountError::NoSession)?;
        Ok(SignedIn(session, account))
    }
}

fn session_cookie(s: &AppState, token: String, max_age: u64) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(s.secure_cookies)
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age).unwrap_or(i64::MAX),
        ))
        .build()
}

async fn health(State(s): State<Arc<AppState>>) -> Json<Value> {
    let ok = s.ledger.totals().is_ok();
    Json(json!({
        "status": if ok { "ok" } else { "ledger_unreadable" },
        "version": env!("CARGO_PKG_VERSION"),
        "marketId": s.market().to_string(),
        "billing": s.cfg.billing.as_str(),
        "publicUrl": s.public_url,
        "hosts": s.hosts.adverts.len(now_secs()),
    }))
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
        out.push_str(&format!(
            "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {v}\n"
        ));
    };
    match s.ledger.totals() {
        Ok(t) => {
            gauge(
                &mut out,
                "sparebox_market_payments_cents",
                "Card payments received",
                t.payments,
            );
            gauge(
                &mut out,
                "sparebox_market_payouts_cents",
                "Transfers sent to hosts",
                t.payouts,
            );
            gauge(
                &mut out,
                "sparebox_market_refunds_cents",
                "Refunds sent to deployers",
                t.refunds,
            );
            gauge(
                &mut out,
                "sparebox_market_fees_cents",
                "Marketplace fee revenue",
                t.fees,
            );
            gauge(
                &mut out,
                "sparebox_market_held_cents",
                "Credit, reservations and unpaid earnings",
                t.internal,
            );
            gauge(
                &mut out,
                "sparebox_market_ledger_ok",
                "Whether the ledger's balances can be read (its invariant is checked at start-up)",
                1,
            );
        }
        Err(_) => gauge(
            &mut out,
            "sparebox_market_ledger_ok",
            "Whether the ledger's balances can be read",
            0,
        ),
    }
    let hosts = i64::try_from(s.hosts.adverts.len(now_secs())).unwrap_or(i64::MAX);
    gauge(
        &mut out,
        "sparebox_market_hosts",
        "Hosts with a live advert",
        hosts,
    );
    let parked = i64::try_from(s.webhooks.parked_count()).unwrap_or(i64::MAX);
    gauge(
        &mut out,
        "sparebox_market_parked_refunds",
        "Refund events waiting for their payment",
        parked,
    );
    out.push_str("# EOF\n");
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

fn account_json(s: &AppState, a: &Account) -> ApiResult<Value> {
    let balance = s.ledger.balance(&LedgerAccount::Credit(a.id.clone()))?;
    Ok(json!({
        "id": a.id,
        "email": a.email,
        "createdAt": a.created_at,
        "balanceCents": balance,
        "deployerKeys": a.deployer_keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "nodes": a.nodes.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "connectAccount": a.connect_account,
        "payoutsEnabled": a.payouts_enabled,
    }))
}

fn with_session(
    s: &AppState,
    jar: CookieJar,
    a: &Account,
    status: StatusCode,
) -> ApiResult<Response> {
    let (token, session) = s.accounts.new_session(&a.id, now_secs())?;
    let jar = jar.add(session_cookie(s, token, SESSION_SECS));
    let mut body = account_json(s, a)?;
    body["csrfToken"] = json!(session.csrf);
    Ok((status, jar, Json(body)).into_response())
}

async fn sign_up(
    State(s): State<Arc<AppState>>,
    jar: CookieJar,
    Body(c): Body<Credentials>,
) -> ApiResult<Response> {
    let a = s.accounts.sign_up(&c.email, &c.password, now_secs())?;
    tracing::info!(account = %a.id, "account created");
    with_session(&s, jar, &a, StatusCode::CREATED)
}

async fn sign_in(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Body(c): Body<Credentials>,
) -> ApiResult<Response> {
    let a = s
        .accounts
        .sign_in(&c.email, &c.password, &peer.ip().to_string())?;
    with_session(&s, jar, &a, StatusCode::OK)
}

async fn sign_out(
    State(s): State<Arc<AppState>>,
    _signed: SignedIn,
    jar: CookieJar,
) -> ApiResult<Response> {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        s.accounts.end_session(c.value())?;
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    Ok((StatusCode::NO_CONTENT, jar).into_response())
}

async fn account(State(s): State<Arc<AppState>>, signed: SignedIn) -> ApiResult<Json<Value>> {
    let SignedIn(session, a) = signed;
    let mut body = account_json(&s, &a)?;
    body["csrfToken"] = json!(session.csrf);
    Ok(Json(body))
}

/// The ledger accounts that belong to `a`.
fn owned(s: &AppState, a: &Account) -> Vec<LedgerAccount> {
    let mut mine = vec![LedgerAccount::Credit(a.id.clone())];
    mine.extend(
        s.vouchers
            .for_account(&a.id)
            .into_iter()
            .map(|v| LedgerAccount::Reserved(v.voucher_id)),
    );
    mine.extend(
        a.nodes
            .iter()
            .map(|n| LedgerAccount::Earnings(n.to_string())),
    );
    mine
}

async fn account_ledger(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let mine = owned(&s, &a);
    let entries: Vec<Value> = s
        .ledger
        .entries()?
        .into_iter()
        .filter(|e| e.postings.iter().any(|(acc, _)| mine.contains(acc)))
        .map(|e| {
            json!({
                "cause": e.cause,
                "at": e.at,
                "memo": e.memo,
                "postings": e.postings.iter().filter(|(acc, _)| mine.contains(acc)).map(|(acc, c)| json!({"account": acc, "cents": c})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeReq {
    purpose: String,
}

async fn challenge(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    Body(r): Body<ChallengeReq>,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let purpose = match r.purpose.as_str() {
        "deployer-key" => ProofPurpose::DeployerKey,
        "link-node" => ProofPurpose::LinkNode,
        other => {
            return Err(ApiError::bad(
                "bad_purpose",
                format!("purpose `{other}` is not deployer-key or link-node"),
            ));
        }
    };
    let (challenge, expires_at) = s.accounts.challenge(&a.id, purpose, now_secs())?;
    let hint = match purpose {
        ProofPurpose::DeployerKey => format!(
            "sparebox market register-key --market {} --challenge {challenge}",
            s.public_url
        ),
        ProofPurpose::LinkNode => format!(
            "sparebox market link --market {} --challenge {challenge}",
            s.public_url
        ),
    };
    Ok(Json(json!({
        "challenge": challenge,
        "purpose": purpose.as_str(),
        "expiresAt": expires_at,
        "marketId": s.market().to_string(),
        "command": hint,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofReq {
    /// The signed KeyProof envelope, hex (the CLI).
    proof: Option<String>,
    /// A KeyProof signed in the browser: the prepared payload and a
    /// detached signature.
    signed: Option<SignedParts>,
}

/// A payload the marketplace prepared and the browser signed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SignedParts {
    domain: String,
    /// base64
    payload: String,
    /// hex (raw ed25519 key) or PeerId
    public_key: String,
    /// base64
    signature: String,
}

fn unhex(field: &str, v: &str) -> ApiResult<Vec<u8>> {
    hex::decode(v.trim())
        .map_err(|e| ApiError::bad("bad_request", format!("`{field}` is not hex: {e}")))
}

async fn prove(s: &AppState, r: ProofReq, want: ProofPurpose) -> ApiResult<Json<Value>> {
    let bytes = match (&r.proof, &r.signed) {
        (Some(h), None) => unhex("proof", h)?,
        (None, Some(p)) => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let payload = b64.decode(p.payload.trim()).map_err(|e| {
                ApiError::bad("bad_request", format!("`payload` is not base64: {e}"))
            })?;
            let key: PublicKey = p
                .public_key
                .parse()
                .map_err(|e| ApiError::bad("bad_key", format!("publicKey: {e}")))?;
            if p.domain != KeyProof::DOMAIN {
                return Err(ApiError::bad(
                    "wrong_domain",
                    format!("expected a {} payload", KeyProof::DOMAIN),
                ));
            }
            // prove_key verifies it; this only assembles the envelope.
            crate::deployments::seal_detached::<KeyProof>(
                payload,
                key,
                &p.signature,
                &Checks::now().with_audience(s.market()),
            )?
            .envelope
            .to_bytes()
        }
        _ => {
            return Err(ApiError::bad(
                "bad_request",
                "give `proof` (hex) or `signed` (browser-signed parts)",
            ));
        }
    };
    let (a, p) = s.accounts.prove_key(&bytes, s.market(), now_secs())?;
    if p.purpose != want {
        return Err(ApiError::bad(
            "bad_purpose",
            format!("this route takes {} proofs", want.as_str()),
        ));
    }
    tracing::info!(account = %a.id, key = %p.key, purpose = p.purpose.as_str(), "key bound to account");
    Ok(Json(
        json!({"account": a.id, "email": a.email, "key": p.key.to_string(), "purpose": p.purpose.as_str()}),
    ))
}

async fn register_key(
    State(s): State<Arc<AppState>>,
    Body(r): Body<ProofReq>,
) -> ApiResult<Json<Value>> {
    prove(&s, r, ProofPurpose::DeployerKey).await
}

async fn link_node(
    State(s): State<Arc<AppState>>,
    Body(r): Body<ProofReq>,
) -> ApiResult<Json<Value>> {
    prove(&s, r, ProofPurpose::LinkNode).await
}

async fn search_hosts(
    State(s): State<Arc<AppState>>,
    q: Result<Query<hosts::Query>, QueryRejection>,
) -> ApiResult<Json<hosts::Page>> {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let page = s
        .hosts
        .search(&q, now_secs())
        .map_err(|m| ApiError::bad("bad_query", m))?;
    Ok(Json(page))
}

async fn host_detail(
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

async fn credit(State(s): State<Arc<AppState>>, signed: SignedIn) -> ApiResult<Json<Value>> {
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
struct CheckoutReq {
    amount_cents: u64,
}

async fn checkout(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VoucherReq {
    /// A deployer-signed VoucherRequest (hex); no session needed.
    request: Option<String>,
    deployer_key: Option<String>,
    cap_cents: Option<u64>,
    lifetime_secs: Option<u64>,
}

async fn new_voucher(
    State(s): State<Arc<AppState>>,
    // Not needed for a deployer-signed request.
    signed: Result<SignedIn, ApiError>,
    Body(r): Body<VoucherReq>,
) -> ApiResult<Response> {
    let now = now_secs();
    let (account, deployer, cap, lifetime) = match &r.request {
        Some(hexreq) => {
            let bytes = unhex("request", hexreq)?;
            let v = open::<VoucherRequest>(&bytes, &Checks::at(now).with_audience(s.market()))
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "bad_request_signature",
                        format!("voucher request: {e} [{}]", e.code()),
                    )
                })?
                .message;
            let fresh = s
                .voucher_requests
                .compare_and_swap(
                    v.request_id.0,
                    None as Option<&[u8]>,
                    Some(&v.expires_at.to_be_bytes()[..]),
                )
                .map_err(|e| ApiError::from(anyhow::Error::from(e)))?;
            if fresh.is_err() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "replayed_request",
                    "this voucher request was already used",
                ));
            }
            let a = s.accounts.by_deployer_key(&v.deployer)?.ok_or_else(|| {
                ApiError::new(StatusCode::FORBIDDEN, "unregistered_key", format!("deployer key {} is not registered to an account; run `sparebox market register-key`", v.deployer))
            })?;
            if !v.currency.eq_ignore_ascii_case("usd") {
                return Err(ApiError::bad(
                    "bad_currency",
                    "this marketplace issues vouchers in usd",
                ));
            }
            (a, v.deployer, v.cap_cents, v.lifetime_secs)
        }
        None => {
            let SignedIn(_, a) = signed?;
            let key = r.deployer_key.as_deref().ok_or_else(|| {
                ApiError::bad("bad_request", "give deployerKey (or a signed request)")
            })?;
            let key: PublicKey = key
                .parse()
                .map_err(|e| ApiError::bad("bad_key", format!("deployerKey: {e}")))?;
            if !a.deployer_keys.contains(&key) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "unregistered_key",
                    format!("deployer key {key} is not registered to this account"),
                ));
            }
            let cap = r
                .cap_cents
                .ok_or_else(|| ApiError::bad("bad_request", "give capCents"))?;
            (a, key, cap, r.lifetime_secs.unwrap_or(7 * 24 * 3600))
        }
    };
    let (bytes, rec) = s
        .vouchers
        .issue(&account.id, deployer, cap, "usd", lifetime, now)?;
    tracing::info!(account = %account.id, voucher = %rec.voucher_id, cap, "voucher issued");
    let hexv = hex::encode(&bytes);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "voucherId": rec.voucher_id,
            "capCents": rec.cap_cents,
            "expiresAt": rec.expires_at,
            "marketUrl": s.public_url,
            "voucher": hexv,
            "file": {"format": sparebox_node::cli::files::VOUCHER_FORMAT, "voucher": hexv},
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageReq {
    report: String,
    agreement: String,
}

async fn usage(State(s): State<Arc<AppState>>, Body(r): Body<UsageReq>) -> ApiResult<Json<Value>> {
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

async fn onboarding(State(s): State<Arc<AppState>>, signed: SignedIn) -> ApiResult<Json<Value>> {
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

async fn payouts(State(s): State<Arc<AppState>>, signed: SignedIn) -> ApiResult<Json<Value>> {
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

async fn webhook(
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

fn admin(s: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let ok = sparebox_node::api::bearer_matches(sent, &s.admin_token);
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
struct GrantReq {
    email: String,
    cents: u64,
}

async fn grant_credit(
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
    let mut id = [0u8; 12];
    getrandom::fill(&mut id).map_err(|e| ApiError::from(anyhow::anyhow!("{e}")))?;
    let cause = format!("test_grant_{}", hex::encode(id));
    let cents = i64::try_from(r.cents).unwrap_or(i64::MAX);
    s.ledger
        .post(&moves::payment(&cause, &a.id, cents, now_secs()))?;
    let balance = s.ledger.balance(&LedgerAccount::Credit(a.id.clone()))?;
    Ok(Json(
        json!({"account": a.id, "grantedCents": r.cents, "balanceCents": balance}),
    ))
}

async fn settle_now(State(s): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&s, &headers)?;
    let paid = s.settle().await?;
    Ok(Json(json!({
        "payouts": paid.iter().map(|p| json!({"host": p.host, "transferId": p.transfer_id, "earnedCents": p.earned, "feeCents": p.fee})).collect::<Vec<_>>()
    })))
}

async fn stats(State(s): State<Arc<AppState>>) -> Json<Value> {
    let (hosts, cpu, mem) = s.hosts.totals(now_secs());
    Json(json!({
        "hosts": hosts,
        "freeCpuMillis": cpu,
        "freeMemoryMib": mem,
        "runningAgents": s.deployments.running(),
    }))
}

async fn checkout_status(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrepareKeyReq {
    /// The raw ed25519 public key, 64 hex digits.
    public_key: String,
}

async fn prepare_key(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    Body(r): Body<PrepareKeyReq>,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let key: PublicKey = r
        .public_key
        .parse()
        .map_err(|e| ApiError::invalid(vec![("publicKey".into(), format!("{e}"))]))?;
    let now = now_secs();
    let (challenge, expires_at) = s
        .accounts
        .challenge(&a.id, ProofPurpose::DeployerKey, now)?;
    let proof = KeyProof {
        version: KeyProof::VERSION,
        key,
        market: s.market(),
        purpose: ProofPurpose::DeployerKey,
        challenge,
        issued_at: now,
        expires_at: expires_at.min(now + 600),
    };
    let (_, signing) = crate::deployments::signing(&proof);
    Ok(Json(json!({ "signing": signing })))
}

async fn upload_artifact(
    State(s): State<Arc<AppState>>,
    _signed: SignedIn,
    body: Bytes,
) -> ApiResult<Response> {
    let (digest, size) = s.deployments.upload(&body)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"sha256": digest.to_hex(), "size": size})),
    )
        .into_response())
}

async fn prepare_deployment(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    Body(f): Body<crate::deployments::DeployForm>,
) -> ApiResult<Json<Value>> {
    use crate::deployments::HostTerms;
    let SignedIn(_, a) = signed;
    let now = now_secs();
    let mut problems = Vec::new();
    let deployer: Option<PublicKey> = f.deployer_key.parse().ok();
    let deployer = match deployer {
        Some(k) if a.deployer_keys.contains(&k) => Some(k),
        _ => {
            problems.push((
                "deployerKey".to_string(),
                "this browser's key is not registered to your account; generate one on the account page".to_string(),
            ));
            None
        }
    };
    let host = f
        .host
        .parse::<PublicKey>()
        .ok()
        .and_then(|h| s.hosts.get(&h, None, now).map(|v| (h, v)));
    if host.is_none() {
        problems.push((
            "host".to_string(),
            "choose a host that is online now".to_string(),
        ));
    }
    if f.max_total_cents == 0 {
        problems.push((
            "maxTotalCents".to_string(),
            "set a budget above $0".to_string(),
        ));
    }
    let spec = match s.deployments.spec_for(&f) {
        Ok(spec) => Some(spec),
        Err(e) => {
            problems.extend(e.fields);
            None
        }
    };
    let (Some(deployer), Some((host, view)), Some(spec), true) =
        (deployer, host, spec, problems.is_empty())
    else {
        return Err(ApiError::invalid(problems));
    };
    let want = spec.resource_request().resources;
    if !view.advert.runtimes.iter().any(|r| r.kind == spec.runtime) {
        return Err(ApiError::invalid(vec![(
            "host".into(),
            format!("this host does not offer the {} runtime", spec.runtime),
        )]));
    }
    let class = view
        .advert
        .prices
        .classes
        .iter()
        .filter(|c| {
            c.runtime == spec.runtime
                && c.max.cpu_millis >= want.cpu_millis
                && c.max.memory_mib >= want.memory_mib
        })
        .min_by_key(|c| c.cents_per_hour)
        .ok_or_else(|| {
            ApiError::invalid(vec![(
                "host".into(),
                format!(
                    "this host has no {} price class that fits {} millicores and {} MiB",
                    spec.runtime, want.cpu_millis, want.memory_mib
                ),
            )])
        })?;
    let token_price = spec
        .openclaw
        .as_ref()
        .and_then(|o| {
            view.advert
                .prices
                .models
                .iter()
                .find(|m| m.model == o.model)
        })
        .map(|m| m.cents_per_1k_tokens)
        .unwrap_or(0);
    let addr = view
        .advert
        .addresses
        .iter()
        .find(|x| !x.contains("/ip4/0.0.0.0/"))
        .map(|x| {
            if x.contains("/p2p/") {
                x.clone()
            } else {
                format!("{}/p2p/{}", x.trim_end_matches('/'), host)
            }
        });
    let terms = HostTerms {
        host,
        addr,
        cents_per_hour: class.cents_per_hour,
        cents_per_1k_tokens: token_price,
    };
    let (voucher, rec) = s.vouchers.issue(
        &a.id,
        deployer,
        f.max_total_cents,
        "usd",
        crate::deployments::WEB_VOUCHER_SECS,
        now,
    )?;
    let venv = sparebox_node::protocol::Envelope::from_bytes(
        &voucher,
        sparebox_node::protocol::Voucher::max_envelope(),
    )
    .map_err(|e| ApiError::from(anyhow::anyhow!("own voucher: {e}")))?;
    let (offer_id, review, signing) = s.deployments.prepare_offer(
        &a.id,
        deployer,
        &spec,
        &terms,
        f.max_total_cents,
        (venv, rec.voucher_id),
        now,
    )?;
    Ok(Json(json!({
        "offerId": offer_id.to_string(),
        "review": review,
        "signing": signing,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubmitReq {
    offer_id: Option<String>,
    command_id: Option<String>,
    signature: String,
}

async fn submit_deployment(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    Body(r): Body<SubmitReq>,
) -> ApiResult<Response> {
    let SignedIn(_, a) = signed;
    let id = crate::deployments::parse_id("offerId", r.offer_id.as_deref().unwrap_or(""))?;
    let (d, token) = s
        .deployments
        .submit_offer(&s.net, &a.id, id, &r.signature, now_secs())
        .await?;
    tracing::info!(account = %a.id, agent = %d.agent_id, host = %d.host, "deployed from the web");
    Ok((
        StatusCode::CREATED,
        Json(json!({"deployment": d.view(), "apiToken": token})),
    )
        .into_response())
}

async fn list_deployments(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let list: Vec<Value> = s.deployments.list(&a.id).iter().map(|d| d.view()).collect();
    Ok(Json(json!({ "deployments": list })))
}

async fn deployment_usage(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    Path(agent): Path<String>,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let d = s.deployments.get(&a.id, &agent)?;
    let offer = crate::deployments::parse_id("offerId", &d.offer_id)?;
    let points: Vec<Value> = s
        .usage
        .history(&offer)
        .into_iter()
        .map(|p| {
            json!({
                "at": p.at,
                "wallSecs": p.counters.wall_secs,
                "cpuMs": p.counters.cpu_ms,
                "tokens": p.counters.tokens,
                "tasks": p.counters.tasks,
                "spentCents": p.charged,
            })
        })
        .collect();
    Ok(Json(json!({ "points": points })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandReq {
    action: String,
    tail: Option<u32>,
    content: Option<String>,
}

async fn prepare_command(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    Path(agent): Path<String>,
    Body(r): Body<CommandReq>,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let d = s.deployments.get(&a.id, &agent)?;
    let action = crate::deployments::action(&r.action, r.tail, r.content)?;
    let (id, signing) = s
        .deployments
        .prepare_command(&a.id, &d, action, now_secs())?;
    Ok(Json(
        json!({"commandId": id.to_string(), "signing": signing}),
    ))
}

async fn submit_command(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    Path(_agent): Path<String>,
    Body(r): Body<SubmitReq>,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let id = crate::deployments::parse_id("commandId", r.command_id.as_deref().unwrap_or(""))?;
    let out = s
        .deployments
        .submit_command(&s.net, &a.id, id, &r.signature, now_secs())
        .await?;
    Ok(Json(out))
}

/// Server-Sent Events for the signed-in account: `deployment` when one of
/// its agents changes, `balance` when its credit or reservations change
/// (checked every 2 s, so a webhook's credit shows up without a reload).
async fn events(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
) -> axum::response::sse::Sse<
    impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event as Sse, KeepAlive};
    let SignedIn(_, a) = signed;
    let rx = s.deployments.subscribe();
    let tick = tokio::time::interval(std::time::Duration::from_secs(2));
    let state = (s, a.id, rx, tick, None::<(i64, i64)>);
    let stream = futures::stream::unfold(
        state,
        |(s, account, mut rx, mut tick, last)| async move {
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Ok(e) if e.account == account => {
                            let ev = Sse::default().event(e.kind).data(e.data.to_string());
                            return Some((Ok(ev), (s, account, rx, tick, last)));
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = tick.tick() => {
                        let balance = s.ledger.balance(&LedgerAccount::Credit(account.clone())).unwrap_or(0);
                        let reserved: i64 = s
                            .vouchers
                            .for_account(&account)
                            .iter()
                            .map(|v| s.ledger.balance(&LedgerAccount::Reserved(v.voucher_id.clone())).unwrap_or(0))
                            .sum();
                        if last != Some((balance, reserved)) {
                            let ev = Sse::default()
                                .event("balance")
                                .data(json!({"balanceCents": balance, "reservedCents": reserved}).to_string());
                            return Some((Ok(ev), (s, account, rx, tick, Some((balance, reserved)))));
                        }
                    }
                }
            }
        },
    );
    axum::response::sse::Sse::new(stream).keep_alive(KeepAlive::default())
}
