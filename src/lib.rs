//! Run a block of code on another peer as if it were local.
//!
//! A [`remote!`] block names the peer it runs on and the variables that travel with it. The
//! variables are serialized, the block runs on the target peer, and its result comes back.
//! Blocks nest (A -> B -> C), peers are actix actors linked by WebSockets, and every block
//! compiled into a binary is registered at link time, so a peer runs any block its build
//! contains without a hand-written message type, serializer or router.
//!
//! # Example
//!
//! ```no_run
//! use distributed_scope::{remote, Peer, PeerId, RemoteError};
//!
//! async fn demo(server: PeerId, client: PeerId) -> Result<(Vec<u32>, u32), RemoteError> {
//!     // Runs on the server; `client` travels with the block.
//!     remote!(server, [client: PeerId] -> Result<(Vec<u32>, u32), RemoteError> {
//!         let a: u32 = 42;
//!         // Hops back to the client with `a`.
//!         let copies = remote!(client, [a: u32] -> Vec<u32> { vec![a; 43] }).await?;
//!         Ok((copies, a + 2))
//!     })
//!     .await
//! }
//!
//! # #[actix_rt::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server_id = PeerId::from_name("server");
//! let client_id = PeerId::from_name("client");
//! let server = Peer::builder(server_id).listen("127.0.0.1:0").start().await?;
//! let client = Peer::builder(client_id).start().await?;
//! client.connect(&server.url().unwrap()).await?;
//! let (copies, sum) = client.run(demo(server_id, client_id)).await?;
//! assert_eq!((copies.len(), sum), (43, 44));
//! # Ok(()) }
//! ```
//!
//! # Entry points
//!
//! ## Embedding in your actix-web service
//!
//! A peer need not own a server: [`PeerHandle::endpoint`] is an actix-web resource to mount in
//! your own `App`, beside your routes and under your middleware and TLS, with the same
//! handshake, limits and auth as [`PeerBuilder::listen`]. Peers connect to
//! `ws://HOST:PORT/scope` (`examples/embedded.rs`).
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use distributed_scope::{Peer, PeerId};
//!
//! # #[actix_web::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let peer = Peer::builder(PeerId::from_name("service")).start().await?;
//! HttpServer::new(move || {
//!     App::new()
//!         .route("/health", web::get().to(|| async { "ok" }))
//!         .service(peer.endpoint("/scope"))
//! })
//! .bind("127.0.0.1:8080")?
//! .run()
//! .await?;
//! # Ok(()) }
//! ```
//!
//! ## TLS (`wss://`)
//!
//! [`PeerHandle::connect`] speaks `wss://` through rustls (re-exported as [`rustls`]) with the
//! `aws-lc-rs` provider. It trusts the Mozilla roots (`webpki-roots`) unless given other roots
//! ([`PeerBuilder::tls_roots`]) or a whole client configuration
//! ([`PeerBuilder::tls_client_config`]). A peer serves TLS itself with
//! [`PeerBuilder::listen_tls`], or from your own `HttpServer::bind_rustls_0_23` with
//! [`PeerHandle::endpoint`].
//!
//! ```no_run
//! use distributed_scope::rustls::{ServerConfig, pki_types::CertificateDer};
//! use distributed_scope::{Peer, PeerId};
//!
//! # async fn example(config: ServerConfig, ca: CertificateDer<'static>) -> Result<(), distributed_scope::Error> {
//! let server = Peer::builder(PeerId::from_name("server"))
//!     .listen_tls("0.0.0.0:7443", config)
//!     .start()
//!     .await?;
//! let client = Peer::builder(PeerId::from_name("client"))
//!     .tls_roots([ca])
//!     .start()
//!     .await?;
//! client.connect("wss://server.example:7443/").await?;
//! # Ok(()) }
//! ```
//!
//! ## Lifecycle, metrics and introspection
//!
//! [`PeerHandle::events`] streams [`PeerEvent`]s (connected, lost, reconnecting, refused with
//! its reason); [`PeerHandle::wait_for`] waits for a link; [`PeerHandle::disconnect`] closes
//! one for good; [`PeerHandle::connected_peers`] lists the live links with their direction,
//! address, principal and application version; [`PeerHandle::metrics`] reads the counters.
//! [`blocks()`] lists the blocks compiled into the binary (`peer --list-blocks` prints them).
//!
//! A peer runs the blocks compiled into its binary. When they live in a library crate that
//! the binary never names (a server that only serves them), the linker leaves that crate
//! out, and its blocks with it; `use my_blocks as _;` keeps it in. A peer whose binary has no
//! block at all says so at start, as a WARN with that line, and a call for a block of a crate
//! the binary has no block of logs the same hint.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use distributed_scope::{PeerEvent, PeerHandle, PeerId};
//! use futures_util::StreamExt;
//!
//! # async fn example(peer: PeerHandle, server: PeerId) -> Result<(), Box<dyn std::error::Error>> {
//! let mut events = peer.events();
//! peer.wait_for(server, Duration::from_secs(5)).await?;
//! for link in peer.connected_peers() {
//!     println!("{} at {} (outbound: {}, version {:?})", link.peer, link.address, link.outbound, link.app_version);
//! }
//! let metrics = peer.metrics();
//! println!("{} calls sent, errors by kind {:?}", metrics.calls_sent, metrics.errors);
//! while let Some(event) = events.next().await {
//!     if let PeerEvent::Lost { peer, reason } = event {
//!         println!("lost {peer}: {reason}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## Tracing
//!
//! Each call is a `tracing` span (target `distributed_scope::call`, level INFO) on both sides:
//! `call` on the caller and `serve` on the callee, with the fields `block`, `block_id`,
//! `call_id`, `trace_id`, `caller`, `callee`, `deadline_ms`, then `outcome` (`ok` or `error`,
//! with `error` and `error_code`) and `duration_ms`; a `call` also has `local` and, when made
//! from another call, `parent_id`. The trace context travels in the call's metadata as a W3C
//! `traceparent`: the callee's `serve` span has the caller's `call_id`, and the calls it makes
//! name that id as `parent_id`, so one `trace_id` links A -> B -> C. A call that fails is also
//! logged by its caller at WARN (`call failed`), or at INFO for an expected refusal
//! (`Forbidden`, `Unauthenticated`: `call refused`), with the block and the peer's
//! [`label`](PeerId::label). Without a subscriber
//! interested in these spans, no trace context is created and calls carry no metadata.
//!
//! ```
//! use tracing_subscriber::fmt::format::FmtSpan;
//!
//! // Log every call span when it closes, with its fields and timing.
//! tracing_subscriber::fmt()
//!     .with_env_filter("distributed_scope::call=info")
//!     .with_span_events(FmtSpan::CLOSE)
//!     .init();
//! ```
//!
//! ## Tests
//!
//! [`testing::Cluster`] starts named peers, each in its own actix system on its own thread,
//! linked over loopback (a full mesh unless told which links to open), and stops them and
//! joins their threads when dropped. [`testing::PeerThread`] is one such peer.
//! [`PeerBuilder::serialize_local`] sends even local calls through serialization.
//!
//! ```no_run
//! use distributed_scope::testing::Cluster;
//!
//! let cluster = Cluster::builder()
//!     .peers(["a", "b", "c"])
//!     .link("a", "b")
//!     .link("b", "c")
//!     .start()?;
//! assert_eq!(cluster.handle("b").connected_peers().len(), 2);
//! # Ok::<(), distributed_scope::Error>(())
//! ```
//!
//! # Options
//!
//! Set on [`PeerBuilder`]; the defaults are those of [`Config`].
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `default_deadline` | 30 s | deadline of a call that sets none |
//! | `ping_interval` | 3 s | how often a link is probed |
//! | `liveness_timeout` | 10 s | a link silent this long is dropped; its calls fail `ConnectionLost` |
//! | `max_message_size` | 16 MiB | largest message sent or accepted (at most 1 GiB) |
//! | `max_inbound_calls` | 4 096 per link | calls of one link running here at once |
//! | `max_queued_calls` | 4 096 per link | calls waiting beyond that; then `Overloaded` |
//! | `max_queued_bytes` | 64 MiB per link | captures waiting beyond that; then `Overloaded` |
//! | `max_pending_outbound` | 4 096 per link | calls this peer has pending on a link; more wait until their deadline |
//! | `max_publications_in_flight` | 256 per link | publications sent to a subscriber and not answered yet; more are dropped and counted |
//! | `max_topics_per_remote` | 256 per link | topics one linked peer may subscribe to here; more are refused |
//! | `handshake_timeout` | 10 s | time a new link has for its handshake |
//! | `connect_timeout` | 10 s | time opening a connection may take |
//! | `drain_timeout` | 5 s | time `stop()` lets in-flight calls finish |
//! | `reconnect` | 0.5 s, x1.6, cap 30 s, +-20 % | backoff of outbound links that went down |
//! | `wait_for_ready` | false | calls to a peer known down wait until their deadline instead of failing at once |
//! | `watch_grace` | 5 s | time a watched peer may be without a link before its watchers hear `PeerStatus::Lost` |
//! | `app_version` | none | application version announced in the handshake |
//! | `refuse_app_version_mismatch` | false | refuse links with another `app_version` |
//! | `workers` | 1 | HTTP worker threads of a listening peer |
//! | `serialize_local` | false | serialize calls to the peer itself, as if remote |
//! | `listen_tls` | plain `ws://` | serve `wss://` with a rustls `ServerConfig` |
//! | `tls_roots` / `tls_client_config` | Mozilla roots (`webpki-roots`) | what `wss://` links trust |
//!
//! Rolling upgrades (block ids, `app_version`) are described in `docs/upgrade.md`.
//!
//! # What a block body can and cannot do
//!
//! The body of a block compiles as a nested `async fn` whose parameters are the captures.
//! It sees the items of its module, but no local variable of the code around it: using one
//! without capturing it is rustc's error E0434 ("can't capture dynamic environment in a fn
//! item") at that variable. The fix is to add it to the capture list (`[x: u32]`), not the
//! closure form that rustc's help suggests. A macro cannot tell an outer local from a module
//! item, so only [`#[distributed]`](distributed), which sees the whole function, reports the
//! variable with its own message. For the same reason a body has no `self` and no `Self`:
//! [`remote!`] reports either at the token (write `let this = self.clone();` before the
//! block, capture `this: Type` and use `this`), and no outer generic parameters. `?` and `return` apply to the block. Captures and results are owned,
//! concrete `Serialize + DeserializeOwned + Send + 'static` types; serde features that need a
//! self-describing format (`serde_json::Value`, untagged, flattened or internally tagged
//! enums, `skip_serializing_if`) are not supported by the wire format and fail as
//! [`RemoteError::Decode`]. Bodies need not be `Send`: they run on the actix thread that
//! handles the call.
//!
//! A block whose result type is spelled `Result<T, RemoteError>` is flattened: the call
//! yields `Result<T, RemoteError>`, so `?` works inside bodies. An `Err` the body returns
//! reaches the caller as [`RemoteError::Failed`], which says the block ran
//! ([`Outcome::Ran`], not retryable) and keeps the body's error as its source.

