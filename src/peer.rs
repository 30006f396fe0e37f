//! The native peer: the [`Peer`] actor, [`PeerBuilder`] and [`PeerHandle`].

pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod events;
#[cfg(feature = "auth")]
pub(crate) mod guard;
pub(crate) mod shared;

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use actix_ws::CloseCode;
use futures_channel::oneshot;

pub use self::config::{Backoff, Config};
use self::connection::{Close, Direction, Drain, Shutdown};
pub use self::events::{Events, Metrics, PeerEvent};
use self::shared::Shared;
use crate::block::Block;
use crate::scope::Scope;
use crate::{Error, PeerId, RemoteCall, RemoteError, transport, wire};

/// A peer: an actix actor that owns the links to other peers and their lifecycle.
///
/// Create one with [`Peer::builder`]; talk to it through the [`PeerHandle`] that
/// [`PeerBuilder::start`] returns. The actor receives [`On`] messages, so a user's own actor
/// can call blocks by sending to [`PeerHandle::addr`].
pub struct Peer {
    shared: Arc<Shared>,
    server: Option<ServerHandle>,
    /// Outbound links by URL: how to get a token, and whether to keep them up.
    outbound: HashMap<String, Outbound>,
    /// The TLS client configuration of `wss://` links.
    tls: Arc<rustls::ClientConfig>,
}

/// Where an outbound link's token comes from.
#[derive(Clone)]
enum TokenSource {
    None,
    Fixed(String),
    Provider(Arc<dyn Fn() -> String + Send + Sync>),
}

impl TokenSource {
    fn token(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Fixed(token) => Some(token.clone()),
            Self::Provider(provider) => Some(provider()),
        }
    }
}

struct Outbound {
    token: TokenSource,
    /// Failed reconnection attempts since the link was last up.
    attempt: u32,
    /// False once `disconnect` was asked for.
    wanted: bool,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Starts configuring a peer with the given id.
    pub fn builder(id: PeerId) -> PeerBuilder {
        PeerBuilder {
            id,
            listen: None,
            server_tls: None,
            client_tls: ClientTls::Default,
            config: Config::default(),
            #[cfg(feature = "auth")]
            guard: guard::Guard::default(),
        }
    }
}

impl Actor for Peer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _first = self.shared.peer.set(ctx.address());
    }
}

impl Peer {
    /// Schedules the next attempt to bring `url` back, with backoff and jitter.
    fn schedule_reconnect(&mut self, url: String, ctx: &mut Context<Self>) {
        let backoff = self.shared.config.reconnect;
        let Some(outbound) = self.outbound.get_mut(&url) else {
            return;
        };
        if !outbound.wanted || !backoff.enabled || self.shared.is_stopping() {
            return;
        }
        outbound.attempt += 1;
        let attempt = outbound.attempt;
        let delay = backoff.delay(attempt, jitter_unit());
        tracing::info!(url, attempt, ?delay, "reconnecting");
        self.shared.emit(PeerEvent::Reconnecting {
            url: url.clone(),
            attempt,
            delay,
        });
        ctx.run_later(delay, move |this, ctx| {
            let Some(outbound) = this.outbound.get(&url) else {
                return;
            };
            if !outbound.wanted || this.shared.is_stopping() {
                return;
            }
            let token = outbound.token.token();
            let attempt = open_link(this.shared.clone(), url.clone(), token, this.tls.clone());
            ctx.spawn(
                attempt
                    .into_actor(this)
                    .map(move |result, this, ctx| match result {
                        Ok(peer) => {
                            tracing::info!(url, %peer, "reconnected");
                            if let Some(outbound) = this.outbound.get_mut(&url) {
                                outbound.attempt = 0;
                            }
                        }
                        Err(error) => {
                            tracing::info!(url, %error, "reconnection failed");
                            this.schedule_reconnect(url, ctx);
                        }
                    }),
            );
        });
    }
}

