use distributed_scope::{PeerId, RemoteError, remote};

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Counter {
    count: u32,
}

impl Counter {
    async fn remote_count(&self, server: PeerId) -> Result<u32, RemoteError> {
        remote!(server, [] -> u32 {
            println!("counting {}", self.count);
            self.count + 1
        })
        .await
    }
}

fn main() {}
