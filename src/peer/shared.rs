//! State shared by a peer's actor, its connections and the calls made from any thread.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix::{Message, Recipient};
use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::future::{Either, LocalBoxFuture, select};
use tokio::sync::broadcast;
use web_time::Instant;

use super::admission::Admission;
use super::config::Config;
use super::data::AppData;
use super::events::PeerEvent;
use super::known_down::KnownDown;
use super::outbox::{OutboundCall, Outbox, Slot, Slots};
use crate::link::{Budgets, Counters};
use crate::runtime::{Request, Runtime};
use crate::{PeerId, RemoteError};

#[cfg(feature = "auth")]
use crate::auth::Principal;

/// Who opened a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The remote connected to us; `remote` is its socket address.
    Inbound { remote: String },
    /// We connected to `url`.
    Outbound { url: String },
}

impl Direction {
    pub(crate) fn describe(&self) -> &str {
        match self {
            Self::Inbound { remote } => remote,
            Self::Outbound { url } => url,
        }
    }
}

/// What the peer asks of one of its links.
pub(crate) enum Control {
    /// Close on purpose (`disconnect`): not reconnected.
    Close,
    /// Close on purpose once no call is pending, running or queued on the link in either
    /// direction (discovery no longer finds its address): not reconnected.
    CloseWhenIdle,
    /// Refuse new calls of the remote; answer once none runs or waits.
    Drain(oneshot::Sender<()>),
    /// The drain timeout passed: fail what still runs with `ShuttingDown`, close with 1001.
    Shutdown,
    /// A new link from the same peer took the place of this one, which was waiting to be
    /// resumed: it ends, failing its pending calls with `ConnectionLost`.
    Superseded,
}

impl Message for Control {
    type Result = ();
}

/// A live link to another peer, as the call path sees it: where its calls and cancels go
/// (its outbox) and its control messages (the link's actor, by message, so this table never
/// names it).
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) serial: u64,
    /// Where calls and cancels go, taken by the link's thread in batches.
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) control: Recipient<Control>,
    /// Where calls take their ids (the link's engine hands them out).
    pub(crate) ids: Arc<AtomicU64>,
    pub(crate) remote_max: usize,
    pub(crate) direction: Direction,
    pub(crate) app_version: Option<String>,
    /// The blocks the remote announced in its handshake.
    pub(crate) blocks: Arc<Vec<crate::RemoteBlock>>,
    /// Bounds the calls this peer has pending on the link.
    pub(crate) outbound_slots: Arc<Slots>,
    /// The link's connection dropped and it waits to be resumed: a new link from the same
    /// peer takes its place.
    pub(crate) suspended: Arc<std::sync::atomic::AtomicBool>,
    #[cfg(feature = "auth")]
    pub(crate) principal: Option<Arc<Principal>>,
}

pub(crate) struct Shared {
    pub(crate) id: PeerId,
    pub(crate) config: Config,
    /// The web pages allowed to open links.
    pub(crate) origins: super::origin::Origins,
    #[cfg(feature = "auth")]
    pub(crate) guard: super::guard::Guard,
    pub(crate) counters: Arc<Counters>,
    pub(crate) events: broadcast::Sender<PeerEvent>,
    /// Bytes of inbound calls and fragments all links hold (`max_buffered_bytes`,
    /// `max_fragment_bytes`).
    pub(crate) budgets: Budgets,
    /// Links, handshakes and links per address (`max_links`, ...).
    pub(crate) admission: Arc<Admission>,
    /// What blocks reach through `Scope::data`.
    data: AppData,
    /// Publish-subscribe: local subscriptions, remotes' topics, publications in flight.
    pub(crate) pubsub: Arc<super::pubsub::Hub>,
    stopping: AtomicBool,
    /// Set once `stop()` has closed the links (and the peer's own server).
    stopped: tokio::sync::watch::Sender<bool>,
    /// An endpoint reached without auth has warned about it.
    warned_open_endpoint: AtomicBool,
    links: RwLock<HashMap<PeerId, Arc<Link>>>,
    links_changed: tokio::sync::Notify,
    /// The sessions of this peer's accepting links that may be resumed, on whichever worker
    /// thread holds each: a resume of one of them that reaches another worker is retried, a
    /// resume of any other is refused for good.
    pub(crate) sessions: Mutex<std::collections::HashSet<u128>>,
    /// Peers whose link was lost or whose last dial failed: calls to them fail at once
    /// unless they wait for ready.
    known_down: Mutex<KnownDown>,
    /// The block lists links announced, shared between links of one build (at most
    /// [`MANIFESTS`] kept), so that a thousand links to one kind of peer hold one list.
    manifests: Mutex<Vec<Arc<Vec<crate::RemoteBlock>>>>,
    serials: AtomicU64,
}

