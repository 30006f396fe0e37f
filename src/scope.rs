//! The current peer of a running block: [`Scope`], and how a future runs inside one.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{Either, select};
use web_time::Instant;

use crate::runtime::{Request, Runtime};
use crate::trace::Trace;
use crate::{PeerId, RemoteError};

#[cfg(feature = "auth")]
use crate::auth::Principal;

/// Runs a call to this peer itself through the registry, serialized as if it were remote
/// (the `serialize_local` option).
pub(crate) async fn call_self(
    runtime: Arc<dyn Runtime>,
    request: Request,
) -> Result<Bytes, RemoteError> {
    let entry = crate::block::lookup(request.block, request.name)?;
    let caller = runtime.local_id();
    let max = runtime.max_message_size();
    let scope = Scope::new(
        runtime,
        caller,
        #[cfg(feature = "auth")]
        request.principal,
        Some(request.deadline),
    )
    .with_root(entry.info.entry_point());
    // The caller is this peer: a hop of its own scope keeps carrying the scope's grant.
    #[cfg(feature = "auth")]
    let scope = scope.with_authority(None, request.authority);
    let reply = (entry.invoke)(crate::block::Invocation {
        scope: Some(scope),
        timed: true,
        span: tracing::Span::none(),
        captures: request.captures.into_bytes(),
        max,
        max_result: max,
    })
    .await?;
    Ok(reply.into_bytes())
}

/// The verified principal of a scope's root call, and the signed grant of it that the
/// scope's hops carry.
#[cfg(feature = "auth")]
pub(crate) type Authority = (Option<Arc<Principal>>, Option<Arc<str>>);

/// The peer a block is running on, who called it, and with which principal.
///
/// Inside a block body (and inside [`PeerHandle::run`](crate::PeerHandle::run)) the scope is
/// ambient: [`Scope::current`] returns it.
///
/// # Examples
///
/// ```no_run
/// use distributed_scope::{remote, PeerId, RemoteError, Scope};
///
/// async fn where_am_i(server: PeerId) -> Result<(PeerId, PeerId), RemoteError> {
///     remote!(server, [] -> (PeerId, PeerId) {
///         let scope = Scope::current();
///         (scope.peer_id(), scope.caller())
///     })
///     .await
/// }
/// ```
#[derive(Clone)]
pub struct Scope(Rc<Inner>);

struct Inner {
    peer: PeerId,
    caller: PeerId,
    #[cfg(feature = "auth")]
    principal: Option<Arc<Principal>>,
    deadline: Option<Instant>,
    runtime: Arc<dyn Runtime>,
    /// The call this scope runs (its trace and id), if traced: nested calls name it as parent.
    trace: Cell<Option<Trace>>,
    /// The entry point whose root call this scope belongs to (`None` outside any block): the
    /// blocks nested in it may run on other peers as hops of this scope.
    root: Cell<Option<u64>>,
    /// The verified principal of the root call, and the signed grant of it that this
    /// scope's hops carry.
    #[cfg(feature = "auth")]
    authority: RefCell<Authority>,
    /// What the grant this scope's hops carry still allows.
    #[cfg(feature = "auth")]
    narrowing: RefCell<crate::runtime::Narrowing>,
}

