use distributed_scope::{PeerId, remote};

async fn f(server: PeerId) {
    let name = String::from("a");
    let name = name.as_str();
    let _ = remote!(server, [name: &str] -> usize { name.len() }).await;
}

fn main() {}
