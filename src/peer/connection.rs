//! One link to another peer: an actor on the thread that owns its socket.
//!
//! Everything per call happens here: reading the frame header, authorizing, finding the
//! block, running it, replying, and matching replies to the calls this peer made over the
//! link. Liveness, back-pressure and draining are per link too.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use actix::prelude::*;
use actix_ws::{CloseCode, CloseReason};
use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use web_time::Instant;

use super::LinkDown;
use super::events::{Counters, PeerEvent};
use super::shared::{Link, Shared};
use crate::block::{self, BlockEntry};
use crate::error::{Error, HandshakeError};
use crate::link::{Expect, Reply, State, check_hello};
use crate::scope::{Hex, Request, Scope, Trace, record_outcome};
use crate::transport::{Inbound, InboundStream, Outgoing};
use crate::wire::{self, Frame, Hello, Payload, ReplyBody};
use crate::{PeerId, RemoteError};

/// Who opened the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The remote connected to us; `remote` is its socket address.
    Inbound { remote: String },
    /// We connected to `url`.
    Outbound { url: String },
}

impl Direction {
    pub(crate) fn describe(&self) -> &str {
        match self {
            Self::Inbound { remote } => remote,
            Self::Outbound { url } => url,
        }
    }
}

/// A call accepted but waiting for a free slot.
struct Queued {
    id: u64,
    entry: &'static BlockEntry,
    deadline: Instant,
    captures: Bytes,
    /// The caller's trace context, from the call's metadata.
    trace: Option<Trace>,
}

pub(crate) struct Connection {
    shared: Arc<Shared>,
    serial: u64,
    direction: Direction,
    #[cfg(feature = "auth")]
    link_auth: super::guard::LinkAuth,
    out: mpsc::UnboundedSender<Outgoing>,
    state: State,
    next_call: Arc<AtomicU64>,
    /// Calls this peer made over the link, waiting for their replies.
    pending: HashMap<u64, Reply>,
    /// Calls the remote made, running here.
    running: HashMap<u64, SpawnHandle>,
    /// Calls the remote made, waiting for a slot.
    /// Calls the remote made, waiting for a slot, by call id (so that duplicate checks and
    /// cancels stay O(1) under overload) ...
    queued: HashMap<u64, Queued>,
    /// ... and in arrival order; ids cancelled meanwhile are skipped when popped.
    queue: VecDeque<u64>,
    queued_bytes: usize,
    /// When anything last arrived.
    last_seen: Instant,
    ping_nonce: u64,
    /// Why the link ends, for the `Lost` event.
    end_reason: Option<String>,
    /// Closed on purpose (`disconnect`, `stop`): not reconnected.
    intentional: bool,
    /// `stop()` waiting for the running calls to finish.
    drained: Vec<oneshot::Sender<()>>,
}

