//! Session resume over real sockets: a TCP proxy between two peers cuts the link mid-call and
//! lets it reconnect; calls in flight complete exactly once within the resume window and
//! fail `ConnectionLost` beyond it; a stalled link holds new calls with bounded memory; and
//! nobody but the session's own client resumes it.

mod support;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use distributed_scope::testing::PeerThread;
use distributed_scope::{
    Peer, PeerBuilder, PeerId, RemoteError, RemoteStream, remote, remote_stream,
};
use futures_util::StreamExt;
use futures_util::future::join_all;
use support::attack::RssWatch;
use support::proxy::CutProxy;
use support::{HOUR, LIMIT, block_on, issuer};

const CALLS: usize = 50;

/// How many times each call of a test ran on its callee, by index.
static RUNS: [AtomicU32; CALLS] = [const { AtomicU32::new(0) }; CALLS];
/// How many times the nested hop of each call ran (back on the caller).
static NESTED_RUNS: [AtomicU32; CALLS] = [const { AtomicU32::new(0) }; CALLS];

/// On `server`: counts its run, waits `nap`, and for odd `index` hops back to `client`
/// (which counts that run too); returns `index`.
async fn counted(
    server: PeerId,
    client: PeerId,
    index: u32,
    nap: Duration,
) -> Result<u32, RemoteError> {
    let nap_ms = nap.as_millis() as u64;
    remote!(server, [client: PeerId, index: u32, nap_ms: u64] -> Result<u32, RemoteError> {
        RUNS[index as usize].fetch_add(1, Ordering::SeqCst);
        actix_rt::time::sleep(Duration::from_millis(nap_ms)).await;
        if index % 2 == 1 {
            return remote!(client, [index: u32] -> u32 {
                NESTED_RUNS[index as usize].fetch_add(1, Ordering::SeqCst);
                index
            })
            .await;
        }
        Ok(index)
    })
    .await
}

/// `count` numbers from `server`, one every `gap`.
fn paced(server: PeerId, count: u32, gap_ms: u64) -> RemoteStream<u32> {
    remote_stream!(server, [count: u32, gap_ms: u64] -> u32 {
        futures_util::stream::iter(0..count).then(move |n| async move {
            actix_rt::time::sleep(Duration::from_millis(gap_ms)).await;
            n
        })
    })
}

fn reset() {
    for counter in RUNS.iter().chain(NESTED_RUNS.iter()) {
        counter.store(0, Ordering::SeqCst);
    }
}

fn server(name: &str, configure: impl FnOnce(PeerBuilder) -> PeerBuilder) -> PeerThread {
    PeerThread::start(configure(
        Peer::builder(PeerId::from_name(name)).listen("127.0.0.1:0"),
    ))
    .expect("server starts")
}

/// Holds the test's resume scenarios one at a time: they share the run counters.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_link_cut_mid_call_resumes_and_every_call_completes_exactly_once() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    reset();
    let server = server("resume-server", |builder| builder);
    let server_id = server.handle().id();
    let target = server.handle().local_addr().expect("listens");
    let (results, streamed) = block_on(async {
        let proxy = CutProxy::start(target).await;
        let client = Peer::builder(PeerId::from_name("resume-client"))
            .start()
            .await
            .unwrap();
        client.connect(&proxy.url()).await.unwrap();
        let me = client.id();
        // The cut: 150 ms into the calls, for 500 ms; then the client may reconnect.
        let cutter = proxy.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(Duration::from_millis(150)).await;
            cutter.cut();
            actix_rt::time::sleep(Duration::from_millis(500)).await;
            cutter.heal();
        });
        client
            .run(async {
                let calls = (0..CALLS as u32)
                    .map(|index| counted(server_id, me, index, Duration::from_millis(300)));
                let stream = paced(server_id, 40, 25).timeout(LIMIT).collect::<Vec<_>>();
                futures_util::join!(join_all(calls), stream)
            })
            .await
    });
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result, &Ok(index as u32), "call {index}");
        assert_eq!(
            RUNS[index].load(Ordering::SeqCst),
            1,
            "call {index} ran once"
        );
        let nested = u32::from(index % 2 == 1);
        assert_eq!(
            NESTED_RUNS[index].load(Ordering::SeqCst),
            nested,
            "hop of {index}"
        );
    }
    let streamed: Vec<u32> = streamed
        .into_iter()
        .map(|item| item.expect("no item lost, no error"))
        .collect();
    assert_eq!(streamed, (0..40).collect::<Vec<u32>>());
}

