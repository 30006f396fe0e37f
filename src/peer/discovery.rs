//! [`Discovery`]: the peers a peer links to by itself, from a static list of URLs or from DNS
//! records followed as they change.
//!
//! A discovery task runs beside the peer actor on its thread. Every interval it looks the
//! name up (a list is "looked up" once), dials each address it has no link for through the
//! actor, as [`PeerHandle::connect`](crate::PeerHandle::connect) does, and learns the peer's
//! id from the handshake. From then on the link is the peer's like any other outbound link:
//! kept up with the reconnect backoff. A dial that fails is tried again by the task after
//! the same backoff. An address that leaves the records stops being reconnected, and its
//! link closes once no call is in flight on it.

mod lookup;
mod members;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hickory_resolver::TokioResolver;
use tokio::sync::broadcast;
use web_time::Instant;

use self::lookup::Query;
use self::members::{AfterDial, Members};
use super::Peer;
use super::actor::{Connect, TokenSource};
use super::events::PeerEvent;
use super::shared::{Control, Direction, Shared};
use crate::PeerId;

/// How often a DNS name is looked up again, by default.
const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// How many addresses of one name are dialled at most, by default.
const DEFAULT_MAX_DISCOVERED: usize = 64;
/// The shortest interval between lookups.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// A lookup takes at most the interval, and never less than this, before it counts as failed.
const MIN_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a peer finds the peers it links to: give it to
/// [`PeerBuilder::discover`](crate::PeerBuilder::discover).
///
/// - [`Discovery::urls`]: a fixed list of `ws://` or `wss://` URLs, each dialled until its link
///   is up, then kept up.
/// - [`Discovery::dns`]: a DNS name looked up every [`interval`](Discovery::interval)
///   (default 5 s); every address found is dialled, and the links of addresses that left the
///   records are closed once idle. The forms:
///
/// | URL | records | peer URLs dialled |
/// |---|---|---|
/// | `dns://NAME:PORT[/PATH]` | A and AAAA of `NAME` | `ws://ADDRESS:PORT/PATH` for each address |
/// | `dns+srv://NAME[/PATH]` | SRV of `NAME` (e.g. `_peer._tcp.peers.ns.svc.cluster.local`) | `ws://TARGET:PORT/PATH` for each record |
/// | `dns+wss://...`, `dns+srv+wss://...` | as above | `wss://...` |
///
/// SRV targets are dialled by name, resolved when dialled (by the system's resolver), so
/// that a `wss://` certificate for the target's name verifies: with TLS, use SRV (a
/// Kubernetes headless Service publishes one SRV record per pod, under the pod's own name).
/// A and AAAA addresses are dialled as addresses, so a `wss://` certificate must name the
/// address itself.
///
/// A name that does not end with a dot goes through the resolver's search domains, as
/// `/etc/resolv.conf` sets them; end it with a dot to ask for exactly that name. A name with
/// no records of the kind asked for has no peers (their links close once idle); a lookup
/// that fails otherwise (no answer in time, a server failure) is logged and changes nothing.
///
/// ```no_run
/// use std::time::Duration;
/// use distributed_scope::{Discovery, Peer, PeerId};
///
/// # async fn example() -> Result<(), distributed_scope::Error> {
/// let peer = Peer::builder(PeerId::from_name("worker-0"))
///     .listen("0.0.0.0:7000")
///     .discover(
///         Discovery::dns("dns+srv://_peer._tcp.peers.default.svc.cluster.local")
///             .interval(Duration::from_secs(10)),
///     )
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a discovery does nothing until given to `PeerBuilder::discover`"]
pub struct Discovery {
    source: Source,
    interval: Duration,
    nameservers: Vec<SocketAddr>,
    max_addresses: usize,
    token: TokenSource,
}

