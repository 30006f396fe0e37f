//! Resource attacks against a peer with default options, over real loopback sockets.
//!
//! The server is the `peer` example in a process of its own, so that its resident memory is
//! measured alone. Each attack proves three things:
//!
//! 1. the server's memory grows by less than [`RSS_BOUND`] (sampled every 10 ms, the peak
//!    counts; the attack stops as soon as the bound is passed, and the server is killed past
//!    three times the bound, so that a server without bounds fails fast and never eats the
//!    machine);
//! 2. a well-behaved client, linked before the attack, keeps calling `blocks::add` (one call
//!    every 100 ms, each bounded by 10 s) and every one of its calls succeeds, until the
//!    attacker's links are gone;
//! 3. the server closes the attacker's links within 30 s of the attack's end. Some attackers
//!    then fall silent, never answering a ping, which the liveness timeout (10 s) or the
//!    handshake timeout (10 s) must notice; the others shut down their sending side (a FIN),
//!    after which the server must close promptly, even towards a client that never reads
//!    what it was sent. "Closed" is read from `/proc/net/tcp`: the server's end of the
//!    connection is neither ESTABLISHED nor CLOSE_WAIT any more, which holds even where no
//!    close frame or FIN can get through to a client that never reads.
//!
//! The idle-links attack checks the same things against a server limited to 1 024 open
//! files, and that a new peer still links and calls while the idle links are held. Two
//! smaller attacks check close codes and timings only: an oversized frame before the hello
//! (1009) and handshakes that never complete (closed after the handshake timeout).
//!
//! Attackers write WebSocket frames by hand over TCP (see `support/attack.rs`), so they can
//! send without ever reading. Each test bounds its attack in bytes and in time, and the whole
//! test in time.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use distributed_scope::PeerId;
use support::attack::{
    BlockRef, Dial, Frame, MIN_CALLS, RSS_BOUND, RawLink, RawWriter, Received, RssWatch, Target,
    add, allow_open_files, block, burst, encode, keep_calling, legitimate_client, mib, opcode,
    request_upgrade, run_for, wait_until_closed, ws_frame,
};

/// How long opening one attacker link may take.
const OPEN_WITHIN: Duration = Duration::from_secs(5);
/// The server must have closed the attacker's links this long after the attack ended.
const CLOSED_WITHIN: Duration = Duration::from_secs(30);
/// The bound on one whole test.
const TEST_LIMIT: Duration = Duration::from_secs(100);

/// How an attacker link starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Upgrade, then a valid hello as a fresh peer.
    Hello,
    /// The same, with the small socket buffers of a client that never reads.
    HelloNeverReading,
    /// Upgrade only.
    Upgrade,
}

/// Opens an attacker link within [`OPEN_WITHIN`], or `None`.
async fn try_attacker(addr: SocketAddr, start: Start) -> Option<RawLink> {
    let open = async {
        let mut link = match start {
            Start::HelloNeverReading => RawLink::open_never_reading(addr).await?,
            Start::Hello | Start::Upgrade => RawLink::open(addr).await?,
        };
        if start != Start::Upgrade {
            link.writer.hello(PeerId::random()).await?;
        }
        std::io::Result::Ok(link)
    };
    tokio::time::timeout(OPEN_WITHIN, open).await.ok()?.ok()
}

/// Opens an attacker link within [`OPEN_WITHIN`].
async fn attacker(addr: SocketAddr, start: Start) -> RawLink {
    try_attacker(addr, start)
        .await
        .unwrap_or_else(|| panic!("the attacker could not link within {OPEN_WITHIN:?}"))
}

/// What an attack gets: where the server listens and its memory watch.
#[derive(Clone)]
struct Arena {
    addr: SocketAddr,
    watch: RssWatch,
}

/// What an attack leaves behind: its links (never closed by the attacker until the test
/// ends), a description of what it sent, and how the attacker ends.
struct Siege {
    links: Vec<RawLink>,
    sent: String,
    ending: Ending,
}

/// How an attacker ends its attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// It falls silent, with its connections open: the server's timeouts must notice.
    Silent,
    /// It shuts down its sending side: the server sees the stream end.
    HalfClose,
}

