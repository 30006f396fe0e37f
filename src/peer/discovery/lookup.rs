//! Discovery URLs (`dns://`, `dns+srv://`, and their `+wss` forms) and the DNS lookups that
//! turn them into peer URLs.

use std::collections::BTreeSet;
use std::net::{SocketAddr, SocketAddrV6};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};

use super::DiscoveryError;

/// What to look up, and how to make peer URLs of the answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Query {
    name: Name,
    kind: Kind,
    /// `ws` or `wss`.
    scheme: &'static str,
    /// The path (and query) of the peer URLs, `/` by default.
    path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A and AAAA records, each address dialled at this port.
    Address { port: u16 },
    /// SRV records, each target dialled by name at the port the record gives.
    Service,
}

impl Query {
    /// Parses `dns://NAME:PORT[/PATH]` or `dns+srv://NAME[/PATH]`, each also with `+wss`
    /// (`dns+wss://`, `dns+srv+wss://`) for `wss://` peer URLs.
    pub(super) fn parse(url: &str) -> Result<Self, DiscoveryError> {
        let invalid = |reason| DiscoveryError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: actix_web::http::Uri = url.parse().map_err(|_not_a_uri| invalid("not a url"))?;
        let (srv, scheme) = match uri.scheme_str() {
            Some("dns") => (false, "ws"),
            Some("dns+wss") => (false, "wss"),
            Some("dns+srv") => (true, "ws"),
            Some("dns+srv+wss") => (true, "wss"),
            _ => {
                return Err(invalid(
                    "the scheme must be dns://, dns+srv://, dns+wss:// or dns+srv+wss://",
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("no name to look up"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("a discovery url takes no user name"));
        }
        let host = authority.host();
        if host.is_empty() || host.starts_with('[') {
            return Err(invalid("the host must be a dns name"));
        }
        let name = Name::from_ascii(host).map_err(|_not_a_name| invalid("not a dns name"))?;
        let kind = match (srv, uri.port_u16()) {
            (false, Some(port)) if port != 0 => Kind::Address { port },
            (false, _) => return Err(invalid("a dns:// url needs the peers' port")),
            (true, None) => Kind::Service,
            (true, Some(_)) => {
                return Err(invalid(
                    "a dns+srv:// url takes no port: the SRV records give it",
                ));
            }
        };
        let path = uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        Ok(Self {
            name,
            kind,
            scheme,
            path,
        })
    }

    /// Looks the name up and returns the peer URLs, sorted, at most `max` (the first in
    /// order). A name without records of the kind asked for has no peers; other failures
    /// (no answer, a server failure) are errors, and the caller keeps what it had.
    pub(super) async fn resolve(
        &self,
        resolver: &TokioResolver,
        max: usize,
    ) -> Result<BTreeSet<String>, NetError> {
        // The cache would hide changes until the records' TTL runs out; each round asks.
        resolver.clear_cache();
        let mut urls = BTreeSet::new();
        match self.kind {
            Kind::Address { port } => {
                let found = match resolver.lookup_ip(self.name.clone()).await {
                    Ok(found) => found,
                    Err(error) if error.is_no_records_found() => return Ok(urls),
                    Err(error) => return Err(error),
                };
                for ip in found.iter() {
                    let address = match ip {
                        std::net::IpAddr::V4(ip) => SocketAddr::from((ip, port)),
                        // Without a scope id: a link-local address is not a peer's address.
                        std::net::IpAddr::V6(ip) => SocketAddrV6::new(ip, port, 0, 0).into(),
                    };
                    urls.insert(format!("{}://{address}{}", self.scheme, self.path));
                }
            }
            Kind::Service => {
                let found = match resolver.srv_lookup(self.name.clone()).await {
                    Ok(found) => found,
                    Err(error) if error.is_no_records_found() => return Ok(urls),
                    Err(error) => return Err(error),
                };
                for record in found.answers() {
                    let RData::SRV(srv) = &record.data else {
                        continue;
                    };
                    // RFC 2782: a target of "." means the service is not offered here.
                    if srv.target.is_root() || srv.port == 0 {
                        continue;
                    }
                    let target = srv.target.to_ascii();
                    let target = target.trim_end_matches('.');
                    urls.insert(format!(
                        "{}://{target}:{}{}",
                        self.scheme, srv.port, self.path
                    ));
                }
            }
        }
        let found = urls.len();
        if found > max {
            tracing::warn!(
                name = %self.name,
                found,
                max,
                "discovery found more addresses than it dials; dialling the first in order"
            );
            urls = urls.into_iter().take(max).collect();
        }
        Ok(urls)
    }

    pub(super) fn name(&self) -> &Name {
        &self.name
    }
}

/// A resolver asking `nameservers` (UDP, then TCP for long answers), or the system's
/// nameservers and search domains (`/etc/resolv.conf` on Unix) when none is given. A and
/// AAAA records are both asked for.
pub(super) fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, DiscoveryError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder(provider).map_err(DiscoveryError::resolver)?
    } else {
        let servers = nameservers
            .iter()
            .map(|server| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut connection| {
                        connection.port = server.port();
                        connection
                    })
                    .collect();
                NameServerConfig::new(server.ip(), true, connections)
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], servers),
            provider,
        )
    };
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build().map_err(DiscoveryError::resolver)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> &'static str {
        match Query::parse(url) {
            Err(DiscoveryError::InvalidUrl { reason, .. }) => reason,
            other => panic!("{url}: expected an invalid url, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_four_forms() {
        let query = Query::parse("dns://peers.ns.svc.cluster.local:7000").unwrap();
        assert_eq!(query.kind, Kind::Address { port: 7000 });
        assert_eq!((query.scheme, query.path.as_str()), ("ws", "/"));
        assert_eq!(query.name.to_ascii(), "peers.ns.svc.cluster.local");
        let query = Query::parse("dns+wss://peers.example.:7443/scope").unwrap();
        assert_eq!((query.scheme, query.path.as_str()), ("wss", "/scope"));
        assert!(query.name.is_fqdn());
        let query = Query::parse("dns+srv://_peer._tcp.peers.ns.svc.cluster.local").unwrap();
        assert_eq!((query.kind, query.scheme), (Kind::Service, "ws"));
        let query = Query::parse("dns+srv+wss://_peer._tcp.peers/scope?x=1").unwrap();
        assert_eq!((query.kind, query.scheme), (Kind::Service, "wss"));
        assert_eq!(query.path, "/scope?x=1");
    }

    #[test]
    fn refuses_bad_urls() {
        assert_eq!(
            reason("peers:7000"),
            "the scheme must be dns://, dns+srv://, dns+wss:// or dns+srv+wss://"
        );
        assert_eq!(reason("http://peers:7000/"), reason("peers:7000"));
        assert_eq!(reason("dns://peers/"), "a dns:// url needs the peers' port");
        assert_eq!(
            reason("dns://peers:0/"),
            "a dns:// url needs the peers' port"
        );
        assert_eq!(
            reason("dns+srv://_p._tcp.peers:7000/"),
            "a dns+srv:// url takes no port: the SRV records give it"
        );
        assert_eq!(reason("dns://[::1]:7000/"), "the host must be a dns name");
        assert_eq!(
            reason("dns://user@peers:7000/"),
            "a discovery url takes no user name"
        );
        assert_eq!(reason("dns://"), "not a url");
        assert_eq!(reason("not a url at all"), "not a url");
    }
}
