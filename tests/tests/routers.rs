//! Both HTTP apps driven without a socket: each request goes straight into
//! the router with `tower::ServiceExt::oneshot`, over the same live state
//! the listener serves. They check routing, authentication and the error
//! body's shape (`{"error": {"code", "message"}}`); the real-socket tests
//! elsewhere check the same apps end to end.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use sparebox_market::config::BillingMode;
use sparebox_tests::market::{market_config, start_market};
use sparebox_tests::{spawn_node, within};
use tower::ServiceExt as _;

const LIMIT: Duration = Duration::from_secs(60);

/// A request from `peer`, as the listener would hand it over.
fn request(method: Method, uri: &str, peer: [u8; 4], body: Option<&str>) -> Request<Body> {
    // As a browser on this machine sends it; tests of other hosts change it.
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:7878");
    if body.is_some() {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    let mut r = b
        .body(body.map_or_else(Body::empty, |s| Body::from(s.to_string())))
        .expect("request");
    r.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
    r
}

/// `req` as the signed-in browser sends it: the session cookie, and the
/// CSRF token when `csrf` is given.
fn signed_in(mut req: Request<Body>, cookie: &str, csrf: Option<&str>) -> Request<Body> {
    let h = req.headers_mut();
    h.insert(header::COOKIE, cookie.parse().expect("cookie"));
    if let Some(t) = csrf {
        h.insert("x-csrf-token", t.parse().expect("csrf"));
    }
    req
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value, axum::http::HeaderMap) {
    let r = app.clone().oneshot(req).await.expect("router answers");
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .expect("body");
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v, headers)
}

/// The error body both apps answer with: a stable code and a message.
fn error_code(v: &Value) -> &str {
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error body without a message: {v}"
    );
    v["error"]["code"].as_str().expect("error code")
}

const LOOPBACK: [u8; 4] = [127, 0, 0, 1];
const STRANGER: [u8; 4] = [203, 0, 113, 9];

#[tokio::test]
async fn node_routes_authenticate_and_answer_errors_in_one_shape() {
    within(LIMIT, async {
        let n = spawn_node().await.expect("node");
        let app = n.node.app();

        let (s, v, _) = send(&app, request(Method::GET, "/api/health", STRANGER, None)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["status"], "ok");

        // The dashboard API is loopback only: the peer address decides.
        let (s, v, _) = send(&app, request(Method::GET, "/api/agents", STRANGER, None)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(error_code(&v), "forbidden");
        let (s, v, _) = send(&app, request(Method::GET, "/api/agents", LOOPBACK, None)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v.as_array().is_some_and(|a| a.is_empty()), "{v}");

        // Owner actions need the owner token, even from loopback.
        let pause = Some(r#"{"accepting": false}"#);
        let (s, v, _) = send(
            &app,
            request(Method::POST, "/api/owner/offers", LOOPBACK, pause),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&v), "unauthorized");
        let mut with_token = request(Method::POST, "/api/owner/offers", LOOPBACK, pause);
        with_token.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {}", n.node.owner_token())
                .parse()
                .expect("header"),
        );
        let (s, _, _) = send(&app, with_token).await;
        assert_eq!(s, StatusCode::OK);

        // A message for an agent that does not exist, and no endpoint at all.
        let (s, v, _) = send(
            &app,
            request(
                Method::POST,
                "/api/agents/nobody/messages",
                STRANGER,
                Some(r#"{"content": "hi"}"#),
            ),
        )
        .await;
        assert!(s.is_client_error(), "{s}");
        assert!(!error_code(&v).is_empty());
        let (s, v, _) = send(
            &app,
            request(Method::GET, "/api/nothing-here", LOOPBACK, None),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&v), "not_found");
        n.node.shutdown().await.expect("shutdown");
    })
    .await;
}

