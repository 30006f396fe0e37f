//! Peer options and their defaults.

use std::time::Duration;

use crate::wire::DEFAULT_MAX_MESSAGE_SIZE;

/// The options of a peer. Set them through [`PeerBuilder`](crate::PeerBuilder).
///
/// | option | default |
/// |---|---|
/// | `default_deadline` | 30 s |
/// | `ping_interval` | 3 s |
/// | `liveness_timeout` | 10 s |
/// | `max_message_size` | 16 MiB |
/// | `max_inbound_calls` (per link) | 4 096 |
/// | `handshake_timeout` | 10 s |
/// | `connect_timeout` | 10 s |
/// | `drain_timeout` | 5 s |
/// | `app_version` | none |
/// | `refuse_app_version_mismatch` | false |
/// | `workers` | 1 |
/// | `serialize_local` | false |
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The deadline of a call that sets none. Default 30 s.
    pub default_deadline: Duration,
    /// How often a link is probed. Default 3 s.
    pub ping_interval: Duration,
    /// How long a silent link lives. Default 10 s.
    pub liveness_timeout: Duration,
    /// The largest message this peer sends or accepts, exchanged in the handshake.
    /// Default 16 MiB; at most 1 GiB.
    pub max_message_size: usize,
    /// Calls one link may run here at once. Default 4 096.
    pub max_inbound_calls: usize,
    /// How long a new link has to complete the handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long opening a connection may take. Default 10 s.
    pub connect_timeout: Duration,
    /// How long `stop()` lets in-flight calls finish. Default 5 s.
    pub drain_timeout: Duration,
    /// The application version announced in the handshake. Default none.
    pub app_version: Option<String>,
    /// Refuse links whose application version differs. Default false (logged only).
    pub refuse_app_version_mismatch: bool,
    /// HTTP worker threads of a listening peer. Default 1: each worker is a thread that owns
    /// its sockets and runs their calls, so raise it for many busy links.
    pub workers: usize,
    /// Serialize calls to the peer itself as if they were remote (for tests). Default false.
    pub serialize_local: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_deadline: Duration::from_secs(30),
            ping_interval: Duration::from_secs(3),
            liveness_timeout: Duration::from_secs(10),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_inbound_calls: 4096,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            app_version: None,
            refuse_app_version_mismatch: false,
            workers: 1,
            serialize_local: false,
        }
    }
}
