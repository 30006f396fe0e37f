//! Peer-wide limits on links: how many links, how many handshakes in progress, how many
//! links from one IP address. A link holds a [`Ticket`] for as long as it lives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The counts, shared by every link of a peer.
#[derive(Debug)]
pub(crate) struct Admission {
    max_links: usize,
    max_handshakes: usize,
    max_links_per_ip: usize,
    links: AtomicUsize,
    handshakes: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a new link was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Handshakes,
    Address,
}

fn take(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

fn give(counter: &AtomicUsize) {
    let _previous = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        Some(n.saturating_sub(1))
    });
}

impl Admission {
    pub(crate) fn new(max_links: usize, max_handshakes: usize, max_links_per_ip: usize) -> Self {
        Self {
            max_links,
            max_handshakes,
            max_links_per_ip,
            links: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    fn per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Each update is a single map operation: a panic elsewhere cannot leave it torn.
        self.per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a new inbound handshake from `ip`, or says which limit is reached.
    pub(crate) fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Ticket, Full> {
        if let Some(ip) = ip {
            let mut per_ip = self.per_ip();
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= self.max_links_per_ip {
                return Err(Full::Address);
            }
            *count += 1;
        }
        if !take(&self.handshakes, self.max_handshakes) {
            self.release_ip(ip);
            return Err(Full::Handshakes);
        }
        Ok(Ticket {
            admission: Some(self.clone()),
            ip,
            state: State::Handshake,
        })
    }

    fn release_ip(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            let mut per_ip = self.per_ip();
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }

    /// Links up now.
    #[cfg(test)]
    fn links(&self) -> usize {
        self.links.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Link,
    Done,
}

/// One link's place in the counts, given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Option<Arc<Admission>>,
    ip: Option<IpAddr>,
    state: State,
}

impl Ticket {
    /// A link this peer opened itself: not counted (the peer chose to open it).
    pub(crate) fn outbound() -> Self {
        Self {
            admission: None,
            ip: None,
            state: State::Done,
        }
    }

    /// The handshake completed: from a handshake to a link, if a link slot is free.
    pub(crate) fn promote(&mut self) -> bool {
        let Some(admission) = &self.admission else {
            return true;
        };
        if self.state != State::Handshake {
            return self.state == State::Link;
        }
        if !take(&admission.links, admission.max_links) {
            return false;
        }
        give(&admission.handshakes);
        self.state = State::Link;
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(admission) = self.admission.take() else {
            return;
        };
        match self.state {
            State::Handshake => give(&admission.handshakes),
            State::Link => give(&admission.links),
            State::Done => {}
        }
        admission.release_ip(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_count_handshakes_links_and_addresses_and_give_them_back() {
        let admission = Arc::new(Admission::new(2, 2, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut first = admission.admit(Some(a)).unwrap();
        let second = admission.admit(Some(a)).unwrap();
        assert_eq!(admission.admit(Some(a)).unwrap_err(), Full::Address);
        assert_eq!(admission.admit(Some(b)).unwrap_err(), Full::Handshakes);
        assert!(first.promote());
        let mut third = admission.admit(Some(b)).unwrap();
        assert!(third.promote());
        assert_eq!(admission.links(), 2);
        let mut fourth = {
            drop(second);
            admission.admit(Some(b)).unwrap()
        };
        assert!(!fourth.promote(), "both link slots are taken");
        drop(first);
        assert!(fourth.promote());
        drop((third, fourth));
        assert_eq!(admission.links(), 0);
        assert!(admission.per_ip().is_empty());
    }
}
