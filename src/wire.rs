//! The wire protocol: frames, the handshake, and the one size-limited decode helper.
//!
//! Every byte that arrives from the network is decoded through [`decode`], which checks the
//! length against the configured maximum first, keeps every allocation backed by input, and
//! rejects trailing bytes. See `docs/protocol.md`.

mod bounded;

use std::borrow::Cow;
use std::marker::PhantomData;

use bincode::config::{Config, standard};
use serde::de::Deserialize;
use serde::{Serialize, Serializer};

use crate::{PeerId, RemoteError};

/// The first bytes of every link's first frame, checked before any bincode.
pub(crate) const MAGIC: [u8; 4] = *b"DSCP";

/// The protocol version this build speaks; checked right after [`MAGIC`].
/// Version 2 added the block manifest to `Hello`; version 3 its nonce and proof of identity.
pub(crate) const PROTOCOL_VERSION: u16 = 4;

/// The largest `max_message_size` a peer accepts: 1 GiB.
pub const MAX_MESSAGE_SIZE_CEILING: usize = 1 << 30;

/// The largest message accepted before the handshake completed: a `Hello` is tiny.
pub(crate) const MAX_HELLO_SIZE: usize = 64 << 10;

/// The default `max_message_size`: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The most bincode may *claim* while decoding, however long the input: 16 claimed bytes per
/// input byte, times [`MAX_MESSAGE_SIZE_CEILING`].
///
/// bincode 2.0.1's limit is a const generic bounding the sum of its claims, and on the serde
/// path a claim is `size_of` of a value, not the bytes it took: a `u32` claims 4 bytes and a
/// `u64` or a length prefix 8, for a varint of one byte; a `u128` claims 16. Claims are never
/// given back (only bincode's own `Decode` impls for containers do that). A limit derived
/// from the input's length therefore refuses valid data (a 20 KB `Vec<u32>` claims 80 KB), so
/// the limit sits where valid input can never reach it, and allocation is bounded by
/// [`bounded::Bounded`] instead (see [`decode`]). On 32-bit targets (the browser) the limit
/// saturates at `usize::MAX`, which only worst-case input (all one-byte `u128`s) reaches,
/// past 256 MiB.
const CLAIM_LIMIT: usize = MAX_MESSAGE_SIZE_CEILING.saturating_mul(16);

const _: () = assert!(CLAIM_LIMIT / 16 == MAX_MESSAGE_SIZE_CEILING || usize::BITS < 64);

/// Decodes network bytes: THE one entry point for untrusted input.
///
/// Fails with [`RemoteError::TooLarge`] if `bytes` is longer than `max`, and with
/// [`RemoteError::Decode`] for malformed input, hostile length prefixes and trailing bytes.
///
/// What keeps a hostile length prefix (12 bytes claiming a terabyte) from becoming an
/// allocation: bincode's serde deserializer allocates before it reads in one place only, the
/// owned `String` and byte buffer paths (`vec![0; len]`, then the read that finds the input
/// short). [`bounded::Bounded`] reads those through the borrowing paths instead, which check
/// `len` against the remaining input before anything is copied, and caps the size hint serde
/// preallocates sequences and maps from at the input's length. So every allocation a length
/// prefix asks for is backed by input, and any valid encoding up to `max` decodes, whatever
/// its element types.
pub(crate) fn decode<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    max: usize,
) -> Result<T, RemoteError> {
    let (value, used) = decode_prefix(bytes, max)?;
    if used != bytes.len() {
        return Err(RemoteError::decode(format_args!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// [`decode`] of the first value in `bytes` (more may follow it, as the items of a
/// `Frame::Items` do): the value and the bytes it took.
pub(crate) fn decode_prefix<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    max: usize,
) -> Result<(T, usize), RemoteError> {
    if bytes.len() > max || bytes.len() > MAX_MESSAGE_SIZE_CEILING {
        return Err(RemoteError::TooLarge {
            peer: None,
            block: None,
            size: bytes.len() as u64,
            limit: max.min(MAX_MESSAGE_SIZE_CEILING) as u64,
        });
    }
    let seed = bounded::Bounded::new(PhantomData::<T>, bytes.len());
    let config = standard().with_limit::<CLAIM_LIMIT>();
    bincode::serde::seed_decode_from_slice(seed, bytes, config).map_err(RemoteError::decode)
}

/// [`decode`] for a frame, with a fast path for the frames of every call: a `Call` without
/// metadata, an `Ok` reply, `Cancel`, `Ping` and `Pong` are read field by field (a few
/// varints and a borrowed slice, each length checked against what is left of the input),
/// the same way bincode reads them. Anything else, or anything the fast path does not take
/// as it is, goes through [`decode`], which decides: the fast path never refuses a frame.
pub(crate) fn decode_frame(bytes: &[u8], max: usize) -> Result<Frame<'_>, RemoteError> {
    if bytes.len() <= max.min(MAX_MESSAGE_SIZE_CEILING)
        && let Some(frame) = fast::frame(bytes)
    {
        return Ok(frame);
    }
    decode(bytes, max)
}

/// The fast path of [`decode_frame`]: `None` whenever it is not sure.
mod fast {
    use std::borrow::Cow;

    use super::{Frame, Metadata, ReplyBody};

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        /// bincode's unsigned varint (little endian): one byte up to 250, else a marker
        /// and 2, 4 or 8 bytes.
        fn varint(&mut self) -> Option<u64> {
            let (&first, rest) = self.0.split_first()?;
            let (value, used) = match first {
                0..=250 => (u64::from(first), 0),
                251 => (
                    u64::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?)),
                    2,
                ),
                252 => (
                    u64::from(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?)),
                    4,
                ),
                253 => (u64::from_le_bytes(rest.get(..8)?.try_into().ok()?), 8),
                _ => return None,
            };
            self.0 = &rest[used..];
            Some(value)
        }

        fn bytes(&mut self) -> Option<&'a [u8]> {
            let len = usize::try_from(self.varint()?).ok()?;
            if len > self.0.len() {
                return None;
            }
            let (taken, rest) = self.0.split_at(len);
            self.0 = rest;
            Some(taken)
        }

        fn str(&mut self) -> Option<&'a str> {
            std::str::from_utf8(self.bytes()?).ok()
        }

        fn done<T>(&self, value: T) -> Option<T> {
            self.0.is_empty().then_some(value)
        }
    }

    pub(super) fn frame(bytes: &[u8]) -> Option<Frame<'_>> {
        let mut reader = Reader(bytes);
        match reader.varint()? {
            0 => {
                let id = reader.varint()?;
                let block = reader.varint()?;
                let name = reader.str()?;
                let deadline_ms = reader.varint()?;
                if reader.varint()? != 0 {
                    return None;
                }
                let captures = reader.bytes()?;
                reader.done(Frame::Call {
                    id,
                    block,
                    name: Cow::Borrowed(name),
                    deadline_ms,
                    metadata: Metadata::default(),
                    captures,
                })
            }
            1 => {
                let id = reader.varint()?;
                if reader.varint()? != 0 {
                    return None;
                }
                let output = reader.bytes()?;
                reader.done(Frame::Reply {
                    id,
                    result: ReplyBody::Ok(output),
                })
            }
            2 => {
                let id = reader.varint()?;
                reader.done(Frame::Cancel { id })
            }
            3 => {
                let nonce = reader.varint()?;
                reader.done(Frame::Ping { nonce })
            }
            4 => {
                let nonce = reader.varint()?;
                reader.done(Frame::Pong { nonce })
            }
            5 => {
                let id = reader.varint()?;
                let count = reader.varint()?;
                let items = reader.bytes()?;
                reader.done(Frame::Items { id, count, items })
            }
            6 => {
                let id = reader.varint()?;
                let items = reader.varint()?;
                let bytes = reader.varint()?;
                reader.done(Frame::Credit { id, items, bytes })
            }
            7 => {
                let received = reader.varint()?;
                reader.done(Frame::Ack { received })
            }
            _ => None,
        }
    }
}

