//! Where mail for a domain goes: a static route, the relay host, or the
//! domain's MX hosts (RFC 5321 §5.1), as an ordered list of addresses.

use std::net::{IpAddr, SocketAddr};

use crate::config::{RouteAuth, RouteConfig, TlsPolicy};
use crate::resolver::{DnsError, Resolver};

/// One address to try, with how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name (for logs, DSN Remote-MTA and TLS SNI), or the IP.
    pub host: String,
    pub addr: SocketAddr,
    pub tls: TlsPolicy,
    pub auth: Option<RouteAuth>,
}

/// Why no target could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFailure {
    pub permanent: bool,
    pub status: (u8, u16, u16),
    pub text: String,
}

impl RouteFailure {
    fn temporary(status: (u8, u16, u16), text: String) -> Self {
        RouteFailure { permanent: false, status, text }
    }
    fn permanent(status: (u8, u16, u16), text: String) -> Self {
        RouteFailure { permanent: true, status, text }
    }
}

/// `host:port`, `ip:port` or `[ip]:port` → (host, port).
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_string(), port))
}

pub struct Router<R> {
    pub resolver: R,
    pub routes: Vec<RouteConfig>,
    pub relay_host: Option<String>,
    pub relay_auth: Option<RouteAuth>,
    pub tls: TlsPolicy,
    /// Port of MX hosts (25; other values only for test setups).
    pub mx_port: u16,
}

fn route_matches(pattern: &str, domain: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    pattern == "*"
        || pattern == domain
        || pattern.strip_prefix("*.").is_some_and(|suffix| domain.ends_with(&format!(".{suffix}")))
}

impl<R: Resolver> Router<R> {
    /// Targets in the order to try them.
    pub async fn plan(&self, domain: &str) -> Result<Vec<Target>, RouteFailure> {
        let domain = domain.to_ascii_lowercase();
        // Exact matches win over wildcards, in configuration order.
        let route = self
            .routes
            .iter()
            .find(|r| r.domain.eq_ignore_ascii_case(&domain))
            .or_else(|| self.routes.iter().find(|r| route_matches(&r.domain, &domain)));
        if let Some(r) = route {
            return self.via(&r.via, r.tls, r.auth.clone()).await;
        }
        if let Some(relay) = &self.relay_host {
            return self.via(relay, self.tls, self.relay_auth.clone()).await;
        }
        self.mx(&domain).await
    }

