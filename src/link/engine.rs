//! The link protocol as a state machine, in the manner of quinn-proto, h2 and rustls: no
//! I/O, no clock and no timers of its own, no runtime.
//!
//! An adapter feeds it what the socket delivers ([`Engine::on_message`], [`Engine::on_ping`],
//! ...), the time (`now` arguments, [`Engine::on_timeout`] at [`Engine::poll_timeout`]) and
//! what the application asks ([`Engine::call`], [`Engine::cancel`], [`Engine::finish`]);
//! it then drains [`Engine::poll_transmit`] into the socket and [`Engine::poll_event`] into
//! the runtime (run a block, abort one, the link is up, the link is over). Everything the
//! engine holds is bounded by its [`Limits`] and the peer-wide [`Budget`].
#![cfg_attr(
    target_arch = "wasm32",
    expect(
        dead_code,
        reason = "browsers give scripts no WebSocket control frames, fragments or token expiry to feed in"
    )
)]

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use web_time::Instant;

use super::limits::{Budgets, GUARANTEED_INBOUND_BYTES, Limits, MAX_ERROR_NAME};
use super::metrics::Counters;
use super::session::Session;
use super::{Expect, Reply, check_hello};
use crate::block::{self, BlockEntry};
use crate::error::HandshakeError;
use crate::runtime::Request;
use crate::stream::inbox::{Inbox, Window};
use crate::trace::Trace;
use crate::wire::{self, Frame, Hello, Payload, ReplyBody, SessionKeys};
use crate::{PeerId, RemoteError};

/// WebSocket close codes the engine asks for (RFC 6455 section 7.4.1).
pub(crate) mod close {
    /// Normal closure.
    pub(crate) const NORMAL: u16 = 1000;
    /// The peer is going away (`stop()`).
    pub(crate) const AWAY: u16 = 1001;
    /// A protocol violation.
    pub(crate) const PROTOCOL: u16 = 1002;
    /// A data type this endpoint does not accept (text frames).
    pub(crate) const UNSUPPORTED: u16 = 1003;
    /// A policy violation: refused identity, a peer that does not read, an expired token.
    pub(crate) const POLICY: u16 = 1008;
    /// A message too big to process.
    pub(crate) const SIZE: u16 = 1009;
    /// The connection was interrupted and the link resumes on another one (an application
    /// code: a browser page, which cannot drop a connection without a close frame, says
    /// so to the remote).
    pub(crate) const INTERRUPTED: u16 = 4000;
}

/// Pings (WebSocket and protocol together) a remote may send per ping interval; peers of
/// this protocol send two. More is a flood (catalogue W8) and closes the link with 1008.
pub(crate) const MAX_PINGS_PER_INTERVAL: u32 = 32;

/// Which side opened the link: the connecting side speaks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Connecting,
    Accepting,
}

/// Decides, on the link's thread and before any capture is decoded, whether the remote may
/// run the named block here; the flag says the call is a hop of the block's own scope (a
/// nested block called with its entry point as the caller's root).
pub(crate) type Authorize = Box<dyn Fn(PeerId, &str, bool) -> Result<(), RemoteError>>;

/// Makes the accepting side's proof of identity, bound to the connecting side's nonce.
pub(crate) type Prove = Box<dyn Fn(u128) -> Option<String>>;

/// The longest close reason a WebSocket close frame carries (RFC 6455 section 5.5: 125
/// bytes of payload, two of them the code).
const MAX_CLOSE_REASON: usize = 123;

/// What the adapter writes to the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transmit {
    /// A binary message.
    Binary(Bytes),
    /// A WebSocket ping (native links only; browsers cannot send them).
    Ping,
    /// A WebSocket pong.
    Pong(Bytes),
    /// A close frame; nothing follows it.
    Close { code: u16, reason: String },
}

/// A call of the remote, admitted to run here.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) id: u64,
    pub(crate) entry: &'static BlockEntry,
    pub(crate) remote: PeerId,
    pub(crate) deadline: Instant,
    /// The encoded captures, shared with the frame they came in.
    pub(crate) captures: Bytes,
    /// The largest reply frame the remote accepts: a result that would make a larger one is
    /// `TooLarge` before it is allocated.
    pub(crate) max_result: usize,
    /// The caller's trace context, from the call's metadata.
    pub(crate) trace: Option<Trace>,
    /// The entry point of the caller's scope, from the call's metadata.
    pub(crate) root: Option<u64>,
    /// The grant of authority of the caller's scope, from the call's metadata; not verified
    /// yet.
    pub(crate) authority: Option<String>,
    /// A stream call: the caller's first window. The adapter hands the items to
    /// [`Engine::stream_items`] within [`Engine::allowance`], and ends the stream with
    /// [`Engine::finish`].
    pub(crate) stream: Option<Window>,
}

/// What the engine tells the adapter.
#[derive(Debug)]
pub(crate) enum Event {
    /// The remote's `Hello` passed this link's checks: the adapter admits it peer-wide
    /// (no other live link claims that id) with [`Engine::accept`], or [`Engine::refuse`]s it.
    Hello {
        peer: PeerId,
        app_version: Option<String>,
        /// The blocks the remote can run.
        manifest: crate::wire::Manifest,
        /// The remote's proof of identity, bound to [`Engine::nonce`].
        proof: Option<String>,
    },
    /// The handshake completed.
    Up { remote: PeerId },
    /// Run a block; report its outcome with [`Engine::finish`]. A block still running at its
    /// deadline is aborted ([`Event::Abort`]) and answered `Timeout` by the engine: adapters
    /// arm no timer per call.
    Run(Run),
    /// Stop a running block (cancelled by the remote, or the link is over); no reply.
    Abort(u64),
    /// A stream call running here that had used up its credit got more: the adapter takes
    /// its next items, within [`Engine::allowance`].
    Credit(u64),
    /// The socket is gone (dropped, silent, or not reading) but the link waits to be resumed
    /// within its window: the adapter drops the socket; a connecting side dials again and
    /// hands the new socket to [`Engine::resuming`]. Pending calls wait.
    Suspended { remote: PeerId },
    /// The link was resumed on a new socket: what the remote lacked is sent again.
    Resumed { remote: PeerId },
    /// The link is over: flush the transmits, then drop the socket. Pending calls have
    /// failed with `ConnectionLost`.
    Closed {
        /// Why, for logs and events.
        reason: String,
        /// The handshake failure, if the link never came up.
        refused: Option<HandshakeError>,
        /// The remote, if the link was up when it ended.
        remote: Option<PeerId>,
    },
}

enum Phase {
    /// Waiting for the remote's `Hello`, until `deadline`.
    Handshaking {
        deadline: Instant,
    },
    /// The remote's hello passed; waiting for the adapter's decision.
    Admitting {
        remote: PeerId,
        remote_max: usize,
    },
    Live {
        remote: PeerId,
        remote_max: usize,
    },
    /// Over; `remote` is the peer it led to, if it ever came up.
    Closed {
        remote: Option<PeerId>,
    },
}

/// What an admitted call holds until it finishes: its frame's bytes on the link, and the
/// part of them taken from the peer's budget (none while the link is within its guaranteed
/// share).
#[derive(Debug, Clone, Copy)]
struct Charge {
    link: usize,
    peer: usize,
}

/// An admitted call waiting for a free slot.
struct Queued {
    run: Run,
    charged: Charge,
}

/// This side's own hello, sent first when connecting and after admission when accepting.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) local: PeerId,
    pub(crate) app_version: Option<String>,
    pub(crate) refuse_app_version_mismatch: bool,
}

