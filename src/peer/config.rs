//! Peer options and their defaults.

use std::time::Duration;

use crate::link;
use crate::link::Backoff;
use crate::wire::DEFAULT_MAX_MESSAGE_SIZE;

/// The options of a peer. Set them through [`PeerBuilder`](crate::PeerBuilder).
///
/// | option | default | meaning |
/// |---|---|---|
/// | `default_deadline` | 30 s | deadline of a call that sets none |
/// | `ping_interval` | 3 s | how often a link is probed |
/// | `liveness_timeout` | 10 s | a link silent this long is dropped (and resumed, within the resume window) |
/// | `resume_window` | 10 s | how long a link whose connection dropped waits to be resumed before its calls fail `ConnectionLost` (zero: never resumed) |
/// | `max_replay_bytes` | 32 MiB per link | bytes of sent frames kept until the remote acknowledges them; at the bound the link takes no new calls |
/// | `max_message_size` | 16 MiB | largest message sent or accepted (at most 1 GiB) |
/// | `max_inbound_calls` | 4 096 per link | calls of one link running here at once |
/// | `max_queued_calls` | 4 096 per link | calls waiting beyond that; then `Overloaded` |
/// | `max_queued_bytes` | 64 MiB per link | bytes of call frames of one link running or waiting here; then `Overloaded` |
/// | `max_pending_outbound` | 4 096 per link | calls this peer has pending on a link; more wait until their deadline |
/// | `max_publications_in_flight` | 256 per link | publications sent to a subscriber and not answered yet; more are dropped and counted |
/// | `max_topics_per_remote` | 256 per link | topics one linked peer may subscribe to here; more are refused with `Overloaded` |
/// | `handshake_timeout` | 10 s | time a new link has for its handshake |
/// | `connect_timeout` | 10 s | time opening a connection may take |
/// | `drain_timeout` | 5 s | time `stop()` lets in-flight calls finish |
/// | `reconnect` | 0.5 s, x1.6, cap 30 s, +-20 % | backoff of outbound links that went down |
/// | `wait_for_ready` | false | calls to a peer known down wait until their deadline instead of failing at once |
/// | `watch_grace` | 5 s | time a watched peer may be without a link before its watchers are told it is lost |
/// | `app_version` | none | application version announced in the handshake |
/// | `refuse_app_version_mismatch` | false | refuse links with another `app_version` |
/// | `workers` | 1 | HTTP worker threads of a listening peer |
/// | `serialize_local` | false | serialize calls to the peer itself, as if remote |
/// | `max_hello_size` | 64 KiB | largest message accepted before the handshake completes (at most 64 KiB) |
/// | `max_metadata_bytes` | 8 KiB | bytes of a call's metadata; more closes the link |
/// | `max_metadata_entries` | 32 | entries of a call's metadata (at most 64); more closes the link |
/// | `max_inbound_deadline` | 5 min | inbound deadlines are clamped to this |
/// | `max_send_buffer` | 4 MiB per link | bytes written but not taken by the remote past which the link stops reading |
/// | `write_timeout` | 10 s | a link whose remote takes nothing for this long while over `max_send_buffer` is dropped (1008) |
/// | `fragment_timeout` | 10 s | time a fragmented message has to complete; then the link closes (1008) |
/// | `max_links` | 512 | links (inbound, past their handshake) a peer keeps; more are refused |
/// | `max_handshakes` | 256 | inbound links in their handshake at once; more are refused with HTTP 503 |
/// | `max_links_per_ip` | 64 | inbound links and handshakes from one IP address; more are refused with HTTP 503 |
/// | `max_buffered_bytes` | 128 MiB per peer | bytes of inbound call frames all links hold beyond 64 KiB each; then calls answer `Overloaded` |
/// | `max_fragment_bytes` | 64 MiB per peer | bytes of unfinished messages all links hold (fragments being assembled, and input not yet a whole frame beyond 64 KiB a socket); then the link adding to them closes (1008) |
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The deadline of a call that sets none. Default 30 s.
    pub default_deadline: Duration,
    /// How often a link is probed. Default 3 s.
    pub ping_interval: Duration,
    /// How long a silent link lives. Default 10 s.
    pub liveness_timeout: Duration,
    /// How long a link whose connection dropped waits to be resumed. Default 10 s; zero
    /// turns session resume off.
    pub resume_window: Duration,
    /// Bytes of sent frames a link keeps until the remote acknowledges them. Default 32 MiB.
    pub max_replay_bytes: usize,
    /// The largest message this peer sends or accepts, exchanged in the handshake.
    /// Default 16 MiB; at most 1 GiB.
    pub max_message_size: usize,
    /// Calls one link may run here at once. Default 4 096.
    pub max_inbound_calls: usize,
    /// Calls of one link that may wait for a slot; beyond, calls are answered `Overloaded`.
    /// Default 4 096.
    pub max_queued_calls: usize,
    /// Bytes of call frames of one link running or waiting here; beyond, calls are answered
    /// `Overloaded`. Default 64 MiB.
    pub max_queued_bytes: usize,
    /// Calls this peer may have pending on one link; more wait until their deadline.
    /// Default 4 096.
    pub max_pending_outbound: usize,
    /// Publications this peer has sent to one linked subscriber and not seen answered; a
    /// publication to that subscriber beyond it is dropped and counted
    /// ([`PubSubMetrics::dropped`](crate::PubSubMetrics::dropped)). Default 256.
    pub max_publications_in_flight: usize,
    /// Topics one linked peer may subscribe to on this peer; more are refused with
    /// `Overloaded`. Forgotten when its link goes. Default 256.
    pub max_topics_per_remote: usize,
    /// How long a new link has to complete the handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long opening a connection may take. Default 10 s.
    pub connect_timeout: Duration,
    /// How long `stop()` lets in-flight calls finish. Default 5 s.
    pub drain_timeout: Duration,
    /// The backoff of outbound links that went down.
    pub reconnect: Backoff,
    /// Whether calls to a peer known down (its link was lost, or its last dial failed) wait
    /// for it until their deadline, as if each asked
    /// [`RemoteCall::wait_for_ready`](crate::RemoteCall::wait_for_ready). Default false: they
    /// fail at once with `NotConnected`. Up to 4 096 peers are remembered as down (the
    /// oldest is forgotten first, and calls to it wait again).
    pub wait_for_ready: bool,
    /// How long a watched peer may be without a link before its watchers are told
    /// `PeerStatus::Lost`; a reconnection within it is a blip. Default 5 s.
    pub watch_grace: Duration,
    /// The application version announced in the handshake. Default none.
    pub app_version: Option<String>,
    /// Refuse links whose application version differs. Default false (logged only).
    pub refuse_app_version_mismatch: bool,
    /// HTTP worker threads of a listening peer. Default 1: each worker is a thread that owns
    /// its sockets and runs their calls, so raise it for many busy links.
    pub workers: usize,
    /// Serialize calls to the peer itself as if they were remote (for tests). Default false.
    pub serialize_local: bool,
    /// The largest message accepted before the handshake completes. Default (and at most)
    /// 64 KiB: a `Hello` is tiny.
    pub max_hello_size: usize,
    /// Bytes of a call's metadata (keys and values); a call with more closes its link.
    /// Default 8 KiB.
    pub max_metadata_bytes: usize,
    /// Entries of a call's metadata; a call with more closes its link. Default 32, at most 64.
    pub max_metadata_entries: usize,
    /// The longest deadline an inbound call may ask for; longer ones are clamped.
    /// Default 5 minutes.
    pub max_inbound_deadline: Duration,
    /// Bytes written to a link but not yet taken by the remote past which the link stops
    /// reading (so that a remote that does not read cannot make it queue more). Default 4 MiB.
    pub max_send_buffer: usize,
    /// How long a link may stay over `max_send_buffer` with the remote taking nothing before
    /// it is dropped (close 1008). Default 10 s.
    pub write_timeout: Duration,
    /// How long a fragmented message may take to complete before the link closes (1008).
    /// Default 10 s.
    pub fragment_timeout: Duration,
    /// Inbound links (past their handshake) this peer keeps at once. Default 512.
    pub max_links: usize,
    /// Inbound links in their handshake at once; more are refused with HTTP 503. Default 256
    /// (above `max_links_per_ip`, so one address cannot take every handshake slot).
    pub max_handshakes: usize,
    /// Inbound links and handshakes from one IP address; more are refused with HTTP 503.
    /// Default 64.
    pub max_links_per_ip: usize,
    /// Bytes of inbound call frames (running or queued) all links of this peer hold beyond
    /// the 64 KiB each link may always hold; past it calls answer `Overloaded`.
    /// Default 128 MiB.
    pub max_buffered_bytes: usize,
    /// Bytes of unfinished messages all links of this peer hold: fragments being assembled,
    /// and input read but not yet a whole frame beyond 64 KiB a socket; the link adding past
    /// it closes (1008). Default 64 MiB.
    pub max_fragment_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        let limits = link::Limits::default();
        Self {
            default_deadline: link::DEFAULT_DEADLINE,
            ping_interval: link::PING_INTERVAL,
            liveness_timeout: link::LIVENESS_TIMEOUT,
            resume_window: link::RESUME_WINDOW,
            max_replay_bytes: link::MAX_REPLAY_BYTES,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_inbound_calls: limits.max_inbound_calls,
            max_queued_calls: limits.max_queued_calls,
            max_queued_bytes: limits.max_inbound_bytes,
            max_pending_outbound: 4096,
            max_publications_in_flight: 256,
            max_topics_per_remote: 256,
            handshake_timeout: link::HANDSHAKE_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            reconnect: Backoff::default(),
            wait_for_ready: false,
            watch_grace: Duration::from_secs(5),
            app_version: None,
            refuse_app_version_mismatch: false,
            workers: 1,
            serialize_local: false,
            max_hello_size: limits.max_hello_size,
            max_metadata_bytes: limits.max_metadata_bytes,
            max_metadata_entries: limits.max_metadata_entries,
            max_inbound_deadline: limits.max_inbound_deadline,
            max_send_buffer: limits.max_send_buffer,
            write_timeout: limits.write_timeout,
            fragment_timeout: limits.fragment_timeout,
            max_links: 512,
            max_handshakes: 256,
            max_links_per_ip: 64,
            max_buffered_bytes: 128 << 20,
            max_fragment_bytes: 64 << 20,
        }
    }
}

impl Config {
    /// The per-link bounds the link engine enforces.
    pub(crate) fn limits(&self) -> link::Limits {
        link::Limits {
            max_message_size: self.max_message_size,
            max_hello_size: self.max_hello_size.min(crate::wire::MAX_HELLO_SIZE),
            max_inbound_calls: self.max_inbound_calls,
            max_queued_calls: self.max_queued_calls,
            max_inbound_bytes: self.max_queued_bytes,
            max_metadata_bytes: self.max_metadata_bytes,
            max_metadata_entries: self
                .max_metadata_entries
                .min(crate::wire::MAX_METADATA_ENTRIES_CEILING),
            max_inbound_deadline: self.max_inbound_deadline,
            max_send_buffer: self.max_send_buffer,
            write_timeout: self.write_timeout,
            fragment_timeout: self.fragment_timeout,
            handshake_timeout: self.handshake_timeout,
            ping_interval: self.ping_interval,
            liveness_timeout: self.liveness_timeout,
            resume_window: self.resume_window,
            max_replay_bytes: self.max_replay_bytes,
        }
    }
}