/// A number in `[0, 1)` for jitter, from the standard library's per-process random keys.
fn jitter_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Opens a link and waits for its handshake.
async fn open_link(
    shared: Arc<Shared>,
    url: String,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<PeerId, Error> {
    let (ready, handshake) = oneshot::channel();
    transport::connect(shared, url.clone(), token, tls, ready).await?;
    handshake.await.unwrap_or(Err(Error::Handshake {
        url,
        reason: crate::error::HandshakeError::Closed,
    }))
}

/// Configures and starts a [`Peer`]. Options not set keep the defaults listed on [`Config`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct PeerBuilder {
    id: PeerId,
    listen: Option<String>,
    server_tls: Option<rustls::ServerConfig>,
    client_tls: ClientTls,
    config: Config,
    #[cfg(feature = "auth")]
    guard: guard::Guard,
}

/// Which certificates `wss://` links trust.
#[derive(Debug)]
enum ClientTls {
    /// The Mozilla roots of `webpki-roots`.
    Default,
    Roots(Vec<rustls::pki_types::CertificateDer<'static>>),
    Config(Arc<rustls::ClientConfig>),
}

impl PeerBuilder {
    /// Accepts WebSocket links on `addr` (e.g. `"127.0.0.1:0"`), upgrade path `/`.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Accepts `wss://` links on `addr` with the given TLS server configuration (HTTP/1.1
    /// and HTTP/2 ALPN are set by actix-web); [`PeerHandle::url`] then says `wss://`.
    ///
    /// To serve TLS from your own `HttpServer` instead (`bind_rustls_0_23`), mount
    /// [`PeerHandle::endpoint`] in its `App`.
    pub fn listen_tls(mut self, addr: impl Into<String>, config: rustls::ServerConfig) -> Self {
        self.listen = Some(addr.into());
        self.server_tls = Some(config);
        self
    }

    /// Trusts exactly these root certificates (DER) for `wss://` links, instead of the
    /// Mozilla roots of `webpki-roots` (the default): for private CAs and self-signed
    /// servers.
    pub fn tls_roots(
        mut self,
        roots: impl IntoIterator<Item = rustls::pki_types::CertificateDer<'static>>,
    ) -> Self {
        self.client_tls = ClientTls::Roots(roots.into_iter().collect());
        self
    }

    /// Uses this rustls client configuration for `wss://` links (client certificates, custom
    /// verifiers, ...). Its ALPN protocols are replaced by `http/1.1`, which WebSockets need.
    pub fn tls_client_config(mut self, config: rustls::ClientConfig) -> Self {
        self.client_tls = ClientTls::Config(transport::adapt_client_config(config));
        self
    }

    /// Requires a valid JWT on every inbound link (checked at the WebSocket upgrade: a
    /// missing or bad token gets HTTP 401 before any WebSocket exists), and checks every
    /// inbound call against `policy` by block name before its captures are decoded
    /// (deny by default). Links this peer opens itself are trusted; narrow them with
    /// [`allow_peer`](PeerBuilder::allow_peer) and [`deny_peer`](PeerBuilder::deny_peer).
    ///
    /// [`start`](PeerBuilder::start) fails if the configuration does not pass
    /// [`JwtAuth::check`](crate::auth::JwtAuth::check) (e.g. an HS256 secret under 32 bytes).
    #[cfg(feature = "auth")]
    pub fn auth(mut self, auth: crate::auth::JwtAuth, policy: crate::auth::Policy) -> Self {
        self.guard.set_auth(auth, policy);
        self
    }

    /// Lets `peer` run only blocks whose names match `glob` here (repeatable; `*` matches
    /// any run of characters, `?` one). Applies to links in both directions.
    #[cfg(feature = "auth")]
    pub fn allow_peer(mut self, peer: PeerId, glob: impl Into<String>) -> Self {
        self.guard.allow_peer(peer, glob.into());
        self
    }

