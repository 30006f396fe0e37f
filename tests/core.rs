//! The core promises over real loopback WebSockets between separate actix systems.

mod support;

use std::time::{Duration, Instant};

use distributed_scope::{Peer, PeerId, RemoteError, remote};
use support::{PeerProcess, block_on, server, url};

#[test]
fn seed_demo_runs_across_two_systems() {
    let server = server("demo-server");
    let server_id = server.handle().id();
    let url = url(server.handle());
    let result = block_on(async move {
        let client_id = PeerId::from_name("demo-client");
        let client = Peer::builder(client_id).start().await.unwrap();
        assert_eq!(client.connect(&url).await.unwrap(), server_id);
        client.run(blocks::demo(server_id, client_id)).await
    });
    assert_eq!(result, Ok((vec![42; 43], 44)));
}

#[test]
fn three_peer_chain_visits_each_peer_in_order() {
    let a = server("chain-a");
    let b = server("chain-b");
    let c = server("chain-c");
    let (ida, idb, idc) = (a.handle().id(), b.handle().id(), c.handle().id());
    let (urlb, urlc) = (url(b.handle()), url(c.handle()));
    let urla = url(a.handle());
    let visited = block_on(async move {
        assert_eq!(a.handle().connect(&urlb).await.unwrap(), idb);
        assert_eq!(b.handle().connect(&urlc).await.unwrap(), idc);
        assert_eq!(c.handle().connect(&urla).await.unwrap(), ida);
        a.handle().run(blocks::chain(ida, idb, idc)).await
    });
    assert_eq!(visited, Ok(vec![ida, idb, idc, ida]));
}

#[test]
fn demo_gives_the_same_result_in_one_system() {
    let result = block_on(async {
        // One peer: every hop is the local short-circuit.
        let alone = Peer::builder(PeerId::from_name("alone"))
            .start()
            .await
            .unwrap();
        let local = alone
            .run(blocks::demo(alone.id(), alone.id()))
            .await
            .unwrap();
        // The same with serialization forced on the local path.
        let serialized = Peer::builder(PeerId::from_name("serialized"))
            .serialize_local(true)
            .start()
            .await
            .unwrap();
        let through_wire_format = serialized
            .run(blocks::demo(serialized.id(), serialized.id()))
            .await
            .unwrap();
        // Two peers in one actix system, linked over loopback.
        let server = Peer::builder(PeerId::from_name("same-system-server"))
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap();
        let client = Peer::builder(PeerId::from_name("same-system-client"))
            .start()
            .await
            .unwrap();
        client.connect(&server.url().unwrap()).await.unwrap();
        let linked = client
            .run(blocks::demo(server.id(), client.id()))
            .await
            .unwrap();
        (local, through_wire_format, linked)
    });
    assert_eq!(result.0, (vec![42; 43], 44));
    assert_eq!(result.1, result.0);
    assert_eq!(result.2, result.0);
}

#[test]
fn unit_none_and_empty_collections_survive_every_hop() {
    let server = server("empties-server");
    let server_id = server.handle().id();
    let url = url(server.handle());
    let echoed = block_on(async move {
        let client = support::connected(PeerId::from_name("empties-client"), &url).await;
        client.run(blocks::empties(server_id, client.id())).await
    })
    .unwrap();
    assert_eq!(
        echoed,
        blocks::EmptyValues {
            unit: (),
            none: None,
            list: Vec::new(),
            map: Default::default(),
        }
    );
}

#[test]
fn server_calls_into_a_connected_client() {
    let server = server("bidi-server");
    let server_handle = server.handle().clone();
    let url = url(server.handle());
    let seen = block_on(async move {
        let client = support::connected(PeerId::from_name("bidi-client"), &url).await;
        // The accepting side calls a block on the side that connected to it.
        server_handle
            .run(blocks::whereabouts(client.id()))
            .await
            .map(|seen| (seen, client.id()))
    })
    .unwrap();
    let ((ran_on, caller), client_id) = seen;
    assert_eq!(ran_on, client_id);
    assert_eq!(caller, server.handle().id());
}

