//! Where mail for a domain goes: a static route, the relay host, or the
//! domain's MX hosts (RFC 5321 §5.1), as an ordered list of addresses.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{RouteAuth, RouteConfig, TlsPolicy};
use crate::dane::{Dane, Lookup, Tlsa};
use crate::mta_sts::{Applied, Fetcher, Mode, MtaSts};
use crate::resolver::{DnsError, Resolver};

/// One address to try, with how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name (for logs, DSN Remote-MTA and TLS SNI), or the IP.
    pub host: String,
    pub addr: SocketAddr,
    pub tls: TlsPolicy,
    pub auth: Option<RouteAuth>,
    pub verify: Verify,
    /// What requires verified TLS here beyond the configuration (an
    /// MTA-STS policy in enforce mode), named in every failure's reason.
    pub required_by: Option<Arc<str>>,
}

/// How a target's TLS certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Not at all: opportunistic TLS only keeps passive listeners out
    /// (Postfix's "may" and "encrypt"), or the operator said so.
    No,
    /// Name and chain, against these authorities (`None`: the system's).
    Chain(Option<PathBuf>),
    /// Against the MX host's DNSSEC-secure TLSA records (RFC 7672).
    Dane(Arc<[Tlsa]>),
}

impl Verify {
    /// TLS that must succeed (`require`) or that carries credentials is
    /// verified, unless the operator opted out by name.
    fn for_target(tls: TlsPolicy, auth: bool, ca_file: Option<&PathBuf>, insecure_skip_verify: bool) -> Verify {
        if insecure_skip_verify || !(tls == TlsPolicy::Require || auth) {
            Verify::No
        } else {
            Verify::Chain(ca_file.cloned())
        }
    }
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

/// Where facteur itself listens for SMTP: a target among these is a loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Local {
    /// The bound SMTP, submission and submissions listeners.
    pub listeners: Vec<SocketAddr>,
    /// This machine's interface addresses (for listeners on 0.0.0.0 / ::).
    pub interfaces: Vec<IpAddr>,
}

impl Local {
    /// True when `addr` reaches one of our own listeners.
    pub fn is_self(&self, addr: SocketAddr) -> bool {
        self.listeners.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip()
                    || (l.ip().is_unspecified()
                        && (addr.ip().is_loopback()
                            || addr.ip().is_unspecified()
                            || self.interfaces.contains(&addr.ip()))))
        })
    }
}

fn loops(what: &str, t: &Target) -> RouteFailure {
    RouteFailure::permanent(
        (5, 4, 6),
        format!("mail for {what} loops back to myself: {} [{}] is one of facteur's own listeners", t.host, t.addr),
    )
}

pub struct Router<R> {
    pub resolver: R,
    /// Our own listeners: never a target (RFC 5321 §6.3, §5.1).
    pub local: Local,
    pub routes: Vec<RouteConfig>,
    pub relay_host: Option<String>,
    pub relay_auth: Option<RouteAuth>,
    pub tls: TlsPolicy,
    /// Authorities for MX and relay host certificates when verified.
    pub tls_ca_file: Option<PathBuf>,
    pub tls_insecure_skip_verify: bool,
    /// Port of MX hosts (25; other values only for test setups).
    pub mx_port: u16,
    /// MTA-STS policies (RFC 8461) for MX delivery, None when turned off;
    /// the cache outlives configuration reloads.
    pub mta_sts: Option<Arc<MtaSts>>,
    /// Port of MTA-STS policy hosts (443; others only for test setups).
    pub mta_sts_port: u16,
    /// DANE (RFC 7672) for MX delivery, None when turned off.
    pub dane: Option<Arc<Dane>>,
}

/// How TLS to one MX host is decided.
#[derive(Debug, Clone)]
enum HostTls {
    /// As configured (`delivery.tls`).
    Configured,
    /// Required and verified by name and chain (MTA-STS enforce).
    Verified(Arc<str>),
    /// Required and matched against TLSA records (DANE).
    Dane(Arc<[Tlsa]>, Arc<str>),
    /// Required, not authenticated (DANE with no usable record, §2.2).
    Encrypted(Arc<str>),
}

