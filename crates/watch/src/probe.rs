//! The synthetic probe: SMTP → storage → a probe mailbox → IMAP.
//!
//! A run speaks to the node's own listeners over loopback, as a client
//! would: SMTP on the MX listener (RFC 5321: EHLO, MAIL, RCPT, DATA), then
//! IMAP over implicit TLS (RFC 9051: LOGIN, SELECT, UID SEARCH HEADER for
//! the run's nonce, then the probe mailbox emptied with STORE \Deleted and
//! EXPUNGE, LOGOUT). The account is the node's own
//! (`facteur_types::probe::address`) in the `.invalid` probe domain, with a
//! password made at each start; the TLS certificate accepted is exactly the
//! one the node serves. Probe mail is left out of the acceptance and
//! delivery counters (SMTP knows it by its sender's domain), is never
//! relayed and asks for no notices.
//!
//! Echo probes (`[probe] echo`) go further: a message submitted over the
//! node's own submissions listener as `probe-NODE@echo_domain`, out
//! through the routes to an echo service, whose answer must come back in
//! through the MX listener to that account's INBOX (label
//! `probe="echo:ADDRESS"`).
//!
//! Metrics: `facteur_probe_runs_total{probe, result}` (`ok`, `smtp`,
//! `imap`, `timeout`), `facteur_probe_duration_seconds{probe}` for the runs
//! that succeeded, and `facteur_probe_up{probe}` (1 when the last run
//! succeeded).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use facteur_types::signal::{self, Signal};
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// `[probe]` in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Run the probe (on by default).
    pub enabled: bool,
    /// Seconds from one run's start to the next's.
    pub interval_secs: u64,
    /// A run that takes longer fails as `timeout`.
    pub timeout_secs: u64,
    /// Echo addresses (an autoresponder that sends each message back): one
    /// probe each, out through the routes (or MX) and back in through the
    /// MX listener. Empty: none.
    pub echo: Vec<String>,
    /// The local domain of the echo probes' own address
    /// (`probe-NODE@echo_domain`), which the answers come back to.
    pub echo_domain: String,
    /// An echo run whose answer has not come back by then fails as `timeout`.
    pub echo_timeout_secs: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            enabled: true,
            interval_secs: 60,
            timeout_secs: 30,
            echo: Vec::new(),
            echo_domain: String::new(),
            echo_timeout_secs: 300,
        }
    }
}

impl ProbeConfig {
    /// What is wrong with the echo settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.echo.is_empty() {
            return Ok(());
        }
        if let Some(bad) =
            self.echo.iter().find(|a| a.split_once('@').is_none_or(|(l, d)| l.is_empty() || d.is_empty()))
        {
            return Err(format!("probe.echo: {bad:?} is not an address"));
        }
        if self.echo_domain.trim().is_empty() || self.echo_domain.contains('@') {
            return Err("probe.echo needs probe.echo_domain = \"a local domain\" (the echo probes' answers come back to probe-NODE@ it)".into());
        }
        Ok(())
    }
}

/// The certificate the node serves now (it may be reloaded).
pub type ServedCertificate = Arc<dyn Fn() -> Option<CertificateDer<'static>> + Send + Sync>;

/// Where and as whom a probe runs.
#[derive(Clone)]
pub struct Target {
    /// The node's MX listener.
    pub smtp: SocketAddr,
    /// The node's IMAPS listener.
    pub imaps: SocketAddr,
    /// The node's submissions listener (echo probes submit there).
    pub submissions: Option<SocketAddr>,
    /// Said in EHLO and as the TLS server name.
    pub hostname: String,
    pub address: String,
    pub password: String,
    pub certificate: ServedCertificate,
}

/// Which step of a run failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Smtp(String),
    Imap(String),
    Timeout,
}

impl Failure {
    /// The `result` label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Failure::Smtp(_) => "smtp",
            Failure::Imap(_) => "imap",
            Failure::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Smtp(why) => write!(f, "SMTP: {why}"),
            Failure::Imap(why) => write!(f, "IMAP: {why}"),
            Failure::Timeout => f.write_str("no answer within the probe's timeout"),
        }
    }
}