/// [`decode`] for a value inside `frame`: byte strings of [`Bytes`](crate::Bytes) values in it
/// are shared with the frame instead of copied.
pub(crate) fn decode_shared<T: serde::de::DeserializeOwned>(
    frame: &bytes::Bytes,
    max: usize,
) -> Result<T, RemoteError> {
    crate::blob::with_frame(frame, || decode(frame, max))
}

/// [`decode_prefix`] sharing byte strings with `frame`, as [`decode_shared`].
pub(crate) fn decode_shared_prefix<T: serde::de::DeserializeOwned>(
    frame: &bytes::Bytes,
    max: usize,
) -> Result<(T, usize), RemoteError> {
    crate::blob::with_frame(frame, || decode_prefix(frame, max))
}

/// Encodes a value with the protocol's bincode configuration.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, RemoteError> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), RemoteError> {
    bincode::serde::encode_into_std_write(value, out, config()).map_err(RemoteError::decode)?;
    Ok(())
}

fn config() -> impl Config {
    standard()
}

/// Appends to a `Vec` without going through `io::Write`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Large frame buffers, kept for reuse: writing a multi-MiB payload into fresh memory costs
/// a page fault per 4 KiB, more than the copy itself.
mod pool {
    use std::sync::Mutex;

    /// Buffers smaller than this are cheap to allocate and are not pooled.
    const MIN: usize = 256 << 10;
    /// At most this many bytes of idle buffers are kept.
    const MAX_IDLE: usize = 32 << 20;

    static IDLE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    /// An empty buffer with room for at least `capacity` bytes.
    pub(super) fn take(capacity: usize) -> Vec<u8> {
        if capacity >= MIN
            && let Ok(mut idle) = IDLE.lock()
            && let Some(at) = idle.iter().position(|buffer| buffer.capacity() >= capacity)
        {
            return idle.swap_remove(at);
        }
        Vec::with_capacity(capacity)
    }

    /// A buffer handed to a `Bytes`: it goes back to the pool when the last `Bytes` drops.
    pub(super) struct Pooled(pub(super) Vec<u8>);

    impl AsRef<[u8]> for Pooled {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Pooled {
        fn drop(&mut self) {
            let mut buffer = std::mem::take(&mut self.0);
            if buffer.capacity() < MIN {
                return;
            }
            if let Ok(mut idle) = IDLE.lock() {
                let held: usize = idle.iter().map(Vec::capacity).sum();
                if held + buffer.capacity() <= MAX_IDLE {
                    buffer.clear();
                    idle.push(buffer);
                }
            }
        }
    }

