//! How links start: the upgrade handler of an accepting peer (auth, origin, peer-wide link
//! limits, then the WebSocket) and the dial of a connecting one.

use std::sync::Arc;

use actix::Recipient;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_channel::oneshot;

use super::LinkDown;
use super::admission::{Full, Ticket};
use super::connection::{Connection, Launch, Redial};
use super::resume::{self, Adopt, Refusal, ResumeRequest};
use super::shared::Direction;
use super::shared::Shared;
use crate::PeerId;
use crate::error::{Error, HandshakeError};
use crate::transport;

/// The upgrade handler: `GET /` on a listening peer, or the route of
/// [`PeerHandle::endpoint`](crate::PeerHandle::endpoint).
pub(crate) async fn accept(
    request: HttpRequest,
    body: web::Payload,
    shared: web::Data<Arc<Shared>>,
) -> actix_web::Result<HttpResponse> {
    // First: a page the peer does not know learns nothing else (not even whether it needs a
    // token), and nothing is spent on it.
    if !shared.origins.admits(&request) {
        return Ok(HttpResponse::Forbidden().finish());
    }
    #[cfg(feature = "auth")]
    let link_auth = match shared.guard.admit(&request) {
        Ok(link_auth) => link_auth,
        Err(refusal) => return Ok(refusal.response()),
    };
    match ResumeRequest::of(&request) {
        Ok(None) => {}
        Ok(Some(resume)) => {
            #[cfg(feature = "auth")]
            let subject = link_auth
                .principal()
                .map(|principal| principal.subject().to_owned());
            #[cfg(not(feature = "auth"))]
            let subject: Option<String> = None;
            return resume_link(&request, body, &shared, &resume, subject.as_deref()).await;
        }
        Err(()) => return Ok(HttpResponse::BadRequest().body("malformed resume request")),
    }
    let ip = request.peer_addr().map(|addr| addr.ip());
    let ticket = match shared.admission.admit(ip) {
        Ok(ticket) => ticket,
        Err(full) => {
            tracing::warn!(?ip, ?full, "link refused: peer-wide link limit reached");
            let reason = match full {
                Full::Handshakes => "too many handshakes in progress",
                Full::Address => "too many links from this address",
            };
            // Closed after the answer, so that refused connections give their files back.
            return Ok(HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .force_close()
                .body(reason));
        }
    };
    let protocols = [resume::SUBPROTOCOL];
    let (response, socket) =
        transport::accept(&request, body, &protocols, shared.socket_limits()).await?;
    let remote = request
        .peer_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_default();
    Connection::launch(Launch {
        shared: shared.get_ref().clone(),
        direction: Direction::Inbound { remote },
        #[cfg(feature = "auth")]
        link_auth,
        socket,
        ready: None,
        expect: None,
        on_down: None,
        ticket,
        redial: None,
    });
    Ok(response)
}

/// An upgrade that resumes a link of this thread: checked against the link's session (its
/// secret and, with auth, the principal it was admitted with), then handed to the link.
async fn resume_link(
    request: &HttpRequest,
    body: web::Payload,
    shared: &Shared,
    resume: &ResumeRequest,
    subject: Option<&str>,
) -> actix_web::Result<HttpResponse> {
    let (slot, link, remote) = match resume::claim(shared, resume, subject) {
        Ok(claimed) => claimed,
        Err(Refusal::Elsewhere) => {
            tracing::debug!("resume of a session another worker holds");
            return Ok(HttpResponse::Conflict()
                .force_close()
                .body("the session is held by another worker: try again"));
        }
        Err(Refusal::Unknown) => {
            return Ok(HttpResponse::NotFound()
                .force_close()
                .body("no such session"));
        }
        Err(Refusal::Forbidden) => {
            tracing::warn!(
                ip = ?request.peer_addr().map(|addr| addr.ip()),
                "resume refused: not the session's secret or credentials"
            );
            return Ok(HttpResponse::Forbidden().force_close().finish());
        }
    };
    let protocols = [resume::SUBPROTOCOL];
    let (response, socket) =
        transport::accept(request, body, &protocols, shared.socket_limits()).await?;
    tracing::debug!(peer = %remote.label(), "resuming a link on a new connection");
    *slot.borrow_mut() = Some(socket);
    link.do_send(Adopt {
        received: resume.received,
    });
    Ok(response)
}

/// Checks that `url` is a `ws://` or `wss://` URL, for operations that dial later.
pub(crate) fn check_url(url: &str) -> Result<(), Error> {
    match url_problem(url) {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        }),
    }
}

/// What makes `url` no `ws://` or `wss://` URL, if anything.
pub(crate) fn url_problem(url: &str) -> Option<&'static str> {
    match url.parse::<actix_web::http::Uri>() {
        Err(_not_a_uri) => Some("not a uri"),
        Ok(uri) if matches!(uri.scheme_str(), Some("ws" | "wss")) => None,
        Ok(_) => Some("the scheme must be ws:// or wss://"),
    }
}

/// The upgrade handler of [`PeerHandle::endpoint`](crate::PeerHandle::endpoint): as
/// [`accept`], warning once if links come in without auth (a listening peer warns at start).
pub(crate) async fn accept_endpoint(
    request: HttpRequest,
    body: web::Payload,
    shared: web::Data<Arc<Shared>>,
) -> actix_web::Result<HttpResponse> {
    #[cfg(feature = "auth")]
    let open = !shared.guard.has_auth() && super::jwt::verified_principal(&request).is_none();
    #[cfg(not(feature = "auth"))]
    let open = true;
    if open && shared.first_open_endpoint() {
        tracing::warn!(
            peer = %shared.id.label(),
            path = request.path(),
            "peer endpoint without auth (no PeerBuilder::auth, no JwtMiddleware): any client may run any block, and peer ids are self-asserted (any client may claim any id not linked yet)"
        );
    }
    accept(request, body, shared).await
}

/// Opens a link to `url` on the current thread and waits for its handshake.
pub(crate) async fn dial(
    shared: Arc<Shared>,
    url: String,
    token: Option<String>,
    expect: super::Requirement,
    tls: Arc<rustls::ClientConfig>,
    on_down: Recipient<LinkDown>,
) -> Result<PeerId, Error> {
    let socket = transport::connect(
        &url,
        token.as_deref(),
        None,
        tls.clone(),
        shared.config.connect_timeout,
        shared.socket_limits(),
    )
    .await?;
    let (ready, handshake) = oneshot::channel();
    Connection::launch(Launch {
        shared,
        direction: Direction::Outbound { url: url.clone() },
        #[cfg(feature = "auth")]
        link_auth: super::guard::LinkAuth::Outbound,
        socket,
        ready: Some(ready),
        expect,
        on_down: Some(on_down),
        ticket: Ticket::outbound(),
        redial: Some(Redial { token, tls }),
    });
    handshake.await.unwrap_or(Err(Error::Handshake {
        url,
        reason: HandshakeError::Closed,
    }))
}