/// One run within `timeout`: how long it took from the SMTP connection to
/// the message read back.
fn nonce() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..20).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

pub async fn run_once(t: &Target, timeout: Duration) -> Result<Duration, Failure> {
    let started = Instant::now();
    let nonce = nonce();
    let sent = std::sync::atomic::AtomicBool::new(false);
    let run = async {
        send(t, &nonce).await.map_err(Failure::Smtp)?;
        sent.store(true, std::sync::atomic::Ordering::Relaxed);
        read_back(t, &nonce).await.map_err(Failure::Imap)
    };
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(f)) => Err(f),
        Err(_) => Err(Failure::Timeout),
    };
    // A failed run is a user who could not send or read: counted for the
    // step that failed (the server counts what it saw too; a success is
    // counted there alone).
    if let Err(f) = &result {
        let reading = matches!(f, Failure::Imap(_)) || sent.load(std::sync::atomic::Ordering::Relaxed);
        signal::record(if reading { Signal::MailboxAccess } else { Signal::Acceptance }, false, 1);
    }
    result
}

/// One echo run: submitted (implicit TLS, AUTH PLAIN as the echo account)
/// to `echo`, the answer awaited in the account's INBOX (a message whose
/// text holds the run's nonce), then removed.
pub async fn run_echo(t: &Target, echo: &str, timeout: Duration) -> Result<Duration, Failure> {
    let started = Instant::now();
    let nonce = nonce();
    let run = async {
        submit(t, echo, &nonce).await.map_err(Failure::Smtp)?;
        await_answer(t, &nonce).await.map_err(Failure::Imap)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(f)) => Err(f),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Run the local probe every `interval` until `shutdown`.
pub async fn run(t: Target, config: ProbeConfig, shutdown: tokio::sync::watch::Receiver<bool>) {
    let timeout = Duration::from_secs(config.timeout_secs.max(1));
    repeat("local".into(), &config, shutdown, || run_once(&t, timeout)).await
}

/// Run the echo probe of `echo` every `interval` until `shutdown`.
pub async fn run_echo_probe(
    t: Target,
    echo: String,
    config: ProbeConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let timeout = Duration::from_secs(config.echo_timeout_secs.max(1));
    repeat(format!("echo:{echo}"), &config, shutdown, || run_echo(&t, &echo, timeout)).await
}

/// Run `once` every `interval` until `shutdown`; record each run, and log
/// when the probe starts failing (with why) and when it succeeds again.
async fn repeat<F, Fut>(name: String, config: &ProbeConfig, mut shutdown: tokio::sync::watch::Receiver<bool>, once: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Duration, Failure>>,
{
    let name = name.as_str();
    let interval = Duration::from_secs(config.interval_secs.max(1));
    let mut failing = false;
    loop {
        let started = tokio::time::Instant::now();
        let result = once().await;
        let label = match &result {
            Ok(took) => {
                metrics::histogram!("facteur_probe_duration_seconds", "probe" => name.to_string())
                    .record(took.as_secs_f64());
                if failing {
                    tracing::info!(probe = name, took_ms = took.as_millis() as u64, "probe succeeds again");
                }
                failing = false;
                "ok"
            }
            Err(f) => {
                if !failing {
                    tracing::warn!(probe = name, failure = %f, "probe failed: its mail did not come back over IMAP");
                }
                failing = true;
                f.as_str()
            }
        };
        metrics::counter!("facteur_probe_runs_total", "probe" => name.to_string(), "result" => label).increment(1);
        // The gauge is set again every REFRESH until the next run: the
        // exporter drops a gauge left unset for a minute.
        let up = if failing { 0.0 } else { 1.0 };
        loop {
            metrics::gauge!("facteur_probe_up", "probe" => name.to_string()).set(up);
            let next = (tokio::time::Instant::now() + REFRESH).min(started + interval);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if next >= started + interval {
                break;
            }
        }
    }
}

/// How often `facteur_probe_up` is set between runs.
const REFRESH: Duration = Duration::from_secs(20);

/// Read one reply (RFC 5321 §4.2: lines `NNN-` then `NNN `); its code
/// and last line.
async fn smtp_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<(u16, String), String> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).ok_or_else(|| format!("not a reply: {line:?}"))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, line.trim_end().to_string()));
        }
    }
}

