//! Issuing and verifying tokens.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::key::{algorithm_name, backend};
use crate::{AuthError, JwtKey, Principal};

/// A clock returning unix seconds.
type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Verifies (and, with a signing key, issues) the JWTs that authenticate links.
///
/// A `JwtAuth` holds a primary key, optional extra keys selected by the token header's `kid`
/// (for rotation), the expected issuer and audience, a leeway and a clock. Every key is
/// pinned to one algorithm; the token header can only choose among configured keys, never
/// change how a key is used, and never cause I/O.
///
/// A token is accepted when all of these hold:
/// - it is at most [`JwtAuth::MAX_TOKEN_LEN`] bytes, checked before any parsing;
/// - its header's `typ` is absent or `JWT` (in any case), and it has no `crit`;
/// - its `kid` is absent (the primary key is used) or names a configured key, and its `alg`
///   is that key's algorithm;
/// - its signature verifies;
/// - `exp` is present and `now < exp + leeway`; if `nbf` is present, `nbf <= now + leeway`;
/// - `iss` and `aud` are present and match once configured; a token carrying `aud` is
///   refused when no audience is configured;
/// - `sub` is a non-empty string and `roles`, if present, an array of strings.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use distributed_scope_auth::JwtAuth;
///
/// let auth = JwtAuth::hs256(b"a secret of at least 32 bytes....")
///     .with_issuer("issuer")
///     .with_audience("audience");
/// auth.check()?;
///
/// let token = auth.issue("reader", &["viewer"], Duration::from_secs(3600))?;
/// let principal = auth.verify(&token)?;
/// assert_eq!(principal.subject(), "reader");
/// assert!(principal.has_role("viewer"));
/// # Ok::<(), distributed_scope_auth::AuthError>(())
/// ```
#[derive(Clone)]
pub struct JwtAuth {
    primary: JwtKey,
    keys: BTreeMap<String, JwtKey>,
    signing_kid: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    clock: Clock,
}

/// The claims written by [`JwtAuth::issue`].
#[derive(serde::Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    roles: &'a [&'a str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    peers: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocks: Option<&'a [&'a str]>,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// The claims some tokens carry beside subject, roles and peers.
#[derive(Default, Clone, Copy)]
struct Extra<'a> {
    nonce: Option<&'a str>,
    root: Option<&'a str>,
    blocks: Option<&'a [&'a str]>,
}

/// The header fields read before choosing a key.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<IgnoredAny>,
}

impl JwtAuth {
    /// The longest token accepted, in bytes; longer ones are refused before any parsing.
    pub const MAX_TOKEN_LEN: usize = 8 * 1024;

    /// The default leeway applied to `exp` and `nbf`.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

    /// Verifies with `primary`, the key used for tokens whose header has no `kid`.
    ///
    /// Also the key that signs, unless [`with_signing_kid`](Self::with_signing_kid) picks
    /// another one.
    pub fn new(primary: JwtKey) -> Self {
        Self {
            primary,
            keys: BTreeMap::new(),
            signing_kid: None,
            issuer: None,
            audience: None,
            leeway: Self::DEFAULT_LEEWAY.as_secs(),
            clock: Arc::new(system_clock),
        }
    }

