//! The benchmark: `remote!` side by side with the bare transport it runs on, a raw
//! actix-web + actix-ws echo server answered by an awc client, and with tarpc over TCP, in
//! ONE process run, so that machine noise cancels out in the ratios. Prints a table of every
//! figure with its ratios to the raw echo and to tarpc and the targets; `docs/performance.md`
//! explains them.
//!
//! Run: `cargo run --release --example bench` (a few minutes),
//! `-- --json out.json` to also write every figure and ratio as JSON,
//! `-- --quick` for the shorter run `cargo bench` makes, and
//! `-- --smoke` for a few seconds' check of the harness itself (its timings mean nothing),
//! `-- --only GROUP` (local, roundtrip, throughput, stream, tarpc, payload, types, chain,
//! growth, idle, all) to run one group, e.g. under a profiler, `-- --no-tarpc` to leave tarpc out,
//! `-- --no-pin` to leave thread placement to the scheduler and `-- --same-core` to pin
//! every thread to one core (the loopback's other latency mode).
//!
//! Arrangement, the same for every side: the server (a listening peer, the raw echo, or the
//! tarpc echo) runs on its own thread (an actix system with one HTTP worker; tarpc: a tokio
//! current-thread runtime); the client runs in the main thread's actix system. The client
//! threads are pinned to one core and the servers to another (`bench/placement.rs`).
//! Idle connections are measured against a server in a child process (this binary again,
//! `--idle-server peer|raw`) so that its RSS starts clean. The series alternate in rounds,
//! so that a burst of load elsewhere on the machine hits all of them.

#[path = "bench/all.rs"]
mod all;
#[path = "bench/placement.rs"]
mod placement;
#[path = "bench/stream.rs"]
mod stream;
#[path = "bench/tarpc_echo.rs"]
mod tarpc_echo;
#[path = "bench/types.rs"]
mod types;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_rt::net::TcpStream;
use actix_tls::connect::{
    ConnectError, ConnectInfo, Connection as TcpConnection, ConnectorService,
};
use actix_web::dev::Service;
use actix_web::http::Uri;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_ws::AggregatedMessage;
use anyhow::{Context as _, anyhow, bail, ensure};
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message};
use bytes::Bytes;
use distributed_scope::Bytes as ScopeBytes;
use distributed_scope::actix::System;
use distributed_scope::testing::PeerThread;
use distributed_scope::{Peer, PeerHandle, PeerId, RemoteError, remote};
use futures_channel::oneshot;
use futures_util::future::{LocalBoxFuture, join_all};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, Sink, SinkExt, Stream, StreamExt};
use placement::{Pinning, Placement};
use serde_bytes::ByteBuf;
use tarpc_echo::{TarpcClient, TarpcServer};

/// Frame limit of the raw echo, the same as a peer's default `max_message_size`.
const MAX_FRAME: usize = distributed_scope::DEFAULT_MAX_MESSAGE_SIZE;

/// The payload sweep.
const SIZES: [(usize, &str); 4] = [
    (64, "64 B"),
    (4 << 10, "4 KiB"),
    (256 << 10, "256 KiB"),
    (4 << 20, "4 MiB"),
];

/// The groups of measurements, for `--only`. `tarpc` is the round trip and throughput
/// groups, whose rows carry the tarpc baseline.
const GROUPS: [&str; 11] = [
    "local",
    "roundtrip",
    "throughput",
    "stream",
    "tarpc",
    "payload",
    "types",
    "chain",
    "growth",
    "idle",
    "all",
];

/// Calls in flight of the throughput rows.
const WINDOWS: [usize; 4] = [1, 16, 64, 256];

#[allow(
    dead_code,
    reason = "unused when `benches/roundtrip.rs` includes this file as a module"
)]
fn main() -> anyhow::Result<()> {
    cli(Mode::Full)
}

/// How long the run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// About a minute: the figures of `docs/performance.md`.
    Full,
    /// About 20 seconds: `cargo bench`.
    Quick,
    /// A few seconds, to check that the harness works; the timings mean nothing.
    Smoke,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Quick => "quick",
            Self::Smoke => "smoke",
        }
    }

    fn settings(self) -> Settings {
        let seconds = Duration::from_secs_f64;
        match self {
            Self::Full => Settings {
                warmup: 2_000,
                rounds: 8,
                latency_samples: 40_000,
                latency_time: seconds(4.0),
                throughput_time: seconds(2.0),
                payload_samples: 10_000,
                payload_time: seconds(1.5),
                types_samples: 2_000,
                types_time: seconds(0.8),
                local_calls: 1_000_000,
                chain_samples: 10_000,
                growth_calls: 100_000,
                idle_connections: 1_000,
                only: None,
                pinning: Pinning::Split,
                tarpc: true,
            },
            Self::Quick => Settings {
                warmup: 500,
                rounds: 2,
                latency_samples: 4_000,
                latency_time: seconds(1.0),
                throughput_time: seconds(0.6),
                payload_samples: 400,
                payload_time: seconds(0.5),
                types_samples: 200,
                types_time: seconds(0.2),
                local_calls: 200_000,
                chain_samples: 2_000,
                growth_calls: 20_000,
                idle_connections: 200,
                only: None,
                pinning: Pinning::Split,
                tarpc: true,
            },
            Self::Smoke => Settings {
                warmup: 5,
                rounds: 1,
                latency_samples: 50,
                latency_time: seconds(0.2),
                throughput_time: seconds(0.05),
                payload_samples: 2,
                payload_time: seconds(0.1),
                types_samples: 2,
                types_time: seconds(0.05),
                local_calls: 1_000,
                chain_samples: 20,
                growth_calls: 500,
                idle_connections: 10,
                only: None,
                pinning: Pinning::Split,
                tarpc: true,
            },
        }
    }
}

/// Sample counts and time budgets; each count is an upper bound, each time a cap per side.
#[derive(Debug, Clone, Copy)]
struct Settings {
    warmup: usize,
    rounds: usize,
    latency_samples: usize,
    latency_time: Duration,
    throughput_time: Duration,
    payload_samples: usize,
    payload_time: Duration,
    types_samples: usize,
    types_time: Duration,
    local_calls: u64,
    chain_samples: usize,
    growth_calls: u64,
    idle_connections: usize,
    /// Index into [`GROUPS`] of the one group to run, if not all.
    only: Option<usize>,
    /// Where the client and the servers run (`--same-core`, `--no-pin`).
    pinning: Pinning,
    /// Measure the tarpc baseline (`--no-tarpc`: not).
    tarpc: bool,
}

