//! The native link adapter: an actor on the thread that owns the socket, driving the
//! link's [`Engine`] with the socket's events, the application's calls and one timer.
//!
//! It only moves bytes and time: every protocol decision (handshake checks, admission,
//! budgets, liveness, drain) is the engine's. What it adds is what needs the runtime:
//! running admitted blocks on this thread, the peer-wide link table, events and logs.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use futures_channel::oneshot;
use web_time::Instant;

use super::LinkDown;
use super::admission::Ticket;
use super::events::PeerEvent;
use super::outbox::{Batch, Outbox};
use super::shared::{Control, Direction, Link, Shared};
use crate::error::{Error, HandshakeError};
use crate::link::{Engine, Event, Identity, Role, Run, Transmit, close};
use crate::scope::Scope;
use crate::stream::{Gate, Gated, Step};
use crate::trace::record_outcome;
use crate::transport::{self, Flow, Inbound, Outgoing, Sender, Socket};
use crate::{PeerId, RemoteError};

#[cfg(feature = "auth")]
use crate::auth::Principal;

/// What a new link starts with.
pub(crate) struct Launch {
    pub(crate) shared: Arc<Shared>,
    pub(crate) direction: Direction,
    #[cfg(feature = "auth")]
    pub(crate) link_auth: super::guard::LinkAuth,
    pub(crate) socket: Socket,
    /// Whoever waits for the handshake.
    pub(crate) ready: Option<oneshot::Sender<Result<PeerId, Error>>>,
    /// What the remote of an outbound link must prove to be.
    pub(crate) expect: super::Requirement,
    /// Told when an outbound link goes down on its own, to reconnect it.
    pub(crate) on_down: Option<Recipient<LinkDown>>,
    /// This link's place in the peer-wide link limits.
    pub(crate) ticket: Ticket,
    /// How an outbound link dials again to resume.
    pub(crate) redial: Option<Redial>,
}

