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
use crate::link::{DEFAULT_DEADLINE, HANDSHAKE_TIMEOUT, LIVENESS_TIMEOUT, PING_INTERVAL};
use crate::scope::{Request, Runtime, Scope};
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
    max_message_size: usize,
    handshake_timeout: Duration,
    ping_interval: Duration,
    liveness_timeout: Duration,
    app_version: Option<String>,
    refuse_app_version_mismatch: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_deadline: DEFAULT_DEADLINE,
            max_message_size: wire::DEFAULT_MAX_MESSAGE_SIZE,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            ping_interval: PING_INTERVAL,
            liveness_timeout: LIVENESS_TIMEOUT,
            app_version: None,
            refuse_app_version_mismatch: false,
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
        self.config.max_message_size = bytes.clamp(1024, wire::MAX_MESSAGE_SIZE_CEILING);
        self
    }

    /// How long a new link has to complete the handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How often a `Ping` frame is sent on each link (default 3 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// A link silent for this long is dropped and its pending calls fail with
    /// [`RemoteError::ConnectionLost`] (default 10 s).
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.config.liveness_timeout = timeout;
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

    /// The peer, with no links yet.
    pub fn build(self) -> BrowserPeer {
        #[allow(
            clippy::arc_with_non_send_sync,
            reason = "the core's `Runtime` is shared through `Arc`; in the browser it never leaves the page's thread"
        )]
        let inner = Arc::new(Inner {
            id: self.id,
            config: self.config,
            links: RefCell::new(HashMap::new()),
            waiters: RefCell::new(Vec::new()),
            serials: Cell::new(1),
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
    /// once the handshake is done. After that, either side may call blocks on the other.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a URL that is not `ws://` or `wss://`; [`Error::Connect`] if
    /// the socket cannot be opened (the browser does not reveal why: a refused upgrade and an
    /// unreachable host look the same); [`Error::Handshake`] if the remote is not a peer of
    /// this protocol, claims this peer's id or a peer already linked here, or is too slow.
    pub async fn connect(&self, url: &str) -> Result<PeerId, Error> {
        Link::open(&self.inner, url, None).await
    }

    /// Like [`connect`](BrowserPeer::connect), presenting `token` to a peer that requires
    /// auth: the socket offers the subprotocols `distributed-scope` and `bearer.<token>`.
    ///
    /// # Errors
    ///
    /// As [`connect`](BrowserPeer::connect); a refused token is an [`Error::Connect`].
    pub async fn connect_with_token(&self, url: &str, token: &str) -> Result<PeerId, Error> {
        Link::open(&self.inner, url, Some(token)).await
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

    /// Closes the link to `peer`, if any; calls pending on it fail with
    /// [`RemoteError::ConnectionLost`].
    pub fn disconnect(&self, peer: PeerId) {
        let link = self.inner.links.borrow().get(&peer).cloned();
        if let Some(link) = link {
            link.close("disconnect");
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

/// The state of a browser peer, shared by its handles, its links and the running blocks.
struct Inner {
    id: PeerId,
    config: Config,
    links: RefCell<HashMap<PeerId, Rc<Link>>>,
    /// Calls waiting for a link to their target; woken whenever a link comes up.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    serials: Cell<u64>,
}

impl Inner {
    fn next_serial(&self) -> u64 {
        let serial = self.serials.get();
        self.serials.set(serial + 1);
        serial
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
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters {
            let _caller_gone = waiter.send(());
        }
        true
    }

    /// Removes the link to `peer` if it is still the one with `serial`.
    fn remove_link(&self, peer: PeerId, serial: u64) {
        let mut links = self.links.borrow_mut();
        if links.get(&peer).is_some_and(|link| link.serial() == serial) {
            links.remove(&peer);
        }
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
        self.config.max_message_size
    }

    fn serialize_local(&self) -> bool {
        false
    }
}
