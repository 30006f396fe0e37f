//! [`PeerHandle`]: what users hold of a running peer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::web;
use futures_util::future::{Either, select};

use super::Peer;
use super::actor::{Connect, ConnectLazy, Disconnect, On, Restart, Stop, TokenSource};
use super::events::Events;
use super::middleware::PeerMiddleware;
use super::shared::{Direction, Shared};
use super::shutdown::StopSignals;
use super::upgrade;
use super::watch::{PeerStatus, Watch};
use crate::link::Metrics;
use crate::scope::Scope;
use crate::{Error, PeerId, RemoteError};

/// A handle to a running peer: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct PeerHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) addr: Addr<Peer>,
    pub(super) local_addr: Option<SocketAddr>,
    /// `ws` or `wss`, for [`PeerHandle::url`].
    pub(super) scheme: &'static str,
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
    /// [`PeerBuilder::listen_tls`](crate::PeerBuilder::listen_tls)), if the peer listens.
    pub fn url(&self) -> Option<String> {
        self.local_addr
            .map(|addr| format!("{}://{addr}/", self.scheme))
    }

    /// The peer actor's address; send it [`On`] messages.
    pub fn addr(&self) -> Addr<Peer> {
        self.addr.clone()
    }

    /// The blocks `peer` announced when its link came up (id, name, capture and result
    /// types), or `None` without a live link: know before you call. A peer announces at most
    /// 48 KiB of them.
    pub fn remote_blocks(&self, peer: PeerId) -> Option<Vec<crate::RemoteBlock>> {
        self.shared
            .link(peer)
            .map(|link| link.blocks.as_ref().clone())
    }

    /// The live links of this peer.
    pub fn connected_peers(&self) -> Vec<LinkInfo> {
        let mut links: Vec<LinkInfo> = self
            .shared
            .links()
            .into_iter()
            .filter(|(_, link)| link.outbox.is_open())
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
        self.open(url, TokenSource::None, None).await
    }

    /// Opens a link presenting `token` (`Authorization: Bearer`) to a peer that requires auth.
    ///
    /// # Errors
    ///
    /// As [`connect`](PeerHandle::connect); a refused token is [`Error::Connect`] with
    /// status 401.
    pub async fn connect_with_token(&self, url: &str, token: &str) -> Result<PeerId, Error> {
        self.open(url, TokenSource::Fixed(token.to_owned()), None)
            .await
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
        self.open(url, TokenSource::Provider(Arc::new(provider)), None)
            .await
    }

    /// Opens a link as [`connect`](PeerHandle::connect) does, and refuses it before any call
    /// runs unless the peer reached proves to be who `expected` says: a token bound to this
    /// link (its `nonce` claim), verified by this peer's [`JwtAuth`](crate::auth::JwtAuth)
    /// (from [`PeerBuilder::auth`](crate::PeerBuilder::auth)), whose subject or `peers` claim
    /// binds the id the remote claims, with the subject, role and id `expected` names. The
    /// same requirement holds for every reconnection.
    ///
    /// # Errors
    ///
    /// As [`connect`](PeerHandle::connect); [`Error::Config`] if this peer has no auth to
    /// verify proofs with; a remote that proves nothing, or someone else, is
    /// [`Error::Handshake`] with [`HandshakeError::IdentityMismatch`](crate::HandshakeError::IdentityMismatch).
    #[cfg(feature = "auth")]
    pub async fn connect_to(&self, url: &str, expected: super::Expected) -> Result<PeerId, Error> {
        if !self.shared.guard.has_auth() {
            return Err(Error::Config(
                "connect_to needs PeerBuilder::auth to verify the remote's proof",
            ));
        }
        let token = expected
            .token
            .clone()
            .map_or(TokenSource::None, TokenSource::Fixed);
        self.open(url, token, Some(Arc::new(expected))).await
    }

    /// Starts linking to the peer listening at `url` and returns at once (after tonic's
    /// `connect_lazy`): the peer dials now and, if that fails (the server is not up yet, a
    /// network glitch), again with the reconnect backoff until the link is up; after that the
    /// link is kept up as one opened by [`connect`](PeerHandle::connect). Calls to the peer
    /// wait for it meanwhile (until their deadline). Each later attempt is announced as
    /// [`PeerEvent::Reconnecting`](crate::PeerEvent::Reconnecting).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use distributed_scope::{PeerHandle, PeerId};
    /// # async fn example(peer: PeerHandle, server: PeerId) -> Result<(), Box<dyn std::error::Error>> {
    /// peer.connect_lazy("ws://server.internal:7000/")?;      // the server may start later
    /// peer.wait_for(server, Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for anything but a `ws://` or `wss://` URL, [`Error::Stopped`]
    /// if the peer has stopped. Dial failures are not errors here: they are retried.
    pub fn connect_lazy(&self, url: &str) -> Result<(), Error> {
        upgrade::check_url(url)?;
        if !self.addr.connected() {
            return Err(Error::Stopped);
        }
        self.addr.do_send(ConnectLazy {
            url: url.to_owned(),
            token: TokenSource::None,
        });
        Ok(())
    }

    async fn open(
        &self,
        url: &str,
        token: TokenSource,
        expect: super::Requirement,
    ) -> Result<PeerId, Error> {
        let connect = Connect {
            url: url.to_owned(),
            token,
            expect,
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
    /// `Send`. The returned future does not borrow the handle: when `future` is `'static`, so
    /// is it, so an actor can return it from a handler without cloning the handle into an
    /// `async move` block:
    ///
    /// ```no_run
    /// use distributed_scope::actix::prelude::*;
    /// use distributed_scope::{PeerHandle, PeerId, RemoteError, remote};
    ///
    /// struct Pricing {
    ///     peer: PeerHandle,
    ///     server: PeerId,
    /// }
    /// impl Actor for Pricing {
    ///     type Context = Context<Self>;
    /// }
    ///
    /// struct Quote(u64);
    /// impl Message for Quote {
    ///     type Result = Result<u64, RemoteError>;
    /// }
    ///
    /// impl Handler<Quote> for Pricing {
    ///     type Result = ResponseActFuture<Self, Result<u64, RemoteError>>;
    ///
    ///     fn handle(&mut self, Quote(cents): Quote, _ctx: &mut Context<Self>) -> Self::Result {
    ///         let call = remote!(self.server, [cents: u64] -> u64 { cents * 2 });
    ///         Box::pin(self.peer.run(call).into_actor(self))
    ///     }
    /// }
    /// ```
    pub fn run<F: Future>(&self, future: F) -> impl Future<Output = F::Output> + use<F> {
        self.scope().enter(future)
    }

    /// Spawns `future` on the current thread's actix runtime with this peer current.
    pub fn spawn<F>(&self, future: F) -> actix_rt::task::JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        actix_rt::spawn(self.scope().enter(future))
    }

    /// Sends a [`#[remote_block]`](crate::remote_block) message to run on `target`, through
    /// the peer actor (as `handle.addr().send(On::new(target, message))` does), with the
    /// mailbox error and the call's error flattened into one [`RemoteError`].
    ///
    /// The returned future is `'static` and `Send`: await it anywhere, or wrap it with
    /// `into_actor` in an actor's handler.
    ///
    /// ```no_run
    /// # use distributed_scope::{remote_block, PeerHandle, PeerId, RemoteError};
    /// #[remote_block]
    /// async fn add(x: u32, y: u32) -> u32 {
    ///     x + y
    /// }
    ///
    /// # async fn example(handle: PeerHandle, server: PeerId) -> Result<(), RemoteError> {
    /// let sum: u32 = handle.send(server, Add { x: 1, y: 2 }).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// What the call fails with, or [`RemoteError::ShuttingDown`] if the peer actor has
    /// stopped.
    pub fn send<M, T>(
        &self,
        target: PeerId,
        message: M,
    ) -> impl Future<Output = Result<T, RemoteError>> + Send + use<M, T>
    where
        M: Message<Result = Result<T, RemoteError>> + Send + 'static,
        On<M>: Message<Result = Result<T, RemoteError>>,
        Peer: Handler<On<M>>,
        T: Send + 'static,
    {
        let request = self.addr.send(On::new(target, message));
        let local = self.shared.id;
        async move {
            match request.await {
                Ok(result) => result,
                // The peer actor itself is gone: the call's outcome is unknown.
                Err(mailbox) => Err(RemoteError::from(mailbox).produced_at(Some(local))),
            }
        }
    }

    pub(crate) fn scope(&self) -> Scope {
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

    /// Tells `recipient` when `peer` is lost for good and when it returns, after Akka's
    /// DeathWatch and Erlang's monitors: [`PeerStatus::Lost`] once no link to `peer` has
    /// been up for the watch grace period ([`PeerBuilder::watch_grace`], 5 s by default; a
    /// reconnection within it is a blip nobody is told about), [`PeerStatus::Returned`] when
    /// a link comes up after that. A peer not linked when the watch starts has the grace
    /// period to link; one already reported lost is reported to a new watcher at once.
    /// Watching ends when the recipient's actor stops.
    ///
    /// ```no_run
    /// use distributed_scope::actix::prelude::*;
    /// use distributed_scope::{PeerHandle, PeerId, PeerStatus};
    ///
    /// struct Dispatcher;
    /// impl Actor for Dispatcher {
    ///     type Context = Context<Self>;
    /// }
    /// impl Handler<PeerStatus> for Dispatcher {
    ///     type Result = ();
    ///     fn handle(&mut self, status: PeerStatus, _ctx: &mut Context<Self>) {
    ///         match status {
    ///             PeerStatus::Lost { peer } => println!("{peer} lost: reassign its work"),
    ///             PeerStatus::Returned { peer } => println!("{peer} is back"),
    ///             _ => {}
    ///         }
    ///     }
    /// }
    ///
    /// # fn example(peer: PeerHandle, worker: PeerId) {
    /// let dispatcher = Dispatcher.start();
    /// peer.watch(worker, dispatcher.recipient());
    /// # }
    /// ```
    ///
    /// [`PeerBuilder::watch_grace`]: crate::PeerBuilder::watch_grace
    pub fn watch(&self, peer: PeerId, recipient: Recipient<PeerStatus>) {
        self.addr.do_send(Watch { peer, recipient });
    }

    /// Restarts the peer actor as after a failure: its links are dropped (calls pending on
    /// them fail) and its outbound links are dialled again with the reconnect backoff; its
    /// id, options, application data, server and watches stay. A peer started with
    /// [`PeerBuilder::start_supervised`] really stops, and its actix `Supervisor` restarts
    /// it; another one restarts in place. Announced as [`PeerEvent::Restarted`]. Does nothing
    /// once the peer is stopping.
    ///
    /// [`PeerEvent::Restarted`]: crate::PeerEvent::Restarted
    /// [`PeerBuilder::start_supervised`]: crate::PeerBuilder::start_supervised
    pub fn restart(&self) {
        self.addr.do_send(Restart);
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
        self.shared
            .wait_for_link(peer, deadline, true)
            .await
            .map(|_| ())
    }

    /// Publishes `value` on `topic`: to every linked peer subscribed to it, and to this
    /// peer's own subscriptions. Returns at once, from any thread, and never waits for a
    /// subscriber; returns how many linked peers the publication was handed to.
    ///
    /// The value is encoded once. Delivery is at most once and best effort, and direct
    /// only: a peer hears the publications of the peers it is linked to, never relayed
    /// ones. A subscriber whose link already has
    /// [`max_publications_in_flight`](crate::PeerBuilder::max_publications_in_flight)
    /// publications unanswered (256 by default) misses this one: it is dropped for that
    /// subscriber and counted in [`PubSubMetrics::dropped`](crate::PubSubMetrics::dropped),
    /// with a WARN on the first drop and at every power of two. See `docs/reliability.md`.
    ///
    /// With auth, a peer takes a subscription from, and a publication of, a linked peer
    /// only if its policy allows that peer's principal the name `topic:<topic>` (a glob
    /// `topic:news.*` covers `news.sports`).
    ///
    /// ```no_run
    /// # use distributed_scope::{PeerHandle, RemoteError};
    /// # fn example(peer: PeerHandle) -> Result<(), RemoteError> {
    /// let sent = peer.publish("prices.eur", &(1_u64, 99.5_f64))?;
    /// println!("handed to {sent} subscribers");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RemoteError::Decode`] if `value` cannot be encoded; [`RemoteError::TooLarge`] if
    /// the topic is longer than [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN) or the encoded
    /// publication would be over the peer's `max_message_size`;
    /// [`RemoteError::ShuttingDown`] once the peer stops.
    pub fn publish<T: serde::Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
    ) -> Result<usize, RemoteError> {
        if self.shared.is_stopping() {
            return Err(RemoteError::ShuttingDown {
                peer: Some(self.shared.id),
                block: None,
            });
        }
        super::pubsub::check_topic(topic)?;
        let limit = self
            .shared
            .config
            .max_message_size
            .saturating_sub(crate::wire::CALL_ROOM + topic.len() + 64);
        let payload = crate::wire::Payload::encode_within(value, 0, limit)
            .map(crate::wire::Payload::into_bytes)
            .map_err(|error| match error {
                RemoteError::TooLarge { size, limit, .. } => RemoteError::TooLarge {
                    peer: None,
                    block: Some(super::pubsub::policy_name(topic)),
                    size,
                    limit,
                },
                other => other,
            })?;
        let shared = &self.shared;
        Ok(shared
            .pubsub
            .publish(topic, payload, |peer| shared.is_linked(peer)))
    }

    /// Subscribes to `topic`: the publications of this peer and of every linked peer, now
    /// and of peers that link later, as a [`Subscription`](crate::Subscription) stream of
    /// `T` buffering up to
    /// [`DEFAULT_SUBSCRIPTION_CAPACITY`](crate::DEFAULT_SUBSCRIPTION_CAPACITY) (1 024)
    /// publications, dropping the oldest when its reader falls behind. Dropping the
    /// subscription withdraws it.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use distributed_scope::{PeerHandle, PeerId, RemoteError};
    /// use futures_util::StreamExt;
    ///
    /// # async fn example(peer: PeerHandle, server: PeerId) -> Result<(), RemoteError> {
    /// let mut prices = peer.subscribe::<(u64, f64)>("prices.eur");
    /// prices.wait_for(server, Duration::from_secs(5)).await?; // the server knows of it
    /// while let Some((instrument, price)) = prices.next().await {
    ///     println!("{instrument}: {price} ({} missed so far)", prices.missed());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe<T: serde::de::DeserializeOwned>(&self, topic: &str) -> super::Subscription<T> {
        self.subscribe_with_capacity(topic, super::DEFAULT_SUBSCRIPTION_CAPACITY)
    }

    /// [`subscribe`](Self::subscribe), buffering at most `capacity` publications (at
    /// least 1) before the oldest is dropped.
    pub fn subscribe_with_capacity<T: serde::de::DeserializeOwned>(
        &self,
        topic: &str,
        capacity: usize,
    ) -> super::Subscription<T> {
        let queue = self.shared.pubsub.subscribe(topic, capacity);
        super::Subscription::new(self.shared.pubsub.clone(), queue)
    }

    /// The peer's pub-sub counters: publications sent, dropped, failed and received.
    pub fn pubsub_metrics(&self) -> super::PubSubMetrics {
        self.shared.pubsub.metrics()
    }

    /// The peer's counters: calls, errors by kind, bytes, late replies, refused frames.
    pub fn metrics(&self) -> Metrics {
        self.shared.counters.snapshot()
    }

    /// The peer's WebSocket endpoint as an actix-web resource at `path`, to mount in your own
    /// `App` (own routes, middleware, TLS): `App::new().service(handle.endpoint("/scope"))`.
    /// It does the same handshake, limits and auth as
    /// [`PeerBuilder::listen`](crate::PeerBuilder::listen).
    ///
    /// The first link that comes in without auth (no
    /// [`PeerBuilder::auth`](crate::PeerBuilder::auth), no
    /// [`JwtMiddleware`](crate::web::JwtMiddleware) around the endpoint) logs a warning, once.
    ///
    /// Stopping the hosting `HttpServer` does not by itself close the links (actix-web's
    /// graceful stop waits up to its `shutdown_timeout`, 30 s by default, for open
    /// connections, WebSockets included): give the server
    /// [`shutdown_signal`](PeerHandle::shutdown_signal), and stop it with a signal or with
    /// [`stop`](PeerHandle::stop).
    pub fn endpoint(&self, path: &str) -> actix_web::Resource {
        web::resource(path)
            .app_data(web::Data::new(self.shared.clone()))
            .route(web::get().to(upgrade::accept_endpoint))
    }

    /// The future to give the `HttpServer` hosting this peer's [`endpoint`] as its
    /// `shutdown_signal`, so that stopping the server stops the peer's links promptly instead
    /// of after the server's `shutdown_timeout` (30 s by default).
    ///
    /// It listens to the stop signals actix-web would (SIGTERM and SIGINT on Unix, Ctrl-C
    /// elsewhere; given a `shutdown_signal`, the server no longer listens itself). On a
    /// signal it stops the peer first ([`stop`](PeerHandle::stop): calls in flight finish
    /// within the drain timeout, links close with 1001), then completes, and the server's
    /// graceful stop finds no WebSocket left to wait for. It also completes when the peer is
    /// stopped by [`stop`](PeerHandle::stop), which so stops the server too. The signals
    /// are registered when this is called.
    ///
    /// ```no_run
    /// use actix_web::{App, HttpServer};
    /// use distributed_scope::{Peer, PeerId};
    ///
    /// # #[actix_web::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let peer = Peer::builder(PeerId::from_name("service")).start().await?;
    /// let app_peer = peer.clone();
    /// HttpServer::new(move || App::new().service(app_peer.endpoint("/scope")))
    ///     .shutdown_signal(peer.shutdown_signal())
    ///     .bind("127.0.0.1:8080")?
    ///     .run()
    ///     .await?;   // returns promptly after SIGTERM, SIGINT or `peer.stop()`
    /// # Ok(()) }
    /// ```
    ///
    /// [`endpoint`]: PeerHandle::endpoint
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + use<> {
        let signals = StopSignals::listen();
        let stopped = self.shared.stopped();
        let handle = self.clone();
        async move {
            match select(pin!(signals.recv()), pin!(stopped)).await {
                Either::Left((signal, _)) => {
                    tracing::info!(
                        peer = %handle.id().label(),
                        signal,
                        "stop signal: stopping the peer, then its server"
                    );
                    let _already_stopped = handle.stop().await;
                }
                Either::Right(((), _)) => {}
            }
        }
    }

    /// An actix-web middleware under which request handlers run with this peer current, so
    /// they await `remote!` blocks and `#[remote_block]` calls directly:
    /// `App::new().wrap(handle.middleware())`. See [`PeerMiddleware`].
    pub fn middleware(&self) -> PeerMiddleware {
        PeerMiddleware::new(self.shared.clone())
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
