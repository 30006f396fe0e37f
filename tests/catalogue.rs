//! Cases of the failure catalogue (`reference/failure-catalogue.md`) that other tests do not
//! cover yet, over real loopback sockets: between separate actix systems, and from raw
//! WebSocket clients that write the protocol's frames by hand.
//!
//! Covered elsewhere:
//! - T1 killed callee, T2 silent partition, T9 drain: `reliability.rs`
//!   (`killed_peer_process_...`, `silent_partition_...`, `stop_drains_...`,
//!   `drain_timeout_...`); T2/T3 across hosts: `netns.rs`; T3 reconnect events: `lifecycle.rs`.
//! - T5 a peer that never connects: `core.rs` (`call_to_an_unknown_peer_...`),
//!   `reliability.rs` (`many_waiters_...`).
//! - I1 deadlines, I2 cancellation: `reliability.rs`; I3/I11 late replies and cancels:
//!   `hostile.rs` (`unknown_replies_and_cancels_...`); I5 panics: `core.rs`, `panics.rs`;
//!   I9 many calls, no crossed replies: `load.rs`; I12 `max_queued_calls`: `reliability.rs`
//!   (`beyond_the_inbound_limit_...`).
//! - W1-W3 bad bytes, W4 oversized frame (1009), W6 text frame, duplicate peer id (1008):
//!   `hostile.rs`; W5/W8/W10 floods, fragments and idle links: `attacks.rs`.
//! - A1-A9, A11-A14 tokens and policy: `auth.rs`; A10 expiry closes the link: `auth.rs`
//!   (its close code: here).
//!
//! Here: I4 (`VersionMismatch`, `UnknownBlock`), I7 (`TooLarge` both ways), I8 (`Decode` for
//! one call), I9 (2 000 calls in flight), I10 (duplicate call id), I12 (`max_queued_bytes`,
//! `max_pending_outbound`, nested calls into a full queue), T3 (no replay), W10
//! (`handshake_timeout`), W11/A11 (policy before decoding), and the close codes 1001 and
//! 1008.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distributed_scope::auth::Policy;
use distributed_scope::testing::PeerThread;
use distributed_scope::{
    Peer, PeerBuilder, PeerEvent, PeerId, RemoteError, Scope, remote, remote_block,
};
use futures_util::future::join_all;
use support::attack::{
    Dial, Frame, RawLink, RawReader, Received, block, call, decode, encode, hello,
};
use support::proxy::partition_proxy;
use support::{HOUR, block_on, issuer, quick_liveness, quick_reconnect, server, url};

/// How long one reply may take to reach a raw client.
const REPLY_WITHIN: Duration = Duration::from_secs(5);

/// Runs of [`tally`] in this process, one counter per test.
static TALLIES: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
const DUPLICATE: usize = 0;
const RECONNECT: usize = 1;
const PARTITION: usize = 2;
const QUEUED_BYTES: usize = 3;
const FORBIDDEN: usize = 4;

/// Counts a run under `key`, pauses `pause_ms`, and returns the count and the size of `pad`:
/// `catalogue::tally`, the side effect that shows whether a call ran, and how often.
#[remote_block]
async fn tally(key: usize, pause_ms: u64, pad: Vec<u8>) -> (u64, usize) {
    let runs = TALLIES[key].fetch_add(1, Ordering::SeqCst) + 1;
    if pause_ms > 0 {
        Scope::current()
            .sleep(Duration::from_millis(pause_ms))
            .await;
    }
    (runs, pad.len())
}

/// How often [`tally`] ran under `key`: `catalogue::tally_of`.
#[remote_block]
async fn tally_of(key: usize) -> u64 {
    TALLIES[key].load(Ordering::SeqCst)
}

/// The length of `data`, computed on `target`.
async fn length_of(target: PeerId, data: Vec<u8>) -> Result<usize, RemoteError> {
    remote!(target, [data: Vec<u8>] -> usize { data.len() }).await
}

/// `len` bytes made on `target`.
async fn filled(target: PeerId, len: usize) -> Result<Vec<u8>, RemoteError> {
    remote!(target, [len: usize] -> Vec<u8> { vec![7; len] }).await
}

fn listening(name: &str) -> PeerBuilder {
    Peer::builder(PeerId::from_name(name)).listen("127.0.0.1:0")
}

fn start(builder: PeerBuilder) -> PeerThread {
    PeerThread::start(builder).expect("the peer starts")
}

