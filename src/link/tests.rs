//! The protocol tested through two engines joined in memory: no sockets, no runtime.

use super::*;

fn hello(peer: &str, app_version: Option<&str>, max: u64) -> Vec<u8> {
    Hello {
        peer: PeerId::from_name(peer),
        max_message_size: max,
        app_version: app_version.map(str::to_owned),
        manifest: Manifest::default(),
        nonce: 1,
        proof: None,
        resumable: true,
        session: None,
    }
    .to_bytes()
    .unwrap()
}

#[test]
fn hello_checks_identity_versions_and_limits() {
    let version = Some("2".to_owned());
    let strict = Expect {
        local: PeerId::from_name("me"),
        app_version: &version,
        refuse_app_version_mismatch: true,
    };
    let (hello_ok, max) = check_hello(&hello("you", Some("2"), 1 << 40), &strict).unwrap();
    assert_eq!(hello_ok.peer, PeerId::from_name("you"));
    assert_eq!(max, wire::MAX_MESSAGE_SIZE_CEILING);
    assert_eq!(
        check_hello(&hello("me", Some("2"), 1024), &strict).unwrap_err(),
        HandshakeError::SelfConnection
    );
    assert!(matches!(
        check_hello(&hello("you", Some("1"), 1024), &strict),
        Err(HandshakeError::AppVersion { .. })
    ));
    assert_eq!(
        check_hello(b"GET /", &strict).unwrap_err(),
        HandshakeError::BadMagic
    );
    let lenient = Expect {
        refuse_app_version_mismatch: false,
        ..strict
    };
    assert!(check_hello(&hello("you", Some("1"), 1024), &lenient).is_ok());
}

// --- Two engines joined in memory ------------------------------------------------------------

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use web_time::Instant;

use crate::block::Block;
use crate::link::engine::MAX_PINGS_PER_INTERVAL;
use crate::runtime::Request;
use crate::wire::{CALL_ROOM, Frame, Manifest, Metadata, Payload};

/// The one block these tests call.
#[crate::remote_block]
async fn echo(x: u32) -> u32 {
    x
}

fn engine(name: &str, role: Role, limits: Limits, budgets: &Budgets) -> Engine {
    Engine::new(
        Identity {
            local: PeerId::from_name(name),
            app_version: None,
            refuse_app_version_mismatch: false,
        },
        role,
        limits,
        budgets.clone(),
        Arc::new(Counters::default()),
        Box::new(|_remote, name, _hop| {
            if name.contains("forbidden") {
                Err(RemoteError::Forbidden {
                    block: name.to_owned(),
                    subject: "tester".to_owned(),
                    peer: None,
                })
            } else {
                Ok(())
            }
        }),
        Instant::now(),
    )
}

/// Moves everything `from` wants sent into `to`; returns the close codes `from` sent.
fn pump(from: &mut Engine, to: &mut Engine, now: Instant) -> Vec<u16> {
    let mut closes = Vec::new();
    while let Some(transmit) = from.poll_transmit() {
        match transmit {
            Transmit::Binary(bytes) => to.on_message(&bytes, now),
            Transmit::Ping => {}
            Transmit::Pong(_) => to.on_pong(now),
            Transmit::Close { code, reason } => {
                closes.push(code);
                to.on_close(Some(code), Some(reason), now);
            }
        }
    }
    closes
}

fn events(engine: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

fn transmits(engine: &mut Engine) -> Vec<Transmit> {
    std::iter::from_fn(|| engine.poll_transmit()).collect()
}

/// A connecting engine `a` and an accepting engine `b`, linked.
fn linked(limits: Limits) -> (Engine, Engine, Budgets) {
    let budget = Budgets::new(1 << 30, 1 << 20);
    let now = Instant::now();
    let mut a = engine("a", Role::Connecting, Limits::default(), &budget);
    let mut b = engine("b", Role::Accepting, limits, &budget);
    pump(&mut a, &mut b, now);
    assert!(matches!(events(&mut b)[..], [Event::Hello { .. }]));
    // The acceptor says nothing until it has admitted the link.
    assert!(transmits(&mut b).is_empty());
    b.accept(now);
    pump(&mut b, &mut a, now);
    assert!(matches!(events(&mut b)[..], [Event::Up { .. }]));
    assert!(matches!(events(&mut a)[..], [Event::Hello { .. }]));
    a.accept(now);
    assert!(matches!(events(&mut a)[..], [Event::Up { .. }]));
    (a, b, budget)
}

fn request(x: u32, deadline: Duration) -> Request {
    request_named(
        x,
        deadline,
        <Echo as Block>::INFO.name(),
        <Echo as Block>::INFO.id(),
    )
}

fn request_named(x: u32, deadline: Duration, name: &'static str, block: u64) -> Request {
    let captures = Payload::encode(&(x, ()), CALL_ROOM + name.len()).unwrap();
    Request::plain(block, name, Instant::now() + deadline, captures)
}

type Replied = oneshot::Receiver<Result<Bytes, RemoteError>>;

fn call(engine: &mut Engine, x: u32) -> (u64, Replied) {
    let (reply, replied) = oneshot::channel();
    let id = engine.next_call_id();
    engine.call(
        id,
        request(x, Duration::from_secs(30)),
        reply,
        Instant::now(),
    );
    (id, replied)
}

fn runs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Run(run) => Some(run.id),
            _ => None,
        })
        .collect()
}

