//! One link to another peer: an actor on the thread that owns its socket.
//!
//! Everything per call happens here: reading the frame header, finding the block, running
//! it, replying, and matching replies to the calls this peer made over the link.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use actix::prelude::*;
use actix_ws::{CloseCode, CloseReason};
use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use web_time::Instant;

use super::shared::{Link, Shared};
use crate::block;
use crate::error::{Error, HandshakeError};
use crate::scope::{Request, Scope};
use crate::transport::{Inbound, InboundStream, Outgoing};
use crate::wire::{self, Frame, Hello, HelloError, ReplyBody};
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
    fn describe(&self) -> &str {
        match self {
            Self::Inbound { remote } => remote,
            Self::Outbound { url } => url,
        }
    }
}

type Reply = oneshot::Sender<Result<Bytes, RemoteError>>;

enum State {
    Handshaking {
        ready: Option<oneshot::Sender<Result<PeerId, Error>>>,
    },
    Live {
        remote: PeerId,
        remote_max: usize,
    },
    Closed,
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
            }
        })
    }

    fn send(&self, frame: Outgoing) {
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
        self.send(Outgoing::Close(CloseReason {
            code,
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    fn fail_handshake(&mut self, ctx: &mut Context<Self>, reason: HandshakeError) {
        tracing::info!(link = self.direction.describe(), %reason, "handshake refused");
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
        let hello = match Hello::from_bytes(bytes) {
            Ok(hello) => hello,
            Err(HelloError::BadMagic) => return self.fail_handshake(ctx, HandshakeError::BadMagic),
            Err(HelloError::Version(remote)) => {
                return self.fail_handshake(
                    ctx,
                    HandshakeError::UnsupportedVersion {
                        remote,
                        local: wire::PROTOCOL_VERSION,
                    },
                );
            }
            Err(HelloError::Malformed) => {
                return self.fail_handshake(ctx, HandshakeError::Malformed);
            }
        };
        if hello.peer == self.shared.id {
            return self.fail_handshake(ctx, HandshakeError::SelfConnection);
        }
        let local_version = &self.shared.config.app_version;
        if hello.app_version != *local_version {
            let remote = hello.app_version.clone().unwrap_or_default();
            let local = local_version.clone().unwrap_or_default();
            if self.shared.config.refuse_app_version_mismatch {
                return self.fail_handshake(ctx, HandshakeError::AppVersion { remote, local });
            }
            tracing::warn!(peer = %hello.peer, remote, local, "application versions differ");
        }
        let remote_max = usize::try_from(hello.max_message_size)
            .unwrap_or(usize::MAX)
            .min(wire::MAX_MESSAGE_SIZE_CEILING);
        let link = Link {
            serial: self.serial,
            addr: ctx.address(),
            next_call: self.next_call.clone(),
            remote_max,
            direction: self.direction.clone(),
            app_version: hello.app_version.clone(),
        };
        if !self.shared.insert_link(hello.peer, link) {
            return self.fail_handshake(ctx, HandshakeError::Duplicate(hello.peer));
        }
        tracing::info!(peer = %hello.peer, link = self.direction.describe(), "link up");
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
        let State::Live { remote, remote_max } = self.state else {
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
                return self.close(ctx, code, "undecodable frame");
            }
        };
        match frame {
            Frame::Call {
                id,
                block,
                name,
                deadline_ms,
                captures,
                ..
            } => {
                let captures = bytes.slice_ref(captures);
                self.on_call(
                    ctx,
                    remote,
                    remote_max,
                    id,
                    block,
                    &name,
                    deadline_ms,
                    captures,
                );
            }
            Frame::Reply { id, result } => match self.pending.remove(&id) {
                Some(reply) => {
                    let result = match result {
                        ReplyBody::Ok(output) => Ok(bytes.slice_ref(output)),
                        ReplyBody::Err(error) => Err(error),
                    };
                    let _caller_gone = reply.send(result);
                }
                None => tracing::debug!(peer = %remote, id, "late or unknown reply dropped"),
            },
            Frame::Cancel { id } => {
                if let Some(handle) = self.running.remove(&id) {
                    ctx.cancel_future(handle);
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
        remote_max: usize,
        id: u64,
        block_id: u64,
        name: &str,
        deadline_ms: u64,
        captures: Bytes,
    ) {
        if self.running.contains_key(&id) {
            tracing::warn!(peer = %remote, id, "duplicate call id ignored");
            return;
        }
        if self.running.len() >= self.shared.config.max_inbound_calls {
            return self.reply(
                id,
                remote_max,
                &Err(RemoteError::Overloaded {
                    peer: None,
                    block: Some(name.to_owned()),
                }),
            );
        }
        // Authorize by name first, so that nothing about the block, not even whether it
        // exists, is revealed to a caller that may not run it; the captures stay opaque.
        #[cfg(feature = "auth")]
        if let Err(error) = self.shared.guard.authorize(&self.link_auth, remote, name) {
            return self.reply(id, remote_max, &Err(error));
        }
        // The id must name the very block that was authorized.
        let entry = match block::lookup(block_id, name) {
            Ok(entry) if entry.info.name() == name => entry,
            Ok(_) => {
                return self.reply(
                    id,
                    remote_max,
                    &Err(RemoteError::UnknownBlock {
                        peer: None,
                        block: name.to_owned(),
                    }),
                );
            }
            Err(error) => return self.reply(id, remote_max, &Err(error)),
        };
        let deadline = Instant::now() + Duration::from_millis(deadline_ms);
        let scope = Scope::new(
            self.shared.clone(),
            remote,
            #[cfg(feature = "auth")]
            self.link_auth.principal(),
            Some(deadline),
        );
        let max = self.shared.config.max_message_size;
        let run = scope.guard((entry.invoke)(captures, max));
        let handle = ctx.spawn(run.into_actor(self).map(move |result, this, _ctx| {
            this.running.remove(&id);
            this.reply(id, remote_max, &result);
        }));
        self.running.insert(id, handle);
    }

    fn reply(&self, id: u64, remote_max: usize, result: &Result<Vec<u8>, RemoteError>) {
        let local = Some(self.shared.id);
        let frame = match result {
            Ok(output) => Frame::Reply {
                id,
                result: ReplyBody::Ok(output),
            },
            Err(error) => Frame::Reply {
                id,
                result: ReplyBody::Err(with_peer(error.clone(), local)),
            },
        };
        let bytes = match wire::encode(&frame) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "cannot encode a reply");
                return;
            }
        };
        if bytes.len() > remote_max {
            let too_large = RemoteError::TooLarge {
                peer: local,
                block: None,
                size: bytes.len() as u64,
                limit: remote_max as u64,
            };
            return self.send_frame(&Frame::Reply {
                id,
                result: ReplyBody::Err(too_large),
            });
        }
        self.send(Outgoing::Binary(Bytes::from(bytes)));
    }
}

/// Marks an error produced here with this peer's id, where it has none.
fn with_peer(error: RemoteError, peer: Option<PeerId>) -> RemoteError {
    match (error.block().map(str::to_owned), peer) {
        (Some(block), Some(peer)) => error.with_context(&block, peer),
        _ => error,
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let hello = Hello {
            peer: self.shared.id,
            max_message_size: self.shared.config.max_message_size as u64,
            app_version: self.shared.config.app_version.clone(),
        };
        match hello.to_bytes() {
            Ok(bytes) => self.send(Outgoing::Binary(Bytes::from(bytes))),
            Err(error) => tracing::error!(%error, "cannot encode hello"),
        }
        ctx.run_later(self.shared.config.handshake_timeout, |this, ctx| {
            if let State::Handshaking { .. } = this.state {
                this.fail_handshake(ctx, HandshakeError::Timeout);
            }
        });
        #[cfg(feature = "auth")]
        if let Some(principal) = self.link_auth.principal() {
            // The link lives no longer than the token it was opened with.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            let left = Duration::from_secs(principal.expires_at().saturating_sub(now));
            if principal.expires_at() != u64::MAX {
                ctx.run_later(left, |this, ctx| {
                    tracing::info!(target: "distributed_scope::auth", "token expired, closing link");
                    this.close(ctx, CloseCode::Policy, "token expired");
                });
            }
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
                tracing::info!(peer = %remote, pending = self.pending.len(), "link down");
                for (_, reply) in self.pending.drain() {
                    let _caller_gone = reply.send(Err(RemoteError::ConnectionLost {
                        peer: remote,
                        block: None,
                    }));
                }
            }
            State::Handshaking { ready: None } | State::Closed => {}
        }
    }
}

impl StreamHandler<Inbound> for Connection {
    fn handle(&mut self, event: Inbound, ctx: &mut Context<Self>) {
        match event {
            Inbound::Binary(bytes) => match self.state {
                State::Handshaking { .. } => self.on_hello(&bytes, ctx),
                State::Live { .. } => self.on_frame(&bytes, ctx),
                State::Closed => {}
            },
            Inbound::Ping(bytes) => self.send(Outgoing::Pong(bytes)),
            Inbound::Pong => {}
            Inbound::Text => {
                self.close(ctx, CloseCode::Unsupported, "text frames are not supported")
            }
            Inbound::Close(reason) => {
                tracing::debug!(
                    link = self.direction.describe(),
                    ?reason,
                    "closed by remote"
                );
                self.send(Outgoing::Close(CloseReason {
                    code: CloseCode::Normal,
                    description: None,
                }));
                ctx.stop();
            }
            Inbound::Violation(code, reason) => self.close(ctx, code, &reason),
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
        let deadline_ms = call
            .request
            .deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        let frame = Frame::Call {
            id: call.id,
            block: call.request.block,
            name: call.request.name.into(),
            deadline_ms,
            metadata: Vec::new(),
            captures: &call.request.captures,
        };
        match wire::encode(&frame) {
            Ok(bytes) => {
                self.pending.insert(call.id, call.reply);
                self.send(Outgoing::Binary(Bytes::from(bytes)));
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

/// Close the link (peer stopping, `disconnect`).
pub(crate) struct Close(pub(crate) CloseCode);

impl Message for Close {
    type Result = ();
}

impl Handler<Close> for Connection {
    type Result = ();

    fn handle(&mut self, close: Close, ctx: &mut Context<Self>) {
        self.close(ctx, close.0, "closing");
    }
}
