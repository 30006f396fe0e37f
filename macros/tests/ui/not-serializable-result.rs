use distributed_scope::{PeerId, remote};

struct Report;

async fn f(server: PeerId) {
    let _ = remote!(server, [] -> Report { Report }).await;
}

fn main() {}