fn aborts(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Abort(id) => Some(*id),
            _ => None,
        })
        .collect()
}

fn replied(replied: &mut Replied) -> Result<Bytes, RemoteError> {
    replied
        .try_recv()
        .expect("the sender is alive")
        .expect("a reply arrived")
}

/// Runs a `Run` the way an adapter does, without a runtime: the echo block finishes on its
/// first poll.
fn execute(engine: &mut Engine, run: Run) {
    let result =
        futures_util::FutureExt::now_or_never((run.entry.invoke)(crate::block::Invocation {
            scope: None,
            timed: true,
            span: tracing::Span::none(),
            captures: run.captures,
            max: 1 << 20,
            max_result: run.max_result,
        }))
        .expect("echo finishes at once");
    engine.finish(run.id, result, Instant::now());
}

#[test]
fn a_call_runs_once_and_its_reply_reaches_the_caller() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let (_, mut reply) = call(&mut a, 41);
    pump(&mut a, &mut b, now);
    let mut events = events(&mut b);
    assert_eq!(events.len(), 1);
    let Some(Event::Run(run)) = events.pop() else {
        panic!("expected a run")
    };
    execute(&mut b, run);
    pump(&mut b, &mut a, now);
    let bytes = replied(&mut reply).unwrap();
    let value: u32 = crate::wire::decode(&bytes, 1024).unwrap();
    assert_eq!(value, 41);
}

#[test]
fn a_call_past_its_deadline_fails_with_timeout_and_is_cancelled_on_the_remote() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let (reply, mut late) = oneshot::channel();
    let late_id = a.next_call_id();
    a.call(late_id, request(1, Duration::from_millis(100)), reply, now);
    let (_, mut answered) = call(&mut a, 2);
    // The link's one timer covers the earliest pending deadline.
    let due = a.poll_timeout().expect("a timeout is due");
    assert!(
        due <= Instant::now() + Duration::from_millis(100),
        "{due:?}"
    );
    pump(&mut a, &mut b, now);
    let started = runs(&events(&mut b));
    assert_eq!(started.len(), 2);
    // Time passes without a reply to the first call.
    let later = Instant::now() + Duration::from_millis(150);
    a.on_timeout(later);
    assert!(
        matches!(
            replied(&mut late),
            Err(RemoteError::Timeout { peer: Some(_), .. })
        ),
        "the late call timed out"
    );
    assert!(
        answered.try_recv().unwrap().is_none(),
        "the other still waits"
    );
    // The remote is told to stop it: it aborts the run.
    pump(&mut a, &mut b, later);
    let aborted = aborts(&events(&mut b));
    assert_eq!(aborted, vec![late_id]);
    // Completed calls leave no deadline behind that outlives them for long.
    for x in 0..1_000 {
        let (id, _replied) = call(&mut a, x);
        a.cancel(id);
    }
    let (entries, pending) = a.deadline_entries();
    assert!(
        entries <= 2 * pending + 65,
        "{entries} entries for {pending} calls"
    );
}

#[test]
fn a_run_past_its_deadline_is_aborted_and_answers_timeout() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let (reply, mut waiting) = oneshot::channel();
    let id = a.next_call_id();
    a.call(id, request(7, Duration::from_secs(1)), reply, now);
    pump(&mut a, &mut b, now);
    assert_eq!(runs(&events(&mut b)), vec![id]);
    // The callee's one timer covers the running call's deadline (less the caller's margin).
    let due = b.poll_timeout().expect("a timeout is due");
    assert!(due <= Instant::now() + Duration::from_secs(1), "{due:?}");
    let later = Instant::now() + Duration::from_secs(2);
    b.on_timeout(later);
    let aborted = aborts(&events(&mut b));
    assert_eq!(aborted, vec![id], "the block is stopped");
    // A finish after the abort sends nothing more: the caller gets exactly one reply.
    b.finish(
        id,
        Ok(Payload::encode(&7u32, crate::wire::REPLY_ROOM).unwrap()),
        later,
    );
    pump(&mut b, &mut a, later);
    assert!(
        matches!(replied(&mut waiting), Err(RemoteError::Timeout { .. })),
        "the caller hears Timeout"
    );
}

#[test]
fn frames_before_the_handshake_close_the_link() {
    let budget = Budgets::new(1 << 30, 1 << 20);
    let now = Instant::now();
    let mut b = engine("b", Role::Accepting, Limits::default(), &budget);
    // A call frame where the hello belongs: not a peer of this protocol.
    let frame = crate::wire::encode(&Frame::Cancel { id: 1 }).unwrap();
    b.on_message(&Bytes::from(frame), now);
    assert!(matches!(
        transmits(&mut b)[..],
        [Transmit::Close {
            code: close::PROTOCOL,
            ..
        }]
    ));
    assert!(b.is_closed());
    // More than 64 KiB before the hello: refused as too large.
    let mut b = engine("b", Role::Accepting, Limits::default(), &budget);
    b.on_message(&Bytes::from(vec![0u8; (64 << 10) + 1]), now);
    assert!(matches!(
        transmits(&mut b)[..],
        [Transmit::Close {
            code: close::SIZE,
            ..
        }]
    ));
    // WebSocket pings are not answered before the hello.
    let mut b = engine("b", Role::Accepting, Limits::default(), &budget);
    b.on_ping(Bytes::new(), now);
    assert!(transmits(&mut b).is_empty());
}

