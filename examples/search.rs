//! The seed's search-and-display: the client collects a query and filters, the server
//! searches, and the results travel back to the client, which renders them.
//! Client -> server -> client, over a real loopback WebSocket between two actix systems.
//! Then the same search with its results streamed (`remote_stream!`): each match is rendered
//! on the client as it arrives instead of in one `Vec` at the end.
//!
//! Run: `cargo run --example search`

use distributed_scope::actix::System;
use distributed_scope::testing::PeerThread;
use distributed_scope::{Peer, PeerId};

fn main() -> anyhow::Result<()> {
    let server_id = PeerId::from_name("search-server");
    let client_id = PeerId::from_name("search-client");
    let server = PeerThread::start(Peer::builder(server_id).listen("127.0.0.1:0"))?;
    let url = server
        .handle()
        .url()
        .ok_or_else(|| anyhow::anyhow!("the server does not listen"))?;
    System::new().block_on(async move {
        let client = Peer::builder(client_id).start().await?;
        client.connect(&url).await?;
        for (query, category) in [("rust", None), ("rust", Some("books"))] {
            println!(
                "search {query:?} in {}:",
                category.unwrap_or("all categories")
            );
            let shown = client
                .run(blocks::search_and_display(
                    client_id,
                    server_id,
                    query.to_owned(),
                    category.map(str::to_owned),
                ))
                .await?;
            println!("{shown} results rendered on the client");
        }
        println!("search \"rust\", results streamed:");
        let streamed = client
            .run(blocks::search_streaming(
                client_id,
                server_id,
                "rust".to_owned(),
            ))
            .await?;
        println!("{streamed} results streamed to the client");
        client.stop().await?;
        anyhow::Ok(())
    })?;
    drop(server);
    Ok(())
}
