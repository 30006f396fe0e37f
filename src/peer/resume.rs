//! Session resume on a native peer: the links of this thread that wait to be resumed, and
//! the resume request a connecting side presents at the upgrade.
//!
//! The link protocol's part (numbered frames, acknowledgements, the replay buffer) is the
//! engine's (`link/session.rs`). What is here is where a new connection finds its link: an
//! accepting link registers its session on the thread that owns it; an upgrade carrying
//! `ds-resume: <id>.<secret>.<received>` (or, from a browser, which cannot set headers, the
//! `Sec-WebSocket-Protocol` entry `resume.<id>.<secret>.<received>`) is checked against it:
//! the secret must be the session's and, with auth, the new connection's credentials must
//! name the same principal. The socket is then handed to the link's actor, which carries on
//! with it. A session lives on the worker thread that accepted its link: a resume that
//! reaches another worker is answered 409 and tried again (workers take connections in
//! turn; with the default of one worker this never happens).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::PoisonError;

use actix::{Message, Recipient};
use actix_web::HttpRequest;
use actix_web::http::header;

use super::shared::Shared;
use crate::PeerId;
use crate::transport::Socket;
use crate::wire::SessionKeys;

/// The header of a native resume request.
pub(crate) const RESUME_HEADER: &str = "ds-resume";

/// The `Sec-WebSocket-Protocol` a browser offers beside its token or resume request, and
/// the one an accepting peer answers with.
pub(crate) const SUBPROTOCOL: &str = "distributed-scope";

/// The `Sec-WebSocket-Protocol` prefix of a browser's resume request.
pub(crate) const RESUME_SUBPROTOCOL: &str = "resume.";

/// A resume request: the session, its secret, and the numbered frames the connecting side
/// received.
#[derive(Clone, Copy)]
pub(crate) struct ResumeRequest {
    pub(crate) id: u128,
    pub(crate) secret: u128,
    pub(crate) received: u64,
}

impl std::fmt::Debug for ResumeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeRequest")
            .field("id", &format_args!("{:032x}", self.id))
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl ResumeRequest {
    /// `<id>.<secret>.<received>`: two 32-digit hex numbers and a decimal count.
    pub(crate) fn encode(keys: SessionKeys, received: u64) -> String {
        format!("{:032x}.{:032x}.{received}", keys.id, keys.secret)
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let (id, secret, received) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.len() != 32 || secret.len() != 32 {
            return None;
        }
        Some(Self {
            id: u128::from_str_radix(id, 16).ok()?,
            secret: u128::from_str_radix(secret, 16).ok()?,
            received: received.parse().ok()?,
        })
    }

    /// The resume request of an upgrade, if it carries one; `Err` if it carries a malformed
    /// one.
    pub(crate) fn of(request: &HttpRequest) -> Result<Option<Self>, ()> {
        let headers = request.headers();
        let text = match headers.get(RESUME_HEADER) {
            Some(value) => value.to_str().ok(),
            None => headers
                .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .find_map(|protocol| protocol.strip_prefix(RESUME_SUBPROTOCOL)),
        };
        match text {
            None => Ok(None),
            Some(text) => Self::parse(text).map(Some).ok_or(()),
        }
    }
}

/// A link of this thread that may be resumed.
struct Entry {
    secret: u128,
    /// The principal the link was admitted with (its subject), if any.
    subject: Option<String>,
    remote: PeerId,
    /// Where the upgrade puts the new socket for the link's actor.
    socket: Slot,
    link: Recipient<Adopt>,
}

thread_local! {
    static SESSIONS: RefCell<HashMap<u128, Entry>> = RefCell::new(HashMap::new());
}

/// The upgrade of a resume request put a new socket in the link's [`Slot`]: the link carries
/// on with it; the remote received `received` numbered frames.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Adopt {
    pub(crate) received: u64,
}

/// Where the upgrade of a resume puts the new socket for the link's actor.
pub(crate) type Slot = Rc<RefCell<Option<Socket>>>;

/// Registers an accepting link's session; the returned slot receives the socket of a resume.
pub(crate) fn register(
    shared: &Shared,
    keys: SessionKeys,
    subject: Option<String>,
    remote: PeerId,
    link: Recipient<Adopt>,
) -> Slot {
    shared
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(keys.id);
    let socket = Rc::new(RefCell::new(None));
    SESSIONS.with(|sessions| {
        sessions.borrow_mut().insert(
            keys.id,
            Entry {
                secret: keys.secret,
                subject,
                remote,
                socket: socket.clone(),
                link,
            },
        );
    });
    socket
}

/// The link is over: its session can no longer be resumed.
pub(crate) fn unregister(shared: &Shared, id: u128) {
    SESSIONS.with(|sessions| sessions.borrow_mut().remove(&id));
    shared
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
}

/// Why a resume request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The session is held by another worker thread of this peer: try again.
    Elsewhere,
    /// No such session here (over, or never was): the link cannot be resumed.
    Unknown,
    /// The secret or the credentials are not the session's.
    Forbidden,
}

/// The link a resume request claims, if the request may resume it: its slot for the new
/// socket and its actor.
pub(crate) fn claim(
    shared: &Shared,
    request: &ResumeRequest,
    subject: Option<&str>,
) -> Result<(Slot, Recipient<Adopt>, PeerId), Refusal> {
    SESSIONS.with(|sessions| {
        let sessions = sessions.borrow();
        let Some(entry) = sessions.get(&request.id) else {
            let elsewhere = shared
                .sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&request.id);
            return Err(if elsewhere {
                Refusal::Elsewhere
            } else {
                Refusal::Unknown
            });
        };
        let keys = SessionKeys {
            id: request.id,
            secret: entry.secret,
        };
        if !keys.admits(request.secret) || entry.subject.as_deref() != subject {
            return Err(Refusal::Forbidden);
        }
        Ok((entry.socket.clone(), entry.link.clone(), entry.remote))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_requests_round_trip_and_malformed_ones_are_refused() {
        let keys = SessionKeys::new();
        let text = ResumeRequest::encode(keys, 42);
        let parsed = ResumeRequest::parse(&text).unwrap();
        assert_eq!(
            (parsed.id, parsed.secret, parsed.received),
            (keys.id, keys.secret, 42)
        );
        for bad in [
            "",
            "1.2.3",
            &format!("{text}.4"),
            &text.replace('.', ":"),
            "x".repeat(80).as_str(),
        ] {
            assert!(ResumeRequest::parse(bad).is_none(), "{bad}");
        }
        assert!(!format!("{parsed:?}").contains(&format!("{:032x}", keys.secret)));
    }
}
