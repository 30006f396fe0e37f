//! Blocks: the trait generated types implement, and the link-time registry.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
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
    type Output: 'static;
    /// The result as it travels: `Output`, or a byte string for `Vec<u8>`.
    type Wire: Serialize + DeserializeOwned + 'static;
    /// Identity and description.
    const INFO: BlockInfo;
    /// Takes the captured values out of the message.
    fn into_captures(self) -> Self::Captures;
    /// The result as it travels.
    fn to_wire(output: Self::Output) -> Self::Wire;
    /// A travelled result.
    fn from_wire(wire: Self::Wire) -> Self::Output;
    /// Runs the body with the captures bound to its parameters.
    fn run(
        captures: Self::Captures,
    ) -> impl Future<Output = Result<Self::Output, RemoteError>> + 'static;
    /// Runs a stream block's body: its items (`Output` is the item type). `None` for a
    /// block that is not a stream.
    fn run_stream(
        captures: Self::Captures,
    ) -> Option<LocalBoxStream<'static, Result<Self::Output, RemoteError>>> {
        let _ = captures;
        None
    }
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
    /// The id of the entry point this block is lexically nested in (`None`: it is one).
    root: Option<u64>,
    /// A `remote_stream!` block: it yields items, called with `RemoteStream`.
    stream: bool,
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
            root: None,
            stream: false,
        }
    }

    /// This block, a stream block (generated code).
    #[doc(hidden)]
    #[must_use]
    pub const fn streaming(mut self) -> Self {
        self.stream = true;
        self
    }

    /// Whether this is a `remote_stream!` block, which yields items rather than one result
    /// ([`BlockInfo::output`] is then the item type).
    pub const fn is_stream(&self) -> bool {
        self.stream
    }

    /// This block, lexically nested in the entry point of token hash `root_hash` in
    /// `module` (generated code).
    #[doc(hidden)]
    #[must_use]
    pub const fn nested_in(mut self, module: &'static str, root_hash: u64) -> Self {
        self.root = Some(block_id(module, root_hash));
        self
    }

    /// Whether other peers may call this block directly: a `#[remote_block]`, or a
    /// `remote!` not nested in another block. A nested block runs for another peer only as a
    /// hop of a scope whose root call was its entry point.
    pub const fn is_entry_point(&self) -> bool {
        self.root.is_none()
    }

    /// The id of the entry point this block belongs to: its own for an entry point, the
    /// outermost enclosing block's for a nested one.
    pub const fn entry_point(&self) -> u64 {
        match self.root {
            Some(root) => root,
            None => self.id,
        }
    }

    /// The block's id: a 64-bit hash of its tokens, capture and result types and module path.
    pub const fn id(&self) -> u64 {
        self.id
    }

    /// The block's name: `module::fn#i` in a `#[distributed]` function, `module::fn` for a
    /// `#[remote_block]`, `module@line:col` for any other `remote!`, in logs and errors and
    /// what policies match.
    ///
    /// The first two are the block's identity, with its id. An anonymous block's
    /// `module@line:col` only describes it: the block is found by id, its content, so that
    /// a line added above it does not change which peers can run it; a callee authorizes
    /// its own name for that id.
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

/// Decodes captures, runs the block, encodes its result (`TooLarge` if over the invocation's
/// `max_result`, checked before the result is allocated): one boxed future per call, the
/// scope's guard and the span included.
pub(crate) type Invoke = fn(Invocation) -> LocalBoxFuture<'static, Result<Payload, RemoteError>>;

/// One call of a block, as [`Invoke`] takes it.
pub(crate) struct Invocation {
    /// The scope the body runs in, its deadline and panics guarded; `None` runs it bare.
    pub(crate) scope: Option<crate::Scope>,
    /// Whether the scope's deadline is enforced here (else the link that runs the call
    /// aborts it at its deadline).
    pub(crate) timed: bool,
    /// The span the call runs in.
    pub(crate) span: tracing::Span,
    /// The encoded captures, of which at most `max` bytes are decoded.
    pub(crate) captures: Bytes,
    pub(crate) max: usize,
    /// The largest reply frame the caller accepts.
    pub(crate) max_result: usize,
}

