//! Blocks: the trait generated types implement, and the link-time registry.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::future::Future;
use std::sync::OnceLock;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::RemoteError;
use crate::wire::{self, Payload};

/// A block of code that can run on any peer whose build contains it.
///
/// Implemented by the types `remote!`, `#[distributed]` and `#[remote_block]` generate; not
/// meant to be implemented by hand.
#[doc(hidden)]
pub trait Block: Sized + 'static {
    /// The captured values, as a right-nested tuple `(a, (b, ()))`.
    type Captures: Serialize + DeserializeOwned + 'static;
    /// The block's result.
    type Output: Serialize + DeserializeOwned + 'static;
    /// Identity and description.
    const INFO: BlockInfo;
    /// Takes the captured values out of the message.
    fn into_captures(self) -> Self::Captures;
    /// Runs the body with the captures bound to its parameters.
    fn run(
        captures: Self::Captures,
    ) -> impl Future<Output = Result<Self::Output, RemoteError>> + 'static;
}

/// What a build knows about one of its blocks: see [`blocks`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    id: u64,
    name: &'static str,
    captures: &'static str,
    output: &'static str,
    file: &'static str,
    line: u32,
}

impl BlockInfo {
    #[doc(hidden)]
    pub const fn new(
        module: &'static str,
        token_hash: u64,
        name: &'static str,
        captures: &'static str,
        output: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        Self {
            id: block_id(module, token_hash),
            name,
            captures,
            output,
            file,
            line,
        }
    }

    /// The block's id: a 64-bit hash of its tokens, capture and result types and module path.
    pub const fn id(&self) -> u64 {
        self.id
    }

    /// The block's human name: `module::fn#i`, `module::fn` or `module@line:col`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The capture list as spelled, e.g. `a: u32, b: String`.
    pub const fn captures(&self) -> &'static str {
        self.captures
    }

    /// The result type as spelled.
    pub const fn output(&self) -> &'static str {
        self.output
    }

    /// The source file of the block.
    pub const fn file(&self) -> &'static str {
        self.file
    }

    /// The line of the block in [`BlockInfo::file`].
    pub const fn line(&self) -> u32 {
        self.line
    }
}

impl fmt::Debug for BlockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockInfo")
            .field("id", &format_args!("{:016x}", self.id))
            .field("name", &self.name)
            .field("captures", &self.captures)
            .field("output", &self.output)
            .field("file", &self.file)
            .field("line", &self.line)
            .finish()
    }
}

/// FNV-1a 64, fixed forever: ids must agree between builds and toolchains.
const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Combines the macro's hash of a block's tokens with its module path.
#[doc(hidden)]
pub const fn block_id(module: &str, token_hash: u64) -> u64 {
    fnv1a(token_hash, module.as_bytes())
}

/// Decodes captures (at most the first `usize` bytes), runs the block, encodes its result
/// (`TooLarge` if over the second `usize`, checked before the result is allocated).
pub(crate) type Invoke =
    fn(Bytes, usize, usize) -> LocalBoxFuture<'static, Result<Payload, RemoteError>>;

/// One registered block; submitted at link time by the generated code.
#[doc(hidden)]
pub struct BlockEntry {
    pub(crate) info: BlockInfo,
    pub(crate) invoke: Invoke,
}

impl BlockEntry {
    #[doc(hidden)]
    pub const fn of<B: Block>() -> Self {
        Self {
            info: B::INFO,
            invoke: invoke::<B>,
        }
    }
}

impl fmt::Debug for BlockEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.info.fmt(f)
    }
}

inventory::collect!(BlockEntry);

fn invoke<B: Block>(
    captures: Bytes,
    max: usize,
    max_result: usize,
) -> LocalBoxFuture<'static, Result<Payload, RemoteError>> {
    Box::pin(async move {
        let captures: B::Captures = wire::decode_shared(&captures, max)?;
        let output = run::<B>(captures).await?;
        Payload::encode_within(&output, wire::REPLY_ROOM, max_result)
    })
}

/// Runs the body of `B` on the current peer: the one place where an `Err` of a body (its own,
/// or a nested call's passed on with `?`) leaves it, as [`RemoteError::Failed`] naming the
/// block and this peer. The block ran, whatever the inner error says about its own call: a
/// nested `NotConnected` must not tell the caller that this block did not run and may be
/// retried. Errors the runtime produces around a body (captures that do not decode, the
/// deadline, a panic) are not the body's and are not wrapped.
///
/// Every path into a body comes through here: calls from other peers and `serialize_local`
/// calls through [`invoke`], local calls from `RemoteCall`.
pub(crate) async fn run<B: Block>(captures: B::Captures) -> Result<B::Output, RemoteError> {
    B::run(captures).await.map_err(|error| {
        let peer = crate::Scope::try_current().map(|scope| scope.peer_id());
        RemoteError::failed(B::INFO.name(), peer, error)
    })
}

struct Registry {
    by_id: HashMap<u64, &'static BlockEntry>,
    by_name: HashMap<&'static str, u64>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = Registry {
            by_id: HashMap::new(),
            by_name: HashMap::new(),
        };
        for entry in inventory::iter::<BlockEntry> {
            match registry.by_id.entry(entry.info.id) {
                Entry::Vacant(slot) => {
                    slot.insert(entry);
                    registry.by_name.insert(entry.info.name, entry.info.id);
                }
                Entry::Occupied(first) => {
                    // Same id, same tokens and types: either copy runs the same code, so the
                    // duplicate's name answers too.
                    registry.by_name.insert(entry.info.name, entry.info.id);
                    tracing::warn!(
                        id = format_args!("{:016x}", entry.info.id),
                        kept = first.get().info.name,
                        duplicate = entry.info.name,
                        "two blocks share an id; the first registration wins"
                    );
                }
            }
        }
        registry
    })
}

/// Finds the block a call asks for, never running other code: the id and the name must
/// belong together (authorization is decided on the name). A known name with another id is a
/// [`RemoteError::VersionMismatch`]; anything else unknown is [`RemoteError::UnknownBlock`].
pub(crate) fn lookup(id: u64, name: &str) -> Result<&'static BlockEntry, RemoteError> {
    let registry = registry();
    match (registry.by_id.get(&id), registry.by_name.get(name)) {
        (Some(entry), Some(named)) if *named == id => Ok(entry),
        (_, Some(_)) => Err(RemoteError::VersionMismatch {
            peer: None,
            block: name.to_owned(),
        }),
        (_, None) => Err(RemoteError::UnknownBlock {
            peer: None,
            block: name.to_owned(),
        }),
    }
}

/// Every block compiled into this binary, sorted by name.
///
/// # Examples
///
/// ```
/// for block in distributed_scope::blocks() {
///     println!("{:016x} {} ({}) -> {}", block.id(), block.name(), block.captures(), block.output());
/// }
/// ```
pub fn blocks() -> Vec<BlockInfo> {
    let mut all: Vec<BlockInfo> = registry().by_id.values().map(|e| e.info).collect();
    all.sort_by(|a, b| a.name.cmp(b.name).then(a.id.cmp(&b.id)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_module_and_tokens() {
        assert_eq!(block_id("a::b", 1), block_id("a::b", 1));
        assert_ne!(block_id("a::b", 1), block_id("a::c", 1));
        assert_ne!(block_id("a::b", 1), block_id("a::b", 2));
        // FNV-1a 64 of "a" from the standard offset basis.
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn unknown_ids_never_run_other_code() {
        assert!(matches!(
            lookup(1, "no::such@1:1"),
            Err(RemoteError::UnknownBlock { .. })
        ));
    }
}
