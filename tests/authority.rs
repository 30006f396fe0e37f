//! Authority that travels, over real loopback sockets: in A -> B -> C the hop on C sees the
//! principal that started the chain (`Scope::origin`, from a grant B signed when it admitted
//! the root call) beside its link's (`Scope::principal`, B's); C's origin policy can refuse
//! the chain's root principal; a block can narrow the authority its hops carry; a forged or
//! replayed grant is refused.

mod support;

use std::net::SocketAddr;

use distributed_scope::auth::{JwtAuth, Policy};
use distributed_scope::testing::PeerThread;
use distributed_scope::{BlockInfo, Peer, PeerHandle, PeerId, RemoteError, Scope, remote};
use support::attack::{Dial, Frame, RawLink, encode};
use support::{HOUR, block_on, issuer, url};

type Seen = (Option<String>, Option<String>);

/// A root call on `b` that hops to `c` and returns what the hop saw there: its origin's
/// subject and its link principal's subject.
async fn relay(b: PeerId, c: PeerId) -> Result<Seen, RemoteError> {
    remote!(b, [c: PeerId] -> Result<Seen, RemoteError> {
        remote!(c, [] -> Seen {
            let here = Scope::current();
            (
                here.origin().map(|origin| origin.subject().to_owned()),
                here.principal().map(|principal| principal.subject().to_owned()),
            )
        })
        .await
    })
    .await
}

/// A root call on `b` that narrows its authority to `globs`, then hops to `c`.
async fn narrowed(b: PeerId, c: PeerId, globs: Vec<String>) -> Result<u32, RemoteError> {
    remote!(b, [c: PeerId, globs: Vec<String>] -> Result<u32, RemoteError> {
        Scope::current().narrow(globs);
        remote!(c, [] -> u32 { 7 }).await
    })
    .await
}

/// A root call on `b` that narrows its authority to the peers `peers`, then hops to `c`.
async fn narrowed_to_peers(b: PeerId, c: PeerId, peers: Vec<PeerId>) -> Result<u32, RemoteError> {
    remote!(b, [c: PeerId, peers: Vec<PeerId>] -> Result<u32, RemoteError> {
        Scope::current().narrow_peers(peers);
        remote!(c, [] -> u32 { 8 }).await
    })
    .await
}