/// Runs `attack` against a fresh `peer` process while a well-behaved client keeps calling,
/// and checks the three promises of this file.
fn siege<F, Fut>(name: &str, attack: F)
where
    F: FnOnce(Arena) -> Fut,
    Fut: Future<Output = Siege>,
{
    let target = Target::start(name);
    let (addr, url, server, pid) = (target.addr, target.url.clone(), target.id, target.pid);
    run_for(TEST_LIMIT, async move {
        let client = legitimate_client(&url, server).await;
        let watch = RssWatch::start(pid);
        let calls = keep_calling(client.clone(), server);
        let started = Instant::now();
        let mut siege = attack(Arena {
            addr,
            watch: watch.clone(),
        })
        .await;
        let attacked_for = started.elapsed();
        if siege.ending == Ending::HalfClose {
            for link in &mut siege.links {
                // A link whose unsent data fills the socket queues the FIN behind it.
                let _ = tokio::time::timeout(Duration::from_secs(1), link.writer.finish()).await;
            }
        }
        let clients: Vec<SocketAddr> = siege.links.iter().map(|link| link.local).collect();
        let closing = wait_until_closed(&clients, addr, CLOSED_WITHIN, Some(&watch)).await;
        let report = calls.finish().await;
        watch.stop();
        let summary = format!(
            "{name}: {} in {attacked_for:.1?}; server RSS {} grew by up to {}{}; \
             legitimate client: {} calls ok, slowest {:.1?}, failures {:?}; \
             {} of {} attacker links still held {:.1?} after the attack ended ({:?})",
            siege.sent,
            mib(watch.baseline()),
            mib(watch.growth()),
            if watch.killed() {
                " (killed by the watchdog)"
            } else {
                ""
            },
            report.ok,
            report.slowest,
            report.failures,
            closing.open,
            clients.len(),
            closing.after,
            siege.ending,
        );
        println!("{summary}");
        assert!(
            !watch.over(),
            "the server's memory grew past {}: {summary}",
            mib(RSS_BOUND)
        );
        assert!(
            report.failures.is_empty() && report.ok >= MIN_CALLS,
            "the legitimate client's calls did not all succeed: {summary}"
        );
        assert_eq!(
            closing.open, 0,
            "the server did not close the attacker's links: {summary}"
        );
        assert_eq!(add(&client, server, 41).await, Ok(42), "after: {summary}");
        drop(siege);
    });
    drop(target);
}

/// Writes `burst` again and again, up to `bytes` and for at most `time`; stops early once the
/// server's memory passed the bound or the link failed. A server that stops reading simply
/// keeps the attack waiting until its time is up. Says what it sent.
async fn flood(
    writer: &mut RawWriter,
    burst: &[u8],
    bytes: u64,
    time: Duration,
    watch: &RssWatch,
) -> String {
    let until = Instant::now() + time;
    let mut sent = 0u64;
    let stopped = loop {
        if watch.over() {
            break "memory bound passed";
        }
        if sent >= bytes {
            break "all sent";
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break "time";
        }
        match tokio::time::timeout(left, writer.bytes(burst)).await {
            Ok(Ok(())) => sent += burst.len() as u64,
            Ok(Err(_)) => break "the server closed the link",
            Err(_) => break "time, while the server was not reading",
        }
    };
    format!("{} sent (stopped: {stopped})", mib(sent))
}

/// A ping flood from a client that never reads: every ping makes the server queue a pong
/// it cannot deliver.
async fn ping_flood(
    arena: Arena,
    hello: bool,
    ping: Vec<u8>,
    (bytes, time): (u64, Duration),
    ending: Ending,
) -> Siege {
    let start = if hello {
        Start::HelloNeverReading
    } else {
        Start::Upgrade
    };
    let mut link = attacker(arena.addr, start).await;
    let sent = flood(
        &mut link.writer,
        &burst(&ping, 64 << 10),
        bytes,
        time,
        &arena.watch,
    )
    .await;
    Siege {
        links: vec![link],
        sent,
        ending,
    }
}

#[test]
fn app_pings_from_a_client_that_never_reads() {
    // The largest nonce makes each pong as large as it can be (10 bytes), so that the
    // kernel's socket buffers fill sooner. Each pong still costs the server little, and it
    // handles about 100 000 pings a second in a debug build: this flood needs time to show.
    let ping = ws_frame(
        opcode::BINARY,
        true,
        &encode(&Frame::Ping { nonce: u64::MAX }),
    );
    // This attacker falls silent at the end: the liveness timeout must drop its link even
    // though the server cannot deliver what it queued for it.
    siege("attack-app-pings", |arena| {
        let amount = (u64::MAX, Duration::from_secs(25));
        ping_flood(arena, true, ping, amount, Ending::Silent)
    });
}