#[test]
fn at_most_one_pong_is_outstanding() {
    let (_a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    for _ in 0..10 {
        b.on_ping(Bytes::from_static(b"p"), now);
        let ping = crate::wire::encode(&Frame::Ping { nonce: 1 }).unwrap();
        b.on_message(&Bytes::from(ping), now);
    }
    let sent = transmits(&mut b);
    assert_eq!(sent.len(), 1, "one pong until the socket took it: {sent:?}");
    // The writer reports everything written: the next ping is answered again.
    b.on_unsent(0, now);
    b.on_ping(Bytes::new(), now);
    assert_eq!(transmits(&mut b).len(), 1);
    // A flood of pings within one interval closes the link.
    for _ in 0..MAX_PINGS_PER_INTERVAL {
        b.on_ping(Bytes::new(), now);
    }
    assert!(b.is_closed());
    assert!(matches!(
        transmits(&mut b).last(),
        Some(Transmit::Close {
            code: close::POLICY,
            ..
        })
    ));
}

#[test]
fn a_duplicate_call_id_runs_once() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let (id, _reply) = call(&mut a, 1);
    let frame = match transmits(&mut a).pop() {
        Some(Transmit::Binary(bytes)) => bytes,
        other => panic!("expected the call frame, got {other:?}"),
    };
    b.on_message(&frame, now);
    b.on_message(&frame, now);
    assert_eq!(runs(&events(&mut b)), vec![id]);
}

#[test]
fn beyond_running_and_queued_limits_calls_are_overloaded_and_cancels_compact() {
    let limits = Limits {
        max_inbound_calls: 1,
        max_queued_calls: 1,
        ..Limits::default()
    };
    let (mut a, mut b, _) = linked(limits);
    let now = Instant::now();
    let (first, _r1) = call(&mut a, 1);
    let (second, _r2) = call(&mut a, 2);
    let (_, mut third) = call(&mut a, 3);
    pump(&mut a, &mut b, now);
    assert_eq!(runs(&events(&mut b)), vec![first]);
    pump(&mut b, &mut a, now);
    assert!(matches!(
        replied(&mut third),
        Err(RemoteError::Overloaded { .. })
    ));
    // The queued call is cancelled, then the running one: it is aborted, and the cancelled
    // queued call never runs.
    a.cancel(second);
    pump(&mut a, &mut b, now);
    a.cancel(first);
    pump(&mut a, &mut b, now);
    let events = events(&mut b);
    assert!(
        matches!(events[..], [Event::Abort(id)] if id == first),
        "{events:?}"
    );
}

#[test]
fn the_byte_budget_counts_whole_frames() {
    let limits = Limits {
        max_inbound_bytes: 200,
        ..Limits::default()
    };
    let (mut a, mut b, _) = linked(limits);
    let now = Instant::now();
    let (first, _r1) = call(&mut a, 1);
    pump(&mut a, &mut b, now);
    assert_eq!(runs(&events(&mut b)), vec![first]);
    // A call with 4-byte captures padded by 150 bytes of metadata: counted by its frame, not
    // its captures, so it does not fit beside the first one.
    let padded = crate::wire::encode(&Frame::Call {
        id: 99,
        block: <Echo as Block>::INFO.id(),
        name: <Echo as Block>::INFO.name().into(),
        deadline_ms: 1000,
        metadata: Metadata(vec![("pad".into(), "x".repeat(150).into())]),
        captures: &crate::wire::encode(&(3u32, ())).unwrap(),
    })
    .unwrap();
    b.on_message(&Bytes::from(padded), now);
    assert!(
        runs(&events(&mut b)).is_empty(),
        "over the byte budget: not run"
    );
    let Some(Transmit::Binary(reply)) = b.poll_transmit() else {
        panic!("expected a reply")
    };
    match crate::wire::decode::<Frame<'_>>(&reply, 1 << 20).unwrap() {
        Frame::Reply {
            id: 99,
            result: crate::wire::ReplyBody::Err(RemoteError::Overloaded { .. }),
        } => {}
        other => panic!("expected Overloaded for call 99, got {other:?}"),
    }
}

#[test]
fn the_peer_wide_budget_answers_overloaded_but_leaves_each_link_its_share() {
    let (mut a, mut b, budgets) = linked(Limits::default());
    let now = Instant::now();
    assert!(budgets.calls.try_take((1 << 30) - 10));
    // Other links exhausted the peer's budget: a large call is refused ...
    let (reply, mut large) = oneshot::channel();
    let id = a.next_call_id();
    let mut request = request(1, Duration::from_secs(5));
    request.captures = Payload::encode(&(vec![1u8; 100 << 10], ()), CALL_ROOM + 40).unwrap();
    a.call(id, request, reply, now);
    pump(&mut a, &mut b, now);
    assert!(runs(&events(&mut b)).is_empty());
    pump(&mut b, &mut a, now);
    assert!(matches!(
        replied(&mut large),
        Err(RemoteError::Overloaded { .. })
    ));
    // ... while a small one still runs, within the link's guaranteed share.
    let (small, _reply) = call(&mut a, 2);
    pump(&mut a, &mut b, now);
    assert_eq!(runs(&events(&mut b)), vec![small]);
    assert_eq!(budgets.calls.used(), (1 << 30) - 10);
}

