//! The browser link adapter: a `web_sys::WebSocket` driving the link's [`Engine`] on the
//! page's event loop.
//!
//! Like the native adapter it only moves bytes and time; the protocol (handshake, admission
//! and authorization, budgets, liveness, drain) is the engine's, so both peers behave alike.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Weak as ArcWeak};

use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::StreamExt;
use futures_util::future::{AbortHandle, Abortable};
use js_sys::{Array, ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::spawn_local;
use web_sys::{BinaryType, CloseEvent, Event as DomEvent, MessageEvent, WebSocket};
use web_time::Instant;

use super::{Inner, timer};
use crate::error::HandshakeError;
use crate::link::{Engine, Event, Run, Transmit, close};
use crate::runtime::{Request, Runtime};
use crate::scope::Scope;
use crate::stream::{Gate, Gated, Step};
use crate::trace::record_outcome;
use crate::{Error, PeerId, RemoteError};

/// The subprotocol offered beside a token; the native peer selects it.
const SUBPROTOCOL: &str = "distributed-scope";

/// Scripts may close a WebSocket only with 1000 or 3000..=4999: the protocol's codes are
/// sent as 4000 + (code - 1000), e.g. 1008 as 4008.
fn script_close_code(code: u16) -> u16 {
    match code {
        close::NORMAL | close::AWAY => 1000,
        other => 4000 + other.saturating_sub(1000).min(999),
    }
}

/// The socket's event handlers, kept alive as long as the link.
struct Handlers {
    _open: Closure<dyn FnMut(DomEvent)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

pub(super) struct Link {
    peer: ArcWeak<Inner>,
    serial: u64,
    url: String,
    /// The token the link was opened with, presented again to resume it.
    token: Option<String>,
    /// The current socket, and how many sockets the link had (events of older ones are
    /// ignored).
    socket: RefCell<WebSocket>,
    socket_generation: Cell<u64>,
    /// A resume is being dialled, and how many attempts failed since the link was
    /// suspended.
    redialing: Cell<bool>,
    redials: Cell<u32>,
    opened: Cell<bool>,
    engine: RefCell<Engine>,
    ready: RefCell<Option<oneshot::Sender<Result<PeerId, Error>>>>,
    /// Blocks of the remote running here.
    running: RefCell<HashMap<u64, AbortHandle>>,
    /// The gates of the remote's stream calls running here, opened while they have credit.
    gates: RefCell<HashMap<u64, Rc<Gate>>>,
    /// The instant the armed timer fires, and its generation (older timers do nothing).
    timer: Cell<Option<Instant>>,
    timer_generation: Cell<u64>,
    live: Cell<bool>,
    /// `stop()` waiting for the remote's calls to finish.
    drained: RefCell<Vec<oneshot::Sender<()>>>,
    /// The blocks the remote announced in its handshake.
    blocks: RefCell<Vec<crate::RemoteBlock>>,
    handlers: RefCell<Option<Handlers>>,
}

impl Link {
    /// Opens a socket to `url`, runs the handshake and returns the remote's id.
    pub(super) async fn open(
        inner: &Arc<Inner>,
        url: &str,
        token: Option<&str>,
    ) -> Result<PeerId, Error> {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "expected a ws:// or wss:// url",
            });
        }
        let socket = new_socket(url, token, None).map_err(|error| Error::Connect {
            url: url.to_owned(),
            reason: describe(&error),
            status: None,
        })?;
        let (ready, handshake) = oneshot::channel();
        let link = Rc::new(Self {
            peer: Arc::downgrade(inner),
            serial: inner.next_serial(),
            url: url.to_owned(),
            token: token.map(str::to_owned),
            socket: RefCell::new(socket),
            socket_generation: Cell::new(0),
            redialing: Cell::new(false),
            redials: Cell::new(0),
            opened: Cell::new(false),
            engine: RefCell::new(inner.engine(Instant::now())),
            ready: RefCell::new(Some(ready)),
            running: RefCell::new(HashMap::new()),
            gates: RefCell::new(HashMap::new()),
            timer: Cell::new(None),
            timer_generation: Cell::new(0),
            live: Cell::new(false),
            drained: RefCell::new(Vec::new()),
            blocks: RefCell::new(Vec::new()),
            handlers: RefCell::new(None),
        });
        link.attach();
        link.arm_timer();
        // Until the handshake completes, this future owns the link: dropping it closes the
        // socket. Afterwards the peer's link table does.
        let outcome = handshake.await.unwrap_or(Err(Error::Handshake {
            url: url.to_owned(),
            reason: HandshakeError::Closed,
        }));
        drop(link);
        outcome
    }

    /// Hooks the current socket's events to the link (those of older sockets are ignored).
    fn attach(self: &Rc<Self>) {
        let generation = self.socket_generation.get() + 1;
        self.socket_generation.set(generation);
        let current = move |link: &Rc<Self>| link.socket_generation.get() == generation;
        let weak = Rc::downgrade(self);
        let open = Closure::<dyn FnMut(DomEvent)>::new(move |_: DomEvent| {
            if let Some(link) = weak.upgrade().filter(current) {
                if link.opened.replace(true) {
                    // A socket that resumes the link: the remote answers first.
                    link.redials.set(0);
                    link.engine.borrow_mut().resuming(Instant::now());
                }
                // The engine queued the hello; the socket can take it now.
                link.drive();
            }
        });
        let weak = Rc::downgrade(self);
        let message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(link) = weak.upgrade().filter(current) {
                link.on_message(&event);
            }
        });
        let weak = Rc::downgrade(self);
        let close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            if let Some(link) = weak.upgrade().filter(current) {
                tracing::debug!(
                    url = link.url,
                    code = event.code(),
                    reason = event.reason(),
                    "closed by remote"
                );
                link.on_socket_closed(event.code(), event.reason());
                link.drive();
            }
        });
        let socket = self.socket.borrow();
        socket.set_onopen(Some(open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(close.as_ref().unchecked_ref()));
        *self.handlers.borrow_mut() = Some(Handlers {
            _open: open,
            _message: message,
            _close: close,
        });
    }

    /// The socket closed: with a close frame the link is over, without one (1006, or this
    /// page's own [`close::INTERRUPTED`]) it waits to be resumed. A socket that never
    /// opened fails the handshake, or the resume attempt it was.
    fn on_socket_closed(self: &Rc<Self>, code: u16, reason: String) {
        let now = Instant::now();
        if self.redialing.replace(false) {
            // A resume attempt that did not get through: another one, after a while.
            self.redial_later();
            return;
        }
        if !self.opened.get() {
            return self.fail_unopened(code);
        }
        // 1006: the connection ended without a close frame.
        if code == 1006 {
            self.engine.borrow_mut().lost(now);
        } else {
            self.engine
                .borrow_mut()
                .on_close(Some(code), Some(reason), now);
        }
    }

    /// A link waiting to be resumed dials its URL again, presenting the session in a
    /// `Sec-WebSocket-Protocol` entry (scripts cannot set headers).
    fn redial(self: &Rc<Self>) {
        if self.redialing.get() || self.engine.borrow().is_closed() {
            return;
        }
        let Some((keys, received)) = self.engine.borrow().resume_token() else {
            return;
        };
        let resume = format!("{:032x}.{:032x}.{received}", keys.id, keys.secret);
        match new_socket(&self.url, self.token.as_deref(), Some(&resume)) {
            Ok(socket) => {
                self.unhook();
                *self.socket.borrow_mut() = socket;
                self.redialing.set(true);
                self.attach();
            }
            Err(error) => {
                tracing::debug!(
                    url = self.url,
                    error = describe(&error),
                    "cannot dial to resume"
                );
                self.redial_later();
            }
        }
    }

    /// Tries to resume again after a wait that doubles per failed attempt (25 ms to
    /// 500 ms); the engine ends the link when its window passes.
    fn redial_later(self: &Rc<Self>) {
        let attempts = self.redials.get();
        self.redials.set(attempts + 1);
        let wait = std::time::Duration::from_millis(25)
            .saturating_mul(1 << attempts.min(8))
            .min(std::time::Duration::from_millis(500));
        let weak = Rc::downgrade(self);
        spawn_local(async move {
            timer::sleep_until(Instant::now() + wait).await;
            if let Some(link) = weak.upgrade() {
                link.redial();
            }
        });
    }

    /// Lets go of the current socket: its events are no longer heard, and it is closed.
    fn unhook(&self) {
        let socket = self.socket.borrow();
        socket.set_onopen(None);
        socket.set_onmessage(None);
        socket.set_onclose(None);
        if socket.ready_state() <= WebSocket::OPEN {
            let _closing = socket.close_with_code_and_reason(close::INTERRUPTED, "interrupted");
        }
    }

    /// Drops the link's connection as a network failure would (the remote is told it was
    /// interrupted, not closed): the link waits to be resumed, and resumes.
    pub(super) fn interrupt(self: &Rc<Self>) {
        self.unhook();
        self.engine.borrow_mut().lost(Instant::now());
        self.drive();
    }

    /// The socket never opened: the browser does not say why (a refused upgrade and an
    /// unreachable host look the same).
    fn fail_unopened(&self, code: u16) {
        if let Some(ready) = self.ready.borrow_mut().take() {
            let _caller_gone = ready.send(Err(Error::Connect {
                url: self.url.clone(),
                reason: format!("the socket closed before opening (code {code})"),
                status: None,
            }));
        }
        self.engine.borrow_mut().end_now();
    }

    pub(super) fn serial(&self) -> u64 {
        self.serial
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn is_live(&self) -> bool {
        self.live.get()
    }

    /// Closes the link on purpose; calls pending on it fail with `ConnectionLost`.
    pub(super) fn close(self: &Rc<Self>, reason: &str) {
        self.engine.borrow_mut().close(close::NORMAL, reason);
        self.drive();
    }

    /// Stops taking new calls; resolves once nothing of the remote runs here.
    pub(super) fn drain(&self) -> oneshot::Receiver<()> {
        let (drained, done) = oneshot::channel();
        if self.engine.borrow_mut().drain() {
            let _now = drained.send(());
        } else {
            self.drained.borrow_mut().push(drained);
        }
        done
    }

    /// The drain timeout passed: what still runs answers `ShuttingDown`; the link closes.
    pub(super) fn shutdown(self: &Rc<Self>) {
        self.engine.borrow_mut().shutdown();
        self.drive();
    }

    fn on_message(self: &Rc<Self>, event: &MessageEvent) {
        let data = event.data();
        if data.is_instance_of::<ArrayBuffer>() {
            let bytes = Bytes::from(Uint8Array::new(&data).to_vec());
            self.engine.borrow_mut().on_message(&bytes, Instant::now());
        } else {
            self.engine.borrow_mut().on_text();
        }
        self.drive();
    }

    /// Carries out what the engine asks after any input: writes, events, the timer.
    fn drive(self: &Rc<Self>) {
        loop {
            // Until the socket opens, what the engine sends (its hello) waits in the engine.
            while self.opened.get() {
                let transmit = self.engine.borrow_mut().poll_transmit();
                let Some(transmit) = transmit else { break };
                self.write(transmit);
            }
            let unsent =
                usize::try_from(self.socket.borrow().buffered_amount()).unwrap_or(usize::MAX);
            self.engine.borrow_mut().on_unsent(unsent, Instant::now());
            let event = self.engine.borrow_mut().poll_event();
            let Some(event) = event else { break };
            self.on_event(event);
        }
        if self.engine.borrow().is_drained() {
            for drained in self.drained.borrow_mut().drain(..) {
                let _stopper_gone = drained.send(());
            }
        }
        self.arm_timer();
    }

    fn write(&self, transmit: Transmit) {
        match transmit {
            Transmit::Binary(bytes) => {
                let socket = self.socket.borrow();
                if socket.ready_state() != WebSocket::OPEN {
                    return;
                }
                if let Err(error) = socket.send_with_u8_array(&bytes) {
                    tracing::warn!(url = self.url, error = describe(&error), "cannot send");
                }
            }
            // Scripts can neither send WebSocket pings nor pongs (the browser answers pings).
            Transmit::Ping | Transmit::Pong(_) => {}
            Transmit::Close { code, reason } => {
                let socket = self.socket.borrow();
                if socket.ready_state() <= WebSocket::OPEN
                    && let Err(error) =
                        socket.close_with_code_and_reason(script_close_code(code), &reason)
                {
                    tracing::debug!(error = describe(&error), "close refused");
                }
            }
        }
    }

    fn arm_timer(self: &Rc<Self>) {
        let next = self.engine.borrow().poll_timeout();
        if self.timer.get() == next {
            return;
        }
        self.timer.set(next);
        let generation = self.timer_generation.get() + 1;
        self.timer_generation.set(generation);
        let Some(at) = next else { return };
        let weak: Weak<Self> = Rc::downgrade(self);
        spawn_local(async move {
            timer::sleep_until(at).await;
            let Some(link) = weak.upgrade() else { return };
            if link.timer_generation.get() != generation {
                return;
            }
            link.timer.set(None);
            link.engine.borrow_mut().on_timeout(Instant::now());
            link.drive();
        });
    }

    fn on_event(self: &Rc<Self>, event: Event) {
        match event {
            Event::Hello { peer, manifest, .. } => {
                let admitted = self
                    .peer
                    .upgrade()
                    .is_some_and(|inner| inner.insert_link(peer, self.clone()));
                let mut engine = self.engine.borrow_mut();
                if admitted {
                    crate::manifest::warn_of_differences(peer, &manifest);
                    *self.blocks.borrow_mut() = manifest
                        .blocks
                        .iter()
                        .map(crate::RemoteBlock::from)
                        .collect();
                    engine.accept(Instant::now());
                } else {
                    engine.refuse(HandshakeError::Duplicate(peer));
                }
            }
            Event::Up { remote } => {
                self.live.set(true);
                tracing::info!(peer = %remote, url = self.url, "link up");
                if let Some(inner) = self.peer.upgrade() {
                    inner.link_up(&self.url);
                }
                if let Some(ready) = self.ready.borrow_mut().take() {
                    let _caller_gone = ready.send(Ok(remote));
                }
            }
            Event::Suspended { remote } => {
                tracing::info!(peer = %remote, url = self.url, "connection lost, waiting to resume the link");
                self.redial();
            }
            Event::Resumed { remote } => {
                tracing::info!(peer = %remote, url = self.url, "link resumed");
            }
            Event::Run(run) => self.run(run),
            Event::Abort(id) => {
                self.gates.borrow_mut().remove(&id);
                if let Some(handle) = self.running.borrow_mut().remove(&id) {
                    handle.abort();
                }
            }
            Event::Credit(id) => {
                if let Some(gate) = self.gates.borrow().get(&id) {
                    gate.allow(self.engine.borrow().allowance(id));
                }
            }
            Event::Closed {
                reason,
                refused,
                remote,
            } => {
                self.live.set(false);
                let socket = self.socket.borrow();
                if !self.opened.get() && socket.ready_state() <= WebSocket::OPEN {
                    let _closing = socket.close();
                }
                drop(socket);
                if let Some(refusal) = refused {
                    tracing::info!(url = self.url, %refusal, "handshake refused");
                    if let Some(ready) = self.ready.borrow_mut().take() {
                        let _caller_gone = ready.send(Err(Error::Handshake {
                            url: self.url.clone(),
                            reason: refusal,
                        }));
                    }
                }
                if let Some(remote) = remote {
                    tracing::info!(peer = %remote, reason, "link down");
                    if let Some(inner) = self.peer.upgrade() {
                        inner.link_down(remote, self.serial, &self.url);
                    }
                }
                for drained in self.drained.borrow_mut().drain(..) {
                    let _stopper_gone = drained.send(());
                }
            }
        }
    }

    fn run(self: &Rc<Self>, run: Run) {
        let Some(inner) = self.peer.upgrade() else {
            return;
        };
        let Run {
            id,
            entry,
            remote,
            deadline,
            captures,
            max_result,
            trace,
            // The engine checked the root; a browser verifies no grants, so its blocks see no
            // origin and their hops carry none.
            root: _,
            authority: _,
            stream,
        } = run;
        let (span, trace) =
            crate::trace::serve_span(&entry.info, remote, inner.id, deadline, trace);
        let started = (!span.is_disabled()).then(Instant::now);
        let runtime: Arc<dyn Runtime> = inner.clone();
        let scope = Scope::new(
            runtime,
            remote,
            #[cfg(feature = "auth")]
            None,
            Some(deadline),
        )
        .with_trace(trace)
        .with_root(entry.info.entry_point());
        let invocation = crate::block::Invocation {
            scope: Some(scope),
            timed: false,
            span: span.clone(),
            captures,
            max: inner.config.limits.max_message_size,
            max_result,
        };
        if stream.is_some() {
            return self.produce(id, (entry.invoke_stream)(invocation), span, started);
        }
        let body = (entry.invoke)(invocation);
        let (handle, registration) = AbortHandle::new_pair();
        let body = Abortable::new(body, registration);
        self.running.borrow_mut().insert(id, handle);
        let link = Rc::downgrade(self);
        spawn_local(async move {
            let outcome = body.await;
            let Some(link) = link.upgrade() else { return };
            link.running.borrow_mut().remove(&id);
            // An aborted call (cancelled, or its link closed) gets no reply.
            if let Ok(result) = outcome {
                record_outcome(&span, started, &result);
                link.engine.borrow_mut().finish(id, result, Instant::now());
                link.drive();
            }
        });
    }

    /// Runs the remote's stream call `id`: its items go to the engine while it has credit,
    /// then its end.
    fn produce(
        self: &Rc<Self>,
        id: u64,
        items: futures_util::stream::LocalBoxStream<
            'static,
            Result<crate::wire::Payload, RemoteError>,
        >,
        span: tracing::Span,
        started: Option<Instant>,
    ) {
        let gate = Gate::new(self.engine.borrow().allowance(id));
        self.gates.borrow_mut().insert(id, gate.clone());
        let (handle, registration) = AbortHandle::new_pair();
        let mut steps = Abortable::new(Gated::new(gate.clone(), items), registration);
        self.running.borrow_mut().insert(id, handle);
        let link = Rc::downgrade(self);
        spawn_local(async move {
            while let Some(step) = steps.next().await {
                let Some(link) = link.upgrade() else { return };
                match step {
                    Step::Items(items) => {
                        let allowance = link.engine.borrow_mut().stream_items(id, items);
                        gate.allow(allowance);
                    }
                    Step::End(result) => {
                        record_outcome(&span, started, &result);
                        link.running.borrow_mut().remove(&id);
                        link.gates.borrow_mut().remove(&id);
                        link.engine.borrow_mut().finish(id, result, Instant::now());
                    }
                }
                link.drive();
            }
        });
    }

    /// Sends a call over this link and waits for its reply; dropping the future cancels it.
    pub(super) async fn call(
        self: Rc<Self>,
        target: PeerId,
        request: Request,
    ) -> Result<Bytes, RemoteError> {
        let name = request.name;
        let (reply, replied) = oneshot::channel();
        let id = {
            let mut engine = self.engine.borrow_mut();
            let id = engine.next_call_id();
            if let Some(inbox) = &request.stream {
                // The consumer asks from its own task: the credit goes out from another.
                let link = Rc::downgrade(&self);
                inbox.on_ask(Box::new(move || {
                    let link = link.clone();
                    spawn_local(async move {
                        if let Some(link) = link.upgrade() {
                            link.engine.borrow_mut().credit(id);
                            link.drive();
                        }
                    });
                }));
            }
            engine.call(id, request, reply, Instant::now());
            id
        };
        self.drive();
        let mut guard = CancelOnDrop {
            link: Rc::downgrade(&self),
            id,
            armed: true,
        };
        let result = replied.await.unwrap_or(Err(RemoteError::Cancelled {
            peer: None,
            block: None,
        }));
        guard.armed = false;
        crate::manifest::warn_if_missing(target, name, &result, &self.blocks.borrow());
        result
    }

    /// The blocks the remote announced in its handshake.
    pub(super) fn blocks(&self) -> Vec<crate::RemoteBlock> {
        self.blocks.borrow().clone()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Unhook the handlers before they are freed, and let the remote know.
        let socket = self.socket.borrow();
        socket.set_onopen(None);
        socket.set_onmessage(None);
        socket.set_onclose(None);
        if socket.ready_state() <= WebSocket::OPEN {
            let _closing = socket.close_with_code_and_reason(1000, "link dropped");
        }
    }
}

/// Sends `Cancel` for a call whose caller stopped waiting before the reply came.
struct CancelOnDrop {
    link: Weak<Link>,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(link) = self.link.upgrade() {
            link.engine.borrow_mut().cancel(self.id);
            link.drive();
        }
    }
}

/// A WebSocket to `url` (binary frames as `ArrayBuffer`s), offering the token and the resume
/// request, if any, as `Sec-WebSocket-Protocol` entries beside [`SUBPROTOCOL`].
fn new_socket(url: &str, token: Option<&str>, resume: Option<&str>) -> Result<WebSocket, JsValue> {
    let protocols = Array::of1(&JsValue::from_str(SUBPROTOCOL));
    if let Some(token) = token {
        protocols.push(&JsValue::from_str(&format!("bearer.{token}")));
    }
    if let Some(resume) = resume {
        protocols.push(&JsValue::from_str(&format!("resume.{resume}")));
    }
    let socket = if protocols.length() == 1 {
        WebSocket::new(url)
    } else {
        WebSocket::new_with_str_sequence(url, &protocols)
    }?;
    socket.set_binary_type(BinaryType::Arraybuffer);
    Ok(socket)
}

/// The message of a JavaScript exception, for error reports.
fn describe(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
