use distributed_scope::remote_block;

#[remote_block(name = "fetch")]
async fn fetch() -> u32 {
    1
}

#[remote_block(message = "Once", message = "Twice")]
async fn twice() -> u32 {
    2
}

fn main() {}
