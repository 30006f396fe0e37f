//! Keys: each pinned to one algorithm, with an optional signing half.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::AuthError;

/// Message signed and verified to prove that a private key matches its public key.
const PROBE: &[u8] = b"distributed-scope-auth key probe";

/// A verification key pinned to exactly one algorithm, optionally with its signing half.
///
/// A token is only ever verified with the algorithm its key was built for, whatever its
/// header says: an RS256 public key is never used as an HS256 secret, and `alg: none` is
/// never accepted.
///
/// Use it with [`JwtAuth::with_key`](crate::JwtAuth::with_key) to accept several keys at
/// once (rotation), or with [`JwtAuth::new`](crate::JwtAuth::new) as the primary key.
///
/// # Examples
///
/// ```
/// use distributed_scope_auth::{JwtAuth, JwtKey};
///
/// let auth = JwtAuth::hs256(b"the current secret, at least 32 bytes")
///     .with_key("2024-01", JwtKey::hs256(b"last year's secret, at least 32 bytes"));
/// # auth.check().unwrap();
/// ```
#[derive(Clone)]
pub struct JwtKey {
    algorithm: Algorithm,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    /// Length of the HS256 secret, kept so that a weak secret is reported by `check`.
    secret_len: Option<usize>,
}

impl JwtKey {
    /// The shortest HS256 secret accepted, in bytes (the output size of SHA-256).
    pub const MIN_SECRET_LEN: usize = 32;

