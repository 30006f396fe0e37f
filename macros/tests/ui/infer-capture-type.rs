use distributed_scope::{PeerId, remote};

async fn f(server: PeerId) {
    let x = vec![1u32];
    let _ = remote!(server, [x: Vec<_>] -> usize { x.len() }).await;
}

fn main() {}
