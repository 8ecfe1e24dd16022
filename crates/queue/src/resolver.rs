//! DNS for delivery, behind a trait: the real resolver (hickory) and a
//! table-driven one for tests and static setups. No test reaches public DNS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use facteur_auth::dns::{Dns, DnsFailure, failure, fqdn};

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
    /// TXT records, each with its strings joined (MTA-STS discovery).
    fn txt(&self, name: &str) -> impl Future<Output = Result<Vec<String>, DnsError>> + Send;
}

/// hickory-resolver, from /etc/resolv.conf or the configured servers
/// (built as sender authentication's is, facteur_auth::dns).
pub struct DnsResolver(hickory_resolver::TokioResolver);

impl DnsResolver {
    /// `servers` empty: the system configuration.
    pub fn new(servers: &[SocketAddr]) -> Result<DnsResolver, String> {
        Self::with_timeout(servers, None)
    }

    /// As [`DnsResolver::new`], with one try per server and this timeout.
    pub fn with_timeout(servers: &[SocketAddr], timeout: Option<std::time::Duration>) -> Result<DnsResolver, String> {
        facteur_auth::dns::resolver(servers, timeout, 1024).map(DnsResolver)
    }
}

fn classify(e: DnsFailure) -> DnsError {
    match e {
        DnsFailure::NxDomain => DnsError::NxDomain,
        DnsFailure::NoData => DnsError::NoRecords,
        DnsFailure::Temporary(why) => DnsError::Temporary(why),
    }
}

impl Resolver for DnsResolver {
    async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        let answer = Dns::mx(&self.0, domain).await.map_err(classify)?;
        Ok(answer.into_iter().map(|(preference, host)| Mx { preference, host }).collect())
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let answer = self.0.lookup_ip(fqdn(host).as_str()).await.map_err(|e| classify(failure(e)))?;
        Ok(answer.iter().collect())
    }

    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let answer = Dns::txt(&self.0, name).await.map_err(classify)?;
        Ok(answer.into_iter().map(|t| String::from_utf8_lossy(&t).into_owned()).collect())
    }
}

/// A fixed table: MX records and addresses by name. Names missing from
/// both tables are NXDOMAIN; `fail` makes a name fail temporarily.
#[derive(Default)]
pub struct StaticResolver {
    pub mx: Mutex<HashMap<String, Vec<Mx>>>,
    pub ips: Mutex<HashMap<String, Vec<IpAddr>>>,
    pub txt: Mutex<HashMap<String, Vec<String>>>,
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

    pub fn with_txt(self, name: &str, text: &str) -> Self {
        if let Ok(mut m) = self.txt.lock() {
            m.entry(name.to_string()).or_default().push(text.to_string());
        }
        self
    }

    fn known(&self, name: &str) -> bool {
        self.mx.lock().map(|m| m.contains_key(name)).unwrap_or(false)
            || self.ips.lock().map(|m| m.contains_key(name)).unwrap_or(false)
            || self.txt.lock().map(|m| m.contains_key(name)).unwrap_or(false)
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

    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        if self.failing(name) {
            return Err(DnsError::Temporary("SERVFAIL (static table)".into()));
        }
        match self.txt.lock().ok().and_then(|m| m.get(name).cloned()) {
            Some(v) => Ok(v),
            None if self.known(name) => Err(DnsError::NoRecords),
            None => Err(DnsError::NxDomain),
        }
    }
}
