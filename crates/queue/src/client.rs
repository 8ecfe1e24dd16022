//! The I/O edge of outbound SMTP: connect, greeting, EHLO (HELO fallback),
//! STARTTLS by policy, AUTH PLAIN for relays, then transactions driven by the
//! sans-IO `facteur_smtp_proto::client::Transaction`.

use std::sync::Arc;
use std::time::Duration;

use facteur_smtp_proto::Reply;
use facteur_smtp_proto::client::{Capabilities, OutboundEnvelope, ReplyReader, Transaction, TxResult, TxStep};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::TlsPolicy;
use crate::route::Target;

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
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

fn io_error(host: &str, what: &str, e: impl std::fmt::Display) -> ConnectError {
    ConnectError { host: host.into(), permanent: false, status: (4, 4, 1), text: format!("{what} {host}: {e}") }
}

impl Connection {
    async fn read_reply(&mut self) -> Result<Reply, String> {
        loop {
            match self.reader.next_reply() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => return Err(format!("unreadable reply from {}: {e}", self.host)),
            }
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut self.buf))
                .await
                .map_err(|_| format!("timeout waiting for {}", self.host))?
                .map_err(|e| format!("read from {}: {e}", self.host))?;
            if n == 0 {
                return Err(format!("{} closed the connection", self.host));
            }
            self.reader.feed(&self.buf[..n]);
        }
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
        match Self::open_once(target, s, target.tls != TlsPolicy::None).await {
            // Opportunistic TLS that failed in the handshake: Postfix's "may"
            // falls back to plaintext, and so do we.
            Err(e) if target.tls == TlsPolicy::Opportunistic && e.text.contains("TLS handshake") => {
                tracing::warn!(host = %target.host, error = %e.text, "STARTTLS failed; retrying without TLS");
                Self::open_once(target, s, false).await
            }
            other => other,
        }
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
        if try_tls && c.caps.starttls {
            let r = c.command("STARTTLS").await.map_err(fail)?;
            if r.code == 220 {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .unwrap_or_else(|_| rustls::pki_types::ServerName::IpAddress(target.addr.ip().into()));
                let connector = tokio_rustls::TlsConnector::from(s.tls.clone());
                let plain = std::mem::replace(&mut c.stream, Box::new(tokio::io::empty()));
                let tls = tokio::time::timeout(s.command_timeout, connector.connect(name, plain))
                    .await
                    .map_err(|_| fail(format!("TLS handshake with {host} timed out")))?
                    .map_err(|e| fail(format!("TLS handshake with {host} failed: {e}")))?;
                c.stream = Box::new(tls);
                c.reader = ReplyReader::default();
                c.tls = true;
                // RFC 3207 §4.2: forget what was learnt before TLS.
                c.ehlo(&s.helo_name).await.map_err(fail)?;
            } else if target.tls == TlsPolicy::Require {
                return Err(fail(format!("{host} refused STARTTLS: {r}")));
            }
        }
        if target.tls == TlsPolicy::Require && !c.tls {
            return Err(ConnectError {
                host: host.clone(),
                permanent: false,
                status: (4, 7, 10),
                text: format!("{host} does not offer STARTTLS and this route requires TLS"),
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
        loop {
            let out = tx.take_output();
            if !out.is_empty() {
                self.write(&out).await?;
            }
            let reply = self.read_reply().await?;
            match tx.on_reply(reply) {
                TxStep::Continue => {}
                TxStep::SendBody => {
                    let bytes = tx.body_bytes(body);
                    self.write(&bytes).await?;
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
/// Verified TLS (DANE, MTA-STS) comes later.
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
