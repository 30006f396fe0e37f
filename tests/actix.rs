//! At home in an actix service: blocks reach the peer's application data, actors call blocks
//! from their handlers, actix-web handlers await blocks, and peers are watched and supervised.
//! Every test runs peers in separate actix systems over real loopback WebSockets.

mod support;

use std::time::{Duration, Instant};

use actix::prelude::*;
use distributed_scope::testing::PeerThread;
use distributed_scope::{
    Error, Peer, PeerEvent, PeerHandle, PeerId, PeerStatus, RemoteError, Scope, remote,
    remote_block,
};
use futures_util::StreamExt;
use support::log::Log;
use support::{LIMIT, block_on, quick_reconnect, server, url};

/// Runs `work` on a thread of its own, so that the actix system of the caller keeps running
/// (a peer thread stopping drains links this system holds).
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        let _gone = done.send(work());
    });
    result.await.expect("the work finished")
}

/// Waits for the first event `matches` accepts.
async fn next_event(
    events: &mut distributed_scope::Events,
    matches: impl Fn(&PeerEvent) -> bool,
) -> PeerEvent {
    loop {
        let event = events.next().await.expect("the peer runs");
        if matches(&event) {
            return event;
        }
    }
}

/// A user's `HttpServer` (one worker, `127.0.0.1:0`) and a peer in their own actix system on
/// their own thread; the app's routes come from `configure`. Stopped and joined when dropped.
struct WebThread {
    peer: PeerHandle,
    addr: std::net::SocketAddr,
    stop: Option<futures_channel::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebThread {
    /// With `signal`, the server stops on the peer's `shutdown_signal` (SIGTERM, SIGINT or
    /// the peer's `stop`); its `shutdown_timeout` is then actix-web's default, 30 s.
    fn start<C>(builder: distributed_scope::PeerBuilder, signal: bool, configure: C) -> Self
    where
        C: Fn(&PeerHandle, &mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
    {
        let (started, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            System::new().block_on(async move {
                let peer = builder.start().await.expect("the peer starts");
                let app_peer = peer.clone();
                let server = actix_web::HttpServer::new(move || {
                    let peer = app_peer.clone();
                    let configure = configure.clone();
                    actix_web::App::new().configure(move |config| configure(&peer, config))
                })
                .workers(1)
                .disable_signals();
                let server = if signal {
                    server.shutdown_signal(peer.shutdown_signal())
                } else {
                    server.shutdown_timeout(1)
                };
                let server = server.bind("127.0.0.1:0").expect("binds 127.0.0.1:0");
                let addr = server.addrs()[0];
                let server = server.run();
                let handle = server.handle();
                actix_web::rt::spawn(server);
                let (stop, stopped) = futures_channel::oneshot::channel();
                if started.send((peer.clone(), addr, stop)).is_ok() {
                    let _dropped = stopped.await;
                }
                handle.stop(false).await;
                let _already = peer.stop().await;
            });
        });
        let (peer, addr, stop) = ready.recv_timeout(LIMIT).expect("the app starts");
        Self {
            peer,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for WebThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopped = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _panicked = thread.join();
        }
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An actor that keeps a running total: the application state a block reaches.
#[derive(Default)]
struct Ledger {
    total: u64,
}

impl Actor for Ledger {
    type Context = Context<Self>;
}

struct Record(u64);

impl Message for Record {
    type Result = u64;
}

impl Handler<Record> for Ledger {
    type Result = u64;

    fn handle(&mut self, Record(amount): Record, _ctx: &mut Context<Self>) -> u64 {
        self.total += amount;
        self.total
    }
}

/// The region a peer serves, registered as application data.
struct Region(&'static str);

/// Records `amount` in the ledger of the peer `target`, and says which region it is.
async fn record_on(target: PeerId, amount: u64) -> Result<(String, u64), RemoteError> {
    remote!(target, [amount: u64] -> Result<(String, u64), RemoteError> {
        let scope = Scope::current();
        let region = scope.data::<Region>().map_or("none", |region| region.0).to_owned();
        let Some(ledger) = scope.data::<Addr<Ledger>>() else {
            return Ok((region, 0));
        };
        let total = ledger.send(Record(amount)).await.unwrap_or_default();
        Ok((region, total))
    })
    .await
}

#[test]
fn a_block_reaches_the_actor_registered_as_data_on_its_peer() {
    let system = System::new();
    let ledger = system.block_on(async { Ledger::default().start() });
    let server = PeerThread::start(
        Peer::builder(PeerId::from_name("data-server"))
            .listen("127.0.0.1:0")
            .data(ledger.clone())
            .data(Region("eu-west")),
    )
    .unwrap();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let (remote, local, total) = system.block_on(async move {
        tokio::time::timeout(LIMIT, async move {
            // The client registers another region and no ledger: each block sees the data
            // of the peer it runs on.
            let client = Peer::builder(PeerId::from_name("data-client"))
                .data(Region("us-east"))
                .start()
                .await
                .unwrap();
            client.connect(&url).await.unwrap();
            let first = client.run(record_on(server_id, 5)).await.unwrap();
            let remote = client.run(record_on(server_id, 7)).await.unwrap();
            assert_eq!(first, ("eu-west".to_owned(), 5));
            let local = client.run(record_on(client.id(), 100)).await.unwrap();
            let total = ledger.send(Record(0)).await.unwrap();
            (remote, local, total)
        })
        .await
        .expect("the test did not finish within its time limit")
    });
    assert_eq!(remote, ("eu-west".to_owned(), 12));
    assert_eq!(local, ("us-east".to_owned(), 0));
    assert_eq!(total, 12);
    drop(server);
}

#[test]
fn data_of_a_type_never_registered_is_none() {
    let found = block_on(async {
        let peer = Peer::builder(PeerId::random()).start().await.unwrap();
        peer.run(async { Scope::current().data::<Region>().is_some() })
            .await
    });
    assert!(!found);
}

/// `x * 2` on `target`.
async fn double(target: PeerId, x: u64) -> Result<u64, RemoteError> {
    remote!(target, [x: u64] -> u64 { x * 2 }).await
}

/// A named block, sent as a message.
#[remote_block]
async fn triple(x: u64) -> u64 {
    x * 3
}

/// A user's actor that prices through blocks on another peer from its handlers.
struct Pricing {
    peer: PeerHandle,
    server: PeerId,
    quotes: u32,
}

impl Actor for Pricing {
    type Context = Context<Self>;
}

struct Quote(u64);

impl Message for Quote {
    type Result = Result<(u64, u32), RemoteError>;
}

impl Handler<Quote> for Pricing {
    type Result = ResponseActFuture<Self, Result<(u64, u32), RemoteError>>;

    fn handle(&mut self, Quote(cents): Quote, _ctx: &mut Context<Self>) -> Self::Result {
        // No clone-and-move: `run` returns a `'static` future.
        Box::pin(
            self.peer
                .run(double(self.server, cents))
                .into_actor(self)
                .map(|doubled, this, _ctx| {
                    this.quotes += 1;
                    Ok((doubled?, this.quotes))
                }),
        )
    }
}

struct BulkQuote(u64);

impl Message for BulkQuote {
    type Result = Result<u64, RemoteError>;
}

impl Handler<BulkQuote> for Pricing {
    type Result = ResponseActFuture<Self, Result<u64, RemoteError>>;

    fn handle(&mut self, BulkQuote(cents): BulkQuote, _ctx: &mut Context<Self>) -> Self::Result {
        Box::pin(
            self.peer
                .send(self.server, Triple { x: cents })
                .into_actor(self),
        )
    }
}

#[test]
fn an_actor_handler_calls_blocks_through_run_and_send_into_actor() {
    let server = server("pricing-server");
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let (first, second, bulk) = block_on(async move {
        let peer = support::connected(PeerId::from_name("pricing-client"), &url).await;
        let pricing = Pricing {
            peer,
            server: server_id,
            quotes: 0,
        }
        .start();
        let first = pricing.send(Quote(21)).await.unwrap();
        let second = pricing.send(Quote(50)).await.unwrap();
        let bulk = pricing.send(BulkQuote(5)).await.unwrap();
        (first, second, bulk)
    });
    assert_eq!(first, Ok((42, 1)));
    assert_eq!(second, Ok((100, 2)));
    assert_eq!(bulk, Ok(15));
}

#[test]
fn send_flattens_the_error_of_a_stopped_peer() {
    let outcome = block_on(async {
        let peer = Peer::builder(PeerId::random()).start().await.unwrap();
        let target = PeerId::random();
        peer.stop().await.unwrap();
        peer.send(target, Triple { x: 1 }).await
    });
    // The peer actor is gone: the mailbox error, kept as the cause; whether a block ran
    // is unknown.
    assert!(
        matches!(&outcome, Err(error @ RemoteError::Mailbox { .. })
            if error.outcome() == distributed_scope::Outcome::Unknown),
        "{outcome:?}"
    );
}

#[test]
fn a_call_to_a_peer_known_down_fails_at_once_unless_it_waits_for_ready() {
    let server_id = PeerId::from_name("ready-server");
    let first = PeerThread::start(Peer::builder(server_id).listen("127.0.0.1:0")).unwrap();
    let addr = first.handle().local_addr().unwrap();
    let url = url(first.handle());
    block_on(async move {
        let plain = quick_reconnect(Peer::builder(PeerId::from_name("ready-plain")))
            .start()
            .await
            .unwrap();
        let patient = quick_reconnect(Peer::builder(PeerId::from_name("ready-patient")))
            .wait_for_ready(true)
            .start()
            .await
            .unwrap();
        let (mut plain_events, mut patient_events) = (plain.events(), patient.events());
        plain.connect(&url).await.unwrap();
        patient.connect(&url).await.unwrap();

        off_thread(move || drop(first)).await;
        let lost = |event: &PeerEvent| matches!(event, PeerEvent::Lost { .. });
        next_event(&mut plain_events, lost).await;
        next_event(&mut patient_events, lost).await;

        // Known down: the call fails at once, long before its deadline.
        let started = Instant::now();
        let refused = plain
            .run(remote!(server_id, [] -> u64 { 1 }).timeout(Duration::from_secs(15)))
            .await;
        assert!(
            matches!(refused, Err(RemoteError::NotConnected { peer, .. }) if peer == server_id),
            "{refused:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );

        // Calls that wait for ready (per call, or by the peer's default) wait for its return.
        let waiting = plain.spawn(async move {
            remote!(server_id, [] -> u64 { 2 })
                .wait_for_ready()
                .timeout(Duration::from_secs(15))
                .await
        });
        let by_default = patient.spawn(async move {
            remote!(server_id, [] -> u64 { 3 })
                .timeout(Duration::from_secs(15))
                .await
        });
        let second = off_thread(move || {
            PeerThread::start(Peer::builder(server_id).listen(addr.to_string())).unwrap()
        })
        .await;
        assert_eq!(waiting.await.unwrap(), Ok(2));
        assert_eq!(by_default.await.unwrap(), Ok(3));
        // Back up: no longer known down.
        let direct = plain.run(remote!(server_id, [] -> u64 { 4 })).await;
        assert_eq!(direct, Ok(4));
        off_thread(move || drop(second)).await;
    });
}

#[test]
fn connect_lazy_links_once_the_server_starts() {
    let server_id = PeerId::from_name("lazy-server");
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("ws://{addr}/");
    block_on(async move {
        let client = quick_reconnect(Peer::builder(PeerId::from_name("lazy-client")))
            .start()
            .await
            .unwrap();
        assert!(matches!(
            client.connect_lazy("http://not-a-peer/"),
            Err(Error::InvalidUrl { .. })
        ));
        let mut events = client.events();
        client.connect_lazy(&url).unwrap();
        // The first dial fails (nothing listens yet) and is tried again.
        next_event(&mut events, |event| {
            matches!(event, PeerEvent::Reconnecting { attempt: 1, .. })
        })
        .await;
        // A call made now waits for the peer, never seen so far.
        let call = client.spawn(async move {
            remote!(server_id, [] -> u64 { 5 })
                .timeout(Duration::from_secs(15))
                .await
        });
        let server =
            off_thread(move || PeerThread::start(Peer::builder(server_id).listen(addr)).unwrap())
                .await;
        assert_eq!(call.await.unwrap(), Ok(5));
        let links = client.connected_peers();
        assert_eq!((links[0].peer, links[0].outbound), (server_id, true));
        off_thread(move || drop(server)).await;
    });
}

/// `GET .../double/{x}`: awaits a block on `web-server` directly in the handler.
async fn double_route(x: actix_web::web::Path<u64>) -> actix_web::Result<String> {
    let server = PeerId::from_name("web-server");
    let x = x.into_inner();
    let doubled = remote!(server, [x: u64] -> u64 { x * 2 })
        .await
        .map_err(actix_web::error::ErrorBadGateway)?;
    Ok(format!("{doubled} via {}", Scope::current().peer_id()))
}

/// Starts an `HttpServer` with this app factory on `127.0.0.1:0` in the current system, one
/// worker; evaluates to its address and handle.
macro_rules! http_server {
    ($factory:expr) => {{
        let server = actix_web::HttpServer::new($factory)
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .bind("127.0.0.1:0")
            .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        (addr, handle)
    }};
}

#[test]
fn an_actix_web_handler_awaits_a_block_under_the_peer_middleware() {
    use actix_web::{App, web};
    let server = server("web-server");
    let url = url(server.handle());
    block_on(async move {
        let peer = support::connected(PeerId::from_name("web-frontend"), &url).await;
        let frontend = peer.clone();
        let (addr, http) = http_server!(move || {
            App::new()
                .service(web::scope("/plain").route("/double/{x}", web::get().to(double_route)))
                .service(
                    web::scope("/scoped")
                        .wrap(frontend.middleware())
                        .route("/double/{x}", web::get().to(double_route)),
                )
        });
        let client = awc::Client::new();
        let mut scoped = client
            .get(format!("http://{addr}/scoped/double/21"))
            .send()
            .await
            .unwrap();
        assert_eq!(scoped.status().as_u16(), 200);
        let body = scoped.body().await.unwrap();
        assert_eq!(body, format!("42 via {}", peer.id()).as_bytes());

        // The same handler outside the middleware has no current peer.
        let mut plain = client
            .get(format!("http://{addr}/plain/double/21"))
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status().as_u16(), 502);
        let body = plain.body().await.unwrap();
        assert!(
            String::from_utf8_lossy(&body).contains("no current peer"),
            "{body:?}"
        );
        http.stop(true).await;
    });
}

/// `GET /me`: the verified principal, as JSON.
async fn me(
    distributed_scope::web::Authenticated(principal): distributed_scope::web::Authenticated,
) -> actix_web::web::Json<serde_json::Value> {
    actix_web::web::Json(serde_json::json!({
        "subject": principal.subject(),
        "roles": principal.roles(),
    }))
}

#[test]
fn the_jwt_middleware_guards_routes_and_the_endpoint_under_it() {
    use distributed_scope::auth::{JwtAuth, Policy};
    use distributed_scope::web::JwtMiddleware;

    // The peer's own key differs from the middleware's: links through the endpoint work only
    // because it takes the principal the middleware verified rather than verifying again.
    let peer_auth = JwtAuth::hs256(b"another secret, also of 32 bytes or more");
    let policy = Policy::deny_all().allow_role("viewer", "blocks::whoami");
    let service_id = PeerId::from_name("jwt-service");
    let app = WebThread::start(
        Peer::builder(service_id).auth(peer_auth, policy),
        false,
        |peer, config| {
            let jwt = JwtMiddleware::new(support::issuer()).expect("a valid configuration");
            config.service(
                actix_web::web::scope("")
                    .wrap(jwt)
                    .route("/me", actix_web::web::get().to(me))
                    .service(peer.endpoint("/scope")),
            );
        },
    );
    assert!(matches!(
        JwtMiddleware::new(JwtAuth::hs256(b"short")),
        Err(distributed_scope::auth::AuthError::WeakSecret { .. })
    ));
    assert_eq!(app.peer.id(), service_id);
    let addr = app.addr;
    let reader = support::issuer()
        .issue("reader", &["viewer"], support::HOUR)
        .unwrap();
    block_on(async move {
        let http = awc::Client::new();
        // No token, a bad token: 401 before the handler.
        let anonymous = http.get(format!("http://{addr}/me")).send().await.unwrap();
        assert_eq!(anonymous.status().as_u16(), 401);
        assert!(anonymous.headers().contains_key("www-authenticate"));
        let forged = http
            .get(format!("http://{addr}/me"))
            .insert_header(("Authorization", "Bearer not.a.token"))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status().as_u16(), 401);
        // A valid token: the handler gets the principal.
        let mut json = http
            .get(format!("http://{addr}/me"))
            .insert_header(("Authorization", format!("Bearer {reader}")))
            .send()
            .await
            .unwrap();
        assert_eq!(json.status().as_u16(), 200);
        let body: serde_json::Value = json.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "subject": "reader", "roles": ["viewer"] })
        );

        // The endpoint under the middleware: no token is 401 at the upgrade ...
        let url = format!("ws://{addr}/scope");
        let stranger = Peer::builder(PeerId::random()).start().await.unwrap();
        match stranger.connect(&url).await {
            Err(Error::Connect { status, .. }) => assert_eq!(status, Some(401)),
            other => panic!("expected 401, got {other:?}"),
        }
        // ... a token the middleware accepts links, with its principal; the peer's policy
        // still decides per block.
        let viewer = Peer::builder(PeerId::random()).start().await.unwrap();
        assert_eq!(
            viewer.connect_with_token(&url, &reader).await.unwrap(),
            service_id
        );
        let whoami = viewer.run(blocks::Whoami {}.on(service_id)).await;
        assert_eq!(
            whoami,
            Ok(Some(("reader".to_owned(), vec!["viewer".to_owned()])))
        );
        let reset = viewer.run(blocks::AdminReset {}.on(service_id)).await;
        assert!(
            matches!(&reset, Err(RemoteError::Forbidden { subject, .. }) if subject == "reader"),
            "{reset:?}"
        );
    });
    drop(app);
}

