//! Blocks shared by the example binaries (`demo`, `search`, `peer`, ...) and the tests.
//!
//! A block's id includes its module path, so a block must be compiled into every binary
//! that runs it: blocks used across processes live in this library crate, which each of
//! those binaries links. A binary that names none of its items links it with
//! `use blocks as _;` (see `examples/peer.rs`): otherwise the linker leaves it out.

use std::collections::BTreeMap;

use distributed_scope::{
    PeerId, RemoteError, RemoteStream, Scope, remote, remote_block, remote_stream,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// A short label for a peer id in printed hops.
pub fn short(peer: PeerId) -> String {
    peer.to_string()[..8].to_owned()
}

/// The seed's demo: on the server, `a = 42`; the client returns 43 copies of `a`; the server
/// adds 2. Each hop prints where it runs. Result: `([42; 43], 44)`.
pub async fn demo(server: PeerId, client: PeerId) -> Result<(Vec<u32>, u32), RemoteError> {
    remote!(server, [client: PeerId] -> Result<(Vec<u32>, u32), RemoteError> {
        let here = Scope::current();
        let a: u32 = 42;
        println!("  [{}] hop 1: on the server, a = {a}; hopping to the client", crate::short(here.peer_id()));
        let copies = remote!(client, [a: u32] -> Vec<u32> {
            let here = Scope::current();
            println!(
                "  [{}] hop 2: on the client, called by {}; returning {} copies of a",
                crate::short(here.peer_id()),
                crate::short(here.caller()),
                a + 1
            );
            vec![a; (a + 1) as usize]
        })
        .await?;
        println!(
            "  [{}] hop 3: back on the server with {} values; computing a + 2",
            crate::short(here.peer_id()),
            copies.len()
        );
        Ok((copies, a + 2))
    })
    .await
}

/// A -> B -> C -> A: each hop appends the id of the peer it runs on.
pub async fn chain(a: PeerId, b: PeerId, c: PeerId) -> Result<Vec<PeerId>, RemoteError> {
    remote!(a, [b: PeerId, c: PeerId] -> Result<Vec<PeerId>, RemoteError> {
        let visited = vec![Scope::current().peer_id()];
        let home = Scope::current().peer_id();
        remote!(b, [visited: Vec<PeerId>, c: PeerId, home: PeerId] -> Result<Vec<PeerId>, RemoteError> {
            let mut visited = visited;
            visited.push(Scope::current().peer_id());
            remote!(c, [visited: Vec<PeerId>, home: PeerId] -> Result<Vec<PeerId>, RemoteError> {
                let mut visited = visited;
                visited.push(Scope::current().peer_id());
                remote!(home, [visited: Vec<PeerId>] -> Vec<PeerId> {
                    let mut visited = visited;
                    visited.push(Scope::current().peer_id());
                    visited
                })
                .await
            })
            .await
        })
        .await
    })
    .await
}

/// Where a block runs and who called it: `(peer_id, caller)`.
pub async fn whereabouts(target: PeerId) -> Result<(PeerId, PeerId), RemoteError> {
    remote!(target, [] -> (PeerId, PeerId) {
        let scope = Scope::current();
        (scope.peer_id(), scope.caller())
    })
    .await
}

/// Unit, `None` and empty collections through a hop there and back.
pub async fn empties(there: PeerId, back: PeerId) -> Result<EmptyValues, RemoteError> {
    let unit = ();
    let none: Option<u64> = None;
    let list: Vec<String> = Vec::new();
    let map: BTreeMap<String, u32> = BTreeMap::new();
    remote!(there, [unit: (), none: Option<u64>, list: Vec<String>, map: BTreeMap<String, u32>, back: PeerId]
        -> Result<EmptyValues, RemoteError>
    {
        let echoed = remote!(back, [unit: (), none: Option<u64>, list: Vec<String>, map: BTreeMap<String, u32>]
            -> EmptyValues
        {
            EmptyValues { unit, none, list, map }
        })
        .await?;
        remote!(back, [] { }).await?;
        Ok(echoed)
    })
    .await
}

/// Values that must survive every hop unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyValues {
    /// `()`.
    pub unit: (),
    /// `None`.
    pub none: Option<u64>,
    /// `[]`.
    pub list: Vec<String>,
    /// `{}`.
    pub map: BTreeMap<String, u32>,
}

/// A block whose body panics with `message`.
pub async fn panics(target: PeerId, message: String) -> Result<u32, RemoteError> {
    remote!(target, [message: String] -> u32 {
        if !message.is_empty() {
            panic!("{message}");
        }
        0
    })
    .await
}

