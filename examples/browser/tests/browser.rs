//! The browser peer in headless Chromium against a native peer over loopback.
//!
//! Run by `scripts/browser-test.sh`, which starts `cargo run --example peer -- --id server
//! --listen 127.0.0.1:0` and passes its URL in `DS_SERVER_URL` at build time.

use std::time::Duration;

use distributed_scope::{BrowserPeer, PeerId, RemoteError, Scope, remote};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn server_url() -> &'static str {
    option_env!("DS_SERVER_URL")
        .expect("build the tests with DS_SERVER_URL=ws://HOST:PORT/ (scripts/browser-test.sh does)")
}

fn server() -> PeerId {
    PeerId::from_name("server")
}

async fn connected() -> BrowserPeer {
    let browser = BrowserPeer::new(PeerId::random());
    let server_id = browser
        .connect(server_url())
        .await
        .expect("connect to the native peer");
    assert_eq!(server_id, server());
    browser
}

/// A block only this wasm build contains (the native peer does not link this test crate).
async fn browser_only(target: PeerId) -> Result<u32, RemoteError> {
    remote!(target, [] -> u32 { 7 }).await
}

// First: without link-time registration nothing else can work.
#[wasm_bindgen_test]
fn blocks_register_at_link_time_in_wasm32() {
    let blocks = distributed_scope::blocks();
    let names: Vec<&str> = blocks.iter().map(|block| block.name()).collect();
    // The shared crate's named block, its `remote!` blocks, and this crate's own block.
    assert!(names.contains(&"blocks::add"), "{names:?}");
    assert!(
        names
            .iter()
            .filter(|name| name.starts_with("blocks@"))
            .count()
            >= 10,
        "{names:?}"
    );
    assert!(
        names.iter().any(|name| name.starts_with("browser@")),
        "{names:?}"
    );
}

#[wasm_bindgen_test]
async fn ids_are_the_same_as_native() {
    // PeerId::from_name is a UUID v5 in a fixed namespace: the native peer's `--id server`.
    assert_eq!(
        server().to_string(),
        PeerId::from_name("server").to_string()
    );
    assert_eq!(PeerId::random().as_uuid().get_version_num(), 4);
}

#[wasm_bindgen_test]
async fn seed_demo_with_the_browser_as_client() {
    let browser = connected().await;
    let me = browser.id();
    let (copies, sum) = browser
        .run(blocks::demo(server(), me))
        .await
        .expect("the demo runs");
    assert_eq!((copies, sum), (vec![42; 43], 44));
}

#[wasm_bindgen_test]
async fn server_to_browser_to_server() {
    let browser = connected().await;
    let me = browser.id();
    // browser -> server -> browser -> server (-> server, locally).
    let visited = browser
        .run(blocks::chain(server(), me, server()))
        .await
        .expect("the chain runs");
    assert_eq!(visited, vec![server(), me, server(), server()]);
    // A block on the server that hops into the browser twice and back.
    let echoed = browser
        .run(blocks::empties(server(), me))
        .await
        .expect("empties survive the hops");
    assert!(echoed.none.is_none() && echoed.list.is_empty() && echoed.map.is_empty());
}

#[wasm_bindgen_test]
async fn unknown_block_reaches_the_caller_and_the_peer_keeps_working() {
    let browser = connected().await;
    let error = browser
        .run(browser_only(server()))
        .await
        .expect_err("the server does not contain this block");
    assert!(
        matches!(&error, RemoteError::UnknownBlock { peer: Some(peer), block } if *peer == server() && block.starts_with("browser@")),
        "{error:?}"
    );
    // The link is still up and serves the next call, both ways.
    assert_eq!(browser.connected_peers(), vec![server()]);
    let me = browser.id();
    let (copies, sum) = browser
        .run(blocks::demo(server(), me))
        .await
        .expect("still works");
    assert_eq!((copies.len(), sum), (43, 44));
}

