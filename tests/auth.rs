//! JWT at the upgrade and per-block authorization, over real loopback WebSockets.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use distributed_scope::auth::{JwtAuth, JwtKey, Policy};
use distributed_scope::testing::PeerThread;
use distributed_scope::{Error, Peer, PeerId, RemoteError};
use support::{HOUR, SECRET, block_on, issuer, quick_reconnect, url};

fn policy() -> Policy {
    Policy::deny_all()
        .allow_role("viewer", "blocks::search*")
        .allow_role("viewer", "blocks::whoami")
        .allow_subject("admin", "*")
}

fn auth_server(name: &str, auth: JwtAuth) -> PeerThread {
    PeerThread::start(
        Peer::builder(PeerId::from_name(name))
            .listen("127.0.0.1:0")
            .auth(auth, policy()),
    )
    .expect("server starts")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Connects with `token` and returns the HTTP status of a refused upgrade.
async fn refused_status(url: &str, token: Option<&str>) -> Option<u16> {
    let client = Peer::builder(PeerId::random()).start().await.unwrap();
    let result = match token {
        Some(token) => client.connect_with_token(url, token).await,
        None => client.connect(url).await,
    };
    match result {
        Err(Error::Connect { status, .. }) => status,
        other => panic!("expected a refused upgrade, got {other:?}"),
    }
}

fn b64(json: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

fn rsa_public_pem() -> Vec<u8> {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = AsDer::<PublicKeyX509Der<'_>>::as_der(pair.public_key()).unwrap();
    pem("PUBLIC KEY", der.as_ref())
}

#[test]
fn bad_tokens_are_refused_at_the_upgrade_with_401() {
    let server = auth_server("auth-401", issuer());
    let url = url(server.handle());
    let at = |offset: i64| -> Arc<dyn Fn() -> u64 + Send + Sync> {
        let then = now().saturating_add_signed(offset);
        Arc::new(move || then)
    };
    let claims = format!(
        r#"{{"sub":"reader","roles":["viewer"],"iss":"tests","aud":"scope","exp":{}}}"#,
        now() + 3600
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing token", None),
        ("malformed", Some("not.a.jwt".to_owned())),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&claims)
            )),
        ),
        (
            "wrong secret",
            Some(
                JwtAuth::hs256(b"another secret that is long enough!!")
                    .with_issuer("tests")
                    .with_audience("scope")
                    .issue("reader", &["viewer"], HOUR)
                    .unwrap(),
            ),
        ),
        (
            "expired",
            Some(
                issuer()
                    .with_clock(at(-7200))
                    .issue("reader", &["viewer"], HOUR)
                    .unwrap(),
            ),
        ),
        (
            "not yet valid",
            Some(
                issuer()
                    .with_clock(at(7200))
                    .issue("reader", &["viewer"], HOUR)
                    .unwrap(),
            ),
        ),
        (
            "wrong aud",
            Some(
                JwtAuth::hs256(SECRET)
                    .with_issuer("tests")
                    .with_audience("another-service")
                    .issue("reader", &["viewer"], HOUR)
                    .unwrap(),
            ),
        ),
        (
            "wrong iss",
            Some(
                JwtAuth::hs256(SECRET)
                    .with_issuer("someone-else")
                    .with_audience("scope")
                    .issue("reader", &["viewer"], HOUR)
                    .unwrap(),
            ),
        ),
        (
            "unknown kid",
            Some(
                issuer()
                    .with_key("unknown", JwtKey::hs256(SECRET))
                    .with_signing_kid("unknown")
                    .issue("reader", &["viewer"], HOUR)
                    .unwrap(),
            ),
        ),
    ];
    block_on(async move {
        for (case, token) in &cases {
            let status = refused_status(&url, token.as_deref()).await;
            assert_eq!(status, Some(401), "{case}");
        }
        // No link was ever established, so no call could run.
        assert!(server.handle().connected_peers().is_empty());
        // A good token still gets in.
        let good = issuer().issue("reader", &["viewer"], HOUR).unwrap();
        let client = Peer::builder(PeerId::random()).start().await.unwrap();
        client.connect_with_token(&url, &good).await.unwrap();
    });
}

#[test]
fn rs256_public_key_used_as_hs256_secret_is_refused() {
    let public = rsa_public_pem();
    let server_auth = JwtAuth::rs256_pem(&public).unwrap();
    let server = auth_server("auth-confusion", server_auth);
    let url = url(server.handle());
    // The attacker knows the public key and signs with it as an HMAC secret.
    let forged = JwtAuth::hs256(&public)
        .issue("admin", &["viewer"], HOUR)
        .unwrap();
    block_on(async move {
        assert_eq!(refused_status(&url, Some(&forged)).await, Some(401));
    });
}

