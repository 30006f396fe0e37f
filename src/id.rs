//! Peer identity.

use std::fmt;
use std::str::FromStr;

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
/// # Examples
///
/// ```
/// use distributed_scope::PeerId;
///
/// let server = PeerId::from_name("server");
/// assert_eq!(server, PeerId::from_name("server"));
/// assert_eq!(server, server.to_string().parse().unwrap());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(Uuid);

impl PeerId {
    /// The id for `name`: a UUID v5 in a fixed namespace, the same on every build.
    pub fn from_name(name: &str) -> Self {
        Self(Uuid::new_v5(&PEER_NAMESPACE, name.as_bytes()))
    }

    /// A fresh random id (UUID v4).
    pub fn random() -> Self {
        Self(Uuid::new_v4())
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.0)
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
    fn random_ids_are_v4_and_distinct() {
        let a = PeerId::random();
        assert_eq!(a.as_uuid().get_version_num(), 4);
        assert_ne!(a, PeerId::random());
    }

    #[test]
    fn display_and_parse_roundtrip() {
        let id = PeerId::random();
        assert_eq!(id.to_string().parse::<PeerId>().unwrap(), id);
        assert!("not-a-uuid".parse::<PeerId>().is_err());
    }
}
