//! The signed-file formats: JSON with the envelope's wire bytes in hex, so
//! files are readable, diffable and safe to paste. The CLI reads and writes
//! them; the marketplace hands out voucher files in the same form.
//!
//! - offer file: `{"format": "sparebox-offer/1", "offer": HEX, "spec": TOML}`
//! - voucher file: `{"format": "sparebox-voucher/1", "voucher": HEX}`
//! - agent file: `{"format": "sparebox-agent/1", ...}` (what a deployer keeps
//!   about an agent it deployed)

use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, Message, VerifyError};

pub const OFFER_FORMAT: &str = "sparebox-offer/1";
pub const VOUCHER_FORMAT: &str = "sparebox-voucher/1";
pub const AGENT_FORMAT: &str = "sparebox-agent/1";
/// Largest signed file read, in bytes.
pub const MAX_FILE: u64 = 1024 * 1024;

/// A signed offer with the spec document it commits to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferFile {
    pub format: String,
    /// Hex of the offer envelope's wire bytes.
    pub offer: String,
    /// The resolved spec document; its sha256 is the offer's `spec_sha256`.
    pub spec: String,
}

/// A signed voucher.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherFile {
    pub format: String,
    pub voucher: String,
}

/// What the CLI keeps about an agent it deployed, in
/// `$XDG_DATA_HOME/sparebox/deployer/agents/<agent-id>.json` (mode 0600: it
/// holds the agent's bearer token).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentFile {
    pub format: String,
    pub agent_id: String,
    pub name: String,
    /// The host's PeerId.
    pub host: String,
    /// A multiaddr the host was reached at.
    pub addr: String,
    pub offer_id: String,
    /// Hex of the host-signed agreement envelope.
    pub agreement: String,
    pub api_url: String,
    pub token: String,
    pub created_at: u64,
}

impl VoucherFile {
    /// The file form of a voucher envelope.
    pub fn new(voucher: &Envelope) -> VoucherFile {
        VoucherFile {
            format: VOUCHER_FORMAT.into(),
            voucher: hex::encode(voucher.to_bytes()),
        }
    }
}

/// A hex envelope field could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the {what} field is not hex")]
    Hex { what: &'static str },
    #[error("cannot read the {what}: {source}")]
    Envelope {
        what: &'static str,
        #[source]
        source: VerifyError,
    },
}

/// Decodes a hex envelope field, capped at `M`'s envelope size.
pub fn envelope_from_hex<M: Message>(hex_text: &str) -> Result<Envelope, FileError> {
    let bytes = hex::decode(hex_text.trim()).map_err(|_| FileError::Hex { what: M::NAME })?;
    Envelope::from_bytes(&bytes, M::max_envelope()).map_err(|source| FileError::Envelope {
        what: M::NAME,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::{Id, Voucher};

    fn voucher() -> Envelope {
        let market = Keypair::from_seed([1; 32]);
        let v = Voucher {
            version: Voucher::VERSION,
            voucher_id: Id([2; 16]),
            market: market.public(),
            deployer: Keypair::from_seed([3; 32]).public(),
            cap_cents: 500,
            currency: "usd".into(),
            issued_at: 10,
            expires_at: 20,
            market_url: "http://127.0.0.1:8080".into(),
        };
        Envelope::seal(&v, &market).expect("seal")
    }

    #[test]
    fn a_voucher_file_reads_back_to_the_same_envelope() {
        let env = voucher();
        let file = VoucherFile::new(&env);
        assert_eq!(file.format, VOUCHER_FORMAT);
        let text = serde_json::to_string(&file).expect("json");
        let back: VoucherFile = serde_json::from_str(&text).expect("json");
        assert_eq!(
            envelope_from_hex::<Voucher>(&back.voucher).expect("hex"),
            env
        );
    }

    #[test]
    fn bad_hex_and_oversized_envelopes_are_refused_by_name() {
        let e = envelope_from_hex::<Voucher>("zz").expect_err("not hex");
        assert_eq!(e.to_string(), "the voucher field is not hex");
        let big = hex::encode(vec![0u8; Voucher::max_envelope() + 1]);
        let e = envelope_from_hex::<Voucher>(&big).expect_err("too large");
        assert!(
            matches!(
                e,
                FileError::Envelope {
                    what: "voucher",
                    ..
                }
            ),
            "{e}"
        );
    }
}