fn addr(peer: &PeerThread) -> SocketAddr {
    peer.handle().local_addr().expect("the peer listens")
}

/// Fails if `events` holds a `Lost` event already.
fn assert_no_link_lost(events: &mut distributed_scope::Events) {
    while let Some(Some(event)) =
        futures_util::FutureExt::now_or_never(futures_util::StreamExt::next(events))
    {
        assert!(
            !matches!(event, PeerEvent::Lost { .. }),
            "a link was lost: {event:?}"
        );
    }
}

/// A raw link that has said hello as a fresh peer.
async fn raw_client(addr: SocketAddr) -> RawLink {
    let mut link = RawLink::open(addr).await.expect("the raw client links");
    link.writer
        .hello(PeerId::random())
        .await
        .expect("the raw client's hello");
    link
}

/// The next `n` replies, by call id; each call answered once.
async fn replies(reader: &mut RawReader, n: usize) -> HashMap<u64, Result<Vec<u8>, RemoteError>> {
    let mut all = HashMap::new();
    while all.len() < n {
        let (id, result) = tokio::time::timeout(REPLY_WITHIN, reader.reply())
            .await
            .expect("a reply in time")
            .expect("the link stays up");
        assert!(
            all.insert(id, result).is_none(),
            "two replies for call {id}"
        );
    }
    all
}

/// Waits until `condition` holds, for at most 5 s.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} did not happen within 5 s");
}

// I7: TooLarge both ways.

#[test]
fn captures_over_the_callees_limit_fail_only_that_call() {
    let server = start(listening("small-callee").max_message_size(64 << 10));
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        let mut events = client.events();
        let slow = client.spawn(blocks::nap(server_id, 300));
        tokio::task::yield_now().await;
        // The callee announced 64 KiB in its hello: the caller refuses before sending.
        let big = client.run(length_of(server_id, vec![1; 100 << 10])).await;
        assert!(
            matches!(big, Err(RemoteError::TooLarge { limit, .. }) if limit == 64 << 10),
            "{big:?}"
        );
        assert_eq!(
            client.run(length_of(server_id, vec![1; 1000])).await,
            Ok(1000)
        );
        assert_eq!(slow.await.unwrap(), Ok(300));
        assert_no_link_lost(&mut events);
        assert_eq!(client.connected_peers().len(), 1);
    });
}

#[test]
fn a_result_over_the_callers_limit_fails_only_that_call() {
    let server = server("large-results");
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let client = Peer::builder(PeerId::random())
            .max_message_size(64 << 10)
            .start()
            .await
            .unwrap();
        client.connect(&url).await.unwrap();
        let mut events = client.events();
        let slow = client.spawn(blocks::nap(server_id, 300));
        tokio::task::yield_now().await;
        // The callee runs the block, then refuses to send a reply the caller cannot take.
        let big = client.run(filled(server_id, 100 << 10)).await;
        assert!(
            matches!(big, Err(RemoteError::TooLarge { limit, .. }) if limit == 64 << 10),
            "{big:?}"
        );
        assert_eq!(client.run(filled(server_id, 1000)).await, Ok(vec![7; 1000]));
        assert_eq!(slow.await.unwrap(), Ok(300));
        assert_no_link_lost(&mut events);
        assert_eq!(client.connected_peers().len(), 1);
    });
}

// I10: a call id sent twice.

#[test]
fn the_same_call_id_sent_twice_runs_once() {
    let server = server("duplicate-ids");
    let addr = addr(&server);
    block_on(async move {
        let tally = block("catalogue::tally");
        let mut link = raw_client(addr).await;
        let first = call(1, &tally, encode(&(DUPLICATE, 300u64, Vec::<u8>::new())));
        link.writer.frame(&first).await.unwrap();
        // The same id again while the first still runs.
        link.writer.frame(&first).await.unwrap();
        let (id, result) = link.reader.reply().await.expect("a reply");
        assert_eq!(id, 1);
        assert_eq!(decode::<(u64, usize)>(&result.unwrap()), Some((1, 0)));
        // A later call is answered next, and counts the second run.
        let second = call(2, &tally, encode(&(DUPLICATE, 0u64, Vec::<u8>::new())));
        link.writer.frame(&second).await.unwrap();
        let (id, result) = link.reader.reply().await.expect("a reply");
        assert_eq!(id, 2, "call 1 was answered twice");
        assert_eq!(decode::<(u64, usize)>(&result.unwrap()), Some((2, 0)));
        assert_eq!(TALLIES[DUPLICATE].load(Ordering::SeqCst), 2);
    });
}

