//! Tools for hostile-client tests: a `peer` process whose memory is watched (and which is
//! killed before it can eat the machine), WebSocket links written by hand over TCP (so a test
//! decides exactly what is sent and whether anything is ever read), the protocol's frames,
//! whether the server still holds a connection, and a well-behaved client that keeps calling
//! while an attack runs.

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use distributed_scope::{Peer, PeerHandle, PeerId, RemoteError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// How much an attack may grow the server's resident memory.
pub const RSS_BOUND: u64 = 256 << 20;

/// Past this growth the watchdog kills the server at once: a server without bounds must fail
/// its test, not take the machine down with it.
const KILL_GROWTH: u64 = 768 << 20;

/// How often the watchdog samples the server's memory.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Runs `future` in a fresh actix system on this thread, failing the test if it takes longer
/// than `limit`.
pub fn run_for<F: Future>(limit: Duration, future: F) -> F::Output {
    distributed_scope::actix::System::new().block_on(async move {
        tokio::time::timeout(limit, future)
            .await
            .unwrap_or_else(|_| panic!("the test did not finish within {limit:?}"))
    })
}

/// The `peer` example listening on loopback, as a child process (so that its memory is its
/// own); killed when dropped.
pub struct Target {
    child: Child,
    /// The process id.
    pub pid: u32,
    /// The peer's id, `PeerId::from_name(name)`.
    pub id: PeerId,
    /// `ws://127.0.0.1:PORT/`.
    pub url: String,
    /// The listening address.
    pub addr: SocketAddr,
}

impl Target {
    /// Starts `peer --id NAME --listen 127.0.0.1:0` with default options.
    pub fn start(name: &str) -> Self {
        Self::spawn(name, None)
    }

    /// The same, limited to `limit` open file descriptors (`RLIMIT_NOFILE`, via `prlimit`).
    pub fn start_with_open_files(name: &str, limit: u32) -> Self {
        Self::spawn(name, Some(limit))
    }

    fn spawn(name: &str, open_files: Option<u32>) -> Self {
        let binary = fresh_peer_binary();
        let mut command = match open_files {
            // prlimit sets the limit on itself, then executes the peer in its place.
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg("--")
                    .arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let mut child = command
            .args(["--id", name, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let url = super::wait_for_listening(child.stdout.take().expect("piped stdout"));
        let addr = url
            .trim_start_matches("ws://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|error| panic!("`{url}` names no socket address: {error}"));
        Self {
            pid: child.id(),
            child,
            id: PeerId::from_name(name),
            url,
            addr,
        }
    }

    /// The process's open file descriptors, as its limit allows it to have them.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, Iterator::count)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `peer` example, brought up to date once per test process: `cargo test --test NAME`
/// builds no examples, and an old binary would put yesterday's server under attack.
pub fn fresh_peer_binary() -> PathBuf {
    static FRESH: OnceLock<PathBuf> = OnceLock::new();
    FRESH
        .get_or_init(|| {
            let binary = super::peer_binary();
            let release = binary
                .parent()
                .and_then(|examples| examples.parent())
                .is_some_and(|profile| profile.ends_with("release"));
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--example", "peer"])
                .args(release.then_some("--release"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the peer example failed");
            binary
        })
        .clone()
}

/// Makes sure this process may open `at_least` file descriptors, raising its soft limit
/// towards the hard one (with `prlimit`) if needed; panics if the hard limit is lower.
pub fn allow_open_files(at_least: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let (soft, hard) = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|values| {
            let mut values = values.split_whitespace().map(|value| {
                value
                    .parse::<u64>()
                    .unwrap_or(if value == "unlimited" { u64::MAX } else { 0 })
            });
            Some((values.next()?, values.next()?))
        })
        .expect("the open files limits");
    if soft >= at_least {
        return;
    }
    assert!(
        hard >= at_least,
        "this test needs {at_least} open files; the hard limit is {hard}"
    );
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={at_least}:"))
        .status()
        .expect("prlimit runs");
    assert!(
        status.success(),
        "prlimit could not raise the open files limit"
    );
}

/// The resident memory of process `pid` in bytes (`VmRSS`), or `None` once it is gone.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Samples a process's resident memory every few milliseconds from a thread of its own and
/// keeps the peak; kills the process if it grows by more than `KILL_GROWTH`.
#[derive(Clone)]
pub struct RssWatch(Arc<Watched>);

struct Watched {
    baseline: u64,
    peak: AtomicU64,
    killed: AtomicBool,
    done: AtomicBool,
}

impl RssWatch {
    /// Starts watching `pid`, taking its memory now as the baseline.
    pub fn start(pid: u32) -> Self {
        let baseline = rss(pid).expect("the watched process runs");
        let watched = Arc::new(Watched {
            baseline,
            peak: AtomicU64::new(baseline),
            killed: AtomicBool::new(false),
            done: AtomicBool::new(false),
        });
        let sampler = watched.clone();
        std::thread::spawn(move || {
            while !sampler.done.load(Ordering::SeqCst) {
                // A dead or reaped process has no VmRSS: nothing left to watch.
                let Some(now) = rss(pid) else { break };
                sampler.peak.fetch_max(now, Ordering::SeqCst);
                if now > baseline + KILL_GROWTH && !sampler.killed.swap(true, Ordering::SeqCst) {
                    // `pid` is a child of this process that nobody reaped yet: it cannot have
                    // been reused.
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Self(watched)
    }

    /// The largest growth over the baseline seen so far, in bytes.
    pub fn growth(&self) -> u64 {
        self.0
            .peak
            .load(Ordering::SeqCst)
            .saturating_sub(self.0.baseline)
    }

    /// Whether the growth passed [`RSS_BOUND`]: the attack must stop, the test has failed.
    pub fn over(&self) -> bool {
        self.growth() > RSS_BOUND
    }

    /// Whether the watchdog had to kill the process.
    pub fn killed(&self) -> bool {
        self.0.killed.load(Ordering::SeqCst)
    }

    /// The memory when watching started, in bytes.
    pub fn baseline(&self) -> u64 {
        self.0.baseline
    }

    /// Stops sampling.
    pub fn stop(&self) {
        self.0.done.store(true, Ordering::SeqCst);
    }
}

/// `bytes` in MiB, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

// ---------------------------------------------------------------------------------------------
// WebSocket by hand (RFC 6455).

/// Frame opcodes.
pub mod opcode {
    /// The next fragment of a message.
    pub const CONTINUATION: u8 = 0;
    /// A text message.
    pub const TEXT: u8 = 1;
    /// A binary message.
    pub const BINARY: u8 = 2;
    /// Close.
    pub const CLOSE: u8 = 8;
    /// Ping.
    pub const PING: u8 = 9;
    /// Pong.
    pub const PONG: u8 = 10;
}

/// The header of a client frame carrying `len` payload bytes. Client frames must be masked;
/// the masking key here is all zeros, so the payload goes out as it is (no per-byte work for
/// the multi-MiB payloads of the attacks, and the server cannot tell).
pub fn ws_header(opcode: u8, fin: bool, len: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(14);
    header.push(if fin { 0x80 } else { 0 } | opcode);
    match len {
        0..=125 => header.push(0x80 | len as u8),
        126..=0xFFFF => {
            header.push(0x80 | 126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(0x80 | 127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    header.extend_from_slice(&[0; 4]);
    header
}

/// A whole client frame.
pub fn ws_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = ws_header(opcode, fin, payload.len());
    frame.extend_from_slice(payload);
    frame
}

/// `frame` repeated until the result holds at least `bytes`.
pub fn burst(frame: &[u8], bytes: usize) -> Vec<u8> {
    let copies = bytes.div_ceil(frame.len()).max(1);
    frame.repeat(copies)
}

/// How a raw client connects.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dial<'a> {
    /// The local address to connect from (any loopback address), else the kernel's choice.
    pub source: Option<IpAddr>,
    /// Extra headers of the upgrade request.
    pub headers: &'a [(&'a str, &'a str)],
    /// Small socket buffers, for a client that never reads: the server's replies then fill
    /// the connection within a few KiB instead of the megabytes Linux allows by default, and
    /// what the server cannot send stays in its own memory.
    pub small_window: bool,
}

/// Connects to `server` as `dial` says and sends a WebSocket upgrade request, without
/// waiting for the answer.
pub async fn request_upgrade(
    server: SocketAddr,
    dial: Dial<'_>,
) -> io::Result<(TcpStream, SocketAddr)> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = dial.source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    if dial.small_window {
        socket.set_recv_buffer_size(4 << 10)?;
        // And a small send buffer: what the client wrote and the server has not read yet
        // stays small too, so the server falls silent soon after the client stops.
        socket.set_send_buffer_size(64 << 10)?;
    }
    let mut stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let mut request = format!(
        "GET / HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in dial.headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    Ok((stream, local))
}

/// A WebSocket client link written by hand: its two halves can be used (or left alone)
/// independently.
pub struct RawLink {
    /// What the server sends.
    pub reader: RawReader,
    /// What this client sends.
    pub writer: RawWriter,
    /// This end's address, which names the connection in `/proc/net/tcp`.
    pub local: SocketAddr,
}

impl RawLink {
    /// Opens a link: the upgrade request, then its `101 Switching Protocols` answer.
    pub async fn open(server: SocketAddr) -> io::Result<Self> {
        Self::open_with(server, Dial::default()).await
    }

    /// Opens a link for a client that never reads (see [`Dial::small_window`]).
    pub async fn open_never_reading(server: SocketAddr) -> io::Result<Self> {
        let dial = Dial {
            small_window: true,
            ..Dial::default()
        };
        Self::open_with(server, dial).await
    }

    /// Opens a link as `dial` says.
    pub async fn open_with(server: SocketAddr, dial: Dial<'_>) -> io::Result<Self> {
        let (stream, local) = request_upgrade(server, dial).await?;
        let (mut read, write) = stream.into_split();
        let mut buffer = Vec::with_capacity(1024);
        let end = loop {
            if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break at + 4;
            }
            if buffer.len() > 16 << 10 {
                return Err(io::Error::other("an upgrade answer of over 16 KiB"));
            }
            if read.read_buf(&mut buffer).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            let status = head.lines().next().unwrap_or_default().to_owned();
            return Err(io::Error::other(format!("upgrade refused: {status}")));
        }
        buffer.drain(..end);
        Ok(Self {
            reader: RawReader {
                half: read,
                buffer,
                start: 0,
                partial: None,
            },
            writer: RawWriter(write),
            local,
        })
    }
}

/// The sending half of a [`RawLink`].
pub struct RawWriter(OwnedWriteHalf);

impl RawWriter {
    /// Writes bytes as they are (whole frames prepared by the caller).
    pub async fn bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes).await
    }

    /// Writes one frame.
    pub async fn message(&mut self, opcode: u8, fin: bool, payload: &[u8]) -> io::Result<()> {
        self.0
            .write_all(&ws_header(opcode, fin, payload.len()))
            .await?;
        self.0.write_all(payload).await
    }

    /// Writes one binary message.
    pub async fn binary(&mut self, payload: &[u8]) -> io::Result<()> {
        self.message(opcode::BINARY, true, payload).await
    }

    /// Sends a valid `Hello` claiming `peer`.
    pub async fn hello(&mut self, peer: PeerId) -> io::Result<()> {
        self.binary(&hello(peer, None)).await
    }

    /// Sends one protocol frame.
    pub async fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.binary(&encode(frame)).await
    }

    /// Sends a WebSocket ping with an empty payload.
    pub async fn ping(&mut self) -> io::Result<()> {
        self.message(opcode::PING, true, b"").await
    }

    /// Shuts down the sending side: the server reads the end of the stream (a FIN) once it
    /// has read everything before it. The receiving side stays open.
    pub async fn finish(&mut self) -> io::Result<()> {
        self.0.shutdown().await
    }
}

/// What a [`RawReader`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A whole binary (or text) message.
    Binary(Vec<u8>),
    /// A WebSocket ping.
    Ping,
    /// A WebSocket pong.
    Pong,
    /// A close frame and its code, if it had one.
    Close(Option<u16>),
    /// The stream ended without a close frame.
    End,
    /// Reading failed (a reset connection, say), or the server broke the framing.
    Failed(io::ErrorKind),
}

/// The receiving half of a [`RawLink`].
pub struct RawReader {
    half: OwnedReadHalf,
    buffer: Vec<u8>,
    /// Where the unparsed bytes of `buffer` start.
    start: usize,
    /// A fragmented message being put together.
    partial: Option<Vec<u8>>,
}

/// One parsed server frame: `(fin, opcode, payload, bytes used)`.
fn parse_frame(bytes: &[u8]) -> Option<(bool, u8, Vec<u8>, usize)> {
    let [first, second, ..] = *bytes else {
        return None;
    };
    let (len, mut at) = match second & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?), 10),
        len => (u64::from(len), 2),
    };
    let mask = if second & 0x80 == 0 {
        None
    } else {
        let key: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    };
    let len = usize::try_from(len).ok()?;
    let mut payload = bytes.get(at..at.checked_add(len)?)?.to_vec();
    if let Some(key) = mask {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    Some((first & 0x80 != 0, first & 0x0F, payload, at + len))
}

impl RawReader {
    /// The next message or event.
    pub async fn next(&mut self) -> Received {
        loop {
            if let Some(received) = self.parse() {
                return received;
            }
            if self.start > 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            self.buffer.reserve(64 << 10);
            match self.half.read_buf(&mut self.buffer).await {
                Ok(0) => return Received::End,
                Ok(_) => {}
                Err(error) => return Received::Failed(error.kind()),
            }
        }
    }

    fn parse(&mut self) -> Option<Received> {
        loop {
            let (fin, code, payload, used) = parse_frame(&self.buffer[self.start..])?;
            self.start += used;
            match code {
                opcode::CONTINUATION => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Some(Received::Failed(io::ErrorKind::InvalidData));
                    };
                    partial.extend_from_slice(&payload);
                    if fin {
                        return self.partial.take().map(Received::Binary);
                    }
                }
                opcode::TEXT | opcode::BINARY if fin => return Some(Received::Binary(payload)),
                opcode::TEXT | opcode::BINARY => self.partial = Some(payload),
                opcode::CLOSE => {
                    let code = payload
                        .get(..2)
                        .map(|code| u16::from_be_bytes([code[0], code[1]]));
                    return Some(Received::Close(code));
                }
                opcode::PING => return Some(Received::Ping),
                opcode::PONG => return Some(Received::Pong),
                _ => return Some(Received::Failed(io::ErrorKind::InvalidData)),
            }
        }
    }

    /// The next protocol frame after the handshake, skipping the server's `Hello` and
    /// WebSocket pings and pongs; how the link ended if it did.
    pub async fn frame(&mut self) -> Result<Frame, Received> {
        loop {
            match self.next().await {
                Received::Binary(bytes) if bytes.starts_with(b"DSCP") => {}
                Received::Binary(bytes) => {
                    return decode(&bytes).ok_or(Received::Failed(io::ErrorKind::InvalidData));
                }
                Received::Ping | Received::Pong => {}
                ended => return Err(ended),
            }
        }
    }

    /// The next reply, skipping application pings and pongs too.
    pub async fn reply(&mut self) -> Result<(u64, Result<Vec<u8>, RemoteError>), Received> {
        loop {
            match self.frame().await? {
                Frame::Reply { id, result } => return Ok((id, result.into())),
                Frame::Ping { .. } | Frame::Pong { .. } => {}
                other => panic!("expected a reply, got {other:?}"),
            }
        }
    }

    /// Reads and drops everything until the link ends: its close frame, the stream's end, or
    /// an error.
    pub async fn end(&mut self) -> Received {
        loop {
            match self.next().await {
                Received::Binary(_) | Received::Ping | Received::Pong => {}
                ended => return ended,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The protocol's frames (docs/protocol.md): bincode 2, standard configuration.

/// A frame after the handshake, as the protocol defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Run a block.
    Call {
        /// The call id, chosen by the caller.
        id: u64,
        /// The block id.
        block: u64,
        /// The block's name.
        name: String,
        /// The remaining deadline.
        deadline_ms: u64,
        /// Trace context and the like.
        metadata: Vec<(String, String)>,
        /// The encoded captures.
        #[serde(with = "serde_bytes")]
        captures: Vec<u8>,
    },
    /// The outcome of a call.
    Reply {
        /// The call id.
        id: u64,
        /// The encoded result, or the error.
        result: ReplyBody,
    },
    /// The caller gave up.
    Cancel {
        /// The call id.
        id: u64,
    },
    /// Application-level liveness probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
}

/// The body of a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyBody {
    /// The encoded result.
    Ok(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Why the call failed.
    Err(RemoteError),
}

impl From<ReplyBody> for Result<Vec<u8>, RemoteError> {
    fn from(body: ReplyBody) -> Self {
        match body {
            ReplyBody::Ok(bytes) => Ok(bytes),
            ReplyBody::Err(error) => Err(error),
        }
    }
}

#[derive(Serialize)]
struct HelloBody<'a> {
    peer: PeerId,
    max_message_size: u64,
    app_version: Option<&'a str>,
    /// The blocks this side announces (none), and that the list is complete.
    manifest: (Vec<()>, bool),
    nonce: u128,
    /// No proof of identity.
    proof: Option<String>,
    /// This side does not resume links ...
    resumable: bool,
    /// ... and makes no session (the session keys of an accepting side).
    session: Option<(u128, u128)>,
}

/// A `Hello`: the magic, protocol version 4 (big endian), then the bincode body; this side
/// accepts messages of up to 16 MiB and does not resume links.
pub fn hello(peer: PeerId, app_version: Option<&str>) -> Vec<u8> {
    let mut bytes = b"DSCP".to_vec();
    bytes.extend_from_slice(&4u16.to_be_bytes());
    bytes.extend(encode(&HelloBody {
        peer,
        max_message_size: 16 << 20,
        app_version,
        manifest: (Vec::new(), true),
        nonce: 0x5eed,
        proof: None,
        resumable: false,
        session: None,
    }));
    bytes
}

/// The protocol's encoding of `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodable")
}

/// Decodes all of `bytes` as a `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match bincode::serde::decode_from_slice(bytes, bincode::config::standard()) {
        Ok((value, used)) if used == bytes.len() => Some(value),
        _ => None,
    }
}

/// A block compiled into this binary (and into the `peer` example if it comes from the
/// shared blocks crate): its id and name.
#[derive(Debug, Clone)]
pub struct BlockRef {
    /// The block id.
    pub id: u64,
    /// The block's name.
    pub name: String,
}

/// The block named `name`.
pub fn block(name: &str) -> BlockRef {
    let info = distributed_scope::blocks()
        .into_iter()
        .find(|info| info.name() == name)
        .unwrap_or_else(|| panic!("no block `{name}` in this binary"));
    BlockRef {
        id: info.id(),
        name: info.name().to_owned(),
    }
}

/// A call of `block` with `captures` (already encoded) and a 30 s deadline.
pub fn call(id: u64, block: &BlockRef, captures: Vec<u8>) -> Frame {
    Frame::Call {
        id,
        block: block.id,
        name: block.name.clone(),
        deadline_ms: 30_000,
        metadata: Vec::new(),
        captures,
    }
}

// ---------------------------------------------------------------------------------------------
// Whether the server still holds a connection.

/// How `addr` appears in `/proc/net/tcp`: the IPv4 address as the kernel stores it, and the
/// port, both in hex.
fn proc_net_name(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(ip.octets()),
            addr.port()
        ),
        IpAddr::V6(_) => panic!("only IPv4 loopback connections are checked"),
    }
}

/// Which of the connections from `clients` to `server` the server still holds open: its own
/// end of the connection is ESTABLISHED, or CLOSE_WAIT (the client shut down its side, the
/// server has not closed yet), in `/proc/net/tcp`. A server that closed its socket shows
/// FIN_WAIT or LAST_ACK (even when its FIN cannot get out, stuck behind unsent data for a
/// client that never reads) or nothing at all (after a reset), without the client having to
/// read anything.
pub fn held_open(clients: &[SocketAddr], server: SocketAddr) -> Vec<SocketAddr> {
    const ESTABLISHED: &str = "01";
    const CLOSE_WAIT: &str = "08";
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let server = proc_net_name(server);
    let held: std::collections::HashSet<&str> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (local, remote, state) = (fields.next()?, fields.next()?, fields.next()?);
            let held = state == ESTABLISHED || state == CLOSE_WAIT;
            (local == server && held).then_some(remote)
        })
        .collect();
    clients
        .iter()
        .copied()
        .filter(|client| held.contains(proc_net_name(*client).as_str()))
        .collect()
}

