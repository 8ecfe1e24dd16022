//! MTA-STS (RFC 8461): a recipient domain's published promise that its MX
//! hosts take mail over TLS with a certificate valid for their names.
//!
//! Discovery (§3.1) is a TXT record at `_mta-sts.DOMAIN` naming the
//! current policy's id; the policy itself (§3.2) is fetched over verified
//! HTTPS from `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (§3.3) and
//! cached for its `max_age` (§5.1), on disk too, so a restart does not
//! forget it and an attacker who blocks the TXT lookup or the fetch
//! cannot downgrade a domain we have already seen.
//!
//! The parsing and matching are pure functions; [`MtaSts`] holds the cache
//! and does the I/O. Failures to discover or fetch never stop delivery by
//! themselves (§5.1: without a cached policy, deliver as if the domain had
//! none); a policy in `enforce` mode does: only MX hosts it names are used,
//! and only over TLS whose certificate is verified (§4.1, §4.2).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use facteur_types::SharedClock;
use http_body_util::{BodyExt, Empty, Limited};

use crate::client::VerifiedTls;
use crate::resolver::{DnsError, Resolver};

/// §3.2: `max_age` is at most a year.
pub const MAX_AGE_LIMIT: u64 = 31_557_600;
/// Largest policy body we read (§3.3 lets senders bound it; 64 KiB is
/// far beyond any real policy).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// How long a domain's TXT record is trusted before it is asked again
/// (the policy itself lives for its `max_age`).
pub const RECHECK_SECS: i64 = 300;
/// Domains remembered without a policy, at most (past it they are
/// forgotten, and asked again; policies are always kept).
pub const MAX_NEGATIVE: usize = 100_000;
/// The whole fetch: connection, TLS, request and body (§3.3 asks for a
/// timeout; delivery to the domain waits for it at most once per recheck).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only named MX hosts, only verified TLS.
    Enforce,
    /// Report failures, deliver anyway.
    Testing,
    /// The domain withdrew its policy.
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A policy (RFC 8461 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns: a host name, or `*.example.net` for one label under it.
    pub mx: Vec<String>,
    pub max_age: u64,
}

/// The policy id from the `_mta-sts` TXT records (§3.1): records not
/// starting with `v=STSv1;` are ignored; anything but exactly one left, or
/// one that does not parse, means no policy is announced.
pub fn announced_id(records: &[String]) -> Result<String, String> {
    let ours: Vec<&String> = records.iter().filter(|r| r.starts_with("v=STSv1;") || r.trim() == "v=STSv1").collect();
    let [record] = ours.as_slice() else {
        return Err(format!("{} TXT records start with v=STSv1 (exactly one is needed)", ours.len()));
    };
    let mut id = None;
    for field in record.split(';').map(str::trim).filter(|f| !f.is_empty()).skip(1) {
        let (key, value) = field.split_once('=').ok_or_else(|| format!("field {field:?} has no '='"))?;
        if key.trim() == "id" {
            // sts-id = 1*32(ALPHA / DIGIT)
            let value = value.trim();
            if value.is_empty() || value.len() > 32 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("id {value:?} is not 1 to 32 letters and digits"));
            }
            id = Some(value.to_string());
        }
    }
    id.ok_or_else(|| "no id= field".to_string())
}

impl Policy {
    /// Parse a policy body (§3.2): `key: value` lines, CRLF or LF; unknown
    /// keys ignored; `version: STSv1`, `mode` and `max_age` required, `mx`
    /// at least once unless the mode is `none`.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
            if line.trim().is_empty() {
                continue;
            }
            let (key, value) = line.split_once(':').ok_or_else(|| format!("line {line:?} is not key: value"))?;
            let value = value.trim_matches([' ', '\t']);
            match key {
                "version" => version = Some(value.to_string()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("mode {other:?} is not enforce, testing or none")),
                    })
                }
                "max_age" => {
                    // max-age-value = 1*10(DIGIT)
                    let n = (value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| value.parse::<u64>().ok())
                        .flatten()
                        .filter(|n| *n <= MAX_AGE_LIMIT)
                        .ok_or_else(|| format!("max_age {value:?} is not a number of seconds up to {MAX_AGE_LIMIT}"))?;
                    max_age = Some(n);
                }
                "mx" => {
                    let host = value.trim_end_matches('.').to_ascii_lowercase();
                    if host.is_empty() || host.contains(char::is_whitespace) {
                        return Err(format!("mx {value:?} is not a host name pattern"));
                    }
                    mx.push(host);
                }
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err(format!("version is {version:?}, not STSv1"));
        }
        let mode = mode.ok_or("no mode")?;
        let max_age = max_age.ok_or("no max_age")?;
        if mx.is_empty() && mode != Mode::None {
            return Err("no mx".into());
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether an MX host may be used (§4.1): a pattern equal to the name,
    /// or `*.rest` where the name is exactly one label followed by `rest`.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => *p == host,
        })
    }
}

/// A domain's policy as delivery uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub domain: String,
    pub id: String,
    pub policy: Policy,
}

