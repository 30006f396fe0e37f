//! A peer as `docs/deploy.md` runs it on Kubernetes: one pod of a StatefulSet behind a
//! headless Service. It serves `wss://` with the certificate of a Secret, requires JWTs signed
//! with a key from another Secret (and presents its own), and links to the other pods, found
//! through the Service's SRV records. It stops draining on SIGTERM.
//!
//! ```text
//! POD_NAME=peers-0 \
//! PEER_LISTEN=0.0.0.0:7443 \
//! PEER_DISCOVER=dns+srv+wss://_peer._tcp.peers.default.svc.cluster.local \
//! PEER_TLS_DIR=/etc/peer/tls \
//! PEER_JWT_SECRET=a-secret-of-at-least-32-bytes......... \
//! cargo run --example kubernetes
//! ```
//!
//! Environment: `POD_NAME` (the peer id is `PeerId::from_name(POD_NAME)`), `PEER_LISTEN`,
//! `PEER_DISCOVER` (a discovery URL: `dns://`, `dns+srv://`, with `+wss` for TLS),
//! `PEER_TLS_DIR` (holding `tls.crt`, `tls.key` and `ca.crt`, as cert-manager writes them)
//! and `PEER_JWT_SECRET` (the HS256 key shared by the peers, at least 32 bytes).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use distributed_scope::actix::System;
use distributed_scope::auth::{JwtAuth, Policy};
use distributed_scope::rustls::pki_types::pem::PemObject;
use distributed_scope::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use distributed_scope::rustls::{self, ServerConfig};
use distributed_scope::{Discovery, Peer, PeerId};

// Links the shared blocks into this binary: a peer runs the blocks its binary contains.
use blocks as _;

/// How long the tokens a peer presents to the others live; a fresh one is issued per dial.
const TOKEN_LIFETIME: Duration = Duration::from_secs(600);

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

/// The server configuration of `wss://`: the pod's certificate chain and key.
fn server_tls(dir: &Path) -> anyhow::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(dir.join("tls.crt"))
        .context("reading tls.crt")?
        .collect::<Result<Vec<_>, _>>()
        .context("parsing tls.crt")?;
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key")).context("reading tls.key")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?)
}

fn main() -> anyhow::Result<()> {
    let pod = env("POD_NAME")?;
    let listen = env("PEER_LISTEN")?;
    let discover = env("PEER_DISCOVER")?;
    let tls_dir = env("PEER_TLS_DIR")?;
    let secret = env("PEER_JWT_SECRET")?;
    let tls = server_tls(Path::new(&tls_dir))?;
    let ca = CertificateDer::from_pem_file(Path::new(&tls_dir).join("ca.crt"))
        .context("reading ca.crt")?;

    // Every pod verifies the others' tokens with the shared key, and lets any peer run any
    // block; narrow the policy to the blocks peers call on each other.
    let auth = JwtAuth::hs256(secret.as_bytes())
        .with_issuer("peers")
        .with_audience("peers");
    let policy = Policy::deny_all().allow_role("peer", "*");
    let issuer = auth.clone();
    let subject = pod.clone();
    let discovery = Discovery::dns(discover).token_provider(move || {
        issuer
            .issue(&subject, &["peer"], TOKEN_LIFETIME)
            .unwrap_or_else(|error| {
                eprintln!("cannot issue a token: {error}");
                String::new()
            })
    });

    System::new().block_on(async move {
        let peer = Peer::builder(PeerId::from_name(&pod))
            .listen_tls(listen, tls)
            .tls_roots([ca])
            .auth(auth, policy)
            .discover(discovery)
            .start()
            .await?;
        println!("peer {pod} listening on {}", peer.url().unwrap_or_default());
        // SIGTERM (the pod is deleted or rolled) stops the peer: calls in flight finish within
        // the drain timeout, links close with 1001.
        peer.shutdown_signal().await;
        anyhow::Ok(())
    })
}
