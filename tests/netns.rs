//! Two hosts: a peer process in its own network namespace, joined to the test's namespace by
//! a veth pair. Hops cross it; an nftables drop rule partitions it; the partition is noticed
//! by liveness; after healing, the link reconnects and hops work again. Over a lossy link
//! (nftables drops 5 % of the packets each way), results are the same and no link is lost.
//!
//! Needs root, `ip netns` and `nft`; otherwise it prints why and passes without testing
//! (`.ci/run` installs `iproute2` and `nftables`).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distributed_scope::{Peer, PeerId, RemoteError};
use support::{LIMIT, block_on, quick_liveness, quick_reconnect};

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn why_not_supported() -> Option<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Some("not running as root");
    }
    if !run("ip", &["netns", "list"]) {
        return Some("`ip netns` is not available");
    }
    if !run("nft", &["--version"]) {
        return Some("`nft` is not available");
    }
    None
}

/// The namespace, the veth pair and the peer process; all removed on drop.
struct Host {
    namespace: String,
    process: Option<Child>,
    /// This host's address on the veth pair.
    here: String,
    /// The peer process's URL.
    url: String,
}

impl Host {
    /// Runs `nft RULE` in the namespace.
    fn nft(&self, rule: &str) {
        let args = ["netns", "exec", &self.namespace, "nft", rule];
        assert!(run("ip", &args), "nft {rule}");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        // Deleting the namespace removes the veth pair and the rules with it.
        run("ip", &["netns", "del", &self.namespace]);
    }
}

/// Sets up namespace `n` of this test process (each test uses its own) and starts
/// `peer --id NAME ARGS...` in it; `None`, having said why, where that cannot be done.
fn start_host(n: u32, name: &str, args: &[&str]) -> Option<Host> {
    if let Some(reason) = why_not_supported() {
        println!("skipped: {reason}");
        return None;
    }
    let tag = std::process::id() % 50_000 * 2 + n;
    let namespace = format!("dscope{tag}");
    let (outer, inner) = (format!("dso{tag}"), format!("dsi{tag}"));
    let subnet = 16 + (tag % 200);
    let (here, there) = (format!("10.77.{subnet}.1"), format!("10.77.{subnet}.2"));
    let mut host = Host {
        namespace: namespace.clone(),
        process: None,
        here: here.clone(),
        url: String::new(),
    };
    run("ip", &["netns", "del", &namespace]);
    if !run("ip", &["netns", "add", &namespace]) {
        println!("skipped: cannot create a network namespace here");
        return None;
    }
    for step in [
        vec![
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ],
        vec!["link", "set", &inner, "netns", &namespace],
        vec!["addr", "add", &format!("{here}/30"), "dev", &outer],
        vec!["link", "set", &outer, "up"],
        vec![
            "-n",
            &namespace,
            "addr",
            "add",
            &format!("{there}/30"),
            "dev",
            &inner,
        ],
        vec!["-n", &namespace, "link", "set", &inner, "up"],
        vec!["-n", &namespace, "link", "set", "lo", "up"],
    ] {
        let args: Vec<&str> = step.iter().map(|arg| &**arg).collect();
        assert!(run("ip", &args), "ip {}", args.join(" "));
    }

    // The server host: the `peer` example inside the namespace.
    let binary = support::attack::fresh_peer_binary();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &namespace])
        .arg(&binary)
        .args(["--id", name, "--listen", &format!("{there}:0")])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("peer starts in the namespace");
    host.url = support::wait_for_listening(child.stdout.take().expect("stdout"));
    host.process = Some(child);
    Some(host)
}