#[test]
fn metadata_over_its_limits_closes_the_link() {
    let (_a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let captures = crate::wire::encode(&(3u32, ())).unwrap();
    let frame = crate::wire::encode(&Frame::Call {
        id: 1,
        block: <Echo as Block>::INFO.id(),
        name: <Echo as Block>::INFO.name().into(),
        deadline_ms: 1000,
        metadata: Metadata(vec![("k".into(), "v".repeat(9 << 10).into())]),
        captures: &captures,
    })
    .unwrap();
    b.on_message(&Bytes::from(frame), now);
    assert!(matches!(
        transmits(&mut b)[..],
        [Transmit::Close {
            code: close::POLICY,
            ..
        }]
    ));
    // More entries than the decoder takes at all: the frame does not decode.
    let (_a, mut b, _) = linked(Limits::default());
    let many: Vec<_> = (0..65).map(|_| ("".into(), "".into())).collect();
    let frame = crate::wire::encode(&Frame::Call {
        id: 1,
        block: 1,
        name: "x".into(),
        deadline_ms: 1,
        metadata: Metadata(many),
        captures: &captures,
    })
    .unwrap();
    b.on_message(&Bytes::from(frame), now);
    assert!(b.is_closed());
}

#[test]
fn inbound_deadlines_are_clamped() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let (reply, _replied) = oneshot::channel();
    let id = a.next_call_id();
    a.call(id, request(1, Duration::from_secs(1 << 40)), reply, now);
    pump(&mut a, &mut b, now);
    let Some(Event::Run(run)) = events(&mut b).pop() else {
        panic!("expected a run")
    };
    assert!(run.deadline <= now + Duration::from_secs(301));
}

#[test]
fn refused_and_unknown_blocks_answer_without_running_or_decoding() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    // Forbidden, with captures that are not even valid bincode: the policy runs first.
    let (reply, mut forbidden) = oneshot::channel();
    let id = a.next_call_id();
    let mut garbage = request_named(1, Duration::from_secs(5), "app::forbidden", 7);
    garbage.captures = Payload::encode(&vec![0xffu8; 10], CALL_ROOM + 14).unwrap();
    a.call(id, garbage, reply, now);
    // An unknown block with a 1 MiB name: the name echoed back is cut.
    let long: &'static str = Box::leak("n".repeat(1 << 20).into_boxed_str());
    let (reply, mut unknown) = oneshot::channel();
    let id = a.next_call_id();
    a.call(
        id,
        request_named(1, Duration::from_secs(5), long, 7),
        reply,
        now,
    );
    pump(&mut a, &mut b, now);
    assert!(runs(&events(&mut b)).is_empty());
    pump(&mut b, &mut a, now);
    assert!(matches!(
        replied(&mut forbidden),
        Err(RemoteError::Forbidden { .. })
    ));
    match replied(&mut unknown) {
        Err(RemoteError::UnknownBlock { block, .. }) => {
            assert!(block.len() < 300, "{}", block.len())
        }
        other => panic!("expected UnknownBlock, got {other:?}"),
    }
    // The known name with another id: a version mismatch.
    let (reply, mut mismatch) = oneshot::channel();
    let id = a.next_call_id();
    a.call(
        id,
        request_named(1, Duration::from_secs(5), <Echo as Block>::INFO.name(), 7),
        reply,
        now,
    );
    pump(&mut a, &mut b, now);
    pump(&mut b, &mut a, now);
    assert!(matches!(
        replied(&mut mismatch),
        Err(RemoteError::VersionMismatch { .. })
    ));
    assert!(
        !a.is_closed() && !b.is_closed(),
        "refusals leave the link up"
    );
}

#[test]
fn a_call_over_the_remotes_limit_fails_alone() {
    let limits = Limits {
        max_message_size: 4096,
        ..Limits::default()
    };
    let (mut a, mut b, _) = linked(limits);
    let now = Instant::now();
    let (reply, mut big) = oneshot::channel();
    let id = a.next_call_id();
    let mut request = request(1, Duration::from_secs(5));
    request.captures = Payload::encode(&vec![1u8; 8192], CALL_ROOM + 40).unwrap();
    a.call(id, request, reply, now);
    assert!(matches!(
        replied(&mut big),
        Err(RemoteError::TooLarge { .. })
    ));
    let (_, mut small) = call(&mut a, 5);
    pump(&mut a, &mut b, now);
    let Some(Event::Run(run)) = events(&mut b).pop() else {
        panic!("expected a run")
    };
    execute(&mut b, run);
    pump(&mut b, &mut a, now);
    assert!(replied(&mut small).is_ok());
}

