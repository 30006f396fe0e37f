//! The payload types users send: `Vec<u8>`, `String`, `Vec<u64>`, `Vec<f64>` and a `Vec`
//! of a small serde struct, each echoed through a `remote!` block (capture and result of
//! that type) at 64 B, 4 KiB, 256 KiB and 4 MiB, beside the raw actix-ws echo of the very
//! bytes bincode makes of the same value.
//!
//! A size is the size of the value's bincode encoding (the library's configuration), so each
//! row and its raw echo carry the same bytes: the element count is the size divided by what
//! one element adds to the encoding.

use std::future::Future;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use distributed_scope::{PeerId, RemoteError, remote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    Base, Budget, RawClient, RawSocket, Row, SIZES, Stats, Target, Unit, latency_pair, progress,
};

/// A small struct, the kind a `Vec` of results is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    id: u64,
    score: f64,
    tag: String,
}

async fn echo_vec(server: PeerId, data: Vec<u8>) -> Result<Vec<u8>, RemoteError> {
    remote!(server, [data: Vec<u8>] -> Vec<u8> { data }).await
}

async fn echo_string(server: PeerId, data: String) -> Result<String, RemoteError> {
    remote!(server, [data: String] -> String { data }).await
}

async fn echo_u64s(server: PeerId, data: Vec<u64>) -> Result<Vec<u64>, RemoteError> {
    remote!(server, [data: Vec<u64>] -> Vec<u64> { data }).await
}

async fn echo_f64s(server: PeerId, data: Vec<f64>) -> Result<Vec<f64>, RemoteError> {
    remote!(server, [data: Vec<f64>] -> Vec<f64> { data }).await
}

async fn echo_records(server: PeerId, data: Vec<Record>) -> Result<Vec<Record>, RemoteError> {
    remote!(server, [data: Vec<Record>] -> Vec<Record> { data }).await
}

/// One payload type of the sweep.
trait Payload: Serialize + DeserializeOwned + PartialEq + Sized {
    /// As the row names it.
    const NAME: &'static str;

    /// A value of `count` elements.
    fn make(count: usize) -> Self;

    /// Its element count, checked on every echo.
    fn count(&self) -> usize;

    /// The value echoed through a `remote!` block on `server`.
    fn echo(server: PeerId, value: Self) -> impl Future<Output = Result<Self, RemoteError>>;
}

impl Payload for Vec<u8> {
    const NAME: &'static str = "Vec<u8>";

    fn make(count: usize) -> Self {
        (0..count).map(|i| (i % 251) as u8).collect()
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn echo(server: PeerId, value: Self) -> impl Future<Output = Result<Self, RemoteError>> {
        echo_vec(server, value)
    }
}

impl Payload for String {
    const NAME: &'static str = "String";

    fn make(count: usize) -> Self {
        const TEXT: &[u8] = b"the quick brown fox jumps over the lazy dog, 0123456789. ";
        (0..count)
            .map(|i| char::from(TEXT[i % TEXT.len()]))
            .collect()
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn echo(server: PeerId, value: Self) -> impl Future<Output = Result<Self, RemoteError>> {
        echo_string(server, value)
    }
}

impl Payload for Vec<u64> {
    const NAME: &'static str = "Vec<u64>";