impl Connection {
    /// Starts the actor on the current thread (the one that owns the socket).
    pub(crate) fn launch(
        shared: Arc<Shared>,
        direction: Direction,
        #[cfg(feature = "auth")] link_auth: super::guard::LinkAuth,
        inbound: InboundStream,
        out: mpsc::UnboundedSender<Outgoing>,
        ready: Option<oneshot::Sender<Result<PeerId, Error>>>,
    ) -> Addr<Self> {
        Self::create(move |ctx| {
            ctx.add_stream(inbound);
            Self {
                serial: shared.next_serial(),
                shared,
                direction,
                #[cfg(feature = "auth")]
                link_auth,
                out,
                state: State::Handshaking { ready },
                next_call: Arc::new(AtomicU64::new(1)),
                pending: HashMap::new(),
                running: HashMap::new(),
                queued: HashMap::new(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                last_seen: Instant::now(),
                ping_nonce: 0,
                end_reason: None,
                intentional: false,
                drained: Vec::new(),
            }
        })
    }

    fn send(&self, frame: Outgoing) {
        if let Outgoing::Binary(bytes) = &frame {
            Counters::add(&self.shared.counters.bytes_sent, bytes.len() as u64);
        }
        // A closed writer means the socket is gone; the stream ends and stops us.
        let _gone = self.out.unbounded_send(frame);
    }

    fn send_frame(&self, frame: &Frame<'_>) {
        match wire::encode(frame) {
            Ok(bytes) => self.send(Outgoing::Binary(Bytes::from(bytes))),
            Err(error) => tracing::error!(%error, "cannot encode a frame"),
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        tracing::debug!(
            link = self.direction.describe(),
            ?code,
            reason,
            "closing link"
        );
        self.end_reason.get_or_insert_with(|| reason.to_owned());
        self.send(Outgoing::Close(CloseReason {
            code,
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    fn send_hello(&self) {
        let hello = Hello {
            peer: self.shared.id,
            max_message_size: self.shared.config.max_message_size as u64,
            app_version: self.shared.config.app_version.clone(),
        };
        match hello.to_bytes() {
            Ok(bytes) => self.send(Outgoing::Binary(Bytes::from(bytes))),
            Err(error) => tracing::error!(%error, "cannot encode hello"),
        }
    }

    /// A protocol violation: counted, logged, and the link closes.
    fn refuse(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        Counters::add(&self.shared.counters.refused_frames, 1);
        tracing::warn!(link = self.direction.describe(), reason, "frame refused");
        self.close(ctx, code, reason);
    }

    fn fail_handshake(&mut self, ctx: &mut Context<Self>, reason: HandshakeError) {
        tracing::info!(link = self.direction.describe(), %reason, "handshake refused");
        self.shared.emit(PeerEvent::Refused {
            address: self.direction.describe().to_owned(),
            reason: reason.to_string(),
        });
        let code = match reason {
            HandshakeError::Duplicate(_) | HandshakeError::AppVersion { .. } => CloseCode::Policy,
            _ => CloseCode::Protocol,
        };
        self.close(ctx, code, &reason.to_string());
        if let State::Handshaking { ready } = &mut self.state
            && let Some(ready) = ready.take()
        {
            let _caller_gone = ready.send(Err(Error::Handshake {
                url: self.direction.describe().to_owned(),
                reason,
            }));
        }
    }

    fn on_hello(&mut self, bytes: &[u8], ctx: &mut Context<Self>) {
        let expect = Expect {
            local: self.shared.id,
            app_version: &self.shared.config.app_version,
            refuse_app_version_mismatch: self.shared.config.refuse_app_version_mismatch,
        };
        let (hello, remote_max) = match check_hello(bytes, &expect) {
            Ok(checked) => checked,
            Err(reason) => {
                if matches!(reason, HandshakeError::BadMagic | HandshakeError::Malformed) {
                    Counters::add(&self.shared.counters.refused_frames, 1);
                }
                return self.fail_handshake(ctx, reason);
            }
        };
        let link = Link {
            serial: self.serial,
            addr: ctx.address(),
            next_call: self.next_call.clone(),
            remote_max,
            direction: self.direction.clone(),
            app_version: hello.app_version.clone(),
            outbound_slots: Arc::new(tokio::sync::Semaphore::new(
                self.shared.config.max_pending_outbound,
            )),
            #[cfg(feature = "auth")]
            principal: self.link_auth.principal(),
        };
        if !self.shared.insert_link(hello.peer, link) {
            return self.fail_handshake(ctx, HandshakeError::Duplicate(hello.peer));
        }
        if let Direction::Inbound { .. } = self.direction {
            self.send_hello();
        }
        tracing::info!(peer = %hello.peer, link = self.direction.describe(), "link up");
        self.shared.emit(PeerEvent::Connected {
            peer: hello.peer,
            outbound: matches!(self.direction, Direction::Outbound { .. }),
            address: self.direction.describe().to_owned(),
        });
        if let State::Handshaking { ready: Some(ready) } = std::mem::replace(
            &mut self.state,
            State::Live {
                remote: hello.peer,
                remote_max,
            },
        ) {
            let _caller_gone = ready.send(Ok(hello.peer));
        }
    }

    fn on_frame(&mut self, bytes: &Bytes, ctx: &mut Context<Self>) {
        let State::Live { remote, .. } = self.state else {
            return;
        };
        let frame: Frame<'_> = match wire::decode(bytes, self.shared.config.max_message_size) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(peer = %remote, %error, "undecodable frame");
                let code = match error {
                    RemoteError::TooLarge { .. } => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                return self.refuse(ctx, code, "undecodable frame");
            }
        };
        match frame {
            Frame::Call {
                id,
                block,
                name,
                deadline_ms,
                metadata,
                captures,
            } => {
                let deadline = Instant::now() + Duration::from_millis(deadline_ms);
                let captures = bytes.slice_ref(captures);
                let trace = metadata
                    .iter()
                    .find(|(key, _)| key == Trace::KEY)
                    .and_then(|(_, value)| Trace::from_traceparent(value));
                self.on_call(ctx, remote, id, block, &name, deadline, captures, trace);
            }
            Frame::Reply { id, result } => match self.pending.remove(&id) {
                Some(reply) => {
                    let result = match result {
                        ReplyBody::Ok(output) => Ok(bytes.slice_ref(output)),
                        ReplyBody::Err(error) => Err(error),
                    };
                    let _caller_gone = reply.send(result);
                }
                None => {
                    Counters::add(&self.shared.counters.late_replies, 1);
                    tracing::debug!(peer = %remote, id, "late or unknown reply dropped");
                }
            },
            Frame::Cancel { id } => {
                if let Some(handle) = self.running.remove(&id) {
                    ctx.cancel_future(handle);
                    self.after_call(ctx);
                } else if let Some(queued) = self.queued.remove(&id) {
                    self.queued_bytes -= queued.captures.len();
                } else {
                    tracing::debug!(peer = %remote, id, "cancel for a call not running here");
                }
            }
            Frame::Ping { nonce } => self.send_frame(&Frame::Pong { nonce }),
            Frame::Pong { .. } => {}
        }
    }

    #[expect(clippy::too_many_arguments, reason = "the fields of one call frame")]
    fn on_call(
        &mut self,
        ctx: &mut Context<Self>,
        remote: PeerId,
        id: u64,
        block_id: u64,
        name: &str,
        deadline: Instant,
        captures: Bytes,
        trace: Option<Trace>,
    ) {
        Counters::add(&self.shared.counters.calls_received, 1);
        if self.running.contains_key(&id) || self.queued.contains_key(&id) {
            // Never run a call twice.
            Counters::add(&self.shared.counters.refused_frames, 1);
            tracing::warn!(peer = %remote, id, "duplicate call id ignored");
            return;
        }
        if self.shared.is_stopping() {
            return self.reply(
                id,
                Err(RemoteError::ShuttingDown {
                    peer: None,
                    block: Some(name.to_owned()),
                }),
            );
        }
        let name = block::resolve(block_id, name).map_or(name, |entry| entry.info.name());
        // Authorize by name first, so that nothing about the block, not even whether it
        // exists, is revealed to a caller that may not run it; the captures stay opaque.
        #[cfg(feature = "auth")]
        if let Err(error) = self.shared.guard.authorize(&self.link_auth, remote, name) {
            return self.reply(id, Err(error));
        }
        // The id must belong to the very name that was authorized.
        let entry = match block::lookup(block_id, name) {
            Ok(entry) => entry,
            Err(error) => return self.reply(id, Err(error)),
        };
        let call = Queued {
            id,
            entry,
            deadline,
            captures,
            trace,
        };
        let config = &self.shared.config;
        if self.running.len() < config.max_inbound_calls {
            return self.start(ctx, remote, call);
        }
        if self.queued.len() < config.max_queued_calls
            && self.queued_bytes + call.captures.len() <= config.max_queued_bytes
        {
            self.queued_bytes += call.captures.len();
            self.queue.push_back(id);
            self.queued.insert(id, call);
        } else {
            self.reply(
                id,
                Err(RemoteError::Overloaded {
                    peer: None,
                    block: Some(name.to_owned()),
                }),
            );
        }
    }

    fn start(&mut self, ctx: &mut Context<Self>, remote: PeerId, call: Queued) {
        let Queued {
            id,
            entry,
            deadline,
            captures,
            trace,
        } = call;
        // The callee's side of the caller's `call` span: same call id and trace id.
        let span = tracing::info_span!(
            target: "distributed_scope::call",
            "serve",
            block = entry.info.name(),
            block_id = %Hex(entry.info.id()),
            call_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            caller = %remote,
            callee = %self.shared.id,
            deadline_ms = deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
            outcome = tracing::field::Empty,
            error_code = tracing::field::Empty,
            error = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let trace = trace.or_else(|| (!span.is_disabled()).then(|| Trace::child_of(None)));
        if let (Some(trace), false) = (trace, span.is_disabled()) {
            span.record("call_id", tracing::field::display(Hex(trace.call_id)));
            span.record("trace_id", tracing::field::display(Hex(trace.trace_id)));
        }
        let started = (!span.is_disabled()).then(Instant::now);
        let scope = Scope::new(
            self.shared.clone(),
            remote,
            #[cfg(feature = "auth")]
            self.link_auth.principal(),
            Some(deadline),
        )
        .with_trace(trace);
        let max = self.shared.config.max_message_size;
        let mut run = Box::pin(tracing::Instrument::instrument(
            scope.guard((entry.invoke)(captures, max)),
            span.clone(),
        ));
        // Most blocks finish on their first poll: reply at once, without spawning a task.
        if let Some(result) = futures_util::FutureExt::now_or_never(run.as_mut()) {
            record_outcome(&span, started, &result);
            return self.reply(id, result);
        }
        let handle = ctx.spawn(run.into_actor(self).map(move |result, this, ctx| {
            record_outcome(&span, started, &result);
            this.running.remove(&id);
            this.reply(id, result);
            this.after_call(ctx);
        }));
        self.running.insert(id, handle);
    }

    /// Starts queued calls while slots are free; wakes `stop()` once nothing runs.
    fn after_call(&mut self, ctx: &mut Context<Self>) {
        let State::Live { remote, .. } = self.state else {
            return;
        };
        while self.running.len() < self.shared.config.max_inbound_calls {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            let Some(call) = self.queued.remove(&id) else {
                // Cancelled while it waited.
                continue;
            };
            self.queued_bytes -= call.captures.len();
            if call.deadline <= Instant::now() {
                self.reply(
                    call.id,
                    Err(RemoteError::Timeout {
                        peer: None,
                        block: Some(call.entry.info.name().to_owned()),
                    }),
                );
            } else {
                self.start(ctx, remote, call);
            }
        }
        if self.running.is_empty() && self.queued.is_empty() {
            self.queue.clear();
            for drained in self.drained.drain(..) {
                let _stopper_gone = drained.send(());
            }
        }
    }

    fn reply(&self, id: u64, result: Result<Payload, RemoteError>) {
        let State::Live { remote_max, .. } = self.state else {
            return;
        };
        match wire::reply_frame(id, result, remote_max, Some(self.shared.id)) {
            Ok(bytes) => self.send(Outgoing::Binary(bytes)),
            Err(error) => tracing::error!(%error, "cannot encode a reply"),
        }
    }

    /// Probes the link, and drops it locally once it has been silent too long: a close
    /// handshake cannot cross a partition.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let State::Live { remote, .. } = self.state else {
            return;
        };
        let silent = self.last_seen.elapsed();
        if silent > self.shared.config.liveness_timeout {
            tracing::warn!(peer = %remote, ?silent, "link silent past the liveness timeout");
            self.end_reason = Some(format!("no traffic for {} ms", silent.as_millis()));
            ctx.stop();
            return;
        }
        self.ping_nonce += 1;
        self.send_frame(&Frame::Ping {
            nonce: self.ping_nonce,
        });
        self.send(Outgoing::Ping);
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The connecting side speaks first; the accepting side answers only once it has
        // accepted, so a link the acceptor refuses never looks live to the connector.
        if let Direction::Outbound { .. } = self.direction {
            self.send_hello();
        }
        ctx.run_later(self.shared.config.handshake_timeout, |this, ctx| {
            if let State::Handshaking { .. } = this.state {
                this.fail_handshake(ctx, HandshakeError::Timeout);
            }
        });
        ctx.run_interval(self.shared.config.ping_interval, Self::tick);
        #[cfg(feature = "auth")]
        if let Some(principal) = self.link_auth.principal()
            && principal.expires_at() != u64::MAX
        {
            // The link lives no longer than the token it was opened with.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            let left = Duration::from_secs(principal.expires_at().saturating_sub(now));
            ctx.run_later(left, |this, ctx| {
                tracing::info!(target: "distributed_scope::auth", "token expired, closing link");
                this.intentional = true;
                this.close(ctx, CloseCode::Policy, "token expired");
            });
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        match state {
            State::Handshaking { ready: Some(ready) } => {
                let _caller_gone = ready.send(Err(Error::Handshake {
                    url: self.direction.describe().to_owned(),
                    reason: HandshakeError::Closed,
                }));
            }
            State::Live { remote, .. } => {
                self.shared.remove_link(remote, self.serial);
                let reason = self
                    .end_reason
                    .take()
                    .unwrap_or_else(|| "the link closed".to_owned());
                tracing::info!(peer = %remote, pending = self.pending.len(), reason, "link down");
                for (_, reply) in self.pending.drain() {
                    let _caller_gone = reply.send(Err(RemoteError::ConnectionLost {
                        peer: remote,
                        block: None,
                    }));
                }
                for drained in self.drained.drain(..) {
                    let _stopper_gone = drained.send(());
                }
                self.shared.emit(PeerEvent::Lost {
                    peer: remote,
                    reason,
                });
                if let Direction::Outbound { url } = &self.direction
                    && !self.intentional
                    && !self.shared.is_stopping()
                    && let Some(peer) = self.shared.peer.get()
                {
                    peer.do_send(LinkDown { url: url.clone() });
                }
            }
            State::Handshaking { ready: None } | State::Closed => {}
        }
    }
}

impl StreamHandler<Inbound> for Connection {
    fn handle(&mut self, event: Inbound, ctx: &mut Context<Self>) {
        self.last_seen = Instant::now();
        match event {
            Inbound::Binary(bytes) => {
                Counters::add(&self.shared.counters.bytes_received, bytes.len() as u64);
                match self.state {
                    State::Handshaking { .. } => self.on_hello(&bytes, ctx),
                    State::Live { .. } => self.on_frame(&bytes, ctx),
                    State::Closed => {}
                }
            }
            Inbound::Ping(bytes) => self.send(Outgoing::Pong(bytes)),
            Inbound::Pong => {}
            Inbound::Text => {
                self.refuse(ctx, CloseCode::Unsupported, "text frames are not supported")
            }
            Inbound::Close(reason) => {
                tracing::debug!(
                    link = self.direction.describe(),
                    ?reason,
                    "closed by remote"
                );
                self.end_reason = Some(match reason.and_then(|reason| reason.description) {
                    Some(description) => format!("closed by the remote: {description}"),
                    None => "closed by the remote".to_owned(),
                });
                self.send(Outgoing::Close(CloseReason {
                    code: CloseCode::Normal,
                    description: None,
                }));
                ctx.stop();
            }
            Inbound::Violation(code, reason) => self.refuse(ctx, code, &reason),
        }
    }
}

/// A call from any thread, to be sent over this link.
pub(crate) struct OutboundCall {
    pub(crate) id: u64,
    pub(crate) request: Request,
    pub(crate) reply: Reply,
}

impl Message for OutboundCall {
    type Result = ();
}

impl Handler<OutboundCall> for Connection {
    type Result = ();

    fn handle(&mut self, call: OutboundCall, _ctx: &mut Context<Self>) {
        if !matches!(self.state, State::Live { .. }) {
            // Dropping the reply sender tells the caller the link is gone.
            return;
        }
        Counters::add(&self.shared.counters.calls_sent, 1);
        let deadline_ms = wire::deadline_ms(
            call.request
                .deadline
                .saturating_duration_since(Instant::now()),
        );
        // Only traced calls carry metadata (and allocate for it).
        let traceparent = call.request.trace.map(Trace::to_traceparent);
        let metadata: Vec<(Cow<'_, str>, Cow<'_, str>)> = match &traceparent {
            Some(value) => vec![(Trace::KEY.into(), value.as_str().into())],
            None => Vec::new(),
        };
        // The captures were encoded with room for this header: no copy of them here.
        let frame = call.request.captures.into_call_frame(
            call.id,
            call.request.block,
            call.request.name,
            deadline_ms,
            &metadata,
        );
        match frame {
            Ok(bytes) => {
                self.pending.insert(call.id, call.reply);
                self.send(Outgoing::Binary(bytes));
            }
            Err(error) => {
                let _caller_gone = call.reply.send(Err(error));
            }
        }
    }
}

/// The caller of call `id` stopped waiting.
pub(crate) struct CancelCall {
    pub(crate) id: u64,
}

impl Message for CancelCall {
    type Result = ();
}

impl Handler<CancelCall> for Connection {
    type Result = ();

    fn handle(&mut self, cancel: CancelCall, _ctx: &mut Context<Self>) {
        if self.pending.remove(&cancel.id).is_some() {
            self.send_frame(&Frame::Cancel { id: cancel.id });
        }
    }
}

/// Close the link on purpose (`disconnect`): it is not reconnected.
pub(crate) struct Close(pub(crate) CloseCode);

impl Message for Close {
    type Result = ();
}

impl Handler<Close> for Connection {
    type Result = ();

    fn handle(&mut self, close: Close, ctx: &mut Context<Self>) {
        self.intentional = true;
        self.close(ctx, close.0, "closed by this peer");
    }
}

/// Resolves once no call of the remote runs or waits here (new calls are refused while the
/// peer stops).
pub(crate) struct Drain;

impl Message for Drain {
    type Result = ();
}

impl Handler<Drain> for Connection {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _drain: Drain, _ctx: &mut Context<Self>) -> Self::Result {
        let (drained, done) = oneshot::channel();
        if self.running.is_empty() && self.queued.is_empty() {
            let _now = drained.send(());
        } else {
            self.drained.push(drained);
        }
        Box::pin(async move {
            let _closed = done.await;
        })
    }
}

/// The drain timeout passed: fail what still runs with `ShuttingDown`, close with 1001.
pub(crate) struct Shutdown;

impl Message for Shutdown {
    type Result = ();
}

impl Handler<Shutdown> for Connection {
    type Result = ();

    fn handle(&mut self, _shutdown: Shutdown, ctx: &mut Context<Self>) {
        let running: Vec<(u64, SpawnHandle)> = self.running.drain().collect();
        let queued: Vec<u64> = self.queued.drain().map(|(id, _)| id).collect();
        self.queue.clear();
        self.queued_bytes = 0;
        for (id, handle) in running {
            ctx.cancel_future(handle);
            self.reply_shutting_down(id);
        }
        for id in queued {
            self.reply_shutting_down(id);
        }
        self.intentional = true;
        self.close(ctx, CloseCode::Away, "peer stopping");
    }
}

impl Connection {
    fn reply_shutting_down(&self, id: u64) {
        self.reply(
            id,
            Err(RemoteError::ShuttingDown {
                peer: Some(self.shared.id),
                block: None,
            }),
        );
    }
}
