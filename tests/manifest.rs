//! Knowing before you call: each side of a link announces its blocks in the handshake; a
//! peer lists the other's (`remote_blocks`), warns at link-up about blocks the other lacks,
//! and names the nearest block the other has when a call finds its block missing.
//!
//! The server is the `peer` example as its own process, built from the shared blocks crate
//! only; this test binary has blocks of its own besides, which that process lacks.

mod support;

use std::time::Duration;

use distributed_scope::{Peer, PeerId, RemoteError, remote};
use support::log::Log;
use support::{PeerProcess, block_on};

/// A block only this test binary has.
async fn only_here(target: PeerId) -> Result<u32, RemoteError> {
    remote!(target, [] -> u32 { 7 }).await
}

#[test]
fn peers_announce_their_blocks_and_name_what_the_other_lacks() {
    let server = PeerProcess::start("manifest-server");
    let (server_id, url) = (server.id, server.url.clone());
    let log = Log::default();
    let subscriber = log.subscriber(tracing::Level::WARN);
    // The link and the calls run on this thread's actix system.
    tracing::subscriber::with_default(subscriber, || {
        block_on(async move {
            let client = Peer::builder(PeerId::random()).start().await.unwrap();
            client.connect(&url).await.unwrap();
            // The server's blocks, as its handshake announced them.
            let blocks = client
                .remote_blocks(server_id)
                .expect("a live link has the remote's blocks");
            let add = blocks
                .iter()
                .find(|block| block.name() == "blocks::add")
                .expect("the server has blocks::add");
            assert_eq!(add.captures(), "x: u32, y: u32");
            assert_eq!(add.output(), "u32");
            assert!(
                blocks
                    .iter()
                    .all(|block| !block.name().starts_with("manifest@")),
                "the server does not have this binary's own blocks"
            );
            assert!(client.remote_blocks(PeerId::random()).is_none());
            // Calling a block the server lacks: UnknownBlock, and the log names the nearest.
            let missing = client.run(only_here(server_id)).await;
            assert!(
                matches!(missing, Err(RemoteError::UnknownBlock { .. })),
                "{missing:?}"
            );
            // The block the server has still answers.
            let sum = tokio::time::timeout(
                Duration::from_secs(10),
                client.run(blocks::Add { x: 1, y: 2 }.on(server_id)),
            )
            .await
            .expect("bounded");
            assert_eq!(sum, Ok(3));
        });
    });
    let text = log.text();
    let line = |needle: &str| {
        text.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_owned()
    };
    // At link-up: this side has blocks the server lacks (this binary's own).
    let lacking = line("lacks blocks this peer has");
    assert!(lacking.contains(" WARN "), "{lacking}");
    assert!(lacking.contains("manifest@"), "{lacking}");
    // After the failed call: the server's nearest block is named (none in this module).
    let nearest = line("does not have this block");
    assert!(nearest.contains("block=\"manifest@"), "{nearest}");
    assert!(nearest.contains("nearest="), "{nearest}");
    drop(server);
}