// T3: nothing is replayed.

#[test]
fn nothing_is_replayed_after_a_reconnect() {
    let server = server("replay-reconnect");
    let server_handle = server.handle().clone();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let client = quick_reconnect(Peer::builder(PeerId::random()))
            .start()
            .await
            .unwrap();
        client.connect(&url).await.unwrap();
        let pending = client.spawn(
            Tally {
                key: RECONNECT,
                pause_ms: 30_000,
                pad: Vec::new(),
            }
            .on(server_id),
        );
        until("the call's run", || {
            TALLIES[RECONNECT].load(Ordering::SeqCst) == 1
        })
        .await;
        // The server drops the link; the client's supervisor opens a new one.
        server_handle.disconnect(client.id());
        let lost = pending.await.unwrap();
        assert!(
            matches!(lost, Err(RemoteError::ConnectionLost { .. })),
            "{lost:?}"
        );
        client
            .wait_for(server_id, Duration::from_secs(5))
            .await
            .expect("the client reconnects");
        // A replayed call would have gone out on the new link before this one.
        let runs = client.run(TallyOf { key: RECONNECT }.on(server_id)).await;
        assert_eq!(runs, Ok(1));
    });
}

#[test]
fn nothing_is_replayed_after_a_partition_heals() {
    let server = server("replay-partition");
    let server_id = server.handle().id();
    let target = addr(&server);
    block_on(async move {
        let blackhole = Arc::new(AtomicBool::new(false));
        let proxied = partition_proxy(target, blackhole.clone()).await;
        let builder = quick_reconnect(Peer::builder(PeerId::random()))
            .connect_timeout(Duration::from_millis(500));
        let client = quick_liveness(builder, Duration::from_secs(1))
            .start()
            .await
            .unwrap();
        client.connect(&proxied).await.unwrap();
        let pending = client.spawn(
            Tally {
                key: PARTITION,
                pause_ms: 30_000,
                pad: Vec::new(),
            }
            .on(server_id),
        );
        until("the call's run", || {
            TALLIES[PARTITION].load(Ordering::SeqCst) == 1
        })
        .await;
        blackhole.store(true, Ordering::SeqCst);
        let lost = pending.await.unwrap();
        assert!(
            matches!(lost, Err(RemoteError::ConnectionLost { .. })),
            "{lost:?}"
        );
        blackhole.store(false, Ordering::SeqCst);
        client
            .wait_for(server_id, Duration::from_secs(10))
            .await
            .expect("the client reconnects after the partition heals");
        let runs = client.run(TallyOf { key: PARTITION }.on(server_id)).await;
        assert_eq!(runs, Ok(1));
    });
}

// I9 and I12: many calls, full queues, limits.

/// Calls of [`doubled_once_all_arrived`] that have started.
static ARRIVED: AtomicU64 = AtomicU64::new(0);
/// How many calls [`doubled_once_all_arrived`] waits for.
const IN_FLIGHT: u64 = 2000;

/// `x * 2` on `target`, once [`IN_FLIGHT`] such calls run there at the same time: a barrier,
/// so the calls can only succeed if all of them are in flight together.
async fn doubled_once_all_arrived(target: PeerId, x: u64) -> Result<u64, RemoteError> {
    remote!(target, [x: u64] -> u64 {
        ARRIVED.fetch_add(1, Ordering::SeqCst);
        while ARRIVED.load(Ordering::SeqCst) < IN_FLIGHT {
            Scope::current().sleep(Duration::from_millis(20)).await;
        }
        x * 2
    })
    .await
}

#[test]
fn two_thousand_calls_in_flight_on_one_link_at_the_defaults() {
    let server = server("two-thousand");
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let (results, took) = block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        let started = Instant::now();
        let calls: Vec<_> = (0..IN_FLIGHT)
            .map(|x| client.spawn(doubled_once_all_arrived(server_id, x)))
            .collect();
        (join_all(calls).await, started.elapsed())
    });
    for (x, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), Ok(x as u64 * 2), "call {x}");
    }
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// The boomerang runs on the server ...
static BOOMERANG_RUNS: AtomicBool = AtomicBool::new(false);
/// ... and throws once this is set.
static BOOMERANG_THROWN: AtomicBool = AtomicBool::new(false);

