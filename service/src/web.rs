//! Serving the embedded web files (`web/` in the repository) shared by the
//! node dashboard and the marketplace: the shared styles and chart helper
//! (`web/common`, at `/common/...`) and the vendored npm builds
//! (`web/vendor`, at `/vendor/...`). Everything is embedded at build time
//! with rust-embed; nothing is fetched at run time.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Debug, rust_embed::Embed)]
#[folder = "../web/common"]
pub struct CommonAssets;

#[derive(Debug, rust_embed::Embed)]
#[folder = "../web/vendor"]
pub struct VendorAssets;

/// The content type for a file name.
pub fn mime(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// An embedded file as a response (404 when absent).
pub fn file(data: Option<rust_embed::EmbeddedFile>, path: &str) -> Response {
    match data {
        Some(f) => (
            [
                (header::CONTENT_TYPE, mime(path)),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            f.data,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no file {path}"),
        )
            .into_response(),
    }
}

/// `/common/...` and `/vendor/...`, for merging into a router.
pub fn shared_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/common/{*path}",
            get(|Path(p): Path<String>| async move { file(CommonAssets::get(&p), &p) }),
        )
        .route(
            "/vendor/{*path}",
            get(|Path(p): Path<String>| async move { file(VendorAssets::get(&p), &p) }),
        )
}

/// The policy every page is served under: scripts, styles, images and
/// requests only from this origin, no framing, no plugins, no inline code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Middleware for both daemons' routers: the security headers on every
/// response (a handler's own values win).
pub async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        if !h.contains_key(&name) {
            h.insert(name, header::HeaderValue::from_static(value));
        }
    }
    r
}