    /// Lets `peer` run no block here.
    #[cfg(feature = "auth")]
    pub fn deny_peer(mut self, peer: PeerId) -> Self {
        self.guard.deny_peer(peer);
        self
    }

    /// Accepts browser upgrades only from this `Origin` (repeatable). Clients that send no
    /// `Origin` header (non-browsers) are not affected.
    #[cfg(feature = "auth")]
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.guard.allow_origin(origin.into());
        self
    }

    /// The deadline of calls that set none (default 30 s).
    pub fn default_deadline(mut self, deadline: Duration) -> Self {
        self.config.default_deadline = deadline;
        self
    }

    /// The largest message sent or accepted (default 16 MiB, at most 1 GiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Calls one link may run here at once (default 4 096).
    pub fn max_inbound_calls(mut self, calls: usize) -> Self {
        self.config.max_inbound_calls = calls;
        self
    }

    /// How often links are probed (default 3 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// How long a silent link lives before it is dropped and its calls fail with
    /// [`RemoteError::ConnectionLost`] (default 10 s).
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.config.liveness_timeout = timeout;
        self
    }

    /// Calls of one link that may wait beyond `max_inbound_calls` before new ones are
    /// answered [`RemoteError::Overloaded`] (default 4 096).
    pub fn max_queued_calls(mut self, calls: usize) -> Self {
        self.config.max_queued_calls = calls;
        self
    }

    /// Bytes of captures of one link that may wait (default 64 MiB).
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.config.max_queued_bytes = bytes;
        self
    }

    /// Calls this peer may have pending on one link; more wait until their deadline
    /// (default 4 096).
    pub fn max_pending_outbound(mut self, calls: usize) -> Self {
        self.config.max_pending_outbound = calls.max(1);
        self
    }

    /// How long `stop()` lets in-flight calls finish (default 5 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// The backoff of outbound links that went down (default 0.5 s, x1.6, cap 30 s, +-20 %).
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.config.reconnect = backoff;
        self
    }

    /// How long a new link has to complete the handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
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

    /// HTTP worker threads of a listening peer (default 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers.max(1);
        self
    }

    /// Serialize calls to this peer itself as if remote (default false): tests use it to
    /// check that captures and results survive the wire without a second peer.
    pub fn serialize_local(mut self, serialize: bool) -> Self {
        self.config.serialize_local = serialize;
        self
    }

    /// Starts the peer actor in the current actix system and, with [`listen`], its server.
    ///
    /// [`listen`]: PeerBuilder::listen
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid option, [`Error::Bind`] if the address cannot be bound.
    pub async fn start(self) -> Result<PeerHandle, Error> {
        let Self {
            id,
            listen,
            server_tls,
            client_tls,
            config,
            #[cfg(feature = "auth")]
            guard,
        } = self;
        #[cfg(feature = "auth")]
        {
            guard.check()?;
            if listen.is_some() && !guard.has_auth() {
                tracing::warn!(peer = %id, "listening without auth: any client may run any block");
            }
        }
        crate::block::check_registry();
        if config.max_message_size > wire::MAX_MESSAGE_SIZE_CEILING {
            return Err(Error::Config("max_message_size is above 1 GiB"));
        }
        if config.max_message_size < 1024 {
            return Err(Error::Config("max_message_size is below 1 KiB"));
        }
        let tls = match client_tls {
            ClientTls::Default => transport::default_client_config(),
            ClientTls::Roots(roots) => transport::client_config_with_roots(roots)?,
            ClientTls::Config(config) => config,
        };
        let scheme = if server_tls.is_some() { "wss" } else { "ws" };
        let shared = Arc::new(Shared::new(
            id,
            config,
            #[cfg(feature = "auth")]
            guard,
        ));
        let mut local_addr = None;
        let mut server_handle = None;
        if let Some(addr) = listen {
            let data = web::Data::new(shared.clone());
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .route("/", web::get().to(transport::accept))
            })
            .workers(shared.config.workers)
            .disable_signals()
            .shutdown_timeout(1);
            let server = match server_tls {
                Some(tls) => server.bind_rustls_0_23(addr.as_str(), tls),
                None => server.bind(addr.as_str()),
            }
            .map_err(|source| Error::Bind {
                addr: addr.clone(),
                source,
            })?;
            local_addr = server.addrs().first().copied();
            let server = server.run();
            server_handle = Some(server.handle());
            actix_rt::spawn(server);
            tracing::info!(peer = %id, addr = ?local_addr, "listening");
        }
        let addr = Peer {
            shared: shared.clone(),
            server: server_handle,
            outbound: HashMap::new(),
            tls,
        }
        .start();
        Ok(PeerHandle {
            shared,
            addr,
            local_addr,
            scheme,
        })
    }
}