/// An actor that forwards the statuses it is told to the test.
struct Watcher {
    seen: futures_channel::mpsc::UnboundedSender<PeerStatus>,
}

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<PeerStatus> for Watcher {
    type Result = ();

    fn handle(&mut self, status: PeerStatus, _ctx: &mut Context<Self>) {
        let _test_gone = self.seen.unbounded_send(status);
    }
}

fn watcher() -> (
    Addr<Watcher>,
    futures_channel::mpsc::UnboundedReceiver<PeerStatus>,
) {
    let (seen, statuses) = futures_channel::mpsc::unbounded();
    (Watcher { seen }.start(), statuses)
}

#[test]
fn a_watcher_hears_of_a_lost_peer_and_its_return_but_not_of_blips() {
    let worker_id = PeerId::from_name("watched-worker");
    let first = PeerThread::start(Peer::builder(worker_id).listen("127.0.0.1:0")).unwrap();
    let addr = first.handle().local_addr().unwrap().to_string();
    let url = url(first.handle());
    let restart = move || {
        let addr = addr.clone();
        off_thread(move || PeerThread::start(Peer::builder(worker_id).listen(addr)).unwrap())
    };
    block_on(async move {
        let grace = Duration::from_secs(2);
        let client = quick_reconnect(Peer::builder(PeerId::from_name("watching-client")))
            .watch_grace(grace)
            .start()
            .await
            .unwrap();
        client.connect(&url).await.unwrap();
        let (watching, mut statuses) = watcher();
        client.watch(worker_id, watching.recipient());

        // A blip: the worker restarts on its port and the link is back within the grace.
        let mut events = client.events();
        off_thread(move || drop(first)).await;
        let second = restart().await;
        next_event(&mut events, |event| {
            matches!(event, PeerEvent::Connected { .. })
        })
        .await;

        // Lost for good: the worker stays away past the grace period. This is the first
        // status the watcher hears: the blip told it nothing.
        // Timed from before the worker stops (stopping it takes up to a second itself):
        // the link is lost after this, and the watcher hears of it only a grace later.
        let gone = Instant::now();
        off_thread(move || drop(second)).await;
        let status = statuses.next().await;
        assert_eq!(status, Some(PeerStatus::Lost { peer: worker_id }));
        assert!(gone.elapsed() >= grace * 3 / 4, "{:?}", gone.elapsed());

        // A new watcher of a peer already lost hears so at once.
        let (late, mut late_statuses) = watcher();
        client.watch(worker_id, late.recipient());
        assert_eq!(
            late_statuses.next().await,
            Some(PeerStatus::Lost { peer: worker_id })
        );

        // It comes back: both watchers hear it.
        let third = restart().await;
        let returned = Some(PeerStatus::Returned { peer: worker_id });
        assert_eq!(statuses.next().await, returned);
        assert_eq!(late_statuses.next().await, returned);
        off_thread(move || drop(third)).await;
    });
}

