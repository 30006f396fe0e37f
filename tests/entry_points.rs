//! Entry points, over real loopback sockets: a block nested in another runs for another peer
//! only as a hop of a scope whose root call was its entry point; called directly, it answers
//! `Forbidden` and does not run. Chains A -> B -> C -> A keep working.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use distributed_scope::testing::PeerThread;
use distributed_scope::{BlockInfo, Peer, PeerId, RemoteError, remote};
use support::attack::{BlockRef, Frame, RawLink, encode};
use support::{block_on, url};

/// Runs of the nested block of `checked_hop`, on any peer of this process.
static INNER_RUNS: AtomicU32 = AtomicU32::new(0);
/// Runs of the nested block of `guarded`.
static GUARDED_RUNS: AtomicU32 = AtomicU32::new(0);

/// An entry point that hops to `client` only when asked to (never, in these tests): its
/// nested block can only be reached by a direct call.
async fn guarded(server: PeerId, client: PeerId, hop: bool) -> Result<u32, RemoteError> {
    remote!(server, [client: PeerId, hop: bool] -> Result<u32, RemoteError> {
        if hop {
            return remote!(client, [] -> u32 {
                GUARDED_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
            })
            .await;
        }
        Ok(0)
    })
    .await
}

/// An entry point whose nested hop back to `client` counts its runs; the outer block checks
/// `a` before it hops, which a direct call of the inner block would skip.
async fn checked_hop(server: PeerId, client: PeerId, a: u32) -> Result<u32, RemoteError> {
    remote!(server, [client: PeerId, a: u32] -> Result<u32, RemoteError> {
        if a > 10 {
            return Ok(0);
        }
        remote!(client, [a: u32] -> u32 {
            INNER_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            a * 100
        })
        .await
    })
    .await
}

/// The blocks of `guarded`: (entry point, nested block).
fn blocks_of_guarded() -> (BlockInfo, BlockInfo) {
    let ours: Vec<BlockInfo> = distributed_scope::blocks()
        .into_iter()
        .filter(|block| block.name().starts_with("entry_points@"))
        .collect();
    let inner = *ours
        .iter()
        .find(|block| {
            !block.is_entry_point() && block.output() == "u32" && block.captures().is_empty()
        })
        .expect("the nested block is registered");
    let outer = *ours
        .iter()
        .find(|block| block.id() == inner.entry_point())
        .expect("its entry point is registered");
    assert!(outer.is_entry_point());
    (outer, inner)
}

fn addr(peer: &PeerThread) -> SocketAddr {
    peer.handle().local_addr().expect("listens")
}

/// Calls `block` with `captures` over a raw link to `server`, with `metadata`.
async fn raw_call(
    server: SocketAddr,
    block: &BlockInfo,
    captures: Vec<u8>,
    metadata: Vec<(String, String)>,
) -> Result<Vec<u8>, RemoteError> {
    let mut link = RawLink::open(server).await.expect("links");
    link.writer.hello(PeerId::random()).await.unwrap();
    let block = BlockRef {
        id: block.id(),
        name: block.name().to_owned(),
    };
    let call = Frame::Call {
        id: 1,
        block: block.id,
        name: block.name,
        deadline_ms: 10_000,
        metadata,
        captures,
    };
    link.writer.frame(&call).await.unwrap();
    let (id, result) = link.reader.reply().await.expect("a reply");
    assert_eq!(id, 1);
    result
}

#[test]
fn a_nested_block_called_directly_is_forbidden_and_does_not_run() {
    let server = support::server("entry-server");
    let addr = addr(&server);
    let (outer, inner) = blocks_of_guarded();
    block_on(async move {
        let captures = encode(&());
        // No scope at all, and the scope of another entry point: refused, not run.
        let direct = raw_call(addr, &inner, captures.clone(), Vec::new()).await;
        assert!(
            matches!(&direct, Err(RemoteError::Forbidden { block, .. }) if *block == inner.name()),
            "{direct:?}"
        );
        let other_root = vec![("ds-root".to_owned(), format!("{:016x}", inner.id()))];
        let forged = raw_call(addr, &inner, captures.clone(), other_root).await;
        assert!(
            matches!(forged, Err(RemoteError::Forbidden { .. })),
            "{forged:?}"
        );
        assert_eq!(GUARDED_RUNS.load(Ordering::SeqCst), 0);
        // The right root lets it run (without auth the root's id is all there is to check).
        let root = vec![("ds-root".to_owned(), format!("{:016x}", outer.id()))];
        let hop = raw_call(addr, &inner, captures, root).await;
        assert_eq!(hop, Ok(encode(&1u32)));
        assert_eq!(GUARDED_RUNS.load(Ordering::SeqCst), 1);
        // The entry point itself may be called directly (no auth: no policy).
        let client = PeerId::random();
        let outer_call = raw_call(addr, &outer, encode(&(client, (false, ()))), Vec::new()).await;
        assert_eq!(outer_call, Ok(encode(&0u32)));
        // (`guarded` itself never hops: its nested block is reachable only directly.)
        let _never_called = guarded;
    });
}

#[test]
fn the_nested_block_runs_as_a_hop_of_its_scope_and_chains_keep_working() {
    let server = support::server("entry-hop-server");
    let b = support::server("entry-chain-b");
    let c = support::server("entry-chain-c");
    let (server_id, server_url) = (server.handle().id(), url(server.handle()));
    let (b_id, c_id, b_url, c_url) = (
        b.handle().id(),
        c.handle().id(),
        url(b.handle()),
        url(c.handle()),
    );
    block_on(async move {
        let client_id = PeerId::from_name("entry-client");
        let client = support::connected(client_id, &server_url).await;
        let before = INNER_RUNS.load(Ordering::SeqCst);
        assert_eq!(
            client.run(checked_hop(server_id, client_id, 3)).await,
            Ok(300)
        );
        assert_eq!(INNER_RUNS.load(Ordering::SeqCst), before + 1);
        // The outer block's check holds: no hop for a > 10.
        assert_eq!(
            client.run(checked_hop(server_id, client_id, 11)).await,
            Ok(0)
        );
        assert_eq!(INNER_RUNS.load(Ordering::SeqCst), before + 1);

        // A root call made locally, serialized as if it were remote, still hops as its
        // entry point's scope.
        let serializing = Peer::builder(PeerId::from_name("entry-serializing"))
            .serialize_local(true)
            .start()
            .await
            .unwrap();
        serializing.connect(&server_url).await.unwrap();
        let me = serializing.id();
        let hopped = serializing.run(checked_hop(me, server_id, 2)).await;
        assert_eq!(hopped, Ok(200));

        // A -> B -> C -> A, each hop a nested block of the chain's entry point.
        let a = Peer::builder(PeerId::from_name("entry-chain-a"))
            .start()
            .await
            .unwrap();
        a.connect(&b_url).await.unwrap();
        a.connect(&c_url).await.unwrap();
        b.handle().connect(&c_url).await.unwrap();
        let path = a.run(blocks::chain(a.id(), b_id, c_id)).await.unwrap();
        assert_eq!(path.first(), Some(&a.id()));
        assert!(path.contains(&b_id) && path.contains(&c_id), "{path:?}");
    });
}
