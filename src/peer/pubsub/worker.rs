//! The task on the peer actor's thread that makes the pub-sub calls: it hands publications
//! to their links, and keeps every linked peer told of this peer's topics.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::blocks::{Deliver, Subscribe, Unsubscribe};
use super::{Hub, Job};
use crate::block::Block;
use crate::peer::shared::Shared;
use crate::scope::Scope;
use crate::{PeerId, RemoteCall, RemoteError};

/// The deadline of a delivery: its link's in-flight slot is held at most this long.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// The deadline of a subscribe or unsubscribe call.
const SUBSCRIBE_DEADLINE: Duration = Duration::from_secs(10);

/// How long after a subscribe call failed for a passing reason (not a refusal) it is tried
/// again, if the link is still up.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// What this peer told one linked peer.
struct Told {
    /// The link it was told on: a new link to the same peer is told everything again.
    serial: u64,
    topics: HashSet<Arc<str>>,
}

type Announced = Rc<RefCell<HashMap<PeerId, Told>>>;

/// Gives the job queue back to the hub when the worker stops (the actor stopped; a
/// restarted actor runs a new worker on it).
struct Lease {
    hub: Arc<Hub>,
    receiver: Option<mpsc::Receiver<Job>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(receiver) = self.receiver.take() {
            self.hub.give_back(receiver);
        }
    }
}

/// Runs until the peer actor that spawned it stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let hub = shared.pubsub.clone();
    let Some(receiver) = hub.take_receiver() else {
        return;
    };
    let mut lease = Lease {
        hub: hub.clone(),
        receiver: Some(receiver),
    };
    let announced: Announced = Rc::default();
    loop {
        let links_changed = shared.links_changed();
        let mut links_changed = std::pin::pin!(links_changed);
        links_changed.as_mut().enable();
        sync(&shared, &hub, &announced);
        let Some(receiver) = lease.receiver.as_mut() else {
            return;
        };
        tokio::select! {
            job = receiver.recv() => match job {
                Some(job) => send(&shared, &hub, job),
                None => return,
            },
            () = links_changed => {}
            () = hub.wake.notified() => {}
        }
    }
}

/// A scope of this peer with no caller but itself, to make calls in.
fn scope(shared: &Arc<Shared>) -> Scope {
    Scope::new(
        shared.clone(),
        shared.id,
        #[cfg(feature = "auth")]
        None,
        None,
    )
}

/// Hands one publication to each of its links: one call per target, started in the order of
/// the publications so that a link carries them in that order.
fn send(shared: &Arc<Shared>, hub: &Arc<Hub>, job: Job) {
    let Job {
        topic,
        payload,
        targets,
    } = job;
    for (peer, permit) in targets {
        let call = RemoteCall::new(
            peer,
            Deliver {
                topic: topic.to_string(),
                payload: crate::Bytes::from(payload.clone()),
            },
        )
        .timeout(DELIVERY_DEADLINE);
        hub.counters.sent.fetch_add(1, Ordering::Relaxed);
        let hub = hub.clone();
        let topic = topic.clone();
        actix_rt::spawn(scope(shared).enter(async move {
            let outcome = call.await;
            drop(permit);
            if let Err(error) = outcome {
                hub.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    target: "distributed_scope::pubsub",
                    peer = %peer.label(),
                    topic = &*topic,
                    %error,
                    "publication not delivered"
                );
            }
        }));
    }
}

/// Tells each linked peer the topics it has not been told of yet (all of them on a new
/// link), and withdraws those no longer subscribed here; forgets the peers no longer linked.
fn sync(shared: &Arc<Shared>, hub: &Arc<Hub>, announced: &Announced) {
    let links: HashMap<PeerId, u64> = shared
        .links()
        .into_iter()
        .filter(|(_, link)| link.outbox.is_open())
        .map(|(peer, link)| (peer, link.serial))
        .collect();
    hub.forget_remotes(&links.keys().copied().collect());
    let wanted = hub.local_topics();
    let mut told = announced.borrow_mut();
    told.retain(|peer, told| {
        let current = links.get(peer) == Some(&told.serial);
        if !current {
            hub.forget_outcomes(*peer);
        }
        current
    });
    for (&peer, &serial) in &links {
        let (withdrawn, asked, replace) = match told.get(&peer) {
            Some(told) => (
                told.topics.difference(&wanted).cloned().collect::<Vec<_>>(),
                wanted.difference(&told.topics).cloned().collect::<Vec<_>>(),
                false,
            ),
            None if wanted.is_empty() => continue,
            None => (Vec::new(), wanted.iter().cloned().collect(), true),
        };
        told.insert(
            peer,
            Told {
                serial,
                topics: wanted.clone(),
            },
        );
        if !withdrawn.is_empty() {
            let topics = withdrawn.iter().map(|topic| topic.to_string()).collect();
            let call = RemoteCall::new(peer, Unsubscribe { topics }).timeout(SUBSCRIBE_DEADLINE);
            actix_rt::spawn(scope(shared).enter(async move {
                if let Err(error) = call.await {
                    tracing::debug!(target: "distributed_scope::pubsub", peer = %peer.label(), %error, "unsubscribe failed");
                }
            }));
        }
        if !asked.is_empty() {
            subscribe(shared, hub, announced, peer, serial, asked, replace);
        }
    }
}

/// Asks `peer` for `topics`, and records its answer for each.
fn subscribe(
    shared: &Arc<Shared>,
    hub: &Arc<Hub>,
    announced: &Announced,
    peer: PeerId,
    serial: u64,
    topics: Vec<Arc<str>>,
    replace: bool,
) {
    let call: RemoteCall<<Subscribe as Block>::Output> = RemoteCall::new(
        peer,
        Subscribe {
            topics: topics.iter().map(|topic| topic.to_string()).collect(),
            replace,
        },
    )
    .timeout(SUBSCRIBE_DEADLINE);
    let hub = hub.clone();
    let announced = announced.clone();
    actix_rt::spawn(scope(shared).enter(async move {
        match call.await {
            Ok(outcomes) => {
                for (at, topic) in topics.iter().enumerate() {
                    let outcome = match outcomes.get(at) {
                        Some(None) => Ok(()),
                        Some(Some(refusal)) => Err(refusal.clone()),
                        None => Err(RemoteError::BadFrame {
                            peer: Some(peer),
                            reason: "fewer subscription outcomes than topics".to_owned(),
                        }),
                    };
                    if let Err(error) = &outcome {
                        tracing::info!(target: "distributed_scope::pubsub", peer = %peer.label(), topic = &**topic, %error, "subscription refused");
                    }
                    hub.record_outcome(topic, peer, Some(outcome));
                }
            }
            Err(error) => {
                // A refusal of the whole call by the remote's body (too many topics) is
                // shown as itself, not as the block's failure.
                let error = match error {
                    RemoteError::Failed { .. } => error.root_cause().clone(),
                    other => other,
                };
                tracing::warn!(target: "distributed_scope::pubsub", peer = %peer.label(), %error, "subscribe failed");
                for topic in &topics {
                    hub.record_outcome(topic, peer, Some(Err(error.clone())));
                }
                if error.is_retryable() {
                    // Told nothing after all: the next sync on this link tells it again.
                    {
                        let mut told = announced.borrow_mut();
                        if told.get(&peer).is_some_and(|told| told.serial == serial) {
                            told.remove(&peer);
                        }
                    }
                    actix_rt::time::sleep(RETRY_DELAY).await;
                    hub.wake.notify_one();
                }
            }
        }
    }));
}