/// One registered block; submitted at link time by the generated code.
#[doc(hidden)]
pub struct BlockEntry {
    pub(crate) info: BlockInfo,
    pub(crate) invoke: Invoke,
    pub(crate) invoke_stream: InvokeStream,
}

/// Decodes captures and runs a stream block, encoding each item (the stream module's
/// `invoke`, which the generated code hands to [`BlockEntry::streaming`]).
pub(crate) type InvokeStream =
    fn(Invocation) -> LocalBoxStream<'static, Result<Payload, RemoteError>>;

impl BlockEntry {
    #[doc(hidden)]
    pub const fn of<B: Block>() -> Self {
        Self {
            info: B::INFO,
            invoke: invoke::<B>,
            invoke_stream: not_a_stream::<B>,
        }
    }

    /// The entry of a stream block, whose stream calls `invoke_stream` runs (the generated
    /// code reaches it through `StreamParts`).
    pub(crate) const fn streaming<B: Block>(invoke_stream: InvokeStream) -> Self {
        Self {
            info: B::INFO,
            invoke: invoke::<B>,
            invoke_stream,
        }
    }
}

/// The stream invocation of a block that is not a stream block (the link never makes one:
/// it refuses a stream call of such a block before it runs).
fn not_a_stream<B: Block>(_: Invocation) -> LocalBoxStream<'static, Result<Payload, RemoteError>> {
    Box::pin(futures_util::stream::once(std::future::ready(Err(
        RemoteError::VersionMismatch {
            peer: None,
            block: B::INFO.name().to_owned(),
        },
    ))))
}

impl fmt::Debug for BlockEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.info.fmt(f)
    }
}

inventory::collect!(BlockEntry);

fn invoke<B: Block>(
    invocation: Invocation,
) -> LocalBoxFuture<'static, Result<Payload, RemoteError>> {
    use tracing::Instrument;
    let Invocation {
        scope,
        timed,
        span,
        captures,
        max,
        max_result,
    } = invocation;
    let body = async move {
        let captures: B::Captures = wire::decode_shared(&captures, max)?;
        let output = run::<B>(captures).await?;
        Payload::encode_within(&B::to_wire(output), wire::REPLY_ROOM, max_result)
    };
    match scope {
        Some(scope) => Box::pin(scope.guard_timed(body, timed).instrument(span)),
        None => Box::pin(body.instrument(span)),
    }
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

/// Every block of the binary, found at most once per id and once per name: the first
/// registration wins (the iteration order of `inventory`).
struct Registry {
    by_id: HashMap<u64, &'static BlockEntry>,
    by_name: HashMap<&'static str, &'static BlockEntry>,
    /// The anonymous blocks (`module@line:col`) by id: these are found by content.
    anonymous: HashMap<u64, &'static BlockEntry>,
    /// The crates whose blocks are linked in: the first segment of each block's module.
    crates: BTreeSet<&'static str>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = Registry::new(inventory::iter::<BlockEntry>);
        for internal in inventory::iter::<InternalBlocks> {
            registry.add_internal(internal.0);
        }
        registry
    })
}

