//! Discovery (`PeerBuilder::discover`): peers found in a static list, or through a real DNS
//! server (hickory-server with an in-memory zone, on loopback) whose records the test changes,
//! are linked and unlinked. Every peer runs in its own actix system over real loopback
//! WebSockets.

mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use distributed_scope::testing::PeerThread;
use distributed_scope::{
    Discovery, DiscoveryError, Error, Peer, PeerEvent, PeerHandle, PeerId, Scope, remote,
};
use futures_util::StreamExt;
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use support::{LIMIT, block_on, quick_reconnect};

/// The resolve interval of the tests.
const INTERVAL: Duration = Duration::from_millis(600);

/// A DNS server for the zone `test.` on a loopback port (UDP and TCP), on its own thread
/// with its own tokio runtime. The test changes its records while it runs.
struct DnsServer {
    address: SocketAddr,
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    fn start() -> Self {
        let origin = name("test.");
        let mut soa = RecordSet::new(origin.clone(), RecordType::SOA, 1);
        soa.insert(
            Record::from_rdata(
                origin.clone(),
                1,
                RData::SOA(SOA::new(
                    name("ns.test."),
                    name("admin.test."),
                    1,
                    60,
                    60,
                    60,
                    1,
                )),
            ),
            1,
        );
        let records = BTreeMap::from([(RrKey::new(origin.clone().into(), RecordType::SOA), soa)]);
        let zone = Arc::new(
            InMemoryZoneHandler::<TokioRuntimeProvider>::new(
                origin.clone(),
                records,
                ZoneType::Primary,
                AxfrPolicy::Deny,
            )
            .expect("a zone with its SOA"),
        );
        let mut catalog = Catalog::new();
        catalog.upsert(origin.into(), vec![zone.clone()]);
        let (bound, address) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let (udp, tcp) = bind_udp_and_tcp().await;
                bound
                    .send(udp.local_addr().expect("bound"))
                    .expect("the test waits");
                let mut server = Server::new(catalog);
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 64);
                let _test_done = stopped.await;
                let _ = server.shutdown_gracefully().await;
            });
        });
        let address = address.recv_timeout(LIMIT).expect("the dns server binds");
        Self {
            address,
            zone,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Makes `records` the only records of `owner` of type `kind`.
    async fn set(&self, owner: &str, kind: RecordType, records: Vec<RData>) {
        let owner = name(owner);
        let key = RrKey::new(owner.clone().into(), kind);
        let mut all = self.zone.records_mut().await;
        if records.is_empty() {
            all.remove(&key);
            return;
        }
        let mut set = RecordSet::new(owner.clone(), kind, 1);
        for data in records {
            set.insert(Record::from_rdata(owner.clone(), 1, data), 1);
        }
        all.insert(key, Arc::new(set));
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same loopback port.
async fn bind_udp_and_tcp() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("udp binds");
        let port = udp.local_addr().expect("bound").port();
        if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both udp and tcp");
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a valid name")
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

fn srv(port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(0, 0, port, name(target)))
}

/// Polls `condition` every 10 ms until it holds, failing the test after [`LIMIT`]; returns
/// how long it took.
async fn until(what: &str, condition: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < LIMIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Whether `peer` has a live outbound link to `remote`.
fn linked(peer: &PeerHandle, remote: PeerId) -> bool {
    peer.connected_peers()
        .iter()
        .any(|link| link.peer == remote && link.outbound)
}

/// Runs `work` on a thread of its own, so that the actix system of the caller keeps running
/// (a peer thread stopping drains links this system holds).
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        let _gone = done.send(work());
    });
    result.await.expect("the work finished")
}

/// A listening peer named `name` on its own thread.
fn listening(name: &str, addr: &str) -> PeerThread {
    PeerThread::start(Peer::builder(PeerId::from_name(name)).listen(addr)).expect("peer starts")
}

