//! [`RemoteAll`]: the calls a `remote_all!` block evaluates to, one per target peer.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{LocalBoxFuture, join_all};
use futures_util::stream::FuturesUnordered;

use crate::block::Block;
use crate::call::{Captures, execute_captures};
use crate::scope::Scope;
use crate::{PeerId, RemoteError, wire};

/// One call per target, made at the first poll (when the options are final).
type Start<T> = Box<dyn FnOnce(&[PeerId], Option<Duration>, bool) -> Vec<Call<T>>>;

/// The call of one target.
type Call<T> = LocalBoxFuture<'static, Result<T, RemoteError>>;

/// The same block run on several peers at once: what `remote_all!` evaluates to.
///
/// Awaiting it runs the block on every target concurrently and gives one result per target,
/// in the order of the targets: `Vec<(PeerId, Result<T, RemoteError>)>`. The captures are
/// encoded once and the same bytes sent to each peer. [`RemoteAll::first`] and
/// [`RemoteAll::quorum`] instead resolve as soon as enough peers succeeded, or as soon as
/// that has become impossible, and cancel the calls still running.
///
/// Like a [`RemoteCall`](crate::RemoteCall), it is lazy (nothing is sent before it is first
/// polled), it must be polled inside a peer, a target that is this peer runs the block
/// locally, and dropping it cancels the calls still running on their callees.
#[must_use = "remote calls do nothing unless awaited"]
pub struct RemoteAll<T> {
    targets: Vec<PeerId>,
    timeout: Option<Duration>,
    wait_for_ready: bool,
    start: Start<T>,
}

impl<T: 'static> RemoteAll<T> {
    #[doc(hidden)]
    pub fn new<B: Block<Output = T>>(targets: Vec<PeerId>, block: B) -> Self {
        Self {
            targets,
            timeout: None,
            wait_for_ready: false,
            start: Box::new(move |targets, timeout, wait_for_ready| {
                calls(targets, timeout, wait_for_ready, block)
            }),
        }
    }

    /// Sets the deadline of each peer's call, counted from the first poll: a peer that has
    /// not answered by then fails with [`RemoteError::Timeout`], on its own, while the
    /// others' results stand. A shorter deadline of the enclosing block still applies.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Waits for each target's link until the deadline even if the target is known down, as
    /// [`RemoteCall::wait_for_ready`](crate::RemoteCall::wait_for_ready) does for one call.
    pub fn wait_for_ready(mut self) -> Self {
        self.wait_for_ready = true;
        self
    }

    /// The targets, in the order the results come in.
    pub fn targets(&self) -> &[PeerId] {
        &self.targets
    }

    /// Resolves as soon as `count` peers succeeded, with their results in the order of the
    /// targets, and cancels the calls still running.
    ///
    /// # Errors
    ///
    /// [`Unreached`] as soon as `count` successes have become impossible (too many peers
    /// failed, or there are fewer than `count` targets), with each failure; the calls still
    /// running are cancelled.
    pub fn first(self, count: usize) -> impl Future<Output = Result<Vec<(PeerId, T)>, Unreached>> {
        let Self {
            targets,
            timeout,
            wait_for_ready,
            start,
        } = self;
        async move {
            let unreached = |errors| Unreached {
                needed: count,
                targets: targets.len(),
                errors: in_order(errors),
            };
            if count > targets.len() {
                return Err(unreached(Vec::new()));
            }
            if count == 0 {
                return Ok(Vec::new());
            }
            let mut running: FuturesUnordered<_> = start(&targets, timeout, wait_for_ready)
                .into_iter()
                .zip(&targets)
                .enumerate()
                .map(|(at, (call, &peer))| async move { (at, peer, call.await) })
                .collect();
            let (mut successes, mut errors) = (Vec::with_capacity(count), Vec::new());
            // Returning drops `running`, which cancels the calls that are left.
            while let Some((at, peer, result)) = running.next().await {
                match result {
                    Ok(value) => successes.push((at, peer, value)),
                    Err(error) => errors.push((at, peer, error)),
                }
                if successes.len() == count {
                    return Ok(in_order(successes));
                }
                if successes.len() + running.len() < count {
                    return Err(unreached(errors));
                }
            }
            // Not reached: the last call to end makes one of the two above true.
            Err(unreached(errors))
        }
    }

    /// [`RemoteAll::first`] of a majority: more than half of the targets.
    ///
    /// # Errors
    ///
    /// [`Unreached`] as soon as a majority cannot succeed any more.
    pub fn quorum(self) -> impl Future<Output = Result<Vec<(PeerId, T)>, Unreached>> {
        let majority = self.targets.len() / 2 + 1;
        self.first(majority)
    }
}

