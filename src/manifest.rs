//! Knowing before you call: the blocks each side of a link can run, exchanged in the
//! handshake ([`RemoteBlock`], `PeerHandle::remote_blocks`), compared at link-up, and the
//! nearest match named when a call finds its block missing.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::block::{BlockInfo, blocks};
use crate::wire::{MAX_MANIFEST_BYTES, Manifest, ManifestEntry};
use crate::{PeerId, RemoteError};

/// A block another peer can run, as its handshake announced it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteBlock {
    id: u64,
    name: String,
    captures: String,
    output: String,
}

impl RemoteBlock {
    /// The block's id (see [`BlockInfo::id`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The block's name on that peer (see [`BlockInfo::name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The capture list as spelled there.
    pub fn captures(&self) -> &str {
        &self.captures
    }

    /// The result type as spelled there.
    pub fn output(&self) -> &str {
        &self.output
    }
}

impl From<&ManifestEntry> for RemoteBlock {
    fn from(entry: &ManifestEntry) -> Self {
        Self {
            id: entry.id,
            name: entry.name.clone(),
            captures: entry.captures.clone(),
            output: entry.output.clone(),
        }
    }
}

/// This binary's manifest: every registered block, sorted by name, cut to
/// [`MAX_MANIFEST_BYTES`] (then `complete` is false). Built once.
pub(crate) fn local() -> &'static Manifest {
    static LOCAL: OnceLock<Manifest> = OnceLock::new();
    LOCAL.get_or_init(|| of(&blocks()))
}

fn of(infos: &[BlockInfo]) -> Manifest {
    let mut manifest = Manifest {
        blocks: Vec::new(),
        complete: true,
    };
    let mut bytes = 0;
    for info in infos {
        // Each entry's size as encoded: an id and three length-prefixed strings.
        let size = 9 + 3 * 9 + info.name().len() + info.captures().len() + info.output().len();
        if bytes + size > MAX_MANIFEST_BYTES {
            manifest.complete = false;
            break;
        }
        bytes += size;
        manifest.blocks.push(ManifestEntry {
            id: info.id(),
            name: info.name().to_owned(),
            captures: info.captures().to_owned(),
            output: info.output().to_owned(),
        });
    }
    manifest
}

/// How two manifests differ, from this side's point of view.
#[derive(Debug, Default, PartialEq, Eq)]
struct Differences {
    /// Names of blocks this side has that the other lacks (no block with that id or name).
    lacking: Vec<String>,
    /// Names of blocks both have under one name with different ids: the builds differ.
    other_version: Vec<String>,
}

impl Differences {
    fn is_empty(&self) -> bool {
        self.lacking.is_empty() && self.other_version.is_empty()
    }
}

/// What `remote` lacks of `local`, or has in another version. Blocks are matched by id
/// first (an anonymous block moved in its file keeps its id), then by name.
fn compare(local: &Manifest, remote: &Manifest) -> Differences {
    let ids: HashMap<u64, ()> = remote.blocks.iter().map(|entry| (entry.id, ())).collect();
    let names: HashMap<&str, u64> = remote
        .blocks
        .iter()
        .map(|entry| (entry.name.as_str(), entry.id))
        .collect();
    let mut differences = Differences::default();
    for entry in &local.blocks {
        if ids.contains_key(&entry.id) {
            continue;
        }
        if names.contains_key(entry.name.as_str()) {
            differences.other_version.push(entry.name.clone());
        } else if remote.complete {
            differences.lacking.push(entry.name.clone());
        }
    }
    differences
}

/// The block of `remote` whose name is nearest to `name`: the same module and the nearest
/// line for an anonymous block (`module@line:col`), else the most characters in common at
/// the start. `None` if nothing shares its module.
fn nearest<'a>(name: &str, remote: &'a [RemoteBlock]) -> Option<&'a RemoteBlock> {
    let (module, line) = split(name);
    remote
        .iter()
        .filter(|block| split(&block.name).0 == module)
        .min_by_key(|block| {
            let (_, other) = split(&block.name);
            match (line, other) {
                (Some(line), Some(other)) => (0, line.abs_diff(other), 0),
                _ => (
                    1,
                    0,
                    usize::MAX
                        - name
                            .chars()
                            .zip(block.name.chars())
                            .take_while(|(a, b)| a == b)
                            .count(),
                ),
            }
        })
}

/// `module@line:col` -> (`module`, `line`); `module::item#i` -> (`module`, None).
fn split(name: &str) -> (&str, Option<u32>) {
    if let Some((module, place)) = name.split_once('@') {
        let line = place.split(':').next().and_then(|line| line.parse().ok());
        return (module, line);
    }
    let path = name.split('#').next().unwrap_or(name);
    (
        path.rsplit_once("::").map_or(path, |(module, _)| module),
        None,
    )
}