#[allow(
    unused_extern_crates,
    reason = "lets `#[remote_block]` expansions name `::distributed_scope` inside this crate"
)]
extern crate self as distributed_scope;

mod all;
mod blob;
mod block;
#[cfg(target_arch = "wasm32")]
mod browser;
mod budget;
mod call;
mod error;
mod id;
mod link;
mod manifest;
mod runtime;
mod scope;
mod stream;
mod trace;
mod wire;

#[cfg(not(target_arch = "wasm32"))]
mod peer;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
#[cfg(not(target_arch = "wasm32"))]
mod transport;

pub use crate::all::{RemoteAll, Unreached};
pub use crate::blob::Bytes;
pub use crate::block::{BlockInfo, blocks};
#[cfg(target_arch = "wasm32")]
pub use crate::browser::{BrowserPeer, BrowserPeerBuilder};
pub use crate::call::RemoteCall;
pub use crate::error::{Error, HandshakeError, Outcome, RemoteError};
pub use crate::id::PeerId;
pub use crate::link::{Backoff, Metrics};
pub use crate::manifest::RemoteBlock;
#[cfg(all(feature = "auth", not(target_arch = "wasm32")))]
pub use crate::peer::Expected;
#[cfg(not(target_arch = "wasm32"))]
pub use crate::peer::{
    Config, DEFAULT_SUBSCRIPTION_CAPACITY, Discovery, DiscoveryError, Events, LinkInfo,
    MAX_TOPIC_LEN, On, Peer, PeerBuilder, PeerEvent, PeerHandle, PeerStatus, PubSubMetrics,
    QUEUED_PUBLICATIONS, Subscription,
};
pub use crate::scope::Scope;
pub use crate::stream::RemoteStream;
pub use crate::wire::{DEFAULT_MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE_CEILING};
pub use distributed_scope_macros::{distributed, remote_block};