/// `x + 1` on `target`.
pub async fn increment(target: PeerId, x: u64) -> Result<u64, RemoteError> {
    remote!(target, [x: u64] -> u64 { x + 1 }).await
}

/// A search result of the seed's search-and-display example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The item's title.
    pub title: String,
    /// Its category.
    pub category: String,
}

/// Search filters collected on the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    /// Only items of this category, if set.
    pub category: Option<String>,
    /// At most this many results.
    pub limit: usize,
}

/// The server's "database".
pub fn database() -> Vec<Item> {
    let titles = [
        ("actix in action", "books"),
        ("rust for rustaceans", "books"),
        ("the rust programming language", "books"),
        ("rust-colored paint", "hardware"),
        ("rusty nail", "hardware"),
        ("crab plush", "toys"),
    ];
    titles
        .iter()
        .map(|(title, category)| Item {
            title: (*title).to_owned(),
            category: (*category).to_owned(),
        })
        .collect()
}

/// Runs the search on the server: the seed's `db/search` + `apply-filters` + `take 50`.
pub fn search(query: &str, filters: &Filters) -> Vec<Item> {
    database()
        .into_iter()
        .filter(|item| item.title.contains(query))
        .filter(|item| {
            filters
                .category
                .as_ref()
                .is_none_or(|c| *c == item.category)
        })
        .take(filters.limit)
        .collect()
}

/// The seed's search-and-display: collect the query on the client, search on the server,
/// render the results back on the client. Returns the number of results rendered.
pub async fn search_and_display(
    client: PeerId,
    server: PeerId,
    query: String,
    category: Option<String>,
) -> Result<usize, RemoteError> {
    remote!(client, [client: PeerId, server: PeerId, query: String, category: Option<String>] -> Result<usize, RemoteError> {
        let filters = Filters { category, limit: 50 };
        let results = remote!(server, [query: String, filters: Filters] -> Vec<Item> {
            crate::search(&query, &filters)
        })
        .await?;
        remote!(client, [results: Vec<Item>] -> usize {
            for item in &results {
                println!("  - {} ({})", item.title, item.category);
            }
            results.len()
        })
        .await
    })
    .await
}

/// The seed's search-and-display with the results streamed: the server sends each match as
/// it finds it, and the client renders it as it arrives. Returns the number rendered.
pub async fn search_streaming(
    client: PeerId,
    server: PeerId,
    query: String,
) -> Result<usize, RemoteError> {
    remote!(client, [server: PeerId, query: String] -> Result<usize, RemoteError> {
        let filters = Filters { category: None, limit: 50 };
        let mut results = remote_stream!(server, [query: String, filters: Filters] -> Item {
            futures_util::stream::iter(crate::search(&query, &filters))
        });
        let mut rendered = 0;
        while let Some(item) = results.next().await {
            let item = item?;
            println!("  - {} ({})", item.title, item.category);
            rendered += 1;
        }
        Ok(rendered)
    })
    .await
}

/// `count` items of `size` bytes from `target`, each starting with its index (little-endian
/// `u64`): a stream whose order and completeness a consumer can check.
pub fn numbered(target: PeerId, count: u64, size: u32) -> RemoteStream<Vec<u8>> {
    remote_stream!(target, [count: u64, size: u32] -> Vec<u8> {
        futures_util::stream::iter(0..count).map(move |index| {
            let mut item = vec![0u8; (size as usize).max(8)];
            item[..8].copy_from_slice(&index.to_le_bytes());
            item
        })
    })
}

/// `0, 1, .. count - 1` from `target`, after which the stream neither yields nor ends: for
/// what a consumer sees when the link goes mid-stream.
pub fn then_stall(target: PeerId, count: u64) -> RemoteStream<u64> {
    remote_stream!(target, [count: u64] -> u64 {
        futures_util::stream::iter(0..count).chain(futures_util::stream::pending())
    })
}

/// On `via`: the stream of `0, 3, 6, ..` (`count` numbers) that `source` yields, collected.
/// A peer that calls this with itself as `source` both asks for a stream and produces it.
pub async fn collect_from(
    via: PeerId,
    source: PeerId,
    count: u64,
) -> Result<Vec<u64>, RemoteError> {
    remote!(via, [source: PeerId, count: u64] -> Result<Vec<u64>, RemoteError> {
        remote_stream!(source, [count: u64] -> u64 {
            futures_util::stream::iter(0..count).map(|n| n * 3)
        })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
    })
    .await
}

