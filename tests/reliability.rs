//! Deadlines, cancellation, waiting for peers, liveness, reconnection and draining, over real
//! loopback sockets between separate actix systems and processes.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use distributed_scope::{Backoff, Peer, PeerId, RemoteError, Scope, remote};
use futures_util::future::join_all;
use support::proxy::partition_proxy;
use support::{PeerProcess, block_on, quick_liveness, quick_reconnect, server, url};

#[test]
fn sleeping_block_times_out_at_about_its_deadline() {
    let server = server("deadline-server");
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let (result, elapsed) = block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        let started = Instant::now();
        let result = client
            .run(async move {
                remote!(server_id, [] -> u8 {
                    Scope::current().sleep(Duration::from_secs(30)).await;
                    1
                })
                .timeout(Duration::from_millis(300))
                .await
            })
            .await;
        (result, started.elapsed())
    });
    assert!(
        matches!(result, Err(RemoteError::Timeout { .. })),
        "{result:?}"
    );
    // The callee stops a little before the caller's deadline (5 % margin) and says so.
    assert!(elapsed >= Duration::from_millis(280), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

/// Outer block `reliability::nested_deadline#0` on `b`, inner `#1` on `c`.
#[distributed_scope::distributed]
async fn nested_deadline(b: PeerId, c: PeerId) -> Result<u8, RemoteError> {
    remote!(b, [c] -> Result<u8, RemoteError> {
        // Its own timeout is 20 s, but less than 2 s of the outer deadline remain.
        remote!(c, [] -> u8 {
            Scope::current().sleep(Duration::from_secs(30)).await;
            1
        })
        .timeout(Duration::from_secs(20))
        .await
    })
    .timeout(Duration::from_secs(2))
    .await
}

#[test]
fn nested_hop_inherits_the_remaining_deadline_and_fails_first() {
    let b = server("inherit-b");
    let c = server("inherit-c");
    let (idb, idc) = (b.handle().id(), c.handle().id());
    let (urlb, urlc) = (url(b.handle()), url(c.handle()));
    let (result, elapsed) = block_on(async move {
        b.handle().connect(&urlc).await.unwrap();
        let a = support::connected(PeerId::random(), &urlb).await;
        let started = Instant::now();
        (a.run(nested_deadline(idb, idc)).await, started.elapsed())
    });
    // The inner hop failed first, and its error is what the outer block returned: the outer
    // block ran (and failed), with the inner Timeout as its source.
    let error = result.expect_err("the inner hop times out");
    match (&error, error.root_cause()) {
        (RemoteError::Failed { block, peer, .. }, RemoteError::Timeout { block: inner, .. }) => {
            assert_eq!(block.as_deref(), Some("reliability::nested_deadline#0"));
            assert_eq!(*peer, Some(idb));
            assert_eq!(
                inner.as_deref(),
                Some("reliability::nested_deadline#1"),
                "after {elapsed:?}"
            );
        }
        _ => panic!("expected the outer block failing with the inner Timeout, got {error:?}"),
    }
    assert_eq!(error.outcome(), distributed_scope::Outcome::Ran);
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

static OUTER_TICKS: AtomicU64 = AtomicU64::new(0);
static INNER_TICKS: AtomicU64 = AtomicU64::new(0);

#[test]
fn dropping_a_call_stops_the_block_and_its_nested_hop() {
    let b = server("cancel-b");
    let c = server("cancel-c");
    let (idb, idc) = (b.handle().id(), c.handle().id());
    let (urlb, urlc) = (url(b.handle()), url(c.handle()));
    block_on(async move {
        b.handle().connect(&urlc).await.unwrap();
        let a = support::connected(PeerId::random(), &urlb).await;
        let call = a.run(async move {
            remote!(idb, [idc: PeerId] -> Result<u8, RemoteError> {
                let inner = remote!(idc, [] -> u8 {
                    loop {
                        INNER_TICKS.fetch_add(1, Ordering::SeqCst);
                        Scope::current().sleep(Duration::from_millis(5)).await;
                    }
                });
                let outer = async {
                    loop {
                        OUTER_TICKS.fetch_add(1, Ordering::SeqCst);
                        Scope::current().sleep(Duration::from_millis(5)).await;
                    }
                };
                futures_util::future::select(Box::pin(inner), Box::pin(outer)).await;
                Ok(0)
            })
            .await
        });
        // Let both loops run, then drop the call: `timeout` drops the future.
        let wait_for_ticks = async {
            while INNER_TICKS.load(Ordering::SeqCst) < 5 || OUTER_TICKS.load(Ordering::SeqCst) < 5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            _ = call => panic!("the looping call cannot complete"),
            () = wait_for_ticks => {}
        }
        // The call future is dropped here. Give the Cancel frames time to travel, then check
        // that neither loop makes progress any more.
        let settle = async {
            loop {
                let before = (
                    INNER_TICKS.load(Ordering::SeqCst),
                    OUTER_TICKS.load(Ordering::SeqCst),
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                let after = (
                    INNER_TICKS.load(Ordering::SeqCst),
                    OUTER_TICKS.load(Ordering::SeqCst),
                );
                if before == after {
                    return after;
                }
            }
        };
        let stopped_at = tokio::time::timeout(Duration::from_secs(5), settle)
            .await
            .expect("both loops stop after the call is dropped");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            (
                INNER_TICKS.load(Ordering::SeqCst),
                OUTER_TICKS.load(Ordering::SeqCst)
            ),
            stopped_at
        );
    });
}

#[test]
fn many_waiters_for_a_peer_that_connects_later_all_complete() {
    let server = server("late-server");
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let results = block_on(async move {
        let client = Peer::builder(PeerId::random()).start().await.unwrap();
        let waiters: Vec<_> = (0..100u64)
            .map(|i| client.spawn(blocks::increment(server_id, i)))
            .collect();
        // The scenario: the link comes up a second after the calls were made.
        tokio::time::sleep(Duration::from_secs(1)).await;
        client.connect(&url).await.unwrap();
        join_all(waiters).await
    });
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), Ok(i as u64 + 1));
    }
}

