//! DANE for SMTP (RFC 7672): an MX host that publishes TLSA records in a
//! DNSSEC-signed zone gets TLS whose certificate matches one of them, or
//! no mail.
//!
//! The lookups go through a resolver of their own that validates DNSSEC
//! itself (hickory, from the IANA root keys or a configured trust anchor
//! file), so no upstream resolver's AD bit is taken on trust. What a
//! lookup proves decides (§2.2):
//! - the MX RRset must be secure, or DANE does not apply to the domain
//!   (§2.2.1; a bogus MX answer is treated as not secure and logged, as a
//!   Postfix whose resolver does not validate would);
//! - `_PORT._tcp.MXHOST` TLSA secure: TLS required and the certificate
//!   matched against the usable records (DANE-EE 3, DANE-TA 2; PKIX 0/1
//!   are unusable, §3.1.3); when none is usable, TLS is still required
//!   but not authenticated (§2.2);
//! - TLSA denied securely or insecure: no DANE for that host;
//! - TLSA bogus or unanswered: that host is not used (§2.2: "treated as
//!   unavailable"), the next MX is tried, the mail waits if none is left.
//!
//! The certificate check is a rustls verifier ([`DaneVerifier`]): DANE-EE
//! matches the leaf alone (its names and dates do not matter, §3.1.1);
//! DANE-TA finds the trust anchor in the presented chain and verifies the
//! chain from it, names and dates included, for the MX host name (§3.1.2,
//! §3.2.2).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::dnssec::{Algorithm, Proof, PublicKeyBuf, TrustAnchors};
use hickory_resolver::proto::rr::{LowerName, Name, RData, Record, RecordType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::Digest;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// RFC 7672 §3.1: DANE-TA(2) and DANE-EE(3), whole certificate or
    /// public key, exact or SHA-256/512.
    pub fn usable(&self) -> bool {
        matches!(self.usage, 2 | 3) && self.selector <= 1 && self.matching <= 2
    }

    /// Whether the certificate (DER) matches this record's selector,
    /// matching type and data.
    pub fn matches(&self, cert: &[u8]) -> bool {
        let selected = match self.selector {
            0 => cert.to_vec(),
            1 => match x509_parser::parse_x509_certificate(cert) {
                Ok((_, c)) => c.tbs_certificate.subject_pki.raw.to_vec(),
                Err(_) => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data,
            1 => sha2::Sha256::digest(&selected).as_slice() == self.data.as_slice(),
            2 => sha2::Sha512::digest(&selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

impl std::fmt::Display for Tlsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex: String = self.data.iter().take(8).map(|b| format!("{b:02x}")).collect();
        write!(f, "{} {} {} {hex}…", self.usage, self.selector, self.matching)
    }
}

/// What a TLSA lookup proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Secure records (usable or not).
    Secure(Vec<Tlsa>),
    /// No records, proven (NSEC), or an unsigned zone: no DANE here.
    None,
    /// Validation failed, or no answer: the host must not be used now.
    Failed(String),
}

/// The validating resolver DANE asks.
pub struct Dane {
    resolver: TokioResolver,
}

impl Dane {
    /// `servers` empty: the system's (/etc/resolv.conf); `anchors`: a file
    /// of DNSKEY records in zone-file form (`. IN DNSKEY 257 3 8 AwEAA…`,
    /// as /usr/share/dns/root.key), default the IANA root keys.
    pub fn new(servers: &[std::net::SocketAddr], anchors: Option<&Path>) -> Result<Dane, String> {
        let mut builder = facteur_auth::dns::builder(servers)?;
        let options = builder.options_mut();
        options.validate = true;
        options.ndots = 0;
        options.use_hosts_file = ResolveHosts::Never;
        options.timeout = Duration::from_secs(5);
        options.attempts = 1;
        if let Some(file) = anchors {
            builder = builder.with_trust_anchor(Arc::new(read_anchors(file)?));
        }
        let resolver = builder.build().map_err(|e| format!("DNSSEC resolver: {e}"))?;
        Ok(Dane { resolver })
    }

    /// Whether `domain`'s MX RRset is DNSSEC-secure (§2.2.1).
    pub async fn mx_secure(&self, domain: &str) -> bool {
        match self.resolver.lookup(facteur_auth::dns::fqdn(domain), RecordType::MX).await {
            Ok(l) => weakest(l.answers().iter().filter(|r| r.record_type() == RecordType::MX)) == Proof::Secure,
            Err(NetError::Dns(HickoryDnsError::DnssecBogus)) => {
                tracing::warn!(domain, "the MX records fail DNSSEC validation; DANE not applied");
                false
            }
            Err(_) => false,
        }
    }

    /// The TLSA records at `_PORT._tcp.HOST` and what DNSSEC proves of them.
    pub async fn tlsa(&self, host: &str, port: u16) -> Lookup {
        let name = format!("_{port}._tcp.{}", facteur_auth::dns::fqdn(host));
        match self.resolver.lookup(name.as_str(), RecordType::TLSA).await {
            Ok(l) => {
                let records: Vec<&Record> =
                    l.answers().iter().filter(|r| r.record_type() == RecordType::TLSA).collect();
                match weakest(records.iter().copied()) {
                    Proof::Secure => Lookup::Secure(
                        records
                            .iter()
                            .filter_map(|r| match &r.data {
                                RData::TLSA(t) => Some(Tlsa {
                                    usage: t.cert_usage.into(),
                                    selector: t.selector.into(),
                                    matching: t.matching.into(),
                                    data: t.cert_data.clone(),
                                }),
                                _ => None,
                            })
                            .collect(),
                    ),
                    Proof::Insecure => Lookup::None,
                    p => Lookup::Failed(format!("TLSA records at {name} are not proven ({p})")),
                }
            }
            Err(NetError::Dns(HickoryDnsError::NoRecordsFound(no))) => {
                let authorities = no.authorities.as_deref().unwrap_or(&[]);
                let nsec = authorities
                    .iter()
                    .any(|r| matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3) && r.proof.is_secure());
                match weakest(authorities.iter()) {
                    Proof::Secure if nsec => Lookup::None,
                    Proof::Insecure => Lookup::None,
                    p => Lookup::Failed(format!("the absence of TLSA records at {name} is not proven ({p})")),
                }
            }
            Err(NetError::Dns(HickoryDnsError::DnssecBogus)) => {
                Lookup::Failed(format!("TLSA lookup at {name} fails DNSSEC validation (bogus)"))
            }
            Err(NetError::Dns(HickoryDnsError::Nsec { proof: Proof::Insecure, .. })) => Lookup::None,
            Err(e) => Lookup::Failed(format!("TLSA lookup at {name} failed: {e}")),
        }
    }
}

/// The weakest proof among records (RRSIGs left out); Indeterminate
/// (never secure) when there are none.
fn weakest<'a>(records: impl Iterator<Item = &'a Record>) -> Proof {
    records.filter(|r| r.record_type() != RecordType::RRSIG).map(|r| r.proof).min().unwrap_or(Proof::Indeterminate)
}

