//! A user-owned actix-web `HttpServer` serving its own route (`GET /health`) and a peer's
//! endpoint (`/scope`), in its own actix system on its own thread; optionally over TLS.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test crate uses a part of the harness"
)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use actix_web::{App, HttpServer, web};
use distributed_scope::{PeerBuilder, PeerHandle};
use futures_channel::oneshot;

/// The server; stopped (server, then peer) and joined when dropped.
pub struct AppServer {
    pub peer: PeerHandle,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AppServer {
    /// Starts the peer of `builder` (which should not `listen`) and an `HttpServer` on
    /// `127.0.0.1:0` with `/health` and `peer.endpoint("/scope")`, with `tls` if given.
    pub fn start(
        builder: PeerBuilder,
        tls: Option<distributed_scope::rustls::ServerConfig>,
    ) -> Self {
        let (started, ready) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            distributed_scope::actix::System::new().block_on(async move {
                let peer = builder.start().await.expect("the peer starts");
                let endpoint = peer.clone();
                let server = HttpServer::new(move || {
                    App::new()
                        .route("/health", web::get().to(|| async { "ok" }))
                        .service(endpoint.endpoint("/scope"))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1);
                let server = match tls {
                    Some(tls) => server.bind_rustls_0_23("127.0.0.1:0", tls),
                    None => server.bind("127.0.0.1:0"),
                }
                .expect("binds 127.0.0.1:0");
                let addr = server.addrs()[0];
                let server = server.run();
                let handle = server.handle();
                actix_web::rt::spawn(server);
                let (stop, stopped) = oneshot::channel();
                if started.send((peer.clone(), addr, stop)).is_ok() {
                    let _dropped = stopped.await;
                }
                handle.stop(true).await;
                let _already = peer.stop().await;
            });
        });
        let (peer, addr, stop) = ready
            .recv_timeout(crate::support::LIMIT)
            .expect("the app server starts in time");
        Self {
            peer,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopped = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _panicked = thread.join();
        }
    }
}
