//! What discovery knows of each address it found, and what to do next: a state machine with
//! no I/O and no clock of its own, driven by the discovery task.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use web_time::Instant;

use crate::error::HandshakeError;
use crate::{Error, PeerId};

/// How many addresses that left the records are followed until their links close, beyond
/// the addresses dialled (each gone address is asked to close once more every round while
/// its link is up; past this many, the oldest are asked no more).
const MAX_LEAVING: usize = 256;

/// The addresses found by the last successful lookup, and those that left it.
#[derive(Debug, Default)]
pub(super) struct Members {
    addresses: BTreeMap<String, Address>,
    /// Gone from the records, their outbound links asked to close once idle; followed while
    /// such a link is up, in case it came up after it was asked (a dial in flight).
    leaving: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Address {
    /// To dial at `at`; `attempt` dials to it have failed in a row.
    Dial { attempt: u32, at: Instant },
    /// A dial is in flight.
    Dialling { attempt: u32 },
    /// Its link came up: the peer's reconnection keeps it up from here on.
    Linked(PeerId),
    /// The dial reached a peer another link already joins to this one (it dialled us, or it
    /// is the same peer at another address): dialled again once that link is gone. The peer
    /// is known when this side refused the second link; when the remote refused it, only
    /// that it holds a link to us, so the address is dialled again after any link is lost.
    Covered(Option<PeerId>),
    /// This peer's own address (a headless Service lists every pod, this one included).
    Myself,
}

/// What the task does after a dial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterDial {
    /// Keep the peer's outbound entry: the link is up and the peer keeps it up.
    Keep,
    /// The dial failed: drop the peer's outbound entry (no reconnection by the peer), and
    /// discovery dials again after the backoff.
    Retry,
    /// The dial reached this peer itself, or a peer already linked: drop the peer's outbound
    /// entry; not dialled again while that holds.
    Drop,
    /// The address left the records while it was dialled: drop the entry and close the link
    /// once idle.
    Close,
}

impl Members {
    /// Takes the addresses of a successful lookup; returns those that left.
    pub(super) fn update(&mut self, found: BTreeSet<String>, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .addresses
            .keys()
            .filter(|address| !found.contains(*address))
            .cloned()
            .collect();
        for address in &gone {
            self.addresses.remove(address);
            self.leave(address.clone());
        }
        for address in found {
            self.leaving.remove(&address);
            self.addresses.entry(address).or_insert(Address::Dial {
                attempt: 0,
                at: now,
            });
        }
        gone
    }

    fn leave(&mut self, address: String) {
        if self.leaving.len() >= MAX_LEAVING {
            self.leaving.pop_first();
        }
        self.leaving.insert(address);
    }

    /// The addresses to dial now (marked as being dialled). An address covered by a link
    /// that is gone is dialled again, and so is a linked one when links do not reconnect.
    pub(super) fn due(
        &mut self,
        now: Instant,
        reconnects: bool,
        linked: impl Fn(PeerId) -> bool,
    ) -> Vec<String> {
        let mut due = Vec::new();
        for (address, state) in &mut self.addresses {
            let attempt = match *state {
                Address::Dial { attempt, at } if at <= now => attempt,
                Address::Covered(Some(peer)) if !linked(peer) => 0,
                Address::Linked(peer) if !reconnects && !linked(peer) => 0,
                Address::Dial { .. }
                | Address::Dialling { .. }
                | Address::Covered(_)
                | Address::Linked(_)
                | Address::Myself => continue,
            };
            *state = Address::Dialling { attempt };
            due.push(address.clone());
        }
        due
    }

    /// A link of this peer went down: addresses covered by a link of unknown peer are
    /// dialled again.
    pub(super) fn link_lost(&mut self, now: Instant) {
        for state in self.addresses.values_mut() {
            if *state == Address::Covered(None) {
                *state = Address::Dial {
                    attempt: 0,
                    at: now,
                };
            }
        }
    }

