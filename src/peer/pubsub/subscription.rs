//! [`Subscription`]: the stream of one topic's publications, and its bounded buffer.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::Stream;
use serde::de::DeserializeOwned;

use super::{Hub, lock};
use crate::{PeerId, RemoteError};

/// The bounded buffer of one subscription: the encoded publications not read yet.
pub(crate) struct Queue {
    topic: Arc<str>,
    capacity: usize,
    state: Mutex<State>,
    missed: AtomicU64,
    undecodable: AtomicU64,
}

struct State {
    items: VecDeque<bytes::Bytes>,
    waker: Option<Waker>,
    closed: bool,
    /// A refusal made by this peer itself (a topic over the length limit).
    local_refusal: Option<(PeerId, RemoteError)>,
}

impl Queue {
    pub(super) fn new(topic: Arc<str>, capacity: usize) -> Self {
        Self {
            topic,
            capacity,
            state: Mutex::new(State {
                items: VecDeque::new(),
                waker: None,
                closed: false,
                local_refusal: None,
            }),
            missed: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
        }
    }

    pub(super) fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Buffers a publication; when the buffer is full, the oldest one is dropped for it.
    pub(super) fn push(&self, item: bytes::Bytes) {
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        if state.items.len() >= self.capacity {
            state.items.pop_front();
            let missed = self.missed.fetch_add(1, Ordering::Relaxed) + 1;
            // The first miss, then every power of two: a slow reader does not flood the log.
            if missed.is_power_of_two() {
                tracing::warn!(
                    target: "distributed_scope::pubsub",
                    topic = &*self.topic,
                    capacity = self.capacity,
                    missed,
                    "slow subscriber: dropped its oldest publication"
                );
            }
        }
        state.items.push_back(item);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    pub(super) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    pub(super) fn refuse_locally(&self, peer: PeerId, error: RemoteError) {
        lock(&self.state).local_refusal = Some((peer, error));
    }

    fn len(&self) -> usize {
        lock(&self.state).items.len()
    }

    #[cfg(test)]
    pub(super) fn pop(&self) -> Option<bytes::Bytes> {
        lock(&self.state).items.pop_front()
    }

    #[cfg(test)]
    pub(super) fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

/// The publications on one topic, from every linked peer and from this peer itself: a
/// [`Stream`] of `T`, made by [`PeerHandle::subscribe`](crate::PeerHandle::subscribe).
///
/// # Bounds and losses
///
/// A subscription buffers at most [`capacity`](Subscription::capacity) publications not read
/// yet (1 024 by default, [`DEFAULT_SUBSCRIPTION_CAPACITY`](crate::DEFAULT_SUBSCRIPTION_CAPACITY)).
/// A reader that falls behind never slows the publishers down: when a publication arrives
/// and the buffer is full, the **oldest** buffered publication is dropped for it, counted in
/// [`missed`](Subscription::missed) and logged (a `tracing` WARN on the first loss and then
/// at every power of two). A publication that does not decode as `T` is skipped and counted
/// in [`undecodable`](Subscription::undecodable).
///
/// # Where it is heard
///
/// The subscription is announced to every linked peer, and to every peer that links later,
/// for as long as it lives; dropping it withdraws it. Delivery is at most once and best
/// effort: a publication made before a peer learnt of the subscription, or while a link is
/// down, is not heard. [`wait_for`](Subscription::wait_for) waits until a given peer has
/// accepted (or refused) the subscription. A peer whose policy refuses the topic answers
/// `Forbidden` (see [`refused`](Subscription::refused)); the others still deliver.
///
/// The stream ends when the peer stops.
pub struct Subscription<T> {
    hub: Arc<Hub>,
    queue: Arc<Queue>,
    _values: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.queue.topic)
            .field("capacity", &self.queue.capacity)
            .field("missed", &self.missed())
            .finish_non_exhaustive()
    }
}

impl<T> Subscription<T> {
    pub(crate) fn new(hub: Arc<Hub>, queue: Arc<Queue>) -> Self {
        Self {
            hub,
            queue,
            _values: PhantomData,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.queue.topic
    }

    /// The most publications buffered before the oldest is dropped.
    pub fn capacity(&self) -> usize {
        self.queue.capacity
    }

    /// The publications buffered and not read yet (at most [`capacity`](Self::capacity)).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no publication is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many publications were dropped so far because the buffer was full (the oldest
    /// goes first).
    pub fn missed(&self) -> u64 {
        self.queue.missed.load(Ordering::Relaxed)
    }

    /// How many publications were skipped so far because they did not decode as `T`.
    pub fn undecodable(&self) -> u64 {
        self.queue.undecodable.load(Ordering::Relaxed)
    }

    /// The peers that refused this subscription on their current link, with why: a policy
    /// that does not allow the topic (`Forbidden`, or `Unauthenticated` on a link without a
    /// principal), a remote with the most topics it keeps for one peer (`Overloaded`), or a
    /// call that failed. A topic longer than [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN) is
    /// refused by this peer itself, under its own id, and the subscription ends at once.
    pub fn refused(&self) -> Vec<(PeerId, RemoteError)> {
        let mut refused = self.hub.refusals(&self.queue.topic);
        if let Some(local) = lock(&self.queue.state).local_refusal.clone() {
            refused.push(local);
        }
        refused
    }

    /// Waits until `peer` has answered this subscription on its current link, for at most
    /// `timeout`: from then on, `peer`'s publications on the topic reach this subscription.
    ///
    /// # Errors
    ///
    /// What `peer` refused the subscription with (see [`refused`](Self::refused)),
    /// [`RemoteError::NotConnected`] if it did not answer in time (it is not linked, say),
    /// or [`RemoteError::ShuttingDown`] if this peer stops.
    pub async fn wait_for(&self, peer: PeerId, timeout: Duration) -> Result<(), RemoteError> {
        let waiting = async {
            loop {
                let changed = self.hub.outcomes_changed.notified();
                let mut changed = std::pin::pin!(changed);
                changed.as_mut().enable();
                if let Some(outcome) = self.hub.outcome(&self.queue.topic, peer) {
                    return outcome;
                }
                if let Some((_, error)) = lock(&self.queue.state).local_refusal.clone() {
                    return Err(error);
                }
                if lock(&self.queue.state).closed {
                    return Err(RemoteError::ShuttingDown {
                        peer: Some(self.hub.id),
                        block: None,
                    });
                }
                changed.await;
            }
        };
        match actix_rt::time::timeout(timeout, waiting).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(RemoteError::NotConnected { peer, block: None }),
        }
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            let item = {
                let mut state = lock(&self.queue.state);
                match state.items.pop_front() {
                    Some(item) => item,
                    None if state.closed => return Poll::Ready(None),
                    None => {
                        state.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                }
            };
            match crate::wire::decode_shared::<T>(&item, item.len()) {
                Ok(value) => return Poll::Ready(Some(value)),
                Err(error) => {
                    let skipped = self.queue.undecodable.fetch_add(1, Ordering::Relaxed) + 1;
                    if skipped.is_power_of_two() {
                        tracing::warn!(
                            target: "distributed_scope::pubsub",
                            topic = &*self.queue.topic,
                            skipped,
                            %error,
                            "skipped a publication that does not decode as the subscription's type"
                        );
                    }
                }
            }
        }
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.queue);
    }
}
