//! The peer endpoint mounted in a user's own actix-web `App`, beside the app's own route:
//! both answer, hops run through the endpoint, and the builder's auth applies to it.

#[path = "support/app.rs"]
mod app;
mod support;

use app::AppServer;
use distributed_scope::auth::Policy;
use distributed_scope::{Error, Peer, PeerId, RemoteError};
use support::{HOUR, block_on, issuer};

#[test]
fn own_route_and_peer_endpoint_share_one_server() {
    let server = AppServer::start(Peer::builder(PeerId::from_name("embedded-open")), None);
    let (server_id, addr) = (server.peer.id(), server.addr);
    let result = block_on(async move {
        let mut health = awc::Client::new()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status().as_u16(), 200);
        assert_eq!(health.body().await.unwrap().as_ref(), b"ok");

        let client_id = PeerId::from_name("embedded-open-client");
        let client = Peer::builder(client_id).start().await.unwrap();
        let url = format!("ws://{addr}/scope");
        assert_eq!(client.connect(&url).await.unwrap(), server_id);
        let links = client.connected_peers();
        assert_eq!((links[0].peer, links[0].outbound), (server_id, true));
        // client -> server -> client -> server, all through the embedded endpoint.
        client.run(blocks::demo(server_id, client_id)).await
    });
    assert_eq!(result, Ok((vec![42; 43], 44)));
}

#[test]
fn builder_auth_applies_to_the_embedded_endpoint() {
    let policy = Policy::deny_all()
        .allow_role("viewer", "blocks::whoami")
        .allow_subject("admin", "*");
    let server = AppServer::start(
        Peer::builder(PeerId::from_name("embedded-auth")).auth(issuer(), policy),
        None,
    );
    let (server_id, addr) = (server.peer.id(), server.addr);
    let reader = issuer().issue("reader", &["viewer"], HOUR).unwrap();
    let admin = issuer().issue("admin", &[], HOUR).unwrap();
    block_on(async move {
        let url = format!("ws://{addr}/scope");
        // The app's own route is not behind the peer's auth.
        let health = awc::Client::new()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status().as_u16(), 200);

        // No token: refused at the upgrade, before any WebSocket exists.
        let anonymous = Peer::builder(PeerId::random()).start().await.unwrap();
        match anonymous.connect(&url).await {
            Err(Error::Connect { status, .. }) => assert_eq!(status, Some(401)),
            other => panic!("expected 401, got {other:?}"),
        }

        // A viewer may run `whoami` (and sees its own principal there), not `admin_reset`.
        let viewer = Peer::builder(PeerId::random()).start().await.unwrap();
        assert_eq!(
            viewer.connect_with_token(&url, &reader).await.unwrap(),
            server_id
        );
        let principal = viewer.run(blocks::Whoami {}.on(server_id)).await.unwrap();
        assert_eq!(
            principal,
            Some(("reader".to_owned(), vec!["viewer".to_owned()]))
        );
        let refused = viewer.run(blocks::AdminReset {}.on(server_id)).await;
        assert!(
            matches!(refused, Err(RemoteError::Forbidden { .. })),
            "{refused:?}"
        );

        // An admin runs anything: the demo hops server -> client -> server.
        let admin_id = PeerId::from_name("admin");
        let admin_peer = Peer::builder(admin_id).start().await.unwrap();
        admin_peer.connect_with_token(&url, &admin).await.unwrap();
        assert_eq!(
            admin_peer.run(blocks::demo(server_id, admin_id)).await,
            Ok((vec![42; 43], 44))
        );
        let inbound = server_principal(&server.peer, admin_id);
        assert_eq!(inbound.as_deref(), Some("admin"));
    });
}

/// The subject the server verified on the link from `peer`.
fn server_principal(server: &distributed_scope::PeerHandle, peer: PeerId) -> Option<String> {
    server
        .connected_peers()
        .into_iter()
        .find(|link| link.peer == peer)
        .and_then(|link| link.principal)
        .map(|principal| principal.subject().to_owned())
}
