//! The browser peer (wasm32): [`BrowserPeer`], a peer in a browser tab.
//!
//! It speaks the same protocol as the native peer over a `web_sys::WebSocket`, so the same
//! blocks, compiled into the page's wasm, take part in multi-hop scopes with native peers
//! (browser -> server -> browser -> ...). A browser peer connects; it does not listen. It
//! runs on the page's event loop (`wasm-bindgen-futures`), keeps time with `web-time` and
//! waits with `setTimeout`.
//!
//! Differences from the native peer, all forced by the browser:
//! - a panicking block aborts the wasm instance (wasm32 has no unwinding), so the caller of a
//!   block that panics in the browser sees [`RemoteError::ConnectionLost`], not `Panicked`;
//! - a token travels as the `Sec-WebSocket-Protocol` entry `bearer.<jwt>` (browsers cannot
//!   set headers), and a refused upgrade (HTTP 401) is only seen as a failed connection;
//! - links close with code 1000 and a reason (scripts may not send 1002, 1003 or 1008);
//! - liveness uses the protocol's `Ping`/`Pong` frames, since scripts cannot send WebSocket
//!   pings.
//!
//! Everything else is the native peer's: one link engine (`link/engine.rs`) decides the
//! handshake, admission, budgets, liveness and drain for both. Blocks a linked server calls
//! here are authorized by the builder's [`policy`](BrowserPeerBuilder::policy) (deny by default
//! once set), calls beyond the running and queued limits answer `Overloaded`, links that
//! drop are reconnected with backoff, and [`stop`](BrowserPeer::stop) drains.

mod link;
mod timer;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::future::{Either, LocalBoxFuture, select};
use web_time::Instant;

use self::link::Link;
use crate::link::{
    Authorize, Backoff, Budgets, Counters, DEFAULT_DEADLINE, Engine, Identity, Limits, Metrics,
    Role,
};
use crate::runtime::{Request, Runtime};
use crate::scope::Scope;
use crate::{Error, PeerId, RemoteError, wire};

/// A peer running in a browser tab (wasm32), linked to native peers over WebSockets.
///
/// Cheap to clone; every clone is the same peer. Calls made inside
/// [`run`](BrowserPeer::run) (or [`spawn`](BrowserPeer::spawn)) have this peer current, and
/// blocks that linked peers call here run on the page's event loop.
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use distributed_scope::{remote, BrowserPeer, PeerId};
///
/// let browser = BrowserPeer::new(PeerId::random());
/// let server = browser.connect("ws://127.0.0.1:7000/").await?;
/// let me = browser.id();
/// let copies = browser
///     .run(async move {
///         remote!(server, [me: PeerId] -> Result<Vec<u32>, distributed_scope::RemoteError> {
///             // On the server: hop back into the browser.
///             remote!(me, [] -> Vec<u32> { vec![42; 43] }).await
///         })
///         .await
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BrowserPeer {
    inner: Arc<Inner>,
}

/// Configures a [`BrowserPeer`]; options not set keep their documented defaults.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct BrowserPeerBuilder {
    id: PeerId,
    config: Config,
}

#[derive(Debug, Clone)]
struct Config {
    default_deadline: Duration,
    limits: Limits,
    app_version: Option<String>,
    refuse_app_version_mismatch: bool,
    reconnect: Backoff,
    drain_timeout: Duration,
    max_buffered_bytes: usize,
    #[cfg(feature = "auth")]
    policy: Option<crate::auth::Policy>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_deadline: DEFAULT_DEADLINE,
            limits: Limits::default(),
            app_version: None,
            refuse_app_version_mismatch: false,
            reconnect: Backoff::default(),
            drain_timeout: Duration::from_secs(5),
            max_buffered_bytes: 64 << 20,
            #[cfg(feature = "auth")]
            policy: None,
        }
    }
}

impl BrowserPeerBuilder {
    /// The deadline of calls that set none (default 30 s).
    pub fn default_deadline(mut self, deadline: Duration) -> Self {
        self.config.default_deadline = deadline;
        self
    }

