//! A fake of the Stripe endpoints the marketplace calls, on 127.0.0.1:0,
//! reached through async-stripe's custom base URL (`STRIPE_API_BASE`).
//!
//! It checks what real Stripe would: the secret key, the form encoding,
//! the request shapes (a one-item `payment` Checkout with a price, an
//! Express account with the transfers capability, an onboarding link for a
//! known account, a transfer to a known account), and idempotency keys:
//! a key replayed with the same body returns the first response, with
//! another body it is an error, and Checkout and transfers must carry one.
//! Every problem is recorded in `violations`, which tests assert empty.
//!
//! It also makes the webhook events Stripe would send, signed for real:
//! `Stripe-Signature: t=T,v1=HMAC-SHA256(secret, "T.payload")`.

// Handlers return ready Stripe error responses; their size does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde_json::{Value, json};

pub const SECRET_KEY: &str = "sk_test_sparebox_fake";
pub const WEBHOOK_SECRET: &str = "whsec_sparebox_fake";

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub account: String,
    pub amount: i64,
    pub payment_intent: String,
    pub success_url: String,
}

#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: String,
    pub amount: i64,
    pub destination: String,
    pub idempotency_key: String,
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub sessions: BTreeMap<String, Session>,
    pub accounts: BTreeMap<String, String>,
    pub links: Vec<String>,
    pub transfers: Vec<Transfer>,
    /// Idempotency key → (path + body, response).
    idempotency: HashMap<String, (String, Value)>,
    pub violations: Vec<String>,
    pub requests: Vec<String>,
    next: u64,
    /// This fake's own URL (hosted pages link back to it).
    base_url: String,
    /// Where the hosted pages deliver their webhooks (a marketplace URL).
    webhook_target: Option<String>,
    /// Connect account → the onboarding link's return URL.
    returns: HashMap<String, String>,
}

/// A running fake Stripe.
#[derive(Debug, Clone)]
pub struct FakeStripe {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
}

type Shared = Arc<Mutex<FakeState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, FakeState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn stripe_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": "invalid_request_error", "message": message}})),
    )
        .into_response()
}

/// Auth, content type and idempotency, shared by every POST. Returns the
/// earlier response for a replayed key.
fn preflight(
    s: &Shared,
    headers: &HeaderMap,
    path: &str,
    form: &[(String, String)],
    key_required: bool,
) -> Result<Option<Value>, Response> {
    let mut st = lock(s);
    st.requests.push(path.to_string());
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {SECRET_KEY}")) {
        st.violations
            .push(format!("{path}: bad Authorization {auth:?}"));
        return Err(stripe_error(
            StatusCode::UNAUTHORIZED,
            "Invalid API Key provided",
        ));
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        st.violations.push(format!("{path}: content-type {ct}"));
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let Some(key) = key else {
        if key_required {
            st.violations.push(format!("{path}: no Idempotency-Key"));
        }
        return Ok(None);
    };
    let fingerprint = format!("{path}?{form:?}");
    match st.idempotency.get(key) {
        Some((f, resp)) if *f == fingerprint => Ok(Some(resp.clone())),
        Some(_) => {
            st.violations.push(format!(
                "{path}: idempotency key {key} reused with another request"
            ));
            Err(stripe_error(
                StatusCode::BAD_REQUEST,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            ))
        }
        None => Ok(None),
    }
}

fn remember(s: &Shared, headers: &HeaderMap, path: &str, form: &[(String, String)], resp: &Value) {
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        lock(s)
            .idempotency
            .insert(key.to_string(), (format!("{path}?{form:?}"), resp.clone()));
    }
}

fn field<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

fn next_id(s: &Shared, prefix: &str) -> String {
    let mut st = lock(s);
    st.next += 1;
    format!("{prefix}_fake{:06}", st.next)
}

fn now() -> i64 {
    i64::try_from(sparebox_protocol::now_secs()).unwrap_or(0)
}

fn require(
    s: &Shared,
    path: &str,
    form: &[(String, String)],
    checks: &[(&str, Option<&str>)],
) -> Result<(), Response> {
    for (k, want) in checks {
        let have = field(form, k);
        let ok = match want {
            Some(w) => have == Some(*w),
            None => have.is_some_and(|v| !v.is_empty()),
        };
        if !ok {
            lock(s)
                .violations
                .push(format!("{path}: field {k} = {have:?}, want {want:?}"));
            return Err(stripe_error(
                StatusCode::BAD_REQUEST,
                &format!("Missing or bad parameter: {k}"),
            ));
        }
    }
    Ok(())
}

