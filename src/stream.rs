//! Streams across peers: [`RemoteStream`], what a `remote_stream!` block evaluates to, and
//! the pieces the link adapters share to carry one (the caller's [`Inbox`], the callee's
//! [`Gated`] producer).
//!
//! Flow control is by credit: the caller grants a window of items and bytes, the callee
//! sends no item beyond it, and the caller grants more as its consumer takes items (one
//! `Credit` frame per half window). Neither side buffers more than a window (plus the one
//! item that may overshoot the byte window), so a slow consumer slows the producer.

use std::cell::Cell;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
use futures_util::{FutureExt, Stream, StreamExt};

pub(crate) mod inbox;

use self::inbox::{Inbox, Window};
use crate::block::{Block, Invocation};
use crate::runtime::{Request, Runtime};
use crate::scope::Scope;
use crate::wire::{self, Payload};
use crate::{PeerId, RemoteError};

/// A stream call of some block, opened at its first poll (when its options are final).
trait Open<T> {
    fn open(self: Box<Self>, options: &Options) -> Running<T>;
}

/// What the builder methods of [`RemoteStream`] set.
#[derive(Debug, Clone, Copy)]
struct Options {
    timeout: Option<Duration>,
    idle: Option<Duration>,
    wait_for_ready: bool,
    window: Window,
}

struct Unopened<B> {
    target: PeerId,
    block: B,
}

impl<B: Block> Open<B::Output> for Unopened<B> {
    fn open(self: Box<Self>, options: &Options) -> Running<B::Output> {
        let Self { target, block } = *self;
        let name = B::INFO.name();
        let Some(scope) = Scope::try_current() else {
            return Running::failed(RemoteError::NoCurrentPeer {
                block: Some(name.to_owned()),
            });
        };
        let runtime = scope.runtime().clone();
        let mut deadline = runtime.now()
            + options
                .timeout
                .unwrap_or_else(|| runtime.default_deadline());
        if let Some(outer) = scope.deadline() {
            deadline = deadline.min(outer);
        }
        #[cfg(feature = "auth")]
        if let Some(narrowed) = scope.narrowed_deadline() {
            deadline = deadline.min(narrowed);
        }
        let idle = options.idle.map(|idle| Idle {
            limit: idle,
            timer: runtime.sleep_until(runtime.now() + idle),
        });
        let source = if target == scope.peer_id() {
            // Run here: straight from the body, or through the encoding if the peer asks.
            let child = scope.local_child(deadline).with_root(B::INFO.entry_point());
            if runtime.serialize_local() {
                let max = runtime.max_message_size();
                let captures = match Payload::encode(&block.into_captures(), 0) {
                    Ok(captures) => captures.into_bytes(),
                    Err(error) => return Running::failed(error.with_context(name, target)),
                };
                let items = invoke::<B>(Invocation {
                    scope: Some(child),
                    timed: true,
                    span: tracing::Span::none(),
                    captures,
                    max,
                    max_result: max,
                });
                Source::Local(Box::pin(items.map(move |item| {
                    item.and_then(|payload| {
                        wire::decode_shared::<B::Wire>(&payload.into_bytes(), max).map(B::from_wire)
                    })
                })))
            } else {
                Source::Local(body::<B>(child, true, block.into_captures()))
            }
        } else {
            let inbox = Inbox::new(options.window);
            let request = Request {
                block: B::INFO.id(),
                name,
                deadline,
                captures: match Payload::encode(
                    &block.into_captures(),
                    wire::CALL_ROOM + name.len(),
                ) {
                    Ok(captures) => captures,
                    Err(error) => return Running::failed(error.with_context(name, target)),
                },
                #[cfg(feature = "auth")]
                principal: scope.principal_arc(),
                trace: scope
                    .trace()
                    .map(|parent| crate::trace::Trace::child_of(Some(parent))),
                root: scope.root(),
                authority: scope.authority(),
                wait_for_ready: options.wait_for_ready,
                stream: Some(inbox.clone()),
            };
            let max = runtime.max_message_size();
            Source::Remote {
                inbox,
                batch: None,
                end: Some(runtime.clone().call(target, request)),
                decode: Box::new(move |items: &Bytes| {
                    wire::decode_shared_prefix::<B::Wire>(items, max)
                        .map(|(item, used)| (B::from_wire(item), used))
                }),
            }
        };
        Running {
            source,
            idle,
            runtime: Some(runtime),
            context: Some((name, target)),
            end_error: None,
        }
    }
}