#[test]
fn websocket_pings_from_a_client_that_never_reads() {
    let ping = ws_frame(opcode::PING, true, &[0x5A; 125]);
    siege("attack-ws-pings", |arena| {
        let amount = (512 << 20, Duration::from_secs(10));
        ping_flood(arena, true, ping, amount, Ending::HalfClose)
    });
}

#[test]
fn websocket_pings_before_hello_from_a_client_that_never_reads() {
    let ping = ws_frame(opcode::PING, true, &[0x5A; 125]);
    // The handshake timeout (10 s) ends this one, at the latest.
    siege("attack-ws-pings-early", |arena| {
        let amount = (512 << 20, Duration::from_secs(15));
        ping_flood(arena, false, ping, amount, Ending::Silent)
    });
}

/// Links of the fragment attack.
const HOLDERS: usize = 100;
/// Links that open and send at once.
const HOLDERS_AT_ONCE: usize = 10;

/// One link of the fragment attack: a hello, then a binary message of 15 MiB (under the
/// 16 MiB limit) in 1 MiB fragments, the last one never sent, all before `until`. Returns the
/// link unless the server refused it, and how many bytes of the message went out.
async fn hold_fragments(
    arena: Arena,
    chunk: std::rc::Rc<Vec<u8>>,
    until: Instant,
) -> (Option<RawLink>, u64) {
    let Some(mut link) = try_attacker(arena.addr, Start::Hello).await else {
        return (None, 0);
    };
    let mut sent = 0;
    for fragment in 0..15 {
        if arena.watch.over() {
            break;
        }
        let kind = if fragment == 0 {
            opcode::BINARY
        } else {
            opcode::CONTINUATION
        };
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, link.writer.message(kind, false, &chunk)).await {
            Ok(Ok(())) => sent += chunk.len() as u64,
            // Closed, or no longer read: either way this link holds no more.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    (Some(link), sent)
}

#[test]
fn unfinished_fragmented_messages_kept_alive_by_pings() {
    siege("attack-fragments", |arena| async move {
        let chunk = std::rc::Rc::new(vec![0x42u8; 1 << 20]);
        let until = Instant::now() + SEND_FOR;
        let mut links = Vec::new();
        let mut sent = 0;
        for _ in 0..HOLDERS / HOLDERS_AT_ONCE {
            if arena.watch.over() || Instant::now() >= until {
                break;
            }
            let batch =
                (0..HOLDERS_AT_ONCE).map(|_| hold_fragments(arena.clone(), chunk.clone(), until));
            for (link, bytes) in futures_util::future::join_all(batch).await {
                links.extend(link);
                sent += bytes;
            }
        }
        // A few seconds of WebSocket pings between the fragments, as an attacker keeping its
        // links alive sends them.
        let mut pings = tokio::time::interval(Duration::from_secs(1));
        let mut stalled = vec![false; links.len()];
        for _ in 0..3 {
            if arena.watch.over() {
                break;
            }
            pings.tick().await;
            for (link, stalled) in links.iter_mut().zip(&mut stalled) {
                if !*stalled {
                    let ping = tokio::time::timeout(Duration::from_millis(50), link.writer.ping());
                    *stalled = !matches!(ping.await, Ok(Ok(())));
                }
            }
        }
        Siege {
            sent: format!(
                "{} links holding unfinished messages, {} of fragments sent, then 3 s of pings",
                links.len(),
                mib(sent)
            ),
            links,
            ending: Ending::HalfClose,
        }
    });
}

/// How long the attacks that send large frames may keep sending.
const SEND_FOR: Duration = Duration::from_secs(20);

/// Sends `count` frames (built on demand) over `link`, one at a time, for at most `time`,
/// stopping when the memory bound passed or the link failed. Says what it sent.
async fn send_frames(
    link: &mut RawLink,
    (count, time): (u64, Duration),
    watch: &RssWatch,
    frame: impl Fn(u64) -> Vec<u8>,
) -> String {
    let until = Instant::now() + time;
    let mut sent = 0;
    let mut bytes = 0;
    let stopped = loop {
        if sent == count {
            break "all sent";
        }
        if watch.over() {
            break "memory bound passed";
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break "time";
        }
        let frame = frame(sent);
        match tokio::time::timeout(left, link.writer.bytes(&frame)).await {
            Ok(Ok(())) => {
                sent += 1;
                bytes += frame.len() as u64;
            }
            Ok(Err(_)) => break "the server closed the link",
            Err(_) => break "time, while the server was not reading",
        }
    };
    format!(
        "{sent} of {count} frames, {} (stopped: {stopped})",
        mib(bytes)
    )
}

#[test]
fn calls_to_an_unknown_block_with_huge_names_never_reading_the_errors() {
    siege("attack-names", |arena| async move {
        let mut link = attacker(arena.addr, Start::HelloNeverReading).await;
        let name = "n".repeat(1 << 20);
        // 300 MiB of names: an unbounded server holds more than its memory bound.
        let sent = send_frames(&mut link, (300, SEND_FOR), &arena.watch, |n| {
            let call = Frame::Call {
                id: n + 1,
                block: 0x0BAD_0BAD_0BAD_0BAD,
                name: name.clone(),
                deadline_ms: 30_000,
                metadata: Vec::new(),
                captures: Vec::new(),
            };
            ws_frame(opcode::BINARY, true, &encode(&call))
        })
        .await;
        Siege {
            links: vec![link],
            sent: format!("calls with 1 MiB names: {sent}"),
            ending: Ending::HalfClose,
        }
    });
}

/// Metadata that fills a call frame to just under the 16 MiB message limit.
fn padding() -> Vec<(String, String)> {
    vec![("pad".to_owned(), "p".repeat((16 << 20) - 1024))]
}

/// A call of `sleep` (`blocks::sleep_for`: 60 s, deadline 60 s) with 3 bytes of captures
/// and `metadata`.
fn sleeping_call(sleep: &BlockRef, id: u64, metadata: Vec<(String, String)>) -> Vec<u8> {
    let call = Frame::Call {
        id,
        block: sleep.id,
        name: sleep.name.clone(),
        deadline_ms: 60_000,
        metadata,
        captures: encode(&60_000u64),
    };
    ws_frame(opcode::BINARY, true, &encode(&call))
}

#[test]
fn sleeping_calls_with_tiny_captures_and_huge_metadata() {
    siege("attack-metadata", |arena| async move {
        let mut link = attacker(arena.addr, Start::Hello).await;
        // 40 calls of 16 MiB each: an unbounded server holds 640 MiB.
        let (sleep, padding) = (block("blocks::sleep_for"), padding());
        let sent = send_frames(&mut link, (40, SEND_FOR), &arena.watch, |n| {
            sleeping_call(&sleep, n + 1, padding.clone())
        })
        .await;
        Siege {
            links: vec![link],
            sent: format!("sleeping calls with 16 MiB of metadata: {sent}"),
            ending: Ending::HalfClose,
        }
    });
}

/// Links of the spread metadata attack.
const SPREAD_LINKS: usize = 50;

#[test]
fn sleeping_calls_with_huge_metadata_spread_over_fifty_links() {
    // One 16 MiB call on each of 50 links: 800 MiB, which no limit per link stops.
    siege("attack-metadata-spread", |arena| async move {
        let (sleep, padding) = (block("blocks::sleep_for"), padding());
        let until = Instant::now() + SEND_FOR;
        let mut links = Vec::new();
        let mut sent = 0;
        for _ in 0..SPREAD_LINKS / HOLDERS_AT_ONCE {
            if arena.watch.over() || Instant::now() >= until {
                break;
            }
            let batch = (0..HOLDERS_AT_ONCE).map(|_| async {
                let Some(mut link) = try_attacker(arena.addr, Start::Hello).await else {
                    return (None, false);
                };
                let frame = sleeping_call(&sleep, 1, padding.clone());
                let left = until.saturating_duration_since(Instant::now());
                let written = tokio::time::timeout(left, link.writer.bytes(&frame)).await;
                (Some(link), matches!(written, Ok(Ok(()))))
            });
            for (link, written) in futures_util::future::join_all(batch).await {
                links.extend(link);
                sent += u64::from(written);
            }
        }
        Siege {
            sent: format!(
                "{} links, {sent} sleeping calls with 16 MiB of metadata written",
                links.len()
            ),
            links,
            ending: Ending::HalfClose,
        }
    });
}

#[test]
fn queued_calls_padded_with_metadata_beyond_the_queued_bytes_limit() {
    siege("attack-queue", |arena| async move {
        let mut link = attacker(arena.addr, Start::Hello).await;
        // 4 096 sleeping calls take every slot (`max_inbound_calls`) ...
        let sleep = block("blocks::sleep_for");
        let slots: Vec<u8> = (1..=4096)
            .flat_map(|id| sleeping_call(&sleep, id, Vec::new()))
            .collect();
        link.writer
            .bytes(&slots)
            .await
            .expect("the attacker's first calls");
        // ... so these wait in the queue, each with 3 bytes of captures and 16 MiB of
        // metadata: 640 MiB against `max_queued_bytes` (64 MiB). With 4 096 calls running,
        // a server in a debug build takes one to three seconds per frame: more time to send.
        let padding = padding();
        let time = Duration::from_secs(45);
        let sent = send_frames(&mut link, (40, time), &arena.watch, |n| {
            sleeping_call(&sleep, 4097 + n, padding.clone())
        })
        .await;
        Siege {
            links: vec![link],
            sent: format!("4 096 sleeping calls, then padded ones: {sent}"),
            ending: Ending::HalfClose,
        }
    });
}

/// Idle links of the file-descriptor attack.
const IDLE_LINKS: usize = 1100;
/// The server's file-descriptor limit in that attack.
const OPEN_FILES: u32 = 1024;
/// How long a new peer may take to link and get an answer while the idle links are held:
/// well under the handshake timeout, so that waiting for the idle links to time out does not
/// count as getting in.
const NEWCOMER_WITHIN: Duration = Duration::from_secs(5);

#[test]
fn idle_links_beyond_the_file_limit_do_not_lock_a_new_peer_out() {
    // All attackers come from 127.0.0.3, the newcomer from 127.0.0.1: a limit per address
    // may hold the attackers back without holding the newcomer back too. (Linux routes all
    // of 127.0.0.0/8 to the loopback interface.)
    let attacker = std::net::IpAddr::from([127, 0, 0, 3]);
    allow_open_files(IDLE_LINKS as u64 + 1024);
    let target = Target::start_with_open_files("attack-idle", OPEN_FILES);
    let (addr, url, server, pid) = (target.addr, target.url.clone(), target.id, target.pid);
    let target = &target;
    run_for(TEST_LIMIT, async move {
        let client = legitimate_client(&url, server).await;
        let watch = RssWatch::start(pid);
        let calls = keep_calling(client.clone(), server);
        // 1 100 connections, each with a WebSocket upgrade request, then silence: no hello.
        let started = Instant::now();
        let mut idle = Vec::new();
        let dial = Dial {
            source: Some(attacker),
            ..Dial::default()
        };
        for _ in 0..IDLE_LINKS / 100 {
            let batch =
                (0..100).map(|_| tokio::time::timeout(OPEN_WITHIN, request_upgrade(addr, dial)));
            for opened in futures_util::future::join_all(batch).await {
                if let Ok(Ok(link)) = opened {
                    idle.push(link);
                }
            }
        }
        let opened_in = started.elapsed();
        let server_files = target.open_files();
        // A new peer links and calls while the idle links are held.
        let newcomer_started = Instant::now();
        let newcomer = async {
            let peer = distributed_scope::Peer::builder(PeerId::random())
                .start()
                .await
                .map_err(|error| error.to_string())?;
            peer.connect(&url)
                .await
                .map_err(|error| error.to_string())?;
            add(&peer, server, 6).await
        };
        let newcomer = tokio::time::timeout(NEWCOMER_WITHIN, newcomer)
            .await
            .unwrap_or_else(|_| Err(format!("no link and answer within {NEWCOMER_WITHIN:?}")));
        let newcomer_took = newcomer_started.elapsed();
        let clients: Vec<SocketAddr> = idle.iter().map(|(_, local)| *local).collect();
        let closing = wait_until_closed(&clients, addr, CLOSED_WITHIN, Some(&watch)).await;
        let report = calls.finish().await;
        watch.stop();
        let summary = format!(
            "{} idle links opened in {opened_in:.1?} (the server then had {server_files} files open); \
             newcomer: {newcomer:?} after {newcomer_took:.1?}; server RSS {} grew by up to {}; \
             linked client: {} calls ok, failures {:?}; {} of {} idle links still held {:.1?} \
             later",
            idle.len(),
            mib(watch.baseline()),
            mib(watch.growth()),
            report.ok,
            report.failures,
            closing.open,
            clients.len(),
            closing.after,
        );
        println!("{summary}");
        assert!(
            !watch.over(),
            "the server's memory grew too much: {summary}"
        );
        assert_eq!(newcomer, Ok(7), "a new peer could not get in: {summary}");
        assert!(
            report.failures.is_empty() && report.ok >= MIN_CALLS,
            "the linked client's calls did not all succeed: {summary}"
        );
        assert_eq!(closing.open, 0, "idle links were not closed: {summary}");
        drop(idle);
    });
}

#[test]
fn a_large_frame_before_hello_is_refused_with_1009() {
    let target = Target::start("attack-early-frame");
    let (addr, url, server) = (target.addr, target.url.clone(), target.id);
    run_for(TEST_LIMIT, async move {
        let RawLink {
            mut reader,
            mut writer,
            ..
        } = attacker(addr, Start::Upgrade).await;
        // 1 MiB that starts like a hello: no hello is that large.
        let mut frame = hello_prefix();
        frame.resize(1 << 20, 0x11);
        let within = Duration::from_secs(10);
        // The server may close, or stop reading, before it has read it all.
        let send = tokio::time::timeout(within, writer.binary(&frame));
        let (_, ended) = tokio::join!(send, tokio::time::timeout(within, reader.end()));
        assert_eq!(ended, Ok(Received::Close(Some(1009))));
        legitimate_client(&url, server).await;
    });
}

/// The first bytes of a hello: the magic and protocol version 4.
fn hello_prefix() -> Vec<u8> {
    let mut bytes = b"DSCP".to_vec();
    bytes.extend_from_slice(&4u16.to_be_bytes());
    bytes
}

/// The default handshake timeout.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn handshakes_that_never_complete_are_closed_after_the_handshake_timeout() {
    let target = Target::start("attack-handshake");
    let (addr, url, server) = (target.addr, target.url.clone(), target.id);
    run_for(TEST_LIMIT, async move {
        let within = HANDSHAKE_TIMEOUT + Duration::from_secs(10);
        // One link says nothing after the upgrade; one sends WebSocket pings (and reads the
        // pongs) but never a hello; one sends the start of a hello and never the rest.
        let silent = async {
            let mut link = attacker(addr, Start::Upgrade).await;
            let started = Instant::now();
            let ended = tokio::time::timeout(within, link.reader.end()).await;
            (ended, started.elapsed())
        };
        let pinging = async {
            let RawLink {
                mut reader,
                mut writer,
                ..
            } = attacker(addr, Start::Upgrade).await;
            let started = Instant::now();
            let pings = async {
                let mut every = tokio::time::interval(Duration::from_millis(500));
                loop {
                    every.tick().await;
                    if writer.ping().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            let ended = tokio::select! {
                ended = tokio::time::timeout(within, reader.end()) => ended,
                () = pings => unreachable!("the pings never end"),
            };
            (ended, started.elapsed())
        };
        let partial = async {
            let mut link = attacker(addr, Start::Upgrade).await;
            let prefix = hello_prefix();
            let _ = link.writer.message(opcode::BINARY, false, &prefix).await;
            let started = Instant::now();
            let ended = tokio::time::timeout(within, link.reader.end()).await;
            (ended, started.elapsed())
        };
        let (silent, pinging, partial) = tokio::join!(silent, pinging, partial);
        for (what, (ended, after)) in [
            ("silent", silent),
            ("pinging", pinging),
            ("half a hello", partial),
        ] {
            assert!(
                ended.is_ok(),
                "the {what} link was still open {after:.1?} after its upgrade"
            );
            assert!(
                after >= HANDSHAKE_TIMEOUT - Duration::from_secs(1),
                "the {what} link was closed after only {after:.1?} ({ended:?})"
            );
        }
        legitimate_client(&url, server).await;
    });
}
