use distributed_scope::{PeerId, RemoteError, remote_all};

async fn f(replicas: Vec<PeerId>, key: String) -> Vec<(PeerId, Result<u64, RemoteError>)> {
    remote_all!(replicas, [key] -> u64 { key.len() as u64 }).await
}

fn main() {}
