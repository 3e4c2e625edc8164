//! Accounts: sign-up, sign-in and out, the profile and ledger, challenges,
//! and keys bound to the account by signed proofs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;
use serde_json::{Value, json};
use sparebox_protocol::build;
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::{Checks, KeyProof, Message as _, ProofPurpose, now_secs};

use super::error::{ApiError, ApiResult};
use super::extract::{Body, SESSION_COOKIE, SignedIn, session_cookie};
use crate::accounts::{Account, AccountError, SESSION_SECS, client_key};
use crate::ledger::Account as LedgerAccount;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Credentials {
    email: String,
    password: String,
}

pub(super) fn account_json(s: &AppState, a: &Account) -> ApiResult<Value> {
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

pub(super) fn with_session(
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

pub(super) async fn sign_up(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Body(c): Body<Credentials>,
) -> ApiResult<Response> {
    s.accounts.admit_sign_up(&client_key(peer.ip()))?;
    let accounts = s.accounts.clone();
    let a = hashing(&s, move || {
        accounts.sign_up(&c.email, &c.password, now_secs())
    })
    .await?;
    tracing::info!(account = %a.id, "account created");
    with_session(&s, jar, &a, StatusCode::CREATED)
}

pub(super) async fn sign_in(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Body(c): Body<Credentials>,
) -> ApiResult<Response> {
    // Limits first: a refused attempt never waits for a hashing slot.
    s.accounts.admit_sign_in(&c.email, &client_key(peer.ip()))?;
    let accounts = s.accounts.clone();
    let a = hashing(&s, move || accounts.check_password(&c.email, &c.password)).await?;
    with_session(&s, jar, &a, StatusCode::OK)
}

pub(super) async fn sign_out(
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

pub(super) async fn account(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
) -> ApiResult<Json<Value>> {
    let SignedIn(session, a) = signed;
    let mut body = account_json(&s, &a)?;
    body["csrfToken"] = json!(session.csrf);
    Ok(Json(body))
}

/// The ledger accounts that belong to `a`.
pub(super) fn owned(s: &AppState, a: &Account) -> Vec<LedgerAccount> {
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

pub(super) async fn account_ledger(
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
pub(super) struct ChallengeReq {
    purpose: String,
}

pub(super) async fn challenge(
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
pub(super) struct ProofReq {
    /// The signed KeyProof envelope, hex (the CLI).
    proof: Option<String>,
    /// A KeyProof signed in the browser: the prepared payload and a
    /// detached signature.
    signed: Option<SignedParts>,
}

/// A payload the marketplace prepared and the browser signed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SignedParts {
    domain: String,
    /// base64
    payload: String,
    /// hex (raw ed25519 key) or PeerId
    public_key: String,
    /// base64
    signature: String,
}

pub(super) fn unhex(field: &str, v: &str) -> ApiResult<Vec<u8>> {
    hex::decode(v.trim())
        .map_err(|e| ApiError::bad("bad_request", format!("`{field}` is not hex: {e}")))
}

pub(super) async fn prove(s: &AppState, r: ProofReq, want: ProofPurpose) -> ApiResult<Json<Value>> {
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
            build::seal_detached::<KeyProof>(
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

pub(super) async fn register_key(
    State(s): State<Arc<AppState>>,
    Body(r): Body<ProofReq>,
) -> ApiResult<Json<Value>> {
    prove(&s, r, ProofPurpose::DeployerKey).await
}

pub(super) async fn link_node(
    State(s): State<Arc<AppState>>,
    Body(r): Body<ProofReq>,
) -> ApiResult<Json<Value>> {
    prove(&s, r, ProofPurpose::LinkNode).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PrepareKeyReq {
    /// The raw ed25519 public key, 64 hex digits.
    public_key: String,
}

pub(super) async fn prepare_key(
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
    let ttl = expires_at.saturating_sub(now).clamp(1, 600);
    let proof = build::key_proof(
        key,
        s.market(),
        ProofPurpose::DeployerKey,
        &challenge,
        ttl,
        now,
    )?;
    let (_, signing) = build::detached(&proof);
    Ok(Json(json!({ "signing": signing })))
}

/// Runs `f` (which hashes a password: 19 MiB and tens of ms of argon2id) on
/// the blocking pool, at most `HASHING` at a time, so neither the async
/// workers nor memory are at a flood's mercy.
async fn hashing<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce() -> Result<T, AccountError> + Send + 'static,
) -> ApiResult<T> {
    let _slot = s.hashing.acquire().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the marketplace is stopping",
        )
    })?;
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}
