//! Operations: health, Prometheus metrics and the landing page's counts.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use sparebox_protocol::now_secs;

use crate::state::AppState;

pub(super) async fn health(State(s): State<Arc<AppState>>) -> Json<Value> {
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

pub(super) async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
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

pub(super) async fn stats(State(s): State<Arc<AppState>>) -> Json<Value> {
    let (hosts, cpu, mem) = s.hosts.totals(now_secs());
    Json(json!({
        "hosts": hosts,
        "freeCpuMillis": cpu,
        "freeMemoryMib": mem,
        "runningAgents": s.deployments.running(),
    }))
}
