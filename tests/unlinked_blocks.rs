//! A binary that depends on a blocks crate but names none of its items does not link it: the
//! crate's blocks are missing from the registry, and a starting peer says so at WARN.
//!
//! This test binary may use the `blocks` dev-dependency but names nothing of it, and has no
//! block of its own. `tests/linked_blocks.rs` is the same binary with `use blocks as _;`.

use distributed_scope::{Peer, PeerId};
// Only the log writer of the shared harness: the rest names blocks of the blocks crate.
#[path = "support/log.rs"]
#[allow(
    unreachable_pub,
    reason = "shared with the harness, where it is public"
)]
mod log;
use log::Log;

/// Runs `future` in a fresh actix system, bounded by a time limit. (Not the shared test
/// harness: it names items of the `blocks` crate, which would link it into this binary.)
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    distributed_scope::actix::System::new().block_on(async move {
        tokio::time::timeout(std::time::Duration::from_secs(20), future)
            .await
            .expect("the test did not finish within its time limit")
    })
}

#[test]
fn a_peer_of_a_binary_without_blocks_warns_at_start() {
    assert!(
        distributed_scope::blocks().is_empty(),
        "the `blocks` crate is not linked: {:?}",
        distributed_scope::blocks()
    );
    let logs = Log::default();
    let subscriber = logs.subscriber(tracing::Level::WARN);
    tracing::subscriber::with_default(subscriber, || {
        block_on(async {
            let peer = Peer::builder(PeerId::from_name("empty"))
                .start()
                .await
                .expect("peer starts");
            peer.stop().await.expect("the peer stops");
        });
    });
    let logs = logs.text();
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("this binary contains no blocks"), "{logs}");
    assert!(logs.contains("use my_blocks as _;"), "{logs}");
}
