//! WebSocket transport: the accepting side (actix-web + actix-ws) and the connecting side
//! (awc), both reduced to one shape: a stream of [`Inbound`] events and a channel of
//! [`Outgoing`] frames drained by a writer task on the connection's thread.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Item, Message, ProtocolError};
use bytes::{Bytes, BytesMut};
use futures_channel::mpsc;
use futures_util::{SinkExt, Stream, StreamExt};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::error::Error;
use crate::peer::connection::{Connection, Direction};
use crate::peer::shared::Shared;

/// What a connection receives.
#[derive(Debug)]
pub(crate) enum Inbound {
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    Text,
    Close(Option<CloseReason>),
    /// The transport refused a frame: too large, malformed WebSocket framing, ...
    Violation(CloseCode, String),
}

/// What a connection sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Binary(Bytes),
    Ping,
    Pong(Bytes),
    Close(CloseReason),
}

/// A boxed stream of inbound events.
pub(crate) type InboundStream = Pin<Box<dyn Stream<Item = Inbound>>>;

fn violation(error: &ProtocolError) -> Inbound {
    let code = match error {
        ProtocolError::Overflow => CloseCode::Size,
        _ => CloseCode::Protocol,
    };
    Inbound::Violation(code, error.to_string())
}

/// The upgrade handler: `GET /` on a listening peer, or the route of
/// [`PeerHandle::endpoint`](crate::PeerHandle::endpoint).
pub(crate) async fn accept(
    request: HttpRequest,
    body: web::Payload,
    shared: web::Data<std::sync::Arc<Shared>>,
) -> actix_web::Result<HttpResponse> {
    #[cfg(feature = "auth")]
    let link_auth = match shared.guard.admit(&request) {
        Ok(link_auth) => link_auth,
        Err(refusal) => return Ok(refusal.response()),
    };
    let max = shared.config.max_message_size;
    #[cfg(feature = "auth")]
    let protocols = [crate::peer::guard::SUBPROTOCOL];
    #[cfg(not(feature = "auth"))]
    let protocols: [&str; 0] = [];
    let (response, session, stream) = actix_ws::handle_with_protocols(&request, body, &protocols)?;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max)
        .map(|item| match item {
            Ok(AggregatedMessage::Binary(bytes)) => Inbound::Binary(bytes),
            Ok(AggregatedMessage::Ping(bytes)) => Inbound::Ping(bytes),
            Ok(AggregatedMessage::Pong(_)) => Inbound::Pong,
            Ok(AggregatedMessage::Text(_)) => Inbound::Text,
            Ok(AggregatedMessage::Close(reason)) => Inbound::Close(reason),
            Err(error) => violation(&error),
        });
    let (sender, receiver) = mpsc::unbounded();
    actix_web::rt::spawn(write_session(session, receiver));
    let remote = request
        .peer_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_default();
    Connection::launch(
        shared.get_ref().clone(),
        Direction::Inbound { remote },
        #[cfg(feature = "auth")]
        link_auth,
        Box::pin(stream),
        sender,
        None,
    );
    Ok(response)
}

