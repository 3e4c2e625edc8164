//! Identity and keys.
//!
//! Every party (host node, deployer, marketplace) is an ed25519 key. A node's
//! libp2p PeerId is derived from the same key, so a `PublicKey` can always be
//! shown as `12D3KooW...`.
//!
//! Key files are PKCS#8 PEM (the format `openssl genpkey -algorithm ed25519`
//! writes), created with mode 0600 and refused when group or others can read
//! them. A secret key is never logged: `Keypair`'s `Debug` prints only the
//! public half.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Errors from loading, creating or parsing keys. Each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path} does not exist; create it with `sparebox keys generate --out {path}`")]
    NotFound { path: PathBuf },
    #[error("key file {path} already exists; pass --force to overwrite it")]
    Exists { path: PathBuf },
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is corrupt: {reason} (expected an ed25519 PKCS#8 PEM private key)")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "key file {path} is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// Errors from parsing a public key or PeerId given by a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyParseError {
    #[error("`{0}` is not a PeerId (12D3KooW...) or a 64-digit hex ed25519 public key")]
    Unrecognised(String),
    #[error("PeerId `{0}` is not an ed25519 identity")]
    NotEd25519(String),
}

/// An ed25519 public key: a node's identity (its PeerId), a deployer's key or
/// the marketplace's key. Stored as the 32 raw bytes; whether the bytes are a
/// valid curve point is checked at signature verification.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PublicKey(#[serde(with = "crate::bytes")] pub [u8; 32]);

impl PublicKey {
    /// The key as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The libp2p PeerId string (`12D3KooW...`) of this key. Falls back to hex
    /// for bytes that are not a valid ed25519 point.
    pub fn to_peer_id(&self) -> String {
        match libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0) {
            Ok(pk) => libp2p_identity::PublicKey::from(pk)
                .to_peer_id()
                .to_string(),
            Err(_) => self.to_hex(),
        }
    }

    /// The dalek verifying key, if the bytes are a valid point.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }
}

impl FromStr for PublicKey {
    type Err = PublicKeyParseError;

    /// Accepts a PeerId (`12D3KooW...`) or 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() == 64
            && let Ok(bytes) = hex::decode(s)
        {
            let mut out = [0u8; 32];
            out.copy_from_slice(&bytes);
            return Ok(PublicKey(out));
        }
        let peer = libp2p_identity::PeerId::from_str(s)
            .map_err(|_| PublicKeyParseError::Unrecognised(s.to_string()))?;
        let mh: &multihash::Multihash<64> = peer.as_ref();
        // Ed25519 PeerIds inline the protobuf-encoded key in an identity multihash.
        if mh.code() != 0 {
            return Err(PublicKeyParseError::NotEd25519(s.to_string()));
        }
        let pk = libp2p_identity::PublicKey::try_decode_protobuf(mh.digest())
            .ok()
            .and_then(|pk| pk.try_into_ed25519().ok())
            .ok_or_else(|| PublicKeyParseError::NotEd25519(s.to_string()))?;
        Ok(PublicKey(pk.to_bytes()))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_peer_id())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", &self.to_hex()[..16])
    }
}

