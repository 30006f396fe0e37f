//! One link of a browser peer: a `web_sys::WebSocket` and the calls on it.
//!
//! The same per-call work as a native connection, on the page's event loop: reading frames,
//! finding and running blocks, replying, and matching replies to the calls made here.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Weak as ArcWeak};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::future::{AbortHandle, Abortable};
use js_sys::{Array, ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::spawn_local;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};
use web_time::Instant;

use super::{Inner, timer};
use crate::error::HandshakeError;
use crate::link::{Expect, Reply, State, check_hello};
use crate::scope::{Request, Runtime, Scope, Trace};
use crate::wire::{self, Frame, Hello, Payload, ReplyBody};
use crate::{Error, PeerId, RemoteError, block};

/// The subprotocol offered beside a token; the native peer selects it.
const SUBPROTOCOL: &str = "distributed-scope";
/// Scripts may close a WebSocket only with 1000 or 3000..=4999.
const NORMAL_CLOSURE: u16 = 1000;

/// The socket's event handlers, kept alive as long as the link.
struct Handlers {
    _open: Closure<dyn FnMut(Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

pub(super) struct Link {
    peer: ArcWeak<Inner>,
    serial: u64,
    url: String,
    socket: WebSocket,
    opened: Cell<bool>,
    state: RefCell<State>,
    next_call: Cell<u64>,
    /// Calls this peer made over the link, waiting for their replies.
    pending: RefCell<HashMap<u64, Reply>>,
    /// Calls the remote made, running here.
    running: RefCell<HashMap<u64, AbortHandle>>,
    last_heard: Cell<Instant>,
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
        let socket = match token {
            None => WebSocket::new(url),
            Some(token) => {
                let protocols = Array::of2(
                    &JsValue::from_str(SUBPROTOCOL),
                    &JsValue::from_str(&format!("bearer.{token}")),
                );
                WebSocket::new_with_str_sequence(url, &protocols)
            }
        }
        .map_err(|error| Error::Connect {
            url: url.to_owned(),
            reason: describe(&error),
            status: None,
        })?;
        socket.set_binary_type(BinaryType::Arraybuffer);
        let (ready, handshake) = oneshot::channel();
        let link = Rc::new(Self {
            peer: Arc::downgrade(inner),
            serial: inner.next_serial(),
            url: url.to_owned(),
            socket,
            opened: Cell::new(false),
            state: RefCell::new(State::Handshaking { ready: Some(ready) }),
            next_call: Cell::new(1),
            pending: RefCell::new(HashMap::new()),
            running: RefCell::new(HashMap::new()),
            last_heard: Cell::new(Instant::now()),
            handlers: RefCell::new(None),
        });
        link.attach(inner);
        let weak = Rc::downgrade(&link);
        let timeout = inner.config.handshake_timeout;
        spawn_local(async move {
            timer::sleep(timeout).await;
            if let Some(link) = weak.upgrade()
                && matches!(*link.state.borrow(), State::Handshaking { .. })
            {
                link.fail_handshake(HandshakeError::Timeout);
            }
        });
        // Until the handshake completes, this future owns the link: dropping it closes the
        // socket. Afterwards the peer's link table does.
        let outcome = handshake.await.unwrap_or(Err(Error::Handshake {
            url: url.to_owned(),
            reason: HandshakeError::Closed,
        }));
        drop(link);
        outcome
    }

    fn attach(self: &Rc<Self>, inner: &Arc<Inner>) {
        let hello = Hello {
            peer: inner.id,
            max_message_size: inner.config.max_message_size as u64,
            app_version: inner.config.app_version.clone(),
        };
        let weak = Rc::downgrade(self);
        let open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if let Some(link) = weak.upgrade() {
                link.opened.set(true);
                match hello.to_bytes() {
                    Ok(bytes) => link.send(&bytes),
                    Err(error) => tracing::error!(%error, "cannot encode hello"),
                }
            }
        });
        let weak = Rc::downgrade(self);
        let message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(link) = weak.upgrade() {
                link.on_message(&event);
            }
        });
        let weak = Rc::downgrade(self);
        let close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            if let Some(link) = weak.upgrade() {
                tracing::debug!(
                    url = link.url,
                    code = event.code(),
                    reason = event.reason(),
                    "closed by remote"
                );
                link.shut_down(event.code());
            }
        });
        self.socket.set_onopen(Some(open.as_ref().unchecked_ref()));
        self.socket
            .set_onmessage(Some(message.as_ref().unchecked_ref()));
        self.socket
            .set_onclose(Some(close.as_ref().unchecked_ref()));
        *self.handlers.borrow_mut() = Some(Handlers {
            _open: open,
            _message: message,
            _close: close,
        });
    }

    pub(super) fn serial(&self) -> u64 {
        self.serial
    }

    pub(super) fn is_live(&self) -> bool {
        matches!(*self.state.borrow(), State::Live { .. })
    }

    fn send(&self, bytes: &[u8]) {
        if self.socket.ready_state() != WebSocket::OPEN {
            return;
        }
        if let Err(error) = self.socket.send_with_u8_array(bytes) {
            tracing::warn!(url = self.url, error = describe(&error), "cannot send");
        }
    }

    fn send_frame(&self, frame: &Frame<'_>) {
        match wire::encode(frame) {
            Ok(bytes) => self.send(&bytes),
            Err(error) => tracing::error!(%error, "cannot encode a frame"),
        }
    }

    /// Closes the socket and fails what depended on it.
    pub(super) fn close(&self, reason: &str) {
        tracing::debug!(url = self.url, reason, "closing link");
        if let Err(error) = self
            .socket
            .close_with_code_and_reason(NORMAL_CLOSURE, reason)
        {
            tracing::debug!(error = describe(&error), "close refused");
        }
        self.shut_down(NORMAL_CLOSURE);
    }

    /// The link is gone: a handshake in progress fails, pending calls fail with
    /// `ConnectionLost`, and blocks running for the remote stop.
    fn shut_down(&self, code: u16) {
        let state = std::mem::replace(&mut *self.state.borrow_mut(), State::Closed);
        match state {
            State::Handshaking { ready: Some(ready) } => {
                let error = if self.opened.get() {
                    Error::Handshake {
                        url: self.url.clone(),
                        reason: HandshakeError::Closed,
                    }
                } else {
                    Error::Connect {
                        url: self.url.clone(),
                        reason: format!("the socket closed before opening (code {code})"),
                        status: None,
                    }
                };
                let _caller_gone = ready.send(Err(error));
            }
            State::Live { remote, .. } => {
                if let Some(inner) = self.peer.upgrade() {
                    inner.remove_link(remote, self.serial);
                }
                let pending = std::mem::take(&mut *self.pending.borrow_mut());
                tracing::info!(peer = %remote, pending = pending.len(), "link down");
                for (_, reply) in pending {
                    let _caller_gone = reply.send(Err(RemoteError::ConnectionLost {
                        peer: remote,
                        block: None,
                    }));
                }
                let running = std::mem::take(&mut *self.running.borrow_mut());
                for (_, handle) in running {
                    handle.abort();
                }
            }
            State::Handshaking { ready: None } | State::Closed => {}
        }
    }

    fn fail_handshake(&self, reason: HandshakeError) {
        tracing::info!(url = self.url, %reason, "handshake refused");
        let ready = match &mut *self.state.borrow_mut() {
            State::Handshaking { ready } => ready.take(),
            _ => None,
        };
        if let Some(ready) = ready {
            let _caller_gone = ready.send(Err(Error::Handshake {
                url: self.url.clone(),
                reason: reason.clone(),
            }));
        }
        self.close(&reason.to_string());
    }

    fn on_message(self: &Rc<Self>, event: &MessageEvent) {
        self.last_heard.set(Instant::now());
        let data = event.data();
        if !data.is_instance_of::<ArrayBuffer>() {
            return self.close("text frames are not supported");
        }
        let bytes = Bytes::from(Uint8Array::new(&data).to_vec());
        let handshaking = matches!(*self.state.borrow(), State::Handshaking { .. });
        if handshaking {
            self.on_hello(&bytes);
        } else {
            self.on_frame(&bytes);
        }
    }

    fn on_hello(self: &Rc<Self>, bytes: &[u8]) {
        let Some(inner) = self.peer.upgrade() else {
            return self.close("peer dropped");
        };
        let expect = Expect {
            local: inner.id,
            app_version: &inner.config.app_version,
            refuse_app_version_mismatch: inner.config.refuse_app_version_mismatch,
        };
        let (hello, remote_max) = match check_hello(bytes, &expect) {
            Ok(checked) => checked,
            Err(reason) => return self.fail_handshake(reason),
        };
        if !inner.insert_link(hello.peer, self.clone()) {
            return self.fail_handshake(HandshakeError::Duplicate(hello.peer));
        }
        tracing::info!(peer = %hello.peer, url = self.url, "link up");
        let previous = std::mem::replace(
            &mut *self.state.borrow_mut(),
            State::Live {
                remote: hello.peer,
                remote_max,
            },
        );
        if let State::Handshaking { ready: Some(ready) } = previous {
            let _caller_gone = ready.send(Ok(hello.peer));
        }
        self.watch_liveness(inner.config.ping_interval, inner.config.liveness_timeout);
    }

    /// Sends a `Ping` every `interval`; closes the link after `timeout` without a frame.
    fn watch_liveness(self: &Rc<Self>, interval: Duration, timeout: Duration) {
        let weak: Weak<Self> = Rc::downgrade(self);
        spawn_local(async move {
            let mut nonce = 0u64;
            loop {
                timer::sleep(interval).await;
                let Some(link) = weak.upgrade() else { return };
                if !link.is_live() {
                    return;
                }
                if link.last_heard.get().elapsed() > timeout {
                    tracing::warn!(url = link.url, "peer silent, dropping the link");
                    return link.close("liveness timeout");
                }
                nonce = nonce.wrapping_add(1);
                link.send_frame(&Frame::Ping { nonce });
            }
        });
    }

    fn on_frame(self: &Rc<Self>, bytes: &Bytes) {
        let State::Live { remote, remote_max } = *self.state.borrow() else {
            return;
        };
        let Some(inner) = self.peer.upgrade() else {
            return self.close("peer dropped");
        };
        let frame: Frame<'_> = match wire::decode(bytes, inner.config.max_message_size) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(peer = %remote, %error, "undecodable frame");
                return self.close("undecodable frame");
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
                let trace = metadata
                    .iter()
                    .find(|(key, _)| key == Trace::KEY)
                    .and_then(|(_, value)| Trace::from_traceparent(value));
                let call = Inbound {
                    remote,
                    remote_max,
                    id,
                    block,
                    deadline_ms,
                    captures: bytes.slice_ref(captures),
                    trace,
                };
                self.on_call(&inner, call, &name);
            }
            Frame::Reply { id, result } => {
                let reply = self.pending.borrow_mut().remove(&id);
                match reply {
                    Some(reply) => {
                        let result = match result {
                            ReplyBody::Ok(output) => Ok(bytes.slice_ref(output)),
                            ReplyBody::Err(error) => Err(error),
                        };
                        let _caller_gone = reply.send(result);
                    }
                    None => tracing::debug!(peer = %remote, id, "late or unknown reply dropped"),
                }
            }
            Frame::Cancel { id } => {
                let running = self.running.borrow_mut().remove(&id);
                if let Some(handle) = running {
                    handle.abort();
                }
            }
            Frame::Ping { nonce } => self.send_frame(&Frame::Pong { nonce }),
            Frame::Pong { .. } => {}
        }
    }

    fn on_call(self: &Rc<Self>, inner: &Arc<Inner>, call: Inbound, name: &str) {
        let Inbound {
            remote,
            remote_max,
            id,
            block: block_id,
            deadline_ms,
            captures,
            trace,
        } = call;
        if self.running.borrow().contains_key(&id) {
            tracing::warn!(peer = %remote, id, "duplicate call id ignored");
            return;
        }
        // The id must name the very block that was asked for, by name too.
        let entry = match block::lookup(block_id, name) {
            Ok(entry) if entry.info.name() == name => entry,
            Ok(_) => {
                let error = RemoteError::UnknownBlock {
                    peer: None,
                    block: name.to_owned(),
                };
                return self.reply(id, remote_max, Err(error));
            }
            Err(error) => return self.reply(id, remote_max, Err(error)),
        };
        tracing::debug!(peer = %remote, id, block = name, "call in");
        let deadline = Instant::now() + Duration::from_millis(deadline_ms);
        let runtime: Arc<dyn Runtime> = inner.clone();
        let scope = Scope::new(
            runtime,
            remote,
            #[cfg(feature = "auth")]
            None,
            Some(deadline),
        )
        .with_trace(trace);
        let max = inner.config.max_message_size;
        let (handle, registration) = AbortHandle::new_pair();
        let run = Abortable::new(scope.guard((entry.invoke)(captures, max)), registration);
        self.running.borrow_mut().insert(id, handle);
        let link = Rc::downgrade(self);
        spawn_local(async move {
            let outcome = run.await;
            if let Some(link) = link.upgrade() {
                link.running.borrow_mut().remove(&id);
                // An aborted call (cancelled, or its link closed) gets no reply.
                if let Ok(result) = outcome {
                    link.reply(id, remote_max, result);
                }
            }
        });
    }

    fn reply(&self, id: u64, remote_max: usize, result: Result<Payload, RemoteError>) {
        let local = self.peer.upgrade().map(|inner| inner.id);
        match wire::reply_frame(id, result, remote_max, local) {
            Ok(bytes) => self.send(&bytes),
            Err(error) => tracing::error!(%error, "cannot encode a reply"),
        }
    }

    /// Sends a call over this link and waits for its reply; dropping the future cancels it.
    pub(super) async fn call(
        self: Rc<Self>,
        target: PeerId,
        request: Request,
    ) -> Result<Bytes, RemoteError> {
        let lost = || RemoteError::ConnectionLost {
            peer: target,
            block: None,
        };
        let State::Live { remote_max, .. } = *self.state.borrow() else {
            return Err(lost());
        };
        let size = request.captures.len() + request.name.len() + 64;
        if size > remote_max {
            return Err(RemoteError::TooLarge {
                peer: Some(target),
                block: None,
                size: size as u64,
                limit: remote_max as u64,
            });
        }
        let id = self.next_call.get();
        self.next_call.set(id + 1);
        let deadline_ms =
            wire::deadline_ms(request.deadline.saturating_duration_since(Instant::now()));
        // Only traced calls carry metadata: the caller's trace context, for the callee's span.
        let traceparent = request.trace.map(Trace::to_traceparent);
        let metadata: Vec<(Cow<'_, str>, Cow<'_, str>)> = match &traceparent {
            Some(value) => vec![(Trace::KEY.into(), value.as_str().into())],
            None => Vec::new(),
        };
        // The captures were encoded with room for this header: no copy of them here.
        let bytes = request.captures.into_call_frame(
            id,
            request.block,
            request.name,
            deadline_ms,
            &metadata,
        )?;
        let (reply, replied) = oneshot::channel();
        self.pending.borrow_mut().insert(id, reply);
        self.send(&bytes);
        let mut guard = CancelOnDrop {
            link: Rc::downgrade(&self),
            id,
            armed: true,
        };
        let result = replied.await.unwrap_or_else(|_| Err(lost()));
        guard.armed = false;
        result
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Unhook the handlers before they are freed, and let the remote know.
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        if self.socket.ready_state() <= WebSocket::OPEN {
            let _closing = self
                .socket
                .close_with_code_and_reason(NORMAL_CLOSURE, "link dropped");
        }
    }
}

/// The fields of an inbound `Call` frame, captures sliced out of the frame's buffer.
struct Inbound {
    remote: PeerId,
    remote_max: usize,
    id: u64,
    block: u64,
    deadline_ms: u64,
    captures: Bytes,
    trace: Option<Trace>,
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
            let pending = link.pending.borrow_mut().remove(&self.id);
            if pending.is_some() && link.is_live() {
                link.send_frame(&Frame::Cancel { id: self.id });
            }
        }
    }
}

/// The message of a JavaScript exception, for error reports.
fn describe(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
