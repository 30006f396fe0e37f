//! Authenticated remote blocks: a server requires a JWT on every link and checks each call
//! against a policy. Principal `reader` (role `viewer`) may run the search block; principal
//! `guest` may not, and gets `Forbidden` without the block running.
//!
//! Run: `cargo run --example auth`

use std::time::Duration;

use distributed_scope::actix::System;
use distributed_scope::auth::{JwtAuth, Policy};
use distributed_scope::testing::PeerThread;
use distributed_scope::{Peer, PeerId};

fn main() -> anyhow::Result<()> {
    let auth = JwtAuth::hs256(b"an example secret of at least 32 bytes")
        .with_issuer("example-issuer")
        .with_audience("example-scope");
    let policy = Policy::deny_all().allow_role("viewer", "blocks::search*");
    let server_id = PeerId::from_name("auth-server");
    let server = PeerThread::start(
        Peer::builder(server_id)
            .listen("127.0.0.1:0")
            .auth(auth.clone(), policy),
    )?;
    let url = server
        .handle()
        .url()
        .ok_or_else(|| anyhow::anyhow!("the server does not listen"))?;
    let hour = Duration::from_secs(3600);
    let reader_token = auth.issue("reader", &["viewer"], hour)?;
    let guest_token = auth.issue("guest", &["guest"], hour)?;

    System::new().block_on(async move {
        for (name, token) in [("reader", reader_token), ("guest", guest_token)] {
            let client = Peer::builder(PeerId::from_name(name)).start().await?;
            client.connect_with_token(&url, &token).await?;
            let search = blocks::SearchItems {
                query: "rust".to_owned(),
            };
            match client.run(search.on(server_id)).await {
                Ok(items) => {
                    println!("{name}: {} results", items.len());
                    for item in items {
                        println!("  - {}", item.title);
                    }
                }
                Err(error) => println!("{name}: {error}"),
            }
            client.stop().await?;
        }
        anyhow::Ok(())
    })?;
    drop(server);
    Ok(())
}