#[test]
fn killed_peer_process_fails_pending_calls_then_reconnects_after_restart() {
    let mut process = PeerProcess::start("kill-server");
    let server_id = process.id;
    let url = process.url.clone();
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    block_on(async move {
        // A killed process cannot resume the link: pending calls fail once the resume window
        // (1 s here) passed.
        let builder =
            quick_reconnect(Peer::builder(PeerId::random())).resume_window(Duration::from_secs(1));
        let handle = quick_liveness(builder, Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        handle.connect(&url).await.unwrap();
        let pending = handle.spawn(blocks::nap(server_id, 60_000));
        // Let the spawned call go out before the next one.
        tokio::task::yield_now().await;
        // The nap runs once a later call on the same link has answered.
        assert_eq!(handle.run(blocks::increment(server_id, 1)).await, Ok(2));
        let killed_at = Instant::now();
        process.kill();
        let lost = pending.await.unwrap();
        assert!(
            matches!(lost, Err(RemoteError::ConnectionLost { peer, .. }) if peer == server_id),
            "{lost:?}"
        );
        assert!(killed_at.elapsed() < Duration::from_secs(5));
        let later = handle
            .run(
                blocks::Add { x: 1, y: 1 }
                    .on(server_id)
                    .timeout(Duration::from_millis(200)),
            )
            .await;
        assert!(
            matches!(later, Err(RemoteError::NotConnected { .. })),
            "{later:?}"
        );
        // Restart on the same address: the client's supervisor reconnects by itself.
        let restarted =
            actix_rt::task::spawn_blocking(move || PeerProcess::start_at("kill-server", &addr))
                .await
                .unwrap();
        handle
            .wait_for(server_id, Duration::from_secs(15))
            .await
            .expect("the supervisor reconnects");
        assert_eq!(handle.run(blocks::increment(server_id, 41)).await, Ok(42));
        drop(restarted);
    });
}

#[test]
fn silent_partition_is_detected_by_liveness() {
    let server = server("partition-server");
    let server_id = server.handle().id();
    let target = server.handle().local_addr().unwrap();
    let (result, elapsed) = block_on(async move {
        let blackhole = Arc::new(AtomicBool::new(false));
        let proxied = partition_proxy(target, blackhole.clone()).await;
        // Silence drops the connection; the link then waits its resume window (1 s here)
        // for a new one, which the partition never lets through.
        let builder = Peer::builder(PeerId::random())
            .reconnect(Backoff::disabled())
            .resume_window(Duration::from_secs(1));
        let client = quick_liveness(builder, Duration::from_secs(1))
            .start()
            .await
            .unwrap();
        client.connect(&proxied).await.unwrap();
        assert_eq!(client.run(blocks::increment(server_id, 1)).await, Ok(2));
        let pending = client.spawn(blocks::nap(server_id, 30_000));
        // Let the spawned call go out before the next one.
        tokio::task::yield_now().await;
        assert_eq!(client.run(blocks::increment(server_id, 2)).await, Ok(3));
        blackhole.store(true, Ordering::SeqCst);
        let cut = Instant::now();
        (pending.await.unwrap(), cut.elapsed())
    });
    assert!(
        matches!(result, Err(RemoteError::ConnectionLost { peer, .. }) if peer == server_id),
        "{result:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "detected after {elapsed:?}"
    );
}

#[test]
fn stop_drains_in_flight_calls_and_refuses_new_ones() {
    let server = server("drain-server");
    let server_handle = server.handle().clone();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        let in_flight = client.spawn(blocks::nap(server_id, 300));
        // Let the spawned call go out before the next one.
        tokio::task::yield_now().await;
        // The nap is running once a later call on the same link has answered.
        assert_eq!(client.run(blocks::increment(server_id, 0)).await, Ok(1));
        let stopping = actix_rt::spawn(async move { server_handle.stop().await });
        // The in-flight call finishes within the drain timeout.
        assert_eq!(in_flight.await.unwrap(), Ok(300));
        stopping.await.unwrap().unwrap();
        let after = client
            .run(async {
                blocks::Add { x: 1, y: 2 }
                    .on(server_id)
                    .timeout(Duration::from_millis(200))
                    .await
            })
            .await;
        assert!(
            matches!(
                after,
                Err(RemoteError::NotConnected { .. } | RemoteError::ShuttingDown { .. })
            ),
            "{after:?}"
        );
    });
}

