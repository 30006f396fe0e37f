//! [`Bytes`]: a byte-string capture or result that crosses the wire without being copied out
//! of the frame it arrives in.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

thread_local! {
    /// The frame being decoded on this thread, so that byte strings inside it can be shared
    /// instead of copied.
    static FRAME: RefCell<Option<bytes::Bytes>> = const { RefCell::new(None) };
}

/// Makes `frame` the frame [`Bytes`] values borrow from while `decode` runs.
pub(crate) fn with_frame<T>(frame: &bytes::Bytes, decode: impl FnOnce() -> T) -> T {
    struct Reset(Option<bytes::Bytes>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            FRAME.with(|current| *current.borrow_mut() = previous);
        }
    }
    let previous = FRAME.with(|current| current.replace(Some(frame.clone())));
    let _reset = Reset(previous);
    decode()
}

/// Bytes for captures and results: serialized as a byte string (like `serde_bytes`), and
/// when received, shared with the frame they arrived in rather than copied into a new
/// allocation.
///
/// A capture or result spelled `Vec<u8>` travels as a byte string too (the block macros see
/// the type), but arrives as a copy in a new allocation; `Bytes` is not copied at all. A
/// `Vec<u8>` nested in another type (a field, an `Option`) is encoded by serde element by
/// element unless marked `#[serde(with = "serde_bytes")]`.
///
/// ```no_run
/// use distributed_scope::{remote, Bytes, PeerId, RemoteError};
///
/// async fn checksum(server: PeerId, data: Bytes) -> Result<u32, RemoteError> {
///     remote!(server, [data: Bytes] -> u32 {
///         data.iter().map(|&byte| u32::from(byte)).sum()
///     })
///     .await
/// }
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(bytes::Bytes);

impl Bytes {
    /// Empty bytes.
    pub const fn new() -> Self {
        Self(bytes::Bytes::new())
    }

    /// The bytes as the `bytes` crate's type (no copy).
    pub fn into_inner(self) -> bytes::Bytes {
        self.0
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes.into())
    }
}

impl From<bytes::Bytes> for Bytes {
    fn from(bytes: bytes::Bytes) -> Self {
        Self(bytes)
    }
}

impl From<&'static [u8]> for Bytes {
    fn from(bytes: &'static [u8]) -> Self {
        Self(bytes::Bytes::from_static(bytes))
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shared;
        impl<'de> Visitor<'de> for Shared {
            type Value = Bytes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<Bytes, E> {
                let shared = FRAME.with(|frame| {
                    frame.borrow().as_ref().and_then(|frame| {
                        let range = frame.as_ptr_range();
                        let inside =
                            range.start <= bytes.as_ptr() && bytes.as_ptr_range().end <= range.end;
                        inside.then(|| frame.slice_ref(bytes))
                    })
                });
                Ok(Bytes(
                    shared.unwrap_or_else(|| bytes::Bytes::copy_from_slice(bytes)),
                ))
            }

            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(bytes::Bytes::copy_from_slice(bytes)))
            }

            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(bytes.into()))
            }
        }
        deserializer.deserialize_bytes(Shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    #[test]
    fn decoded_bytes_share_the_frame() {
        let value = (7u8, Bytes::from(vec![1u8; 1000]));
        let frame = bytes::Bytes::from(wire::encode(&value).unwrap());
        let (number, data): (u8, Bytes) = wire::decode_shared(&frame, 1 << 20).unwrap();
        assert_eq!((number, data.len()), (7, 1000));
        assert!(frame.as_ptr_range().contains(&data.as_ptr()), "not copied");
        // Without a frame context the bytes are copied: still correct.
        let copied: (u8, Bytes) = wire::decode(&frame, 1 << 20).unwrap();
        assert_eq!(copied.1, data);
        assert!(!frame.as_ptr_range().contains(&copied.1.as_ptr()));
    }
}
