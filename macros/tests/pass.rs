//! Compile-pass cases: what the macros must accept, and the names they give.

use std::collections::HashMap;

use distributed_scope::{PeerId, RemoteError, distributed, remote, remote_block};
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

#[remote_block]
async fn add(x: u32, y: u32) -> u32 {
    x + y
}

#[test]
fn blocks_are_registered_with_their_names() {
    let _ = (nested_three_deep, owned_captures, elided);
    drop(Add { x: 1, y: 2 }.on(PeerId::from_name("server")));
    let names: Vec<&str> = distributed_scope::blocks()
        .iter()
        .map(|b| b.name())
        .collect();
    for name in [
        "pass::elided#0",
        "pass::elided#1",
        "pass::elided#2",
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