/// One link's protocol state.
pub(crate) struct Engine {
    identity: Identity,
    role: Role,
    limits: Limits,
    budgets: Budgets,
    counters: Arc<Counters>,
    authorize: Authorize,
    /// Makes the proof of identity in this side's hello (accepting side only).
    prove: Option<Prove>,
    /// This side's nonce, sent in its hello.
    nonce: u128,
    /// The remote's nonce, once its hello arrived.
    remote_nonce: Option<u128>,
    phase: Phase,
    /// Call ids for this side's calls: taken by callers on any thread before they hand a
    /// call to the link's thread (so that they can cancel it by id).
    ids: Arc<AtomicU64>,
    /// Calls this side made over the link, waiting for their replies.
    pending: HashMap<u64, Reply>,
    /// Calls held while the replay buffer is full, in order (at most the link's pending-call
    /// slots).
    held: VecDeque<(u64, Request, Reply)>,
    /// The deadlines of pending calls, earliest first: one timer for the link instead of one
    /// per call. Entries of calls that completed are dropped when they come up (or when
    /// they outnumber the pending calls).
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Calls of the remote running here, with the bytes charged for each.
    running: HashMap<u64, Charge>,
    /// This side's stream calls: where their items go, and the credit given for them.
    streams: HashMap<u64, Incoming>,
    /// The remote's stream calls running here: what they sent, and may send.
    producing: HashMap<u64, Credit>,
    /// The deadlines of running calls, earliest first (stale entries as for `deadlines`):
    /// a call still running at its deadline is aborted and answers `Timeout`.
    run_deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Calls of the remote waiting for a slot, by id (O(1) duplicate checks and cancels) ...
    queued: HashMap<u64, Queued>,
    /// ... and in arrival order; ids cancelled meanwhile are skipped, and the order is
    /// compacted when it holds many of them.
    queue: VecDeque<u64>,
    /// Frame bytes of the remote's calls running or queued here ...
    inbound_bytes: usize,
    /// ... and the part of them taken from the peer's budget.
    peer_bytes: usize,
    /// Bytes of a fragmented message being assembled, charged to the peer's budget.
    fragment_bytes: usize,
    fragment_since: Option<Instant>,
    events: VecDeque<Event>,
    transmits: VecDeque<Transmit>,
    /// When a complete message (or a pong to our probe) last arrived.
    last_heard: Instant,
    next_ping: Instant,
    ping_nonce: u64,
    /// A pong is queued and not yet known to be written: no other is queued.
    pong_outstanding: bool,
    /// Pings of the remote (WebSocket and protocol) since `ping_window` began: a remote that
    /// pings more than [`MAX_PINGS_PER_INTERVAL`] times a ping interval is closed.
    pings: u32,
    ping_window: Instant,
    /// Bytes handed to the socket and not yet taken by it, as the adapter last reported.
    unsent: usize,
    stalled_since: Option<Instant>,
    /// When the link's credentials expire.
    expires_at: Option<Instant>,
    draining: bool,
    /// The accepting side: whether the connecting side's hello said it resumes.
    remote_resumable: bool,
    /// Session resume, once both sides agreed to it in their hellos.
    session: Option<Session>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("local", &self.identity.local)
            .field("role", &self.role)
            .field("pending", &self.pending.len())
            .field("running", &self.running.len())
            .field("queued", &self.queued.len())
            .finish_non_exhaustive()
    }
}

/// Cuts a name echoed in an error to [`MAX_ERROR_NAME`] bytes (on a character boundary).
fn truncated(name: &str) -> String {
    if name.len() <= MAX_ERROR_NAME {
        return name.to_owned();
    }
    let mut cut = crate::error::truncated(name.to_owned(), MAX_ERROR_NAME);
    cut.push_str("...");
    cut
}

impl Engine {
    /// A new link. The connecting side queues its `Hello` at once.
    pub(crate) fn new(
        identity: Identity,
        role: Role,
        limits: Limits,
        budgets: Budgets,
        counters: Arc<Counters>,
        authorize: Authorize,
        now: Instant,
    ) -> Self {
        let mut engine = Self {
            phase: Phase::Handshaking {
                deadline: now + limits.handshake_timeout,
            },
            next_ping: now + limits.ping_interval,
            identity,
            role,
            limits,
            budgets,
            counters,
            authorize,
            prove: None,
            nonce: uuid::Uuid::new_v4().as_u128(),
            remote_nonce: None,
            ids: Arc::new(AtomicU64::new(1)),
            pending: HashMap::new(),
            held: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            running: HashMap::new(),
            streams: HashMap::new(),
            producing: HashMap::new(),
            run_deadlines: BinaryHeap::new(),
            queued: HashMap::new(),
            queue: VecDeque::new(),
            inbound_bytes: 0,
            peer_bytes: 0,
            fragment_bytes: 0,
            fragment_since: None,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            last_heard: now,
            ping_nonce: 0,
            pong_outstanding: false,
            pings: 0,
            ping_window: now,
            unsent: 0,
            stalled_since: None,
            expires_at: None,
            draining: false,
            remote_resumable: false,
            session: None,
        };
        if role == Role::Connecting {
            engine.send_hello();
        }
        engine
    }

