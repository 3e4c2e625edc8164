//! The signed wire protocol shared by the node, the CLI and the marketplace.
//!
//! Every signed message travels in an [`Envelope`]: `{version, domain,
//! payload, signer, signature}`. The signature covers
//! `domain-tag || 0x00 || payload`, so a payload signed for one purpose
//! (say, an offer) can never be replayed as another (say, a voucher).
//!
//! Rules (docs/design.md, "Signed messages"):
//! - **Verify before decode.** [`Envelope::verify`] checks the envelope
//!   version, the domain, the payload size and the signature over the exact
//!   bytes received, and only then decodes the payload.
//! - **One deterministic encoding.** Payloads and envelopes are
//!   [postcard](https://docs.rs/postcard) (varint integers, length-prefixed
//!   strings and byte strings, no maps but `BTreeMap`s). Decoding rejects
//!   trailing bytes and any encoding that does not re-encode to the same bytes,
//!   so every message has exactly one valid byte form.
//! - **One size cap per message type** ([`Message::MAX_PAYLOAD`]), checked on
//!   the raw input before anything is parsed.
//! - **Versions.** The envelope and every message start with a version; a
//!   message newer than this build understands fails with
//!   [`VerifyError::UnsupportedVersion`] rather than a confusing parse error.
//! - **Typed errors.** [`VerifyError`] says which check failed and has a
//!   stable [`VerifyError::code`] for the CLI and the wire.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::identity::{Keypair, PublicKey};
use crate::ids::{Digest, sha256};

/// The envelope layout this build writes and reads.
pub const ENVELOPE_VERSION: u16 = 1;

/// Bytes an envelope adds around its payload, at most: version, domain
/// (≤ 64 bytes with its length), payload length prefix, signer and signature.
pub const ENVELOPE_OVERHEAD: usize = 3 + 65 + 5 + 32 + 64;

/// Clock skew tolerated by default on `issued_at` (seconds).
pub const DEFAULT_MAX_SKEW_SECS: u64 = 60;

/// A signed message: the payload bytes exactly as signed, who signed them and
/// the signature. See the module docs for the signing input.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Envelope {
    /// Envelope layout version ([`ENVELOPE_VERSION`]).
    pub version: u16,
    /// The domain tag of the payload's type, e.g. `sparebox/offer/v1`.
    pub domain: String,
    /// The deterministic encoding of the message.
    pub payload: Vec<u8>,
    /// The signer's ed25519 public key.
    pub signer: PublicKey,
    /// ed25519 signature over `domain || 0x00 || payload`.
    pub signature: SignatureBytes,
}

crate::bytes::fixed_bytes!(
    /// A 64-byte ed25519 signature.
    SignatureBytes,
    64
);

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("version", &self.version)
            .field("domain", &self.domain)
            .field("payload_len", &self.payload.len())
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// A message type that travels signed.
pub trait Message: Serialize + DeserializeOwned {
    /// Human name for errors ("offer", "advert", ...).
    const NAME: &'static str;
    /// The domain tag the signature covers.
    const DOMAIN: &'static str;
    /// Largest accepted payload, in bytes.
    const MAX_PAYLOAD: usize;
    /// The newest payload version this build understands.
    const VERSION: u16;
    /// The longest validity window accepted (`not_after - not_before`), if bounded.
    const MAX_LIFETIME_SECS: Option<u64> = None;

    /// The key the message says signed it; must equal the envelope's signer.
    fn claimed_signer(&self) -> &PublicKey;
    /// The validity window, for messages that expire.
    fn validity(&self) -> Option<Validity> {
        None
    }
    /// The key the message is addressed to, for messages that have one.
    fn audience(&self) -> Option<&PublicKey> {
        None
    }
    /// Largest accepted envelope, in bytes.
    fn max_envelope() -> usize {
        Self::MAX_PAYLOAD + ENVELOPE_OVERHEAD
    }
}

/// A validity window in unix seconds, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: u64,
    pub not_after: u64,
}

