//! TLS server configuration: the configured certificate, or a self-signed
//! one made on first start so STARTTLS and submission work with no setup.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSection;

pub struct Tls {
    pub server_config: Arc<rustls::ServerConfig>,
    /// The certificate every handshake presents; [`Tls::reload`] swaps it
    /// without touching the configuration or the sessions.
    cert: Arc<Reloadable>,
    /// Set when a certificate was generated now: where it was written.
    pub generated: Option<PathBuf>,
    pub cert_path: PathBuf,
}

/// A certificate that can be replaced while the server runs (SIGHUP after
/// a renewal).
#[derive(Debug)]
struct Reloadable(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl rustls::server::ResolvesServerCert for Reloadable {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }
}

/// Where the certificate and key are: configured, or the generated pair.
fn paths(section: &TlsSection, data_dir: &Path) -> (PathBuf, PathBuf) {
    match (&section.cert, &section.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => (data_dir.join("tls/cert.pem"), data_dir.join("tls/key.pem")),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read a certificate chain and its key, and check that they go together.
fn load(cert: &Path, key: &Path) -> anyhow::Result<rustls::sign::CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .with_context(|| format!("{} is not a usable private key", key.display()))?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing);
    certified.keys_match().with_context(|| {
        format!("certificate {} and key {} do not form a usable pair", cert.display(), key.display())
    })?;
    Ok(certified)
}

impl Tls {
    /// The certificate handshakes present now (after any reload): what the
    /// synthetic probe accepts from this node's own listener.
    pub fn served_certificate(&self) -> facteur_watch::probe::ServedCertificate {
        let cert = self.cert.clone();
        std::sync::Arc::new(move || cert.0.read().ok().and_then(|k| k.cert.first().cloned()))
    }
}

pub fn load_or_create(section: &TlsSection, data_dir: &Path, hostname: &str) -> anyhow::Result<Tls> {
    let (cert, key) = paths(section, data_dir);
    let mut generated = None;
    if section.cert.is_none() && !(cert.exists() && key.exists()) {
        let dir = data_dir.join("tls");
        self_signed(&dir, &cert, &key, hostname)?;
        generated = Some(dir);
    }
    let cert_key = Arc::new(Reloadable(std::sync::RwLock::new(Arc::new(load(&cert, &key)?))));
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(cert_key.clone());
    Ok(Tls { server_config: Arc::new(server_config), cert: cert_key, generated, cert_path: cert })
}

impl Tls {
    /// Read the certificate and key again (from `section`, which may name
    /// other files now); new handshakes present them, sessions already
    /// under TLS are not touched. On an error the old pair stays.
    pub fn reload(&self, section: &TlsSection, data_dir: &Path) -> anyhow::Result<PathBuf> {
        let (cert, key) = paths(section, data_dir);
        let certified = Arc::new(load(&cert, &key)?);
        if let Ok(mut k) = self.cert.0.write() {
            *k = certified;
        }
        Ok(cert)
    }
}

fn self_signed(dir: &Path, cert: &Path, key: &Path, hostname: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".into());
    }
    // Loopback by address too, so a client on this machine can verify it
    // (with the file as its CA) when it connects to 127.0.0.1 or ::1.
    names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
    let certified = rcgen::generate_simple_self_signed(names).context("cannot generate a self-signed certificate")?;
    std::fs::write(cert, certified.cert.pem()).with_context(|| format!("cannot write {}", cert.display()))?;
    write_private(key, certified.key_pair.serialize_pem().as_bytes())?;
    Ok(())
}

/// Write a file readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// What is risky about the certificate in `path` for `hostname` at `now`
/// (Unix seconds): expired or expiring within 14 days, or names that do not
/// cover the host name (RFC 6125 §6.4: DNS names, one leading wildcard
/// label). An unreadable file is reported too.
pub fn risks(path: &Path, hostname: &str, now: i64) -> Vec<String> {
    let first = match CertificateDer::pem_file_iter(path).ok().and_then(|mut i| i.next()) {
        Some(Ok(c)) => c,
        _ => return vec![format!("TLS certificate {} cannot be read as PEM", path.display())],
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(first.as_ref()) else {
        return vec![format!("TLS certificate {} cannot be parsed", path.display())];
    };
    let mut w = Vec::new();
    let until = cert.validity().not_after.timestamp();
    let days = (until - now).div_euclid(86_400);
    let shown = path.display();
    if until < now {
        w.push(format!("TLS certificate {shown} expired {} day(s) ago: clients that verify refuse it", -days));
    } else if until - now < 14 * 86_400 {
        w.push(format!("TLS certificate {shown} expires in {days} day(s): renew it (then SIGHUP or facteur reload)"));
    }
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(cert.subject().iter_common_name().filter_map(|c| c.as_str().ok()).map(str::to_lowercase));
    }
    let host = hostname.to_lowercase();
    let covers = |n: &str| match n.strip_prefix("*.") {
        Some(rest) => host.split_once('.').is_some_and(|(_, h)| h == rest),
        None => n == host,
    };
    if !names.iter().any(|n| covers(n)) {
        w.push(format!(
            "TLS certificate {shown} is for {} but server.hostname is {hostname}: clients that verify the name refuse it",
            if names.is_empty() { "no name".to_string() } else { names.join(", ") }
        ));
    }
    w
}

/// The certificate file in force for `section`.
pub fn certificate_path(section: &TlsSection, data_dir: &Path) -> PathBuf {
    paths(section, data_dir).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dir: &Path, names: &[&str], not_after: (i32, u8, u8)) -> PathBuf {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let path = dir.join(format!("{}-{}.pem", names.first().unwrap_or(&"none"), not_after.0));
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        path
    }

    /// 2026-12-07T00:00:00Z.
    const NOW: i64 = 1_796_601_600;

    #[test]
    fn a_certificate_is_risky_when_expired_expiring_or_for_another_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(risks(&cert(dir.path(), &["mx.example.test"], (2030, 1, 1)), "mx.example.test", NOW).is_empty());
        assert!(risks(&cert(dir.path(), &["*.example.test"], (2030, 1, 1)), "MX.example.test", NOW).is_empty());
        let w = risks(&cert(dir.path(), &["*.example.test"], (2030, 1, 1)), "a.mx.example.test", NOW);
        assert!(w[0].contains("is for *.example.test but server.hostname is a.mx.example.test"), "{w:?}");
        let w = risks(&cert(dir.path(), &["mx.example.test"], (2026, 12, 1)), "mx.example.test", NOW);
        assert!(w[0].contains("expired 6 day(s) ago"), "{w:?}");
        let w = risks(&cert(dir.path(), &["mx.example.test"], (2026, 12, 20)), "mx.example.test", NOW);
        assert!(w[0].contains("expires in 13 day(s)"), "at the edge: {w:?}");
        assert!(
            risks(&cert(dir.path(), &["mx.example.test"], (2026, 12, 22)), "mx.example.test", NOW).is_empty(),
            "past it"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        assert!(risks(&junk, "mx.example.test", NOW)[0].contains("cannot be read"));
    }
}
