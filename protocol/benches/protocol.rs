//! Envelope verify + decode + offer checks, against raw ed25519-dalek verify
//! of the same bytes in the same run. Goal: protocol throughput ≥ 0.8× raw.
//!
//! Run: `cargo bench -p sparebox-node --bench protocol`. The last lines print
//! both rates and the ratio.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use ed25519_dalek::{Signature, VerifyingKey};
use sparebox_protocol::identity::Keypair;
use sparebox_protocol::{
    Checks, DeploymentOffer, Digest, Envelope, Id, Payment, PriceTerms, ResourceRequest, Resources,
    RuntimeKind, open,
};

fn fixture() -> (Vec<u8>, Envelope, Checks) {
    let deployer = Keypair::from_seed([1; 32]);
    let host = Keypair::from_seed([2; 32]).public();
    let offer = DeploymentOffer {
        version: 1,
        offer_id: Id([3; 16]),
        deployer: deployer.public(),
        host,
        issued_at: 1_000_000,
        expires_at: 1_000_600,
        nonce: Id([4; 16]),
        spec_sha256: Digest([5; 32]),
        runtime: RuntimeKind::Wasi,
        resources: ResourceRequest {
            resources: Resources {
                cpu_millis: 500,
                memory_mib: 128,
                disk_mib: 256,
            },
            task_timeout_ms: 30_000,
        },
        price: PriceTerms {
            currency: "usd".into(),
            cents_per_hour: 3,
            cents_per_1k_tokens: 1,
            max_total_cents: 500,
        },
        payment: Payment::Direct,
    };
    let env = Envelope::seal(&offer, &deployer).expect("seal");
    (
        env.to_bytes(),
        env,
        Checks::at(1_000_100).with_audience(host),
    )
}

/// The raw baseline: verify_strict over exactly the bytes the protocol signs.
fn raw_verify(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> bool {
    key.verify_strict(msg, sig).is_ok()
}

fn benches(c: &mut Criterion) {
    let (wire, env, checks) = fixture();
    let key = VerifyingKey::from_bytes(&env.signer.0).expect("key");
    let sig = Signature::from_bytes(&env.signature.0);
    let mut signed = env.domain.as_bytes().to_vec();
    signed.push(0);
    signed.extend_from_slice(&env.payload);
    assert!(raw_verify(&key, &signed, &sig));
    assert!(open::<DeploymentOffer>(&wire, &checks).is_ok());

    let mut g = c.benchmark_group("offer_verify");
    g.bench_function("raw_ed25519_verify", |b| {
        b.iter(|| {
            raw_verify(
                std::hint::black_box(&key),
                std::hint::black_box(&signed),
                &sig,
            )
        })
    });
    g.bench_function("protocol_open_offer", |b| {
        b.iter(|| open::<DeploymentOffer>(std::hint::black_box(&wire), &checks).is_ok())
    });
    g.finish();

    // A same-run summary with the ratio, interleaving the two to share noise.
    let rate = |f: &dyn Fn() -> bool| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(500) {
            for _ in 0..100 {
                std::hint::black_box(f());
            }
            n += 100;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let (mut raw, mut proto) = (0.0, 0.0);
    for _ in 0..3 {
        raw += rate(&|| raw_verify(&key, &signed, &sig));
        proto += rate(&|| open::<DeploymentOffer>(&wire, &checks).is_ok());
    }
    println!("raw ed25519 verify:              {:>10.0} /s", raw / 3.0);
    println!("protocol verify+decode+checks:   {:>10.0} /s", proto / 3.0);
    println!(
        "ratio (protocol / raw):          {:>10.3}   (goal >= 0.8)",
        proto / raw
    );
}

criterion_group!(protocol, benches);

fn main() {
    protocol();
    Criterion::default().configure_from_args().final_summary();
}
