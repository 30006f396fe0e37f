//! Stopping a peer embedded in a user's `HttpServer` before the server: the process's stop
//! signals, and the future `HttpServer::shutdown_signal` takes.

use std::pin::pin;

use futures_util::future::{Either, select};

/// The stop signals a server listens to: SIGTERM and SIGINT on Unix, Ctrl-C elsewhere.
/// Registered when made, so that a signal arriving before the first poll is not missed.
pub(super) struct StopSignals {
    #[cfg(unix)]
    terminate: Option<actix_rt::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<actix_rt::signal::unix::Signal>,
}

impl StopSignals {
    pub(super) fn listen() -> Self {
        #[cfg(unix)]
        {
            use actix_rt::signal::unix::{SignalKind, signal};
            let register = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(signal = name, %error, "cannot listen to this signal");
                    None
                }
            };
            Self {
                terminate: register(SignalKind::terminate(), "SIGTERM"),
                interrupt: register(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Completes with the name of the first signal that arrives.
    pub(super) async fn recv(mut self) -> &'static str {
        #[cfg(unix)]
        {
            let terminate = wait(self.terminate.as_mut(), "SIGTERM");
            let interrupt = wait(self.interrupt.as_mut(), "SIGINT");
            match select(pin!(terminate), pin!(interrupt)).await {
                Either::Left((name, _)) | Either::Right((name, _)) => name,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            match actix_rt::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(error) => {
                    tracing::warn!(%error, "cannot listen to Ctrl-C");
                    std::future::pending().await
                }
            }
        }
    }
}

/// Waits for `signal`, forever if it could not be registered (or its stream ended).
#[cfg(unix)]
async fn wait(
    signal: Option<&mut actix_rt::signal::unix::Signal>,
    name: &'static str,
) -> &'static str {
    if let Some(signal) = signal
        && signal.recv().await.is_some()
    {
        return name;
    }
    std::future::pending().await
}