impl<T: 'static> IntoFuture for RemoteAll<T> {
    type Output = Vec<(PeerId, Result<T, RemoteError>)>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output>>>;

    fn into_future(self) -> Self::IntoFuture {
        let Self {
            targets,
            timeout,
            wait_for_ready,
            start,
        } = self;
        Box::pin(async move {
            let results = join_all(start(&targets, timeout, wait_for_ready)).await;
            targets.into_iter().zip(results).collect()
        })
    }
}

impl<T> fmt::Debug for RemoteAll<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAll")
            .field("targets", &self.targets)
            .field("timeout", &self.timeout)
            .field("wait_for_ready", &self.wait_for_ready)
            .finish_non_exhaustive()
    }
}

/// Results tagged with the index of their target, in the order of the targets.
fn in_order<V>(mut tagged: Vec<(usize, PeerId, V)>) -> Vec<(PeerId, V)> {
    tagged.sort_by_key(|(at, ..)| *at);
    tagged
        .into_iter()
        .map(|(_, peer, value)| (peer, value))
        .collect()
}

/// One call of `B` per target. The captures are encoded once and each remote target gets a
/// copy of the bytes; the first target that is this peer (when it does not serialize local
/// calls) takes the value itself, as `remote!` would.
fn calls<B: Block>(
    targets: &[PeerId],
    timeout: Option<Duration>,
    wait_for_ready: bool,
    block: B,
) -> Vec<Call<B::Output>> {
    if targets.is_empty() {
        return Vec::new();
    }
    let captures = block.into_captures();
    let here = Scope::try_current()
        .filter(|scope| !scope.runtime().serialize_local())
        .map(|scope| scope.peer_id());
    let local_at = here.and_then(|here| targets.iter().position(|target| *target == here));
    let encoded = wire::Payload::encode(&captures, wire::CALL_ROOM + B::INFO.name().len());
    let mut value = Some(captures);
    targets
        .iter()
        .enumerate()
        .map(|(at, &target)| {
            let captures = match value.take_if(|_| Some(at) == local_at) {
                Some(value) => Captures::Value(value),
                None => Captures::Encoded(match &encoded {
                    Ok(payload) => Ok(payload.duplicate()),
                    Err(error) => Err(error.clone()),
                }),
            };
            Box::pin(execute_captures::<B>(
                target,
                timeout,
                wait_for_ready,
                captures,
            )) as Call<B::Output>
        })
        .collect()
}

/// Too few peers of a [`RemoteAll::first`] or [`RemoteAll::quorum`] succeeded.
///
/// Returned as soon as the successes needed have become impossible: the calls still running
/// were cancelled, and [`Unreached::errors`] holds why each finished peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{needed} of {targets} peers had to succeed, {} failed",
    errors.len()
)]
#[non_exhaustive]
pub struct Unreached {
    /// How many peers had to succeed.
    pub needed: usize,
    /// How many peers were called.
    pub targets: usize,
    /// Each peer that failed before the call gave up, with its error, in the order of the
    /// targets.
    pub errors: Vec<(PeerId, RemoteError)>,
}
