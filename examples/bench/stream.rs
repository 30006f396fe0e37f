//! The stream row: 64 B items from one peer to another with `remote_stream!`, against the
//! raw actix-ws server streaming the same bytes as fast as it can write them.

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::AggregatedMessage;
use anyhow::{anyhow, bail, ensure};
use awc::ws::{Frame, Message};
use bytes::Bytes;
use distributed_scope::Bytes as ScopeBytes;
use distributed_scope::{PeerId, RemoteStream, remote_stream};
use futures_util::{SinkExt, StreamExt};

use super::{NoDelayConnector, RawSocket};

/// The bytes of each item.
pub(crate) const ITEM: [u8; 64] = [7; 64];

/// The raw side: on a binary message of 8 bytes (a little-endian count), writes that many
/// 64 B binary messages, each queued as soon as the previous one is (actix-ws encodes what is
/// queued into one body chunk), with no flow control of its own.
pub(crate) async fn raw_stream(
    request: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, stream) = actix_ws::handle(&request, body)?;
    let mut stream = stream.aggregate_continuations();
    actix_web::rt::spawn(async move {
        let item = Bytes::from_static(&ITEM);
        while let Some(Ok(message)) = stream.next().await {
            let AggregatedMessage::Binary(count) = message else {
                continue;
            };
            let Ok(count) = <[u8; 8]>::try_from(&count[..]) else {
                return;
            };
            for _ in 0..u64::from_le_bytes(count) {
                if session.binary(item.clone()).await.is_err() {
                    return;
                }
            }
        }
        let _closed = session.close(None).await;
    });
    Ok(response)
}

/// A client of [`raw_stream`].
pub(crate) struct RawStreamClient<S> {
    socket: S,
}

/// Connects to the raw stream at `url`, with `TCP_NODELAY` like every connection here.
pub(crate) async fn raw_stream_connect(
    url: &str,
) -> anyhow::Result<RawStreamClient<impl RawSocket + use<>>> {
    let (_response, socket) = awc::Client::builder()
        .connector(awc::Connector::new().connector(NoDelayConnector::default()))
        .finish()
        .ws(url)
        .connect()
        .await
        .map_err(|error| anyhow!("cannot connect to the raw stream: {error}"))?;
    Ok(RawStreamClient { socket })
}

impl<S: RawSocket> RawStreamClient<S> {
    /// Asks for `count` items and takes them all; the time from asking to the last one.
    pub(crate) async fn items(&mut self, count: u64) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.socket
            .send(Message::Binary(Bytes::copy_from_slice(
                &count.to_le_bytes(),
            )))
            .await?;
        let mut received = 0;
        while received < count {
            match self.socket.next().await {
                Some(Ok(Frame::Binary(item))) => {
                    ensure!(item.len() == ITEM.len(), "a raw item of the wrong size");
                    received += 1;
                }
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                Some(Ok(other)) => bail!("unexpected frame from the raw stream: {other:?}"),
                Some(Err(error)) => return Err(error.into()),
                None => bail!("the raw stream closed"),
            }
        }
        Ok(started.elapsed())
    }
}

/// `count` 64 B items from `server`.
fn items_from(server: PeerId, count: u64) -> RemoteStream<ScopeBytes> {
    remote_stream!(server, [count: u64] -> ScopeBytes {
        futures_util::stream::iter(0..count).map(|_| ScopeBytes::from(&ITEM[..]))
    })
}

/// Takes `count` items streamed from `server` (inside the client peer's `run`); the time
/// from asking to the last one.
pub(crate) async fn peer_items(server: PeerId, count: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut items = items_from(server, count).timeout(Duration::from_secs(600));
    let mut received = 0;
    while let Some(item) = items.next().await {
        ensure!(item?.len() == ITEM.len(), "an item of the wrong size");
        received += 1;
    }
    ensure!(received == count, "{received} of {count} items");
    Ok(started.elapsed())
}