    /// An HS256 shared secret, which both verifies and signs.
    ///
    /// This never fails: a secret shorter than [`JwtKey::MIN_SECRET_LEN`] bytes is reported by
    /// [`JwtAuth::check`](crate::JwtAuth::check) (which a peer runs when it starts) and
    /// refused by every `issue` and `verify` that would use it.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        Self {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret),
            encoding: Some(EncodingKey::from_secret(secret)),
            secret_len: Some(secret.len()),
        }
    }

    /// An RS256 public key in PEM form (`PUBLIC KEY` or `RSA PUBLIC KEY`), verify only.
    ///
    /// # Errors
    ///
    /// [`AuthError::BadKey`] if the PEM is not an RSA public key or its modulus is shorter
    /// than 2048 bits.
    pub fn rs256_pem(public_pem: &[u8]) -> Result<Self, AuthError> {
        let decoding = DecodingKey::from_rsa_pem(public_pem).map_err(AuthError::BadKey)?;
        let der = decoding.try_get_as_bytes().map_err(AuthError::BadKey)?;
        // The PEM decoder accepts private keys too; parsing the DER as a public key catches
        // that now instead of failing every signature later.
        let (modulus, _exponent) = (jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_public_key)(der)
        .map_err(AuthError::BadKey)?;
        if significant_bits(&modulus) < 2048 {
            return Err(AuthError::BadKey(
                ErrorKind::InvalidRsaKey("modulus shorter than 2048 bits".to_owned()).into(),
            ));
        }
        Ok(Self {
            algorithm: Algorithm::RS256,
            decoding,
            encoding: None,
            secret_len: None,
        })
    }

    /// An Ed25519 (EdDSA) public key in PEM form (`PUBLIC KEY`), verify only.
    ///
    /// # Errors
    ///
    /// [`AuthError::BadKey`] if the PEM is not an Ed25519 public key.
    pub fn eddsa_pem(public_pem: &[u8]) -> Result<Self, AuthError> {
        let decoding = DecodingKey::from_ed_pem(public_pem).map_err(AuthError::BadKey)?;
        let der = decoding.try_get_as_bytes().map_err(AuthError::BadKey)?;
        if der.len() != 32 {
            return Err(AuthError::BadKey(ErrorKind::InvalidEddsaKey.into()));
        }
        Ok(Self {
            algorithm: Algorithm::EdDSA,
            decoding,
            encoding: None,
            secret_len: None,
        })
    }

    /// Adds the private half (PKCS#8 `PRIVATE KEY` PEM; PKCS#1 `RSA PRIVATE KEY` for RS256),
    /// so that tokens can be issued with this key.
    ///
    /// The pair is tested by signing and verifying a probe message.
    ///
    /// # Errors
    ///
    /// [`AuthError::BadKey`] if the PEM is not a usable private key of this key's algorithm
    /// (an HS256 key takes no PEM: its secret already signs), [`AuthError::KeyMismatch`] if
    /// it is not the partner of the public key, [`AuthError::BackendUnavailable`] if the crypto
    /// backend is missing.
    pub fn with_signing_pem(mut self, private_pem: &[u8]) -> Result<Self, AuthError> {
        let encoding = match self.algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem),
            _ => Err(ErrorKind::InvalidKeyFormat.into()),
        }
        .map_err(AuthError::BadKey)?;
        let signature = backend(|| jsonwebtoken::crypto::sign(PROBE, &encoding, self.algorithm))?
            .map_err(AuthError::BadKey)?;
        let matches = backend(|| {
            jsonwebtoken::crypto::verify(&signature, PROBE, &self.decoding, self.algorithm)
        })?
        .map_err(AuthError::BadKey)?;
        if !matches {
            return Err(AuthError::KeyMismatch);
        }
        self.encoding = Some(encoding);
        Ok(self)
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    pub(crate) fn encoding(&self) -> Option<&EncodingKey> {
        self.encoding.as_ref()
    }

    /// Refuses a key that must not be used (an HS256 secret that is too short).
    pub(crate) fn ensure_strong(&self) -> Result<(), AuthError> {
        match self.secret_len {
            Some(len) if len < Self::MIN_SECRET_LEN => Err(AuthError::WeakSecret {
                min: Self::MIN_SECRET_LEN,
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("algorithm", &algorithm_name(self.algorithm))
            .field("can_sign", &self.encoding.is_some())
            .finish_non_exhaustive()
    }
}

/// Runs a call into the `jsonwebtoken` crypto backend, turning its "no provider" panic into
/// [`AuthError::BackendUnavailable`].
///
/// `jsonwebtoken` panics on first use when neither or both of its backends are compiled in;
/// a peer must fail to start instead, and must never panic on a token.
pub(crate) fn backend<T>(call: impl FnOnce() -> T) -> Result<T, AuthError> {
    // Only immutable keys are touched inside, so nothing is left half-updated by an unwind.
    panic::catch_unwind(AssertUnwindSafe(call)).map_err(|panic| {
        drop(panic);
        AuthError::BackendUnavailable
    })
}

/// The JOSE name of an algorithm, for error messages.
pub(crate) fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

/// Bit length of a big-endian unsigned integer.
fn significant_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|byte| *byte != 0) {
        Some(first) => (bytes.len() - first - 1) * 8 + (8 - bytes[first].leading_zeros() as usize),
        None => 0,
    }
}

/// Test-only key material, generated fresh by aws-lc-rs and PEM-encoded.
#[cfg(test)]
pub(crate) mod test_keys {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;

    /// A PEM-encoded key pair: `(public, private)`.
    pub(crate) struct Pair {
        pub(crate) public: Vec<u8>,
        pub(crate) private: Vec<u8>,
    }