/// How many distinct block lists [`Shared::intern_blocks`] keeps for sharing.
const MANIFESTS: usize = 16;

impl Shared {
    pub(crate) fn new(
        id: PeerId,
        config: Config,
        data: AppData,
        origins: super::origin::Origins,
        #[cfg(feature = "auth")] guard: super::guard::Guard,
    ) -> Self {
        let budgets = Budgets::new(config.max_buffered_bytes, config.max_fragment_bytes);
        let admission = Arc::new(Admission::new(
            config.max_links,
            config.max_handshakes,
            config.max_links_per_ip,
        ));
        let pubsub = Arc::new(super::pubsub::Hub::new(
            id,
            super::pubsub::Limits {
                in_flight: config.max_publications_in_flight,
                topics_per_remote: config.max_topics_per_remote,
            },
            #[cfg(feature = "auth")]
            guard.clone(),
        ));
        Self {
            pubsub,
            id,
            config,
            origins,
            #[cfg(feature = "auth")]
            guard,
            counters: Arc::new(Counters::default()),
            events: broadcast::channel(256).0,
            budgets,
            admission,
            data,
            stopping: AtomicBool::new(false),
            stopped: tokio::sync::watch::Sender::new(false),
            warned_open_endpoint: AtomicBool::new(false),
            links: RwLock::new(HashMap::new()),
            links_changed: tokio::sync::Notify::new(),
            sessions: Mutex::default(),
            known_down: Mutex::new(KnownDown::default()),
            manifests: Mutex::new(Vec::new()),
            serials: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_serial(&self) -> u64 {
        self.serials.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn emit(&self, event: PeerEvent) {
        // Nobody listening is fine.
        let _unobserved = self.events.send(event);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.links_changed.notify_waiters();
    }

    /// `stop()` has closed the links.
    pub(crate) fn finish_stop(&self) {
        self.stopped.send_replace(true);
    }

    /// Completes once `stop()` has closed the links.
    pub(crate) fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut stopped = self.stopped.subscribe();
        async move {
            // The sender lives as long as this peer's shared state, which outlives the wait.
            let _closed = stopped.wait_for(|stopped| *stopped).await;
        }
    }

    /// Whether this is the first upgrade through an endpoint without auth (to warn once).
    pub(crate) fn first_open_endpoint(&self) -> bool {
        !self.warned_open_endpoint.swap(true, Ordering::Relaxed)
    }

    pub(crate) fn link(&self, peer: PeerId) -> Option<Arc<Link>> {
        self.read_links().get(&peer).cloned()
    }

    /// Whether a live link to `peer` is up.
    pub(crate) fn is_linked(&self, peer: PeerId) -> bool {
        self.link(peer).is_some_and(|link| link.outbox.is_open())
    }

    pub(crate) fn links(&self) -> Vec<(PeerId, Arc<Link>)> {
        self.read_links()
            .iter()
            .map(|(id, link)| (*id, link.clone()))
            .collect()
    }

    /// Completes at the next change of the link table (enable it before reading the table).
    pub(crate) fn links_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.links_changed.notified()
    }

    fn read_links(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PeerId, Arc<Link>>> {
        // Inserts and removes are single map operations, so a panic elsewhere while the lock
        // was held cannot have left the map half-updated.
        self.links
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_links(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<PeerId, Arc<Link>>> {
        self.links
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a link unless a live one to the same peer exists (no hijacking).
    pub(crate) fn insert_link(&self, peer: PeerId, link: Link) -> bool {
        let (inserted, superseded) = {
            let mut links = self.write_links();
            match links.get(&peer) {
                Some(existing)
                    if existing.outbox.is_open() && !existing.suspended.load(Ordering::SeqCst) =>
                {
                    (false, None)
                }
                _ => (true, links.insert(peer, Arc::new(link))),
            }
        };
        // The peer dialled afresh instead of resuming (it gave up, or restarted): the old
        // link waits in vain.
        if let Some(old) = superseded.filter(|old| old.outbox.is_open()) {
            tracing::info!(peer = %peer.label(), "a new link replaces one waiting to be resumed");
            old.control.do_send(Control::Superseded);
        }
        if inserted {
            self.lock_known_down().remove(peer);
            self.links_changed.notify_waiters();
        }
        inserted
    }

    /// Adds `link`, one this peer dialled, also in place of a live *inbound* link to the same
    /// peer, which is then closed. When two peers dial each other at once, each accepts the
    /// other's dial before its own completes; if both then refused their own, neither link
    /// would be left. So the peer with the lower id keeps its own dial (this), and the other
    /// refuses its own ([`Shared::insert_link`]): one link remains, the same on both sides.
    /// A live outbound link to `peer` is never replaced.
    pub(crate) fn insert_crossed_link(&self, peer: PeerId, link: Link) -> bool {
        let replaced = {
            let mut links = self.write_links();
            match links.get(&peer) {
                Some(existing)
                    if existing.outbox.is_open()
                        && matches!(existing.direction, Direction::Outbound { .. }) =>
                {
                    return false;
                }
                _ => links.insert(peer, Arc::new(link)),
            }
        };
        if let Some(replaced) = replaced.filter(|old| old.outbox.is_open()) {
            tracing::info!(peer = %peer.label(), "both peers dialled each other: keeping this peer's dial");
            replaced.control.do_send(Control::Close);
        }
        self.lock_known_down().remove(peer);
        self.links_changed.notify_waiters();
        true
    }

    /// The limits of this peer's sockets, inbound and outbound.
    pub(crate) fn socket_limits(&self) -> crate::transport::SocketLimits {
        crate::transport::SocketLimits {
            max_frame: self.config.max_message_size,
            first_limit: self.config.max_hello_size,
            send_cap: self.config.max_send_buffer,
            partial: Some(self.budgets.fragments.clone()),
        }
    }

    /// Removes the link to `peer` if it is still the one with `serial`: the peer is then
    /// known down. Returns whether it was.
    pub(crate) fn remove_link(&self, peer: PeerId, serial: u64) -> bool {
        let removed = {
            let mut links = self.write_links();
            let current = links.get(&peer).is_some_and(|link| link.serial == serial);
            current && links.remove(&peer).is_some()
        };
        if removed {
            self.mark_down(peer);
        }
        removed
    }

    fn lock_known_down(&self) -> std::sync::MutexGuard<'_, KnownDown> {
        // Every update is one map operation: a panic elsewhere cannot leave it half-done.
        self.known_down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `peer` is down (its link was lost, or a dial to it failed): calls that do not wait for
    /// ready fail at once, also those waiting now.
    pub(crate) fn mark_down(&self, peer: PeerId) {
        self.lock_known_down().insert(peer);
        tracing::debug!(peer = %peer.label(), "peer known down");
        self.links_changed.notify_waiters();
    }

    /// `peer` is being dialled: calls to it wait for the outcome again.
    pub(crate) fn mark_dialling(&self, peer: PeerId) {
        self.lock_known_down().remove(peer);
    }

    /// The block list of a new link, shared with an earlier link's equal one.
    pub(crate) fn intern_blocks(
        &self,
        blocks: Vec<crate::RemoteBlock>,
    ) -> Arc<Vec<crate::RemoteBlock>> {
        // Each update is one push or swap: a panic elsewhere cannot leave it torn.
        let mut manifests = self
            .manifests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = manifests.iter().find(|known| ***known == blocks) {
            return known.clone();
        }
        let blocks = Arc::new(blocks);
        if manifests.len() == MANIFESTS {
            manifests.remove(0);
        }
        manifests.push(blocks.clone());
        blocks
    }

    /// Whether calls to `peer` fail at once (see [`Shared::mark_down`]).
    pub(crate) fn is_known_down(&self, peer: PeerId) -> bool {
        self.lock_known_down().contains(peer)
    }

    /// Waits until a link to `peer` exists, or fails with `NotConnected` at `deadline`, or at
    /// once while `peer` is known down unless `wait_for_ready`.
    pub(crate) async fn wait_for_link(
        &self,
        peer: PeerId,
        deadline: Instant,
        wait_for_ready: bool,
    ) -> Result<Arc<Link>, RemoteError> {
        // The common case: the link is up; no waiter is registered.
        if !self.is_stopping()
            && let Some(link) = self.link(peer).filter(|link| link.outbox.is_open())
        {
            return Ok(link);
        }
        loop {
            let changed = self.links_changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.is_stopping() {
                return Err(RemoteError::ShuttingDown {
                    peer: Some(self.id),
                    block: None,
                });
            }
            if let Some(link) = self.link(peer).filter(|link| link.outbox.is_open()) {
                return Ok(link);
            }
            if !wait_for_ready && self.is_known_down(peer) {
                return Err(RemoteError::NotConnected { peer, block: None });
            }
            match select(changed, self.sleep_until(deadline)).await {
                Either::Left(((), _)) => {}
                Either::Right(((), _)) => {
                    return Err(RemoteError::NotConnected { peer, block: None });
                }
            }
        }
    }

    /// Waits for one of the link's pending-call slots until `deadline`.
    async fn wait_for_slot<'a>(
        &self,
        link: &'a Link,
        target: PeerId,
        deadline: Instant,
    ) -> Result<Slot<'a>, RemoteError> {
        match select(
            Box::pin(link.outbound_slots.take()),
            self.sleep_until(deadline),
        )
        .await
        {
            Either::Left((slot, _)) => Ok(slot),
            Either::Right(((), _)) => Err(RemoteError::Timeout {
                peer: Some(target),
                block: None,
            }),
        }
    }

    async fn call_remote(
        self: Arc<Self>,
        target: PeerId,
        request: Request,
    ) -> Result<Bytes, RemoteError> {
        let wait_for_ready = request.wait_for_ready || self.config.wait_for_ready;
        let link = self
            .wait_for_link(target, request.deadline, wait_for_ready)
            .await?;
        let size = request.captures.len() + request.name.len() + 64;
        if size > link.remote_max {
            return Err(RemoteError::TooLarge {
                peer: Some(target),
                block: None,
                size: size as u64,
                limit: link.remote_max as u64,
            });
        }
        // At the pending limit a call waits for a slot until its deadline.
        let slot = match link.outbound_slots.try_take() {
            Some(slot) => slot,
            None => self.wait_for_slot(&link, target, request.deadline).await?,
        };
        let id = link.ids.fetch_add(1, Ordering::Relaxed);
        let name = request.name;
        let (reply, replied) = oneshot::channel();
        let mut guard = CancelOnDrop {
            outbox: &link.outbox,
            id,
            armed: true,
        };
        if let Some(inbox) = &request.stream {
            let outbox = Arc::downgrade(&link.outbox);
            inbox.on_ask(Box::new(move || {
                if let Some(outbox) = outbox.upgrade() {
                    outbox.credit(id);
                }
            }));
        }
        if !link.outbox.call(OutboundCall { id, request, reply }) {
            guard.armed = false;
            return Err(RemoteError::ConnectionLost {
                peer: target,
                block: None,
            });
        }
        let result = replied.await.unwrap_or(Err(RemoteError::ConnectionLost {
            peer: target,
            block: None,
        }));
        guard.armed = false;
        drop(slot);
        crate::manifest::warn_if_missing(target, name, &result, &link.blocks);
        result
    }
}

/// Logs a call this peer made that failed: at WARN, or at INFO for the refusals an
/// application expects to meet (its principal may not run the block, or has none).
fn log_failure(error: &RemoteError) {
    let refused = matches!(
        error,
        RemoteError::Forbidden { .. } | RemoteError::Unauthenticated { .. }
    );
    let block = error.block();
    let peer = error
        .peer()
        .map(|peer| tracing::field::display(peer.label()));
    if refused {
        tracing::info!(target: "distributed_scope::call", block, peer, %error, "call refused");
    } else {
        tracing::warn!(target: "distributed_scope::call", block, peer, %error, "call failed");
    }
}

/// Sends `Cancel` for a call whose caller stopped waiting before the reply came.
struct CancelOnDrop<'a> {
    outbox: &'a Outbox,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.outbox.cancel(self.id);
        }
    }
}

