//! Errors tell the truth, over real loopback sockets between separate actix systems: an `Err`
//! that a block's body returns (its own, or a nested hop's passed on with `?`) reaches the
//! caller as `RemoteError::Failed`. The block ran (`Outcome::Ran`), so trying again would run
//! it again (`!is_retryable()`), and the nested error stays visible as its source, with its
//! kind, peer and block.

mod support;

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use distributed_scope::{
    On, Outcome, Peer, PeerId, RemoteError, distributed, remote, remote_block,
};
use support::{block_on, connected, server, url};

/// How many times the outer block of `nested_not_connected_...` ran.
static OUTER_RUNS: AtomicU64 = AtomicU64::new(0);

/// Retries `call` while its error says that may help, at most `attempts` times: what a
/// caller's retry policy does with `is_retryable()`.
async fn with_retries<T, F, C>(attempts: usize, mut call: C) -> Result<T, RemoteError>
where
    C: FnMut() -> F,
    F: Future<Output = Result<T, RemoteError>>,
{
    let mut result = call().await;
    for _ in 1..attempts {
        match &result {
            Err(error) if error.is_retryable() => result = call().await,
            _ => break,
        }
    }
    result
}

#[test]
fn nested_not_connected_tells_the_caller_the_outer_block_ran() {
    let b = server("errors-b");
    let (idb, urlb) = (b.handle().id(), url(b.handle()));
    let nobody = PeerId::from_name("errors-nobody");
    let result = block_on(async move {
        let a = connected(PeerId::from_name("errors-a"), &urlb).await;
        a.run(with_retries(3, || {
            remote!(idb, [nobody: PeerId] -> Result<u32, RemoteError> {
                OUTER_RUNS.fetch_add(1, Ordering::SeqCst);
                let inner = remote!(nobody, [] -> u32 { 1 })
                    .timeout(Duration::from_millis(200))
                    .await?;
                Ok(inner + 1)
            })
        }))
        .await
    });
    let error = result.expect_err("the nested hop has no link");
    assert_eq!(error.outcome(), Outcome::Ran, "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
    // The side effect happened once: the caller's retry policy did not run the block again.
    assert_eq!(OUTER_RUNS.load(Ordering::SeqCst), 1);
    let outer_block = match &error {
        RemoteError::Failed {
            peer: Some(peer),
            block: Some(block),
            ..
        } if *peer == idb => block.clone(),
        other => panic!("expected the outer block's failure on b, got {other:?}"),
    };
    assert!(outer_block.starts_with("errors@"), "{outer_block}");
    // The nested hop's error: the source, typed in the chain, and in the message.
    let source = error
        .source()
        .and_then(|source| source.downcast_ref::<RemoteError>())
        .expect("the nested error is the source");
    match source {
        RemoteError::NotConnected {
            peer,
            block: Some(block),
        } => {
            assert_eq!(*peer, nobody);
            assert!(block.starts_with("errors@"), "{block}");
            assert_ne!(*block, outer_block);
        }
        other => panic!("expected the nested NotConnected, got {other:?}"),
    }
    assert_eq!(source.outcome(), Outcome::NotRun);
    assert_eq!(error.root_cause(), source);
    assert_eq!(error.chain().count(), 2);
    let text = error.to_string();
    assert!(text.contains(&format!("failed on peer {idb:#}")), "{text}");
    assert!(
        text.contains(&format!("peer {nobody:#} is not connected")),
        "{text}"
    );
}

/// A -> B -> C: C's body returns an application error, B's body returns C's result.
#[distributed]
async fn relay(b: PeerId, c: PeerId) -> Result<u32, RemoteError> {
    remote!(b, [c] -> Result<u32, RemoteError> {
        remote!(c, [] -> Result<u32, RemoteError> {
            Err(RemoteError::Other {
                code: 4001,
                message: "out of stock".into(),
                peer: None,
                block: None,
            })
        })
        .await
    })
    .await
}

#[test]
fn a_three_peer_chain_shows_every_hop() {
    let b = server("errors-chain-b");
    let c = server("errors-chain-c");
    let (idb, idc) = (b.handle().id(), c.handle().id());
    let (urlb, urlc) = (url(b.handle()), url(c.handle()));
    let result = block_on(async move {
        b.handle().connect(&urlc).await.unwrap();
        let a = connected(PeerId::from_name("errors-chain-a"), &urlb).await;
        a.run(relay(idb, idc)).await
    });
    let error = result.expect_err("c's body fails");
    let hops: Vec<(u16, Option<PeerId>, Option<&str>)> = error
        .chain()
        .map(|hop| (hop.code(), hop.peer(), hop.block()))
        .collect();
    assert_eq!(
        hops,
        [
            (16, Some(idb), Some("errors::relay#0")),
            (16, Some(idc), Some("errors::relay#1")),
            (4001, None, None),
        ]
    );
    assert_eq!(
        (error.outcome(), error.is_retryable()),
        (Outcome::Ran, false)
    );
    match error.root_cause() {
        RemoteError::Other { message, .. } => assert_eq!(message, "out of stock"),
        other => panic!("expected c's own error, got {other:?}"),
    }
    // The std chain says the same.
    let mut sources = 0;
    let mut next = error.source();
    while let Some(source) = next {
        sources += 1;
        next = source.source();
    }
    assert_eq!(sources, 2);
}

/// Returns an error that would mean "not run, retry" had the runtime produced it.
#[remote_block]
async fn refuse(reason: String) -> Result<u32, RemoteError> {
    Err(RemoteError::Overloaded {
        peer: None,
        block: Some(reason),
    })
}

/// `error` is `refuse`'s own error on `peer`: ran, not retryable, with the body's error kept.
fn assert_refused(error: &RemoteError, peer: PeerId, how: &str) {
    match error {
        RemoteError::Failed {
            peer: Some(on),
            block: Some(block),
            source,
        } => {
            assert_eq!(*on, peer, "{how}");
            assert_eq!(block, "errors::refuse", "{how}");
            assert!(
                matches!(&**source, RemoteError::Overloaded { block: Some(reason), .. } if reason == how),
                "{how}: {source:?}"
            );
        }
        other => panic!("{how}: expected refuse's own error, got {other:?}"),
    }
    assert_eq!(error.outcome(), Outcome::Ran, "{how}");
    assert!(!error.is_retryable(), "{how}");
}

#[test]
fn a_body_returning_an_error_itself_ran_on_every_path() {
    let b = server("errors-refuse-b");
    let (idb, urlb) = (b.handle().id(), url(b.handle()));
    block_on(async move {
        let a = connected(PeerId::from_name("errors-refuse-a"), &urlb).await;
        let ida = a.id();
        // Over the wire, by name.
        let remote = a
            .run(
                Refuse {
                    reason: "wire".into(),
                }
                .on(idb),
            )
            .await;
        assert_refused(&remote.unwrap_err(), idb, "wire");
        // Through the peer actor's mailbox.
        let sent = async {
            a.addr()
                .send(On::new(
                    idb,
                    Refuse {
                        reason: "actor".into(),
                    },
                ))
                .await?
        };
        assert_refused(&sent.await.unwrap_err(), idb, "actor");
        // An anonymous block.
        let anonymous = a
            .run(async move {
                remote!(idb, [] -> Result<(), RemoteError> {
                    Err(RemoteError::NotConnected { peer: PeerId::from_name("x"), block: None })
                })
                .await
            })
            .await
            .unwrap_err();
        assert_eq!(
            (anonymous.outcome(), anonymous.is_retryable()),
            (Outcome::Ran, false)
        );
        // The local short-circuit, and the same call serialized as if it were remote.
        let local = a
            .run(
                Refuse {
                    reason: "local".into(),
                }
                .on(ida),
            )
            .await;
        assert_refused(&local.unwrap_err(), ida, "local");
        let serialized = Peer::builder(PeerId::from_name("errors-serialized"))
            .serialize_local(true)
            .start()
            .await
            .unwrap();
        let through_wire_format = serialized
            .run(
                Refuse {
                    reason: "serialized".into(),
                }
                .on(serialized.id()),
            )
            .await;
        assert_refused(
            &through_wire_format.unwrap_err(),
            serialized.id(),
            "serialized",
        );
    });
}

#[test]
fn a_stopped_peer_actor_answers_mailbox_with_an_unknown_outcome() {
    let error = block_on(async {
        let peer = Peer::builder(PeerId::from_name("errors-stopped"))
            .start()
            .await
            .unwrap();
        let addr = peer.addr();
        peer.stop().await.unwrap();
        let sent = addr
            .send(On::new(
                peer.id(),
                Refuse {
                    reason: "late".into(),
                },
            ))
            .await;
        sent.map_err(RemoteError::from).and_then(|result| result)
    })
    .unwrap_err();
    assert!(
        matches!(error, RemoteError::Mailbox { ref reason, .. } if reason.contains("closed")),
        "{error:?}"
    );
    assert_eq!(
        (error.outcome(), error.is_retryable()),
        (Outcome::Unknown, false)
    );
}
