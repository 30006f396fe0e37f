//! The errors of remote calls ([`RemoteError`]) and of peer lifecycle operations ([`Error`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::PeerId;

/// Whether the block of a failed call ran on the callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The block certainly did not run.
    NotRun,
    /// The block may or may not have run (the link dropped, the deadline passed, ...).
    Unknown,
    /// The block ran (and failed while running).
    Ran,
}

/// Why a remote call failed.
///
/// Every variant carries the block name and the peer where they are known. Errors travel
/// between peers as a stable `{ code, message, fields }` record (see `docs/protocol.md`), so a
/// peer that does not know a newer variant still receives it, as [`RemoteError::Other`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(into = "WireError", from = "WireError")]
#[non_exhaustive]
pub enum RemoteError {
    /// The target peer is not connected, and did not connect before the call's deadline.
    #[error("peer {peer} is not connected{}", Context(block, None))]
    NotConnected {
        /// The target peer.
        peer: PeerId,
        /// The block that was called.
        block: Option<String>,
    },
    /// The link to the peer dropped while the call was pending: the outcome is unknown, the
    /// block may or may not have run.
    #[error("connection lost, outcome unknown{}", Context(block, Some(peer)))]
    ConnectionLost {
        /// The peer the link led to.
        peer: PeerId,
        /// The block that was called.
        block: Option<String>,
    },
    /// The call's deadline passed; the callee stops the block.
    #[error("deadline exceeded{}", Context(block, peer.as_ref()))]
    Timeout {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// The call was cancelled by its caller.
    #[error("call cancelled{}", Context(block, peer.as_ref()))]
    Cancelled {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// The callee has no block with this id or name: it was built from other code.
    #[error("unknown block `{block}`{}", Context(&None, peer.as_ref()))]
    UnknownBlock {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: String,
    },
    /// The callee knows a block of this name but with another id: the two builds differ.
    #[error("block `{block}` differs between caller and callee builds{}", Context(&None, peer.as_ref()))]
    VersionMismatch {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: String,
    },
    /// The link has no authenticated principal, and the callee requires one.
    #[error("unauthenticated{}", Context(block, peer.as_ref()))]
    Unauthenticated {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// The link's principal may not run this block.
    #[error("`{subject}` may not run block `{block}`{}", Context(&None, peer.as_ref()))]
    Forbidden {
        /// The block that was refused.
        block: String,
        /// The subject of the link's principal.
        subject: String,
        /// The peer that refused.
        peer: Option<PeerId>,
    },
    /// The block panicked; the message is the panic's.
    #[error("block panicked: {message}{}", Context(block, peer.as_ref()))]
    Panicked {
        /// The peer the block ran on.
        peer: Option<PeerId>,
        /// The block that panicked.
        block: Option<String>,
        /// The panic message.
        message: String,
    },
    /// A frame broke the protocol.
    #[error("bad frame: {reason}{}", Context(&None, peer.as_ref()))]
    BadFrame {
        /// The peer that sent it.
        peer: Option<PeerId>,
        /// What was wrong.
        reason: String,
    },
    /// The captures or the result exceed the message size limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes{}", Context(block, peer.as_ref()))]
    TooLarge {
        /// The peer involved.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
        /// The size of the encoded message.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Captures or a result could not be encoded or decoded.
    #[error("cannot decode: {reason}{}", Context(block, peer.as_ref()))]
    Decode {
        /// The peer involved.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
        /// What the codec reported.
        reason: String,
    },
    /// The callee has too many calls in flight and queued; the block did not run.
    #[error("peer overloaded, block not run{}", Context(block, peer.as_ref()))]
    Overloaded {
        /// The peer that refused.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// The peer is shutting down.
    #[error("peer shutting down{}", Context(block, peer.as_ref()))]
    ShuttingDown {
        /// The peer that is stopping.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// A call was made outside any peer: run it through `PeerHandle::run` or from a block.
    #[error(
        "no current peer: run the call inside `PeerHandle::run` or a block{}",
        Context(block, None)
    )]
    NoCurrentPeer {
        /// The block that was called.
        block: Option<String>,
    },
    /// An error this build does not know, sent by a newer peer.
    #[error("remote error {code}: {message}{}", Context(block, peer.as_ref()))]
    Other {
        /// The stable kind code.
        code: u16,
        /// The sender's message.
        message: String,
        /// The peer involved.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
}

/// Formats `" (block `x`, peer y)"` for whatever is known.
struct Context<'a>(&'a Option<String>, Option<&'a PeerId>);

impl fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(block), Some(peer)) => write!(f, " (block `{block}`, peer {peer})"),
            (Some(block), None) => write!(f, " (block `{block}`)"),
            (None, Some(peer)) => write!(f, " (peer {peer})"),
            (None, None) => Ok(()),
        }
    }
}

impl RemoteError {
    /// Whether the block ran.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::NotConnected { .. }
            | Self::UnknownBlock { .. }
            | Self::VersionMismatch { .. }
            | Self::Unauthenticated { .. }
            | Self::Forbidden { .. }
            | Self::Overloaded { .. }
            | Self::ShuttingDown { .. }
            | Self::NoCurrentPeer { .. } => Outcome::NotRun,
            Self::Panicked { .. } => Outcome::Ran,
            _ => Outcome::Unknown,
        }
    }

    /// Whether trying the same call again may succeed. For errors whose [`outcome`] is
    /// [`Outcome::Unknown`] (such as [`RemoteError::ConnectionLost`]) retry only idempotent
    /// blocks.
    ///
    /// [`outcome`]: RemoteError::outcome
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NotConnected { .. }
                | Self::ConnectionLost { .. }
                | Self::Overloaded { .. }
                | Self::ShuttingDown { .. }
        )
    }

    /// The stable numeric kind code this error travels with.
    pub fn code(&self) -> u16 {
        match self {
            Self::NotConnected { .. } => 1,
            Self::ConnectionLost { .. } => 2,
            Self::Timeout { .. } => 3,
            Self::Cancelled { .. } => 4,
            Self::UnknownBlock { .. } => 5,
            Self::VersionMismatch { .. } => 6,
            Self::Unauthenticated { .. } => 7,
            Self::Forbidden { .. } => 8,
            Self::Panicked { .. } => 9,
            Self::BadFrame { .. } => 10,
            Self::TooLarge { .. } => 11,
            Self::Decode { .. } => 12,
            Self::Overloaded { .. } => 13,
            Self::ShuttingDown { .. } => 14,
            Self::NoCurrentPeer { .. } => 15,
            Self::Other { code, .. } => *code,
        }
    }

    /// The name of the block involved, where known.
    pub fn block(&self) -> Option<&str> {
        match self {
            Self::UnknownBlock { block, .. }
            | Self::VersionMismatch { block, .. }
            | Self::Forbidden { block, .. } => Some(block),
            Self::NotConnected { block, .. }
            | Self::ConnectionLost { block, .. }
            | Self::Timeout { block, .. }
            | Self::Cancelled { block, .. }
            | Self::Unauthenticated { block, .. }
            | Self::Panicked { block, .. }
            | Self::TooLarge { block, .. }
            | Self::Decode { block, .. }
            | Self::Overloaded { block, .. }
            | Self::ShuttingDown { block, .. }
            | Self::NoCurrentPeer { block }
            | Self::Other { block, .. } => block.as_deref(),
            Self::BadFrame { .. } => None,
        }
    }

    /// The peer involved, where known.
    pub fn peer(&self) -> Option<PeerId> {
        match self {
            Self::NotConnected { peer, .. } | Self::ConnectionLost { peer, .. } => Some(*peer),
            Self::Timeout { peer, .. }
            | Self::Cancelled { peer, .. }
            | Self::UnknownBlock { peer, .. }
            | Self::VersionMismatch { peer, .. }
            | Self::Unauthenticated { peer, .. }
            | Self::Forbidden { peer, .. }
            | Self::Panicked { peer, .. }
            | Self::BadFrame { peer, .. }
            | Self::TooLarge { peer, .. }
            | Self::Decode { peer, .. }
            | Self::Overloaded { peer, .. }
            | Self::ShuttingDown { peer, .. }
            | Self::Other { peer, .. } => *peer,
            Self::NoCurrentPeer { .. } => None,
        }
    }

    /// Fills in the block name and peer where this error does not know them yet.
    pub(crate) fn with_context(mut self, name: &str, target: PeerId) -> Self {
        let (block, peer) = self.context_mut();
        if let Some(block @ None) = block {
            *block = Some(name.to_owned());
        }
        if let Some(peer @ None) = peer {
            *peer = Some(target);
        }
        self
    }

    fn context_mut(&mut self) -> (Option<&mut Option<String>>, Option<&mut Option<PeerId>>) {
        match self {
            Self::NotConnected { block, .. } | Self::ConnectionLost { block, .. } => {
                (Some(block), None)
            }
            Self::Timeout { peer, block }
            | Self::Cancelled { peer, block }
            | Self::Unauthenticated { peer, block }
            | Self::Panicked { peer, block, .. }
            | Self::TooLarge { peer, block, .. }
            | Self::Decode { peer, block, .. }
            | Self::Overloaded { peer, block }
            | Self::ShuttingDown { peer, block }
            | Self::Other { peer, block, .. } => (Some(block), Some(peer)),
            Self::UnknownBlock { peer, .. }
            | Self::VersionMismatch { peer, .. }
            | Self::Forbidden { peer, .. }
            | Self::BadFrame { peer, .. } => (None, Some(peer)),
            Self::NoCurrentPeer { block } => (Some(block), None),
        }
    }

    /// Marks an error produced on `peer` (the callee answering) with that peer, where the
    /// error names its block but no peer yet.
    pub(crate) fn produced_at(self, peer: Option<PeerId>) -> Self {
        match (self.block().map(str::to_owned), peer) {
            (Some(block), Some(peer)) => self.with_context(&block, peer),
            _ => self,
        }
    }

    pub(crate) fn decode(reason: impl fmt::Display) -> Self {
        Self::Decode {
            peer: None,
            block: None,
            reason: reason.to_string(),
        }
    }
}

