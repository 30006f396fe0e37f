//! Payloads of an exact encoded size, for the tests that sweep sizes up to the message limit:
//! how to build one of `n` elements and how many bytes its bincode encoding takes.

use std::fmt::Debug;

use distributed_scope::PeerId;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes of bincode's variable-length integer for `value` (the protocol's `standard()`
/// configuration): one byte below 251, else a marker byte and 2, 4 or 8 bytes.
pub fn varint_len(value: u64) -> usize {
    match value {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// A value that can be built with `n` elements, with a known encoded size.
pub trait Payload: Serialize + DeserializeOwned + PartialEq + Debug + Send + 'static {
    /// The value with `n` elements.
    fn make(n: usize) -> Self;

    /// Encoded bytes of element `i` of [`Payload::make`].
    fn element_len(i: usize) -> usize;

    /// Encoded bytes of `make(n)`: the length prefix, then the elements.
    fn encoded_len(n: usize) -> usize {
        varint_len(n as u64) + (0..n).map(Self::element_len).sum::<usize>()
    }

    /// The most elements whose encoding takes at most `budget` bytes.
    fn largest_within(budget: usize) -> usize {
        let (mut n, mut elements) = (0, 0);
        while varint_len(n as u64 + 1) + elements + Self::element_len(n) <= budget {
            elements += Self::element_len(n);
            n += 1;
        }
        n
    }
}

/// Two values spread over the whole range (mostly 5-byte varints), then a small one (one
/// byte): fewer bytes than bincode claims for a `u32` (4 each), as ordinary data is.
fn spread_u32(i: usize) -> u32 {
    if i % 3 == 2 {
        (i % 251) as u32
    } else {
        (i as u32).wrapping_mul(2_654_435_761)
    }
}

/// Three values spread over the whole range (mostly 9-byte varints), then a small one (one
/// byte): fewer bytes than bincode claims for a `u64` (8 each).
fn spread_u64(i: usize) -> u64 {
    if i % 4 == 3 {
        (i % 251) as u64
    } else {
        (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl Payload for Vec<u32> {
    fn make(n: usize) -> Self {
        (0..n).map(spread_u32).collect()
    }

    fn element_len(i: usize) -> usize {
        varint_len(spread_u32(i).into())
    }
}

impl Payload for Vec<u64> {
    fn make(n: usize) -> Self {
        (0..n).map(spread_u64).collect()
    }

    fn element_len(i: usize) -> usize {
        varint_len(spread_u64(i))
    }
}

impl Payload for Vec<PeerId> {
    fn make(n: usize) -> Self {
        (0..n)
            .map(|i| PeerId::from_uuid(uuid::Uuid::from_u64_pair(i as u64, !(i as u64))))
            .collect()
    }

    /// A UUID is a byte string: its length (16, one byte), then 16 bytes.
    fn element_len(_: usize) -> usize {
        17
    }
}

impl Payload for String {
    /// `n` bytes: ASCII, with a two-byte character every 64 bytes where one fits.
    fn make(n: usize) -> Self {
        let mut text = String::with_capacity(n);
        while text.len() < n {
            if text.len() % 64 == 63 && n - text.len() >= 2 {
                text.push('é');
            } else {
                text.push(char::from(b'a' + (text.len() % 26) as u8));
            }
        }
        text
    }

    fn element_len(_: usize) -> usize {
        1
    }
}

/// 1, 2, 3, 4, 5, 8, 9, 16, 17, ... (every power of two, and the size after it up to
/// `dense`) below `largest`, then `largest` itself.
pub fn sizes(largest: usize, dense: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..usize::BITS - 1)
        .flat_map(|k| [1 << k, (1 << k) + 1])
        .filter(|&n: &usize| n.is_power_of_two() || n <= dense)
        .take_while(|&n| n < largest)
        .collect();
    sizes.dedup();
    sizes.push(largest);
    sizes
}
