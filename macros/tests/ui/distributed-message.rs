use distributed_scope::{PeerId, distributed, remote};

#[distributed(message = "Demo")]
async fn demo(server: PeerId) {
    let _ = remote!(server, [] -> u32 { 1 }).await;
}

fn main() {}