/// The body of `B` as a stream of its items: run in `scope`, its deadline enforced here if
/// `timed`, a panic turned into [`RemoteError::Panicked`].
fn body<B: Block>(
    scope: Scope,
    timed: bool,
    captures: B::Captures,
) -> LocalBoxStream<'static, Result<B::Output, RemoteError>> {
    let name = B::INFO.name();
    let deadline = timed
        .then(|| scope.deadline())
        .flatten()
        .map(|deadline| scope.runtime().sleep_until(deadline));
    match scope.enter_stream(B::run_stream(captures)) {
        Some(items) => Box::pin(Guarded {
            items,
            deadline,
            done: false,
        }),
        None => Box::pin(futures_util::stream::once(std::future::ready(Err(
            RemoteError::VersionMismatch {
                peer: None,
                block: name.to_owned(),
            },
        )))),
    }
}

/// Runs stream block `B` for a call: decodes the captures (at most `max` bytes), runs the
/// body in the invocation's scope, and encodes each item (`TooLarge` for one whose frame
/// would be over `max_result`, which ends the stream).
pub(crate) fn invoke<B: Block>(
    invocation: Invocation,
) -> LocalBoxStream<'static, Result<Payload, RemoteError>> {
    let Invocation {
        scope,
        timed,
        span,
        captures,
        max,
        max_result,
    } = invocation;
    let Some(scope) = scope else {
        return Box::pin(futures_util::stream::once(std::future::ready(Err(
            RemoteError::NoCurrentPeer {
                block: Some(B::INFO.name().to_owned()),
            },
        ))));
    };
    let captures: B::Captures = match wire::decode_shared(&captures, max) {
        Ok(captures) => captures,
        Err(error) => return Box::pin(futures_util::stream::once(std::future::ready(Err(error)))),
    };
    let items = body::<B>(scope, timed, captures).map(move |item| {
        item.and_then(|item| {
            Payload::encode_within(&B::to_wire(item), wire::REPLY_ROOM, max_result)
        })
    });
    Box::pin(Spanned { span, items })
}

/// A stream polled inside a span.
struct Spanned<S> {
    span: tracing::Span,
    items: S,
}

impl<S: Stream + Unpin> Stream for Spanned<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        this.items.poll_next_unpin(cx)
    }
}

/// A body's stream of items: a panic or the deadline ends it with an error.
struct Guarded<T> {
    items: LocalBoxStream<'static, T>,
    deadline: Option<LocalBoxFuture<'static, ()>>,
    done: bool,
}

impl<T> Stream for Guarded<Result<T, RemoteError>> {
    type Item = Result<T, RemoteError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.items.poll_next_unpin(cx))) {
            Ok(Poll::Ready(None)) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Ok(Poll::Ready(Some(item))) => return Poll::Ready(Some(item)),
            Ok(Poll::Pending) => {}
            Err(panic) => {
                this.done = true;
                return Poll::Ready(Some(Err(RemoteError::Panicked {
                    peer: None,
                    block: None,
                    message: crate::scope::panic_message(panic.as_ref()),
                })));
            }
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.poll_unpin(cx).is_ready()
        {
            this.done = true;
            return Poll::Ready(Some(Err(RemoteError::Timeout {
                peer: None,
                block: None,
            })));
        }
        Poll::Pending
    }
}

