//! `remote_all!` over real loopback sockets: one result per peer in target order, per-peer
//! deadlines, and `first(k)` / `quorum()` returning early and cancelling the calls left.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use distributed_scope::testing::PeerThread;
use distributed_scope::{
    Backoff, Peer, PeerEvent, PeerHandle, PeerId, RemoteAll, RemoteError, Scope, Unreached,
    remote_all,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use support::{LIMIT, block_on, server, url};

/// What each peer does: the slow ones sleep `nap_ms` first, the failing ones return an error.
/// Not `Clone`: `remote_all!` encodes the captures once and sends the bytes.
#[derive(Serialize, Deserialize)]
struct Plan {
    slow: Vec<PeerId>,
    failing: Vec<PeerId>,
    nap_ms: u64,
}

/// How often each peer started, completed, or dropped unfinished (cancelled) the block.
static COUNTS: Mutex<BTreeMap<(PeerId, Step), usize>> = Mutex::new(BTreeMap::new());

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Started,
    Completed,
    Cancelled,
}

fn bump(peer: PeerId, step: Step) {
    let mut counts = COUNTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *counts.entry((peer, step)).or_default() += 1;
}

fn count(peer: PeerId, step: Step) -> usize {
    let counts = COUNTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    counts.get(&(peer, step)).copied().unwrap_or(0)
}

/// Counts a body dropped before it completed.
struct Running(PeerId, bool);

impl Drop for Running {
    fn drop(&mut self) {
        if !self.1 {
            bump(self.0, Step::Cancelled);
        }
    }
}

/// The block of every test: answers with the id of the peer it ran on, as `plan` says.
fn probe(targets: Vec<PeerId>, plan: Plan) -> RemoteAll<PeerId> {
    remote_all!(targets, [plan: Plan] -> Result<PeerId, RemoteError> {
        let me = Scope::current().peer_id();
        bump(me, Step::Started);
        let mut running = Running(me, false);
        if plan.slow.contains(&me) {
            Scope::current().sleep(Duration::from_millis(plan.nap_ms)).await;
        }
        running.1 = true;
        bump(me, Step::Completed);
        if plan.failing.contains(&me) {
            return Err(RemoteError::NotConnected { peer: me, block: None });
        }
        Ok(me)
    })
}

/// `count` listening peers named `{name}-{i}`, each in its own actix system and thread.
fn servers(name: &str, count: usize) -> (Vec<PeerThread>, Vec<PeerId>) {
    let threads: Vec<PeerThread> = (0..count)
        .map(|at| server(&format!("{name}-{at}")))
        .collect();
    let ids = threads.iter().map(|thread| thread.handle().id()).collect();
    (threads, ids)
}

/// A client in the current actix system, linked to every server (`connect` returns once
/// the handshake is done), that never redials a lost link.
async fn client(name: &str, servers: &[PeerThread]) -> PeerHandle {
    let client = Peer::builder(PeerId::from_name(name))
        .reconnect(Backoff::disabled())
        .start()
        .await
        .expect("client starts");
    for server in servers {
        client
            .connect(&url(server.handle()))
            .await
            .expect("connects");
    }
    client
}

