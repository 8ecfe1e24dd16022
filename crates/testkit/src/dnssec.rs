//! A loopback DNS server answering from a DNSSEC-signed root zone ".",
//! signed on the fly with one Ed25519 key: the trust anchor of a
//! validating resolver under test (DANE's). Everything lives in the root
//! zone (`mx.secure.test.` is just an owner name in "."), so one key signs
//! every secure name and no DS chain is needed; NSEC (not NSEC3) proves
//! NODATA and NXDOMAIN (RFC 4035 §3.1.3). Optionally:
//! - an unsigned child zone delegated without DS (the parent's signed NSEC
//!   at the cut lists NS and no DS): its answers are provably insecure;
//! - corrupted RRSIGs for chosen RRsets: bogus.
//!
//! A name tells nothing of the stub's other behaviour ([`crate::dns::StubDns`]
//! is the unsigned one); answers honour the EDNS payload size and copy
//! the DO bit, larger ones are truncated over UDP.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::dnssec::crypto::Ed25519SigningKey;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, NSEC, RRSIG, SigInput};
use hickory_proto::dnssec::{DnssecSigner, PublicKey, PublicKeyBuf, SigningKey, TBS};
use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
pub use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, MX, NS, SOA, TLSA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, SerialNumber};
use tokio::net::{TcpListener, UdpSocket};

use crate::dns::{Respond, serve_tcp, serve_udp};

const TTL: u32 = 300;

type Rrsets = BTreeMap<Name, BTreeMap<RecordType, Vec<RData>>>;

struct Zone {
    signer: DnssecSigner,
    /// The signed root zone (authoritative data, sorted canonically).
    signed: Rrsets,
    /// Unsigned child zones, by apex, delegated from "." without a DS.
    unsigned: BTreeMap<Name, Rrsets>,
    /// RRsets (owner, type) whose RRSIG is corrupted.
    corrupt: HashSet<(Name, RecordType)>,
}

pub struct SignedDns {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    public_key: PublicKeyBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SignedDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn fqdn(name: &str) -> Name {
    let n = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    Name::from_ascii(n).expect("a domain name")
}

fn soa_rdata(apex: &Name) -> RData {
    let ns = Name::from_ascii("ns").unwrap().append_domain(apex).unwrap();
    let rname = Name::from_ascii("hostmaster").unwrap().append_domain(apex).unwrap();
    RData::SOA(SOA::new(ns, rname, 1, 3600, 600, 86400, 60))
}

impl SignedDns {
    pub async fn start() -> std::io::Result<SignedDns> {
        let pkcs8 = Ed25519SigningKey::generate_pkcs8().map_err(std::io::Error::other)?;
        let key = Ed25519SigningKey::from_pkcs8(&pkcs8).map_err(std::io::Error::other)?;
        let public_key = key.to_public_key().map_err(std::io::Error::other)?;
        // zone key + SEP (flags 257): one key is both KSK and ZSK.
        let dnskey = DNSKEY::from_key(&public_key);
        let signer = DnssecSigner::new(dnskey.clone(), Box::new(key), Name::root(), Duration::from_secs(86400));

        let mut signed = Rrsets::new();
        let root = signed.entry(Name::root()).or_default();
        root.insert(RecordType::SOA, vec![soa_rdata(&Name::root())]);
        root.insert(RecordType::NS, vec![RData::NS(NS(fqdn("ns.root-servers.test")))]);
        root.insert(RecordType::DNSKEY, vec![RData::DNSSEC(DNSSECRData::DNSKEY(dnskey))]);

        let zone = Arc::new(Mutex::new(Zone { signer, signed, unsigned: BTreeMap::new(), corrupt: HashSet::new() }));
        let udp = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = udp.local_addr()?;
        let tcp = TcpListener::bind(addr).await?;
        let z = zone.clone();
        let respond: Respond = Arc::new(move |q| respond(&z, q));
        let queries = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks = vec![
            tokio::spawn(serve_udp(udp, respond.clone(), queries.clone())),
            tokio::spawn(serve_tcp(tcp, respond, queries)),
        ];
        Ok(SignedDns { addr, zone, public_key, tasks })
    }