async fn checkout(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let path = "/v1/checkout/sessions";
    match preflight(&s, &headers, path, &form, true) {
        Ok(Some(prev)) => return Json(prev).into_response(),
        Ok(None) => {}
        Err(r) => return r,
    }
    if let Err(r) = require(
        &s,
        path,
        &form,
        &[
            ("mode", Some("payment")),
            ("line_items[0][quantity]", Some("1")),
            ("line_items[0][price_data][currency]", Some("usd")),
            ("line_items[0][price_data][unit_amount]", None),
            ("line_items[0][price_data][product_data][name]", None),
            ("success_url", None),
            ("cancel_url", None),
            ("client_reference_id", None),
        ],
    ) {
        return r;
    }
    let amount: i64 = field(&form, "line_items[0][price_data][unit_amount]")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if amount <= 0 {
        lock(&s)
            .violations
            .push(format!("{path}: unit_amount {amount}"));
        return stripe_error(StatusCode::BAD_REQUEST, "unit_amount must be positive");
    }
    let id = next_id(&s, "cs_test");
    let session = Session {
        id: id.clone(),
        account: field(&form, "client_reference_id")
            .unwrap_or_default()
            .to_string(),
        amount,
        payment_intent: next_id(&s, "pi"),
        success_url: field(&form, "success_url").unwrap_or_default().to_string(),
    };
    let resp = json!({
        "id": id, "object": "checkout.session", "automatic_tax": {"enabled": false},
        "created": now(), "expires_at": now() + 86400, "livemode": false, "mode": "payment",
        "custom_fields": [], "custom_text": {}, "payment_method_types": ["card"],
        "payment_status": "unpaid", "shipping_options": [], "status": "open",
        "amount_total": amount, "currency": "usd",
        "client_reference_id": session.account,
        "url": format!("{}/c/pay/{id}", lock(&s).base_url),
    });
    lock(&s).sessions.insert(id, session);
    remember(&s, &headers, path, &form, &resp);
    Json(resp).into_response()
}

async fn accounts(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let path = "/v1/accounts";
    match preflight(&s, &headers, path, &form, false) {
        Ok(Some(prev)) => return Json(prev).into_response(),
        Ok(None) => {}
        Err(r) => return r,
    }
    if let Err(r) = require(
        &s,
        path,
        &form,
        &[
            ("type", Some("express")),
            ("email", None),
            ("capabilities[transfers][requested]", Some("true")),
        ],
    ) {
        return r;
    }
    let id = next_id(&s, "acct");
    lock(&s).accounts.insert(
        id.clone(),
        field(&form, "email").unwrap_or_default().to_string(),
    );
    let resp = json!({"id": id, "object": "account", "type": "express", "charges_enabled": false, "payouts_enabled": false, "details_submitted": false});
    remember(&s, &headers, path, &form, &resp);
    Json(resp).into_response()
}

async fn account_links(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let path = "/v1/account_links";
    if let Err(r) = preflight(&s, &headers, path, &form, false) {
        return r;
    }
    if let Err(r) = require(
        &s,
        path,
        &form,
        &[
            ("account", None),
            ("type", Some("account_onboarding")),
            ("refresh_url", None),
            ("return_url", None),
        ],
    ) {
        return r;
    }
    let account = field(&form, "account").unwrap_or_default().to_string();
    if !lock(&s).accounts.contains_key(&account) {
        lock(&s)
            .violations
            .push(format!("{path}: unknown account {account}"));
        return stripe_error(StatusCode::BAD_REQUEST, "No such account");
    }
    let url = format!("{}/setup/e/{account}", lock(&s).base_url);
    let back = field(&form, "return_url").unwrap_or_default().to_string();
    lock(&s).returns.insert(account.clone(), back);
    lock(&s).links.push(url.clone());
    Json(json!({"object": "account_link", "created": now(), "expires_at": now() + 300, "url": url}))
        .into_response()
}

