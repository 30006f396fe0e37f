use distributed_scope::remote_block;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct JobConfig {
    pub workers: u32,
}

#[remote_block]
async fn job_config() -> JobConfig {
    JobConfig { workers: 4 }
}

#[remote_block(message = "JobConfig")]
async fn current_config() -> Option<JobConfig> {
    None
}

fn main() {}