/// What an MTA-STS policy makes of a domain's MX hosts (RFC 8461 §4.1,
/// §5.1): under `enforce`, a name for the requirement of verified TLS, or
/// a deferral when it allows none of them; under `testing`, a warning for
/// each host it would not allow, and nothing required.
fn sts_allows(sts: Option<&Applied>, domain: &str, hosts: &[String]) -> Result<HostTls, RouteFailure> {
    let Some(a) = sts else { return Ok(HostTls::Configured) };
    let refused: Vec<&String> = hosts.iter().filter(|h| !a.policy.allows(h)).collect();
    match a.policy.mode {
        Mode::Enforce if refused.len() == hosts.len() => Err(RouteFailure::temporary(
            (4, 7, 5),
            format!(
                "{} allows mx {} but the MX hosts of {domain} are {}",
                a.describe(),
                a.policy.mx.join(", "),
                hosts.join(", ")
            ),
        )),
        Mode::Enforce => {
            for h in refused {
                tracing::warn!(domain, host = %h, policy = %a.describe(), "MX host not allowed by the MTA-STS policy; skipped");
            }
            Ok(HostTls::Verified(Arc::from(a.describe())))
        }
        Mode::Testing => {
            for h in refused {
                tracing::warn!(domain, host = %h, policy = %a.describe(), "MX host not allowed by the MTA-STS policy (testing mode: used anyway)");
            }
            Ok(HostTls::Configured)
        }
        Mode::None => Ok(HostTls::Configured),
    }
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
        let targets = if let Some(r) = route {
            let verify =
                Verify::for_target(r.tls, r.auth.is_some(), r.tls_ca_file.as_ref(), r.tls_insecure_skip_verify);
            self.via(&r.via, r.tls, r.auth.clone(), verify).await?
        } else if let Some(relay) = &self.relay_host {
            let auth = self.relay_auth.clone();
            let verify =
                Verify::for_target(self.tls, auth.is_some(), self.tls_ca_file.as_ref(), self.tls_insecure_skip_verify);
            self.via(relay, self.tls, auth, verify).await?
        } else {
            return self.mx(&domain).await;
        };
        // A route or relay host that is facteur itself: every message would
        // go round forever (a configuration error, refused at start too).
        match targets.iter().find(|t| self.local.is_self(t.addr)) {
            Some(t) => Err(loops(&domain, t)),
            None => Ok(targets),
        }
    }

    /// The routes and the relay host that lead back to facteur itself, each
    /// as a problem naming its key (host names are resolved; one that does
    /// not resolve now is checked again at delivery).
    pub async fn loops_in_config(&self) -> Vec<String> {
        let mut vias: Vec<(String, &str)> =
            self.routes.iter().map(|r| (format!("route for {:?}: via", r.domain), r.via.as_str())).collect();
        if let Some(relay) = &self.relay_host {
            vias.push(("delivery.relay_host".into(), relay.as_str()));
        }
        let mut problems = Vec::new();
        for (key, via) in vias {
            // A name server that does not answer must not hold the start.
            let resolved =
                tokio::time::timeout(std::time::Duration::from_secs(3), self.via(via, self.tls, None, Verify::No))
                    .await;
            let Ok(Ok(targets)) = resolved else { continue };
            if let Some(t) = targets.iter().find(|t| self.local.is_self(t.addr)) {
                problems.push(format!(
                    "{key} = {via:?} is facteur's own listener {}: every message would loop (RFC 5321 \u{a7}6.3)",
                    t.addr
                ));
            }
        }
        problems
    }

    async fn via(
        &self,
        via: &str,
        tls: TlsPolicy,
        auth: Option<RouteAuth>,
        verify: Verify,
    ) -> Result<Vec<Target>, RouteFailure> {
        let Some((host, port)) = parse_host_port(via) else {
            return Err(RouteFailure::temporary((4, 3, 5), format!("route via {via:?} is not host:port")));
        };
        let ips = self.addresses(&host).await?;
        Ok(ips
            .into_iter()
            .map(|ip| Target {
                host: host.clone(),
                addr: SocketAddr::new(ip, port),
                tls,
                auth: auth.clone(),
                verify: verify.clone(),
                required_by: None,
            })
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
                let sts = self.sts_policy(domain).await;
                let how = sts_allows(sts.as_ref(), domain, &[domain.to_string()])?;
                let ips = self
                    .addresses(domain)
                    .await
                    .map_err(|f| RouteFailure { text: format!("{domain} has no MX and no address record"), ..f })?;
                return Ok(self.targets(domain, ips, &how));
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
        // DANE first: where an MX host has secure TLSA records, MTA-STS
        // does not apply (RFC 8461 §2).
        let dane = self.dane_lookups(domain, &records).await;
        let mut how = HostTls::Configured;
        if !dane.iter().any(|(_, l)| matches!(l, Lookup::Secure(_))) {
            let sts = self.sts_policy(domain).await;
            let hosts: Vec<String> = records.iter().map(|r| r.host.clone()).collect();
            how = sts_allows(sts.as_ref(), domain, &hosts)?;
            if let Some(a) = sts.as_ref().filter(|a| a.policy.mode == Mode::Enforce) {
                records.retain(|r| a.policy.allows(&r.host));
            }
        }
        let mut dane_failure = None;
        // Lowest preference first; equal preferences in random order (RFC 5321 §5.1).
        {
            use rand::seq::SliceRandom;
            records.shuffle(&mut rand::rng());
        }
        records.sort_by_key(|r| r.preference);
        let mut resolved = Vec::with_capacity(records.len());
        for r in &records {
            let host_tls = match dane.iter().find(|(h, _)| *h == r.host).map(|(_, l)| l) {
                Some(Lookup::Secure(tlsa)) => {
                    let why: Arc<str> = Arc::from(format!("DANE TLSA at _{}._tcp.{}", self.mx_port, r.host));
                    let usable: Vec<Tlsa> = tlsa.iter().filter(|t| t.usable()).cloned().collect();
                    if usable.is_empty() { HostTls::Encrypted(why) } else { HostTls::Dane(usable.into(), why) }
                }
                // §2.2: a host whose TLSA records cannot be had is not used.
                Some(Lookup::Failed(why)) => {
                    tracing::warn!(domain, host = %r.host, why, "MX host skipped: DANE");
                    dane_failure = Some(why.clone());
                    continue;
                }
                _ => how.clone(),
            };
            let targets = self.addresses(&r.host).await.map(|ips| self.targets(&r.host, ips, &host_tls));
            resolved.push((r.preference, targets));
        }
        // RFC 5321 §5.1: a client that finds itself among the MX hosts
        // discards every host of its own preference or a greater one.
        let mine = resolved
            .iter()
            .filter(|(_, t)| t.as_ref().is_ok_and(|t| t.iter().any(|t| self.local.is_self(t.addr))))
            .map(|(pref, _)| *pref)
            .min();
        let mut targets = Vec::new();
        let mut temporary = None;
        for (pref, found) in resolved {
            if mine.is_some_and(|m| pref >= m) {
                continue;
            }
            match found {
                Ok(t) => targets.extend(t),
                Err(f) if !f.permanent => temporary = Some(f),
                Err(_) => {}
            }
        }
        if targets.is_empty() {
            // A more preferred host that cannot be resolved now is tried
            // again later: only then is it known whether we are the best.
            if let Some(t) = temporary {
                return Err(t);
            }
            if let Some(why) = dane_failure {
                return Err(RouteFailure::temporary((4, 7, 5), format!("no usable MX host of {domain}: {why}")));
            }
            if let Some(m) = mine {
                return Err(RouteFailure::permanent(
                    (5, 4, 6),
                    format!("mail for {domain} loops back to myself: facteur is its best MX (preference {m})"),
                ));
            }
            return Err(RouteFailure::permanent((5, 4, 4), format!("no MX host of {domain} has an address")));
        }
        Ok(targets)
    }

    /// Targets for an MX host, with TLS as its policy says.
    fn targets(&self, host: &str, ips: Vec<IpAddr>, how: &HostTls) -> Vec<Target> {
        let (tls, verify, required_by) = match how {
            HostTls::Configured => {
                let v = Verify::for_target(self.tls, false, self.tls_ca_file.as_ref(), self.tls_insecure_skip_verify);
                (self.tls, v, None)
            }
            HostTls::Verified(why) => {
                let tls = TlsPolicy::Require;
                let v = Verify::for_target(tls, false, self.tls_ca_file.as_ref(), self.tls_insecure_skip_verify);
                (tls, v, Some(why.clone()))
            }
            HostTls::Dane(tlsa, why) => (TlsPolicy::Require, Verify::Dane(tlsa.clone()), Some(why.clone())),
            HostTls::Encrypted(why) => (TlsPolicy::Require, Verify::No, Some(why.clone())),
        };
        ips.into_iter()
            .map(|ip| Target {
                host: host.to_string(),
                addr: SocketAddr::new(ip, self.mx_port),
                tls,
                auth: None,
                verify: verify.clone(),
                required_by: required_by.clone(),
            })
            .collect()
    }

    /// Each MX host's TLSA lookup, when DANE is on and the MX records are
    /// DNSSEC-secure (RFC 7672 §2.2.1); empty otherwise.
    async fn dane_lookups(&self, domain: &str, records: &[crate::resolver::Mx]) -> Vec<(String, Lookup)> {
        let Some(dane) = &self.dane else { return Vec::new() };
        if !dane.mx_secure(domain).await {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.push((r.host.clone(), dane.tlsa(&r.host, self.mx_port).await));
        }
        out
    }

    async fn sts_policy(&self, domain: &str) -> Option<Applied> {
        let sts = self.mta_sts.as_ref()?;
        let fetcher = Fetcher {
            port: self.mta_sts_port,
            ca_file: self.tls_ca_file.clone(),
            timeout: crate::mta_sts::FETCH_TIMEOUT,
        };
        sts.policy(&self.resolver, &fetcher, domain).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::StaticResolver;

    fn router(resolver: StaticResolver) -> Router<StaticResolver> {
        Router {
            resolver,
            local: Local::default(),
            routes: vec![],
            relay_host: None,
            relay_auth: None,
            tls: TlsPolicy::Opportunistic,
            tls_ca_file: None,
            tls_insecure_skip_verify: false,
            mx_port: 25,
            mta_sts: None,
            mta_sts_port: 443,
            dane: None,
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
                ..Default::default()
            },
            RouteConfig {
                domain: "Exact.test".into(),
                via: "[127.0.0.2]:2601".into(),
                tls: TlsPolicy::Require,
                ..Default::default()
            },
        ];
        r.relay_host = Some("smarthost.test:587".into());
        let t = r.plan("exact.test").await.unwrap();
        assert_eq!((t[0].addr, t[0].tls), ("127.0.0.2:2601".parse().unwrap(), TlsPolicy::Require));
        assert_eq!(t[0].verify, Verify::Chain(None), "required TLS is verified");
        assert_eq!(r.plan("eu.corp.test").await.unwrap()[0].verify, Verify::No);
        // Relay credentials: verified even under opportunistic TLS...
        r.relay_auth = Some(RouteAuth { user: "u".into(), password: "p".into() });
        r.tls_ca_file = Some("/etc/relay-ca.pem".into());
        assert_eq!(r.plan("other.test").await.unwrap()[0].verify, Verify::Chain(Some("/etc/relay-ca.pem".into())));
        // ...unless the operator opts out by name; MX hosts under
        // opportunistic TLS are not verified.
        r.tls_insecure_skip_verify = true;
        assert_eq!(r.plan("other.test").await.unwrap()[0].verify, Verify::No);
        r.relay_auth = None;
        assert_eq!(r.plan("eu.corp.test").await.unwrap()[0].addr, "127.0.0.1:2600".parse().unwrap());
        assert_eq!(r.plan("corp.test").await.unwrap()[0].addr, "127.0.0.20:587".parse().unwrap());
        assert_eq!(r.plan("other.test").await.unwrap()[0].host, "smarthost.test");
        assert_eq!(parse_host_port("[::1]:25"), Some(("::1".into(), 25)));
        assert_eq!(parse_host_port("mx.test:25"), Some(("mx.test".into(), 25)));
        assert_eq!(parse_host_port("mx.test"), None);
    }

    #[tokio::test]
    async fn routes_and_mx_hosts_that_are_ourselves_are_loops() {
        let mut r = router(
            StaticResolver::default()
                .with_ip("me.test", ip("192.0.2.7"))
                .with_mx("backup.test", 10, "primary.test")
                .with_mx("backup.test", 20, "me.test")
                .with_mx("backup.test", 30, "other.test")
                .with_ip("primary.test", ip("192.0.2.1"))
                .with_ip("other.test", ip("192.0.2.3"))
                .with_mx("only-me.test", 10, "me.test")
                .with_mx("equal.test", 20, "peer.test")
                .with_mx("equal.test", 20, "me.test")
                .with_ip("peer.test", ip("192.0.2.9"))
                .with_mx("flaky.test", 10, "down.test")
                .with_mx("flaky.test", 20, "me.test"),
        );
        r.resolver.fail.lock().unwrap().push("down.test".into());
        r.local = Local { listeners: vec!["0.0.0.0:25".parse().unwrap()], interfaces: vec![ip("192.0.2.7")] };
        // RFC 5321 §5.1: we are the second MX: only the first is tried.
        let t = r.plan("backup.test").await.unwrap();
        assert_eq!(t.iter().map(|t| t.host.as_str()).collect::<Vec<_>>(), ["primary.test"]);
        let f = r.plan("only-me.test").await.unwrap_err();
        assert!(f.permanent && f.status == (5, 4, 6) && f.text.contains("loops back to myself"), "{f:?}");
        // Hosts of our own preference go too: nobody left is a loop.
        let f = r.plan("equal.test").await.unwrap_err();
        assert_eq!(f.status, (5, 4, 6), "{f:?}");
        // A better host that cannot be resolved now: try again later, do not bounce.
        let f = r.plan("flaky.test").await.unwrap_err();
        assert!(!f.permanent && f.status == (4, 4, 3), "{f:?}");
        // A route to our own listener (loopback, a wildcard listener).
        r.routes = vec![RouteConfig { domain: "*".into(), via: "127.0.0.1:25".into(), ..Default::default() }];
        let f = r.plan("anything.test").await.unwrap_err();
        assert_eq!(f.status, (5, 4, 6));
        assert_eq!(r.loops_in_config().await.len(), 1);
        assert!(r.loops_in_config().await[0].contains("route for \"*\": via = \"127.0.0.1:25\""));
        // Another port on the same machine is someone else.
        r.routes[0].via = "127.0.0.1:2526".into();
        assert!(r.plan("anything.test").await.is_ok());
        assert!(r.loops_in_config().await.is_empty());
        // A listener on one address: only that address and port.
        r.local = Local { listeners: vec!["127.0.0.1:2525".parse().unwrap()], interfaces: vec![] };
        assert!(r.local.is_self("127.0.0.1:2525".parse().unwrap()));
        assert!(!r.local.is_self("127.0.0.2:2525".parse().unwrap()));
        assert!(!r.local.is_self("127.0.0.1:25".parse().unwrap()));
    }
}
