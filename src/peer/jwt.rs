//! JWT auth for any route of a user's actix-web `App`: [`JwtMiddleware`] verifies the bearer
//! token before the handler runs, and [`Authenticated`] hands the verified principal to
//! handlers.

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::bearer::{Refusal, token};
use crate::auth::{AuthError, JwtAuth, Principal};

/// The principal [`JwtMiddleware`] verified, in the request's extensions. Only this module
/// can make one, so nothing else a request carries can pass for it.
#[derive(Clone)]
struct Verified(Arc<Principal>);

/// The principal [`JwtMiddleware`] verified for `request`, if it did.
pub(crate) fn verified_principal(request: &HttpRequest) -> Option<Arc<Principal>> {
    request
        .extensions()
        .get::<Verified>()
        .map(|verified| verified.0.clone())
}

/// An actix-web middleware that requires a valid JWT on every request of the routes it wraps
/// (`App::new().wrap(..)`, a `web::scope(..).wrap(..)`, a resource), after the same rules as a
/// peer's upgrade check: the token in `Authorization: Bearer <jwt>`, or as a
/// `Sec-WebSocket-Protocol` entry `bearer.<jwt>` (browsers cannot set headers on a WebSocket).
///
/// A request without a valid token is refused with HTTP 401 (and `WWW-Authenticate: Bearer`)
/// before its handler runs. A verified request carries its [`Principal`]: handlers take it
/// with the [`Authenticated`] extractor (or as `web::ReqData<Principal>`), and a peer's
/// [`endpoint`](crate::PeerHandle::endpoint) mounted under the middleware takes it as the
/// link's principal instead of verifying the token again; the peer's [`Policy`] (set with
/// [`PeerBuilder::auth`](crate::PeerBuilder::auth)) still decides per block.
///
/// [`Policy`]: crate::auth::Policy
///
/// ```no_run
/// use actix_web::{App, HttpServer, web};
/// use distributed_scope::auth::{JwtAuth, Policy};
/// use distributed_scope::web::{Authenticated, JwtMiddleware};
/// use distributed_scope::{Peer, PeerId};
///
/// async fn me(Authenticated(principal): Authenticated) -> String {
///     principal.subject().to_owned()
/// }
///
/// # #[actix_web::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let auth = JwtAuth::hs256(b"a secret of at least 32 bytes....").with_issuer("issuer");
/// let policy = Policy::deny_all().allow_role("viewer", "app::search*");
/// let peer = Peer::builder(PeerId::from_name("service"))
///     .auth(auth.clone(), policy)
///     .start()
///     .await?;
/// let jwt = JwtMiddleware::new(auth)?;
/// HttpServer::new(move || {
///     App::new()
///         .wrap(jwt.clone())
///         .route("/me", web::get().to(me))   // 401 without a token
///         .service(peer.endpoint("/scope"))  // links carry the middleware's principal
/// })
/// .bind("127.0.0.1:8080")?
/// .run()
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwtMiddleware {
    auth: Arc<JwtAuth>,
}

impl std::fmt::Debug for JwtMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtMiddleware").finish_non_exhaustive()
    }
}

impl JwtMiddleware {
    /// A middleware verifying tokens with `auth`.
    ///
    /// # Errors
    ///
    /// What [`JwtAuth::check`] reports: an HS256 secret under 32 bytes, a missing crypto
    /// backend.
    pub fn new(auth: JwtAuth) -> Result<Self, AuthError> {
        auth.check()?;
        Ok(Self {
            auth: Arc::new(auth),
        })
    }
}

impl<S, B> Transform<S, ServiceRequest> for JwtMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = JwtMiddlewareService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(JwtMiddlewareService {
            service: Rc::new(service),
            auth: self.auth.clone(),
        }))
    }
}

/// The service [`JwtMiddleware`] wraps around the inner one.
pub struct JwtMiddlewareService<S> {
    service: Rc<S>,
    auth: Arc<JwtAuth>,
}

impl<S> std::fmt::Debug for JwtMiddlewareService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtMiddlewareService")
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for JwtMiddlewareService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, actix_web::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let verified = token(request.request())
            .ok_or(AuthError::MissingToken)
            .and_then(|token| super::bearer::verify(&self.auth, token));
        match verified {
            Ok(principal) => {
                tracing::debug!(
                    target: "distributed_scope::auth",
                    subject = principal.subject(),
                    path = request.path(),
                    "request authenticated"
                );
                let mut extensions = request.extensions_mut();
                extensions.insert(principal.clone());
                extensions.insert(Verified(Arc::new(principal)));
                drop(extensions);
                let service = self.service.clone();
                Box::pin(async move {
                    service
                        .call(request)
                        .await
                        .map(ServiceResponse::map_into_left_body)
                })
            }
            Err(error) => {
                let refusal = Refusal::Token(error);
                tracing::info!(
                    target: "distributed_scope::auth",
                    remote = request.peer_addr().map(|addr| addr.to_string()),
                    path = request.path(),
                    reason = %refusal,
                    "request refused"
                );
                let response = request.into_response(refusal.response());
                Box::pin(ready(Ok(response.map_into_right_body())))
            }
        }
    }
}

/// The principal [`JwtMiddleware`] verified for this request, as an extractor:
/// `async fn handler(Authenticated(principal): Authenticated)`.
///
/// A handler outside the middleware that asks for it gets HTTP 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub Principal);

impl std::ops::Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            verified_principal(request)
                .map(|principal| Self(principal.as_ref().clone()))
                .ok_or_else(|| Refusal::Token(AuthError::MissingToken).into()),
        )
    }
}