#[test]
fn panicking_block_fails_that_call_only() {
    let server = server("panic-server");
    let server_id = server.handle().id();
    let url = url(server.handle());
    let (panicked, next) = block_on(async move {
        let client = support::connected(PeerId::from_name("panic-client"), &url).await;
        let panicked = client
            .run(blocks::panics(
                server_id,
                "boom: ünïcode\nsecond line".into(),
            ))
            .await;
        let next = client.run(blocks::increment(server_id, 41)).await;
        (panicked, next)
    });
    match panicked {
        Err(RemoteError::Panicked {
            message,
            block,
            peer,
        }) => {
            assert_eq!(message, "boom: ünïcode\nsecond line");
            assert!(block.unwrap().starts_with("blocks@"));
            assert_eq!(peer, Some(server_id));
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(next, Ok(42));
}

#[test]
fn call_to_an_unknown_peer_fails_not_connected_in_bounded_time() {
    let nobody = PeerId::from_name("nobody");
    let (result, elapsed) = block_on(async move {
        let lonely = Peer::builder(PeerId::from_name("lonely"))
            .start()
            .await
            .unwrap();
        let started = Instant::now();
        let result = lonely
            .run(async move {
                remote!(nobody, [] -> u8 { 1 })
                    .timeout(Duration::from_millis(300))
                    .await
            })
            .await;
        (result, started.elapsed())
    });
    assert!(
        matches!(result, Err(RemoteError::NotConnected { peer, .. }) if peer == nobody),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn call_outside_any_peer_is_an_error() {
    let result = block_on(async { remote!(PeerId::from_name("x"), [] -> u8 { 1 }).await });
    assert!(
        matches!(result, Err(RemoteError::NoCurrentPeer { .. })),
        "{result:?}"
    );
}

/// Signals that the block of `calls_pending_on_a_closing_link_fail_connection_lost` runs.
static STARTED: std::sync::Mutex<Option<futures_channel::oneshot::Sender<()>>> =
    std::sync::Mutex::new(None);

#[test]
fn calls_pending_on_a_closing_link_fail_connection_lost() {
    let server = server("lost-server");
    let server_id = server.handle().id();
    let url = url(server.handle());
    let result = block_on(async move {
        let client = support::connected(PeerId::from_name("lost-client"), &url).await;
        let (running, started) = futures_channel::oneshot::channel::<()>();
        *STARTED.lock().unwrap() = Some(running);
        let pending = client.spawn(async move {
            remote!(server_id, [] -> u8 {
                if let Some(running) = STARTED.lock().unwrap().take() {
                    let _ = running.send(());
                }
                std::future::pending::<()>().await;
                1
            })
            .await
        });
        // Once the call runs on the server, the server closes the link under it.
        started.await.unwrap();
        server.handle().disconnect(client.id());
        let result = pending.await.unwrap();
        drop(server);
        result
    });
    assert!(
        matches!(result, Err(RemoteError::ConnectionLost { peer, .. }) if peer == server_id),
        "{result:?}"
    );
}

#[test]
fn hops_run_against_a_peer_in_another_process() {
    let process = PeerProcess::start("process-server");
    let server_id = process.id;
    let url = process.url.clone();
    let (demo, chain_back, added) = block_on(async move {
        let client_id = PeerId::from_name("process-client");
        let client = Peer::builder(client_id).start().await.unwrap();
        assert_eq!(client.connect(&url).await.unwrap(), server_id);
        let demo = client.run(blocks::demo(server_id, client_id)).await;
        let chain_back = client.run(blocks::whereabouts(server_id)).await;
        let added = client
            .addr()
            .send(distributed_scope::On::new(
                server_id,
                blocks::Add { x: 2, y: 3 },
            ))
            .await
            .unwrap();
        (demo, chain_back, added)
    });
    assert_eq!(demo, Ok((vec![42; 43], 44)));
    assert_eq!(
        chain_back,
        Ok((server_id, PeerId::from_name("process-client")))
    );
    assert_eq!(added, Ok(5));
    drop(process);
}

#[test]
fn remote_block_messages_travel_by_actor_send_and_by_on() {
    let server = server("named-server");
    let server_id = server.handle().id();
    let url = url(server.handle());
    let (sent, awaited, named) = block_on(async move {
        let client = support::connected(PeerId::from_name("named-client"), &url).await;
        // The actor-message flavour: a user's actor would hold `client.addr()`.
        let sent = client
            .addr()
            .send(distributed_scope::On::new(
                server_id,
                blocks::Add { x: 40, y: 2 },
            ))
            .await
            .expect("the peer actor answers");
        // The future flavour.
        let awaited = client.run(blocks::Add { x: 1, y: 2 }.on(server_id)).await;
        let named = distributed_scope::blocks()
            .into_iter()
            .find(|block| block.name() == "blocks::add")
            .map(|block| (block.captures(), block.output()));
        (sent, awaited, named)
    });
    assert_eq!(sent, Ok(42));
    assert_eq!(awaited, Ok(3));
    assert_eq!(named, Some(("x: u32, y: u32", "u32")));
}

#[test]
fn invalid_options_fail_at_start() {
    let (huge, tiny) = block_on(async {
        let huge = Peer::builder(PeerId::random())
            .max_message_size(distributed_scope::MAX_MESSAGE_SIZE_CEILING + 1)
            .start()
            .await;
        let tiny = Peer::builder(PeerId::random())
            .max_message_size(100)
            .start()
            .await;
        (huge.map(|_| ()), tiny.map(|_| ()))
    });
    assert!(
        matches!(huge, Err(distributed_scope::Error::Config(_))),
        "{huge:?}"
    );
    assert!(
        matches!(tiny, Err(distributed_scope::Error::Config(_))),
        "{tiny:?}"
    );
}

#[test]
fn a_peer_refusing_other_app_versions_refuses_the_link() {
    use futures_util::StreamExt;
    let server = distributed_scope::testing::PeerThread::start(
        Peer::builder(PeerId::from_name("version-server"))
            .listen("127.0.0.1:0")
            .app_version("2.0")
            .refuse_app_version_mismatch(true),
    )
    .unwrap();
    let handle = server.handle().clone();
    let url = url(server.handle());
    block_on(async move {
        let mut events = handle.events();
        let old = Peer::builder(PeerId::from_name("old-client"))
            .app_version("1.9")
            .start()
            .await
            .unwrap();
        let refused = old.connect(&url).await;
        assert!(
            matches!(refused, Err(distributed_scope::Error::Handshake { .. })),
            "{refused:?}"
        );
        match events.next().await {
            Some(distributed_scope::PeerEvent::Refused { reason, .. }) => {
                assert!(reason.contains("1.9"), "{reason}");
            }
            other => panic!("expected a refusal event, got {other:?}"),
        }
        assert!(handle.connected_peers().is_empty());
        assert!(old.connected_peers().is_empty());
        // The same version gets in.
        let current = Peer::builder(PeerId::from_name("current-client"))
            .app_version("2.0")
            .start()
            .await
            .unwrap();
        current.connect(&url).await.unwrap();
        assert_eq!(
            handle.connected_peers()[0].app_version.as_deref(),
            Some("2.0")
        );
    });
}