#[test]
fn a_cut_longer_than_the_window_fails_pending_calls_with_connection_lost_and_runs_none_twice() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    reset();
    let window = Duration::from_millis(300);
    let server = server("resume-late-server", |builder| {
        builder.resume_window(window)
    });
    let server_id = server.handle().id();
    let target = server.handle().local_addr().expect("listens");
    let results = block_on(async {
        let proxy = CutProxy::start(target).await;
        let client = Peer::builder(PeerId::from_name("resume-late-client"))
            .resume_window(window)
            .start()
            .await
            .unwrap();
        client.connect(&proxy.url()).await.unwrap();
        let me = client.id();
        let cutter = proxy.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            cutter.cut();
            actix_rt::time::sleep(Duration::from_millis(1500)).await;
            cutter.heal();
        });
        client
            .run(join_all((0..CALLS as u32).map(|index| {
                counted(server_id, me, index, Duration::from_millis(400))
            })))
            .await
    });
    for (index, result) in results.iter().enumerate() {
        assert!(
            matches!(result, Err(RemoteError::ConnectionLost { .. })),
            "call {index}: {result:?}"
        );
        assert!(
            RUNS[index].load(Ordering::SeqCst) <= 1,
            "call {index} ran twice"
        );
    }
}

/// Calls of 1 MiB started during the stall, and the most held at once.
static STARTED: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_stalled_link_fills_its_replay_buffer_then_holds_new_calls_with_bounded_memory() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let server = server("stall-server", |builder| builder);
    let server_id = server.handle().id();
    let target = server.handle().local_addr().expect("listens");
    let memory = RssWatch::start(std::process::id());
    let outcomes = block_on(async {
        let blackhole = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = support::proxy::partition_proxy(target, blackhole.clone()).await;
        let client = Peer::builder(PeerId::from_name("stall-client"))
            .max_replay_bytes(4 << 20)
            .max_pending_outbound(64)
            .start()
            .await
            .unwrap();
        client.connect(&url).await.unwrap();
        // The remote stops reading: nothing is acknowledged any more.
        blackhole.store(true, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let callers = (0..32).map(|_| async {
            let mut outcomes = Vec::new();
            while started.elapsed() < Duration::from_secs(3) {
                STARTED.fetch_add(1, Ordering::SeqCst);
                let payload = vec![7u8; 1 << 20];
                let outcome = remote!(server_id, [payload: Vec<u8>] -> usize { payload.len() })
                    .timeout(Duration::from_millis(300))
                    .await;
                outcomes.push(outcome);
            }
            outcomes
        });
        client.run(join_all(callers)).await
    });
    let outcomes: Vec<_> = outcomes.into_iter().flatten().collect();
    let attempted = STARTED.load(Ordering::SeqCst) as u64;
    // Without the bound, every call's frame would stay for a replay: hundreds of MiB.
    assert!(
        attempted * (1 << 20) > 256 << 20,
        "{attempted} calls of 1 MiB"
    );
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, Err(RemoteError::Timeout { .. }))),
        "held calls still time out at their deadline"
    );
    assert!(
        memory.growth() < 96 << 20,
        "grew by {} MiB while {attempted} calls of 1 MiB were made on a stalled link",
        memory.growth() >> 20
    );
}

#[test]
fn another_client_presenting_the_session_is_refused() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let server = server("resume-auth-server", |builder| {
        builder.auth(issuer(), distributed_scope::auth::Policy::allow_all())
    });
    let server_id = server.handle().id();
    let target = server.handle().local_addr().expect("listens");
    let reader = issuer().issue("reader", &["viewer"], HOUR).unwrap();
    let other = issuer().issue("mallory", &["viewer"], HOUR).unwrap();
    block_on(async {
        let proxy = CutProxy::start(target).await;
        let client = Peer::builder(PeerId::from_name("reader"))
            .start()
            .await
            .unwrap();
        client
            .connect_with_token(&proxy.url(), &reader)
            .await
            .unwrap();
        assert_eq!(client.run(remote!(server_id, [] -> u32 { 6 })).await, Ok(6));
        // A drop, resumed by the client: the proxy sees its resume request.
        proxy.cut();
        proxy.heal();
        let answer = client
            .run(tokio::time::timeout(LIMIT, async {
                loop {
                    match remote!(server_id, [] -> u32 { 7 }).await {
                        Ok(answer) => break answer,
                        Err(_) => actix_rt::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }))
            .await
            .expect("the link resumes");
        assert_eq!(answer, 7);
        let header = proxy
            .resume_headers()
            .pop()
            .expect("the client presented its session");
        let url = format!("http://{target}/");
        let upgrade = |token: Option<&str>, resume: &str| {
            let mut request = awc::Client::new()
                .get(&url)
                .insert_header(("ds-resume", resume))
                .insert_header(("connection", "upgrade"))
                .insert_header(("upgrade", "websocket"))
                .insert_header(("sec-websocket-version", "13"))
                .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move {
                request
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
            }
        };
        // Another principal with the session's keys, and the right principal with a wrong
        // secret, are refused; without a token, the upgrade is refused before anything.
        assert_eq!(upgrade(Some(&other), &header).await.unwrap(), 403);
        let mut forged = header.clone();
        let flip = if forged.as_bytes()[40] == b'0' {
            "1"
        } else {
            "0"
        };
        forged.replace_range(40..41, flip);
        assert_eq!(upgrade(Some(&reader), &forged).await.unwrap(), 403);
        assert_eq!(upgrade(None, &header).await.unwrap(), 401);
        // The client's own link is untouched.
        let still = client.run(remote!(server_id, [] -> u32 { 8 })).await;
        assert_eq!(still, Ok(8));
    });
}
