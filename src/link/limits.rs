//! The bounds a link enforces, and the peer-wide budget of buffered inbound bytes its links
//! share. Every number here has a documented default (see the option tables of
//! [`Config`](crate::Config) and `docs/security.md`) and a test that reaches it.

use std::sync::Arc;
use std::time::Duration;

use crate::wire::{DEFAULT_MAX_MESSAGE_SIZE, MAX_HELLO_SIZE};

/// The deadline of a call that sets none.
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// How often a link is probed.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(3);
/// How long a silent link lives.
pub(crate) const LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new link has to complete the handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of call frames each link may hold without drawing on the peer's budget: a link's
/// small calls still run while other links have exhausted it.
pub(crate) const GUARANTEED_INBOUND_BYTES: usize = 64 << 10;
/// The longest block name echoed back in an error reply; longer names are cut.
pub(crate) const MAX_ERROR_NAME: usize = 256;

/// The per-link bounds, taken from the peer's options.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// The largest message this side accepts (announced in its `Hello`).
    pub(crate) max_message_size: usize,
    /// The largest message accepted before the handshake completed (at most 64 KiB).
    pub(crate) max_hello_size: usize,
    /// Calls of the remote running here at once.
    pub(crate) max_inbound_calls: usize,
    /// Calls of the remote waiting for a slot.
    pub(crate) max_queued_calls: usize,
    /// Bytes of call frames of the remote running or waiting here.
    pub(crate) max_inbound_bytes: usize,
    /// Bytes of a call's metadata (keys and values).
    pub(crate) max_metadata_bytes: usize,
    /// Entries of a call's metadata.
    pub(crate) max_metadata_entries: usize,
    /// The longest deadline an inbound call may ask for.
    pub(crate) max_inbound_deadline: Duration,
    /// Bytes written but not yet taken by the socket past which this link stops reading.
    pub(crate) max_send_buffer: usize,
    /// How long the send buffer may stay over `max_send_buffer` without progress.
    pub(crate) write_timeout: Duration,
    /// How long a fragmented message may take to complete.
    pub(crate) fragment_timeout: Duration,
    /// How long the handshake may take.
    pub(crate) handshake_timeout: Duration,
    /// How often the link is probed.
    pub(crate) ping_interval: Duration,
    /// How long the link may stay silent.
    pub(crate) liveness_timeout: Duration,
    /// How long a link whose socket dropped waits to be resumed (zero: never resumed).
    pub(crate) resume_window: Duration,
    /// Bytes of sent frames kept until the remote acknowledges them, past which the link
    /// takes no new work.
    pub(crate) max_replay_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_hello_size: MAX_HELLO_SIZE,
            max_inbound_calls: 4096,
            max_queued_calls: 4096,
            max_inbound_bytes: 64 << 20,
            max_metadata_bytes: 8 << 10,
            max_metadata_entries: 32,
            max_inbound_deadline: Duration::from_secs(300),
            max_send_buffer: 4 << 20,
            write_timeout: Duration::from_secs(10),
            fragment_timeout: Duration::from_secs(10),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            ping_interval: PING_INTERVAL,
            liveness_timeout: LIVENESS_TIMEOUT,
            resume_window: RESUME_WINDOW,
            max_replay_bytes: MAX_REPLAY_BYTES,
        }
    }
}

pub(crate) use crate::budget::Budget;

/// The default resume window: how long a link whose socket dropped waits to be resumed.
pub(crate) const RESUME_WINDOW: Duration = Duration::from_secs(10);

/// The default bound of a link's replay buffer.
pub(crate) const MAX_REPLAY_BYTES: usize = 32 << 20;

/// The peer-wide budgets a link draws on: one for calls, one for fragmented messages being
/// assembled (apart, so that unfinished fragments cannot starve calls).
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    pub(crate) calls: Arc<Budget>,
    pub(crate) fragments: Arc<Budget>,
}

impl Budgets {
    pub(crate) fn new(calls: usize, fragments: usize) -> Self {
        Self {
            calls: Arc::new(Budget::new(calls)),
            fragments: Arc::new(Budget::new(fragments)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_what_does_not_fit_and_takes_back_what_is_given() {
        let budget = Budget::new(100);
        assert!(budget.try_take(60));
        assert!(!budget.try_take(41));
        assert!(budget.try_take(40));
        assert_eq!(budget.used(), 100);
        budget.give(60);
        assert!(budget.try_take(60));
        budget.give(1000);
        assert_eq!(budget.used(), 0);
        assert!(!budget.try_take(usize::MAX));
    }
}
