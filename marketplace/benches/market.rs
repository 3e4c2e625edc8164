//! Marketplace benchmarks, each against a baseline measured in the same run.
//!
//! 1. Host search: 10,000 signed adverts indexed; a load generator (16
//!    concurrent keep-alive clients, 5 s) calls
//!    `GET /api/v1/hosts?runtime=wasi&min_memory_mib=2048&sort=price&per_page=20`
//!    on the real router, against a trivial axum handler on a second
//!    listener in the same process. Reports p50/p99 latency and requests/s
//!    for both, plus the in-process search time alone (server time).
//! 2. Usage ingestion: signed reports for 100 agreements through
//!    `Usage::ingest` in-process, and over HTTP (`POST /api/v1/usage`, 16
//!    clients). Reports reports/s.
//!
//! Run: `cargo bench -p sparebox-market --bench market`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sparebox_market::config::{BillingMode, MarketConfig};
use sparebox_market::ledger::{Ledger, moves};
use sparebox_market::service;
use sparebox_market::usage::Usage;
use sparebox_market::vouchers::Vouchers;
use sparebox_protocol::identity::Keypair;
use sparebox_protocol::{
    Agreement, CapacityAdvert, Checks, ClassPrice, DeploymentOffer, Digest, Envelope, Id, Message,
    Payment, PriceList, PriceTerms, ResourceRequest, Resources, RuntimeKind, RuntimeOffer,
    UsageCounters, UsageReport, now_secs, open,
};

const HOSTS: usize = 10_000;
const CLIENTS: usize = 16;
const LOAD_SECS: u64 = 5;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn advert(i: usize, now: u64) -> Vec<u8> {
    let key = Keypair::from_seed({
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        s
    });
    let free = Resources {
        cpu_millis: 250 * (1 + (i % 16) as u32),
        memory_mib: 512 * (1 + (i % 16) as u32),
        disk_mib: 10_240,
    };
    let a = CapacityAdvert {
        version: CapacityAdvert::VERSION,
        node: key.public(),
        seq: 1,
        timestamp: now,
        ttl_secs: 3600,
        addresses: vec![format!("/ip4/10.0.{}.{}/tcp/4001", i / 250, i % 250)],
        free,
        free_agent_slots: 10,
        runtimes: vec![RuntimeOffer {
            kind: RuntimeKind::Wasi,
            version: "wasmtime-48".into(),
        }],
        prices: PriceList {
            currency: "usd".into(),
            classes: vec![ClassPrice {
                class: "all".into(),
                runtime: RuntimeKind::Wasi,
                max: free,
                cents_per_hour: 1 + (i as u64 * 7919) % 500,
            }],
            models: vec![],
        },
        labels: [("region".to_string(), ["eu", "us", "ap"][i % 3].to_string())].into(),
        region: None,
        agent_version: "bench".into(),
    };
    Envelope::seal(&a, &key)
        .map(|e| e.to_bytes())
        .unwrap_or_default()
}

struct Load {
    p50: Duration,
    p99: Duration,
    rps: f64,
}