impl Applied {
    /// "MTA-STS policy of example.com (enforce, id 2024a)", for reasons.
    pub fn describe(&self) -> String {
        format!("MTA-STS policy of {} ({}, id {})", self.domain, self.policy.mode.as_str(), self.id)
    }
}

/// One domain in the cache.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    /// The policy body as fetched, and its id.
    id: String,
    text: String,
    /// When it was fetched (unix seconds); it is valid for its max_age.
    fetched: i64,
    /// When the TXT record was last asked (not persisted in effect: a
    /// restart asks again).
    #[serde(default)]
    checked: i64,
}

/// Whether a domain was looked at lately and found without a policy.
#[derive(Debug, Clone)]
enum Known {
    Policy(Entry),
    Nothing { checked: i64 },
}

/// Where and how policies are fetched.
pub struct Fetcher {
    /// Port of the policy hosts: 443 (another only in a lab).
    pub port: u16,
    /// Certificate authorities for the HTTPS fetch (`None`: the system's),
    /// the same as for verified SMTP (`delivery.tls_ca_file`).
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// The cache of policies, shared by every delivery and kept across
/// configuration reloads; persisted in `dir` (one JSON file per domain).
pub struct MtaSts {
    known: Mutex<HashMap<String, Known>>,
    dir: Option<PathBuf>,
    clock: SharedClock,
    tls: VerifiedTls,
}

impl MtaSts {
    /// `dir`: where policies survive restarts (created on first write),
    /// read now.
    pub fn new(dir: Option<PathBuf>, clock: SharedClock) -> MtaSts {
        let mut known = HashMap::new();
        if let Some(entries) = dir.as_ref().and_then(|d| std::fs::read_dir(d).ok()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(domain) = name.strip_suffix(".json") else { continue };
                let parsed = std::fs::read(e.path()).ok().and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
                match parsed {
                    Some(mut entry) if Policy::parse(&entry.text).is_ok() => {
                        entry.checked = 0;
                        known.insert(domain.to_string(), Known::Policy(entry));
                    }
                    _ => tracing::warn!(file = %e.path().display(), "unreadable MTA-STS cache file; ignored"),
                }
            }
        }
        MtaSts { known: Mutex::new(known), dir, clock, tls: VerifiedTls::default() }
    }

    /// Forget loaded certificate authorities (configuration reload).
    pub fn reload_tls(&self) {
        self.tls.clear();
    }

    fn get(&self, domain: &str) -> Option<Known> {
        self.known.lock().ok().and_then(|m| m.get(domain).cloned())
    }

    fn put(&self, domain: &str, k: Known) {
        if let Ok(mut m) = self.known.lock() {
            if matches!(k, Known::Nothing { .. }) && m.len() >= MAX_NEGATIVE {
                m.retain(|_, v| matches!(v, Known::Policy(_)));
            }
            m.insert(domain.to_string(), k);
        }
    }

    /// The policy to apply to `domain` now, if any (§5.1): the cached one
    /// while its id is still announced (or nothing can be learnt), a fresh
    /// one when the TXT record names a new id, none when neither exists.
    pub async fn policy<R: Resolver>(&self, resolver: &R, fetcher: &Fetcher, domain: &str) -> Option<Applied> {
        let domain = domain.to_ascii_lowercase();
        let now = self.clock.now();
        let cached = match self.get(&domain) {
            Some(Known::Nothing { checked }) if now - checked < RECHECK_SECS => return None,
            Some(Known::Policy(e)) => {
                Policy::parse(&e.text).ok().filter(|p| e.fetched + p.max_age as i64 > now).map(|p| (e, p))
            }
            _ => None,
        };
        let applied = |e: &Entry, p: &Policy| Applied { domain: domain.clone(), id: e.id.clone(), policy: p.clone() };
        if let Some((e, p)) = &cached
            && now - e.checked < RECHECK_SECS
        {
            return Some(applied(e, p));
        }
        let fresh = match resolver.txt(&format!("_mta-sts.{domain}")).await.map(|r| announced_id(&r)) {
            Ok(Ok(id)) if cached.as_ref().is_some_and(|(e, _)| e.id == id) => None,
            Ok(Ok(id)) => match fetch(resolver, &self.tls, fetcher, &domain).await {
                Ok((text, policy)) => {
                    let e = Entry { id, text, fetched: now, checked: now };
                    self.persist(&domain, &e);
                    let mode = policy.mode.as_str();
                    tracing::info!(domain, id = e.id, mode, max_age = policy.max_age, "MTA-STS policy fetched");
                    metrics::counter!("facteur_delivery_mta_sts_fetches_total", "result" => "ok").increment(1);
                    Some((e, policy))
                }
                Err(why) => {
                    // A still valid cached policy (an older id) goes on
                    // applying; without one, deliver as without a policy.
                    metrics::counter!("facteur_delivery_mta_sts_fetches_total", "result" => "failed").increment(1);
                    tracing::warn!(domain, id, error = %why, "MTA-STS policy announced but not fetched");
                    None
                }
            },
            // No usable announcement: a cached policy still applies until it
            // expires (§5.1: blocking the TXT lookup must not downgrade).
            Ok(Err(_)) | Err(DnsError::NoRecords | DnsError::NxDomain) => None,
            Err(DnsError::Temporary(why)) => {
                tracing::info!(domain, why, cached = cached.is_some(), "MTA-STS discovery failed");
                None
            }
        };
        match fresh.or(cached) {
            Some((mut e, p)) => {
                e.checked = now;
                let a = applied(&e, &p);
                self.put(&domain, Known::Policy(e));
                Some(a)
            }
            None => {
                self.put(&domain, Known::Nothing { checked: now });
                None
            }
        }
    }

