//! `cargo bench`: the side-by-side harness of `examples/bench.rs` in its quick mode
//! (about 20 seconds). The full run, whose figures `docs/performance.md` records, is
//! `cargo run --release --example bench`.

#[path = "../examples/bench.rs"]
mod harness;

fn main() -> anyhow::Result<()> {
    harness::cli(harness::Mode::Quick)
}