impl Settings {
    fn wants(&self, group: &str) -> bool {
        self.only.is_none_or(|only| {
            GROUPS[only] == group
                || (GROUPS[only] == "tarpc" && matches!(group, "roundtrip" | "throughput"))
        })
    }

    /// Whether the tarpc echo is needed at all.
    fn wants_tarpc(&self) -> bool {
        self.tarpc && (self.wants("roundtrip") || self.wants("throughput"))
    }
}

/// Parses the command line and runs the harness (or, with `--idle-server`, the child).
pub(crate) fn cli(default: Mode) -> anyhow::Result<()> {
    let mut mode = default;
    let mut json = None;
    let mut only = None;
    let (mut pinning, mut tarpc) = (Pinning::Split, true);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--full" => mode = Mode::Full,
            "--quick" => mode = Mode::Quick,
            "--smoke" => mode = Mode::Smoke,
            "--json" => json = Some(args.next().context("`--json` needs a path")?),
            "--only" => only = Some(args.next().context("`--only` needs a group")?),
            "--no-pin" => pinning = Pinning::Off,
            "--same-core" => pinning = Pinning::Same,
            "--no-tarpc" => tarpc = false,
            "--idle-server" => {
                return idle_server(&args.next().context("`--idle-server` needs peer|raw")?);
            }
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => bail!(
                "unknown argument `{other}`; usage: bench [--full|--quick|--smoke] [--json PATH] [--only GROUP] [--no-tarpc] [--no-pin|--same-core]"
            ),
        }
    }
    if let Some(group) = &only {
        ensure!(
            GROUPS.contains(&group.as_str()),
            "`--only` takes one of {GROUPS:?}"
        );
    }
    let mut settings = mode.settings();
    settings.only = only.map(|group| GROUPS.iter().position(|known| *known == group).unwrap_or(0));
    settings.pinning = pinning;
    settings.tarpc = tarpc;
    let load = load_average();
    let started = Instant::now();
    // Before pinning: a pinned thread sees one core.
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let placement = Placement::choose(settings.pinning);
    let rows = run(settings, placement)?;
    let run = Run {
        mode,
        elapsed: started.elapsed(),
        load: (load, load_average()),
        cores,
        placement,
        tarpc: settings.wants_tarpc(),
    };
    print_table(&run, &rows);
    if let Some(path) = json {
        std::fs::write(&path, to_json(&run, &rows)?)
            .with_context(|| format!("cannot write {path}"))?;
        println!("wrote {path}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The blocks under test. They live in this file so that the child process, which is this
// binary again, contains the very same blocks.

async fn echo_bytes(server: PeerId, data: ScopeBytes) -> Result<ScopeBytes, RemoteError> {
    remote!(server, [data: ScopeBytes] -> ScopeBytes { data }).await
}

async fn increment(target: PeerId, x: u64) -> Result<u64, RemoteError> {
    remote!(target, [x: u64] -> u64 { x + 1 }).await
}

/// Called on A: A -> B -> C -> A, returning the number of hops.
async fn chain(b: PeerId, c: PeerId, a: PeerId) -> Result<u32, RemoteError> {
    remote!(b, [c: PeerId, a: PeerId] -> Result<u32, RemoteError> {
        let hops = remote!(c, [a: PeerId] -> Result<u32, RemoteError> {
            let hops = remote!(a, [] -> u32 { 1 }).await?;
            Ok(hops + 1)
        })
        .await?;
        Ok(hops + 1)
    })
    .await
}

// ---------------------------------------------------------------------------------------
// The raw baseline: actix-web + actix-ws echo, awc client.

async fn raw_echo(request: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, mut session, stream) = actix_ws::handle(&request, body)?;
    let mut stream = stream
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME);
    actix_web::rt::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let sent = match message {
                AggregatedMessage::Binary(bytes) => session.binary(bytes).await,
                AggregatedMessage::Ping(bytes) => session.pong(&bytes).await,
                AggregatedMessage::Close(_) => break,
                AggregatedMessage::Text(_) | AggregatedMessage::Pong(_) => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
        let _closed = session.close(None).await;
    });
    Ok(response)
}

/// The raw echo server in its own actix system on its own thread, stopped when dropped.
struct RawServer {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    fn start() -> anyhow::Result<Self> {
        let (started, ready) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raw-echo".to_owned())
            .spawn(move || {
                System::new().block_on(async move {
                    let server = HttpServer::new(|| {
                        App::new()
                            .route("/", web::get().to(raw_echo))
                            .route("/stream", web::get().to(stream::raw_stream))
                    })
                    .workers(1)
                    .tcp_nodelay(true)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind("127.0.0.1:0");
                    let server = match server {
                        Ok(server) => server,
                        Err(error) => {
                            let _gone = started.send(Err(error));
                            return;
                        }
                    };
                    let addr = server.addrs()[0];
                    let server = server.run();
                    let handle = server.handle();
                    actix_rt::spawn(server);
                    let (stop, stopped) = oneshot::channel();
                    if started.send(Ok((addr, stop))).is_ok() {
                        let _dropped = stopped.await;
                    }
                    handle.stop(true).await;
                });
            })?;
        let (addr, stop) = ready.recv().context("the raw echo thread died")??;
        Ok(Self {
            url: format!("ws://{addr}/"),
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopped = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _panicked = thread.join();
        }
    }
}

/// What awc's WebSocket client is.
trait RawSocket:
    Sink<Message, Error = WsProtocolError> + Stream<Item = Result<Frame, WsProtocolError>> + Unpin
{
}

impl<S> RawSocket for S where
    S: Sink<Message, Error = WsProtocolError>
        + Stream<Item = Result<Frame, WsProtocolError>>
        + Unpin
{
}

/// An awc WebSocket client of the raw echo.
struct RawClient<S> {
    socket: S,
}

/// awc's TCP connector, with `TCP_NODELAY` set on each connection it makes.
#[derive(Clone, Default)]
struct NoDelayConnector(ConnectorService);

impl Service<ConnectInfo<Uri>> for NoDelayConnector {
    type Response = TcpConnection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&self, info: ConnectInfo<Uri>) -> Self::Future {
        let connecting = self.0.call(info);
        Box::pin(async move {
            let connection = connecting.await?;
            connection
                .io_ref()
                .set_nodelay(true)
                .map_err(ConnectError::Io)?;
            Ok(connection)
        })
    }
}

