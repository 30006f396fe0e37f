//! Every size of ordinary captures and results crosses real sockets between two actix
//! systems, up to the largest that fits the default message limit (16 MiB) with room for the
//! frame's header, and a value over the limit fails alone with `TooLarge`.
//!
//! Sizes run 1, 2, 3, 4, 5, 8, 9, ... 2^k, 2^k + 1 (2^k only above 1 MiB), then the largest
//! that fits. Each type is sent as a capture that the block returns (a capture and a result
//! of that size). A result alone leaves a little more room than a call frame, which also
//! carries the block's name: the largest such result is built by the block from a requested
//! length.

mod support;

use distributed_scope::{PeerId, RemoteCall, RemoteError, remote};
use support::payloads::{Payload, sizes};
use support::{block_on, connected, server, url};

/// The message limit both peers use: the default.
const MAX: usize = distributed_scope::DEFAULT_MAX_MESSAGE_SIZE;

/// The most a call frame's header takes besides the block name: variant, ids, deadline, a
/// `traceparent` entry, the captures' length (the runtime's `CALL_ROOM`).
const CALL_HEADER: usize = 160;

/// The most a reply frame's header takes (the runtime's `REPLY_ROOM`).
const REPLY_HEADER: usize = 32;

/// A block that returns its capture, and a block that builds a value of `n` elements.
struct Blocks<T> {
    echo: fn(PeerId, T) -> RemoteCall<T>,
    build: fn(PeerId, usize) -> RemoteCall<T>,
    /// The `BlockInfo::output` of both.
    output: &'static str,
}

/// The name of the echo block of `output`, as the call frame carries it.
fn echo_name(output: &str) -> &'static str {
    let captures = format!("value: {output}");
    distributed_scope::blocks()
        .into_iter()
        .find(|block| {
            block.file().ends_with("sizes.rs")
                && block.output() == output
                && block.captures() == captures
        })
        .expect("the echo block is registered")
        .name()
}

/// Runs `call` from a fresh client linked to `url` (its own actix system).
fn call<T: 'static>(url: &str, call: RemoteCall<T>) -> Result<T, RemoteError> {
    let url = url.to_owned();
    block_on(async move {
        let client = connected(PeerId::random(), &url).await;
        client.run(call).await
    })
}

fn sweep<T: Payload + Clone>(label: &str, blocks: &Blocks<T>) {
    let server = server(&format!("sizes-{label}"));
    let (server_id, url) = (server.handle().id(), url(server.handle()));
    let (echo, build) = (blocks.echo, blocks.build);

    // Captures and result: the call frame is the tighter of the two.
    let budget = MAX - CALL_HEADER - echo_name(blocks.output).len();
    let largest = T::largest_within(budget);
    assert!(
        T::encoded_len(largest) > MAX - 300,
        "{label}: the largest capture is {} bytes",
        T::encoded_len(largest)
    );
    // Every 2^k + 1 up to 1 MiB; above, where each call costs seconds in a debug build, the
    // powers of two and the largest.
    for n in sizes(largest, T::largest_within(1 << 20)) {
        let value = T::make(n);
        let back = call(&url, echo(server_id, value.clone()));
        assert!(
            back.as_ref() == Ok(&value),
            "{label}: a capture of {n} elements ({} bytes) came back as {}",
            T::encoded_len(n),
            describe(&back)
        );
    }
    // A value that alone exceeds the limit fails alone, whatever the headers take.
    let over = T::largest_within(MAX) + 1;
    let over = call(&url, echo(server_id, T::make(over)));
    assert!(
        matches!(over, Err(RemoteError::TooLarge { .. })),
        "{label}: a value over the limit: {}",
        describe(&over)
    );

    // A result alone may be a little larger than what a call frame can carry with its name.
    let largest = T::largest_within(MAX - REPLY_HEADER);
    assert!(T::encoded_len(largest) > MAX - REPLY_HEADER - 32);
    let back = call(&url, build(server_id, largest));
    assert!(
        back.as_ref().is_ok_and(|back| *back == T::make(largest)),
        "{label}: a result of {largest} elements ({} bytes) came back as {}",
        T::encoded_len(largest),
        describe(&back)
    );
    let over = call(&url, build(server_id, T::largest_within(MAX) + 1));
    assert!(
        matches!(over, Err(RemoteError::TooLarge { .. })),
        "{label}: a value over the limit: {}",
        describe(&over)
    );
}

/// The error, or the size of the value, for a failure message (the values are too long to
/// print).
fn describe<T: Payload>(result: &Result<T, RemoteError>) -> String {
    match result {
        Ok(value) => format!("another value ({} debug bytes)", format!("{value:?}").len()),
        Err(error) => error.to_string(),
    }
}

#[test]
fn vec_u32_crosses_at_every_size_up_to_the_limit() {
    sweep(
        "u32",
        &Blocks::<Vec<u32>> {
            echo: |server, value| remote!(server, [value: Vec<u32>] -> Vec<u32> { value }),
            build: |server, n| remote!(server, [n: usize] -> Vec<u32> { <Vec<u32> as Payload>::make(n) }),
            output: "Vec<u32>",
        },
    );
}

#[test]
fn vec_u64_crosses_at_every_size_up_to_the_limit() {
    sweep(
        "u64",
        &Blocks::<Vec<u64>> {
            echo: |server, value| remote!(server, [value: Vec<u64>] -> Vec<u64> { value }),
            build: |server, n| remote!(server, [n: usize] -> Vec<u64> { <Vec<u64> as Payload>::make(n) }),
            output: "Vec<u64>",
        },
    );
}

#[test]
fn vec_peer_id_crosses_at_every_size_up_to_the_limit() {
    sweep(
        "peer-id",
        &Blocks::<Vec<PeerId>> {
            echo: |server, value| remote!(server, [value: Vec<PeerId>] -> Vec<PeerId> { value }),
            build: |server, n| remote!(server, [n: usize] -> Vec<PeerId> { <Vec<PeerId> as Payload>::make(n) }),
            output: "Vec<PeerId>",
        },
    );
}

#[test]
fn string_crosses_at_every_size_up_to_the_limit() {
    sweep(
        "string",
        &Blocks::<String> {
            echo: |server, value| remote!(server, [value: String] -> String { value }),
            build: |server, n| remote!(server, [n: usize] -> String { <String as Payload>::make(n) }),
            output: "String",
        },
    );
}
