use super::*;
use crate::identity::{Keypair, PublicKey};
use proptest::prelude::*;

fn key(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

/// Makes an arbitrary message signable by `signer` and valid at time 1000.
trait Prepare: Message + Clone + PartialEq + std::fmt::Debug {
    fn prepare(&mut self, signer: PublicKey);
}

impl Prepare for CapacityAdvert {
    fn prepare(&mut self, signer: PublicKey) {
        self.version = 1;
        self.node = signer;
        self.timestamp = 1000;
        self.ttl_secs = 60;
    }
}
impl Prepare for DeploymentOffer {
    fn prepare(&mut self, signer: PublicKey) {
        self.version = 1;
        self.deployer = signer;
        self.issued_at = 1000;
        self.expires_at = 1600;
    }
}
impl Prepare for Agreement {
    fn prepare(&mut self, signer: PublicKey) {
        self.version = 1;
        self.host = signer;
    }
}
impl Prepare for ControlCommand {
    fn prepare(&mut self, signer: PublicKey) {
        self.version = 1;
        self.deployer = signer;
        self.issued_at = 1000;
        self.expires_at = 1060;
    }
}
impl Prepare for UsageReport {
    fn prepare(&mut self, signer: PublicKey) {
        self.version = 1;
        self.host = signer;
    }
}
impl Prepare for Voucher {
    fn prepare(&mut self, signer: PublicKey) {
        self.version = 1;
        self.market = signer;
        self.issued_at = 1000;
        self.expires_at = 100_000;
    }
}

impl Prepare for KeyProof {
    fn prepare(&mut self, signer: PublicKey) {
        self.version = 1;
        self.key = signer;
        self.market = signer;
        self.issued_at = 1000;
        self.expires_at = 1060;
    }
}
impl Prepare for VoucherRequest {
    fn prepare(&mut self, signer: PublicKey) {
        self.version = 1;
        self.deployer = signer;
        self.market = signer;
        self.issued_at = 1000;
        self.expires_at = 1060;
    }
}

fn checks() -> Checks {
    Checks::at(1000)
}

/// Encoding round-trips, and seal → bytes → open gives back the message
/// (or sealing refuses a payload over the type's cap).
fn check_round_trip<M: Prepare>(mut m: M) -> Result<(), TestCaseError> {
    let k = key(1);
    m.prepare(k.public());
    let bytes = encode(&m);
    prop_assert_eq!(&decode_canonical::<M>(&bytes, "test")?, &m);
    match Envelope::seal(&m, &k) {
        Ok(env) => {
            prop_assert!(bytes.len() <= M::MAX_PAYLOAD);
            let wire = env.to_bytes();
            prop_assert!(wire.len() <= M::max_envelope());
            let opened =
                open::<M>(&wire, &checks()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(opened.message, m);
            prop_assert_eq!(opened.envelope.signer, k.public());
        }
        Err(SealError::TooLarge { size, max, .. }) => {
            prop_assert!(size > max);
            prop_assert_eq!(size, bytes.len());
        }
    }
    Ok(())
}

/// Any single-bit change to the payload, the signature or the signer makes
/// verification fail.
fn check_tamper<M: Prepare>(mut m: M, bit: usize, which: u8) -> Result<(), TestCaseError> {
    let k = key(2);
    m.prepare(k.public());
    let Ok(mut env) = Envelope::seal(&m, &k) else {
        return Ok(());
    };
    match which % 3 {
        0 => {
            let i = bit % (env.payload.len() * 8);
            env.payload[i / 8] ^= 1 << (i % 8);
        }
        1 => {
            let i = bit % 512;
            env.signature.0[i / 8] ^= 1 << (i % 8);
        }
        _ => {
            let i = bit % 256;
            env.signer.0[i / 8] ^= 1 << (i % 8);
        }
    }
    let err = env.verify::<M>(&checks()).err();
    prop_assert!(err.is_some(), "tampered envelope verified");
    Ok(())
}

/// A payload signed under one domain fails under every other: relabelled, it
/// is a bad signature; verified as another type, it is the wrong domain.
fn check_domain_separation<M: Prepare, Other: Message>(mut m: M) -> Result<(), TestCaseError> {
    let k = key(3);
    m.prepare(k.public());
    let Ok(env) = Envelope::seal(&m, &k) else {
        return Ok(());
    };
    let as_other = env.clone().verify::<Other>(&checks()).err();
    prop_assert!(
        matches!(as_other, Some(VerifyError::WrongDomain { .. })),
        "{:?}",
        as_other
    );
    let mut relabelled = env;
    relabelled.domain = Other::DOMAIN.to_string();
    let err = relabelled.verify::<Other>(&checks()).err();
    // The size cap of the other type is checked first; within it, the
    // signature over the other domain tag cannot match.
    prop_assert!(
        matches!(
            err,
            Some(VerifyError::BadSignature { .. } | VerifyError::TooLarge { .. })
        ),
        "{:?}",
        err
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test] fn advert_round_trips(m: CapacityAdvert) { check_round_trip(m)?; }
    #[test] fn offer_round_trips(m: DeploymentOffer) { check_round_trip(m)?; }
    #[test] fn agreement_round_trips(m: Agreement) { check_round_trip(m)?; }
    #[test] fn control_round_trips(m: ControlCommand) { check_round_trip(m)?; }
    #[test] fn usage_round_trips(m: UsageReport) { check_round_trip(m)?; }
    #[test] fn voucher_round_trips(m: Voucher) { check_round_trip(m)?; }
    #[test] fn key_proof_round_trips(m: KeyProof) { check_round_trip(m)?; }
    #[test] fn voucher_request_round_trips(m: VoucherRequest) { check_round_trip(m)?; }
    #[test] fn tampered_key_proof_fails(m: KeyProof, bit: usize, which: u8) { check_tamper(m, bit, which)?; }
    #[test] fn key_proof_fails_under_voucher_request_domain(m: KeyProof) { check_domain_separation::<_, VoucherRequest>(m)?; }

    #[test] fn tampered_advert_fails(m: CapacityAdvert, bit: usize, which: u8) { check_tamper(m, bit, which)?; }
    #[test] fn tampered_offer_fails(m: DeploymentOffer, bit: usize, which: u8) { check_tamper(m, bit, which)?; }
    #[test] fn tampered_agreement_fails(m: Agreement, bit: usize, which: u8) { check_tamper(m, bit, which)?; }
    #[test] fn tampered_control_fails(m: ControlCommand, bit: usize, which: u8) { check_tamper(m, bit, which)?; }
    #[test] fn tampered_usage_fails(m: UsageReport, bit: usize, which: u8) { check_tamper(m, bit, which)?; }
    #[test] fn tampered_voucher_fails(m: Voucher, bit: usize, which: u8) { check_tamper(m, bit, which)?; }

    #[test] fn offer_fails_under_voucher_domain(m: DeploymentOffer) { check_domain_separation::<_, Voucher>(m)?; }
    #[test] fn voucher_fails_under_offer_domain(m: Voucher) { check_domain_separation::<_, DeploymentOffer>(m)?; }
    #[test] fn advert_fails_under_usage_domain(m: CapacityAdvert) { check_domain_separation::<_, UsageReport>(m)?; }
    #[test] fn usage_fails_under_agreement_domain(m: UsageReport) { check_domain_separation::<_, Agreement>(m)?; }
    #[test] fn agreement_fails_under_control_domain(m: Agreement) { check_domain_separation::<_, ControlCommand>(m)?; }
    #[test] fn control_fails_under_advert_domain(m: ControlCommand) { check_domain_separation::<_, CapacityAdvert>(m)?; }

    #[test]
    fn arbitrary_bytes_never_verify_or_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(open::<DeploymentOffer>(&bytes, &checks()).is_err());
    }
}

fn sample_offer(deployer: PublicKey, host: PublicKey) -> DeploymentOffer {
    DeploymentOffer {
        version: 1,
        offer_id: Id([1; 16]),
        deployer,
        host,
        issued_at: 1000,
        expires_at: 1600,
        nonce: Id([2; 16]),
        spec_sha256: Digest([3; 32]),
        runtime: RuntimeKind::Wasi,
        resources: ResourceRequest {
            resources: Resources {
                cpu_millis: 500,
                memory_mib: 128,
                disk_mib: 64,
            },
            task_timeout_ms: 30_000,
        },
        price: PriceTerms {
            currency: "usd".into(),
            ..Default::default()
        },
        payment: Payment::Direct,
    }
}

fn sealed_offer() -> (Vec<u8>, PublicKey) {
    let deployer = key(4);
    let host = key(5).public();
    let env = Envelope::seal(&sample_offer(deployer.public(), host), &deployer).unwrap();
    (env.to_bytes(), host)
}

#[test]
fn accepts_offer_within_window_for_its_audience() {
    let (bytes, host) = sealed_offer();
    let v = open::<DeploymentOffer>(&bytes, &Checks::at(1200).with_audience(host)).unwrap();
    assert_eq!(v.message.offer_id, Id([1; 16]));
}

#[test]
fn rejects_expired_offer() {
    let (bytes, _) = sealed_offer();
    let err = open::<DeploymentOffer>(&bytes, &Checks::at(1601)).unwrap_err();
    assert_eq!(err.code(), "expired");
    // The last second of the window is still valid.
    assert!(open::<DeploymentOffer>(&bytes, &Checks::at(1600)).is_ok());
}

#[test]
fn rejects_offer_from_the_future_beyond_skew() {
    let (bytes, _) = sealed_offer();
    // issued_at 1000 with 60 s skew: valid from 940 on.
    assert!(open::<DeploymentOffer>(&bytes, &Checks::at(940)).is_ok());
    let err = open::<DeploymentOffer>(&bytes, &Checks::at(939)).unwrap_err();
    assert_eq!(err.code(), "not_yet_valid");
    assert!(open::<DeploymentOffer>(&bytes, &Checks::at(999).with_max_skew(0)).is_err());
}

#[test]
fn rejects_offer_for_another_host() {
    let (bytes, _) = sealed_offer();
    let err = open::<DeploymentOffer>(&bytes, &Checks::at(1200).with_audience(key(9).public()))
        .unwrap_err();
    assert_eq!(err.code(), "wrong_audience");
}

#[test]
fn rejects_oversized_input_before_parsing() {
    let big = vec![0u8; DeploymentOffer::max_envelope() + 1];
    let err = open::<DeploymentOffer>(&big, &Checks::at(1200)).unwrap_err();
    assert_eq!(err.code(), "too_large");
}

#[test]
fn rejects_trailing_bytes() {
    let (mut bytes, _) = sealed_offer();
    bytes.push(0);
    let err = open::<DeploymentOffer>(&bytes, &Checks::at(1200)).unwrap_err();
    assert_eq!(err.code(), "malformed");
}

#[test]
fn rejects_non_canonical_varint() {
    // Envelope version 1 written as an over-long varint (0x81 0x00).
    let (bytes, _) = sealed_offer();
    assert_eq!(bytes[0], 1);
    let mut long = vec![0x81, 0x00];
    long.extend_from_slice(&bytes[1..]);
    let err = open::<DeploymentOffer>(&long, &Checks::at(1200)).unwrap_err();
    assert_eq!(err.code(), "malformed", "{err}");
}

#[test]
fn rejects_signer_mismatch() {
    let signer = key(6);
    let offer = sample_offer(key(7).public(), key(5).public());
    let env = Envelope::seal(&offer, &signer).unwrap();
    let err = env
        .verify::<DeploymentOffer>(&Checks::at(1200))
        .unwrap_err();
    assert_eq!(err.code(), "signer_mismatch");
}

#[test]
fn rejects_newer_payload_version() {
    let k = key(8);
    let mut offer = sample_offer(k.public(), key(5).public());
    offer.version = 2;
    let env = Envelope::seal(&offer, &k).unwrap();
    let err = env
        .verify::<DeploymentOffer>(&Checks::at(1200))
        .unwrap_err();
    assert_eq!(err.code(), "unsupported_version");
}

#[test]
fn rejects_overlong_lifetime() {
    let k = key(8);
    let mut offer = sample_offer(k.public(), key(5).public());
    offer.expires_at = offer.issued_at + 24 * 3600 + 1;
    let env = Envelope::seal(&offer, &k).unwrap();
    let err = env
        .verify::<DeploymentOffer>(&Checks::at(1200))
        .unwrap_err();
    assert_eq!(err.code(), "invalid_validity");
}

#[test]
fn seal_refuses_payload_over_cap() {
    let k = key(8);
    let report = UsageReport {
        version: 1,
        report_id: Id([0; 16]),
        host: k.public(),
        deployer: k.public(),
        offer_id: Id([0; 16]),
        agent_id: "x".repeat(UsageReport::MAX_PAYLOAD),
        seq: 1,
        period_start: 0,
        period_end: 0,
        counters: UsageCounters::default(),
        issued_at: 0,
    };
    assert!(matches!(
        Envelope::seal(&report, &k),
        Err(SealError::TooLarge { .. })
    ));
}

#[test]
fn json_form_uses_hex_for_keys_and_ids() {
    let offer = sample_offer(key(4).public(), key(5).public());
    let json = serde_json::to_value(&offer).unwrap();
    assert_eq!(json["offer_id"], serde_json::json!("01".repeat(16)));
    assert_eq!(json["runtime"], serde_json::json!("wasi"));
    let back: DeploymentOffer = serde_json::from_value(json).unwrap();
    assert_eq!(back, offer);
}
