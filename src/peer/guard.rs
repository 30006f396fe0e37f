//! Who may open a link and run which block: the upgrade's token check and the
//! per-call authorization, done on the connection's thread before captures are decoded.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::HttpRequest;

use crate::auth::{AuthError, JwtAuth, Policy, Principal};
use crate::error::HandshakeError;
use crate::runtime::Narrowing;
use crate::{PeerId, RemoteError};

use super::bearer::{Refusal, token};

/// The auth configuration of a peer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Guard {
    auth: Option<(JwtAuth, Policy)>,
    /// Per-peer narrowing: `None` denies everything, otherwise the allowed globs.
    peers: HashMap<PeerId, Option<Vec<String>>>,
    /// What this peer proves to connecting peers in its hello, and signs grants with.
    identity: Option<Identity>,
    /// What the principal that made a root call may have run, on any peer of its chain.
    origin_policy: Option<Policy>,
    /// Grants verified already, so that each is verified once per peer.
    grants: Arc<std::sync::Mutex<HashMap<String, Arc<Principal>>>>,
}

/// A call that arrived, as its authority is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival<'a> {
    /// The caller's grant, not verified yet.
    pub(crate) grant: Option<&'a str>,
    /// The entry point of the caller's scope.
    pub(crate) root: Option<u64>,
    /// The block to run.
    pub(crate) entry: &'a crate::block::BlockInfo,
    /// The time left before the call's deadline: how long a grant signed for it lives.
    pub(crate) ttl: std::time::Duration,
}

/// Grants a peer remembers as verified; past that the memory starts over.
const VERIFIED_GRANTS: usize = 1024;

/// Why a hop's authority was refused.
fn refused_authority(block: &str, why: &str) -> RemoteError {
    RemoteError::Forbidden {
        block: block.to_owned(),
        subject: why.to_owned(),
        peer: None,
    }
}

/// A peer's own identity: the key it signs proofs with, and the principal they name.
#[derive(Debug, Clone)]
struct Identity {
    signer: JwtAuth,
    subject: String,
    roles: Vec<String>,
}

