//! [`RemoteCall`]: the future a `remote!` block evaluates to.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tracing::Instrument;
use tracing::field::{Empty, display};

use crate::block::Block;
use crate::runtime::Request;
use crate::scope::Scope;
use crate::trace::{Hex, Trace, record_outcome};
use crate::{PeerId, RemoteError, wire};

/// A call of some block, its future made at its first poll (when its options are final):
/// one allocation for the call and its future together.
trait Start<T> {
    fn poll_call(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        timeout: Option<Duration>,
        wait_for_ready: bool,
    ) -> Poll<Result<T, RemoteError>>;
    fn started(&self) -> bool;
}

/// How a call's future is made.
type Make<B, F> = fn(PeerId, Option<Duration>, bool, B) -> F;

pin_project_lite::pin_project! {
    struct Execute<B, F> {
        start: Option<(PeerId, B)>,
        make: Make<B, F>,
        #[pin]
        running: Option<F>,
    }
}

impl<B: Block, F: Future<Output = Result<B::Output, RemoteError>>> Start<B::Output>
    for Execute<B, F>
{
    fn poll_call(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        timeout: Option<Duration>,
        wait_for_ready: bool,
    ) -> Poll<Result<B::Output, RemoteError>> {
        let mut this = self.project();
        if let Some((target, block)) = this.start.take() {
            this.running
                .set(Some((this.make)(target, timeout, wait_for_ready, block)));
        }
        match this.running.as_pin_mut() {
            Some(running) => running.poll(cx),
            None => Poll::Pending,
        }
    }

    fn started(&self) -> bool {
        self.start.is_none()
    }
}

fn erase<B: Block, F>(target: PeerId, block: B, make: Make<B, F>) -> Pin<Box<dyn Start<B::Output>>>
where
    F: Future<Output = Result<B::Output, RemoteError>> + 'static,
{
    Box::pin(Execute {
        start: Some((target, block)),
        make,
        running: None,
    })
}

/// A call of a block on a peer: a future of `Result<T, RemoteError>`.
///
/// It is lazy: nothing is sent before it is first polled, and it must be polled inside a
/// peer (in a block body or [`PeerHandle::run`](crate::PeerHandle::run)), otherwise it fails
/// with [`RemoteError::NoCurrentPeer`]. Dropping it before it completes cancels the call on
/// the callee.
///
/// The deadline is the earlier of the call's own ([`RemoteCall::timeout`], else the peer's
/// default of 30 s) and the deadline of the block it is made from.
#[must_use = "a remote call does nothing unless awaited"]
pub struct RemoteCall<T> {
    timeout: Option<Duration>,
    wait_for_ready: bool,
    /// `None` once complete.
    call: Option<Pin<Box<dyn Start<T>>>>,
}

impl<T: 'static> RemoteCall<T> {
    #[doc(hidden)]
    pub fn new<B: Block<Output = T>>(target: PeerId, block: B) -> Self {
        Self {
            timeout: None,
            wait_for_ready: false,
            call: Some(erase(target, block, execute::<B>)),
        }
    }

    /// Sets this call's deadline, counted from its first poll. A shorter deadline of the
    /// enclosing block still applies.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Waits for the target's link until the deadline even if the target is known down
    /// (its link was lost, or its last dial failed and it is in backoff), as gRPC's
    /// wait-for-ready. Without it such a call fails at once with
    /// [`RemoteError::NotConnected`]; a peer never seen, or being dialled, is waited for in
    /// either case. [`PeerBuilder::wait_for_ready`](crate::PeerBuilder::wait_for_ready) makes
    /// it the default of a peer.
    pub fn wait_for_ready(mut self) -> Self {
        self.wait_for_ready = true;
        self
    }
}

impl<T> Future for RemoteCall<T> {
    type Output = Result<T, RemoteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(call) = this.call.as_mut() else {
            panic!("`RemoteCall` polled after completion")
        };
        let output = call
            .as_mut()
            .poll_call(cx, this.timeout, this.wait_for_ready);
        if output.is_ready() {
            this.call = None;
        }
        output
    }
}

impl<T> fmt::Debug for RemoteCall<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.call {
            Some(call) if call.started() => "running",
            Some(_) => "ready",
            None => "done",
        };
        f.debug_struct("RemoteCall").field("state", &state).finish()
    }
}

async fn execute<B: Block>(
    target: PeerId,
    timeout: Option<Duration>,
    wait_for_ready: bool,
    block: B,
) -> Result<B::Output, RemoteError> {
    let captures = Captures::Value(block.into_captures());
    execute_captures::<B>(target, timeout, wait_for_ready, captures).await
}