/// JWT keys, principals and policies (the `auth` feature, on by default).
#[cfg(feature = "auth")]
pub use distributed_scope_auth as auth;

/// The actix-web side of a peer, for the user's own `App`: [`PeerMiddleware`](web::PeerMiddleware)
/// (handlers await blocks directly), and, with the `auth` feature,
/// [`JwtMiddleware`](web::JwtMiddleware) (JWT on any route, 401 before the handler) with its
/// [`Authenticated`](web::Authenticated) extractor.
#[cfg(not(target_arch = "wasm32"))]
pub mod web {
    #[cfg(feature = "auth")]
    pub use crate::peer::{Authenticated, JwtMiddleware, JwtMiddlewareService};
    pub use crate::peer::{PeerMiddleware, PeerMiddlewareService};
}

/// The actix version this crate is built on, for users' own actors.
#[cfg(not(target_arch = "wasm32"))]
pub use actix;

/// The rustls version this crate is built on, for TLS configurations
/// ([`PeerBuilder::listen_tls`], [`PeerBuilder::tls_roots`], [`PeerBuilder::tls_client_config`]).
#[cfg(not(target_arch = "wasm32"))]
pub use rustls;

/// Runs a block of code on a peer: `remote!(target, [captures] -> T { body })`.
///
/// `target` is any [`PeerId`] expression; each capture is `name: Type` and moves the local
/// variable `name` into the block; `-> T` may be omitted for `()`. The macro evaluates to a
/// [`RemoteCall<T>`], a lazy future of `Result<T, RemoteError>`. If `T` is spelled
/// `Result<U, RemoteError>`, the call yields `Result<U, RemoteError>` instead.
///
/// ```no_run
/// # use distributed_scope::{remote, PeerId, RemoteError};
/// # async fn f(server: PeerId) -> Result<(), RemoteError> {
/// let x = 41;
/// let y: u32 = remote!(server, [x: u32] -> u32 { x + 1 }).await?;
/// # Ok(()) }
/// ```
///
/// # What it expands to
///
/// Inside a block expression:
/// - `struct __RemoteBlock((A, (B, ())))`, the block's message type holding the captures;
/// - `const _: () = check::<A>();` for each capture type and the result type, spanned at the
///   type: a type that is not `Serialize + DeserializeOwned + Send + 'static` is an error
///   there, saying so;
/// - `impl Block for __RemoteBlock` (the internal trait: id, name, run), whose `run` holds
///   `async fn __body(a: A, b: B) -> T { body }`, the body as a nested function;
/// - natively, `impl actix::Message for __RemoteBlock` with `Result = Result<T, RemoteError>`;
/// - an `inventory::submit!` of the block's registry entry;
/// - the call, `RemoteCall::<T>::new(target, __RemoteBlock((a, (b, ()))))` (reached, like the
///   registry entry, through one internal constant so that a bad type is reported once more
///   at most, at the macro call).
///
/// A mistake the macro detects (a capture without a type, a duplicate capture, a reference,
/// `impl Trait`, `_` or `Self` as a type, `self` or `Self` in the body) is reported at the
/// offending tokens, and the macro still evaluates to a `RemoteCall<T>` so that no second
/// error follows. An outer local variable used in the body without being captured is rustc's
/// E0434 at the variable: capture it (`[x: u32]`) rather than follow rustc's help about
/// closures.
///
/// # Names and ids
///
/// The block's name is `module::path@line:column` of the macro call (`module::fn#i` inside a
/// [`#[distributed]`](distributed) function). Its id is a 64-bit
/// FNV-1a hash over a canonical walk of the block's tokens (identifiers, punctuation,
/// literals, delimiters: not the compiler's spacing), its capture and result types as spelled,
/// combined with `module_path!()`. Reformatting a block or moving it within its module keeps
/// its id; changing its text or types changes it, and a peer built from other code answers
/// [`RemoteError::VersionMismatch`] or [`RemoteError::UnknownBlock`] rather than running it.
///
/// A peer finds an anonymous block by its id, so a build with lines added above the block,
/// which names it differently, still calls it. Its `module@line:col` name is for logs and
/// policies: the peer that runs the block authorizes the name it gives the block itself
/// (see [`BlockInfo::name`]). Named blocks must match by name and id.
#[macro_export]
macro_rules! remote {
    ($($input:tt)*) => {
        $crate::__private::remote_impl! { $crate; $($input)* }
    };
}

