use distributed_scope::remote_block;

#[remote_block(message = "fetch config")]
async fn fetch_config() -> u32 {
    1
}

#[remote_block(message = FetchLimits)]
async fn fetch_limits() -> u32 {
    2
}

#[remote_block(message = "type")]
async fn fetch_type() -> u32 {
    3
}

fn main() {}
