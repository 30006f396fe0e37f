//! Counters of one peer (calls, errors by kind, bytes, refused frames), updated by its links
//! without locks, and their snapshot [`Metrics`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

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