/// A named block: `Add { x, y }` runs `add` on a peer.
#[remote_block]
pub async fn add(x: u32, y: u32) -> u32 {
    x + y
}

/// The named search block of the auth example: `blocks::search_items`.
#[remote_block]
pub async fn search_items(query: String) -> Vec<Item> {
    search(
        &query,
        &Filters {
            category: None,
            limit: 50,
        },
    )
}

/// How many times [`admin_reset`] ran in this process: the side effect that proves a
/// refused call did not run.
pub static RESETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A privileged block with a side effect: `blocks::admin_reset`.
#[remote_block]
pub async fn admin_reset() -> u64 {
    RESETS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
}

/// The principal the block sees: `(subject, roles)`, or `None` on a link without one.
#[remote_block]
pub async fn whoami() -> Option<(String, Vec<String>)> {
    Scope::current()
        .principal()
        .map(|principal| (principal.subject().to_owned(), principal.roles().to_vec()))
}

/// Sleeps `millis` on `target`, then returns `millis`: a slow block for deadline, liveness and
/// drain tests.
pub async fn nap(target: PeerId, millis: u64) -> Result<u64, RemoteError> {
    remote!(target, [millis: u64] -> u64 {
        Scope::current().sleep(std::time::Duration::from_millis(millis)).await;
        millis
    })
    .await
}

/// Has `server` call a block that only native builds contain on `target` (a browser peer in
/// the browser tests): the target answers `UnknownBlock`, which reaches the first caller as
/// the source of the server block's `Failed`.
pub async fn native_only_hop(server: PeerId, target: PeerId) -> Result<u32, RemoteError> {
    remote!(server, [target: PeerId] -> Result<u32, RemoteError> {
        crate::native_only(target).await
    })
    .await
}

/// A block compiled into native builds only.
#[cfg(not(target_arch = "wasm32"))]
async fn native_only(target: PeerId) -> Result<u32, RemoteError> {
    remote!(target, [] -> u32 { 7 }).await
}

/// The wasm32 stand-in: browsers never serve [`native_only_hop`]'s outer block.
#[cfg(target_arch = "wasm32")]
async fn native_only(_target: PeerId) -> Result<u32, RemoteError> {
    Ok(0)
}

/// Ticks of the block [`abandon_on`] starts, in this process.
pub static SPINS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Has `server` start a ticking block on `target` (deadline 30 s) and drop it after `millis`:
/// the target gets a `Cancel` and must stop the block, so its [`SPINS`] stop growing.
/// Returns whether the server gave up on the call (rather than the call finishing).
pub async fn abandon_on(server: PeerId, target: PeerId, millis: u64) -> Result<bool, RemoteError> {
    remote!(server, [target: PeerId, millis: u64] -> bool {
        use std::future::Future;
        use std::task::Poll;
        let spin = remote!(target, [] -> u8 {
            loop {
                crate::SPINS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Scope::current().sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        let stop = Scope::current().sleep(std::time::Duration::from_millis(millis));
        let mut spin = std::pin::pin!(spin);
        let mut stop = std::pin::pin!(stop);
        // Dropping `spin` when this block ends sends the `Cancel`.
        std::future::poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            spin.as_mut().poll(cx).map(|_| false)
        })
        .await
    })
    .await
}

/// Sleeps `millis` on the peer it runs on, then returns `millis`: `blocks::sleep_for`, a slow
/// block with a fixed name, so that clients writing raw frames can call it by name and id.
#[remote_block]
pub async fn sleep_for(millis: u64) -> u64 {
    Scope::current()
        .sleep(std::time::Duration::from_millis(millis))
        .await;
    millis
}

/// Returns `data` as it came: `blocks::echo`, a round trip of any size.
#[remote_block]
pub async fn echo(data: Vec<u8>) -> Vec<u8> {
    data
}

/// A job's configuration: named like the block that fetches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobConfig {
    /// Worker threads.
    pub workers: u32,
    /// The queue the jobs come from.
    pub queue: String,
}

/// `blocks::job_config`, a block without parameters whose default message name would be
/// its result type's: its unit message is `FetchJobConfig`.
#[remote_block(message = "FetchJobConfig")]
pub async fn job_config() -> JobConfig {
    JobConfig {
        workers: 4,
        queue: "default".to_owned(),
    }
}

// Native only: the browser peer has no actix actors.
#[cfg(not(target_arch = "wasm32"))]
pub mod jobs;
