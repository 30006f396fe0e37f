use distributed_scope::{PeerId, distributed, remote};

#[distributed]
async fn f<T: Clone>(server: PeerId, value: T) {
    let _ = remote!(server, [value] { let _ = value; }).await;
}

fn main() {}
