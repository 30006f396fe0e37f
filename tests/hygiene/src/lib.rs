//! Hygiene test: `remote!`, `remote_all!`, `#[distributed]` and `#[remote_block]` compile in a crate with
//! `#![no_implicit_prelude]`, the runtime renamed to `scope`, and neither actix nor serde
//! among its dependencies, under strict lints.

#![no_implicit_prelude]
#![deny(
    unused_qualifications,
    unused_imports,
    unused_variables,
    unused_results,
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    non_camel_case_types,
    non_snake_case
)]

use ::scope::{PeerId, RemoteError, distributed, remote, remote_all, remote_block};
use ::std::string::String;
use ::std::vec::Vec;

/// A plain `remote!` with captures, nested one level.
pub async fn plain(server: PeerId, client: PeerId) -> ::std::result::Result<u32, RemoteError> {
    let base: u32 = 1;
    remote!(server, [base: u32, client: PeerId] -> ::std::result::Result<u32, RemoteError> {
        let doubled = remote!(client, [base: u32] -> u32 { base * 2 }).await?;
        ::std::result::Result::Ok(doubled + 1)
    })
    .await
}

/// `#[distributed]` with every capture type elided.
#[distributed]
pub async fn named(
    server: PeerId,
    words: Vec<String>,
) -> ::std::result::Result<usize, RemoteError> {
    let extra: usize = 2;
    let count = remote!(server, [words, extra] -> usize { words.len() + extra }).await?;
    remote!(server, [count] -> usize { count * 2 }).await
}

/// `#[remote_block]`: generates `Add` and `Add::on`.
#[remote_block]
pub async fn add(x: u32, y: u32) -> u32 {
    x + y
}

/// Awaits the named block on `server`.
pub async fn add_on(server: PeerId) -> ::std::result::Result<u32, RemoteError> {
    Add { x: 1, y: 2 }.on(server).await
}

/// `#[remote_block]` without parameters, with a message name: generates the unit `Stats`.
#[remote_block(message = "Stats")]
pub async fn worker_stats() -> u64 {
    7
}

/// Awaits the unit message on `server`, built both ways.
pub async fn stats_on(server: PeerId) -> ::std::result::Result<u64, RemoteError> {
    let first = Stats.on(server).await?;
    let second = Stats::new().on(server).await?;
    ::std::result::Result::Ok(first + second)
}

/// `remote_all!` with a capture, awaited, and in a `#[distributed]` function.
#[distributed]
pub async fn fan_out(servers: Vec<PeerId>) -> usize {
    let base: u32 = 1;
    let answers = remote_all!(servers, [base] -> u32 { base + 1 }).await;
    answers.len()
}