async fn transfers(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let path = "/v1/transfers";
    match preflight(&s, &headers, path, &form, true) {
        Ok(Some(prev)) => return Json(prev).into_response(),
        Ok(None) => {}
        Err(r) => return r,
    }
    if let Err(r) = require(
        &s,
        path,
        &form,
        &[
            ("amount", None),
            ("currency", Some("usd")),
            ("destination", None),
        ],
    ) {
        return r;
    }
    let destination = field(&form, "destination").unwrap_or_default().to_string();
    if !lock(&s).accounts.contains_key(&destination) {
        lock(&s)
            .violations
            .push(format!("{path}: unknown destination {destination}"));
        return stripe_error(StatusCode::BAD_REQUEST, "No such destination");
    }
    let amount: i64 = field(&form, "amount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if amount <= 0 {
        lock(&s).violations.push(format!("{path}: amount {amount}"));
        return stripe_error(StatusCode::BAD_REQUEST, "amount must be positive");
    }
    let id = next_id(&s, "tr");
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    lock(&s).transfers.push(Transfer {
        id: id.clone(),
        amount,
        destination: destination.clone(),
        idempotency_key: key,
    });
    let resp = json!({
        "id": id, "object": "transfer", "amount": amount, "amount_reversed": 0, "created": now(),
        "currency": "usd", "destination": destination, "livemode": false, "metadata": {},
        "reversals": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/transfers/{id}/reversals")},
        "reversed": false,
    });
    remember(&s, &headers, path, &form, &resp);
    Json(resp).into_response()
}

async fn unknown(State(s): State<Shared>, Path(rest): Path<String>) -> Response {
    lock(&s)
        .violations
        .push(format!("unexpected call: /v1/{rest}"));
    stripe_error(StatusCode::NOT_FOUND, "Unrecognized request URL")
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/v1/checkout/sessions", post(checkout))
            .route("/v1/accounts", post(accounts))
            .route("/v1/account_links", post(account_links))
            .route("/v1/transfers", post(transfers))
            .route("/v1/{*rest}", axum::routing::any(unknown))
            .route("/c/pay/{id}", axum::routing::get(pay_page).post(pay))
            .route(
                "/setup/e/{account}",
                axum::routing::get(onboarding_page).post(onboard),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake Stripe");
        let addr = listener.local_addr().expect("fake Stripe");
        lock(&state).base_url = format!("http://{addr}");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeStripe {
            url: format!("http://{addr}"),
            state,
        }
    }

    /// Makes the hosted pages (Checkout, Connect onboarding) deliver their
    /// signed webhooks to the marketplace at `market`, as Stripe would.
    pub fn send_webhooks_to(&self, market: &str) {
        lock(&self.state).webhook_target = Some(market.to_string());
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    pub fn transfers(&self) -> Vec<Transfer> {
        lock(&self.state).transfers.clone()
    }

    pub fn session(&self, id: &str) -> Option<Session> {
        lock(&self.state).sessions.get(id).cloned()
    }

    pub fn accounts(&self) -> Vec<String> {
        lock(&self.state).accounts.keys().cloned().collect()
    }

    /// The environment a marketplace needs to use this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STRIPE_SECRET_KEY", SECRET_KEY.to_string()),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
            ("STRIPE_API_BASE", self.url.clone()),
        ]
    }

    /// The `checkout.session.completed` event for a paid session.
    pub fn checkout_completed(&self, event_id: &str, session_id: &str) -> Value {
        let s = self.session(session_id).expect("known session");
        event(
            event_id,
            "checkout.session.completed",
            json!({
                "id": s.id, "object": "checkout.session", "automatic_tax": {"enabled": false},
                "created": now(), "expires_at": now() + 86400, "livemode": false, "mode": "payment",
                "custom_fields": [], "custom_text": {}, "payment_method_types": ["card"],
                "payment_status": "paid", "shipping_options": [], "status": "complete",
                "amount_total": s.amount, "currency": "usd", "client_reference_id": s.account,
                "payment_intent": s.payment_intent,
            }),
        )
    }

    /// `charge.refunded` with `refunded` cents refunded in all.
    pub fn charge_refunded(&self, event_id: &str, session_id: &str, refunded: i64) -> Value {
        let s = self.session(session_id).expect("known session");
        event(
            event_id,
            "charge.refunded",
            json!({
                "id": format!("ch_{}", s.payment_intent), "object": "charge", "amount": s.amount,
                "amount_captured": s.amount, "amount_refunded": refunded, "billing_details": {},
                "captured": true, "created": now(), "currency": "usd", "disputed": false, "livemode": false,
                "metadata": {}, "paid": true, "refunded": refunded >= s.amount, "status": "succeeded",
                "payment_intent": s.payment_intent,
            }),
        )
    }

    /// `account.updated` for a connected account, `created` at `at`.
    pub fn account_updated(
        &self,
        event_id: &str,
        account: &str,
        payouts_enabled: bool,
        at: i64,
    ) -> Value {
        let mut e = event(
            event_id,
            "account.updated",
            json!({
                "id": account, "object": "account", "type": "express",
                "charges_enabled": payouts_enabled, "payouts_enabled": payouts_enabled, "details_submitted": true,
            }),
        );
        e["created"] = json!(at);
        e
    }
}