    /// The buffer as shared bytes that return it to the pool.
    pub(super) fn share(buffer: Vec<u8>) -> bytes::Bytes {
        if buffer.capacity() >= MIN {
            bytes::Bytes::from_owner(Pooled(buffer))
        } else {
            bytes::Bytes::from(buffer)
        }
    }
}

/// An encoded value (captures or a result) with room reserved in front of it for the header
/// of the frame that will carry it: the value is encoded once, straight into its frame, in a
/// buffer of exactly the right size.
#[derive(Debug)]
pub(crate) struct Payload {
    buffer: Vec<u8>,
    start: usize,
}

/// Room for a reply header (variant, call id, result variant, length), or an item header.
pub(crate) const REPLY_ROOM: usize = 32;

/// Room for a call header besides the block name: variant, ids, deadline, a `traceparent`
/// entry, length.
pub(crate) const CALL_ROOM: usize = 160;

impl Payload {
    /// Encodes `value` after `room` spare bytes.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        value: &T,
        room: usize,
    ) -> Result<Self, RemoteError> {
        Self::encode_within(value, room, usize::MAX)
    }

    /// Encodes `value` after `room` spare bytes, or fails with `TooLarge` if the frame it
    /// makes (room included) would be longer than `limit`: the size is measured first, so an
    /// oversized value is never copied into a buffer.
    pub(crate) fn encode_within<T: Serialize + ?Sized>(
        value: &T,
        room: usize,
        limit: usize,
    ) -> Result<Self, RemoteError> {
        let mut size = bincode::enc::write::SizeWriter::default();
        bincode::serde::encode_into_writer(value, &mut size, config())
            .map_err(RemoteError::decode)?;
        let framed = size.bytes_written.saturating_add(room);
        if framed > limit {
            return Err(RemoteError::TooLarge {
                peer: None,
                block: None,
                size: framed as u64,
                limit: limit as u64,
            });
        }
        let mut buffer = pool::take(room + size.bytes_written);
        buffer.resize(room, 0);
        bincode::serde::encode_into_writer(value, VecWriter(&mut buffer), config())
            .map_err(RemoteError::decode)?;
        Ok(Self {
            buffer,
            start: room,
        })
    }

    /// The encoded value.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    pub(crate) fn len(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// A copy of the encoded value with the same room in front: one encoding sent to
    /// several peers, each frame built in its own buffer.
    pub(crate) fn duplicate(&self) -> Self {
        let mut buffer = pool::take(self.buffer.len());
        buffer.resize(self.start, 0);
        buffer.extend_from_slice(self.bytes());
        Self {
            buffer,
            start: self.start,
        }
    }

    /// The value alone, without the spare room (for local calls that skip the network).
    pub(crate) fn into_bytes(self) -> bytes::Bytes {
        let start = self.start;
        pool::share(self.buffer).slice(start..)
    }

    /// Puts `header` in front of the value: in the reserved room when it fits (no copy of the
    /// value), else in a new buffer.
    fn framed(mut self, header: &[u8]) -> bytes::Bytes {
        if header.len() <= self.start {
            let from = self.start - header.len();
            self.buffer[from..self.start].copy_from_slice(header);
            pool::share(self.buffer).slice(from..)
        } else {
            let mut frame = Vec::with_capacity(header.len() + self.len());
            frame.extend_from_slice(header);
            frame.extend_from_slice(self.bytes());
            bytes::Bytes::from(frame)
        }
    }

    /// The bytes of `Frame::Call` carrying this payload as its captures.
    pub(crate) fn into_call_frame(
        self,
        id: u64,
        block: u64,
        name: &str,
        deadline_ms: u64,
        metadata: &[(Cow<'_, str>, Cow<'_, str>)],
    ) -> Result<bytes::Bytes, RemoteError> {
        // The fields of `Frame::Call` in order, ending with the length of `captures`: the
        // same bytes bincode writes for the enum (variant index 0), followed by the payload.
        let header = (
            0u32,
            id,
            block,
            name,
            deadline_ms,
            metadata,
            self.len() as u64,
        );
        self.with_header(&header)
    }

    /// The bytes of `Frame::Reply { id, result: Ok(payload) }`.
    pub(crate) fn into_reply_frame(self, id: u64) -> Result<bytes::Bytes, RemoteError> {
        let len = self.len() as u64;
        self.with_header(&(1u32, id, 0u32, len))
    }

    /// The bytes of `Frame::Items { id, count: 1, items: payload }`.
    pub(crate) fn into_item_frame(self, id: u64) -> Result<bytes::Bytes, RemoteError> {
        let len = self.len() as u64;
        self.with_header(&(5u32, id, 1u64, len))
    }
}

/// The bytes of `Frame::Items` carrying `items` (at least one) of stream call `id`: a single
/// item in its own buffer (no copy), several copied after one header.
pub(crate) fn items_frame(id: u64, mut items: Vec<Payload>) -> Result<bytes::Bytes, RemoteError> {
    if items.len() == 1
        && let Some(item) = items.pop()
    {
        return item.into_item_frame(id);
    }
    let len: usize = items.iter().map(Payload::len).sum();
    let header = encode(&(5u32, id, items.len() as u64, len as u64))?;
    let mut frame = Vec::with_capacity(header.len() + len);
    frame.extend_from_slice(&header);
    for item in &items {
        frame.extend_from_slice(item.bytes());
    }
    Ok(bytes::Bytes::from(frame))
}

impl Payload {
    /// [`Payload::framed`] with `header` encoded on the stack (most headers are a few dozen
    /// bytes), or in a buffer of its own if it is longer.
    fn with_header<H: Serialize>(self, header: &H) -> Result<bytes::Bytes, RemoteError> {
        let mut stack = [0u8; 256];
        match bincode::serde::encode_into_slice(header, &mut stack, config()) {
            Ok(len) => Ok(self.framed(&stack[..len])),
            Err(_too_long) => Ok(self.framed(&encode(header)?)),
        }
    }
}

