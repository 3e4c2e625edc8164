//! Accounts: email and password (argon2id), sessions with CSRF tokens,
//! rate-limited sign-in, and the keys an account owns.
//!
//! - A password is stored as an argon2id PHC string (19 MiB, 2 passes).
//!   Sign-in with an unknown email still runs one verification, so timing
//!   does not tell which emails exist.
//! - A session token is 32 random bytes sent only in the cookie; the store
//!   keeps its sha256. Each session has its own CSRF token, which every
//!   state-changing request must echo in the `x-csrf-token` header.
//! - Sign-in is rate limited per email and per client address (governor).
//! - Keys are bound to an account by signing a one-time challenge the
//!   account asked for ([`KeyProof`]): deployer keys (`deployer-key`) and
//!   nodes (`link-node`, from `sparebox market link`).
//!
//! sled trees: `accounts` (id → [`Account`] JSON), `emails` (lowercased
//! email → id), `sessions` (sha256 of token → [`Session`]), `challenges`
//! (challenge → [`Challenge`]), `deployer_keys` and `node_links` (key hex →
//! account id), `connect_accounts` (Stripe Connect account → account id).

use std::num::NonZeroU32;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::{Checks, KeyProof, ProofPurpose, open};

/// Sessions last 14 days.
pub const SESSION_SECS: u64 = 14 * 24 * 3600;
/// Challenges last 15 minutes.
pub const CHALLENGE_SECS: u64 = 15 * 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub email: String,
    /// argon2id PHC string.
    pub password: String,
    pub created_at: u64,
    #[serde(default)]
    pub deployer_keys: Vec<PublicKey>,
    #[serde(default)]
    pub nodes: Vec<PublicKey>,
    /// The Stripe Connect account hosts are paid to.
    #[serde(default)]
    pub connect_account: Option<String>,
    #[serde(default)]
    pub payouts_enabled: bool,
    /// `created` of the newest `account.updated` event applied, so an older
    /// event arriving late does not undo a newer one.
    #[serde(default)]
    pub connect_updated_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub account: String,
    pub csrf: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Challenge {
    account: String,
    purpose: ProofPurpose,
    expires_at: u64,
}

/// Why an account operation failed; `code()` is stable.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("enter a valid email address")]
    BadEmail,
    #[error("the password must be 10 to 1024 characters")]
    WeakPassword,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("wrong email or password")]
    BadCredentials,
    #[error("too many sign-in attempts; try again in {0} s")]
    RateLimited(u64),
    #[error("not signed in (or the session expired)")]
    NoSession,
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("proof: {0}")]
    BadProof(String),
    #[error("unknown or expired challenge; ask for a new one")]
    BadChallenge,
    #[error("this key belongs to another account")]
    KeyTaken,
    #[error("account storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Random(#[from] sparebox_protocol::token::RandomError),
}

impl AccountError {
    pub fn code(&self) -> &'static str {
        match self {
            AccountError::BadEmail => "bad_email",
            AccountError::WeakPassword => "weak_password",
            AccountError::EmailTaken => "email_taken",
            AccountError::BadCredentials => "bad_credentials",
            AccountError::RateLimited(_) => "rate_limited",
            AccountError::NoSession => "not_signed_in",
            AccountError::Csrf => "csrf",
            AccountError::BadProof(_) => "bad_proof",
            AccountError::BadChallenge => "bad_challenge",
            AccountError::KeyTaken => "key_taken",
            AccountError::Storage(_) => "storage",
            AccountError::Random(_) => "internal",
        }
    }
}

fn storage(e: impl std::fmt::Display) -> AccountError {
    AccountError::Storage(e.to_string())
}

fn random_hex(n: usize) -> Result<String, AccountError> {
    Ok(sparebox_protocol::token::random_hex(n, "account secret")?)
}

fn token_key(token: &str) -> [u8; 32] {
    sparebox_protocol::sha256(token.as_bytes()).0
}