    /// When the next address is due, if one waits for a retry.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.addresses
            .values()
            .filter_map(|state| match *state {
                Address::Dial { at, .. } => Some(at),
                Address::Dialling { .. }
                | Address::Linked(_)
                | Address::Covered(_)
                | Address::Myself => None,
            })
            .min()
    }

    /// Records how a dial to `address` ended. A failed one is tried again after `delay`
    /// (the reconnect backoff for the attempt number given).
    pub(super) fn dialled(
        &mut self,
        local: PeerId,
        address: &str,
        result: &Result<PeerId, Error>,
        now: Instant,
        linked: impl Fn(PeerId) -> bool,
        delay: impl Fn(u32) -> Duration,
    ) -> AfterDial {
        let Some(state) = self.addresses.get_mut(address) else {
            self.leave(address.to_owned());
            return AfterDial::Close;
        };
        let attempt = match *state {
            Address::Dialling { attempt } => attempt,
            Address::Dial { attempt, .. } => attempt,
            Address::Linked(_) | Address::Covered(_) | Address::Myself => 0,
        };
        let (next, after) = match result {
            Ok(peer) => (Address::Linked(*peer), AfterDial::Keep),
            Err(error) if reached_itself(error) => (Address::Myself, AfterDial::Drop),
            Err(Error::Handshake {
                reason: HandshakeError::Duplicate(peer),
                ..
            }) if linked(*peer) => (Address::Covered(Some(*peer)), AfterDial::Drop),
            Err(error) if refused_as(error, &HandshakeError::Duplicate(local)) => {
                (Address::Covered(None), AfterDial::Drop)
            }
            Err(_) => {
                let attempt = attempt.saturating_add(1);
                let at = now + delay(attempt);
                (Address::Dial { attempt, at }, AfterDial::Retry)
            }
        };
        *state = next;
        after
    }

    /// The addresses that left the records and may still have a link up: `still_up` says
    /// whether one does; those without are forgotten, those with are returned (to be asked
    /// to close once more).
    pub(super) fn leaving(&mut self, still_up: impl Fn(&str) -> bool) -> Vec<String> {
        self.leaving.retain(|address| still_up(address));
        self.leaving.iter().cloned().collect()
    }

    /// How many addresses are known.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.addresses.len()
    }
}

/// Whether a dial reached this very peer: its own handshake saw its own id, or the accepting
/// side (this peer too) saw it first and refused the link saying so. The refusal travels as
/// the close reason, the `Display` of the [`HandshakeError`] (the only way the protocol says
/// why), so that is what is matched.
fn reached_itself(error: &Error) -> bool {
    matches!(
        error,
        Error::Handshake {
            reason: HandshakeError::SelfConnection,
            ..
        }
    ) || refused_as(error, &HandshakeError::SelfConnection)
}