    /// Proves this side's identity in its hello with `prove` (an accepting side's; the
    /// connecting side speaks first and proves itself at the upgrade instead).
    #[cfg_attr(
        all(not(feature = "auth"), not(target_arch = "wasm32")),
        expect(dead_code, reason = "identities are proven and checked with auth only")
    )]
    pub(crate) fn prove_with(&mut self, prove: Prove) {
        self.prove = Some(prove);
    }

    /// This side's nonce: a proof of the remote's identity must be bound to it.
    #[cfg_attr(
        all(not(feature = "auth"), not(target_arch = "wasm32")),
        expect(dead_code, reason = "identities are proven and checked with auth only")
    )]
    pub(crate) fn nonce(&self) -> u128 {
        self.nonce
    }

    /// Closes the link when its credentials expire (`None`: never).
    pub(crate) fn expire_at(&mut self, at: Option<Instant>) {
        self.expires_at = at;
    }

    /// The remote peer, once the handshake completed (also after the link ended).
    fn remote(&self) -> Option<PeerId> {
        match self.phase {
            Phase::Live { remote, .. } => Some(remote),
            Phase::Closed { remote } => remote,
            Phase::Handshaking { .. } | Phase::Admitting { .. } => None,
        }
    }

    /// The largest message the remote accepts, once its hello arrived.
    pub(crate) fn remote_max(&self) -> Option<usize> {
        match self.phase {
            Phase::Live { remote_max, .. } | Phase::Admitting { remote_max, .. } => {
                Some(remote_max)
            }
            _ => None,
        }
    }

    /// Where callers take the ids of the calls they hand to [`Engine::call`].
    pub(crate) fn call_ids(&self) -> Arc<AtomicU64> {
        self.ids.clone()
    }

    /// A fresh call id (for callers on the link's own thread).
    #[cfg_attr(
        not(any(test, target_arch = "wasm32")),
        expect(
            dead_code,
            reason = "native callers take ids from `call_ids` on any thread"
        )
    )]
    pub(crate) fn next_call_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Deadline entries kept, and calls pending.
    #[cfg(test)]
    pub(super) fn deadline_entries(&self) -> (usize, usize) {
        (self.deadlines.len(), self.pending.len())
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed { .. })
    }

    /// The largest message the socket layer should let through now: a `Hello` is tiny, so
    /// before the handshake completed only [`Limits::max_hello_size`] bytes.
    pub(crate) fn max_inbound_message(&self) -> usize {
        match self.phase {
            Phase::Live { .. } => self.limits.max_message_size,
            _ => self.limits.max_hello_size,
        }
    }

    /// The next transmit for the socket.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the runtime.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::on_timeout`] is due next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        };
        match self.phase {
            Phase::Closed { .. } => return None,
            Phase::Handshaking { deadline } => consider(Some(deadline)),
            Phase::Admitting { .. } => {}
            Phase::Live { .. } => {
                match self
                    .session
                    .as_ref()
                    .and_then(|session| session.suspended_until)
                {
                    // No socket: no probes, only the window.
                    Some(until) if !self.awaiting_resume() => consider(Some(until)),
                    Some(until) => {
                        consider(Some(until));
                        consider(Some(self.last_heard + self.limits.liveness_timeout));
                    }
                    None => {
                        consider(Some(self.next_ping));
                        consider(Some(self.last_heard + self.limits.liveness_timeout));
                    }
                }
                consider(self.deadlines.peek().map(|Reverse((at, _))| *at));
                consider(self.run_deadlines.peek().map(|Reverse((at, _))| *at));
            }
        }
        consider(
            self.fragment_since
                .map(|since| since + self.limits.fragment_timeout),
        );
        consider(
            self.stalled_since
                .map(|since| since + self.limits.write_timeout),
        );
        consider(self.expires_at);
        next
    }

    /// Time passed: handshake, liveness, fragment, write and credential deadlines; probes.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        if let Phase::Handshaking { deadline } = self.phase
            && now >= deadline
        {
            return self.fail_handshake(HandshakeError::Timeout, close::PROTOCOL);
        }
        if self
            .fragment_since
            .is_some_and(|since| now >= since + self.limits.fragment_timeout)
        {
            return self.violation(close::POLICY, "fragmented message did not complete in time");
        }
        if self
            .stalled_since
            .is_some_and(|since| now >= since + self.limits.write_timeout)
        {
            // The close frame cannot get through a full buffer either: drop the socket.
            if self.suspend(now) {
                return;
            }
            return self.violation(close::POLICY, "the remote does not read");
        }
        if let Some(until) = self
            .session
            .as_ref()
            .and_then(|session| session.suspended_until)
            && now >= until
        {
            tracing::info!("the link was not resumed within its window");
            return self.end("not resumed within the resume window".to_owned(), None);
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            tracing::info!(target: "distributed_scope::auth", "token expired, closing link");
            return self.close(close::POLICY, "token expired");
        }
        if let Phase::Live { remote, remote_max } = self.phase {
            self.expire_calls(remote, now);
            self.expire_runs(remote_max, now);
            let suspended = self.is_suspended();
            let silent = now.saturating_duration_since(self.last_heard);
            if (!suspended || self.awaiting_resume()) && silent >= self.limits.liveness_timeout {
                tracing::warn!(peer = %remote, ?silent, "link silent past the liveness timeout");
                if self.suspend(now) {
                    return;
                }
                return self.end(format!("no traffic for {} ms", silent.as_millis()), None);
            }
            if !suspended && now >= self.next_ping {
                if let Some(received) = self.session.as_mut().and_then(Session::acknowledge) {
                    self.send_frame(&Frame::Ack { received });
                }
                self.next_ping = now + self.limits.ping_interval;
                self.ping_nonce += 1;
                self.send_frame(&Frame::Ping {
                    nonce: self.ping_nonce,
                });
                self.transmits.push_back(Transmit::Ping);
            }
        }
    }

    /// Fails the pending calls whose deadline passed with `Timeout`, and tells the remote to
    /// stop them.
    fn expire_calls(&mut self, remote: PeerId, now: Instant) {
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            self.streams.remove(&id);
            if let Some(at) = self.held.iter().position(|(held, ..)| *held == id)
                && let Some((_, _, reply)) = self.held.remove(at)
            {
                let _caller_gone = reply.send(Err(RemoteError::Timeout {
                    peer: Some(remote),
                    block: None,
                }));
                continue;
            }
            if let Some(reply) = self.pending.remove(&id) {
                let _caller_gone = reply.send(Err(RemoteError::Timeout {
                    peer: Some(remote),
                    block: None,
                }));
                self.send_data(&Frame::Cancel { id });
            }
        }
    }

    /// Aborts the remote's calls still running at their deadline; they answer `Timeout`.
    fn expire_runs(&mut self, remote_max: usize, now: Instant) {
        let mut expired = false;
        while let Some(Reverse((at, id))) = self.run_deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.run_deadlines.pop();
            if let Some(charged) = self.running.remove(&id) {
                self.producing.remove(&id);
                expired = true;
                self.release(charged);
                self.events.push_back(Event::Abort(id));
                let error = RemoteError::Timeout {
                    peer: None,
                    block: None,
                };
                self.reply_error(id, remote_max, error);
            }
        }
        if expired {
            self.start_queued(remote_max, now);
        }
    }

    /// Starts an admitted call: the adapter runs it, this engine bounds its time.
    fn start_run(&mut self, run: Run, charged: Charge) {
        if self.run_deadlines.len() > 2 * self.running.len() + 64 {
            let running = &self.running;
            self.run_deadlines
                .retain(|Reverse((_, id))| running.contains_key(id));
        }
        self.run_deadlines.push(Reverse((run.deadline, run.id)));
        self.running.insert(run.id, charged);
        if let Some(window) = run.stream {
            self.producing.insert(run.id, Credit::new(window));
        }
        self.events.push_back(Event::Run(run));
    }

    /// The adapter's count of bytes handed to the socket and not yet taken by it.
    pub(crate) fn on_unsent(&mut self, unsent: usize, now: Instant) {
        if self.is_suspended() && !self.awaiting_resume() {
            return;
        }
        let progress = unsent < self.unsent;
        self.unsent = unsent;
        if unsent == 0 {
            self.pong_outstanding = false;
        }
        if unsent <= self.limits.max_send_buffer {
            self.stalled_since = None;
        } else if progress || self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
    }

    /// A continuation frame of a fragmented message arrived, `bytes` long.
    pub(crate) fn on_fragment(&mut self, bytes: usize, now: Instant) {
        if self.is_closed() {
            return;
        }
        self.fragment_since.get_or_insert(now);
        if self.fragment_bytes + bytes > self.max_inbound_message() {
            return self.violation(close::SIZE, "fragmented message over the size limit");
        }
        if !self.budgets.fragments.try_take(bytes) {
            return self.violation(close::POLICY, "peer-wide budget for fragments exhausted");
        }
        self.fragment_bytes += bytes;
    }

    fn fragment_done(&mut self) {
        // Most messages are not fragmented: no shared counter to touch for them.
        if self.fragment_since.take().is_some() || self.fragment_bytes > 0 {
            self.budgets.fragments.give(self.fragment_bytes);
            self.fragment_bytes = 0;
        }
    }

    /// A WebSocket ping: answered once the link is up, with at most one pong outstanding.
    pub(crate) fn on_ping(&mut self, payload: Bytes, now: Instant) {
        if !self.count_ping(now) {
            return;
        }
        if matches!(self.phase, Phase::Live { .. }) && !self.pong_outstanding {
            self.pong_outstanding = true;
            self.transmits.push_back(Transmit::Pong(payload));
        }
    }

    /// Counts a ping of the remote; false (and the link closes) past the rate limit.
    fn count_ping(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.ping_window) >= self.limits.ping_interval {
            self.ping_window = now;
            self.pings = 0;
        }
        self.pings += 1;
        if self.pings > MAX_PINGS_PER_INTERVAL {
            self.violation(close::POLICY, "too many pings");
            return false;
        }
        true
    }

    /// A WebSocket pong: the remote answered a probe.
    pub(crate) fn on_pong(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Live { .. }) {
            self.last_heard = now;
        }
    }

    /// A text frame: not part of the protocol.
    pub(crate) fn on_text(&mut self) {
        self.violation(close::UNSUPPORTED, "text frames are not supported");
    }

    /// The socket layer refused a frame (bad framing, too large).
    pub(crate) fn on_violation(&mut self, code: u16, reason: &str) {
        self.violation(code, reason);
    }

    /// The remote's close frame (its code, if any, and description): the link is over, unless
    /// the remote says the connection was [`close::INTERRUPTED`] (a browser page, which
    /// cannot drop a connection without a close frame): then it waits to be resumed.
    pub(crate) fn on_close(
        &mut self,
        code: Option<u16>,
        description: Option<String>,
        now: Instant,
    ) {
        if self.is_closed() {
            return;
        }
        if code == Some(close::INTERRUPTED) && self.suspend(now) {
            return;
        }
        let reason = match description.filter(|text| !text.is_empty()) {
            Some(text) => format!("closed by the remote: {text}"),
            None => "closed by the remote".to_owned(),
        };
        self.transmits.push_back(Transmit::Close {
            code: close::NORMAL,
            reason: String::new(),
        });
        let refused = match self.phase {
            Phase::Handshaking { .. } | Phase::Admitting { .. } => {
                Some(HandshakeError::Refused(reason.clone()))
            }
            _ => None,
        };
        self.end(reason, refused);
    }

    /// The socket is gone without a close frame: a resumable link waits to be resumed.
    pub(crate) fn lost(&mut self, now: Instant) {
        if self.is_closed() || self.suspend(now) {
            return;
        }
        self.end_now();
    }

    /// The link is over now, resumable or not (its adapter is going away).
    pub(crate) fn end_now(&mut self) {
        if self.is_closed() {
            return;
        }
        let refused = match self.phase {
            Phase::Handshaking { .. } | Phase::Admitting { .. } => Some(HandshakeError::Closed),
            _ => None,
        };
        self.end("the connection dropped".to_owned(), refused);
    }

    /// A complete binary message.
    pub(crate) fn on_message(&mut self, bytes: &Bytes, now: Instant) {
        self.fragment_done();
        Counters::add(&self.counters.bytes_received, bytes.len() as u64);
        if bytes.len() > self.max_inbound_message() {
            return self.violation(close::SIZE, "message over the size limit");
        }
        match self.phase {
            Phase::Handshaking { .. } => {
                self.last_heard = now;
                self.on_hello(bytes);
            }
            Phase::Admitting { .. } => {
                self.violation(close::PROTOCOL, "frame before the handshake completed");
            }
            Phase::Live { .. } if self.awaiting_resume() => {
                self.last_heard = now;
                self.on_resume(bytes, now);
            }
            Phase::Live { remote, remote_max } => {
                self.last_heard = now;
                if let Some(session) = &mut self.session {
                    session.confirmed = true;
                }
                self.on_frame(remote, remote_max, bytes, now);
            }
            Phase::Closed { .. } => {}
        }
    }

    fn on_hello(&mut self, bytes: &[u8]) {
        let expect = Expect {
            local: self.identity.local,
            app_version: &self.identity.app_version,
            refuse_app_version_mismatch: self.identity.refuse_app_version_mismatch,
        };
        match check_hello(bytes, &expect) {
            Ok((hello, remote_max)) => {
                self.remote_nonce = Some(hello.nonce);
                self.remote_resumable = hello.resumable;
                if self.role == Role::Connecting
                    && let Some(keys) = hello.session
                    && !self.limits.resume_window.is_zero()
                {
                    self.session = Some(Session::new(
                        keys,
                        self.limits.resume_window,
                        self.limits.max_replay_bytes,
                    ));
                }
                self.phase = Phase::Admitting {
                    remote: hello.peer,
                    remote_max,
                };
                self.events.push_back(Event::Hello {
                    peer: hello.peer,
                    app_version: hello.app_version,
                    manifest: hello.manifest,
                    proof: hello.proof,
                });
            }
            Err(reason) => {
                if matches!(reason, HandshakeError::BadMagic | HandshakeError::Malformed) {
                    Counters::add(&self.counters.refused_frames, 1);
                }
                let code = match reason {
                    HandshakeError::AppVersion { .. } => close::POLICY,
                    _ => close::PROTOCOL,
                };
                self.fail_handshake(reason, code);
            }
        }
    }

    /// Admits the link after [`Event::Hello`]: it is up.
    pub(crate) fn accept(&mut self, now: Instant) {
        let Phase::Admitting { remote, remote_max } = self.phase else {
            return;
        };
        if self.role == Role::Accepting {
            self.send_hello();
        }
        self.phase = Phase::Live { remote, remote_max };
        self.last_heard = now;
        self.next_ping = now + self.limits.ping_interval;
        // The connecting side confirms the session at once: the accepting side resumes a
        // link only once it heard from its remote after the handshake.
        if self.role == Role::Connecting
            && let Some(session) = &mut self.session
        {
            session.confirmed = true;
            self.send_frame(&Frame::Ack { received: 0 });
        }
        self.events.push_back(Event::Up { remote });
    }

    /// Refuses the link after [`Event::Hello`], telling the remote why.
    pub(crate) fn refuse(&mut self, reason: HandshakeError) {
        self.fail_handshake(reason, close::POLICY);
    }

    fn fail_handshake(&mut self, reason: HandshakeError, code: u16) {
        if self.is_closed() {
            return;
        }
        self.transmits.push_back(Transmit::Close {
            code,
            // Cut to what a close frame carries.
            reason: crate::error::truncated(reason.to_string(), MAX_CLOSE_REASON),
        });
        self.end(reason.to_string(), Some(reason));
    }

    fn send_hello(&mut self) {
        let proof = match (&self.prove, self.remote_nonce) {
            (Some(prove), Some(nonce)) => prove(nonce),
            _ => None,
        };
        let resumes = !self.limits.resume_window.is_zero();
        // The accepting side makes the session, if both sides resume.
        if self.role == Role::Accepting && resumes && self.remote_resumable {
            self.session = Some(Session::new(
                SessionKeys::new(),
                self.limits.resume_window,
                self.limits.max_replay_bytes,
            ));
        }
        let hello = Hello {
            peer: self.identity.local,
            max_message_size: self.limits.max_message_size as u64,
            app_version: self.identity.app_version.clone(),
            manifest: crate::manifest::local().clone(),
            nonce: self.nonce,
            proof,
            resumable: self.role == Role::Connecting && resumes,
            session: self.session.as_ref().map(|session| session.keys),
        };
        match hello.to_bytes() {
            Ok(bytes) => self.transmit(Bytes::from(bytes)),
            Err(error) => tracing::error!(%error, "cannot encode hello"),
        }
    }

    fn transmit(&mut self, bytes: Bytes) {
        Counters::add(&self.counters.bytes_sent, bytes.len() as u64);
        self.transmits.push_back(Transmit::Binary(bytes));
    }

    fn send_frame(&mut self, frame: &Frame<'_>) {
        match wire::encode(frame) {
            Ok(bytes) => self.transmit(Bytes::from(bytes)),
            Err(error) => tracing::error!(%error, "cannot encode a frame"),
        }
    }

    /// A numbered frame (one that carries calls): kept for a resume until acknowledged, and
    /// written now unless the socket is gone.
    fn transmit_data(&mut self, bytes: Bytes) {
        if let Some(session) = &mut self.session {
            session.sent(&bytes);
            if session.suspended_until.is_some() {
                return;
            }
        }
        self.transmit(bytes);
    }

    fn send_data(&mut self, frame: &Frame<'_>) {
        match wire::encode(frame) {
            Ok(bytes) => self.transmit_data(Bytes::from(bytes)),
            Err(error) => tracing::error!(%error, "cannot encode a frame"),
        }
    }

    /// The socket is gone but the link may be resumed: it waits for that within its window
    /// (a later loss keeps the first deadline). False if it cannot be resumed.
    fn suspend(&mut self, now: Instant) -> bool {
        let Phase::Live { remote, .. } = self.phase else {
            return false;
        };
        if self.draining {
            return false;
        }
        let Some(session) = &mut self.session else {
            return false;
        };
        if !session.confirmed {
            return false;
        }
        if session.suspended_until.is_some() && !session.awaiting_resume {
            // Already without a socket.
            return true;
        }
        let until = session.suspended_until.unwrap_or(now + session.window);
        session.suspended_until = Some(until);
        session.awaiting_resume = false;
        tracing::info!(peer = %remote, "link suspended, waiting to be resumed");
        // What was queued for the old socket: numbered frames are in the replay buffer.
        self.transmits.clear();
        self.fragment_done();
        self.stalled_since = None;
        self.unsent = 0;
        self.pong_outstanding = false;
        self.events.push_back(Event::Suspended { remote });
        true
    }

    /// Whether the link waits to be resumed (its socket is gone, or a new one has not
    /// resumed it yet).
    pub(crate) fn is_suspended(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|session| session.suspended_until.is_some())
    }

    fn awaiting_resume(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|session| session.awaiting_resume)
    }

    /// What a connecting side presents to resume the link: the session's keys and how many
    /// numbered frames it received.
    pub(crate) fn resume_token(&self) -> Option<(SessionKeys, u64)> {
        let session = self.session.as_ref()?;
        session
            .suspended_until
            .map(|_| (session.keys, session.received_count()))
    }

    /// The session's keys, once both sides agreed to resume the link.
    pub(crate) fn session_keys(&self) -> Option<SessionKeys> {
        self.session.as_ref().map(|session| session.keys)
    }

    /// The connecting side reconnected: the new socket's first message must be the
    /// accepting side's `Resume`.
    pub(crate) fn resuming(&mut self, now: Instant) {
        if let Some(session) = &mut self.session
            && session.suspended_until.is_some()
        {
            session.awaiting_resume = true;
            self.last_heard = now;
        }
    }

    /// The accepting side takes a new socket for the link, whose remote received
    /// `received` numbered frames: it answers `Resume` and sends again what the remote
    /// lacks. False (and the link ends) if that cannot be done.
    pub(crate) fn adopt(&mut self, received: u64, now: Instant) -> bool {
        if !self.is_suspended() && !self.suspend(now) {
            return false;
        }
        self.resume_after(received, now, true)
    }

    /// The first message on a connecting side's new socket.
    fn on_resume(&mut self, bytes: &Bytes, now: Instant) {
        match wire::decode_frame(bytes, self.limits.max_message_size) {
            Ok(Frame::Resume { received }) => {
                self.resume_after(received, now, false);
            }
            _ => self.violation(close::PROTOCOL, "expected the answer to a resume"),
        }
    }

    /// Resumes the link with a remote that received `received` numbered frames: every later
    /// one is sent again, in order, after this side's `Resume` if it `answer`s.
    fn resume_after(&mut self, received: u64, now: Instant, answer: bool) -> bool {
        let Phase::Live { remote, .. } = self.phase else {
            return false;
        };
        let Some(session) = &mut self.session else {
            return false;
        };
        let Ok(again) = session.replay_after(received) else {
            self.violation(close::PROTOCOL, "cannot resume: frames it lacks are gone");
            return false;
        };
        session.suspended_until = None;
        session.awaiting_resume = false;
        let ours = session.received_count();
        if answer {
            self.send_frame(&Frame::Resume { received: ours });
        }
        for frame in again {
            self.transmit(frame);
        }
        self.release_held(now);
        self.last_heard = now;
        self.next_ping = now + self.limits.ping_interval;
        tracing::info!(peer = %remote, "link resumed");
        self.events.push_back(Event::Resumed { remote });
        true
    }

    /// The replay buffer is at its bound: the link takes no new work (calls, stream items)
    /// until the remote acknowledges some.
    pub(crate) fn replay_full(&self) -> bool {
        self.session.as_ref().is_some_and(Session::is_full)
    }

    /// A numbered frame of `bytes` bytes arrived: acknowledged when one is due.
    fn count_received(&mut self, bytes: usize) {
        if let Some(session) = &mut self.session
            && session.received(bytes)
            && let Some(received) = session.acknowledge()
        {
            self.send_frame(&Frame::Ack { received });
        }
    }

    /// A protocol violation: counted, logged, and the link closes with `code`.
    fn violation(&mut self, code: u16, reason: &str) {
        if self.is_closed() {
            return;
        }
        Counters::add(&self.counters.refused_frames, 1);
        tracing::warn!(reason, "frame refused, closing link");
        self.transmits.push_back(Transmit::Close {
            code,
            reason: reason.to_owned(),
        });
        let refused = match self.phase {
            Phase::Handshaking { .. } | Phase::Admitting { .. } => {
                Some(HandshakeError::Protocol(reason.to_owned()))
            }
            _ => None,
        };
        self.end(reason.to_owned(), refused);
    }

    /// Closes the link on purpose (`disconnect`, token expiry).
    pub(crate) fn close(&mut self, code: u16, reason: &str) {
        if self.is_closed() {
            return;
        }
        self.transmits.push_back(Transmit::Close {
            code,
            reason: reason.to_owned(),
        });
        let refused = match self.phase {
            Phase::Handshaking { .. } | Phase::Admitting { .. } => Some(HandshakeError::Closed),
            _ => None,
        };
        self.end(reason.to_owned(), refused);
    }

    /// The end of the link: pending calls fail with `ConnectionLost`, running ones are
    /// aborted, budgets are given back.
    fn end(&mut self, reason: String, refused: Option<HandshakeError>) {
        let was_up = match self.phase {
            Phase::Live { remote, .. } => Some(remote),
            _ => None,
        };
        self.phase = Phase::Closed { remote: was_up };
        // Calls are only sent on a live link: pending ones know their peer.
        self.deadlines.clear();
        let held: Vec<Reply> = self.held.drain(..).map(|(_, _, reply)| reply).collect();
        for reply in held {
            let _caller_gone = reply.send(Err(RemoteError::ConnectionLost {
                peer: was_up.unwrap_or(self.identity.local),
                block: None,
            }));
        }
        for (_, reply) in self.pending.drain() {
            let lost = was_up.map_or(
                RemoteError::ShuttingDown {
                    peer: None,
                    block: None,
                },
                |peer| RemoteError::ConnectionLost { peer, block: None },
            );
            let _caller_gone = reply.send(Err(lost));
        }
        // Items delivered stay with their consumers, which see the end after them.
        self.streams.clear();
        self.producing.clear();
        self.run_deadlines.clear();
        for (id, _) in self.running.drain() {
            self.events.push_back(Event::Abort(id));
        }
        self.queued.clear();
        self.queue.clear();
        self.budgets.calls.give(self.peer_bytes);
        self.inbound_bytes = 0;
        self.peer_bytes = 0;
        self.fragment_done();
        self.stalled_since = None;
        self.events.push_back(Event::Closed {
            reason,
            refused,
            remote: was_up,
        });
    }

    fn on_frame(&mut self, remote: PeerId, remote_max: usize, bytes: &Bytes, now: Instant) {
        let frame: Frame<'_> = match wire::decode_frame(bytes, self.limits.max_message_size) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(peer = %remote, %error, "undecodable frame");
                let code = match error {
                    RemoteError::TooLarge { .. } => close::SIZE,
                    _ => close::PROTOCOL,
                };
                return self.violation(code, "undecodable frame");
            }
        };
        if matches!(
            frame,
            Frame::Call { .. }
                | Frame::Reply { .. }
                | Frame::Cancel { .. }
                | Frame::Items { .. }
                | Frame::Credit { .. }
        ) {
            self.count_received(bytes.len());
        }
        match frame {
            Frame::Call {
                id,
                block,
                name,
                deadline_ms,
                metadata,
                captures,
            } => {
                Counters::add(&self.counters.calls_received, 1);
                if metadata.len() > self.limits.max_metadata_entries
                    || metadata.bytes() > self.limits.max_metadata_bytes
                {
                    return self.violation(close::POLICY, "call metadata over its limits");
                }
                let trace = metadata.get(Trace::KEY).and_then(Trace::from_traceparent);
                let root = metadata
                    .get(ROOT_KEY)
                    .and_then(|root| u64::from_str_radix(root, 16).ok());
                let authority = metadata.get(GRANT_KEY).map(str::to_owned);
                let stream = match metadata.get(STREAM_KEY).map(Window::parse) {
                    None => None,
                    Some(Some(window)) => Some(window),
                    Some(None) => {
                        return self.violation(close::PROTOCOL, "malformed stream window");
                    }
                };
                let wanted = std::time::Duration::from_millis(deadline_ms);
                let call = Inbound {
                    id,
                    block,
                    deadline: now + wanted.min(self.limits.max_inbound_deadline),
                    captures: bytes.slice_ref(captures),
                    frame_len: bytes.len(),
                    trace,
                    root,
                    authority,
                    stream,
                };
                self.on_call(remote, remote_max, call, &name);
            }
            Frame::Reply { id, result } => match self.pending.remove(&id) {
                Some(reply) => {
                    self.streams.remove(&id);
                    let result = match result {
                        ReplyBody::Ok(output) => Ok(bytes.slice_ref(output)),
                        ReplyBody::Err(error) => Err(error),
                    };
                    let _caller_gone = reply.send(result);
                }
                None => {
                    Counters::add(&self.counters.late_replies, 1);
                    tracing::debug!(peer = %remote, id, "late or unknown reply dropped");
                }
            },
            Frame::Cancel { id } => {
                self.producing.remove(&id);
                if let Some(charged) = self.running.remove(&id) {
                    self.release(charged);
                    self.events.push_back(Event::Abort(id));
                    self.start_queued(remote_max, now);
                } else if let Some(queued) = self.queued.remove(&id) {
                    self.release(queued.charged);
                    self.compact_queue();
                } else {
                    tracing::debug!(peer = %remote, id, "cancel for a call not running here");
                }
            }
            Frame::Ping { nonce } => {
                if self.count_ping(now) && !self.pong_outstanding {
                    self.pong_outstanding = true;
                    self.send_frame(&Frame::Pong { nonce });
                }
            }
            Frame::Pong { .. } => {}
            Frame::Items { id, count, items } => {
                let Some(stream) = self.streams.get_mut(&id) else {
                    // The stream was cancelled or timed out here meanwhile.
                    Counters::add(&self.counters.late_replies, 1);
                    return;
                };
                if count == 0 || !stream.credit.may_take(count) {
                    return self.violation(close::PROTOCOL, "stream items beyond their credit");
                }
                stream.credit.sent(count, items.len());
                stream.inbox.push(bytes.slice_ref(items), count);
            }
            Frame::Ack { received } => {
                let acknowledged = self
                    .session
                    .as_mut()
                    .map(|session| session.acknowledged(received));
                if matches!(acknowledged, Some(Err(_))) {
                    return self.violation(close::PROTOCOL, "acknowledged frames never sent");
                }
                self.release_held(now);
            }
            Frame::Resume { .. } => {
                self.violation(close::PROTOCOL, "resume on a link not resuming");
            }
            Frame::Credit { id, items, bytes } => {
                if let Some(credit) = self.producing.get_mut(&id) {
                    let was_blocked = credit.allowance().0 == 0;
                    credit.grant(items, bytes);
                    if was_blocked && credit.allowance().0 > 0 {
                        self.events.push_back(Event::Credit(id));
                    }
                }
            }
        }
    }

    fn on_call(&mut self, remote: PeerId, remote_max: usize, call: Inbound, name: &str) {
        let id = call.id;
        if self.running.contains_key(&id) || self.queued.contains_key(&id) {
            // Never run a call twice.
            Counters::add(&self.counters.refused_frames, 1);
            tracing::warn!(peer = %remote, id, "duplicate call id ignored");
            return;
        }
        if self.draining {
            return self.reply_error(
                id,
                remote_max,
                RemoteError::ShuttingDown {
                    peer: None,
                    block: Some(truncated(name)),
                },
            );
        }
        // The block this call would run: a named block by its name and id, an anonymous one
        // by its content id (its line-based name differs between builds). What is authorized
        // is this callee's own name for the block it would run, never the caller's claim;
        // and it is authorized before anything else, so that a refused caller learns nothing
        // more, and the captures stay opaque.
        let resolved = block::resolve(call.block, name);
        let authorized = resolved.as_ref().map_or(name, |entry| entry.info.name());
        let hop = resolved.as_ref().is_ok_and(|entry| {
            !entry.info.is_entry_point() && call.root == Some(entry.info.entry_point())
        });
        if let Err(error) = (self.authorize)(remote, authorized, hop) {
            return self.reply_error(id, remote_max, truncate_error(error));
        }
        let entry = match resolved {
            Ok(entry) => entry,
            Err(error) => return self.reply_error(id, remote_max, truncate_error(error)),
        };
        if entry.info.is_stream() != call.stream.is_some() {
            let error = RemoteError::VersionMismatch {
                peer: None,
                block: entry.info.name().to_owned(),
            };
            return self.reply_error(id, remote_max, truncate_error(error));
        }
        // A nested block runs only as a hop of a scope whose root call was its entry point:
        // called directly, it would skip the enclosing block's own checks.
        if !entry.info.is_entry_point() && !hop {
            tracing::info!(
                target: "distributed_scope::auth",
                decision = "deny",
                block = entry.info.name(),
                peer = %remote.label(),
                "a nested block called outside its entry point's scope"
            );
            let error = RemoteError::Forbidden {
                block: entry.info.name().to_owned(),
                subject: "a call outside the block's entry point".to_owned(),
                peer: None,
            };
            return self.reply_error(id, remote_max, truncate_error(error));
        }
        let overloaded = || RemoteError::Overloaded {
            peer: None,
            block: Some(entry.info.name().to_owned()),
        };
        let slot_free = self.running.len() < self.limits.max_inbound_calls;
        if !slot_free && self.queued.len() >= self.limits.max_queued_calls {
            return self.reply_error(id, remote_max, overloaded());
        }
        let Some(charged) = self.charge(call.frame_len) else {
            return self.reply_error(id, remote_max, overloaded());
        };
        let run = Run {
            id,
            entry,
            remote,
            deadline: call.deadline,
            captures: call.captures,
            max_result: remote_max,
            trace: call.trace,
            root: call.root,
            authority: call.authority,
            stream: call.stream,
        };
        if slot_free {
            self.start_run(run, charged);
        } else {
            self.queue.push_back(id);
            self.queued.insert(id, Queued { run, charged });
        }
    }

    /// Takes a call frame's bytes from the link's budget and, beyond the link's guaranteed
    /// share, from the peer's: so that links filling the peer's budget cannot lock out
    /// another link's small calls.
    fn charge(&mut self, bytes: usize) -> Option<Charge> {
        if self.inbound_bytes + bytes > self.limits.max_inbound_bytes {
            return None;
        }
        let peer = if self.inbound_bytes + bytes <= GUARANTEED_INBOUND_BYTES {
            0
        } else if self.budgets.calls.try_take(bytes) {
            bytes
        } else {
            return None;
        };
        self.inbound_bytes += bytes;
        self.peer_bytes += peer;
        Some(Charge { link: bytes, peer })
    }

    fn release(&mut self, charged: Charge) {
        self.inbound_bytes -= charged.link;
        self.peer_bytes -= charged.peer;
        self.budgets.calls.give(charged.peer);
    }

    /// Drops cancelled ids from the arrival order once they outnumber the live ones.
    fn compact_queue(&mut self) {
        if self.queue.len() > 64 && self.queue.len() > 2 * self.queued.len() {
            let queued = &self.queued;
            self.queue.retain(|id| queued.contains_key(id));
        }
    }

    /// Starts queued calls while slots are free; a call whose deadline passed while it
    /// waited answers `Timeout` without running.
    fn start_queued(&mut self, remote_max: usize, now: Instant) {
        while self.running.len() < self.limits.max_inbound_calls {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            let Some(queued) = self.queued.remove(&id) else {
                continue;
            };
            if queued.run.deadline <= now {
                self.release(queued.charged);
                let error = RemoteError::Timeout {
                    peer: None,
                    block: Some(queued.run.entry.info.name().to_owned()),
                };
                self.reply_error(id, remote_max, error);
                continue;
            }
            self.start_run(queued.run, queued.charged);
        }
    }

    /// A block started by [`Event::Run`] finished: its reply is queued. A result over the
    /// remote's limit was refused as `TooLarge` before it was allocated (see [`Run`]).
    pub(crate) fn finish(&mut self, id: u64, result: Result<Payload, RemoteError>, now: Instant) {
        let Phase::Live { remote_max, .. } = self.phase else {
            return;
        };
        let Some(charged) = self.running.remove(&id) else {
            // Aborted meanwhile: the remote expects no reply.
            return;
        };
        self.producing.remove(&id);
        self.release(charged);
        match wire::reply_frame(id, result, remote_max, Some(self.identity.local)) {
            Ok(bytes) => self.transmit_data(bytes),
            Err(error) => tracing::error!(%error, "cannot encode a reply"),
        }
        self.start_queued(remote_max, now);
    }

    fn reply_error(&mut self, id: u64, remote_max: usize, error: RemoteError) {
        match wire::reply_frame(id, Err(error), remote_max, Some(self.identity.local)) {
            Ok(bytes) => self.transmit_data(bytes),
            Err(error) => tracing::error!(%error, "cannot encode a reply"),
        }
    }

    /// Sends call `id` (from [`Engine::call_ids`]); its reply (or failure) goes to `reply`.
    /// Fails at once, through `reply`, if the link is not up, the id is in use, or the call is
    /// over the remote's size limit; fails with `Timeout` (and cancels it on the remote) at
    /// `request.deadline` if no reply came by then.
    pub(crate) fn call(&mut self, id: u64, request: Request, reply: Reply, now: Instant) {
        let Phase::Live { remote, remote_max } = self.phase else {
            let _caller_gone = reply.send(Err(RemoteError::ConnectionLost {
                peer: self.remote().unwrap_or(self.identity.local),
                block: None,
            }));
            return;
        };
        if self.pending.contains_key(&id) {
            let _caller_gone = reply.send(Err(RemoteError::BadFrame {
                peer: Some(remote),
                reason: format!("call id {id} is in use"),
            }));
            return;
        }
        let size = request.captures.len() + request.name.len() + wire::CALL_ROOM;
        if size > remote_max {
            let _caller_gone = reply.send(Err(RemoteError::TooLarge {
                peer: Some(remote),
                block: None,
                size: size as u64,
                limit: remote_max as u64,
            }));
            return;
        }
        // A full replay buffer holds new calls, in order, until acknowledgements make room
        // (their deadlines still apply).
        if self.replay_full() || !self.held.is_empty() {
            self.push_deadline(request.deadline, id);
            self.held.push_back((id, request, reply));
            return;
        }
        self.send_call(id, request, reply, now);
    }

    /// Sends call `id` (checked by [`Engine::call`]).
    fn send_call(&mut self, id: u64, request: Request, reply: Reply, now: Instant) {
        let deadline_ms = wire::deadline_ms(request.deadline.saturating_duration_since(now));
        // Only traced calls and calls from inside a block carry metadata (and allocate).
        let traceparent = request.trace.map(Trace::to_traceparent);
        let root = request.root.map(|root| format!("{root:016x}"));
        let mut metadata: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        if let Some(value) = &traceparent {
            metadata.push((Trace::KEY.into(), value.as_str().into()));
        }
        if let Some(root) = &root {
            metadata.push((ROOT_KEY.into(), root.as_str().into()));
        }
        if let Some(grant) = &request.authority {
            metadata.push((GRANT_KEY.into(), grant.as_ref().into()));
        }
        let window = request
            .stream
            .as_ref()
            .map(|inbox| inbox.window().to_string());
        if let Some(window) = &window {
            metadata.push((STREAM_KEY.into(), window.as_str().into()));
        }
        // The captures were encoded with room for this header: no copy of them here.
        match request.captures.into_call_frame(
            id,
            request.block,
            request.name,
            deadline_ms,
            &metadata,
        ) {
            Ok(bytes) => {
                Counters::add(&self.counters.calls_sent, 1);
                self.pending.insert(id, reply);
                if let Some(inbox) = request.stream {
                    let credit = Credit::new(inbox.window());
                    self.streams.insert(id, Incoming { inbox, credit });
                }
                self.push_deadline(request.deadline, id);
                self.transmit_data(bytes);
            }
            Err(error) => {
                let _caller_gone = reply.send(Err(error));
            }
        }
    }

    /// Keeps the deadline of call `id` (pending or held), dropping entries of calls that
    /// completed once they outnumber the live ones.
    fn push_deadline(&mut self, deadline: Instant, id: u64) {
        if self.deadlines.len() > 2 * (self.pending.len() + self.held.len()) + 64 {
            let (pending, held) = (&self.pending, &self.held);
            self.deadlines.retain(|Reverse((_, id))| {
                pending.contains_key(id) || held.iter().any(|(held, ..)| held == id)
            });
        }
        self.deadlines.push(Reverse((deadline, id)));
    }

    /// Sends the calls held while the replay buffer was full, as it makes room.
    fn release_held(&mut self, now: Instant) {
        while !self.replay_full()
            && let Some((id, request, reply)) = self.held.pop_front()
        {
            self.send_call(id, request, reply, now);
        }
    }

    /// The caller of call `id` stopped waiting: the callee is told to stop.
    pub(crate) fn cancel(&mut self, id: u64) {
        if let Some(at) = self.held.iter().position(|(held, ..)| *held == id) {
            self.held.remove(at);
            return;
        }
        self.streams.remove(&id);
        if self.pending.remove(&id).is_some() && !self.is_closed() {
            self.send_data(&Frame::Cancel { id });
        }
    }

    /// The consumer of stream call `id` took items: the callee may send as many more (one
    /// `Credit` frame per half window taken, as the consumer asks).
    pub(crate) fn credit(&mut self, id: u64) {
        if self.is_closed() {
            return;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let (items, bytes) = stream.inbox.taken();
        let window = stream.inbox.window();
        if stream.credit.grant(
            items + u64::from(window.items),
            bytes + u64::from(window.bytes),
        ) {
            let (items, bytes) = stream.credit.granted();
            self.send_data(&Frame::Credit { id, items, bytes });
        }
    }

    /// What the remote's stream call `id` may send now: items, and bytes of them (one more
    /// item may start while any byte is left). `(0, 0)` once it is not running.
    pub(crate) fn allowance(&self, id: u64) -> (u64, u64) {
        if self.replay_full() {
            return (0, 0);
        }
        self.producing.get(&id).map_or((0, 0), Credit::allowance)
    }

    /// The next items of the remote's stream call `id` (taken within its
    /// [`allowance`](Engine::allowance)), sent in one frame; returns the allowance left. Items
    /// of a call no longer running (aborted, timed out) are dropped.
    pub(crate) fn stream_items(&mut self, id: u64, items: Vec<Payload>) -> (u64, u64) {
        let Some(credit) = self.producing.get_mut(&id) else {
            return (0, 0);
        };
        let count = items.len() as u64;
        if count == 0 {
            return credit.allowance();
        }
        if !credit.may_take(count) {
            tracing::error!(id, count, "stream items beyond their credit were dropped");
            return credit.allowance();
        }
        credit.sent(count, items.iter().map(Payload::len).sum());
        let allowance = credit.allowance();
        match wire::items_frame(id, items) {
            Ok(bytes) => self.transmit_data(bytes),
            Err(error) => tracing::error!(%error, "cannot encode stream items"),
        }
        allowance
    }

    /// Stops taking new calls of the remote (they answer `ShuttingDown`); true once nothing
    /// of the remote runs or waits here.
    pub(crate) fn drain(&mut self) -> bool {
        self.draining = true;
        self.is_drained()
    }

    /// Nothing of the remote runs or waits here.
    pub(crate) fn is_drained(&self) -> bool {
        self.running.is_empty() && self.queued.is_empty()
    }

    /// No call in flight in either direction: none of ours waits for a reply, and nothing of
    /// the remote runs or waits here.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.held.is_empty() && self.is_drained()
    }

    /// The drain timeout passed: what still runs or waits answers `ShuttingDown`, and the
    /// link closes with 1001.
    pub(crate) fn shutdown(&mut self) {
        self.draining = true;
        if let Phase::Live { remote_max, .. } = self.phase {
            self.producing.clear();
            let running: Vec<(u64, Charge)> = self.running.drain().collect();
            let queued: Vec<(u64, Queued)> = self.queued.drain().collect();
            self.queue.clear();
            for (id, charged) in running {
                self.release(charged);
                self.events.push_back(Event::Abort(id));
                self.reply_shutting_down(id, remote_max);
            }
            for (id, queued) in queued {
                self.release(queued.charged);
                self.reply_shutting_down(id, remote_max);
            }
        }
        self.close(close::AWAY, "peer stopping");
    }

    fn reply_shutting_down(&mut self, id: u64, remote_max: usize) {
        let error = RemoteError::ShuttingDown {
            peer: Some(self.identity.local),
            block: None,
        };
        self.reply_error(id, remote_max, error);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Budgets are peer-wide: give back what this link still holds.
        self.budgets.calls.give(self.peer_bytes);
        self.budgets.fragments.give(self.fragment_bytes);
    }
}

