//! The one error type of this crate.

/// Why a token was refused, a key was rejected or a policy could not be loaded.
///
/// Messages are short and lowercase, and never contain key material or the token itself.
/// When the cause comes from `jsonwebtoken`, it is kept as the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented (the string is empty or only whitespace).
    #[error("missing token")]
    MissingToken,

    /// The token is longer than [`JwtAuth::MAX_TOKEN_LEN`](crate::JwtAuth::MAX_TOKEN_LEN)
    /// and was refused before any parsing.
    #[error("token too long: {len} bytes, limit {max}")]
    TokenTooLong {
        /// Length of the presented token in bytes.
        len: usize,
        /// The configured limit in bytes.
        max: usize,
    },

    /// The token is not a well-formed compact JWS (bad shape, base64 or JSON).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("malformed token")]
    Malformed(#[source] jsonwebtoken::errors::Error),

    /// The token header carries a field this crate refuses: a `typ` other than `JWT`, or `crit`.
    #[error("unsupported token header `{field}`")]
    UnsupportedHeader {
        /// Name of the offending header field.
        field: &'static str,
    },

    /// The header's `alg` is not an algorithm this crate can verify (for example `none`).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm(#[source] jsonwebtoken::errors::Error),

    /// The header's `alg` differs from the algorithm its key is pinned to.
    #[error("token algorithm {found} does not match key algorithm {expected}")]
    AlgorithmMismatch {
        /// The algorithm the selected key is pinned to.
        expected: &'static str,
        /// The algorithm named by the token header.
        found: &'static str,
    },

    /// The header's `kid` names no configured key (or the configured signing `kid` is missing).
    #[error("unknown key id")]
    UnknownKeyId,

    /// The signature does not verify with the selected key.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("invalid token signature")]
    BadSignature(#[source] jsonwebtoken::errors::Error),

    /// The token's `exp` is in the past, beyond the configured leeway.
    #[error("token expired")]
    Expired,

    /// The token's `nbf` is in the future, beyond the configured leeway.
    #[error("token not yet valid")]
    NotYetValid,

    /// The token's `aud` does not name the configured audience.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("wrong token audience")]
    WrongAudience(#[source] jsonwebtoken::errors::Error),

    /// The token's `iss` is not the configured issuer.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("wrong token issuer")]
    WrongIssuer(#[source] jsonwebtoken::errors::Error),

    /// A claim required by the configuration (`exp`, `sub`, or a configured `iss`/`aud`) is absent.
    #[error("missing `{claim}` claim")]
    MissingClaim {
        /// Name of the missing claim.
        claim: &'static str,
    },

    /// A claim is present but has the wrong type (for example a string `exp` or non-string roles).
    #[error("invalid `{claim}` claim")]
    InvalidClaim {
        /// Name of the invalid claim.
        claim: &'static str,
    },

    /// An HS256 secret is shorter than
    /// [`JwtKey::MIN_SECRET_LEN`](crate::JwtKey::MIN_SECRET_LEN) bytes.
    #[error("hs256 secret shorter than {min} bytes")]
    WeakSecret {
        /// The minimum secret length in bytes.
        min: usize,
    },

    /// A PEM key could not be parsed or is not the kind of key expected (public vs private,
    /// RSA vs Ed25519, RSA modulus under 2048 bits).
    #[cfg(not(target_arch = "wasm32"))]
    #[error("invalid key")]
    BadKey(#[source] jsonwebtoken::errors::Error),

    /// A signing key was given that does not belong to the verification key it was added to.
    #[error("signing key does not match the verification key")]
    KeyMismatch,

    /// [`JwtAuth::issue`](crate::JwtAuth::issue) was called but the signing key has no
    /// private part (add one with `with_signing_pem`).
    #[error("cannot issue tokens: no signing key")]
    CannotIssue,

    /// Signing a token failed inside the crypto backend.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("token signing failed")]
    Signing(#[source] jsonwebtoken::errors::Error),

    /// The `jsonwebtoken` crypto backend is missing or ambiguous (it panicked when used).
    ///
    /// This happens when neither or both of its `aws_lc_rs` and `rust_crypto` features are
    /// enabled in the final build; install one explicitly with
    /// `jsonwebtoken::crypto::CryptoProvider::install_default`.
    #[error("jwt crypto backend unavailable")]
    BackendUnavailable,

    /// The start-up self-test (sign and verify a dummy token) failed.
    #[error("jwt self-test failed")]
    SelfTest(#[source] Box<AuthError>),

    /// A policy document could not be parsed.
    #[error("invalid policy")]
    BadPolicy(#[source] serde_json::Error),
}