/// How long a proof of identity is valid: it is checked during the handshake it was made
/// for, and bound to that handshake's nonce.
const PROOF_TTL: std::time::Duration = std::time::Duration::from_secs(60);

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

    pub(crate) fn set_identity(&mut self, signer: JwtAuth, subject: String, roles: Vec<String>) {
        self.identity = Some(Identity {
            signer,
            subject,
            roles,
        });
    }

    pub(crate) fn set_origin_policy(&mut self, policy: Policy) {
        self.origin_policy = Some(policy);
    }

    /// A grant of `origin`'s authority for the scope of entry point `root`, signed with this
    /// peer's identity, valid for `ttl`.
    pub(crate) fn grant(
        &self,
        origin: &Principal,
        root: u64,
        narrowing: &Narrowing,
        ttl: std::time::Duration,
    ) -> Option<Arc<str>> {
        let identity = self.identity.as_ref()?;
        let roles: Vec<&str> = origin.roles().iter().map(String::as_str).collect();
        let blocks: Option<Vec<&str>> = narrowing
            .blocks
            .as_ref()
            .map(|blocks| blocks.iter().map(String::as_str).collect());
        let peers: Vec<String> = narrowing
            .peers
            .iter()
            .flatten()
            .map(PeerId::to_string)
            .collect();
        let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
        let root = format!("{root:016x}");
        // At least a second, so that a grant outlives the hop that carries it.
        let ttl = ttl.max(std::time::Duration::from_secs(1));
        match identity.signer.issue_grant(
            origin.subject(),
            &roles,
            &root,
            blocks.as_deref(),
            &peers,
            ttl,
        ) {
            Ok(grant) => Some(grant.into()),
            Err(error) => {
                tracing::warn!(target: "distributed_scope::auth", %error, "cannot sign a grant");
                None
            }
        }
    }

    /// The authority a call runs under: its verified origin and the grant its own hops will
    /// carry. `call` says what arrived, `link` is the link it came in on and `proven` the
    /// principal its remote proved (outbound links); `local` is this peer.
    ///
    /// A grant must verify with this peer's auth, name the caller's root (a grant of
    /// another root, replayed, is refused) and allow `block` if it narrows. Without a grant
    /// an entry point's origin is its link's principal; a nested hop has none, and on an
    /// authenticated inbound link of a peer with auth it is refused: the proof that its root
    /// call was admitted is the grant. With an
    /// origin policy the origin must exist and be allowed `block`. An entry point starts a
    /// new scope: its hops carry a grant for it, signed here if this peer has an identity.
    pub(crate) fn authority(
        &self,
        call: Arrival<'_>,
        link: &LinkAuth,
        proven: Option<Arc<Principal>>,
        local: PeerId,
    ) -> Result<crate::scope::Authority, RemoteError> {
        let Arrival {
            grant,
            root,
            entry,
            ttl,
        } = call;
        let block = entry.name();
        let (origin, narrowed) = match grant {
            Some(grant) => {
                let origin = self.verify_grant(grant, block)?;
                let for_root = origin
                    .root()
                    .and_then(|claimed| u64::from_str_radix(claimed, 16).ok());
                if for_root.is_none() || for_root != root {
                    return Err(refused_authority(block, "a grant of another root call"));
                }
                if let Some(globs) = origin.blocks() {
                    let narrowed = globs.iter().fold(Policy::deny_all(), |policy, glob| {
                        policy.allow_subject(origin.subject(), *glob)
                    });
                    if !narrowed.allows(&origin, block) {
                        return Err(refused_authority(block, "outside its narrowed authority"));
                    }
                }
                let peers: Vec<PeerId> = origin
                    .peers()
                    .iter()
                    .filter_map(|peer| peer.parse().ok())
                    .collect();
                if !origin.peers().is_empty() && !peers.contains(&local) {
                    return Err(refused_authority(block, "outside its narrowed authority"));
                }
                let narrowed = Narrowing {
                    blocks: origin
                        .blocks()
                        .map(|globs| globs.into_iter().map(str::to_owned).collect()),
                    peers: (!origin.peers().is_empty()).then_some(peers),
                    deadline: None,
                };
                (Some(origin), narrowed)
            }
            None if entry.is_entry_point() => (link.principal().or(proven), Narrowing::default()),
            None if self.auth.is_some() && matches!(link, LinkAuth::Verified(_)) => {
                return Err(refused_authority(
                    block,
                    "a hop without a grant of its root call",
                ));
            }
            None => (None, Narrowing::default()),
        };
        if let Some(policy) = &self.origin_policy
            && !crate::block::is_internal(block)
        {
            match &origin {
                Some(origin) if policy.allows(origin, block) => {}
                Some(origin) => return Err(refused_authority(block, origin.subject())),
                None => return Err(refused_authority(block, "a call without authority")),
            }
        }
        let carried = match (&origin, grant) {
            // A hop of the caller's scope: its hops carry the same grant.
            (_, Some(grant)) if !entry.is_entry_point() => Some(Arc::from(grant)),
            (Some(origin), _) => self.grant(origin, entry.id(), &narrowed, ttl),
            (None, _) => None,
        };
        Ok((origin, carried))
    }

    /// Verifies a grant once per peer: later hops with the same grant find it remembered
    /// (until it expires).
    fn verify_grant(&self, grant: &str, block: &str) -> Result<Arc<Principal>, RemoteError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut verified = self
            .grants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(origin) = verified.get(grant)
            && origin.expires_at() > now
        {
            return Ok(origin.clone());
        }
        let Some((auth, _)) = &self.auth else {
            return Err(refused_authority(block, "a grant this peer cannot verify"));
        };
        match auth.verify(grant) {
            Ok(origin) if origin.root().is_some() => {
                let origin = Arc::new(origin);
                if verified.len() >= VERIFIED_GRANTS {
                    verified.clear();
                }
                verified.insert(grant.to_owned(), origin.clone());
                Ok(origin)
            }
            Ok(_) => Err(refused_authority(block, "a token that is no grant")),
            Err(error) => {
                tracing::info!(target: "distributed_scope::auth", %error, block, "grant refused");
                Err(refused_authority(block, "an invalid grant"))
            }
        }
    }

    pub(crate) fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// This peer's proof of identity for the handshake whose connecting side sent `nonce`:
    /// a short-lived token naming its subject. It binds the id `PeerId::from_name(subject)`
    /// only: a peer does not get to list ids for itself.
    pub(crate) fn prove(&self, nonce: u128) -> Option<String> {
        let identity = self.identity.as_ref()?;
        let roles: Vec<&str> = identity.roles.iter().map(String::as_str).collect();
        let nonce = format!("{nonce:032x}");
        match identity
            .signer
            .issue_proof(&identity.subject, &roles, &[], &nonce, PROOF_TTL)
        {
            Ok(proof) => Some(proof),
            Err(error) => {
                tracing::warn!(target: "distributed_scope::auth", %error, "cannot sign a proof of identity");
                None
            }
        }
    }

    /// Checks the proof of identity of an outbound link's remote against what `expected`
    /// requires: verified by this peer's auth, made for this handshake (`nonce`), binding the
    /// id the remote claims (its subject's id or one its `peers` claim lists; no random-id
    /// shortcut), and naming the required id, subject and role.
    pub(crate) fn check_remote(
        &self,
        expected: &super::Expected,
        peer: PeerId,
        proof: Option<&str>,
        nonce: u128,
    ) -> Result<Arc<Principal>, HandshakeError> {
        let mismatch = |reason: String| {
            tracing::info!(target: "distributed_scope::auth", peer = %peer, reason, "link refused: the remote's identity does not match");
            HandshakeError::IdentityMismatch(reason)
        };
        let Some((auth, _)) = &self.auth else {
            return Err(mismatch("no auth to verify a proof with".to_owned()));
        };
        let Some(proof) = proof else {
            return Err(mismatch("the remote proved no identity".to_owned()));
        };
        let principal = auth
            .verify(proof)
            .map_err(|error| mismatch(format!("invalid proof: {error}")))?;
        if principal.nonce() != Some(format!("{nonce:032x}").as_str()) {
            return Err(mismatch("the proof was made for another link".to_owned()));
        }
        if !Self::binds(&principal, peer) {
            return Err(mismatch(format!("the proof does not bind peer id {peer}")));
        }
        if let Some(wanted) = expected.peer
            && wanted != peer
        {
            return Err(mismatch(format!("reached peer {peer}, not {wanted}")));
        }
        if let Some(subject) = &expected.subject
            && principal.subject() != subject
        {
            return Err(mismatch(format!("not subject `{subject}`")));
        }
        if let Some(role) = &expected.role
            && !principal.has_role(role)
        {
            return Err(mismatch(format!("no role `{role}`")));
        }
        Ok(Arc::new(principal))
    }

    /// Whether `principal`'s token names `peer`: its subject's id, or one its `peers` claim
    /// lists (a name or a UUID).
    fn binds(principal: &Principal, peer: PeerId) -> bool {
        peer == PeerId::derive(principal.subject())
            || principal.peers().iter().any(|listed| {
                listed.parse::<PeerId>().ok() == Some(peer) || PeerId::derive(listed) == peer
            })
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
        match token.and_then(|token| super::bearer::verify(auth, token).map_err(Refusal::Token)) {
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
        if peer.is_random() || Self::binds(principal, peer) {
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
    ///
    /// `proven` is the principal the remote of an outbound link proved in its hello, and
    /// `hop` says the call is a nested block's hop of its own scope.
    pub(crate) fn authorize(
        &self,
        link: &LinkAuth,
        proven: Option<&Arc<Principal>>,
        remote: PeerId,
        block: &str,
        hop: bool,
    ) -> Result<(), RemoteError> {
        // The pub-sub blocks are authorized by topic, in their bodies.
        if crate::block::is_internal(block) {
            return Ok(());
        }
        let decision = self.decide(link, proven, remote, block, hop);
        let subject = match (link, proven) {
            (LinkAuth::Verified(principal), _) | (LinkAuth::Outbound, Some(principal)) => {
                principal.subject()
            }
            (LinkAuth::Outbound | LinkAuth::Open, _) => "",
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

    /// Authorizes a subscription to, or a publication on, a topic by its policy name
    /// `name` (`topic:<topic>`) for `principal`, the one of the link from `remote`: the peer
    /// rules first, then, with auth, the policy. A link without a principal is
    /// `Unauthenticated` when this peer has auth.
    pub(crate) fn authorize_topic(
        &self,
        principal: Option<&Principal>,
        remote: PeerId,
        name: &str,
    ) -> Result<(), RemoteError> {
        let decision = self
            .peer_rule(remote, name)
            .and_then(|()| match &self.auth {
                None => Ok(()),
                Some((_, policy)) => match principal {
                    Some(principal) if policy.allows(principal, name) => Ok(()),
                    Some(principal) => Err(RemoteError::Forbidden {
                        block: name.to_owned(),
                        subject: principal.subject().to_owned(),
                        peer: None,
                    }),
                    None => Err(RemoteError::Unauthenticated {
                        peer: None,
                        block: Some(name.to_owned()),
                    }),
                },
            });
        let subject = principal.map_or("", Principal::subject);
        match &decision {
            Ok(()) => tracing::debug!(
                target: "distributed_scope::auth",
                decision = "allow", topic = name, subject, peer = %remote.label()
            ),
            Err(error) => tracing::info!(
                target: "distributed_scope::auth",
                decision = "deny", topic = name, subject, peer = %remote.label(), %error
            ),
        }
        decision
    }

    /// The peer rules ([`PeerBuilder::allow_peer`](crate::PeerBuilder::allow_peer),
    /// [`deny_peer`](crate::PeerBuilder::deny_peer)) for `remote` and the name `name`.
    fn peer_rule(&self, remote: PeerId, name: &str) -> Result<(), RemoteError> {
        let Some(rule) = self.peers.get(&remote) else {
            return Ok(());
        };
        let allowed = rule.as_ref().is_some_and(|globs| {
            let subject = remote.to_string();
            let policy = globs.iter().fold(Policy::deny_all(), |policy, glob| {
                policy.allow_subject(subject.as_str(), glob.as_str())
            });
            policy.allows(
                &Principal::new(subject.as_str(), Vec::<String>::new()),
                name,
            )
        });
        if allowed {
            Ok(())
        } else {
            Err(RemoteError::Forbidden {
                block: name.to_owned(),
                subject: format!("peer {remote}"),
                peer: None,
            })
        }
    }

    fn decide(
        &self,
        link: &LinkAuth,
        proven: Option<&Arc<Principal>>,
        remote: PeerId,
        block: &str,
        hop: bool,
    ) -> Result<(), RemoteError> {
        let forbidden = |subject: String| RemoteError::Forbidden {
            block: block.to_owned(),
            subject,
            peer: None,
        };
        self.peer_rule(remote, block)?;
        match (link, &self.auth) {
            (LinkAuth::Outbound | LinkAuth::Open, None) | (LinkAuth::Verified(_), None) => Ok(()),
            // A link this peer opened runs the hops of scopes it started or joined (the
            // engine checked the entry point), and entry points only as the policy allows
            // the principal its remote proved.
            (LinkAuth::Outbound, Some(_)) if hop => Ok(()),
            (LinkAuth::Outbound, Some((_, policy))) => match proven {
                Some(principal) if policy.allows(principal, block) => Ok(()),
                Some(principal) => Err(forbidden(principal.subject().to_owned())),
                None => Err(RemoteError::Unauthenticated {
                    peer: None,
                    block: Some(block.to_owned()),
                }),
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Expected;

    const SECRET: &[u8] = b"a guard test secret of 32 bytes or more";

    fn guard(subject: &str) -> Guard {
        let mut guard = Guard::default();
        guard.set_auth(JwtAuth::hs256(SECRET), Policy::deny_all());
        guard.set_identity(JwtAuth::hs256(SECRET), subject.to_owned(), Vec::new());
        guard
    }

    #[test]
    fn a_proof_holds_for_its_own_handshake_only() {
        let payments = PeerId::from_name("payments");
        let server = guard("payments");
        let client = guard("client");
        let proof = server.prove(41).unwrap();
        let expected = Expected::peer(payments).subject("payments");
        let principal = client
            .check_remote(&expected, payments, Some(&proof), 41)
            .unwrap();
        assert_eq!(principal.subject(), "payments");
        // Replayed to another link (another nonce), it proves nothing.
        let replayed = client.check_remote(&expected, payments, Some(&proof), 42);
        assert!(
            matches!(&replayed, Err(HandshakeError::IdentityMismatch(reason)) if reason.contains("another link")),
            "{replayed:?}"
        );
        // Nor for another id than the one it binds.
        let other = PeerId::from_name("billing");
        let stolen = client.check_remote(&Expected::any_peer(), other, Some(&proof), 41);
        assert!(matches!(stolen, Err(HandshakeError::IdentityMismatch(_))));
        // A proof signed with another key is no proof.
        let mut forger = Guard::default();
        forger.set_identity(
            JwtAuth::hs256(b"another secret of at least 32 bytes!!"),
            "payments".to_owned(),
            Vec::new(),
        );
        let forged = forger.prove(41).unwrap();
        let refused = client.check_remote(&expected, payments, Some(&forged), 41);
        assert!(matches!(refused, Err(HandshakeError::IdentityMismatch(_))));
    }
}