#[derive(Debug)]
enum Source {
    Urls(Vec<String>),
    Dns(String),
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("source", &self.source)
            .field("interval", &self.interval)
            .field("nameservers", &self.nameservers)
            .field("max_addresses", &self.max_addresses)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Links to each of these `ws://` or `wss://` URLs: dialled until the link is up (a peer
    /// that starts later is found), then kept up with the reconnect backoff.
    pub fn urls<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Source::Urls(urls.into_iter().map(Into::into).collect()))
    }

    /// Links to the peers a DNS name leads to, looked up again every interval: `dns://` for A
    /// and AAAA records, `dns+srv://` for SRV records, `+wss` for TLS (see [`Discovery`]).
    pub fn dns(url: impl Into<String>) -> Self {
        Self::new(Source::Dns(url.into()))
    }

    fn new(source: Source) -> Self {
        Self {
            source,
            interval: DEFAULT_DISCOVERY_INTERVAL,
            nameservers: Vec::new(),
            max_addresses: DEFAULT_MAX_DISCOVERED,
            token: TokenSource::None,
        }
    }

    /// How often the name is looked up again (default 5 s, at least 100 ms). Peers that
    /// appear are linked, and those that leave are unlinked, within about one interval.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Asks this nameserver (UDP, and TCP for long answers; repeatable) instead of the
    /// system's (`/etc/resolv.conf`, the default). No search domains apply then.
    pub fn nameserver(mut self, address: SocketAddr) -> Self {
        self.nameservers.push(address);
        self
    }

    /// The most addresses of the name dialled (default 64): beyond, the first in order are
    /// dialled, and a warning is logged each lookup.
    pub fn max_addresses(mut self, max: usize) -> Self {
        self.max_addresses = max;
        self
    }

    /// Presents `token` (`Authorization: Bearer`) on every link discovery opens, for peers
    /// that require auth.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = TokenSource::Fixed(token.into());
        self
    }

    /// Presents a token from `provider`, asked each time a link is opened (reconnections
    /// included), for peers that require auth.
    pub fn token_provider<P>(mut self, provider: P) -> Self
    where
        P: Fn() -> String + Send + Sync + 'static,
    {
        self.token = TokenSource::Provider(Arc::new(provider));
        self
    }

    /// Checks the options and sets the resolver up.
    pub(super) fn plan(self) -> Result<Plan, DiscoveryError> {
        if self.interval < MIN_INTERVAL {
            return Err(DiscoveryError::InvalidOption(
                "the discovery interval is below 100 ms",
            ));
        }
        if self.max_addresses == 0 {
            return Err(DiscoveryError::InvalidOption("max_addresses is zero"));
        }
        let lookup = match self.source {
            Source::Urls(urls) => {
                if urls.is_empty() {
                    return Err(DiscoveryError::InvalidOption("the list of urls is empty"));
                }
                for url in &urls {
                    if let Some(reason) = super::upgrade::url_problem(url) {
                        return Err(DiscoveryError::InvalidUrl {
                            url: url.clone(),
                            reason,
                        });
                    }
                }
                Lookup::Static(urls.into_iter().collect())
            }
            Source::Dns(url) => {
                let query = Query::parse(&url)?;
                let resolver = lookup::resolver(&self.nameservers)?;
                Lookup::Dns {
                    query,
                    resolver: Box::new(resolver),
                }
            }
        };
        Ok(Plan {
            lookup,
            interval: self.interval,
            max_addresses: self.max_addresses,
            token: self.token,
        })
    }
}