    pub(crate) fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in body.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out.into_bytes()
    }

    pub(crate) fn rsa2048() -> Pair {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa key generation");
        let private =
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&pair).expect("pkcs8 encoding");
        let public = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der<'_>>::as_der(pair.public_key())
            .expect("spki encoding");
        Pair {
            public: pem("PUBLIC KEY", public.as_ref()),
            private: pem("PRIVATE KEY", private.as_ref()),
        }
    }

    pub(crate) fn ed25519() -> Pair {
        let pair = Ed25519KeyPair::generate().expect("ed25519 key generation");
        let private = pair.to_pkcs8v1().expect("pkcs8 encoding");
        let public = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der<'_>>::as_der(pair.public_key())
            .expect("spki encoding");
        Pair {
            public: pem("PUBLIC KEY", public.as_ref()),
            private: pem("PRIVATE KEY", private.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::{ed25519, rsa2048};
    use super::*;

    #[test]
    fn short_hs256_secret_is_weak() {
        let error = JwtKey::hs256(b"too short").ensure_strong().unwrap_err();
        assert!(matches!(error, AuthError::WeakSecret { min: 32 }));
        assert!(JwtKey::hs256([7u8; 32]).ensure_strong().is_ok());
    }

    #[test]
    fn rs256_key_accepts_a_public_pem_and_its_private_half() {
        let pair = rsa2048();
        let key = JwtKey::rs256_pem(&pair.public)
            .unwrap()
            .with_signing_pem(&pair.private)
            .unwrap();
        assert_eq!(key.algorithm(), Algorithm::RS256);
        assert!(key.encoding().is_some());
    }

    #[test]
    fn rs256_key_refuses_a_private_pem_as_public_key() {
        let pair = rsa2048();
        assert!(matches!(
            JwtKey::rs256_pem(&pair.private),
            Err(AuthError::BadKey(_))
        ));
    }

    #[test]
    fn rs256_key_refuses_a_short_modulus() {
        // PKCS#1 RSAPublicKey { n: 1024-bit odd modulus, e: 65537 }.
        let mut der = vec![0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00, 0xc3];
        der.extend([0x5a; 126]);
        der.push(0x01);
        der.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
        let pem = test_keys::pem("RSA PUBLIC KEY", &der);
        let Err(AuthError::BadKey(source)) = JwtKey::rs256_pem(&pem) else {
            panic!("a 1024-bit modulus must be refused");
        };
        assert!(source.to_string().contains("2048"), "{source}");
    }

    #[test]
    fn refuses_garbage_pem() {
        assert!(matches!(
            JwtKey::rs256_pem(b"not a pem"),
            Err(AuthError::BadKey(_))
        ));
        assert!(matches!(
            JwtKey::eddsa_pem(b"not a pem"),
            Err(AuthError::BadKey(_))
        ));
    }

    #[test]
    fn eddsa_key_refuses_an_rsa_pem() {
        let pair = rsa2048();
        assert!(matches!(
            JwtKey::eddsa_pem(&pair.public),
            Err(AuthError::BadKey(_))
        ));
    }

    #[test]
    fn signing_pem_must_match_the_public_key() {
        let ours = ed25519();
        let theirs = ed25519();
        let result = JwtKey::eddsa_pem(&ours.public)
            .unwrap()
            .with_signing_pem(&theirs.private);
        assert!(matches!(result, Err(AuthError::KeyMismatch)));
    }

    #[test]
    fn signing_pem_of_another_algorithm_is_refused() {
        let ed = ed25519();
        let rsa = rsa2048();
        let result = JwtKey::rs256_pem(&rsa.public)
            .unwrap()
            .with_signing_pem(&ed.private);
        assert!(matches!(result, Err(AuthError::BadKey(_))));
        let result = JwtKey::hs256([1u8; 32]).with_signing_pem(&rsa.private);
        assert!(matches!(result, Err(AuthError::BadKey(_))));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let rendered = format!(
            "{:?}",
            JwtKey::hs256(b"super-secret-value-0123456789abcdef")
        );
        assert!(!rendered.contains("super-secret"), "{rendered}");
        assert!(rendered.contains("HS256"));
    }

    #[test]
    fn backend_panic_becomes_an_error() {
        let result: Result<(), AuthError> = backend(|| panic!("simulated missing provider"));
        assert!(matches!(result, Err(AuthError::BackendUnavailable)));
        assert_eq!(backend(|| 7).unwrap(), 7);
    }

    #[test]
    fn counts_significant_bits() {
        assert_eq!(significant_bits(&[]), 0);
        assert_eq!(significant_bits(&[0, 0]), 0);
        assert_eq!(significant_bits(&[0, 1]), 1);
        assert_eq!(significant_bits(&[0, 0x80, 0]), 16);
        assert_eq!(significant_bits(&[0xff; 256]), 2048);
    }
}
