use distributed_scope::{PeerId, distributed, remote};

#[distributed]
async fn f(server: PeerId) {
    let x = "a".len();
    let _ = remote!(server, [x] -> usize { x }).await;
}

fn main() {}
