//! The I/O edge of outbound SMTP: connect, greeting, EHLO (HELO fallback),
//! STARTTLS by policy, AUTH PLAIN for relays, then transactions driven by the
//! sans-IO `facteur_smtp_proto::client::Transaction`.

use std::sync::Arc;
use std::time::Duration;

use facteur_smtp_proto::Reply;
use facteur_smtp_proto::client::{Capabilities, OutboundEnvelope, ReplyReader, Transaction, TxResult, TxStep};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use std::path::{Path, PathBuf};

use crate::config::TlsPolicy;
use crate::route::{Target, Verify};

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why a connection could not be set up; always worth another target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub host: String,
    pub permanent: bool,
    pub status: (u8, u16, u16),
    pub text: String,
}

pub struct Connection {
    stream: Box<dyn Stream>,
    reader: ReplyReader,
    buf: Vec<u8>,
    pub caps: Capabilities,
    pub host: String,
    pub tls: bool,
    pub transactions: usize,
    timeout: Duration,
}

pub struct ClientSettings {
    pub helo_name: String,
    /// TLS that does not verify the server (opportunistic).
    pub tls: Arc<rustls::ClientConfig>,
    /// Verifying TLS configurations, by CA file (`None`: the system's
    /// roots), made on first use.
    pub verified: VerifiedTls,
    pub connect_timeout: Duration,
    /// Time allowed for each reply, whole (RFC 5321 §4.5.3.2: 5 minutes for
    /// most commands); the reply to the end of data gets twice this (10).
    pub command_timeout: Duration,
}

/// A TLS handshake that failed (the certificate included): RFC 3463's
/// "cryptographic failure".
const TLS_FAILED: (u8, u16, u16) = (4, 7, 5);

/// "mta-sts" or "dane", from a policy's description.
fn policy_kind(policy: &str) -> &'static str {
    if policy.starts_with("DANE") { "dane" } else { "mta-sts" }
}

fn io_error(host: &str, what: &str, e: impl std::fmt::Display) -> ConnectError {
    ConnectError { host: host.into(), permanent: false, status: (4, 4, 1), text: format!("{what} {host}: {e}") }
}