/// Every dashboard route and owner action, as (method, path, body).
const DASHBOARD: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/api/node", None),
    ("GET", "/api/peers", None),
    ("GET", "/api/adverts", None),
    ("GET", "/api/agents", None),
    ("GET", "/api/usage", None),
    ("GET", "/api/history", None),
    ("GET", "/api/offers", None),
    ("GET", "/api/earnings", None),
    ("GET", "/api/agents/x/logs", None),
    ("GET", "/api/owner", None),
    ("POST", "/api/owner/agents/x/stop", None),
    ("POST", "/api/owner/offers", Some(r#"{"accepting": false}"#)),
    ("PUT", "/api/owner/prices", Some(r#"{"classes": []}"#)),
];

#[tokio::test]
async fn the_dashboard_refuses_foreign_hosts_and_proxies_even_from_loopback() {
    within(LIMIT, async {
        let n = spawn_node().await.expect("node");
        let app = n.node.app();
        let token = format!("Bearer {}", n.node.owner_token());
        let with = |method: &str, path: &str, body: Option<&str>, name: &str, value: &str| {
            let mut r = request(method.parse().expect("method"), path, LOOPBACK, body);
            r.headers_mut()
                .insert(header::AUTHORIZATION, token.parse().expect("token"));
            r.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
            r
        };
        for (method, path, body) in DASHBOARD {
            // A page on evil.example whose name now resolves to 127.0.0.1.
            for host in [
                "evil.example:7878",
                "evil.example",
                "127.0.0.1.evil.example",
                "",
            ] {
                let (s, v, _) = send(&app, with(method, path, *body, "host", host)).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path} Host {host}: {v}");
                assert_eq!(error_code(&v), "forbidden");
            }
            // Through a reverse proxy, every caller looks like loopback.
            let (s, v, _) = send(
                &app,
                with(method, path, *body, "x-forwarded-for", "203.0.113.9"),
            )
            .await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path} proxied: {v}");
        }
        // The names that are loopback still work.
        for host in [
            "localhost:7878",
            "LOCALHOST",
            "127.0.0.1",
            "127.0.0.2:1",
            "[::1]:7878",
        ] {
            let (s, v, _) = send(&app, with("GET", "/api/node", None, "host", host)).await;
            assert_eq!(s, StatusCode::OK, "Host {host}: {v}");
        }
        // The agent API is for remote deployers: any Host reaches it.
        let (s, _, _) = send(
            &app,
            with("GET", "/api/health", None, "host", "node.example.com"),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        // Pages are served under a strict policy.
        let (s, _, headers) = send(&app, request(Method::GET, "/", LOOPBACK, None)).await;
        assert_eq!(s, StatusCode::OK);
        let csp = headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert_eq!(
            headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff"
        );
        n.node.shutdown().await.expect("shutdown");
    })
    .await;
}

#[tokio::test]
async fn market_routes_authenticate_and_answer_errors_in_one_shape() {
    within(LIMIT, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let market = start_market(&market_config(dir.path(), BillingMode::TestLedger), None).await;
        let app = sparebox_market::api::router(market.state.clone());

        let (s, v, headers) = send(&app, request(Method::GET, "/api/health", STRANGER, None)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["marketId"], market.market.to_string());
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));

        // No session.
        let (s, v, _) = send(
            &app,
            request(Method::GET, "/api/v1/account", STRANGER, None),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&v), "not_signed_in");

        // A body that is not the route's JSON.
        let (s, v, _) = send(
            &app,
            request(
                Method::POST,
                "/api/v1/accounts",
                STRANGER,
                Some(r#"{"email": 1}"#),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_code(&v), "bad_request");

        // Admin routes need the admin token.
        let (s, v, _) = send(
            &app,
            request(Method::POST, "/api/admin/settle", STRANGER, None),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&v), "not_admin");

        // A session cookie alone does not change state: CSRF is required.
        let (s, v, headers) = send(
            &app,
            request(
                Method::POST,
                "/api/v1/accounts",
                STRANGER,
                Some(r#"{"email": "router@example.com", "password": "correct horse battery"}"#),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let csrf = v["csrfToken"].as_str().expect("csrf token").to_string();
        let cookie = headers
            .get(header::SET_COOKIE)
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .expect("session cookie")
            .to_string();
        let checkout = r#"{"cents": 500}"#;
        let no_csrf = request(
            Method::POST,
            "/api/v1/credit/checkout",
            STRANGER,
            Some(checkout),
        );
        let (s, v, _) = send(&app, signed_in(no_csrf, &cookie, None)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(error_code(&v), "csrf");
        let account = request(Method::GET, "/api/v1/account", STRANGER, None);
        let (s, v, _) = send(&app, signed_in(account, &cookie, Some(&csrf))).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["email"], "router@example.com");

        // An unknown command for an agent the account does not have.
        let unknown = request(
            Method::POST,
            "/api/v1/deployments/nobody/commands/prepare",
            STRANGER,
            Some(r#"{"action": "stop"}"#),
        );
        let (s, v, _) = send(&app, signed_in(unknown, &cookie, Some(&csrf))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&v), "unknown_agent");
        market.shutdown().await.expect("shutdown");
    })
    .await;
}
