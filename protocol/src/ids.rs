//! Fixed-size identifiers every message uses: random ids and sha256 digests.

use sha2::{Digest as _, Sha256};

crate::bytes::fixed_bytes!(
    /// A 16-byte random identifier (offer, command, report and voucher ids, nonces).
    Id,
    16
);
crate::bytes::fixed_bytes!(
    /// A sha256 digest.
    Digest,
    32
);

impl Id {
    /// A fresh random id from the operating system's random source.
    pub fn random() -> Result<Id, getrandom::Error> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)?;
        Ok(Id(id))
    }
}

/// sha256 of some bytes.
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}