/// The library's own blocks (pub-sub's), submitted by the module that defines them: found
/// by name like any block, but apart from the application's (`blocks()`, the manifest a peer
/// announces, the warning about a binary without blocks do not count them).
pub(crate) struct InternalBlocks(pub(crate) &'static [BlockEntry]);

inventory::collect!(InternalBlocks);

/// Whether `name` is one of the library's own blocks, which the link lets through to be
/// authorized in their bodies (by topic). No application block has such a name: its module
/// path starts with its own crate's name.
#[cfg(all(feature = "auth", not(target_arch = "wasm32")))]
pub(crate) fn is_internal(name: &str) -> bool {
    inventory::iter::<InternalBlocks>
        .into_iter()
        .flat_map(|internal| internal.0)
        .any(|entry| entry.info.name() == name)
}

impl Registry {
    fn new(entries: impl IntoIterator<Item = &'static BlockEntry>) -> Self {
        let mut registry = Self {
            by_id: HashMap::new(),
            by_name: HashMap::new(),
            anonymous: HashMap::new(),
            crates: BTreeSet::new(),
        };
        for entry in entries {
            let info = &entry.info;
            registry.crates.insert(crate_of(info.name));
            registry.by_name.entry(info.name).or_insert(entry);
            if anonymous_module(info.name).is_some() {
                registry.anonymous.entry(info.id).or_insert(entry);
            }
            match registry.by_id.entry(info.id) {
                Entry::Vacant(slot) => {
                    slot.insert(entry);
                }
                Entry::Occupied(first) => {
                    // Same id, same tokens and types: either copy runs the same code.
                    tracing::warn!(
                        id = format_args!("{:016x}", info.id),
                        kept = first.get().info.name,
                        duplicate = info.name,
                        "two blocks share an id; the first registration wins"
                    );
                }
            }
        }
        registry
    }

    /// Adds this crate's own blocks (pub-sub): found by name and id like any named block,
    /// but neither listed by [`blocks`] nor counted as the application's.
    fn add_internal(&mut self, entries: &'static [BlockEntry]) {
        for entry in entries {
            self.by_name.insert(entry.info.name, entry);
        }
    }

    /// See [`resolve`].
    fn resolve(&self, id: u64, claimed: &str) -> Result<&'static BlockEntry, RemoteError> {
        if let Some(entry) = self.by_name.get(claimed)
            && entry.info.id == id
        {
            return Ok(entry);
        }
        if let Some(module) = anonymous_module(claimed)
            && let Some(entry) = self.anonymous.get(&id)
            && anonymous_module(entry.info.name) == Some(module)
        {
            return Ok(entry);
        }
        Err(self.refusal(claimed))
    }

    /// See [`lookup`].
    fn lookup(&self, id: u64, name: &str) -> Result<&'static BlockEntry, RemoteError> {
        match self.resolve(id, name) {
            Ok(entry) if entry.info.name == name => Ok(entry),
            Ok(_) => Err(self.refusal(name)),
            Err(error) => Err(error),
        }
    }

    /// Why no block answers to `claimed`: its name is known with another id, or not at all.
    fn refusal(&self, claimed: &str) -> RemoteError {
        if self.by_name.contains_key(claimed) {
            RemoteError::VersionMismatch {
                peer: None,
                block: claimed.to_owned(),
            }
        } else {
            RemoteError::UnknownBlock {
                peer: None,
                block: claimed.to_owned(),
            }
        }
    }
}

/// `module` of an anonymous block's name `module@line:col` (module paths have no `@`; the
/// names of `#[remote_block]` and `#[distributed]` blocks have none either).
fn anonymous_module(name: &str) -> Option<&str> {
    name.split_once('@').map(|(module, _)| module)
}

/// The crate of a block name: its first path segment.
fn crate_of(name: &str) -> &str {
    let end = name.find([':', '@']).unwrap_or(name.len());
    &name[..end]
}

/// Finds the block a call asks for by its id and the name the caller gave (`claimed`), never
/// running other code than the caller compiled. The name of the entry returned,
/// `entry.info.name()`, is the one to authorize: it may differ from `claimed`.
///
/// # Which name is authorized
///
/// - A `#[remote_block]` (`module::fn`) or `#[distributed]` block (`module::fn#i`) is
///   found only if its name and id agree. The name is its identity for policies, so a
///   caller cannot name an allowed block and send the id of another.
/// - An anonymous `remote!` block (`module@line:col`) is found by id, its content: a hash of
///   its tokens, spelled types and module path. Its name changes whenever a line is added
///   above it, so two builds of the same code may name it differently, and the caller's name
///   proves nothing. The callee therefore authorizes the name *it* gives the block it will
///   run, its own `module@line:col` for that id, never the caller's: a policy decides on
///   what actually runs. The caller's name must still be anonymous and of the same module
///   (which its id hashes anyway).
///
/// A callee that authorizes before looking up therefore resolves first and authorizes
/// `entry.info.name()`. Such a caller can learn whether the callee has a block with a given
/// id (refused as forbidden, or unknown): it needs that block's tokens to compute the id.
///
/// # Errors
///
/// [`RemoteError::VersionMismatch`] if no block answers and the claimed name is known with
/// another id (the block's text or types changed), [`RemoteError::UnknownBlock`] otherwise.
pub(crate) fn resolve(id: u64, claimed: &str) -> Result<&'static BlockEntry, RemoteError> {
    let registry = registry();
    let found = registry.resolve(id, claimed);
    if let Err(RemoteError::UnknownBlock { .. }) = &found {
        hint_unlinked_crate(registry, claimed);
    }
    found
}

