//! Mutual identity over real loopback sockets: a peer that connects with
//! `connect_to(url, Expected)` links only to the peer it requires, proven in the handshake
//! with a token bound to the link; an impostor (wrong id, wrong subject, no proof, a proof
//! signed by another key) is refused before any call runs.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use distributed_scope::auth::{JwtAuth, Policy};
use distributed_scope::testing::PeerThread;
use distributed_scope::{
    Error, Expected, HandshakeError, Peer, PeerBuilder, PeerHandle, PeerId, RemoteError, remote,
};
use support::{HOUR, block_on, issuer, url};

/// Runs of the client's block, from anyone.
static CLIENT_RUNS: AtomicU32 = AtomicU32::new(0);

fn listening(id: PeerId) -> PeerBuilder {
    Peer::builder(id)
        .listen("127.0.0.1:0")
        .auth(issuer(), Policy::deny_all().allow_subject("client", "*"))
}

/// Links `client` to `url` requiring `expected`, and lets the server try to run a block on
/// the client at once.
async fn link(client: &PeerHandle, url: &str, expected: Expected) -> Result<PeerId, Error> {
    let token = issuer().issue("client", &[], HOUR).unwrap();
    client.connect_to(url, expected.token(token)).await
}

fn mismatch(result: Result<PeerId, Error>) -> String {
    match result {
        Err(Error::Handshake {
            reason: HandshakeError::IdentityMismatch(reason),
            ..
        }) => reason,
        other => panic!("expected an identity mismatch, got {other:?}"),
    }
}

/// The server calls a block on `client` that counts its runs.
async fn call_client(server: &PeerHandle, client: PeerId) -> Result<u32, RemoteError> {
    server
        .run(async move {
            remote!(client, [] -> u32 { CLIENT_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 })
                .timeout(Duration::from_millis(500))
                .await
        })
        .await
}

#[test]
fn connect_to_links_only_to_the_peer_it_requires() {
    let payments = PeerId::from_name("payments");
    let real =
        PeerThread::start(listening(payments).identity(issuer(), "payments", ["service"])).unwrap();
    // Impostors claiming payments' id: a proof for another subject, no proof at all, a
    // proof signed with a key the client does not trust.
    let guest =
        PeerThread::start(listening(payments).identity(issuer(), "guest", ["service"])).unwrap();
    let silent = PeerThread::start(listening(payments)).unwrap();
    let forger_key = JwtAuth::hs256(b"a forger's secret of at least 32 bytes")
        .with_issuer("tests")
        .with_audience("scope");
    let forger =
        PeerThread::start(listening(payments).identity(forger_key, "payments", ["service"]))
            .unwrap();
    let (real_url, guest_url, silent_url, forger_url) = (
        url(real.handle()),
        url(guest.handle()),
        url(silent.handle()),
        url(forger.handle()),
    );
    let impostors = [
        guest.handle().clone(),
        silent.handle().clone(),
        forger.handle().clone(),
    ];
    let real_handle = real.handle().clone();
    block_on(async move {
        let client_id = PeerId::from_name("client");
        // The client's policy decides what the peer it reaches may run on it, by the
        // principal that peer proved.
        let client = Peer::builder(client_id)
            .auth(
                issuer(),
                Policy::deny_all().allow_subject("payments", "mutual@*"),
            )
            .start()
            .await
            .unwrap();
        let expected = || Expected::peer(payments).subject("payments");
        let reason = mismatch(link(&client, &guest_url, expected()).await);
        assert!(reason.contains("does not bind"), "{reason}");
        let reason = mismatch(link(&client, &silent_url, expected()).await);
        assert!(reason.contains("no identity"), "{reason}");
        let reason = mismatch(link(&client, &forger_url, expected()).await);
        assert!(reason.contains("invalid proof"), "{reason}");
        // The client holds no link to any of them, so none runs anything on the client (an
        // impostor may still see its side of the link for the moment the close takes).
        assert!(client.connected_peers().is_empty());
        for impostor in &impostors {
            let refused = call_client(impostor, client_id).await;
            assert!(
                matches!(
                    refused,
                    Err(RemoteError::NotConnected { .. } | RemoteError::ConnectionLost { .. })
                ),
                "{refused:?}"
            );
        }
        assert_eq!(CLIENT_RUNS.load(Ordering::SeqCst), 0);

        // The real payments peer proves itself; asking it for another subject or role fails.
        let reason = mismatch(
            link(
                &client,
                &real_url,
                Expected::peer(payments).subject("billing"),
            )
            .await,
        );
        assert!(reason.contains("billing"), "{reason}");
        let reason = mismatch(link(&client, &real_url, Expected::any_peer().role("admin")).await);
        assert!(reason.contains("admin"), "{reason}");
        let expected = Expected::peer(payments).subject("payments").role("service");
        assert_eq!(link(&client, &real_url, expected).await.unwrap(), payments);
        let links = client.connected_peers();
        assert_eq!(
            links[0]
                .principal
                .as_ref()
                .map(|principal| principal.subject().to_owned()),
            Some("payments".to_owned())
        );
        assert_eq!(call_client(&real_handle, client_id).await, Ok(1));

        // A peer with auth that links without requiring an identity learns no principal: the
        // peer it reached may not run its entry points.
        let unproven_id = PeerId::from_name("unproven-client");
        let unproven = Peer::builder(unproven_id)
            .auth(issuer(), Policy::deny_all().allow_subject("payments", "*"))
            .start()
            .await
            .unwrap();
        let token = issuer()
            .issue_with_peers("client", &[], &["unproven-client"], HOUR)
            .unwrap();
        unproven
            .connect_with_token(&real_url, &token)
            .await
            .unwrap();
        let refused = call_client(&real_handle, unproven_id).await;
        assert!(
            matches!(refused, Err(RemoteError::Unauthenticated { .. })),
            "{refused:?}"
        );
        assert_eq!(CLIENT_RUNS.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn connect_to_needs_auth_to_verify_with() {
    block_on(async {
        let client = Peer::builder(PeerId::random()).start().await.unwrap();
        let result = client
            .connect_to("ws://127.0.0.1:1/", Expected::any_peer())
            .await;
        assert!(matches!(result, Err(Error::Config(_))), "{result:?}");
    });
}
