//! Block identity across builds: two binaries built from sources that differ only by lines
//! and comments above an anonymous `remote!` block name it differently (`module@line:col`)
//! but give it the same id, and call each other's copy over a real loopback WebSocket, each
//! in its own OS process.
//!
//! The binaries are the `identity` example, built once as checked in and once with
//! `--cfg identity_shifted` from a shifted copy of `examples/identity/peer.rs`, both by
//! `cargo --offline` in the workspace's target directory, so that they share every
//! dependency with the tests.

mod process;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use process::{Killed, build_example, run};
use support::{LIMIT, wait_for_listening};

/// Builds the `identity` example with `cargo <command>` and copies the binary to `copy`:
/// the next build overwrites the original.
fn build(command: &str, extra: &[&str], envs: &[(&str, &Path)], copy: &Path) {
    let executable = build_example("identity", command, extra, envs);
    std::fs::copy(executable, copy).expect("copies the binary");
}

/// `examples/identity/peer.rs` with comment lines at the top and above the block, and a
/// comment before the block on its own line: the block moves down and right.
fn shifted_source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/identity/peer.rs");
    let source = std::fs::read_to_string(path).expect("reads the example's source");
    let marker = "    remote!(target,";
    assert_eq!(source.matches(marker).count(), 1, "one block to move");
    let moved = source.replace(
        marker,
        "    // A comment added above the block.\n\n    /* moved */ remote!(target,",
    );
    format!("// Three lines\n// added at\n// the top.\n{moved}")
}

/// The `(id, name)` of the anonymous block in `binary`'s `--list-blocks`.
fn anonymous_block(binary: &Path) -> (String, String) {
    let listed = run(binary, &["--list-blocks"], LIMIT);
    assert!(listed.status.success(), "{listed:?}");
    listed
        .stdout
        .lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(_, name)| name.starts_with("identity::peer@"))
        .map(|(id, name)| (id.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no anonymous block in {listed:?}"))
}

/// Serves with `server`, calls the block from `client`, and returns the client's output.
fn call_across(server: &Path, client: &Path) -> String {
    let mut serving = Killed(
        Command::new(server)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the serving binary runs"),
    );
    let url = wait_for_listening(serving.0.stdout.take().expect("piped stdout"));
    let called = run(client, &["--call", url.as_str()], LIMIT);
    drop(serving);
    assert!(called.status.success(), "the call failed: {called:?}");
    called.stdout
}

#[test]
fn builds_that_differ_by_lines_above_an_anonymous_block_call_each_other() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creates the scratch directory");
    let source = dir.join("peer.rs");
    std::fs::write(&source, shifted_source()).expect("writes the shifted source");
    let original = dir.join("original");
    let shifted = dir.join("shifted");
    build("build", &[], &[], &original);
    build(
        "rustc",
        &[
            "--",
            "--cfg",
            "identity_shifted",
            "--check-cfg",
            "cfg(identity_shifted)",
        ],
        &[("DISTRIBUTED_SCOPE_IDENTITY_SOURCE", &source)],
        &shifted,
    );

    let (original_id, original_name) = anonymous_block(&original);
    let (shifted_id, shifted_name) = anonymous_block(&shifted);
    assert_eq!(original_id, shifted_id, "the same tokens give the same id");
    assert_ne!(original_name, shifted_name, "the names follow the lines");

    for (server, client) in [(&original, &shifted), (&shifted, &original)] {
        let output = call_across(server, client);
        assert!(
            output.contains("greeting: hello, identity"),
            "unexpected output: {output}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
