//! Thread placement. Loopback latency on a small machine is bimodal with where the scheduler
//! puts the two ends of a connection, so the harness pins them: the client (the main thread,
//! with its actix system) on one core, every server on another. A thread started by a pinned
//! thread inherits its core, which is how the servers' HTTP worker and accept threads (and
//! the threads `PeerThread` starts) end up where their server is.

use core_affinity::CoreId;

/// A core to pin a thread to.
pub(crate) type Core = CoreId;

/// Where the threads of a run go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// The client peer, the raw and tarpc clients, and the chain's third peer.
    pub(crate) client: Option<Core>,
    /// The listening peer, the raw echo and the tarpc echo.
    pub(crate) server: Option<Core>,
}

impl Placement {
    /// Two different cores if `pin` and the process may run on at least two; otherwise none.
    pub(crate) fn choose(pin: bool) -> Self {
        let cores = if pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        match cores.as_slice() {
            // Only if this thread may be pinned at all.
            [client, server, ..] if core_affinity::set_for_current(*client) => Self {
                client: Some(*client),
                server: Some(*server),
            },
            _ => Self {
                client: None,
                server: None,
            },
        }
    }

    /// Runs `start` on the current thread pinned to the server's core, so that the threads
    /// it starts inherit that core, then moves the current thread to the client's core.
    pub(crate) fn on_server_core<T>(&self, start: impl FnOnce() -> T) -> T {
        pin(self.server);
        let started = start();
        pin(self.client);
        started
    }

    /// For the report's header.
    pub(crate) fn describe(&self) -> String {
        match (self.client, self.server) {
            (Some(client), Some(server)) => format!(
                "threads pinned: client and chain hop on core {}, servers (with their worker threads) on core {}",
                client.id, server.id
            ),
            _ => "threads not pinned (placement left to the scheduler; series alternate in rounds)"
                .to_owned(),
        }
    }
}

/// Pins the current thread to `core`, if any.
pub(crate) fn pin(core: Option<Core>) {
    if let Some(core) = core {
        // Best effort: a refusal leaves the thread where the scheduler puts it.
        let _pinned = core_affinity::set_for_current(core);
    }
}
