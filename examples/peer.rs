//! A standalone peer process. It links the shared `blocks` crate, so the demo's hops run
//! across processes and hosts.
//!
//! ```text
//! cargo run --example peer -- --id server --listen 127.0.0.1:7000
//! cargo run --example peer -- --id client --connect ws://127.0.0.1:7000/
//! cargo run --example peer -- --list-blocks
//! ```
//!
//! Options: `--id NAME` (the peer id is `PeerId::from_name(NAME)`; default a random id),
//! `--listen ADDR`, `--connect URL` (repeatable), `--allow-origin ORIGIN` (let web pages of
//! ORIGIN link, e.g. `http://127.0.0.1:8080`; repeatable), `--list-blocks` (print the blocks compiled
//! into this binary and exit), `--liveness-ms N` (drop links silent for N ms; pings every
//! N/5 ms), `--help`. Prints `listening on ws://HOST:PORT/` once ready, and
//! `connected to ID` for each link it opens, then runs until killed.
//!
//! The binary names no item of the `blocks` crate, so without `use blocks as _;` the linker
//! would leave the crate out, and its blocks with it.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use distributed_scope::actix::System;
use distributed_scope::{Peer, PeerId};

// Links the shared blocks into this binary: a peer runs the blocks its binary contains.
use blocks as _;

const USAGE: &str = "\
usage: peer [--id NAME] [--listen ADDR] [--connect URL]... [--allow-origin ORIGIN]...
            [--liveness-ms N]
       peer --list-blocks
       peer --help

A standalone distributed-scope peer that runs the blocks of the `blocks` crate.

options:
  --id NAME         the peer id is PeerId::from_name(NAME) (default: a random id)
  --listen ADDR     accept links on ADDR, e.g. 127.0.0.1:7000
  --connect URL     open a link to URL, e.g. ws://127.0.0.1:7000/ (repeatable)
  --allow-origin ORIGIN
                    let web pages of ORIGIN link, e.g. http://127.0.0.1:8080 (repeatable;
                    upgrades from other pages get 403)
  --liveness-ms N   drop links silent for N ms, probing every N/5 ms
  --list-blocks     print the blocks compiled into this binary and exit
  --help, -h        print this help and exit
";

struct Options {
    id: Option<String>,
    liveness: Option<Duration>,
    listen: Option<String>,
    connect: Vec<String>,
    origins: Vec<String>,
    list_blocks: bool,
    help: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        id: None,
        liveness: None,
        listen: None,
        connect: Vec::new(),
        origins: Vec::new(),
        list_blocks: false,
        help: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--id" => options.id = Some(args.next().context("--id needs a name")?),
            "--listen" => options.listen = Some(args.next().context("--listen needs an address")?),
            "--connect" => options
                .connect
                .push(args.next().context("--connect needs a url")?),
            "--allow-origin" => options
                .origins
                .push(args.next().context("--allow-origin needs an origin")?),
            "--list-blocks" => options.list_blocks = true,
            "--help" | "-h" => options.help = true,
            "--liveness-ms" => {
                let millis: u64 = args
                    .next()
                    .context("--liveness-ms needs a number")?
                    .parse()?;
                options.liveness = Some(Duration::from_millis(millis));
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    if options.help {
        print!("{USAGE}");
        return Ok(());
    }
    if options.list_blocks {
        for block in distributed_scope::blocks() {
            println!(
                "{:016x}  {}  ({}) -> {}  {}:{}",
                block.id(),
                block.name(),
                block.captures(),
                block.output(),
                block.file(),
                block.line()
            );
        }
        return Ok(());
    }
    let id = options
        .id
        .as_deref()
        .map_or_else(PeerId::random, PeerId::from_name);
    System::new().block_on(async move {
        let mut builder = Peer::builder(id);
        if let Some(addr) = &options.listen {
            builder = builder.listen(addr.as_str());
        }
        for origin in &options.origins {
            builder = builder.allow_origin(origin.as_str());
        }
        if let Some(liveness) = options.liveness {
            builder = builder
                .liveness_timeout(liveness)
                .ping_interval(liveness / 5);
        }
        let peer = builder.start().await?;
        let mut out = std::io::stdout();
        writeln!(out, "peer {id}")?;
        if let Some(url) = peer.url() {
            writeln!(out, "listening on {url}")?;
        }
        for url in &options.connect {
            let remote = peer.connect(url).await?;
            writeln!(out, "connected to {remote}")?;
        }
        out.flush()?;
        std::future::pending::<()>().await;
        anyhow::Ok(())
    })
}