/// The fields of an inbound `Call` frame, captures sliced out of the frame's buffer.
struct Inbound {
    id: u64,
    block: u64,
    deadline: Instant,
    captures: Bytes,
    frame_len: usize,
    trace: Option<Trace>,
    /// The entry point of the caller's scope (`ds-root`), if it sent one.
    root: Option<u64>,
    /// The grant of authority of the caller's scope (`ds-grant`), if it sent one.
    authority: Option<String>,
    /// The caller's first window, if this is a stream call (`ds-stream`).
    stream: Option<Window>,
}

/// One of this side's stream calls.
struct Incoming {
    inbox: Arc<Inbox>,
    credit: Credit,
}

/// What one side of a stream has sent, and the credit it was given: item totals since the
/// call began. Items may start while the item total stays within the credit and some byte
/// credit is left, so the bytes overshoot by at most one frame of items (and an item larger
/// than the byte window still goes through).
#[derive(Debug, Clone, Copy)]
struct Credit {
    items: u64,
    bytes: u64,
    granted_items: u64,
    granted_bytes: u64,
}

impl Credit {
    fn new(window: Window) -> Self {
        Self {
            items: 0,
            bytes: 0,
            granted_items: u64::from(window.items),
            granted_bytes: u64::from(window.bytes),
        }
    }