/// Waits until `condition` holds, checking every few milliseconds, for at most 5 s (a
/// cancellation crosses loopback in milliseconds).
async fn until(what: &str, condition: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// Asserts that each of `slow` started the block and had it cancelled, then that none of
/// them completes it even after its nap would have ended.
async fn assert_cancelled(slow: &[PeerId], nap: Duration) {
    for &peer in slow {
        until("the slow peer's block was cancelled", || {
            count(peer, Step::Cancelled) == 1
        })
        .await;
        assert_eq!(count(peer, Step::Started), 1, "{peer}");
    }
    tokio::time::sleep(nap + Duration::from_millis(300)).await;
    for &peer in slow {
        assert_eq!(count(peer, Step::Completed), 0, "{peer} completed");
    }
}

#[test]
fn five_peers_two_down_give_one_result_each_in_target_order() {
    let (mut threads, ids) = servers("all-down", 5);
    block_on(async move {
        let client = client("all-down-client", &threads).await;
        let mut events = client.events();
        // Stop peers 1 and 3 (off this thread: stopping joins the peer's thread) and wait
        // until the client has seen both links go down.
        let stopped = vec![threads.remove(3), threads.remove(1)];
        actix_rt::task::spawn_blocking(move || drop(stopped))
            .await
            .expect("the peers stop");
        let mut lost = Vec::new();
        while lost.len() < 2 {
            let event = tokio::time::timeout(LIMIT, events.next()).await;
            if let Ok(Some(PeerEvent::Lost { peer, .. })) = event {
                lost.push(peer);
            } else {
                assert!(event.is_ok(), "the client did not see the links go down");
            }
        }
        lost.sort();
        let mut down = vec![ids[1], ids[3]];
        down.sort();
        assert_eq!(lost, down);

        let plan = Plan {
            slow: Vec::new(),
            failing: Vec::new(),
            nap_ms: 0,
        };
        let results = client
            .run(
                probe(ids.clone(), plan)
                    .timeout(Duration::from_secs(10))
                    .into_future(),
            )
            .await;
        let order: Vec<PeerId> = results.iter().map(|(peer, _)| *peer).collect();
        assert_eq!(order, ids);
        for (at, (peer, result)) in results.into_iter().enumerate() {
            if at == 1 || at == 3 {
                assert!(
                    matches!(&result, Err(RemoteError::NotConnected { peer: down, block: Some(_) }) if *down == peer),
                    "{at}: {result:?}"
                );
            } else {
                assert_eq!(result, Ok(peer), "{at}");
                assert_eq!(count(peer, Step::Completed), 1, "{at}");
            }
        }
        drop(threads);
    });
}

#[test]
fn first_returns_once_k_succeeded_and_cancels_the_rest() {
    let (threads, ids) = servers("all-first", 5);
    let threads = &threads;
    let nap = Duration::from_millis(1500);
    block_on(async move {
        let client = client("all-first-client", threads).await;
        let (fast, slow) = (vec![ids[1], ids[3]], vec![ids[0], ids[2], ids[4]]);
        let plan = Plan {
            slow: slow.clone(),
            failing: Vec::new(),
            nap_ms: nap.as_millis() as u64,
        };
        let started = Instant::now();
        let first = client.run(probe(ids.clone(), plan).first(2)).await;
        assert!(started.elapsed() < nap, "took {:?}", started.elapsed());
        let first = first.expect("two peers succeed");
        assert_eq!(first, vec![(fast[0], fast[0]), (fast[1], fast[1])]);
        assert_cancelled(&slow, nap).await;
    });
}

#[test]
fn quorum_returns_once_a_majority_succeeded_and_cancels_the_rest() {
    let (threads, ids) = servers("all-quorum", 5);
    let threads = &threads;
    let nap = Duration::from_millis(1500);
    block_on(async move {
        let client = client("all-quorum-client", threads).await;
        let slow = vec![ids[0], ids[3]];
        let plan = Plan {
            slow: slow.clone(),
            failing: Vec::new(),
            nap_ms: nap.as_millis() as u64,
        };
        let started = Instant::now();
        let majority = client.run(probe(ids.clone(), plan).quorum()).await;
        assert!(started.elapsed() < nap, "took {:?}", started.elapsed());
        let peers: Vec<PeerId> = majority
            .expect("three peers succeed")
            .into_iter()
            .map(|(peer, answer)| {
                assert_eq!(peer, answer);
                peer
            })
            .collect();
        assert_eq!(peers, vec![ids[1], ids[2], ids[4]]);
        assert_cancelled(&slow, nap).await;
    });
}

#[test]
fn first_fails_as_soon_as_k_successes_are_impossible() {
    let (threads, ids) = servers("all-unreached", 4);
    let threads = &threads;
    let nap = Duration::from_millis(1500);
    block_on(async move {
        let client = client("all-unreached-client", threads).await;
        let (failing, slow) = (vec![ids[0], ids[2]], vec![ids[1], ids[3]]);
        let plan = Plan {
            slow: slow.clone(),
            failing: failing.clone(),
            nap_ms: nap.as_millis() as u64,
        };
        let started = Instant::now();
        // Three of four must succeed: impossible once two have failed, slow ones or not.
        let unreached = client.run(probe(ids.clone(), plan).first(3)).await;
        assert!(started.elapsed() < nap, "took {:?}", started.elapsed());
        let Err(Unreached {
            needed,
            targets,
            errors,
            ..
        }) = unreached
        else {
            panic!("expected Unreached, got {unreached:?}");
        };
        assert_eq!((needed, targets), (3, 4));
        let failed: Vec<PeerId> = errors.iter().map(|(peer, _)| *peer).collect();
        assert_eq!(failed, failing);
        for (peer, error) in &errors {
            // The body's own error, kept as the cause.
            assert!(
                matches!(error, RemoteError::Failed { peer: Some(at), .. } if at == peer),
                "{error:?}"
            );
            let cause = std::error::Error::source(error)
                .and_then(|source| source.downcast_ref::<RemoteError>());
            assert!(
                matches!(cause, Some(RemoteError::NotConnected { peer: inner, .. }) if inner == peer),
                "{cause:?}"
            );
        }
        assert_cancelled(&slow, nap).await;
    });
}

#[test]
fn each_peer_times_out_on_its_own() {
    let (threads, ids) = servers("all-timeout", 3);
    let threads = &threads;
    let nap = Duration::from_secs(3);
    block_on(async move {
        let client = client("all-timeout-client", threads).await;
        let plan = Plan {
            slow: vec![ids[1]],
            failing: Vec::new(),
            nap_ms: nap.as_millis() as u64,
        };
        let started = Instant::now();
        let results = client
            .run(
                probe(ids.clone(), plan)
                    .timeout(Duration::from_millis(400))
                    .into_future(),
            )
            .await;
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(300), "took {elapsed:?}");
        assert!(elapsed < nap, "took {elapsed:?}");
        assert_eq!(results[0], (ids[0], Ok(ids[0])));
        assert_eq!(results[2], (ids[2], Ok(ids[2])));
        assert_eq!(results[1].0, ids[1]);
        assert!(
            matches!(&results[1].1, Err(RemoteError::Timeout { .. })),
            "{:?}",
            results[1].1
        );
    });
}

#[test]
fn a_target_that_is_this_peer_runs_locally_beside_the_remote_ones() {
    let (threads, ids) = servers("all-local", 1);
    let threads = &threads;
    block_on(async move {
        let client = client("all-local-client", threads).await;
        let here = client.id();
        let plan = Plan {
            slow: Vec::new(),
            failing: Vec::new(),
            nap_ms: 0,
        };
        let targets = vec![here, ids[0], here];
        let results = client.run(probe(targets.clone(), plan).into_future()).await;
        assert_eq!(
            results,
            vec![(here, Ok(here)), (ids[0], Ok(ids[0])), (here, Ok(here))]
        );
        assert_eq!(count(here, Step::Completed), 2);
        assert_eq!(count(ids[0], Step::Completed), 1);
    });
}
