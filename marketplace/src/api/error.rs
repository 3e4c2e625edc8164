//! The API's one error type: a status, a stable snake_case code, a message
//! and per-field problems. Domain errors map to it here; a server error is
//! logged with its detail and answered with a generic message.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::accounts::AccountError;
use crate::billing::BillingError;
use crate::deployments::DeployError;
use crate::ledger::LedgerError;
use crate::usage::UsageError;
use crate::vouchers::VoucherError;
use sparebox_protocol::build::{BuildError, DetachedError};

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
    pub(crate) fn bad(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // An internal error's detail (a storage failure, a path) is for the
        // log, not for whoever sent the request: they get the stable code
        // and a generic message.
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = %self.code, "{}", self.message);
            "internal error".to_string()
        } else {
            if self.status.is_server_error() {
                tracing::warn!(code = %self.code, "{}", self.message);
            }
            self.message
        };
        let mut error = json!({"code": self.code, "message": message});
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
            AccountError::Storage(_) | AccountError::Random(_) => StatusCode::INTERNAL_SERVER_ERROR,
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

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        let message = e.to_string();
        match e {
            DeployError::Invalid(fields) => ApiError::invalid(fields),
            DeployError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            DeployError::NotAComponent => ApiError::bad("not_a_component", message),
            DeployError::UploadQuota { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "upload_quota", message)
            }
            DeployError::UnknownPending(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_request", message)
            }
            DeployError::UnknownAgent(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_agent", message)
            }
            DeployError::BadId(_) => ApiError::bad("bad_request", message),
            DeployError::Signature(e) => e.into(),
            DeployError::Unreachable(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "host_unreachable", message)
            }
            DeployError::Refused { code, .. } => ApiError::new(StatusCode::CONFLICT, code, message),
            DeployError::Storage(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", message)
            }
            DeployError::Build(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

/// A browser's detached signature that did not verify.
impl From<DetachedError> for ApiError {
    fn from(e: DetachedError) -> Self {
        match e {
            DetachedError::Malformed => {
                ApiError::bad("bad_signature", "`signature` must be 64 bytes, base64")
            }
            DetachedError::Verify(v) => ApiError::bad(
                v.code(),
                format!("the browser's signature did not verify: {v}"),
            ),
        }
    }
}

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
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

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn an_internal_error_keeps_its_code_and_hides_its_detail() {
        let e = DeployError::Storage("sled: /var/lib/market/db/snap.42: I/O error".into());
        let (status, v) = body(e.into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v["error"]["code"], "storage");
        assert_eq!(v["error"]["message"], "internal error");
        assert!(!v.to_string().contains("/var/lib"), "{v}");
    }

    #[tokio::test]
    async fn client_errors_keep_their_message_and_fields() {
        let e = DeployError::Invalid(vec![("name".into(), "too long".into())]);
        let (status, v) = body(e.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], "invalid");
        assert_eq!(v["error"]["message"], "name: too long");
        assert_eq!(v["error"]["fields"][0]["field"], "name");
        let (status, v) = body(DeployError::UnknownPending("offer").into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v["error"]["code"], "unknown_request");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("prepare it again")
        );
    }
}
