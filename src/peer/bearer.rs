//! What an HTTP request presents to auth, shared by the peer's upgrade check and the JWT
//! middleware: its bearer token, and the one mapping from a refusal to a response.

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::http::header;

use crate::auth::{AuthError, JwtAuth, Principal};

/// The prefix of the `Sec-WebSocket-Protocol` entry that carries a browser's token
/// (`bearer.<jwt>`), offered beside [`SUBPROTOCOL`](super::resume::SUBPROTOCOL).
const BEARER_SUBPROTOCOL: &str = "bearer.";

/// Why an upgrade (or, under `JwtMiddleware`, a request) was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("bad or missing token")]
    Token(#[source] AuthError),
}

impl actix_web::ResponseError for Refusal {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.response().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.response()
    }
}

impl Refusal {
    /// The one mapping from a refused upgrade to an HTTP response.
    pub(crate) fn response(&self) -> HttpResponse {
        match self {
            Self::Token(AuthError::MissingToken) => HttpResponse::Unauthorized()
                .insert_header((
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"distributed-scope\"",
                ))
                .finish(),
            Self::Token(_) => HttpResponse::Unauthorized()
                .insert_header((
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"distributed-scope\", error=\"invalid_token\"",
                ))
                .finish(),
        }
    }
}

/// Verifies a bearer token: a link's or a request's credentials. Grants (a `root` claim)
/// and proofs of identity (a `nonce` claim) are signed with the same keys but are no
/// credentials: a peer that received one on a hop or in a handshake must not be able to
/// link, or call a route, as the principal it names.
pub(crate) fn verify(auth: &JwtAuth, token: &str) -> Result<Principal, AuthError> {
    let principal = auth.verify(token)?;
    if principal.root().is_some() {
        return Err(AuthError::InvalidClaim { claim: "root" });
    }
    if principal.nonce().is_some() {
        return Err(AuthError::InvalidClaim { claim: "nonce" });
    }
    Ok(principal)
}

/// The token of an upgrade request: `Authorization: Bearer <jwt>`, or a
/// `Sec-WebSocket-Protocol` entry `bearer.<jwt>` (browsers cannot set headers).
pub(crate) fn token(request: &HttpRequest) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return value.to_str().ok()?.strip_prefix("Bearer ");
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find_map(|protocol| protocol.strip_prefix(BEARER_SUBPROTOCOL))
}
