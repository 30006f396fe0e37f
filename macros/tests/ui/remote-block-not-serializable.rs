use distributed_scope::remote_block;

pub struct Secret(u32);

#[remote_block]
async fn reveal(secret: Secret) -> u32 {
    secret.0
}

fn main() {}