/// A handle to a running peer: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct PeerHandle {
    shared: Arc<Shared>,
    addr: Addr<Peer>,
    local_addr: Option<SocketAddr>,
    /// `ws` or `wss`, for [`PeerHandle::url`].
    scheme: &'static str,
}

impl std::fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerHandle")
            .field("id", &self.shared.id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// A live link, as reported by [`PeerHandle::connected_peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkInfo {
    /// The remote peer.
    pub peer: PeerId,
    /// Whether this peer opened the link.
    pub outbound: bool,
    /// The URL this peer connected to, or the remote socket address of an inbound link.
    pub address: String,
    /// The remote's application version.
    pub app_version: Option<String>,
    /// The principal verified when the remote opened the link (inbound links with auth).
    #[cfg(feature = "auth")]
    pub principal: Option<crate::auth::Principal>,
}

impl PeerHandle {
    /// This peer's id.
    pub fn id(&self) -> PeerId {
        self.shared.id
    }

    /// The address the server is bound to, if the peer listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The URL other peers connect to (`ws://HOST:PORT/`, or `wss://` with
    /// [`PeerBuilder::listen_tls`]), if the peer listens.
    pub fn url(&self) -> Option<String> {
        self.local_addr
            .map(|addr| format!("{}://{addr}/", self.scheme))
    }

    /// The peer actor's address; send it [`On`] messages.
    pub fn addr(&self) -> Addr<Peer> {
        self.addr.clone()
    }

    /// The live links of this peer.
    pub fn connected_peers(&self) -> Vec<LinkInfo> {
        let mut links: Vec<LinkInfo> = self
            .shared
            .links()
            .into_iter()
            .filter(|(_, link)| link.addr.connected())
            .map(|(peer, link)| {
                let (outbound, address) = match &link.direction {
                    Direction::Inbound { remote } => (false, remote.clone()),
                    Direction::Outbound { url } => (true, url.clone()),
                };
                LinkInfo {
                    peer,
                    outbound,
                    address,
                    app_version: link.app_version.clone(),
                    #[cfg(feature = "auth")]
                    principal: link.principal.as_deref().cloned(),
                }
            })
            .collect();
        links.sort_by_key(|link| link.peer);
        links
    }

    /// Opens a link to the peer listening at `url` (`ws://` or `wss://`) and returns its id
    /// once the handshake is done. The link runs on the peer actor's thread.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`], [`Error::Connect`] (with the HTTP status of a refused
    /// upgrade), [`Error::Handshake`], or [`Error::Stopped`].
    pub async fn connect(&self, url: &str) -> Result<PeerId, Error> {
        self.open(url, TokenSource::None).await
    }

    /// Opens a link presenting `token` (`Authorization: Bearer`) to a peer that requires auth.
    ///
    /// # Errors
    ///
    /// As [`connect`](PeerHandle::connect); a refused token is [`Error::Connect`] with
    /// status 401.
    pub async fn connect_with_token(&self, url: &str, token: &str) -> Result<PeerId, Error> {
        self.open(url, TokenSource::Fixed(token.to_owned())).await
    }

