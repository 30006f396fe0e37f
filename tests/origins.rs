//! The `Origin` check at the upgrade, over real loopback sockets: a web page the peer does
//! not list cannot open a link, with or without auth; native peers send no `Origin`.

#[path = "support/app.rs"]
mod app;
mod support;

use app::AppServer;

use distributed_scope::testing::PeerThread;
use distributed_scope::{Peer, PeerId};
use support::{HOUR, block_on, issuer, url};

/// Upgrades to `url` as a browser page at `origin` would (no `Origin` for `None`) and
/// returns the HTTP status and whether the response switched protocols.
async fn upgrade(url: &str, origin: Option<&str>, protocols: Vec<String>) -> (u16, bool) {
    let mut request = awc::Client::new().ws(url).protocols(protocols);
    if let Some(origin) = origin {
        request = request.origin(origin);
    }
    match request.connect().await {
        Ok((response, _framed)) => (response.status().as_u16(), true),
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => (status.as_u16(), false),
        Err(error) => panic!("unexpected upgrade error: {error}"),
    }
}

#[test]
fn a_foreign_origin_is_refused_with_403_before_any_socket_exists() {
    // No auth and no allowlist: any page could otherwise drive this peer.
    let server =
        PeerThread::start(Peer::builder(PeerId::from_name("origins-open")).listen("127.0.0.1:0"))
            .unwrap();
    let url = url(server.handle());
    let handle = server.handle().clone();
    block_on(async move {
        assert_eq!(
            upgrade(&url, Some("https://evil.example"), Vec::new()).await,
            (403, false)
        );
        assert_eq!(upgrade(&url, Some("null"), Vec::new()).await, (403, false));
        assert!(handle.connected_peers().is_empty());
        assert_eq!(handle.metrics().bytes_received, 0, "no link was begun");
        // A native client sends no Origin and links as before.
        let client = Peer::builder(PeerId::random()).start().await.unwrap();
        assert_eq!(client.connect(&url).await.unwrap(), handle.id());
    });
}

#[test]
fn listed_origins_pass_and_the_token_is_still_required() {
    let server = PeerThread::start(
        Peer::builder(PeerId::from_name("origins-auth"))
            .listen("127.0.0.1:0")
            .auth(
                issuer(),
                distributed_scope::auth::Policy::deny_all().allow_subject("reader", "*"),
            )
            .allow_origin("https://app.example")
            .allow_origin("http://127.0.0.1:8080"),
    )
    .unwrap();
    let url = url(server.handle());
    let token = issuer().issue("reader", &["viewer"], HOUR).unwrap();
    block_on(async move {
        let offered = vec!["distributed-scope".to_owned(), format!("bearer.{token}")];
        for origin in ["https://app.example", "http://127.0.0.1:8080"] {
            assert_eq!(
                upgrade(&url, Some(origin), offered.clone()).await,
                (101, true),
                "{origin}"
            );
        }
        // Refused before the token is looked at: a foreign page learns nothing more.
        for origin in [
            "https://evil.example",
            "https://app.example:8443",
            "http://app.example",
        ] {
            assert_eq!(
                upgrade(&url, Some(origin), offered.clone()).await,
                (403, false),
                "{origin}"
            );
        }
        assert_eq!(
            upgrade(
                &url,
                Some("https://app.example"),
                vec!["distributed-scope".to_owned()]
            )
            .await
            .0,
            401
        );
    });
}

#[test]
fn embedded_endpoints_check_origins_too() {
    let server = AppServer::start(
        Peer::builder(PeerId::from_name("origins-embedded")).allow_origin("https://app.example"),
        None,
    );
    let addr = server.addr;
    block_on(async move {
        let url = format!("ws://{addr}/scope");
        assert_eq!(
            upgrade(&url, Some("https://evil.example"), Vec::new()).await,
            (403, false)
        );
        assert_eq!(
            upgrade(&url, Some("https://app.example"), Vec::new()).await,
            (101, true)
        );
    });
}