/// The deadline a `Call` frame carries: the time left less a margin (5 %, at most 50 ms), so
/// that the callee's `Timeout` reply, naming the innermost block that ran out, reaches the
/// caller before the caller's own timer fires: nested hops fail from the inside out.
pub(crate) fn deadline_ms(remaining: std::time::Duration) -> u64 {
    let margin = (remaining / 20).min(std::time::Duration::from_millis(50));
    (remaining - margin)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// The reply frame for call `id`: the result's payload with its header put in front (no copy),
/// or an error reply. A result over `remote_max` becomes `TooLarge`; errors produced here are
/// marked with `local`.
pub(crate) fn reply_frame(
    id: u64,
    result: Result<Payload, RemoteError>,
    remote_max: usize,
    local: Option<PeerId>,
) -> Result<bytes::Bytes, RemoteError> {
    let error = match result {
        Ok(output) if output.len() + REPLY_ROOM <= remote_max => {
            return output.into_reply_frame(id);
        }
        Ok(output) => RemoteError::TooLarge {
            peer: local,
            block: None,
            size: (output.len() + REPLY_ROOM) as u64,
            limit: remote_max as u64,
        },
        Err(error) => error.produced_at(local),
    };
    encode(&Frame::Reply {
        id,
        result: ReplyBody::Err(error),
    })
    .map(bytes::Bytes::from)
}

/// The handshake frame, sent by both sides as the first frame of a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Hello {
    pub(crate) peer: PeerId,
    pub(crate) max_message_size: u64,
    pub(crate) app_version: Option<String>,
    /// The blocks this peer can run, so that the other side knows before it calls.
    pub(crate) manifest: Manifest,
    /// Fresh for every hello: what the other side's proof of identity is bound to.
    pub(crate) nonce: u128,
    /// The accepting side's proof of identity (a short-lived JWT whose `nonce` claim is the
    /// connecting side's nonce), if it has an identity to prove.
    pub(crate) proof: Option<String>,
    /// The connecting side: whether it resumes the link after a drop.
    pub(crate) resumable: bool,
    /// The accepting side: the keys of the link's session, if both sides resume.
    pub(crate) session: Option<SessionKeys>,
}

/// The keys of a session, made by the accepting side and sent in its `Hello`: the connecting
/// side presents both to resume it. Only the two sides of the link know the secret.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct SessionKeys {
    pub(crate) id: u128,
    pub(crate) secret: u128,
}

impl SessionKeys {
    pub(crate) fn new() -> Self {
        Self {
            id: uuid::Uuid::new_v4().as_u128(),
            secret: uuid::Uuid::new_v4().as_u128(),
        }
    }

    /// Whether `secret` is this session's, compared in constant time.
    #[cfg_attr(
        target_arch = "wasm32",
        expect(
            dead_code,
            reason = "browser peers only connect, and never check a resume"
        )
    )]
    pub(crate) fn admits(&self, secret: u128) -> bool {
        let difference = self.secret ^ secret;
        // Every bit is looked at, whatever the first difference.
        difference.count_ones() == 0
    }
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("id", &format_args!("{:032x}", self.id))
            .finish_non_exhaustive()
    }
}

/// The blocks a peer can run, sent in its `Hello`: at most [`MAX_MANIFEST_BYTES`] of them
/// (`complete` says whether that was all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Manifest {
    pub(crate) blocks: Vec<ManifestEntry>,
    pub(crate) complete: bool,
}

/// One block of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct ManifestEntry {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) captures: String,
    pub(crate) output: String,
}

/// The most bytes of manifest entries a `Hello` carries, well within the 64 KiB a message
/// may have before the handshake completes.
pub(crate) const MAX_MANIFEST_BYTES: usize = 48 << 10;

/// Why a first frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloError {
    BadMagic,
    Version(u16),
    Malformed,
}

impl Hello {
    /// `MAGIC`, the protocol version (u16, big endian), then the bincode body.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, RemoteError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        encode_into(self, &mut out)?;
        Ok(out)
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, HelloError> {
        let Some(rest) = bytes.strip_prefix(&MAGIC) else {
            return Err(HelloError::BadMagic);
        };
        let (version, body) = match rest {
            [hi, lo, body @ ..] => (u16::from_be_bytes([*hi, *lo]), body),
            _ => return Err(HelloError::Malformed),
        };
        if version != PROTOCOL_VERSION {
            return Err(HelloError::Version(version));
        }
        // A hello is tiny; anything longer than a few KiB is hostile.
        // A hello is small: the limit before the handshake bounds it (64 KiB).
        decode(body, MAX_HELLO_SIZE).map_err(|_refused| HelloError::Malformed)
    }
}

