//! Two hosts: a peer process in its own network namespace, joined to the test's namespace by
//! a veth pair. Hops cross it; an nftables drop rule partitions it; the partition is noticed
//! by liveness; after healing, the link reconnects and hops work again. Over a lossy link
//! (nftables drops 5 % of the packets each way), results are the same and no link is lost;
//! with 50 ms of delay each way on top, they are the same again, only slower. This kernel has
//! no netem, so the delay comes from a TCP relay in the test's namespace that holds every
//! chunk it forwards for 50 ms; the client reaches the server through it, and the loss stays
//! on the veth pair behind it.
//!
//! Needs root, `ip netns` and `nft`; otherwise it prints why and passes without testing
//! (`.ci/run` installs `iproute2` and `nftables`).

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use distributed_scope::{Events, Peer, PeerEvent, PeerHandle, PeerId, RemoteError};
use futures_util::{FutureExt, StreamExt};
use support::{LIMIT, block_on, quick_liveness, quick_reconnect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

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
    /// The veth pair's ends: in this test's namespace, in the host's.
    ends: (String, String),
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
    let tag = std::process::id() % 50_000 * 3 + n;
    let namespace = format!("dscope{tag}");
    let (outer, inner) = (format!("dso{tag}"), format!("dsi{tag}"));
    let subnet = 16 + (tag % 200);
    let (here, there) = (format!("10.77.{subnet}.1"), format!("10.77.{subnet}.2"));
    let mut host = Host {
        namespace: namespace.clone(),
        ends: (outer.clone(), inner.clone()),
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
        // A partition drops the connection; the link waits its resume window (1 s here) for
        // a new one, which the partition never lets through, then its calls fail.
        let client =
            Peer::builder(PeerId::from_name("netns-client")).resume_window(Duration::from_secs(1));
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

/// Drops 5 % of the packets each way between this host and `host`, at random (no netem in
/// this kernel: nftables in the host's namespace does it), counted in table `table`.
fn lose_five_percent(host: &Host, table: &str) {
    // One TCP segment per packet, as on a wire: veth would otherwise pass (and nftables count
    // and drop) 64 KiB segmentation-offload bursts as one packet.
    let (outer, inner) = &host.ends;
    for args in [
        vec!["link", "set", "dev", outer, "gso_max_segs", "1"],
        vec![
            "-n",
            &host.namespace,
            "link",
            "set",
            "dev",
            inner,
            "gso_max_segs",
            "1",
        ],
    ] {
        assert!(run("ip", &args), "ip {}", args.join(" "));
    }
    host.nft(&format!("add table inet {table}"));
    host.nft(&format!(
        "add chain inet {table} in {{ type filter hook input priority 0 ; policy accept ; }}"
    ));
    host.nft(&format!(
        "add chain inet {table} out {{ type filter hook output priority 0 ; policy accept ; }}"
    ));
    let here = &host.here;
    host.nft(&format!(
        "add rule inet {table} in ip saddr {here} numgen random mod 100 < 5 counter drop"
    ));
    host.nft(&format!(
        "add rule inet {table} out ip daddr {here} numgen random mod 100 < 5 counter drop"
    ));
}

/// Runs the demo, a 1 MiB echo and 20 increments, `rounds` times, on `server`, checking every
/// result; returns how long each increment's round trip took.
async fn same_results(client: &PeerHandle, server: PeerId, rounds: u32) -> Vec<Duration> {
    let payload = pattern(1 << 20);
    let mut round_trips = Vec::new();
    for round in 0..rounds {
        let start = Instant::now();
        let demo = client.run(blocks::demo(server, client.id())).await;
        let demo_took = start.elapsed();
        assert_eq!(demo, Ok((vec![42; 43], 44)), "round {round}");
        let start = Instant::now();
        let echoed = client
            .run(
                blocks::Echo {
                    data: payload.clone(),
                }
                .on(server),
            )
            .await;
        assert!(
            echoed.as_ref() == Ok(&payload),
            "round {round}: the echo differs"
        );
        println!(
            "round {round}: demo in {demo_took:?}, 1 MiB echo in {:?}",
            start.elapsed()
        );
        for x in 0..20 {
            let start = Instant::now();
            let incremented = client.run(blocks::increment(server, x)).await;
            round_trips.push(start.elapsed());
            assert_eq!(incremented, Ok(x + 1), "round {round}");
        }
    }
    round_trips
}

/// Fails if `events` holds a lost link (it is read without waiting).
fn assert_no_link_lost(events: &mut Events) {
    for _ in 0..10_000 {
        let Some(Some(event)) = events.next().now_or_never() else {
            return;
        };
        assert!(
            !matches!(event, PeerEvent::Lost { .. }),
            "a link was lost: {event:?}"
        );
    }
    panic!("more events than this test can cause");
}

#[test]
fn hops_give_the_same_results_over_a_lossy_link() {
    let Some(host) = start_host(1, "lossy-server", &[]) else {
        return;
    };
    let server_id = PeerId::from_name("lossy-server");
    // Both peers keep their default liveness settings.
    lose_five_percent(&host, "lossy");
    let url = host.url.clone();
    block_on(async move {
        let client = Peer::builder(PeerId::from_name("lossy-client"))
            .start()
            .await
            .unwrap();
        assert_eq!(client.connect(&url).await.unwrap(), server_id);
        let mut events = client.events();
        same_results(&client, server_id, 3).await;
        // No link was lost on the way, and the loss was real.
        assert_no_link_lost(&mut events);
        assert_eq!(client.connected_peers().len(), 1);
    });
    let dropped = dropped(&host, "lossy");
    println!("{dropped} packets dropped");
    assert!(dropped > 0, "no packet was dropped");
    drop(host);
}

/// A TCP relay on loopback in the test's namespace that forwards each connection to `target`
/// and holds every chunk it forwards, in each direction, for `delay` after reading it. It is a
/// delay line, not a sleep per chunk: chunks read while earlier ones wait are stamped and
/// written on time too, in order, so latency is added once per direction and throughput is
/// kept. It runs on its own thread and runtime, so the peers' event loops cannot slow it
/// down; it stops when dropped.
struct DelayRelay {
    address: SocketAddr,
    /// The connections it accepted.
    accepted: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DelayRelay {
    /// The most connections one relay forwards.
    const MAX_CONNECTIONS: usize = 16;

    fn start(target: SocketAddr, delay: Duration) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, listening) = std::sync::mpsc::channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the relay's runtime starts");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("the relay listens");
                let _ = ready.send(listener.local_addr().expect("the relay's address"));
                tokio::spawn(async move {
                    for _ in 0..Self::MAX_CONNECTIONS {
                        let Ok((inbound, _)) = listener.accept().await else {
                            continue;
                        };
                        count.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(relay_connection(inbound, target, delay));
                    }
                });
                // Until the relay is dropped.
                let _ = stopped.await;
            });
            // Dropping the runtime ends the connections' tasks and closes their sockets.
        });
        let address = listening
            .recv_timeout(LIMIT)
            .expect("the relay listens in time");
        Self {
            address,
            accepted,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Forwards `inbound` to a new connection to `target`, both directions through a delay line.
async fn relay_connection(inbound: TcpStream, target: SocketAddr, delay: Duration) {
    let Ok(Ok(outbound)) = tokio::time::timeout(LIMIT, TcpStream::connect(target)).await else {
        return;
    };
    // The only delay on the way is the relay's own.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (inbound_read, inbound_write) = inbound.into_split();
    let (outbound_read, outbound_write) = outbound.into_split();
    tokio::join!(
        delay_line(inbound_read, outbound_write, delay),
        delay_line(outbound_read, inbound_write, delay),
    );
}

/// Copies `from` to `to`, writing each chunk `delay` after it was read.
async fn delay_line(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(4096);
    let read = async move {
        let mut buffer = vec![0; 64 * 1024];
        // Until end of stream or an error; dropping `chunks` then ends the writer.
        while let Ok(len @ 1..) = from.read(&mut buffer).await {
            let at = tokio::time::Instant::now() + delay;
            if chunks.send((at, buffer[..len].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// Runs `future` in a fresh actix system on this thread, failing the test if it takes
/// longer than `limit`.
fn block_on_within<F: Future>(limit: Duration, future: F) -> F::Output {
    distributed_scope::actix::System::new().block_on(async move {
        tokio::time::timeout(limit, future)
            .await
            .expect("the test did not finish within its time limit")
    })
}

/// The catalogue's slow, lossy link: 50 ms each way (the relay) and 5 % packet loss each
/// way (nftables on the veth pair), with the default liveness settings on both sides.
#[test]
fn hops_give_the_same_results_over_a_slow_lossy_link() {
    const DELAY: Duration = Duration::from_millis(50);
    let Some(host) = start_host(2, "slow-server", &[]) else {
        return;
    };
    let server_id = PeerId::from_name("slow-server");
    lose_five_percent(&host, "slow");
    // The client reaches the server only through the relay: loopback, then the lossy veth.
    let (server_address, path) = host
        .url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split_once('/'))
        .expect("a ws:// URL");
    let server_address: SocketAddr = server_address.parse().expect("the server's address");
    let relay = DelayRelay::start(server_address, DELAY);
    let url = format!("ws://{}/{path}", relay.address);
    let accepted = relay.accepted.clone();
    let started = Instant::now();
    // Two rounds take 8 to 12 s here, but a lost packet can stall TCP for 200 ms or more,
    // several times in an echo: this test gets more time than `LIMIT`.
    let limit = Duration::from_secs(45);
    let round_trips = block_on_within(limit, async move {
        let client = Peer::builder(PeerId::from_name("slow-client"))
            .start()
            .await
            .unwrap();
        assert_eq!(client.connect(&url).await.unwrap(), server_id);
        let mut events = client.events();
        let round_trips = same_results(&client, server_id, 2).await;
        assert_no_link_lost(&mut events);
        assert_eq!(client.connected_peers().len(), 1);
        round_trips
    });
    let elapsed = started.elapsed();
    // One connection through the relay from start to end: the link was never re-opened.
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the link was re-opened");
    drop(relay);
    let dropped = dropped(&host, "slow");
    drop(host);
    let fastest = round_trips.iter().min().expect("round trips");
    let slowest = round_trips.iter().max().expect("round trips");
    println!(
        "{} round trips from {fastest:?} to {slowest:?}; all in {elapsed:?}; {dropped} packets dropped",
        round_trips.len()
    );
    // The delay is applied each way: no round trip is faster than twice the delay.
    assert!(*fastest >= 2 * DELAY, "a round trip took {fastest:?}");
    assert!(dropped > 0, "no packet was dropped");
}
