//! DNS for delivery, behind a trait: the real resolver (hickory) and a
//! table-driven one for tests and static setups. No test reaches public DNS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// An MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    /// Exchange host, without the trailing dot; "" is the null MX "." (RFC 7505).
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name exists but has no record of that type (NODATA).
    #[error("no records")]
    NoRecords,
    /// The name does not exist (NXDOMAIN): a permanent failure.
    #[error("no such domain")]
    NxDomain,
    /// Timeout, SERVFAIL, network trouble: try again later.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

pub trait Resolver: Send + Sync + 'static {
    fn mx(&self, domain: &str) -> impl Future<Output = Result<Vec<Mx>, DnsError>> + Send;
    fn ips(&self, host: &str) -> impl Future<Output = Result<Vec<IpAddr>, DnsError>> + Send;
}

/// hickory-resolver, from /etc/resolv.conf or the configured servers.
pub struct DnsResolver(hickory_resolver::TokioResolver);

impl DnsResolver {
    /// `servers` empty: the system configuration.
    pub fn new(servers: &[SocketAddr]) -> Result<DnsResolver, String> {
        Self::with_timeout(servers, None)
    }

    /// As [`DnsResolver::new`], with one try per server and this timeout.
    pub fn with_timeout(servers: &[SocketAddr], timeout: Option<std::time::Duration>) -> Result<DnsResolver, String> {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        use hickory_resolver::name_server::TokioConnectionProvider;
        use hickory_resolver::proto::xfer::Protocol;
        let builder = if servers.is_empty() {
            hickory_resolver::TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
        } else {
            let mut config = ResolverConfig::new();
            for s in servers {
                config.add_name_server(NameServerConfig::new(*s, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(*s, Protocol::Tcp));
            }
            hickory_resolver::TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        };
        let mut builder = builder;
        if let Some(t) = timeout {
            let opts = builder.options_mut();
            opts.timeout = t;
            opts.attempts = 1;
        }
        Ok(DnsResolver(builder.build()))
    }
}

fn classify(e: hickory_resolver::ResolveError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NxDomain
    } else if e.is_no_records_found() {
        DnsError::NoRecords
    } else {
        DnsError::Temporary(e.to_string())
    }
}

fn fqdn(name: &str) -> String {
    // Absolute names: the search list of resolv.conf must never apply to mail domains.
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

impl Resolver for DnsResolver {
    async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        let answer = self.0.mx_lookup(fqdn(domain)).await.map_err(classify)?;
        Ok(answer
            .iter()
            .map(|mx| Mx {
                preference: mx.preference(),
                host: mx.exchange().to_ascii().trim_end_matches('.').to_ascii_lowercase(),
            })
            .collect())
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let answer = self.0.lookup_ip(fqdn(host)).await.map_err(classify)?;
        Ok(answer.iter().collect())
    }
}

/// A fixed table: MX records and addresses by name. Names missing from
/// both tables are NXDOMAIN; `fail` makes a name fail temporarily.
#[derive(Default)]
pub struct StaticResolver {
    pub mx: Mutex<HashMap<String, Vec<Mx>>>,
    pub ips: Mutex<HashMap<String, Vec<IpAddr>>>,
    pub fail: Mutex<Vec<String>>,
}

impl StaticResolver {
    pub fn with_mx(self, domain: &str, preference: u16, host: &str) -> Self {
        if let Ok(mut m) = self.mx.lock() {
            m.entry(domain.to_string()).or_default().push(Mx { preference, host: host.to_string() });
        }
        self
    }

    pub fn with_ip(self, host: &str, ip: IpAddr) -> Self {
        if let Ok(mut m) = self.ips.lock() {
            m.entry(host.to_string()).or_default().push(ip);
        }
        self
    }

    fn known(&self, name: &str) -> bool {
        self.mx.lock().map(|m| m.contains_key(name)).unwrap_or(false)
            || self.ips.lock().map(|m| m.contains_key(name)).unwrap_or(false)
    }

    fn failing(&self, name: &str) -> bool {
        self.fail.lock().map(|f| f.iter().any(|n| n == name)).unwrap_or(false)
    }
}

impl Resolver for StaticResolver {
    async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        if self.failing(domain) {
            return Err(DnsError::Temporary("SERVFAIL (static table)".into()));
        }
        match self.mx.lock().ok().and_then(|m| m.get(domain).cloned()) {
            Some(v) => Ok(v),
            None if self.known(domain) => Err(DnsError::NoRecords),
            None => Err(DnsError::NxDomain),
        }
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if self.failing(host) {
            return Err(DnsError::Temporary("SERVFAIL (static table)".into()));
        }
        match self.ips.lock().ok().and_then(|m| m.get(host).cloned()) {
            Some(v) => Ok(v),
            None if self.known(host) => Err(DnsError::NoRecords),
            None => Err(DnsError::NxDomain),
        }
    }
}