/// Runs a block on a peer that yields a stream of items:
/// `remote_stream!(target, [captures] -> Item { body })`.
///
/// The body evaluates to any [`Stream`](futures_util::Stream) of `Item` (a
/// `futures::stream::iter`, an `async_stream::stream!`, a channel's receiver); it may await
/// `remote!` calls before it returns the stream, and the stream itself may consume other
/// `remote_stream!`s. The macro evaluates to a [`RemoteStream<Item>`], a lazy
/// `Stream<Item = Result<Item, RemoteError>>` that ends when the body's stream ends. Captures,
/// checks, registration, names, ids and authorization are those of [`remote!`]; a stream
/// block is its own kind of block (a `remote!` of the same tokens has another id).
///
/// ```no_run
/// # use distributed_scope::{remote_stream, PeerId, RemoteError};
/// use futures_util::StreamExt;
/// # async fn f(server: PeerId) -> Result<(), RemoteError> {
/// let limit = 3;
/// let mut squares = remote_stream!(server, [limit: u32] -> u32 {
///     futures_util::stream::iter((1..=limit).map(|n| n * n))
/// });
/// while let Some(square) = squares.next().await {
///     println!("{}", square?);
/// }
/// # Ok(()) }
/// ```
///
/// Flow control, cancellation on drop, deadlines and how a lost link ends the stream are
/// described at [`RemoteStream`].
#[macro_export]
macro_rules! remote_stream {
    ($($input:tt)*) => {
        $crate::__private::remote_stream_impl! { $crate; $($input)* }
    };
}

