//! A caller cannot have a block run under another block's name: the callee finds an
//! anonymous block by its id and authorizes the name *it* gives that block, and a named block
//! only by its own name and id. Raw frames from a hostile client, over a real socket.

mod support;

use actix_http::ws::{Frame, Message};
use bytes::Bytes;
use distributed_scope::testing::PeerThread;
use distributed_scope::{Peer, PeerId, RemoteError};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use support::{block_on, url};

// The blocks under test are those of the `blocks` crate, also compiled into this binary.
use blocks as _;

/// `Frame::Call` as docs/protocol.md describes it (variant 0).
#[derive(Serialize)]
enum Outgoing<'a> {
    Call {
        id: u64,
        block: u64,
        name: &'a str,
        deadline_ms: u64,
        metadata: Vec<(String, String)>,
        #[serde(with = "serde_bytes")]
        captures: &'a [u8],
    },
}

/// Every frame kind, to decode what the server sends.
#[derive(Deserialize)]
enum Incoming {
    Call {},
    Reply { id: u64, result: Body },
    Cancel {},
    Ping {},
    Pong {},
}

#[derive(Deserialize)]
enum Body {
    Ok(#[serde(with = "serde_bytes")] Vec<u8>),
    Err(RemoteError),
}

/// A valid `Hello` (see docs/protocol.md and `tests/hostile.rs`).
fn hello(peer: PeerId) -> Bytes {
    let mut bytes = b"DSCP".to_vec();
    bytes.extend_from_slice(&4u16.to_be_bytes());
    bytes.push(16);
    bytes.extend_from_slice(peer.as_uuid().as_bytes());
    bytes.push(252);
    bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&[0, 1]); // an empty manifest, complete
    bytes.extend_from_slice(&[7, 0]); // a nonce, no proof
    bytes.extend_from_slice(&[0, 0]); // does not resume, no session
    Bytes::from(bytes)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
}

/// The id of `blocks::increment`'s anonymous block (`[x: u64] -> u64`) in this build.
fn increment_id() -> (u64, &'static str) {
    distributed_scope::blocks()
        .into_iter()
        .find(|block| {
            block.name().starts_with("blocks@")
                && block.captures() == "x: u64"
                && block.output() == "u64"
        })
        .map(|block| (block.id(), block.name()))
        .expect("the increment block is linked")
}

/// Calls block `id` as `name` with `x = 41` from a raw client named `caller`, and returns the
/// reply: `Ok(42)` if the block ran.
async fn forged_call(url: &str, caller: PeerId, id: u64, name: &str) -> Result<u64, RemoteError> {
    let (_response, framed) = awc::Client::new()
        .ws(url)
        .connect()
        .await
        .expect("connects");
    let (mut sink, mut stream) = framed.split();
    sink.send(Message::Binary(hello(caller)))
        .await
        .expect("sends");
    let captures = encode(&(41u64, ()));
    let call = Outgoing::Call {
        id: 1,
        block: id,
        name,
        deadline_ms: 10_000,
        metadata: Vec::new(),
        captures: &captures,
    };
    sink.send(Message::Binary(encode(&call).into()))
        .await
        .expect("sends");
    while let Some(frame) = stream.next().await {
        let Ok(Frame::Binary(bytes)) = frame else {
            continue;
        };
        if bytes.starts_with(b"DSCP") {
            continue;
        }
        let (frame, _): (Incoming, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .expect("a frame");
        if let Incoming::Reply { id: 1, result } = frame {
            return match result {
                Body::Ok(bytes) => Ok(bincode::serde::decode_from_slice(
                    &bytes,
                    bincode::config::standard(),
                )
                .expect("a u64")
                .0),
                Body::Err(error) => Err(error),
            };
        }
    }
    panic!("the link closed without a reply");
}

#[test]
fn the_callee_authorizes_its_own_name_for_an_anonymous_block() {
    let (id, name) = increment_id();
    let trusted = PeerId::from_name("forged-trusted");
    let limited = PeerId::from_name("forged-limited");
    let server = PeerThread::start(
        Peer::builder(PeerId::from_name("forged-server"))
            .listen("127.0.0.1:0")
            .allow_peer(trusted, "blocks@*")
            // A line-based rule that does not cover the increment block.
            .allow_peer(limited, "blocks@9999:*")
            .allow_peer(limited, "blocks::add"),
    )
    .expect("server starts");
    let url = url(server.handle());
    block_on(async move {
        // Another build's name for the same block: found by id, authorized as `name`.
        assert_eq!(
            forged_call(&url, trusted, id, "blocks@9999:1").await,
            Ok(42)
        );
        // The caller's name is allowed, the block it would run is not: refused, not run.
        let refused = forged_call(&url, limited, id, "blocks@9999:1").await;
        assert!(
            matches!(&refused, Err(RemoteError::Forbidden { block, .. }) if block == name),
            "{refused:?}"
        );
        // An allowed named block cannot carry the id of another block.
        let refused = forged_call(&url, limited, id, "blocks::add").await;
        assert!(
            matches!(&refused, Err(RemoteError::VersionMismatch { block, .. }) if block == "blocks::add"),
            "{refused:?}"
        );
        // Nor can an anonymous name of another module.
        let refused = forged_call(&url, trusted, id, "elsewhere@1:1").await;
        assert!(
            matches!(
                &refused,
                Err(RemoteError::Forbidden { .. } | RemoteError::UnknownBlock { .. })
            ),
            "{refused:?}"
        );
    });
}
