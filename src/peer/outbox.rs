//! Where calls made on any thread reach the thread of the link they go over: a queue the
//! link's adapter drains in batches, without an actor mailbox round per call.
//!
//! A caller pushes its call (id, request, reply slot) and wakes the link only if the queue
//! was empty; the link takes everything queued at once, hands it to its engine and writes
//! the frames in one burst. Cancels travel the same way, after the calls queued before
//! them. The queue is bounded by the link's pending-call slots: a caller holds one before it
//! pushes.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::task::AtomicWaker;

use crate::link::Reply;
use crate::runtime::Request;

/// A call handed to a link.
pub(crate) struct OutboundCall {
    pub(crate) id: u64,
    pub(crate) request: Request,
    pub(crate) reply: Reply,
}

/// The queue of one link.
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    /// The link, waiting for work.
    waker: AtomicWaker,
    /// Set (under the queue's lock) once the link takes no more calls; read without it.
    closed: AtomicBool,
}

#[derive(Default)]
struct Queue {
    calls: Vec<OutboundCall>,
    cancels: Vec<u64>,
    credits: Vec<u64>,
    closed: bool,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.cancels.is_empty() && self.credits.is_empty()
    }
}

/// What a link takes from its outbox at once: calls first, then cancels, then the stream
/// calls whose consumers took items (at most one entry per stream per half window).
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) calls: Vec<OutboundCall>,
    pub(crate) cancels: Vec<u64>,
    pub(crate) credits: Vec<u64>,
}

impl Outbox {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(Queue::default()),
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every update is a push, a swap or a flag: a panic elsewhere cannot leave it torn.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `call`; false (and the call dropped) if the link is over.
    #[must_use = "a call not queued is dropped"]
    pub(crate) fn call(&self, call: OutboundCall) -> bool {
        let was_empty = {
            let mut queue = self.lock();
            if queue.closed {
                return false;
            }
            let was_empty = queue.is_empty();
            queue.calls.push(call);
            was_empty
        };
        if was_empty {
            self.waker.wake();
        }
        true
    }

    /// Queues the cancel of call `id` (nothing if the link is over: its calls have failed).
    pub(crate) fn cancel(&self, id: u64) {
        self.push(|queue| &mut queue.cancels, id);
    }

    /// Queues more credit for stream call `id`, whose consumer took items.
    pub(crate) fn credit(&self, id: u64) {
        self.push(|queue| &mut queue.credits, id);
    }

    fn push(&self, list: impl FnOnce(&mut Queue) -> &mut Vec<u64>, id: u64) {
        let was_empty = {
            let mut queue = self.lock();
            if queue.closed {
                return;
            }
            let was_empty = queue.is_empty();
            list(&mut queue).push(id);
            was_empty
        };
        if was_empty {
            self.waker.wake();
        }
    }

    /// Whether the link still takes calls.
    pub(crate) fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Takes everything queued into `batch` (which should be empty: its buffers are reused).
    pub(crate) fn take(&self, batch: &mut Batch) {
        let mut queue = self.lock();
        std::mem::swap(&mut queue.calls, &mut batch.calls);
        std::mem::swap(&mut queue.cancels, &mut batch.cancels);
        std::mem::swap(&mut queue.credits, &mut batch.credits);
    }

    /// The link is over: no more calls are taken, and those still queued are dropped (their
    /// callers see the reply slot closed, which is `ConnectionLost`).
    pub(crate) fn close(&self) {
        let dropped = {
            let mut queue = self.lock();
            queue.closed = true;
            self.closed.store(true, Ordering::Release);
            queue.cancels.clear();
            queue.credits.clear();
            std::mem::take(&mut queue.calls)
        };
        drop(dropped);
    }

    /// The stream that wakes the link when work is queued; closes the outbox when dropped.
    pub(crate) fn ready(self: &Arc<Self>) -> Ready {
        Ready(self.clone())
    }
}

/// The pending-call slots of one link (`max_pending_outbound`): a caller takes one before it
/// queues a call and gives it back when the call is over. Taking a free slot is one atomic
/// operation; at the limit, callers wait to be told a slot was freed.
pub(crate) struct Slots {
    max: usize,
    taken: AtomicUsize,
    waiting: AtomicUsize,
    freed: tokio::sync::Notify,
}