/// The stable wire form of a [`RemoteError`]: a kind code, the message as the sender printed
/// it, and named fields. Unknown codes decode as [`RemoteError::Other`].
#[derive(Serialize, Deserialize)]
struct WireError {
    code: u16,
    message: String,
    fields: Vec<(String, String)>,
}

impl From<RemoteError> for WireError {
    fn from(error: RemoteError) -> Self {
        let mut fields = Vec::new();
        if let Some(block) = error.block() {
            fields.push(("block".to_owned(), block.to_owned()));
        }
        if let Some(peer) = error.peer() {
            fields.push(("peer".to_owned(), peer.to_string()));
        }
        match &error {
            RemoteError::Forbidden { subject, .. } => {
                fields.push(("subject".to_owned(), subject.clone()));
            }
            RemoteError::Panicked { message, .. } => {
                fields.push(("panic".to_owned(), message.clone()));
            }
            RemoteError::BadFrame { reason, .. } | RemoteError::Decode { reason, .. } => {
                fields.push(("reason".to_owned(), reason.clone()));
            }
            RemoteError::TooLarge { size, limit, .. } => {
                fields.push(("size".to_owned(), size.to_string()));
                fields.push(("limit".to_owned(), limit.to_string()));
            }
            _ => {}
        }
        Self {
            code: error.code(),
            message: error.to_string(),
            fields,
        }
    }
}

