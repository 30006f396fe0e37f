//! `testing::Cluster`: peers in their own actix systems, linked as asked, torn down on drop.

mod support;

use std::sync::Mutex;

use distributed_scope::testing::Cluster;
use support::block_on;

/// One cluster at a time in this binary, so that its threads can be counted.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Threads of the peers' runtimes: peer threads and actix-web's server threads.
fn runtime_threads() -> Vec<String> {
    thread_names()
        .into_iter()
        .filter(|name| name.starts_with("peer-") || name.starts_with("actix-"))
        .collect()
}

/// Waits until no runtime thread is left. The peer threads are joined by the time
/// `Cluster` is dropped; actix-web's worker threads (arbiters that actix-server does not
/// expose for joining) end right after their server stopped, so this polls for them, within
/// the test's time limit.
fn no_runtime_threads_left() {
    let deadline = std::time::Instant::now() + support::LIMIT;
    while !runtime_threads().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "threads left running: {:?}",
            runtime_threads()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The names of this process's threads (Linux; empty elsewhere).
fn thread_names() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn three_peers_run_the_demo_and_shut_down_cleanly() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    no_runtime_threads_left();
    let cluster = Cluster::start(["cl-a", "cl-b", "cl-c"]).unwrap();
    let (a, b, c) = (cluster.id("cl-a"), cluster.id("cl-b"), cluster.id("cl-c"));
    // A full mesh, each peer in its own actix system on its own thread.
    for (name, handle) in cluster.handles() {
        assert_eq!(handle.connected_peers().len(), 2, "{name}");
    }
    if cfg!(target_os = "linux") {
        let running = runtime_threads();
        for name in ["peer-cl-a", "peer-cl-b", "peer-cl-c"] {
            assert!(running.iter().any(|thread| thread == name), "{running:?}");
        }
        // Each listening peer has its actix-web server threads too.
        assert!(running.len() > 3, "{running:?}");
    }
    let (demo, chain) = block_on(async {
        let demo = cluster.handle("cl-b").run(blocks::demo(a, b)).await;
        let chain = cluster.handle("cl-a").run(blocks::chain(a, b, c)).await;
        (demo, chain)
    });
    assert_eq!(demo, Ok((vec![42; 43], 44)));
    assert_eq!(chain, Ok(vec![a, b, c, a]));

    cluster.shutdown();
    // Every peer thread was joined ...
    let left = runtime_threads();
    assert!(
        !left.iter().any(|name| name.starts_with("peer-")),
        "{left:?}"
    );
    // ... and no server thread the peers started is left running.
    no_runtime_threads_left();
}

#[test]
fn only_the_asked_links_are_opened() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = Cluster::builder()
        .peers(["ln-a", "ln-b", "ln-c"])
        .link("ln-a", "ln-b")
        .link("ln-b", "ln-c")
        .configure(|_name, builder| builder.app_version("1.2.3"))
        .start()
        .unwrap();
    let (a, b, c) = (cluster.id("ln-a"), cluster.id("ln-b"), cluster.id("ln-c"));
    let peers = |name| -> Vec<_> {
        let mut peers: Vec<_> = cluster
            .handle(name)
            .connected_peers()
            .into_iter()
            .map(|link| link.peer)
            .collect();
        peers.sort();
        peers
    };
    assert_eq!(peers("ln-a"), vec![b]);
    assert_eq!(peers("ln-c"), vec![b]);
    let mut middle = vec![a, c];
    middle.sort();
    assert_eq!(peers("ln-b"), middle);
    let link = &cluster.handle("ln-a").connected_peers()[0];
    assert_eq!(link.app_version.as_deref(), Some("1.2.3"));
    assert!(link.outbound);
    assert!(Cluster::builder().peers(["x", "x"]).start().is_err());
    assert!(Cluster::builder().peer("x").link("x", "y").start().is_err());
}