/// `server` calls back into `client`, which calls `server` again; the first hop waits for
/// [`BOOMERANG_THROWN`] before it calls back. At most 5 s.
async fn boomerang(server: PeerId, client: PeerId) -> Result<u8, RemoteError> {
    remote!(server, [client: PeerId, server: PeerId] -> Result<u8, RemoteError> {
        BOOMERANG_RUNS.store(true, Ordering::SeqCst);
        while !BOOMERANG_THROWN.load(Ordering::SeqCst) {
            Scope::current().sleep(Duration::from_millis(5)).await;
        }
        remote!(client, [server: PeerId] -> Result<u8, RemoteError> {
            remote!(server, [] -> u8 { 1 }).await
        })
        .await
    })
    .timeout(Duration::from_secs(5))
    .await
}

#[test]
fn a_nested_call_into_a_full_queue_is_answered_overloaded_not_deadlocked() {
    let server = start(
        listening("full-queue")
            .max_inbound_calls(1)
            .max_queued_calls(1),
    );
    let server_handle = server.handle().clone();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        // The boomerang takes the server's one slot ...
        let boomerang = client.spawn(boomerang(server_id, client.id()));
        until("the boomerang's run", || {
            BOOMERANG_RUNS.load(Ordering::SeqCst)
        })
        .await;
        // ... this call takes its one queue place ...
        let filler = client.spawn(blocks::SleepFor { millis: 1000 }.on(server_id));
        until("the filler's arrival", || {
            server_handle.metrics().calls_received == 2
        })
        .await;
        // ... so the boomerang's nested call back into the server finds no room: it is
        // answered at once, instead of waiting for the slot its own caller holds.
        let thrown = Instant::now();
        BOOMERANG_THROWN.store(true, Ordering::SeqCst);
        let result = boomerang.await.unwrap();
        let took = thrown.elapsed();
        // The hops that ran report `Failed`; the innermost error is the refusal.
        assert!(
            matches!(
                result.as_ref().map_err(RemoteError::root_cause),
                Err(RemoteError::Overloaded { .. })
            ),
            "{result:?}"
        );
        assert!(took < Duration::from_secs(1), "answered after {took:?}");
        assert_eq!(filler.await.unwrap(), Ok(1000));
        assert_eq!(
            client.run(blocks::Add { x: 1, y: 2 }.on(server_id)).await,
            Ok(3)
        );
    });
}

#[test]
fn at_the_pending_outbound_limit_a_call_waits_until_its_deadline() {
    let server = server("pending-limit");
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let client = Peer::builder(PeerId::random())
            .max_pending_outbound(2)
            .start()
            .await
            .unwrap();
        client.connect(&url).await.unwrap();
        let naps: Vec<_> = (0..2)
            .map(|_| client.spawn(blocks::nap(server_id, 1000)))
            .collect();
        tokio::task::yield_now().await;
        let started = Instant::now();
        // Both slots are taken: these wait, the first past its deadline, the second until a
        // slot frees.
        let short = client.spawn(
            blocks::Add { x: 1, y: 1 }
                .on(server_id)
                .timeout(Duration::from_millis(300)),
        );
        let patient = client.spawn(
            blocks::Add { x: 2, y: 2 }
                .on(server_id)
                .timeout(Duration::from_secs(5)),
        );
        let short = short.await.unwrap();
        let short_after = started.elapsed();
        assert!(
            matches!(short, Err(RemoteError::Timeout { .. })),
            "{short:?}"
        );
        assert!(
            short_after >= Duration::from_millis(280) && short_after < Duration::from_millis(900),
            "failed after {short_after:?}"
        );
        assert_eq!(patient.await.unwrap(), Ok(4));
        assert!(
            started.elapsed() >= Duration::from_millis(800),
            "the patient call did not wait for a slot: {:?}",
            started.elapsed()
        );
        for nap in join_all(naps).await {
            assert_eq!(nap.unwrap(), Ok(1000));
        }
    });
}

