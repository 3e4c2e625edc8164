//! Extractors: JSON bodies whose rejection is an [`ApiError`], and the
//! signed-in account (session cookie, CSRF on state changes).

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::Method;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use sparebox_protocol::now_secs;

use super::error::ApiError;
use crate::accounts::{Account, AccountError, Session};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "sparebox_session";

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

pub(super) fn session_cookie(s: &AppState, token: String, max_age: u64) -> Cookie<'static> {
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