    /// The largest message sent or accepted (default 16 MiB, clamped to 1 KiB ..= 1 GiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.limits.max_message_size = bytes.clamp(1024, wire::MAX_MESSAGE_SIZE_CEILING);
        self
    }

    /// How long a new link has to complete the handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.limits.handshake_timeout = timeout;
        self
    }

    /// How often a `Ping` frame is sent on each link (default 3 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.limits.ping_interval = interval;
        self
    }

    /// A link silent for this long is dropped and its pending calls fail with
    /// [`RemoteError::ConnectionLost`] (default 10 s).
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.config.limits.liveness_timeout = timeout;
        self
    }

    /// Blocks a linked peer may run here at once (default 4 096 per link); more wait.
    pub fn max_inbound_calls(mut self, calls: usize) -> Self {
        self.config.limits.max_inbound_calls = calls;
        self
    }

    /// Calls of one link that may wait for a slot (default 4 096); beyond, calls answer
    /// [`RemoteError::Overloaded`] without running.
    pub fn max_queued_calls(mut self, calls: usize) -> Self {
        self.config.limits.max_queued_calls = calls;
        self
    }

    /// Bytes of call frames of one link running or waiting here (default 64 MiB); beyond,
    /// calls answer [`RemoteError::Overloaded`].
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.config.limits.max_inbound_bytes = bytes;
        self
    }

    /// The backoff of links that drop (default 0.5 s, x1.6, cap 30 s, +-20 %);
    /// [`Backoff::disabled`] turns reconnection off.
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.config.reconnect = backoff;
        self
    }

    /// How long [`stop`](BrowserPeer::stop) lets calls in flight finish (default 5 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// The application version announced in the handshake (default none).
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.config.app_version = Some(version.into());
        self
    }

    /// Refuse links whose application version differs (default: log and accept).
    pub fn refuse_app_version_mismatch(mut self, refuse: bool) -> Self {
        self.config.refuse_app_version_mismatch = refuse;
        self
    }

    /// Which blocks linked peers may run in this page. The policy is asked about a principal
    /// whose subject is the calling peer's id (`PeerId`'s `Display`) and which has no roles,
    /// e.g. `Policy::deny_all().allow_any_principal("app::ui::*")` or
    /// `.allow_subject(server_id.to_string(), "*")`. Once set, what it does not allow
    /// answers [`RemoteError::Forbidden`] without running. Default: no policy, every block
    /// compiled into the page may be called.
    #[cfg(feature = "auth")]
    pub fn policy(mut self, policy: crate::auth::Policy) -> Self {
        self.config.policy = Some(policy);
        self
    }

    /// The peer, with no links yet.
    pub fn build(self) -> BrowserPeer {
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "the core's `Runtime` is shared through `Arc`; in the browser it never leaves the page's thread"
        )]
        let inner = Arc::new(Inner {
            id: self.id,
            budgets: Budgets::new(
                self.config.max_buffered_bytes,
                self.config.max_buffered_bytes,
            ),
            config: self.config,
            counters: Arc::new(Counters::default()),
            links: RefCell::new(HashMap::new()),
            outbound: RefCell::new(HashMap::new()),
            waiters: RefCell::new(Vec::new()),
            serials: Cell::new(1),
            stopping: Cell::new(false),
        });
        BrowserPeer { inner }
    }
}

impl BrowserPeer {
    /// A peer with the given id and the default options.
    pub fn new(id: PeerId) -> Self {
        Self::builder(id).build()
    }

    /// Starts configuring a peer with the given id.
    pub fn builder(id: PeerId) -> BrowserPeerBuilder {
        BrowserPeerBuilder {
            id,
            config: Config::default(),
        }
    }

    /// This peer's id.
    pub fn id(&self) -> PeerId {
        self.inner.id
    }