/// What an outbound link dials again with, to resume: the token and TLS of its first dial
/// (the URL is its direction's).
#[derive(Clone)]
pub(crate) struct Redial {
    pub(crate) token: Option<String>,
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

/// The first wait before dialling again to resume, doubled per failed attempt up to
/// [`REDIAL_MAX`].
const REDIAL_FIRST: std::time::Duration = std::time::Duration::from_millis(25);
const REDIAL_MAX: std::time::Duration = std::time::Duration::from_millis(500);

pub(crate) struct Connection {
    shared: Arc<Shared>,
    serial: u64,
    direction: Direction,
    #[cfg(feature = "auth")]
    link_auth: super::guard::LinkAuth,
    /// The principal the remote of an outbound link proved (`connect_to`).
    #[cfg(feature = "auth")]
    proven: Rc<std::cell::OnceCell<Arc<Principal>>>,
    engine: Engine,
    /// The socket's writer; `None` while the link waits to be resumed.
    sender: Option<Sender>,
    flow: Rc<Flow>,
    /// The socket's events, as this actor reads them.
    reading: Option<SpawnHandle>,
    /// How an outbound link dials again to resume, and whether it is dialling, and how often
    /// it failed since the link was suspended.
    redial: Option<Redial>,
    redialing: bool,
    redials: u32,
    /// An accepting link's session: its id, and where a resume puts the new socket.
    parked: Option<(u128, super::resume::Slot)>,
    /// The replay buffer was full when last looked at.
    held: bool,
    /// The remote sent a close frame.
    remote_closed: bool,
    /// Whether the link waits to be resumed, as its entry in the link table shows.
    suspended: Arc<std::sync::atomic::AtomicBool>,
    /// The accepted connection, ended shortly after the link (see `stopped`).
    connection: Option<transport::Connection>,
    inbound: Option<transport::InboundStream>,
    /// Where this peer's calls over the link arrive from any thread ...
    outbox: Arc<Outbox>,
    /// ... taken into this (its buffers reused).
    batch: Batch,
    /// Blocks of the remote running here.
    running: HashMap<u64, SpawnHandle>,
    /// The gates of the remote's stream calls running here, opened while they have credit.
    gates: HashMap<u64, Rc<Gate>>,
    ready: Option<oneshot::Sender<Result<PeerId, Error>>>,
    expect: super::Requirement,
    on_down: Option<Recipient<LinkDown>>,
    ticket: Ticket,
    /// The engine's next timeout, and the timer armed for it.
    timer: Option<(Instant, SpawnHandle)>,
    /// `stop()` waiting for the remote's calls to finish.
    drained: Vec<oneshot::Sender<()>>,
    /// Closed on purpose (`disconnect`, `stop`): not reconnected.
    intentional: bool,
    /// Close once idle ([`Control::CloseWhenIdle`]).
    close_when_idle: bool,
    /// The permits of this peer's calls on the link (see [`Link::outbound_slots`]): a call
    /// holds one from before it reaches this actor until its caller has the reply.
    outbound_slots: Option<Arc<super::outbox::Slots>>,
}

impl Connection {
    /// Starts the actor on the current thread (the one that owns the socket).
    pub(crate) fn launch(launch: Launch) -> Addr<Self> {
        let Launch {
            shared,
            direction,
            #[cfg(feature = "auth")]
            link_auth,
            socket,
            ready,
            expect,
            on_down,
            ticket,
            redial,
        } = launch;
        let role = match direction {
            Direction::Inbound { .. } => Role::Accepting,
            Direction::Outbound { .. } => Role::Connecting,
        };
        let identity = Identity {
            local: shared.id,
            app_version: shared.config.app_version.clone(),
            refuse_app_version_mismatch: shared.config.refuse_app_version_mismatch,
        };
        // The principal the remote of an outbound link proves in its hello, once it has.
        #[cfg(feature = "auth")]
        let proven: Rc<std::cell::OnceCell<Arc<Principal>>> = Rc::default();
        let authorize: crate::link::Authorize = {
            let shared = shared.clone();
            #[cfg(feature = "auth")]
            let link_auth = link_auth.clone();
            #[cfg(feature = "auth")]
            let proven = proven.clone();
            Box::new(move |remote, name, hop| {
                if shared.is_stopping() {
                    return Err(RemoteError::ShuttingDown {
                        peer: None,
                        block: Some(name.to_owned()),
                    });
                }
                #[cfg(feature = "auth")]
                return shared
                    .guard
                    .authorize(&link_auth, proven.get(), remote, name, hop);
                #[cfg(not(feature = "auth"))]
                {
                    let _ = (remote, hop);
                    Ok(())
                }
            })
        };
        let now = Instant::now();
        let mut engine = Engine::new(
            identity,
            role,
            shared.config.limits(),
            shared.budgets.clone(),
            shared.counters.clone(),
            authorize,
            now,
        );
        // The link lives no longer than the token it was opened with.
        #[cfg(feature = "auth")]
        let expires = link_auth
            .principal()
            .filter(|principal| principal.expires_at() != u64::MAX)
            .map(|principal| {
                let unix_now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs());
                now + std::time::Duration::from_secs(
                    principal.expires_at().saturating_sub(unix_now),
                )
            });
        #[cfg(not(feature = "auth"))]
        let expires = None;
        engine.expire_at(expires);
        // An accepting side with an identity proves it in its hello.
        #[cfg(feature = "auth")]
        if role == Role::Accepting && shared.guard.has_identity() {
            let shared = shared.clone();
            engine.prove_with(Box::new(move |nonce| shared.guard.prove(nonce)));
        }
        let (inbound, sender, flow, connection) = socket.split();
        Self::create(move |_ctx| Self {
            serial: shared.next_serial(),
            shared,
            direction,
            #[cfg(feature = "auth")]
            link_auth,
            #[cfg(feature = "auth")]
            proven,
            engine,
            sender: Some(sender),
            flow,
            reading: None,
            redial,
            redialing: false,
            redials: 0,
            parked: None,
            held: false,
            remote_closed: false,
            suspended: Arc::default(),
            connection,
            inbound: Some(inbound),
            outbox: Outbox::new(),
            batch: Batch::default(),
            running: HashMap::new(),
            gates: HashMap::new(),
            ready,
            expect,
            on_down,
            ticket,
            timer: None,
            drained: Vec::new(),
            intentional: false,
            close_when_idle: false,
            outbound_slots: None,
        })
    }

