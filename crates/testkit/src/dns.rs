//! A stub DNS server on loopback (UDP and TCP on one port), answering from
//! a zone the test fills: what SPF, DKIM, DMARC, MTA-STS and TLSA lookups
//! need, so no test ever asks a real resolver. Names that are not in the
//! zone are NXDOMAIN (with an SOA for negative caching); a name with no
//! record of the type asked is NODATA; a name marked `silent` is never
//! answered (a timeout) and one marked `servfail` fails.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

#[derive(Default)]
struct Zone {
    records: HashMap<String, Vec<RData>>,
    silent: Vec<String>,
    servfail: Vec<String>,
    /// TTL of every answer (60 unless a test changes records as it runs).
    ttl: Option<u32>,
}

/// The running server; dropping it stops it.
pub struct StubDns {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for StubDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl StubDns {
    /// Listen on 127.0.0.1, the same port for UDP and TCP.
    pub async fn start() -> std::io::Result<StubDns> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
    }

    /// Listen on `addr` (UDP and TCP); port 0 picks one free for both.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<StubDns> {
        let mut last = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind(addr).await?;
            let bound = udp.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => {
                    let zone = Arc::new(Mutex::new(Zone::default()));
                    let queries = Arc::new(AtomicU64::new(0));
                    let z = zone.clone();
                    let respond: Respond = Arc::new(move |q| answer(&z, q).map(|out| (out, 512)));
                    let tasks = vec![
                        tokio::spawn(serve_udp(udp, respond.clone(), queries.clone())),
                        tokio::spawn(serve_tcp(tcp, respond, queries.clone())),
                    ];
                    return Ok(StubDns { addr: bound, zone, queries, tasks });
                }
                Err(e) if addr.port() == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no port")))
    }

    /// Queries answered (or left unanswered) so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    fn add(&self, name: &str, data: RData) -> &Self {
        if let Ok(mut z) = self.zone.lock() {
            z.records.entry(key(name)).or_default().push(data);
        }
        self
    }

    /// A TXT record; text longer than 255 octets is split into strings.
    pub fn txt(&self, name: &str, text: &str) -> &Self {
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
        self.add(name, RData::TXT(TXT::from_bytes(chunks)))
    }

    pub fn a(&self, name: &str, ip: &str) -> &Self {
        self.add(name, RData::A(A(Ipv4Addr::from_str(ip).expect("an IPv4 address"))))
    }

    pub fn aaaa(&self, name: &str, ip: &str) -> &Self {
        self.add(name, RData::AAAA(AAAA(Ipv6Addr::from_str(ip).expect("an IPv6 address"))))
    }

    pub fn mx(&self, name: &str, preference: u16, host: &str) -> &Self {
        self.add(name, RData::MX(MX::new(preference, fqdn(host))))
    }

    /// A PTR record for `ip` (its in-addr.arpa / ip6.arpa name).
    pub fn ptr(&self, ip: std::net::IpAddr, host: &str) -> &Self {
        self.add(&Name::from(ip).to_ascii(), RData::PTR(PTR(fqdn(host))))
    }

    /// Any record (TLSA, CNAME, ...).
    pub fn record(&self, name: &str, data: RData) -> &Self {
        self.add(name, data)
    }

    /// Answers carry this TTL from now on (0: resolvers do not cache them,
    /// for tests that change records while they run).
    pub fn ttl(&self, ttl: u32) -> &Self {
        if let Ok(mut z) = self.zone.lock() {
            z.ttl = Some(ttl);
        }
        self
    }

    /// Forget every record at `name` (it no longer exists).
    pub fn remove(&self, name: &str) -> &Self {
        if let Ok(mut z) = self.zone.lock() {
            z.records.remove(&key(name));
        }
        self
    }

    /// Queries for `name` are never answered.
    pub fn silent(&self, name: &str) -> &Self {
        if let Ok(mut z) = self.zone.lock() {
            z.silent.push(key(name));
        }
        self
    }

    /// Queries for `name` get SERVFAIL.
    pub fn servfail(&self, name: &str) -> &Self {
        if let Ok(mut z) = self.zone.lock() {
            z.servfail.push(key(name));
        }
        self
    }
}

fn fqdn(name: &str) -> Name {
    let absolute = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    Name::from_ascii(absolute).expect("a domain name")
}

/// The reply to one query; None: stay silent.
fn answer(zone: &Mutex<Zone>, query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let q = request.queries.first()?.clone();
    let name = key(&q.name().to_ascii());
    let mut reply = Message::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(q.clone());
    let zone = zone.lock().ok()?;
    if zone.silent.contains(&name) {
        return None;
    }
    if zone.servfail.contains(&name) {
        reply.metadata.response_code = ResponseCode::ServFail;
        return reply.to_vec().ok();
    }
    match zone.records.get(&name) {
        None => {
            reply.metadata.response_code = ResponseCode::NXDomain;
            reply.add_authority(soa(zone.ttl.unwrap_or(60)));
        }
        Some(records) => {
            let wanted = q.query_type();
            let mut any = false;
            for r in records {
                let rtype = r.record_type();
                if rtype == wanted || rtype == RecordType::CNAME {
                    reply.add_answer(Record::from_rdata(q.name().clone(), zone.ttl.unwrap_or(60), r.clone()));
                    any = true;
                }
            }
            if !any {
                reply.add_authority(soa(zone.ttl.unwrap_or(60)));
            }
        }
    }
    reply.to_vec().ok()
}

fn soa(ttl: u32) -> Record {
    let soa = SOA::new(fqdn("ns.stub.test"), fqdn("hostmaster.stub.test"), 1, 3600, 600, 86400, ttl);
    Record::from_rdata(fqdn("stub.test"), ttl, RData::SOA(soa))
}

/// Answers one query: the reply and the most octets it may take over UDP.
pub(crate) type Respond = Arc<dyn Fn(&[u8]) -> Option<(Vec<u8>, usize)> + Send + Sync>;

pub(crate) async fn serve_udp(socket: UdpSocket, respond: Respond, queries: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 4096];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        queries.fetch_add(1, Ordering::Relaxed);
        if let Some((mut out, max)) = respond(&buf[..n]) {
            // RFC 1035 §4.2.1: too long, truncate; the client asks again over TCP.
            if out.len() > max
                && let Ok(mut m) = Message::from_vec(&out)
            {
                m.answers.clear();
                m.authorities.clear();
                m.metadata.truncation = true;
                out = m.to_vec().unwrap_or_default();
            }
            let _ = socket.send_to(&out, peer).await;
        }
    }
}

pub(crate) async fn serve_tcp(listener: TcpListener, respond: Respond, queries: Arc<AtomicU64>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let (respond, queries) = (respond.clone(), queries.clone());
        tokio::spawn(async move {
            loop {
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                queries.fetch_add(1, Ordering::Relaxed);
                let Some((out, _)) = respond(&query) else { continue };
                let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&out);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}