impl Runtime for Shared {
    fn local_id(&self) -> PeerId {
        self.id
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> LocalBoxFuture<'static, ()> {
        let left = deadline.saturating_duration_since(Instant::now());
        Box::pin(actix_rt::time::sleep(left))
    }

    fn call(
        self: Arc<Self>,
        target: PeerId,
        request: Request,
    ) -> LocalBoxFuture<'static, Result<Bytes, RemoteError>> {
        if self.is_stopping() {
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
        self.config.max_message_size
    }

    fn serialize_local(&self) -> bool {
        self.config.serialize_local
    }

    fn record(&self, outcome: Result<(), &RemoteError>) {
        if let Err(error) = outcome {
            self.counters.error(error.code());
            log_failure(error);
        }
    }

    fn data(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        // The pub-sub blocks find the hub here; applications cannot name its type.
        if type_id == TypeId::of::<super::pubsub::Hub>() {
            return Some(self.pubsub.clone());
        }
        self.data.get(type_id)
    }

    #[cfg(feature = "auth")]
    fn grant(
        &self,
        origin: &Principal,
        root: u64,
        narrowing: &crate::runtime::Narrowing,
        deadline: Instant,
    ) -> Option<Arc<str>> {
        let ttl = deadline.saturating_duration_since(Instant::now());
        self.guard.grant(origin, root, narrowing, ttl)
    }
}