#[test]
fn liveness_handshake_fragment_and_write_timeouts_end_the_link() {
    // Without session resume (with it, a silent or stalled link waits to be resumed first).
    let limits = Limits {
        resume_window: Duration::ZERO,
        ..Limits::default()
    };
    let start = Instant::now();
    // Silent past the liveness timeout: pending calls fail with ConnectionLost.
    let (mut a, _b, _) = linked(limits.clone());
    let (_, mut pending) = call(&mut a, 1);
    let due = a.poll_timeout().unwrap();
    assert!(due <= start + limits.ping_interval + Duration::from_secs(1));
    a.on_timeout(start + limits.liveness_timeout + Duration::from_millis(1));
    assert!(a.is_closed());
    assert!(matches!(
        replied(&mut pending),
        Err(RemoteError::ConnectionLost { .. })
    ));
    // No hello in time.
    let budget = Budgets::new(1 << 20, 1 << 20);
    let mut b = engine("b", Role::Accepting, Limits::default(), &budget);
    b.on_timeout(start + limits.handshake_timeout + Duration::from_millis(1));
    assert!(matches!(
        events(&mut b)[..],
        [Event::Closed {
            refused: Some(HandshakeError::Timeout),
            ..
        }]
    ));
    // A fragmented message that never completes, its bytes charged to the peer's budget.
    let (_a, mut b, budgets) = linked(Limits::default());
    b.on_fragment(1000, start);
    assert_eq!(budgets.fragments.used(), 1000);
    b.on_timeout(start + limits.fragment_timeout + Duration::from_millis(1));
    assert!(b.is_closed());
    drop(b);
    assert_eq!(budgets.fragments.used(), 0);
    // Fragments past the peer's budget for them close the link at once.
    let (_a, mut b, _) = linked(Limits::default());
    b.on_fragment(2 << 20, start);
    assert!(b.is_closed());
    // A remote that takes nothing of what is written, past the send buffer.
    let (_a, mut b, _) = linked(limits.clone());
    b.on_unsent(limits.max_send_buffer + 1, start);
    b.on_timeout(start + limits.write_timeout + Duration::from_millis(1));
    assert!(matches!(
        transmits(&mut b).last(),
        Some(Transmit::Close {
            code: close::POLICY,
            ..
        })
    ));
    // With session resume, silence drops the socket and the link waits to be resumed.
    let (mut a, _b, _) = linked(Limits::default());
    a.on_timeout(start + limits.liveness_timeout + Duration::from_millis(1));
    assert!(!a.is_closed() && a.is_suspended());
    assert!(matches!(events(&mut a)[..], [Event::Suspended { .. }]));
}

#[test]
fn a_call_on_a_link_that_ended_fails_naming_its_remote() {
    let (mut a, _b, _) = linked(Limits::default());
    a.close(close::NORMAL, "done");
    let (_, mut late) = call(&mut a, 1);
    match replied(&mut late) {
        Err(RemoteError::ConnectionLost { peer, .. }) => {
            assert_eq!(peer, PeerId::from_name("b"));
        }
        other => panic!("expected ConnectionLost, got {other:?}"),
    }
}

#[test]
fn drain_refuses_new_calls_and_shutdown_fails_running_ones() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let (_, mut running) = call(&mut a, 1);
    pump(&mut a, &mut b, now);
    assert_eq!(runs(&events(&mut b)).len(), 1);
    assert!(!b.drain());
    let (_, mut refused) = call(&mut a, 2);
    pump(&mut a, &mut b, now);
    b.shutdown();
    let closes = pump(&mut b, &mut a, now);
    assert_eq!(closes, vec![close::AWAY]);
    assert!(matches!(
        replied(&mut refused),
        Err(RemoteError::ShuttingDown { .. })
    ));
    assert!(matches!(
        replied(&mut running),
        Err(RemoteError::ShuttingDown { .. })
    ));
}

