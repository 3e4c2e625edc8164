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

/// A host's answer to an offer that the deployer must not store or show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptedError {
    #[error("the agent id `{0}` is not the one the host signed [agent_id_mismatch]")]
    AgentIdMismatch(String),
    #[error("the agent id {0:?} is not a plain name (a-z, 0-9, `-`, at most 80) [bad_agent_id]")]
    BadAgentId(String),
    #[error(
        "the API URL {0:?} is not http(s)://<the host's address>/api/agents/<agent id> [bad_api_url]"
    )]
    BadApiUrl(String),
    #[error("the bearer token is not 64 hex digits [bad_token]")]
    BadToken,
}

impl AcceptedError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            AcceptedError::AgentIdMismatch(_) => "agent_id_mismatch",
            AcceptedError::BadAgentId(_) => "bad_agent_id",
            AcceptedError::BadApiUrl(_) => "bad_api_url",
            AcceptedError::BadToken => "bad_token",
        }
    }
}

/// Whether `id` can name a file: 1–80 of `a-z`, `0-9` and `-`, not
/// starting with `-` (what nodes make: `<spec name>-<8 hex digits>`).
pub fn plain_agent_id(id: &str) -> bool {
    (1..=80).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// Checks what a host answered when it accepted an offer, before any of it
/// touches the deployer's disk or screen: the agent id must be the one in
/// the signed agreement and a plain file name; the API URL must be
/// `http(s)://HOST[:port]/api/agents/<agent id>` where an address HOST is
/// the address the host was reached at (`dialed`, when that is an address);
/// the token must be hex.
pub fn check_accepted(
    agent_id: &str,
    signed_agent_id: &str,
    api_url: &str,
    token: &str,
    dialed: Option<std::net::IpAddr>,
) -> Result<(), AcceptedError> {
    if agent_id != signed_agent_id {
        return Err(AcceptedError::AgentIdMismatch(agent_id.to_string()));
    }
    if !plain_agent_id(agent_id) {
        return Err(AcceptedError::BadAgentId(agent_id.to_string()));
    }
    let bad_url = || AcceptedError::BadApiUrl(api_url.to_string());
    let url = url::Url::parse(api_url).map_err(|_| bad_url())?;
    let host_ok = match url.host() {
        // A name is the host's to choose (a reverse proxy's), but never one
        // that means this machine.
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            !d.is_empty() && d != "localhost" && !d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(a)) => dialed.is_none_or(|d| d == std::net::IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => dialed.is_none_or(|d| d == std::net::IpAddr::V6(a)),
        None => false,
    };
    if !matches!(url.scheme(), "http" | "https")
        || !host_ok
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || url.path().trim_end_matches('/') != format!("/api/agents/{agent_id}")
        || api_url.chars().any(char::is_control)
        // Only the canonical spelling: what is shown and stored is exactly
        // what was judged (no `/;cmd;/../` that resolves away).
        || url.as_str() != api_url
    {
        return Err(bad_url());
    }
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AcceptedError::BadToken);
    }
    Ok(())
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

    #[test]
    fn a_hosts_answer_is_checked_before_it_is_stored_or_shown() {
        let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        let token = "ab".repeat(32);
        let ok = |id: &str, url: &str| check_accepted(id, id, url, &token, Some(ip));
        assert_eq!(
            ok(
                "echo-1a2b3c4d",
                "http://203.0.113.7:7878/api/agents/echo-1a2b3c4d"
            ),
            Ok(())
        );
        assert_eq!(
            ok("echo-1", "https://node.example.com/api/agents/echo-1"),
            Ok(())
        );
        for (id, url, code) in [
            (
                "../../../../tmp/x",
                "http://203.0.113.7/api/agents/x",
                "bad_agent_id",
            ),
            ("a/b", "http://203.0.113.7/api/agents/a/b", "bad_agent_id"),
            (
                "x.json",
                "http://203.0.113.7/api/agents/x.json",
                "bad_agent_id",
            ),
            ("", "http://203.0.113.7/api/agents/", "bad_agent_id"),
            (
                "echo-1",
                "http://198.51.100.1/api/agents/echo-1",
                "bad_api_url",
            ),
            (
                "echo-1",
                "http://169.254.169.254/api/agents/echo-1",
                "bad_api_url",
            ),
            ("echo-1", "file:///etc/passwd", "bad_api_url"),
            ("echo-1", "http://203.0.113.7/elsewhere", "bad_api_url"),
            (
                "echo-1",
                "http://u:p@203.0.113.7/api/agents/echo-1",
                "bad_api_url",
            ),
            (
                "echo-1",
                "http://203.0.113.7/api/agents/echo-1?x=\u{1b}[2J",
                "bad_api_url",
            ),
            (
                "echo-1",
                "http://203.0.113.7/;touch pwned;/../api/agents/echo-1",
                "bad_api_url",
            ),
            (
                "echo-1",
                "http://localhost:7878/api/agents/echo-1",
                "bad_api_url",
            ),
            (
                "echo-1",
                "http://metadata.localhost/api/agents/echo-1",
                "bad_api_url",
            ),
        ] {
            assert_eq!(ok(id, url).unwrap_err().code(), code, "{id} {url}");
        }
        assert_eq!(
            check_accepted(
                "a",
                "b",
                "http://203.0.113.7/api/agents/a",
                &token,
                Some(ip)
            )
            .unwrap_err()
            .code(),
            "agent_id_mismatch"
        );
        assert_eq!(
            check_accepted(
                "a",
                "a",
                "http://203.0.113.7/api/agents/a",
                "x\u{1b}",
                Some(ip)
            )
            .unwrap_err(),
            AcceptedError::BadToken
        );
    }
}
