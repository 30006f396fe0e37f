//! What every kind of link shares, native or in the browser: the handshake checks, the
//! link's states, and the defaults of the options both peers have.

use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;

use crate::error::{Error, HandshakeError};
use crate::wire::{self, Hello, HelloError};
use crate::{PeerId, RemoteError};

/// The deadline of a call that sets none.
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// How often a link is probed.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(3);
/// How long a silent link lives.
pub(crate) const LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new link has to complete the handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the reply to a call this peer sent goes.
pub(crate) type Reply = oneshot::Sender<Result<Bytes, RemoteError>>;

/// A link's life: handshaking (with whoever waits for it), live, closed.
pub(crate) enum State {
    Handshaking {
        ready: Option<oneshot::Sender<Result<PeerId, Error>>>,
    },
    Live {
        remote: PeerId,
        remote_max: usize,
    },
    Closed,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(peer: &str, app_version: Option<&str>, max: u64) -> Vec<u8> {
        Hello {
            peer: PeerId::from_name(peer),
            max_message_size: max,
            app_version: app_version.map(str::to_owned),
        }
        .to_bytes()
        .unwrap()
    }

    #[test]
    fn hello_checks_identity_versions_and_limits() {
        let version = Some("2".to_owned());
        let strict = Expect {
            local: PeerId::from_name("me"),
            app_version: &version,
            refuse_app_version_mismatch: true,
        };
        let (hello_ok, max) = check_hello(&hello("you", Some("2"), 1 << 40), &strict).unwrap();
        assert_eq!(hello_ok.peer, PeerId::from_name("you"));
        assert_eq!(max, wire::MAX_MESSAGE_SIZE_CEILING);
        assert_eq!(
            check_hello(&hello("me", Some("2"), 1024), &strict).unwrap_err(),
            HandshakeError::SelfConnection
        );
        assert!(matches!(
            check_hello(&hello("you", Some("1"), 1024), &strict),
            Err(HandshakeError::AppVersion { .. })
        ));
        assert_eq!(
            check_hello(b"GET /", &strict).unwrap_err(),
            HandshakeError::BadMagic
        );
        let lenient = Expect {
            refuse_app_version_mismatch: false,
            ..strict
        };
        assert!(check_hello(&hello("you", Some("1"), 1024), &lenient).is_ok());
    }
}
