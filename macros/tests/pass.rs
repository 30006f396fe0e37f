//! Compile-pass cases: what the macros must accept, and the names they give.

use std::collections::HashMap;

use distributed_scope::{PeerId, RemoteError, distributed, remote, remote_all, remote_block};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    name: String,
    count: u32,
}

async fn nested_three_deep(a: PeerId, b: PeerId, c: PeerId) -> Result<u32, RemoteError> {
    remote!(a, [b: PeerId, c: PeerId] -> Result<u32, RemoteError> {
        let one: u32 = 1;
        remote!(b, [c: PeerId, one: u32] -> Result<u32, RemoteError> {
            let two = one + 1;
            remote!(c, [two: u32] -> u32 { two + 1 }).await
        })
        .await
    })
    .await
}

async fn owned_captures(server: PeerId) -> Result<usize, RemoteError> {
    let text = String::from("hello");
    let items = vec![Item {
        name: "a".into(),
        count: 1,
    }];
    let maybe: Option<u64> = Some(3);
    let table: HashMap<String, Vec<u8>> = HashMap::new();
    let item = Item {
        name: "b".into(),
        count: 2,
    };
    remote!(server, [
        text: String,
        items: Vec<Item>,
        maybe: Option<u64>,
        table: HashMap<String, Vec<u8>>,
        item: Item,
    ] -> usize {
        text.len() + items.len() + maybe.map_or(0, |n| n as usize) + table.len() + item.count as usize
    })
    .await
}

#[distributed]
async fn elided(
    server: PeerId,
    client: PeerId,
    items: Vec<Item>,
) -> Result<(u32, usize), RemoteError> {
    let factor: u32 = 3;
    let total = remote!(server, [items, factor] -> u32 {
        items.iter().map(|item| item.count).sum::<u32>() * factor
    })
    .await?;
    let result = remote!(server, [total, client] -> Result<(u32, usize), RemoteError> {
        let shown = remote!(client, [total] -> String { total.to_string() }).await?;
        Ok((total, shown.len()))
    })
    .await;
    let (total, len) = result?;
    Ok((total, len))
}

/// `remote_all!` in a `#[distributed]` function: named, its captures typed, nested in and
/// around `remote!`, its awaited type known to later captures.
#[distributed]
async fn fan_out(servers: Vec<PeerId>, item: Item) -> Result<usize, RemoteError> {
    let answers = remote_all!(servers.clone(), [item] -> u32 { item.count }).await;
    let quorum = remote_all!(servers.clone(), [] -> Result<u32, RemoteError> { Ok(1) })
        .quorum()
        .await
        .map_or(0, |answers| answers.len());
    remote!(servers[0], [answers, servers, quorum: usize] -> Result<usize, RemoteError> {
        let more = remote_all!(servers, [] -> u8 { 1 }).await;
        Ok(answers.len() + more.len() + quorum)
    })
    .await
}

#[remote_block]
async fn add(x: u32, y: u32) -> u32 {
    x + y
}

/// A result type whose name the default message name would take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobConfig {
    workers: u32,
}

#[remote_block(message = "FetchJobConfig")]
async fn job_config() -> JobConfig {
    JobConfig { workers: 4 }
}

#[remote_block(crate = ::distributed_scope, message = "Scaled")]
async fn scale(config: JobConfig, factor: u32) -> JobConfig {
    JobConfig {
        workers: config.workers * factor,
    }
}

#[remote_block]
async fn worker_stats() -> u64 {
    7
}

/// `self` paths, nested items with their own `self` and `Self`, and `self` as data in a macro
/// are all fine in a `remote!` body.
async fn self_in_nested_items(server: PeerId) -> Result<u32, RemoteError> {
    remote!(server, [] -> u32 {
        struct Wrapper(u32);
        impl Wrapper {
            fn new(value: u32) -> Self {
                Self(value)
            }
            fn get(&self) -> u32 {
                self.0
            }
        }
        let text = stringify!(self.count);
        let closure = |wrapper: Wrapper| wrapper.get();
        closure(Wrapper::new(self::helper())) + text.len() as u32
    })
    .await
}

fn helper() -> u32 {
    1
}

#[test]
fn remote_block_messages_are_built_by_new_or_as_unit_values() {
    let server = PeerId::from_name("server");
    drop(FetchJobConfig.on(server));
    drop(FetchJobConfig::new().on(server));
    drop(WorkerStats.on(server));
    drop(WorkerStats::new().on(server));
    drop(WorkerStats {}.on(server));
    drop(<WorkerStats as Default>::default().on(server));
    assert_eq!(format!("{WorkerStats:?}"), "WorkerStats");
    let add = Add::new(1, 2);
    assert_eq!((add.x, add.y), (1, 2));
    let scaled = Scaled::new(JobConfig { workers: 2 }, 3);
    assert_eq!(scaled.factor, 3);
    drop(scaled.on(server));
    let _ = self_in_nested_items;
    let names: Vec<&str> = distributed_scope::blocks()
        .iter()
        .map(|b| b.name())
        .collect();
    for name in ["pass::job_config", "pass::scale", "pass::worker_stats"] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
}

#[test]
fn blocks_are_registered_with_their_names() {
    let _ = (nested_three_deep, owned_captures, elided, fan_out);
    drop(Add { x: 1, y: 2 }.on(PeerId::from_name("server")));
    let names: Vec<&str> = distributed_scope::blocks()
        .iter()
        .map(|b| b.name())
        .collect();
    for name in [
        "pass::elided#0",
        "pass::elided#1",
        "pass::elided#2",
        "pass::fan_out#0",
        "pass::fan_out#1",
        "pass::fan_out#2",
        "pass::fan_out#3",
        "pass::add",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    let info = distributed_scope::blocks()
        .into_iter()
        .find(|b| b.name() == "pass::elided#0")
        .unwrap();
    assert_eq!(info.captures(), "items: Vec<Item>, factor: u32");
    assert!(
        names.iter().any(|name| name.starts_with("pass@")),
        "{names:?}"
    );
}
