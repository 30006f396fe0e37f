//! Publish-subscribe between linked peers: [`PeerHandle::publish`] and
//! [`PeerHandle::subscribe`], carried by three blocks of this crate.
//!
//! A subscribing peer tells each linked peer which topics it wants (the `subscribe` and
//! `unsubscribe` blocks), again on every link that comes up later; a publishing peer
//! remembers, per linked remote, the topics it asked for, and calls the `deliver` block on
//! each remote subscribed to a topic it publishes on. Nothing is relayed: a peer hears only
//! the publications of the peers it is linked to directly.
//!
//! Every buffer is bounded: publications in flight per link
//! ([`Config::max_publications_in_flight`]), publications waiting for the peer's thread
//! ([`QUEUED_PUBLICATIONS`]), topics per remote ([`Config::max_topics_per_remote`]), topic
//! names ([`MAX_TOPIC_LEN`]) and each subscription's buffer
//! ([`DEFAULT_SUBSCRIPTION_CAPACITY`]). Over a bound a publication is dropped and counted,
//! never waited for.
//!
//! [`PeerHandle::publish`]: crate::PeerHandle::publish
//! [`PeerHandle::subscribe`]: crate::PeerHandle::subscribe
//! [`Config::max_publications_in_flight`]: crate::Config::max_publications_in_flight
//! [`Config::max_topics_per_remote`]: crate::Config::max_topics_per_remote

mod blocks;
mod subscription;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::{Notify, mpsc};

use crate::{PeerId, RemoteError};

use self::subscription::Queue;
pub use self::subscription::Subscription;
pub(crate) use self::worker::run as run_worker;

/// How many items a subscription buffers by default before it drops the oldest.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1024;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Publications (each to any number of links) waiting for the peer's thread to hand them to
/// their links; more are dropped and counted.
pub const QUEUED_PUBLICATIONS: usize = 1024;

/// The name a policy authorizes for `topic`: `topic:` then the topic, so that a glob such as
/// `topic:news.*` covers a family of topics (block names never start with `topic:`).
pub(crate) fn policy_name(topic: &str) -> String {
    format!("topic:{topic}")
}

/// Refuses a topic longer than [`MAX_TOPIC_LEN`] as `TooLarge`.
pub(crate) fn check_topic(topic: &str) -> Result<(), RemoteError> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(RemoteError::TooLarge {
            peer: None,
            block: Some(policy_name(&crate::error::truncated(topic.to_owned(), 32))),
            size: topic.len() as u64,
            limit: MAX_TOPIC_LEN as u64,
        });
    }
    Ok(())
}

/// The pub-sub counters of a peer, from [`PeerHandle::pubsub_metrics`](crate::PeerHandle::pubsub_metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PubSubMetrics {
    /// Publications sent to linked subscribers, one per subscriber.
    pub sent: u64,
    /// Publications not sent to a subscriber because its link had the most publications in
    /// flight already, or the peer's queue was full.
    pub dropped: u64,
    /// Publications sent that failed or that their subscriber refused.
    pub failed: u64,
    /// Publications received from linked peers and accepted.
    pub received: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    received: AtomicU64,
}

/// The bounds of a peer's pub-sub, from its [`Config`](crate::Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) in_flight: usize,
    pub(crate) topics_per_remote: usize,
}

/// A publication on its way to the peer's thread, which sends it to each target.
pub(crate) struct Job {
    topic: Arc<str>,
    payload: bytes::Bytes,
    targets: Vec<(PeerId, Permit)>,
}

/// One publication in flight on one link: released when the delivery ends.
pub(crate) struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The local subscriptions of one topic, and what each linked peer answered when asked to
/// send it.
#[derive(Default)]
struct Topic {
    queues: Vec<Weak<Queue>>,
    outcomes: HashMap<PeerId, Result<(), RemoteError>>,
}

/// A linked remote that subscribed to topics here.
#[derive(Default)]
struct Remote {
    topics: HashSet<Arc<str>>,
    in_flight: Arc<AtomicUsize>,
}

