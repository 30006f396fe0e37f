//! Who may open a link and run which block: the upgrade's token check and the
//! per-call authorization, done on the connection's thread before captures are decoded.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::HttpRequest;

use crate::auth::{AuthError, JwtAuth, Policy, Principal};
use crate::error::HandshakeError;
use crate::{PeerId, RemoteError};

use super::bearer::{Refusal, token};

/// The auth configuration of a peer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Guard {
    auth: Option<(JwtAuth, Policy)>,
    /// Per-peer narrowing: `None` denies everything, otherwise the allowed globs.
    peers: HashMap<PeerId, Option<Vec<String>>>,
}

/// What a link is allowed by: the principal verified at its upgrade, or nothing.
#[derive(Debug, Clone)]
pub(crate) enum LinkAuth {
    /// A link this peer opened itself: trusted, narrowed by peer rules.
    Outbound,
    /// A link accepted by a peer without auth: open, narrowed by peer rules.
    Open,
    /// A link accepted with a verified token.
    Verified(Arc<Principal>),
}

impl LinkAuth {
    pub(crate) fn principal(&self) -> Option<Arc<Principal>> {
        match self {
            Self::Verified(principal) => Some(principal.clone()),
            Self::Outbound | Self::Open => None,
        }
    }
}

impl Guard {
    pub(crate) fn set_auth(&mut self, auth: JwtAuth, policy: Policy) {
        self.auth = Some((auth, policy));
    }

    pub(crate) fn allow_peer(&mut self, peer: PeerId, glob: String) {
        // A peer denied outright stays denied.
        if let Some(globs) = self.peers.entry(peer).or_insert_with(|| Some(Vec::new())) {
            globs.push(glob);
        }
    }

    pub(crate) fn deny_peer(&mut self, peer: PeerId) {
        self.peers.insert(peer, None);
    }

    pub(crate) fn has_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// Checks the auth configuration at start (weak secrets, missing crypto backend).
    pub(crate) fn check(&self) -> Result<(), AuthError> {
        self.auth.as_ref().map_or(Ok(()), |(auth, _)| auth.check())
    }

    /// Checks an upgrade request before any WebSocket exists.
    pub(crate) fn admit(&self, request: &HttpRequest) -> Result<LinkAuth, Refusal> {
        // Under `JwtMiddleware` the token was verified already; the policy still decides.
        if let Some(principal) = super::jwt::verified_principal(request) {
            tracing::info!(
                target: "distributed_scope::auth",
                subject = principal.subject(),
                roles = ?principal.roles(),
                "link authenticated by the middleware"
            );
            return Ok(LinkAuth::Verified(principal));
        }
        let Some((auth, _)) = &self.auth else {
            return Ok(LinkAuth::Open);
        };
        let token = token(request).ok_or(Refusal::Token(AuthError::MissingToken));
        match token.and_then(|token| auth.verify(token).map_err(Refusal::Token)) {
            Ok(principal) => {
                tracing::info!(
                    target: "distributed_scope::auth",
                    subject = principal.subject(),
                    roles = ?principal.roles(),
                    "link authenticated"
                );
                Ok(LinkAuth::Verified(Arc::new(principal)))
            }
            Err(refusal) => {
                let remote = request.peer_addr().map(|addr| addr.to_string());
                tracing::info!(
                    target: "distributed_scope::auth",
                    remote,
                    reason = ?refusal,
                    "upgrade refused"
                );
                Err(refusal)
            }
        }
    }

    /// Whether the remote of `link` may claim `peer` in its hello. On a link with a verified
    /// token a named id is bound to it: `PeerId::from_name(subject)`, or a name or UUID in
    /// the token's `peers` claim. Random ids (v4) stay open to any authenticated link, first
    /// come. Without a token ids are self-asserted.
    pub(crate) fn may_claim(link: &LinkAuth, peer: PeerId) -> Result<(), HandshakeError> {
        let LinkAuth::Verified(principal) = link else {
            return Ok(());
        };
        let bound = peer.is_random()
            || peer == PeerId::derive(principal.subject())
            || principal.peers().iter().any(|listed| {
                listed.parse::<PeerId>().ok() == Some(peer) || PeerId::derive(listed) == peer
            });
        if bound {
            Ok(())
        } else {
            tracing::info!(
                target: "distributed_scope::auth",
                peer = %peer,
                subject = principal.subject(),
                "link refused: its token does not allow the peer id it claims"
            );
            Err(HandshakeError::IdNotAllowed(peer))
        }
    }

    /// Authorizes one inbound call by block name, before its captures are decoded.
    pub(crate) fn authorize(
        &self,
        link: &LinkAuth,
        remote: PeerId,
        block: &str,
    ) -> Result<(), RemoteError> {
        let decision = self.decide(link, remote, block);
        let subject = match link {
            LinkAuth::Verified(principal) => principal.subject(),
            LinkAuth::Outbound | LinkAuth::Open => "",
        };
        match &decision {
            Ok(()) => tracing::debug!(
                target: "distributed_scope::auth",
                decision = "allow", block, subject, peer = %remote.label()
            ),
            Err(error) => tracing::info!(
                target: "distributed_scope::auth",
                decision = "deny", block, subject, peer = %remote.label(), %error
            ),
        }
        decision
    }

    fn decide(&self, link: &LinkAuth, remote: PeerId, block: &str) -> Result<(), RemoteError> {
        let forbidden = |subject: String| RemoteError::Forbidden {
            block: block.to_owned(),
            subject,
            peer: None,
        };
        if let Some(rule) = self.peers.get(&remote) {
            let allowed = rule.as_ref().is_some_and(|globs| {
                let subject = remote.to_string();
                let policy = globs.iter().fold(Policy::deny_all(), |policy, glob| {
                    policy.allow_subject(subject.as_str(), glob.as_str())
                });
                policy.allows(
                    &Principal::new(subject.as_str(), Vec::<String>::new()),
                    block,
                )
            });
            if !allowed {
                return Err(forbidden(format!("peer {remote}")));
            }
        }
        match (link, &self.auth) {
            (LinkAuth::Outbound | LinkAuth::Open, None)
            | (LinkAuth::Outbound, _)
            | (LinkAuth::Verified(_), None) => Ok(()),
            // Cannot happen through `admit`, which refuses such upgrades; kept as a guard.
            (LinkAuth::Open, Some(_)) => Err(RemoteError::Unauthenticated {
                peer: None,
                block: Some(block.to_owned()),
            }),
            (LinkAuth::Verified(principal), Some((_, policy))) => {
                if policy.allows(principal, block) {
                    Ok(())
                } else {
                    Err(forbidden(principal.subject().to_owned()))
                }
            }
        }
    }
}