/// A frame after the handshake.
#[derive(Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) enum Frame<'a> {
    /// Run a block. The captures stay an opaque byte string until the call is authorized.
    Call {
        id: u64,
        block: u64,
        #[serde(borrow)]
        name: Cow<'a, str>,
        /// Remaining time in milliseconds (a duration, so clocks need not agree).
        deadline_ms: u64,
        #[serde(borrow)]
        metadata: Metadata<'a>,
        #[serde(borrow, with = "serde_bytes")]
        captures: &'a [u8],
    },
    /// The outcome of a call.
    Reply {
        id: u64,
        #[serde(borrow)]
        result: ReplyBody<'a>,
    },
    /// The caller gave up on a call; the callee stops it.
    Cancel { id: u64 },
    /// Application-level liveness probe (browsers cannot send WebSocket pings).
    Ping { nonce: u64 },
    /// Answer to [`Frame::Ping`].
    Pong { nonce: u64 },
    /// The next `count` items of a stream call's body, in order, each encoded after the
    /// other in `items`; sent only within the caller's credit. The stream ends with the
    /// call's [`Frame::Reply`] (`Ok(())` or the error).
    Items {
        id: u64,
        count: u64,
        #[serde(borrow, with = "serde_bytes")]
        items: &'a [u8],
    },
    /// The caller of a stream call takes more: the callee may have sent `items` items in all
    /// and started one more while fewer than `bytes` item bytes in all were sent (totals
    /// since the call began, never decreasing).
    Credit { id: u64, items: u64, bytes: u64 },
    /// The sender received the first `received` numbered frames of the link (session resume).
    Ack { received: u64 },
    /// The accepting side's first message on a resumed link's new socket: it received the
    /// first `received` numbered frames; the numbered frames it lacks follow from the other
    /// side, as its own follow this.
    Resume { received: u64 },
}

/// The most metadata entries a call frame may carry at all: decoding stops there, so a frame
/// of millions of empty entries never allocates for them. The configured limit
/// (`max_metadata_entries`, default 32) is checked after decoding.
pub(crate) const MAX_METADATA_ENTRIES_CEILING: usize = 64;

/// A call's metadata: a small string map (trace context), borrowed from the frame.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Metadata<'a>(pub(crate) Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl Metadata<'_> {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Bytes of keys and values.
    pub(crate) fn bytes(&self) -> usize {
        self.0
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum()
    }

    /// The value of `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_ref())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Metadata<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;

        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Metadata<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "at most {MAX_METADATA_ENTRIES_CEILING} metadata entries")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = seq.next_element::<(Cow<'de, str>, Cow<'de, str>)>()? {
                    if entries.len() == MAX_METADATA_ENTRIES_CEILING {
                        return Err(serde::de::Error::custom("too many metadata entries"));
                    }
                    entries.push(entry);
                }
                Ok(Metadata(entries))
            }
        }

        deserializer.deserialize_seq(Entries)
    }
}

/// The body of a [`Frame::Reply`].
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
pub(crate) enum ReplyBody<'a> {
    Ok(#[serde(borrow, with = "serde_bytes")] &'a [u8]),
    Err(RemoteError),
}

