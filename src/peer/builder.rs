//! [`PeerBuilder`]: a peer's options, and how it starts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{App, HttpServer, web};

use super::config::Config;
use super::data::AppData;
use super::discovery::Discovery;
#[cfg(feature = "auth")]
use super::guard;
use super::origin::Origins;
use super::shared::Shared;
use super::upgrade::{self};
use super::{Peer, PeerHandle};
use crate::link::Backoff;
use crate::{Error, PeerId, transport, wire};

/// Configures and starts a [`Peer`]. Options not set keep the defaults listed on [`Config`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct PeerBuilder {
    id: PeerId,
    listen: Option<String>,
    server_tls: Option<rustls::ServerConfig>,
    client_tls: ClientTls,
    config: Config,
    data: AppData,
    discovery: Option<Discovery>,
    origins: Origins,
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
    /// (deny by default). An inbound link's token also binds the peer id it may claim in
    /// the handshake: `PeerId::from_name(subject)`, a peer its `peers` claim lists (names or
    /// UUIDs), or any random id ([`PeerId::random`], first come); any other claim is refused
    /// at the handshake and the connecting side's error says why. Without auth, ids are
    /// self-asserted. Links this peer opens itself are trusted; narrow them with
    /// [`allow_peer`](PeerBuilder::allow_peer) and [`deny_peer`](PeerBuilder::deny_peer).
    ///
    /// [`start`](PeerBuilder::start) fails if the configuration does not pass
    /// [`JwtAuth::check`](crate::auth::JwtAuth::check) (e.g. an HS256 secret under 32 bytes).
    #[cfg(feature = "auth")]
    pub fn auth(mut self, auth: crate::auth::JwtAuth, policy: crate::auth::Policy) -> Self {
        self.guard.set_auth(auth, policy);
        self
    }

    /// Proves this peer's identity to the peers that connect to it and require one
    /// ([`PeerHandle::connect_to`](crate::PeerHandle::connect_to)): in its handshake it
    /// answers each connecting peer's nonce with a short-lived token signed by `signer`
    /// (which needs a signing key: an HS256 secret, or `with_signing_pem`), naming `subject`
    /// and `roles`. It proves the id `PeerId::from_name(subject)` only, so give this peer
    /// that id. Connecting peers verify it with their own [`JwtAuth`](crate::auth::JwtAuth).
    ///
    /// With an HS256 secret every holder of the secret can sign proofs for any subject: use
    /// an asymmetric key (EdDSA, RS256) where peers must not be able to pass for each other.
    #[cfg(feature = "auth")]
    pub fn identity(
        mut self,
        signer: crate::auth::JwtAuth,
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.guard.set_identity(
            signer,
            subject.into(),
            roles.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// Checks every call against `policy` by the principal that made the root call of its
    /// chain ([`Scope::origin`](crate::Scope::origin)) as well as by its link's principal:
    /// a hop of a chain a `guest` started is refused here if `policy` does not allow
    /// `guest` that block, whichever peer relays it. A call that carries no verified origin
    /// (a hop whose root peer signed no grant) is refused.
    #[cfg(feature = "auth")]
    pub fn origin_policy(mut self, policy: crate::auth::Policy) -> Self {
        self.guard.set_origin_policy(policy);
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

    /// Lets web pages of this origin open links (repeatable), e.g. `"https://app.example"`
    /// or `"http://127.0.0.1:8080"`: scheme, host and port, compared exactly as browsers
    /// send them. An upgrade carrying any other `Origin` header is refused with HTTP 403
    /// before any WebSocket exists, with or without auth, so that no page the user happens
    /// to open can drive a peer from the user's browser. Clients that send no `Origin`
    /// (native peers) are not affected.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.allow(origin.into());
        self
    }

    /// Registers `value` for the blocks this peer runs: [`Scope::data`](crate::Scope::data)
    /// returns it (as an `Arc<T>`) inside any block running here, like actix-web's
    /// `App::app_data`. Register any number of values of different types; a second value of
    /// the same type replaces the first.
    ///
    /// ```no_run
    /// use distributed_scope::actix::{Actor, Addr, Context};
    /// use distributed_scope::{Peer, PeerId};
    ///
    /// struct Inventory;
    /// impl Actor for Inventory {
    ///     type Context = Context<Self>;
    /// }
    ///
    /// # async fn example() -> Result<(), distributed_scope::Error> {
    /// let inventory: Addr<Inventory> = Inventory.start();
    /// let peer = Peer::builder(PeerId::from_name("store"))
    ///     .data(inventory)                   // Scope::current().data::<Addr<Inventory>>()
    ///     .data(String::from("eu-west"))     // Scope::current().data::<String>()
    ///     .listen("127.0.0.1:0")
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn data<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.data.insert(value);
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
    /// [`RemoteError::ConnectionLost`](crate::RemoteError::ConnectionLost) (default 10 s).
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.config.liveness_timeout = timeout;
        self
    }

    /// How long a link whose connection dropped waits to be resumed (default 10 s): within
    /// it, the connecting side reconnects and both sides send again what the other did not
    /// receive, so calls in flight complete exactly once; past it, they fail with
    /// `ConnectionLost`. Zero turns session resume off (both sides must have it on).
    pub fn resume_window(mut self, window: Duration) -> Self {
        self.config.resume_window = window;
        self
    }

    /// Bytes of sent frames a link keeps until the remote acknowledges them (default
    /// 32 MiB): at the bound the link takes no new calls or stream items and stops reading
    /// until acknowledgements make room.
    pub fn max_replay_bytes(mut self, bytes: usize) -> Self {
        self.config.max_replay_bytes = bytes.max(1);
        self
    }

    /// Calls of one link that may wait beyond `max_inbound_calls` before new ones are
    /// answered [`RemoteError::Overloaded`](crate::RemoteError::Overloaded) (default 4 096).
    pub fn max_queued_calls(mut self, calls: usize) -> Self {
        self.config.max_queued_calls = calls;
        self
    }

    /// Bytes of call frames of one link running or waiting here (default 64 MiB); beyond,
    /// calls answer `Overloaded`.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.config.max_queued_bytes = bytes;
        self
    }

    /// The largest message accepted before the handshake completes (default and at most
    /// 64 KiB).
    pub fn max_hello_size(mut self, bytes: usize) -> Self {
        self.config.max_hello_size = bytes;
        self
    }

    /// Bytes and entries of a call's metadata (default 8 KiB and 32, at most 64 entries); a
    /// call with more closes its link.
    pub fn max_metadata(mut self, bytes: usize, entries: usize) -> Self {
        self.config.max_metadata_bytes = bytes;
        self.config.max_metadata_entries = entries;
        self
    }

    /// The longest deadline an inbound call may ask for (default 5 minutes); longer ones are
    /// clamped.
    pub fn max_inbound_deadline(mut self, deadline: Duration) -> Self {
        self.config.max_inbound_deadline = deadline;
        self
    }

    /// Bytes written to a link but not yet taken by the remote past which the link stops
    /// reading (default 4 MiB), and how long it may stay so without progress before it is
    /// dropped (default 10 s).
    pub fn max_send_buffer(mut self, bytes: usize, write_timeout: Duration) -> Self {
        self.config.max_send_buffer = bytes;
        self.config.write_timeout = write_timeout;
        self
    }

    /// How long a fragmented message may take to complete (default 10 s).
    pub fn fragment_timeout(mut self, timeout: Duration) -> Self {
        self.config.fragment_timeout = timeout;
        self
    }

    /// Peer-wide link limits: inbound links past their handshake (default 512), inbound links
    /// in their handshake (default 256), and inbound links from one IP address (default 64).
    /// More are refused with HTTP 503.
    pub fn max_links(mut self, links: usize, handshakes: usize, per_ip: usize) -> Self {
        self.config.max_links = links;
        self.config.max_handshakes = handshakes;
        self.config.max_links_per_ip = per_ip;
        self
    }

    /// Peer-wide bytes of inbound call frames beyond the 64 KiB each link may always hold
    /// (default 128 MiB), and of unfinished messages (default 64 MiB: fragments being assembled,
    /// and input not yet a whole frame beyond 64 KiB a socket).
    pub fn max_buffered_bytes(mut self, calls: usize, fragments: usize) -> Self {
        self.config.max_buffered_bytes = calls;
        self.config.max_fragment_bytes = fragments;
        self
    }

    /// Calls this peer may have pending on one link; more wait until their deadline
    /// (default 4 096).
    pub fn max_pending_outbound(mut self, calls: usize) -> Self {
        self.config.max_pending_outbound = calls.max(1);
        self
    }

    /// Publications this peer may have sent to one linked subscriber and not seen answered;
    /// beyond, a publication to it is dropped and counted (default 256, at least 1).
    pub fn max_publications_in_flight(mut self, publications: usize) -> Self {
        self.config.max_publications_in_flight = publications.max(1);
        self
    }

    /// Topics one linked peer may subscribe to on this peer; more are refused with
    /// `Overloaded` (default 256).
    pub fn max_topics_per_remote(mut self, topics: usize) -> Self {
        self.config.max_topics_per_remote = topics;
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

    /// Whether calls to a peer known down wait for it until their deadline (default false:
    /// they fail at once with [`RemoteError::NotConnected`](crate::RemoteError::NotConnected)).
    ///
    /// A peer is known down from the moment its link is lost, or a dial to its URL fails,
    /// until a link to it comes up again; while it is being dialled, calls wait for the
    /// outcome. A peer never seen is always waited for. A single call can ask for the waiting
    /// with [`RemoteCall::wait_for_ready`](crate::RemoteCall::wait_for_ready).
    pub fn wait_for_ready(mut self, wait: bool) -> Self {
        self.config.wait_for_ready = wait;
        self
    }

    /// How long a watched peer may be without a link before its watchers are told it is
    /// [`PeerStatus::Lost`](crate::PeerStatus::Lost) (default 5 s): a link that comes back
    /// sooner (a reconnection) is a blip nobody is told about. See [`PeerHandle::watch`].
    pub fn watch_grace(mut self, grace: Duration) -> Self {
        self.config.watch_grace = grace;
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

    /// Links to the peers `discovery` finds: a static list of URLs, or a DNS name looked up
    /// again every interval, each address found dialled and the links of addresses that
    /// left closed once idle. See [`Discovery`].
    ///
    /// ```no_run
    /// use distributed_scope::{Discovery, Peer, PeerId};
    ///
    /// # async fn example() -> Result<(), distributed_scope::Error> {
    /// let peer = Peer::builder(PeerId::from_name("worker-0"))
    ///     .listen("0.0.0.0:7000")
    ///     .discover(Discovery::dns("dns://peers.default.svc.cluster.local:7000"))
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn discover(mut self, discovery: Discovery) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// Starts the peer actor in the current actix system and, with [`listen`], its server.
    ///
    /// [`listen`]: PeerBuilder::listen
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid option, [`Error::Discovery`] for an invalid
    /// [`discover`](PeerBuilder::discover) option, [`Error::Bind`] if the address cannot be
    /// bound.
    pub async fn start(self) -> Result<PeerHandle, Error> {
        self.launch(false).await
    }

    /// Starts the peer as [`start`](PeerBuilder::start) does, under an actix
    /// [`Supervisor`](actix::Supervisor): if the peer actor stops without being asked to (a
    /// failure, or [`PeerHandle::restart`]), the supervisor restarts it with the same id,
    /// options, application data, server and watches, and it dials its outbound links
    /// again. The [`PeerHandle`] stays valid across restarts.
    ///
    /// # Errors
    ///
    /// As [`start`](PeerBuilder::start).
    pub async fn start_supervised(self) -> Result<PeerHandle, Error> {
        self.launch(true).await
    }

    async fn launch(self, supervised: bool) -> Result<PeerHandle, Error> {
        let Self {
            id,
            listen,
            server_tls,
            client_tls,
            config,
            data,
            discovery,
            origins,
            #[cfg(feature = "auth")]
            guard,
        } = self;
        #[cfg(feature = "auth")]
        guard.check()?;
        #[cfg(feature = "auth")]
        let open = !guard.has_auth();
        #[cfg(not(feature = "auth"))]
        let open = true;
        if listen.is_some() && open {
            tracing::warn!(
                peer = %id.label(),
                "listening without auth: any client may run any block, and peer ids are self-asserted (any client may claim any id not linked yet)"
            );
        }
        crate::block::check_registry();
        if config.max_message_size > wire::MAX_MESSAGE_SIZE_CEILING {
            return Err(Error::Config("max_message_size is above 1 GiB"));
        }
        if config.max_message_size < 1024 {
            return Err(Error::Config("max_message_size is below 1 KiB"));
        }
        let discovery = discovery.map(Discovery::plan).transpose()?;
        let tls = match client_tls {
            ClientTls::Default => transport::default_client_config(),
            ClientTls::Roots(roots) => transport::client_config_with_roots(roots)?,
            ClientTls::Config(config) => config,
        };
        let scheme = if server_tls.is_some() { "wss" } else { "ws" };
        let shared = Arc::new(Shared::new(
            id,
            config,
            data,
            origins,
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
                    .route("/", web::get().to(upgrade::accept))
            })
            .on_connect(transport::remember_connection)
            // Calls and replies are small messages, often answered at once: without this,
            // Nagle's algorithm holds a reply back until the previous one is acknowledged.
            .tcp_nodelay(true)
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
            tracing::info!(peer = %id.label(), addr = ?local_addr, "listening");
        }
        let peer = Peer {
            shared: shared.clone(),
            server: server_handle,
            outbound: HashMap::new(),
            tls,
            watches: HashMap::new(),
            supervised,
            relink: false,
        };
        let addr = if supervised {
            Supervisor::start(move |_ctx| peer)
        } else {
            peer.start()
        };
        if let Some(discovery) = discovery {
            discovery.spawn(addr.clone(), shared.clone());
        }
        Ok(PeerHandle {
            shared,
            addr,
            local_addr,
            scheme,
        })
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
            data: AppData::default(),
            discovery: None,
            origins: Origins::default(),
            #[cfg(feature = "auth")]
            guard: guard::Guard::default(),
        }
    }
}
