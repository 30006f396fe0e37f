//! Who is calling: the verified identity behind a link.

use serde_json::{Map, Value};

use crate::AuthError;

/// The identity a verified token speaks for: its subject, its roles and its raw claims.
///
/// A `Principal` is produced by [`JwtAuth::verify`](crate::JwtAuth::verify) (or built
/// locally with [`Principal::new`] for tests and tooling). It deliberately implements neither
/// `Serialize` nor `Deserialize`: a principal is never taken from the wire.
///
/// # Examples
///
/// ```
/// use distributed_scope_auth::Principal;
///
/// let reader = Principal::new("reader", ["viewer"]);
/// assert_eq!(reader.subject(), "reader");
/// assert!(reader.has_role("viewer"));
/// assert!(!reader.has_role("admin"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    subject: String,
    roles: Vec<String>,
    peers: Vec<String>,
    expires_at: u64,
    claims: Map<String, Value>,
}

impl Principal {
    /// A principal that never expires, with `sub` and `roles` as its only claims.
    ///
    /// `roles` takes anything iterable over strings: `["viewer"]`, `&["a", "b"]`, a
    /// `Vec<String>`.
    pub fn new(
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Self {
        let subject = subject.into();
        let roles: Vec<String> = roles
            .into_iter()
            .map(|role| role.as_ref().to_owned())
            .collect();
        let mut claims = Map::new();
        claims.insert("sub".to_owned(), Value::String(subject.clone()));
        claims.insert(
            "roles".to_owned(),
            Value::Array(roles.iter().cloned().map(Value::String).collect()),
        );
        Self {
            subject,
            roles,
            peers: Vec::new(),
            expires_at: u64::MAX,
            claims,
        }
    }

    /// The same principal, also allowed to link as the peers `peers` names (see
    /// [`peers`](Self::peers)): for tests and tooling, as a token's `peers` claim would.
    #[must_use]
    pub fn with_peers(mut self, peers: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.peers = peers
            .into_iter()
            .map(|peer| peer.as_ref().to_owned())
            .collect();
        self.claims.insert(
            "peers".to_owned(),
            Value::Array(self.peers.iter().cloned().map(Value::String).collect()),
        );
        self
    }

    /// Builds the principal of a token whose signature and times were already verified.
    ///
    /// `sub` must be a non-empty string; `roles` and `peers`, if present, arrays of strings.
    #[cfg_attr(
        target_arch = "wasm32",
        expect(dead_code, reason = "tokens are verified natively only")
    )]
    pub(crate) fn from_claims(
        claims: Map<String, Value>,
        expires_at: u64,
    ) -> Result<Self, AuthError> {
        let subject = match claims.get("sub") {
            Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
            Some(_) => return Err(AuthError::InvalidClaim { claim: "sub" }),
            None => return Err(AuthError::MissingClaim { claim: "sub" }),
        };
        let roles = match claims.get("roles") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(roles)) => roles
                .iter()
                .map(|role| role.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(AuthError::InvalidClaim { claim: "roles" })?,
            Some(_) => return Err(AuthError::InvalidClaim { claim: "roles" }),
        };
        let peers = match claims.get("peers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(peers)) => peers
                .iter()
                .map(|peer| peer.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(AuthError::InvalidClaim { claim: "peers" })?,
            Some(_) => return Err(AuthError::InvalidClaim { claim: "peers" }),
        };
        Ok(Self {
            subject,
            roles,
            peers,
            expires_at,
            claims,
        })
    }

    /// The token's `sub` claim.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The token's `roles` claim (empty if the token had none).
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The token's `peers` claim (empty if the token had none): the peers this principal
    /// may link as besides the one named after its subject, each a peer name (as given to
    /// `PeerId::from_name`) or a peer id's UUID.
    ///
    /// A peer with auth lets an authenticated link claim a named peer id only if it is
    /// `PeerId::from_name(subject)` or listed here; random ids stay open to any link.
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// The token's `nonce` claim, if it has one: what a proof of identity was bound to
    /// (see [`JwtAuth::issue_proof`](crate::JwtAuth::issue_proof)).
    pub fn nonce(&self) -> Option<&str> {
        self.claims.get("nonce").and_then(serde_json::Value::as_str)
    }

    /// The token's `root` claim, if it is a grant of authority for one root call (see
    /// [`JwtAuth::issue_grant`](crate::JwtAuth::issue_grant)): the root block's id.
    pub fn root(&self) -> Option<&str> {
        self.claims.get("root").and_then(serde_json::Value::as_str)
    }

    /// The token's `blocks` claim, if it narrows what its holder may run: block-name globs.
    /// `None` means no narrowing; a claim that is not an array of strings narrows to nothing.
    pub fn blocks(&self) -> Option<Vec<&str>> {
        let blocks = self.claims.get("blocks")?;
        let globs = blocks
            .as_array()
            .map(|globs| globs.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        Some(globs)
    }

    /// Whether `role` is one of [`roles`](Self::roles) (exact, case-sensitive match).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|own| own == role)
    }

    /// When the token stops being valid, in unix seconds: its `exp` claim, without leeway.
    ///
    /// The runtime closes a link when its token expires. A principal built with
    /// [`Principal::new`] returns `u64::MAX`.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// All claims of the token, as sent (registered and custom ones).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test claims are objects"),
        }
    }

    #[test]
    fn local_principal_has_subject_roles_and_no_expiry() {
        let roles: &[&str] = &["viewer", "editor"];
        let principal = Principal::new("reader", roles);
        assert_eq!(principal.subject(), "reader");
        assert_eq!(principal.roles(), ["viewer", "editor"]);
        assert!(principal.has_role("editor"));
        assert!(!principal.has_role("Editor"));
        assert_eq!(principal.expires_at(), u64::MAX);
        assert_eq!(principal.claims()["sub"], "reader");
        assert_eq!(principal.claims()["roles"], json!(["viewer", "editor"]));
    }

    #[test]
    fn local_principal_accepts_owned_roles() {
        let principal = Principal::new(String::from("x"), vec![String::from("a")]);
        assert_eq!(principal.roles(), ["a"]);
        assert!(Principal::new("y", Vec::<String>::new()).roles().is_empty());
    }

    #[test]
    fn reads_the_peers_claim_and_refuses_a_malformed_one() {
        let raw = claims(json!({"sub": "deployer", "peers": ["payments", "billing"]}));
        let principal = Principal::from_claims(raw, 1).unwrap();
        assert_eq!(principal.peers(), ["payments", "billing"]);
        let none = Principal::from_claims(claims(json!({"sub": "guest"})), 1).unwrap();
        assert!(none.peers().is_empty());
        for bad in [json!("payments"), json!([1]), json!({"a": "b"})] {
            let raw = claims(json!({"sub": "guest", "peers": bad}));
            assert!(matches!(
                Principal::from_claims(raw, 1),
                Err(AuthError::InvalidClaim { claim: "peers" })
            ));
        }
        let built = Principal::new("tool", ["ops"]).with_peers(["payments"]);
        assert_eq!(built.peers(), ["payments"]);
        assert_eq!(built.claims()["peers"], json!(["payments"]));
    }

    #[test]
    fn reads_subject_roles_and_custom_claims() {
        let raw = claims(json!({"sub": "alice", "roles": ["viewer"], "tenant": "acme"}));
        let principal = Principal::from_claims(raw, 42).unwrap();
        assert_eq!(principal.subject(), "alice");
        assert_eq!(principal.roles(), ["viewer"]);
        assert_eq!(principal.expires_at(), 42);
        assert_eq!(principal.claims()["tenant"], "acme");
    }

    #[test]
    fn missing_roles_means_no_roles() {
        let principal = Principal::from_claims(claims(json!({"sub": "bob"})), 1).unwrap();
        assert!(principal.roles().is_empty());
    }

    #[test]
    fn rejects_missing_or_invalid_subject() {
        let missing = Principal::from_claims(claims(json!({"roles": []})), 1);
        assert!(matches!(
            missing,
            Err(AuthError::MissingClaim { claim: "sub" })
        ));
        for sub in [json!(""), json!(7), json!(null)] {
            let invalid = Principal::from_claims(claims(json!({ "sub": sub })), 1);
            assert!(matches!(
                invalid,
                Err(AuthError::InvalidClaim { claim: "sub" })
            ));
        }
    }

    #[test]
    fn rejects_non_string_roles() {
        for roles in [json!("admin"), json!([1]), json!(["ok", null])] {
            let invalid = Principal::from_claims(claims(json!({"sub": "x", "roles": roles})), 1);
            assert!(matches!(
                invalid,
                Err(AuthError::InvalidClaim { claim: "roles" })
            ));
        }
    }
}