/// An ed25519 secret key with its public half.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// The key for a 32-byte seed (deterministic; used by tests and libp2p).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs raw bytes. Protocol code signs through `protocol::Envelope::seal`,
    /// which adds the domain tag.
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The 32-byte secret seed, for building the libp2p identity in `network`.
    pub fn secret_seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// Loads a key file, refusing files that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::NotFound {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => KeyError::Corrupt {
                path: path.to_path_buf(),
                reason: "not UTF-8 text".into(),
            },
            _ => KeyError::Read {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        let signing = SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Keypair { signing })
    }

    /// Writes the key to `path` with mode 0600. Without `force` an existing file
    /// is never touched (the final step is an atomic no-clobber link); with
    /// `force` it is replaced atomically.
    pub fn save(&self, path: &Path, force: bool) -> Result<(), KeyError> {
        let werr = |source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        if !force && path.exists() {
            return Err(KeyError::Exists {
                path: path.to_path_buf(),
            });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(werr)?;
        }
        let pem = self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let write_tmp = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(pem.as_bytes())?;
            f.sync_all()
        };
        if let Err(e) = write_tmp() {
            let _ = fs::remove_file(&tmp);
            return Err(werr(e));
        }
        let placed = if force {
            fs::rename(&tmp, path)
        } else {
            // hard_link fails if `path` appeared meanwhile: no silent overwrite.
            let r = fs::hard_link(&tmp, path);
            let _ = fs::remove_file(&tmp);
            r
        };
        placed.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                werr(e)
            }
        })
    }

    /// Loads the key at `path`, creating it first if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        match Self::load(path) {
            Ok(k) => Ok((k, false)),
            Err(KeyError::NotFound { .. }) => {
                let k = Self::generate()?;
                k.save(path, false)?;
                Ok((k, true))
            }
            Err(e) => Err(e),
        }
    }
}

/// Default locations, following the XDG base-directory conventions.
pub mod paths {
    use std::path::PathBuf;

    fn project() -> Option<directories::ProjectDirs> {
        directories::ProjectDirs::from("", "", "sparebox")
    }

    /// `$XDG_DATA_HOME/sparebox` (usually `~/.local/share/sparebox`).
    pub fn data_home() -> PathBuf {
        project()
            .map(|p| p.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from(".sparebox"))
    }

    /// `$XDG_CONFIG_HOME/sparebox` (usually `~/.config/sparebox`).
    pub fn config_home() -> PathBuf {
        project()
            .map(|p| p.config_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from(".sparebox"))
    }

    /// The deployer key used by `sparebox offer`, `deploy` and `agents`.
    pub fn deployer_key() -> PathBuf {
        data_home().join("keys").join("deployer.key")
    }

    /// The node's data directory when neither the config nor a flag sets one.
    pub fn node_data_dir() -> PathBuf {
        data_home().join("node")
    }

    /// The node config file read when `--config` is not given (if it exists).
    pub fn node_config() -> PathBuf {
        config_home().join("node.toml")
    }

    /// Where the CLI keeps agreements and other deployer-side state.
    pub fn deployer_state() -> PathBuf {
        data_home().join("deployer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trips_through_parse() {
        let k = Keypair::from_seed([7u8; 32]);
        let pid = k.public().to_peer_id();
        assert!(pid.starts_with("12D3KooW"), "{pid}");
        assert_eq!(pid.parse::<PublicKey>().unwrap(), k.public());
        assert_eq!(
            k.public().to_hex().parse::<PublicKey>().unwrap(),
            k.public()
        );
    }

    #[test]
    fn peer_id_matches_libp2p_keypair_from_same_secret() {
        let k = Keypair::from_seed([9u8; 32]);
        let lp = libp2p_identity::Keypair::ed25519_from_bytes(k.secret_seed()).unwrap();
        assert_eq!(
            lp.public().to_peer_id().to_string(),
            k.public().to_peer_id()
        );
    }

    #[test]
    fn rejects_garbage_peer_id() {
        assert!(matches!(
            "not-a-peer".parse::<PublicKey>(),
            Err(PublicKeyParseError::Unrecognised(_))
        ));
    }

    #[test]
    fn save_refuses_overwrite_and_load_checks_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        let k = Keypair::generate().unwrap();
        k.save(&p, false).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(k.save(&p, false), Err(KeyError::Exists { .. })));
        assert_eq!(Keypair::load(&p).unwrap().public(), k.public());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            Keypair::load(&p),
            Err(KeyError::Permissions { mode: 0o640, .. })
        ));
        let k2 = Keypair::generate().unwrap();
        k2.save(&p, true).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Keypair::load(&p).unwrap().public(), k2.public());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let k = Keypair::from_seed([1u8; 32]);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode([1u8; 32])));
    }
}
