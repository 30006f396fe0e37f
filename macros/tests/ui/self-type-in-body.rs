use distributed_scope::{PeerId, RemoteError, remote};

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter {
    count: u32,
}

impl Counter {
    async fn fresh(server: PeerId) -> Result<u32, RemoteError> {
        remote!(server, [] -> u32 { Self::default().count }).await
    }
}

fn main() {}
