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
//!
//! One module per concern: [`error`] (the error type and how domain errors
//! map to it), [`extract`] (bodies, the signed-in account), then one module
//! per resource. Handlers call the domain modules (`crate::accounts`,
//! `crate::ledger`, `crate::deployments`, ...); nothing outside `api`
//! imports it except start-up, which serves [`router`].

mod accounts;
mod admin;
mod credit;
mod deployments;
pub mod error;
mod events;
pub mod extract;
mod hosts;
mod ops;
mod payouts;
mod usage;
mod vouchers;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use error::{ApiError, ApiResult};
pub use extract::SESSION_COOKIE;

use crate::state::AppState;

/// Every route, with the shared state; tests call it with `oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/accounts", post(accounts::sign_up))
        .route(
            "/api/v1/sessions",
            post(accounts::sign_in).delete(accounts::sign_out),
        )
        .route("/api/v1/account", get(accounts::account))
        .route("/api/v1/account/ledger", get(accounts::account_ledger))
        .route("/api/v1/account/challenges", post(accounts::challenge))
        .route("/api/v1/keys", post(accounts::register_key))
        .route("/api/v1/nodes", post(accounts::link_node))
        .route("/api/v1/hosts", get(hosts::search_hosts))
        .route("/api/v1/hosts/{peer}", get(hosts::host_detail))
        .route("/api/v1/credit", get(credit::credit))
        .route("/api/v1/credit/checkout", post(credit::checkout))
        .route("/api/v1/vouchers", post(vouchers::new_voucher))
        .route("/api/v1/usage", post(usage::usage))
        .route("/api/v1/payouts", get(payouts::payouts))
        .route("/api/v1/payouts/onboarding", post(payouts::onboarding))
        .route("/api/v1/stripe/webhook", post(webhooks::webhook))
        .route("/api/v1/stats", get(ops::stats))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/credit/checkout/{id}", get(credit::checkout_status))
        .route("/api/v1/keys/prepare", post(accounts::prepare_key))
        .route(
            "/api/v1/artifacts",
            post(deployments::upload_artifact).layer(axum::extract::DefaultBodyLimit::max(
                crate::deployments::MAX_UPLOAD_BYTES + 1024,
            )),
        )
        .route(
            "/api/v1/deployments",
            get(deployments::list_deployments).post(deployments::submit_deployment),
        )
        .route(
            "/api/v1/deployments/prepare",
            post(deployments::prepare_deployment),
        )
        .route(
            "/api/v1/deployments/{agent}/usage",
            get(deployments::deployment_usage),
        )
        .route(
            "/api/v1/deployments/{agent}/commands/prepare",
            post(deployments::prepare_command),
        )
        .route(
            "/api/v1/deployments/{agent}/commands",
            post(deployments::submit_command),
        )
        .route("/api/admin/grant-credit", post(admin::grant_credit))
        .route("/api/admin/settle", post(admin::settle_now))
        .merge(crate::web::routes())
        .layer(axum::middleware::from_fn(
            sparebox_service::web::security_headers,
        ))
        .with_state(state)
}