    /// Opens a link with a token from `provider`, asked for a fresh token each time the link
    /// is opened, including every reconnection.
    ///
    /// # Errors
    ///
    /// As [`connect_with_token`](PeerHandle::connect_with_token).
    pub async fn connect_with_token_provider<P>(
        &self,
        url: &str,
        provider: P,
    ) -> Result<PeerId, Error>
    where
        P: Fn() -> String + Send + Sync + 'static,
    {
        self.open(url, TokenSource::Provider(Arc::new(provider)))
            .await
    }

    async fn open(&self, url: &str, token: TokenSource) -> Result<PeerId, Error> {
        let connect = Connect {
            url: url.to_owned(),
            token,
        };
        let result = self
            .addr
            .send(connect)
            .await
            .map_err(|_mailbox| Error::Stopped)?;
        match result {
            // A link to that peer is already up: the new one was refused, the old one serves.
            Err(Error::Handshake {
                reason: crate::error::HandshakeError::Duplicate(peer),
                ..
            }) if self.shared.link(peer).is_some() => Ok(peer),
            other => other,
        }
    }

    /// Polls `future` in place with this peer as the current peer, and returns its output.
    ///
    /// Blocks called inside it run with this peer as their caller. The future need not be
    /// `Send`.
    pub async fn run<F: Future>(&self, future: F) -> F::Output {
        self.scope().enter(future).await
    }

    /// Spawns `future` on the current thread's actix runtime with this peer current.
    pub fn spawn<F>(&self, future: F) -> actix_rt::task::JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        actix_rt::spawn(self.scope().enter(future))
    }

    fn scope(&self) -> Scope {
        Scope::new(
            self.shared.clone(),
            self.shared.id,
            #[cfg(feature = "auth")]
            None,
            None,
        )
    }

    /// Closes the link to `peer`, if there is one, and stops reconnecting it.
    pub fn disconnect(&self, peer: PeerId) {
        self.addr.do_send(Disconnect(peer));
    }

    /// The link events from now on: connected, lost, reconnecting, refused.
    pub fn events(&self) -> Events {
        Events::new(self.shared.events.subscribe())
    }

    /// Waits until a link to `peer` is up, for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RemoteError::NotConnected`] if no link came up in time,
    /// [`RemoteError::ShuttingDown`] if the peer stops.
    pub async fn wait_for(&self, peer: PeerId, timeout: Duration) -> Result<(), RemoteError> {
        let deadline = web_time::Instant::now() + timeout;
        self.shared.wait_for_link(peer, deadline).await.map(|_| ())
    }

    /// The peer's counters: calls, errors by kind, bytes, late replies, refused frames.
    pub fn metrics(&self) -> Metrics {
        self.shared.counters.snapshot()
    }

    /// The peer's WebSocket endpoint as an actix-web resource at `path`, to mount in your own
    /// `App` (own routes, middleware, TLS): `App::new().service(handle.endpoint("/scope"))`.
    /// It does the same handshake, limits and auth as [`PeerBuilder::listen`].
    pub fn endpoint(&self, path: &str) -> actix_web::Resource {
        web::resource(path)
            .app_data(web::Data::new(self.shared.clone()))
            .route(web::get().to(transport::accept))
    }

    /// Stops the peer, draining: new calls are refused with [`RemoteError::ShuttingDown`],
    /// calls in flight may finish until the drain timeout and then fail with
    /// `ShuttingDown`, links close with 1001 and are not reconnected, and the server stops.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] if the peer had stopped already.
    pub async fn stop(&self) -> Result<(), Error> {
        self.addr
            .send(Stop)
            .await
            .map_err(|_mailbox| Error::Stopped)?;
        Ok(())
    }
}

struct Connect {
    url: String,
    token: TokenSource,
}

impl Message for Connect {
    type Result = Result<PeerId, Error>;
}

impl Handler<Connect> for Peer {
    type Result = ResponseFuture<Result<PeerId, Error>>;

