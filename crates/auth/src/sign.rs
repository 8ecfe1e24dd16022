//! DKIM signing (RFC 6376) of the mail our users send: keys per domain in
//! the data folder, one ed25519 (RFC 8463) and one rsa-sha256 signature
//! per message, relaxed/relaxed, never `l=` (RFC 6376 §8.2: a length lets
//! anyone append to a signed message), the fields that change a message's
//! meaning oversigned (listed once more than they occur, so none can be
//! added after signing, RFC 6376 §8.15).
//!
//! Layout, one folder per domain, private keys 0600 in folders 0700:
//!
//! ```text
//! DATA/dkim/example.com/s202612-ed25519.pem   PKCS#8
//! DATA/dkim/example.com/s202612-rsa.pem       PKCS#8
//! DATA/dkim/example.com/active                "s202612": the selector signing
//! ```
//!
//! A selector names a pair of keys; DNS holds `SELECTOR-ed25519._domainkey`
//! and `SELECTOR-rsa._domainkey`. Rotation: generate a new selector, publish
//! its records, activate it (the server reads the keys again at a reload),
//! and remove the old one once mail signed by it has been delivered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};
use rustls::pki_types::PrivateKeyDer;

/// Header fields signed, and whether each is oversigned: listed once more
/// than it occurs, because an added copy would change what a reader sees
/// or what a client does.
const SIGNED: &[(&str, bool)] = &[
    ("From", true),
    ("Reply-To", true),
    ("Subject", true),
    ("Date", true),
    ("To", true),
    ("Cc", true),
    ("Sender", true),
    ("Message-ID", false),
    ("In-Reply-To", false),
    ("References", false),
    ("MIME-Version", true),
    ("Content-Type", true),
    ("Content-Transfer-Encoding", false),
    ("List-Id", false),
    ("List-Unsubscribe", true),
    ("List-Unsubscribe-Post", true),
    ("Feedback-ID", false),
];

/// The `h=` list mail-auth is given: every field, then the oversigned ones
/// again (mail-auth lists a name it finds no more copies of as absent).
fn signed_fields() -> Vec<&'static str> {
    let once = SIGNED.iter().map(|(f, _)| *f);
    once.chain(SIGNED.iter().filter(|(_, over)| *over).map(|(f, _)| *f)).collect()
}

/// The algorithms of one selector's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ed25519,
    Rsa,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::Ed25519, Algorithm::Rsa];

    /// The suffix of the key's file and DNS selector.
    pub fn suffix(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa => "rsa",
        }
    }
}

/// One domain's signers, keys parsed once.
struct DomainKeys {
    selector: String,
    ed25519: Option<DkimSigner<Ed25519Key, Done>>,
    rsa: Option<DkimSigner<RsaKey<Sha256>, Done>>,
}

/// Every domain's active keys, read from `DATA/dkim`.
#[derive(Default)]
pub struct KeyRing {
    domains: BTreeMap<String, DomainKeys>,
}

/// A key as `facteur dkim list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
    pub active: bool,
    /// The TXT record's value: `v=DKIM1; k=...; p=...`.
    pub record: String,
    pub path: PathBuf,
}

impl KeyInfo {
    /// The DNS name of the key's record, absolute.
    pub fn name(&self) -> String {
        format!("{}-{}._domainkey.{}.", self.selector, self.algorithm.suffix(), self.domain)
    }

    /// A zone-file line (RFC 1035 §5.1): strings of at most 255 octets
    /// (RFC 1035 §3.3.14) in parentheses when there are several.
    pub fn zone_line(&self) -> String {
        let chunks: Vec<String> =
            self.record.as_bytes().chunks(250).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
        if chunks.len() == 1 {
            format!("{} IN TXT {}", self.name(), chunks[0])
        } else {
            let mut s = format!("{} IN TXT (", self.name());
            for c in &chunks {
                let _ = write!(s, "\n    {c}");
            }
            s.push_str(" )");
            s
        }
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

fn unpem(text: &str) -> Result<Vec<u8>, String> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| format!("not a PEM key: {e}"))
}

/// A domain name as a folder name: lower case, letters, digits, `-` and `.`.
pub fn check_domain(domain: &str) -> Result<String, String> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok { Ok(d) } else { Err(format!("{domain:?} is not a domain name")) }
}

/// A selector: letters, digits and `-`, at most 40 (RFC 6376 §3.1).
pub fn check_selector(selector: &str) -> Result<String, String> {
    let s = selector.trim().to_ascii_lowercase();
    let ok = !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(s) } else { Err(format!("{selector:?} is not a selector (letters, digits and -, at most 40)")) }
}