impl Slots {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            taken: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// A free slot, if there is one now.
    pub(crate) fn try_take(&self) -> Option<Slot<'_>> {
        if self.taken.fetch_add(1, Ordering::SeqCst) < self.max {
            return Some(Slot(self));
        }
        self.taken.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// A slot, when one is free (the caller bounds the wait).
    pub(crate) async fn take(&self) -> Slot<'_> {
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let slot = self.try_take();
            if slot.is_none() {
                freed.await;
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if let Some(slot) = slot {
                return slot;
            }
        }
    }

    /// Calls holding a slot now.
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::SeqCst)
    }
}

/// One taken slot, given back when dropped.
pub(crate) struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.freed.notify_one();
        }
    }
}

/// Yields once whenever work is queued (several pushes may make one item): the link then
/// [`Outbox::take`]s it.
pub(crate) struct Ready(Arc<Outbox>);

impl Stream for Ready {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.0.waker.register(cx.waker());
        let queue = self.0.lock();
        if queue.closed {
            Poll::Ready(None)
        } else if queue.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Some(()))
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn request() -> Request {
        let captures = crate::wire::Payload::encode(&(), 0).unwrap();
        Request::plain(1, "test", web_time::Instant::now(), captures)
    }

    #[test]
    fn calls_and_cancels_are_taken_in_one_batch_and_a_closed_outbox_fails_its_calls() {
        let outbox = Outbox::new();
        let mut ready = outbox.ready();
        let mut batch = Batch::default();
        assert!(ready.next().now_or_never_pending());
        let mut waiting = Vec::new();
        for id in 0..3 {
            let (reply, replied) = futures_channel::oneshot::channel();
            assert!(outbox.call(OutboundCall {
                id,
                request: request(),
                reply
            }));
            waiting.push(replied);
        }
        outbox.cancel(1);
        assert_eq!(
            futures_util::FutureExt::now_or_never(ready.next()),
            Some(Some(()))
        );
        outbox.take(&mut batch);
        let ids: Vec<u64> = batch.calls.iter().map(|call| call.id).collect();
        assert_eq!((ids, batch.cancels.clone()), (vec![0, 1, 2], vec![1]));
        // Nothing more queued: the link waits.
        batch = Batch::default();
        outbox.take(&mut batch);
        assert!(batch.calls.is_empty() && batch.cancels.is_empty());
        // A call queued when the link ends is dropped, and no call is taken after.
        let (reply, mut replied) = futures_channel::oneshot::channel();
        assert!(outbox.call(OutboundCall {
            id: 9,
            request: request(),
            reply
        }));
        drop(ready);
        assert!(!outbox.is_open());
        assert!(
            replied.try_recv().is_err(),
            "the queued call's slot is closed"
        );
        let (reply, _replied) = futures_channel::oneshot::channel();
        assert!(!outbox.call(OutboundCall {
            id: 10,
            request: request(),
            reply
        }));
    }

    #[test]
    fn slots_bound_the_calls_and_a_freed_slot_wakes_a_waiter() {
        let slots = Slots::new(2);
        let first = slots.try_take().expect("a free slot");
        let second = slots.try_take().expect("a free slot");
        assert!(slots.try_take().is_none(), "at the limit");
        assert_eq!(slots.taken(), 2);
        let mut waiting = Box::pin(slots.take());
        assert!(futures_util::FutureExt::now_or_never(waiting.as_mut()).is_none());
        drop(first);
        let third = futures_util::FutureExt::now_or_never(waiting.as_mut())
            .expect("the freed slot goes to the waiter");
        assert_eq!(slots.taken(), 2);
        drop((second, third));
        assert_eq!(slots.taken(), 0);
    }

    trait PendingNow {
        fn now_or_never_pending(self) -> bool;
    }

    impl<F: std::future::Future> PendingNow for F {
        fn now_or_never_pending(self) -> bool {
            futures_util::FutureExt::now_or_never(self).is_none()
        }
    }
}