    /// Whether `count` more items may be sent (or taken) now.
    fn may_take(&self, count: u64) -> bool {
        self.items.saturating_add(count) <= self.granted_items && self.bytes < self.granted_bytes
    }

    /// Items and bytes that may still be sent; none while either is used up.
    fn allowance(&self) -> (u64, u64) {
        let items = self.granted_items.saturating_sub(self.items);
        let bytes = self.granted_bytes.saturating_sub(self.bytes);
        if items == 0 || bytes == 0 {
            (0, 0)
        } else {
            (items, bytes)
        }
    }

    fn sent(&mut self, items: u64, bytes: usize) {
        self.items = self.items.saturating_add(items);
        self.bytes = self.bytes.saturating_add(bytes as u64);
    }

    /// Raises the credit to these totals (it never shrinks); true if it grew.
    fn grant(&mut self, items: u64, bytes: u64) -> bool {
        let grew = items > self.granted_items || bytes > self.granted_bytes;
        self.granted_items = self.granted_items.max(items);
        self.granted_bytes = self.granted_bytes.max(bytes);
        grew
    }

    fn granted(&self) -> (u64, u64) {
        (self.granted_items, self.granted_bytes)
    }
}

/// The metadata key of a stream call: the caller's window, `items:bytes`.
pub(crate) const STREAM_KEY: &str = "ds-stream";

/// The metadata key of the caller's entry point: 16 lowercase hex digits.
pub(crate) const ROOT_KEY: &str = "ds-root";

/// The metadata key of the grant of authority the caller's scope carries (a JWT).
pub(crate) const GRANT_KEY: &str = "ds-grant";

/// Cuts the block name an error echoes back to the caller.
fn truncate_error(error: RemoteError) -> RemoteError {
    match error {
        RemoteError::UnknownBlock { peer, block } => RemoteError::UnknownBlock {
            peer,
            block: truncated(&block),
        },
        RemoteError::VersionMismatch { peer, block } => RemoteError::VersionMismatch {
            peer,
            block: truncated(&block),
        },
        RemoteError::Forbidden {
            block,
            subject,
            peer,
        } => RemoteError::Forbidden {
            block: truncated(&block),
            subject,
            peer,
        },
        other => other,
    }
}
