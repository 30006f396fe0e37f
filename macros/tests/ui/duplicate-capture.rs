use distributed_scope::{PeerId, remote};

async fn f(server: PeerId) {
    let x = 1u32;
    let _ = remote!(server, [x: u32, x: u32] -> u32 { x }).await;
}

fn main() {}