#[test]
fn a_supervised_peer_restarted_by_its_supervisor_relinks() {
    let server = server("supervision-server");
    let server_handle = server.handle().clone();
    let (server_id, url) = (server_handle.id(), url(&server_handle));
    block_on(async move {
        let mut server_events = server_handle.events();
        let peer = quick_reconnect(Peer::builder(PeerId::from_name("supervised")))
            .data(Region("north"))
            .start_supervised()
            .await
            .unwrap();
        let id = peer.id();
        let mut events = peer.events();
        peer.connect(&url).await.unwrap();
        let linked = move |event: &PeerEvent| matches!(event, PeerEvent::Connected { peer, .. } if *peer == id);
        next_event(&mut server_events, linked).await;

        // The peer actor stops as after a failure; its supervisor starts it again.
        peer.restart();
        next_event(&mut events, |event| matches!(event, PeerEvent::Restarted)).await;
        next_event(
            &mut server_events,
            move |event| matches!(event, PeerEvent::Lost { peer, .. } if *peer == id),
        )
        .await;
        next_event(&mut server_events, linked).await;

        // Same id, same data, links both ways.
        peer.wait_for(server_id, LIMIT).await.unwrap();
        assert_eq!(peer.run(double(server_id, 4)).await, Ok(8));
        let from_server = server_handle.run(record_on(id, 1)).await;
        assert_eq!(from_server, Ok(("north".to_owned(), 0)));
        assert_eq!(peer.connected_peers()[0].peer, server_id);

        // Stopping still stops it for good.
        peer.stop().await.unwrap();
        let after = peer.run(double(server_id, 1)).await;
        assert!(
            matches!(after, Err(RemoteError::ShuttingDown { .. })),
            "{after:?}"
        );
    });
    drop(server);
}

