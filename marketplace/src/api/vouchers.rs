//! Vouchers: issued for a session or a deployer-signed request.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::{Checks, VoucherRequest, now_secs, open};

use super::accounts::unhex;
use super::error::{ApiError, ApiResult};
use super::extract::{Body, SignedIn};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct VoucherReq {
    /// A deployer-signed VoucherRequest (hex); no session needed.
    request: Option<String>,
    deployer_key: Option<String>,
    cap_cents: Option<u64>,
    lifetime_secs: Option<u64>,
}

pub(super) async fn new_voucher(
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
            "file": {"format": sparebox_protocol::files::VOUCHER_FORMAT, "voucher": hexv},
        })),
    )
        .into_response())
}