async fn expect<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
    command: Option<&str>,
    want: u16,
) -> Result<(), String> {
    if let Some(c) = command {
        w.write_all(format!("{c}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    }
    let (code, line) = smtp_reply(r).await?;
    if code != want {
        let what = command.map(|c| c.split(' ').next().unwrap_or(c)).unwrap_or("the greeting");
        return Err(format!("{what} answered {line:?}"));
    }
    Ok(())
}

/// The message, through SMTP.
async fn send(t: &Target, nonce: &str) -> Result<(), String> {
    let stream = TcpStream::connect(t.smtp).await.map_err(|e| format!("cannot connect to {}: {e}", t.smtp))?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    expect(&mut r, &mut w, None, 220).await?;
    expect(&mut r, &mut w, Some(&format!("EHLO {}", t.hostname)), 250).await?;
    expect(&mut r, &mut w, Some(&format!("MAIL FROM:<{}>", t.address)), 250).await?;
    expect(&mut r, &mut w, Some(&format!("RCPT TO:<{}> NOTIFY=NEVER", t.address)), 250).await?;
    expect(&mut r, &mut w, Some("DATA"), 354).await?;
    let message = format!(
        "From: <{a}>\r\nTo: <{a}>\r\nSubject: facteur probe\r\nX-Facteur-Probe: {nonce}\r\n\r\nA synthetic probe: SMTP to IMAP on {h}.\r\n.",
        a = t.address,
        h = t.hostname
    );
    expect(&mut r, &mut w, Some(&message), 250).await?;
    let _ = w.write_all(b"QUIT\r\n").await;
    Ok(())
}

/// Submit the echo run's message as the echo account.
async fn submit(t: &Target, echo: &str, nonce: &str) -> Result<(), String> {
    use base64::Engine;
    let addr = t.submissions.ok_or("no submissions listener on this node")?;
    let stream = tls_connect(t, addr).await?;
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    expect(&mut r, &mut w, None, 220).await?;
    expect(&mut r, &mut w, Some(&format!("EHLO {}", t.hostname)), 250).await?;
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{}", t.address, t.password));
    expect(&mut r, &mut w, Some(&format!("AUTH PLAIN {plain}")), 235).await?;
    expect(&mut r, &mut w, Some(&format!("MAIL FROM:<{}>", t.address)), 250).await?;
    expect(&mut r, &mut w, Some(&format!("RCPT TO:<{echo}> NOTIFY=NEVER")), 250).await?;
    expect(&mut r, &mut w, Some("DATA"), 354).await?;
    let message = format!(
        "From: <{a}>\r\nTo: <{echo}>\r\nSubject: facteur echo probe {nonce}\r\nX-Facteur-Probe: {nonce}\r\n\r\nAn echo probe from {h}: please send this back ({nonce}).\r\n.",
        a = t.address,
        h = t.hostname
    );
    expect(&mut r, &mut w, Some(&message), 250).await?;
    let _ = w.write_all(b"QUIT\r\n").await;
    Ok(())
}

/// Wait in the echo account's INBOX for a message holding `nonce` (an echo
/// quotes what it got), looking every 2 s; remove it when found.
async fn await_answer(t: &Target, nonce: &str) -> Result<(), String> {
    let (mut r, mut w) = inbox(t).await?;
    for n in 0u64.. {
        let found = imap_command(&mut r, &mut w, &format!("s{n}"), &format!("UID SEARCH TEXT \"{nonce}\"")).await?;
        let uids: Vec<&str> =
            found.iter().filter_map(|l| l.strip_prefix("* SEARCH")).flat_map(|l| l.split_whitespace()).collect();
        if !uids.is_empty() {
            let set = uids.join(",");
            imap_command(&mut r, &mut w, "e3", &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)")).await?;
            imap_command(&mut r, &mut w, "e4", "EXPUNGE").await?;
            let _ = imap_command(&mut r, &mut w, "e5", "LOGOUT").await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        imap_command(&mut r, &mut w, &format!("n{n}"), "NOOP").await?;
    }
    unreachable!("the loop returns or fails")
}

type TlsRead = BufReader<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>;
type TlsWrite = tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>;

/// An IMAPS session of `t`'s account, logged in with INBOX selected.
async fn inbox(t: &Target) -> Result<(TlsRead, TlsWrite), String> {
    let stream = tls_connect(t, t.imaps).await?;
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let mut greeting = String::new();
    r.read_line(&mut greeting).await.map_err(|e| e.to_string())?;
    if !greeting.starts_with("* OK") {
        return Err(format!("greeting {:?}", greeting.trim_end()));
    }
    imap_command(&mut r, &mut w, "i1", &format!("LOGIN \"{}\" \"{}\"", t.address, t.password)).await?;
    imap_command(&mut r, &mut w, "i2", "SELECT INBOX").await?;
    Ok((r, w))
}

/// TLS to one of this node's own listeners, its served certificate pinned.
async fn tls_connect(t: &Target, addr: SocketAddr) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(t.certificate.clone())));
    let name = ServerName::try_from(t.hostname.clone()).map_err(|e| format!("server name {:?}: {e}", t.hostname))?;
    tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))
}

