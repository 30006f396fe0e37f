//! Session resume, after SignalR's stateful reconnect: what one side of a link keeps so that
//! the link survives a dropped socket.
//!
//! Every frame that carries calls (`Call`, `Reply`, `Cancel`, `Items`, `Credit`) is numbered
//! implicitly, 1, 2, ... in the order it is sent on the link, whatever socket carries it.
//! Each side acknowledges what it received (`Ack`, every [`ACK_EVERY`] frames or
//! [`ACK_BYTES`] bytes, and at each ping) and keeps what it sent until acknowledged, in a
//! replay buffer bounded in bytes. After a drop, the connecting side reconnects within the
//! resume window presenting the session's keys and how many frames it received; the
//! accepting side answers `Resume` with how many it received; each then sends again what
//! the other lacks, in order. So every frame is delivered exactly once while the link
//! resumes within its window, and a call never runs twice.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use web_time::Instant;

use crate::wire::SessionKeys;

/// An acknowledgement goes out after this many frames received ...
pub(crate) const ACK_EVERY: u64 = 64;
/// ... or this many bytes of them, whichever comes first (and at each ping).
pub(crate) const ACK_BYTES: usize = 256 << 10;

/// One side's sequence state of a resumable link.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) keys: SessionKeys,
    pub(crate) window: Duration,
    max_replay: usize,
    /// Numbered frames sent on the link so far.
    sent: u64,
    /// The frames after the last the remote acknowledged, oldest first ...
    replay: VecDeque<Bytes>,
    /// ... and their bytes.
    replay_bytes: usize,
    /// Numbered frames received so far ...
    received: u64,
    /// ... as last acknowledged to the remote, and the bytes received since.
    acknowledged: u64,
    unacknowledged_bytes: usize,
    /// While the socket is gone: when the window closes.
    pub(crate) suspended_until: Option<Instant>,
    /// The connecting side on a new socket: its first message must be `Resume`.
    pub(crate) awaiting_resume: bool,
    /// Both sides hold the session: the connecting side got the keys, and the accepting side
    /// heard from it after the handshake (a link its remote refused is never resumed).
    pub(crate) confirmed: bool,
}

/// Why a resume cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unresumable;

impl Session {
    pub(crate) fn new(keys: SessionKeys, window: Duration, max_replay: usize) -> Self {
        Self {
            keys,
            window,
            max_replay,
            sent: 0,
            replay: VecDeque::new(),
            replay_bytes: 0,
            received: 0,
            acknowledged: 0,
            unacknowledged_bytes: 0,
            suspended_until: None,
            awaiting_resume: false,
            confirmed: false,
        }
    }

    /// A numbered frame goes out (or waits for the socket): it is kept until acknowledged.
    pub(crate) fn sent(&mut self, frame: &Bytes) {
        self.sent += 1;
        self.replay_bytes += frame.len();
        self.replay.push_back(frame.clone());
    }

    /// The remote received the first `received` numbered frames: they are dropped from the
    /// replay buffer. A count beyond what was sent is a protocol error.
    pub(crate) fn acknowledged(&mut self, received: u64) -> Result<(), Unresumable> {
        if received > self.sent {
            return Err(Unresumable);
        }
        let first = self.sent - self.replay.len() as u64;
        for _ in first..received {
            if let Some(frame) = self.replay.pop_front() {
                self.replay_bytes -= frame.len();
            }
        }
        Ok(())
    }

    /// The frames to send again after a resume, the remote having received `received`:
    /// every frame after those, in order. A count the replay buffer cannot serve (frames
    /// acknowledged already, or never sent) means the link cannot resume.
    pub(crate) fn replay_after(&mut self, received: u64) -> Result<Vec<Bytes>, Unresumable> {
        let first = self.sent - self.replay.len() as u64;
        if received < first {
            return Err(Unresumable);
        }
        self.acknowledged(received)?;
        Ok(self.replay.iter().cloned().collect())
    }

    /// A numbered frame of `bytes` arrived; true if an acknowledgement is due.
    pub(crate) fn received(&mut self, bytes: usize) -> bool {
        self.received += 1;
        self.unacknowledged_bytes += bytes;
        self.received - self.acknowledged >= ACK_EVERY || self.unacknowledged_bytes >= ACK_BYTES
    }

    /// Numbered frames received so far.
    pub(crate) fn received_count(&self) -> u64 {
        self.received
    }

    /// What to acknowledge now, if anything arrived since the last acknowledgement.
    pub(crate) fn acknowledge(&mut self) -> Option<u64> {
        if self.received == self.acknowledged {
            return None;
        }
        self.acknowledged = self.received;
        self.unacknowledged_bytes = 0;
        Some(self.received)
    }

    /// The replay buffer is at its bound: no new work until the remote acknowledges some.
    pub(crate) fn is_full(&self) -> bool {
        self.replay_bytes >= self.max_replay
    }

    /// Bytes in the replay buffer.
    #[cfg(test)]
    pub(crate) fn replay_bytes(&self) -> usize {
        self.replay_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n; 10])
    }

    #[test]
    fn frames_are_kept_until_acknowledged_and_replayed_after_what_the_remote_has() {
        let mut session = Session::new(SessionKeys::new(), Duration::from_secs(10), 35);
        for n in 1..=4 {
            session.sent(&frame(n));
        }
        assert!(session.is_full(), "40 bytes over a bound of 35");
        session.acknowledged(1).unwrap();
        assert_eq!(session.replay_bytes(), 30);
        assert!(!session.is_full());
        // The remote has the first two: frames 3 and 4 go again, in order.
        let again = session.replay_after(2).unwrap();
        assert_eq!(again, vec![frame(3), frame(4)]);
        // What was dropped cannot be replayed, nor what was never sent.
        assert_eq!(session.replay_after(1), Err(Unresumable));
        assert_eq!(session.replay_after(5), Err(Unresumable));
        assert_eq!(session.acknowledged(9), Err(Unresumable));
    }

    #[test]
    fn acknowledgements_are_due_every_so_many_frames_or_bytes() {
        let mut session = Session::new(SessionKeys::new(), Duration::from_secs(10), 1 << 20);
        assert_eq!(session.acknowledge(), None);
        for _ in 1..ACK_EVERY {
            assert!(!session.received(10));
        }
        assert!(session.received(10));
        assert_eq!(session.acknowledge(), Some(ACK_EVERY));
        assert!(session.received(ACK_BYTES));
        assert_eq!(session.acknowledge(), Some(ACK_EVERY + 1));
        assert_eq!(session.received_count(), ACK_EVERY + 1);
    }

    #[test]
    fn only_the_sessions_secret_admits() {
        let keys = SessionKeys::new();
        assert!(keys.admits(keys.secret));
        assert!(!keys.admits(keys.secret ^ 1));
        assert!(!format!("{keys:?}").contains(&format!("{:x}", keys.secret)));
    }
}