/// The captures of one call: their value, or their encoding when one encoding goes to
/// several peers (`remote_all!`); `Err` if that encoding failed.
pub(crate) enum Captures<C> {
    Value(C),
    Encoded(Result<wire::Payload, RemoteError>),
}

impl<C: serde::de::DeserializeOwned> Captures<C> {
    /// The value, decoded if it was encoded (a local target among several).
    fn into_value(self, max: usize) -> Result<C, RemoteError> {
        match self {
            Self::Value(value) => Ok(value),
            Self::Encoded(payload) => wire::decode_shared(&payload?.into_bytes(), max),
        }
    }

    /// The encoding, made now if it was a value.
    fn into_payload(self, name: &str) -> Result<wire::Payload, RemoteError>
    where
        C: serde::Serialize,
    {
        match self {
            Self::Value(value) => wire::Payload::encode(&value, wire::CALL_ROOM + name.len()),
            Self::Encoded(payload) => payload,
        }
    }
}

/// Calls block `B` on `target` with `captures`: locally if `target` is this peer (unless it
/// serializes local calls), else through the runtime; the error names the block and peer.
pub(crate) async fn execute_captures<B: Block>(
    target: PeerId,
    timeout: Option<Duration>,
    wait_for_ready: bool,
    captures: Captures<B::Captures>,
) -> Result<B::Output, RemoteError> {
    let name = B::INFO.name();
    let Some(scope) = Scope::try_current() else {
        return Err(RemoteError::NoCurrentPeer {
            block: Some(name.to_owned()),
        });
    };
    let runtime = scope.runtime().clone();
    let mut deadline = runtime.now() + timeout.unwrap_or_else(|| runtime.default_deadline());
    if let Some(outer) = scope.deadline() {
        deadline = deadline.min(outer);
    }
    #[cfg(feature = "auth")]
    if let Some(narrowed) = scope.narrowed_deadline() {
        deadline = deadline.min(narrowed);
    }
    let local = target == scope.peer_id() && !runtime.serialize_local();
    let span = if !crate::trace::calls_recorded() {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            target: "distributed_scope::call",
            "call",
            block = name,
            block_id = %Hex(B::INFO.id()),
            call_id = Empty,
            parent_id = Empty,
            trace_id = Empty,
            caller = %scope.peer_id(),
            callee = %target,
            local,
            deadline_ms = deadline.saturating_duration_since(runtime.now()).as_millis() as u64,
            outcome = Empty,
            error_code = Empty,
            error = Empty,
            duration_ms = Empty,
        )
    };
    // A trace context costs nothing unless someone records spans here, or the call is part of
    // a trace that came in from another peer (so that the chain stays linked through peers
    // that do not record).
    let parent = scope.trace();
    let trace = (parent.is_some() || !span.is_disabled()).then(|| Trace::child_of(parent));
    let started = (!span.is_disabled()).then(|| runtime.now());
    if let (Some(trace), false) = (trace, span.is_disabled()) {
        span.record("call_id", display(Hex(trace.call_id)));
        span.record("trace_id", display(Hex(trace.trace_id)));
        if let Some(parent) = parent {
            span.record("parent_id", display(Hex(parent.call_id)));
        }
    }
    let result = if local {
        match captures.into_value(runtime.max_message_size()) {
            Ok(captures) => {
                scope
                    .local_child(deadline)
                    .with_trace(trace)
                    .with_root(B::INFO.entry_point())
                    .guard(crate::block::run::<B>(captures))
                    .instrument(span.clone())
                    .await
            }
            Err(error) => Err(error),
        }
    } else {
        remote::<B>(&scope, target, deadline, captures, trace, wait_for_ready)
            .instrument(span.clone())
            .await
    };
    let result = result.map_err(|error| error.with_context(name, target));
    record_outcome(&span, started, &result);
    runtime.record(result.as_ref().map(|_| ()));
    result
}

async fn remote<B: Block>(
    scope: &Scope,
    target: PeerId,
    deadline: web_time::Instant,
    captures: Captures<B::Captures>,
    trace: Option<Trace>,
    wait_for_ready: bool,
) -> Result<B::Output, RemoteError> {
    let runtime = scope.runtime().clone();
    let request = Request {
        block: B::INFO.id(),
        name: B::INFO.name(),
        deadline,
        captures: captures.into_payload(B::INFO.name())?,
        #[cfg(feature = "auth")]
        principal: scope.principal_arc(),
        trace,
        root: scope.root(),
        authority: scope.authority(),
        wait_for_ready,
        stream: None,
    };
    // The runtime answers by the deadline: the link fails the call with `Timeout` when it
    // passes (one timer per link, not one per call).
    let reply = runtime.clone().call(target, request).await?;
    wire::decode_shared::<B::Wire>(&reply, runtime.max_message_size()).map(B::from_wire)
}
