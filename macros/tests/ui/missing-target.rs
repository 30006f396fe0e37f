use distributed_scope::remote;

async fn f() {
    let x = 1u32;
    let _ = remote!([x: u32] -> u32 { x }).await;
}

fn main() {}
