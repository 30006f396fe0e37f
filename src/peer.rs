//! The native peer: the [`Peer`] actor, [`PeerBuilder`] and [`PeerHandle`].

mod actor;
mod admission;
#[cfg(feature = "auth")]
mod bearer;
mod builder;
pub(crate) mod config;
pub(crate) mod connection;
mod data;
mod discovery;
pub(crate) mod events;
#[cfg(feature = "auth")]
mod expected;
#[cfg(feature = "auth")]
pub(crate) mod guard;
mod handle;
#[cfg(feature = "auth")]
mod jwt;
mod known_down;
mod middleware;
mod origin;
mod outbox;
pub(crate) mod pubsub;
pub(crate) mod resume;
pub(crate) mod shared;
mod shutdown;
mod upgrade;
mod watch;

pub(crate) use self::actor::LinkDown;
pub(crate) use self::resume::RESUME_HEADER;

/// What an outbound link requires of the peer it reaches ([`Expected`]); nothing can be
/// required without auth.
#[cfg(feature = "auth")]
pub(crate) type Requirement = Option<std::sync::Arc<Expected>>;
#[cfg(not(feature = "auth"))]
pub(crate) type Requirement = Option<std::convert::Infallible>;
pub use self::actor::{On, Peer};
pub use self::builder::PeerBuilder;
pub use self::config::Config;
pub use self::discovery::{Discovery, DiscoveryError};
pub use self::events::{Events, PeerEvent};
#[cfg(feature = "auth")]
pub use self::expected::Expected;
pub use self::handle::{LinkInfo, PeerHandle};
#[cfg(feature = "auth")]
pub use self::jwt::{Authenticated, JwtMiddleware, JwtMiddlewareService};
pub use self::middleware::{PeerMiddleware, PeerMiddlewareService};
pub use self::pubsub::{
    DEFAULT_SUBSCRIPTION_CAPACITY, MAX_TOPIC_LEN, PubSubMetrics, QUEUED_PUBLICATIONS, Subscription,
};
pub use self::watch::PeerStatus;
