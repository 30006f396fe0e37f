//! Hostile bytes from a raw WebSocket client: the peer closes that link cleanly and keeps
//! serving everyone else.

mod support;

use actix_http::ws::{CloseCode, Frame, Message};
use bytes::Bytes;
use distributed_scope::{Peer, PeerId};
use futures_util::{SinkExt, StreamExt};
use support::{block_on, server, url};

/// Opens a raw WebSocket and returns how the server ended it: the close code, or `None` if
/// the stream just ended.
async fn send_raw(url: &str, frames: Vec<Message>) -> Option<CloseCode> {
    let (_response, framed) = awc::Client::new()
        .ws(url)
        .max_frame_size(64 << 20)
        .connect()
        .await
        .expect("raw websocket connects");
    let (mut sink, mut stream) = framed.split();
    for frame in frames {
        if sink.send(frame).await.is_err() {
            break;
        }
    }
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(Frame::Close(reason)) => return reason.map(|reason| reason.code),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// A valid `Hello` (see docs/protocol.md): magic, version 4, then bincode of
/// `{ peer: uuid (len 16 + bytes), max_message_size: varint u64, app_version: None,
/// manifest: empty, nonce: varint u128, proof: None, resumable: false, session: None }`.
fn hello(peer: PeerId) -> Bytes {
    let mut bytes = b"DSCP".to_vec();
    bytes.extend_from_slice(&4u16.to_be_bytes());
    bytes.push(16);
    bytes.extend_from_slice(peer.as_uuid().as_bytes());
    bytes.push(252); // varint: a u32 follows
    bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
    bytes.push(0); // None
    bytes.extend_from_slice(&[0, 1]); // an empty manifest, complete
    bytes.push(7); // nonce: a small varint
    bytes.push(0); // no proof
    bytes.extend_from_slice(&[0, 0]); // does not resume, no session
    Bytes::from(bytes)
}

fn random_bytes(len: usize, mut state: u64) -> Bytes {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The peer still runs blocks for a well-behaved client.
async fn still_serves(url: &str, server_id: PeerId, name: &str) {
    let client = Peer::builder(PeerId::from_name(name))
        .start()
        .await
        .unwrap();
    client.connect(url).await.unwrap();
    assert_eq!(client.run(blocks::increment(server_id, 1)).await, Ok(2));
    client.stop().await.unwrap();
}

#[test]
fn random_first_frame_closes_that_link_only() {
    let server = server("hostile-random");
    let (id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        for seed in 1..=5 {
            let code = send_raw(&url, vec![Message::Binary(random_bytes(300, seed))]).await;
            assert_eq!(code, Some(CloseCode::Protocol), "seed {seed}");
        }
        still_serves(&url, id, "after-random").await;
    });
}

#[test]
fn huge_length_prefix_after_handshake_closes_cleanly() {
    let server = server("hostile-length");
    let (id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        // Frame::Call (variant 0), call id 1, block id 2, then a name claiming 2^40 bytes.
        let mut call = vec![0u8, 1, 2, 253];
        call.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let code = send_raw(
            &url,
            vec![
                Message::Binary(hello(PeerId::from_name("liar"))),
                Message::Binary(Bytes::from(call)),
            ],
        )
        .await;
        assert_eq!(code, Some(CloseCode::Protocol));
        // Random garbage after a valid handshake, too.
        let code = send_raw(
            &url,
            vec![
                Message::Binary(hello(PeerId::from_name("noisy"))),
                Message::Binary(random_bytes(4096, 99)),
            ],
        )
        .await;
        assert_eq!(code, Some(CloseCode::Protocol));
        still_serves(&url, id, "after-length").await;
    });
}

#[test]
fn oversized_and_text_frames_close_with_their_codes() {
    let server = server("hostile-size");
    let (id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        // Over the default 16 MiB limit: refused by the WebSocket codec, close 1009.
        let oversized = Bytes::from(vec![0u8; (16 << 20) + 1]);
        let code = send_raw(&url, vec![Message::Binary(oversized)]).await;
        assert_eq!(code, Some(CloseCode::Size));
        let code = send_raw(&url, vec![Message::Text("hello".into())]).await;
        assert_eq!(code, Some(CloseCode::Unsupported));
        still_serves(&url, id, "after-size").await;
    });
}

#[test]
fn second_link_claiming_a_connected_id_is_refused() {
    let server = server("hijack-target");
    let (id, url) = (server.handle().id(), url(server.handle()));
    block_on(async move {
        let victim = PeerId::from_name("victim");
        let client = support::connected(victim, &url).await;
        // A raw client claims the victim's id: refused with a policy close.
        let code = send_raw(&url, vec![Message::Binary(hello(victim))]).await;
        assert_eq!(code, Some(CloseCode::Policy));
        // The victim's link still works.
        assert_eq!(client.run(blocks::increment(id, 9)).await, Ok(10));
    });
}

#[test]
fn unknown_replies_and_cancels_are_ignored_and_unknown_frame_kinds_close_the_link() {
    let server = server("hostile-kinds");
    let (id, url) = (server.handle().id(), url(server.handle()));
    let handle = server.handle().clone();
    block_on(async move {
        let (_response, framed) = awc::Client::new().ws(url.as_str()).connect().await.unwrap();
        let (mut sink, mut stream) = framed.split();
        let mut next_binary = async || loop {
            match stream.next().await {
                Some(Ok(Frame::Binary(bytes))) => return Some(bytes),
                Some(Ok(Frame::Close(reason))) => {
                    assert_eq!(reason.map(|reason| reason.code), Some(CloseCode::Protocol));
                    return None;
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        };
        sink.send(Message::Binary(hello(PeerId::from_name("odd-client"))))
            .await
            .unwrap();
        // The server's hello comes once it accepted the link.
        assert!(next_binary().await.unwrap().starts_with(b"DSCP"));
        // A reply for a call never made (Reply = 1, id 99, Ok = 0, empty) and a cancel for a
        // call not running (Cancel = 2, id 99): both ignored.
        sink.send(Message::Binary(Bytes::from_static(&[1, 99, 0, 0])))
            .await
            .unwrap();
        sink.send(Message::Binary(Bytes::from_static(&[2, 99])))
            .await
            .unwrap();
        // The link is still up: a ping (Ping = 3, nonce 7) gets its pong (Pong = 4, nonce 7).
        sink.send(Message::Binary(Bytes::from_static(&[3, 7])))
            .await
            .unwrap();
        let mut pong = None;
        while let Some(frame) = next_binary().await {
            if frame[..] == [4, 7] {
                pong = Some(frame);
                break;
            }
        }
        assert!(pong.is_some(), "the link answered the ping");
        // A frame kind this protocol does not have closes the link (1002).
        sink.send(Message::Binary(Bytes::from_static(&[9, 1])))
            .await
            .unwrap();
        while next_binary().await.is_some() {}
        let metrics = handle.metrics();
        assert!(metrics.late_replies >= 1, "{metrics:?}");
        assert!(metrics.refused_frames >= 1, "{metrics:?}");
        still_serves(&url, id, "after-kinds").await;
    });
}
