//! [`PeerMiddleware`]: actix-web handlers run with a peer current, so they await blocks
//! directly.

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use futures_util::future::LocalBoxFuture;

use super::shared::Shared;
use crate::scope::Scope;

/// An actix-web middleware that makes a peer current while each request is handled, so that
/// handlers (and extractors, and inner middleware) await `remote!` blocks and `.on(peer)`
/// calls directly, without [`PeerHandle::run`](crate::PeerHandle::run). Made by
/// [`PeerHandle::middleware`](crate::PeerHandle::middleware).
///
/// Blocks called from a request run with this peer as their caller and no deadline other
/// than their own. Under [`JwtMiddleware`](crate::web::JwtMiddleware) (wrapped outside this
/// one: `.wrap(peer.middleware()).wrap(jwt)`), the principal the JWT middleware verified is the
/// principal of the calls the handler makes to this peer itself.
///
/// ```no_run
/// use actix_web::{App, HttpServer, web};
/// use distributed_scope::{Peer, PeerId, RemoteError, remote};
///
/// async fn double(x: web::Path<u64>) -> actix_web::Result<String> {
///     let x = x.into_inner();
///     let server = PeerId::from_name("server");
///     let doubled = remote!(server, [x: u64] -> u64 { x * 2 })
///         .await
///         .map_err(actix_web::error::ErrorBadGateway)?;
///     Ok(doubled.to_string())
/// }
///
/// # #[actix_web::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let peer = Peer::builder(PeerId::from_name("frontend")).start().await?;
/// peer.connect("ws://server.internal:7000/").await?;
/// HttpServer::new(move || {
///     App::new()
///         .wrap(peer.middleware())
///         .route("/double/{x}", web::get().to(double))
/// })
/// .bind("127.0.0.1:8080")?
/// .run()
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PeerMiddleware {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PeerMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerMiddleware")
            .field("peer", &self.shared.id)
            .finish()
    }
}

impl PeerMiddleware {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S, B> Transform<S, ServiceRequest> for PeerMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = PeerMiddlewareService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(PeerMiddlewareService {
            service: Rc::new(service),
            shared: self.shared.clone(),
        }))
    }
}

/// The service [`PeerMiddleware`] wraps around the inner one.
pub struct PeerMiddlewareService<S> {
    service: Rc<S>,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for PeerMiddlewareService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerMiddlewareService")
            .field("peer", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for PeerMiddlewareService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<B>, actix_web::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        #[cfg(feature = "auth")]
        let principal = super::jwt::verified_principal(request.request());
        let scope = Scope::new(
            self.shared.clone(),
            self.shared.id,
            #[cfg(feature = "auth")]
            principal,
            None,
        );
        let service = self.service.clone();
        // The inner `call` runs inside the scope too: some services do their work there
        // rather than in the future they return.
        Box::pin(scope.enter(async move { service.call(request).await }))
    }
}
