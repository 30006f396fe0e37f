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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireError", from = "WireError")]
#[non_exhaustive]
pub enum RemoteError {
    /// The target peer is not connected, and did not connect before the call's deadline.
    NotConnected {
        /// The target peer.
        peer: PeerId,
        /// The block that was called.
        block: Option<String>,
    },
    /// The link to the peer dropped while the call was pending: the outcome is unknown, the
    /// block may or may not have run.
    ConnectionLost {
        /// The peer the link led to.
        peer: PeerId,
        /// The block that was called.
        block: Option<String>,
    },
    /// The call's deadline passed; the callee stops the block.
    Timeout {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// The call was cancelled by its caller.
    Cancelled {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// The callee has no block with this id or name: it was built from other code.
    UnknownBlock {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: String,
    },
    /// The callee knows a block of this name but with another id: the two builds differ.
    VersionMismatch {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: String,
    },
    /// The link has no authenticated principal, and the callee requires one.
    Unauthenticated {
        /// The target peer.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// The link's principal may not run this block.
    Forbidden {
        /// The block that was refused.
        block: String,
        /// The subject of the link's principal.
        subject: String,
        /// The peer that refused.
        peer: Option<PeerId>,
    },
    /// The block panicked; the message is the panic's.
    Panicked {
        /// The peer the block ran on.
        peer: Option<PeerId>,
        /// The block that panicked.
        block: Option<String>,
        /// The panic message.
        message: String,
    },
    /// A frame broke the protocol.
    BadFrame {
        /// The peer that sent it.
        peer: Option<PeerId>,
        /// What was wrong.
        reason: String,
    },
    /// The captures or the result exceed the message size limit.
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
    Decode {
        /// The peer involved.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
        /// What the codec reported.
        reason: String,
    },
    /// The callee has too many calls in flight and queued; the block did not run.
    Overloaded {
        /// The peer that refused.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// The peer is shutting down.
    ShuttingDown {
        /// The peer that is stopping.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
    },
    /// A call was made outside any peer: run it through `PeerHandle::run` or from a block.
    NoCurrentPeer {
        /// The block that was called.
        block: Option<String>,
    },
    /// The block ran, and its body returned this error: one it made, or one of a nested call
    /// it passed on with `?`. The block's outcome is [`Outcome::Ran`] whatever the inner error
    /// says about its own call (a nested `NotConnected` does not mean the outer block did not
    /// run), so it is not retryable.
    ///
    /// The body's error is the [`source`](std::error::Error::source), also reachable typed
    /// through [`RemoteError::chain`] and [`RemoteError::root_cause`]; the message ends with
    /// it. Errors the runtime produces around a body (captures that do not decode, the
    /// deadline, a panic) are never wrapped.
    Failed {
        /// The peer the block ran on.
        peer: Option<PeerId>,
        /// The block whose body failed.
        block: Option<String>,
        /// The error the body returned.
        source: Box<RemoteError>,
    },
    /// A message to a peer actor got no answer: actix's `MailboxError` (see
    /// `impl From<actix::MailboxError>`), because the actor stopped or the send's own timeout
    /// passed. The block may or may not have run.
    Mailbox {
        /// The peer involved.
        peer: Option<PeerId>,
        /// The block that was called.
        block: Option<String>,
        /// The mailbox error's message.
        reason: String,
    },
    /// An error this build does not know, sent by a newer peer.
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

/// The messages: lowercase, short, with the block and peer where known. Written by hand
/// rather than derived so that [`RemoteError::Failed`]'s source is the inner
/// [`RemoteError`] itself (a derive would hand out its `Box`, which does not downcast).
impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConnected { peer, block } => {
                write!(f, "peer {peer:#} is not connected{}", Context(block, None))
            }
            Self::ConnectionLost { peer, block } => write!(
                f,
                "connection lost, outcome unknown{}",
                Context(block, Some(peer))
            ),
            Self::Timeout { peer, block } => {
                write!(f, "deadline exceeded{}", Context(block, peer.as_ref()))
            }
            Self::Cancelled { peer, block } => {
                write!(f, "call cancelled{}", Context(block, peer.as_ref()))
            }
            Self::UnknownBlock { peer, block } => {
                write!(
                    f,
                    "unknown block `{block}`{}",
                    Context(&None, peer.as_ref())
                )
            }
            Self::VersionMismatch { peer, block } => write!(
                f,
                "block `{block}` differs between caller and callee builds{}",
                Context(&None, peer.as_ref())
            ),
            Self::Unauthenticated { peer, block } => {
                write!(f, "unauthenticated{}", Context(block, peer.as_ref()))
            }
            Self::Forbidden {
                block,
                subject,
                peer,
            } => write!(
                f,
                "`{subject}` may not run block `{block}`{}",
                Context(&None, peer.as_ref())
            ),
            Self::Panicked {
                peer,
                block,
                message,
            } => write!(
                f,
                "block panicked: {message}{}",
                Context(block, peer.as_ref())
            ),
            Self::BadFrame { peer, reason } => {
                write!(f, "bad frame: {reason}{}", Context(&None, peer.as_ref()))
            }
            Self::TooLarge {
                peer,
                block,
                size,
                limit,
            } => write!(
                f,
                "message of {size} bytes exceeds the limit of {limit} bytes{}",
                Context(block, peer.as_ref())
            ),
            Self::Decode {
                peer,
                block,
                reason,
            } => write!(
                f,
                "cannot decode: {reason}{}",
                Context(block, peer.as_ref())
            ),
            Self::Overloaded { peer, block } => write!(
                f,
                "peer overloaded, block not run{}",
                Context(block, peer.as_ref())
            ),
            Self::ShuttingDown { peer, block } => {
                write!(f, "peer shutting down{}", Context(block, peer.as_ref()))
            }
            Self::NoCurrentPeer { block } => write!(
                f,
                "no current peer: run the call inside `PeerHandle::run` or a block{}",
                Context(block, None)
            ),
            Self::Failed {
                peer,
                block,
                source,
            } => write!(f, "{}: {source}", Failure(block, peer.as_ref())),
            Self::Mailbox {
                peer,
                block,
                reason,
            } => write!(
                f,
                "peer actor did not answer: {reason}{}",
                Context(block, peer.as_ref())
            ),
            Self::Other {
                code,
                message,
                peer,
                block,
            } => write!(
                f,
                "remote error {code}: {message}{}",
                Context(block, peer.as_ref())
            ),
        }
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner()
            .map(|inner| inner as &(dyn std::error::Error + 'static))
    }
}

/// Formats `" (block `x`, peer y)"` for whatever is known.
struct Context<'a>(&'a Option<String>, Option<&'a PeerId>);

impl fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(block), Some(peer)) => write!(f, " (block `{block}`, peer {peer:#})"),
            (Some(block), None) => write!(f, " (block `{block}`)"),
            (None, Some(peer)) => write!(f, " (peer {peer:#})"),
            (None, None) => Ok(()),
        }
    }
}

