use std::rc::Rc;

use distributed_scope::{PeerId, remote};

async fn f(server: PeerId) {
    let shared = Rc::new(1u32);
    let _ = remote!(server, [shared: Rc<u32>] -> u32 { *shared }).await;
}

fn main() {}
