//! Helpers for tests: peers in their own actix systems on their own threads, alone
//! ([`PeerThread`]) or linked into a [`Cluster`].

use std::fmt;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures_channel::oneshot;

use crate::{Error, Peer, PeerBuilder, PeerHandle, PeerId};

/// A peer running in its own actix system on its own thread, stopped when dropped.
///
/// ```no_run
/// use distributed_scope::{Peer, PeerId, testing::PeerThread};
///
/// let server = PeerThread::start(Peer::builder(PeerId::from_name("server")).listen("127.0.0.1:0"))?;
/// let url = server.handle().url().unwrap();
/// # Ok::<(), distributed_scope::Error>(())
/// ```
#[derive(Debug)]
pub struct PeerThread {
    handle: PeerHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PeerThread {
    /// Starts the peer on a new thread and waits until it runs.
    ///
    /// # Errors
    ///
    /// What [`PeerBuilder::start`] returns, or [`Error::Stopped`] if the thread died.
    pub fn start(builder: PeerBuilder) -> Result<Self, Error> {
        Self::start_named("distributed-scope-peer".to_owned(), builder)
    }

    fn start_named(thread_name: String, builder: PeerBuilder) -> Result<Self, Error> {
        let (started, ready) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async move {
                    match builder.start().await {
                        Ok(handle) => {
                            let (stop, stopped) = oneshot::channel();
                            if started.send(Ok((handle.clone(), stop))).is_ok() {
                                let _dropped = stopped.await;
                            }
                            let _already = handle.stop().await;
                        }
                        Err(error) => {
                            let _gone = started.send(Err(error));
                        }
                    }
                });
            })
            .map_err(|_spawn| Error::Stopped)?;
        let (handle, stop) = ready.recv().map_err(|_died| Error::Stopped)??;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The running peer.
    pub fn handle(&self) -> &PeerHandle {
        &self.handle
    }

    /// Asks the peer to stop, without waiting.
    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopped = stop.send(());
        }
    }
}

impl Drop for PeerThread {
    fn drop(&mut self) {
        self.signal_stop();
        if let Some(thread) = self.thread.take() {
            let _panicked = thread.join();
        }
    }
}

/// Peers linked over loopback WebSockets, each in its own actix system on its own thread.
///
/// Each peer is named; its id is [`PeerId::from_name`] of its name and it listens on
/// `127.0.0.1:0`. Without [`ClusterBuilder::link`] the peers form a full mesh. Dropping the
/// cluster (or [`Cluster::shutdown`]) stops every peer and joins its thread.
///
/// ```no_run
/// use distributed_scope::testing::Cluster;
/// use distributed_scope::{remote, RemoteError};
///
/// let cluster = Cluster::start(["a", "b", "c"])?;
/// let b = cluster.id("b");
/// let answer = distributed_scope::actix::System::new().block_on(async {
///     cluster
///         .handle("a")
///         .run(async move { remote!(b, [] -> u32 { 42 }).await })
///         .await
/// });
/// assert_eq!(answer, Ok(42));
/// # Ok::<(), distributed_scope::Error>(())
/// ```
pub struct Cluster {
    peers: Vec<(String, PeerThread)>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field(
                "peers",
                &self.peers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// How long [`Cluster`] waits for each link to come up on both sides.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);

type Configure = Box<dyn Fn(&str, PeerBuilder) -> PeerBuilder>;

/// Configures a [`Cluster`]: its peers, their links and options.
#[must_use = "a builder does nothing until `start` is called"]
pub struct ClusterBuilder {
    names: Vec<String>,
    links: Option<Vec<(String, String)>>,
    configure: Option<Configure>,
}

impl fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("names", &self.names)
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts a full mesh of peers with these names.
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::start`].
    pub fn start<I, S>(names: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder().peers(names).start()
    }

    /// Starts configuring a cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            names: Vec::new(),
            links: None,
            configure: None,
        }
    }

    /// The handle of the peer `name`, usable from any thread.
    ///
    /// # Panics
    ///
    /// If the cluster has no peer of that name.
    pub fn handle(&self, name: &str) -> &PeerHandle {
        self.get(name)
            .unwrap_or_else(|| panic!("the cluster has no peer named `{name}`"))
    }

    /// The handle of the peer `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&PeerHandle> {
        self.peers
            .iter()
            .find(|(peer, _)| peer == name)
            .map(|(_, thread)| thread.handle())
    }

    /// The id of the peer `name`: [`PeerId::from_name`]`(name)`.
    pub fn id(&self, name: &str) -> PeerId {
        PeerId::from_name(name)
    }

    /// The handles of all peers, in the order they were named.
    pub fn handles(&self) -> impl Iterator<Item = (&str, &PeerHandle)> {
        self.peers
            .iter()
            .map(|(name, thread)| (name.as_str(), thread.handle()))
    }

    /// Stops every peer and joins its thread (what dropping the cluster does).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Ask all at once, so that the peers drain in parallel, then join each thread.
        for (_, thread) in &mut self.peers {
            thread.signal_stop();
        }
        self.peers.clear();
    }
}