fn event(id: &str, kind: &str, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2026-09-30.endive", "created": now(),
        "livemode": false, "pending_webhooks": 1, "type": kind, "data": {"object": object},
        "request": {"id": null, "idempotency_key": null},
    })
}

/// The `Stripe-Signature` header for `payload` signed at `timestamp`.
pub fn sign(payload: &str, secret: &str, timestamp: i64) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Posts a signed event to a marketplace's webhook; returns status and body.
pub async fn deliver(market: &str, event: &Value, signature: Option<String>) -> (u16, Value) {
    let payload = event.to_string();
    let sig = signature.unwrap_or_else(|| sign(&payload, WEBHOOK_SECRET, now()));
    let r = reqwest::Client::new()
        .post(format!("{market}/api/v1/stripe/webhook"))
        .header("stripe-signature", sig)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .expect("webhook delivery");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// A hosted page of the fake: one heading, one sentence, one button.
fn hosted(title: &str, text: &str, button: &str) -> Response {
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    axum::response::Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} (fake Stripe)</title></head><body style=\"font-family:sans-serif;max-width:30rem;margin:3rem auto\">\
         <h1>{t}</h1><p>{x}</p><p><small>This is the test suite's fake of Stripe.</small></p>\
         <form method=\"post\"><button id=\"stripe-submit\" type=\"submit\">{b}</button></form></body></html>",
        t = esc(title),
        x = esc(text),
        b = esc(button)
    ))
    .into_response()
}

async fn pay_page(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let Some(session) = lock(&s).sessions.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such checkout session").into_response();
    };
    hosted(
        "Pay Sparebox",
        &format!(
            "Credit for your Sparebox account: ${}.{:02}",
            session.amount / 100,
            session.amount % 100
        ),
        "Pay",
    )
}

/// Delivers `event` to the webhook target, signed, and returns whether the
/// marketplace took it.
async fn deliver_hosted(s: &Shared, event: &Value) -> bool {
    let target = lock(s).webhook_target.clone();
    match target {
        Some(t) => {
            let (status, _) = deliver(&t, event, None).await;
            status == 200
        }
        None => {
            lock(s)
                .violations
                .push("a hosted page was used with no webhook target".into());
            false
        }
    }
}

/// "Pays": Stripe sends `checkout.session.completed`, then redirects the
/// browser to the success URL with the session id filled in.
async fn pay(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let Some(session) = lock(&s).sessions.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such checkout session").into_response();
    };
    let fake = FakeStripe {
        url: lock(&s).base_url.clone(),
        state: s.clone(),
    };
    let event_id = next_id(&s, "evt");
    let ev = fake.checkout_completed(&event_id, &id);
    if !deliver_hosted(&s, &ev).await {
        return (
            StatusCode::BAD_GATEWAY,
            "the marketplace refused the webhook",
        )
            .into_response();
    }
    let to = session.success_url.replace("{CHECKOUT_SESSION_ID}", &id);
    axum::response::Redirect::to(&to).into_response()
}

async fn onboarding_page(State(s): State<Shared>, Path(account): Path<String>) -> Response {
    if !lock(&s).accounts.contains_key(&account) {
        return (StatusCode::NOT_FOUND, "no such account").into_response();
    }
    hosted(
        "Set up payouts",
        "Stripe would collect your identity and bank details here.",
        "Finish onboarding",
    )
}

/// Finishes onboarding: `account.updated` with payouts enabled, then back
/// to the return URL.
async fn onboard(State(s): State<Shared>, Path(account): Path<String>) -> Response {
    let back = lock(&s).returns.get(&account).cloned();
    let Some(back) = back else {
        return (StatusCode::NOT_FOUND, "no onboarding link for this account").into_response();
    };
    let fake = FakeStripe {
        url: lock(&s).base_url.clone(),
        state: s.clone(),
    };
    let event_id = next_id(&s, "evt");
    let ev = fake.account_updated(&event_id, &account, true, now());
    if !deliver_hosted(&s, &ev).await {
        return (
            StatusCode::BAD_GATEWAY,
            "the marketplace refused the webhook",
        )
            .into_response();
    }
    axum::response::Redirect::to(&back).into_response()
}