    /// HS256 with a shared secret, which both verifies and issues.
    ///
    /// Never fails: a secret shorter than [`JwtKey::MIN_SECRET_LEN`] bytes is reported by
    /// [`check`](Self::check), which a peer runs when it starts.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self::new(JwtKey::hs256(secret))
    }

    /// RS256 with an RSA public key in PEM form; add the private key with
    /// [`with_signing_pem`](Self::with_signing_pem) to issue.
    ///
    /// # Errors
    ///
    /// See [`JwtKey::rs256_pem`].
    pub fn rs256_pem(public_pem: &[u8]) -> Result<Self, AuthError> {
        JwtKey::rs256_pem(public_pem).map(Self::new)
    }

    /// EdDSA with an Ed25519 public key in PEM form; add the private key with
    /// [`with_signing_pem`](Self::with_signing_pem) to issue.
    ///
    /// # Errors
    ///
    /// See [`JwtKey::eddsa_pem`].
    pub fn eddsa_pem(public_pem: &[u8]) -> Result<Self, AuthError> {
        JwtKey::eddsa_pem(public_pem).map(Self::new)
    }

    /// Adds the private half of the primary key, so that [`issue`](Self::issue) works.
    ///
    /// # Errors
    ///
    /// See [`JwtKey::with_signing_pem`].
    pub fn with_signing_pem(mut self, private_pem: &[u8]) -> Result<Self, AuthError> {
        self.primary = self.primary.with_signing_pem(private_pem)?;
        Ok(self)
    }

    /// Requires every token's `iss` to be `issuer`, and writes it into issued tokens.
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Requires every token's `aud` to name `audience`, and writes it into issued tokens.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_owned());
        self
    }

    /// Tolerance for clock skew on `exp` and `nbf` (whole seconds; default 30 s).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.as_secs();
        self
    }

    /// Accepts tokens whose header `kid` is `kid`, verified with `key`.
    ///
    /// Several keys can be accepted at once, which is how keys are rotated: add the new key,
    /// move issuers to it, then drop the old one with [`without_key`](Self::without_key).
    /// Adding a `kid` again replaces its key.
    pub fn with_key(mut self, kid: &str, key: JwtKey) -> Self {
        self.keys.insert(kid.to_owned(), key);
        self
    }

    /// Stops accepting tokens whose header `kid` is `kid`.
    pub fn without_key(mut self, kid: &str) -> Self {
        self.keys.remove(kid);
        self
    }

    /// Issues tokens with the key added under `kid` (and writes `kid` into their header),
    /// instead of with the primary key.
    ///
    /// If no key is configured under `kid`, [`check`](Self::check) and
    /// [`issue`](Self::issue) report [`AuthError::UnknownKeyId`].
    pub fn with_signing_kid(mut self, kid: &str) -> Self {
        self.signing_kid = Some(kid.to_owned());
        self
    }

    /// Replaces the system clock (unix seconds) used for `iat`/`nbf`/`exp` and their checks.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::time::Duration;
    /// use distributed_scope_auth::{AuthError, JwtAuth};
    ///
    /// let now = Arc::new(AtomicU64::new(1_000_000));
    /// let clock = Arc::clone(&now);
    /// let auth = JwtAuth::hs256(b"a secret of at least 32 bytes....")
    ///     .with_clock(Arc::new(move || clock.load(Ordering::Relaxed)));
    ///
    /// let token = auth.issue("reader", &[], Duration::from_secs(60)).unwrap();
    /// now.fetch_add(60 + 30, Ordering::Relaxed); // past exp + leeway
    /// assert!(matches!(auth.verify(&token), Err(AuthError::Expired)));
    /// ```
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> u64 + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the configuration and runs a self-test; a peer calls this when it starts.
    ///
    /// It fails if the crypto backend is unusable, if any HS256 secret is too short, if the
    /// signing `kid` names no key, or if signing and then verifying a dummy token with this
    /// configuration fails.
    ///
    /// # Errors
    ///
    /// [`AuthError::BackendUnavailable`], [`AuthError::WeakSecret`],
    /// [`AuthError::UnknownKeyId`] or [`AuthError::SelfTest`] (wrapping the failure).
    pub fn check(&self) -> Result<(), AuthError> {
        backend_self_test()?;
        std::iter::once(&self.primary)
            .chain(self.keys.values())
            .try_for_each(JwtKey::ensure_strong)?;
        let signing = self.signing_key()?;
        if signing.encoding().is_some() {
            let wrap = |error| AuthError::SelfTest(Box::new(error));
            let token = self
                .issue(
                    "distributed-scope-auth self-test",
                    &[],
                    Duration::from_secs(60),
                )
                .map_err(wrap)?;
            self.verify(&token).map_err(wrap)?;
        }
        Ok(())
    }

    /// Issues a token for `subject` with `roles`, valid from now for `ttl` (whole seconds).
    ///
    /// The claims are `sub`, `roles`, `iat` and `nbf` (now), `exp` (now + `ttl`), and `iss`
    /// and `aud` when configured. The header carries `typ: JWT` and the signing `kid`, if
    /// any.
    ///
    /// # Errors
    ///
    /// [`AuthError::CannotIssue`] if the signing key is public only,
    /// [`AuthError::UnknownKeyId`] if the signing `kid` names no key,
    /// [`AuthError::WeakSecret`], [`AuthError::InvalidClaim`] for an empty subject,
    /// [`AuthError::TokenTooLong`] if the token would not be accepted by
    /// [`verify`](Self::verify), and [`AuthError::Signing`] or
    /// [`AuthError::BackendUnavailable`] if the backend fails.
    pub fn issue(&self, subject: &str, roles: &[&str], ttl: Duration) -> Result<String, AuthError> {
        self.issue_with_peers(subject, roles, &[], ttl)
    }

    /// As [`issue`](Self::issue), with a `peers` claim: the peers the holder may link as
    /// besides `PeerId::from_name(subject)`, each a peer name or a peer id's UUID (see
    /// [`Principal::peers`](crate::Principal::peers)).
    ///
    /// # Errors
    ///
    /// As [`issue`](Self::issue).
    pub fn issue_with_peers(
        &self,
        subject: &str,
        roles: &[&str],
        peers: &[&str],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        self.issue_claims(subject, roles, peers, Extra::default(), ttl)
    }

    /// As [`issue_with_peers`](Self::issue_with_peers), with a `nonce` claim: a proof of
    /// identity bound to one handshake (the runtime's accepting peers answer a connecting
    /// peer's nonce with one; see [`Principal::nonce`](crate::Principal::nonce)). Give it a
    /// short `ttl`.
    ///
    /// # Errors
    ///
    /// As [`issue`](Self::issue).
    pub fn issue_proof(
        &self,
        subject: &str,
        roles: &[&str],
        peers: &[&str],
        nonce: &str,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let extra = Extra {
            nonce: Some(nonce),
            ..Extra::default()
        };
        self.issue_claims(subject, roles, peers, extra, ttl)
    }

    /// A grant of authority for one root call: `subject` and `roles` (the principal that
    /// made the root call), the root block (`root` claim), if `blocks` is given the
    /// block-name globs the holder may still run (`blocks` claim), and if `peers` is not
    /// empty the peers (ids' UUIDs) that may still run them (`peers` claim). The runtime's peers sign
    /// one when they admit a root call, and every peer on the chain verifies it (see
    /// [`Principal::root`](crate::Principal::root)). Give it the root call's deadline as
    /// `ttl`.
    ///
    /// # Errors
    ///
    /// As [`issue`](Self::issue).
    pub fn issue_grant(
        &self,
        subject: &str,
        roles: &[&str],
        root: &str,
        blocks: Option<&[&str]>,
        peers: &[&str],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let extra = Extra {
            root: Some(root),
            blocks,
            ..Extra::default()
        };
        self.issue_claims(subject, roles, peers, extra, ttl)
    }

    fn issue_claims(
        &self,
        subject: &str,
        roles: &[&str],
        peers: &[&str],
        extra: Extra<'_>,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        if subject.is_empty() {
            return Err(AuthError::InvalidClaim { claim: "sub" });
        }
        let key = self.signing_key()?;
        key.ensure_strong()?;
        let encoding = key.encoding().ok_or(AuthError::CannotIssue)?;
        let now = (self.clock)();
        let claims = IssuedClaims {
            sub: subject,
            roles,
            peers,
            nonce: extra.nonce,
            root: extra.root,
            blocks: extra.blocks,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl.as_secs()),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        let mut header = Header::new(key.algorithm());
        header.kid.clone_from(&self.signing_kid);
        let token = backend(|| jsonwebtoken::encode(&header, &claims, encoding))?
            .map_err(AuthError::Signing)?;
        if token.len() > Self::MAX_TOKEN_LEN {
            return Err(AuthError::TokenTooLong {
                len: token.len(),
                max: Self::MAX_TOKEN_LEN,
            });
        }
        Ok(token)
    }

    /// Verifies `token` and returns the principal it speaks for.
    ///
    /// `token` is the bare compact JWT (no `Bearer ` prefix). The rules are listed on
    /// [`JwtAuth`].
    ///
    /// # Errors
    ///
    /// One [`AuthError`] variant per reason: [`MissingToken`](AuthError::MissingToken),
    /// [`TokenTooLong`](AuthError::TokenTooLong), [`Malformed`](AuthError::Malformed),
    /// [`UnsupportedHeader`](AuthError::UnsupportedHeader),
    /// [`UnsupportedAlgorithm`](AuthError::UnsupportedAlgorithm),
    /// [`AlgorithmMismatch`](AuthError::AlgorithmMismatch),
    /// [`UnknownKeyId`](AuthError::UnknownKeyId), [`BadSignature`](AuthError::BadSignature),
    /// [`Expired`](AuthError::Expired), [`NotYetValid`](AuthError::NotYetValid),
    /// [`WrongAudience`](AuthError::WrongAudience), [`WrongIssuer`](AuthError::WrongIssuer),
    /// [`MissingClaim`](AuthError::MissingClaim), [`InvalidClaim`](AuthError::InvalidClaim),
    /// [`WeakSecret`](AuthError::WeakSecret), and
    /// [`BackendUnavailable`](AuthError::BackendUnavailable).
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > Self::MAX_TOKEN_LEN {
            return Err(AuthError::TokenTooLong {
                len: token.len(),
                max: Self::MAX_TOKEN_LEN,
            });
        }
        if token.trim().is_empty() {
            return Err(AuthError::MissingToken);
        }
        let (algorithm, kid) = parse_header(token)?;
        let key = match kid.as_deref() {
            None => &self.primary,
            Some(kid) => self.keys.get(kid).ok_or(AuthError::UnknownKeyId)?,
        };
        if algorithm != key.algorithm() {
            return Err(AuthError::AlgorithmMismatch {
                expected: algorithm_name(key.algorithm()),
                found: algorithm_name(algorithm),
            });
        }
        key.ensure_strong()?;
        let validation = self.validation(key.algorithm());
        let claims = backend(|| {
            jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding(), &validation)
        })?
        .map_err(classify)?
        .claims;

        let exp = numeric_claim(&claims, "exp", f64::floor)?
            .ok_or(AuthError::MissingClaim { claim: "exp" })?;
        let nbf = numeric_claim(&claims, "nbf", f64::ceil)?;
        if self.issuer.is_some() && !claims.contains_key("iss") {
            return Err(AuthError::MissingClaim { claim: "iss" });
        }
        if self.audience.is_some() && !claims.contains_key("aud") {
            return Err(AuthError::MissingClaim { claim: "aud" });
        }
        let now = (self.clock)();
        if now >= exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(AuthError::NotYetValid);
        }
        Principal::from_claims(claims, exp)
    }

    fn signing_key(&self) -> Result<&JwtKey, AuthError> {
        match &self.signing_kid {
            None => Ok(&self.primary),
            Some(kid) => self.keys.get(kid).ok_or(AuthError::UnknownKeyId),
        }
    }

    /// What `jsonwebtoken` checks: signature, algorithm, and `iss`/`aud` values.
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        // Presence and times are checked in `verify`, against our clock (jsonwebtoken's use
        // the system clock) and with one distinct error per missing claim.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = self.leeway;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
        }
        validation
    }
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("primary", &self.primary)
            .field("keys", &self.keys)
            .field("signing_kid", &self.signing_kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Reads the header's `alg` and `kid` and refuses headers this crate does not support.
///
/// Parsed here rather than by `jsonwebtoken::decode_header` so that `alg: none` (which its
/// `Algorithm` cannot represent) is reported as an unsupported algorithm, not as malformed.
fn parse_header(token: &str) -> Result<(Algorithm, Option<String>), AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(ErrorKind::InvalidToken.into()));
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|error| AuthError::Malformed(error.into()))?;
    let header: RawHeader =
        serde_json::from_slice(&json).map_err(|error| AuthError::Malformed(error.into()))?;
    if header
        .typ
        .as_deref()
        .is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))
    {
        return Err(AuthError::UnsupportedHeader { field: "typ" });
    }
    // RFC 7515: extensions listed in `crit` must be understood; we understand none.
    if header.crit.is_some() {
        return Err(AuthError::UnsupportedHeader { field: "crit" });
    }
    let algorithm = Algorithm::from_str(&header.alg).map_err(AuthError::UnsupportedAlgorithm)?;
    Ok((algorithm, header.kid))
}

