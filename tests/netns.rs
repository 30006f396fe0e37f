//! Two hosts: a peer process in its own network namespace, joined to the test's namespace by
//! a veth pair. Hops cross it; an nftables drop rule partitions it; the partition is noticed
//! by liveness; after healing, the link reconnects and hops work again.
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

#[test]
fn hops_partition_and_heal_across_network_namespaces() {
    if let Some(reason) = why_not_supported() {
        println!("skipped: {reason}");
        return;
    }
    let tag = std::process::id() % 50_000;
    let namespace = format!("dscope{tag}");
    let (outer, inner) = (format!("dso{tag}"), format!("dsi{tag}"));
    let subnet = 16 + (tag % 200);
    let (here, there) = (format!("10.77.{subnet}.1"), format!("10.77.{subnet}.2"));
    let mut host = Host {
        namespace: namespace.clone(),
        process: None,
    };
    run("ip", &["netns", "del", &namespace]);
    if !run("ip", &["netns", "add", &namespace]) {
        println!("skipped: cannot create a network namespace here");
        return;
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
    let binary = support::peer_binary();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &namespace])
        .arg(&binary)
        .args(["--id", "netns-server", "--listen", &format!("{there}:0")])
        .args(["--liveness-ms", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("peer starts in the namespace");
    let url = support::wait_for_listening(child.stdout.take().expect("stdout"));
    host.process = Some(child);
    let server_id = PeerId::from_name("netns-server");

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
        let nft = |rule: &str| {
            let args = ["netns", "exec", &namespace, "nft", rule];
            assert!(run("ip", &args), "nft {rule}");
        };
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
    drop(host);
}
