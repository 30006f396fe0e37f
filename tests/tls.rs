//! `wss://` links against servers with a self-signed certificate generated here: a peer's
//! own `listen_tls`, and a user's own `HttpServer::bind_rustls_0_23` with the endpoint.

#[path = "support/app.rs"]
mod app;
mod support;

use std::sync::Arc;

use app::AppServer;
use distributed_scope::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use distributed_scope::rustls::{self, ServerConfig};
use distributed_scope::testing::PeerThread;
use distributed_scope::{Error, Peer, PeerId};
use support::block_on;

/// A self-signed certificate for `localhost` and `127.0.0.1`, and a server config using it.
fn self_signed() -> (CertificateDer<'static>, ServerConfig) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (cert, config)
}

#[test]
fn hops_run_over_wss_to_a_listen_tls_peer() {
    let (cert, config) = self_signed();
    let server = PeerThread::start(
        Peer::builder(PeerId::from_name("tls-server")).listen_tls("127.0.0.1:0", config),
    )
    .unwrap();
    let server_id = server.handle().id();
    let url = server.handle().url().unwrap();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    let result = block_on(async move {
        let client_id = PeerId::from_name("tls-client");
        let client = Peer::builder(client_id)
            .tls_roots([cert])
            .start()
            .await
            .unwrap();
        assert_eq!(client.connect(&url).await.unwrap(), server_id);
        client.run(blocks::demo(server_id, client_id)).await
    });
    assert_eq!(result, Ok((vec![42; 43], 44)));
}

#[test]
fn hops_run_over_wss_to_an_endpoint_in_the_users_tls_server() {
    let (cert, config) = self_signed();
    let server = AppServer::start(Peer::builder(PeerId::from_name("tls-app")), Some(config));
    let (server_id, port) = (server.peer.id(), server.addr.port());
    let result = block_on(async move {
        let client_id = PeerId::from_name("tls-app-client");
        let client = Peer::builder(client_id)
            .tls_roots([cert])
            .start()
            .await
            .unwrap();
        // By host name this time: the certificate names `localhost` too.
        let url = format!("wss://localhost:{port}/scope");
        assert_eq!(client.connect(&url).await.unwrap(), server_id);
        client
            .run(blocks::chain(client_id, server_id, client_id))
            .await
    });
    let (a, b) = (PeerId::from_name("tls-app-client"), server_id);
    assert_eq!(result, Ok(vec![a, b, a, a]));
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let (_cert, config) = self_signed();
    let server = PeerThread::start(
        Peer::builder(PeerId::from_name("tls-untrusted")).listen_tls("127.0.0.1:0", config),
    )
    .unwrap();
    let url = server.handle().url().unwrap();
    block_on(async move {
        // Default roots (webpki-roots) do not include a certificate made a moment ago.
        let client = Peer::builder(PeerId::random()).start().await.unwrap();
        match client.connect(&url).await {
            Err(Error::Connect { status: None, .. }) => {}
            other => panic!("expected a refused TLS handshake, got {other:?}"),
        }
        assert!(client.connected_peers().is_empty());
    });
}