#[test]
fn rotated_keys_are_accepted_until_removed() {
    let old_secret = b"the old hs256 secret, 32 bytes or more";
    let configured = issuer().with_key("old", JwtKey::hs256(old_secret));
    let old_token = issuer()
        .with_key("old", JwtKey::hs256(old_secret))
        .with_signing_kid("old")
        .issue("reader", &["viewer"], HOUR)
        .unwrap();
    let new_token = issuer().issue("reader", &["viewer"], HOUR).unwrap();
    let both = auth_server("auth-rotation-both", configured.clone());
    let new_only = auth_server("auth-rotation-new", configured.without_key("old"));
    let (both_url, new_url) = (url(both.handle()), url(new_only.handle()));
    block_on(async move {
        for token in [&old_token, &new_token] {
            let client = Peer::builder(PeerId::random()).start().await.unwrap();
            client.connect_with_token(&both_url, token).await.unwrap();
        }
        let client = Peer::builder(PeerId::random()).start().await.unwrap();
        client
            .connect_with_token(&new_url, &new_token)
            .await
            .unwrap();
        assert_eq!(refused_status(&new_url, Some(&old_token)).await, Some(401));
    });
}

#[test]
fn policy_decides_per_block_and_refused_blocks_never_run() {
    let server = auth_server("auth-policy", issuer());
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let reader = issuer().issue("reader", &["viewer"], HOUR).unwrap();
    let admin = issuer().issue("admin", &[], HOUR).unwrap();
    let nobody = issuer().issue("nobody", &["guest"], HOUR).unwrap();
    block_on(async move {
        let connect = |token: String| {
            let url = url.clone();
            async move {
                let client = Peer::builder(PeerId::random()).start().await.unwrap();
                client.connect_with_token(&url, &token).await.unwrap();
                client
            }
        };
        let reader = connect(reader).await;
        let admin = connect(admin).await;
        let nobody = connect(nobody).await;

        // The role's glob `blocks::search*` allows the search block.
        let found = blocks::SearchItems {
            query: "rust".into(),
        }
        .on(server_id);
        assert_eq!(reader.run(found).await.unwrap().len(), 4);

        // The same principal may not run the admin block: refused, and it did not run.
        let before = blocks::RESETS.load(Ordering::SeqCst);
        let refused = reader.run(blocks::AdminReset {}.on(server_id)).await;
        match refused {
            Err(RemoteError::Forbidden { block, subject, .. }) => {
                assert_eq!(block, "blocks::admin_reset");
                assert_eq!(subject, "reader");
            }
            other => panic!("expected Forbidden, got {other:?}"),
        }
        assert_eq!(blocks::RESETS.load(Ordering::SeqCst), before);

        // The link stays up after a refusal.
        let still = reader.run(
            blocks::SearchItems {
                query: "crab".into(),
            }
            .on(server_id),
        );
        assert_eq!(still.await.unwrap().len(), 1);

        // A subject rule (`admin` may run `*`).
        assert_eq!(
            admin.run(blocks::AdminReset {}.on(server_id)).await,
            Ok(before + 1)
        );

        // Deny by default: no rule names `nobody` or `guest`, and anonymous blocks
        // (`module@line:col`) are not covered by `blocks::search*`.
        let denied = nobody
            .run(
                blocks::SearchItems {
                    query: "rust".into(),
                }
                .on(server_id),
            )
            .await;
        assert!(
            matches!(denied, Err(RemoteError::Forbidden { .. })),
            "{denied:?}"
        );
        let anonymous = reader.run(blocks::increment(server_id, 1)).await;
        assert!(
            matches!(anonymous, Err(RemoteError::Forbidden { .. })),
            "{anonymous:?}"
        );
    });
}

#[test]
fn blocks_see_the_verified_principal_of_their_link_only() {
    let server = auth_server("auth-principal", issuer());
    let server_handle = server.handle().clone();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let token = issuer()
        .issue_with_peers("reader", &["viewer", "extra"], &["principal-client"], HOUR)
        .unwrap();
    block_on(async move {
        let client = Peer::builder(PeerId::from_name("principal-client"))
            .start()
            .await
            .unwrap();
        client.connect_with_token(&url, &token).await.unwrap();
        let seen = client.run(blocks::Whoami {}.on(server_id)).await.unwrap();
        assert_eq!(
            seen,
            Some((
                "reader".to_owned(),
                vec!["viewer".to_owned(), "extra".to_owned()]
            ))
        );
        // The other direction: the client trusts the link it opened, and the server's
        // calls carry no principal (a principal is never taken from the wire).
        let back = server_handle
            .run(blocks::Whoami {}.on(client.id()))
            .await
            .unwrap();
        assert_eq!(back, None);
    });
}

#[test]
fn weak_secret_fails_at_start() {
    let result = block_on(async {
        Peer::builder(PeerId::random())
            .listen("127.0.0.1:0")
            .auth(JwtAuth::hs256(b"too short"), Policy::deny_all())
            .start()
            .await
    });
    assert!(matches!(result, Err(Error::Auth(_))), "{result:?}");
}