#[test]
fn call_failures_log_at_warn_refusals_at_info_with_peer_names() {
    use distributed_scope::auth::Policy;
    let server = PeerThread::start(
        Peer::builder(PeerId::from_name("log-server"))
            .listen("127.0.0.1:0")
            .auth(
                support::issuer(),
                Policy::deny_all().allow_role("viewer", "blocks::whoami"),
            ),
    )
    .unwrap();
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let token = support::issuer()
        .issue_with_peers("reader", &["viewer"], &["log-client"], support::HOUR)
        .unwrap();
    let log = Log::default();
    let subscriber = log.subscriber(tracing::Level::INFO);
    // The caller's side logs where the call is awaited: this thread.
    tracing::subscriber::with_default(subscriber, || {
        block_on(async move {
            let client = Peer::builder(PeerId::from_name("log-client"))
                .start()
                .await
                .unwrap();
            client.connect_with_token(&url, &token).await.unwrap();
            // Named ids read as names where this process knows them.
            let links = format!("{:?}", client.connected_peers());
            assert!(links.contains("log-server("), "{links}");
            let refused = client.run(blocks::AdminReset {}.on(server_id)).await;
            assert!(matches!(refused, Err(RemoteError::Forbidden { .. })));
            let nobody = PeerId::from_name("log-nobody");
            let failed = client
                .run(remote!(nobody, [] -> u64 { 1 }).timeout(Duration::from_millis(50)))
                .await;
            assert!(failed.is_err());
        });
    });
    let text = log.text();
    let line = |needle: &str| {
        text.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_owned()
    };
    let refused = line("call refused");
    assert!(refused.contains(" INFO "), "{refused}");
    assert!(
        refused.contains("block=\"blocks::admin_reset\""),
        "{refused}"
    );
    let failed = line("call failed");
    assert!(failed.contains(" WARN "), "{failed}");
    let nobody = PeerId::from_name("log-nobody");
    assert!(failed.contains(&format!("peer={nobody:#}")), "{failed}");
    assert!(failed.contains("log-nobody("), "{failed}");
    drop(server);
}

