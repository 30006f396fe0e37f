//! [`Expected`]: who a connecting peer requires the peer it reaches to be.

use crate::PeerId;

/// What [`PeerHandle::connect_to`](crate::PeerHandle::connect_to) requires of the peer it
/// reaches: its id, its principal's subject, a role. The remote must prove them in its
/// handshake with a token this peer's [`JwtAuth`](crate::auth::JwtAuth) verifies (set with
/// [`PeerBuilder::identity`](crate::PeerBuilder::identity) on the remote), bound to this
/// link's nonce and to the id it claims; otherwise, or on any mismatch, the link is refused
/// before any call runs.
///
/// ```no_run
/// # use distributed_scope::{Expected, PeerHandle, PeerId};
/// # async fn example(client: PeerHandle, token: String) -> Result<(), distributed_scope::Error> {
/// let payments = PeerId::from_name("payments");
/// let expected = Expected::peer(payments).subject("payments").token(token);
/// client.connect_to("wss://payments.internal/", expected).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Expected {
    pub(crate) peer: Option<PeerId>,
    pub(crate) subject: Option<String>,
    pub(crate) role: Option<String>,
    pub(crate) token: Option<String>,
}

impl Expected {
    /// Requires the remote to be `peer`.
    pub fn peer(peer: PeerId) -> Self {
        Self {
            peer: Some(peer),
            ..Self::default()
        }
    }

    /// Requires no particular id, only a proven identity (add [`subject`](Self::subject) or
    /// [`role`](Self::role)).
    pub fn any_peer() -> Self {
        Self::default()
    }

    /// Requires the remote's proven principal to have this subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Requires the remote's proven principal to have this role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Presents `token` at the upgrade, as
    /// [`connect_with_token`](crate::PeerHandle::connect_with_token) does.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}
