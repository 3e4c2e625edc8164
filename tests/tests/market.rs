//! The money side end to end: a real marketplace (Stripe mode, against the
//! in-repo fake Stripe), a real node, and the `sparebox` CLI.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::time::Duration;

use serde_json::{Value, json};
use sparebox_market::config::BillingMode;
use sparebox_tests::fake_stripe::{self, FakeStripe, WEBHOOK_SECRET};
use sparebox_tests::market::{User, market_config, paid_host, start_market};
use sparebox_tests::{Deployer, eventually, repo_root, spawn_node_with, within};

fn now() -> i64 {
    i64::try_from(sparebox_protocol::now_secs()).unwrap()
}

/// Buys `cents` of credit: Checkout through the fake Stripe, then the signed
/// `checkout.session.completed` webhook.
async fn buy_credit(
    user: &User,
    stripe: &FakeStripe,
    market: &str,
    cents: u64,
    event: &str,
) -> Value {
    let (st, c) = user
        .post("/api/v1/credit/checkout", json!({"amountCents": cents}))
        .await;
    assert_eq!(st, 200, "{c}");
    let session = c["id"].as_str().unwrap().to_string();
    assert!(c["url"].as_str().unwrap().contains(&session), "{c}");
    let ev = stripe.checkout_completed(event, &session);
    let (st, r) = fake_stripe::deliver(market, &ev, None).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["result"], "applied", "{r}");
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_money_flow_card_to_voucher_to_usage_to_payout() {
    within(Duration::from_secs(120), async {
        let stripe = FakeStripe::start().await;
        let mdir = tempfile::tempdir().unwrap();
        let market = start_market(
            &market_config(mdir.path(), BillingMode::Stripe),
            Some(&stripe),
        )
        .await;
        let murl = format!("http://{}", market.addr);
        let ledger = market.state.ledger.clone();

        // A host that trusts this marketplace, asks 3600 ¢/h (1 ¢/s) and
        // reports every second, joined to the marketplace's libp2p peer.
        let host = paid_host(&market, 3600).await;
        let host_id = host.node.public_key().to_string();

        // The marketplace indexes the host from the network.
        let found = eventually(Duration::from_secs(20), "host indexed", || {
            let url = format!("{murl}/api/v1/hosts?runtime=wasi&max_price=3600&sort=price");
            let id = host_id.clone();
            async move {
                let v: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
                v["hosts"]
                    .as_array()?
                    .iter()
                    .find(|h| h["peerId"] == id.as_str())
                    .cloned()
            }
        })
        .await;
        assert_eq!(found["priceCentsPerHour"], 3600, "{found}");

        // 1. A deployer signs up and buys $50 of credit.
        let dep = User::sign_up(&murl, "dep@example.com").await;
        buy_credit(&dep, &stripe, &murl, 5000, "evt_pay_1").await;
        let (_, credit) = dep.get("/api/v1/credit").await;
        assert_eq!(credit["balanceCents"], 5000, "{credit}");
        ledger.check().unwrap();

        // 2. The deployer registers a CLI key by challenge, fetches a
        //    voucher with it, and deploys to the node with the voucher.
        let deployer = Deployer::new().unwrap();
        let (st, c) = dep
            .post(
                "/api/v1/account/challenges",
                json!({"purpose": "deployer-key"}),
            )
            .await;
        assert_eq!(st, 200, "{c}");
        let (ok, out, err) = deployer
            .cli(&[
                "market",
                "register-key",
                "--market",
                &murl,
                "--challenge",
                c["challenge"].as_str().unwrap(),
            ])
            .await;
        assert!(ok, "register-key: {err}{out}");
        let vfile = deployer.home.path().join("voucher.json");
        let (ok, out, err) = deployer
            .cli(&[
                "voucher",
                "fetch",
                "--market",
                &murl,
                "--cap",
                "300",
                "--ttl",
                "1h",
                "--out",
                vfile.to_str().unwrap(),
            ])
            .await;
        assert!(ok, "voucher fetch: {err}{out}");
        let (_, credit) = dep.get("/api/v1/credit").await;
        assert_eq!(credit["balanceCents"], 4700, "{credit}");
        assert_eq!(credit["reservedCents"], 300, "{credit}");

        let spec = repo_root().join("examples/specs/echo-wasi.toml");
        let addr = format!("{}/p2p/{host_id}", host.node.listen_addrs()[0]);
        // A paid deploy at the host's ask (3600 ¢/h) with a billing cap.
        let (spec_s, vfile_s) = (
            spec.to_str().unwrap().to_string(),
            vfile.to_str().unwrap().to_string(),
        );
        let deploy_args = |max_total: &'static str| {
            [
                "deploy",
                spec_s.as_str(),
                "--host",
                host_id.as_str(),
                "--addr",
                addr.as_str(),
                "--voucher",
                vfile_s.as_str(),
                "--price-per-hour",
                "3600",
                "--max-total",
                max_total,
                "--json",
            ]
        };
        let (ok, out, err) = deployer.cli(&deploy_args("200")).await;
        assert!(ok, "deploy: {err}{out}");
        let d: Value = serde_json::from_str(&out).unwrap();
        assert!(d["agentId"].is_string(), "{d}");

        // 3. Usage reports arrive every second: the deployer's voucher is
        //    debited and the host credited, by the same amounts.
        let earned = eventually(Duration::from_secs(20), "usage charged", || {
            let l = ledger.clone();
            let h = host_id.clone();
            async move {
                let e = l
                    .balance(&sparebox_market::ledger::Account::Earnings(h))
                    .ok()?;
                (e >= 3).then_some(e)
            }
        })
        .await;
        let (_, credit) = dep.get("/api/v1/credit").await;
        let reserved = credit["reservedCents"].as_i64().unwrap();
        let earned_now = ledger
            .balance(&sparebox_market::ledger::Account::Earnings(host_id.clone()))
            .unwrap();
        assert_eq!(
            reserved + earned_now,
            300,
            "what the host earned left the reservation: {credit}"
        );
        assert!(earned >= 3);
        ledger.check().unwrap();

        // Bad reports over HTTP: a forged one (signed by another key) and
        // an old one replayed after newer ones, each with a clear code.
        let forged = {
            use sparebox_protocol::{Envelope, Id, Message, UsageCounters, UsageReport};
            let mallory = sparebox_protocol::identity::Keypair::generate().unwrap();
            let r = UsageReport {
                version: UsageReport::VERSION,
                report_id: Id::random().unwrap(),
                host: host.node.public_key(),
                deployer: deployer.key.public(),
                offer_id: Id::random().unwrap(),
                agent_id: "x".into(),
                seq: 1,
                period_start: 0,
                period_end: 1,
                counters: UsageCounters {
                    wall_secs: 999_999,
                    ..Default::default()
                },
                issued_at: sparebox_protocol::now_secs(),
            };
            hex::encode(Envelope::seal(&r, &mallory).unwrap().to_bytes())
        };
        let r: Value = reqwest::Client::new()
            .post(format!("{murl}/api/v1/usage"))
            .json(&json!({"report": forged, "agreement": "00"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["error"]["code"], "bad_report", "{r}");

        // A second agent on the same voucher with a cap of 4 ¢ runs out:
        // the node stops it before it would bill past the cap.
        let (ok, out, err) = deployer.cli(&deploy_args("4")).await;
        assert!(ok, "second deploy: {err}{out}");
        let small: Value = serde_json::from_str(&out).unwrap();
        let small_id = small["agentId"].as_str().unwrap().to_string();
        let stopped = eventually(Duration::from_secs(20), "exhausted agent stopped", || {
            let agents = host.node.agents().clone();
            let id = small_id.clone();
            async move {
                agents
                    .list()
                    .into_iter()
                    .find(|a| a.agent_id == id && a.state == "stopped")
            }
        })
        .await;
        assert!(
            stopped
                .reason
                .as_deref()
                .unwrap_or("")
                .starts_with("voucher_exhausted"),
            "{stopped:?}"
        );
        let (ok, out, err) = deployer
            .cli(&["agents", "start", &small_id, "--addr", &addr])
            .await;
        assert!(
            !ok && format!("{out}{err}").contains("voucher_exhausted"),
            "{out}{err}"
        );
        // 4. The host links its node with the CLI, onboards to Connect,
        //    Stripe says payouts are on, and settlement pays it.
        let owner = User::sign_up(&murl, "host@example.com").await;
        let (_, c) = owner
            .post(
                "/api/v1/account/challenges",
                json!({"purpose": "link-node"}),
            )
            .await;
        let node_dir = host.config.data_dir.clone().unwrap();
        let (ok, out, err) = deployer
            .cli(&[
                "market",
                "link",
                "--market",
                &murl,
                "--challenge",
                c["challenge"].as_str().unwrap(),
                "--data-dir",
                node_dir.to_str().unwrap(),
            ])
            .await;
        assert!(ok, "link: {err}{out}");
        let (st, o) = owner.post("/api/v1/payouts/onboarding", json!({})).await;
        assert_eq!(st, 200, "{o}");
        let connect = o["connectAccount"].as_str().unwrap().to_string();
        assert!(o["url"].as_str().unwrap().contains(&connect), "{o}");
        assert_eq!(o["payoutsEnabled"], false);
        // Nothing is paid before onboarding completes.
        assert!(market.state.settle().await.unwrap().is_empty());
        let (st, r) = fake_stripe::deliver(
            &murl,
            &stripe.account_updated("evt_acct_1", &connect, true, now()),
            None,
        )
        .await;
        assert_eq!((st, r["result"].as_str()), (200, Some("applied")), "{r}");

        let paid = market.state.settle().await.unwrap();
        assert_eq!(paid.len(), 1, "{paid:?}");
        let p = &paid[0];
        assert_eq!(p.host, host_id);
        assert_eq!(p.fee, p.earned / 10, "10 % fee (1000 bps)");
        let transfers = stripe.transfers();
        assert_eq!(transfers.len(), 1);
        assert_eq!(transfers[0].destination, connect);
        assert_eq!(
            transfers[0].amount,
            i64::try_from(p.earned - p.fee).unwrap()
        );
        assert!(!transfers[0].idempotency_key.is_empty());
        let (_, payouts) = owner.get("/api/v1/payouts").await;
        assert_eq!(
            payouts["transfers"][0]["transferId"],
            transfers[0].id.as_str(),
            "{payouts}"
        );

        // 5. The invariant holds, and the fake saw only well-formed calls.
        let t = ledger.check().unwrap();
        assert_eq!(t.payments, 5000);
        assert_eq!(t.payouts + t.fees, i64::try_from(p.earned).unwrap());
        assert!(stripe.violations().is_empty(), "{:?}", stripe.violations());

        host.node.shutdown().await.unwrap();
        market.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhooks_are_refused_and_money_moves_once() {
    within(Duration::from_secs(60), async {
        let stripe = FakeStripe::start().await;
        let mdir = tempfile::tempdir().unwrap();
        let market = start_market(
            &market_config(mdir.path(), BillingMode::Stripe),
            Some(&stripe),
        )
        .await;
        let murl = format!("http://{}", market.addr);
        let dep = User::sign_up(&murl, "dep@example.com").await;
        let (_, c) = dep
            .post("/api/v1/credit/checkout", json!({"amountCents": 2000}))
            .await;
        let session = c["id"].as_str().unwrap().to_string();
        let ev = stripe.checkout_completed("evt_1", &session);
        let payload = ev.to_string();

        // Bad signature (signed with another secret).
        let (st, r) = fake_stripe::deliver(
            &murl,
            &ev,
            Some(fake_stripe::sign(&payload, "whsec_wrong", now())),
        )
        .await;
        assert_eq!(
            (st, r["error"]["code"].as_str()),
            (400, Some("bad_signature")),
            "{r}"
        );
        // Stale timestamp (400 s old, over the 300 s tolerance).
        let (st, r) = fake_stripe::deliver(
            &murl,
            &ev,
            Some(fake_stripe::sign(&payload, WEBHOOK_SECRET, now() - 400)),
        )
        .await;
        assert_eq!(
            (st, r["error"]["code"].as_str()),
            (400, Some("stale_timestamp")),
            "{r}"
        );
        // No signature at all.
        let r = reqwest::Client::new()
            .post(format!("{murl}/api/v1/stripe/webhook"))
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let (_, credit) = dep.get("/api/v1/credit").await;
        assert_eq!(credit["balanceCents"], 0, "nothing credited yet");

        // Out of order: the refund arrives before its payment, and is
        // applied when the payment lands.
        let refund = stripe.charge_refunded("evt_refund", &session, 500);
        let (st, r) = fake_stripe::deliver(&murl, &refund, None).await;
        assert_eq!((st, r["result"].as_str()), (200, Some("parked")), "{r}");
        let (st, r) = fake_stripe::deliver(&murl, &ev, None).await;
        assert_eq!((st, r["result"].as_str()), (200, Some("applied")), "{r}");
        // A duplicate delivery changes nothing.
        let (st, r) = fake_stripe::deliver(&murl, &ev, None).await;
        assert_eq!((st, r["result"].as_str()), (200, Some("duplicate")), "{r}");
        let (_, credit) = dep.get("/api/v1/credit").await;
        assert_eq!(credit["balanceCents"], 1500, "{credit}");
        let t = market.state.ledger.check().unwrap();
        assert_eq!((t.payments, t.refunds), (2000, 500));

        // Without the CSRF token, a signed-in request is refused.
        let r = reqwest::Client::new()
            .post(format!("{murl}/api/v1/credit/checkout"))
            .header("cookie", &dep.cookie)
            .json(&json!({"amountCents": 1000}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        market.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouchers_from_untrusted_or_expired_markets_are_refused_by_the_node() {
    use sparebox_protocol::identity::Keypair;
    use sparebox_protocol::rpc::{DeployRequest, DeployResponse};
    use sparebox_protocol::{Envelope, Id, Message, Payment, PriceTerms, Voucher, now_secs};
    within(Duration::from_secs(60), async {
        let trusted = Keypair::from_seed([41; 32]);
        let stranger = Keypair::from_seed([42; 32]);
        let host = spawn_node_with(|c| {
            c.market.trusted_keys = vec![trusted.public().to_string()];
            c.capacity.prices.wasi_cents_per_hour = 100;
        })
        .await
        .unwrap();
        let deployer = Keypair::from_seed([43; 32]);
        let spec_path = repo_root().join("examples/specs/echo-wasi.toml");
        let parsed = sparebox_protocol::spec::AgentSpec::load(&spec_path).unwrap();
        let (spec, _) = parsed.resolve(spec_path.parent().unwrap()).unwrap();
        let now = now_secs();
        let voucher = |market: &Keypair, issued: u64, expires: u64, cap: u64| {
            Envelope::seal(
                &Voucher {
                    version: Voucher::VERSION,
                    voucher_id: Id::random().unwrap(),
                    market: market.public(),
                    market_url: "http://127.0.0.1:9".into(),
                    deployer: deployer.public(),
                    currency: "usd".into(),
                    cap_cents: cap,
                    issued_at: issued,
                    expires_at: expires,
                },
                market,
            )
            .unwrap()
        };
        let offer = |v: Envelope, max_total: u64| {
            let mut o = sparebox_tests::direct_offer(&deployer, host.node.public_key(), &spec);
            o.price = PriceTerms {
                currency: "usd".into(),
                cents_per_hour: 100,
                cents_per_1k_tokens: 0,
                max_total_cents: max_total,
            };
            o.payment = Payment::Voucher(v);
            DeployRequest {
                offer: Envelope::seal(&o, &deployer).unwrap().to_bytes(),
                spec: spec.document.clone(),
            }
        };
        let code = |r: DeployResponse| match r {
            DeployResponse::Rejected(r) => r.code,
            DeployResponse::Accepted { .. } => "accepted".into(),
        };
        let agents = host.node.agents().clone();
        let me = deployer.public();
        assert_eq!(
            code(
                agents
                    .offer(me, offer(voucher(&stranger, now, now + 3600, 500), 100))
                    .await
            ),
            "voucher_untrusted"
        );
        assert_eq!(
            code(
                agents
                    .offer(
                        me,
                        offer(voucher(&trusted, now - 7200, now - 3600, 500), 100)
                    )
                    .await
            ),
            "voucher_expired"
        );
        assert_eq!(
            code(
                agents
                    .offer(me, offer(voucher(&trusted, now, now + 3600, 50), 100))
                    .await
            ),
            "voucher_exhausted"
        );
        // A voucher for another deployer.
        let other = Keypair::from_seed([44; 32]);
        let mut v = Voucher {
            version: Voucher::VERSION,
            voucher_id: Id::random().unwrap(),
            market: trusted.public(),
            market_url: "http://127.0.0.1:9".into(),
            deployer: other.public(),
            currency: "usd".into(),
            cap_cents: 500,
            issued_at: now,
            expires_at: now + 3600,
        };
        assert_eq!(
            code(
                agents
                    .offer(me, offer(Envelope::seal(&v, &trusted).unwrap(), 100))
                    .await
            ),
            "voucher_wrong_deployer"
        );
        // The same voucher, right deployer: two offers of 300 against a
        // cap of 500 — the second is over the voucher's remaining cap.
        v.deployer = deployer.public();
        let good = Envelope::seal(&v, &trusted).unwrap();
        // The host already holds the component (no deployer peer to fetch from).
        let sha = spec.spec.artifact.as_ref().unwrap().sha256.clone().unwrap();
        let store = host.config.data_dir.clone().unwrap().join("artifacts");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::copy(
            repo_root().join("guests/dist/echo.wasm"),
            store.join(format!("{sha}.wasm")),
        )
        .unwrap();
        assert_eq!(
            code(agents.offer(me, offer(good.clone(), 300)).await),
            "accepted"
        );
        assert_eq!(
            code(agents.offer(me, offer(good, 300)).await),
            "voucher_exhausted"
        );
        host.node.shutdown().await.unwrap();
    })
    .await;
}

/// Runs `sparebox-market serve` in Stripe mode against the fake, on a data
/// dir; returns the child and its URL.
async fn serve_binary(
    dir: &std::path::Path,
    stripe: &FakeStripe,
    crash_at: Option<&str>,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new(sparebox_tests::market_bin());
    cmd.args([
        "serve",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--billing",
        "stripe",
        "--no-mdns",
    ])
    .envs(stripe.env())
    .env_remove("SPAREBOX_MARKET_CRASH_AT")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    if let Some(at) = crash_at {
        cmd.env("SPAREBOX_MARKET_CRASH_AT", at);
    }
    let mut child = cmd.spawn().expect("start sparebox-market");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the market prints its address");
        if let Some(u) = line.trim().strip_prefix("http:") {
            break u.trim().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketplace_killed_mid_webhook_neither_loses_nor_doubles_the_payment() {
    within(Duration::from_secs(90), async {
        let stripe = FakeStripe::start().await;
        for point in ["webhook-before-ledger", "webhook-after-ledger"] {
            let dir = tempfile::tempdir().unwrap();
            let (mut child, url) = serve_binary(dir.path(), &stripe, Some(point)).await;
            let dep = User::sign_up(&url, "dep@example.com").await;
            let (_, c) = dep
                .post("/api/v1/credit/checkout", json!({"amountCents": 2000}))
                .await;
            let ev = stripe.checkout_completed(&format!("evt_{point}"), c["id"].as_str().unwrap());
            // The process dies while handling the webhook: no reply.
            let r = reqwest::Client::new()
                .post(format!("{url}/api/v1/stripe/webhook"))
                .header(
                    "stripe-signature",
                    fake_stripe::sign(&ev.to_string(), WEBHOOK_SECRET, now()),
                )
                .body(ev.to_string())
                .send()
                .await;
            assert!(
                r.is_err(),
                "{point}: expected the connection to drop, got {r:?}"
            );
            let status = child.wait().await.unwrap();
            assert!(!status.success(), "{point}: aborted");

            // Restarted on the same data: the ledger passes its start-up
            // check, and Stripe's retry leaves exactly one credit.
            let (mut child, url) = serve_binary(dir.path(), &stripe, None).await;
            let (st, r) = fake_stripe::deliver(&url, &ev, None).await;
            assert_eq!(st, 200, "{point}: {r}");
            let expected = if point == "webhook-before-ledger" {
                "applied"
            } else {
                "duplicate"
            };
            assert_eq!(r["result"], expected, "{point}: {r}");
            let (st, r) = fake_stripe::deliver(&url, &ev, None).await;
            assert_eq!(
                (st, r["result"].as_str()),
                (200, Some("duplicate")),
                "{point}: {r}"
            );
            let r = reqwest::Client::new()
                .post(format!("{url}/api/v1/sessions"))
                .json(&json!({"email": "dep@example.com", "password": "correct horse battery"}))
                .send()
                .await
                .unwrap();
            let cookie = r
                .headers()
                .get("set-cookie")
                .unwrap()
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let credit: Value = reqwest::Client::new()
                .get(format!("{url}/api/v1/credit"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(credit["balanceCents"], 2000, "{point}: {credit}");
            child.kill().await.unwrap();
        }
    })
    .await;
}