    /// Hash-like values spread over the whole range (ids, hashes, timestamps in ns), not small
    /// counters that bincode's variable-length integers would shrink.
    fn make(count: usize) -> Self {
        (0..count as u64)
            .map(|i| (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect()
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn echo(server: PeerId, value: Self) -> impl Future<Output = Result<Self, RemoteError>> {
        echo_u64s(server, value)
    }
}

impl Payload for Vec<f64> {
    const NAME: &'static str = "Vec<f64>";

    fn make(count: usize) -> Self {
        (0..count).map(|i| i as f64 * 0.5 + 0.25).collect()
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn echo(server: PeerId, value: Self) -> impl Future<Output = Result<Self, RemoteError>> {
        echo_f64s(server, value)
    }
}

impl Payload for Vec<Record> {
    const NAME: &'static str = "Vec<Record>";

    fn make(count: usize) -> Self {
        (0..count as u64)
            .map(|i| Record {
                id: 1_000_000 + i,
                score: i as f64 / 7.0,
                tag: format!("tag-{:04}", i % 10_000),
            })
            .collect()
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn echo(server: PeerId, value: Self) -> impl Future<Output = Result<Self, RemoteError>> {
        echo_records(server, value)
    }
}

/// The library's bincode configuration.
fn encode<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    Ok(bincode::serde::encode_to_vec(
        value,
        bincode::config::standard(),
    )?)
}

/// A value of `T` whose encoding is about `size` bytes.
fn sized<T: Payload>(size: usize) -> anyhow::Result<T> {
    let one = encode(&T::make(1))?.len();
    let two = encode(&T::make(2))?.len();
    let per_element = two.saturating_sub(one).max(1);
    Ok(T::make((size / per_element).max(1)))
}

/// The rows of every type at every size.
pub(crate) async fn rows<S: RawSocket>(
    raw: &mut RawClient<S>,
    server: PeerId,
    budget: Budget,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    type_rows::<Vec<u8>, S>(raw, server, budget, rows).await?;
    type_rows::<String, S>(raw, server, budget, rows).await?;
    type_rows::<Vec<u64>, S>(raw, server, budget, rows).await?;
    type_rows::<Vec<f64>, S>(raw, server, budget, rows).await?;
    type_rows::<Vec<Record>, S>(raw, server, budget, rows).await?;
    Ok(())
}

async fn type_rows<T: Payload, S: RawSocket>(
    raw: &mut RawClient<S>,
    server: PeerId,
    budget: Budget,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    for (size, label) in SIZES {
        progress(&format!("payload {label}, {}", T::NAME));
        let (raw_stats, peer_stats, count) = point::<T, S>(raw, server, size, budget).await?;
        let mut row = Row::new(
            format!("payload {label} `{}`, p50", T::NAME),
            Unit::Micros,
            peer_stats.p50_us,
        )
        .baseline(raw_stats.p50_us)
        .note(format!("{count} elements"));
        // Bytes as users spell them travel at the transport's speed.
        if T::NAME == "Vec<u8>" {
            row = row.target(Target::RatioAtMost(Base::Raw, 1.3));
        }
        rows.push(row);
    }
    Ok(())
}

/// Round trips of one type and size: the peer echoes the value, the raw client its
/// encoding; each side feeds its echo back as the next payload, checks the element count of
/// every echo, and at the end that the last echo equals what it started with.
async fn point<T: Payload, S: RawSocket>(
    raw_client: &mut RawClient<S>,
    server: PeerId,
    size: usize,
    budget: Budget,
) -> anyhow::Result<(Stats, Stats, usize)> {
    let original = sized::<T>(size)?;
    let count = original.count();
    let encoded = Bytes::from(encode(&original)?);
    let mut raw_payload = encoded.clone();
    let mut raw = async || -> anyhow::Result<()> {
        raw_payload = raw_client
            .round_trip(std::mem::take(&mut raw_payload))
            .await?;
        Ok(())
    };
    let mut payload = Some(sized::<T>(size)?);
    let mut peer = async || -> anyhow::Result<()> {
        let sent = payload.take().context("the payload was lost")?;
        let echoed = T::echo(server, sent).await?;
        ensure!(echoed.count() == count, "bad {} echo", T::NAME);
        payload = Some(echoed);
        Ok(())
    };
    let (raw_stats, peer_stats) = latency_pair(budget, &mut raw, &mut peer).await?;
    ensure!(raw_payload == encoded, "the raw echo changed the payload");
    ensure!(
        payload.as_ref() == Some(&original),
        "the {} echo changed the payload",
        T::NAME
    );
    Ok((raw_stats, peer_stats, count))
}