/// Runs a block on several peers at once: `remote_all!(targets, [captures] -> T { body })`.
///
/// `targets` is any `IntoIterator<Item = PeerId>`; the captures, the result type and the
/// body are those of [`remote!`], with the same checks. The macro evaluates to a
/// [`RemoteAll<T>`]: awaiting it runs the block on every target concurrently and gives
/// `Vec<(PeerId, Result<T, RemoteError>)>`, one result per target in the order of the
/// targets. The captures are encoded once and the same bytes go to each peer, so they need
/// not be `Clone`. [`RemoteAll::timeout`] sets each peer's own deadline;
/// [`RemoteAll::first`] and [`RemoteAll::quorum`] resolve as soon as enough peers succeeded
/// (or cannot any more) and cancel the calls still running.
///
/// ```no_run
/// # use std::time::Duration;
/// # use distributed_scope::{remote_all, PeerId, RemoteError, Unreached};
/// # async fn f(replicas: Vec<PeerId>) -> Result<(), Unreached> {
/// let key = String::from("answer");
/// // Every replica's answer, in the order of `replicas`.
/// let all: Vec<(PeerId, Result<u64, RemoteError>)> =
///     remote_all!(replicas.clone(), [key: String] -> u64 { key.len() as u64 }).await;
/// // The answers of a majority, as soon as they are in; the slower calls are cancelled.
/// let key = String::from("answer");
/// let majority: Vec<(PeerId, u64)> = remote_all!(replicas, [key: String] -> u64 { key.len() as u64 })
///     .timeout(Duration::from_secs(2))
///     .quorum()
///     .await?;
/// # Ok(()) }
/// ```
///
/// # What it expands to
///
/// The items of [`remote!`] (the block type, its checks, `impl Block`, the registration:
/// the same name and id as a `remote!` with the same tokens would have), then the call,
/// `RemoteAll::<T>::new(targets.into_iter().collect(), __RemoteBlock((a, (b, ()))))`,
/// reached through the same internal constant. Inside a
/// [`#[distributed]`](distributed) function it is named and its capture types filled in as a
/// `remote!` is.
#[macro_export]
macro_rules! remote_all {
    ($($input:tt)*) => {
        $crate::__private::remote_all_impl! { $crate; $($input)* }
    };
}