/// Whether the remote refused the link with `reason` (which travels as the close reason).
fn refused_as(error: &Error, reason: &HandshakeError) -> bool {
    matches!(
        error,
        Error::Handshake { reason: HandshakeError::Refused(why), .. }
            if why.ends_with(&reason.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addresses: &[&str]) -> BTreeSet<String> {
        addresses
            .iter()
            .map(|address| (*address).to_owned())
            .collect()
    }

    fn refused(reason: HandshakeError) -> Result<PeerId, Error> {
        Err(Error::Handshake {
            url: "ws://a/".into(),
            reason,
        })
    }

    fn local() -> PeerId {
        PeerId::from_name("a")
    }

    fn second(_attempt: u32) -> Duration {
        Duration::from_secs(1)
    }

    #[test]
    fn new_addresses_are_dialled_at_once_and_gone_ones_leave() {
        let now = Instant::now();
        let mut members = Members::default();
        assert!(members.update(set(&["ws://a/", "ws://b/"]), now).is_empty());
        assert_eq!(members.due(now, true, |_| false), ["ws://a/", "ws://b/"]);
        assert!(
            members.due(now, true, |_| false).is_empty(),
            "dialling once"
        );
        let gone = members.update(set(&["ws://b/", "ws://c/"]), now);
        assert_eq!(gone, ["ws://a/"]);
        assert_eq!(members.due(now, true, |_| false), ["ws://c/"]);
        assert_eq!(members.leaving(|_| true), ["ws://a/"]);
        assert!(
            members.leaving(|_| false).is_empty(),
            "forgotten once closed"
        );
    }

    #[test]
    fn a_failed_dial_is_retried_after_its_backoff() {
        let now = Instant::now();
        let mut members = Members::default();
        members.update(set(&["ws://a/"]), now);
        members.due(now, true, |_| false);
        let error = refused(HandshakeError::Timeout);
        let after = members.dialled(local(), "ws://a/", &error, now, |_| false, second);
        assert_eq!(after, AfterDial::Retry);
        assert_eq!(members.next_due(), Some(now + Duration::from_secs(1)));
        assert!(members.due(now, true, |_| false).is_empty());
        let later = now + Duration::from_secs(1);
        assert_eq!(members.due(later, true, |_| false), ["ws://a/"]);
        // The attempt count grows while dials fail.
        let attempts = std::cell::Cell::new(0);
        members.dialled(
            local(),
            "ws://a/",
            &error,
            later,
            |_| false,
            |attempt| {
                attempts.set(attempt);
                Duration::ZERO
            },
        );
        assert_eq!(attempts.get(), 2);
    }

    #[test]
    fn own_address_is_never_dialled_again() {
        let by_the_remote = format!("closed by the remote: {}", HandshakeError::SelfConnection);
        for reason in [
            HandshakeError::SelfConnection,
            HandshakeError::Refused(by_the_remote),
        ] {
            let now = Instant::now();
            let mut members = Members::default();
            members.update(set(&["ws://me/"]), now);
            members.due(now, true, |_| false);
            let after = members.dialled(
                local(),
                "ws://me/",
                &refused(reason),
                now,
                |_| false,
                second,
            );
            assert_eq!(after, AfterDial::Drop);
            assert_eq!(members.next_due(), None);
            let later = now + Duration::from_secs(3600);
            assert!(members.due(later, true, |_| false).is_empty());
        }
    }

    #[test]
    fn a_covered_address_is_dialled_again_once_its_link_is_gone() {
        let now = Instant::now();
        let peer = PeerId::from_name("b");
        let mut members = Members::default();
        members.update(set(&["ws://b/"]), now);
        members.due(now, true, |_| false);
        let duplicate = refused(HandshakeError::Duplicate(peer));
        let after = members.dialled(local(), "ws://b/", &duplicate, now, |_| true, second);
        assert_eq!(after, AfterDial::Drop);
        assert!(members.due(now, true, |_| true).is_empty(), "covered");
        assert_eq!(members.due(now, true, |_| false), ["ws://b/"]);
    }

    #[test]
    fn an_address_whose_peer_holds_a_link_to_us_is_dialled_again_after_a_link_is_lost() {
        let now = Instant::now();
        let mut members = Members::default();
        members.update(set(&["ws://b/"]), now);
        members.due(now, true, |_| false);
        let reason = format!(
            "closed by the remote: {}",
            HandshakeError::Duplicate(local())
        );
        let duplicate = refused(HandshakeError::Refused(reason));
        let after = members.dialled(local(), "ws://b/", &duplicate, now, |_| false, second);
        assert_eq!(after, AfterDial::Drop);
        assert_eq!(members.next_due(), None, "covered, not retried");
        assert!(members.due(now, true, |_| false).is_empty());
        members.link_lost(now);
        assert_eq!(members.due(now, true, |_| false), ["ws://b/"]);
    }

    #[test]
    fn a_linked_address_is_left_to_the_peers_reconnection() {
        let now = Instant::now();
        let peer = PeerId::from_name("b");
        let mut members = Members::default();
        members.update(set(&["ws://b/"]), now);
        members.due(now, true, |_| false);
        let after = members.dialled(local(), "ws://b/", &Ok(peer), now, |_| false, second);
        assert_eq!(after, AfterDial::Keep);
        assert!(members.due(now, true, |_| false).is_empty());
        // Without reconnection, discovery dials it again.
        assert_eq!(members.due(now, false, |_| false), ["ws://b/"]);
    }

    #[test]
    fn a_dial_that_ends_after_its_address_left_closes_its_link() {
        let now = Instant::now();
        let peer = PeerId::from_name("b");
        let mut members = Members::default();
        members.update(set(&["ws://b/"]), now);
        members.due(now, true, |_| false);
        members.update(BTreeSet::new(), now);
        assert_eq!(members.len(), 0);
        let after = members.dialled(local(), "ws://b/", &Ok(peer), now, |_| false, second);
        assert_eq!(after, AfterDial::Close);
        assert_eq!(members.leaving(|_| true), ["ws://b/"]);
    }

    #[test]
    fn leaving_addresses_are_bounded() {
        let now = Instant::now();
        let mut members = Members::default();
        for round in 0..MAX_LEAVING + 10 {
            members.update(set(&[&format!("ws://{round}/")]), now);
        }
        members.update(BTreeSet::new(), now);
        assert_eq!(members.leaving(|_| true).len(), MAX_LEAVING);
    }
}
