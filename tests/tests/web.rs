//! The web pages end to end, in real headless Chromium (Debian's
//! `chromium` + `chromium-driver`), against a real marketplace in Stripe
//! mode with the fake Stripe, and a real node:
//! 1. a deployer signs up, buys credit through (fake) Stripe Checkout, and
//!    generates a browser key (WebCrypto Ed25519, kept in IndexedDB);
//! 2. deploys the echo WASI agent with the wizard, chats with it, stops it;
//! 3. the node's dashboard shows the agent running, then stopped, and the
//!    owner pauses and resumes offers with the owner token;
//! 4. a host links its node, onboards to (fake) Connect, and sees its
//!    earnings once usage is settled.
//!
//! Screenshots of each main page land in
//! `$CARGO_TARGET_TMPDIR/e2e-screenshots/` (desktop, and phone-sized for a
//! few pages).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sparebox_market::config::BillingMode;
use sparebox_tests::browser::Browser;
use sparebox_tests::fake_stripe::FakeStripe;
use sparebox_tests::market::{market_config, paid_host, start_market};
use sparebox_tests::{Deployer, eventually, repo_root, within};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployer_and_host_journeys_in_chromium() {
    within(Duration::from_secs(300), async {
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-screenshots");
        let stripe = FakeStripe::start().await;
        let mdir = tempfile::tempdir().unwrap();
        let market = start_market(
            &market_config(mdir.path(), BillingMode::Stripe),
            Some(&stripe),
        )
        .await;
        let murl = format!("http://{}", market.addr);
        stripe.send_webhooks_to(&murl);

        // A host that trusts the marketplace and asks 3600 ¢/h (1 ¢/s).
        let host = paid_host(&market, 3600).await;
        let host_id = host.node.public_key().to_string();
        let node_url = host.api_url();
        eventually(Duration::from_secs(20), "host indexed", || {
            let url = format!("{murl}/api/v1/hosts/{host_id}");
            async move {
                let r = reqwest::get(url).await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;

        let b = Browser::start(1280, 900, shots.clone()).await;

        // Public pages.
        b.goto(&format!("{murl}/")).await;
        // Live counts: one host, with its free CPU.
        b.wait_text("#stat-hosts", "1", WAIT).await;
        assert_ne!(b.text("#stat-cpu").await.trim(), "0");
        b.screenshot("01-landing").await;
        b.goto(&format!("{murl}/hosts")).await;
        b.wait_text("main", &host_id[..10], WAIT).await;
        b.screenshot("02-hosts").await;
        b.goto(&format!("{murl}/hosts/{host_id}")).await;
        b.wait_text("main", "$36.00", WAIT).await;
        b.screenshot("03-host-detail").await;

        // 1. Sign up, buy $20 through Checkout, generate a browser key.
        b.goto(&format!("{murl}/signup")).await;
        b.fill("#email", "deployer@example.com").await;
        b.fill("#password", "short").await;
        b.click("#auth-form button[type=submit]").await;
        // The server's rule shows up even if the browser let it through.
        b.wait_text("main", "10", WAIT).await;
        b.fill("#password", "correct horse battery").await;
        b.click("#auth-form button[type=submit]").await;
        b.wait_url("/account", WAIT).await;
        b.wait_text("#account-email", "deployer@example.com", WAIT).await;
        b.fill("#buy-amount", "20").await;
        b.click("#buy-credit").await;
        b.wait_url("/c/pay/", WAIT).await;
        b.screenshot("04-fake-stripe-checkout").await;
        b.click("#stripe-submit").await;
        b.wait_url("/credit/done", WAIT).await;
        b.wait_text("#checkout-status", "paid", WAIT).await;
        b.wait_text("#balance", "$20.00", WAIT).await;
        b.screenshot("05-credit-done").await;

        b.goto(&format!("{murl}/account")).await;
        b.click("#generate-key").await;
        let status = b.wait_text("#key-status", "registered", WAIT).await;
        assert!(status.contains("12D3KooW"), "{status}");
        b.screenshot("06-account").await;
        let account = market
            .state
            .accounts
            .by_email("deployer@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(account.deployer_keys.len(), 1, "one browser key registered");
        // The private key stayed in the browser: not extractable.
        let extractable = b
            .client
            .execute_async(
                "const done = arguments[0];
                 const req = indexedDB.open('sparebox');
                 req.onsuccess = () => {
                   const tx = req.result.transaction('keys', 'readonly');
                   const all = tx.objectStore('keys').getAll();
                   all.onsuccess = () => done(all.result.map(r => r.keyPair.privateKey.extractable));
                 };
                 req.onerror = () => done('no db');",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(extractable, serde_json::json!([false]), "{extractable}");

        // 2. Deploy echo with the wizard.
        b.goto(&format!("{murl}/deploy")).await;
        b.click("#runtime-wasi").await;
        let echo = repo_root().join("guests/dist/echo.wasm");
        b.find("#component")
            .await
            .send_keys(echo.to_str().unwrap())
            .await
            .unwrap();
        b.wait_text("#component-info", "sha256", WAIT).await;
        b.fill("#name", "echo-web").await;
        b.click("#next-1").await;
        b.click("#next-2").await;
        b.click(&format!("input[name=\"host\"][value=\"{host_id}\"]"))
            .await;
        b.click("#next-3").await;
        b.fill("#max-total", "2").await;
        b.click("#prepare").await;
        b.wait_text("#review", "$36.00", WAIT).await;
        b.screenshot("07-deploy-review").await;
        b.click("#confirm-deploy").await;
        let result = b.wait_text("#deploy-result", "echo-web-", WAIT).await;
        b.screenshot("08-deploy-done").await;
        let agent_id = result
            .split_whitespace()
            .find(|w| w.starts_with("echo-web-"))
            .unwrap()
            .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            .to_string();
        assert!(
            host.node.agents().list().iter().any(|a| a.agent_id == agent_id),
            "the node runs {agent_id}"
        );
        // The voucher reserved the $2 budget.
        let credit = market
            .state
            .ledger
            .balance(&sparebox_market::ledger::Account::Credit(account.id.clone()))
            .unwrap();
        assert_eq!(credit, 1800);

        // Chat with it through signed control messages.
        b.goto(&format!("{murl}/agents")).await;
        let row = format!("[data-agent-id=\"{agent_id}\"]");
        b.wait_text(&format!("{row} .state"), "running", WAIT).await;
        b.click(&format!("{row} .select-agent")).await;
        b.fill("#chat-input", "hello from chromium").await;
        b.click("#chat-send").await;
        b.wait_text("#chat-log .reply", "hello from chromium", WAIT)
            .await;
        // Usage reports arrive every second; wait for some spend.
        eventually(WAIT, "usage charged", || {
            let d = market.state.deployments.list(&account.id);
            async move { d.first().filter(|d| d.spent_cents >= 3).map(|_| ()) }
        })
        .await;
        b.screenshot("09-agents-chat").await;

        // 3. The node's dashboard shows it running.
        let token = host.node.owner_token().to_string();
        b.goto(&format!("{node_url}/#token={token}")).await;
        b.wait_text(
            &format!("#agents tr[data-agent-id=\"{agent_id}\"] .state"),
            "running",
            WAIT,
        )
        .await;
        b.wait_text("#offers", "accepted", WAIT).await;
        b.scroll_to("#agents").await;
        b.screenshot("10-dashboard-running").await;
        // Owner action with the token: pause offers, then resume.
        b.click("#pause-toggle").await;
        b.wait_text("#accepting", "paused", WAIT).await;
        assert!(!host.node.agents().owner.accepting());
        b.click("#pause-toggle").await;
        b.wait_text("#accepting", "accepting offers", WAIT).await;
        assert!(host.node.agents().owner.accepting());

        // Stop it from the marketplace.
        b.goto(&format!("{murl}/agents")).await;
        b.wait_text(&format!("{row} .state"), "running", WAIT).await;
        b.click(&format!("{row} button[data-action=\"stop\"]")).await;
        b.wait_text(&format!("{row} .state"), "stopped", WAIT).await;
        b.screenshot("11-agents-stopped").await;
        b.goto(&format!("{node_url}/")).await;
        b.wait_text(
            &format!("#agents tr[data-agent-id=\"{agent_id}\"] .state"),
            "stopped",
            WAIT,
        )
        .await;
        b.scroll_to("#agents").await;
        b.screenshot("12-dashboard-stopped").await;

        // 4. A host links its node and gets paid.
        b.client.delete_all_cookies().await.unwrap();
        b.goto(&format!("{murl}/signup")).await;
        b.fill("#email", "host@example.com").await;
        b.fill("#password", "correct horse battery").await;
        b.click("#auth-form button[type=submit]").await;
        b.wait_url("/account", WAIT).await;
        b.goto(&format!("{murl}/host")).await;
        b.click("#new-link-challenge").await;
        let command = b.wait_text("#link-command", "sparebox market link", WAIT).await;
        let challenge = command
            .split_whitespace()
            .skip_while(|w| *w != "--challenge")
            .nth(1)
            .unwrap()
            .to_string();
        let node_dir = host.config.data_dir.clone().unwrap();
        let cli = Deployer::new().unwrap();
        let (ok, out, err) = cli
            .cli(&[
                "market",
                "link",
                "--market",
                &murl,
                "--challenge",
                &challenge,
                "--data-dir",
                node_dir.to_str().unwrap(),
            ])
            .await;
        assert!(ok, "link: {err}{out}");
        b.find(&format!("#nodes li[data-node-id=\"{host_id}\"]")).await;
        b.click("#onboard").await;
        b.wait_url("/setup/e/", WAIT).await;
        b.click("#stripe-submit").await;
        b.wait_url("/host/payouts", WAIT).await;
        b.wait_text("#payouts-status", "enabled", WAIT).await;
        let paid = market.state.settle().await.unwrap();
        assert_eq!(paid.len(), 1, "{paid:?}");
        let sent = paid[0].earned - paid[0].fee;
        b.goto(&format!("{murl}/host")).await;
        b.wait_text(
            "#paid-total",
            &format!("${}.{:02}", sent / 100, sent % 100),
            WAIT,
        )
        .await;
        b.screenshot("13-host-console").await;

        // Phone-sized views of the main pages.
        b.resize(390, 844).await;
        for (name, url) in [
            ("14-phone-host-console", format!("{murl}/host")),
            ("15-phone-landing", format!("{murl}/")),
            ("16-phone-dashboard", format!("{node_url}/")),
        ] {
            b.goto(&url).await;
            tokio::time::sleep(Duration::from_millis(800)).await;
            let overflow: Value = b
                .client
                .execute(
                    "return document.documentElement.scrollWidth - window.innerWidth;",
                    vec![],
                )
                .await
                .unwrap();
            assert!(
                overflow.as_i64().unwrap_or(1) <= 0,
                "{name}: the page scrolls sideways by {overflow} px"
            );
            b.screenshot(name).await;
        }

        market.state.ledger.check().unwrap();
        assert!(stripe.violations().is_empty(), "{:?}", stripe.violations());
        b.close().await;
        host.node.shutdown().await.unwrap();
        market.shutdown().await.unwrap();
    })
    .await;
}
