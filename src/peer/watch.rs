//! Watching peers, after Akka's DeathWatch and Erlang's monitors: an actor is told when a
//! peer is lost for good ([`PeerStatus::Lost`]) and when it comes back
//! ([`PeerStatus::Returned`]); a link that drops and comes back within the grace period is a
//! blip, and nobody is told.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use actix::prelude::*;
use web_time::Instant;

use super::Peer;
use super::events::PeerEvent;
use crate::PeerId;

/// What a watcher learns about a peer it watches with
/// [`PeerHandle::watch`](crate::PeerHandle::watch): an actix message, so any actor can handle
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerStatus {
    /// No link to `peer` has been up for the watch grace period
    /// ([`PeerBuilder::watch_grace`](crate::PeerBuilder::watch_grace), 5 s by default): it
    /// is lost for good, as far as this peer can tell. Also told at once to a new watcher of
    /// a peer already lost.
    Lost {
        /// The peer.
        peer: PeerId,
    },
    /// A link to `peer` came up after it was reported [`PeerStatus::Lost`].
    Returned {
        /// The peer.
        peer: PeerId,
    },
}

impl Message for PeerStatus {
    type Result = ();
}

/// The watchers of one peer and what they were told.
pub(super) struct Watched {
    watchers: Vec<Recipient<PeerStatus>>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A link is up.
    Up,
    /// No link since `since`; lost if none comes up within the grace period.
    Down { since: Instant },
    /// Reported lost.
    Lost,
}

/// Watch `peer` on behalf of `recipient`.
pub(super) struct Watch {
    pub(super) peer: PeerId,
    pub(super) recipient: Recipient<PeerStatus>,
}

impl Message for Watch {
    type Result = ();
}

impl Handler<Watch> for Peer {
    type Result = ();

    fn handle(&mut self, watch: Watch, ctx: &mut Context<Self>) {
        let Watch { peer, recipient } = watch;
        match self.watches.entry(peer) {
            Entry::Occupied(mut watched) => {
                let watched = watched.get_mut();
                if watched.state == State::Lost {
                    recipient.do_send(PeerStatus::Lost { peer });
                }
                watched.watchers.retain(Recipient::connected);
                watched.watchers.push(recipient);
            }
            Entry::Vacant(slot) => {
                let state = if self.shared.is_linked(peer) {
                    State::Up
                } else {
                    State::Down {
                        since: Instant::now(),
                    }
                };
                slot.insert(Watched {
                    watchers: vec![recipient],
                    state,
                });
                if state != State::Up {
                    self.arm_watch(peer, ctx);
                }
            }
        }
    }
}

impl StreamHandler<PeerEvent> for Peer {
    fn handle(&mut self, _event: PeerEvent, ctx: &mut Context<Self>) {
        // The link table, not the event, says who is up: an event may have been skipped by a
        // lagging subscription, or be older than the table.
        self.reconcile_watches(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The events end only with the peer itself; the actor is not stopped for it.
    }
}

impl Peer {
    /// Moves every watched peer to the state the link table shows.
    pub(super) fn reconcile_watches(&mut self, ctx: &mut Context<Self>) {
        let mut armed = Vec::new();
        for (peer, watched) in &mut self.watches {
            let up = self.shared.is_linked(*peer);
            match (watched.state, up) {
                (State::Up, false) => {
                    watched.state = State::Down {
                        since: Instant::now(),
                    };
                    armed.push(*peer);
                }
                (State::Down { .. }, true) => watched.state = State::Up,
                (State::Lost, true) => {
                    watched.state = State::Up;
                    tracing::info!(peer = %peer.label(), "watched peer returned");
                    notify(&mut watched.watchers, &PeerStatus::Returned { peer: *peer });
                }
                (State::Up, true) | (State::Down { .. } | State::Lost, false) => {}
            }
        }
        for peer in armed {
            self.arm_watch(peer, ctx);
        }
    }

    /// Arms the timers of watched peers that are down (after a restart, whose context lost
    /// them).
    pub(super) fn rearm_watches(&mut self, ctx: &mut Context<Self>) {
        let down: Vec<PeerId> = self
            .watches
            .iter()
            .filter(|(_, watched)| matches!(watched.state, State::Down { .. }))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in down {
            self.arm_watch(peer, ctx);
        }
    }

    /// Reports `peer` lost when its grace period ends, unless a link came up meanwhile.
    fn arm_watch(&mut self, peer: PeerId, ctx: &mut Context<Self>) {
        let Some(State::Down { since }) = self.watches.get(&peer).map(|watched| watched.state)
        else {
            return;
        };
        let grace = self.shared.config.watch_grace;
        let left = (since + grace).saturating_duration_since(Instant::now());
        ctx.run_later(left, move |this, _ctx| {
            let linked = this.shared.is_linked(peer);
            let Some(watched) = this.watches.get_mut(&peer) else {
                return;
            };
            // A stale timer: the peer came back (and maybe went down again) since.
            let State::Down { since: now_since } = watched.state else {
                return;
            };
            if now_since != since {
                return;
            }
            if linked {
                watched.state = State::Up;
                return;
            }
            watched.state = State::Lost;
            tracing::info!(peer = %peer.label(), ?grace, "watched peer lost");
            notify(&mut watched.watchers, &PeerStatus::Lost { peer });
        });
    }
}

/// Tells every watcher still running; forgets the others.
fn notify(watchers: &mut Vec<Recipient<PeerStatus>>, status: &PeerStatus) {
    watchers.retain(Recipient::connected);
    for watcher in watchers.iter() {
        watcher.do_send(status.clone());
    }
}

/// The watched peers of a [`Peer`].
pub(super) type Watches = HashMap<PeerId, Watched>;
