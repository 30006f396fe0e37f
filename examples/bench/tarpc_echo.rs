//! The second baseline: tarpc 0.38 over TCP with its bincode transport (tokio-serde's
//! `Bincode` codec in a length-delimited frame), the same echo as the raw actix-ws echo and
//! the peers.
//!
//! Made as fast as tarpc fairly gets: `TCP_NODELAY` on both ends, one client shared by every
//! call in flight (tarpc multiplexes them over its one connection), a client request buffer
//! as large as the largest window, the payload a `serde_bytes::ByteBuf` (bincode writes it
//! as one byte string, not element by element), and the server answering every request of a
//! connection in that connection's task rather than spawning a task per request.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use futures_channel::oneshot;
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use futures_util::stream::FuturesUnordered;
use serde_bytes::ByteBuf;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tarpc::{client, context, serde_transport};
use tokio::net::{TcpListener, TcpStream};

use super::placement::{self, Core};
use super::{MAX_FRAME, Throughput};

/// The echo, as a tarpc service.
#[tarpc::service]
trait Echo {
    /// Returns `data` unchanged.
    async fn echo(data: ByteBuf) -> ByteBuf;
}

#[derive(Debug, Clone, Copy)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: context::Context, data: ByteBuf) -> ByteBuf {
        data
    }
}

fn framing() -> tarpc::tokio_util::codec::length_delimited::Builder {
    let mut framing = LengthDelimitedCodec::builder();
    framing.max_frame_length(MAX_FRAME);
    framing
}

/// Requests in flight served by one connection's task: as many as the largest window.
const MAX_IN_FLIGHT: usize = 1024;

/// The tarpc echo server in its own tokio runtime on its own thread, stopped when dropped.
pub(crate) struct TarpcServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TarpcServer {
    pub(crate) fn start(core: Option<Core>) -> anyhow::Result<Self> {
        let (started, ready) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tarpc-echo".to_owned())
            .spawn(move || {
                placement::pin(core);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _gone = started.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::bind("127.0.0.1:0").await {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _gone = started.send(Err(error));
                            return;
                        }
                    };
                    let addr = listener.local_addr();
                    let (stop, mut stopped) = oneshot::channel();
                    if started.send(addr.map(|addr| (addr, stop))).is_err() {
                        return;
                    }
                    loop {
                        let accepted = std::pin::pin!(listener.accept());
                        match select(accepted, &mut stopped).await {
                            Either::Left((Ok((stream, _)), _)) => serve(stream),
                            Either::Left((Err(_), _)) | Either::Right(_) => return,
                        }
                    }
                });
            })?;
        let (addr, stop) = ready.recv().context("the tarpc echo thread died")??;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Serves one connection in one task: requests answered as they are read, responses
/// written by the channel that read them.
fn serve(stream: TcpStream) {
    let _nodelay = stream.set_nodelay(true);
    let transport = serde_transport::new(framing().new_framed(stream), Bincode::default());
    let responses = BaseChannel::with_defaults(transport).execute(EchoServer.serve());
    tokio::spawn(responses.for_each_concurrent(MAX_IN_FLIGHT, |response| response));
}

impl Drop for TarpcServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopped = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _panicked = thread.join();
        }
    }
}

/// A tarpc client of the echo, its dispatch task spawned on the current runtime (the
/// client's actix system).
#[derive(Debug, Clone)]
pub(crate) struct TarpcClient {
    client: EchoClient,
}

impl TarpcClient {
    pub(crate) async fn connect(server: &TarpcServer) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(server.addr)
            .await
            .context("cannot connect to the tarpc echo")?;
        stream.set_nodelay(true)?;
        let transport = serde_transport::new(framing().new_framed(stream), Bincode::default());
        let mut config = client::Config::default();
        config.max_in_flight_requests = MAX_IN_FLIGHT;
        config.pending_request_buffer = MAX_IN_FLIGHT;
        Ok(Self {
            client: EchoClient::new(config, transport).spawn(),
        })
    }

    pub(crate) async fn echo(&self, payload: ByteBuf) -> anyhow::Result<ByteBuf> {
        Ok(self.client.echo(context::current(), payload).await?)
    }

    /// One round trip, the echo fed back as the next payload.
    pub(crate) async fn round_trip(&self, payload: &mut ByteBuf) -> anyhow::Result<()> {
        let size = payload.len();
        *payload = self.echo(std::mem::take(payload)).await?;
        ensure!(payload.len() == size, "the tarpc echo changed the payload");
        Ok(())
    }

    /// Keeps `window` echoes of 64 B in flight on this one client until `calls` are started
    /// or `time` has passed.
    pub(crate) async fn pipelined(
        &self,
        window: usize,
        calls: u64,
        time: Duration,
    ) -> anyhow::Result<Throughput> {
        let payload = [7u8; 64];
        let call = || self.echo(ByteBuf::from(payload.to_vec()));
        let started = Instant::now();
        let mut in_flight = FuturesUnordered::new();
        let (mut sent, mut done) = (0u64, 0u64);
        while in_flight.len() < window && sent < calls {
            in_flight.push(call());
            sent += 1;
        }
        while let Some(echoed) = in_flight.next().await {
            ensure!(echoed?[..] == payload[..], "bad tarpc echo");
            done += 1;
            if sent < calls && started.elapsed() < time {
                in_flight.push(call());
                sent += 1;
            }
        }
        Ok(Throughput {
            calls: done,
            elapsed: started.elapsed(),
        })
    }
}