impl Connection {
    /// One reply, whole, before `deadline`: a server that sends a byte now
    /// and then does not keep us waiting past it (RFC 5321 §4.5.3.2 gives a
    /// time per command, not per read).
    async fn read_reply_by(&mut self, deadline: tokio::time::Instant) -> Result<Reply, String> {
        loop {
            match self.reader.next_reply() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => return Err(format!("unreadable reply from {}: {e}", self.host)),
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf))
                .await
                .map_err(|_| format!("timeout waiting for a reply from {}", self.host))?
                .map_err(|e| format!("read from {}: {e}", self.host))?;
            if n == 0 {
                return Err(format!("{} closed the connection", self.host));
            }
            self.reader.feed(&self.buf[..n]);
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, String> {
        self.read_reply_by(tokio::time::Instant::now() + self.timeout).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| format!("timeout writing to {}", self.host))?
        .map_err(|e| format!("write to {}: {e}", self.host))
    }

    async fn command(&mut self, line: &str) -> Result<Reply, String> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    async fn ehlo(&mut self, helo: &str) -> Result<(), String> {
        let r = self.command(&format!("EHLO {helo}")).await?;
        if r.code == 250 {
            self.caps = Capabilities::from_ehlo(&r);
            return Ok(());
        }
        // RFC 5321 §3.2: a server that does not know EHLO gets HELO.
        let r = self.command(&format!("HELO {helo}")).await?;
        if r.code != 250 {
            return Err(format!("{} refused HELO: {r}", self.host));
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    /// Connect to one target and make the session ready for MAIL.
    pub async fn open(target: &Target, s: &ClientSettings) -> Result<Connection, ConnectError> {
        // Credentials and verified TLS never fall back to plaintext.
        let may_fall_back =
            target.tls == TlsPolicy::Opportunistic && target.auth.is_none() && target.verify == Verify::No;
        let result = match Self::open_once(target, s, target.tls != TlsPolicy::None).await {
            // Opportunistic TLS that failed in the handshake: Postfix's "may"
            // falls back to plaintext, and so do we.
            Err(e) if may_fall_back && e.status == TLS_FAILED => {
                tracing::warn!(host = %target.host, error = %e.text, "STARTTLS failed; retrying without TLS");
                Self::open_once(target, s, false).await
            }
            other => other,
        };
        let Some(policy) = &target.required_by else { return result };
        // What a TLS-RPT report (RFC 8460) would count, per policy.
        let tls_failed = result.as_ref().err().is_some_and(|e| e.status.1 == 7);
        let outcome = if result.is_ok() {
            "success"
        } else if tls_failed {
            "failure"
        } else {
            "unreachable"
        };
        metrics::counter!("facteur_delivery_tls_policy_total", "policy" => policy_kind(policy), "result" => outcome)
            .increment(1);
        let needs = if target.verify == Verify::No { "TLS" } else { "verified TLS" };
        result.map_err(|e| {
            if e.status.1 == 7 {
                ConnectError { text: format!("{}; {policy} requires {needs}", e.text), ..e }
            } else {
                e
            }
        })
    }

    async fn open_once(target: &Target, s: &ClientSettings, try_tls: bool) -> Result<Connection, ConnectError> {
        let host = target.host.clone();
        let tcp = tokio::time::timeout(s.connect_timeout, TcpStream::connect(target.addr))
            .await
            .map_err(|_| io_error(&host, "timeout connecting to", target.addr))?
            .map_err(|e| io_error(&host, "cannot connect to", e))?;
        let _ = tcp.set_nodelay(true);
        let mut c = Connection {
            stream: Box::new(tcp),
            reader: ReplyReader::default(),
            buf: vec![0; 16 * 1024],
            caps: Capabilities::default(),
            host: host.clone(),
            tls: false,
            transactions: 0,
            timeout: s.command_timeout,
        };
        let fail = |text: String| ConnectError { host: host.clone(), permanent: false, status: (4, 4, 2), text };
        let greeting = c.read_reply().await.map_err(fail)?;
        if greeting.code != 220 {
            // RFC 5321 §3.1: a 554 greeting means "no service here"; another MX may serve.
            return Err(fail(format!("{host} greeted with {greeting}")));
        }
        // RFC 5321 §6.3: a server that greets with our own name is us,
        // reached through an address we do not know as ours (NAT, a DNS
        // name): every message would go round (as Postfix's "loops back to
        // myself").
        let greeted_as = greeting.lines.first().and_then(|l| l.split_whitespace().next()).unwrap_or("");
        if greeted_as.eq_ignore_ascii_case(&s.helo_name) {
            return Err(ConnectError {
                host: host.clone(),
                permanent: true,
                status: (5, 4, 6),
                text: format!("{host} greeted us with our own name {greeted_as}: mail loops back to myself"),
            });
        }
        c.ehlo(&s.helo_name).await.map_err(fail)?;
        let needs_tls = target.tls == TlsPolicy::Require || target.auth.is_some();
        if try_tls && c.caps.starttls {
            let r = c.command("STARTTLS").await.map_err(fail)?;
            if r.code == 220 {
                c.start_tls(target, s).await.map_err(|text| ConnectError {
                    host: host.clone(),
                    permanent: false,
                    status: TLS_FAILED,
                    text,
                })?;
                // RFC 3207 §4.2: forget what was learnt before TLS.
                c.ehlo(&s.helo_name).await.map_err(fail)?;
            } else if needs_tls {
                return Err(ConnectError {
                    host: host.clone(),
                    permanent: false,
                    status: (4, 7, 10),
                    text: format!("{host} refused STARTTLS: {r}"),
                });
            }
        }
        if needs_tls && !c.tls {
            let why = if target.auth.is_some() {
                "we never send credentials without TLS"
            } else if target.required_by.is_some() {
                "TLS is required"
            } else {
                "this route requires TLS"
            };
            return Err(ConnectError {
                host: host.clone(),
                permanent: false,
                status: (4, 7, 10),
                text: format!("{host} does not offer STARTTLS and {why}"),
            });
        }
        if let Some(auth) = &target.auth {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{}", auth.user, auth.password));
            let r = c.command(&format!("AUTH PLAIN {token}")).await.map_err(fail)?;
            if r.code != 235 {
                return Err(ConnectError {
                    host: host.clone(),
                    permanent: false,
                    status: (4, 7, 8),
                    text: format!("{host} refused our credentials: {r}"),
                });
            }
        }
        Ok(c)
    }

    /// The TLS handshake after `220` to STARTTLS, verifying the server's
    /// certificate (name and chain) when the target asks for it.
    async fn start_tls(&mut self, target: &Target, s: &ClientSettings) -> Result<(), String> {
        let host = &target.host;
        let (config, name) = match &target.verify {
            Verify::No => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .unwrap_or_else(|_| rustls::pki_types::ServerName::IpAddress(target.addr.ip().into()));
                (s.tls.clone(), name)
            }
            Verify::Dane(tlsa) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| format!("TLS handshake with {host} failed: {host:?} is not a host name"))?;
                (crate::dane::client_config(tlsa.clone())?, name)
            }
            Verify::Chain(ca_file) => {
                let config = s.verified.get(ca_file.as_deref())?;
                // The name checked is the one we were told to reach: the
                // route's or MX host name, or its IP address.
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| format!("TLS handshake with {host} failed: {host:?} cannot be verified as a name"))?;
                (config, name)
            }
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let plain = std::mem::replace(&mut self.stream, Box::new(tokio::io::empty()));
        let tls = tokio::time::timeout(self.timeout, connector.connect(name, plain))
            .await
            .map_err(|_| format!("TLS handshake with {host} timed out"))?
            .map_err(|e| format!("TLS handshake with {host} failed: {e}"))?;
        self.stream = Box::new(tls);
        self.reader = ReplyReader::default();
        self.tls = true;
        Ok(())
    }

    /// One transaction; I/O failures become temporary outcomes for every
    /// recipient not yet decided, and the connection is then not reused.
    pub async fn send(&mut self, envelope: OutboundEnvelope, body: &[u8]) -> TxResult {
        let mut tx = match Transaction::new(envelope, &self.caps) {
            Ok(tx) => tx,
            Err(result) => return result,
        };
        self.transactions += 1;
        match self.drive(&mut tx, body).await {
            Ok(result) => result,
            // RFC 5321 §3.8: a lost connection is a 451 for what was not
            // decided yet; refusals already given stand.
            Err(e) => tx.connection_lost(Reply::new(451, (4, 4, 2), format!("facteur: {e}"))),
        }
    }

    async fn drive(&mut self, tx: &mut Transaction, body: &[u8]) -> Result<TxResult, String> {
        let mut wait = self.timeout;
        loop {
            let out = tx.take_output();
            if !out.is_empty() {
                self.write(&out).await?;
            }
            let reply = self.read_reply_by(tokio::time::Instant::now() + wait).await?;
            wait = self.timeout;
            match tx.on_reply(reply) {
                TxStep::Continue => {}
                TxStep::SendBody => {
                    let bytes = tx.body_bytes(body);
                    self.write(&bytes).await?;
                    // RFC 5321 §4.5.3.2.6: 10 minutes for the end of data.
                    wait = self.timeout.saturating_mul(2);
                }
                TxStep::Done(result) => return Ok(result),
            }
        }
    }

    /// Say goodbye; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command("QUIT")).await;
    }
}

