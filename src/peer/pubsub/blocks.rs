//! The blocks pub-sub travels over: `subscribe`, `unsubscribe` and `deliver`, this crate's
//! own, registered apart from the application's (not listed by [`blocks`](crate::blocks)).
//!
//! They are authorized by topic rather than by block name: the link's policy is asked about
//! `topic:<topic>` inside each body, once the topic is known.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Hub;
use crate::block::{Block, BlockEntry, BlockInfo};
use crate::scope::Scope;
use crate::{PeerId, RemoteError};

const MODULE: &str = "distributed_scope::pubsub";
const FILE: &str = file!();

/// Asks the peer it runs on to send the caller the publications on `topics`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Subscribe {
    pub(crate) topics: Vec<String>,
    /// These topics and no others (a link that just came up: forget an older link's).
    pub(crate) replace: bool,
}

/// Asks the peer it runs on to stop sending the caller the publications on `topics`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Unsubscribe {
    pub(crate) topics: Vec<String>,
}

/// A publication on `topic` for the subscriptions of the peer it runs on.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Deliver {
    pub(crate) topic: String,
    pub(crate) payload: crate::Bytes,
}

/// The registry entries of the pub-sub blocks.
pub(crate) static ENTRIES: [BlockEntry; 3] = [
    BlockEntry::of::<Subscribe>(),
    BlockEntry::of::<Unsubscribe>(),
    BlockEntry::of::<Deliver>(),
];

crate::__private::inventory::submit! { crate::block::InternalBlocks(&ENTRIES) }

/// What a pub-sub body needs of the call it runs in: the peer's hub, the caller, and the
/// check of a topic against the caller's principal.
struct Call {
    hub: Arc<Hub>,
    caller: PeerId,
    #[cfg(feature = "auth")]
    principal: Option<crate::auth::Principal>,
}

impl Call {
    fn current(block: &str) -> Result<Self, RemoteError> {
        let scope = Scope::try_current().ok_or_else(|| RemoteError::NoCurrentPeer {
            block: Some(block.to_owned()),
        })?;
        // Every native peer stores its hub where `Scope::data` finds it.
        let hub = scope
            .data::<Hub>()
            .ok_or_else(|| RemoteError::UnknownBlock {
                peer: None,
                block: block.to_owned(),
            })?;
        Ok(Self {
            hub,
            caller: scope.caller(),
            // The principal of the caller's link: its verified token, or on a link this
            // peer opened the identity the remote proved.
            #[cfg(feature = "auth")]
            principal: scope.principal().or_else(|| scope.origin()),
        })
    }

    fn authorize(&self, topic: &str) -> Result<(), RemoteError> {
        #[cfg(feature = "auth")]
        return self
            .hub
            .authorize(self.principal.as_ref(), self.caller, topic);
        #[cfg(not(feature = "auth"))]
        {
            let _ = topic;
            Ok(())
        }
    }
}

/// The parts of [`Block`] the internal blocks have alike: the message is its own captures,
/// and the result travels as it is.
macro_rules! travels_as_itself {
    () => {
        fn into_captures(self) -> Self {
            self
        }

        fn to_wire(output: Self::Output) -> Self::Wire {
            output
        }

        fn from_wire(wire: Self::Wire) -> Self::Output {
            wire
        }
    };
}

impl Block for Subscribe {
    type Captures = Self;
    /// One outcome per topic, in order: `None` if subscribed.
    type Output = Vec<Option<RemoteError>>;
    type Wire = Self::Output;
    const INFO: BlockInfo = BlockInfo::new(
        MODULE,
        0x7375_6273_6372_6962,
        "distributed_scope::pubsub::subscribe",
        "topics: Vec<String>, replace: bool",
        "Vec<Option<RemoteError>>",
        FILE,
        line!(),
    );

    travels_as_itself!();

    fn run(captures: Self) -> impl Future<Output = Result<Self::Output, RemoteError>> + 'static {
        let outcome = Call::current(Self::INFO.name()).and_then(|call| {
            call.hub
                .remote_subscribe(call.caller, captures.topics, captures.replace, |topic| {
                    call.authorize(topic)
                })
        });
        std::future::ready(outcome)
    }
}

impl Block for Unsubscribe {
    type Captures = Self;
    type Output = ();
    type Wire = ();
    const INFO: BlockInfo = BlockInfo::new(
        MODULE,
        0x756e_7375_6273_6372,
        "distributed_scope::pubsub::unsubscribe",
        "topics: Vec<String>",
        "()",
        FILE,
        line!(),
    );

    travels_as_itself!();

    fn run(captures: Self) -> impl Future<Output = Result<(), RemoteError>> + 'static {
        let outcome = Call::current(Self::INFO.name())
            .map(|call| call.hub.remote_unsubscribe(call.caller, &captures.topics));
        std::future::ready(outcome)
    }
}

impl Block for Deliver {
    type Captures = Self;
    type Output = ();
    type Wire = ();
    const INFO: BlockInfo = BlockInfo::new(
        MODULE,
        0x6465_6c69_7665_7231,
        "distributed_scope::pubsub::deliver",
        "topic: String, payload: Bytes",
        "()",
        FILE,
        line!(),
    );

    travels_as_itself!();

    fn run(captures: Self) -> impl Future<Output = Result<(), RemoteError>> + 'static {
        let outcome = Call::current(Self::INFO.name()).and_then(|call| {
            // A publication is accepted from a peer only as a subscription to its topic
            // would be, and only for a topic subscribed here: nothing is relayed further.
            super::check_topic(&captures.topic)?;
            call.authorize(&captures.topic)?;
            call.hub
                .deliver_local(&captures.topic, &captures.payload.into_inner(), true);
            Ok(())
        });
        std::future::ready(outcome)
    }
}