#[test]
fn hops_partition_and_heal_across_network_namespaces() {
    let Some(host) = start_host(0, "netns-server", &["--liveness-ms", "1000"]) else {
        return;
    };
    let (url, here) = (host.url.clone(), host.here.clone());
    let server_id = PeerId::from_name("netns-server");
    let host = &host;
    block_on(async move {
        let client = Peer::builder(PeerId::from_name("netns-client"));
        let client = quick_liveness(quick_reconnect(client), Duration::from_secs(1))
            .start()
            .await
            .unwrap();
        assert_eq!(client.connect(&url).await.unwrap(), server_id);
        let demo = client.run(blocks::demo(server_id, client.id())).await;
        assert_eq!(demo, Ok((vec![42; 43], 44)));

        // Partition: the server host drops everything from and to this host, silently.
        let pending = client.spawn(blocks::nap(server_id, 30_000));
        tokio::task::yield_now().await;
        assert_eq!(client.run(blocks::increment(server_id, 1)).await, Ok(2));
        let nft = |rule: &str| host.nft(rule);
        nft("add table inet dscope");
        nft("add chain inet dscope in { type filter hook input priority 0 ; policy accept ; }");
        nft("add chain inet dscope out { type filter hook output priority 0 ; policy accept ; }");
        nft(&format!("add rule inet dscope in ip saddr {here} drop"));
        nft(&format!("add rule inet dscope out ip daddr {here} drop"));
        let cut = Instant::now();
        let lost = pending.await.unwrap();
        assert!(
            matches!(lost, Err(RemoteError::ConnectionLost { .. })),
            "{lost:?}"
        );
        assert!(
            cut.elapsed() < Duration::from_secs(5),
            "noticed after {:?}",
            cut.elapsed()
        );

        // Heal: the supervisor reconnects and hops work again.
        nft("delete table inet dscope");
        client
            .wait_for(server_id, LIMIT / 2)
            .await
            .expect("reconnects after the partition heals");
        let demo = client.run(blocks::demo(server_id, client.id())).await;
        assert_eq!(demo, Ok((vec![42; 43], 44)));
    });
}

/// A payload of `len` bytes that differ from each other.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The packets nftables counted in the namespace's table `table`.
fn dropped(host: &Host, table: &str) -> u64 {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.namespace,
            "nft",
            "list",
            "table",
            "inet",
            table,
        ])
        .output()
        .expect("nft runs");
    let listing = String::from_utf8_lossy(&output.stdout);
    let words: Vec<&str> = listing.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "packets")
        .filter_map(|pair| pair[1].parse::<u64>().ok())
        .sum()
}

#[test]
fn hops_give_the_same_results_over_a_lossy_link() {
    let Some(host) = start_host(1, "lossy-server", &[]) else {
        return;
    };
    let server_id = PeerId::from_name("lossy-server");
    // 5 % of the packets are lost each way (no netem in this kernel: nftables drops them at
    // random); both peers keep their default liveness settings.
    host.nft("add table inet lossy");
    host.nft("add chain inet lossy in { type filter hook input priority 0 ; policy accept ; }");
    host.nft("add chain inet lossy out { type filter hook output priority 0 ; policy accept ; }");
    let here = host.here.clone();
    host.nft(&format!(
        "add rule inet lossy in ip saddr {here} numgen random mod 100 < 5 counter drop"
    ));
    host.nft(&format!(
        "add rule inet lossy out ip daddr {here} numgen random mod 100 < 5 counter drop"
    ));
    let url = host.url.clone();
    block_on(async move {
        let client = Peer::builder(PeerId::from_name("lossy-client"))
            .start()
            .await
            .unwrap();
        assert_eq!(client.connect(&url).await.unwrap(), server_id);
        let mut events = client.events();
        let payload = pattern(1 << 20);
        for round in 0..3 {
            let demo = client.run(blocks::demo(server_id, client.id())).await;
            assert_eq!(demo, Ok((vec![42; 43], 44)), "round {round}");
            let echoed = client
                .run(
                    blocks::Echo {
                        data: payload.clone(),
                    }
                    .on(server_id),
                )
                .await;
            assert!(
                echoed.as_ref() == Ok(&payload),
                "round {round}: the echo differs"
            );
            for x in 0..20 {
                assert_eq!(
                    client.run(blocks::increment(server_id, x)).await,
                    Ok(x + 1),
                    "round {round}"
                );
            }
        }
        // No link was lost on the way, and the loss was real.
        while let Some(Some(event)) =
            futures_util::FutureExt::now_or_never(futures_util::StreamExt::next(&mut events))
        {
            assert!(
                !matches!(event, distributed_scope::PeerEvent::Lost { .. }),
                "a link was lost: {event:?}"
            );
        }
        assert_eq!(client.connected_peers().len(), 1);
    });
    let dropped = dropped(&host, "lossy");
    println!("{dropped} packets dropped");
    assert!(dropped > 0, "no packet was dropped");
    drop(host);
}
