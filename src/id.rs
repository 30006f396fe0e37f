//! Peer identity, and the names this process knows ids by.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The namespace of [`PeerId::from_name`]; fixed forever so that names map to the same id in
/// every build and on every platform.
const PEER_NAMESPACE: Uuid = Uuid::from_u128(0x6d2f_0c3e_8a41_4f6b_9b7e_1d5a_c0de_5c0e);

/// The identity of a peer: a UUID.
///
/// Ids are either derived from a name ([`PeerId::from_name`], deterministic, UUID v5) so that
/// several processes agree on them without talking, or random ([`PeerId::random`], UUID v4).
///
/// `Display` shows the UUID, which `FromStr` parses back. Where this process made an id
/// with `from_name`, [`PeerId::label`] (also `{:#}`, and `Debug`) shows the name beside the
/// first eight hex digits, `server(f4eba681)`: logs, errors and `connected_peers()` read
/// better. Names are not sent over the wire: a process knows the names it used itself.
///
/// # Examples
///
/// ```
/// use distributed_scope::PeerId;
///
/// let server = PeerId::from_name("server");
/// assert_eq!(server, PeerId::from_name("server"));
/// assert_eq!(server, server.to_string().parse().unwrap());
/// assert_eq!(server.name().as_deref(), Some("server"));
/// assert_eq!(format!("{server:#}"), server.label().to_string());
/// assert!(server.label().to_string().starts_with("server("));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(Uuid);

impl PeerId {
    /// The id for `name`: a UUID v5 in a fixed namespace, the same on every build.
    ///
    /// The process remembers the name, for [`PeerId::name`] and [`PeerId::label`].
    pub fn from_name(name: &str) -> Self {
        let id = Self::derive(name);
        names::remember(id, name);
        id
    }

    /// The name this id was made from with [`PeerId::from_name`] in this process, if any.
    pub fn name(&self) -> Option<String> {
        names::get(*self).map(|name| name.to_string())
    }

    /// A readable form for logs: `name(f4eba681)` (the name and the first eight hex digits)
    /// for an id this process made with [`PeerId::from_name`], the UUID otherwise. Also
    /// written `{:#}`. It is for people, not for parsing: use `Display` and `FromStr` to
    /// store or send an id.
    pub fn label(&self) -> impl fmt::Display + use<> {
        Label(*self)
    }

    /// A fresh random id (UUID v4).
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Whether this is a random id (a UUID v4, as [`PeerId::random`] makes): on a peer with
    /// auth any authenticated link may claim one (first come), while a named id must be
    /// bound to the link's token.
    pub fn is_random(&self) -> bool {
        self.0.get_version_num() == 4
    }

    /// The id for `name`, as [`PeerId::from_name`], without remembering the name (for ids
    /// computed from what remotes present, which must not fill the name registry).
    pub(crate) fn derive(name: &str) -> Self {
        Self(Uuid::new_v5(&PEER_NAMESPACE, name.as_bytes()))
    }

    /// Wraps an existing UUID.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID behind this id.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for PeerId {
    /// The UUID; with `{:#}`, the [`label`](PeerId::label).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            fmt::Display::fmt(&Label(*self), f)
        } else {
            fmt::Display::fmt(&self.0, f)
        }
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", Label(*self))
    }
}

/// See [`PeerId::label`].
struct Label(PeerId);

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match names::get(self.0) {
            Some(name) => {
                let hex = self.0.0.simple();
                let mut buffer = Uuid::encode_buffer();
                let short = &hex.encode_lower(&mut buffer)[..8];
                write!(f, "{name}({short})")
            }
            None => fmt::Display::fmt(&self.0.0, f),
        }
    }
}

/// The process-wide names of ids made with [`PeerId::from_name`].
mod names {
    use super::*;

    /// At most this many names are remembered; later ones are not (their ids show as UUIDs).
    pub(super) const MAX_NAMES: usize = 4096;
    /// Longer names are remembered cut to this many bytes (at a character boundary).
    pub(super) const MAX_NAME_LEN: usize = 64;

    type Names = RwLock<HashMap<PeerId, Arc<str>>>;

    fn names() -> &'static Names {
        static NAMES: OnceLock<Names> = OnceLock::new();
        NAMES.get_or_init(|| RwLock::new(HashMap::new()))
    }

    pub(super) fn remember(id: PeerId, name: &str) {
        // One insert at a time: a panic elsewhere cannot leave the map half-updated.
        let known = names()
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(&id);
        if known {
            return;
        }
        let mut names = names()
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        insert(&mut names, id, name);
    }

    /// Remembers `name` for `id` within the bounds.
    pub(super) fn insert(names: &mut HashMap<PeerId, Arc<str>>, id: PeerId, name: &str) {
        if names.len() >= MAX_NAMES {
            return;
        }
        names
            .entry(id)
            .or_insert_with(|| Arc::from(crate::error::truncated(name.to_owned(), MAX_NAME_LEN)));
    }

    pub(super) fn get(id: PeerId) -> Option<Arc<str>> {
        names()
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .cloned()
    }
}

impl FromStr for PeerId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::from_str(s).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_fixed_v5_ids() {
        let id = PeerId::from_name("server");
        assert_eq!(id.as_uuid().get_version_num(), 5);
        assert_eq!(id, PeerId::from_name("server"));
        assert_ne!(id, PeerId::from_name("client"));
    }

    #[test]
    fn only_random_ids_are_random() {
        assert!(PeerId::random().is_random());
        assert!(!PeerId::from_name("payments").is_random());
        assert_eq!(PeerId::derive("payments"), PeerId::from_name("payments"));
    }

    #[test]
    fn random_ids_are_v4_and_distinct() {
        let a = PeerId::random();
        assert_eq!(a.as_uuid().get_version_num(), 4);
        assert_ne!(a, PeerId::random());
    }

    #[test]
    fn named_ids_show_their_name_and_still_round_trip() {
        let id = PeerId::from_name("label-test-server");
        let short = &id.to_string()[..8];
        let label = format!("label-test-server({short})");
        assert_eq!(id.label().to_string(), label);
        assert_eq!(format!("{id:#}"), label);
        assert_eq!(format!("{id:?}"), format!("PeerId({label})"));
        assert_eq!(id.to_string().parse::<PeerId>().unwrap(), id);
        assert_eq!(id.name().as_deref(), Some("label-test-server"));

        let random = PeerId::random();
        assert_eq!(random.name(), None);
        assert_eq!(random.label().to_string(), random.to_string());

        let long = "ü".repeat(100);
        let cut = PeerId::from_name(&long).name().unwrap();
        assert_eq!(cut, "ü".repeat(names::MAX_NAME_LEN / 2));
    }

    #[test]
    fn the_name_registry_is_bounded() {
        let mut map = HashMap::new();
        for i in 0..names::MAX_NAMES + 10 {
            names::insert(&mut map, PeerId::random(), &format!("peer-{i}"));
        }
        assert_eq!(map.len(), names::MAX_NAMES);
    }

    #[test]
    fn display_and_parse_roundtrip() {
        let id = PeerId::random();
        assert_eq!(id.to_string().parse::<PeerId>().unwrap(), id);
        assert!("not-a-uuid".parse::<PeerId>().is_err());
    }
}
