//! A marketplace started in-process on 127.0.0.1:0, with a cookie-keeping
//! HTTP client per user.

use std::time::Duration;

use serde_json::{Value, json};
use sparebox_market::config::{BillingMode, MarketConfig};
use sparebox_market::service::{self, Market};
use sparebox_market::stripe::StripeConfig;
use sparebox_protocol::identity::Keypair;
use sparebox_protocol::{Envelope, KeyProof, Message, ProofPurpose, now_secs};

use crate::fake_stripe::{FakeStripe, SECRET_KEY, WEBHOOK_SECRET};

/// The config tests use: loopback only, no mDNS, libp2p on port 0.
pub fn market_config(dir: &std::path::Path, billing: BillingMode) -> MarketConfig {
    MarketConfig {
        data_dir: Some(dir.to_path_buf()),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        billing,
        p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        mdns: false,
        min_checkout_cents: 100,
        min_payout_cents: 1,
        ..MarketConfig::default()
    }
}

/// Starts a marketplace; Stripe mode talks to `stripe`.
pub async fn start_market(cfg: &MarketConfig, stripe: Option<&FakeStripe>) -> Market {
    let s = stripe.map(|f| StripeConfig {
        secret_key: SECRET_KEY.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        api_base: Some(f.url.clone()),
        currency: "usd".into(),
    });
    service::start(cfg, s).await.expect("marketplace starts")
}

/// A host that trusts `market`, asks `cents_per_hour` for WASI agents,
/// reports usage every second, and joins through the marketplace's libp2p
/// peer.
pub async fn paid_host(market: &Market, cents_per_hour: u64) -> crate::TestNode {
    crate::spawn_node_with(|c| {
        c.market.trusted_keys = vec![market.market.to_string()];
        c.market.report_interval_secs = 1;
        c.capacity.prices.wasi_cents_per_hour = cents_per_hour;
        c.network.bootstrap = market.p2p_addrs.clone();
    })
    .await
    .expect("host node starts")
}

/// A signed-in user of a marketplace.
#[derive(Debug)]
pub struct User {
    pub http: reqwest::Client,
    pub base: String,
    pub csrf: String,
    pub id: String,
    /// `sparebox_session=...`, as the browser would send it back.
    pub cookie: String,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

impl User {
    /// Signs up `email`.
    pub async fn sign_up(base: &str, email: &str) -> User {
        let http = client();
        let r = http
            .post(format!("{base}/api/v1/accounts"))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .expect("sign up");
        assert_eq!(r.status().as_u16(), 201);
        let set = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie")
            .to_string();
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(set.contains(attr), "cookie lacks {attr}: {set}");
        }
        let cookie = set.split(';').next().expect("cookie").to_string();
        let v: Value = r.json().await.expect("json");
        User {
            cookie,
            http,
            base: base.to_string(),
            csrf: v["csrfToken"].as_str().expect("csrf").to_string(),
            id: v["id"].as_str().expect("id").to_string(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("get");
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .header("cookie", &self.cookie)
            .json(&body)
            .send()
            .await
            .expect("post");
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    /// Binds `key` to this account by signing a fresh challenge.
    pub async fn prove(
        &self,
        key: &Keypair,
        market: sparebox_protocol::identity::PublicKey,
        purpose: ProofPurpose,
    ) -> (u16, Value) {
        let (st, c) = self
            .post(
                "/api/v1/account/challenges",
                json!({"purpose": purpose.as_str()}),
            )
            .await;
        assert_eq!(st, 200, "{c}");
        let now = now_secs();
        let p = KeyProof {
            version: KeyProof::VERSION,
            key: key.public(),
            market,
            purpose,
            challenge: c["challenge"].as_str().expect("challenge").into(),
            issued_at: now,
            expires_at: now + 300,
        };
        let proof = hex::encode(Envelope::seal(&p, key).expect("seal").to_bytes());
        let route = if purpose == ProofPurpose::LinkNode {
            "nodes"
        } else {
            "keys"
        };
        self.post(&format!("/api/v1/{route}"), json!({"proof": proof}))
            .await
    }
}