/// Where the items of an open stream come from.
enum Source<T> {
    /// A call over a link: items in the inbox, the end (`Ok` or the error) from the call.
    Remote {
        inbox: Arc<Inbox>,
        /// The frame of items being taken: what is left of it, how many items that is, and
        /// the items and bytes taken from it (reported to the inbox when it is done).
        batch: Option<Batch>,
        end: Option<LocalBoxFuture<'static, Result<Bytes, RemoteError>>>,
        /// Decodes the first item of a frame's rest: the item, and the bytes it took.
        decode: Decode<T>,
    },
    /// The body, run on this peer.
    Local(LocalBoxStream<'static, Result<T, RemoteError>>),
    /// Nothing more.
    Done,
}

/// Decodes the first item of a frame's rest: the item, and the bytes it took.
type Decode<T> = Box<dyn Fn(&Bytes) -> Result<(T, usize), RemoteError>>;

/// A frame of items a consumer is taking.
struct Batch {
    rest: Bytes,
    count: u64,
    left: u64,
    taken_bytes: u64,
}

struct Idle {
    limit: Duration,
    timer: LocalBoxFuture<'static, ()>,
}

struct Running<T> {
    source: Source<T>,
    idle: Option<Idle>,
    runtime: Option<Arc<dyn Runtime>>,
    /// The block's name and target, added to errors.
    context: Option<(&'static str, PeerId)>,
    /// The error that ends the stream, after the items delivered before it.
    end_error: Option<RemoteError>,
}

impl<T> Running<T> {
    fn failed(error: RemoteError) -> Self {
        Self {
            source: Source::Done,
            idle: None,
            runtime: None,
            context: None,
            end_error: Some(error),
        }
    }

    fn next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, RemoteError>>> {
        let item = match &mut self.source {
            Source::Remote {
                inbox,
                batch,
                end,
                decode,
            } => loop {
                if let Some(current) = batch {
                    let item = decode(&current.rest).map(|(item, used)| {
                        current.left -= 1;
                        current.taken_bytes += used as u64;
                        current.rest = current.rest.slice(used.min(current.rest.len())..);
                        item
                    });
                    if current.left == 0 || item.is_err() {
                        inbox.took(current.count - current.left, current.taken_bytes);
                        *batch = None;
                    }
                    break Some(item);
                }
                if let Some((rest, count)) = inbox.pop(cx) {
                    *batch = Some(Batch {
                        rest,
                        count,
                        left: count,
                        taken_bytes: 0,
                    });
                    continue;
                }
                let Some(call) = end else {
                    break None;
                };
                // Every item came before the end: look again once it is here.
                match call.poll_unpin(cx) {
                    Poll::Ready(result) => {
                        *end = None;
                        if let Err(error) = result {
                            self.end_error = Some(error);
                        }
                    }
                    Poll::Pending => return self.idle(cx),
                }
            },
            Source::Local(items) => match items.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(item))) => Some(Ok(item)),
                Poll::Ready(Some(Err(error))) => {
                    self.end_error = Some(error);
                    None
                }
                Poll::Ready(None) => None,
                Poll::Pending => return self.idle(cx),
            },
            Source::Done => None,
        };
        match item {
            Some(Ok(item)) => {
                if let (Some(idle), Some(runtime)) = (&mut self.idle, &self.runtime) {
                    idle.timer = runtime.sleep_until(runtime.now() + idle.limit);
                }
                Poll::Ready(Some(Ok(item)))
            }
            // An item that does not decode ends the stream (and cancels the call).
            Some(Err(error)) => self.end(Some(error)),
            None => {
                let error = self.end_error.take();
                self.end(error)
            }
        }
    }

    /// No item yet: fails the stream if the gap since the last one passed its limit.
    fn idle(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, RemoteError>>> {
        let expired = self
            .idle
            .as_mut()
            .is_some_and(|idle| idle.timer.poll_unpin(cx).is_ready());
        if expired {
            return self.end(Some(RemoteError::Timeout {
                peer: None,
                block: None,
            }));
        }
        Poll::Pending
    }

    /// The stream is over, with `error` as its last item if any: the call (if still open)
    /// is cancelled.
    fn end(&mut self, error: Option<RemoteError>) -> Poll<Option<Result<T, RemoteError>>> {
        self.source = Source::Done;
        self.idle = None;
        let error = error.map(|error| match self.context {
            Some((name, target)) => error.with_context(name, target),
            None => error,
        });
        if let Some(runtime) = &self.runtime {
            runtime.record(error.as_ref().map_or(Ok(()), Err));
        }
        self.runtime = None;
        Poll::Ready(error.map(Err))
    }
}

