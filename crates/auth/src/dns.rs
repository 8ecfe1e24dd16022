//! DNS for authentication, behind a trait: the real resolver (hickory,
//! from /etc/resolv.conf or the configured servers) and a fixed table for
//! tests (the OpenSPF suite's zones). No test reaches public DNS: the
//! integration tests point the real resolver at a stub on loopback.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{ResolverBuilder, TokioResolver};

/// Why a lookup gave no records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsFailure {
    /// The name does not exist (RCODE 3, NXDOMAIN).
    #[error("no such name")]
    NxDomain,
    /// The name exists but has no record of that type (NODATA).
    #[error("no records of that type")]
    NoData,
    /// Timeout, SERVFAIL, a refused query, network trouble.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

pub type Answer<T> = Result<Vec<T>, DnsFailure>;

/// The lookups SPF and DMARC need. Names are absolute (a trailing dot is
/// optional); resolv.conf's search list never applies.
pub trait Dns: Send + Sync {
    /// TXT records, each with its strings joined (RFC 7208 §3.3).
    fn txt(&self, name: &str) -> impl Future<Output = Answer<Vec<u8>>> + Send;
    fn a(&self, name: &str) -> impl Future<Output = Answer<Ipv4Addr>> + Send;
    fn aaaa(&self, name: &str) -> impl Future<Output = Answer<Ipv6Addr>> + Send;
    /// (preference, exchange without the trailing dot, lower case).
    fn mx(&self, name: &str) -> impl Future<Output = Answer<(u16, String)>> + Send;
    /// Names for an address (the in-addr.arpa / ip6.arpa PTR records).
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Answer<String>> + Send;
}

/// A hickory resolver's builder: `servers` empty means the system
/// configuration, otherwise those servers (UDP, then TCP).
pub fn builder(servers: &[SocketAddr]) -> Result<ResolverBuilder<TokioRuntimeProvider>, String> {
    if servers.is_empty() {
        return TokioResolver::builder_tokio().map_err(|e| format!("cannot read the system DNS configuration: {e}"));
    }
    let mut config = ResolverConfig::from_name_servers(Vec::new());
    for s in servers {
        let mut udp = ConnectionConfig::udp();
        udp.port = s.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = s.port();
        config.add_name_server(NameServerConfig::new(s.ip(), true, vec![udp, tcp]));
    }
    Ok(TokioResolver::builder_with_config(config, Default::default()))
}

/// A hickory resolver: `servers` empty means the system configuration.
/// `timeout` is per query (one try per server); the resolver caches
/// answers by their TTL, `cache_entries` at most.
pub fn resolver(
    servers: &[SocketAddr],
    timeout: Option<Duration>,
    cache_entries: u64,
) -> Result<TokioResolver, String> {
    let mut builder = builder(servers)?;
    let opts = builder.options_mut();
    // Absolute names only: a mail domain never takes the search list.
    opts.ndots = 0;
    opts.cache_size = cache_entries;
    if let Some(t) = timeout {
        opts.timeout = t;
        opts.attempts = 1;
    }
    builder.build().map_err(|e| format!("cannot start the DNS resolver: {e}"))
}

/// `name.` (absolute).
pub fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

/// A hickory error as a [`DnsFailure`].
pub fn failure(e: hickory_resolver::net::NetError) -> DnsFailure {
    if e.is_nx_domain() {
        DnsFailure::NxDomain
    } else if e.is_no_records_found() {
        DnsFailure::NoData
    } else {
        DnsFailure::Temporary(e.to_string())
    }
}

/// Records of one type out of an answer (CNAMEs followed by the resolver).
async fn lookup<T>(r: &TokioResolver, name: &str, rtype: RecordType, pick: impl Fn(&RData) -> Option<T>) -> Answer<T> {
    let answer = r.lookup(fqdn(name).as_str(), rtype).await.map_err(failure)?;
    let out: Vec<T> = answer.answers().iter().filter_map(|rec| pick(&rec.data)).collect();
    if out.is_empty() { Err(DnsFailure::NoData) } else { Ok(out) }
}

impl Dns for TokioResolver {
    async fn txt(&self, name: &str) -> Answer<Vec<u8>> {
        lookup(self, name, RecordType::TXT, |d| match d {
            RData::TXT(t) => Some(t.txt_data.iter().flat_map(|s| s.iter().copied()).collect()),
            _ => None,
        })
        .await
    }