/// Why a [`Discovery`] cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A URL of the list, or the DNS URL, is malformed or has an unknown scheme.
    #[error("invalid discovery url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An option is out of range.
    #[error("invalid discovery option: {0}")]
    InvalidOption(&'static str),
    /// The DNS resolver could not be set up (no nameserver was given, and the system's
    /// configuration could not be read).
    #[error("cannot set up the dns resolver")]
    Resolver(#[source] std::io::Error),
}

impl DiscoveryError {
    fn resolver(error: hickory_resolver::net::NetError) -> Self {
        Self::Resolver(std::io::Error::other(error))
    }
}

/// A checked [`Discovery`], ready to run.
pub(super) struct Plan {
    lookup: Lookup,
    interval: Duration,
    max_addresses: usize,
    token: TokenSource,
}

enum Lookup {
    Static(BTreeSet<String>),
    Dns {
        query: Query,
        resolver: Box<TokioResolver>,
    },
}

impl Plan {
    /// Runs discovery on the current thread until the peer stops.
    pub(super) fn spawn(self, peer: Addr<Peer>, shared: Arc<Shared>) {
        actix_rt::spawn(self.run(peer, shared));
    }

    async fn run(self, peer: Addr<Peer>, shared: Arc<Shared>) {
        let mut members = Members::default();
        let mut dials = FuturesUnordered::new();
        let mut next_lookup = Instant::now();
        let stopped = shared.stopped();
        let mut stopped = std::pin::pin!(stopped);
        let backoff = shared.config.reconnect;
        let linked = |peer: PeerId| shared.is_linked(peer);
        let mut events = shared.events.subscribe();
        loop {
            if shared.is_stopping() || !peer.connected() {
                return;
            }
            if Instant::now() >= next_lookup {
                if let Some(found) = self.look_up().await {
                    for address in members.update(found, Instant::now()) {
                        tracing::info!(
                            address,
                            "discovered address gone: its link closes once idle"
                        );
                        peer.do_send(Forget {
                            url: address,
                            close: true,
                        });
                    }
                }
                // A gone address whose link is still up (it came up after it was asked to
                // close): ask again.
                for address in members.leaving(|url| outbound_link_up(&shared, url)) {
                    peer.do_send(Forget {
                        url: address,
                        close: true,
                    });
                }
                next_lookup = Instant::now() + self.interval;
            }
            for address in members.due(Instant::now(), backoff.enabled, linked) {
                let connect = Connect {
                    url: address.clone(),
                    token: self.token.clone(),
                    // Discovered peers are whoever answers at the address: their ids come
                    // from the handshake (checked against their tokens where auth is on).
                    expect: None,
                };
                let dial = peer.send(connect);
                dials.push(async move { (address, dial.await) });
            }
            let wake = members
                .next_due()
                .map_or(next_lookup, |due| due.min(next_lookup));
            let sleep = actix_rt::time::sleep(wake.saturating_duration_since(Instant::now()));
            tokio::select! {
                () = &mut stopped => return,
                () = sleep => {}
                event = events.recv() => match event {
                    Ok(PeerEvent::Lost { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        members.link_lost(Instant::now());
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some((address, result)) = dials.next(), if !dials.is_empty() => {
                    // The peer actor is gone: so is discovery.
                    let Ok(result) = result else { return };
                    let delay = |attempt| backoff.delay(attempt, crate::link::jitter_unit());
                    let after = members.dialled(shared.id, &address, &result, Instant::now(), linked, delay);
                    log_dial(&address, &result, after);
                    match after {
                        AfterDial::Keep => {}
                        AfterDial::Retry | AfterDial::Drop => peer.do_send(Forget { url: address, close: false }),
                        AfterDial::Close => peer.do_send(Forget { url: address, close: true }),
                    }
                }
            }
        }
    }

    /// The addresses found now, or `None` if the lookup failed (logged).
    async fn look_up(&self) -> Option<BTreeSet<String>> {
        match &self.lookup {
            Lookup::Static(urls) => Some(urls.clone()),
            Lookup::Dns { query, resolver } => {
                let timeout = self.interval.max(MIN_LOOKUP_TIMEOUT);
                let lookup = query.resolve(resolver, self.max_addresses);
                match actix_rt::time::timeout(timeout, lookup).await {
                    Ok(Ok(found)) => {
                        tracing::debug!(name = %query.name(), found = found.len(), "discovery lookup");
                        Some(found)
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(name = %query.name(), %error, "discovery lookup failed; keeping the peers found before");
                        None
                    }
                    Err(_elapsed) => {
                        tracing::warn!(name = %query.name(), ?timeout, "discovery lookup timed out; keeping the peers found before");
                        None
                    }
                }
            }
        }
    }
}

/// Logs how a dial to a discovered address ended: a link, or a failure (INFO: an address in
/// the records that cannot be reached is the operator's business), or else at DEBUG.
fn log_dial(address: &str, result: &Result<PeerId, crate::Error>, after: AfterDial) {
    match (result, after) {
        (Ok(remote), _) => {
            tracing::info!(address, peer = %remote.label(), "discovered peer linked")
        }
        (Err(error), AfterDial::Retry) => {
            tracing::info!(address, %error, "discovered address not reached; dialling again after the backoff");
        }
        (Err(error), AfterDial::Keep | AfterDial::Drop | AfterDial::Close) => {
            tracing::debug!(address, %error, "discovered address not dialled again");
        }
    }
}

/// Whether an outbound link to `url` is up.
fn outbound_link_up(shared: &Shared, url: &str) -> bool {
    shared.links().iter().any(|(_, link)| {
        link.outbox.is_open()
            && matches!(&link.direction, Direction::Outbound { url: to } if to == url)
    })
}

/// Stop reconnecting `url`; with `close`, close its link once no call is in flight on it.
struct Forget {
    url: String,
    close: bool,
}

impl Message for Forget {
    type Result = ();
}

impl Handler<Forget> for Peer {
    type Result = ();

    fn handle(&mut self, forget: Forget, _ctx: &mut Context<Self>) {
        // Without its entry, a reconnection scheduled for the URL does nothing.
        self.outbound.remove(&forget.url);
        if !forget.close {
            return;
        }
        for (_, link) in self.shared.links() {
            if matches!(&link.direction, Direction::Outbound { url } if *url == forget.url) {
                link.control.do_send(Control::CloseWhenIdle);
            }
        }
    }
}
