//! Link lifecycle events and call counters.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::stream::BoxStream;
use tokio::sync::broadcast;

use crate::PeerId;

/// Something that happened to a peer's links; see [`PeerHandle::events`](crate::PeerHandle::events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A link completed its handshake.
    Connected {
        /// The remote peer.
        peer: PeerId,
        /// Whether this peer opened the link.
        outbound: bool,
        /// The URL connected to, or the remote socket address.
        address: String,
    },
    /// A live link went down; calls pending on it failed with `ConnectionLost`.
    Lost {
        /// The remote peer.
        peer: PeerId,
        /// Why, as far as this side knows.
        reason: String,
    },
    /// An outbound link that went down will be tried again after `delay`.
    Reconnecting {
        /// The URL.
        url: String,
        /// The attempt number, from 1.
        attempt: u32,
        /// The backoff before this attempt.
        delay: Duration,
    },
    /// A link was refused: a failed handshake, a bad token, a duplicate peer id.
    Refused {
        /// The URL or remote address.
        address: String,
        /// Why.
        reason: String,
    },
}

/// The stream of [`PeerEvent`]s from the moment it was created.
///
/// A subscriber that falls more than 256 events behind skips the oldest ones.
pub struct Events {
    inner: BoxStream<'static, PeerEvent>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    pub(crate) fn new(receiver: broadcast::Receiver<PeerEvent>) -> Self {
        let inner = futures_util::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => return Some((event, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl Stream for Events {
    type Item = PeerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Counters of one peer, updated without locks on the hot path.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls_sent: AtomicU64,
    pub(crate) calls_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) refused_frames: AtomicU64,
    errors: [AtomicU64; 17],
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, code: u16) {
        let slot = usize::from(code).min(self.errors.len() - 1);
        Self::add(&self.errors[slot], 1);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Metrics {
            calls_sent: load(&self.calls_sent),
            calls_received: load(&self.calls_received),
            bytes_sent: load(&self.bytes_sent),
            bytes_received: load(&self.bytes_received),
            late_replies: load(&self.late_replies),
            refused_frames: load(&self.refused_frames),
            errors: self
                .errors
                .iter()
                .enumerate()
                .filter(|(_, count)| load(count) > 0)
                .map(|(code, count)| (code as u16, load(count)))
                .collect(),
        }
    }
}

/// A snapshot of a peer's counters; see [`PeerHandle::metrics`](crate::PeerHandle::metrics).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Calls this peer sent over links.
    pub calls_sent: u64,
    /// Calls other peers sent to this one.
    pub calls_received: u64,
    /// Bytes of frames written.
    pub bytes_sent: u64,
    /// Bytes of frames read.
    pub bytes_received: u64,
    /// Replies that arrived after their caller stopped waiting.
    pub late_replies: u64,
    /// Frames refused as malformed or protocol violations.
    pub refused_frames: u64,
    /// Failed calls by [`RemoteError::code`](crate::RemoteError::code) (16 and above share
    /// the last slot), as seen by the callers on this peer.
    pub errors: BTreeMap<u16, u64>,
}
