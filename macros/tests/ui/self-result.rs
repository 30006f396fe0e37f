use distributed_scope::{PeerId, remote};

#[derive(serde::Serialize, serde::Deserialize)]
struct Point(u32);

impl Point {
    async fn fetch(server: PeerId) -> Self {
        remote!(server, [] -> Self { Point(1) }).await.unwrap()
    }
}

fn main() {}