/// Normalises and checks an email address.
pub fn normalize_email(email: &str) -> Result<String, AccountError> {
    let e = email.trim().to_ascii_lowercase();
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if ok {
        Ok(e)
    } else {
        Err(AccountError::BadEmail)
    }
}

/// The account store.
#[derive(Clone)]
pub struct Accounts {
    accounts: sled::Tree,
    emails: sled::Tree,
    sessions: sled::Tree,
    challenges: sled::Tree,
    deployer_keys: sled::Tree,
    node_links: sled::Tree,
    connect: sled::Tree,
    /// Sign-in attempts per (client, email) pair: a stranger's failures
    /// never lock the owner of the email out from another client.
    by_email: Arc<DefaultKeyedRateLimiter<String>>,
    by_client: Arc<DefaultKeyedRateLimiter<String>>,
    /// Sign-ups per client, and in all.
    sign_ups_by_client: Arc<DefaultKeyedRateLimiter<String>>,
    sign_ups: Arc<governor::DefaultDirectRateLimiter>,
    /// A hash verified when the email is unknown, to even out timing.
    dummy_hash: String,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

/// Attempts allowed per minute: sign-ins per (client, email) pair and per
/// client address; sign-ups per client and in all.
#[derive(Debug, Clone, Copy)]
pub struct SignInLimits {
    pub per_email: u32,
    pub per_client: u32,
    pub sign_ups_per_client: u32,
    pub sign_ups: u32,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            per_email: 5,
            per_client: 30,
            sign_ups_per_client: 5,
            sign_ups: 60,
        }
    }
}

/// The key a client is rate limited by: its IPv4 address, or its IPv6 /64
/// (one host can hold a whole /64, so single addresses cost it nothing).
pub fn client_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// A rate limiter's refusal as an error with the seconds to wait.
fn limited(
    r: Result<(), governor::NotUntil<governor::clock::QuantaInstant>>,
) -> Result<(), AccountError> {
    r.map_err(|n| {
        let wait = n.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        AccountError::RateLimited(wait.as_secs().max(1))
    })
}

fn hash_password(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(storage)?;
    let salt = SaltString::encode_b64(&salt).map_err(storage)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(storage)?
        .to_string())
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

impl Accounts {
    pub fn open(db: &sled::Db, limits: SignInLimits) -> Result<Accounts, AccountError> {
        let per = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Ok(Accounts {
            accounts: db.open_tree("accounts").map_err(storage)?,
            emails: db.open_tree("emails").map_err(storage)?,
            sessions: db.open_tree("sessions").map_err(storage)?,
            challenges: db.open_tree("challenges").map_err(storage)?,
            deployer_keys: db.open_tree("deployer_keys").map_err(storage)?,
            node_links: db.open_tree("node_links").map_err(storage)?,
            connect: db.open_tree("connect_accounts").map_err(storage)?,
            by_email: Arc::new(RateLimiter::keyed(per(limits.per_email))),
            by_client: Arc::new(RateLimiter::keyed(per(limits.per_client))),
            sign_ups_by_client: Arc::new(RateLimiter::keyed(per(limits.sign_ups_per_client))),
            sign_ups: Arc::new(RateLimiter::direct(per(limits.sign_ups))),
            dummy_hash: hash_password("sparebox-dummy-password")?,
        })
    }

    /// Admits a sign-up from `client` under the per-client and overall
    /// limits (each one costs a memory-hard hash).
    pub fn admit_sign_up(&self, client: &str) -> Result<(), AccountError> {
        limited(self.sign_ups_by_client.check_key(&client.to_string()))?;
        limited(self.sign_ups.check())
    }