/// The public key's TXT value for a PKCS#8 private key.
fn record(algorithm: Algorithm, pkcs8: &[u8]) -> Result<String, String> {
    let p = match algorithm {
        Algorithm::Ed25519 => Ed25519Key::from_pkcs8_der(pkcs8).map_err(|e| e.to_string())?.public_key(),
        Algorithm::Rsa => {
            use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
            let key = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8).map_err(|e| e.to_string())?;
            key.to_public_key().to_public_key_der().map_err(|e| e.to_string())?.as_bytes().to_vec()
        }
    };
    let k = match algorithm {
        Algorithm::Ed25519 => "ed25519",
        Algorithm::Rsa => "rsa",
    };
    Ok(format!("v=DKIM1; k={k}; p={}", base64::engine::general_purpose::STANDARD.encode(p)))
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Make `selector`'s keys for `domain` under `dir` (DATA/dkim); the first
/// selector of a domain becomes active. RSA keys have `rsa_bits` bits.
pub fn generate(dir: &Path, domain: &str, selector: &str, rsa_bits: usize) -> Result<Vec<KeyInfo>, String> {
    use std::os::unix::fs::DirBuilderExt;
    let domain = check_domain(domain)?;
    let selector = check_selector(selector)?;
    // RFC 8301 §3.2 asks for at least 1024 bits and 2048 where possible;
    // ring, which signs, takes 2048 and more.
    if !(2048..=4096).contains(&rsa_bits) {
        return Err(format!("--rsa-bits {rsa_bits}: must be 2048 to 4096"));
    }
    let folder = dir.join(&domain);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    for a in Algorithm::ALL {
        let path = folder.join(format!("{selector}-{}.pem", a.suffix()));
        if path.exists() {
            return Err(format!("{domain} already has selector {selector} ({}); choose another", path.display()));
        }
    }
    for a in Algorithm::ALL {
        let der = match a {
            Algorithm::Ed25519 => Ed25519Key::generate_pkcs8().map_err(|e| e.to_string())?,
            Algorithm::Rsa => {
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, rsa_bits)
                    .map_err(|e| format!("cannot make an RSA key: {e}"))?;
                key.to_pkcs8_der().map_err(|e| e.to_string())?.as_bytes().to_vec()
            }
        };
        write_private(&folder.join(format!("{selector}-{}.pem", a.suffix())), &pem(&der))?;
    }
    if active_selector(&folder).is_none() {
        activate(dir, &domain, &selector)?;
    }
    Ok(list(dir)?.into_iter().filter(|k| k.domain == domain && k.selector == selector).collect())
}

fn active_selector(folder: &Path) -> Option<String> {
    let s = std::fs::read_to_string(folder.join("active")).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Make `selector` the one that signs `domain`'s mail (from the next reload).
pub fn activate(dir: &Path, domain: &str, selector: &str) -> Result<(), String> {
    let domain = check_domain(domain)?;
    let selector = check_selector(selector)?;
    let folder = dir.join(&domain);
    let any = Algorithm::ALL.iter().any(|a| folder.join(format!("{selector}-{}.pem", a.suffix())).exists());
    if !any {
        return Err(format!("{domain} has no selector {selector} (facteur dkim list)"));
    }
    let tmp = folder.join(".active");
    std::fs::write(&tmp, format!("{selector}\n"))
        .and_then(|()| std::fs::rename(&tmp, folder.join("active")))
        .map_err(|e| format!("cannot write {}: {e}", folder.join("active").display()))
}

/// Remove a selector's keys; the active one cannot be removed.
pub fn remove(dir: &Path, domain: &str, selector: &str) -> Result<usize, String> {
    let domain = check_domain(domain)?;
    let selector = check_selector(selector)?;
    let folder = dir.join(&domain);
    if active_selector(&folder).as_deref() == Some(selector.as_str()) {
        return Err(format!("{selector} is the active selector of {domain}: activate another first"));
    }
    let mut removed = 0;
    for a in Algorithm::ALL {
        let path = folder.join(format!("{selector}-{}.pem", a.suffix()));
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            removed += 1;
        }
    }
    if removed == 0 {
        return Err(format!("{domain} has no selector {selector}"));
    }
    Ok(removed)
}