    /// Opens a link to the peer listening at `url` (`ws://` or `wss://`) and returns its id
    /// once the handshake is done. After that, either side may call blocks on the other. If
    /// the link drops later, it is reconnected with the builder's backoff.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a URL that is not `ws://` or `wss://`; [`Error::Connect`] if
    /// the socket cannot be opened (the browser does not reveal why: a refused upgrade and an
    /// unreachable host look the same); [`Error::Handshake`] if the remote is not a peer of
    /// this protocol, claims this peer's id or a peer already linked here, or is too slow.
    pub async fn connect(&self, url: &str) -> Result<PeerId, Error> {
        self.inner.dial(url, None).await
    }

    /// Like [`connect`](BrowserPeer::connect), presenting `token` to a peer that requires
    /// auth: the socket offers the subprotocols `distributed-scope` and `bearer.<token>`.
    ///
    /// # Errors
    ///
    /// As [`connect`](BrowserPeer::connect); a refused token is an [`Error::Connect`].
    pub async fn connect_with_token(&self, url: &str, token: &str) -> Result<PeerId, Error> {
        self.inner.dial(url, Some(token.to_owned())).await
    }

    /// The peers this peer has a live link to.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .inner
            .links
            .borrow()
            .iter()
            .filter(|(_, link)| link.is_live())
            .map(|(peer, _)| *peer)
            .collect();
        peers.sort();
        peers
    }

    /// Closes the link to `peer`, if any, and stops reconnecting it; calls pending on it
    /// fail with [`RemoteError::ConnectionLost`].
    pub fn disconnect(&self, peer: PeerId) {
        let link = self.inner.links.borrow().get(&peer).cloned();
        if let Some(link) = link {
            self.inner.forget(link.url());
            link.close("disconnect");
        }
    }

    /// Drops the connection of the link to `peer` as a network failure would (a page put
    /// to sleep, a change of network): the link is not closed but waits to be resumed, and
    /// this page dials again at once and resumes it within the resume window, calls in
    /// flight included. For tests of how an application rides out a drop.
    pub fn interrupt(&self, peer: PeerId) {
        let link = self.inner.links.borrow().get(&peer).cloned();
        if let Some(link) = link {
            link.interrupt();
        }
    }

    /// The blocks `peer` announced when its link came up (id, name, capture and result
    /// types), or `None` without a live link: know before you call.
    pub fn remote_blocks(&self, peer: PeerId) -> Option<Vec<crate::RemoteBlock>> {
        self.inner.live_link(peer).map(|link| link.blocks())
    }

    /// The peer's counters: calls, errors by kind, bytes, late replies, refused frames.
    pub fn metrics(&self) -> Metrics {
        self.inner.counters.snapshot()
    }

    /// Stops the peer, draining: new calls are refused with [`RemoteError::ShuttingDown`],
    /// calls in flight may finish until the drain timeout and then fail with
    /// `ShuttingDown`, links close and are not reconnected.
    pub async fn stop(&self) {
        self.inner.stopping.set(true);
        self.inner.outbound.borrow_mut().clear();
        let links: Vec<Rc<Link>> = self.inner.links.borrow().values().cloned().collect();
        let drains = futures_util::future::join_all(links.iter().map(|link| link.drain()));
        let _timed_out = select(
            pin!(drains),
            pin!(timer::sleep(self.inner.config.drain_timeout)),
        )
        .await;
        for link in links {
            link.shutdown();
        }
    }

    /// Runs `future` with this peer current and returns its output: `remote!` calls inside
    /// it are made from this peer.
    pub async fn run<F: Future>(&self, future: F) -> F::Output {
        self.scope().enter(future).await
    }

    /// Runs `future` on the page's event loop with this peer current.
    pub fn spawn<F: Future<Output = ()> + 'static>(&self, future: F) {
        wasm_bindgen_futures::spawn_local(self.scope().enter(future));
    }

    fn scope(&self) -> Scope {
        let runtime: Arc<dyn Runtime> = self.inner.clone();
        Scope::new(
            runtime,
            self.inner.id,
            #[cfg(feature = "auth")]
            None,
            None,
        )
    }
}