#[test]
fn late_replies_text_and_unknown_frames() {
    let (_a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let reply = crate::wire::encode(&Frame::Reply {
        id: 12345,
        result: crate::wire::ReplyBody::Ok(b""),
    })
    .unwrap();
    b.on_message(&Bytes::from(reply), now);
    assert!(!b.is_closed(), "a late reply is dropped, the link stays");
    b.on_text();
    assert!(matches!(
        transmits(&mut b)[..],
        [Transmit::Close {
            code: close::UNSUPPORTED,
            ..
        }]
    ));
    let (_a, mut b, _) = linked(Limits::default());
    b.on_message(&Bytes::from_static(&[9, 0, 0]), now);
    assert!(matches!(
        transmits(&mut b)[..],
        [Transmit::Close {
            code: close::PROTOCOL,
            ..
        }]
    ));
}

// --- Every input in every state -------------------------------------------------------------

/// What the remote can deliver to an engine.
#[derive(Debug, Clone, Copy)]
enum Input {
    Hello,
    Call,
    Reply,
    Cancel,
    AppPing,
    AppPong,
    Garbage,
    Text,
    WsPing,
    WsPong,
    Fragment,
    Close,
}

const INPUTS: [Input; 12] = [
    Input::Hello,
    Input::Call,
    Input::Reply,
    Input::Cancel,
    Input::AppPing,
    Input::AppPong,
    Input::Garbage,
    Input::Text,
    Input::WsPing,
    Input::WsPong,
    Input::Fragment,
    Input::Close,
];

fn feed(engine: &mut Engine, input: Input, now: Instant) {
    let frame = |frame: &Frame<'_>| Bytes::from(crate::wire::encode(frame).unwrap());
    let captures = crate::wire::encode(&(1u32, ())).unwrap();
    match input {
        Input::Hello => engine.on_message(
            &Bytes::from(
                Hello {
                    peer: PeerId::from_name("remote"),
                    max_message_size: 1 << 20,
                    app_version: None,
                    manifest: Manifest::default(),
                    nonce: 1,
                    proof: None,
                    resumable: false,
                    session: None,
                }
                .to_bytes()
                .unwrap(),
            ),
            now,
        ),
        Input::Call => engine.on_message(
            &frame(&Frame::Call {
                id: 1,
                block: <Echo as Block>::INFO.id(),
                name: <Echo as Block>::INFO.name().into(),
                deadline_ms: 1000,
                metadata: Metadata::default(),
                captures: &captures,
            }),
            now,
        ),
        Input::Reply => engine.on_message(
            &frame(&Frame::Reply {
                id: 77,
                result: crate::wire::ReplyBody::Ok(b"x"),
            }),
            now,
        ),
        Input::Cancel => engine.on_message(&frame(&Frame::Cancel { id: 77 }), now),
        Input::AppPing => engine.on_message(&frame(&Frame::Ping { nonce: 1 }), now),
        Input::AppPong => engine.on_message(&frame(&Frame::Pong { nonce: 1 }), now),
        Input::Garbage => engine.on_message(&Bytes::from_static(&[0xff; 9]), now),
        Input::Text => engine.on_text(),
        Input::WsPing => engine.on_ping(Bytes::new(), now),
        Input::WsPong => engine.on_pong(now),
        Input::Fragment => engine.on_fragment(100, now),
        Input::Close => engine.on_close(Some(close::NORMAL), Some("bye".to_owned()), now),
    }
}

/// What an engine did with one input: what it sent, and what it told the adapter.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Nothing sent, nothing told, still open.
    Nothing,
    /// The hello passed: the adapter decides.
    Admit,
    /// A block runs.
    Runs,
    /// An answer frame was sent (pong), the link stays.
    Answered,
    /// A WebSocket pong was sent.
    WsPong,
    /// The link closed with this code (0: the remote closed, answered with 1000).
    Closed(u16),
}

fn outcome(engine: &mut Engine) -> Outcome {
    let sent = transmits(engine);
    let told = events(engine);
    let close = sent.iter().find_map(|transmit| match transmit {
        Transmit::Close { code, .. } => Some(*code),
        _ => None,
    });
    if let Some(code) = close {
        assert!(
            told.iter()
                .any(|event| matches!(event, Event::Closed { .. })),
            "a close frame goes with a Closed event: {told:?}"
        );
        return Outcome::Closed(code);
    }
    if told.iter().any(|event| matches!(event, Event::Run(_))) {
        return Outcome::Runs;
    }
    if told
        .iter()
        .any(|event| matches!(event, Event::Hello { .. }))
    {
        return Outcome::Admit;
    }
    match sent.as_slice() {
        [] => Outcome::Nothing,
        [Transmit::Pong(_)] => Outcome::WsPong,
        [Transmit::Binary(_)] => Outcome::Answered,
        other => panic!("unexpected transmits {other:?}"),
    }
}

/// An accepting engine in each state: waiting for the hello, admitting, live, closed.
fn in_state(state: &str) -> Engine {
    let budgets = Budgets::new(1 << 30, 1 << 20);
    let now = Instant::now();
    let mut engine = engine("b", Role::Accepting, Limits::default(), &budgets);
    if state == "handshaking" {
        return engine;
    }
    feed(&mut engine, Input::Hello, now);
    let _ = (transmits(&mut engine), events(&mut engine));
    if state == "admitting" {
        return engine;
    }
    engine.accept(now);
    let _ = (transmits(&mut engine), events(&mut engine));
    if state == "live" {
        return engine;
    }
    engine.close(close::NORMAL, "done");
    let _ = (transmits(&mut engine), events(&mut engine));
    engine
}

#[test]
fn every_input_in_every_state() {
    use Outcome as O;
    let expected: [(&str, [Outcome; 12]); 4] = [
        (
            "handshaking",
            // Anything but a hello where the hello belongs closes with 1002; text with 1003;
            // pings are not answered before the hello; the remote may close.
            [
                O::Admit,
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::UNSUPPORTED),
                O::Nothing,
                O::Nothing,
                O::Nothing,
                O::Closed(close::NORMAL),
            ],
        ),
        (
            "admitting",
            // Nothing may come between the remote's hello and this side's decision.
            [
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::PROTOCOL),
                O::Closed(close::UNSUPPORTED),
                O::Nothing,
                O::Nothing,
                O::Nothing,
                O::Closed(close::NORMAL),
            ],
        ),
        (
            "live",
            // A second hello does not decode as a frame; a late reply and a cancel for
            // nothing are dropped; pings are answered once.
            [
                O::Closed(close::PROTOCOL),
                O::Runs,
                O::Nothing,
                O::Nothing,
                O::Answered,
                O::Nothing,
                O::Closed(close::PROTOCOL),
                O::Closed(close::UNSUPPORTED),
                O::WsPong,
                O::Nothing,
                O::Nothing,
                O::Closed(close::NORMAL),
            ],
        ),
        ("closed", [const { O::Nothing }; 12]),
    ];
    let now = Instant::now();
    for (state, outcomes) in expected {
        for (input, want) in INPUTS.into_iter().zip(outcomes) {
            let mut engine = in_state(state);
            feed(&mut engine, input, now);
            let got = outcome(&mut engine);
            assert_eq!(got, want, "{input:?} while {state}");
        }
    }
}