#[wasm_bindgen_test]
async fn a_block_missing_from_the_browser_build_is_unknown_block_for_the_server() {
    let browser = connected().await;
    let me = browser.id();
    // The server calls into the browser a block only native builds contain.
    let error = browser
        .run(blocks::native_only_hop(server(), me))
        .await
        .expect_err("the browser build does not contain the block");
    // The server's block ran and returned the browser's answer: the UnknownBlock is its source.
    assert_eq!(error.outcome(), distributed_scope::Outcome::Ran, "{error:?}");
    assert!(
        matches!(error.root_cause(), RemoteError::UnknownBlock { peer: Some(peer), block } if *peer == me && block.starts_with("blocks@")),
        "{error:?}"
    );
    // The browser peer keeps serving the server.
    let echoed = browser
        .run(blocks::empties(server(), me))
        .await
        .expect("the browser still answers");
    assert!(echoed.list.is_empty());
}

#[wasm_bindgen_test]
async fn a_block_the_server_gives_up_on_stops_in_the_browser() {
    use std::sync::atomic::Ordering;
    let browser = connected().await;
    let me = browser.id();
    // The server starts a ticking block here, then drops the call: a `Cancel` arrives.
    let before = blocks::SPINS.load(Ordering::SeqCst);
    let gave_up = browser.run(blocks::abandon_on(server(), me, 200)).await;
    assert_eq!(gave_up, Ok(true));
    assert!(blocks::SPINS.load(Ordering::SeqCst) > before, "the block ran here");
    // Once the cancel is in, the ticks stop.
    let stable = browser
        .run(async {
            let scope = distributed_scope::Scope::current();
            for _ in 0..50 {
                let seen = blocks::SPINS.load(Ordering::SeqCst);
                scope.sleep(std::time::Duration::from_millis(100)).await;
                if blocks::SPINS.load(Ordering::SeqCst) == seen {
                    return true;
                }
            }
            false
        })
        .await;
    assert!(stable, "the cancelled block kept running");
    let stopped_at = blocks::SPINS.load(Ordering::SeqCst);
    browser
        .run(async {
            distributed_scope::Scope::current()
                .sleep(std::time::Duration::from_millis(200))
                .await;
        })
        .await;
    assert_eq!(blocks::SPINS.load(Ordering::SeqCst), stopped_at);
}