/// Formats "block `x` failed on peer y" for whatever is known.
struct Failure<'a>(&'a Option<String>, Option<&'a PeerId>);

impl fmt::Display for Failure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(block) => write!(f, "block `{block}` failed")?,
            None => f.write_str("block failed")?,
        }
        match self.1 {
            Some(peer) => write!(f, " on peer {peer:#}"),
            None => Ok(()),
        }
    }
}

/// What one kind of error means for its call: the facts [`RemoteError::code`],
/// [`RemoteError::outcome`] and [`RemoteError::is_retryable`] read, from one table
/// ([`RemoteError::kind`]) so that no kind is classified by halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    code: u16,
    outcome: Outcome,
    retryable: bool,
}

impl Kind {
    const fn new(code: u16, outcome: Outcome, retryable: bool) -> Self {
        Self {
            code,
            outcome,
            retryable,
        }
    }
}

impl RemoteError {
    /// The one classification of every kind: its wire code, whether the block ran, and
    /// whether trying again may help. No arm may be a wildcard: a new variant must be
    /// classified here before it compiles.
    fn kind(&self) -> Kind {
        use Outcome::{NotRun, Ran, Unknown};
        match self {
            Self::NotConnected { .. } => Kind::new(1, NotRun, true),
            Self::ConnectionLost { .. } => Kind::new(2, Unknown, true),
            Self::Timeout { .. } => Kind::new(3, Unknown, false),
            Self::Cancelled { .. } => Kind::new(4, Unknown, false),
            Self::UnknownBlock { .. } => Kind::new(5, NotRun, false),
            Self::VersionMismatch { .. } => Kind::new(6, NotRun, false),
            Self::Unauthenticated { .. } => Kind::new(7, NotRun, false),
            Self::Forbidden { .. } => Kind::new(8, NotRun, false),
            Self::Panicked { .. } => Kind::new(9, Ran, false),
            Self::BadFrame { .. } => Kind::new(10, Unknown, false),
            Self::TooLarge { .. } => Kind::new(11, Unknown, false),
            Self::Decode { .. } => Kind::new(12, Unknown, false),
            Self::Overloaded { .. } => Kind::new(13, NotRun, true),
            Self::ShuttingDown { .. } => Kind::new(14, NotRun, true),
            Self::NoCurrentPeer { .. } => Kind::new(15, NotRun, false),
            Self::Failed { .. } => Kind::new(16, Ran, false),
            Self::Mailbox { .. } => Kind::new(17, Unknown, false),
            Self::Other { code, .. } => Kind::new(*code, Unknown, false),
        }
    }