impl From<WireError> for RemoteError {
    fn from(wire: WireError) -> Self {
        let field = |name: &str| {
            wire.fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let block = field("block");
        let peer = field("peer").and_then(|p| p.parse().ok());
        let text = |name: &str| field(name).unwrap_or_default();
        let number = |name: &str| field(name).and_then(|n| n.parse().ok()).unwrap_or(0);
        match (wire.code, peer) {
            (1, Some(peer)) => Self::NotConnected { peer, block },
            (2, Some(peer)) => Self::ConnectionLost { peer, block },
            (3, peer) => Self::Timeout { peer, block },
            (4, peer) => Self::Cancelled { peer, block },
            (5, peer) => Self::UnknownBlock {
                peer,
                block: block.unwrap_or_default(),
            },
            (6, peer) => Self::VersionMismatch {
                peer,
                block: block.unwrap_or_default(),
            },
            (7, peer) => Self::Unauthenticated { peer, block },
            (8, peer) => Self::Forbidden {
                block: block.unwrap_or_default(),
                subject: text("subject"),
                peer,
            },
            (9, peer) => Self::Panicked {
                peer,
                block,
                message: text("panic"),
            },
            (10, peer) => Self::BadFrame {
                peer,
                reason: text("reason"),
            },
            (11, peer) => Self::TooLarge {
                peer,
                block,
                size: number("size"),
                limit: number("limit"),
            },
            (12, peer) => Self::Decode {
                peer,
                block,
                reason: text("reason"),
            },
            (13, peer) => Self::Overloaded { peer, block },
            (14, peer) => Self::ShuttingDown { peer, block },
            (15, _) => Self::NoCurrentPeer { block },
            (code, peer) => Self::Other {
                code,
                message: wire.message,
                peer,
                block,
            },
        }
    }
}

/// Why a lifecycle operation (start, connect, stop) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address given to `listen`.
        addr: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The URL given to `connect` is not a `ws://` or `wss://` URL.
    #[error("invalid peer url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The WebSocket connection could not be opened.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// What the transport reported.
        reason: String,
        /// The HTTP status of a refused upgrade (401 for a missing or bad token).
        status: Option<u16>,
    },
    /// The connection opened but the handshake failed.
    #[error("handshake with {url} failed: {reason}")]
    Handshake {
        /// The URL, or the remote address for inbound links.
        url: String,
        /// Why.
        reason: HandshakeError,
    },
    /// The peer actor has stopped.
    #[error("the peer has stopped")]
    Stopped,
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// The auth configuration failed its check at start.
    #[cfg(feature = "auth")]
    #[error("invalid auth configuration")]
    Auth(#[from] crate::auth::AuthError),
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first frame did not start with the protocol's magic bytes.
    #[error("not a distributed-scope peer")]
    BadMagic,
    /// The remote speaks another protocol version.
    #[error("protocol version {remote} is not supported (this peer speaks {local})")]
    UnsupportedVersion {
        /// The remote's version.
        remote: u16,
        /// Ours.
        local: u16,
    },
    /// The `Hello` frame did not decode.
    #[error("malformed hello frame")]
    Malformed,
    /// The remote's application version differs and mismatches are refused.
    #[error("application version `{remote}` differs from `{local}`")]
    AppVersion {
        /// The remote's version.
        remote: String,
        /// Ours.
        local: String,
    },
    /// The remote claims the id of a peer that already has a live link here.
    #[error("peer {0} is already connected")]
    Duplicate(PeerId),
    /// The remote claims this peer's own id.
    #[error("the remote claims this peer's own id")]
    SelfConnection,
    /// The remote did not complete the handshake in time.
    #[error("timed out")]
    Timeout,
    /// The link closed before the handshake completed.
    #[error("the link closed")]
    Closed,
    /// The remote closed the link during the handshake, saying why (a duplicate or
    /// refused id, another application version, ...).
    #[error("refused by the remote: {0}")]
    Refused(String),
    /// The remote broke the protocol during the handshake.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// This peer has too many links or handshakes in progress.
    #[error("too many links")]
    TooManyLinks,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    fn roundtrip(error: &RemoteError) -> RemoteError {
        let bytes = wire::encode(error).unwrap();
        wire::decode(&bytes, 1024).unwrap()
    }

    #[test]
    fn every_variant_survives_the_wire() {
        let peer = PeerId::from_name("p");
        let block = Some("m@1:2".to_owned());
        let errors = [
            RemoteError::NotConnected {
                peer,
                block: block.clone(),
            },
            RemoteError::ConnectionLost {
                peer,
                block: block.clone(),
            },
            RemoteError::Timeout {
                peer: Some(peer),
                block: block.clone(),
            },
            RemoteError::Forbidden {
                block: "app::x".into(),
                subject: "guest".into(),
                peer: None,
            },
            RemoteError::Panicked {
                peer: Some(peer),
                block: None,
                message: "boom\nü".into(),
            },
            RemoteError::TooLarge {
                peer: None,
                block: block.clone(),
                size: 10,
                limit: 5,
            },
            RemoteError::UnknownBlock {
                peer: None,
                block: "x".into(),
            },
            RemoteError::NoCurrentPeer { block },
        ];
        for error in errors {
            assert_eq!(roundtrip(&error), error);
        }
    }

    #[test]
    fn unknown_codes_decode_as_other() {
        let wire = WireError {
            code: 999,
            message: "something new".into(),
            fields: vec![("block".into(), "b".into())],
        };
        let error = RemoteError::from(wire);
        assert_eq!(error.code(), 999);
        assert_eq!(error.block(), Some("b"));
        assert!(error.to_string().contains("something new"));
    }

    #[test]
    fn messages_are_lowercase() {
        let error = RemoteError::Panicked {
            peer: None,
            block: Some("b".into()),
            message: "Boom".into(),
        };
        assert_eq!(error.to_string(), "block panicked: Boom (block `b`)");
        assert_eq!(error.outcome(), Outcome::Ran);
        assert!(!error.is_retryable());
    }

    #[test]
    fn context_fills_only_missing_fields() {
        let peer = PeerId::from_name("a");
        let other = PeerId::from_name("b");
        let error = RemoteError::Timeout {
            peer: Some(other),
            block: None,
        }
        .with_context("blk", peer);
        assert_eq!(error.block(), Some("blk"));
        assert_eq!(error.peer(), Some(other));
    }
}
