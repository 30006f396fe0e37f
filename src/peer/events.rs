//! Link lifecycle events.

use std::pin::Pin;
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
    /// The peer actor was restarted ([`PeerHandle::restart`](crate::PeerHandle::restart), or
    /// its supervisor after a failure): its links were dropped and the outbound ones are
    /// being dialled again.
    Restarted,
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