    /// Whether the block ran.
    pub fn outcome(&self) -> Outcome {
        self.kind().outcome
    }

    /// Whether trying the same call again may succeed. For errors whose [`outcome`] is
    /// [`Outcome::Unknown`] (such as [`RemoteError::ConnectionLost`]) retry only idempotent
    /// blocks.
    ///
    /// [`outcome`]: RemoteError::outcome
    pub fn is_retryable(&self) -> bool {
        self.kind().retryable
    }

    /// The stable numeric kind code this error travels with.
    pub fn code(&self) -> u16 {
        self.kind().code
    }

    /// This error, then the errors of the nested hops behind it, outermost first: for
    /// A -> B -> C where C's body returned `e` and B's passed it on, A gets B's
    /// [`RemoteError::Failed`], then C's, then `e`.
    pub fn chain(&self) -> impl Iterator<Item = &RemoteError> {
        std::iter::successors(Some(self), |error| error.inner())
    }

    /// The innermost error of [`RemoteError::chain`]: what went wrong first.
    pub fn root_cause(&self) -> &RemoteError {
        self.chain().last().unwrap_or(self)
    }

    /// The error behind this one: the error the body of a [`RemoteError::Failed`] returned.
    fn inner(&self) -> Option<&RemoteError> {
        match self {
            Self::Failed { source, .. } => Some(source),
            Self::NotConnected { .. }
            | Self::ConnectionLost { .. }
            | Self::Timeout { .. }
            | Self::Cancelled { .. }
            | Self::UnknownBlock { .. }
            | Self::VersionMismatch { .. }
            | Self::Unauthenticated { .. }
            | Self::Forbidden { .. }
            | Self::Panicked { .. }
            | Self::BadFrame { .. }
            | Self::TooLarge { .. }
            | Self::Decode { .. }
            | Self::Overloaded { .. }
            | Self::ShuttingDown { .. }
            | Self::NoCurrentPeer { .. }
            | Self::Mailbox { .. }
            | Self::Other { .. } => None,
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
            | Self::Failed { block, .. }
            | Self::Mailbox { block, .. }
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
            | Self::Failed { peer, .. }
            | Self::Mailbox { peer, .. }
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
            | Self::Failed { peer, block, .. }
            | Self::Mailbox { peer, block, .. }
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

    /// The error the body of `block`, running on `peer`, returned: see
    /// [`RemoteError::Failed`].
    pub(crate) fn failed(block: &str, peer: Option<PeerId>, source: Self) -> Self {
        Self::Failed {
            peer,
            block: Some(block.to_owned()),
            source: Box::new(source),
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

#[cfg(not(target_arch = "wasm32"))]
impl From<actix::MailboxError> for RemoteError {
    /// A message to a peer actor got no answer, as when `PeerHandle::addr().send(On::new(..))`
    /// fails: [`RemoteError::Mailbox`] with the mailbox error's message. The outcome is
    /// [`Outcome::Unknown`]: the actor may have stopped while the block ran.
    fn from(error: actix::MailboxError) -> Self {
        Self::Mailbox {
            peer: None,
            block: None,
            reason: error.to_string(),
        }
    }
}

/// The stable wire form of a [`RemoteError`]: a kind code, the message as the sender printed
/// it, and named fields. Unknown codes decode as [`RemoteError::Other`].
///
/// The errors behind a [`RemoteError::Failed`] travel in the same record, as fields
/// `source.<depth>.<name>` (`source.1.code`, `source.1.message`, `source.1.block`, ...),
/// outermost first, for at most [`MAX_SOURCES`] levels, their texts cut at [`MAX_TEXT`]
/// bytes: peers that predate them ignore the extra fields. Messages are cut at [`MAX_TEXT`]
/// too (a long chain prints long), so that an error reply always fits a frame.
#[derive(Serialize, Deserialize)]
struct WireError {
    code: u16,
    message: String,
    fields: Vec<(String, String)>,
}

/// How many errors behind a [`RemoteError::Failed`] travel with it.
const MAX_SOURCES: usize = 8;

/// The longest message, or field of an error behind a [`RemoteError::Failed`], in bytes.
const MAX_TEXT: usize = 1024;

/// The fields of one error besides its code and message, named as on the wire.
const FIELDS: [&str; 7] = [
    "block", "peer", "subject", "panic", "reason", "size", "limit",
];

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl RemoteError {
    /// The wire message: what this error prints, except that an error of a kind this build
    /// does not know passes on the sender's message as it came, so that it does not grow a
    /// prefix at every hop.
    fn wire_message(&self) -> String {
        match self {
            Self::Other { message, .. } => message.clone(),
            _ => self.to_string(),
        }
    }

    /// The wire fields of this error alone (not of its source), in [`FIELDS`] order.
    fn wire_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = Vec::new();
        if let Some(block) = self.block() {
            fields.push(("block", block.to_owned()));
        }
        if let Some(peer) = self.peer() {
            fields.push(("peer", peer.to_string()));
        }
        match self {
            Self::Forbidden { subject, .. } => fields.push(("subject", subject.clone())),
            Self::Panicked { message, .. } => fields.push(("panic", message.clone())),
            Self::BadFrame { reason, .. }
            | Self::Decode { reason, .. }
            | Self::Mailbox { reason, .. } => fields.push(("reason", reason.clone())),
            Self::TooLarge { size, limit, .. } => {
                fields.push(("size", size.to_string()));
                fields.push(("limit", limit.to_string()));
            }
            Self::NotConnected { .. }
            | Self::ConnectionLost { .. }
            | Self::Timeout { .. }
            | Self::Cancelled { .. }
            | Self::UnknownBlock { .. }
            | Self::VersionMismatch { .. }
            | Self::Unauthenticated { .. }
            | Self::Overloaded { .. }
            | Self::ShuttingDown { .. }
            | Self::NoCurrentPeer { .. }
            | Self::Failed { .. }
            | Self::Other { .. } => {}
        }
        fields
    }
}

impl From<RemoteError> for WireError {
    fn from(error: RemoteError) -> Self {
        let mut fields: Vec<(String, String)> = error
            .wire_fields()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        for (depth, source) in error.chain().skip(1).take(MAX_SOURCES).enumerate() {
            let prefix = format!("source.{}.", depth + 1);
            fields.push((format!("{prefix}code"), source.code().to_string()));
            let message = truncated(source.wire_message(), MAX_TEXT);
            fields.push((format!("{prefix}message"), message));
            for (name, value) in source.wire_fields() {
                fields.push((format!("{prefix}{name}"), truncated(value, MAX_TEXT)));
            }
        }
        Self {
            code: error.code(),
            message: truncated(error.wire_message(), MAX_TEXT),
            fields,
        }
    }
}

/// One error of a chain as read from the wire: the first value of each field wins.
#[derive(Default)]
struct Level {
    code: Option<u16>,
    message: Option<String>,
    fields: [Option<String>; FIELDS.len()],
}

impl Level {
    fn set(&mut self, name: &str, value: String) {
        match name {
            "code" => self.code = self.code.or_else(|| value.parse().ok()),
            "message" => {
                self.message.get_or_insert(value);
            }
            _ => {
                if let Some(at) = FIELDS.iter().position(|field| *field == name) {
                    self.fields[at].get_or_insert(value);
                }
            }
        }
    }

    fn field(&self, name: &str) -> Option<&str> {
        let at = FIELDS.iter().position(|field| *field == name)?;
        self.fields[at].as_deref()
    }

    /// The error of this level, with `source` (the next level in) if it has one. A
    /// `Failed` whose source did not travel (past [`MAX_SOURCES`]) becomes `Other`.
    fn into_error(self, source: Option<RemoteError>) -> RemoteError {
        let code = self.code.unwrap_or_default();
        let block = self.field("block").map(str::to_owned);
        let peer = self.field("peer").and_then(|p| p.parse().ok());
        let text = |name: &str| self.field(name).unwrap_or_default().to_owned();
        let number = |name: &str| self.field(name).and_then(|n| n.parse().ok()).unwrap_or(0);
        match (code, peer, source) {
            (1, Some(peer), _) => RemoteError::NotConnected { peer, block },
            (2, Some(peer), _) => RemoteError::ConnectionLost { peer, block },
            (3, peer, _) => RemoteError::Timeout { peer, block },
            (4, peer, _) => RemoteError::Cancelled { peer, block },
            (5, peer, _) => RemoteError::UnknownBlock {
                peer,
                block: block.unwrap_or_default(),
            },
            (6, peer, _) => RemoteError::VersionMismatch {
                peer,
                block: block.unwrap_or_default(),
            },
            (7, peer, _) => RemoteError::Unauthenticated { peer, block },
            (8, peer, _) => RemoteError::Forbidden {
                block: block.unwrap_or_default(),
                subject: text("subject"),
                peer,
            },
            (9, peer, _) => RemoteError::Panicked {
                peer,
                block,
                message: text("panic"),
            },
            (10, peer, _) => RemoteError::BadFrame {
                peer,
                reason: text("reason"),
            },
            (11, peer, _) => RemoteError::TooLarge {
                peer,
                block,
                size: number("size"),
                limit: number("limit"),
            },
            (12, peer, _) => RemoteError::Decode {
                peer,
                block,
                reason: text("reason"),
            },
            (13, peer, _) => RemoteError::Overloaded { peer, block },
            (14, peer, _) => RemoteError::ShuttingDown { peer, block },
            (15, _, _) => RemoteError::NoCurrentPeer { block },
            (16, peer, Some(source)) => RemoteError::Failed {
                peer,
                block,
                source: Box::new(source),
            },
            (17, peer, _) => RemoteError::Mailbox {
                peer,
                block,
                reason: text("reason"),
            },
            (code, peer, _) => RemoteError::Other {
                code,
                message: self.message.unwrap_or_default(),
                peer,
                block,
            },
        }
    }
}

impl From<WireError> for RemoteError {
    fn from(wire: WireError) -> Self {
        let mut levels: [Level; MAX_SOURCES + 1] = Default::default();
        levels[0].code = Some(wire.code);
        levels[0].message = Some(wire.message);
        for (key, value) in wire.fields {
            let (depth, name) = match key.strip_prefix("source.") {
                Some(rest) => match rest.split_once('.') {
                    Some((depth, name)) => match depth.parse::<usize>() {
                        Ok(depth @ 1..=MAX_SOURCES) => (depth, name),
                        _ => continue,
                    },
                    None => continue,
                },
                None => (0, key.as_str()),
            };
            levels[depth].set(name, value);
        }
        let [outer, sources @ ..] = levels;
        // The chain ends at the first level without a code.
        let depth = sources
            .iter()
            .take_while(|level| level.code.is_some())
            .count();
        let source = sources
            .into_iter()
            .take(depth)
            .rev()
            .fold(None, |source, level| Some(level.into_error(source)));
        outer.into_error(source)
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
    /// The discovery option ([`PeerBuilder::discover`](crate::PeerBuilder::discover)) is
    /// invalid, or its resolver cannot be set up.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("invalid discovery")]
    Discovery(#[from] crate::peer::DiscoveryError),
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
    /// The remote's token does not allow the named peer id it claims: on a peer with auth a
    /// link may claim `PeerId::from_name(subject)`, a peer its token's `peers` claim lists,
    /// or a random id.
    #[error("the token does not allow peer id {0}")]
    IdNotAllowed(PeerId),
    /// The remote did not prove to be the peer [`Expected`](crate::Expected) requires (no
    /// proof, an invalid or replayed one, another id, subject or role).
    #[error("the remote's identity does not match: {0}")]
    IdentityMismatch(String),
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
        wire::decode(&bytes, 1 << 20).unwrap()
    }

    fn not_connected(peer: &str, block: &str) -> RemoteError {
        RemoteError::NotConnected {
            peer: PeerId::from_name(peer),
            block: Some(block.into()),
        }
    }

    /// One error of every variant.
    fn every_variant() -> Vec<RemoteError> {
        let peer = PeerId::from_name("p");
        let block = Some("m@1:2".to_owned());
        vec![
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
            RemoteError::Cancelled {
                peer: None,
                block: block.clone(),
            },
            RemoteError::UnknownBlock {
                peer: None,
                block: "x".into(),
            },
            RemoteError::VersionMismatch {
                peer: Some(peer),
                block: "x".into(),
            },
            RemoteError::Unauthenticated {
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
            RemoteError::BadFrame {
                peer: Some(peer),
                reason: "bad".into(),
            },
            RemoteError::TooLarge {
                peer: None,
                block: block.clone(),
                size: 10,
                limit: 5,
            },
            RemoteError::Decode {
                peer: Some(peer),
                block: block.clone(),
                reason: "short".into(),
            },
            RemoteError::Overloaded {
                peer: Some(peer),
                block: block.clone(),
            },
            RemoteError::ShuttingDown {
                peer: None,
                block: block.clone(),
            },
            RemoteError::NoCurrentPeer {
                block: block.clone(),
            },
            RemoteError::Failed {
                peer: Some(peer),
                block: block.clone(),
                source: Box::new(not_connected("c", "inner@3:4")),
            },
            RemoteError::Mailbox {
                peer: None,
                block: block.clone(),
                reason: "Mailbox has closed".into(),
            },
            RemoteError::Other {
                code: 999,
                message: "something new".into(),
                peer: Some(peer),
                block,
            },
        ]
    }

    /// The classification of every variant, pinned: this match has no wildcard, so a new
    /// variant does not compile until its code, outcome and retryability are written here
    /// (and it gets a case in [`every_variant`]).
    fn pinned(error: &RemoteError) -> (u16, Outcome, bool) {
        use Outcome::{NotRun, Ran, Unknown};
        match error {
            RemoteError::NotConnected { .. } => (1, NotRun, true),
            RemoteError::ConnectionLost { .. } => (2, Unknown, true),
            RemoteError::Timeout { .. } => (3, Unknown, false),
            RemoteError::Cancelled { .. } => (4, Unknown, false),
            RemoteError::UnknownBlock { .. } => (5, NotRun, false),
            RemoteError::VersionMismatch { .. } => (6, NotRun, false),
            RemoteError::Unauthenticated { .. } => (7, NotRun, false),
            RemoteError::Forbidden { .. } => (8, NotRun, false),
            RemoteError::Panicked { .. } => (9, Ran, false),
            RemoteError::BadFrame { .. } => (10, Unknown, false),
            RemoteError::TooLarge { .. } => (11, Unknown, false),
            RemoteError::Decode { .. } => (12, Unknown, false),
            RemoteError::Overloaded { .. } => (13, NotRun, true),
            RemoteError::ShuttingDown { .. } => (14, NotRun, true),
            RemoteError::NoCurrentPeer { .. } => (15, NotRun, false),
            RemoteError::Failed { .. } => (16, Ran, false),
            RemoteError::Mailbox { .. } => (17, Unknown, false),
            RemoteError::Other { code, .. } => (*code, Unknown, false),
        }
    }

    #[test]
    fn every_variant_has_its_pinned_outcome_and_retryability() {
        let errors = every_variant();
        let codes: Vec<u16> = errors.iter().map(RemoteError::code).collect();
        assert_eq!(codes, [(1..=17).collect::<Vec<u16>>(), vec![999]].concat());
        for error in &errors {
            let (code, outcome, retryable) = pinned(error);
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.outcome(), outcome, "{error:?}");
            assert_eq!(error.is_retryable(), retryable, "{error:?}");
        }
    }

    #[test]
    fn every_variant_survives_the_wire() {
        for error in every_variant() {
            assert_eq!(roundtrip(&error), error);
        }
    }

    /// A -> B -> C: C's body returned `NotConnected` for D, B's passed it on.
    fn chain() -> RemoteError {
        RemoteError::Failed {
            peer: Some(PeerId::from_name("b")),
            block: Some("app::outer#0".into()),
            source: Box::new(RemoteError::Failed {
                peer: Some(PeerId::from_name("c")),
                block: Some("app::outer#1".into()),
                source: Box::new(not_connected("d", "app::outer#2")),
            }),
        }
    }

    #[test]
    fn a_failed_body_ran_and_keeps_the_nested_error_as_its_source() {
        let error = chain();
        assert_eq!(
            (error.outcome(), error.is_retryable()),
            (Outcome::Ran, false)
        );
        let root = error.root_cause();
        assert_eq!(
            (root.outcome(), root.is_retryable()),
            (Outcome::NotRun, true)
        );
        assert_eq!(root, &not_connected("d", "app::outer#2"));
        let blocks: Vec<_> = error.chain().map(RemoteError::block).collect();
        assert_eq!(
            blocks,
            [
                Some("app::outer#0"),
                Some("app::outer#1"),
                Some("app::outer#2")
            ]
        );
        let source = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<RemoteError>())
            .expect("the inner error is the source");
        assert_eq!(Some(source), error.chain().nth(1));
        assert_eq!(
            source.to_string(),
            error.chain().nth(1).unwrap().to_string()
        );
        assert_eq!(
            error.to_string(),
            format!(
                "block `app::outer#0` failed on peer {:#}: block `app::outer#1` failed on peer {:#}: \
                 peer {:#} is not connected (block `app::outer#2`)",
                PeerId::from_name("b"),
                PeerId::from_name("c"),
                PeerId::from_name("d"),
            )
        );
    }

    #[test]
    fn a_chain_travels_in_extra_fields_that_older_peers_ignore() {
        let error = chain();
        assert_eq!(roundtrip(&error), error);
        let wire = WireError::from(error.clone());
        let field = |name: &str| {
            wire.fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(wire.code, 16);
        assert_eq!(field("block"), Some("app::outer#0"));
        assert_eq!(field("source.1.code"), Some("16"));
        assert_eq!(field("source.1.block"), Some("app::outer#1"));
        assert_eq!(field("source.2.code"), Some("1"));
        assert_eq!(field("source.2.block"), Some("app::outer#2"));
        assert_eq!(
            field("source.2.peer"),
            Some(PeerId::from_name("d").to_string().as_str())
        );
        // A peer that knows neither `Failed` nor chains keeps the message, with all of it.
        assert_eq!(wire.message, error.to_string());
    }

    #[test]
    fn long_chains_and_long_texts_are_cut() {
        let mut error = RemoteError::Panicked {
            peer: None,
            block: Some("deep".into()),
            message: "x".repeat(10 * MAX_TEXT),
        };
        for depth in 0..12 {
            error = RemoteError::failed(&format!("hop{depth}"), None, error);
        }
        let back = roundtrip(&error);
        // The outer error and MAX_SOURCES errors behind it; the last one's source did not
        // travel, so it is known by its code and message only.
        assert_eq!(back.chain().count(), MAX_SOURCES + 1);
        assert_eq!(back.outcome(), Outcome::Ran);
        match back.root_cause() {
            RemoteError::Other {
                code: 16, message, ..
            } => assert_eq!(message.len(), MAX_TEXT),
            other => panic!("unexpected {other:?}"),
        }
        // A short chain keeps its root, with the text cut.
        let short = RemoteError::failed("hop", None, error.root_cause().clone());
        match roundtrip(&short).root_cause() {
            RemoteError::Panicked { message, .. } => assert_eq!(message.len(), MAX_TEXT),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(truncated("aé".repeat(3), 4), "aéa");
    }

    #[test]
    fn malformed_chain_fields_are_ignored() {
        let wire = WireError {
            code: 16,
            message: "m".into(),
            fields: vec![
                ("source.1.code".into(), "999".into()),
                ("source.1.message".into(), "from the future".into()),
                ("source.1.message".into(), "second".into()),
                ("source.0.code".into(), "1".into()),
                ("source.99.code".into(), "1".into()),
                ("source.x.code".into(), "1".into()),
                ("source.3.code".into(), "1".into()),
                ("source.1".into(), "1".into()),
                ("source.2.code".into(), "not a number".into()),
            ],
        };
        let error = RemoteError::from(wire);
        assert_eq!(error.code(), 16);
        assert_eq!(error.chain().count(), 2);
        assert_eq!(
            error.root_cause(),
            &RemoteError::Other {
                code: 999,
                message: "from the future".into(),
                peer: None,
                block: None,
            }
        );
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn mailbox_errors_keep_their_message_and_an_unknown_outcome() {
        let error = RemoteError::from(actix::MailboxError::Closed);
        assert_eq!(
            error.to_string(),
            "peer actor did not answer: Mailbox has closed"
        );
        assert_eq!(
            (error.outcome(), error.is_retryable()),
            (Outcome::Unknown, false)
        );
        let error = RemoteError::from(actix::MailboxError::Timeout);
        assert!(error.to_string().contains("timed out"), "{error}");
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
