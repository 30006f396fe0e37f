use distributed_scope::{PeerId, remote};

struct Secret(u32);

async fn f(server: PeerId) {
    let secret = Secret(1);
    let _ = remote!(server, [secret: Secret] -> u32 { secret.0 }).await;
}

fn main() {}
