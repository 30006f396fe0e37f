//! The [`Peer`] actor: the links a peer opened and their supervision, its lifecycle, and
//! the block messages ([`On`]) other actors send it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use futures_channel::oneshot;

use super::events::{Events, PeerEvent};
use super::shared::{Control, Direction, Shared};
use super::upgrade::dial;
use super::watch::Watches;
use crate::block::Block;
use crate::error::HandshakeError;
use crate::scope::Scope;
use crate::{Error, PeerId, RemoteCall, RemoteError};

/// A peer: an actix actor that owns the links to other peers and their lifecycle.
///
/// Create one with [`Peer::builder`]; talk to it through the [`PeerHandle`](crate::PeerHandle)
/// that [`PeerBuilder::start`](crate::PeerBuilder::start) returns. The actor receives [`On`]
/// messages, so a user's own actor can call blocks by sending to
/// [`PeerHandle::addr`](crate::PeerHandle::addr).
///
/// # Supervision
///
/// A peer is [`Supervised`]: started with
/// [`PeerBuilder::start_supervised`](crate::PeerBuilder::start_supervised), it runs under an
/// actix [`Supervisor`], which restarts it when it stops without being asked to
/// ([`PeerHandle::restart`](crate::PeerHandle::restart) makes it do so). A stopping peer
/// drops its links, as a process restart would; restarted, it keeps its id, options,
/// application data, server and watches, and dials its outbound links again with the
/// reconnect backoff.
pub struct Peer {
    pub(super) shared: Arc<Shared>,
    pub(super) server: Option<ServerHandle>,
    /// Outbound links by URL: how to get a token, and whether to keep them up.
    pub(super) outbound: HashMap<String, Outbound>,
    /// The TLS client configuration of `wss://` links.
    pub(super) tls: Arc<rustls::ClientConfig>,
    /// Peers watched for other actors (`PeerHandle::watch`).
    pub(super) watches: Watches,
    /// Runs under an actix `Supervisor` (`start_supervised`).
    pub(super) supervised: bool,
    /// Restarted by its supervisor: dial the outbound links again once started.
    pub(super) relink: bool,
}

/// Where an outbound link's token comes from.
#[derive(Clone)]
pub(super) enum TokenSource {
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

pub(super) struct Outbound {
    token: TokenSource,
    /// What the remote must prove to be, on every dial.
    expect: super::Requirement,
    /// Failed reconnection attempts since the link was last up.
    attempt: u32,
    /// False once `disconnect` was asked for.
    wanted: bool,
    /// The peer this URL led to, once a dial succeeded: marked down when a dial fails.
    peer: Option<PeerId>,
}

impl Outbound {
    fn new(token: TokenSource, expect: super::Requirement) -> Self {
        Self {
            token,
            expect,
            attempt: 0,
            wanted: true,
            peer: None,
        }
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl Actor for Peer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(Events::new(self.shared.events.subscribe()));
        // Pub-sub calls are made from this thread, for as long as the actor runs.
        ctx.spawn(actix::fut::wrap_future(super::pubsub::run_worker(
            self.shared.clone(),
        )));
        self.rearm_watches(ctx);
        self.reconcile_watches(ctx);
        if std::mem::take(&mut self.relink) && !self.shared.is_stopping() {
            self.shared.emit(PeerEvent::Restarted);
            tracing::info!(peer = %self.shared.id.label(), "peer restarted");
            self.dial_outbound(ctx);
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // `stop()` closed the links already; any other stop is a failure, and a failed peer
        // keeps no links (they come back if its supervisor restarts it).
        if !self.shared.is_stopping() {
            tracing::warn!(peer = %self.shared.id.label(), "peer actor stopped: dropping its links");
            for (_, link) in self.shared.links() {
                link.control.do_send(Control::Shutdown);
            }
        }
    }
}

impl Supervised for Peer {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // After `stop()` the supervisor restarts the actor too (its address is still held):
        // it then stays idle, refusing everything, until the last address is dropped.
        self.relink = true;
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
        let delay = backoff.delay(attempt, crate::link::jitter_unit());
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
            let attempt = this.dial(url, Retry::Yes, ctx);
            ctx.spawn(attempt.map(|_result, _this, _ctx| ()));
        });
    }

    /// Dials `url` with the token it was registered with; what comes of it is recorded by
    /// [`Peer::dialled`].
    fn dial(
        &mut self,
        url: String,
        retry: Retry,
        ctx: &mut Context<Self>,
    ) -> impl ActorFuture<Self, Output = Result<PeerId, Error>> + 'static {
        let (token, expect, known) =
            self.outbound
                .get(&url)
                .map_or((None, None, None), |outbound| {
                    (
                        outbound.token.token(),
                        outbound.expect.clone(),
                        outbound.peer,
                    )
                });
        if let Some(peer) = known {
            // Being dialled: calls wait for the outcome rather than fail at once.
            self.shared.mark_dialling(peer);
        }
        dial(
            self.shared.clone(),
            url.clone(),
            token,
            expect,
            self.tls.clone(),
            ctx.address().recipient(),
        )
        .into_actor(self)
        .map(move |result, this, ctx| {
            this.dialled(&url, &result, retry, ctx);
            result
        })
    }

    /// Records the outcome of a dial: the peer the URL leads to, or that peer known down and,
    /// for links kept up, the next attempt.
    fn dialled(
        &mut self,
        url: &str,
        result: &Result<PeerId, Error>,
        retry: Retry,
        ctx: &mut Context<Self>,
    ) {
        let Some(outbound) = self.outbound.get_mut(url) else {
            return;
        };
        match result {
            Ok(peer) => {
                outbound.peer = Some(*peer);
                if outbound.attempt > 0 {
                    tracing::info!(url, peer = %peer.label(), "reconnected");
                }
                outbound.attempt = 0;
            }
            Err(error) => {
                let known = outbound.peer;
                // Refused as a duplicate of a live link: that peer is up, not down.
                let live = matches!(
                    error,
                    Error::Handshake { reason: HandshakeError::Duplicate(peer), .. }
                        if self.shared.link(*peer).is_some()
                );
                if let Some(peer) = known
                    && !live
                {
                    self.shared.mark_down(peer);
                }
                if retry == Retry::Yes {
                    tracing::info!(url, %error, "dial failed");
                    self.schedule_reconnect(url.to_owned(), ctx);
                }
            }
        }
    }
}

