//! Link lifecycle as users see it: `events()` across a server restart on the same port, and
//! `blocks()` listing what this binary can run.

mod support;

use distributed_scope::testing::PeerThread;
use distributed_scope::{Peer, PeerEvent, PeerId, RemoteError, remote, remote_block};
use futures_util::StreamExt;
use support::{LIMIT, block_on, server, url};

#[test]
fn events_report_connected_lost_and_reconnected_in_order() {
    let server_id = PeerId::from_name("life-server");
    let first = PeerThread::start(Peer::builder(server_id).listen("127.0.0.1:0")).unwrap();
    // The port the OS picked, to restart the server on.
    let addr = first.handle().local_addr().unwrap();
    let server_url = first.handle().url().unwrap();
    let url = server_url.clone();
    let seen = block_on(async move {
        let client = support::quick_reconnect(Peer::builder(PeerId::from_name("life-client")))
            .start()
            .await
            .unwrap();
        let mut events = client.events();
        client.connect(&url).await.unwrap();
        let mut seen = vec![events.next().await.unwrap()];

        // The server stops (off this thread, which runs the client's link).
        actix_rt_blocking(move || drop(first)).await;
        seen.push(events.next().await.unwrap());

        // ... and comes back on the same port.
        let second = actix_rt_blocking(move || {
            PeerThread::start(Peer::builder(server_id).listen(addr.to_string())).unwrap()
        })
        .await;
        loop {
            let event = events.next().await.unwrap();
            let done = matches!(event, PeerEvent::Connected { .. });
            seen.push(event);
            if done {
                break;
            }
        }
        client.wait_for(server_id, LIMIT).await.unwrap();
        let hop = client.run(blocks::increment(server_id, 1)).await;
        assert_eq!(hop, Ok(2));
        actix_rt_blocking(move || drop(second)).await;
        seen
    });

    let last = seen.len() - 1;
    assert!(
        matches!(&seen[0], PeerEvent::Connected { peer, outbound: true, address } if *peer == server_id && *address == server_url),
        "{seen:#?}"
    );
    assert!(
        matches!(&seen[1], PeerEvent::Lost { peer, .. } if *peer == server_id),
        "{seen:#?}"
    );
    // At least one attempt, numbered from 1, before the link is back.
    assert!(last >= 3, "{seen:#?}");
    for (at, event) in seen[2..last].iter().enumerate() {
        match event {
            PeerEvent::Reconnecting {
                url: to, attempt, ..
            } => {
                assert_eq!(
                    (to.as_str(), *attempt as usize),
                    (server_url.as_str(), at + 1)
                );
            }
            other => panic!("expected reconnecting, got {other:?} in {seen:#?}"),
        }
    }
    assert!(
        matches!(&seen[last], PeerEvent::Connected { peer, outbound: true, .. } if *peer == server_id),
        "{seen:#?}"
    );
}

/// Runs blocking `work` (stopping or starting a `PeerThread` joins or waits for a thread)
/// off the test's actix thread.
async fn actix_rt_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        let _gone = done.send(work());
    });
    result.await.expect("the blocking work finished")
}

/// `x * 2` on `target`: a block of this test binary.
async fn double(target: PeerId, x: u64) -> Result<u64, RemoteError> {
    remote!(target, [x: u64] -> u64 { x * 2 }).await
}

/// A named block of this test binary.
#[remote_block]
async fn greet(name: String, times: u8) -> String {
    name.repeat(usize::from(times))
}

#[test]
fn blocks_lists_this_binarys_blocks_with_names_and_types() {
    let all = distributed_scope::blocks();
    // Sorted by name, ids distinct.
    assert!(all.windows(2).all(|pair| pair[0].name() <= pair[1].name()));
    let mut ids: Vec<u64> = all.iter().map(|block| block.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len());

    let anonymous: Vec<_> = all
        .iter()
        .filter(|block| block.name().starts_with("lifecycle@"))
        .collect();
    assert_eq!(anonymous.len(), 1, "{all:#?}");
    let double_block = anonymous[0];
    assert_eq!(double_block.captures(), "x: u64");
    assert_eq!(double_block.output(), "u64");
    assert!(double_block.file().ends_with("lifecycle.rs"));
    assert!(double_block.line() > 0);

    let greet_block = all
        .iter()
        .find(|block| block.name() == "lifecycle::greet")
        .unwrap_or_else(|| panic!("no `lifecycle::greet` in {all:#?}"));
    assert_eq!(greet_block.captures(), "name: String, times: u8");
    assert_eq!(greet_block.output(), "String");

    // The blocks of the linked `blocks` crate are there too.
    assert!(all.iter().any(|block| block.name() == "blocks::add"));

    // And they run.
    let result = block_on(async {
        let alone = Peer::builder(PeerId::from_name("life-blocks"))
            .serialize_local(true)
            .start()
            .await
            .unwrap();
        let doubled = alone.run(double(alone.id(), 21)).await;
        let greeted = alone
            .run(
                Greet {
                    name: "hi".into(),
                    times: 2,
                }
                .on(alone.id()),
            )
            .await;
        (doubled, greeted)
    });
    assert_eq!(result, (Ok(42), Ok("hihi".to_owned())));
}

#[test]
fn a_refused_link_tells_the_refused_side_why() {
    let server = server("refusing-server");
    let url = url(server.handle());
    block_on(async move {
        let worker = PeerId::from_name("worker-7");
        let first = support::connected(worker, &url).await;
        // A second process claiming the same worker name: the server refuses it, and the
        // refused side's error carries the server's reason, not just "the link closed".
        let second = Peer::builder(worker).start().await.unwrap();
        let refused = second
            .connect(&url)
            .await
            .expect_err("a duplicate is refused");
        match &refused {
            distributed_scope::Error::Handshake {
                reason: distributed_scope::HandshakeError::Refused(reason),
                ..
            } => assert!(reason.contains("already connected"), "{reason}"),
            other => panic!("expected a refusal with its reason, got {other:?}"),
        }
        assert_eq!(first.connected_peers().len(), 1);
    });
}
