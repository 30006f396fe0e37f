// The source of `examples/identity.rs`, included from there. `tests/identity.rs` builds a
// second binary from a copy with lines added above `greet`'s block.

use std::io::Write;

use anyhow::{Context, bail};
use distributed_scope::actix::System;
use distributed_scope::{Peer, PeerId, RemoteError, remote};

/// The block under test: anonymous, so named after its line and column.
async fn greet(target: PeerId, name: String) -> Result<String, RemoteError> {
    remote!(target, [name: String] -> String { format!("hello, {name}") }).await
}

pub(crate) fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--list-blocks"] => {
            for block in distributed_scope::blocks() {
                writeln!(out, "{:016x} {}", block.id(), block.name())?;
            }
            Ok(())
        }
        ["--listen", addr] => System::new().block_on(async move {
            let peer = Peer::builder(PeerId::random())
                .listen(addr)
                .start()
                .await?;
            writeln!(out, "listening on {}", peer.url().context("a listening peer")?)?;
            out.flush()?;
            std::future::pending::<()>().await;
            anyhow::Ok(())
        }),
        ["--call", url] => System::new().block_on(async move {
            let peer = Peer::builder(PeerId::random()).start().await?;
            let server = peer.connect(url).await?;
            let greeting = peer.run(greet(server, "identity".to_owned())).await?;
            writeln!(out, "greeting: {greeting}")?;
            anyhow::Ok(())
        }),
        _ => bail!("usage: identity (--listen ADDR | --call URL | --list-blocks)"),
    }
}
