//! The marketplace's web pages: HTML, JS and CSS from `web/market`,
//! embedded at build time (no CDN, nothing fetched at run time), plus the
//! shared `/common` and `/vendor` files ([`sparebox_service::web`]). Each page
//! route serves one HTML file; the pages talk to [`crate::api`].

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use sparebox_service::web::{file, shared_routes};

#[derive(Debug, rust_embed::Embed)]
#[folder = "../web/market"]
struct MarketAssets;

/// Page routes and the file each one serves.
pub const PAGES: &[(&str, &str)] = &[
    ("/", "index.html"),
    ("/hosts", "hosts.html"),
    ("/hosts/{peer}", "host.html"),
    ("/signup", "signup.html"),
    ("/signin", "signin.html"),
    ("/account", "account.html"),
    ("/credit", "credit.html"),
    ("/credit/done", "credit-done.html"),
    ("/deploy", "deploy.html"),
    ("/agents", "agents.html"),
    ("/host", "host-console.html"),
    ("/host/payouts", "host-console.html"),
];

/// The page and asset routes, to merge into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = shared_routes();
    for (route, page) in PAGES {
        let page: &'static str = page;
        r = r.route(
            route,
            get(move || async move { file(MarketAssets::get(page), page) }),
        );
    }
    r.route(
        "/assets/{*path}",
        get(|Path(p): Path<String>| async move { file(MarketAssets::get(&p), &p) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparebox_service::web::{CommonAssets, VendorAssets};

    #[test]
    fn every_page_route_has_its_file() {
        for (route, page) in PAGES {
            assert!(
                MarketAssets::get(page).is_some(),
                "{route} → {page} missing"
            );
        }
        assert!(CommonAssets::get("base.css").is_some());
        assert!(CommonAssets::get("chart.js").is_some());
        assert!(VendorAssets::get("uplot/uPlot.iife.min.js").is_some());
    }
}