/// Finds the block of exactly the name `name` with the id `id`, for callers that authorized
/// `name` before looking it up: [`resolve`], refusing an entry of another name.
///
/// # Errors
///
/// As [`resolve`].
pub(crate) fn lookup(id: u64, name: &str) -> Result<&'static BlockEntry, RemoteError> {
    let registry = registry();
    let found = registry.lookup(id, name);
    if let Err(RemoteError::UnknownBlock { .. }) = &found {
        hint_unlinked_crate(registry, name);
    }
    found
}

/// A binary that names no item of a crate does not link it, and the blocks that crate
/// registers vanish with it. Says so at WARN, once per crate and for a few crates at most
/// (the names come from callers).
fn hint_unlinked_crate(registry: &Registry, claimed: &str) {
    const MAX_HINTS: usize = 8;
    static HINTED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let krate = crate_of(claimed);
    let plausible = (1..=64).contains(&krate.len())
        && krate.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plausible || registry.crates.contains(krate) {
        return;
    }
    let mut hinted = HINTED.lock().unwrap_or_else(PoisonError::into_inner);
    if hinted.len() >= MAX_HINTS || hinted.iter().any(|known| known == krate) {
        return;
    }
    hinted.push(krate.to_owned());
    tracing::warn!(
        block = claimed,
        "a peer called a block of crate `{krate}`, but this binary has no block of that crate: \
         if it depends on `{krate}`, link it with `use {krate} as _;`"
    );
}

/// Logs what a starting peer can run: a WARN if this binary has no block at all (a blocks
/// crate that no item names is not linked, and its blocks with it), once per process.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn check_registry() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let registry = registry();
        if let Some(warning) = empty_registry_warning(registry) {
            tracing::warn!("{warning}");
        } else {
            let crates: Vec<&str> = registry.crates.iter().copied().collect();
            tracing::debug!(
                blocks = registry.by_id.len(),
                crates = ?crates,
                "blocks linked into this binary"
            );
        }
    });
}