#[test]
fn captures_beyond_max_queued_bytes_are_answered_overloaded_and_never_run() {
    let server = start(
        listening("queued-bytes")
            .max_inbound_calls(1)
            .max_queued_bytes(4 << 10),
    );
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        let busy = client.spawn(blocks::nap(server_id, 1500));
        tokio::task::yield_now().await;
        // 8 KiB of captures do not fit in a 4 KiB queue.
        let big = client
            .run(
                Tally {
                    key: QUEUED_BYTES,
                    pause_ms: 0,
                    pad: vec![0; 8 << 10],
                }
                .on(server_id),
            )
            .await;
        assert!(
            matches!(big, Err(RemoteError::Overloaded { .. })),
            "{big:?}"
        );
        assert!(!busy.is_finished(), "the refusal waited for a slot");
        // 1 KiB fits: it waits, then runs, and is the first to run.
        let small = Tally {
            key: QUEUED_BYTES,
            pause_ms: 0,
            pad: vec![0; 1 << 10],
        };
        assert_eq!(client.run(small.on(server_id)).await, Ok((1, 1 << 10)));
        assert_eq!(busy.await.unwrap(), Ok(1500));
        assert_eq!(TALLIES[QUEUED_BYTES].load(Ordering::SeqCst), 1);
    });
}

// W11 and A11: the policy decides before anything is decoded.

#[test]
fn a_forbidden_call_with_garbage_captures_is_answered_forbidden() {
    let policy = Policy::deny_all().allow_role("viewer", "catalogue::tally_of");
    let server = start(listening("policy-first").auth(issuer(), policy));
    let addr = addr(&server);
    let token = issuer().issue("reader", &["viewer"], HOUR).unwrap();
    block_on(async move {
        let bearer = format!("Bearer {token}");
        let dial = Dial {
            headers: &[("Authorization", &bearer)],
            ..Dial::default()
        };
        let mut link = RawLink::open_with(addr, dial).await.expect("links");
        link.writer.hello(PeerId::random()).await.unwrap();
        let garbage = vec![0xFF; 32];
        // Not allowed: refused by name, the garbage never decoded.
        let tally = block("catalogue::tally");
        link.writer
            .frame(&call(1, &tally, garbage.clone()))
            .await
            .unwrap();
        // Allowed: decoded, and the garbage fails to decode.
        let tally_of = block("catalogue::tally_of");
        link.writer
            .frame(&call(2, &tally_of, garbage))
            .await
            .unwrap();
        // Allowed and well formed.
        link.writer
            .frame(&call(3, &tally_of, encode(&FORBIDDEN)))
            .await
            .unwrap();
        let mut all = replies(&mut link.reader, 3).await;
        match all.remove(&1) {
            Some(Err(RemoteError::Forbidden { block, subject, .. })) => {
                assert_eq!(
                    (block.as_str(), subject.as_str()),
                    ("catalogue::tally", "reader")
                );
            }
            other => panic!("expected Forbidden, got {other:?}"),
        }
        let decoded = all.remove(&2);
        assert!(
            matches!(decoded, Some(Err(RemoteError::Decode { .. }))),
            "{decoded:?}"
        );
        let runs = all
            .remove(&3)
            .map(|result| result.map(|bytes| decode::<u64>(&bytes)));
        assert_eq!(runs, Some(Ok(Some(0))));
        assert_eq!(TALLIES[FORBIDDEN].load(Ordering::SeqCst), 0);
    });
}

// I8 and I4: bad calls fail alone; the link stays up.

#[test]
fn a_capture_type_mismatch_fails_that_call_only_with_decode() {
    let server = server("capture-types");
    let addr = addr(&server);
    block_on(async move {
        let (add, sleep) = (block("blocks::add"), block("blocks::sleep_for"));
        let mut link = raw_client(addr).await;
        link.writer
            .frame(&call(1, &sleep, encode(&300u64)))
            .await
            .unwrap();
        // `add` takes two u32; a string is no such thing.
        link.writer
            .frame(&call(2, &add, encode("not two numbers")))
            .await
            .unwrap();
        link.writer
            .frame(&call(3, &add, encode(&(2u32, 3u32))))
            .await
            .unwrap();
        let all = replies(&mut link.reader, 3).await;
        assert_eq!(all[&1].as_deref().ok().and_then(decode::<u64>), Some(300));
        assert!(
            matches!(all[&2], Err(RemoteError::Decode { .. })),
            "{:?}",
            all[&2]
        );
        assert_eq!(all[&3].as_deref().ok().and_then(decode::<u32>), Some(5));
    });
}