impl fmt::Debug for BrowserPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserPeer")
            .field("id", &self.inner.id)
            .field("connected", &self.connected_peers())
            .finish_non_exhaustive()
    }
}

/// A link this peer dialled: how to dial it again.
struct Outbound {
    token: Option<String>,
    /// Failed attempts since the link was last up.
    attempt: u32,
}

/// The state of a browser peer, shared by its handles, its links and the running blocks.
struct Inner {
    id: PeerId,
    config: Config,
    counters: Arc<Counters>,
    budgets: Budgets,
    links: RefCell<HashMap<PeerId, Rc<Link>>>,
    /// Links this peer dialled, by URL, kept up until `disconnect` or `stop`.
    outbound: RefCell<HashMap<String, Outbound>>,
    /// Calls waiting for a link to their target; woken whenever a link comes up.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    serials: Cell<u64>,
    stopping: Cell<bool>,
}

impl Inner {
    fn next_serial(&self) -> u64 {
        let serial = self.serials.get();
        self.serials.set(serial + 1);
        serial
    }

    /// A new link's engine, with this peer's identity, limits and policy.
    fn engine(self: &Arc<Self>, now: Instant) -> Engine {
        let identity = Identity {
            local: self.id,
            app_version: self.config.app_version.clone(),
            refuse_app_version_mismatch: self.config.refuse_app_version_mismatch,
        };
        let peer = Arc::downgrade(self);
        // Browser tabs open every link themselves: a nested block of theirs runs as a hop of
        // its scope (checked by the engine) and entry points as the peer rules say.
        let authorize: Authorize = Box::new(move |remote, name, _hop| {
            let Some(inner) = peer.upgrade() else {
                return Err(RemoteError::ShuttingDown {
                    peer: None,
                    block: Some(name.to_owned()),
                });
            };
            inner.authorize(remote, name)
        });
        Engine::new(
            identity,
            Role::Connecting,
            self.config.limits.clone(),
            self.budgets.clone(),
            self.counters.clone(),
            authorize,
            now,
        )
    }

    /// Whether `remote` may run block `name` here.
    fn authorize(&self, remote: PeerId, name: &str) -> Result<(), RemoteError> {
        if self.stopping.get() {
            return Err(RemoteError::ShuttingDown {
                peer: None,
                block: Some(name.to_owned()),
            });
        }
        #[cfg(feature = "auth")]
        if let Some(policy) = &self.config.policy {
            let subject = remote.to_string();
            let caller = crate::auth::Principal::new(subject.as_str(), Vec::<String>::new());
            if !policy.allows(&caller, name) {
                tracing::info!(peer = %remote, block = name, "call refused by the page's policy");
                return Err(RemoteError::Forbidden {
                    block: name.to_owned(),
                    subject,
                    peer: None,
                });
            }
        }
        #[cfg(not(feature = "auth"))]
        let _ = remote;
        Ok(())
    }

    async fn dial(self: &Arc<Self>, url: &str, token: Option<String>) -> Result<PeerId, Error> {
        self.outbound.borrow_mut().insert(
            url.to_owned(),
            Outbound {
                token: token.clone(),
                attempt: 0,
            },
        );
        Link::open(self, url, token.as_deref()).await
    }

    /// Stops reconnecting `url`.
    fn forget(&self, url: &str) {
        self.outbound.borrow_mut().remove(url);
    }

    fn live_link(&self, peer: PeerId) -> Option<Rc<Link>> {
        self.links
            .borrow()
            .get(&peer)
            .filter(|link| link.is_live())
            .cloned()
    }

    /// Adds a link unless a live one to the same peer exists (no hijacking).
    fn insert_link(&self, peer: PeerId, link: Rc<Link>) -> bool {
        if self.live_link(peer).is_some() {
            return false;
        }
        self.links.borrow_mut().insert(peer, link);
        true
    }