/// Internals used by the generated code. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::all::RemoteAll;
    pub use crate::block::{Block, BlockEntry, BlockInfo, block_id};
    pub use crate::call::RemoteCall;
    pub use crate::error::RemoteError;
    pub use crate::stream::{RemoteStream, items_of};
    pub use distributed_scope_macros::{remote_all_impl, remote_impl, remote_stream_impl};
    pub use futures_util::Stream;
    pub use futures_util::stream::LocalBoxStream;
    pub use inventory;
    pub use serde;

    #[cfg(not(target_arch = "wasm32"))]
    pub use actix;

    /// What every capture and result type must be. Sealed by its blanket impl; named in
    /// the generated code so that a bad type gets one error with this message, at the type.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot travel with a block: captures and results must be `Serialize + DeserializeOwned + Send + 'static`",
        label = "this type cannot be sent to or from another peer",
        note = "derive `serde::Serialize` and `serde::Deserialize` for your own types, and use owned, thread-safe data (`String`, `Vec<T>`, `Arc<T>`, not `&T` or `Rc<T>`)"
    )]
    pub trait Capture: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}

    #[diagnostic::do_not_recommend]
    impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Capture for T {}

    /// Asserts `T: Capture` where the generated code names a capture or result type.
    pub const fn check<T: Capture>() {}

    /// The generated code reaches a block's registry entry and call through this one
    /// constant, at one span, so that an unsatisfied `Capture` bound is reported once.
    pub trait Parts: Block {
        /// The registry entry of the block, and how to call it.
        const PARTS: (BlockEntry, Call<Self>) = (BlockEntry::of::<Self>(), RemoteCall::new::<Self>);
        /// How to call the block on several peers (`remote_all!`).
        const ALL: CallAll<Self> = RemoteAll::new::<Self>;
    }

    /// How the generated code calls a block on several peers.
    pub type CallAll<B> = fn(Vec<crate::PeerId>, B) -> RemoteAll<<B as Block>::Output>;

    /// The targets of a `remote_all!`, in their order.
    pub fn targets(targets: impl IntoIterator<Item = crate::PeerId>) -> Vec<crate::PeerId> {
        targets.into_iter().collect()
    }

    /// How the generated code calls a block on a peer.
    pub type Call<B> = fn(crate::PeerId, B) -> RemoteCall<<B as Block>::Output>;

    impl<B: Block> Parts for B {}

    /// [`Parts`] of a `remote_stream!` block: its registry entry, and how to call it.
    pub trait StreamParts: Block {
        /// The registry entry of the block, and how to call it.
        const PARTS: (BlockEntry, StreamCall<Self>) = (
            BlockEntry::streaming::<Self>(crate::stream::invoke::<Self>),
            RemoteStream::new::<Self>,
        );
    }

    /// How the generated code calls a stream block on a peer.
    pub type StreamCall<B> = fn(crate::PeerId, B) -> RemoteStream<<B as Block>::Output>;

    impl<B: Block> StreamParts for B {}

    /// The `run` of a stream block, which is only ever run as a stream.
    pub async fn not_a_call<T>(name: &'static str) -> Result<T, RemoteError> {
        Err(RemoteError::VersionMismatch {
            peer: None,
            block: name.to_owned(),
        })
    }

    /// The value of a `remote!` that failed to compile: it type-checks as anything, so that
    /// one mistake gives one error. Never called.
    pub fn never<T>() -> T {
        unreachable!("the fallback expansion of a `remote!` block that failed to compile")
    }

    /// Runs the peer's frame and handshake decoding on untrusted bytes (for the fuzz target).
    pub fn fuzz_decode(bytes: &[u8]) {
        let _frame = crate::wire::decode::<crate::wire::Frame<'_>>(bytes, 1 << 20);
        let _fast = crate::wire::decode_frame(bytes, 1 << 20);
        let _hello = crate::wire::Hello::from_bytes(bytes);
    }

    /// A `Vec<u8>` capture or result as it travels: one byte string (a length, then the
    /// bytes, the same bytes serde's sequence of `u8` makes), written and read in one copy.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ByteVec(pub Vec<u8>);

    impl serde::Serialize for ByteVec {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&self.0)
        }
    }

    impl<'de> serde::Deserialize<'de> for ByteVec {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = ByteVec;

                fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    f.write_str("a byte string")
                }

                fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<ByteVec, E> {
                    Ok(ByteVec(bytes.to_vec()))
                }

                fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<ByteVec, E> {
                    Ok(ByteVec(bytes))
                }

                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<ByteVec, A::Error> {
                    let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                    while let Some(byte) = seq.next_element()? {
                        bytes.push(byte);
                    }
                    Ok(ByteVec(bytes))
                }
            }
            deserializer.deserialize_byte_buf(Visit)
        }
    }

    /// Wraps a body that returns `T` into one that returns `Result<T, RemoteError>`.
    pub async fn ok<T>(body: impl core::future::Future<Output = T>) -> Result<T, RemoteError> {
        Ok(body.await)
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