    async fn via(&self, via: &str, tls: TlsPolicy, auth: Option<RouteAuth>) -> Result<Vec<Target>, RouteFailure> {
        let Some((host, port)) = parse_host_port(via) else {
            return Err(RouteFailure::temporary((4, 3, 5), format!("route via {via:?} is not host:port")));
        };
        let ips = self.addresses(&host).await?;
        Ok(ips
            .into_iter()
            .map(|ip| Target { host: host.clone(), addr: SocketAddr::new(ip, port), tls, auth: auth.clone() })
            .collect())
    }

    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, RouteFailure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.resolver.ips(host).await {
            Ok(ips) if !ips.is_empty() => Ok(ips),
            Ok(_) | Err(DnsError::NoRecords) | Err(DnsError::NxDomain) => {
                Err(RouteFailure::permanent((5, 4, 4), format!("host {host} has no address (A/AAAA)")))
            }
            Err(DnsError::Temporary(e)) => {
                Err(RouteFailure::temporary((4, 4, 3), format!("cannot resolve {host}: {e}")))
            }
        }
    }

    async fn mx(&self, domain: &str) -> Result<Vec<Target>, RouteFailure> {
        let mut records = match self.resolver.mx(domain).await {
            Ok(r) => r,
            // RFC 5321 §5.1: no MX, the domain itself is the implicit MX.
            Err(DnsError::NoRecords) => {
                let ips = self
                    .addresses(domain)
                    .await
                    .map_err(|f| RouteFailure { text: format!("{domain} has no MX and no address record"), ..f })?;
                return Ok(self.targets(domain, ips));
            }
            Err(DnsError::NxDomain) => {
                return Err(RouteFailure::permanent((5, 1, 2), format!("domain {domain} does not exist (NXDOMAIN)")));
            }
            Err(DnsError::Temporary(e)) => {
                return Err(RouteFailure::temporary((4, 4, 3), format!("cannot look up MX of {domain}: {e}")));
            }
        };
        // RFC 7505 §3: a single MX "." says the domain accepts no mail.
        if records.len() == 1 && records[0].host.is_empty() {
            return Err(RouteFailure::permanent((5, 1, 10), format!("{domain} accepts no mail (null MX, RFC 7505)")));
        }
        records.retain(|r| !r.host.is_empty());
        // Lowest preference first; equal preferences in random order (RFC 5321 §5.1).
        {
            use rand::seq::SliceRandom;
            records.shuffle(&mut rand::rng());
        }
        records.sort_by_key(|r| r.preference);
        let mut targets = Vec::new();
        let mut temporary = None;
        for r in &records {
            match self.addresses(&r.host).await {
                Ok(ips) => targets.extend(self.targets(&r.host, ips)),
                Err(f) if !f.permanent => temporary = Some(f),
                Err(_) => {}
            }
        }
        if targets.is_empty() {
            return Err(temporary.unwrap_or_else(|| {
                RouteFailure::permanent((5, 4, 4), format!("no MX host of {domain} has an address"))
            }));
        }
        Ok(targets)
    }

    fn targets(&self, host: &str, ips: Vec<IpAddr>) -> Vec<Target> {
        ips.into_iter()
            .map(|ip| Target {
                host: host.to_string(),
                addr: SocketAddr::new(ip, self.mx_port),
                tls: self.tls,
                auth: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::StaticResolver;

    fn router(resolver: StaticResolver) -> Router<StaticResolver> {
        Router {
            resolver,
            routes: vec![],
            relay_host: None,
            relay_auth: None,
            tls: TlsPolicy::Opportunistic,
            mx_port: 25,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn mx_order_implicit_mx_null_mx_and_failures() {
        let r = router(
            StaticResolver::default()
                .with_mx("a.test", 20, "mx2.a.test")
                .with_mx("a.test", 10, "mx1.a.test")
                .with_ip("mx1.a.test", ip("127.0.0.11"))
                .with_ip("mx2.a.test", ip("127.0.0.12"))
                .with_ip("implicit.test", ip("127.0.0.13"))
                .with_mx("null.test", 0, "")
                .with_mx("broken.test", 10, "nowhere.test"),
        );
        let t = r.plan("A.test").await.unwrap();
        assert_eq!(t.iter().map(|t| t.host.as_str()).collect::<Vec<_>>(), ["mx1.a.test", "mx2.a.test"]);
        assert_eq!(t[0].addr, "127.0.0.11:25".parse().unwrap());
        assert_eq!(r.plan("implicit.test").await.unwrap()[0].addr, "127.0.0.13:25".parse().unwrap());
        let f = r.plan("null.test").await.unwrap_err();
        assert!(f.permanent && f.status == (5, 1, 10), "{f:?}");
        let f = r.plan("missing.test").await.unwrap_err();
        assert!(f.permanent && f.status == (5, 1, 2), "{f:?}");
        let f = r.plan("broken.test").await.unwrap_err();
        assert!(f.permanent && f.status == (5, 4, 4), "{f:?}");
        r.resolver.fail.lock().unwrap().push("a.test".into());
        let f = r.plan("a.test").await.unwrap_err();
        assert!(!f.permanent && f.status == (4, 4, 3), "{f:?}");
    }

    #[tokio::test]
    async fn static_routes_and_relay_host() {
        let mut r = router(StaticResolver::default().with_ip("smarthost.test", ip("127.0.0.20")));
        r.routes = vec![
            RouteConfig {
                domain: "*.corp.test".into(),
                via: "127.0.0.1:2600".into(),
                tls: TlsPolicy::None,
                auth: None,
            },
            RouteConfig {
                domain: "Exact.test".into(),
                via: "[127.0.0.2]:2601".into(),
                tls: TlsPolicy::Require,
                auth: None,
            },
        ];
        r.relay_host = Some("smarthost.test:587".into());
        let t = r.plan("exact.test").await.unwrap();
        assert_eq!((t[0].addr, t[0].tls), ("127.0.0.2:2601".parse().unwrap(), TlsPolicy::Require));
        assert_eq!(r.plan("eu.corp.test").await.unwrap()[0].addr, "127.0.0.1:2600".parse().unwrap());
        assert_eq!(r.plan("corp.test").await.unwrap()[0].addr, "127.0.0.20:587".parse().unwrap());
        assert_eq!(r.plan("other.test").await.unwrap()[0].host, "smarthost.test");
        assert_eq!(parse_host_port("[::1]:25"), Some(("::1".into(), 25)));
        assert_eq!(parse_host_port("mx.test:25"), Some(("mx.test".into(), 25)));
        assert_eq!(parse_host_port("mx.test"), None);
    }
}
