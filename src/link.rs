//! The link protocol, shared by every kind of peer, native or in the browser.
//!
//! [`Engine`] is the protocol as a state machine with no I/O (see `link/engine.rs`): the
//! handshake, call ids, the pending-reply table, inbound admission (authorization by block
//! name before captures are decoded, duplicate ids, running and queued limits, byte
//! budgets), frame encoding and decoding through the one size-limited helper, cancel,
//! liveness bookkeeping and drain. The native adapter (`peer/connection.rs`, over actix-ws and
//! awc) and the browser adapter (`browser/link.rs`, over web-sys) only move bytes and timers.
//!
//! Layering: `link` depends on the portable core (wire, block registry, scope, errors) and
//! nothing above it; the adapters depend on `link`; `transport` is a leaf that knows neither.

mod backoff;
mod engine;
mod limits;
mod metrics;
mod session;
#[cfg(test)]
mod tests;

use futures_channel::oneshot;

pub use self::backoff::Backoff;
pub(crate) use self::backoff::jitter_unit;
pub(crate) use self::engine::{Authorize, Engine, Event, Identity, Role, Run, Transmit, close};
pub(crate) use self::limits::{Budgets, DEFAULT_DEADLINE, Limits};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use self::limits::{HANDSHAKE_TIMEOUT, LIVENESS_TIMEOUT, PING_INTERVAL};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use self::limits::{MAX_REPLAY_BYTES, RESUME_WINDOW};
pub(crate) use self::metrics::Counters;
pub use self::metrics::Metrics;
use crate::error::HandshakeError;
use crate::wire::{self, Hello, HelloError};
use crate::{PeerId, RemoteError};

/// Where the reply to a call this peer sent goes.
pub(crate) type Reply = oneshot::Sender<Result<bytes::Bytes, RemoteError>>;

/// What this peer expects of a remote's `Hello`.
pub(crate) struct Expect<'a> {
    pub(crate) local: PeerId,
    pub(crate) app_version: &'a Option<String>,
    pub(crate) refuse_app_version_mismatch: bool,
}

/// Checks a remote's first frame: magic and version before any bincode, then that it is not
/// this peer itself and that the application versions agree (or only differ, logged).
/// Returns the remote's hello and the message size it accepts.
pub(crate) fn check_hello(
    bytes: &[u8],
    expect: &Expect<'_>,
) -> Result<(Hello, usize), HandshakeError> {
    let hello = Hello::from_bytes(bytes).map_err(|error| match error {
        HelloError::BadMagic => HandshakeError::BadMagic,
        HelloError::Version(remote) => HandshakeError::UnsupportedVersion {
            remote,
            local: wire::PROTOCOL_VERSION,
        },
        HelloError::Malformed => HandshakeError::Malformed,
    })?;
    if hello.peer == expect.local {
        return Err(HandshakeError::SelfConnection);
    }
    if hello.app_version != *expect.app_version {
        let remote = hello.app_version.clone().unwrap_or_default();
        let local = expect.app_version.clone().unwrap_or_default();
        if expect.refuse_app_version_mismatch {
            return Err(HandshakeError::AppVersion { remote, local });
        }
        tracing::warn!(peer = %hello.peer, remote, local, "application versions differ");
    }
    let remote_max = usize::try_from(hello.max_message_size)
        .unwrap_or(usize::MAX)
        .min(wire::MAX_MESSAGE_SIZE_CEILING);
    Ok((hello, remote_max))
}
