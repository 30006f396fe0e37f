//! `remote_stream!` over real sockets: flow control with a slow consumer, cancellation that
//! reaches nested streams, a lost link, streams inside streams, and the deadlines.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use distributed_scope::auth::Policy;
use distributed_scope::testing::{Cluster, PeerThread};
use distributed_scope::{
    Peer, PeerId, RemoteError, RemoteStream, distributed, remote, remote_stream,
};
use futures_util::StreamExt;
use support::attack::RssWatch;
use support::{HOUR, LIMIT, PeerProcess, block_on, connected, issuer, url};

/// Sets its flag when dropped: a stream body that holds one shows it was stopped.
struct DropFlag(&'static AtomicBool);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Waits (bounded by [`LIMIT`]) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the memory of each side may grow by while 100 MB stream through: a window (1 MiB)
/// and the buffers of the socket and the allocator, far below what holding the stream takes.
const STREAM_RSS_BOUND: u64 = 48 << 20;

#[test]
fn a_hundred_thousand_items_reach_a_slower_consumer_in_order_with_bounded_memory() {
    const COUNT: u64 = 100_000;
    const SIZE: u32 = 1024;
    let producer = PeerProcess::start("stream-producer");
    let producer_memory = RssWatch::start(producer.pid());
    let consumer_memory = RssWatch::start(std::process::id());
    let received = block_on(async {
        let peer = connected(PeerId::from_name("stream-consumer"), &producer.url).await;
        peer.run(async {
            let mut items = blocks::numbered(producer.id, COUNT, SIZE).timeout(LIMIT);
            let mut next = 0u64;
            while let Some(item) = items.next().await {
                let item = item.expect("every item arrives");
                assert_eq!(item.len(), SIZE as usize);
                let index = u64::from_le_bytes(item[..8].try_into().unwrap());
                assert_eq!(index, next, "items arrive in order, none lost");
                next += 1;
                // The consumer is slower than the producer, which yields at once.
                if next.is_multiple_of(200) {
                    actix_rt::time::sleep(Duration::from_millis(1)).await;
                }
            }
            next
        })
        .await
    });
    assert_eq!(received, COUNT);
    let total = COUNT * u64::from(SIZE);
    for (side, memory) in [
        ("producer", &producer_memory),
        ("consumer", &consumer_memory),
    ] {
        assert!(
            memory.growth() < STREAM_RSS_BOUND,
            "the {side} grew by {} MiB while {} MiB streamed",
            memory.growth() >> 20,
            total >> 20
        );
    }
}

static NESTED_PRODUCED: AtomicU64 = AtomicU64::new(0);
static NESTED_STOPPED: AtomicBool = AtomicBool::new(false);
static OUTER_STOPPED: AtomicBool = AtomicBool::new(false);

/// On `b`: the items of an endless stream on `c`, doubled.
fn relayed(b: PeerId, c: PeerId) -> RemoteStream<u64> {
    remote_stream!(b, [c: PeerId] -> u64 {
        let stopped = DropFlag(&OUTER_STOPPED);
        let endless = remote_stream!(c, [] -> u64 {
            let stopped = DropFlag(&NESTED_STOPPED);
            futures_util::stream::unfold((0u64, stopped), |(next, stopped)| async move {
                actix_rt::time::sleep(Duration::from_millis(1)).await;
                NESTED_PRODUCED.fetch_add(1, Ordering::SeqCst);
                Some((next, (next + 1, stopped)))
            })
        });
        endless.map(move |item| {
            let _held = &stopped;
            item.map_or(u64::MAX, |item| item * 2)
        })
    })
}

#[test]
fn dropping_a_stream_stops_its_producer_and_the_nested_stream_on_a_third_peer() {
    let cluster = Cluster::start(["drop-a", "drop-b", "drop-c"]).unwrap();
    let (b, c) = (cluster.id("drop-b"), cluster.id("drop-c"));
    block_on(async {
        cluster
            .handle("drop-a")
            .run(async {
                let mut items = relayed(b, c);
                for expected in 0..10u64 {
                    let item = items.next().await.expect("an item").expect("not an error");
                    assert_eq!(item, expected * 2);
                }
                assert!(!OUTER_STOPPED.load(Ordering::SeqCst));
                drop(items);
                eventually("the stream on b stops", || {
                    OUTER_STOPPED.load(Ordering::SeqCst)
                })
                .await;
                eventually("the nested stream on c stops", || {
                    NESTED_STOPPED.load(Ordering::SeqCst)
                })
                .await;
                // Stopped means producing nothing more.
                let produced = NESTED_PRODUCED.load(Ordering::SeqCst);
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                assert_eq!(NESTED_PRODUCED.load(Ordering::SeqCst), produced);
            })
            .await;
    });
    cluster.shutdown();
}

#[test]
fn a_lost_link_ends_the_stream_with_connection_lost_after_the_items_delivered() {
    let mut producer = PeerProcess::start("stream-lost");
    let outcome = block_on(async {
        // A killed producer cannot resume the link: the stream ends once its resume window
        // (half a second here) passed.
        let peer = Peer::builder(PeerId::from_name("stream-lost-consumer"))
            .resume_window(Duration::from_millis(500))
            .start()
            .await
            .unwrap();
        peer.connect(&producer.url).await.unwrap();
        peer.run(async {
            let mut items = blocks::then_stall(producer.id, 5).timeout(LIMIT);
            for expected in 0..5 {
                assert_eq!(items.next().await.expect("an item"), Ok(expected));
            }
            producer.kill();
            let last = items.next().await;
            (last, items.next().await)
        })
        .await
    });
    match outcome {
        (Some(Err(RemoteError::ConnectionLost { .. })), None) => {}
        other => panic!("expected ConnectionLost then the end, got {other:?}"),
    }
}

/// On `b`: a base from `c` (a call), then `c`'s stream of `count` numbers plus the base.
fn offset_from(b: PeerId, c: PeerId, count: u64) -> RemoteStream<u64> {
    remote_stream!(b, [c: PeerId, count: u64] -> u64 {
        let base = remote!(c, [] -> u64 { 1000 }).await.unwrap_or(0);
        remote_stream!(c, [count: u64] -> u64 { futures_util::stream::iter(0..count) })
            .map(move |item| item.map_or(u64::MAX, |item| item + base))
    })
}

#[test]
fn streams_nest_inside_streams_and_calls_across_three_peers() {
    let cluster = Cluster::start(["nest-a", "nest-b", "nest-c"]).unwrap();
    let (b, c) = (cluster.id("nest-b"), cluster.id("nest-c"));
    let (streamed, collected) = block_on(async {
        cluster
            .handle("nest-a")
            .run(async {
                // A streams from B, whose stream is C's stream plus a base from a call to C.
                let streamed: Vec<u64> = offset_from(b, c, 600)
                    .map(|item| item.expect("an item"))
                    .collect()
                    .await;
                // A call whose body consumes a stream from a third peer.
                let collected = remote!(b, [c: PeerId] -> Result<Vec<u32>, RemoteError> {
                    let squares = remote_stream!(c, [] -> u32 {
                        futures_util::stream::iter((1..=5u32).map(|n| n * n))
                    });
                    squares.collect::<Vec<_>>().await.into_iter().collect()
                })
                .await;
                (streamed, collected)
            })
            .await
    });
    assert_eq!(streamed, (1000..1600).collect::<Vec<u64>>());
    assert_eq!(collected, Ok(vec![1, 4, 9, 16, 25]));
    cluster.shutdown();
}

static SLOW_STOPPED: AtomicBool = AtomicBool::new(false);
static QUIET_STOPPED: AtomicBool = AtomicBool::new(false);

#[test]
fn the_deadline_bounds_the_whole_stream_and_the_idle_timeout_the_gap_between_items() {
    let cluster = Cluster::start(["time-a", "time-b"]).unwrap();
    let b = cluster.id("time-b");
    block_on(async {
        cluster
            .handle("time-a")
            .run(async {
                // An item every 20 ms, forever: the 300 ms deadline ends it with `Timeout`.
                let slow = remote_stream!(b, [] -> u64 {
                    let stopped = DropFlag(&SLOW_STOPPED);
                    futures_util::stream::unfold((0u64, stopped), |(next, stopped)| async move {
                        actix_rt::time::sleep(Duration::from_millis(20)).await;
                        Some((next, (next + 1, stopped)))
                    })
                });
                let started = std::time::Instant::now();
                let items: Vec<_> = slow.timeout(Duration::from_millis(300)).collect().await;
                let (last, delivered) = items.split_last().expect("items, then the error");
                assert!(matches!(last, Err(RemoteError::Timeout { .. })), "{last:?}");
                assert!(!delivered.is_empty() && delivered.iter().all(Result::is_ok));
                assert!(started.elapsed() < LIMIT);
                eventually("the timed-out stream stops on b", || {
                    SLOW_STOPPED.load(Ordering::SeqCst)
                })
                .await;

                // One item, then silence: the idle timeout ends it long before the deadline.
                let quiet = remote_stream!(b, [] -> u64 {
                    let stopped = DropFlag(&QUIET_STOPPED);
                    futures_util::stream::iter([7u64]).chain(
                        futures_util::stream::pending().map(move |never: u64| {
                            let _held = &stopped;
                            never
                        }),
                    )
                });
                let mut quiet = quiet
                    .timeout(Duration::from_secs(60))
                    .idle_timeout(Duration::from_millis(200));
                assert_eq!(quiet.next().await, Some(Ok(7)));
                assert!(matches!(
                    quiet.next().await,
                    Some(Err(RemoteError::Timeout { .. }))
                ));
                assert_eq!(quiet.next().await, None);
                eventually("the idle stream stops on b", || {
                    QUIET_STOPPED.load(Ordering::SeqCst)
                })
                .await;
            })
            .await;
    });
    cluster.shutdown();
}

/// How many `Poison` values were decoded in this process.
static POISON_DECODED: AtomicU64 = AtomicU64::new(0);

/// A capture that counts its decodings: a refused call must never decode it.
#[derive(serde::Serialize)]
struct Poison(u32);

impl<'de> serde::Deserialize<'de> for Poison {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        POISON_DECODED.fetch_add(1, Ordering::SeqCst);
        u32::deserialize(deserializer).map(Poison)
    }
}