#[test]
fn unknown_block_ids_answer_version_mismatch_or_unknown_block_natively() {
    let server = server("block-lookup");
    let addr = addr(&server);
    block_on(async move {
        let (add, sleep) = (block("blocks::add"), block("blocks::sleep_for"));
        let mut link = raw_client(addr).await;
        let frame = |id, block: u64, name: &str, captures| Frame::Call {
            id,
            block,
            name: name.to_owned(),
            deadline_ms: 30_000,
            metadata: Vec::new(),
            captures,
        };
        let captures = encode(&(2u32, 3u32));
        let calls = [
            // A known name with another id: the builds differ.
            frame(1, add.id ^ 1, &add.name, captures.clone()),
            // A known id under another known name: the id must belong to the name.
            frame(2, add.id, &sleep.name, captures.clone()),
            // A name nobody knows.
            frame(3, 0x5EED, "catalogue::no_such_block", captures.clone()),
            frame(4, add.id, &add.name, captures),
        ];
        for call in &calls {
            link.writer.frame(call).await.unwrap();
        }
        let all = replies(&mut link.reader, 4).await;
        assert!(
            matches!(&all[&1], Err(RemoteError::VersionMismatch { block, .. }) if *block == add.name),
            "{:?}",
            all[&1]
        );
        assert!(
            matches!(&all[&2], Err(RemoteError::VersionMismatch { block, .. }) if *block == sleep.name),
            "{:?}",
            all[&2]
        );
        assert!(
            matches!(&all[&3], Err(RemoteError::UnknownBlock { block, .. }) if block == "catalogue::no_such_block"),
            "{:?}",
            all[&3]
        );
        assert_eq!(all[&4].as_deref().ok().and_then(decode::<u32>), Some(5));
    });
}

// W10: the handshake timeout.

#[test]
fn the_handshake_timeout_option_closes_links_that_never_say_hello() {
    let server = start(listening("short-handshake").handshake_timeout(Duration::from_millis(300)));
    let addr = addr(&server);
    block_on(async move {
        let mut silent = RawLink::open(addr).await.expect("links");
        let mut polite = raw_client(addr).await;
        let started = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(5), silent.reader.end())
            .await
            .expect("the silent link is closed");
        let after = started.elapsed();
        assert!(
            after >= Duration::from_millis(250) && after < Duration::from_secs(3),
            "closed after {after:?} ({ended:?})"
        );
        // The link that said hello in time outlives the timeout.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let add = block("blocks::add");
        polite
            .writer
            .frame(&call(1, &add, encode(&(20u32, 22u32))))
            .await
            .unwrap();
        let all = replies(&mut polite.reader, 1).await;
        assert_eq!(all[&1].as_deref().ok().and_then(decode::<u32>), Some(42));
    });
}

// T9 and policy closes: the close codes.

#[test]
fn stop_closes_links_with_1001() {
    let server = server("stopping");
    let (handle, addr) = (server.handle().clone(), addr(&server));
    block_on(async move {
        let mut link = raw_client(addr).await;
        // The server's hello says the link is up.
        let first = tokio::time::timeout(REPLY_WITHIN, link.reader.next()).await;
        assert!(
            matches!(&first, Ok(Received::Binary(bytes)) if bytes.starts_with(b"DSCP")),
            "{first:?}"
        );
        handle.stop().await.unwrap();
        let ended = tokio::time::timeout(REPLY_WITHIN, link.reader.end()).await;
        assert_eq!(ended, Ok(Received::Close(Some(1001))));
    });
}

#[test]
fn refused_app_versions_and_expired_tokens_close_with_1008() {
    let versioned = start(
        listening("versioned")
            .app_version("2.0")
            .refuse_app_version_mismatch(true),
    );
    let expiring = start(listening("expiring").auth(
        issuer().with_leeway(Duration::ZERO),
        Policy::deny_all().allow_subject("reader", "*"),
    ));
    let (versioned, expiring) = (addr(&versioned), addr(&expiring));
    let token = issuer()
        .issue("reader", &[], Duration::from_secs(2))
        .unwrap();
    block_on(async move {
        let mut old = RawLink::open(versioned).await.expect("links");
        old.writer
            .binary(&hello(PeerId::random(), Some("1.0")))
            .await
            .unwrap();
        let ended = tokio::time::timeout(REPLY_WITHIN, old.reader.end()).await;
        assert_eq!(ended, Ok(Received::Close(Some(1008))), "app version");

        let bearer = format!("Bearer {token}");
        let dial = Dial {
            headers: &[("Authorization", &bearer)],
            ..Dial::default()
        };
        let mut link = RawLink::open_with(expiring, dial).await.expect("links");
        link.writer.hello(PeerId::random()).await.unwrap();
        let ended = tokio::time::timeout(REPLY_WITHIN, link.reader.end()).await;
        assert_eq!(ended, Ok(Received::Close(Some(1008))), "token expiry");
    });
}