#[test]
fn drain_timeout_fails_long_calls_with_shutting_down() {
    let server = distributed_scope::testing::PeerThread::start(
        Peer::builder(PeerId::from_name("drain-timeout"))
            .listen("127.0.0.1:0")
            .drain_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let server_handle = server.handle().clone();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        let long = client.spawn(blocks::nap(server_id, 30_000));
        // Let the spawned call go out before the next one.
        tokio::task::yield_now().await;
        assert_eq!(client.run(blocks::increment(server_id, 0)).await, Ok(1));
        server_handle.stop().await.unwrap();
        let result = long.await.unwrap();
        assert!(
            matches!(result, Err(RemoteError::ShuttingDown { .. })),
            "{result:?}"
        );
    });
}

#[test]
fn beyond_the_inbound_limit_calls_queue_then_are_overloaded() {
    let server = distributed_scope::testing::PeerThread::start(
        Peer::builder(PeerId::from_name("overload-server"))
            .listen("127.0.0.1:0")
            .max_inbound_calls(2)
            .max_queued_calls(2),
    )
    .unwrap();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let results = block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        // 2 run, 2 queue, the rest are refused without running.
        let calls: Vec<_> = (0..6)
            .map(|_| client.spawn(blocks::nap(server_id, 300)))
            .collect();
        join_all(calls).await
    });
    let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    let done = results.iter().filter(|result| **result == Ok(300)).count();
    let overloaded = results
        .iter()
        .filter(|result| matches!(result, Err(RemoteError::Overloaded { .. })))
        .count();
    assert_eq!((done, overloaded), (4, 2), "{results:?}");
}

static QUEUED_RAN: AtomicU64 = AtomicU64::new(0);

#[test]
fn a_queued_call_cancelled_before_its_turn_never_runs() {
    let server = distributed_scope::testing::PeerThread::start(
        Peer::builder(PeerId::from_name("queue-cancel"))
            .listen("127.0.0.1:0")
            .max_inbound_calls(1),
    )
    .unwrap();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let counted = |target: PeerId| async move {
        remote!(target, [] -> u64 { QUEUED_RAN.fetch_add(1, Ordering::SeqCst) + 1 }).await
    };
    block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        // The one slot is busy for 500 ms ...
        let busy = client.spawn(blocks::nap(server_id, 500));
        tokio::task::yield_now().await;
        // ... so this call waits in the queue, and is dropped there: a `Cancel` follows it.
        let queued = client.spawn(counted(server_id));
        tokio::task::yield_now().await;
        queued.abort();
        assert_eq!(busy.await.unwrap(), Ok(500));
        // The next call runs, and it is the first to have run.
        assert_eq!(client.run(counted(server_id)).await, Ok(1));
    });
}