/// A stream of the items a `remote_stream!` block yields on another peer: a
/// `Stream<Item = Result<T, RemoteError>>` that ends when the block's stream ends.
///
/// It is lazy: nothing is sent before it is first polled, and it must be polled inside a
/// peer (in a block body or [`PeerHandle::run`](crate::PeerHandle::run)), otherwise it
/// yields [`RemoteError::NoCurrentPeer`]. Then:
///
/// - **Flow control:** the callee sends at most a window of items ahead of what this stream's
///   consumer took ([`RemoteStream::window`], default 4 096 items and 1 MiB), so a slow consumer
///   slows the producer and neither side holds more than a window.
/// - **Dropping it** stops the block's stream on the callee and, with it, the calls and
///   streams the block was making.
/// - **Deadline:** the whole stream must end by its deadline ([`RemoteStream::timeout`],
///   else the peer's default of 30 s, and never after the enclosing block's); an
///   [`idle_timeout`](RemoteStream::idle_timeout) bounds the gap between items.
/// - **Errors** come last: a lost link yields the items that arrived, then
///   [`RemoteError::ConnectionLost`], then the stream ends.
#[must_use = "a remote stream does nothing unless polled"]
pub struct RemoteStream<T> {
    options: Options,
    state: State<T>,
}

enum State<T> {
    Unopened(Box<dyn Open<T>>),
    Running(Box<Running<T>>),
    Done,
}

impl<T: 'static> RemoteStream<T> {
    #[doc(hidden)]
    pub fn new<B: Block<Output = T>>(target: PeerId, block: B) -> Self {
        Self {
            options: Options {
                timeout: None,
                idle: None,
                wait_for_ready: false,
                window: Window::DEFAULT,
            },
            state: State::Unopened(Box::new(Unopened { target, block })),
        }
    }

    /// Sets the deadline of the whole stream, counted from its first poll. A shorter deadline
    /// of the enclosing block still applies.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.options.timeout = Some(limit);
        self
    }

    /// Fails the stream with [`RemoteError::Timeout`] (and stops it on the callee) when no
    /// item comes for `limit`. Default: none, only the deadline.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.options.idle = Some(limit);
        self
    }

    /// How far the callee may run ahead of this stream's consumer: at most `items` items and
    /// `bytes` bytes of them (the bytes may overshoot by one frame of items, at most 16 KiB
    /// or one item). Each is clamped to `1..=65 536` items and `1..=64 MiB`. Default: 4 096
    /// items, 1 MiB.
    pub fn window(mut self, items: u32, bytes: u32) -> Self {
        self.options.window = Window {
            items: items.clamp(1, Window::MAX.items),
            bytes: bytes.clamp(1, Window::MAX.bytes),
        };
        self
    }

    /// Waits for the target's link until the deadline even if the target is known down, as
    /// [`RemoteCall::wait_for_ready`](crate::RemoteCall::wait_for_ready).
    pub fn wait_for_ready(mut self) -> Self {
        self.options.wait_for_ready = true;
        self
    }
}

impl<T> Stream for RemoteStream<T> {
    type Item = Result<T, RemoteError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let State::Unopened(_) = &this.state {
            let State::Unopened(open) = std::mem::replace(&mut this.state, State::Done) else {
                return Poll::Ready(None);
            };
            this.state = State::Running(Box::new(open.open(&this.options)));
        }
        let State::Running(running) = &mut this.state else {
            return Poll::Ready(None);
        };
        let item = running.next(cx);
        if let Poll::Ready(None) = item {
            this.state = State::Done;
        }
        item
    }
}

