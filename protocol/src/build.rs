//! One builder per message a deployer (or a key holder) signs, so the CLI
//! and the marketplace's web relay fill in ids, nonces, versions and
//! validity windows the same way.
//!
//! A builder returns the message; the caller signs it, either with
//! [`Envelope::seal`] when it holds the key, or through [`detached`] and
//! [`seal_detached`] when the key lives elsewhere (a browser's
//! non-extractable WebCrypto key): the signer signs `domain || 0 || payload`
//! and the envelope is assembled and verified here, exactly as its receiver
//! will verify it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;

use crate::envelope::{
    Checks, ENVELOPE_VERSION, Envelope, Message, SignatureBytes, Verified, VerifyError, encode,
};
use crate::identity::PublicKey;
use crate::ids::Id;
use crate::messages::{
    ControlAction, ControlCommand, DeploymentOffer, KeyProof, Payment, PriceTerms, ProofPurpose,
    VoucherRequest,
};
use crate::spec::ResolvedSpec;

/// A builder could not make a message.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The operating system's random source failed; no id is made from
    /// anything weaker.
    #[error("no randomness for the {what}: {source}")]
    Random {
        what: &'static str,
        #[source]
        source: getrandom::Error,
    },
    /// The requested lifetime is zero or longer than the message allows.
    #[error("a {what} may live 1..={max} s, not {asked} s")]
    Lifetime {
        what: &'static str,
        asked: u64,
        max: u64,
    },
}

fn random(what: &'static str) -> Result<Id, BuildError> {
    Id::random().map_err(|source| BuildError::Random { what, source })
}

fn window<M: Message>(ttl_secs: u64) -> Result<u64, BuildError> {
    let max = M::MAX_LIFETIME_SECS.unwrap_or(u64::MAX);
    if ttl_secs == 0 || ttl_secs > max {
        return Err(BuildError::Lifetime {
            what: M::NAME,
            asked: ttl_secs,
            max,
        });
    }
    Ok(ttl_secs)
}

/// What a deployer decides about an offer; [`offer`] adds the rest.
#[derive(Debug, Clone)]
pub struct OfferTerms<'a> {
    pub deployer: PublicKey,
    /// The audience: the host's key.
    pub host: PublicKey,
    /// The resolved spec the offer commits to (by its sha256).
    pub spec: &'a ResolvedSpec,
    pub price: PriceTerms,
    pub payment: Payment,
    /// Seconds the offer stays valid from `now`.
    pub ttl_secs: u64,
}

/// A deployment offer with a fresh offer id and nonce, valid from `now`.
pub fn offer(t: OfferTerms<'_>, now: u64) -> Result<DeploymentOffer, BuildError> {
    let ttl = window::<DeploymentOffer>(t.ttl_secs)?;
    Ok(DeploymentOffer {
        version: DeploymentOffer::VERSION,
        offer_id: random("offer id")?,
        deployer: t.deployer,
        host: t.host,
        issued_at: now,
        expires_at: now + ttl,
        nonce: random("nonce")?,
        spec_sha256: t.spec.sha256,
        runtime: t.spec.spec.runtime,
        resources: t.spec.spec.resource_request(),
        price: t.price,
        payment: t.payment,
    })
}

/// Which agent a control command is for: the agreement's parties and ids.
#[derive(Debug, Clone)]
pub struct CommandTarget {
    pub deployer: PublicKey,
    pub host: PublicKey,
    pub offer_id: Id,
    pub agent_id: String,
}

/// A control command with a fresh command id and nonce, valid from `now`.
pub fn control_command(
    target: CommandTarget,
    action: ControlAction,
    ttl_secs: u64,
    now: u64,
) -> Result<ControlCommand, BuildError> {
    let ttl = window::<ControlCommand>(ttl_secs)?;
    Ok(ControlCommand {
        version: ControlCommand::VERSION,
        command_id: random("command id")?,
        deployer: target.deployer,
        host: target.host,
        offer_id: target.offer_id,
        agent_id: target.agent_id,
        issued_at: now,
        expires_at: now + ttl,
        nonce: random("nonce")?,
        action,
    })
}

/// A key's answer to a marketplace challenge, valid from `now`.
pub fn key_proof(
    key: PublicKey,
    market: PublicKey,
    purpose: ProofPurpose,
    challenge: &str,
    ttl_secs: u64,
    now: u64,
) -> Result<KeyProof, BuildError> {
    let ttl = window::<KeyProof>(ttl_secs)?;
    Ok(KeyProof {
        version: KeyProof::VERSION,
        key,
        market,
        purpose,
        challenge: challenge.trim().to_string(),
        issued_at: now,
        expires_at: now + ttl,
    })
}

/// A deployer's request for a voucher, valid for `ttl_secs` from `now`.
pub fn voucher_request(
    deployer: PublicKey,
    market: PublicKey,
    cap_cents: u64,
    currency: &str,
    lifetime_secs: u64,
    ttl_secs: u64,
    now: u64,
) -> Result<VoucherRequest, BuildError> {
    let ttl = window::<VoucherRequest>(ttl_secs)?;
    Ok(VoucherRequest {
        version: VoucherRequest::VERSION,
        request_id: random("voucher request id")?,
        deployer,
        market,
        cap_cents,
        currency: currency.to_string(),
        lifetime_secs,
        issued_at: now,
        expires_at: now + ttl,
    })
}