/// A root call on `b` that narrows its authority's deadline to `within_ms`, then hops to
/// `c`, which answers how many milliseconds it has left.
async fn narrowed_in_time(b: PeerId, c: PeerId, within_ms: u64) -> Result<u64, RemoteError> {
    remote!(b, [c: PeerId, within_ms: u64] -> Result<u64, RemoteError> {
        Scope::current().narrow_deadline(std::time::Duration::from_millis(within_ms));
        remote!(c, [] -> u64 {
            Scope::current()
                .remaining()
                .map_or(u64::MAX, |left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
        })
        .await
    })
    .await
}

/// B: admits root calls of `guest` and `admin`, signs their grants, links to the C peers
/// as `b`.
fn peer_b() -> PeerThread {
    PeerThread::start(
        Peer::builder(PeerId::from_name("b"))
            .listen("127.0.0.1:0")
            .auth(
                issuer(),
                Policy::deny_all()
                    .allow_subject("guest", "authority@*")
                    .allow_subject("admin", "*"),
            )
            .identity(issuer(), "b", ["relay"]),
    )
    .expect("b starts")
}

/// A C peer that lets `b` run anything, with `origin_policy` if given.
fn peer_c(name: &str, origin_policy: Option<Policy>) -> PeerThread {
    let mut builder = Peer::builder(PeerId::from_name(name))
        .listen("127.0.0.1:0")
        .auth(issuer(), Policy::deny_all().allow_subject("b", "*"));
    if let Some(policy) = origin_policy {
        builder = builder.origin_policy(policy);
    }
    PeerThread::start(builder).expect("c starts")
}

/// A, linked to B with a token for `subject`.
async fn peer_a(subject: &str, b_url: &str) -> PeerHandle {
    let a = Peer::builder(PeerId::random()).start().await.unwrap();
    let token = issuer().issue(subject, &[], HOUR).unwrap();
    a.connect_with_token(b_url, &token).await.unwrap();
    a
}

/// Whether `result` is a refusal mentioning `why`, here or in the hop it came from.
fn forbidden(result: &Result<impl std::fmt::Debug, RemoteError>, why: &str) -> bool {
    fn refused(error: &RemoteError, why: &str) -> bool {
        match error {
            RemoteError::Forbidden { subject, .. } => subject.contains(why),
            RemoteError::Failed { source, .. } => refused(source, why),
            _ => false,
        }
    }
    result
        .as_ref()
        .err()
        .is_some_and(|error| refused(error, why))
}

#[test]
fn the_root_principal_travels_and_origin_policies_and_narrowing_apply() {
    let b = peer_b();
    let c = peer_c("c", None);
    let strict = peer_c(
        "c-strict",
        Some(Policy::deny_all().allow_subject("admin", "*")),
    );
    let b_url = url(b.handle());
    let (b_id, c_id, strict_id) = (b.handle().id(), c.handle().id(), strict.handle().id());
    let b_handle = b.handle().clone();
    let (c_url, strict_url) = (url(c.handle()), url(strict.handle()));
    block_on(async move {
        let b_token = issuer().issue("b", &[], HOUR).unwrap();
        b_handle.connect_with_token(&c_url, &b_token).await.unwrap();
        b_handle
            .connect_with_token(&strict_url, &b_token)
            .await
            .unwrap();
        let guest = peer_a("guest", &b_url).await;
        let admin = peer_a("admin", &b_url).await;

        // C sees who started the chain, and its link's principal.
        let seen = guest.run(relay(b_id, c_id)).await;
        assert_eq!(seen, Ok((Some("guest".to_owned()), Some("b".to_owned()))));

        // C's origin policy refuses a chain a guest started, whoever relays it.
        let refused = guest.run(relay(b_id, strict_id)).await;
        assert!(forbidden(&refused, "guest"), "{refused:?}");
        let seen = admin.run(relay(b_id, strict_id)).await;
        assert_eq!(seen, Ok((Some("admin".to_owned()), Some("b".to_owned()))));

        // A narrowed authority refuses a block outside it, and allows one inside.
        let outside = admin
            .run(narrowed(b_id, c_id, vec!["other::*".to_owned()]))
            .await;
        assert!(forbidden(&outside, "narrowed"), "{outside:?}");
        let inside = admin
            .run(narrowed(b_id, c_id, vec!["authority@*".to_owned()]))
            .await;
        assert_eq!(inside, Ok(7));
        // So does one narrowed to named peers.
        let elsewhere = admin
            .run(narrowed_to_peers(b_id, c_id, vec![strict_id]))
            .await;
        assert!(forbidden(&elsewhere, "narrowed"), "{elsewhere:?}");
        let here = admin.run(narrowed_to_peers(b_id, c_id, vec![c_id])).await;
        assert_eq!(here, Ok(8));
        // And one narrowed in time: the hop's deadline ends there, not at the call's 30 s.
        let left = admin.run(narrowed_in_time(b_id, c_id, 2_000)).await;
        assert!(matches!(left, Ok(ms) if ms <= 2_000), "{left:?}");
        let left = admin.run(narrowed_in_time(b_id, c_id, 60_000)).await;
        assert!(matches!(left, Ok(ms) if ms > 10_000), "{left:?}");
    });
}

/// The blocks of this file: (entry point of `relay`, its nested block, entry point of
/// `narrowed`).
fn blocks() -> (BlockInfo, BlockInfo, BlockInfo) {
    let ours: Vec<BlockInfo> = distributed_scope::blocks()
        .into_iter()
        .filter(|block| block.name().starts_with("authority@"))
        .collect();
    let nested = *ours
        .iter()
        .find(|block| !block.is_entry_point() && block.output() == "Seen")
        .expect("relay's hop is registered");
    let relay = *ours
        .iter()
        .find(|block| block.id() == nested.entry_point())
        .expect("relay's entry point is registered");
    let other = *ours
        .iter()
        .find(|block| block.is_entry_point() && block.id() != relay.id())
        .expect("another entry point");
    (relay, nested, other)
}

/// Calls `block` (no captures) on `server` over a raw link authenticated as `b`, carrying
/// `root` and `grant` (none if empty).
async fn raw_hop(
    server: SocketAddr,
    block: &BlockInfo,
    root: u64,
    grant: &str,
) -> Result<Vec<u8>, RemoteError> {
    let bearer = format!("Bearer {}", issuer().issue("b", &[], HOUR).unwrap());
    let dial = Dial {
        headers: &[("Authorization", &bearer)],
        ..Dial::default()
    };
    let mut link = RawLink::open_with(server, dial).await.expect("links");
    link.writer.hello(PeerId::random()).await.unwrap();
    let call = Frame::Call {
        id: 1,
        block: block.id(),
        name: block.name().to_owned(),
        deadline_ms: 10_000,
        metadata: [
            ("ds-root", format!("{root:016x}")),
            ("ds-grant", grant.to_owned()),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| (key.to_owned(), value))
        .collect(),
        captures: encode(&()),
    };
    link.writer.frame(&call).await.unwrap();
    let (_, result) = link.reader.reply().await.expect("a reply");
    result
}

#[test]
fn forged_and_replayed_grants_are_refused() {
    let c = peer_c(
        "c-raw",
        Some(Policy::deny_all().allow_subject("admin", "*")),
    );
    let addr = c.handle().local_addr().unwrap();
    let (relay, nested, other) = blocks();
    let root = |block: &BlockInfo| format!("{:016x}", block.id());
    block_on(async move {
        // No grant: nothing proves that the root call was admitted anywhere.
        let result = raw_hop(addr, &nested, relay.id(), "").await;
        assert!(forbidden(&result, "without a grant"), "{result:?}");
        // Signed by a key C does not trust.
        let forger = JwtAuth::hs256(b"a forger's secret of at least 32 bytes")
            .with_issuer("tests")
            .with_audience("scope");
        let forged = forger
            .issue_grant("admin", &[], &root(&relay), None, &[], HOUR)
            .unwrap();
        let result = raw_hop(addr, &nested, relay.id(), &forged).await;
        assert!(forbidden(&result, "invalid grant"), "{result:?}");
        // A real grant of another root call, replayed on this one.
        let replayed = issuer()
            .issue_grant("admin", &[], &root(&other), None, &[], HOUR)
            .unwrap();
        let result = raw_hop(addr, &nested, relay.id(), &replayed).await;
        assert!(forbidden(&result, "another root"), "{result:?}");
        // A plain token is no grant.
        let token = issuer().issue("admin", &[], HOUR).unwrap();
        let result = raw_hop(addr, &nested, relay.id(), &token).await;
        assert!(forbidden(&result, "no grant"), "{result:?}");
        // The grant of this very root, signed by a trusted key, is accepted.
        let grant = issuer()
            .issue_grant("admin", &[], &root(&relay), None, &[], HOUR)
            .unwrap();
        let result = raw_hop(addr, &nested, relay.id(), &grant).await;
        assert!(result.is_ok(), "{result:?}");
    });
}

#[test]
fn grants_and_proofs_are_no_link_credentials() {
    // A peer on a chain receives grants (and, connecting, proofs): it must not be able to
    // link elsewhere as the principal they name.
    let c = peer_c("c-credentials", None);
    let url = url(c.handle());
    let grant = issuer()
        .issue_grant("admin", &[], "00000000000000aa", None, &[], HOUR)
        .unwrap();
    let proof = issuer()
        .issue_proof("admin", &[], &[], "00ff", HOUR)
        .unwrap();
    block_on(async move {
        for token in [grant, proof] {
            let stolen = Peer::builder(PeerId::random()).start().await.unwrap();
            match stolen.connect_with_token(&url, &token).await {
                Err(distributed_scope::Error::Connect { status, .. }) => {
                    assert_eq!(status, Some(401));
                }
                other => panic!("expected 401, got {other:?}"),
            }
        }
    });
}