/// How the wait for the server to close a set of connections went.
#[derive(Debug, Clone)]
pub struct Closing {
    /// Connections still held when the wait ended.
    pub open: usize,
    /// How long the wait took.
    pub after: Duration,
}

/// Waits until the server holds none of the connections from `clients`, for at most
/// `within`; gives up early if `watch` reports the memory bound passed.
pub async fn wait_until_closed(
    clients: &[SocketAddr],
    server: SocketAddr,
    within: Duration,
    watch: Option<&RssWatch>,
) -> Closing {
    let started = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        poll.tick().await;
        let open = held_open(clients, server).len();
        let over = watch.is_some_and(RssWatch::over);
        if open == 0 || over || started.elapsed() >= within {
            return Closing {
                open,
                after: started.elapsed(),
            };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A well-behaved client.

/// How long one call of the well-behaved client may take.
pub const CALL_LIMIT: Duration = Duration::from_secs(10);

/// A new peer linked to `url`, whose first call to `server` has answered.
pub async fn legitimate_client(url: &str, server: PeerId) -> PeerHandle {
    let client = Peer::builder(PeerId::random())
        .start()
        .await
        .expect("the client peer starts");
    let linked = tokio::time::timeout(Duration::from_secs(15), client.connect(url)).await;
    linked
        .expect("the client links within 15 s")
        .expect("the client links");
    let first = add(&client, server, 1).await;
    assert_eq!(first, Ok(2), "the client's first call");
    client
}

/// `x + 1` computed by `blocks::add` on `server`, within [`CALL_LIMIT`].
pub async fn add(client: &PeerHandle, server: PeerId, x: u32) -> Result<u32, String> {
    let call = client.run(blocks::Add { x, y: 1 }.on(server).timeout(CALL_LIMIT));
    match tokio::time::timeout(CALL_LIMIT + Duration::from_secs(1), call).await {
        Ok(Ok(sum)) => Ok(sum),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CALL_LIMIT:?}")),
    }
}

/// The fewest calls the well-behaved client makes, however short the attack.
pub const MIN_CALLS: u64 = 3;

/// What the well-behaved client saw.
#[derive(Debug, Default, Clone)]
pub struct CallsReport {
    /// Calls that returned the right sum.
    pub ok: u64,
    /// What went wrong with the others.
    pub failures: Vec<String>,
    /// The slowest call.
    pub slowest: Duration,
}

/// A loop of calls, one every 100 ms, until [`Calls::finish`] (and at least [`MIN_CALLS`]).
pub struct Calls {
    stop: Arc<AtomicBool>,
    task: actix_rt::task::JoinHandle<CallsReport>,
}

/// Starts calling `blocks::add` on `server` from `client`, one call at a time.
pub fn keep_calling(client: PeerHandle, server: PeerId) -> Calls {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let task = actix_rt::spawn(async move {
        let mut report = CallsReport::default();
        let mut pace = tokio::time::interval(Duration::from_millis(100));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut x = 100;
        let made = |report: &CallsReport| report.ok + report.failures.len() as u64;
        while !stopped.load(Ordering::SeqCst) || made(&report) < MIN_CALLS {
            pace.tick().await;
            x += 1;
            let started = Instant::now();
            let result = add(&client, server, x).await;
            report.slowest = report.slowest.max(started.elapsed());
            match result {
                Ok(sum) if sum == x + 1 => report.ok += 1,
                other => report
                    .failures
                    .push(format!("call {x}: {other:?} after {:?}", started.elapsed())),
            }
        }
        report
    });
    Calls { stop, task }
}

impl Calls {
    /// Stops the loop after the call in progress (once it made at least [`MIN_CALLS`]) and
    /// reports.
    pub async fn finish(self) -> CallsReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the calling task does not panic")
    }
}
