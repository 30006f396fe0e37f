//! WebSocket transport: the accepting side (actix-web + actix-ws) and the connecting side
//! (awc), both reduced to one shape, a [`Socket`]: a stream of [`Inbound`] events and a
//! channel of [`Outgoing`] frames drained by a writer task on the connection's thread.
//!
//! A leaf: it knows nothing of links, peers or actors. What it bounds, it bounds with a
//! [`Flow`] the link adapter sets: reading stops while too many written bytes wait for the
//! remote to take them, and at most the current message limit (plus one frame header) of
//! unparsed input is buffered per socket.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_http::error::PayloadError;
use actix_web::dev::Extensions;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Item, Message, ProtocolError};
use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::budget::Budget;
use crate::error::Error;

/// What a socket receives.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A complete binary message.
    Binary(Bytes),
    /// `n` more bytes of a fragmented message arrived; it is not complete yet.
    Fragment(usize),
    Ping(Bytes),
    Pong,
    Text,
    /// The remote's close frame, with its reason.
    Close {
        /// The close code, if the frame had one.
        code: Option<u16>,
        reason: Option<String>,
    },
    /// The transport refused a frame (too large, malformed framing); the close code to use.
    Violation(u16, String),
}

/// What a socket sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Binary(Bytes),
    Ping,
    Pong(Bytes),
    Close { code: u16, reason: String },
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Self::Binary(bytes) | Self::Pong(bytes) => bytes.len(),
            Self::Ping => 0,
            Self::Close { reason, .. } => reason.len() + 2,
        }
    }
}

/// The flow control of one socket, shared by its reader, its writer and the link adapter
/// (all on the connection's thread).
#[derive(Debug)]
pub(crate) struct Flow {
    /// Bytes handed to the writer and not yet taken by the socket.
    unsent: Cell<usize>,
    /// Past this many unsent bytes, the reader stops reading.
    send_cap: usize,
    /// The largest message the reader lets through now (the link raises it after the
    /// handshake).
    inbound_limit: Cell<usize>,
    /// Bytes taken from the network and not yet delivered as frames.
    buffered: Cell<usize>,
    /// The peer-wide budget of unfinished messages, where what this socket buffers beyond
    /// [`UNPARSED_SHARE`] is charged (none on connecting sockets) ...
    partial: Option<Arc<Budget>>,
    /// ... how much it holds of it ...
    charged: Cell<usize>,
    /// ... and whether it needed more than the budget had: the link then closes (1008).
    exhausted: Cell<bool>,
    /// The reader, waiting for the writer to make room.
    reader: RefCell<Option<Waker>>,
}

/// Unparsed input a socket may always buffer without the peer-wide budget: small messages
/// never wait for it, and a thousand idle links hold no budget.
pub(crate) const UNPARSED_SHARE: usize = 64 << 10;

impl Flow {
    fn new(send_cap: usize, inbound_limit: usize, partial: Option<Arc<Budget>>) -> Rc<Self> {
        Rc::new(Self {
            unsent: Cell::new(0),
            send_cap,
            inbound_limit: Cell::new(inbound_limit),
            buffered: Cell::new(0),
            partial,
            charged: Cell::new(0),
            exhausted: Cell::new(false),
            reader: RefCell::new(None),
        })
    }

    /// `bytes` more were taken from the network: what goes beyond this socket's share is
    /// charged to the peer-wide budget (all of it, even past the budget, since it is already
    /// read: the link then closes, so one read's worth per link is the most it overshoots).
    fn took(&self, bytes: usize) {
        self.buffered.set(self.buffered.get() + bytes);
        let Some(budget) = &self.partial else { return };
        let excess = self.buffered.get().saturating_sub(UNPARSED_SHARE);
        let more = excess.saturating_sub(self.charged.get());
        if more > 0 {
            if !budget.try_take(more) {
                budget.force_take(more);
                self.exhausted.set(true);
            }
            self.charged.set(self.charged.get() + more);
        }
    }

