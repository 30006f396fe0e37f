use distributed_scope::{PeerId, distributed, remote};

fn scale() -> u32 {
    2
}

// Without the check, `scale()` in the block would silently call the module function.
#[distributed]
async fn f(server: PeerId) {
    let scale = || 10u32;
    let _ = remote!(server, [] -> u32 { scale() }).await;
    let _ = scale();
}

fn main() {}