async fn load(
    url: String,
    body: Option<Arc<dyn Fn(usize) -> serde_json::Value + Send + Sync>>,
) -> Load {
    let deadline = Instant::now() + Duration::from_secs(LOAD_SECS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let url = url.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut lat = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = match &body {
                    None => http.get(&url).send().await,
                    Some(b) => http.post(&url).json(&b(c * 1_000_000 + n)).send().await,
                };
                let ok = match r {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                assert!(ok, "request failed");
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    Load {
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        rps: all.len() as f64 / secs,
    }
}

fn show(name: &str, l: &Load) {
    println!(
        "  {name:<28} p50 {:>8.3} ms  p99 {:>8.3} ms  {:>9.0} req/s",
        l.p50.as_secs_f64() * 1e3,
        l.p99.as_secs_f64() * 1e3,
        l.rps
    );
}

/// A paid agreement as the marketplace sees it, for ingestion.
struct World {
    host: Keypair,
    deployer: Keypair,
    agreement: Vec<u8>,
    offer_id: Id,
}

fn world(vouchers: &Vouchers, i: usize) -> World {
    let host = Keypair::from_seed([200; 32]);
    let deployer = Keypair::from_seed([201; 32]);
    let now = now_secs();
    let (vbytes, _) = vouchers
        .issue("bench", deployer.public(), 1_000_000, "usd", 3600, now)
        .expect("voucher");
    let venv = open::<sparebox_protocol::Voucher>(&vbytes, &Checks::at(now))
        .expect("voucher")
        .envelope;
    let offer = DeploymentOffer {
        version: DeploymentOffer::VERSION,
        offer_id: Id::random().expect("id"),
        deployer: deployer.public(),
        host: host.public(),
        issued_at: now,
        expires_at: now + 600,
        nonce: Id::random().expect("id"),
        spec_sha256: Digest([0; 32]),
        runtime: RuntimeKind::Wasi,
        resources: ResourceRequest::default(),
        price: PriceTerms {
            currency: "usd".into(),
            cents_per_hour: 3600,
            cents_per_1k_tokens: 0,
            max_total_cents: 1_000_000,
        },
        payment: Payment::Voucher(venv),
    };
    let oenv = Envelope::seal(&offer, &deployer).expect("offer");
    let agreement = Agreement {
        version: Agreement::VERSION,
        offer: oenv,
        offer_id: offer.offer_id,
        host: host.public(),
        deployer: deployer.public(),
        agent_id: format!("a{i}"),
        accepted_at: now,
        token_sha256: Digest([0; 32]),
    };
    World {
        agreement: Envelope::seal(&agreement, &host)
            .expect("agreement")
            .to_bytes(),
        offer_id: offer.offer_id,
        host,
        deployer,
    }
}

fn report(w: &World, seq: u64) -> Vec<u8> {
    let r = UsageReport {
        version: UsageReport::VERSION,
        report_id: Id::random().expect("id"),
        host: w.host.public(),
        deployer: w.deployer.public(),
        offer_id: w.offer_id,
        agent_id: "a".into(),
        seq,
        period_start: 0,
        period_end: seq,
        counters: UsageCounters {
            wall_secs: seq,
            ..Default::default()
        },
        issued_at: now_secs(),
    };
    Envelope::seal(&r, &w.host).expect("report").to_bytes()
}

async fn run() {
    println!("sparebox-market benchmarks (2 cores, {CLIENTS} clients, {LOAD_SECS} s per load)");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = MarketConfig {
        data_dir: Some(dir.path().to_path_buf()),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        billing: BillingMode::TestLedger,
        mdns: false,
        ..MarketConfig::default()
    };
    let market = service::start(&cfg, None).await.expect("market");
    let now = now_secs();
    let t = Instant::now();
    for i in 0..HOSTS {
        market
            .state
            .hosts
            .adverts
            .insert_synced(&advert(i, now), now)
            .expect("advert");
    }
    println!(
        "indexed {HOSTS} signed adverts in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // Server time: the search alone, in-process.
    let q: sparebox_market::hosts::Query = serde_json::from_value(serde_json::json!({
        "runtime": "wasi", "min_memory_mib": 2048, "sort": "price", "per_page": 20
    }))
    .expect("query");
    let mut times = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let page = market.state.hosts.search(&q, now).expect("search");
        times.push(t.elapsed());
        assert_eq!(page.hosts.len(), 20);
    }
    times.sort();
    println!(
        "host search, in-process over {HOSTS} hosts: p50 {:.3} ms, p99 {:.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );

    // The baseline: a trivial axum handler, same runtime and load.
    let trivial = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let taddr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, trivial).await;
    });
    println!("\n1. Host search over HTTP");
    let base = load(format!("http://{taddr}/"), None).await;
    show("trivial axum handler", &base);
    let search = load(
        format!(
            "http://{}/api/v1/hosts?runtime=wasi&min_memory_mib=2048&sort=price&per_page=20",
            market.addr
        ),
        None,
    )
    .await;
    show("GET /api/v1/hosts", &search);
    println!(
        "  ratio: p50 {:.2}x, p99 {:.2}x, throughput {:.2}x of the trivial handler",
        search.p50.as_secs_f64() / base.p50.as_secs_f64(),
        search.p99.as_secs_f64() / base.p99.as_secs_f64(),
        search.rps / base.rps
    );

    println!("\n2. Usage ingestion");
    let db = sled::open(dir.path().join("ingest")).expect("db");
    let ledger = Ledger::open(&db).expect("ledger");
    let mkey = Keypair::from_seed([199; 32]);
    ledger
        .post(&moves::payment("bench", "bench", 1_000_000_000, now))
        .expect("credit");
    let vouchers = Vouchers::open(&db, ledger.clone(), mkey.clone(), "http://x").expect("vouchers");
    let usage = Usage::open(&db, ledger.clone(), mkey.public()).expect("usage");
    let worlds: Vec<World> = (0..100).map(|i| world(&vouchers, i)).collect();
    let reports: Vec<(usize, Vec<u8>)> = (1..=20u64)
        .flat_map(|seq| {
            worlds
                .iter()
                .enumerate()
                .map(move |(i, w)| (i, report(w, seq)))
        })
        .collect();
    let t = Instant::now();
    for (i, r) in &reports {
        let c = usage.ingest(r, &worlds[*i].agreement, now).expect("ingest");
        assert_eq!(c.cents, 1);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  in-process: {} reports in {:.2} s = {:.0} reports/s (each verified: report, agreement, offer, voucher; one flushed ledger entry)",
        reports.len(),
        secs,
        reports.len() as f64 / secs
    );
    ledger.check().expect("invariant");

    // Over HTTP, against the running marketplace: its own vouchers.
    let grant = moves::payment("bench-http", "bench", 1_000_000_000, now);
    market.state.ledger.post(&grant).expect("credit");
    let mworld: Arc<Vec<World>> = Arc::new(
        (0..CLIENTS)
            .map(|i| world(&market.state.vouchers, i))
            .collect(),
    );
    let seqs: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new(
        (0..CLIENTS)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let body = {
        let mworld = mworld.clone();
        let seqs = seqs.clone();
        Arc::new(move |n: usize| {
            let c = n / 1_000_000;
            let seq = seqs[c].fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let w = &mworld[c];
            serde_json::json!({"report": hex::encode(report(w, seq)), "agreement": hex::encode(&w.agreement)})
        }) as Arc<dyn Fn(usize) -> serde_json::Value + Send + Sync>
    };
    let http = load(format!("http://{}/api/v1/usage", market.addr), Some(body)).await;
    show("POST /api/v1/usage", &http);
    println!(
        "  ratio: {:.2}x the trivial handler's throughput",
        http.rps / base.rps
    );
    market.state.ledger.check().expect("invariant");
    market.shutdown().await.expect("shutdown");
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}