/// A peer's pub-sub state, shared by its handles, the blocks it runs and its worker.
pub(crate) struct Hub {
    id: PeerId,
    limits: Limits,
    #[cfg(feature = "auth")]
    guard: super::guard::Guard,
    local: Mutex<HashMap<Arc<str>, Topic>>,
    remotes: Mutex<HashMap<PeerId, Remote>>,
    jobs: mpsc::Sender<Job>,
    /// Taken by the worker while it runs; given back when it stops (an actor restart).
    receiver: Mutex<Option<mpsc::Receiver<Job>>>,
    /// The local topics changed: the worker tells the linked peers.
    wake: Notify,
    /// An outcome of a subscription on a peer was recorded.
    outcomes_changed: Notify,
    counters: Counters,
    closed: AtomicBool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("id", &self.id)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Locks a table whose updates are single map operations, which a panic elsewhere cannot
/// leave half-done.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub(crate) fn new(
        id: PeerId,
        limits: Limits,
        #[cfg(feature = "auth")] guard: super::guard::Guard,
    ) -> Self {
        let (jobs, receiver) = mpsc::channel(QUEUED_PUBLICATIONS);
        Self {
            id,
            limits,
            #[cfg(feature = "auth")]
            guard,
            local: Mutex::default(),
            remotes: Mutex::default(),
            jobs,
            receiver: Mutex::new(Some(receiver)),
            wake: Notify::new(),
            outcomes_changed: Notify::new(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn metrics(&self) -> PubSubMetrics {
        PubSubMetrics {
            sent: self.counters.sent.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            received: self.counters.received.load(Ordering::Relaxed),
        }
    }

    /// Ends every subscription (the peer stopped): their streams end once drained.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let local = std::mem::take(&mut *lock(&self.local));
        for queue in local.values().flat_map(|topic| &topic.queues) {
            if let Some(queue) = queue.upgrade() {
                queue.close();
            }
        }
        self.outcomes_changed.notify_waiters();
    }

    /// Registers a local subscription to `topic`, and has the worker tell the linked peers.
    pub(crate) fn subscribe(self: &Arc<Self>, topic: &str, capacity: usize) -> Arc<Queue> {
        let queue = Arc::new(Queue::new(topic.into(), capacity.max(1)));
        if let Err(error) = check_topic(topic) {
            tracing::warn!(target: "distributed_scope::pubsub", %error, "subscription refused");
            queue.close();
            queue.refuse_locally(self.id, error);
            return queue;
        }
        if self.closed.load(Ordering::Acquire) {
            queue.close();
            return queue;
        }
        let mut local = lock(&self.local);
        let entry = local.entry(queue.topic().clone()).or_default();
        entry.queues.retain(|queue| queue.strong_count() > 0);
        entry.queues.push(Arc::downgrade(&queue));
        drop(local);
        self.wake.notify_one();
        queue
    }

    /// A local subscription ended: its topic goes when it has no subscription left.
    fn unsubscribe(&self, ended: &Arc<Queue>) {
        let topic = ended.topic().clone();
        let topic = &*topic;
        let ended = Arc::downgrade(ended);
        let mut local = lock(&self.local);
        if let Some(entry) = local.get_mut(topic) {
            entry
                .queues
                .retain(|queue| queue.strong_count() > 0 && !queue.ptr_eq(&ended));
            if entry.queues.is_empty() {
                local.remove(topic);
                drop(local);
                self.wake.notify_one();
            }
        }
    }

    /// The topics this peer has local subscriptions to.
    fn local_topics(&self) -> HashSet<Arc<str>> {
        lock(&self.local).keys().cloned().collect()
    }

    /// Hands a publication to the local subscriptions of `topic`; one from another peer
    /// (`received`) is counted first, so that a reader who sees it also sees the count.
    fn deliver_local(&self, topic: &str, payload: &bytes::Bytes, received: bool) {
        let queues: Vec<Arc<Queue>> = lock(&self.local)
            .get(topic)
            .map(|entry| entry.queues.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        if received && !queues.is_empty() {
            self.counters.received.fetch_add(1, Ordering::Relaxed);
        }
        for queue in &queues {
            queue.push(payload.clone());
        }
    }

    /// Records what `peer` answered to a subscription to `topic`; `None` forgets it.
    fn record_outcome(&self, topic: &str, peer: PeerId, outcome: Option<Result<(), RemoteError>>) {
        let mut local = lock(&self.local);
        let Some(entry) = local.get_mut(topic) else {
            return;
        };
        match outcome {
            Some(outcome) => {
                entry.outcomes.insert(peer, outcome);
            }
            None => {
                entry.outcomes.remove(&peer);
            }
        }
        drop(local);
        self.outcomes_changed.notify_waiters();
    }

    /// Forgets every outcome of `peer` (its link went, or is new).
    fn forget_outcomes(&self, peer: PeerId) {
        for entry in lock(&self.local).values_mut() {
            entry.outcomes.remove(&peer);
        }
        self.outcomes_changed.notify_waiters();
    }

    fn outcome(&self, topic: &str, peer: PeerId) -> Option<Result<(), RemoteError>> {
        lock(&self.local)
            .get(topic)
            .and_then(|entry| entry.outcomes.get(&peer).cloned())
    }

    fn refusals(&self, topic: &str) -> Vec<(PeerId, RemoteError)> {
        let mut refusals: Vec<(PeerId, RemoteError)> = lock(&self.local)
            .get(topic)
            .map(|entry| {
                entry
                    .outcomes
                    .iter()
                    .filter_map(|(peer, outcome)| {
                        outcome.as_ref().err().map(|error| (*peer, error.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        refusals.sort_by_key(|(peer, _)| *peer);
        refusals
    }

    /// Whether `principal` (the one of the link from `remote`) may subscribe or publish to
    /// `topic`, by the peer's policy and peer rules over the name `topic:<topic>`.
    #[cfg(feature = "auth")]
    fn authorize(
        &self,
        principal: Option<&crate::auth::Principal>,
        remote: PeerId,
        topic: &str,
    ) -> Result<(), RemoteError> {
        self.guard
            .authorize_topic(principal, remote, &policy_name(topic))
    }

    /// The topics `remote` asks this peer to send it: with `replace`, these and no others.
    /// Answers one outcome per topic, in order; a call with more topics than a remote may
    /// hold is refused whole with `Overloaded`, so that the answer stays small.
    fn remote_subscribe(
        &self,
        remote: PeerId,
        topics: Vec<String>,
        replace: bool,
        authorize: impl Fn(&str) -> Result<(), RemoteError>,
    ) -> Result<Vec<Option<RemoteError>>, RemoteError> {
        if topics.len() > self.limits.topics_per_remote {
            tracing::warn!(
                target: "distributed_scope::pubsub",
                peer = %remote.label(),
                topics = topics.len(),
                limit = self.limits.topics_per_remote,
                "subscription refused: more topics than a remote may hold"
            );
            return Err(RemoteError::Overloaded {
                peer: Some(self.id),
                block: None,
            });
        }
        let mut remotes = lock(&self.remotes);
        let entry = remotes.entry(remote).or_default();
        if replace {
            entry.topics.clear();
        }
        let outcomes = topics
            .into_iter()
            .map(|topic| {
                let outcome = check_topic(&topic).and_then(|()| authorize(&topic));
                if let Err(error) = outcome {
                    tracing::info!(target: "distributed_scope::pubsub", peer = %remote.label(), topic, %error, "subscription refused");
                    return Some(error.produced_at(Some(self.id)));
                }
                if entry.topics.contains(topic.as_str()) {
                    return None;
                }
                if entry.topics.len() >= self.limits.topics_per_remote {
                    tracing::warn!(
                        target: "distributed_scope::pubsub",
                        peer = %remote.label(),
                        topic,
                        limit = self.limits.topics_per_remote,
                        "subscription refused: the remote has the most topics allowed"
                    );
                    return Some(RemoteError::Overloaded {
                        peer: Some(self.id),
                        block: Some(policy_name(&topic)),
                    });
                }
                entry.topics.insert(topic.into());
                None
            })
            .collect::<Vec<_>>();
        Ok(outcomes)
    }

    fn remote_unsubscribe(&self, remote: PeerId, topics: &[String]) {
        let mut remotes = lock(&self.remotes);
        if let Some(entry) = remotes.get_mut(&remote) {
            for topic in topics {
                entry.topics.remove(topic.as_str());
            }
        }
    }

    /// Forgets the subscriptions of remotes no longer linked.
    fn forget_remotes(&self, linked: &HashSet<PeerId>) {
        lock(&self.remotes).retain(|peer, _| linked.contains(peer));
    }

    /// Publishes `payload` (a value encoded once) on `topic`: to the local subscriptions,
    /// and to each remote in `linked` subscribed to it, unless its link has the most
    /// publications in flight already. Returns how many remotes it was handed to.
    pub(crate) fn publish(
        &self,
        topic: &str,
        payload: bytes::Bytes,
        is_linked: impl Fn(PeerId) -> bool,
    ) -> usize {
        self.deliver_local(topic, &payload, false);
        let mut targets = Vec::new();
        {
            let remotes = lock(&self.remotes);
            for (peer, remote) in remotes.iter() {
                if !remote.topics.contains(topic) || !is_linked(*peer) {
                    continue;
                }
                let taken = remote.in_flight.fetch_update(
                    Ordering::AcqRel,
                    Ordering::Acquire,
                    |in_flight| (in_flight < self.limits.in_flight).then_some(in_flight + 1),
                );
                match taken {
                    Ok(_) => targets.push((*peer, Permit(remote.in_flight.clone()))),
                    Err(_full) => {
                        self.dropped(*peer, topic, "the link has the most publications in flight")
                    }
                }
            }
        }
        if targets.is_empty() {
            return 0;
        }
        let count = targets.len();
        let job = Job {
            topic: topic.into(),
            payload,
            targets,
        };
        match self.jobs.try_send(job) {
            Ok(()) => count,
            Err(refused) => {
                let job = match refused {
                    mpsc::error::TrySendError::Full(job)
                    | mpsc::error::TrySendError::Closed(job) => job,
                };
                for (peer, _permit) in &job.targets {
                    self.dropped(*peer, topic, "the peer's publication queue is full");
                }
                0
            }
        }
    }

    fn dropped(&self, peer: PeerId, topic: &str, why: &'static str) {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // The first drop, then every power of two: a steady overload does not flood the log.
        if dropped.is_power_of_two() {
            tracing::warn!(
                target: "distributed_scope::pubsub",
                peer = %peer.label(),
                topic,
                dropped,
                "publication dropped: {why}"
            );
        }
    }

    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<Job>> {
        lock(&self.receiver).take()
    }

    pub(crate) fn give_back(&self, receiver: mpsc::Receiver<Job>) {
        *lock(&self.receiver) = Some(receiver);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(in_flight: usize, topics_per_remote: usize) -> Hub {
        Hub::new(
            PeerId::from_name("publisher"),
            Limits {
                in_flight,
                topics_per_remote,
            },
            #[cfg(feature = "auth")]
            super::super::guard::Guard::default(),
        )
    }

    fn allow(_topic: &str) -> Result<(), RemoteError> {
        Ok(())
    }

    #[test]
    fn a_link_at_its_in_flight_bound_drops_and_counts_the_publication() {
        let hub = hub(2, 8);
        let subscriber = PeerId::from_name("subscriber");
        let outcomes = hub.remote_subscribe(subscriber, vec!["t".to_owned()], false, allow);
        assert_eq!(outcomes, Ok(vec![None]));
        let payload = bytes::Bytes::from_static(b"x");
        // Nothing answers (no worker runs): the permits stay taken.
        let sent: Vec<usize> = (0..3)
            .map(|_| hub.publish("t", payload.clone(), |_| true))
            .collect();
        assert_eq!(sent, vec![1, 1, 0]);
        assert_eq!(hub.metrics().dropped, 1);
        // An unlinked subscriber, or another topic, is not sent anything.
        assert_eq!(hub.publish("t", payload.clone(), |_| false), 0);
        assert_eq!(hub.publish("other", payload, |_| true), 0);
        assert_eq!(hub.metrics().dropped, 1);
    }

    #[test]
    fn answered_publications_free_their_slot() {
        let hub = hub(1, 8);
        let subscriber = PeerId::from_name("subscriber");
        hub.remote_subscribe(subscriber, vec!["t".to_owned()], false, allow)
            .expect("subscribed");
        let mut receiver = hub.take_receiver().expect("no worker holds it");
        assert_eq!(hub.publish("t", bytes::Bytes::new(), |_| true), 1);
        assert_eq!(hub.publish("t", bytes::Bytes::new(), |_| true), 0);
        // The delivery ends: its permit goes with it.
        drop(receiver.try_recv().expect("one job queued"));
        assert_eq!(hub.publish("t", bytes::Bytes::new(), |_| true), 1);
    }

    #[test]
    fn the_queue_to_the_peer_thread_is_bounded() {
        let hub = hub(usize::MAX, 8);
        let subscriber = PeerId::from_name("subscriber");
        hub.remote_subscribe(subscriber, vec!["t".to_owned()], false, allow)
            .expect("subscribed");
        for _ in 0..QUEUED_PUBLICATIONS {
            assert_eq!(hub.publish("t", bytes::Bytes::new(), |_| true), 1);
        }
        assert_eq!(hub.publish("t", bytes::Bytes::new(), |_| true), 0);
        assert_eq!(hub.metrics().dropped, 1);
    }

    #[test]
    fn a_remote_holds_at_most_its_topic_bound_and_long_names_are_refused() {
        let hub = hub(8, 2);
        let remote = PeerId::from_name("subscriber");
        let topics = ["a", "b"].map(str::to_owned).to_vec();
        assert_eq!(
            hub.remote_subscribe(remote, topics, false, allow),
            Ok(vec![None, None])
        );
        let topics = ["a", "c"].map(str::to_owned).to_vec();
        let outcomes = hub.remote_subscribe(remote, topics, false, allow).unwrap();
        assert_eq!(outcomes[0], None);
        assert!(matches!(outcomes[1], Some(RemoteError::Overloaded { .. })));
        // More topics in one call than a remote may hold: refused whole, a small answer.
        let many = vec!["t".to_owned(); 3];
        let refused = hub.remote_subscribe(remote, many, false, allow);
        assert!(matches!(refused, Err(RemoteError::Overloaded { .. })));
        let long = "x".repeat(MAX_TOPIC_LEN + 1);
        let outcomes = hub
            .remote_subscribe(remote, vec![long], false, allow)
            .unwrap();
        assert!(matches!(outcomes[0], Some(RemoteError::TooLarge { .. })));
        // A new link replaces the list; a refused topic is not kept.
        let forbid = |topic: &str| -> Result<(), RemoteError> {
            match topic {
                "secret" => Err(RemoteError::Forbidden {
                    block: policy_name(topic),
                    subject: "guest".to_owned(),
                    peer: None,
                }),
                _ => Ok(()),
            }
        };
        let topics = ["secret", "c"].map(str::to_owned).to_vec();
        let outcomes = hub.remote_subscribe(remote, topics, true, forbid).unwrap();
        assert!(matches!(outcomes[0], Some(RemoteError::Forbidden { .. })));
        assert_eq!(outcomes[1], None);
        assert_eq!(hub.publish("c", bytes::Bytes::new(), |_| true), 1);
        assert_eq!(hub.publish("a", bytes::Bytes::new(), |_| true), 0);
        assert_eq!(hub.publish("secret", bytes::Bytes::new(), |_| true), 0);
        // Its link gone, the remote is forgotten.
        hub.forget_remotes(&HashSet::new());
        assert_eq!(hub.publish("c", bytes::Bytes::new(), |_| true), 0);
    }

    #[test]
    fn a_full_subscription_drops_its_oldest_publication() {
        let hub = Arc::new(hub(8, 8));
        let queue = hub.subscribe("t", 2);
        for byte in [1_u8, 2, 3] {
            hub.publish("t", bytes::Bytes::from(vec![byte]), |_| true);
        }
        let kept: Vec<bytes::Bytes> = (0..2).filter_map(|_| queue.pop()).collect();
        assert_eq!(kept, vec![vec![2_u8], vec![3_u8]]);
        assert_eq!(queue.missed(), 1);
    }
}