/// Opportunistic TLS does not authenticate the server (as Postfix's "may"
/// and "encrypt" levels): it protects against passive eavesdropping only.
/// Routes with credentials or `tls = "require"` verify (see [`VerifiedTls`]),
/// and so do MX hosts under an MTA-STS policy or DANE (`crate::dane`).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifying client configurations, one per CA file (`None`: the system's
/// trust store), loaded on first use and kept.
#[derive(Default)]
pub struct VerifiedTls {
    configs: std::sync::Mutex<std::collections::HashMap<Option<PathBuf>, Arc<rustls::ClientConfig>>>,
}

impl VerifiedTls {
    /// Forget what was loaded (configuration reload: a CA file replaced in
    /// place is read again).
    pub fn clear(&self) {
        if let Ok(mut m) = self.configs.lock() {
            m.clear();
        }
    }

    pub(crate) fn get(&self, ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
        let key = ca_file.map(Path::to_path_buf);
        if let Some(c) = self.configs.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(c);
        }
        let roots = match ca_file {
            Some(f) => load_ca_file(f)?,
            None => system_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let config = Arc::new(config);
        if let Ok(mut m) = self.configs.lock() {
            m.insert(key, config.clone());
        }
        Ok(config)
    }
}

fn load_ca_file(f: &Path) -> Result<rustls::RootCertStore, String> {
    let pem = std::fs::read(f).map_err(|e| format!("cannot read CA file {}: {e}", f.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("CA file {}: {e}", f.display()))?;
        roots.add(cert).map_err(|e| format!("CA file {}: {e}", f.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("CA file {} holds no PEM certificate", f.display()));
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no system trust store (install ca-certificates, or set tls_ca_file)".into());
    }
    Ok(roots)
}

/// What is wrong with a configured CA file, if anything (for config checks).
pub fn ca_file_problem(f: &Path) -> Option<String> {
    load_ca_file(f).err()
}

/// Unverified TLS for opportunistic delivery (and tests of our own servers).
pub fn client_tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| b.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider))).with_no_client_auth())
        .unwrap_or_else(|_| {
            // Only fails if the provider supports no protocol version, which ring does.
            rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(
                    Arc::new(rustls::crypto::ring::default_provider()),
                )))
                .with_no_client_auth()
        });
    Arc::new(config)
}
