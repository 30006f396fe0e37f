//! JWT keys, verified principals and per-block authorization policies for distributed-scope.
//!
//! A peer that listens with auth verifies the token presented on each incoming link with a
//! [`JwtAuth`], which yields a [`Principal`]; before running a block for that link it asks
//! its [`Policy`] whether the principal may run that block. This crate is the pure,
//! synchronous part of that: no I/O, no async, no actix. The runtime re-exports it as
//! `distributed_scope::auth` and holds the actix-web integration.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use distributed_scope_auth::{AuthError, JwtAuth, Policy};
//!
//! let auth = JwtAuth::hs256(b"a secret of at least 32 bytes....")
//!     .with_issuer("issuer")
//!     .with_audience("audience");
//! auth.check()?; // what a peer does when it starts
//!
//! let token = auth.issue("reader", &["viewer"], Duration::from_secs(3600))?;
//! let principal = auth.verify(&token)?;
//!
//! let policy = Policy::deny_all()
//!     .allow_role("viewer", "app::search*")
//!     .allow_subject("admin", "*");
//! assert!(policy.allows(&principal, "app::search#0"));
//! assert!(!policy.allows(&principal, "app::delete#0"));
//!
//! assert!(matches!(auth.verify("not.a.token"), Err(AuthError::Malformed(_))));
//! # Ok::<(), AuthError>(())
//! ```
//!
//! # Keys and algorithms
//!
//! HS256 (shared secret of at least 32 bytes), RS256 and EdDSA (Ed25519) are supported,
//! through `jsonwebtoken` with its `aws_lc_rs` backend. Every [`JwtKey`] is pinned to one
//! algorithm, so a token cannot pick how it is verified: `alg: none` and the RS256-to-HS256
//! confusion are refused. Several keys can be accepted at once, selected by the token's `kid`
//! ([`JwtAuth::with_key`]), which is how keys are rotated.
//!
//! # Policies
//!
//! A [`Policy`] is deny-by-default: a list of rules allowing a role, a subject or any
//! principal to run the blocks matching a glob (`*` any run of characters, `::` included;
//! `?` one character). It loads from JSON ([`Policy::from_json`]) or any serde format; see
//! its [file format](Policy#file-format).

mod error;
#[cfg(not(target_arch = "wasm32"))]
mod jwt;
#[cfg(not(target_arch = "wasm32"))]
mod key;
mod policy;
mod principal;

pub use error::AuthError;
#[cfg(not(target_arch = "wasm32"))]
pub use jwt::JwtAuth;
#[cfg(not(target_arch = "wasm32"))]
pub use key::JwtKey;
pub use policy::Policy;
pub use principal::Principal;
