use distributed_scope::{PeerId, remote};

async fn f(server: PeerId) {
    let x = 1u32;
    let _ = remote!(server, [] -> u32 { x + 1 }).await;
}

fn main() {}
