//! Web deployments: component uploads, offers and commands prepared for
//! the browser to sign, then relayed to hosts; the account's agents.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::{Message as _, now_secs};

use super::error::{ApiError, ApiResult};
use super::extract::{Body, SignedIn};
use crate::deployments::DeployError;
use crate::state::AppState;

pub(super) async fn upload_artifact(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
    body: Bytes,
) -> ApiResult<Response> {
    let SignedIn(_, account) = signed;
    let (digest, size) = s.deployments.upload_for(&account.id, &body)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"sha256": digest.to_hex(), "size": size})),
    )
        .into_response())
}

pub(super) async fn prepare_deployment(
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
        Err(DeployError::Invalid(fields)) => {
            problems.extend(fields);
            None
        }
        Err(e) => return Err(e.into()),
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
    let addr = view.advert.dial_addr();
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
    let venv = sparebox_protocol::Envelope::from_bytes(
        &voucher,
        sparebox_protocol::Voucher::max_envelope(),
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
pub(super) struct SubmitReq {
    offer_id: Option<String>,
    command_id: Option<String>,
    signature: String,
}

pub(super) async fn submit_deployment(
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

pub(super) async fn list_deployments(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
) -> ApiResult<Json<Value>> {
    let SignedIn(_, a) = signed;
    let list: Vec<Value> = s.deployments.list(&a.id).iter().map(|d| d.view()).collect();
    Ok(Json(json!({ "deployments": list })))
}

pub(super) async fn deployment_usage(
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
pub(super) struct CommandReq {
    action: String,
    tail: Option<u32>,
    content: Option<String>,
}

pub(super) async fn prepare_command(
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

pub(super) async fn submit_command(
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