thread_local! {
    static CURRENT: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

impl Scope {
    /// The scope of the block running now.
    ///
    /// # Panics
    ///
    /// Outside any peer (not inside a block or [`PeerHandle::run`](crate::PeerHandle::run)).
    /// Use [`Scope::try_current`] where that can happen.
    pub fn current() -> Self {
        Self::try_current().expect(
            "`Scope::current()` called outside a peer: call it inside a block or `PeerHandle::run`",
        )
    }

    /// The scope of the block running now, or `None` outside any peer.
    pub fn try_current() -> Option<Self> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// The id of the peer this code runs on.
    pub fn peer_id(&self) -> PeerId {
        self.0.peer
    }

    /// The peer that called the running block (the peer itself for local calls and at the
    /// top of [`PeerHandle::run`](crate::PeerHandle::run)).
    pub fn caller(&self) -> PeerId {
        self.0.caller
    }

    /// The principal verified on the link the call came in on; `None` on links without auth.
    /// Local calls inherit the caller's principal.
    #[cfg(feature = "auth")]
    pub fn principal(&self) -> Option<Principal> {
        self.0.principal.as_deref().cloned()
    }

    /// The principal that made the root call of this scope's chain, verified: for a block
    /// called directly (an entry point) the principal of its link; for a hop of a scope
    /// started on another peer, the principal carried by the hop's signed grant (signed by
    /// the peer that admitted the root call). `None` without auth, or when the peer that
    /// admitted the root call has no identity to sign grants with.
    ///
    /// In A -> B -> C, where A links to B with a `guest` token, C's block sees `origin()`
    /// with subject `guest` while its [`principal`](Self::principal) is B's.
    #[cfg(feature = "auth")]
    pub fn origin(&self) -> Option<Principal> {
        self.0.authority.borrow().0.as_deref().cloned()
    }

    /// Narrows the authority this scope's later hops carry to the blocks whose names match
    /// `blocks` (globs, as in policies): a peer refuses a hop of this scope to any other
    /// block with `Forbidden`. The grant is signed again by this peer, so it needs an
    /// identity ([`PeerBuilder::identity`](crate::PeerBuilder::identity)); without one the
    /// hops carry no authority at all (and peers with an origin policy refuse them). A
    /// second call replaces the block list.
    #[cfg(feature = "auth")]
    pub fn narrow<I, S>(&self, blocks: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let blocks = blocks.into_iter().map(Into::into).collect();
        self.0.narrowing.borrow_mut().blocks = Some(blocks);
        self.sign_again();
    }

    /// Narrows the authority this scope's later hops carry to the peers `peers`: any other
    /// peer refuses a hop of this scope with `Forbidden`. As [`narrow`](Self::narrow), the
    /// grant is signed again by this peer; a second call replaces the peer list.
    #[cfg(feature = "auth")]
    pub fn narrow_peers(&self, peers: impl IntoIterator<Item = PeerId>) {
        self.0.narrowing.borrow_mut().peers = Some(peers.into_iter().collect());
        self.sign_again();
    }

    /// Narrows the authority this scope's later hops carry to `within` from now: their
    /// deadlines end there at the latest (whatever the hop's own timeout), and so does the
    /// grant they carry (signed again by this peer, as [`narrow`](Self::narrow)), so a peer
    /// further down the chain refuses it afterwards. A second call can only shorten it.
    #[cfg(feature = "auth")]
    pub fn narrow_deadline(&self, within: Duration) {
        let at = self.0.runtime.now() + within;
        {
            let mut narrowing = self.0.narrowing.borrow_mut();
            narrowing.deadline = Some(narrowing.deadline.map_or(at, |earlier| earlier.min(at)));
        }
        self.sign_again();
    }

    /// The deadline [`narrow_deadline`](Self::narrow_deadline) set for this scope's hops.
    #[cfg(feature = "auth")]
    pub(crate) fn narrowed_deadline(&self) -> Option<Instant> {
        self.0.narrowing.borrow().deadline
    }

    /// Replaces the grant this scope's hops carry by one of its narrowing, signed here.
    #[cfg(feature = "auth")]
    fn sign_again(&self) {
        let mut deadline = self
            .0
            .deadline
            .unwrap_or_else(|| self.0.runtime.now() + self.0.runtime.default_deadline());
        let narrowing = self.0.narrowing.borrow();
        if let Some(narrowed) = narrowing.deadline {
            deadline = deadline.min(narrowed);
        }
        let mut authority = self.0.authority.borrow_mut();
        let grant = match (&authority.0, self.root()) {
            (Some(origin), Some(root)) => self.0.runtime.grant(origin, root, &narrowing, deadline),
            _ => None,
        };
        authority.1 = grant;
    }

    /// Sets the verified origin and grant of this scope.
    #[cfg(feature = "auth")]
    pub(crate) fn with_authority(
        self,
        origin: Option<Arc<Principal>>,
        grant: Option<Arc<str>>,
    ) -> Self {
        // A grant's own narrowing is where this scope's starts (a link token's `peers`
        // claim binds ids, it narrows nothing).
        if let Some(granted) = origin.as_deref().filter(|origin| origin.root().is_some()) {
            let peers: Vec<PeerId> = granted
                .peers()
                .iter()
                .filter_map(|peer| peer.parse().ok())
                .collect();
            *self.0.narrowing.borrow_mut() = crate::runtime::Narrowing {
                blocks: granted
                    .blocks()
                    .map(|globs| globs.into_iter().map(str::to_owned).collect()),
                peers: (!granted.peers().is_empty()).then_some(peers),
                deadline: None,
            };
        }
        *self.0.authority.borrow_mut() = (origin, grant);
        self
    }

    /// The grant this scope's hops carry.
    pub(crate) fn authority(&self) -> Option<Arc<str>> {
        #[cfg(feature = "auth")]
        return self.0.authority.borrow().1.clone();
        #[cfg(not(feature = "auth"))]
        None
    }

    /// The time left before the running call's deadline, if it has one.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .deadline
            .map(|deadline| deadline.saturating_duration_since(self.0.runtime.now()))
    }

    /// The value of type `T` registered on the peer this code runs on with
    /// [`PeerBuilder::data`](crate::PeerBuilder::data), or `None` if there is none (and in the
    /// browser, which has no application data).
    ///
    /// It is shared, not copied: an `Arc` like actix-web's `web::Data`, so a block can reach
    /// an actor's `Addr`, a connection pool or the configuration of the peer it runs on.
    ///
    /// ```no_run
    /// use distributed_scope::{remote, PeerId, RemoteError, Scope};
    ///
    /// struct Settings {
    ///     greeting: String,
    /// }
    ///
    /// async fn greet(server: PeerId) -> Result<String, RemoteError> {
    ///     remote!(server, [] -> String {
    ///         // `Peer::builder(id).data(Settings { .. })` on the server.
    ///         Scope::current()
    ///             .data::<Settings>()
    ///             .map_or_else(String::new, |settings| settings.greeting.clone())
    ///     })
    ///     .await
    /// }
    /// ```
    pub fn data<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let value = self.0.runtime.data(TypeId::of::<T>())?;
        value.downcast::<T>().ok()
    }

    /// Sleeps for `duration` on this peer's timer (portable: also in the browser).
    ///
    /// A block that sleeps past its deadline is stopped there, like any other block.
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + 'static {
        let runtime = &self.0.runtime;
        runtime.sleep_until(runtime.now() + duration)
    }

    pub(crate) fn new(
        runtime: Arc<dyn Runtime>,
        caller: PeerId,
        #[cfg(feature = "auth")] principal: Option<Arc<Principal>>,
        deadline: Option<Instant>,
    ) -> Self {
        Self(Rc::new(Inner {
            peer: runtime.local_id(),
            caller,
            #[cfg(feature = "auth")]
            principal,
            deadline,
            runtime,
            trace: Cell::new(None),
            root: Cell::new(None),
            #[cfg(feature = "auth")]
            authority: RefCell::new((None, None)),
            #[cfg(feature = "auth")]
            narrowing: RefCell::default(),
        }))
    }

    /// Sets the trace context of the call this scope runs.
    pub(crate) fn with_trace(self, trace: Option<Trace>) -> Self {
        self.0.trace.set(trace);
        self
    }

    /// Sets the entry point of the block this scope runs.
    pub(crate) fn with_root(self, root: u64) -> Self {
        self.0.root.set(Some(root));
        self
    }

    pub(crate) fn root(&self) -> Option<u64> {
        self.0.root.get()
    }

    pub(crate) fn trace(&self) -> Option<Trace> {
        self.0.trace.get()
    }

    /// The scope of a local call made from this one.
    pub(crate) fn local_child(&self, deadline: Instant) -> Self {
        let child = Self::new(
            self.0.runtime.clone(),
            self.0.peer,
            #[cfg(feature = "auth")]
            self.0.principal.clone(),
            Some(deadline),
        );
        #[cfg(feature = "auth")]
        let child = {
            let (origin, grant) = self.0.authority.borrow().clone();
            let child = child.with_authority(origin, grant);
            *child.0.narrowing.borrow_mut() = self.0.narrowing.borrow().clone();
            child
        };
        child
    }

    pub(crate) fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.0.runtime
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.0.deadline
    }

    #[cfg(feature = "auth")]
    pub(crate) fn principal_arc(&self) -> Option<Arc<Principal>> {
        self.0.principal.clone()
    }

    /// Runs `future` with this scope current: the scope is set for the duration of each poll
    /// and restored afterwards, so interleaved tasks on one thread each see their own.
    pub(crate) fn enter<F: Future>(self, future: F) -> InScope<F> {
        InScope {
            scope: self,
            future,
        }
    }

    /// Runs `items` (a stream block's body) with this scope current during each poll.
    pub(crate) fn enter_stream<T: 'static>(
        self,
        items: Option<futures_util::stream::LocalBoxStream<'static, T>>,
    ) -> Option<futures_util::stream::LocalBoxStream<'static, T>> {
        let items = items?;
        Some(Box::pin(InScope {
            scope: self,
            future: items,
        }))
    }

    /// Runs a block body: inside this scope, with its deadline, and with a panic turned into
    /// [`RemoteError::Panicked`].
    pub(crate) async fn guard<T>(
        self,
        body: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        self.guard_timed(body, true).await
    }

    /// [`Scope::guard`], with the deadline enforced here if `timed`, or by whoever runs it
    /// (a link, which aborts a call at its deadline with one timer for all its calls).
    pub(crate) async fn guard_timed<T>(
        self,
        body: impl Future<Output = Result<T, RemoteError>>,
        timed: bool,
    ) -> Result<T, RemoteError> {
        let runtime = self.0.runtime.clone();
        let deadline = self.0.deadline.filter(|_| timed);
        let mut body = std::pin::pin!(AssertUnwindSafe(self.enter(body)).catch_unwind());
        // Most bodies finish on their first poll: arm the deadline timer only for the others.
        let outcome = match futures_util::poll!(body.as_mut()) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => match deadline {
                Some(deadline) => match select(body, runtime.sleep_until(deadline)).await {
                    Either::Left((outcome, _)) => outcome,
                    Either::Right(((), _)) => {
                        return Err(RemoteError::Timeout {
                            peer: None,
                            block: None,
                        });
                    }
                },
                None => body.await,
            },
        };
        outcome.unwrap_or_else(|panic| {
            Err(RemoteError::Panicked {
                peer: None,
                block: None,
                message: panic_message(panic.as_ref()),
            })
        })
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("peer", &self.0.peer)
            .field("caller", &self.0.caller)
            .field("deadline", &self.0.deadline)
            .finish_non_exhaustive()
    }
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

pin_project_lite::pin_project! {
    /// A future polled with a [`Scope`] current.
    pub(crate) struct InScope<F> {
        scope: Scope,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for InScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _restore = Restore::enter(this.scope);
        this.future.poll(cx)
    }
}

/// A stream polled with a [`Scope`] current, as [`InScope`] for a future.
impl<S: futures_util::Stream> futures_util::Stream for InScope<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        let _restore = Restore::enter(this.scope);
        this.future.poll_next(cx)
    }
}

/// Makes a scope current; restores the outer one when dropped, even if the poll panics.
struct Restore(Option<Scope>);

impl Restore {
    fn enter(scope: &Scope) -> Self {
        Self(CURRENT.with(|current| current.replace(Some(scope.clone()))))
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}
