//! What a peer's runtime (native actix, or the browser's event loop) offers the portable
//! core: [`Runtime`], and the [`Request`] it carries.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use web_time::Instant;

use crate::trace::Trace;
use crate::{PeerId, RemoteError};

#[cfg(feature = "auth")]
use crate::auth::Principal;

/// What a peer's runtime offers the portable core: time, and sending calls.
pub(crate) trait Runtime: 'static {
    /// This peer's id.
    fn local_id(&self) -> PeerId;
    /// The current time (`web-time`, so that wasm32 works).
    fn now(&self) -> Instant;
    /// Completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> LocalBoxFuture<'static, ()>;
    /// Sends a call and waits for its raw reply, or fails with `Timeout` at the request's
    /// deadline; dropping the future cancels the call.
    fn call(
        self: Arc<Self>,
        target: PeerId,
        request: Request,
    ) -> LocalBoxFuture<'static, Result<Bytes, RemoteError>>;
    /// The deadline of a call that sets none.
    fn default_deadline(&self) -> Duration;
    /// The largest reply this peer decodes.
    fn max_message_size(&self) -> usize;
    /// Whether calls to this peer itself still go through serialization.
    fn serialize_local(&self) -> bool;
    /// Counts the outcome of a call made from this peer.
    fn record(&self, outcome: Result<(), &RemoteError>) {
        let _ = outcome;
    }
    /// A grant of `origin`'s authority for the scope of entry point `root`, narrowed as
    /// `narrowing` says, valid until `deadline`, signed by this peer (`None` if it has no
    /// identity to sign with).
    #[cfg(feature = "auth")]
    fn grant(
        &self,
        origin: &Principal,
        root: u64,
        narrowing: &Narrowing,
        deadline: Instant,
    ) -> Option<Arc<str>> {
        let _ = (origin, root, narrowing, deadline);
        None
    }
    /// The application value of this type registered on the peer, if any.
    fn data(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        let _ = type_id;
        None
    }
}

/// What a grant still allows: the blocks (name globs) and the peers that may run them;
/// `None` for no narrowing.
#[cfg(feature = "auth")]
#[derive(Debug, Clone, Default)]
pub(crate) struct Narrowing {
    pub(crate) blocks: Option<Vec<String>>,
    pub(crate) peers: Option<Vec<PeerId>>,
    /// The latest deadline of the scope's later hops (and of the grant they carry).
    pub(crate) deadline: Option<Instant>,
}

/// An outgoing call as the core hands it to the runtime.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) block: u64,
    pub(crate) name: &'static str,
    pub(crate) deadline: Instant,
    pub(crate) captures: crate::wire::Payload,
    #[cfg(feature = "auth")]
    pub(crate) principal: Option<Arc<Principal>>,
    /// The call's trace context, sent as `traceparent` in the call's metadata.
    pub(crate) trace: Option<Trace>,
    /// The entry point of the scope making the call, sent as `ds-root` in the call's
    /// metadata: what a nested block called on another peer must belong to.
    pub(crate) root: Option<u64>,
    /// The signed grant of the scope's root principal, sent as `ds-grant` in the call's
    /// metadata.
    pub(crate) authority: Option<Arc<str>>,
    /// Wait for the target's link until the deadline even while it is known down.
    #[cfg_attr(
        target_arch = "wasm32",
        expect(
            dead_code,
            reason = "a browser peer always waits for its links until the deadline"
        )
    )]
    pub(crate) wait_for_ready: bool,
    /// A stream call: where its items go (the call's reply ends the stream).
    pub(crate) stream: Option<Arc<crate::stream::inbox::Inbox>>,
}

#[cfg(test)]
impl Request {
    /// A call of block `block` (`name`) with `captures`, due at `deadline`, with nothing else.
    pub(crate) fn plain(
        block: u64,
        name: &'static str,
        deadline: Instant,
        captures: crate::wire::Payload,
    ) -> Self {
        Self {
            block,
            name,
            deadline,
            captures,
            #[cfg(feature = "auth")]
            principal: None,
            trace: None,
            root: None,
            authority: None,
            wait_for_ready: false,
            stream: None,
        }
    }
}
