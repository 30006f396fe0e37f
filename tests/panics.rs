//! A peer keeps serving through thousands of panicking calls. In its own test binary because
//! it silences the panic hook for the whole process.

mod support;

use distributed_scope::{PeerId, RemoteError};
use support::{block_on, server, url};

#[test]
fn ten_thousand_calls_with_panics_mixed_in() {
    // Each panicking block would print a message and a backtrace; keep the output readable.
    std::panic::set_hook(Box::new(|_| {}));
    let server = server("panic-storm");
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let (ok, panicked) = block_on(async move {
        let client = support::connected(PeerId::random(), &url).await;
        let (mut ok, mut panicked) = (0, 0);
        for i in 0..10_000u32 {
            let message = if i % 10 == 0 {
                format!("panic {i}")
            } else {
                String::new()
            };
            match client.run(blocks::panics(server_id, message.clone())).await {
                Ok(0) => ok += 1,
                Err(RemoteError::Panicked { message: seen, .. }) if seen == message => {
                    panicked += 1
                }
                other => panic!("call {i}: unexpected {other:?}"),
            }
        }
        // The caller's counters group failures by kind: 9 is `Panicked`.
        assert_eq!(client.metrics().errors.get(&9), Some(&1_000));
        (ok, panicked)
    });
    let _ = std::panic::take_hook();
    assert_eq!((ok, panicked), (9_000, 1_000));
}
