//! Bearer tokens: an agent's API token, the node owner's token, the
//! marketplace's admin token and session ids.

/// The operating system's random source failed. No token is ever made from
/// anything weaker: a guessable token is worse than none.
#[derive(Debug, thiserror::Error)]
#[error("no randomness for a {what}: {source}")]
pub struct RandomError {
    pub what: &'static str,
    #[source]
    pub source: getrandom::Error,
}

/// `bytes` random bytes from the OS, hex-encoded.
pub fn random_hex(bytes: usize, what: &'static str) -> Result<String, RandomError> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|source| RandomError { what, source })?;
    Ok(hex::encode(b))
}

/// Whether an `Authorization` header value is `Bearer <token>`, compared in
/// constant time over the token's bytes.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let want = format!("Bearer {token}");
    header.is_some_and(|v| {
        v.len() == want.len()
            && v.bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_matches_only_the_exact_header() {
        assert!(bearer_matches(Some("Bearer abc"), "abc"));
        assert!(!bearer_matches(Some("Bearer abd"), "abc"));
        assert!(!bearer_matches(Some("Bearer abc "), "abc"));
        assert!(!bearer_matches(Some("bearer abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
    }

    #[test]
    fn random_tokens_are_hex_of_the_asked_length_and_differ() {
        let a = random_hex(24, "test token").expect("random");
        let b = random_hex(24, "test token").expect("random");
        assert_eq!(a.len(), 48);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
