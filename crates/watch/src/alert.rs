//! Alerts: every incident change (opened, update, resolved) told to a
//! webhook and to an email address, as configured in `[alerts]`.
//!
//! The webhook gets a JSON document by HTTP POST, signed with the shared
//! secret: `X-Facteur-Signature: t=UNIX,v1=HEX` where HEX is
//! HMAC-SHA256(secret, "UNIX." + body), so a receiver can check who sent
//! it and refuse replays. Any 2xx is success; anything else (or no answer
//! within `timeout_secs`) is tried again after 2 s, 4 s, 8 s... up to
//! `max_tries`. Alerts go out one at a time, in order: a receiver never
//! sees a resolve before its open.
//!
//! The email goes through facteur's own queue, as class `system` from the
//! null reverse-path (like a DSN, it cannot loop), so it is delivered,
//! retried and bounced by the same rules as all mail. When storage is what
//! fails, it waits in memory (at most [`EMAIL_BACKLOG`]) and is queued as
//! soon as storage takes writes again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use facteur_store::{Directory, NewMessage, NewRecipient, Route, Spool, StoredEnvelope};
use facteur_types::{Class, MessageId, Notify, SharedClock};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::keeper::Announcement;

/// `[alerts]`.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// `http://` or `https://` URL to POST each alert to; empty: none.
    pub webhook_url: String,
    /// The HMAC key the webhook's signature is made with.
    pub webhook_secret: String,
    /// Address to email each alert to; empty: none.
    pub email: String,
    /// Tries per webhook alert before it is given up (logged).
    pub max_tries: u32,
    /// Seconds one webhook try may take.
    pub timeout_secs: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            webhook_url: String::new(),
            webhook_secret: String::new(),
            email: String::new(),
            max_tries: 8,
            timeout_secs: 10,
        }
    }
}

impl std::fmt::Debug for AlertConfig {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertConfig")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &if self.webhook_secret.is_empty() { "" } else { "<redacted>" })
            .field("email", &self.email)
            .field("max_tries", &self.max_tries)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl AlertConfig {
    pub fn is_empty(&self) -> bool {
        self.webhook_url.is_empty() && self.email.is_empty()
    }

    /// What is wrong with it, if anything (for `facteur config check`).
    pub fn check(&self) -> Result<(), String> {
        if !self.webhook_url.is_empty() {
            Endpoint::parse(&self.webhook_url)?;
            if self.webhook_secret.len() < 16 {
                return Err(
                    "alerts.webhook_secret must be at least 16 characters when alerts.webhook_url is set".into()
                );
            }
        }
        if !self.email.is_empty() && !self.email.contains('@') {
            return Err(format!("alerts.email {:?} is not an address", self.email));
        }
        Ok(())
    }
}

/// The webhook's JSON document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Payload {
    /// `incident.opened`, `incident.update` or `incident.resolved`.
    pub event: String,
    pub component: String,
    pub title: String,
    /// `degraded`, `major`, or null once resolved.
    pub severity: Option<String>,
    pub regions: Vec<String>,
    pub text: String,
    /// Unix seconds.
    pub at: i64,
    /// The node whose watch saw it.
    pub node: String,
}

impl Payload {
    pub fn of(a: &Announcement) -> Payload {
        Payload {
            event: format!("incident.{}", a.kind),
            component: a.component.clone(),
            title: a.title.clone(),
            severity: a.severity.map(|s| match s {
                crate::incident::Severity::Degraded => "degraded".into(),
                crate::incident::Severity::Major => "major".into(),
            }),
            regions: a.regions.clone(),
            text: a.text.clone(),
            at: a.at,
            node: a.node.clone(),
        }
    }
}

/// The signature header's value for `body` sent at `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Where a webhook goes.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("alerts.webhook_url {url:?}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("alerts.webhook_url {url:?}: must start with http:// or https://")),
        };
        let auth = uri.authority().ok_or_else(|| format!("alerts.webhook_url {url:?}: no host"))?;
        Ok(Endpoint {
            tls,
            host: auth.host().trim_matches(['[', ']']).to_string(),
            port: auth.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: auth.as_str().to_string(),
            path: uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into()),
        })
    }
}

/// Send announcements as alerts until the channel closes.
pub struct Alerter<S> {
    pub store: S,
    pub config: AlertConfig,
    pub hostname: String,
    pub clock: SharedClock,
}

