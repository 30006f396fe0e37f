//! The seed's demo across two peers in two separate actix systems, over a real loopback
//! WebSocket: the server sets `a = 42`, the client returns 43 copies of `a`, the server
//! computes `a + 2`. Each hop prints where it runs.
//!
//! Run: `cargo run --example demo`

use distributed_scope::actix::System;
use distributed_scope::testing::PeerThread;
use distributed_scope::{Peer, PeerId};

fn main() -> anyhow::Result<()> {
    let server_id = PeerId::from_name("server");
    let client_id = PeerId::from_name("client");

    // The server: its own actix system on its own thread, listening on a free port.
    let server = PeerThread::start(Peer::builder(server_id).listen("127.0.0.1:0"))?;
    let url = server
        .handle()
        .url()
        .ok_or_else(|| anyhow::anyhow!("the server does not listen"))?;
    println!("server {} listening on {url}", blocks::short(server_id));

    // The client: the main thread's actix system.
    System::new().block_on(async move {
        let client = Peer::builder(client_id).start().await?;
        let connected = client.connect(&url).await?;
        println!(
            "client {} connected to {}",
            blocks::short(client_id),
            blocks::short(connected)
        );
        let (copies, sum) = client.run(blocks::demo(server_id, client_id)).await?;
        println!("result: ([{}; {}], {sum})", copies[0], copies.len());
        assert!(copies.iter().all(|&value| value == 42));
        client.stop().await?;
        anyhow::Ok(())
    })?;
    drop(server);
    Ok(())
}
