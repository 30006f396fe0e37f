//! The `peer` example's command line: `--help`, `--list-blocks`, and a mistake.

mod process;
mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use process::{build_example, run};
use support::LIMIT;

/// The `peer` example, built once for this test binary.
fn peer() -> &'static Path {
    static PEER: OnceLock<PathBuf> = OnceLock::new();
    PEER.get_or_init(|| build_example("peer", "build", &[], &[]))
}

#[test]
fn help_prints_usage_and_exits_zero() {
    for flag in ["--help", "-h"] {
        let help = run(peer(), &[flag], LIMIT);
        assert!(help.status.success(), "{help:?}");
        assert!(help.stdout.starts_with("usage: peer"), "{help:?}");
        assert!(help.stdout.contains("--list-blocks"), "{help:?}");
    }
}

#[test]
fn unknown_arguments_fail_with_usage() {
    let refused = run(peer(), &["--frobnicate"], LIMIT);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        refused.stderr.contains("unknown argument `--frobnicate`"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("usage: peer"), "{refused:?}");
}

#[test]
fn list_blocks_shows_the_blocks_crate_linked_by_use_as_underscore() {
    let listed = run(peer(), &["--list-blocks"], LIMIT);
    assert!(listed.status.success(), "{listed:?}");
    assert!(listed.stdout.contains("  blocks::add  "), "{listed:?}");
    assert!(listed.stdout.contains("  blocks@"), "{listed:?}");
}