/// Most emails waiting for storage to take them.
pub const EMAIL_BACKLOG: usize = 100;

impl<S: Spool + Directory> Alerter<S> {
    pub async fn run(self, mut rx: mpsc::Receiver<Announcement>) {
        let this = Arc::new(self);
        let (hook_tx, hook_rx) = mpsc::channel::<Announcement>(256);
        let (mail_tx, mail_rx) = mpsc::channel::<Announcement>(256);
        let hooks = tokio::spawn(this.clone().webhooks(hook_rx));
        let mails = tokio::spawn(this.clone().emails(mail_rx));
        while let Some(a) = rx.recv().await {
            if !this.config.webhook_url.is_empty() {
                let _ = hook_tx.try_send(a.clone());
            }
            if !this.config.email.is_empty() {
                let _ = mail_tx.try_send(a);
            }
        }
        drop((hook_tx, mail_tx));
        let _ = tokio::join!(hooks, mails);
    }

    async fn webhooks(self: Arc<Self>, mut rx: mpsc::Receiver<Announcement>) {
        let Ok(endpoint) = Endpoint::parse(&self.config.webhook_url) else { return };
        while let Some(a) = rx.recv().await {
            let body = serde_json::to_vec(&Payload::of(&a)).unwrap_or_default();
            let mut delay = Duration::from_secs(2);
            for n in 1..=self.config.max_tries.max(1) {
                let t = self.clock.now();
                let signature = sign(&self.config.webhook_secret, t, &body);
                let timeout = Duration::from_secs(self.config.timeout_secs.max(1));
                let outcome = match tokio::time::timeout(timeout, post(&endpoint, &body, &signature, &a)).await {
                    Ok(r) => r,
                    Err(_) => Err("timed out".into()),
                };
                match outcome {
                    Ok(()) => {
                        tracing::info!(component = %a.component, kind = a.kind, "alert webhook delivered");
                        metrics::counter!("facteur_alerts_total", "channel" => "webhook", "result" => "ok")
                            .increment(1);
                        break;
                    }
                    Err(e) if n < self.config.max_tries.max(1) => {
                        tracing::warn!(try_ = n, error = %e, retry_in_secs = delay.as_secs(), "alert webhook failed; trying again");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(300));
                    }
                    Err(e) => {
                        tracing::error!(tries = n, error = %e, component = %a.component, kind = a.kind, "alert webhook given up");
                        metrics::counter!("facteur_alerts_total", "channel" => "webhook", "result" => "failed")
                            .increment(1);
                    }
                }
            }
        }
    }

    async fn emails(self: Arc<Self>, mut rx: mpsc::Receiver<Announcement>) {
        let mut waiting: VecDeque<Announcement> = VecDeque::new();
        loop {
            // While some wait for storage, try again every few seconds.
            let next = if waiting.is_empty() {
                rx.recv().await
            } else {
                tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap_or(None)
            };
            match next {
                Some(a) => {
                    if waiting.len() >= EMAIL_BACKLOG {
                        tracing::error!(
                            "alert emails waiting for storage exceed {EMAIL_BACKLOG}; the oldest is dropped"
                        );
                        waiting.pop_front();
                    }
                    waiting.push_back(a);
                }
                None if rx.is_closed() && waiting.is_empty() => return,
                None => {}
            }
            while let Some(a) = waiting.front() {
                match self.queue_email(a).await {
                    Ok(()) => {
                        metrics::counter!("facteur_alerts_total", "channel" => "email", "result" => "ok").increment(1);
                        waiting.pop_front();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, waiting = waiting.len(), "cannot queue an alert email yet; kept and tried again");
                        break;
                    }
                }
            }
            if rx.is_closed() && waiting.is_empty() {
                return;
            }
        }
    }

    async fn queue_email(&self, a: &Announcement) -> Result<(), String> {
        let now_ms = self.clock.now_ms();
        let wanted = self.config.email.to_lowercase();
        let days = now_ms.div_euclid(86_400_000);
        let (to, route) = facteur_spool::addressing::route_to(&self.store, &wanted, days)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("alerts.email {wanted} is a local address that leads nowhere"))?;
        let id = MessageId::new(now_ms.max(0) as u64);
        let data = email(a, &wanted, &self.hostname, &format!("{id}@{}", self.hostname));
        let msg = NewMessage {
            hold: false,
            id,
            received_at: now_ms.div_euclid(1000),
            class: Class::System,
            envelope: StoredEnvelope {
                mail_from: String::new(),
                helo: self.hostname.clone(),
                client_ip: "127.0.0.1".into(),
                ..StoredEnvelope::default()
            },
            data: match &route {
                Route::Local { user, .. } => {
                    [facteur_spool::addressing::final_delivery_fields("", user, &[]), data].concat()
                }
                Route::Remote => data,
            },
            recipients: vec![NewRecipient { address: to, notify: Some(Notify::NEVER), orcpt: None, route }],
        };
        self.store.store_message(msg).await.map(drop).map_err(|e| e.to_string())
    }
}