    /// `bytes` were delivered as frames: the budget gets back what is no longer held.
    fn delivered(&self, bytes: usize) {
        self.buffered.set(self.buffered.get().saturating_sub(bytes));
        let Some(budget) = &self.partial else { return };
        let excess = self.buffered.get().saturating_sub(UNPARSED_SHARE);
        let freed = self.charged.get().saturating_sub(excess);
        if freed > 0 {
            budget.give(freed);
            self.charged.set(excess);
        }
    }

    /// Bytes handed to the writer and not yet taken by the socket.
    pub(crate) fn unsent(&self) -> usize {
        self.unsent.get()
    }

    /// Sets the largest message the reader lets through.
    pub(crate) fn set_inbound_limit(&self, limit: usize) {
        self.inbound_limit.set(limit);
    }

    fn sent(&self, bytes: usize) {
        self.unsent.set(self.unsent.get().saturating_sub(bytes));
        if self.unsent.get() <= self.send_cap
            && let Some(reader) = self.reader.borrow_mut().take()
        {
            reader.wake();
        }
    }

    /// Whether the reader may read: not while the remote leaves too much of ours unread.
    fn may_read(&self, cx: &Context<'_>) -> bool {
        if self.unsent.get() <= self.send_cap {
            return true;
        }
        *self.reader.borrow_mut() = Some(cx.waker().clone());
        false
    }

    /// How much unparsed input may be buffered: one message at the current limit plus the
    /// largest frame header.
    fn may_buffer(&self) -> bool {
        self.buffered.get() <= self.inbound_limit.get() + 14
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        if let Some(budget) = &self.partial {
            budget.give(self.charged.get());
        }
    }
}

/// The accepted TCP connection under a WebSocket, kept (as a second handle to the same
/// socket) so that a link can end it: a remote that stops reading keeps its connection open
/// forever otherwise, since nothing more can be written to it, not even a close frame.
#[derive(Debug, Clone)]
pub(crate) struct Connection(Arc<socket2::Socket>);