async fn raw_connect(url: &str) -> anyhow::Result<RawClient<impl RawSocket>> {
    let (_response, socket) = awc::Client::builder()
        .connector(awc::Connector::new().connector(NoDelayConnector::default()))
        .finish()
        .ws(url)
        .max_frame_size(MAX_FRAME)
        .connect()
        .await
        .map_err(|error| anyhow!("cannot connect to the raw echo: {error}"))?;
    Ok(RawClient { socket })
}

impl<S: RawSocket> RawClient<S> {
    /// Writes one message and flushes it.
    async fn send(&mut self, payload: Bytes) -> anyhow::Result<()> {
        self.socket.send(Message::Binary(payload)).await?;
        Ok(())
    }

    /// Queues one message in the codec's write buffer without flushing it.
    async fn feed(&mut self, payload: Bytes) -> anyhow::Result<()> {
        self.socket.feed(Message::Binary(payload)).await?;
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.socket.flush().await?;
        Ok(())
    }

    async fn receive(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(bytes) = Self::binary(self.socket.next().await)? {
                return Ok(bytes);
            }
        }
    }

    /// A message already received and decoded, if there is one, without waiting.
    fn try_receive(&mut self) -> anyhow::Result<Option<Bytes>> {
        while let Some(item) = self.socket.next().now_or_never() {
            if let Some(bytes) = Self::binary(item)? {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    /// The payload of a binary frame; `None` for a control frame.
    fn binary(item: Option<Result<Frame, WsProtocolError>>) -> anyhow::Result<Option<Bytes>> {
        match item {
            Some(Ok(Frame::Binary(bytes))) => Ok(Some(bytes)),
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => Ok(None),
            Some(Ok(other)) => bail!("unexpected frame from the raw echo: {other:?}"),
            Some(Err(error)) => Err(error.into()),
            None => bail!("the raw echo closed the connection"),
        }
    }

    async fn round_trip(&mut self, payload: Bytes) -> anyhow::Result<Bytes> {
        let size = payload.len();
        self.send(payload).await?;
        let echoed = self.receive().await?;
        ensure!(echoed.len() == size, "the raw echo changed the payload");
        Ok(echoed)
    }

    /// Keeps `window` echoes in flight until `calls` are sent or `time` has passed.
    ///
    /// Written the way the library writes (its link writer queues every frame at hand, then
    /// flushes once): every echo already received is taken before refilling the window, and
    /// the refill is one flush for however many messages, so with many in flight one system
    /// call carries many messages, like the echo server's replies (actix-ws encodes every
    /// queued message into one body chunk).
    async fn pipelined(
        &mut self,
        window: usize,
        calls: u64,
        time: Duration,
    ) -> anyhow::Result<Throughput> {
        let payload = Bytes::from(vec![7u8; 64]);
        let started = Instant::now();
        let (mut sent, mut done, mut in_flight) = (0u64, 0u64, 0usize);
        while in_flight < window && sent < calls {
            self.feed(payload.clone()).await?;
            (sent, in_flight) = (sent + 1, in_flight + 1);
        }
        self.flush().await?;
        while in_flight > 0 {
            let mut echoed = Some(self.receive().await?);
            while let Some(echo) = echoed {
                ensure!(echo == payload, "bad echo");
                (done, in_flight) = (done + 1, in_flight - 1);
                echoed = if in_flight > 0 {
                    self.try_receive()?
                } else {
                    None
                };
            }
            let mut fed = false;
            while in_flight < window && sent < calls && started.elapsed() < time {
                self.feed(payload.clone()).await?;
                (sent, in_flight, fed) = (sent + 1, in_flight + 1, true);
            }
            if fed {
                self.flush().await?;
            }
        }
        Ok(Throughput {
            calls: done,
            elapsed: started.elapsed(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// The peer side of the same traffic.

/// Keeps `window` `remote!` echoes of 64 B in flight until `calls` are started or `time` has
/// passed. Runs inside `PeerHandle::run`.
async fn peer_pipelined(
    server: PeerId,
    window: usize,
    calls: u64,
    time: Duration,
) -> anyhow::Result<Throughput> {
    let payload = [7u8; 64];
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let (mut sent, mut done) = (0u64, 0u64);
    while in_flight.len() < window && sent < calls {
        in_flight.push(echo_bytes(server, ScopeBytes::from(payload.to_vec())));
        sent += 1;
    }
    while let Some(echoed) = in_flight.next().await {
        ensure!(echoed?.len() == payload.len(), "bad echo");
        done += 1;
        if sent < calls && started.elapsed() < time {
            in_flight.push(echo_bytes(server, ScopeBytes::from(payload.to_vec())));
            sent += 1;
        }
    }
    Ok(Throughput {
        calls: done,
        elapsed: started.elapsed(),
    })
}

// ---------------------------------------------------------------------------------------
// Measuring.

/// Latency percentiles of one series.
#[derive(Debug, Clone, Copy)]
struct Stats {
    p50_us: f64,
    p99_us: f64,
}

impl Stats {
    fn of(mut nanos: Vec<u64>) -> anyhow::Result<Self> {
        ensure!(!nanos.is_empty(), "no samples");
        nanos.sort_unstable();
        let at = |quantile: f64| {
            let index = ((nanos.len() - 1) as f64 * quantile).round() as usize;
            nanos[index] as f64 / 1_000.0
        };
        Ok(Self {
            p50_us: at(0.50),
            p99_us: at(0.99),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Throughput {
    calls: u64,
    elapsed: Duration,
}

impl Throughput {
    fn per_second(self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn add(self, other: Self) -> Self {
        Self {
            calls: self.calls + other.calls,
            elapsed: self.elapsed + other.elapsed,
        }
    }
}

/// How many samples and how much time a pair of series may take.
#[derive(Debug, Clone, Copy)]
struct Budget {
    warmup: usize,
    rounds: usize,
    samples: usize,
    time: Duration,
}

/// Times `raw` and `peer` call by call, alternating in rounds.
async fn latency_pair<R, P>(
    budget: Budget,
    raw: &mut R,
    peer: &mut P,
) -> anyhow::Result<(Stats, Stats)>
where
    R: AsyncFnMut() -> anyhow::Result<()>,
    P: AsyncFnMut() -> anyhow::Result<()>,
{
    let (raw, peer, _) = latency_series(budget, raw, peer, None::<&mut R>).await?;
    Ok((raw, peer))
}

/// Times `raw`, `peer` and, if given, `tarpc` call by call, alternating in rounds.
async fn latency_series<R, P, T>(
    budget: Budget,
    raw: &mut R,
    peer: &mut P,
    mut tarpc: Option<&mut T>,
) -> anyhow::Result<(Stats, Stats, Option<Stats>)>
where
    R: AsyncFnMut() -> anyhow::Result<()>,
    P: AsyncFnMut() -> anyhow::Result<()>,
    T: AsyncFnMut() -> anyhow::Result<()>,
{
    for _ in 0..budget.warmup {
        raw().await?;
        peer().await?;
        if let Some(tarpc) = tarpc.as_mut() {
            tarpc().await?;
        }
    }
    let samples = budget.samples.div_ceil(budget.rounds);
    let time = budget.time / budget.rounds as u32;
    let (mut raw_nanos, mut peer_nanos, mut tarpc_nanos) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..budget.rounds {
        time_calls(samples, time, &mut raw_nanos, raw).await?;
        time_calls(samples, time, &mut peer_nanos, peer).await?;
        if let Some(tarpc) = tarpc.as_mut() {
            time_calls(samples, time, &mut tarpc_nanos, *tarpc).await?;
        }
    }
    let tarpc = match tarpc {
        Some(_) => Some(Stats::of(tarpc_nanos)?),
        None => None,
    };
    Ok((Stats::of(raw_nanos)?, Stats::of(peer_nanos)?, tarpc))
}

async fn time_calls(
    samples: usize,
    time: Duration,
    nanos: &mut Vec<u64>,
    call: &mut impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    for _ in 0..samples {
        let call_started = Instant::now();
        call().await?;
        nanos.push(call_started.elapsed().as_nanos() as u64);
        if started.elapsed() >= time {
            break;
        }
    }
    Ok(())
}

/// Latencies of a chain call: warmed up, then timed as the chain rows are.
async fn time_chain(
    settings: Settings,
    call: &mut impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Stats> {
    for _ in 0..settings.warmup.min(200) {
        call().await?;
    }
    let mut nanos = Vec::new();
    time_calls(
        settings.chain_samples,
        settings.latency_time,
        &mut nanos,
        call,
    )
    .await?;
    Stats::of(nanos)
}

/// The peers and connections every measurement uses.
struct Bench<S> {
    settings: Settings,
    raw: RawClient<S>,
    /// The raw server's URL (its echo at `/`, its stream at `/stream`).
    raw_url: String,
    tarpc: Option<TarpcClient>,
    client: PeerHandle,
    server: PeerId,
    hop: PeerId,
    /// The same chain between peers with auth and identities: every hop carries a grant of
    /// the root call's principal (the client, server and hop of that chain).
    /// The same chain without and with auth: client, server, hop.
    authority: [(PeerHandle, PeerId, PeerId); 2],
}

impl<S: RawSocket> Bench<S> {
    fn budget(&self, samples: usize, time: Duration, warmup: usize) -> Budget {
        Budget {
            warmup: warmup.min(self.settings.warmup),
            rounds: self.settings.rounds,
            samples,
            time,
        }
    }

    /// Everything measured with the client peer current (inside `PeerHandle::run`).
    async fn measure(&mut self, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let settings = self.settings;
        let (client, server, hop) = (self.client.id(), self.server, self.hop);

        if settings.wants("local") {
            progress("local short-circuit");
            for x in 0..settings.warmup as u64 {
                ensure!(increment(client, x).await? == x + 1, "bad local call");
            }
            let started = Instant::now();
            let mut x = 0;
            for _ in 0..settings.local_calls {
                x = increment(client, x).await?;
            }
            let local_ns = started.elapsed().as_nanos() as f64 / settings.local_calls as f64;
            ensure!(x == settings.local_calls, "bad local calls");
            rows.push(
                Row::new("local short-circuit call", Unit::Nanos, local_ns)
                    .target(Target::Below(150.0)),
            );
        }

        let mut raw_p50_64 = None;
        if settings.wants("roundtrip") || settings.wants("chain") {
            progress("round trip, 64 B");
            let budget = self.budget(
                settings.latency_samples,
                settings.latency_time,
                settings.warmup,
            );
            let (raw, peer, tarpc) = self.round_trips(budget).await?;
            let mut p50 = Row::new("round trip 64 B, p50", Unit::Micros, peer.p50_us)
                .baseline(raw.p50_us)
                .target(Target::RatioAtMost(Base::Raw, 1.05));
            let mut p99 =
                Row::new("round trip 64 B, p99", Unit::Micros, peer.p99_us).baseline(raw.p99_us);
            if let Some(tarpc) = tarpc {
                p50 = p50
                    .tarpc(tarpc.p50_us)
                    .target(Target::RatioAtMost(Base::Tarpc, 0.9));
                p99 = p99.tarpc(tarpc.p99_us);
            }
            rows.extend([p50, p99]);
            raw_p50_64 = Some(raw.p50_us);
        }

        for window in WINDOWS.into_iter().filter(|_| settings.wants("throughput")) {
            progress(&format!("throughput, {window} in flight"));
            let warmup = (settings.warmup as u64).max(window as u64);
            self.raw.pipelined(window, warmup, Duration::MAX).await?;
            peer_pipelined(server, window, warmup, Duration::MAX).await?;
            if let Some(tarpc) = &self.tarpc {
                tarpc.pipelined(window, warmup, Duration::MAX).await?;
            }
            let time = settings.throughput_time / settings.rounds as u32;
            let zero = Throughput {
                calls: 0,
                elapsed: Duration::ZERO,
            };
            let (mut raw, mut peer, mut tarpc) = (zero, zero, zero);
            for _ in 0..settings.rounds {
                raw = raw.add(self.raw.pipelined(window, u64::MAX, time).await?);
                peer = peer.add(peer_pipelined(server, window, u64::MAX, time).await?);
                if let Some(client) = &self.tarpc {
                    tarpc = tarpc.add(client.pipelined(window, u64::MAX, time).await?);
                }
            }
            let mut row = Row::new(
                format!("throughput, {window} in flight"),
                Unit::PerSecond,
                peer.per_second(),
            )
            .baseline(raw.per_second());
            // The goals of the call path: as fast as the bare transport when calls are in
            // flight, within 5 % of it one at a time.
            let goal = if window == 1 { 0.95 } else { 1.0 };
            row = row.target(Target::RatioAtLeast(Base::Raw, goal));
            if self.tarpc.is_some() {
                row = row.tarpc(tarpc.per_second());
                if window > 1 {
                    row = row.target(Target::RatioAtLeast(Base::Tarpc, 3.0));
                }
            }
            rows.push(row);
        }

        if settings.wants("stream") {
            progress("stream of 64 B items");
            // As many items as the throughput rows' time takes at about 100 000 a second.
            let count = (settings.throughput_time.as_secs_f64() * 1e5).max(1000.0) as u64;
            let mut raw = stream::raw_stream_connect(&format!("{}stream", self.raw_url)).await?;
            raw.items(count / 4).await?;
            stream::peer_items(server, count / 4).await?;
            let (mut raw_time, mut peer_time) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..settings.rounds {
                raw_time += raw.items(count).await?;
                peer_time += stream::peer_items(server, count).await?;
            }
            let total = (count * settings.rounds as u64) as f64;
            rows.push(
                Row::new(
                    "stream of 64 B items, items/s",
                    Unit::PerSecond,
                    total / peer_time.as_secs_f64(),
                )
                .baseline(total / raw_time.as_secs_f64())
                .target(Target::RatioAtLeast(Base::Raw, 0.9))
                .note("remote_stream! with credit flow control vs the raw server writing 64 B messages as fast as it can"),
            );
        }

        for (size, label) in SIZES.into_iter().filter(|_| settings.wants("payload")) {
            progress(&format!("payload {label}, Bytes"));
            let budget = self.budget(settings.payload_samples, settings.payload_time, 20);
            let (raw, peer) = self.sweep_point(size, budget).await?;
            let mut row = Row::new(
                format!("payload {label} `Bytes`, p50"),
                Unit::Micros,
                peer.p50_us,
            )
            .baseline(raw.p50_us);
            if size == 4 << 20 {
                row = row.target(Target::RatioAtMost(Base::Raw, 1.2));
            }
            rows.push(row);
        }

        if settings.wants("types") {
            let budget = self.budget(settings.types_samples, settings.types_time, 20);
            types::rows(&mut self.raw, server, budget, rows).await?;
        }

        if settings.wants("chain") {
            progress("3-hop chain");
            let mut call = async || -> anyhow::Result<()> {
                ensure!(chain(server, hop, client).await? == 3, "bad chain");
                Ok(())
            };
            let peer = time_chain(settings, &mut call).await?;
            let mut row = Row::new(
                "3-hop chain A -> B -> C -> A, p50",
                Unit::Micros,
                peer.p50_us,
            )
            .note("baseline: 3 raw round trips");
            if let Some(raw) = raw_p50_64 {
                row = row
                    .baseline(3.0 * raw)
                    .target(Target::RatioAtMost(Base::Raw, 1.05));
            }
            rows.push(row);

            progress("3-hop chain with authority");
            let [plain, authed] = self.authority.clone();
            let chain_of = |(client, server, hop): (PeerHandle, PeerId, PeerId)| {
                async move || -> anyhow::Result<()> {
                    let hops = client.run(chain(server, hop, client.id())).await?;
                    ensure!(hops == 3, "bad chain");
                    Ok(())
                }
            };
            let (mut without, mut with) = (chain_of(plain), chain_of(authed));
            let budget = self.budget(settings.chain_samples, settings.latency_time, 200);
            let (off, on) = latency_pair(budget, &mut without, &mut with).await?;
            rows.push(
                Row::new(
                    "3-hop chain, auth + grants on every hop, p50",
                    Unit::Micros,
                    on.p50_us,
                )
                .baseline(off.p50_us)
                .target(Target::RatioAtMost(Base::Raw, 1.1))
                .note("baseline: the same chain without auth, on the same threads, alternated"),
            );
        }

        if !settings.wants("growth") {
            return Ok(());
        }
        progress("RSS growth");
        let calls = settings.growth_calls;
        let mut growth = Vec::new();
        for peer in [false, true] {
            let mut rss = Vec::new();
            for _ in 0..2 {
                let done = if peer {
                    peer_pipelined(server, 64, calls, Duration::MAX).await?
                } else {
                    self.raw.pipelined(64, calls, Duration::MAX).await?
                };
                ensure!(done.calls == calls, "lost calls");
                rss.push(rss_kib("self")?);
            }
            growth.push(rss[1] as f64 - rss[0] as f64);
        }
        rows.push(
            Row::new(
                format!("RSS growth over {calls} calls"),
                Unit::KiB,
                growth[1],
            )
            .baseline(growth[0])
            .note("second run minus first run, whole process"),
        );
        Ok(())
    }

    /// Round trips of 64 B: raw, peer and tarpc (if measured), alternating in rounds.
    async fn round_trips(
        &mut self,
        budget: Budget,
    ) -> anyhow::Result<(Stats, Stats, Option<Stats>)> {
        let server = self.server;
        let raw_client = &mut self.raw;
        let mut raw_payload = Bytes::from(vec![7u8; 64]);
        let mut raw = async || -> anyhow::Result<()> {
            raw_payload = raw_client
                .round_trip(std::mem::take(&mut raw_payload))
                .await?;
            Ok(())
        };
        let mut payload = ScopeBytes::from(vec![7u8; 64]);
        let mut peer = async || -> anyhow::Result<()> {
            payload = echo_bytes(server, std::mem::take(&mut payload)).await?;
            ensure!(payload.len() == 64, "bad echo");
            Ok(())
        };
        let tarpc_client = self.tarpc.clone();
        let mut tarpc_payload = ByteBuf::from(vec![7u8; 64]);
        let mut tarpc = async || -> anyhow::Result<()> {
            if let Some(client) = &tarpc_client {
                client.round_trip(&mut tarpc_payload).await?;
            }
            Ok(())
        };
        let tarpc = self.tarpc.is_some().then_some(&mut tarpc);
        let stats = latency_series(budget, &mut raw, &mut peer, tarpc).await?;
        ensure!(
            raw_payload[..] == [7u8; 64] && payload[..] == [7u8; 64],
            "an echo changed the payload"
        );
        ensure!(
            tarpc_payload[..] == [7u8; 64],
            "the tarpc echo changed the payload"
        );
        Ok(stats)
    }

    /// Round trips of one payload size, raw and peer, each echo fed back as the next payload
    /// so that no side copies its payload per call.
    async fn sweep_point(&mut self, size: usize, budget: Budget) -> anyhow::Result<(Stats, Stats)> {
        let server = self.server;
        let raw_client = &mut self.raw;
        let mut raw_payload = Bytes::from(vec![7u8; size]);
        let mut raw = async || -> anyhow::Result<()> {
            raw_payload = raw_client
                .round_trip(std::mem::take(&mut raw_payload))
                .await?;
            Ok(())
        };
        let mut payload = ScopeBytes::from(vec![7u8; size]);
        let mut peer = async || -> anyhow::Result<()> {
            payload = echo_bytes(server, std::mem::take(&mut payload)).await?;
            ensure!(payload.len() == size, "bad echo");
            Ok(())
        };
        let stats = latency_pair(budget, &mut raw, &mut peer).await?;
        ensure!(
            raw_payload.iter().all(|byte| *byte == 7) && payload.iter().all(|byte| *byte == 7),
            "an echo changed the payload"
        );
        Ok(stats)
    }
}

fn progress(what: &str) {
    eprintln!("  measuring {what}");
}

/// Runs every measurement and returns the rows of the table.
fn run(settings: Settings, placement: Placement) -> anyhow::Result<Vec<Row>> {
    let server_id = PeerId::from_name("bench-server");
    let hop_id = PeerId::from_name("bench-hop");
    let client_id = PeerId::from_name("bench-client");
    // The servers' threads (and the threads they start) on one core; this thread, the
    // client's, and the chain's hop on the other.
    let (raw_server, server, tarpc_server) = placement.on_server_core(|| {
        let raw = RawServer::start()?;
        let server = PeerThread::start(Peer::builder(server_id).listen("127.0.0.1:0"))?;
        let tarpc = match settings.wants_tarpc() {
            true => Some(TarpcServer::start(placement.server)?),
            false => None,
        };
        anyhow::Ok((raw, server, tarpc))
    })?;
    let hop = PeerThread::start(Peer::builder(hop_id).listen("127.0.0.1:0"))?;
    let server_url = server.handle().url().context("the server listens")?;
    let hop_url = hop.handle().url().context("the hop listens")?;
    let server_handle = server.handle().clone();
    let raw_url = raw_server.url.clone();
    let tarpc_server_ref = tarpc_server.as_ref();
    let authority = [AuthorityChain::start(false)?, AuthorityChain::start(true)?];
    let authority_ref = &authority;

    let rows = System::new().block_on(async move {
        let client = Peer::builder(client_id).start().await?;
        client.connect(&server_url).await?;
        // The chain: A (client) -> B (server) -> C (hop) -> A.
        client.connect(&hop_url).await?;
        server_handle.connect(&hop_url).await?;
        let tarpc = match tarpc_server_ref {
            Some(server) => Some(TarpcClient::connect(server).await?),
            None => None,
        };
        let authority_clients = [
            authority_server_links(&authority_ref[0], false).await?,
            authority_server_links(&authority_ref[1], true).await?,
        ];
        let mut bench = Bench {
            settings,
            raw: raw_connect(&raw_url).await?,
            raw_url: raw_url.clone(),
            tarpc,
            client: client.clone(),
            server: server_id,
            hop: hop_id,
            authority: authority_clients,
        };
        // Idle connections first, while this process's heap holds no memory freed by the
        // large payloads, which the idle client peers would reuse instead of growing the RSS
        // that measures them; their rows still come last.
        let mut idle = Vec::new();
        if settings.wants("idle") {
            progress("idle connections");
            idle_rows(settings.idle_connections, &mut idle).await?;
        }
        let mut rows = Vec::new();
        client.run(bench.measure(&mut rows)).await?;
        drop(bench);
        client.stop().await?;
        rows.extend(idle);
        anyhow::Ok(rows)
    })?;
    drop((server, hop, raw_server, tarpc_server, authority));
    let mut rows = rows;
    if settings.wants("all") {
        all::rows(settings, placement, &mut rows)?;
    }
    Ok(rows)
}

/// A chain's server and hop on threads of their own, started the same way with or without
/// auth, so that the two chains share thread placement and differ only by auth. With auth
/// (HS256, every principal allowed everything) each has an identity, so that the server
/// signs a grant for every root call and every hop verifies it.
struct AuthorityChain {
    server: PeerThread,
    hop: PeerThread,
}

/// The key of the authority chain's tokens and grants.
fn bench_auth() -> distributed_scope::auth::JwtAuth {
    distributed_scope::auth::JwtAuth::hs256(b"the benchmark's secret of 32 bytes or more")
}

fn bench_policy() -> distributed_scope::auth::Policy {
    distributed_scope::auth::Policy::deny_all().allow_role("bench", "*")
}

/// The names of a chain's peers, with or without auth.
fn chain_name(auth: bool, role: &str) -> String {
    format!("bench-{}-{role}", if auth { "auth" } else { "plain" })
}

impl AuthorityChain {
    fn start(auth: bool) -> anyhow::Result<Self> {
        let peer = |role: &str| {
            let name = chain_name(auth, role);
            let builder = Peer::builder(PeerId::from_name(&name)).listen("127.0.0.1:0");
            PeerThread::start(if auth {
                builder
                    .auth(bench_auth(), bench_policy())
                    .identity(bench_auth(), &name, ["bench"])
            } else {
                builder
            })
        };
        Ok(Self {
            server: peer("server")?,
            hop: peer("hop")?,
        })
    }
}

/// Links a chain: a client in this system to its server and hop, and the server to the hop,
/// with auth each with a token for its own name. Returns the client and the two ids.
async fn authority_server_links(
    chain: &AuthorityChain,
    auth: bool,
) -> anyhow::Result<(PeerHandle, PeerId, PeerId)> {
    let (server, hop) = (chain.server.handle(), chain.hop.handle());
    let token = |role: &str| {
        bench_auth().issue(
            &chain_name(auth, role),
            &["bench"],
            Duration::from_secs(24 * 3600),
        )
    };
    let mut client = Peer::builder(PeerId::from_name(&chain_name(auth, "client")));
    if auth {
        client = client.auth(bench_auth(), bench_policy());
    }
    let client = client.start().await?;
    let server_url = server.url().context("the server listens")?;
    let hop_url = hop.url().context("the hop listens")?;
    if auth {
        client
            .connect_with_token(&server_url, &token("client")?)
            .await?;
        client
            .connect_with_token(&hop_url, &token("client")?)
            .await?;
        server
            .connect_with_token(&hop_url, &token("server")?)
            .await?;
    } else {
        client.connect(&server_url).await?;
        client.connect(&hop_url).await?;
        server.connect(&hop_url).await?;
    }
    Ok((client, server.id(), hop.id()))
}

// ---------------------------------------------------------------------------------------
// Idle connections, against a server in a child process.

/// The child: a listening peer or the raw echo, until its stdin closes.
fn idle_server(kind: &str) -> anyhow::Result<()> {
    let (url, held): (String, Box<dyn std::any::Any>) = match kind {
        "peer" => {
            let server = PeerThread::start(
                Peer::builder(PeerId::from_name("bench-idle-server"))
                    .listen("127.0.0.1:0")
                    // All idle links come from one address: lift the per-address caps.
                    .max_links(4096, 4096, 4096),
            )?;
            let url = server.handle().url().context("the server listens")?;
            (url, Box::new(server))
        }
        "raw" => {
            let server = RawServer::start()?;
            (server.url.clone(), Box::new(server))
        }
        other => bail!("`--idle-server` takes peer or raw, not `{other}`"),
    };
    let mut stdout = std::io::stdout();
    writeln!(stdout, "url {url}")?;
    stdout.flush()?;
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest)?;
    drop(held);
    Ok(())
}

/// A child process running [`idle_server`]; stopped when dropped.
struct ChildServer {
    child: Child,
    url: String,
}

impl ChildServer {
    fn spawn(kind: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--idle-server", kind])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the idle server process")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("piped stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("url ")
            .with_context(|| format!("the idle server printed `{}`", line.trim()))?
            .to_owned();
        Ok(Self { child, url })
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(&self.child.id().to_string())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _gone = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// Resident set size of `/proc/<pid>` in KiB.
fn rss_kib(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("RSS is read from /proc (Linux only)")?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS in /proc/PID/status")?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn settle() {
    actix_rt::time::sleep(Duration::from_millis(300)).await;
}

/// Server- and client-side RSS per connection, for `count` idle connections.
#[derive(Debug, Clone, Copy)]
struct PerConnection {
    server_kib: f64,
    client_kib: f64,
}

async fn idle_rows(wanted: usize, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    // The client ends live in this process; the server ends in the child, whose limit is
    // the same.
    let count = match open_files_limit() {
        Some(limit) => wanted.min(limit.saturating_sub(256)),
        None => wanted,
    };
    ensure!(
        count > 0,
        "the open files limit is too low to hold idle connections"
    );
    let raw = idle_raw(count).await?;
    let peer = idle_peer(count).await?;
    rows.push(
        Row::new(
            format!("RSS per idle connection, server side ({count})"),
            Unit::KiB,
            peer.server_kib,
        )
        .baseline(raw.server_kib)
        .target(Target::Below(64.0)),
    );
    rows.push(
        Row::new(
            format!("RSS per idle connection, client side ({count})"),
            Unit::KiB,
            peer.client_kib,
        )
        .baseline(raw.client_kib)
        .note("each client is a whole peer"),
    );
    Ok(())
}

async fn idle_raw(count: usize) -> anyhow::Result<PerConnection> {
    let server = ChildServer::spawn("raw")?;
    let mut held = Vec::new();
    let warm = count.min(8);
    for _ in 0..warm {
        held.push(raw_connect(&server.url).await?);
    }
    settle().await;
    let before = (server.rss_kib()?, rss_kib("self")?);
    for batch in batches(count) {
        for client in join_all((0..batch).map(|_| raw_connect(&server.url))).await {
            held.push(client?);
        }
    }
    settle().await;
    let after = (server.rss_kib()?, rss_kib("self")?);
    for client in &mut held {
        let echoed = client
            .round_trip(Bytes::from_static(b"still there"))
            .await?;
        ensure!(&echoed[..] == b"still there", "bad echo");
    }
    drop(held);
    Ok(per_connection(before, after, count))
}

async fn idle_peer(count: usize) -> anyhow::Result<PerConnection> {
    let server = ChildServer::spawn("peer")?;
    let server_id = PeerId::from_name("bench-idle-server");
    let connect = async || -> anyhow::Result<PeerHandle> {
        let client = Peer::builder(PeerId::random()).start().await?;
        client.connect(&server.url).await?;
        Ok(client)
    };
    let mut held = Vec::new();
    for _ in 0..count.min(8) {
        held.push(connect().await?);
    }
    settle().await;
    let before = (server.rss_kib()?, rss_kib("self")?);
    for batch in batches(count) {
        for client in join_all((0..batch).map(|_| connect())).await {
            held.push(client?);
        }
    }
    settle().await;
    let after = (server.rss_kib()?, rss_kib("self")?);
    for client in &held {
        ensure!(
            client.run(increment(server_id, 1)).await? == 2,
            "bad call over an idle link"
        );
    }
    for batch in held.chunks(64) {
        for stopped in join_all(batch.iter().map(PeerHandle::stop)).await {
            stopped?;
        }
    }
    Ok(per_connection(before, after, count))
}

fn batches(count: usize) -> impl Iterator<Item = usize> {
    const BATCH: usize = 50;
    (0..count.div_ceil(BATCH)).map(move |i| BATCH.min(count - i * BATCH))
}

fn per_connection(before: (u64, u64), after: (u64, u64), count: usize) -> PerConnection {
    let per = |before: u64, after: u64| (after as f64 - before as f64) / count as f64;
    PerConnection {
        server_kib: per(before.0, after.0),
        client_kib: per(before.1, after.1),
    }
}

// ---------------------------------------------------------------------------------------
// The report.

#[derive(Debug, Clone, Copy)]
enum Unit {
    Nanos,
    Micros,
    PerSecond,
    KiB,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Self::Nanos => "ns",
            Self::Micros => "us",
            Self::PerSecond => "calls/s",
            Self::KiB => "KiB",
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Self::Nanos | Self::PerSecond => format!("{value:.0} {}", self.name()),
            Self::Micros | Self::KiB => format!("{value:.1} {}", self.name()),
        }
    }
}

/// What a ratio is taken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Raw,
    Tarpc,
}

impl Base {
    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Tarpc => "tarpc",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// The figure divided by the baseline's is at most this (latencies).
    RatioAtMost(Base, f64),
    /// The figure divided by the baseline's is at least this (throughput).
    RatioAtLeast(Base, f64),
    /// The figure itself is below this, in the row's unit.
    Below(f64),
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    unit: Unit,
    value: f64,
    /// The raw actix-ws echo's figure.
    baseline: Option<f64>,
    /// tarpc's figure.
    tarpc: Option<f64>,
    targets: Vec<Target>,
    note: Option<String>,
}

impl Row {
    fn new(name: impl Into<String>, unit: Unit, value: f64) -> Self {
        Self {
            name: name.into(),
            unit,
            value,
            baseline: None,
            tarpc: None,
            targets: Vec::new(),
            note: None,
        }
    }

    fn baseline(mut self, raw: f64) -> Self {
        self.baseline = Some(raw);
        self
    }

    fn tarpc(mut self, tarpc: f64) -> Self {
        self.tarpc = Some(tarpc);
        self
    }

    fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// The figure divided by the raw echo's or tarpc's.
    fn ratio_to(&self, base: Base) -> Option<f64> {
        let baseline = match base {
            Base::Raw => self.baseline,
            Base::Tarpc => self.tarpc,
        };
        baseline
            .filter(|baseline| *baseline != 0.0)
            .map(|baseline| self.value / baseline)
    }

    fn ratio(&self) -> Option<f64> {
        self.ratio_to(Base::Raw)
    }

    fn target_text(&self, target: Target) -> String {
        match target {
            Target::RatioAtMost(base, ratio) => format!("<= {ratio:.2}x {}", base.name()),
            Target::RatioAtLeast(base, ratio) => format!(">= {ratio:.2}x {}", base.name()),
            Target::Below(limit) => format!("< {}", self.unit.format(limit)),
        }
    }

    fn met_target(&self, target: Target) -> Option<bool> {
        match target {
            Target::RatioAtMost(base, limit) => self.ratio_to(base).map(|ratio| ratio <= limit),
            Target::RatioAtLeast(base, limit) => self.ratio_to(base).map(|ratio| ratio >= limit),
            Target::Below(limit) => Some(self.value < limit),
        }
    }

    /// Every target's text, joined.
    fn targets_text(&self) -> String {
        let texts: Vec<String> = self
            .targets
            .iter()
            .map(|target| self.target_text(*target))
            .collect();
        texts.join("; ")
    }

    /// Whether every target is met (`None` if one cannot be judged).
    fn met(&self) -> Option<bool> {
        self.targets
            .iter()
            .map(|target| self.met_target(*target))
            .try_fold(true, |all, met| met.map(|met| all && met))
            .filter(|_| !self.targets.is_empty())
    }
}

/// What the table's header says about the run.
#[derive(Debug)]
struct Run {
    mode: Mode,
    elapsed: Duration,
    /// The 1-minute load average before and after: other work on the machine skews both
    /// sides, though not always equally.
    load: (Option<f64>, Option<f64>),
    /// Cores this process may run on (before pinning).
    cores: usize,
    placement: Placement,
    /// Whether the tarpc baseline was measured.
    tarpc: bool,
}

fn load_average() -> Option<f64> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    loadavg.split_whitespace().next()?.parse().ok()
}

fn print_table(run: &Run, rows: &[Row]) {
    let cores = run.cores;
    let load = |load: Option<f64>| load.map_or("?".to_owned(), |load| format!("{load:.1}"));
    println!();
    println!(
        "distributed-scope vs raw actix-ws echo{} ({} run, {cores} cores, load {} -> {}, {:.0} s)",
        if run.tarpc { " and tarpc" } else { "" },
        run.mode.name(),
        load(run.load.0),
        load(run.load.1),
        run.elapsed.as_secs_f64()
    );
    println!("{}", run.placement.describe());
    if run.tarpc {
        println!("{TARPC}");
    }
    if run.mode == Mode::Smoke {
        println!("smoke run: checks the harness only, its timings mean nothing");
    }
    println!();
    println!(
        "| measurement | distributed-scope | raw actix-ws | ours / raw | tarpc | ours / tarpc | target | met |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    let ratio = |ratio: Option<f64>| {
        ratio
            .map(|ratio| format!("{ratio:.2}x"))
            .unwrap_or_default()
    };
    for row in rows {
        let figure = |figure: Option<f64>| {
            figure
                .map(|figure| row.unit.format(figure))
                .unwrap_or_default()
        };
        let met: Vec<&str> = row
            .targets
            .iter()
            .map(|target| match row.met_target(*target) {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "?",
            })
            .collect();
        let name = match &row.note {
            Some(note) => format!("{} ({note})", row.name),
            None => row.name.clone(),
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            row.unit.format(row.value),
            figure(row.baseline),
            ratio(row.ratio()),
            figure(row.tarpc),
            ratio(row.ratio_to(Base::Tarpc)),
            row.targets_text(),
            met.join("; ")
        );
    }
}

/// How the tarpc baseline runs, for the header and the JSON.
const TARPC: &str = "tarpc: 0.38 over TCP (TCP_NODELAY), bincode transport, its echo server on its own thread (tokio current-thread runtime), one client for all calls in flight";

fn to_json(run: &Run, rows: &[Row]) -> anyhow::Result<String> {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let targets: Vec<serde_json::Value> = row
                .targets
                .iter()
                .map(|target| {
                    serde_json::json!({
                        "target": row.target_text(*target),
                        "met": row.met_target(*target),
                    })
                })
                .collect();
            serde_json::json!({
                "name": row.name,
                "unit": row.unit.name(),
                "value": row.value,
                "baseline": row.baseline,
                "ratio": row.ratio(),
                "tarpc": row.tarpc,
                "tarpc_ratio": row.ratio_to(Base::Tarpc),
                "target": (!row.targets.is_empty()).then(|| row.targets_text()),
                "met": row.met(),
                "targets": targets,
                "note": row.note,
            })
        })
        .collect();
    let report = serde_json::json!({
        "mode": run.mode.name(),
        "cores": run.cores,
        "load_average": [run.load.0, run.load.1],
        "seconds": run.elapsed.as_secs_f64(),
        "placement": run.placement.describe(),
        "baseline": "raw actix-web + actix-ws echo server, awc client",
        "tarpc": run.tarpc.then_some(TARPC),
        "rows": rows,
    });
    Ok(serde_json::to_string_pretty(&report)?)
}
