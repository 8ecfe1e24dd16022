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
