//! The peer endpoint embedded in your own actix-web service: one `HttpServer` serves a normal
//! HTTP route (`GET /health`) and the peer's WebSocket endpoint (`/scope`), with your own
//! routes, middleware and TLS. A second peer connects to `ws://HOST:PORT/scope`, checks the
//! health route and runs the seed's demo through the embedded endpoint.
//!
//! Run: `cargo run --example embedded`

use actix_web::{App, HttpResponse, HttpServer, web};
use distributed_scope::{Peer, PeerId};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let server_id = PeerId::from_name("service");
    // A peer without `listen`: the service's own server accepts its links.
    let peer = Peer::builder(server_id).start().await?;

    let endpoint = peer.clone();
    let server = HttpServer::new(move || {
        App::new()
            .route(
                "/health",
                web::get().to(|| async { HttpResponse::Ok().body("ok") }),
            )
            // Same handshake, limits and auth as `PeerBuilder::listen`.
            .service(endpoint.endpoint("/scope"))
    })
    .workers(1)
    .bind("127.0.0.1:0")?;
    let addr = server.addrs()[0];
    let server = server.run();
    let server_handle = server.handle();
    actix_web::rt::spawn(server);
    println!("serving http://{addr}/health and ws://{addr}/scope");

    // A client: the same HTTP server answers plain HTTP ...
    let mut health = awc::Client::new()
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("GET /health: {error}"))?;
    let body = health.body().await?;
    println!(
        "GET /health -> {} {}",
        health.status(),
        String::from_utf8_lossy(&body)
    );

    // ... and peer links.
    let client_id = PeerId::from_name("client");
    let client = Peer::builder(client_id).start().await?;
    client.connect(&format!("ws://{addr}/scope")).await?;
    let (copies, sum) = client.run(blocks::demo(server_id, client_id)).await?;
    println!("demo -> ({} copies of {}, {sum})", copies.len(), copies[0]);
    assert_eq!((copies.len(), sum), (43, 44));

    client.stop().await?;
    peer.stop().await?;
    server_handle.stop(true).await;
    Ok(())
}