/// Maps a `jsonwebtoken` decoding error to the variant that names its reason.
fn classify(error: JwtError) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature(error),
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer(error),
        ErrorKind::InvalidAudience => AuthError::WrongAudience(error),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm(error),
        ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidEcdsaKey => AuthError::BadKey(error),
        _ => AuthError::Malformed(error),
    }
}

/// Reads a NumericDate claim: an unsigned integer, or a finite non-negative number rounded
/// towards the strict side with `round`.
fn numeric_claim(
    claims: &Map<String, Value>,
    claim: &'static str,
    round: fn(f64) -> f64,
) -> Result<Option<u64>, AuthError> {
    let Some(value) = claims.get(claim) else {
        return Ok(None);
    };
    if let Some(seconds) = value.as_u64() {
        return Ok(Some(seconds));
    }
    match value.as_f64().map(round) {
        // The guard keeps the rounded value in range, so the cast cannot saturate.
        Some(seconds) if seconds.is_finite() && (0.0..u64::MAX as f64).contains(&seconds) => {
            Ok(Some(seconds as u64))
        }
        _ => Err(AuthError::InvalidClaim { claim }),
    }
}

/// Signs and verifies a dummy token with a built-in key, proving the backend works.
fn backend_self_test() -> Result<(), AuthError> {
    const SECRET: &[u8] = b"distributed-scope-auth backend self-test";
    let auth = JwtAuth::hs256(SECRET);
    let token = auth
        .issue("self-test", &[], Duration::from_secs(60))
        .map_err(|error| match error {
            AuthError::BackendUnavailable => error,
            other => AuthError::SelfTest(Box::new(other)),
        })?;
    auth.verify(&token).map_err(|error| match error {
        AuthError::BackendUnavailable => error,
        other => AuthError::SelfTest(Box::new(other)),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use jsonwebtoken::EncodingKey;
    use serde_json::json;

    use super::*;
    use crate::key::test_keys::{ed25519, rsa2048};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
    const START: u64 = 1_700_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    /// A clock the test moves by hand.
    struct TestClock(Arc<AtomicU64>);

    impl TestClock {
        fn new() -> (Self, Clock) {
            let now = Arc::new(AtomicU64::new(START));
            let reader = Arc::clone(&now);
            (Self(now), Arc::new(move || reader.load(Ordering::SeqCst)))
        }

        fn set(&self, now: u64) {
            self.0.store(now, Ordering::SeqCst);
        }
    }

    fn hs256() -> (JwtAuth, TestClock) {
        let (clock, source) = TestClock::new();
        (JwtAuth::hs256(SECRET).with_clock(source), clock)
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    /// A hand-made token; HS256-signed with `secret` if given, else with an empty signature.
    fn craft(header: &Value, claims: &Value, secret: Option<&[u8]>) -> String {
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature = match secret {
            Some(secret) => jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &EncodingKey::from_secret(secret),
                Algorithm::HS256,
            )
            .unwrap(),
            None => String::new(),
        };
        format!("{message}.{signature}")
    }

    fn valid_claims() -> Value {
        json!({"sub": "alice", "roles": ["viewer"], "exp": START + 3600})
    }

    #[test]
    fn hs256_round_trip() {
        let (auth, _clock) = hs256();
        let auth = auth.with_issuer("issuer").with_audience("audience");
        auth.check().unwrap();
        let token = auth.issue("reader", &["viewer", "editor"], HOUR).unwrap();
        let principal = auth.verify(&token).unwrap();
        assert_eq!(principal.subject(), "reader");
        assert_eq!(principal.roles(), ["viewer", "editor"]);
        assert_eq!(principal.expires_at(), START + 3600);
        let claims = principal.claims();
        assert_eq!(claims["iss"], "issuer");
        assert_eq!(claims["aud"], "audience");
        assert_eq!(claims["iat"], START);
        assert_eq!(claims["nbf"], START);
        assert_eq!(claims["exp"], START + 3600);
    }

    #[test]
    fn issued_peers_claim_round_trips_and_is_absent_when_empty() {
        let (auth, _clock) = hs256();
        let token = auth
            .issue_with_peers("deployer", &[], &["payments", "billing"], HOUR)
            .unwrap();
        assert_eq!(
            auth.verify(&token).unwrap().peers(),
            ["payments", "billing"]
        );
        let plain = auth.issue("guest", &[], HOUR).unwrap();
        let principal = auth.verify(&plain).unwrap();
        assert!(principal.peers().is_empty());
        assert!(!principal.claims().contains_key("peers"));
        assert_eq!(principal.nonce(), None);
        let proof = auth
            .issue_proof("payments", &[], &["payments"], "00ff", HOUR)
            .unwrap();
        assert_eq!(auth.verify(&proof).unwrap().nonce(), Some("00ff"));
        let grant = auth
            .issue_grant(
                "guest",
                &["viewer"],
                "0a0b",
                Some(&["app::lookup*"]),
                &[],
                HOUR,
            )
            .unwrap();
        let granted = auth.verify(&grant).unwrap();
        assert_eq!((granted.subject(), granted.root()), ("guest", Some("0a0b")));
        assert_eq!(granted.blocks(), Some(vec!["app::lookup*"]));
        assert_eq!(principal.blocks(), None);
    }

    #[test]
    fn issued_header_is_typed_and_has_no_kid_by_default() {
        let (auth, _clock) = hs256();
        let token = auth.issue("reader", &[], HOUR).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid, None);
    }

    #[test]
    fn check_refuses_a_short_secret() {
        let auth = JwtAuth::hs256(b"only 31 bytes long, not enough!");
        assert!(matches!(
            auth.check(),
            Err(AuthError::WeakSecret { min: 32 })
        ));
        assert!(JwtAuth::hs256([9u8; 32]).check().is_ok());
    }

    #[test]
    fn check_refuses_a_short_rotated_secret() {
        let auth = JwtAuth::hs256(SECRET).with_key("old", JwtKey::hs256(b"short"));
        assert!(matches!(auth.check(), Err(AuthError::WeakSecret { .. })));
    }

    #[test]
    fn weak_secret_is_refused_by_issue_and_verify() {
        let weak = JwtAuth::hs256(b"short");
        assert!(matches!(
            weak.issue("a", &[], HOUR),
            Err(AuthError::WeakSecret { .. })
        ));
        let token = craft(
            &json!({"alg": "HS256"}),
            &json!({"sub": "a", "exp": u64::MAX / 2}),
            Some(b"short"),
        );
        assert!(matches!(
            weak.verify(&token),
            Err(AuthError::WeakSecret { .. })
        ));
    }

    #[test]
    fn check_passes_for_verify_only_keys() {
        let pair = rsa2048();
        JwtAuth::rs256_pem(&pair.public).unwrap().check().unwrap();
    }

    #[test]
    fn rs256_round_trip() {
        let pair = rsa2048();
        let (_clock, source) = TestClock::new();
        let issuer = JwtAuth::rs256_pem(&pair.public)
            .unwrap()
            .with_signing_pem(&pair.private)
            .unwrap()
            .with_clock(Arc::clone(&source));
        issuer.check().unwrap();
        let token = issuer.issue("svc", &["worker"], HOUR).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().alg,
            Algorithm::RS256
        );

        let verifier = JwtAuth::rs256_pem(&pair.public).unwrap().with_clock(source);
        let principal = verifier.verify(&token).unwrap();
        assert_eq!(principal.subject(), "svc");
        assert_eq!(principal.roles(), ["worker"]);
    }

    #[test]
    fn eddsa_round_trip() {
        let pair = ed25519();
        let (_clock, source) = TestClock::new();
        let issuer = JwtAuth::eddsa_pem(&pair.public)
            .unwrap()
            .with_signing_pem(&pair.private)
            .unwrap()
            .with_clock(Arc::clone(&source));
        issuer.check().unwrap();
        let token = issuer.issue("edge", &["viewer"], HOUR).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().alg,
            Algorithm::EdDSA
        );
        let verifier = JwtAuth::eddsa_pem(&pair.public).unwrap().with_clock(source);
        assert_eq!(verifier.verify(&token).unwrap().subject(), "edge");
    }

    #[test]
    fn public_key_alone_cannot_issue() {
        let pair = ed25519();
        let auth = JwtAuth::eddsa_pem(&pair.public).unwrap();
        assert!(matches!(
            auth.issue("x", &[], HOUR),
            Err(AuthError::CannotIssue)
        ));
    }

    #[test]
    fn rejects_token_signed_by_another_key_pair() {
        let ours = ed25519();
        let theirs = ed25519();
        let forger = JwtAuth::eddsa_pem(&theirs.public)
            .unwrap()
            .with_signing_pem(&theirs.private)
            .unwrap();
        let token = forger.issue("mallory", &["admin"], HOUR).unwrap();
        let verifier = JwtAuth::eddsa_pem(&ours.public).unwrap();
        assert!(matches!(
            verifier.verify(&token),
            Err(AuthError::BadSignature(_))
        ));
    }

    #[test]
    fn rejects_missing_token() {
        let (auth, _clock) = hs256();
        assert!(matches!(auth.verify(""), Err(AuthError::MissingToken)));
        assert!(matches!(auth.verify("  \t"), Err(AuthError::MissingToken)));
    }

    #[test]
    fn rejects_malformed_tokens() {
        let (auth, _clock) = hs256();
        let good = auth.issue("a", &[], HOUR).unwrap();
        let (header, rest) = good.split_once('.').unwrap();
        for bad in [
            "abc".to_owned(),
            "a.b".to_owned(),
            format!("{good}.extra"),
            format!("!!!.{rest}"),
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.{rest}", b64(&json!({"typ": "JWT"}))),
            format!("{header}.!!!.sig"),
            format!("{header}.{}.", URL_SAFE_NO_PAD.encode("not json")),
        ] {
            let result = auth.verify(&bad);
            assert!(
                matches!(
                    result,
                    Err(AuthError::Malformed(_) | AuthError::BadSignature(_))
                ),
                "{bad}: {result:?}"
            );
        }
        assert!(matches!(auth.verify("abc"), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn rejects_alg_none() {
        let (auth, _clock) = hs256();
        let token = craft(&json!({"alg": "none", "typ": "JWT"}), &valid_claims(), None);
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
        let token = craft(&json!({"alg": "None"}), &valid_claims(), None);
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn rejects_wrong_secret() {
        let (auth, _clock) = hs256();
        let token = craft(
            &json!({"alg": "HS256"}),
            &valid_claims(),
            Some(b"another secret that is long enough!!"),
        );
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::BadSignature(_))
        ));
    }

    #[test]
    fn rejects_rs256_public_key_used_as_hs256_secret() {
        let pair = rsa2048();
        let (_clock, source) = TestClock::new();
        let auth = JwtAuth::rs256_pem(&pair.public).unwrap().with_clock(source);
        let forged = craft(
            &json!({"alg": "HS256", "typ": "JWT"}),
            &valid_claims(),
            Some(&pair.public),
        );
        assert!(matches!(
            auth.verify(&forged),
            Err(AuthError::AlgorithmMismatch {
                expected: "RS256",
                found: "HS256"
            })
        ));
    }

    #[test]
    fn rejects_other_algorithms_for_an_hs256_key() {
        let (auth, _clock) = hs256();
        for alg in ["HS512", "RS256", "EdDSA"] {
            let token = craft(&json!({ "alg": alg }), &valid_claims(), Some(SECRET));
            assert!(
                matches!(
                    auth.verify(&token),
                    Err(AuthError::AlgorithmMismatch {
                        expected: "HS256",
                        ..
                    })
                ),
                "{alg}"
            );
        }
    }

    #[test]
    fn rejects_expired_token_beyond_leeway() {
        let (auth, clock) = hs256();
        let token = auth.issue("a", &[], Duration::from_secs(60)).unwrap();
        clock.set(START + 60 + 30);
        assert!(matches!(auth.verify(&token), Err(AuthError::Expired)));
    }

    #[test]
    fn accepts_expired_token_within_leeway() {
        let (auth, clock) = hs256();
        let token = auth.issue("a", &[], Duration::from_secs(60)).unwrap();
        clock.set(START + 60 + 29);
        assert!(auth.verify(&token).is_ok());
    }

    #[test]
    fn leeway_is_configurable() {
        let (auth, clock) = hs256();
        let strict = auth.clone().with_leeway(Duration::ZERO);
        let lenient = auth.with_leeway(Duration::from_secs(600));
        let token = strict.issue("a", &[], Duration::from_secs(60)).unwrap();
        clock.set(START + 60);
        assert!(matches!(strict.verify(&token), Err(AuthError::Expired)));
        assert!(lenient.verify(&token).is_ok());
    }

    #[test]
    fn rejects_token_not_yet_valid() {
        let (auth, clock) = hs256();
        let token = auth.issue("a", &[], HOUR).unwrap();
        clock.set(START - 31);
        assert!(matches!(auth.verify(&token), Err(AuthError::NotYetValid)));
        clock.set(START - 30);
        assert!(auth.verify(&token).is_ok());
    }

    #[test]
    fn rejects_missing_or_non_numeric_exp() {
        let (auth, _clock) = hs256();
        let token = craft(&json!({"alg": "HS256"}), &json!({"sub": "a"}), Some(SECRET));
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::MissingClaim { claim: "exp" })
        ));
        let token = craft(
            &json!({"alg": "HS256"}),
            &json!({"sub": "a", "exp": "tomorrow"}),
            Some(SECRET),
        );
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::InvalidClaim { claim: "exp" })
        ));
    }

    #[test]
    fn accepts_fractional_numeric_dates() {
        let (auth, _clock) = hs256();
        let token = craft(
            &json!({"alg": "HS256"}),
            &json!({"sub": "a", "exp": (START + 100) as f64 + 0.5, "nbf": START as f64 - 0.5}),
            Some(SECRET),
        );
        assert_eq!(auth.verify(&token).unwrap().expires_at(), START + 100);
    }

    #[test]
    fn rejects_wrong_or_missing_audience() {
        let (auth, _clock) = hs256();
        let auth = auth.with_audience("api");
        let other = auth.clone().with_audience("other");
        let token = other.issue("a", &[], HOUR).unwrap();
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::WrongAudience(_))
        ));
        let token = craft(&json!({"alg": "HS256"}), &valid_claims(), Some(SECRET));
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::MissingClaim { claim: "aud" })
        ));
    }

    #[test]
    fn accepts_audience_arrays_naming_us() {
        let (auth, _clock) = hs256();
        let auth = auth.with_audience("api");
        let mut claims = valid_claims();
        claims["aud"] = json!(["web", "api"]);
        let token = craft(&json!({"alg": "HS256"}), &claims, Some(SECRET));
        assert!(auth.verify(&token).is_ok());
    }

    #[test]
    fn rejects_audience_when_none_is_configured() {
        let (auth, _clock) = hs256();
        let mut claims = valid_claims();
        claims["aud"] = json!("someone-else");
        let token = craft(&json!({"alg": "HS256"}), &claims, Some(SECRET));
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::WrongAudience(_))
        ));
    }

    #[test]
    fn rejects_wrong_or_missing_issuer() {
        let (auth, _clock) = hs256();
        let auth = auth.with_issuer("us");
        let token = auth
            .clone()
            .with_issuer("them")
            .issue("a", &[], HOUR)
            .unwrap();
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::WrongIssuer(_))
        ));
        let token = craft(&json!({"alg": "HS256"}), &valid_claims(), Some(SECRET));
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::MissingClaim { claim: "iss" })
        ));
    }

    #[test]
    fn rejects_unknown_kid() {
        let (auth, _clock) = hs256();
        for kid in ["nope", "../../etc/passwd", "", "http://evil.example/key"] {
            let token = craft(
                &json!({"alg": "HS256", "kid": kid}),
                &valid_claims(),
                Some(SECRET),
            );
            assert!(
                matches!(auth.verify(&token), Err(AuthError::UnknownKeyId)),
                "{kid}"
            );
        }
    }

    #[test]
    fn accepts_every_rotated_key_until_removed() {
        let (auth, _clock) = hs256();
        let old_secret = b"the old secret, 32 bytes or longer";
        let new_secret = b"the new secret, 32 bytes or longer";
        let auth = auth
            .with_key("old", JwtKey::hs256(old_secret))
            .with_key("new", JwtKey::hs256(new_secret));
        auth.check().unwrap();
        let old_token = auth
            .clone()
            .with_signing_kid("old")
            .issue("a", &[], HOUR)
            .unwrap();
        let new_token = auth
            .clone()
            .with_signing_kid("new")
            .issue("b", &[], HOUR)
            .unwrap();
        let primary_token = auth.issue("c", &[], HOUR).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&old_token)
                .unwrap()
                .kid
                .as_deref(),
            Some("old")
        );
        assert_eq!(auth.verify(&old_token).unwrap().subject(), "a");
        assert_eq!(auth.verify(&new_token).unwrap().subject(), "b");
        assert_eq!(auth.verify(&primary_token).unwrap().subject(), "c");

        let rotated = auth.without_key("old");
        assert!(matches!(
            rotated.verify(&old_token),
            Err(AuthError::UnknownKeyId)
        ));
        assert!(rotated.verify(&new_token).is_ok());
    }

    #[test]
    fn kid_selects_the_key_not_the_algorithm() {
        let pair = ed25519();
        let (auth, _clock) = hs256();
        let auth = auth.with_key("ed", JwtKey::eddsa_pem(&pair.public).unwrap());
        // An HS256 token naming the Ed25519 key, signed with its public PEM as HMAC secret.
        let forged = craft(
            &json!({"alg": "HS256", "kid": "ed"}),
            &valid_claims(),
            Some(&pair.public),
        );
        assert!(matches!(
            auth.verify(&forged),
            Err(AuthError::AlgorithmMismatch {
                expected: "EdDSA",
                ..
            })
        ));
    }

    #[test]
    fn signing_with_an_unknown_kid_is_reported() {
        let (auth, _clock) = hs256();
        let auth = auth.with_signing_kid("missing");
        assert!(matches!(auth.check(), Err(AuthError::UnknownKeyId)));
        assert!(matches!(
            auth.issue("a", &[], HOUR),
            Err(AuthError::UnknownKeyId)
        ));
    }

    #[test]
    fn rejects_unexpected_typ_and_crit() {
        let (auth, _clock) = hs256();
        let token = craft(
            &json!({"alg": "HS256", "typ": "something-else"}),
            &valid_claims(),
            Some(SECRET),
        );
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::UnsupportedHeader { field: "typ" })
        ));
        let token = craft(
            &json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
            &valid_claims(),
            Some(SECRET),
        );
        assert!(matches!(
            auth.verify(&token),
            Err(AuthError::UnsupportedHeader { field: "crit" })
        ));
    }

    #[test]
    fn accepts_absent_or_jwt_typ() {
        let (auth, _clock) = hs256();
        for header in [
            json!({"alg": "HS256"}),
            json!({"alg": "HS256", "typ": "JWT"}),
        ] {
            let token = craft(&header, &valid_claims(), Some(SECRET));
            assert!(auth.verify(&token).is_ok());
        }
    }

    #[test]
    fn rejects_huge_token_fast() {
        let (auth, _clock) = hs256();
        let huge = "a".repeat(1024 * 1024);
        let started = Instant::now();
        let result = auth.verify(&huge);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(matches!(
            result,
            Err(AuthError::TokenTooLong {
                len: 1_048_576,
                max: JwtAuth::MAX_TOKEN_LEN
            })
        ));
    }

    #[test]
    fn refuses_to_issue_a_token_too_long_to_verify() {
        let (auth, _clock) = hs256();
        let roles = vec!["role-with-a-long-name"; 1000];
        assert!(matches!(
            auth.issue("a", &roles, HOUR),
            Err(AuthError::TokenTooLong { .. })
        ));
    }

    #[test]
    fn principal_carries_custom_claims_from_the_token() {
        let (auth, _clock) = hs256();
        let mut claims = valid_claims();
        claims["tenant"] = json!("acme");
        let token = craft(&json!({"alg": "HS256"}), &claims, Some(SECRET));
        let principal = auth.verify(&token).unwrap();
        assert_eq!(principal.subject(), "alice");
        assert_eq!(principal.roles(), ["viewer"]);
        assert_eq!(principal.claims()["tenant"], "acme");
        assert_eq!(principal.expires_at(), START + 3600);
    }

    #[test]
    fn rejects_empty_subject() {
        let (auth, _clock) = hs256();
        assert!(matches!(
            auth.issue("", &[], HOUR),
            Err(AuthError::InvalidClaim { claim: "sub" })
        ));
    }

    #[test]
    fn errors_and_debug_output_do_not_leak_the_secret() {
        let (auth, _clock) = hs256();
        let secret = std::str::from_utf8(SECRET).unwrap();
        assert!(!format!("{auth:?}").contains(secret));
        let token = craft(&json!({"alg": "HS256"}), &valid_claims(), Some(b"wrong"));
        let error = auth.verify(&token).unwrap_err();
        let mut rendered = format!("{error} {error:?}");
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            rendered.push_str(&cause.to_string());
            source = cause.source();
        }
        assert!(!rendered.contains(secret), "{rendered}");
    }

    #[test]
    fn jwt_errors_are_kept_as_source() {
        let (auth, _clock) = hs256();
        let token = craft(&json!({"alg": "HS256"}), &valid_claims(), Some(b"wrong"));
        let error = auth.verify(&token).unwrap_err();
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn auth_is_shareable_across_threads() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<JwtAuth>();
        assert_shareable::<crate::Policy>();
        assert_shareable::<Principal>();
    }
}