#[test]
fn a_refusal_reason_is_cut_to_what_a_close_frame_carries() {
    let mut engine = in_state("admitting");
    let long = "é".repeat(200);
    engine.refuse(HandshakeError::Protocol(long));
    let reasons: Vec<String> = transmits(&mut engine)
        .into_iter()
        .filter_map(|transmit| match transmit {
            Transmit::Close { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    // 123 bytes at most (RFC 6455: 125 less the code), cut between characters.
    assert!(
        reasons[0].len() <= 123 && reasons[0].len() > 100,
        "{}",
        reasons[0].len()
    );
    assert!(reasons[0].ends_with('é'));
}

// --- Streams ---------------------------------------------------------------------------------

use crate::stream::inbox::{Inbox, Window};

/// A stream block, so that the registry has one for these tests.
#[expect(dead_code, reason = "only its registration is used")]
fn numbers(target: PeerId) -> crate::RemoteStream<u32> {
    crate::remote_stream!(target, [] -> u32 { futures_util::stream::iter(0..1000u32) })
}

fn stream_block() -> crate::BlockInfo {
    crate::blocks()
        .into_iter()
        .find(|info| info.is_stream() && info.name().starts_with(module_path!()))
        .expect("the stream block is registered")
}

fn item(value: u32) -> Payload {
    Payload::encode(&value, crate::wire::REPLY_ROOM).unwrap()
}

#[test]
fn a_stream_sends_within_its_credit_and_the_caller_grants_more_as_items_are_taken() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let info = stream_block();
    let inbox = Inbox::new(Window {
        items: 4,
        bytes: 1 << 20,
    });
    let mut request = request_named(0, Duration::from_secs(30), info.name(), info.id());
    request.stream = Some(inbox.clone());
    let (reply, mut ended) = oneshot::channel();
    let id = a.next_call_id();
    a.call(id, request, reply, now);
    pump(&mut a, &mut b, now);
    let run = match events(&mut b).pop() {
        Some(Event::Run(run)) => run,
        other => panic!("expected a run, got {other:?}"),
    };
    assert_eq!(run.stream, Some(inbox.window()));
    // The callee may send the window: three items in one frame, then one, then nothing.
    assert_eq!(b.allowance(run.id), (4, 1 << 20));
    let left = b.stream_items(run.id, vec![item(1), item(2), item(3)]);
    assert_eq!(left.0, 1);
    assert_eq!(b.stream_items(run.id, vec![item(4)]), (0, 0));
    assert_eq!(
        b.stream_items(run.id, vec![item(99)]),
        (0, 0),
        "beyond the credit: dropped"
    );
    pump(&mut b, &mut a, now);
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut received = Vec::new();
    while let Some((mut items, count)) = inbox.pop(&mut cx) {
        for _ in 0..count {
            let (value, used): (u32, usize) = crate::wire::decode_prefix(&items, 1024).unwrap();
            received.push(value);
            items = items.slice(used..);
        }
        assert!(items.is_empty());
    }
    assert_eq!(received, [1, 2, 3, 4], "in order, the fifth never sent");
    // The consumer takes half the window: the caller grants as many more.
    inbox.took(2, 2);
    a.credit(id);
    pump(&mut a, &mut b, now);
    assert!(
        matches!(events(&mut b)[..], [Event::Credit(credited)] if credited == run.id),
        "the blocked callee is told it may go on"
    );
    assert_eq!(b.allowance(run.id).0, 2, "two more, no third");
    // The reply ends the stream.
    b.finish(run.id, Payload::encode(&(), crate::wire::REPLY_ROOM), now);
    pump(&mut b, &mut a, now);
    assert!(replied(&mut ended).is_ok());
    assert_eq!(b.allowance(run.id), (0, 0));
}

#[test]
fn items_beyond_the_credit_close_the_link_and_a_plain_call_of_a_stream_block_is_refused() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    let info = stream_block();
    // A plain call of a stream block does not run.
    let (reply, mut refused) = oneshot::channel();
    let plain = request_named(0, Duration::from_secs(30), info.name(), info.id());
    a.call(a.next_call_id(), plain, reply, now);
    pump(&mut a, &mut b, now);
    assert!(runs(&events(&mut b)).is_empty());
    pump(&mut b, &mut a, now);
    assert!(matches!(
        replied(&mut refused),
        Err(RemoteError::VersionMismatch { .. })
    ));
    // A stream with a window of two items: a frame of three is a violation.
    let inbox = Inbox::new(Window {
        items: 2,
        bytes: 1 << 20,
    });
    let mut request = request_named(0, Duration::from_secs(30), info.name(), info.id());
    request.stream = Some(inbox.clone());
    let (reply, _ended) = oneshot::channel();
    let id = a.next_call_id();
    a.call(id, request, reply, now);
    pump(&mut a, &mut b, now);
    for count in [1, 3] {
        let frame = crate::wire::encode(&Frame::Items {
            id,
            count,
            items: &[7; 3],
        })
        .unwrap();
        a.on_message(&Bytes::from(frame), now);
    }
    assert_eq!(inbox.len(), 1, "the frame within the credit was taken");
    assert!(
        transmits(&mut a)
            .iter()
            .any(|transmit| matches!(transmit, Transmit::Close { code: 1002, .. })),
        "the caller closes the link with a protocol error"
    );
    assert!(a.is_closed());
}

// --- Session resume ----------------------------------------------------------------------------

#[test]
fn a_link_resumed_after_a_drop_delivers_every_frame_once_and_calls_made_meanwhile_go_through() {
    let (mut a, mut b, _) = linked(Limits::default());
    let now = Instant::now();
    assert!(a.session_keys().is_some() && a.session_keys() == b.session_keys());
    // A call runs on b; the socket drops before its reply gets through.
    let (_, mut first) = call(&mut a, 1);
    pump(&mut a, &mut b, now);
    let run = match events(&mut b).pop() {
        Some(Event::Run(run)) => run,
        other => panic!("expected a run, got {other:?}"),
    };
    a.lost(now);
    b.lost(now);
    assert!(matches!(events(&mut a)[..], [Event::Suspended { .. }]));
    assert!(matches!(events(&mut b)[..], [Event::Suspended { .. }]));
    execute(&mut b, run);
    assert!(transmits(&mut b).is_empty(), "no socket: the reply waits");
    // A call made while the link waits goes out on the new socket.
    let (_, mut second) = call(&mut a, 2);
    assert!(transmits(&mut a).is_empty());
    assert!(first.try_recv().unwrap().is_none(), "still pending");
    // a dials again presenting what it received; b answers and sends again what a lacks.
    let (keys, received) = a.resume_token().expect("a resumes");
    assert_eq!(keys, b.session_keys().unwrap());
    a.resuming(now);
    assert!(b.adopt(received, now));
    pump(&mut b, &mut a, now);
    pump(&mut a, &mut b, now);
    assert!(matches!(events(&mut a)[..], [Event::Resumed { .. }]));
    let b_events = events(&mut b);
    assert_eq!(
        runs(&b_events).len(),
        1,
        "the second call runs, the first not again"
    );
    for event in b_events {
        if let Event::Run(run) = event {
            execute(&mut b, run);
        }
    }
    pump(&mut b, &mut a, now);
    let first: u32 = crate::wire::decode(&replied(&mut first).unwrap(), 64).unwrap();
    let second: u32 = crate::wire::decode(&replied(&mut second).unwrap(), 64).unwrap();
    assert_eq!((first, second), (1, 2));
}

#[test]
fn past_the_resume_window_pending_calls_fail_with_connection_lost() {
    let (mut a, _b, _) = linked(Limits::default());
    let now = Instant::now();
    let (_, mut pending) = call(&mut a, 1);
    a.lost(now);
    let until = a.poll_timeout().expect("the window's end");
    assert!(until <= now + Limits::default().resume_window);
    a.on_timeout(until);
    assert!(a.is_closed());
    assert!(matches!(
        replied(&mut pending),
        Err(RemoteError::ConnectionLost { .. })
    ));
}

#[test]
fn acknowledged_frames_leave_the_replay_buffer_and_a_full_one_holds_new_work() {
    let limits = Limits {
        max_replay_bytes: 1024,
        ..Limits::default()
    };
    let budget = Budgets::new(1 << 30, 1 << 20);
    let now = Instant::now();
    let mut a = engine("a", Role::Connecting, limits.clone(), &budget);
    let mut b = engine("b", Role::Accepting, limits, &budget);
    pump(&mut a, &mut b, now);
    events(&mut b);
    b.accept(now);
    pump(&mut b, &mut a, now);
    events(&mut b);
    events(&mut a);
    a.accept(now);
    events(&mut a);
    // Calls fill a's replay buffer until b acknowledges them.
    let mut calls = Vec::new();
    while !a.replay_full() {
        calls.push(call(&mut a, 7));
    }
    assert!(
        calls.len() < 64,
        "acknowledged after {} frames",
        calls.len()
    );
    pump(&mut a, &mut b, now);
    // b acknowledges at its next ping.
    let ping_at = b.poll_timeout().unwrap();
    b.on_timeout(ping_at);
    pump(&mut b, &mut a, ping_at);
    assert!(!a.replay_full(), "acknowledged frames were dropped");
}

#[test]
fn a_close_that_says_interrupted_suspends_a_resumable_link_and_any_other_ends_it() {
    let now = Instant::now();
    let (mut a, _b, _) = linked(Limits::default());
    let (_, mut pending) = call(&mut a, 1);
    a.on_close(Some(close::INTERRUPTED), None, now);
    assert!(a.is_suspended() && !a.is_closed());
    assert!(
        pending.try_recv().unwrap().is_none(),
        "the call waits for the resume"
    );
    let (mut a, _b, _) = linked(Limits::default());
    let (_, mut pending) = call(&mut a, 1);
    a.on_close(Some(close::NORMAL), None, now);
    assert!(a.is_closed());
    assert!(matches!(
        replied(&mut pending),
        Err(RemoteError::ConnectionLost { .. })
    ));
}