    /// A link completed its handshake: waiting calls may go, its backoff starts over.
    fn link_up(&self, url: &str) {
        if let Some(outbound) = self.outbound.borrow_mut().get_mut(url) {
            outbound.attempt = 0;
        }
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters {
            let _caller_gone = waiter.send(());
        }
    }

    /// A live link ended: it leaves the table and, if this peer dialled it and still wants
    /// it, is dialled again after the backoff.
    fn link_down(self: &Arc<Self>, peer: PeerId, serial: u64, url: &str) {
        {
            let mut links = self.links.borrow_mut();
            if links.get(&peer).is_some_and(|link| link.serial() == serial) {
                links.remove(&peer);
            }
        }
        self.schedule_reconnect(url.to_owned());
    }

    fn schedule_reconnect(self: &Arc<Self>, url: String) {
        let backoff = self.config.reconnect;
        if !backoff.enabled || self.stopping.get() {
            return;
        }
        let attempt = {
            let mut outbound = self.outbound.borrow_mut();
            let Some(outbound) = outbound.get_mut(&url) else {
                return;
            };
            outbound.attempt += 1;
            outbound.attempt
        };
        let delay = backoff.delay(attempt, crate::link::jitter_unit());
        tracing::info!(url, attempt, ?delay, "reconnecting");
        let peer = Arc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            timer::sleep(delay).await;
            let Some(inner) = peer.upgrade() else { return };
            let token = match inner.outbound.borrow().get(&url) {
                Some(outbound) => outbound.token.clone(),
                None => return,
            };
            match Link::open(&inner, &url, token.as_deref()).await {
                Ok(remote) => tracing::info!(url, %remote, "reconnected"),
                Err(error) => {
                    tracing::info!(url, %error, "reconnection failed");
                    inner.schedule_reconnect(url);
                }
            }
        });
    }

    /// Waits until a link to `peer` exists, or fails with `NotConnected` at `deadline`.
    async fn wait_for_link(
        &self,
        peer: PeerId,
        deadline: Instant,
    ) -> Result<Rc<Link>, RemoteError> {
        loop {
            if let Some(link) = self.live_link(peer) {
                return Ok(link);
            }
            let (waiter, changed) = oneshot::channel();
            {
                let mut waiters = self.waiters.borrow_mut();
                waiters.retain(|waiter| !waiter.is_canceled());
                waiters.push(waiter);
            }
            match select(changed, pin!(timer::sleep_until(deadline))).await {
                Either::Left(_) => {}
                Either::Right(((), _)) => {
                    return Err(RemoteError::NotConnected { peer, block: None });
                }
            }
        }
    }

    async fn call_remote(
        self: Arc<Self>,
        target: PeerId,
        request: Request,
    ) -> Result<Bytes, RemoteError> {
        let link = self.wait_for_link(target, request.deadline).await?;
        link.call(target, request).await
    }
}

impl Runtime for Inner {
    fn local_id(&self) -> PeerId {
        self.id
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> LocalBoxFuture<'static, ()> {
        Box::pin(timer::sleep_until(deadline))
    }

    fn call(
        self: Arc<Self>,
        target: PeerId,
        request: Request,
    ) -> LocalBoxFuture<'static, Result<Bytes, RemoteError>> {
        if self.stopping.get() {
            let stopping = Err(RemoteError::ShuttingDown {
                peer: Some(self.id),
                block: None,
            });
            return Box::pin(std::future::ready(stopping));
        }
        if target == self.id {
            Box::pin(crate::scope::call_self(self, request))
        } else {
            Box::pin(self.call_remote(target, request))
        }
    }

    fn default_deadline(&self) -> Duration {
        self.config.default_deadline
    }

    fn max_message_size(&self) -> usize {
        self.config.limits.max_message_size
    }

    fn serialize_local(&self) -> bool {
        false
    }

    fn record(&self, outcome: Result<(), &RemoteError>) {
        if let Err(error) = outcome {
            self.counters.error(error.code());
        }
    }
}
