//! Thread placement. Loopback latency on a small machine is bimodal with where the scheduler
//! puts the two ends of a connection, so the harness pins them: the client (the main thread,
//! with its actix system) on one core, every server on another. A thread started by a pinned
//! thread inherits its core, which is how the servers' HTTP worker and accept threads (and
//! the threads `PeerThread` starts) end up where their server is.

use core_affinity::CoreId;

/// A core to pin a thread to.
pub(crate) type Core = CoreId;

/// How to place the threads, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pinning {
    /// The client on one core, the servers on another (the default): every round trip
    /// crosses cores.
    Split,
    /// Everything on one core (`--same-core`): the other mode of the loopback, where a
    /// message wakes a thread on the core it was sent from.
    Same,
    /// Placement left to the scheduler (`--no-pin`).
    Off,
}

/// Where the threads of a run go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// The client peer, the raw and tarpc clients, and the chain's third peer.
    pub(crate) client: Option<Core>,
    /// The listening peer, the raw echo and the tarpc echo.
    pub(crate) server: Option<Core>,
}

impl Placement {
    /// For [`Pinning::Split`], two different cores if the process may run on at least two;
    /// for [`Pinning::Same`], one core; otherwise (or if this thread may not be pinned) none.
    pub(crate) fn choose(pinning: Pinning) -> Self {
        let cores = match pinning {
            Pinning::Split | Pinning::Same => core_affinity::get_core_ids().unwrap_or_default(),
            Pinning::Off => Vec::new(),
        };
        let none = Self {
            client: None,
            server: None,
        };
        let (client, server) = match (pinning, cores.as_slice()) {
            (Pinning::Split, [client, server, ..]) => (*client, *server),
            (Pinning::Same, [core, ..]) => (*core, *core),
            _ => return none,
        };
        if core_affinity::set_for_current(client) {
            Self {
                client: Some(client),
                server: Some(server),
            }
        } else {
            none
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
            (Some(client), Some(server)) if client.id == server.id => format!(
                "threads pinned: client, chain hop and servers all on core {}",
                client.id
            ),
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