    fn handle(&mut self, connect: Connect, _ctx: &mut Context<Self>) -> Self::Result {
        let token = connect.token.token();
        self.outbound.insert(
            connect.url.clone(),
            Outbound {
                token: connect.token,
                attempt: 0,
                wanted: true,
            },
        );
        Box::pin(open_link(
            self.shared.clone(),
            connect.url,
            token,
            self.tls.clone(),
        ))
    }
}

/// An outbound link went down without being asked to.
pub(crate) struct LinkDown {
    pub(crate) url: String,
}

impl Message for LinkDown {
    type Result = ();
}

impl Handler<LinkDown> for Peer {
    type Result = ();

    fn handle(&mut self, down: LinkDown, ctx: &mut Context<Self>) {
        self.schedule_reconnect(down.url, ctx);
    }
}

struct Disconnect(PeerId);

impl Message for Disconnect {
    type Result = ();
}

impl Handler<Disconnect> for Peer {
    type Result = ();

    fn handle(&mut self, Disconnect(peer): Disconnect, _ctx: &mut Context<Self>) {
        if let Some(link) = self.shared.link(peer) {
            if let Direction::Outbound { url } = &link.direction
                && let Some(outbound) = self.outbound.get_mut(url)
            {
                outbound.wanted = false;
            }
            link.addr.do_send(Close(CloseCode::Normal));
        }
    }
}

struct Stop;

impl Message for Stop {
    type Result = ();
}

impl Handler<Stop> for Peer {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _stop: Stop, _ctx: &mut Context<Self>) -> Self::Result {
        // No new calls from here on, in either direction; in-flight ones may finish until
        // the drain timeout, then fail with `ShuttingDown`; links close with 1001.
        self.shared.begin_stop();
        for outbound in self.outbound.values_mut() {
            outbound.wanted = false;
        }
        let links: Vec<_> = self
            .shared
            .links()
            .into_iter()
            .map(|(_, link)| link.addr.clone())
            .collect();
        let drain_timeout = self.shared.config.drain_timeout;
        let server = self.server.take();
        Box::pin(
            async move {
                let drains = links.iter().map(|link| link.send(Drain));
                let _timed_out =
                    actix_rt::time::timeout(drain_timeout, futures_util::future::join_all(drains))
                        .await;
                for link in &links {
                    link.do_send(Shutdown);
                }
                if let Some(server) = server {
                    server.stop(true).await;
                }
            }
            .into_actor(self)
            .map(|(), _this, ctx| ctx.stop()),
        )
    }
}

/// A block message addressed to a peer: send it to [`PeerHandle::addr`].
///
/// ```no_run
/// # use distributed_scope::{remote_block, On, PeerHandle, PeerId, RemoteError};
/// #[remote_block]
/// async fn add(x: u32, y: u32) -> u32 {
///     x + y
/// }
///
/// # async fn example(handle: PeerHandle, server: PeerId) -> Result<(), Box<dyn std::error::Error>> {
/// let sum: Result<u32, RemoteError> = handle.addr().send(On::new(server, Add { x: 1, y: 2 })).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct On<M> {
    target: PeerId,
    message: M,
}

impl<M> On<M> {
    /// Addresses `message` to the peer `target`.
    pub fn new(target: PeerId, message: M) -> Self {
        Self { target, message }
    }
}

impl<M: Block> Message for On<M> {
    type Result = Result<M::Output, RemoteError>;
}

impl<M: Block> Handler<On<M>> for Peer {
    type Result = ResponseFuture<Result<M::Output, RemoteError>>;

    fn handle(&mut self, on: On<M>, _ctx: &mut Context<Self>) -> Self::Result {
        let scope = Scope::new(
            self.shared.clone(),
            self.shared.id,
            #[cfg(feature = "auth")]
            None,
            None,
        );
        Box::pin(scope.enter(RemoteCall::new(on.target, on.message)))
    }
}
