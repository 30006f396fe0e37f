//! Load: many client peers, many calls each, against one server over real sockets; every
//! reply reaches its own caller, and memory returns to its level after a repeat run.

mod support;

use distributed_scope::{PeerHandle, PeerId};
use futures_util::future::join_all;
use support::{block_on, server, url};

const CLIENTS: usize = 50;
const CALLS: u64 = 2_000;
/// Calls each client keeps in flight.
const WINDOW: u64 = 50;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Every client makes `CALLS` calls with distinct arguments, `WINDOW` at a time, and checks
/// each result against its own argument.
async fn run(clients: &[PeerHandle], server: PeerId) {
    let work = clients.iter().enumerate().map(|(n, client)| async move {
        let base = n as u64 * 1_000_000;
        for chunk in (0..CALLS).collect::<Vec<_>>().chunks(WINDOW as usize) {
            let calls = chunk
                .iter()
                .map(|i| client.run(blocks::increment(server, base + i)));
            for (i, result) in chunk.iter().zip(join_all(calls).await) {
                assert_eq!(
                    result,
                    Ok(base + i + 1),
                    "client {n} call {i}: crossed or lost reply"
                );
            }
        }
    });
    join_all(work).await;
}

#[test]
fn fifty_clients_two_thousand_calls_each_no_crossed_replies_no_growth() {
    let server = server("load-server");
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let (first, second) = block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let client = support::connected(PeerId::random(), &url).await;
            clients.push(client);
        }
        run(&clients, server_id).await;
        let first = rss_kib();
        run(&clients, server_id).await;
        let second = rss_kib();
        (first, second)
    });
    // Allocators keep freed memory: compare a repeat run with the first, not with the start.
    assert!(
        second <= first + first / 10,
        "RSS grew from {first} KiB after the first run to {second} KiB after the second"
    );
    let metrics = server.handle().metrics();
    assert_eq!(metrics.calls_received, 2 * CLIENTS as u64 * CALLS);
    // Every call frame and every reply is at least a few bytes on the wire.
    assert!(
        metrics.bytes_received >= 8 * metrics.calls_received,
        "{metrics:?}"
    );
    assert!(
        metrics.bytes_sent >= 4 * metrics.calls_received,
        "{metrics:?}"
    );
}
