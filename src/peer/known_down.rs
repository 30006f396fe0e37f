//! Which peers are known down, after gRPC's TRANSIENT_FAILURE: a call to one of them fails
//! at once instead of waiting for its deadline, unless it asks to wait for ready.

use std::collections::HashMap;

use crate::PeerId;

/// How many peers are remembered as down. Peer ids come from the network (any client may
/// claim one and leave), so the set is bounded: past it the peer marked down longest ago is
/// forgotten, and calls to it wait again as for a peer never seen.
pub(crate) const MAX_KNOWN_DOWN: usize = 4096;

/// Peers whose link was lost, or whose last dial failed, and that are not being dialled.
#[derive(Debug)]
pub(crate) struct KnownDown {
    /// Each peer with the order in which it was marked, to forget the oldest first.
    peers: HashMap<PeerId, u64>,
    marks: u64,
    capacity: usize,
}

impl Default for KnownDown {
    fn default() -> Self {
        Self::with_capacity(MAX_KNOWN_DOWN)
    }
}

impl KnownDown {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            peers: HashMap::new(),
            marks: 0,
            capacity: capacity.max(1),
        }
    }

    /// Marks `peer` down.
    pub(crate) fn insert(&mut self, peer: PeerId) {
        self.marks += 1;
        if self.peers.insert(peer, self.marks).is_none() && self.peers.len() > self.capacity {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, mark)| **mark)
                .map(|(peer, _)| *peer);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
            }
        }
    }

    /// `peer` is up, or being dialled: no longer known down.
    pub(crate) fn remove(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
    }

    pub(crate) fn contains(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_down_until_removed() {
        let mut down = KnownDown::default();
        let peer = PeerId::random();
        assert!(!down.contains(peer));
        down.insert(peer);
        down.insert(peer);
        assert!(down.contains(peer));
        down.remove(peer);
        assert!(!down.contains(peer));
    }

    #[test]
    fn past_its_capacity_the_oldest_mark_is_forgotten() {
        let mut down = KnownDown::with_capacity(3);
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for peer in &peers[..3] {
            down.insert(*peer);
        }
        // Marked again: now the newest.
        down.insert(peers[0]);
        down.insert(peers[3]);
        assert_eq!(down.peers.len(), 3);
        assert!(!down.contains(peers[1]));
        for peer in [peers[0], peers[2], peers[3]] {
            assert!(down.contains(peer));
        }
    }
}
