//! `use blocks as _;` links a blocks crate whose items the binary never names, and with it
//! every block the crate registers: the one line a peer binary needs (`examples/peer.rs`).
//! `tests/unlinked_blocks.rs` is the same binary without it.

use blocks as _;

#[test]
fn use_as_underscore_links_the_blocks_of_a_crate() {
    let names: Vec<&str> = distributed_scope::blocks()
        .iter()
        .map(|block| block.name())
        .collect();
    for name in ["blocks::add", "blocks::search_items", "blocks::whoami"] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert!(
        names.iter().any(|name| name.starts_with("blocks@")),
        "{names:?}"
    );
}