impl Serialize for ReplyBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Ok(bytes) => serializer.serialize_newtype_variant(
                "ReplyBody",
                0,
                "Ok",
                serde_bytes::Bytes::new(bytes),
            ),
            Self::Err(error) => serializer.serialize_newtype_variant("ReplyBody", 1, "Err", error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_frame_path_agrees_with_serde_on_every_input() {
        let frames = [
            encode(&Frame::Call {
                id: 300,
                block: u64::MAX,
                name: "app::echo".into(),
                deadline_ms: 70_000,
                metadata: Metadata::default(),
                captures: b"captures",
            })
            .unwrap(),
            encode(&Frame::Call {
                id: 1,
                block: 2,
                name: "traced".into(),
                deadline_ms: 3,
                metadata: Metadata(vec![("traceparent".into(), "00-ab-cd-01".into())]),
                captures: b"",
            })
            .unwrap(),
            encode(&Frame::Reply {
                id: 70_000,
                result: ReplyBody::Ok(&[7; 300]),
            })
            .unwrap(),
            encode(&Frame::Reply {
                id: 5,
                result: ReplyBody::Err(RemoteError::Timeout {
                    peer: None,
                    block: None,
                }),
            })
            .unwrap(),
            encode(&Frame::Cancel { id: 1 << 40 }).unwrap(),
            encode(&Frame::Ping { nonce: 9 }).unwrap(),
            encode(&Frame::Pong { nonce: 251 }).unwrap(),
            encode(&Frame::Items {
                id: 300,
                count: 2,
                items: &[9; 260],
            })
            .unwrap(),
            encode(&Frame::Credit {
                id: 7,
                items: 1 << 20,
                bytes: u64::MAX,
            })
            .unwrap(),
        ];
        let mut taken = 0;
        let mut check = |bytes: &[u8]| {
            let slow = decode::<Frame<'_>>(bytes, 1 << 20);
            if let Some(fast) = fast::frame(bytes) {
                taken += 1;
                assert_eq!(slow.as_ref().ok(), Some(&fast), "{bytes:?}");
            }
            assert_eq!(decode_frame(bytes, 1 << 20).ok(), slow.ok(), "{bytes:?}");
        };
        for frame in &frames {
            check(frame);
            // Every truncation, every extension, and every single-byte change.
            for len in 0..frame.len() {
                check(&frame[..len]);
            }
            let mut longer = frame.clone();
            longer.push(0);
            check(&longer);
            for at in 0..frame.len() {
                for value in [0u8, 1, 2, 4, 5, 127, 250, 251, 252, 253, 254, 255] {
                    let mut changed = frame.clone();
                    changed[at] = value;
                    check(&changed);
                }
            }
        }
        assert!(taken > 1_000, "the fast path took {taken} inputs");
        // Over the limit: refused before either path reads anything.
        assert!(matches!(
            decode_frame(&frames[0], 4),
            Err(RemoteError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_byte_vec_travels_as_the_bytes_of_a_vec_of_u8() {
        use crate::__private::ByteVec;
        for len in [0usize, 1, 127, 128, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let as_sequence = encode(&(bytes.clone(), ())).unwrap();
            let as_string = encode(&(ByteVec(bytes.clone()), ())).unwrap();
            assert_eq!(as_sequence, as_string, "{len} bytes");
            // Either side may be an older build: each decodes the other's encoding.
            let (decoded, ()) = decode::<(ByteVec, ())>(&as_sequence, 1 << 20).unwrap();
            assert_eq!(decoded.0, bytes);
            let (decoded, ()) = decode::<(Vec<u8>, ())>(&as_string, 1 << 20).unwrap();
            assert_eq!(decoded, bytes);
        }
        // A length prefix past the input is refused before anything is allocated.
        let mut claim = encode(&(ByteVec(vec![1; 10]), ())).unwrap();
        claim[0] = 200;
        assert!(decode::<(ByteVec, ())>(&claim, 1 << 20).is_err());
    }

    #[test]
    fn call_frames_roundtrip_borrowing_captures() {
        let captures = [1u8, 2, 3, 4];
        let frame = Frame::Call {
            id: 7,
            block: 0xdead_beef,
            name: Cow::Borrowed("app@1:1"),
            deadline_ms: 30_000,
            metadata: Metadata(vec![(Cow::Borrowed("traceparent"), Cow::Borrowed("00-x"))]),
            captures: &captures,
        };
        let bytes = encode(&frame).unwrap();
        let back: Frame<'_> = decode(&bytes, 1 << 20).unwrap();
        assert_eq!(back, frame);
        match back {
            Frame::Call { captures: c, .. } => {
                // Borrowed straight out of the frame: no copy.
                let range = bytes.as_ptr_range();
                assert!(range.contains(&c.as_ptr()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reply_frames_roundtrip() {
        for result in [
            ReplyBody::Ok(b"xyz"),
            ReplyBody::Err(RemoteError::Timeout {
                peer: None,
                block: None,
            }),
        ] {
            let frame = Frame::Reply { id: 1, result };
            let bytes = encode(&frame).unwrap();
            assert_eq!(decode::<Frame<'_>>(&bytes, 1 << 20).unwrap(), frame);
        }
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode(&Frame::Cancel { id: 3 }).unwrap();
        bytes.push(0);
        let error = decode::<Frame<'_>>(&bytes, 1 << 20).unwrap_err();
        assert!(error.to_string().contains("trailing"), "{error}");
    }

    #[test]
    fn rejects_frames_over_the_limit_before_decoding() {
        let bytes = vec![0u8; 100];
        assert!(matches!(
            decode::<Vec<u8>>(&bytes, 99),
            Err(RemoteError::TooLarge {
                size: 100,
                limit: 99,
                ..
            })
        ));
    }

    /// 12 bytes of input: a varint length prefix claiming `len` (253, then a `u64`), then 3
    /// bytes.
    fn claiming(len: u64) -> Vec<u8> {
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        bytes
    }

    /// Whether `decode` failed, and the most bytes this thread held allocated at once while it
    /// ran (the test binary counts allocations per thread).
    fn peak(decode: impl FnOnce() -> bool) -> (bool, u64) {
        let mut failed = false;
        let info = allocation_counter::measure(|| failed = decode());
        (failed, info.bytes_max)
    }

    fn fails<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> bool {
        decode::<T>(bytes, 1 << 20).is_err()
    }

    /// A type's name, and a decode of it that says whether it failed.
    type Case = (&'static str, fn(&[u8]) -> bool);

    /// What a hostile length prefix may cost: the error's message, nothing like the claim.
    const HOSTILE_PEAK: u64 = 1024;

    #[test]
    fn hostile_length_prefixes_are_errors_not_allocations() {
        use std::collections::HashMap;
        for claimed in [1 << 20, 1 << 30, 1 << 40, u64::MAX] {
            let bytes = claiming(claimed);
            let cases: [Case; 9] = [
                ("Vec<u8>", fails::<Vec<u8>>),
                ("String", fails::<String>),
                ("ByteBuf", fails::<serde_bytes::ByteBuf>),
                ("Bytes", fails::<crate::Bytes>),
                ("Vec<u64>", fails::<Vec<u64>>),
                ("Vec<String>", fails::<Vec<String>>),
                ("Vec<PeerId>", fails::<Vec<PeerId>>),
                ("HashMap<u64, String>", fails::<HashMap<u64, String>>),
                ("(String, String)", fails::<(String, String)>),
            ];
            for (name, decode) in cases {
                let (failed, held) = peak(|| decode(&bytes));
                assert!(failed, "{name} claiming {claimed} decoded");
                assert!(
                    held < HOSTILE_PEAK,
                    "{name} claiming {claimed} held {held} bytes"
                );
            }
        }
        // The same claims inside frames: a block name, a metadata list, an error message.
        let terabyte = claiming(1 << 40);
        let mut call = vec![0u8, 1, 2];
        call.extend_from_slice(&terabyte);
        let mut metadata = vec![0u8, 1, 2, 1, b'n', 9];
        metadata.extend_from_slice(&terabyte);
        let mut reply = vec![1u8, 7, 1, 12];
        reply.extend_from_slice(&terabyte);
        for frame in [call, metadata, reply] {
            let (failed, held) = peak(|| decode::<Frame<'_>>(&frame, 1 << 20).is_err());
            assert!(
                failed && held < HOSTILE_PEAK,
                "{frame:?}: held {held} bytes"
            );
        }
    }

    /// 1, 2, 3, 4, 5, 8, 9, 16, 17, ... up to `max`: every power of two and the size after it.
    fn sizes(max: usize) -> Vec<usize> {
        let mut sizes: Vec<usize> = (0..usize::BITS - 1)
            .flat_map(|k| [1 << k, (1 << k) + 1])
            .take_while(|&n| n <= max)
            .collect();
        sizes.dedup();
        sizes
    }

    /// Encodes `make(n)` for every size `n` of [`sizes`] whose encoding fits `max`, and the
    /// largest `n` that fits, and checks that each decodes back with `max` as the limit;
    /// returns the largest encoding tried.
    fn sweep<T>(max: usize, make: impl Fn(usize) -> T) -> usize
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let size = |n: usize| encode(&make(n)).unwrap().len();
        let all = sizes(max);
        let mut tried: Vec<usize> = all
            .iter()
            .copied()
            .take_while(|&n| size(n) <= max)
            .collect();
        // The largest fitting size lies between the last fitting size and the next one: found
        // by interpolation, since the encoding grows about linearly with the size.
        let mut low = *tried.last().expect("one element fits");
        let mut high = all.get(tried.len()).copied().unwrap_or(max + 1);
        let (mut low_size, mut high_size) = (size(low), size(high));
        while high - low > 1 {
            let step = (max - low_size) * (high - low) / (high_size - low_size).max(1);
            let probe = (low + step).clamp(low + 1, high - 1);
            let probe_size = size(probe);
            if probe_size <= max {
                (low, low_size) = (probe, probe_size);
            } else {
                (high, high_size) = (probe, probe_size);
            }
        }
        tried.push(low);
        let mut largest = 0;
        for n in tried {
            let value = make(n);
            let bytes = encode(&value).unwrap();
            match decode::<T>(&bytes, max) {
                Ok(back) => assert!(back == value, "size {n} came back different"),
                Err(error) => panic!("size {n} ({} bytes): {error}", bytes.len()),
            }
            largest = largest.max(bytes.len());
        }
        largest
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Record {
        id: u64,
        name: String,
        tags: Vec<u16>,
        owner: Option<PeerId>,
    }

    /// Every size of ordinary types up to 256 KiB decodes with a 256 KiB limit, including the
    /// element types whose claims outgrow their bytes the most (a one-byte `u128` claims 16).
    /// `tests/sizes.rs` sweeps up to the default 16 MiB over sockets.
    #[test]
    fn every_size_of_ordinary_types_decodes_within_the_limit() {
        const MAX: usize = 256 << 10;
        let near = |largest: usize| assert!(largest > MAX - 32, "largest {largest}");
        near(sweep(MAX, |n| (0..n as u32).collect::<Vec<u32>>()));
        near(sweep(MAX, |n| {
            (0..n as u32)
                .map(|i| i.wrapping_mul(2_654_435_761))
                .collect::<Vec<u32>>()
        }));
        near(sweep(MAX, |n| vec![7u64; n]));
        near(sweep(MAX, |n| vec![0u128; n]));
        near(sweep(MAX, |n| vec![-1i64; n]));
        near(sweep(MAX, |n| {
            (0..n)
                .map(|i| PeerId::from_uuid(uuid::Uuid::from_u128(i as u128)))
                .collect::<Vec<PeerId>>()
        }));
        near(sweep(MAX, |n| "é".repeat(n / 2) + &"x".repeat(n % 2)));
        near(sweep(MAX, |n| vec![0xa5u8; n]));
        near(sweep(MAX, |n| serde_bytes::ByteBuf::from(vec![1u8; n])));
        near(sweep(MAX, |n| vec![Some(1u8); n]));
        near(sweep(MAX, |n| vec![vec![3u32; 3]; n]));
        near(sweep(MAX, |n| {
            (0..n as u64)
                .map(|id| Record {
                    id,
                    name: "r".into(),
                    tags: vec![1, 2],
                    owner: None,
                })
                .collect::<Vec<Record>>()
        }));
        near(sweep(MAX, |n| {
            (0..n as u32)
                .map(|i| (i, i.to_string()))
                .collect::<std::collections::BTreeMap<u32, String>>()
        }));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x1234_5678_u64;
        for len in 0..512 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode::<Frame<'_>>(&bytes, 1 << 20);
            let _ = Hello::from_bytes(&bytes);
        }
    }

    #[test]
    fn payload_frames_equal_the_encoded_frames() {
        let value = (7u32, ("captured".to_owned(), (vec![9u8; 300], ())));
        let plain = encode(&value).unwrap();
        let metadata = vec![(Cow::Borrowed("traceparent"), Cow::Borrowed("00-1-2-01"))];
        for room in [0, 8, 256] {
            let call = Payload::encode(&value, room)
                .unwrap()
                .into_call_frame(5, 77, "app::x#0", 1234, &metadata)
                .unwrap();
            let expected = encode(&Frame::Call {
                id: 5,
                block: 77,
                name: Cow::Borrowed("app::x#0"),
                deadline_ms: 1234,
                metadata: Metadata(metadata.clone()),
                captures: &plain,
            })
            .unwrap();
            assert_eq!(&call[..], &expected[..], "room {room}");
            let reply = Payload::encode(&value, room)
                .unwrap()
                .into_reply_frame(9)
                .unwrap();
            let expected = encode(&Frame::Reply {
                id: 9,
                result: ReplyBody::Ok(&plain),
            })
            .unwrap();
            assert_eq!(&reply[..], &expected[..], "room {room}");
            let item = Payload::encode(&value, room)
                .unwrap()
                .into_item_frame(9)
                .unwrap();
            let expected = encode(&Frame::Items {
                id: 9,
                count: 1,
                items: &plain,
            })
            .unwrap();
            assert_eq!(&item[..], &expected[..], "room {room}");
            // Several items: each encoding after the other, after one header.
            let items = items_frame(
                9,
                vec![
                    Payload::encode(&value, room).unwrap(),
                    Payload::encode(&7u8, room).unwrap(),
                ],
            )
            .unwrap();
            let mut both = plain.clone();
            both.push(7);
            let expected = encode(&Frame::Items {
                id: 9,
                count: 2,
                items: &both,
            })
            .unwrap();
            assert_eq!(&items[..], &expected[..], "room {room}");
        }
        let payload = Payload::encode(&value, 16).unwrap();
        assert_eq!(payload.bytes(), &plain[..]);
        assert_eq!(payload.len(), plain.len());
        assert_eq!(&payload.into_bytes()[..], &plain[..]);
    }

    /// Seeded xorshift: the same inputs on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn valid_frames() -> Vec<Vec<u8>> {
        let captures = encode(&(42u32, ("hello".to_owned(), (vec![1u8; 40], ())))).unwrap();
        let frames = [
            Frame::Call {
                id: 1,
                block: u64::MAX,
                name: Cow::Borrowed("app::search#0"),
                deadline_ms: 30_000,
                metadata: Metadata(vec![(
                    Cow::Borrowed("traceparent"),
                    Cow::Borrowed("00-ab-cd-01"),
                )]),
                captures: &captures,
            },
            Frame::Reply {
                id: 2,
                result: ReplyBody::Ok(&captures),
            },
            Frame::Reply {
                id: 3,
                result: ReplyBody::Err(RemoteError::Forbidden {
                    block: "b".into(),
                    subject: "s".into(),
                    peer: Some(PeerId::from_name("p")),
                }),
            },
            Frame::Cancel { id: 4 },
            Frame::Ping { nonce: 5 },
            Frame::Pong { nonce: 6 },
            Frame::Items {
                id: 7,
                count: 1,
                items: &captures,
            },
            Frame::Credit {
                id: 8,
                items: 64,
                bytes: 1 << 20,
            },
        ];
        let mut all: Vec<Vec<u8>> = frames.iter().map(|frame| encode(frame).unwrap()).collect();
        all.push(
            Hello {
                peer: PeerId::from_name("h"),
                max_message_size: 1 << 20,
                app_version: Some("1".into()),
                manifest: Manifest::default(),
                nonce: 7,
                proof: Some("a.b.c".into()),
                resumable: true,
                session: Some(SessionKeys::new()),
            }
            .to_bytes()
            .unwrap(),
        );
        all
    }

    /// 100 000 seeded random and mutated frames through the peer's decode path: every one is
    /// an error or a frame, none panics or allocates what the input cannot back.
    #[test]
    fn hundred_thousand_mutated_frames_never_panic() {
        let seeds = valid_frames();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut decoded = 0;
        for round in 0..100_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            match rng.below(6) {
                // Flip a few bytes.
                0 | 1 => {
                    for _ in 0..=rng.below(4) {
                        let at = rng.below(bytes.len());
                        bytes[at] ^= 1 << rng.below(8);
                    }
                }
                // Truncate.
                2 => bytes.truncate(rng.below(bytes.len())),
                // Append garbage.
                3 => bytes.extend((0..=rng.below(16)).map(|_| rng.next() as u8)),
                // Overwrite a run with a huge varint (253 + u64).
                4 => {
                    let at = rng.below(bytes.len());
                    bytes.truncate(at);
                    bytes.push(253);
                    bytes.extend_from_slice(&rng.next().to_le_bytes());
                    bytes.extend((0..rng.below(8)).map(|_| rng.next() as u8));
                }
                // Pure noise.
                _ => bytes = (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
            }
            if decode::<Frame<'_>>(&bytes, 1 << 20).is_ok() {
                decoded += 1;
            }
            let _ = Hello::from_bytes(&bytes);
            let _ = decode::<(u32, (String, (Vec<u8>, ())))>(&bytes, 1 << 20);
        }
        // Some mutations (of ids, nonces, bytes inside captures) still decode.
        assert!(decoded > 0);
    }

    #[test]
    fn hello_checks_magic_and_version_first() {
        let hello = Hello {
            peer: PeerId::from_name("a"),
            max_message_size: 1024,
            app_version: Some("1.2".into()),
            manifest: Manifest::default(),
            nonce: u128::MAX,
            proof: None,
            resumable: true,
            session: None,
        };
        let bytes = hello.to_bytes().unwrap();
        assert_eq!(Hello::from_bytes(&bytes).unwrap(), hello);
        assert_eq!(Hello::from_bytes(b"GET / HTTP"), Err(HelloError::BadMagic));
        let mut future = bytes.clone();
        future[4..6].copy_from_slice(&99u16.to_be_bytes());
        assert_eq!(Hello::from_bytes(&future), Err(HelloError::Version(99)));
        assert_eq!(Hello::from_bytes(&bytes[..6]), Err(HelloError::Malformed));
    }
}