/// What a verification failed on. Each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{what} too large: {size} bytes, the limit is {max}")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("unsupported {what} version {found} (this build understands up to {supported})")]
    UnsupportedVersion {
        what: &'static str,
        found: u16,
        supported: u16,
    },
    #[error("wrong domain: expected `{expected}`, found `{found}`")]
    WrongDomain {
        expected: &'static str,
        found: String,
    },
    #[error("bad signature on {what}")]
    BadSignature { what: &'static str },
    #[error("{what} signed by {signer} but claims to be from {claimed}")]
    SignerMismatch {
        what: &'static str,
        signer: PublicKey,
        claimed: PublicKey,
    },
    #[error("{what} has an invalid validity window: {reason}")]
    InvalidValidity { what: &'static str, reason: String },
    #[error("{what} expired at {expires_at} (now {now}, unix seconds)")]
    Expired {
        what: &'static str,
        expires_at: u64,
        now: u64,
    },
    #[error(
        "{what} not yet valid: issued at {issued_at}, now {now}, more than the allowed {max_skew_secs}s clock skew ahead"
    )]
    NotYetValid {
        what: &'static str,
        issued_at: u64,
        now: u64,
        max_skew_secs: u64,
    },
    #[error("{what} is addressed to {found}, not to {expected}")]
    WrongAudience {
        what: &'static str,
        expected: PublicKey,
        found: PublicKey,
    },
}

impl VerifyError {
    /// A stable snake_case reason code (printed by the CLI, sent on the wire).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::TooLarge { .. } => "too_large",
            VerifyError::Malformed { .. } => "malformed",
            VerifyError::UnsupportedVersion { .. } => "unsupported_version",
            VerifyError::WrongDomain { .. } => "wrong_domain",
            VerifyError::BadSignature { .. } => "bad_signature",
            VerifyError::SignerMismatch { .. } => "signer_mismatch",
            VerifyError::InvalidValidity { .. } => "invalid_validity",
            VerifyError::Expired { .. } => "expired",
            VerifyError::NotYetValid { .. } => "not_yet_valid",
            VerifyError::WrongAudience { .. } => "wrong_audience",
        }
    }
}

/// The context-dependent checks applied after the signature: time and audience.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// Current time, unix seconds.
    pub now: u64,
    /// Tolerated clock skew for `not_before`, seconds.
    pub max_skew_secs: u64,
    /// If set, messages with an audience must be addressed to this key.
    pub audience: Option<PublicKey>,
}

impl Checks {
    /// Checks at `now` with the default skew and no audience.
    pub fn at(now: u64) -> Self {
        Checks {
            now,
            max_skew_secs: DEFAULT_MAX_SKEW_SECS,
            audience: None,
        }
    }
    /// Checks at the current system time.
    pub fn now() -> Self {
        Self::at(now_secs())
    }
    pub fn with_audience(mut self, audience: PublicKey) -> Self {
        self.audience = Some(audience);
        self
    }
    pub fn with_max_skew(mut self, secs: u64) -> Self {
        self.max_skew_secs = secs;
        self
    }
}

/// A message whose envelope verified, with the envelope kept for forwarding
/// (an agreement embeds the offer's envelope, for instance).
#[derive(Debug, Clone)]
pub struct Verified<M> {
    pub message: M,
    pub envelope: Envelope,
}

impl<M> Verified<M> {
    pub fn signer(&self) -> PublicKey {
        self.envelope.signer
    }
}

/// Current unix time in seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Encodes a value in the protocol's one binary encoding.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails on unsupported serde features (none are used here)
    // or on writer errors (a Vec cannot fail), so this cannot fail in practice.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Decodes a value, rejecting trailing bytes and non-canonical encodings.
pub fn decode_canonical<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, VerifyError> {
    let malformed = |reason: String| VerifyError::Malformed { what, reason };
    let (value, rest): (T, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{} trailing bytes", rest.len())));
    }
    if encode(&value) != bytes {
        return Err(malformed("non-canonical encoding".into()));
    }
    Ok(value)
}

/// Reads the leading version varint of a payload without decoding the rest.
fn peek_version(payload: &[u8], what: &'static str) -> Result<u16, VerifyError> {
    let (v, _): (u16, _) =
        postcard::take_from_bytes(payload).map_err(|e| VerifyError::Malformed {
            what,
            reason: format!("no version: {e}"),
        })?;
    Ok(v)
}

fn signing_input(domain: &str, payload: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(domain.len() + 1 + payload.len());
    input.extend_from_slice(domain.as_bytes());
    input.push(0);
    input.extend_from_slice(payload);
    input
}

/// Errors from sealing (signing) a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{what} too large to send: {size} bytes, the limit is {max}")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
}

