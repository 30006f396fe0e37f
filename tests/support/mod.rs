//! Shared harness for the end-to-end tests: bounded waits, peers on their own threads,
//! and the `peer` example as a separate OS process.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test crate uses a part of the harness"
)]

pub mod attack;
pub mod log;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use distributed_scope::auth::JwtAuth;
use distributed_scope::testing::PeerThread;
use distributed_scope::{Backoff, Peer, PeerBuilder, PeerHandle, PeerId};

pub mod payloads;
pub mod proxy;

/// The bound on every await in the tests.
pub const LIMIT: Duration = Duration::from_secs(20);

/// The HS256 secret of the tests' tokens.
pub const SECRET: &[u8] = b"an hs256 secret of at least 32 bytes!!";
/// A token lifetime that outlives any test.
pub const HOUR: Duration = Duration::from_secs(3600);

/// The tests' token issuer and verifier: HS256, issuer `tests`, audience `scope`.
pub fn issuer() -> JwtAuth {
    JwtAuth::hs256(SECRET)
        .with_issuer("tests")
        .with_audience("scope")
}

/// Reconnects within a fraction of a second (0.05 s, x1.6, capped at 0.3 s), for tests that
/// restart or heal the other side.
pub fn quick_reconnect(builder: PeerBuilder) -> PeerBuilder {
    builder.reconnect(Backoff::new(
        Duration::from_millis(50),
        1.6,
        Duration::from_millis(300),
    ))
}

/// Drops a link silent for `timeout`, probing it every fifth of that.
pub fn quick_liveness(builder: PeerBuilder, timeout: Duration) -> PeerBuilder {
    builder.ping_interval(timeout / 5).liveness_timeout(timeout)
}

/// Runs `future` in a fresh actix system on this thread, failing the test if it takes
/// longer than [`LIMIT`].
pub fn block_on<F: Future>(future: F) -> F::Output {
    distributed_scope::actix::System::new().block_on(async move {
        tokio::time::timeout(LIMIT, future)
            .await
            .expect("the test did not finish within its time limit")
    })
}

/// A listening peer named `name` on its own thread.
pub fn server(name: &str) -> PeerThread {
    PeerThread::start(Peer::builder(PeerId::from_name(name)).listen("127.0.0.1:0"))
        .expect("server starts")
}

/// A new peer in the current actix system, linked to the peer listening at `url`.
pub async fn connected(id: PeerId, url: &str) -> PeerHandle {
    let peer = Peer::builder(id).start().await.expect("peer starts");
    peer.connect(url).await.expect("connects");
    peer
}

/// The URL of a listening peer.
pub fn url(peer: &PeerHandle) -> String {
    peer.url().expect("the peer listens")
}

/// The `peer` example running as a child process; killed when dropped.
pub struct PeerProcess {
    child: Child,
    pub url: String,
    pub id: PeerId,
}

impl PeerProcess {
    /// Starts `peer --id NAME --listen 127.0.0.1:0` and waits for its `listening on` line.
    pub fn start(name: &str) -> Self {
        Self::start_at(name, "127.0.0.1:0")
    }

    /// Starts `peer --id NAME --listen ADDR` and waits for its `listening on` line.
    pub fn start_at(name: &str, addr: &str) -> Self {
        let binary = peer_binary();
        let mut child = Command::new(&binary)
            .args(["--id", name, "--listen", addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let url = wait_for_listening(stdout);
        Self {
            child,
            url,
            id: PeerId::from_name(name),
        }
    }

    /// The process id (for its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a `peer` process's output until its `listening on URL` line, and keeps draining it
/// afterwards so the child never writes into a closed pipe.
pub fn wait_for_listening(stdout: std::process::ChildStdout) -> String {
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    loop {
        let line = received
            .recv_timeout(LIMIT)
            .expect("the peer process prints `listening on URL` in time");
        if let Some(url) = line.strip_prefix("listening on ") {
            return url.trim().to_owned();
        }
    }
}

/// `target/<profile>/examples/peer`, built by `cargo test` with the other examples; built
/// here if it is missing.
pub fn peer_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("examples").join("peer");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "peer"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the peer example failed");
    }
    binary
}
