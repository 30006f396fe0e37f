//! Helpers for tests: peers in their own actix systems on their own threads.

use std::sync::mpsc;
use std::thread::JoinHandle;

use futures_channel::oneshot;

use crate::{Error, PeerBuilder, PeerHandle};

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
        let (started, ready) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("distributed-scope-peer".to_owned())
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
}

impl Drop for PeerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopped = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _panicked = thread.join();
        }
    }
}
