//! `#[remote_block]` messages over a real socket: a renamed unit message, built as a value
//! with `{}` or with `new()`, sent as an actor message or awaited with `on`.

mod support;

use blocks::{FetchJobConfig, JobConfig};
use distributed_scope::{On, PeerId};
use support::{block_on, server, url};

#[test]
fn a_renamed_unit_message_runs_its_block_on_another_peer() {
    let server = server("messages-server");
    let server_id = server.handle().id();
    let url = url(server.handle());
    let (awaited, sent, built, name) = block_on(async move {
        let client = support::connected(PeerId::from_name("messages-client"), &url).await;
        let awaited = client.run(FetchJobConfig.on(server_id)).await;
        let sent = client
            .addr()
            .send(On::new(server_id, FetchJobConfig::new()))
            .await
            .expect("the peer actor answers");
        let built = client.run(FetchJobConfig {}.on(server_id)).await;
        let name = distributed_scope::blocks()
            .into_iter()
            .find(|block| block.output() == "JobConfig")
            .map(|block| block.name());
        (awaited, sent, built, name)
    });
    let expected = JobConfig {
        workers: 4,
        queue: "default".to_owned(),
    };
    assert_eq!(awaited, Ok(expected.clone()));
    assert_eq!(sent, Ok(expected.clone()));
    assert_eq!(built, Ok(expected));
    assert_eq!(
        name,
        Some("blocks::job_config"),
        "the message name is not the block's"
    );
}