impl ClusterBuilder {
    /// Adds peers with these names.
    pub fn peers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.names.extend(names.into_iter().map(Into::into));
        self
    }

    /// Adds a peer.
    pub fn peer(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// Has `from` open a link to `to` (links are symmetric once up). Once any link is given,
    /// only the given links are opened; without any, the peers form a full mesh.
    pub fn link(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.links
            .get_or_insert_with(Vec::new)
            .push((from.into(), to.into()));
        self
    }

    /// Sets options of each peer: `configure(name, builder)` gets a builder that already
    /// listens on `127.0.0.1:0`.
    pub fn configure<F>(mut self, configure: F) -> Self
    where
        F: Fn(&str, PeerBuilder) -> PeerBuilder + 'static,
    {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Starts every peer on its own thread, opens the links and waits until each is up on
    /// both sides.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a duplicate name or a link naming an unknown peer; what
    /// [`PeerThread::start`] or [`PeerHandle::connect`] returns; [`Error::Connect`] if a
    /// link is not seen by its accepting side within 10 s.
    pub fn start(self) -> Result<Cluster, Error> {
        let Self {
            names,
            links,
            configure,
        } = self;
        for (at, name) in names.iter().enumerate() {
            if names[..at].contains(name) {
                return Err(Error::Config("two cluster peers have the same name"));
            }
        }
        let index = |name: &str| {
            names
                .iter()
                .position(|known| known == name)
                .ok_or(Error::Config("a cluster link names an unknown peer"))
        };
        let pairs: Vec<(usize, usize)> = match links {
            Some(links) => links
                .iter()
                .map(|(from, to)| Ok((index(from)?, index(to)?)))
                .collect::<Result<_, Error>>()?,
            None => (0..names.len())
                .flat_map(|from| (from + 1..names.len()).map(move |to| (from, to)))
                .collect(),
        };
        let mut cluster = Cluster {
            peers: Vec::with_capacity(names.len()),
        };
        for name in names {
            let mut builder = Peer::builder(PeerId::from_name(&name)).listen("127.0.0.1:0");
            if let Some(configure) = &configure {
                builder = configure(&name, builder);
            }
            let thread = PeerThread::start_named(format!("peer-{name}"), builder)?;
            cluster.peers.push((name, thread));
        }
        let jobs: Vec<(PeerHandle, PeerHandle)> = pairs
            .into_iter()
            .map(|(from, to)| {
                (
                    cluster.peers[from].1.handle().clone(),
                    cluster.peers[to].1.handle().clone(),
                )
            })
            .collect();
        // Connecting needs an actix system; this one lives on a short thread of its own, so
        // that `start` also works inside a caller's actix system.
        std::thread::scope(|scope| {
            scope
                .spawn(|| actix_rt::System::new().block_on(open_links(jobs)))
                .join()
                .unwrap_or(Err(Error::Stopped))
        })?;
        Ok(cluster)
    }
}

async fn open_links(jobs: Vec<(PeerHandle, PeerHandle)>) -> Result<(), Error> {
    for (from, to) in jobs {
        let url = to
            .url()
            .ok_or(Error::Config("a cluster peer does not listen"))?;
        from.connect(&url).await?;
        if let Err(error) = to.wait_for(from.id(), LINK_TIMEOUT).await {
            return Err(Error::Connect {
                url,
                reason: error.to_string(),
                status: None,
            });
        }
    }
    Ok(())
}