impl<T> fmt::Debug for RemoteStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Unopened(_) => "ready",
            State::Running(_) => "running",
            State::Done => "done",
        };
        f.debug_struct("RemoteStream")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// A callee's stream, shared between the link adapter and the task that pulls it: how many
/// items (and bytes) the adapter lets it pull, from the engine's allowance.
pub(crate) struct Gate {
    allowance: Cell<(u64, u64)>,
    waker: Cell<Option<Waker>>,
}

impl Gate {
    pub(crate) fn new(allowance: (u64, u64)) -> Rc<Self> {
        Rc::new(Self {
            allowance: Cell::new(allowance),
            waker: Cell::new(None),
        })
    }

    /// Sets what may be pulled now (`(0, 0)`: nothing until set again).
    pub(crate) fn allow(&self, allowance: (u64, u64)) {
        self.allowance.set(allowance);
        if allowance.0 > 0
            && allowance.1 > 0
            && let Some(waker) = self.waker.take()
        {
            waker.wake();
        }
    }
}

/// The most items, and bytes of them, one `Items` frame carries: items ready together share
/// a frame up to these; a larger item goes alone.
const BATCH_ITEMS: usize = 256;
const BATCH_BYTES: usize = 16 << 10;

/// What a callee's stream produces next.
pub(crate) enum Step {
    /// Items (at least one, within the allowance), for
    /// [`Engine::stream_items`](crate::link::Engine::stream_items).
    Items(Vec<Payload>),
    /// The end: `Ok` (the empty payload of `()`), or the error that ends it.
    End(Result<Payload, RemoteError>),
}

/// A callee's stream of encoded items, pulled only within its [`Gate`]'s allowance: the items
/// ready at once come as one [`Step::Items`]. It ends with one [`Step::End`].
pub(crate) struct Gated {
    gate: Rc<Gate>,
    items: LocalBoxStream<'static, Result<Payload, RemoteError>>,
    /// The end, held back while items taken before it are handed over.
    end: Option<Result<Payload, RemoteError>>,
    done: bool,
}

impl Gated {
    pub(crate) fn new(
        gate: Rc<Gate>,
        items: LocalBoxStream<'static, Result<Payload, RemoteError>>,
    ) -> Self {
        Self {
            gate,
            items,
            end: None,
            done: false,
        }
    }
}

impl Stream for Gated {
    type Item = Step;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Step>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(end) = this.end.take() {
            this.done = true;
            return Poll::Ready(Some(Step::End(end)));
        }
        let (items, bytes) = this.gate.allowance.get();
        if items == 0 || bytes == 0 {
            this.gate.waker.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        let most = usize::try_from(items)
            .unwrap_or(usize::MAX)
            .min(BATCH_ITEMS);
        let bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(BATCH_BYTES);
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        while batch.len() < most && batch_bytes < bytes {
            match this.items.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(item))) => {
                    batch_bytes += item.len();
                    batch.push(item);
                }
                Poll::Ready(Some(Err(error))) => {
                    this.end = Some(Err(error));
                    break;
                }
                Poll::Ready(None) => {
                    this.end = Some(Payload::encode(&(), wire::REPLY_ROOM));
                    break;
                }
                Poll::Pending => break,
            }
        }
        if !batch.is_empty() {
            return Poll::Ready(Some(Step::Items(batch)));
        }
        match this.end.take() {
            Some(end) => {
                this.done = true;
                Poll::Ready(Some(Step::End(end)))
            }
            None => Poll::Pending,
        }
    }
}

/// Turns the body of a `remote_stream!` block (a future of its stream) into the block's
/// stream of items.
#[doc(hidden)]
pub fn items_of<S, F>(body: F) -> LocalBoxStream<'static, Result<S::Item, RemoteError>>
where
    F: std::future::Future<Output = S> + 'static,
    S: Stream + 'static,
{
    Box::pin(body.into_stream().flatten().map(Ok))
}