/// What is wrong with a trust anchor file, if anything (config checks).
pub fn anchor_file_problem(file: &Path) -> Option<String> {
    read_anchors(file).err()
}

/// DNSKEY records in zone-file form, one per line (`;` comments).
fn read_anchors(file: &Path) -> Result<TrustAnchors, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("trust anchor file {}: {e}", file.display()))?;
    let mut anchors = TrustAnchors::empty();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| format!("trust anchor file {} line {}: {why}: {line:?}", file.display(), i + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| f.eq_ignore_ascii_case("DNSKEY")).ok_or_else(|| bad("no DNSKEY"))?;
        let [flags, protocol, algorithm, key @ ..] = &fields[at + 1..] else { return Err(bad("too few fields")) };
        if flags.parse::<u16>().is_err() || *protocol != "3" {
            return Err(bad("flags or protocol"));
        }
        let algorithm = algorithm.parse::<u8>().map_err(|_| bad("algorithm"))?;
        use base64::Engine as _;
        let key =
            base64::engine::general_purpose::STANDARD.decode(key.concat()).map_err(|_| bad("key is not base64"))?;
        let name = Name::from_ascii(fields[0]).map_err(|_| bad("owner name"))?;
        anchors.insert_with_name(&PublicKeyBuf::new(key, Algorithm::from_u8(algorithm)), LowerName::from(name));
        n += 1;
    }
    if n == 0 {
        return Err(format!("trust anchor file {} holds no DNSKEY record", file.display()));
    }
    Ok(anchors)
}