#[test]
fn peer_rules_narrow_what_a_linked_peer_may_run() {
    let limited = PeerId::from_name("limited-caller");
    let server = PeerThread::start(
        Peer::builder(PeerId::from_name("peer-rules"))
            .listen("127.0.0.1:0")
            .allow_peer(limited, "blocks::search*"),
    )
    .unwrap();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let client = support::connected(limited, &url).await;
        let allowed = client.run(
            blocks::SearchItems {
                query: "nail".into(),
            }
            .on(server_id),
        );
        assert_eq!(allowed.await.unwrap().len(), 1);
        let refused = client.run(blocks::AdminReset {}.on(server_id)).await;
        assert!(
            matches!(refused, Err(RemoteError::Forbidden { .. })),
            "{refused:?}"
        );
    });
}

#[test]
fn calls_are_never_relayed_to_a_third_peer() {
    // a -> b -> c linked in a line; a has no link to c.
    let b = support::server("relay-b");
    let c = support::server("relay-c");
    let (idc, urlb, urlc) = (c.handle().id(), url(b.handle()), url(c.handle()));
    let result = block_on(async move {
        b.handle().connect(&urlc).await.unwrap();
        let a = support::connected(PeerId::from_name("relay-a"), &urlb).await;
        a.run(async move {
            distributed_scope::remote!(idc, [] -> u8 { 7 })
                .timeout(Duration::from_millis(300))
                .await
        })
        .await
    });
    assert!(
        matches!(result, Err(RemoteError::NotConnected { peer, .. }) if peer == idc),
        "{result:?}"
    );
}

#[test]
fn browsers_present_the_token_as_a_subprotocol_and_origins_are_checked() {
    let server = PeerThread::start(
        Peer::builder(PeerId::from_name("auth-browser"))
            .listen("127.0.0.1:0")
            .auth(issuer(), policy())
            .allow_origin("http://app.example"),
    )
    .unwrap();
    let url = url(server.handle());
    let token = issuer().issue("reader", &["viewer"], HOUR).unwrap();
    block_on(async move {
        let upgrade = |origin: &'static str, protocols: Vec<String>| {
            let url = url.clone();
            async move {
                let request = awc::Client::new()
                    .ws(url.as_str())
                    .origin(origin)
                    .protocols(protocols);
                match request.connect().await {
                    Ok((response, _framed)) => (
                        response.status().as_u16(),
                        response
                            .headers()
                            .get("sec-websocket-protocol")
                            .map(|value| value.to_str().unwrap().to_owned()),
                    ),
                    Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
                        (status.as_u16(), None)
                    }
                    Err(error) => panic!("unexpected upgrade error: {error}"),
                }
            }
        };
        let offered = vec!["distributed-scope".to_owned(), format!("bearer.{token}")];
        assert_eq!(
            upgrade("http://app.example", offered.clone()).await,
            (101, Some("distributed-scope".to_owned()))
        );
        assert_eq!(upgrade("http://evil.example", offered).await.0, 403);
        let no_token = vec!["distributed-scope".to_owned()];
        assert_eq!(upgrade("http://app.example", no_token).await.0, 401);
    });
}

#[test]
fn link_closes_when_its_token_expires() {
    let server = auth_server("auth-expiry", issuer().with_leeway(Duration::ZERO));
    let url = url(server.handle());
    let token = issuer()
        .issue("reader", &["viewer"], Duration::from_secs(2))
        .unwrap();
    block_on(async move {
        let client = Peer::builder(PeerId::random()).start().await.unwrap();
        client.connect_with_token(&url, &token).await.unwrap();
        assert_eq!(client.connected_peers().len(), 1);
        // The server closes the link at `exp`; observe it from the client side.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while !client.connected_peers().is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "the link outlived its token");
    });
}

#[test]
fn token_provider_is_asked_again_when_the_link_reconnects() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let server_id = PeerId::from_name("auth-provider");
    let start = move |addr: String| {
        PeerThread::start(
            Peer::builder(server_id)
                .listen(addr)
                .auth(issuer(), policy()),
        )
        .expect("server starts")
    };
    let first = start("127.0.0.1:0".to_owned());
    let addr = first.handle().local_addr().unwrap().to_string();
    let url = url(first.handle());
    let asked = Arc::new(AtomicU32::new(0));
    let counter = asked.clone();
    block_on(async move {
        let client = quick_reconnect(Peer::builder(PeerId::random()))
            .start()
            .await
            .unwrap();
        client
            .connect_with_token_provider(&url, move || {
                counter.fetch_add(1, Ordering::SeqCst);
                issuer().issue("reader", &["viewer"], HOUR).unwrap()
            })
            .await
            .unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // The server goes away and comes back on the same port.
        let second = actix_rt::task::spawn_blocking(move || {
            drop(first);
            start(addr)
        })
        .await
        .unwrap();
        client
            .wait_for(server_id, Duration::from_secs(15))
            .await
            .expect("the link comes back with a fresh token");
        assert!(
            asked.load(Ordering::SeqCst) >= 2,
            "the provider was asked again"
        );
        let seen = client.run(blocks::Whoami {}.on(server_id)).await.unwrap();
        assert_eq!(seen.map(|(subject, _)| subject).as_deref(), Some("reader"));
        drop(second);
    });
}