#[cfg(any(test, not(target_arch = "wasm32")))]
fn empty_registry_warning(registry: &Registry) -> Option<&'static str> {
    registry.by_id.is_empty().then_some(
        "this binary contains no blocks, so other peers cannot run anything here: \
         if its blocks live in a library crate, link that crate with `use my_blocks as _;`",
    )
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
        assert!(matches!(
            resolve(1, "no::such@1:1"),
            Err(RemoteError::UnknownBlock { .. })
        ));
    }

    fn never_run(_: Invocation) -> LocalBoxFuture<'static, Result<Payload, RemoteError>> {
        Box::pin(std::future::pending())
    }

    fn never_stream(_: Invocation) -> LocalBoxStream<'static, Result<Payload, RemoteError>> {
        Box::pin(futures_util::stream::pending())
    }

    /// A registry entry with the given id and name, for the lookup rules.
    fn entry(id: u64, name: &'static str) -> &'static BlockEntry {
        let info = BlockInfo {
            id,
            name,
            captures: "",
            output: "()",
            file: "src/app.rs",
            line: 1,
            root: None,
            stream: false,
        };
        Box::leak(Box::new(BlockEntry {
            info,
            invoke: never_run,
            invoke_stream: never_stream,
        }))
    }

    fn registry_of(entries: &[&'static BlockEntry]) -> Registry {
        Registry::new(entries.iter().copied())
    }

    fn name_of(found: Result<&'static BlockEntry, RemoteError>) -> Result<&'static str, String> {
        found
            .map(|entry| entry.info.name)
            .map_err(|error| match error {
                RemoteError::UnknownBlock { block, .. } => format!("unknown {block}"),
                RemoteError::VersionMismatch { block, .. } => format!("mismatch {block}"),
                other => format!("{other:?}"),
            })
    }

    #[test]
    fn named_blocks_need_their_name_and_id_to_agree() {
        let registry = registry_of(&[entry(1, "app::add"), entry(2, "app::demo#0")]);
        assert_eq!(name_of(registry.resolve(1, "app::add")), Ok("app::add"));
        assert_eq!(
            name_of(registry.resolve(2, "app::demo#0")),
            Ok("app::demo#0")
        );
        assert_eq!(
            name_of(registry.resolve(3, "app::add")),
            Err("mismatch app::add".into())
        );
        // An allowed name cannot carry the id of another block.
        assert_eq!(
            name_of(registry.resolve(2, "app::add")),
            Err("mismatch app::add".into())
        );
        assert_eq!(
            name_of(registry.resolve(1, "app::sub")),
            Err("unknown app::sub".into())
        );
    }

    #[test]
    fn anonymous_blocks_are_found_by_content_under_the_callee_name() {
        let registry = registry_of(&[entry(7, "app::jobs@10:5"), entry(8, "app::jobs@20:9")]);
        // The caller's build has a line more above the block: same id, another name.
        assert_eq!(
            name_of(registry.resolve(7, "app::jobs@11:5")),
            Ok("app::jobs@10:5")
        );
        // The name of the block at the caller's position does not matter.
        assert_eq!(
            name_of(registry.resolve(7, "app::jobs@20:9")),
            Ok("app::jobs@10:5")
        );
        assert_eq!(
            name_of(registry.resolve(7, "app::jobs@10:5")),
            Ok("app::jobs@10:5")
        );
    }

    #[test]
    fn anonymous_blocks_answer_only_anonymous_claims_of_their_module() {
        let registry = registry_of(&[entry(7, "app::jobs@10:5"), entry(9, "app::admin")]);
        assert_eq!(
            name_of(registry.resolve(7, "app::other@10:5")),
            Err("unknown app::other@10:5".into())
        );
        assert_eq!(
            name_of(registry.resolve(7, "app::jobs::run#0")),
            Err("unknown app::jobs::run#0".into())
        );
        // Nor does an anonymous claim reach a named block by its id.
        assert_eq!(
            name_of(registry.resolve(9, "app@1:1")),
            Err("unknown app@1:1".into())
        );
    }

    #[test]
    fn an_anonymous_name_known_with_another_id_is_a_version_mismatch() {
        let registry = registry_of(&[entry(7, "app@10:5")]);
        assert_eq!(
            name_of(registry.resolve(8, "app@10:5")),
            Err("mismatch app@10:5".into())
        );
        assert_eq!(
            name_of(registry.resolve(8, "app@11:5")),
            Err("unknown app@11:5".into())
        );
    }

    #[test]
    fn lookup_returns_only_the_entry_of_the_very_name() {
        let registry = registry_of(&[entry(7, "app@10:5")]);
        assert_eq!(name_of(registry.lookup(7, "app@10:5")), Ok("app@10:5"));
        assert_eq!(
            name_of(registry.lookup(7, "app@11:5")),
            Err("unknown app@11:5".into())
        );
    }

    #[test]
    fn the_first_registration_of_an_id_or_a_name_wins() {
        let registry = registry_of(&[entry(7, "app@10:5"), entry(7, "app@30:5")]);
        assert_eq!(name_of(registry.resolve(7, "app@30:5")), Ok("app@30:5"));
        assert_eq!(name_of(registry.resolve(7, "app@40:5")), Ok("app@10:5"));
        assert_eq!(registry.by_id.len(), 1);
    }

    #[test]
    fn names_split_into_crate_and_module() {
        assert_eq!(crate_of("blocks::add"), "blocks");
        assert_eq!(crate_of("blocks@3:9"), "blocks");
        assert_eq!(crate_of("blocks::jobs::run#1"), "blocks");
        assert_eq!(anonymous_module("blocks::jobs@3:9"), Some("blocks::jobs"));
        assert_eq!(anonymous_module("blocks::jobs::run#1"), None);
    }

    #[test]
    fn an_empty_registry_is_worth_a_warning() {
        let empty = registry_of(&[]);
        assert!(empty_registry_warning(&empty).is_some_and(|warning| warning.contains("as _;")));
        assert_eq!(
            empty_registry_warning(&registry_of(&[entry(1, "a::b")])),
            None
        );
    }
}