/// Every key under `dir`, by domain and selector.
pub fn list(dir: &Path) -> Result<Vec<KeyInfo>, String> {
    let mut out = Vec::new();
    let Ok(domains) = std::fs::read_dir(dir) else { return Ok(out) };
    let mut domains: Vec<PathBuf> = domains.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    domains.sort();
    for folder in domains {
        let domain = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let active = active_selector(&folder);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(|e| format!("cannot read {}: {e}", folder.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        files.sort();
        for path in files {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let Some((selector, algorithm)) = Algorithm::ALL
                .iter()
                .find_map(|a| stem.strip_suffix(&format!("-{}", a.suffix())).map(|s| (s.to_string(), *a)))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let der = unpem(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let record = record(algorithm, &der).map_err(|e| format!("{}: {e}", path.display()))?;
            let active = active.as_deref() == Some(selector.as_str());
            out.push(KeyInfo { domain: domain.clone(), selector, algorithm, active, record, path });
        }
    }
    Ok(out)
}

impl KeyRing {
    /// The active keys under `dir` (none when it does not exist). A key that
    /// cannot be read is an error: the server says so rather than send
    /// unsigned mail silently.
    pub fn load(dir: &Path) -> Result<KeyRing, String> {
        let mut ring = KeyRing::default();
        let headers = signed_fields();
        for k in list(dir)?.into_iter().filter(|k| k.active) {
            let der = unpem(&std::fs::read_to_string(&k.path).map_err(|e| e.to_string())?)?;
            let bad = |e: mail_auth::Error| format!("{}: {e}", k.path.display());
            let entry = ring.domains.entry(k.domain.clone()).or_insert_with(|| DomainKeys {
                selector: k.selector.clone(),
                ed25519: None,
                rsa: None,
            });
            let selector = format!("{}-{}", k.selector, k.algorithm.suffix());
            match k.algorithm {
                Algorithm::Ed25519 => {
                    let key = Ed25519Key::from_pkcs8_der(&der).map_err(bad)?;
                    let signer = DkimSigner::from_key(key).domain(&k.domain).selector(selector);
                    entry.ed25519 = Some(signer.headers(headers.iter().copied()));
                }
                Algorithm::Rsa => {
                    let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(der.into())).map_err(bad)?;
                    let signer = DkimSigner::from_key(key).domain(&k.domain).selector(selector);
                    entry.rsa = Some(signer.headers(headers.iter().copied()));
                }
            }
        }
        Ok(ring)
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Mail From `from_domain` would be signed.
    pub fn covers(&self, from_domain: &str) -> bool {
        self.signer_for(&from_domain.to_ascii_lowercase()).is_some()
    }

    /// The domains that sign, with their active selector.
    pub fn domains(&self) -> impl Iterator<Item = (&str, &str)> {
        self.domains.iter().map(|(d, k)| (d.as_str(), k.selector.as_str()))
    }

    /// The signing domain for a From domain: itself, else the closest parent
    /// with keys (relaxed alignment, RFC 7489 §3.1.1).
    fn signer_for(&self, from_domain: &str) -> Option<(&str, &DomainKeys)> {
        let mut d = from_domain;
        loop {
            if let Some((name, keys)) = self.domains.get_key_value(d) {
                return Some((name.as_str(), keys));
            }
            d = d.split_once('.')?.1;
            if !d.contains('.') {
                return None;
            }
        }
    }

    /// The DKIM-Signature fields (ed25519, then rsa-sha256) to prepend to a
    /// message whose From domain is `from_domain`; empty when no key covers
    /// it. Each signature is one folded field ending in CRLF.
    pub fn sign(&self, from_domain: &str, message: &[u8]) -> Result<String, String> {
        let Some((_, keys)) = self.signer_for(&from_domain.to_ascii_lowercase()) else {
            return Ok(String::new());
        };
        let mut out = String::new();
        if let Some(signer) = &keys.ed25519 {
            out.push_str(&signer.sign(message).map_err(|e| e.to_string())?.to_header());
        }
        if let Some(signer) = &keys.rsa {
            out.push_str(&signer.sign(message).map_err(|e| e.to_string())?.to_header());
        }
        Ok(out)
    }
}

/// The domain of the first address in a message's From field (the header
/// section alone is read).
pub fn from_domain(message: &[u8]) -> Option<String> {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n").map_or(message.len(), |i| i + 4);
    let parsed = mail_parser::MessageParser::new().parse_headers(&message[..end])?;
    let address = parsed.from()?.first()?.address()?;
    Some(address.rsplit_once('@')?.1.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_lines_split_long_records() {
        let k = KeyInfo {
            domain: "example.com".into(),
            selector: "s1".into(),
            algorithm: Algorithm::Rsa,
            active: true,
            record: format!("v=DKIM1; k=rsa; p={}", "A".repeat(400)),
            path: PathBuf::new(),
        };
        let z = k.zone_line();
        assert!(z.starts_with("s1-rsa._domainkey.example.com. IN TXT (\n    \"v=DKIM1; k=rsa; p=AAA"), "{z}");
        assert!(z.lines().all(|l| l.len() < 260), "{z}");
        assert_eq!(z.matches('"').count(), 4);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_domain("Example.COM.").unwrap(), "example.com");
        assert!(check_domain("../etc").is_err());
        assert!(check_selector("s 1").is_err());
        assert!(check_selector(&"a".repeat(41)).is_err());
        assert_eq!(check_selector("S202612").unwrap(), "s202612");
    }
}