/// Read tagged response `tag`'s lines; `Err` unless it is OK.
async fn imap_command<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
    tag: &str,
    command: &str,
) -> Result<Vec<String>, String> {
    w.write_all(format!("{tag} {command}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        let line = line.trim_end().to_string();
        if let Some(status) = line.strip_prefix(tag).and_then(|rest| rest.strip_prefix(' ')) {
            if status.starts_with("OK") {
                return Ok(lines);
            }
            let verb = command.split(' ').next().unwrap_or(command);
            return Err(format!("{verb} answered {status:?}"));
        }
        lines.push(line);
    }
}

/// Log in over IMAPS, find the run's message, and empty the probe mailbox.
async fn read_back(t: &Target, nonce: &str) -> Result<(), String> {
    let (mut r, mut w) = inbox(t).await?;
    let found = imap_command(&mut r, &mut w, "p3", &format!("UID SEARCH HEADER X-Facteur-Probe \"{nonce}\"")).await?;
    let hits = found.iter().filter_map(|l| l.strip_prefix("* SEARCH")).flat_map(|l| l.split_whitespace()).count();
    if hits == 0 {
        return Err("the message accepted over SMTP is not in the probe mailbox".into());
    }
    // This run's message and any an interrupted run left behind.
    imap_command(&mut r, &mut w, "p4", "STORE 1:* +FLAGS.SILENT (\\Deleted)").await?;
    imap_command(&mut r, &mut w, "p5", "EXPUNGE").await?;
    let _ = imap_command(&mut r, &mut w, "p6", "LOGOUT").await;
    Ok(())
}

fn client_config(certificate: ServedCertificate) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(OwnCertificate { certificate, provider }))
        .with_no_client_auth()
}

/// Accepts exactly the certificate this node serves (its own listener, on
/// loopback): no other, whatever signed it.
#[derive(Clone)]
struct OwnCertificate {
    certificate: ServedCertificate,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for OwnCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnCertificate")
    }
}

impl rustls::client::danger::ServerCertVerifier for OwnCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match (self.certificate)() {
            Some(own) if own.as_ref() == end_entity.as_ref() => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            _ => Err(rustls::Error::General("not the certificate this node serves".into())),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