    fn persist(&self, domain: &str, e: &Entry) {
        let Some(dir) = &self.dir else { return };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{domain}.json.tmp"));
            std::fs::write(&tmp, serde_json::to_vec(e).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, dir.join(format!("{domain}.json")))
        };
        if let Err(err) = write() {
            tracing::warn!(domain, dir = %dir.display(), error = %err, "cannot keep the MTA-STS policy on disk");
        }
    }
}

/// §3.3: GET over HTTPS, certificate verified for `mta-sts.DOMAIN`, no
/// redirects, `200` with `text/plain`, bounded in size and time.
pub async fn fetch<R: Resolver>(
    resolver: &R,
    tls: &VerifiedTls,
    f: &Fetcher,
    domain: &str,
) -> Result<(String, Policy), String> {
    let host = format!("mta-sts.{domain}");
    let work = async {
        let ips = resolver.ips(&host).await.map_err(|e| format!("{host}: {e}"))?;
        let mut last = format!("{host} has no address");
        for ip in ips {
            match get_policy(tls, &host, std::net::SocketAddr::new(ip, f.port), f).await {
                Ok(text) => {
                    let policy = Policy::parse(&text).map_err(|e| format!("policy from {host}: {e}"))?;
                    return Ok((text, policy));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    tokio::time::timeout(f.timeout, work)
        .await
        .map_err(|_| format!("fetching https://{host}/.well-known/mta-sts.txt took over {:?}", f.timeout))?
}

async fn get_policy(tls: &VerifiedTls, host: &str, addr: std::net::SocketAddr, f: &Fetcher) -> Result<String, String> {
    let url = format!("https://{host}/.well-known/mta-sts.txt");
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("{url}: connect {addr}: {e}"))?;
    let config = tls.get(f.ca_file.as_deref())?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let tls =
        tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| format!("{url}: TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get("/.well-known/mta-sts.txt")
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, concat!("facteur/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| format!("{url}: {e}"))?;
        // §3.3: a redirect is not followed; anything but 200 is no policy.
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("{url} answered {}", response.status()));
        }
        let media = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "text/plain" {
            return Err(format!("{url} is served as {media:?}, not text/plain"));
        }
        let body = Limited::new(response.into_body(), MAX_POLICY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{url}: body: {e} (at most {MAX_POLICY_BYTES} bytes)"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| format!("{url}: not UTF-8"))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records_announce_one_id() {
        let one = |s: &str| announced_id(&[s.to_string()]);
        assert_eq!(one("v=STSv1; id=20160831085700Z;").unwrap(), "20160831085700Z");
        assert_eq!(one("v=STSv1;id=abc").unwrap(), "abc");
        assert!(one("v=STSv1; id=has-dash;").is_err(), "id is letters and digits");
        assert!(one(&format!("v=STSv1; id={};", "a".repeat(33))).is_err(), "id is at most 32");
        assert!(one("v=STSv1;").is_err());
        assert!(one("v=spf1 -all").is_err());
        // Other TXT records at the name are ignored; two policies are none.
        let recs = ["v=spf1 -all".to_string(), "v=STSv1; id=1;".to_string()];
        assert_eq!(announced_id(&recs).unwrap(), "1");
        let two = ["v=STSv1; id=1;".to_string(), "v=STSv1; id=2;".to_string()];
        assert!(announced_id(&two).is_err());
    }

    #[test]
    fn policies_parse_as_rfc_8461_section_3_2_says() {
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net", "backupmx.example.com"]);
        // LF alone, unknown keys, spaces around values.
        let p = Policy::parse("version: STSv1\nmode:testing\nfuture: x\nmx:  MX.Example.COM. \nmax_age: 0\n").unwrap();
        assert_eq!((p.mode, p.max_age), (Mode::Testing, 0));
        assert!(p.allows("mx.example.com"));
        assert!(Policy::parse("version: STSv1\nmode: none\nmax_age: 86400\n").is_ok(), "none needs no mx");
        for bad in [
            "mode: enforce\nmx: a.test\nmax_age: 1\n",
            "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.test\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 00000000001\n",
            "<html>version: STSv1</html>",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Policy::parse("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557600\n").is_ok());
    }

    #[test]
    fn mx_patterns_match_per_section_4_1() {
        let p = Policy { mode: Mode::Enforce, mx: vec!["mail.example.com".into(), "*.example.net".into()], max_age: 1 };
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MAIL.example.com."));
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("example.net"), "the wildcard needs a label");
        assert!(!p.allows("a.b.example.net"), "the wildcard covers one label only");
        assert!(!p.allows("other.example.com"));
        assert!(!p.allows("mail.example.com.evil.test"));
    }
}