#[cfg(unix)]
#[test]
fn a_stop_signal_to_the_hosting_server_closes_the_embedded_peers_links_promptly() {
    // The endpoint's warning comes from the server's worker thread: capture globally.
    let log = Log::default();
    tracing::subscriber::set_global_default(log.subscriber(tracing::Level::WARN))
        .expect("the only global subscriber of this test binary");

    let service_id = PeerId::from_name("signal-service");
    let app = WebThread::start(Peer::builder(service_id), true, |peer, config| {
        config.service(peer.endpoint("/scope"));
    });
    let url = format!("ws://{}/scope", app.addr);
    block_on(async move {
        let client = Peer::builder(PeerId::from_name("signal-client"))
            .start()
            .await
            .unwrap();
        let other = Peer::builder(PeerId::from_name("signal-other"))
            .start()
            .await
            .unwrap();
        let mut events = client.events();
        client.connect(&url).await.unwrap();
        other.connect(&url).await.unwrap();

        // SIGTERM, as a deployment stops the old process: the server's graceful stop would
        // wait 30 s for the WebSockets; the peer closes them first.
        let sent = Instant::now();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        next_event(
            &mut events,
            |event| matches!(event, PeerEvent::Lost { peer, .. } if *peer == service_id),
        )
        .await;
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "{:?}",
            sent.elapsed()
        );
    });
    drop(app);
    let text = log.text();
    let warnings = text
        .lines()
        .filter(|line| line.contains("peer endpoint without auth"))
        .count();
    assert_eq!(warnings, 1, "{text}");
}

#[test]
fn a_peer_without_a_supervisor_restarts_in_place() {
    let server = server("in-place-server");
    let server_handle = server.handle().clone();
    let (server_id, url) = (server_handle.id(), url(&server_handle));
    block_on(async move {
        let mut server_events = server_handle.events();
        let peer = quick_reconnect(Peer::builder(PeerId::from_name("in-place")))
            .start()
            .await
            .unwrap();
        let id = peer.id();
        let mut events = peer.events();
        peer.connect(&url).await.unwrap();
        let linked = move |event: &PeerEvent| matches!(event, PeerEvent::Connected { peer, .. } if *peer == id);
        next_event(&mut server_events, linked).await;
        peer.restart();
        next_event(&mut events, |event| matches!(event, PeerEvent::Restarted)).await;
        next_event(
            &mut server_events,
            move |event| matches!(event, PeerEvent::Lost { peer, .. } if *peer == id),
        )
        .await;
        next_event(&mut server_events, linked).await;
        peer.wait_for(server_id, LIMIT).await.unwrap();
        assert_eq!(peer.run(double(server_id, 5)).await, Ok(10));
        // The actor kept running: it still answers `stop`.
        assert!(peer.stop().await.is_ok());
    });
    drop(server);
}
