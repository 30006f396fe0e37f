//! A peer-wide budget of bytes, shared by its links and their sockets: a leaf, so that the
//! link engine and the transport can both draw on one.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of inbound messages a whole peer holds for its links (call frames running or
/// queued, messages being assembled or read): past it, calls answer `Overloaded` and
/// unfinished messages close their link.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    cap: usize,
}

impl Budget {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            cap,
        }
    }

    /// Takes `bytes` from the budget, or nothing if they do not fit.
    pub(crate) fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.cap)
            })
            .is_ok()
    }

    /// Takes `bytes` even past the cap (bytes already in memory, whose holder is about to
    /// let them go).
    #[cfg_attr(
        target_arch = "wasm32",
        expect(dead_code, reason = "browser sockets deliver whole messages")
    )]
    pub(crate) fn force_take(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives back `bytes` taken earlier.
    pub(crate) fn give(&self, bytes: usize) {
        let _previous = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Bytes in use now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}