async fn write_session(
    mut session: actix_ws::Session,
    mut frames: mpsc::UnboundedReceiver<Outgoing>,
) {
    while let Some(frame) = frames.next().await {
        let sent = match frame {
            Outgoing::Binary(bytes) => session.binary(bytes).await,
            Outgoing::Ping => session.ping(b"").await,
            Outgoing::Pong(bytes) => session.pong(&bytes).await,
            Outgoing::Close(reason) => {
                let _closed = session.close(Some(reason)).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
    let _closed = session.close(None).await;
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

/// Opens a WebSocket to `url` on the current thread and starts its connection actor there.
pub(crate) async fn connect(
    shared: std::sync::Arc<Shared>,
    url: String,
    token: Option<String>,
    tls: Arc<ClientConfig>,
    ready: futures_channel::oneshot::Sender<Result<crate::PeerId, Error>>,
) -> Result<(), Error> {
    let config = &shared.config;
    let parsed: actix_web::http::Uri = url.parse().map_err(|_invalid| Error::InvalidUrl {
        url: url.clone(),
        reason: "not a uri",
    })?;
    match parsed.scheme_str() {
        Some("ws" | "wss") => {}
        _ => {
            return Err(Error::InvalidUrl {
                url,
                reason: "the scheme must be ws:// or wss://",
            });
        }
    }
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(tls))
        .timeout(config.connect_timeout)
        .finish();
    let mut request = client
        .ws(url.as_str())
        .max_frame_size(config.max_message_size);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let connecting = request.connect();
    let (_response, framed) = match actix_rt::time::timeout(config.connect_timeout, connecting)
        .await
    {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => {
            let status = match &error {
                awc::error::WsClientError::InvalidResponseStatus(status) => Some(status.as_u16()),
                _ => None,
            };
            return Err(Error::Connect {
                url,
                reason: error.to_string(),
                status,
            });
        }
        Err(_elapsed) => {
            return Err(Error::Connect {
                url,
                reason: "connect timed out".to_owned(),
                status: None,
            });
        }
    };
    let (mut sink, stream) = framed.split();
    let (sender, mut receiver) = mpsc::unbounded::<Outgoing>();
    actix_rt::spawn(async move {
        // Write every frame already queued, then flush once: one system call for a burst of
        // calls instead of one per call.
        'link: while let Some(first) = receiver.next().await {
            let mut next = Some(first);
            while let Some(frame) = next {
                let (message, last) = match frame {
                    Outgoing::Binary(bytes) => (Message::Binary(bytes), false),
                    Outgoing::Ping => (Message::Ping(Bytes::new()), false),
                    Outgoing::Pong(bytes) => (Message::Pong(bytes), false),
                    Outgoing::Close(reason) => (Message::Close(Some(reason)), true),
                };
                if sink.feed(message).await.is_err() || last {
                    break 'link;
                }
                next = receiver.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        let _closed = sink.close().await;
    });
    let stream = ClientFrames {
        inner: stream,
        max: config.max_message_size,
        partial: None,
    };
    Connection::launch(
        shared.clone(),
        Direction::Outbound { url },
        #[cfg(feature = "auth")]
        crate::peer::guard::LinkAuth::Outbound,
        Box::pin(stream),
        sender,
        Some(ready),
    );
    Ok(())
}

/// awc yields raw frames; this aggregates continuations up to the size limit.
struct ClientFrames<S> {
    inner: S,
    max: usize,
    partial: Option<BytesMut>,
}

impl<S> Stream for ClientFrames<S>
where
    S: Stream<Item = Result<actix_http::ws::Frame, ProtocolError>> + Unpin,
{
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        use actix_http::ws::Frame;
        loop {
            let frame = match self.inner.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(violation(&error))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let event = match frame {
                Frame::Binary(bytes) => Inbound::Binary(bytes),
                Frame::Text(_) => Inbound::Text,
                Frame::Ping(bytes) => Inbound::Ping(bytes),
                Frame::Pong(_) => Inbound::Pong,
                Frame::Close(reason) => Inbound::Close(reason),
                Frame::Continuation(item) => match self.continue_with(item) {
                    Some(event) => event,
                    None => continue,
                },
            };
            return Poll::Ready(Some(event));
        }
    }
}

impl<S> ClientFrames<S> {
    fn continue_with(&mut self, item: Item) -> Option<Inbound> {
        let (chunk, first, last) = match item {
            Item::FirstBinary(chunk) => (chunk, true, false),
            Item::FirstText(_) => return Some(Inbound::Text),
            Item::Continue(chunk) => (chunk, false, false),
            Item::Last(chunk) => (chunk, false, true),
        };
        let partial = match (&mut self.partial, first) {
            (None, true) => self.partial.insert(BytesMut::new()),
            (Some(partial), false) => partial,
            _ => {
                return Some(Inbound::Violation(
                    CloseCode::Protocol,
                    "unexpected continuation frame".to_owned(),
                ));
            }
        };
        if partial.len() + chunk.len() > self.max {
            return Some(Inbound::Violation(
                CloseCode::Size,
                "fragmented message over the size limit".to_owned(),
            ));
        }
        partial.extend_from_slice(&chunk);
        if last {
            self.partial.take().map(|all| Inbound::Binary(all.freeze()))
        } else {
            None
        }
    }
}