/// The first of two peers listening on one port at two loopback addresses, for A records
/// (which carry no port): `127.0.0.2:P` and `127.0.0.3:P`.
fn two_listening_on_one_port() -> (PeerThread, PeerThread, u16) {
    for _ in 0..20 {
        let first = listening("dns-b", "127.0.0.2:0");
        let port = first.handle().local_addr().expect("listens").port();
        let second = PeerThread::start(
            Peer::builder(PeerId::from_name("dns-c")).listen(format!("127.0.0.3:{port}")),
        );
        if let Ok(second) = second {
            return (first, second, port);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

#[test]
fn dns_records_that_change_link_and_unlink_peers_within_two_intervals() {
    let dns = DnsServer::start();
    let (b, c, port) = two_listening_on_one_port();
    let (b_id, c_id) = (b.handle().id(), c.handle().id());
    let b_handle = b.handle().clone();
    let c_handle = c.handle().clone();
    block_on(async move {
        dns.set("peers.test.", RecordType::A, vec![a([127, 0, 0, 2])])
            .await;
        let discovery = Discovery::dns(format!("dns://peers.test.:{port}/"))
            .nameserver(dns.address)
            .interval(INTERVAL);
        let peer = quick_reconnect(Peer::builder(PeerId::from_name("dns-a")))
            .discover(discovery)
            .start()
            .await
            .expect("starts");

        // The peer in the records is linked, and its id learnt from the handshake.
        until("b is linked", || linked(&peer, b_id)).await;
        let links = peer.connected_peers();
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[0].address, format!("ws://127.0.0.2:{port}/"));

        // A peer added to the records is linked within two intervals, and serves calls.
        dns.set(
            "peers.test.",
            RecordType::A,
            vec![a([127, 0, 0, 2]), a([127, 0, 0, 3])],
        )
        .await;
        let took = until("c is linked", || linked(&peer, c_id)).await;
        assert!(took <= 2 * INTERVAL, "c linked after {took:?}");
        let ran_on = peer
            .run(async move { remote!(c_id, [] -> PeerId { Scope::current().peer_id() }).await })
            .await;
        assert_eq!(ran_on, Ok(c_id));

        // A peer removed from the records is unlinked within two intervals, on both sides,
        // and not dialled again.
        let mut events = peer.events();
        dns.set("peers.test.", RecordType::A, vec![a([127, 0, 0, 3])])
            .await;
        let took = until("b is unlinked", || !linked(&peer, b_id)).await;
        assert!(took <= 2 * INTERVAL, "b unlinked after {took:?}");
        until("b sees the link gone", || {
            b_handle.connected_peers().is_empty()
        })
        .await;
        assert!(linked(&peer, c_id), "c stays linked");

        // A peer removed while a call is in flight on its link keeps the link until the call
        // is done: the call completes, and the link closes after it.
        let slow = peer.spawn(async move {
            remote!(c_id, [] -> u32 {
                // Well beyond the two intervals the test watches, even on a slow machine.
                tokio::time::sleep(Duration::from_millis(3000)).await;
                7
            })
            .await
        });
        until("the slow call runs on c", || {
            c_handle.metrics().calls_received > 1
        })
        .await;
        dns.set("peers.test.", RecordType::A, vec![]).await;
        let removed = Instant::now();
        // Two intervals pass with the call in flight: the link stays.
        while removed.elapsed() < 2 * INTERVAL {
            assert!(linked(&peer, c_id), "c unlinked with a call in flight");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(slow.await.expect("the call task runs"), Ok(7));
        until("c is unlinked once idle", || !linked(&peer, c_id)).await;

        // Neither removed peer was dialled again.
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(1), events.next()).await
        {
            assert!(
                !matches!(
                    event,
                    PeerEvent::Connected { .. } | PeerEvent::Reconnecting { .. }
                ),
                "removed peers are not dialled again: {event:?}"
            );
        }
        off_thread(move || drop((b, c))).await;
    });
}

#[test]
fn srv_records_link_each_target_at_its_port() {
    let dns = DnsServer::start();
    let b = listening("srv-b", "127.0.0.1:0");
    let c = listening("srv-c", "127.0.0.1:0");
    let (b_id, c_id) = (b.handle().id(), c.handle().id());
    let b_port = b.handle().local_addr().expect("listens").port();
    let c_port = c.handle().local_addr().expect("listens").port();
    block_on(async move {
        // SRV targets are dialled by name; `localhost` needs no record of the test's server.
        let service = "_peer._tcp.peers.test.";
        dns.set(service, RecordType::SRV, vec![srv(b_port, "localhost.")])
            .await;
        let discovery = Discovery::dns(format!("dns+srv://{service}"))
            .nameserver(dns.address)
            .interval(INTERVAL);
        let peer = quick_reconnect(Peer::builder(PeerId::from_name("srv-a")))
            .discover(discovery)
            .start()
            .await
            .expect("starts");
        until("b is linked", || linked(&peer, b_id)).await;
        let links = peer.connected_peers();
        assert_eq!(links[0].address, format!("ws://localhost:{b_port}/"));

        dns.set(
            service,
            RecordType::SRV,
            vec![srv(c_port, "localhost."), srv(b_port, "localhost.")],
        )
        .await;
        let took = until("c is linked", || linked(&peer, c_id)).await;
        assert!(took <= 2 * INTERVAL, "c linked after {took:?}");

        dns.set(service, RecordType::SRV, vec![srv(c_port, "localhost.")])
            .await;
        let took = until("b is unlinked", || !linked(&peer, b_id)).await;
        assert!(took <= 2 * INTERVAL, "b unlinked after {took:?}");
        assert!(linked(&peer, c_id), "c stays linked");
        off_thread(move || drop((b, c))).await;
    });
}

#[test]
fn a_dns_outage_unlinks_nobody() {
    let dns = DnsServer::start();
    let b = listening("outage-b", "127.0.0.1:0");
    let b_id = b.handle().id();
    let b_port = b.handle().local_addr().expect("listens").port();
    block_on(async move {
        let service = "_peer._tcp.outage.test.";
        dns.set(service, RecordType::SRV, vec![srv(b_port, "localhost.")])
            .await;
        let discovery = Discovery::dns(format!("dns+srv://{service}"))
            .nameserver(dns.address)
            .interval(INTERVAL);
        let peer = Peer::builder(PeerId::from_name("outage-a"))
            .discover(discovery)
            .start()
            .await
            .expect("starts");
        until("b is linked", || linked(&peer, b_id)).await;
        // The nameserver goes away: lookups fail (or time out after 2 s) and change nothing.
        off_thread(move || drop(dns)).await;
        let gone = Instant::now();
        while gone.elapsed() < Duration::from_secs(5) {
            assert!(linked(&peer, b_id), "b unlinked during the outage");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        off_thread(move || drop(b)).await;
    });
}

#[test]
fn a_static_list_links_every_peer_even_one_that_starts_later_and_skips_itself() {
    let b = listening("static-b", "127.0.0.1:0");
    let b_url = b.handle().url().expect("listens");
    let (own_port, c_port) = (free_port(), free_port());
    let own_url = format!("ws://127.0.0.1:{own_port}/");
    let c_url = format!("ws://127.0.0.1:{c_port}/");
    let c_id = PeerId::from_name("static-c");
    block_on(async move {
        let discovery = Discovery::urls([b_url.clone(), c_url.clone(), own_url.clone()]);
        let peer = quick_reconnect(Peer::builder(PeerId::from_name("static-a")))
            .listen(format!("127.0.0.1:{own_port}"))
            .discover(discovery)
            .start()
            .await
            .expect("starts");
        let mut events = peer.events();
        until("b is linked", || linked(&peer, b.handle().id())).await;
        // c is not up yet: its dial fails, and is tried again with the backoff until it is.
        let c = off_thread(move || listening("static-c", &format!("127.0.0.1:{c_port}"))).await;
        until("c is linked", || linked(&peer, c_id)).await;
        assert_eq!(peer.connected_peers().len(), 2);
        // Its own address was dialled once (the handshake told it so), never again.
        let mut own = 0;
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(1), events.next()).await
        {
            if matches!(&event, PeerEvent::Refused { address, .. } if *address == own_url) {
                own += 1;
            }
        }
        assert!(own <= 1, "dialled itself {own} times");
        off_thread(move || drop((b, c))).await;
    });
}

#[test]
fn peers_that_discover_each_other_keep_one_link_and_stop_dialling() {
    let (a_port, b_port) = (free_port(), free_port());
    let urls = [
        format!("ws://127.0.0.1:{a_port}/"),
        format!("ws://127.0.0.1:{b_port}/"),
    ];
    let (a_id, b_id) = (PeerId::from_name("mesh-a"), PeerId::from_name("mesh-b"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter("distributed_scope=debug")
        .with_test_writer()
        .try_init();
    let b = PeerThread::start(
        quick_reconnect(Peer::builder(b_id))
            .listen(format!("127.0.0.1:{b_port}"))
            .discover(Discovery::urls(urls.clone())),
    )
    .expect("b starts");
    let b_handle = b.handle().clone();
    block_on(async move {
        let a = quick_reconnect(Peer::builder(a_id))
            .listen(format!("127.0.0.1:{a_port}"))
            .discover(Discovery::urls(urls))
            .start()
            .await
            .expect("a starts");
        let mut events = a.events();
        until("a and b are linked", || {
            a.connected_peers().iter().any(|link| link.peer == b_id)
                && b_handle
                    .connected_peers()
                    .iter()
                    .any(|link| link.peer == a_id)
        })
        .await;
        // Each dialled the other (and itself) once: the second link between them was refused
        // as a duplicate, or replaced if both dialled at once. What that left settles first.
        while let Ok(Some(_settling)) =
            tokio::time::timeout(Duration::from_millis(200), events.next()).await
        {}
        // Then nothing more: with the reconnect backoff at 50..300 ms, a peer that kept
        // dialling the other, or itself, would be refused several times in this window.
        let window = Instant::now();
        while window.elapsed() < Duration::from_millis(1500) {
            if let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(50), events.next()).await
            {
                panic!("the mesh formed, yet: {event:?}");
            }
        }
        assert_eq!(a.connected_peers().len(), 1);
        assert_eq!(b_handle.connected_peers().len(), 1);
        off_thread(move || drop(b)).await;
    });
}

#[test]
fn peers_that_dial_each_other_at_once_keep_one_link_the_same_on_both_sides() {
    for round in 0..5 {
        let (a_id, b_id) = (
            PeerId::from_name(&format!("cross-a-{round}")),
            PeerId::from_name(&format!("cross-b-{round}")),
        );
        let b = PeerThread::start(Peer::builder(b_id).listen("127.0.0.1:0")).expect("b starts");
        let b_handle = b.handle().clone();
        block_on(async move {
            let a = Peer::builder(a_id)
                .listen("127.0.0.1:0")
                .start()
                .await
                .expect("a starts");
            let (a_url, b_url) = (a.url().expect("listens"), b_handle.url().expect("listens"));
            let (to_b, to_a) = futures_util::join!(a.connect(&b_url), b_handle.connect(&a_url));
            // The later dial may be refused by the remote, which holds the earlier link already.
            assert!(to_b.is_ok() || to_a.is_ok(), "{to_b:?} {to_a:?}");
            let one_link = || {
                let (at_a, at_b) = (a.connected_peers(), b_handle.connected_peers());
                at_a.len() == 1 && at_b.len() == 1 && at_a[0].outbound != at_b[0].outbound
            };
            until(
                "one link, outbound on one side and inbound on the other",
                one_link,
            )
            .await;
            // It stays: neither side is left to close it.
            let mut events = a.events();
            if let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(300), events.next()).await
            {
                panic!("round {round}: the link settled, yet: {event:?}");
            }
            assert!(one_link(), "round {round}");
            off_thread(move || drop(b)).await;
        });
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("bound").port()
}

#[test]
fn a_bad_discovery_fails_start_with_a_typed_error() {
    block_on(async {
        let start = |discovery| async move {
            Peer::builder(PeerId::random())
                .discover(discovery)
                .start()
                .await
                .expect_err("a bad discovery fails start")
        };
        let invalid = |error: &Error| match error {
            Error::Discovery(DiscoveryError::InvalidUrl { url, reason }) => {
                format!("{url}: {reason}")
            }
            other => panic!("expected an invalid discovery url, got {other:?}"),
        };
        let error = start(Discovery::dns("http://peers.test:7000/")).await;
        assert!(invalid(&error).contains("the scheme must be dns://"));
        // The cause is kept as the source.
        let source = std::error::Error::source(&error).expect("a source");
        assert!(source.to_string().contains("http://peers.test:7000/"));

        let error = start(Discovery::dns("dns://peers.test/")).await;
        assert!(invalid(&error).contains("needs the peers' port"));
        let error = start(Discovery::dns("dns+srv://_p._tcp.peers.test:7000")).await;
        assert!(invalid(&error).contains("takes no port"));
        let error = start(Discovery::urls(["tcp://peers.test:7000/"])).await;
        assert!(invalid(&error).contains("ws://"));

        let error = start(Discovery::urls(Vec::<String>::new())).await;
        assert!(matches!(
            error,
            Error::Discovery(DiscoveryError::InvalidOption(_))
        ));
        let error =
            start(Discovery::dns("dns://peers.test:7000").interval(Duration::from_millis(1))).await;
        assert!(matches!(
            error,
            Error::Discovery(DiscoveryError::InvalidOption(_))
        ));
        let error = start(Discovery::dns("dns://peers.test:7000").max_addresses(0)).await;
        assert!(matches!(
            error,
            Error::Discovery(DiscoveryError::InvalidOption(_))
        ));
    });
}