/// At link-up: warns if `peer` lacks blocks this peer has, or has them in another version.
pub(crate) fn warn_of_differences(peer: PeerId, remote: &Manifest) {
    let differences = compare(local(), remote);
    if !differences.is_empty() {
        tracing::warn!(
            peer = %peer.label(),
            lacking = differences.lacking.len(),
            other_version = differences.other_version.len(),
            "the peer lacks blocks this peer has ({}) or has them in another version ({})",
            summary(&differences.lacking),
            summary(&differences.other_version),
        );
    }
}

/// After a call of block `name` on `peer`: if the peer's build lacks the block, names the
/// nearest one it announced (`remote`).
pub(crate) fn warn_if_missing<T>(
    peer: PeerId,
    name: &str,
    result: &Result<T, RemoteError>,
    remote: &[RemoteBlock],
) {
    if let Err(RemoteError::UnknownBlock { .. } | RemoteError::VersionMismatch { .. }) = result {
        tracing::warn!(
            peer = %peer.label(),
            block = name,
            nearest = nearest(name, remote).map_or("none", RemoteBlock::name),
            "the peer's build does not have this block; nearest there"
        );
    }
}

/// A short list of names for a log line: the first few, and how many more.
fn summary(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, name: &str) -> ManifestEntry {
        ManifestEntry {
            id,
            name: name.to_owned(),
            captures: String::new(),
            output: "u32".to_owned(),
        }
    }

    fn manifest(entries: Vec<ManifestEntry>) -> Manifest {
        Manifest {
            blocks: entries,
            complete: true,
        }
    }

    #[test]
    fn differences_match_by_id_then_by_name() {
        let here = manifest(vec![
            entry(1, "app@10:5"),
            entry(2, "app::add"),
            entry(3, "app::only_here"),
        ]);
        // The anonymous block moved (same id, another line): not a difference; `add` was
        // rebuilt from other code; `only_here` is missing there.
        let there = manifest(vec![entry(1, "app@12:5"), entry(9, "app::add")]);
        let differences = compare(&here, &there);
        assert_eq!(differences.lacking, vec!["app::only_here"]);
        assert_eq!(differences.other_version, vec!["app::add"]);
        assert!(compare(&here, &here).is_empty());
        // An incomplete manifest cannot tell what is missing.
        let partial = Manifest {
            complete: false,
            ..there
        };
        assert!(compare(&here, &partial).lacking.is_empty());
    }

    #[test]
    fn the_nearest_block_is_in_the_same_module_and_closest_line() {
        let remote: Vec<RemoteBlock> = [
            entry(1, "app@10:5"),
            entry(2, "app@40:5"),
            entry(3, "other@11:5"),
            entry(4, "app::search#0"),
        ]
        .iter()
        .map(RemoteBlock::from)
        .collect();
        assert_eq!(
            nearest("app@13:9", &remote).map(RemoteBlock::name),
            Some("app@10:5")
        );
        assert_eq!(
            nearest("app::search#1", &remote).map(RemoteBlock::name),
            Some("app::search#0")
        );
        assert_eq!(nearest("nowhere@1:1", &remote), None);
    }

    #[test]
    fn a_manifest_is_cut_to_fit_a_hello() {
        // Far more blocks than fit: the manifest is cut, says so, and its hello stays within
        // the limit a peer accepts before the handshake completes.
        let name: &'static str =
            Box::leak("app::a_rather_long_block_name".repeat(4).into_boxed_str());
        let infos: Vec<BlockInfo> = (0..4000)
            .map(|i| BlockInfo::new("app", i, name, "x: u32, y: Vec<String>", "u64", "app.rs", 1))
            .collect();
        let manifest = of(&infos);
        assert!(!manifest.complete);
        assert!(!manifest.blocks.is_empty());
        let hello = crate::wire::Hello {
            peer: crate::PeerId::from_name("many"),
            max_message_size: 1 << 20,
            app_version: None,
            manifest,
            nonce: u128::MAX,
            // A proof as long as any token a peer accepts.
            proof: Some("x".repeat(8 << 10)),
            resumable: false,
            session: Some(crate::wire::SessionKeys::new()),
        };
        let bytes = hello.to_bytes().unwrap();
        assert!(
            bytes.len() <= crate::wire::MAX_HELLO_SIZE,
            "{}",
            bytes.len()
        );
        assert_eq!(crate::wire::Hello::from_bytes(&bytes).unwrap(), hello);
        // This binary's own manifest is whole.
        assert!(local().complete);
    }
}