    /// The trust anchor a resolver must be given (the root DNSKEY), in
    /// zone-file form as /usr/share/dns/root.key holds the real one.
    pub fn trust_anchor(&self) -> String {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode(self.public_key.public_bytes());
        format!(". IN DNSKEY 257 3 {} {key}\n", u8::from(self.public_key.algorithm()))
    }

    pub fn a(&self, name: &str, ip: std::net::Ipv4Addr) -> &Self {
        self.add(name, RData::A(A(ip)))
    }

    pub fn mx(&self, name: &str, preference: u16, host: &str) -> &Self {
        self.add(name, RData::MX(MX::new(preference, fqdn(host))))
    }

    /// A TLSA record (RFC 6698): usage, selector, matching type, data.
    pub fn tlsa(&self, name: &str, usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> &Self {
        let t = TLSA::new(CertUsage::from(usage), Selector::from(selector), Matching::from(matching), data);
        self.add(name, RData::TLSA(t))
    }

    /// A record in the signed zone "." (or, if `name` is under an unsigned
    /// child zone, in that zone).
    pub fn add(&self, name: &str, data: RData) -> &Self {
        let name = fqdn(name);
        let mut z = self.zone.lock().unwrap();
        let apex = z.unsigned.keys().find(|apex| apex.zone_of(&name)).cloned();
        let zone = match apex {
            Some(apex) => z.unsigned.get_mut(&apex).unwrap(),
            None => &mut z.signed,
        };
        zone.entry(name.clone()).or_default().entry(data.record_type()).or_default().push(data);
        self
    }

    /// An unsigned child zone delegated from "." without DS (Insecure).
    pub fn insecure_zone(&self, apex: &str) -> &Self {
        let apex = fqdn(apex);
        let ns = RData::NS(NS(Name::from_ascii("ns").unwrap().append_domain(&apex).unwrap()));
        let mut z = self.zone.lock().unwrap();
        // The delegation NS in the parent (not signed; appears in the NSEC chain).
        z.signed.entry(apex.clone()).or_default().insert(RecordType::NS, vec![ns.clone()]);
        let mut child = Rrsets::new();
        let at = child.entry(apex.clone()).or_default();
        at.insert(RecordType::SOA, vec![soa_rdata(&apex)]);
        at.insert(RecordType::NS, vec![ns]);
        z.unsigned.insert(apex, child);
        self
    }

    /// Serve a bad signature on this RRset.
    pub fn corrupt(&self, name: &str, rtype: RecordType) -> &Self {
        self.zone.lock().unwrap().corrupt.insert((fqdn(name), rtype));
        self
    }
}

impl Zone {
    fn rrsig(&self, name: &Name, rtype: RecordType, rdatas: &[RData]) -> Record {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as u32;
        let records: Vec<Record> = rdatas.iter().map(|d| Record::from_rdata(name.clone(), TTL, d.clone())).collect();
        let input = SigInput {
            type_covered: rtype,
            algorithm: self.signer.key().algorithm(),
            num_labels: name.num_labels(),
            original_ttl: TTL,
            sig_expiration: SerialNumber::new(now + 86400),
            sig_inception: SerialNumber::new(now - 3600),
            key_tag: self.signer.calculate_key_tag().expect("key tag"),
            signer_name: Name::root(),
        };
        let tbs = TBS::from_input(name, DNSClass::IN, &input, records.iter()).expect("tbs");
        let mut sig = self.signer.sign(&tbs).expect("sign");
        if self.corrupt.contains(&(name.clone(), rtype)) {
            sig[0] ^= 0xff;
        }
        Record::from_rdata(name.clone(), TTL, RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))))
    }

    /// The RRset and its RRSIG.
    fn signed_rrset(&self, name: &Name, rtype: RecordType, rdatas: &[RData]) -> Vec<Record> {
        let mut out: Vec<Record> = rdatas.iter().map(|d| Record::from_rdata(name.clone(), TTL, d.clone())).collect();
        out.push(self.rrsig(name, rtype, rdatas));
        out
    }

    /// The NSEC at an owner name of the signed zone, with its RRSIG.
    fn nsec_at(&self, owner: &Name) -> Vec<Record> {
        let next = self
            .signed
            .range::<Name, _>((std::ops::Bound::Excluded(owner), std::ops::Bound::Unbounded))
            .next()
            .map(|(n, _)| n.clone())
            .unwrap_or_else(Name::root);
        let types: Vec<RecordType> = self.signed[owner].keys().copied().collect();
        let nsec = RData::DNSSEC(DNSSECRData::NSEC(NSEC::new_cover_self(next, types)));
        self.signed_rrset(owner, RecordType::NSEC, &[nsec])
    }

    /// The owner name whose NSEC covers `name` (the canonical predecessor).
    fn covering(&self, name: &Name) -> Name {
        self.signed.range::<Name, _>(..name).next_back().map(|(n, _)| n.clone()).unwrap_or_else(Name::root)
    }

    /// `name` exists in the signed zone (has data or descendants).
    fn exists(&self, name: &Name) -> bool {
        self.signed.keys().any(|n| name.zone_of(n))
    }

    fn signed_negative(&self, reply: &mut Message, qname: &Name, nxdomain: bool) {
        let soa = self.signed[&Name::root()][&RecordType::SOA].clone();
        for r in self.signed_rrset(&Name::root(), RecordType::SOA, &soa) {
            reply.add_authority(r);
        }
        if nxdomain {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        let mut owners = vec![if self.signed.contains_key(qname) { qname.clone() } else { self.covering(qname) }];
        if nxdomain {
            // Closest encloser, then the NSEC covering its wildcard.
            let mut ce = qname.base_name();
            while !self.exists(&ce) {
                ce = ce.base_name();
            }
            let wildcard = Name::from_ascii("*").unwrap().append_domain(&ce).unwrap();
            let w = self.covering(&wildcard);
            if !owners.contains(&w) {
                owners.push(w);
            }
        }
        for o in owners {
            for r in self.nsec_at(&o) {
                reply.add_authority(r);
            }
        }
    }

    fn answer(&self, reply: &mut Message, qname: &Name, qtype: RecordType) {
        // Under an unsigned child zone (except the DS at its cut, which the parent answers).
        if let Some((apex, child)) = self.unsigned.iter().find(|(apex, _)| apex.zone_of(qname))
            && !(qname == apex && qtype == RecordType::DS)
        {
            match child.get(qname) {
                Some(types) => match types.get(&qtype) {
                    Some(rdatas) => {
                        for d in rdatas {
                            reply.add_answer(Record::from_rdata(qname.clone(), TTL, d.clone()));
                        }
                    }
                    None => {
                        reply.add_authority(Record::from_rdata(apex.clone(), TTL, soa_rdata(apex)));
                    }
                },
                None => {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                    reply.add_authority(Record::from_rdata(apex.clone(), TTL, soa_rdata(apex)));
                }
            }
            return;
        }
        match self.signed.get(qname) {
            Some(types) => match types.get(&qtype) {
                Some(rdatas) if !(qtype == RecordType::NS && self.unsigned.contains_key(qname)) => {
                    for r in self.signed_rrset(qname, qtype, rdatas) {
                        reply.add_answer(r);
                    }
                }
                _ => self.signed_negative(reply, qname, false),
            },
            None => {
                let nx = !self.exists(qname);
                self.signed_negative(reply, qname, nx)
            }
        }
    }
}

fn respond(zone: &Mutex<Zone>, query: &[u8]) -> Option<(Vec<u8>, usize)> {
    let request = Message::from_vec(query).ok()?;
    let q = request.queries.first()?.clone();
    let mut reply = Message::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(q.clone());
    let mut max = 512;
    if let Some(edns) = &request.edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(edns.flags().dnssec_ok);
        reply.set_edns(e);
        max = usize::from(edns.max_payload().max(512));
    }
    zone.lock().ok()?.answer(&mut reply, &q.name().clone(), q.query_type());
    Some((reply.to_vec().ok()?, max))
}