impl Connection {
    /// Ends the connection after `grace` (time for a close frame to get through): both
    /// directions are shut down, so the server drops it whatever it was waiting for.
    pub(crate) fn end_after(self, grace: Duration) {
        actix_rt::spawn(async move {
            actix_rt::time::sleep(grace).await;
            // Already closed by then is fine: there is nothing left to end.
            let _closed = self.0.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// `HttpServer::on_connect`: remembers each accepted connection's socket in its
/// extensions, for [`Connection`].
pub(crate) fn remember_connection(connection: &dyn Any, extensions: &mut Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    use actix_web::rt::net::TcpStream;
    let tcp = if let Some(tcp) = connection.downcast_ref::<TcpStream>() {
        tcp
    } else if let Some(tls) = connection.downcast_ref::<TlsStream<TcpStream>>() {
        tls.get_ref().0
    } else {
        return;
    };
    // Small messages answered at once: no Nagle delay (also for an endpoint mounted in the
    // application's own server).
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
    }
    match socket2::SockRef::from(tcp).try_clone() {
        Ok(socket) => {
            extensions.insert(Connection(Arc::new(socket)));
        }
        Err(error) => tracing::debug!(%error, "cannot keep a handle on a connection"),
    }
}

/// Frames on their way to a socket's writer task, on the connection's thread: a queue
/// without a per-frame allocation, the writer woken once per burst.
#[derive(Debug, Default)]
struct Writes {
    frames: RefCell<std::collections::VecDeque<Outgoing>>,
    writer: RefCell<Option<Waker>>,
    /// Live [`Sender`]s: when the last one is gone, the writer closes the socket.
    senders: Cell<usize>,
    /// The writer ended (the socket is gone): frames are dropped.
    writer_gone: Cell<bool>,
}

impl Writes {
    fn new() -> Rc<Self> {
        Rc::new(Self {
            senders: Cell::new(1),
            ..Self::default()
        })
    }

    fn push(&self, frame: Outgoing) {
        if self.writer_gone.get() {
            return;
        }
        let was_empty = {
            let mut frames = self.frames.borrow_mut();
            frames.push_back(frame);
            frames.len() == 1
        };
        if was_empty {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(writer) = self.writer.borrow_mut().take() {
            writer.wake();
        }
    }

    /// The next frame, if one is queued now.
    fn try_pop(&self) -> Option<Outgoing> {
        self.frames.borrow_mut().pop_front()
    }

    /// The next frame; `None` once every sender is gone and the queue is empty.
    async fn next(&self) -> Option<Outgoing> {
        std::future::poll_fn(|cx| {
            if let Some(frame) = self.try_pop() {
                return Poll::Ready(Some(frame));
            }
            if self.senders.get() == 0 {
                return Poll::Ready(None);
            }
            *self.writer.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Ends a writer: what is still queued is dropped, and so is what comes later.
struct WriterGone(Rc<Writes>);

impl Drop for WriterGone {
    fn drop(&mut self) {
        self.0.writer_gone.set(true);
        self.0.frames.borrow_mut().clear();
    }
}

/// The events of a socket.
pub(crate) type InboundStream = Pin<Box<dyn Stream<Item = Inbound>>>;

/// One open WebSocket: its events, the channel to its writer, and its flow control.
pub(crate) struct Socket {
    inbound: InboundStream,
    outbound: Sender,
    flow: Rc<Flow>,
    /// The accepted connection, where the server that accepted it kept a handle.
    connection: Option<Connection>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

/// The sending half of a [`Socket`].
#[derive(Debug)]
pub(crate) struct Sender {
    writes: Rc<Writes>,
    flow: Rc<Flow>,
}

impl Sender {
    /// Hands `frame` to the writer; its bytes count as unsent until the socket takes them.
    /// (The queue itself has no bound of its own; what bounds it is that the link stops
    /// reading, and so stops producing replies, past [`Flow`]'s cap, and that a link whose
    /// remote does not read ends after its write timeout.)
    pub(crate) fn send(&self, frame: Outgoing) {
        self.flow.unsent.set(self.flow.unsent.get() + frame.len());
        // A writer that ended means the socket is gone; the reader ends and the link stops.
        self.writes.push(frame);
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.writes.senders.set(self.writes.senders.get() + 1);
        Self {
            writes: self.writes.clone(),
            flow: self.flow.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let left = self.writes.senders.get().saturating_sub(1);
        self.writes.senders.set(left);
        if left == 0 {
            self.writes.wake();
        }
    }
}

impl Socket {
    /// Splits into the event stream, the sender, the flow control and the connection.
    pub(crate) fn split(self) -> (InboundStream, Sender, Rc<Flow>, Option<Connection>) {
        (self.inbound, self.outbound, self.flow, self.connection)
    }
}

/// The limits a socket starts with.
#[derive(Debug, Clone)]
pub(crate) struct SocketLimits {
    /// The largest frame the codec accepts at all (the configured message size).
    pub(crate) max_frame: usize,
    /// The largest message accepted before the link raises it (the handshake's limit).
    pub(crate) first_limit: usize,
    /// Unsent bytes past which reading stops.
    pub(crate) send_cap: usize,
    /// The peer-wide budget of unfinished messages that what an accepted socket buffers
    /// beyond [`UNPARSED_SHARE`] is charged to.
    pub(crate) partial: Option<Arc<Budget>>,
}

fn violation(error: &ProtocolError) -> Inbound {
    let code = match error {
        ProtocolError::Overflow => CloseCode::Size,
        ProtocolError::Io(_) => CloseCode::Policy,
        _ => CloseCode::Protocol,
    };
    Inbound::Violation(code.into(), error.to_string())
}

/// The WebSocket upgrade of an accepted request, with `protocols` offered for selection.
///
/// # Errors
///
/// The handshake error of a request that is not a valid WebSocket upgrade.
pub(crate) async fn accept(
    request: &HttpRequest,
    body: web::Payload,
    protocols: &[&str],
    limits: SocketLimits,
) -> actix_web::Result<(HttpResponse, Socket)> {
    let flow = Flow::new(limits.send_cap, limits.first_limit, limits.partial);
    // Meter what the codec may buffer: the payload stream stops yielding input once a
    // message's worth is waiting, so a hostile frame header claiming megabytes is never
    // read into memory beyond the current limit.
    let metered = Metered {
        inner: body.into_inner(),
        flow: flow.clone(),
    };
    let mut payload =
        actix_http::Payload::from(Box::pin(metered) as actix_http::BoxedPayloadStream);
    let body = web::Payload::from_request(request, &mut payload).await?;
    let (response, session, stream) = actix_ws::handle_with_protocols(request, body, protocols)?;
    let raw = stream
        .max_frame_size(limits.max_frame)
        .map(|item| match item {
            Ok(Message::Binary(bytes)) => Ok(Raw::Binary(bytes)),
            Ok(Message::Text(text)) => Ok(Raw::Text(text.len())),
            Ok(Message::Continuation(item)) => Ok(Raw::Continuation(item)),
            Ok(Message::Ping(bytes)) => Ok(Raw::Ping(bytes)),
            Ok(Message::Pong(bytes)) => Ok(Raw::Pong(bytes.len())),
            Ok(Message::Close(reason)) => Ok(Raw::Close(reason)),
            Ok(Message::Nop) => Ok(Raw::Nop),
            Err(error) => Err(error),
        });
    let writes = Writes::new();
    actix_web::rt::spawn(write_session(session, writes.clone(), flow.clone()));
    let inbound = Frames {
        inner: raw,
        flow: flow.clone(),
        partial: None,
        // Client frames are masked: 4 more header bytes.
        mask: 4,
    };
    Ok((
        response,
        Socket {
            inbound: Box::pin(inbound),
            outbound: Sender {
                writes,
                flow: flow.clone(),
            },
            flow,
            connection: request.conn_data::<Connection>().cloned(),
        },
    ))
}

/// Counts the input taken from the network into [`Flow::buffered`], and stops taking more
/// while a message's worth waits to be parsed.
struct Metered {
    inner: actix_http::Payload,
    flow: Rc<Flow>,
}

impl Stream for Metered {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.flow.may_buffer() {
            // The codec holds a partial frame larger than any message allowed now: never
            // completed, so the link's timers end it. Woken when frames are delivered.
            *self.flow.reader.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &polled {
            self.flow.took(bytes.len());
        }
        polled
    }
}

async fn write_session(mut session: actix_ws::Session, writes: Rc<Writes>, flow: Rc<Flow>) {
    let writes = WriterGone(writes);
    while let Some(frame) = writes.0.next().await {
        let len = frame.len();
        let sent = match frame {
            Outgoing::Binary(bytes) => session.binary(bytes).await,
            Outgoing::Ping => session.ping(b"").await,
            Outgoing::Pong(bytes) => session.pong(&bytes).await,
            Outgoing::Close { code, reason } => {
                let _closed = session.close(Some(close_reason(code, reason))).await;
                return;
            }
        };
        flow.sent(len);
        if sent.is_err() {
            return;
        }
    }
    let _closed = session.close(None).await;
}

fn close_reason(code: u16, reason: String) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: (!reason.is_empty()).then_some(reason),
    }
}

/// The TLS client configuration of `wss://` links: rustls with the `aws-lc-rs` provider
/// (the crypto library `jsonwebtoken` uses already), HTTP/1.1 only (WebSockets need it).
fn client_config(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports rustls's default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Trusts the Mozilla root certificates (`webpki-roots`); built once per process.
pub(crate) fn default_client_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Arc::new(client_config(roots))
        })
        .clone()
}

/// Trusts exactly `roots`.
///
/// # Errors
///
/// [`Error::Config`] if one of them is not a usable certificate.
pub(crate) fn client_config_with_roots(
    roots: Vec<CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>, Error> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(root)
            .map_err(|_unusable| Error::Config("a TLS root is not a usable certificate"))?;
    }
    Ok(Arc::new(client_config(store)))
}

/// Makes a user's client configuration fit for WebSockets (HTTP/1.1 only).
pub(crate) fn adapt_client_config(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Opens a WebSocket to `url` on the current thread.
///
/// # Errors
///
/// [`Error::InvalidUrl`] for anything but a `ws://` or `wss://` URL, [`Error::Connect`] if
/// the connection or the upgrade fails or takes longer than `timeout`.
pub(crate) async fn connect(
    url: &str,
    token: Option<&str>,
    resume: Option<&str>,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    limits: SocketLimits,
) -> Result<Socket, Error> {
    let parsed: actix_web::http::Uri = url.parse().map_err(|_invalid| Error::InvalidUrl {
        url: url.to_owned(),
        reason: "not a uri",
    })?;
    match parsed.scheme_str() {
        Some("ws" | "wss") => {}
        _ => {
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "the scheme must be ws:// or wss://",
            });
        }
    }
    let client = awc::Client::builder()
        .connector(
            awc::Connector::new()
                .connector(NoDelay::default())
                .rustls_0_23(tls),
        )
        .timeout(timeout)
        .finish();
    let mut request = client.ws(url).max_frame_size(limits.max_frame);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(resume) = resume {
        request = request.set_header(crate::peer::RESUME_HEADER, resume);
    }
    let (_response, framed) = match actix_rt::time::timeout(timeout, request.connect()).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => {
            let status = match &error {
                awc::error::WsClientError::InvalidResponseStatus(status) => Some(status.as_u16()),
                _ => None,
            };
            return Err(Error::Connect {
                url: url.to_owned(),
                reason: error.to_string(),
                status,
            });
        }
        Err(_elapsed) => {
            return Err(Error::Connect {
                url: url.to_owned(),
                reason: "connect timed out".to_owned(),
                status: None,
            });
        }
    };
    let flow = Flow::new(limits.send_cap, limits.first_limit, None);
    let (mut sink, stream) = framed.split();
    let writes = Writes::new();
    let writer = WriterGone(writes.clone());
    let writer_flow = flow.clone();
    actix_rt::spawn(async move {
        // Write every frame already queued, then flush once: one system call for a burst of
        // frames instead of one per frame.
        'link: while let Some(first) = writer.0.next().await {
            let mut next = Some(first);
            let mut written = 0;
            while let Some(frame) = next {
                written += frame.len();
                let (message, last) = match frame {
                    Outgoing::Binary(bytes) => (Message::Binary(bytes), false),
                    Outgoing::Ping => (Message::Ping(Bytes::new()), false),
                    Outgoing::Pong(bytes) => (Message::Pong(bytes), false),
                    Outgoing::Close { code, reason } => {
                        (Message::Close(Some(close_reason(code, reason))), true)
                    }
                };
                if sink.feed(message).await.is_err() {
                    break 'link;
                }
                if last {
                    // The close handshake: the accepting side answers and ends the
                    // connection. Ending it here first could reach the other side with our
                    // close frame still unread (its stream reports the end first), which
                    // would look like a drop: hold it open until the link lets go of it.
                    if sink.flush().await.is_ok() {
                        writer_flow.sent(written);
                        while writer.0.next().await.is_some() {}
                    }
                    break 'link;
                }
                next = writer.0.try_pop();
            }
            if sink.flush().await.is_err() {
                break;
            }
            writer_flow.sent(written);
        }
        let _closed = sink.close().await;
    });
    let raw = stream.map(|item| {
        item.map(|frame| {
            use actix_http::ws::Frame;
            match frame {
                Frame::Binary(bytes) => Raw::Binary(bytes),
                Frame::Text(bytes) => Raw::Text(bytes.len()),
                Frame::Continuation(item) => Raw::Continuation(item),
                Frame::Ping(bytes) => Raw::Ping(bytes),
                Frame::Pong(bytes) => Raw::Pong(bytes.len()),
                Frame::Close(reason) => Raw::Close(reason),
            }
        })
    });
    let inbound = Frames {
        inner: raw,
        flow: flow.clone(),
        partial: None,
        // Server frames are not masked.
        mask: 0,
    };
    Ok(Socket {
        inbound: Box::pin(inbound),
        outbound: Sender {
            writes,
            flow: flow.clone(),
        },
        flow,
        connection: None,
    })
}

/// awc's TCP connector, with `TCP_NODELAY` set on each connection it makes: calls and
/// replies are small messages, which Nagle's algorithm would hold back.
#[derive(Clone, Default)]
struct NoDelay(actix_tls::connect::ConnectorService);

type TcpConnection =
    actix_tls::connect::Connection<actix_web::http::Uri, actix_web::rt::net::TcpStream>;

impl actix_web::dev::Service<actix_tls::connect::ConnectInfo<actix_web::http::Uri>> for NoDelay {
    type Response = TcpConnection;
    type Error = actix_tls::connect::ConnectError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<TcpConnection, Self::Error>>;

    fn poll_ready(&self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&self, info: actix_tls::connect::ConnectInfo<actix_web::http::Uri>) -> Self::Future {
        let connecting = self.0.call(info);
        Box::pin(async move {
            let connection = connecting.await?;
            if let Err(error) = connection.io_ref().set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY on a link");
            }
            Ok(connection)
        })
    }
}

/// One WebSocket frame, from either side's codec.
enum Raw {
    Binary(Bytes),
    Text(usize),
    Continuation(Item),
    Ping(Bytes),
    Pong(usize),
    Close(Option<CloseReason>),
    Nop,
}

/// The bytes a frame with `payload` bytes occupied on the wire: RFC 6455 section 5.2.
fn wire_len(payload: usize, mask: usize) -> usize {
    let extended = match payload {
        0..=125 => 0,
        126..=65_535 => 2,
        _ => 8,
    };
    2 + extended + mask + payload
}

/// Turns frames into [`Inbound`] events: assembles fragmented messages (reporting each
/// fragment, so the link can bound their time and bytes), meters delivered bytes, and
/// stops reading while the remote leaves too much unread.
struct Frames<S> {
    inner: S,
    flow: Rc<Flow>,
    /// A fragmented message being assembled, grown exactly by each fragment (large
    /// reallocations are remapped, not copied), so that what it holds is what arrived.
    partial: Option<Vec<u8>>,
    mask: usize,
}

impl<S> Stream for Frames<S>
where
    S: Stream<Item = Result<Raw, ProtocolError>> + Unpin,
{
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        if self.flow.exhausted.replace(false) {
            // Messages being read on all links together hold the peer's budget for
            // unfinished messages: this link, adding to it, closes.
            return Poll::Ready(Some(Inbound::Violation(
                CloseCode::Policy.into(),
                "peer-wide budget for unfinished messages exhausted".to_owned(),
            )));
        }
        if !self.flow.may_read(cx) {
            return Poll::Pending;
        }
        let raw = match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(raw))) => raw,
            // The connection failed under the WebSocket (reset, broken pipe): it is gone,
            // as if it had ended, not a protocol violation of the remote.
            Poll::Ready(Some(Err(ProtocolError::Io(error)))) => {
                tracing::debug!(%error, "connection lost");
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(violation(&error))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending if !self.flow.may_buffer() => {
                // The metered input stopped with more than a message's worth buffered and
                // still no complete frame: one frame is larger than any message allowed now.
                return Poll::Ready(Some(Inbound::Violation(
                    CloseCode::Size.into(),
                    "message over the size limit".to_owned(),
                )));
            }
            Poll::Pending => return Poll::Pending,
        };
        let mask = self.mask;
        let (event, payload) = match raw {
            Raw::Binary(bytes) => {
                let len = bytes.len();
                if self.partial.is_some() {
                    (protocol("a new message inside a fragmented one"), len)
                } else {
                    (Inbound::Binary(bytes), len)
                }
            }
            Raw::Text(len) => (Inbound::Text, len),
            Raw::Ping(bytes) => {
                let len = bytes.len();
                (Inbound::Ping(bytes), len)
            }
            Raw::Pong(len) => (Inbound::Pong, len),
            Raw::Close(reason) => {
                let len = reason.as_ref().map_or(0, |reason| {
                    2 + reason.description.as_ref().map_or(0, String::len)
                });
                (
                    Inbound::Close {
                        code: reason.as_ref().map(|reason| u16::from(reason.code)),
                        reason: reason.and_then(|reason| reason.description),
                    },
                    len,
                )
            }
            Raw::Nop => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Raw::Continuation(item) => {
                let len = match &item {
                    Item::FirstText(chunk)
                    | Item::FirstBinary(chunk)
                    | Item::Continue(chunk)
                    | Item::Last(chunk) => chunk.len(),
                };
                (self.continue_with(item), len)
            }
        };
        let consumed = wire_len(payload, mask);
        self.flow.delivered(consumed);
        // The metered input may have stopped for want of room: there is room again.
        if let Some(reader) = self.flow.reader.borrow_mut().take() {
            reader.wake();
        }
        Poll::Ready(Some(event))
    }
}