/// Something for a key held elsewhere to sign: `domain || 0x00 || payload`.
/// Its JSON form (`{domain, payload, signer}`) is what the web pages read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detached {
    pub domain: &'static str,
    /// The payload bytes, base64.
    pub payload: String,
    /// The key that must sign, as a PeerId.
    pub signer: String,
}

/// The signing request for `m`, and its payload bytes (keep them: the
/// signature is over exactly these).
pub fn detached<M: Message>(m: &M) -> (Vec<u8>, Detached) {
    let payload = encode(m);
    let d = Detached {
        domain: M::DOMAIN,
        payload: B64.encode(&payload),
        signer: m.claimed_signer().to_string(),
    };
    (payload, d)
}

/// A detached signature did not make a valid envelope.
#[derive(Debug, thiserror::Error)]
pub enum DetachedError {
    #[error("the signature must be 64 bytes, base64")]
    Malformed,
    #[error("the signature did not verify: {0}")]
    Verify(#[from] VerifyError),
}

impl DetachedError {
    /// A stable code for APIs: `bad_signature`, or the verify error's code.
    pub fn code(&self) -> &'static str {
        match self {
            DetachedError::Malformed => "bad_signature",
            DetachedError::Verify(e) => e.code(),
        }
    }
}

/// The envelope made from `payload` and a detached base64 signature,
/// verified exactly as its receiver will verify it.
pub fn seal_detached<M: Message>(
    payload: Vec<u8>,
    signer: PublicKey,
    signature_b64: &str,
    checks: &Checks,
) -> Result<Verified<M>, DetachedError> {
    let sig = B64
        .decode(signature_b64.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or(DetachedError::Malformed)?;
    let env = Envelope {
        version: ENVELOPE_VERSION,
        domain: M::DOMAIN.to_string(),
        payload,
        signer,
        signature: SignatureBytes(sig),
    };
    Ok(env.verify::<M>(checks)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::now_secs;

    fn target(deployer: &Keypair, host: &Keypair) -> CommandTarget {
        CommandTarget {
            deployer: deployer.public(),
            host: host.public(),
            offer_id: Id([7; 16]),
            agent_id: "a1".into(),
        }
    }

    #[test]
    fn a_detached_signature_makes_the_envelope_seal_would() {
        let key = Keypair::from_seed([4; 32]);
        let host = Keypair::from_seed([5; 32]).public();
        let cmd = ControlCommand {
            version: ControlCommand::VERSION,
            command_id: Id([1; 16]),
            deployer: key.public(),
            host,
            offer_id: Id([2; 16]),
            agent_id: "echo-1".into(),
            issued_at: now_secs(),
            expires_at: now_secs() + 60,
            nonce: Id([3; 16]),
            action: ControlAction::Stop,
        };
        let (payload, s) = detached(&cmd);
        assert_eq!(s.domain, ControlCommand::DOMAIN);
        // What the browser does: sign domain || 0 || payload.
        let mut input = s.domain.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(&payload);
        let sig = B64.encode(key.sign_raw(&input));
        let checks = Checks::now().with_audience(host);
        let v =
            seal_detached::<ControlCommand>(payload.clone(), key.public(), &sig, &checks).unwrap();
        assert_eq!(v.message, cmd);
        assert_eq!(
            v.envelope.to_bytes(),
            Envelope::seal(&cmd, &key).unwrap().to_bytes()
        );
        // A signature by another key, or over other bytes, is refused.
        let other = B64.encode(Keypair::from_seed([6; 32]).sign_raw(&input));
        let e = seal_detached::<ControlCommand>(payload.clone(), key.public(), &other, &checks)
            .unwrap_err();
        assert_eq!(e.code(), "bad_signature");
        let e =
            seal_detached::<ControlCommand>(payload, key.public(), "AAAA", &checks).unwrap_err();
        assert_eq!(e.code(), "bad_signature");
    }

    #[test]
    fn builders_refuse_lifetimes_the_message_does_not_allow() {
        let (deployer, host) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
        for ttl in [0, 3601] {
            let e = control_command(target(&deployer, &host), ControlAction::Stop, ttl, 1000)
                .expect_err("bad ttl");
            assert!(matches!(e, BuildError::Lifetime { asked, .. } if asked == ttl));
        }
        let p = key_proof(
            deployer.public(),
            host.public(),
            ProofPurpose::DeployerKey,
            "  chal  ",
            600,
            50,
        )
        .expect("valid");
        assert_eq!(
            (p.challenge.as_str(), p.issued_at, p.expires_at),
            ("chal", 50, 650)
        );
    }

    #[test]
    fn every_built_message_has_fresh_ids() {
        let (deployer, host) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
        let a = control_command(target(&deployer, &host), ControlAction::Stop, 60, 0).expect("a");
        let b = control_command(target(&deployer, &host), ControlAction::Stop, 60, 0).expect("b");
        assert_ne!(a.command_id, b.command_id);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.command_id, a.nonce);
    }
}