#[wasm_bindgen_test]
async fn a_panic_on_the_server_reaches_the_browser_as_panicked() {
    let browser = connected().await;
    let error = browser
        .run(blocks::panics(server(), "boom from the server".to_owned()))
        .await
        .expect_err("the block panics");
    match &error {
        RemoteError::Panicked { message, peer, .. } => {
            assert_eq!(message, "boom from the server");
            assert_eq!(*peer, Some(server()));
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(browser.run(blocks::increment(server(), 41)).await, Ok(42));
}

#[wasm_bindgen_test]
async fn named_blocks_and_scope_in_the_browser() {
    let browser = connected().await;
    let sum = browser
        .run(blocks::Add { x: 40, y: 2 }.on(server()))
        .await
        .expect("named block");
    assert_eq!(sum, 42);
    let me = browser.id();
    let (here, caller) = browser.run(blocks::whereabouts(server())).await.unwrap();
    assert_eq!((here, caller), (server(), me));
    // Outside `run` there is no current peer.
    assert!(Scope::try_current().is_none());
    assert!(matches!(
        blocks::increment(server(), 1).await,
        Err(RemoteError::NoCurrentPeer { .. })
    ));
}

#[wasm_bindgen_test]
async fn deadlines_apply_in_the_browser() {
    let browser = connected().await;
    let me = browser.id();
    // A local block that outlives its deadline: the JS timer fires, the block is dropped.
    let started = web_time::Instant::now();
    let error = browser
        .run(
            remote!(me, [] -> u32 {
                std::future::pending::<()>().await;
                0
            })
            .timeout(Duration::from_millis(100)),
        )
        .await
        .expect_err("times out");
    assert!(matches!(error, RemoteError::Timeout { .. }), "{error:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // A peer that never connects: the call waits for its deadline, then `NotConnected`.
    let nobody = PeerId::random();
    let error = browser
        .run(remote!(nobody, [] -> u32 { 7 }).timeout(Duration::from_millis(100)))
        .await;
    assert!(
        matches!(error, Err(RemoteError::NotConnected { peer, .. }) if peer == nobody),
        "{error:?}"
    );
}

#[wasm_bindgen_test]
async fn nested_calls_on_the_server_inherit_the_browser_deadline() {
    let browser = BrowserPeer::builder(PeerId::random())
        .default_deadline(Duration::from_millis(300))
        .build();
    browser.connect(server_url()).await.expect("connect");
    // The server's block hops to a peer that is not connected: it waits only for what is
    // left of the browser's 300 ms, not for its own 30 s default.
    let nobody = PeerId::random();
    let started = web_time::Instant::now();
    let error = browser
        .run(blocks::chain(server(), nobody, server()))
        .await
        .expect_err("nobody is connected");
    // The browser's own timer, or the server's block failing with its nested hop's error.
    assert!(
        matches!(
            error.root_cause(),
            RemoteError::Timeout { .. } | RemoteError::NotConnected { .. }
        ),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(browser.run(blocks::increment(server(), 1)).await, Ok(2));
}

#[wasm_bindgen_test]
async fn slow_blocks_time_out_and_dropped_calls_are_cancelled() {
    let browser = BrowserPeer::builder(PeerId::random())
        .default_deadline(Duration::from_millis(300))
        .build();
    browser.connect(server_url()).await.expect("connect");
    let me = browser.id();
    // A 5 s nap on the server against a 300 ms deadline: Timeout here, and the server stops
    // the block (it inherited the deadline, and the browser sends Cancel).
    let started = web_time::Instant::now();
    let error = browser
        .run(blocks::nap(server(), 5_000))
        .await
        .expect_err("times out");
    assert!(matches!(error, RemoteError::Timeout { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Dropping a pending call sends Cancel; the link keeps serving.
    let dropped = browser
        .run(async {
            let call = std::pin::pin!(blocks::nap(server(), 5_000));
            let timer = std::pin::pin!(blocks::nap(me, 50));
            futures_util::future::select(call, timer).await;
        })
        .await;
    assert_eq!(dropped, ());
    assert_eq!(browser.run(blocks::nap(server(), 10)).await, Ok(10));
    // Scope::sleep in a browser block runs on the JS timer.
    assert_eq!(browser.run(blocks::nap(me, 20)).await, Ok(20));
}

#[wasm_bindgen_test]
async fn bad_urls_and_refused_connections_are_errors() {
    let browser = BrowserPeer::new(PeerId::random());
    assert!(matches!(
        browser.connect("http://127.0.0.1:1/").await,
        Err(distributed_scope::Error::InvalidUrl { .. })
    ));
    // Nothing listens on port 9 on loopback.
    assert!(matches!(
        browser.connect("ws://127.0.0.1:9/").await,
        Err(distributed_scope::Error::Connect { .. })
    ));
}

#[wasm_bindgen_test]
async fn the_page_policy_decides_which_blocks_a_server_may_run_here() {
    use distributed_scope::auth::Policy;
    // Nothing allowed: the demo's hop back into the page is refused there, unrun.
    let closed = BrowserPeer::builder(PeerId::random())
        .policy(Policy::deny_all())
        .build();
    closed.connect(server_url()).await.expect("connects");
    let me = closed.id();
    let refused = closed
        .run(blocks::demo(server(), me))
        .await
        .expect_err("the page refuses the server's call");
    assert!(refused.to_string().contains("may not run"), "{refused}");
    // The shared blocks allowed (by name, for any calling peer): the demo runs.
    let open = BrowserPeer::builder(PeerId::random())
        .policy(Policy::deny_all().allow_any_principal("blocks@*"))
        .build();
    open.connect(server_url()).await.expect("connects");
    let me = open.id();
    let (copies, sum) = open
        .run(blocks::demo(server(), me))
        .await
        .expect("the demo runs");
    assert_eq!((copies, sum), (vec![42; 43], 44));
}

#[wasm_bindgen_test]
async fn metrics_count_calls_both_ways() {
    let browser = connected().await;
    let me = browser.id();
    browser
        .run(blocks::demo(server(), me))
        .await
        .expect("the demo runs");
    let metrics = browser.metrics();
    assert!(metrics.calls_sent >= 1, "{metrics:?}");
    assert!(metrics.calls_received >= 1, "{metrics:?}");
    assert!(metrics.bytes_sent > 0 && metrics.bytes_received > 0, "{metrics:?}");
}

#[wasm_bindgen_test]
async fn stop_refuses_new_calls_and_closes_links() {
    let browser = connected().await;
    browser.stop().await;
    let after = browser
        .run(blocks::increment(server(), 1))
        .await
        .expect_err("a stopped peer makes no calls");
    assert!(
        matches!(after, RemoteError::ShuttingDown { .. }),
        "{after:?}"
    );
}

#[wasm_bindgen_test]
async fn the_page_knows_the_servers_blocks_before_it_calls() {
    let browser = connected().await;
    let blocks = browser
        .remote_blocks(server())
        .expect("a live link has the server's blocks");
    let add = blocks
        .iter()
        .find(|block| block.name() == "blocks::add")
        .expect("the server announced blocks::add");
    assert_eq!(add.output(), "u32");
    assert!(browser.remote_blocks(PeerId::random()).is_none());
}

#[wasm_bindgen_test]
async fn the_browser_consumes_a_stream_from_the_native_peer_and_produces_one_for_it() {
    use futures_util::StreamExt;
    let browser = connected().await;
    let me = browser.id();
    // Consumed here: more items than a window (256), in order, none lost.
    let received: Vec<Vec<u8>> = browser
        .run(async {
            blocks::numbered(server(), 1000, 64)
                .map(|item| item.expect("every item arrives"))
                .collect()
                .await
        })
        .await;
    assert_eq!(received.len(), 1000);
    for (index, item) in received.iter().enumerate() {
        assert_eq!(item.len(), 64);
        assert_eq!(u64::from_le_bytes(item[..8].try_into().unwrap()), index as u64);
    }
    // Produced here: the native peer streams 600 numbers from the page (more than a window,
    // so the page waits for credit) and sends them back collected.
    let collected = browser
        .run(blocks::collect_from(server(), me, 600))
        .await
        .expect("the native peer streams from the page");
    assert_eq!(collected, (0..600).map(|n| n * 3).collect::<Vec<u64>>());
}

#[wasm_bindgen_test]
async fn the_browser_resumes_its_link_after_its_connection_drops() {
    use futures_util::StreamExt;
    let browser = connected().await;
    let server = server();
    // Calls and a stream in flight when the connection drops; the page dials again at once
    // and resumes the link: each completes, none fails with ConnectionLost.
    let (naps, streamed, ()) = browser
        .run(async {
            futures_util::join!(
                futures_util::future::join_all((0..5).map(|_| blocks::nap(server, 300))),
                blocks::numbered(server, 300, 64)
                    .map(|item| item.expect("every item arrives"))
                    .collect::<Vec<_>>(),
                async {
                    Scope::current()
                        .sleep(std::time::Duration::from_millis(100))
                        .await;
                    browser.interrupt(server);
                }
            )
        })
        .await;
    assert!(naps.iter().all(|nap| nap == &Ok(300)), "{naps:?}");
    assert_eq!(streamed.len(), 300);
    for (index, item) in streamed.iter().enumerate() {
        assert_eq!(u64::from_le_bytes(item[..8].try_into().unwrap()), index as u64);
    }
    // The same link carries on.
    assert_eq!(browser.connected_peers(), vec![server]);
    assert_eq!(browser.run(blocks::increment(server, 1)).await, Ok(2));
}