impl Envelope {
    /// Encodes and signs `message` with `key` under `M::DOMAIN`.
    pub fn seal<M: Message>(message: &M, key: &Keypair) -> Result<Envelope, SealError> {
        let payload = encode(message);
        if payload.len() > M::MAX_PAYLOAD {
            return Err(SealError::TooLarge {
                what: M::NAME,
                size: payload.len(),
                max: M::MAX_PAYLOAD,
            });
        }
        let signature = key.sign_raw(&signing_input(M::DOMAIN, &payload));
        Ok(Envelope {
            version: ENVELOPE_VERSION,
            domain: M::DOMAIN.to_string(),
            payload,
            signer: key.public(),
            signature: SignatureBytes(signature),
        })
    }

    /// The envelope's wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// sha256 of the wire bytes: the envelope's content id.
    pub fn digest(&self) -> Digest {
        sha256(&self.to_bytes())
    }

    /// Parses envelope bytes, refusing input over `max` bytes before parsing.
    pub fn from_bytes(bytes: &[u8], max: usize) -> Result<Envelope, VerifyError> {
        if bytes.len() > max {
            return Err(VerifyError::TooLarge {
                what: "envelope",
                size: bytes.len(),
                max,
            });
        }
        decode_canonical(bytes, "envelope")
    }

    /// Verifies this envelope as an `M` and decodes it, then applies `checks`.
    pub fn verify<M: Message>(self, checks: &Checks) -> Result<Verified<M>, VerifyError> {
        let what = M::NAME;
        if self.version != ENVELOPE_VERSION {
            return Err(VerifyError::UnsupportedVersion {
                what: "envelope",
                found: self.version,
                supported: ENVELOPE_VERSION,
            });
        }
        if self.domain != M::DOMAIN {
            return Err(VerifyError::WrongDomain {
                expected: M::DOMAIN,
                found: self.domain,
            });
        }
        if self.payload.len() > M::MAX_PAYLOAD {
            return Err(VerifyError::TooLarge {
                what,
                size: self.payload.len(),
                max: M::MAX_PAYLOAD,
            });
        }
        let key: VerifyingKey = self
            .signer
            .verifying_key()
            .ok_or(VerifyError::BadSignature { what })?;
        let signature = Signature::from_bytes(&self.signature.0);
        // verify_strict rejects small-order keys and malleable signatures.
        key.verify_strict(&signing_input(M::DOMAIN, &self.payload), &signature)
            .map_err(|_| VerifyError::BadSignature { what })?;

        let version = peek_version(&self.payload, what)?;
        if version > M::VERSION || version == 0 {
            return Err(VerifyError::UnsupportedVersion {
                what,
                found: version,
                supported: M::VERSION,
            });
        }
        let message: M = decode_canonical(&self.payload, what)?;

        let claimed = *message.claimed_signer();
        if claimed != self.signer {
            return Err(VerifyError::SignerMismatch {
                what,
                signer: self.signer,
                claimed,
            });
        }
        if let Some(v) = message.validity() {
            check_validity::<M>(v, checks)?;
        }
        if let (Some(expected), Some(found)) = (checks.audience, message.audience())
            && *found != expected
        {
            return Err(VerifyError::WrongAudience {
                what,
                expected,
                found: *found,
            });
        }
        Ok(Verified {
            message,
            envelope: self,
        })
    }
}

fn check_validity<M: Message>(v: Validity, checks: &Checks) -> Result<(), VerifyError> {
    let what = M::NAME;
    if v.not_after < v.not_before {
        return Err(VerifyError::InvalidValidity {
            what,
            reason: format!(
                "expires ({}) before it is issued ({})",
                v.not_after, v.not_before
            ),
        });
    }
    if let Some(max) = M::MAX_LIFETIME_SECS
        && v.not_after - v.not_before > max
    {
        return Err(VerifyError::InvalidValidity {
            what,
            reason: format!(
                "lifetime {}s exceeds the maximum {max}s",
                v.not_after - v.not_before
            ),
        });
    }
    if v.not_before > checks.now.saturating_add(checks.max_skew_secs) {
        return Err(VerifyError::NotYetValid {
            what,
            issued_at: v.not_before,
            now: checks.now,
            max_skew_secs: checks.max_skew_secs,
        });
    }
    if checks.now > v.not_after {
        return Err(VerifyError::Expired {
            what,
            expires_at: v.not_after,
            now: checks.now,
        });
    }
    Ok(())
}

/// Parses envelope bytes and verifies them as an `M` in one step, with the
/// size cap of `M` applied to the raw input first.
pub fn open<M: Message>(bytes: &[u8], checks: &Checks) -> Result<Verified<M>, VerifyError> {
    Envelope::from_bytes(bytes, M::max_envelope())?.verify(checks)
}
