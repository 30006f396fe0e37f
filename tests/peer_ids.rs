//! Who may speak as which peer id, over real loopback sockets: on a peer with auth a named id
//! is bound to the link's token (squatters are refused at the handshake, with the reason in
//! their error); without auth ids are self-asserted, first come, as documented.

mod support;

use std::time::Duration;

use distributed_scope::auth::Policy;
use distributed_scope::testing::PeerThread;
use distributed_scope::{Error, HandshakeError, Peer, PeerHandle, PeerId, Scope, remote};
use support::{HOUR, block_on, issuer, url};

/// A server with auth that lets `payments` run anything and `guest` nothing.
fn auth_server(name: &str) -> PeerThread {
    PeerThread::start(
        Peer::builder(PeerId::from_name(name))
            .listen("127.0.0.1:0")
            .auth(issuer(), Policy::deny_all().allow_subject("payments", "*")),
    )
    .expect("server starts")
}

/// A client claiming `id`, telling itself apart with `who` (in its app data).
async fn client(id: PeerId, who: &str) -> PeerHandle {
    Peer::builder(id)
        .data(who.to_owned())
        .start()
        .await
        .expect("client starts")
}

/// Which client the server reaches when it calls `target`: the `who` of its app data.
async fn reached(
    server: &PeerHandle,
    target: PeerId,
) -> Result<String, distributed_scope::RemoteError> {
    server
        .run(async move {
            remote!(target, [] -> String {
                Scope::current().data::<String>().map_or_else(String::new, |who| (*who).clone())
            })
            .timeout(Duration::from_secs(5))
            .await
        })
        .await
}

fn refusal_reason(result: Result<PeerId, Error>) -> String {
    match result {
        Err(Error::Handshake {
            reason: HandshakeError::Refused(reason),
            ..
        }) => reason,
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

#[test]
fn with_auth_a_squatter_is_refused_and_the_real_peer_links_and_serves() {
    let server = auth_server("ids-auth-server");
    let (url, handle) = (url(server.handle()), server.handle().clone());
    let payments = PeerId::from_name("payments");
    let guest_token = issuer().issue("guest", &[], HOUR).unwrap();
    let payments_token = issuer().issue("payments", &[], HOUR).unwrap();
    block_on(async move {
        // The squatter comes first, with a valid token of its own, claiming payments' id.
        let squatter = client(payments, "squatter").await;
        let reason = refusal_reason(squatter.connect_with_token(&url, &guest_token).await);
        assert!(
            reason.contains("token does not allow peer id"),
            "the squatter is told why: {reason}"
        );
        assert!(handle.connected_peers().is_empty());
        // The real payments peer links, and the server's calls for payments reach it.
        let real = client(payments, "payments").await;
        assert_eq!(
            real.connect_with_token(&url, &payments_token)
                .await
                .unwrap(),
            handle.id()
        );
        assert_eq!(reached(&handle, payments).await.unwrap(), "payments");
        // Claiming the id again, now it is linked, is refused as before.
        let reason = refusal_reason(squatter.connect_with_token(&url, &guest_token).await);
        assert!(reason.contains("token does not allow"), "{reason}");
        assert_eq!(reached(&handle, payments).await.unwrap(), "payments");
    });
}

#[test]
fn without_auth_ids_are_self_asserted_first_come() {
    // The documented behaviour without auth: the first link claiming an id has it, and the
    // peer it was meant for is refused as a duplicate while that link lives.
    let server = support::server("ids-open-server");
    let (url, handle) = (url(server.handle()), server.handle().clone());
    let victim = PeerId::from_name("client");
    block_on(async move {
        let squatter = client(victim, "squatter").await;
        squatter.connect(&url).await.unwrap();
        let real = client(victim, "client").await;
        let reason = refusal_reason(real.connect(&url).await);
        assert!(reason.contains("already connected"), "{reason}");
        assert_eq!(reached(&handle, victim).await.unwrap(), "squatter");
        // Once the squatter leaves, the id is free again.
        squatter.disconnect(handle.id());
        let linked = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(id) = real.connect(&url).await {
                    return id;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the real client links once the squatter left");
        assert_eq!(linked, handle.id());
        assert_eq!(reached(&handle, victim).await.unwrap(), "client");
    });
}

#[test]
fn a_token_binds_the_named_ids_it_may_claim() {
    let server = auth_server("ids-binding-server");
    let (url, handle) = (url(server.handle()), server.handle().clone());
    let guest = issuer().issue("guest", &[], HOUR).unwrap();
    let payments = issuer().issue("payments", &[], HOUR).unwrap();
    let ledger = PeerId::from_name("ledger");
    let deployer = issuer()
        .issue_with_peers("deployer", &[], &["billing", &ledger.to_string()], HOUR)
        .unwrap();
    block_on(async move {
        let link = |id: PeerId, token: String| {
            let url = url.clone();
            async move { client(id, "").await.connect_with_token(&url, &token).await }
        };
        // guest cannot be payments, nor a name its token does not list.
        let reason = refusal_reason(link(PeerId::from_name("payments"), guest.clone()).await);
        assert!(reason.contains("token does not allow"), "{reason}");
        refusal_reason(link(PeerId::from_name("billing"), guest.clone()).await);
        // payments can; a token whose `peers` claim lists a name or a UUID can.
        assert_eq!(
            link(PeerId::from_name("payments"), payments.clone())
                .await
                .unwrap(),
            handle.id()
        );
        assert_eq!(
            link(PeerId::from_name("billing"), deployer.clone())
                .await
                .unwrap(),
            handle.id()
        );
        assert_eq!(link(ledger, deployer.clone()).await.unwrap(), handle.id());
        // ... but not one it does not list.
        refusal_reason(link(PeerId::from_name("audit"), deployer).await);
        // Random ids are open to any authenticated link.
        assert_eq!(link(PeerId::random(), guest).await.unwrap(), handle.id());
        assert_eq!(handle.connected_peers().len(), 4);
    });
}