#[distributed]
fn counted(server: PeerId, count: u32) -> RemoteStream<u32> {
    remote_stream!(server, [count] -> u32 { futures_util::stream::iter(0..count) })
}

#[distributed]
fn guarded(server: PeerId, secret: Poison) -> RemoteStream<u32> {
    remote_stream!(server, [secret] -> u32 { futures_util::stream::iter([secret.0]) })
}

#[test]
fn stream_blocks_are_named_and_authorized_like_calls_before_their_captures_are_decoded() {
    // `#[distributed]` names a stream block like a `remote!` block.
    let names: Vec<String> = distributed_scope::blocks()
        .into_iter()
        .filter(|info| info.is_stream())
        .map(|info| info.name().to_owned())
        .collect();
    for name in ["streams::counted#0", "streams::guarded#0"] {
        assert!(
            names.iter().any(|known| known == name),
            "{name} in {names:?}"
        );
    }
    let server = PeerThread::start(
        Peer::builder(PeerId::from_name("stream-auth"))
            .listen("127.0.0.1:0")
            .auth(
                issuer(),
                Policy::deny_all().allow_role("viewer", "streams::counted*"),
            ),
    )
    .expect("server starts");
    let server_id = server.handle().id();
    let token = issuer().issue("reader", &["viewer"], HOUR).unwrap();
    let (allowed, refused) = block_on(async {
        let client = Peer::builder(PeerId::from_name("reader"))
            .start()
            .await
            .unwrap();
        client
            .connect_with_token(&url(server.handle()), &token)
            .await
            .unwrap();
        client
            .run(async {
                let allowed: Vec<_> = counted(server_id, 3).collect().await;
                let refused: Vec<_> = guarded(server_id, Poison(7)).collect().await;
                (allowed, refused)
            })
            .await
    });
    assert_eq!(allowed, [Ok(0), Ok(1), Ok(2)]);
    match &refused[..] {
        [Err(RemoteError::Forbidden { block, .. })] => assert_eq!(block, "streams::guarded#0"),
        other => panic!("expected one Forbidden, got {other:?}"),
    }
    assert_eq!(
        POISON_DECODED.load(Ordering::SeqCst),
        0,
        "the refused stream's captures were never decoded"
    );
}
