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
