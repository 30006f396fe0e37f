use distributed_scope::{PeerId, remote};

async fn f(server: PeerId) {
    let _ = remote!(server, [] -> impl std::fmt::Debug { 1u32 }).await;
}

fn main() {}