fn protocol(reason: &str) -> Inbound {
    Inbound::Violation(CloseCode::Protocol.into(), reason.to_owned())
}

impl<S> Frames<S> {
    fn continue_with(&mut self, item: Item) -> Inbound {
        let (chunk, first, last) = match item {
            Item::FirstText(_) => return Inbound::Text,
            Item::FirstBinary(chunk) => (chunk, true, false),
            Item::Continue(chunk) => (chunk, false, false),
            Item::Last(chunk) => (chunk, false, true),
        };
        let limit = self.flow.inbound_limit.get();
        let partial = match (&mut self.partial, first) {
            (None, true) => self.partial.insert(Vec::new()),
            (Some(partial), false) => partial,
            _ => return protocol("unexpected continuation frame"),
        };
        if partial.len() + chunk.len() > limit {
            return Inbound::Violation(
                CloseCode::Size.into(),
                "fragmented message over the size limit".to_owned(),
            );
        }
        partial.reserve_exact(chunk.len());
        partial.extend_from_slice(&chunk);
        if last {
            match self.partial.take() {
                Some(all) => Inbound::Binary(Bytes::from(all)),
                None => protocol("unexpected continuation frame"),
            }
        } else {
            Inbound::Fragment(chunk.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_of_a_link_set_tcp_nodelay() {
        use actix_web::dev::Service;
        actix_rt::System::new().block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            // The dialling side: awc's connector as links use it.
            let uri: actix_web::http::Uri = format!("http://{addr}/").parse().unwrap();
            let dialled = NoDelay::default()
                .call(actix_tls::connect::ConnectInfo::new(uri))
                .await
                .unwrap();
            assert!(dialled.io_ref().nodelay().unwrap(), "the dialled socket");
            // The accepting side: the connect hook of a listening peer or an endpoint.
            let (accepted, _) = listener.accept().unwrap();
            accepted.set_nonblocking(true).unwrap();
            let accepted = actix_web::rt::net::TcpStream::from_std(accepted).unwrap();
            assert!(!accepted.nodelay().unwrap(), "off until the hook runs");
            remember_connection(&accepted, &mut Extensions::new());
            assert!(accepted.nodelay().unwrap(), "the accepted socket");
        });
    }

    #[test]
    fn unparsed_input_beyond_a_sockets_share_draws_on_the_peer_wide_budget() {
        let budget = Arc::new(Budget::new(1 << 20));
        let first = Flow::new(1 << 20, 16 << 20, Some(budget.clone()));
        let second = Flow::new(1 << 20, 16 << 20, Some(budget.clone()));
        // Within its share, a socket takes nothing from the budget.
        first.took(UNPARSED_SHARE);
        assert_eq!(budget.used(), 0);
        // Beyond it, every byte is charged, and given back as frames are delivered.
        first.took(600 << 10);
        assert_eq!(budget.used(), 600 << 10);
        assert!(!first.exhausted.get());
        // The other socket needs more than is left: it is charged anyway (the bytes are in
        // memory) and told to close.
        second.took(UNPARSED_SHARE + (500 << 10));
        assert!(second.exhausted.get());
        assert_eq!(budget.used(), 1100 << 10);
        first.delivered(600 << 10);
        assert_eq!(budget.used(), 500 << 10);
        // A socket that goes away gives back what it held.
        drop(second);
        assert_eq!(budget.used(), 0);
        // Connecting sockets have no budget.
        let connecting = Flow::new(1 << 20, 16 << 20, None);
        connecting.took(8 << 20);
        assert!(!connecting.exhausted.get());
    }
}
