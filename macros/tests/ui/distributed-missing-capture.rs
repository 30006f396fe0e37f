use distributed_scope::{PeerId, distributed, remote};

#[distributed]
async fn f(server: PeerId) {
    let x = 1u32;
    let y = 2u32;
    let _ = remote!(server, [y] -> u32 { x + y }).await;
}

fn main() {}