    async fn a(&self, name: &str) -> Answer<Ipv4Addr> {
        lookup(self, name, RecordType::A, |d| match d {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    async fn aaaa(&self, name: &str) -> Answer<Ipv6Addr> {
        lookup(self, name, RecordType::AAAA, |d| match d {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    async fn mx(&self, name: &str) -> Answer<(u16, String)> {
        lookup(self, name, RecordType::MX, |d| match d {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii().trim_end_matches('.').to_ascii_lowercase())),
            _ => None,
        })
        .await
    }

    async fn ptr(&self, ip: IpAddr) -> Answer<String> {
        lookup(self, &reverse_name(ip), RecordType::PTR, |d| match d {
            RData::PTR(p) => Some(p.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        })
        .await
    }
}

/// `4.3.2.1.in-addr.arpa` / nibbles `.ip6.arpa` (RFC 1035 §3.5, RFC 3596 §2.5).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0xf, byte >> 4] {
                    s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    s.push('.');
                }
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// One name's records in a [`Table`].
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub txt: Vec<Vec<u8>>,
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
    pub mx: Vec<(u16, String)>,
    pub ptr: Vec<String>,
    /// Every query for a type this name has no records of fails
    /// temporarily (a SERVFAIL, a timeout); the records it has are still
    /// answered, as the OpenSPF suite's TIMEOUT entries expect (a TXT record
    /// answered, the other types timing out).
    pub timeout: bool,
}

/// A fixed zone: a name missing from the table is NXDOMAIN; a name with
/// no record of the type asked is NODATA. Names are matched without case
/// and without the trailing dot.
#[derive(Debug, Clone, Default)]
pub struct Table(pub HashMap<String, Records>);

impl Table {
    pub fn entry(&mut self, name: &str) -> &mut Records {
        self.0.entry(key(name)).or_default()
    }

    fn answer<T: Clone>(&self, name: &str, pick: impl Fn(&Records) -> &Vec<T>) -> Answer<T> {
        match self.0.get(&key(name)) {
            None => Err(DnsFailure::NxDomain),
            Some(r) if !pick(r).is_empty() => Ok(pick(r).clone()),
            Some(r) if r.timeout => Err(DnsFailure::Temporary("timeout".into())),
            Some(_) => Err(DnsFailure::NoData),
        }
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Dns for Table {
    async fn txt(&self, name: &str) -> Answer<Vec<u8>> {
        self.answer(name, |r| &r.txt)
    }
    async fn a(&self, name: &str) -> Answer<Ipv4Addr> {
        self.answer(name, |r| &r.a)
    }
    async fn aaaa(&self, name: &str) -> Answer<Ipv6Addr> {
        self.answer(name, |r| &r.aaaa)
    }
    async fn mx(&self, name: &str) -> Answer<(u16, String)> {
        self.answer(name, |r| &r.mx)
    }
    async fn ptr(&self, ip: IpAddr) -> Answer<String> {
        self.answer(&reverse_name(ip), |r| &r.ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name("192.0.2.10".parse().unwrap()), "10.2.0.192.in-addr.arpa");
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[tokio::test]
    async fn table_answers_nxdomain_nodata_and_records() {
        let mut t = Table::default();
        t.entry("Example.ORG.").a.push("192.0.2.1".parse().unwrap());
        assert_eq!(t.a("example.org").await, Ok(vec!["192.0.2.1".parse().unwrap()]));
        assert_eq!(t.txt("example.org").await, Err(DnsFailure::NoData));
        assert_eq!(t.txt("nowhere.example").await, Err(DnsFailure::NxDomain));
        t.entry("slow.example").timeout = true;
        assert!(matches!(t.a("slow.example").await, Err(DnsFailure::Temporary(_))));
        // A timing-out name still answers the records it has.
        t.entry("slow.example").txt.push(b"v=spf1 -all".to_vec());
        assert_eq!(t.txt("slow.example").await, Ok(vec![b"v=spf1 -all".to_vec()]));
        assert!(matches!(t.mx("slow.example").await, Err(DnsFailure::Temporary(_))));
    }
}