/// Checks a server's certificate chain against TLSA records (§3.1).
#[derive(Debug)]
pub struct DaneVerifier {
    tlsa: Arc<[Tlsa]>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl DaneVerifier {
    pub fn new(tlsa: Arc<[Tlsa]>, provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        DaneVerifier { tlsa, provider }
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // DANE-EE: the leaf itself; names and dates do not matter (§3.1.1).
        if self.tlsa.iter().any(|t| t.usage == 3 && t.matches(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        // DANE-TA: a certificate of the chain is the trust anchor; the
        // chain from it must verify for the MX host name (§3.1.2).
        let mut last = None;
        for ta in intermediates.iter().filter(|c| self.tlsa.iter().any(|t| t.usage == 2 && t.matches(c))) {
            let mut roots = rustls::RootCertStore::empty();
            if roots.add(ta.clone()).is_err() {
                continue;
            }
            let verifier =
                rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
            match verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        let records: Vec<String> = self.tlsa.iter().map(|t| t.to_string()).collect();
        Err(last.unwrap_or_else(|| {
            rustls::Error::General(format!("no TLSA record matches the certificate chain ({})", records.join(", ")))
        }))
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration that verifies by these TLSA records.
pub fn client_config(tlsa: Arc<[Tlsa]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DaneVerifier::new(tlsa, provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spki_sha256(cert: &[u8]) -> Vec<u8> {
        let (_, c) = x509_parser::parse_x509_certificate(cert).unwrap();
        sha2::Sha256::digest(c.tbs_certificate.subject_pki.raw).to_vec()
    }

    /// A CA, and a leaf for `name` it issued.
    fn chain(name: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "Test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .unwrap();
        (leaf.der().clone(), ca_cert.der().clone())
    }

    fn verify(
        tlsa: Vec<Tlsa>,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        name: &str,
    ) -> Result<(), String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let v = DaneVerifier::new(tlsa.into(), provider);
        let name = ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(leaf, chain, &name, &[], UnixTime::now()).map(|_| ()).map_err(|e| e.to_string())
    }

    #[test]
    fn dane_ee_matches_the_leaf_whatever_its_name() {
        let (leaf, ca) = chain("mx.example.test");
        let spki = spki_sha256(&leaf);
        let ee = |selector, matching, data| Tlsa { usage: 3, selector, matching, data };
        assert!(
            verify(vec![ee(1, 1, spki.clone())], &leaf, &[], "other.test").is_ok(),
            "names do not matter for DANE-EE"
        );
        assert!(verify(vec![ee(0, 0, leaf.to_vec())], &leaf, &[], "mx.example.test").is_ok());
        assert!(verify(vec![ee(0, 2, sha2::Sha512::digest(&leaf).to_vec())], &leaf, &[], "mx.example.test").is_ok());
        let mut wrong = spki.clone();
        wrong[0] ^= 1;
        let e = verify(vec![ee(1, 1, wrong)], &leaf, std::slice::from_ref(&ca), "mx.example.test").unwrap_err();
        assert!(e.contains("no TLSA record matches"), "{e}");
        // The CA's key named as DANE-EE is not the leaf's.
        assert!(verify(vec![ee(1, 1, spki_sha256(&ca))], &leaf, &[ca], "mx.example.test").is_err());
    }

    #[test]
    fn dane_ta_verifies_the_chain_and_the_name_from_the_anchor() {
        let (leaf, ca) = chain("mx.example.test");
        let ta = vec![Tlsa { usage: 2, selector: 1, matching: 1, data: spki_sha256(&ca) }];
        assert!(verify(ta.clone(), &leaf, std::slice::from_ref(&ca), "mx.example.test").is_ok());
        let e = verify(ta.clone(), &leaf, std::slice::from_ref(&ca), "evil.example.test").unwrap_err();
        assert!(e.to_lowercase().contains("name") || e.contains("NotValidForName"), "{e}");
        // The anchor must be in the chain the server presents.
        assert!(verify(ta, &leaf, &[], "mx.example.test").is_err());
        // Another CA's key is no anchor for this chain.
        let (_, other_ca) = chain("mx.example.test");
        let other = vec![Tlsa { usage: 2, selector: 1, matching: 1, data: spki_sha256(&other_ca) }];
        assert!(verify(other, &leaf, &[ca], "mx.example.test").is_err());
    }

    #[test]
    fn pkix_usages_are_unusable_for_smtp() {
        for usage in [0, 1] {
            assert!(!Tlsa { usage, selector: 1, matching: 1, data: vec![] }.usable());
        }
        assert!(Tlsa { usage: 3, selector: 1, matching: 1, data: vec![] }.usable());
        assert!(!Tlsa { usage: 3, selector: 2, matching: 1, data: vec![] }.usable());
        assert!(!Tlsa { usage: 2, selector: 1, matching: 3, data: vec![] }.usable());
    }

    #[test]
    fn trust_anchor_files_are_read_or_refused_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("root.key");
        std::fs::write(&f, "; the root\n. 172800 IN DNSKEY 257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4=\n")
            .unwrap();
        assert!(read_anchors(&f).is_ok());
        std::fs::write(&f, ". IN DNSKEY 257 3 15 not*base64\n").unwrap();
        let e = read_anchors(&f).err().unwrap();
        assert!(e.contains("line 1") && e.contains("base64"), "{e}");
        std::fs::write(&f, "; nothing\n").unwrap();
        assert!(read_anchors(&f).err().unwrap().contains("no DNSKEY"));
    }
}