    /// Drops expired sessions and challenges, and forgets rate-limit state
    /// that has recovered; returns how many records were dropped.
    pub fn purge(&self, now: u64) -> Result<usize, AccountError> {
        self.by_email.retain_recent();
        self.by_client.retain_recent();
        self.sign_ups_by_client.retain_recent();
        let mut n = 0;
        for (k, v) in self.sessions.iter().flatten() {
            if serde_json::from_slice::<Session>(&v).map_or(true, |s| s.expires_at <= now) {
                self.sessions.remove(k).map_err(storage)?;
                n += 1;
            }
        }
        for (k, v) in self.challenges.iter().flatten() {
            if serde_json::from_slice::<Challenge>(&v).map_or(true, |c| c.expires_at <= now) {
                self.challenges.remove(k).map_err(storage)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Creates an account. The password is checked for length only.
    pub fn sign_up(&self, email: &str, password: &str, now: u64) -> Result<Account, AccountError> {
        let email = normalize_email(email)?;
        if !(10..=1024).contains(&password.chars().count()) {
            return Err(AccountError::WeakPassword);
        }
        let account = Account {
            id: format!("acct_{}", random_hex(8)?),
            email: email.clone(),
            password: hash_password(password)?,
            created_at: now,
            deployer_keys: Vec::new(),
            nodes: Vec::new(),
            connect_account: None,
            payouts_enabled: false,
            connect_updated_at: 0,
        };
        // Claim the email first; a concurrent sign-up with it fails here.
        match self
            .emails
            .compare_and_swap(
                email.as_bytes(),
                None as Option<&[u8]>,
                Some(account.id.as_bytes()),
            )
            .map_err(storage)?
        {
            Ok(()) => {}
            Err(_) => return Err(AccountError::EmailTaken),
        }
        self.save(&account)?;
        Ok(account)
    }

    /// Checks the password, under the rate limits; `client` is the caller's
    /// address.
    pub fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: &str,
    ) -> Result<Account, AccountError> {
        self.admit_sign_in(email, client)?;
        self.check_password(email, password)
    }

    /// The sign-in rate limits alone, to run before the (expensive) hash.
    pub fn admit_sign_in(&self, email: &str, client: &str) -> Result<(), AccountError> {
        let email = normalize_email(email).map_err(|_| AccountError::BadCredentials)?;
        limited(self.by_client.check_key(&client.to_string()))?;
        limited(self.by_email.check_key(&format!("{client} {email}")))
    }

    /// The password check alone; callers apply [`Accounts::admit_sign_in`].
    pub fn check_password(&self, email: &str, password: &str) -> Result<Account, AccountError> {
        let email = normalize_email(email).map_err(|_| AccountError::BadCredentials)?;
        let account = self.by_email(&email)?;
        let phc = account
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |a| a.password.as_str());
        let ok = verify_password(password, phc);
        match account {
            Some(a) if ok => Ok(a),
            _ => Err(AccountError::BadCredentials),
        }
    }

    pub fn by_email(&self, email: &str) -> Result<Option<Account>, AccountError> {
        let Ok(email) = normalize_email(email) else {
            return Ok(None);
        };
        match self.emails.get(email.as_bytes()).map_err(storage)? {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<Account>, AccountError> {
        self.accounts
            .get(id.as_bytes())
            .map_err(storage)?
            .map(|v| serde_json::from_slice(&v).map_err(storage))
            .transpose()
    }

    pub fn save(&self, a: &Account) -> Result<(), AccountError> {
        if let Some(c) = &a.connect_account {
            self.connect
                .insert(c.as_bytes(), a.id.as_bytes())
                .map_err(storage)?;
        }
        self.accounts
            .insert(a.id.as_bytes(), serde_json::to_vec(a).map_err(storage)?)
            .map_err(storage)?;
        self.accounts.flush().map_err(storage)?;
        Ok(())
    }

    /// Every account (for settlement and the admin).
    pub fn all(&self) -> Vec<Account> {
        self.accounts
            .iter()
            .filter_map(|r| r.ok())
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect()
    }

    /// Starts a session; returns the cookie token and the session.
    pub fn new_session(&self, account: &str, now: u64) -> Result<(String, Session), AccountError> {
        let token = random_hex(32)?;
        let session = Session {
            account: account.to_string(),
            csrf: random_hex(16)?,
            expires_at: now + SESSION_SECS,
        };
        self.sessions
            .insert(
                token_key(&token),
                serde_json::to_vec(&session).map_err(storage)?,
            )
            .map_err(storage)?;
        Ok((token, session))
    }

    pub fn session(&self, token: &str, now: u64) -> Result<Session, AccountError> {
        let s: Session = self
            .sessions
            .get(token_key(token))
            .map_err(storage)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(AccountError::NoSession)?;
        if s.expires_at <= now {
            let _ = self.sessions.remove(token_key(token));
            return Err(AccountError::NoSession);
        }
        Ok(s)
    }

    pub fn end_session(&self, token: &str) -> Result<(), AccountError> {
        self.sessions.remove(token_key(token)).map_err(storage)?;
        Ok(())
    }

    /// A one-time challenge for `account` to sign with a key.
    pub fn challenge(
        &self,
        account: &str,
        purpose: ProofPurpose,
        now: u64,
    ) -> Result<(String, u64), AccountError> {
        let challenge = format!("sbx-{}-{}", purpose.as_str(), random_hex(16)?);
        let c = Challenge {
            account: account.to_string(),
            purpose,
            expires_at: now + CHALLENGE_SECS,
        };
        self.challenges
            .insert(
                challenge.as_bytes(),
                serde_json::to_vec(&c).map_err(storage)?,
            )
            .map_err(storage)?;
        self.challenges.flush().map_err(storage)?;
        Ok((challenge, c.expires_at))
    }

    /// Verifies a signed [`KeyProof`] for `market` and binds its key to the
    /// account that asked for the challenge. The challenge is used up.
    pub fn prove_key(
        &self,
        proof: &[u8],
        market: PublicKey,
        now: u64,
    ) -> Result<(Account, KeyProof), AccountError> {
        let p = open::<KeyProof>(proof, &Checks::at(now).with_audience(market))
            .map_err(|e| AccountError::BadProof(format!("{e} [{}]", e.code())))?
            .message;
        let c: Challenge = self
            .challenges
            .remove(p.challenge.as_bytes())
            .map_err(storage)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(AccountError::BadChallenge)?;
        let _ = self.challenges.flush();
        if c.expires_at <= now || c.purpose != p.purpose {
            return Err(AccountError::BadChallenge);
        }
        let index = match p.purpose {
            ProofPurpose::DeployerKey => &self.deployer_keys,
            ProofPurpose::LinkNode => &self.node_links,
        };
        let key = p.key.to_string();
        match index
            .compare_and_swap(
                key.as_bytes(),
                None as Option<&[u8]>,
                Some(c.account.as_bytes()),
            )
            .map_err(storage)?
        {
            Ok(()) => {}
            Err(e) if e.current.as_deref() == Some(c.account.as_bytes()) => {}
            Err(_) => return Err(AccountError::KeyTaken),
        }
        index.flush().map_err(storage)?;
        let mut account = self.get(&c.account)?.ok_or(AccountError::BadChallenge)?;
        let list = match p.purpose {
            ProofPurpose::DeployerKey => &mut account.deployer_keys,
            ProofPurpose::LinkNode => &mut account.nodes,
        };
        if !list.contains(&p.key) {
            list.push(p.key);
        }
        self.save(&account)?;
        Ok((account, p))
    }

    /// The account a deployer key is registered to.
    pub fn by_deployer_key(&self, key: &PublicKey) -> Result<Option<Account>, AccountError> {
        match self
            .deployer_keys
            .get(key.to_string().as_bytes())
            .map_err(storage)?
        {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// The account a node is linked to.
    pub fn by_node(&self, node: &PublicKey) -> Result<Option<Account>, AccountError> {
        match self
            .node_links
            .get(node.to_string().as_bytes())
            .map_err(storage)?
        {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// The account whose Connect account is `connect`.
    pub fn by_connect_account(&self, connect: &str) -> Option<Account> {
        let id = self.connect.get(connect.as_bytes()).ok()??;
        self.get(&String::from_utf8_lossy(&id)).ok()?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparebox_protocol::identity::Keypair;
    use sparebox_protocol::{Envelope, Message};

    fn open_store() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        (
            dir,
            Accounts::open(
                &db,
                SignInLimits {
                    per_email: 3,
                    per_client: 100,
                    ..SignInLimits::default()
                },
            )
            .unwrap(),
        )
    }

    #[test]
    fn sign_up_then_in_with_argon2id_and_a_clear_error_otherwise() {
        let (_d, a) = open_store();
        let acct = a
            .sign_up(" Ada@Example.com ", "correct horse battery", 1)
            .unwrap();
        assert_eq!(acct.email, "ada@example.com");
        assert!(acct.password.starts_with("$argon2id$"), "{}", acct.password);
        assert!(matches!(
            a.sign_up("ada@example.com", "another password", 2),
            Err(AccountError::EmailTaken)
        ));
        assert!(matches!(
            a.sign_up("not-an-email", "long enough pw", 2),
            Err(AccountError::BadEmail)
        ));
        assert!(matches!(
            a.sign_up("b@example.com", "short", 2),
            Err(AccountError::WeakPassword)
        ));
        assert_eq!(
            a.sign_in("ADA@example.com", "correct horse battery", "c1")
                .unwrap()
                .id,
            acct.id
        );
        assert!(matches!(
            a.sign_in("ada@example.com", "wrong password!", "c1"),
            Err(AccountError::BadCredentials)
        ));
        assert!(matches!(
            a.sign_in("nobody@example.com", "whatever pw", "c1"),
            Err(AccountError::BadCredentials)
        ));
    }

    #[test]
    fn sign_in_is_rate_limited_per_email() {
        let (_d, a) = open_store();
        a.sign_up("ada@example.com", "correct horse battery", 1)
            .unwrap();
        for _ in 0..3 {
            assert!(matches!(
                a.sign_in("ada@example.com", "wrong password!", "c"),
                Err(AccountError::BadCredentials)
            ));
        }
        // Even the right password is refused until the window passes.
        assert!(matches!(
            a.sign_in("ada@example.com", "correct horse battery", "c"),
            Err(AccountError::RateLimited(_))
        ));
        // Another email from the same client is not affected.
        a.sign_up("bob@example.com", "correct horse battery", 1)
            .unwrap();
        a.sign_in("bob@example.com", "correct horse battery", "c")
            .unwrap();
    }

    #[test]
    fn a_strangers_failures_do_not_lock_the_owner_out() {
        let (_d, a) = open_store();
        a.sign_up("ada@example.com", "correct horse battery", 1)
            .unwrap();
        for _ in 0..10 {
            let r = a.sign_in("ada@example.com", "guess guess guess", "203.0.113.9");
            assert!(matches!(
                r,
                Err(AccountError::BadCredentials | AccountError::RateLimited(_))
            ));
        }
        // Ada, from her own address, is not the stranger.
        a.sign_in("ada@example.com", "correct horse battery", "198.51.100.7")
            .unwrap();
    }

    #[test]
    fn sign_ups_are_limited_per_client_and_in_all() {
        let (_d, a) = open_store();
        for _ in 0..5 {
            a.admit_sign_up("203.0.113.9").unwrap();
        }
        assert!(matches!(
            a.admit_sign_up("203.0.113.9"),
            Err(AccountError::RateLimited(_))
        ));
        // Others still get in, until the overall limit.
        let mut admitted = 0;
        for i in 0..100 {
            if a.admit_sign_up(&format!("198.51.100.{i}")).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 60 - 5, "60 a minute in all");
    }

    #[test]
    fn purge_drops_expired_sessions_and_challenges_only() {
        let (_d, a) = open_store();
        let acct = a
            .sign_up("ada@example.com", "correct horse battery", 1)
            .unwrap();
        let (old, _) = a.new_session(&acct.id, 100).unwrap();
        let (fresh, _) = a.new_session(&acct.id, 100 + SESSION_SECS).unwrap();
        a.challenge(&acct.id, ProofPurpose::DeployerKey, 100)
            .unwrap();
        let removed = a.purge(101 + SESSION_SECS).unwrap();
        assert_eq!(removed, 2, "the old session and the challenge");
        assert!(a.session(&old, 100).is_err(), "purged");
        assert!(a.session(&fresh, 101 + SESSION_SECS).is_ok());
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        assert_eq!(client_key("203.0.113.9".parse().unwrap()), "203.0.113.9");
    }

    #[test]
    fn sessions_expire_and_end() {
        let (_d, a) = open_store();
        let acct = a
            .sign_up("ada@example.com", "correct horse battery", 1)
            .unwrap();
        let (token, s) = a.new_session(&acct.id, 100).unwrap();
        assert_eq!(a.session(&token, 101).unwrap(), s);
        assert!(matches!(
            a.session(&token, 100 + SESSION_SECS),
            Err(AccountError::NoSession)
        ));
        let (token, _) = a.new_session(&acct.id, 100).unwrap();
        a.end_session(&token).unwrap();
        assert!(matches!(
            a.session(&token, 101),
            Err(AccountError::NoSession)
        ));
        assert!(matches!(
            a.session("forged", 101),
            Err(AccountError::NoSession)
        ));
    }

    fn proof(
        key: &Keypair,
        market: PublicKey,
        purpose: ProofPurpose,
        challenge: &str,
        now: u64,
    ) -> Vec<u8> {
        let p = KeyProof {
            version: KeyProof::VERSION,
            key: key.public(),
            market,
            purpose,
            challenge: challenge.into(),
            issued_at: now,
            expires_at: now + 300,
        };
        Envelope::seal(&p, key).unwrap().to_bytes()
    }

    #[test]
    fn keys_are_bound_by_signing_a_one_time_challenge() {
        let (_d, a) = open_store();
        let market = Keypair::from_seed([9; 32]).public();
        let other_market = Keypair::from_seed([8; 32]).public();
        let acct = a
            .sign_up("ada@example.com", "correct horse battery", 1)
            .unwrap();
        let deployer = Keypair::from_seed([1; 32]);
        let now = sparebox_protocol::now_secs();
        let (c, _) = a
            .challenge(&acct.id, ProofPurpose::DeployerKey, now)
            .unwrap();
        // Signed for another marketplace: refused, and the challenge survives.
        let wrong = proof(&deployer, other_market, ProofPurpose::DeployerKey, &c, now);
        assert!(matches!(
            a.prove_key(&wrong, market, now),
            Err(AccountError::BadProof(_))
        ));
        // The right proof binds the key to the account that asked.
        let p = proof(&deployer, market, ProofPurpose::DeployerKey, &c, now);
        let (acct2, _) = a.prove_key(&p, market, now).unwrap();
        assert_eq!(acct2.deployer_keys, vec![deployer.public()]);
        assert_eq!(
            a.by_deployer_key(&deployer.public()).unwrap().unwrap().id,
            acct.id
        );
        assert!(
            matches!(
                a.prove_key(&p, market, now),
                Err(AccountError::BadChallenge)
            ),
            "replay"
        );
        // Another account cannot claim the same key.
        let bob = a
            .sign_up("bob@example.com", "correct horse battery", 1)
            .unwrap();
        let (c2, _) = a
            .challenge(&bob.id, ProofPurpose::DeployerKey, now)
            .unwrap();
        let p2 = proof(&deployer, market, ProofPurpose::DeployerKey, &c2, now);
        assert!(matches!(
            a.prove_key(&p2, market, now),
            Err(AccountError::KeyTaken)
        ));
        // A node links under its own purpose.
        let node = Keypair::from_seed([2; 32]);
        let (c3, _) = a.challenge(&bob.id, ProofPurpose::LinkNode, now).unwrap();
        let wrong_purpose = proof(&node, market, ProofPurpose::DeployerKey, &c3, now);
        assert!(matches!(
            a.prove_key(&wrong_purpose, market, now),
            Err(AccountError::BadChallenge)
        ));
        let (c3, _) = a.challenge(&bob.id, ProofPurpose::LinkNode, now).unwrap();
        a.prove_key(
            &proof(&node, market, ProofPurpose::LinkNode, &c3, now),
            market,
            now,
        )
        .unwrap();
        assert_eq!(a.by_node(&node.public()).unwrap().unwrap().id, bob.id);
    }
}