impl Peer {
    /// Dials every outbound link still wanted again, each after its backoff delay.
    fn dial_outbound(&mut self, ctx: &mut Context<Self>) {
        let wanted: Vec<String> = self
            .outbound
            .iter()
            .filter(|(_, outbound)| outbound.wanted)
            .map(|(url, _)| url.clone())
            .collect();
        for url in wanted {
            if let Some(outbound) = self.outbound.get_mut(&url) {
                outbound.attempt = 0;
            }
            self.schedule_reconnect(url, ctx);
        }
    }
}

/// Whether a failed dial is tried again with the reconnect backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// `connect`: the caller gets the error.
    No,
    /// Reconnections and `connect_lazy`.
    Yes,
}

pub(super) struct Connect {
    pub(super) url: String,
    pub(super) token: TokenSource,
    pub(super) expect: super::Requirement,
}

impl Message for Connect {
    type Result = Result<PeerId, Error>;
}

impl Handler<Connect> for Peer {
    type Result = ResponseActFuture<Self, Result<PeerId, Error>>;

    fn handle(&mut self, connect: Connect, ctx: &mut Context<Self>) -> Self::Result {
        self.register(connect.url.clone(), connect.token, connect.expect);
        Box::pin(self.dial(connect.url, Retry::No, ctx))
    }
}

impl Peer {
    /// Keeps `url` as an outbound link to bring back, with how to get its token.
    fn register(&mut self, url: String, token: TokenSource, expect: super::Requirement) {
        let outbound = self
            .outbound
            .entry(url)
            .or_insert_with(|| Outbound::new(token.clone(), expect.clone()));
        outbound.token = token;
        outbound.expect = expect;
        outbound.wanted = true;
        outbound.attempt = 0;
    }
}

/// Dial `url` now and, whatever the outcome, keep dialling it with the reconnect backoff
/// until its link is up.
pub(super) struct ConnectLazy {
    pub(super) url: String,
    pub(super) token: TokenSource,
}

impl Message for ConnectLazy {
    type Result = ();
}

impl Handler<ConnectLazy> for Peer {
    type Result = ();

    fn handle(&mut self, connect: ConnectLazy, ctx: &mut Context<Self>) {
        let up = self.shared.links().into_iter().any(|(_, link)| {
            link.outbox.is_open()
                && matches!(&link.direction, Direction::Outbound { url } if *url == connect.url)
        });
        self.register(connect.url.clone(), connect.token, None);
        if up || self.shared.is_stopping() {
            return;
        }
        let attempt = self.dial(connect.url, Retry::Yes, ctx);
        ctx.spawn(attempt.map(|_result, _this, _ctx| ()));
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

pub(super) struct Disconnect(pub(super) PeerId);

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
            link.control.do_send(Control::Close);
        }
    }
}

/// Stop as a failure would: a supervised peer is restarted, another drops its links in
/// place and dials its outbound links again.
pub(super) struct Restart;

impl Message for Restart {
    type Result = ();
}

impl Handler<Restart> for Peer {
    type Result = ();

    fn handle(&mut self, _restart: Restart, ctx: &mut Context<Self>) {
        if self.shared.is_stopping() {
            return;
        }
        if self.supervised {
            ctx.stop();
            return;
        }
        for (_, link) in self.shared.links() {
            link.control.do_send(Control::Shutdown);
        }
        self.shared.emit(PeerEvent::Restarted);
        tracing::info!(peer = %self.shared.id.label(), "peer restarted in place");
        self.dial_outbound(ctx);
    }
}

pub(super) struct Stop;

impl Message for Stop {
    type Result = ();
}

impl Handler<Stop> for Peer {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _stop: Stop, _ctx: &mut Context<Self>) -> Self::Result {
        // No new calls from here on, in either direction; in-flight ones may finish until
        // the drain timeout, then fail with `ShuttingDown`; links close with 1001.
        self.shared.begin_stop();
        self.shared.pubsub.close();
        for outbound in self.outbound.values_mut() {
            outbound.wanted = false;
        }
        let links: Vec<_> = self
            .shared
            .links()
            .into_iter()
            .map(|(_, link)| link.control.clone())
            .collect();
        let drain_timeout = self.shared.config.drain_timeout;
        let server = self.server.take();
        Box::pin(
            async move {
                let drains = links.iter().map(|link| {
                    let (drained, done) = oneshot::channel();
                    link.do_send(Control::Drain(drained));
                    done
                });
                let _timed_out =
                    actix_rt::time::timeout(drain_timeout, futures_util::future::join_all(drains))
                        .await;
                for link in &links {
                    link.do_send(Control::Shutdown);
                }
                if let Some(server) = server {
                    server.stop(true).await;
                }
            }
            .into_actor(self)
            .map(|(), this, ctx| {
                this.shared.finish_stop();
                ctx.stop();
            }),
        )
    }
}

/// A block message addressed to a peer: send it to
/// [`PeerHandle::addr`](crate::PeerHandle::addr).
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