/// The alert as an email (RFC 5322), auto-generated (RFC 3834 §5).
fn email(a: &Announcement, to: &str, hostname: &str, message_id: &str) -> Vec<u8> {
    use mail_builder::MessageBuilder;
    use mail_builder::headers::address::Address;
    use mail_builder::headers::raw::Raw;
    let subject = match a.kind {
        "opened" => format!("[facteur] Incident: {}", a.title),
        "resolved" => format!("[facteur] Resolved: {}", a.title),
        _ => format!("[facteur] Update: {}", a.title),
    };
    let regions = if a.regions.is_empty() { "-".to_string() } else { a.regions.join(", ") };
    let body = format!(
        "{}\n\nComponent: {}\nRegions: {}\nSeen by: {}\nAt: {}\n",
        a.text,
        a.component,
        regions,
        a.node,
        facteur_dsn::rfc5322_date(a.at)
    );
    let mut out = Vec::new();
    let _ = MessageBuilder::new()
        .from(Address::new_address(Some("facteur"), format!("MAILER-DAEMON@{hostname}")))
        .to(Address::new_address(None::<&str>, to))
        .subject(subject)
        .header("Date", Raw::new(facteur_dsn::rfc5322_date(a.at)))
        .message_id(message_id)
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(body)
        .write_to(&mut out);
    out
}

/// One POST; Ok on a 2xx.
async fn post(e: &Endpoint, body: &[u8], signature: &str, a: &Announcement) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port)).await.map_err(|x| format!("connect: {x}"))?;
    let request = hyper::Request::post(e.path.as_str())
        .header(hyper::header::HOST, e.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("facteur/", env!("CARGO_PKG_VERSION")))
        .header("X-Facteur-Event", format!("incident.{}", a.kind))
        .header("X-Facteur-Signature", signature)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|x| x.to_string())?;
    let status = if e.tls {
        let name = rustls::pki_types::ServerName::try_from(e.host.clone()).map_err(|x| x.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(client_tls()?)
            .connect(name, tcp)
            .await
            .map_err(|x| format!("TLS: {x}"))?;
        send(tls, request).await?
    } else {
        send(tcp, request).await?
    };
    if status.is_success() { Ok(()) } else { Err(format!("answered {status}")) }
}

async fn send<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: T,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::StatusCode, String> {
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.map_err(|x| x.to_string())?;
    let driver = tokio::spawn(conn);
    let response = sender.send_request(request).await.map_err(|x| x.to_string());
    driver.abort();
    response.map(|r| r.status())
}

/// Verified TLS for webhooks: the system's roots.
fn client_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return Err("no system trust store for the webhook's TLS (install ca-certificates)".into());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_secrets_are_checked() {
        let e = Endpoint::parse("https://hooks.example:8443/a/b?c=1").unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port, e.path.as_str()), (true, "hooks.example", 8443, "/a/b?c=1"));
        let e = Endpoint::parse("http://127.0.0.1/x").unwrap();
        assert_eq!((e.tls, e.port, e.authority.as_str()), (false, 80, "127.0.0.1"));
        assert!(Endpoint::parse("ftp://x/").is_err());
        let mut c = AlertConfig { webhook_url: "http://127.0.0.1:9/".into(), ..AlertConfig::default() };
        assert!(c.check().unwrap_err().contains("webhook_secret"));
        c.webhook_secret = "0123456789abcdef".into();
        assert!(c.check().is_ok());
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_and_body() {
        // Python: hmac.new(b"Jefe", b"0.what do ya want for nothing?", hashlib.sha256).hexdigest()
        assert_eq!(
            sign("Jefe", 0, b"what do ya want for nothing?"),
            "t=0,v1=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
        assert_ne!(sign("Jefe", 1, b"x"), sign("Jefe", 2, b"x"), "the time is signed");
    }
}