    /// Carries out what the engine asks after any input: writes, events, the timer.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        if self.close_when_idle && self.is_idle() {
            self.close_when_idle = false;
            self.intentional = true;
            self.engine
                .close(close::NORMAL, "address no longer discovered");
        }
        let mut reported = None;
        loop {
            while let Some(transmit) = self.engine.poll_transmit() {
                let Some(sender) = &self.sender else {
                    // No socket: what carries calls waits in the replay buffer.
                    continue;
                };
                sender.send(match transmit {
                    Transmit::Binary(bytes) => Outgoing::Binary(bytes),
                    Transmit::Ping => Outgoing::Ping,
                    Transmit::Pong(bytes) => Outgoing::Pong(bytes),
                    Transmit::Close { code, reason } => Outgoing::Close { code, reason },
                });
            }
            // Tell the engine what the socket has not taken yet, when that changed.
            let unsent = self.flow.unsent();
            if reported != Some(unsent) {
                reported = Some(unsent);
                self.engine.on_unsent(unsent, Instant::now());
            }
            let Some(event) = self.engine.poll_event() else {
                break;
            };
            self.on_event(event, ctx);
        }
        if self.engine.is_drained() {
            for drained in self.drained.drain(..) {
                let _stopper_gone = drained.send(());
            }
        }
        // While the replay buffer is full the engine holds new calls and stream items (the
        // socket is still read: acknowledgements come that way); when it made room, streams
        // go on.
        let full = self.engine.replay_full();
        if full != self.held {
            self.held = full;
            if !full {
                for (id, gate) in &self.gates {
                    gate.allow(self.engine.allowance(*id));
                }
            }
        }
        self.arm_timer(ctx);
    }

    /// Hands what callers queued to the engine.
    fn take_outbox(&mut self, ctx: &mut Context<Self>) {
        let mut batch = std::mem::take(&mut self.batch);
        self.outbox.take(&mut batch);
        let now = Instant::now();
        for call in batch.calls.drain(..) {
            self.engine.call(call.id, call.request, call.reply, now);
        }
        for id in batch.cancels.drain(..) {
            self.engine.cancel(id);
        }
        for id in batch.credits.drain(..) {
            self.engine.credit(id);
        }
        self.batch = batch;
        self.drive(ctx);
    }

    /// Carries on with a new socket (a resume).
    fn attach(&mut self, socket: Socket, ctx: &mut Context<Self>) {
        self.detach(ctx);
        let (inbound, sender, flow, connection) = socket.split();
        flow.set_inbound_limit(self.engine.max_inbound_message());
        self.sender = Some(sender);
        self.flow = flow;
        self.connection = connection;
        self.reading = Some(ctx.add_stream(inbound));
    }

    /// Lets go of the socket: its writer closes it, its events are no longer read.
    fn detach(&mut self, ctx: &mut Context<Self>) {
        if let Some(reading) = self.reading.take() {
            ctx.cancel_future(reading);
        }
        self.sender = None;
        if let Some(connection) = self.connection.take() {
            connection.end_after(std::time::Duration::ZERO);
        }
    }

    /// An outbound link waiting to be resumed dials its URL again, presenting the session,
    /// until it is resumed or its window passes (the engine then ends it).
    fn redial(&mut self, ctx: &mut Context<Self>) {
        if self.redialing || self.engine.is_closed() || ctx.state() != actix::ActorState::Running {
            return;
        }
        let (Some(redial), Direction::Outbound { url }) = (&self.redial, &self.direction) else {
            return;
        };
        let Some((keys, received)) = self.engine.resume_token() else {
            return;
        };
        self.redialing = true;
        let request = super::resume::ResumeRequest::encode(keys, received);
        let (url, redial) = (url.clone(), redial.clone());
        let timeout = self.shared.config.connect_timeout;
        let limits = self.shared.socket_limits();
        let attempt = async move {
            transport::connect(
                &url,
                redial.token.as_deref(),
                Some(&request),
                redial.tls,
                timeout,
                limits,
            )
            .await
        };
        ctx.spawn(attempt.into_actor(self).map(|result, this, ctx| {
            this.redialing = false;
            if this.engine.is_closed() || !this.engine.is_suspended() {
                return;
            }
            match result {
                Ok(socket) => {
                    this.redials = 0;
                    this.attach(socket, ctx);
                    this.engine.resuming(Instant::now());
                    this.drive(ctx);
                }
                // The remote no longer has the session (it restarted, or the link is over on
                // its side), or refuses this peer: the link cannot be resumed.
                Err(crate::Error::Connect {
                    status: Some(401 | 403 | 404),
                    reason,
                    ..
                }) => {
                    tracing::info!(reason, "the link cannot be resumed");
                    this.engine.end_now();
                    this.drive(ctx);
                }
                Err(error) => {
                    tracing::debug!(%error, "resume attempt failed");
                    let wait = REDIAL_FIRST
                        .saturating_mul(1 << this.redials.min(8))
                        .min(REDIAL_MAX);
                    this.redials += 1;
                    ctx.run_later(wait, |this, ctx| this.redial(ctx));
                }
            }
        }));
    }

    /// No call in flight on the link: the engine has none, and no caller holds a slot (a call
    /// on its way to this actor, or a reply not yet taken).
    fn is_idle(&self) -> bool {
        self.engine.is_idle()
            && self
                .outbound_slots
                .as_ref()
                .is_none_or(|slots| slots.taken() == 0)
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let next = self.engine.poll_timeout();
        if self.timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = next {
            let wait = at.saturating_duration_since(Instant::now());
            let handle = ctx.run_later(wait, |this, ctx| {
                this.timer = None;
                this.engine.on_unsent(this.flow.unsent(), Instant::now());
                this.engine.on_timeout(Instant::now());
                this.drive(ctx);
            });
            self.timer = Some((at, handle));
        }
    }

    fn on_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        match event {
            Event::Hello {
                peer,
                app_version,
                manifest,
                proof,
            } => self.admit(peer, app_version, &manifest, proof.as_deref(), ctx),
            Event::Up { remote } => {
                self.flow
                    .set_inbound_limit(self.engine.max_inbound_message());
                tracing::info!(peer = %remote.label(), link = self.direction.describe(), "link up");
                self.shared.emit(PeerEvent::Connected {
                    peer: remote,
                    outbound: matches!(self.direction, Direction::Outbound { .. }),
                    address: self.direction.describe().to_owned(),
                });
                if let Some(ready) = self.ready.take() {
                    let _caller_gone = ready.send(Ok(remote));
                }
                // An accepting link may be resumed on another connection of this thread.
                if let (Direction::Inbound { .. }, Some(keys)) =
                    (&self.direction, self.engine.session_keys())
                {
                    #[cfg(feature = "auth")]
                    let subject = self
                        .link_auth
                        .principal()
                        .map(|principal| principal.subject().to_owned());
                    #[cfg(not(feature = "auth"))]
                    let subject = None;
                    let slot = super::resume::register(
                        &self.shared,
                        keys,
                        subject,
                        remote,
                        ctx.address().recipient(),
                    );
                    self.parked = Some((keys.id, slot));
                }
            }
            Event::Suspended { remote } => {
                self.suspended
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(peer = %remote.label(), link = self.direction.describe(), "connection lost, waiting to resume the link");
                self.detach(ctx);
                self.redial(ctx);
            }
            Event::Resumed { remote } => {
                self.suspended
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(peer = %remote.label(), link = self.direction.describe(), "link resumed");
            }
            Event::Run(run) => self.run(run, ctx),
            Event::Abort(id) => {
                self.gates.remove(&id);
                if let Some(handle) = self.running.remove(&id) {
                    ctx.cancel_future(handle);
                }
            }
            Event::Credit(id) => {
                if let Some(gate) = self.gates.get(&id) {
                    gate.allow(self.engine.allowance(id));
                }
            }
            Event::Closed {
                reason,
                refused,
                remote,
            } => self.closed(reason, refused, remote, ctx),
        }
    }

    /// The remote's hello passed the engine's checks: admit it peer-wide.
    fn admit(
        &mut self,
        peer: PeerId,
        app_version: Option<String>,
        manifest: &crate::wire::Manifest,
        proof: Option<&str>,
        ctx: &mut Context<Self>,
    ) {
        let Some(remote_max) = self.engine.remote_max() else {
            return;
        };
        #[cfg(feature = "auth")]
        if let Err(refusal) = super::guard::Guard::may_claim(&self.link_auth, peer) {
            return self.engine.refuse(refusal);
        }
        // The remote of an outbound link proves who it is before the link is up.
        #[cfg(feature = "auth")]
        let proven = match &self.expect {
            Some(expected) => {
                match self
                    .shared
                    .guard
                    .check_remote(expected, peer, proof, self.engine.nonce())
                {
                    Ok(principal) => {
                        let _set_once = self.proven.set(principal.clone());
                        Some(principal)
                    }
                    Err(refusal) => return self.engine.refuse(refusal),
                }
            }
            None => None,
        };
        #[cfg(not(feature = "auth"))]
        let _ = (proof, &self.expect);
        if !self.ticket.promote() {
            return self.engine.refuse(HandshakeError::TooManyLinks);
        }
        let link = Link {
            serial: self.serial,
            outbox: self.outbox.clone(),
            control: ctx.address().recipient(),
            ids: self.engine.call_ids(),
            remote_max,
            direction: self.direction.clone(),
            app_version,
            blocks: self.shared.intern_blocks(
                manifest
                    .blocks
                    .iter()
                    .map(crate::RemoteBlock::from)
                    .collect(),
            ),
            suspended: self.suspended.clone(),
            outbound_slots: self
                .outbound_slots
                .insert(Arc::new(super::outbox::Slots::new(
                    self.shared.config.max_pending_outbound,
                )))
                .clone(),
            #[cfg(feature = "auth")]
            principal: self.link_auth.principal().or(proven),
        };
        // Two peers that dial each other at once keep the dial of the lower id.
        let crossed = matches!(self.direction, Direction::Outbound { .. }) && self.shared.id < peer;
        let inserted = if crossed {
            self.shared.insert_crossed_link(peer, link)
        } else {
            self.shared.insert_link(peer, link)
        };
        if inserted {
            crate::manifest::warn_of_differences(peer, manifest);
            self.engine.accept(Instant::now());
        } else {
            self.engine.refuse(HandshakeError::Duplicate(peer));
        }
    }

    fn run(&mut self, run: Run, ctx: &mut Context<Self>) {
        let Run {
            id,
            entry,
            remote,
            deadline,
            captures,
            max_result,
            trace,
            root,
            authority,
            stream,
        } = run;
        // The authority the block runs under, checked before its captures are decoded.
        #[cfg(feature = "auth")]
        let arrival = super::guard::Arrival {
            grant: authority.as_deref(),
            root,
            entry: &entry.info,
            ttl: deadline.saturating_duration_since(Instant::now()),
        };
        #[cfg(feature = "auth")]
        let authority = match self.shared.guard.authority(
            arrival,
            &self.link_auth,
            self.proven.get().cloned(),
            self.shared.id,
        ) {
            Ok(authority) => authority,
            Err(error) => {
                self.engine.finish(id, Err(error), Instant::now());
                return;
            }
        };
        #[cfg(not(feature = "auth"))]
        let _ = (root, authority);
        // The callee's side of the caller's `call` span: same call id and trace id.
        let (span, trace) =
            crate::trace::serve_span(&entry.info, remote, self.shared.id, deadline, trace);
        let started = (!span.is_disabled()).then(Instant::now);
        let scope = Scope::new(
            self.shared.clone(),
            remote,
            #[cfg(feature = "auth")]
            self.link_auth.principal(),
            Some(deadline),
        )
        .with_trace(trace)
        .with_root(entry.info.entry_point());
        #[cfg(feature = "auth")]
        let scope = scope.with_authority(authority.0, authority.1);
        let invocation = crate::block::Invocation {
            scope: Some(scope),
            timed: false,
            span: span.clone(),
            captures,
            max: self.shared.config.max_message_size,
            max_result,
        };
        if stream.is_some() {
            return self.produce(id, (entry.invoke_stream)(invocation), span, started, ctx);
        }
        let mut body = (entry.invoke)(invocation);
        // Most blocks finish on their first poll: reply at once, without spawning a task.
        if let Some(result) = futures_util::FutureExt::now_or_never(body.as_mut()) {
            record_outcome(&span, started, &result);
            self.engine.finish(id, result, Instant::now());
            return;
        }
        let handle = ctx.spawn(body.into_actor(self).map(move |result, this, ctx| {
            record_outcome(&span, started, &result);
            this.running.remove(&id);
            this.engine.finish(id, result, Instant::now());
            this.drive(ctx);
        }));
        self.running.insert(id, handle);
    }

    /// Runs the remote's stream call `id`: its items go to the engine while it has credit,
    /// then its end.
    fn produce(
        &mut self,
        id: u64,
        items: futures_util::stream::LocalBoxStream<
            'static,
            Result<crate::wire::Payload, RemoteError>,
        >,
        span: tracing::Span,
        started: Option<Instant>,
        ctx: &mut Context<Self>,
    ) {
        let gate = Gate::new(self.engine.allowance(id));
        self.gates.insert(id, gate.clone());
        let steps = Gated::new(gate.clone(), items).into_actor(self).map(
            move |step, this: &mut Self, ctx: &mut Context<Self>| {
                match step {
                    Step::Items(items) => gate.allow(this.engine.stream_items(id, items)),
                    Step::End(result) => {
                        record_outcome(&span, started, &result);
                        this.running.remove(&id);
                        this.gates.remove(&id);
                        this.engine.finish(id, result, Instant::now());
                    }
                }
                this.drive(ctx);
            },
        );
        let handle = ctx.spawn(steps.finish());
        self.running.insert(id, handle);
    }

    fn closed(
        &mut self,
        reason: String,
        refused: Option<HandshakeError>,
        remote: Option<PeerId>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(refusal) = refused {
            tracing::info!(link = self.direction.describe(), %refusal, "handshake refused");
            self.shared.emit(PeerEvent::Refused {
                address: self.direction.describe().to_owned(),
                reason: refusal.to_string(),
            });
            if let Some(ready) = self.ready.take() {
                let _caller_gone = ready.send(Err(Error::Handshake {
                    url: self.direction.describe().to_owned(),
                    reason: refusal,
                }));
            }
        }
        if let Some(remote) = remote {
            self.went_down(remote, reason);
        }
        self.outbox.close();
        // The close handshake: a link that closed first reads on until the remote answers
        // (or ends the connection), within a grace period, so that the remote reads our close
        // frame before the connection ends; a close that ends it first can look like a drop
        // to the other side. A link that answered the remote's close is done.
        if !self.remote_closed
            && self.sender.is_some()
            && self.reading.is_some()
            && ctx.state() == actix::ActorState::Running
        {
            ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
        } else {
            ctx.stop();
        }
    }

    /// A live link ended: it leaves the table, `stop()` stops waiting for it, and an
    /// outbound link that went down on its own is brought back.
    fn went_down(&mut self, remote: PeerId, reason: String) {
        // A link replaced by a newer one to the same peer (see `insert_crossed_link`) leaves
        // the peer linked: that is no loss.
        let lost = self.shared.remove_link(remote, self.serial);
        for drained in self.drained.drain(..) {
            let _stopper_gone = drained.send(());
        }
        if lost {
            tracing::info!(peer = %remote.label(), reason, "link down");
            self.shared.emit(PeerEvent::Lost {
                peer: remote,
                reason,
            });
        } else {
            tracing::debug!(peer = %remote.label(), reason, "replaced link down");
        }
        if let Direction::Outbound { url } = &self.direction
            && !self.intentional
            && !self.shared.is_stopping()
            && let Some(on_down) = &self.on_down
        {
            on_down.do_send(LinkDown { url: url.clone() });
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(inbound) = self.inbound.take() {
            self.reading = Some(ctx.add_stream(inbound));
        }
        ctx.add_stream(self.outbox.ready());
        self.drive(ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        if let Some((id, _)) = self.parked.take() {
            super::resume::unregister(&self.shared, id);
        }
        // Calls still queued fail as `ConnectionLost`; no more are taken.
        self.outbox.close();
        // The socket ended without a close frame, or the actor was stopped: the engine fails
        // what is pending and reports the end like any other. (Whoever waits for a handshake
        // that never ended in an event learns of it when `ready` is dropped with the actor.)
        self.engine.end_now();
        while let Some(event) = self.engine.poll_event() {
            self.on_event(event, ctx);
        }
        for drained in self.drained.drain(..) {
            let _stopper_gone = drained.send(());
        }
        // The link is over. A remote that reads gets the close frame and closes its end; one
        // that does not would hold the connection forever: end it after a grace period.
        if let Some(connection) = self.connection.take() {
            connection.end_after(CLOSE_GRACE);
        }
    }
}

/// How long a closed link's connection has to deliver the close frame before it is ended.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl StreamHandler<Inbound> for Connection {
    fn handle(&mut self, event: Inbound, ctx: &mut Context<Self>) {
        let now = Instant::now();
        match event {
            Inbound::Binary(bytes) => self.engine.on_message(&bytes, now),
            Inbound::Fragment(bytes) => self.engine.on_fragment(bytes, now),
            Inbound::Ping(payload) => self.engine.on_ping(payload, now),
            Inbound::Pong => self.engine.on_pong(now),
            Inbound::Text => self.engine.on_text(),
            Inbound::Close { code, reason } => {
                self.remote_closed = true;
                self.engine.on_close(code, reason, now);
            }
            Inbound::Violation(code, reason) => self.engine.on_violation(code, &reason),
        }
        self.drive(ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.reading = None;
        if self.engine.is_closed() {
            // The close handshake is over.
            ctx.stop();
            return;
        }
        if ctx.state() != actix::ActorState::Running || self.shared.is_stopping() {
            // Going away: nothing will resume the link.
            self.engine.end_now();
            self.drive(ctx);
            return;
        }
        self.engine.lost(Instant::now());
        self.drive(ctx);
    }
}

/// Calls and cancels queued in the outbox: all of them at once, then one burst of frames.
impl StreamHandler<()> for Connection {
    fn handle(&mut self, (): (), ctx: &mut Context<Self>) {
        self.take_outbox(ctx);
    }

    /// The outbox ends only when the link does, which stops the actor by other paths.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<super::resume::Adopt> for Connection {
    type Result = ();

    fn handle(&mut self, adopt: super::resume::Adopt, ctx: &mut Context<Self>) {
        let socket = self
            .parked
            .as_ref()
            .and_then(|(_, slot)| slot.borrow_mut().take());
        let Some(socket) = socket else { return };
        self.attach(socket, ctx);
        if !self.engine.adopt(adopt.received, Instant::now()) {
            tracing::warn!(
                link = self.direction.describe(),
                "a resume the link could not take"
            );
        }
        self.drive(ctx);
    }
}

impl Handler<Control> for Connection {
    type Result = ();

    fn handle(&mut self, control: Control, ctx: &mut Context<Self>) {
        match control {
            Control::Close => {
                self.intentional = true;
                self.engine.close(close::NORMAL, "closed by this peer");
            }
            // Checked by `drive`, now and after every later input.
            Control::CloseWhenIdle => self.close_when_idle = true,
            Control::Drain(drained) => {
                if self.engine.drain() {
                    let _now = drained.send(());
                } else {
                    self.drained.push(drained);
                }
            }
            Control::Shutdown => {
                self.intentional = true;
                self.engine.shutdown();
            }
            Control::Superseded => {
                self.intentional = true;
                self.engine.end_now();
            }
        }
        self.drive(ctx);
    }
}
