//! A peer with one anonymous block, for the block identity test (`tests/identity.rs`): two
//! builds whose sources differ only by lines and comments above the block still call each
//! other's copy of it.
//!
//! ```text
//! cargo run --example identity -- --listen 127.0.0.1:7000
//! cargo run --example identity -- --call ws://127.0.0.1:7000/
//! cargo run --example identity -- --list-blocks
//! ```
//!
//! `--listen ADDR` prints `listening on ws://HOST:PORT/` and runs until killed; `--call URL`
//! links to the peer at URL, runs the block there, prints `greeting: ...` and exits;
//! `--list-blocks` prints `ID NAME` for each block of the binary. The test builds this example
//! a second time with `--cfg identity_shifted`, from a copy of `identity/peer.rs` with lines
//! added above the block, named by the `DISTRIBUTED_SCOPE_IDENTITY_SOURCE` variable.

#[allow(
    unexpected_cfgs,
    reason = "`identity_shifted` is set only by the second build of `tests/identity.rs`"
)]
mod peer {
    #[cfg(not(identity_shifted))]
    include!("identity/peer.rs");
    #[cfg(identity_shifted)]
    include!(env!("DISTRIBUTED_SCOPE_IDENTITY_SOURCE"));
}

fn main() -> anyhow::Result<()> {
    peer::main()
}
