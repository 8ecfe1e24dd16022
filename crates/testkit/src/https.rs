//! A small HTTPS server on loopback that answers each request by its Host
//! (`404` for hosts it was told nothing of), with a certificate of its own
//! for the names it is given: the MTA-STS policy hosts (`mta-sts.DOMAIN`)
//! of delivery tests.
//!
//! Deliberately minimal (HTTP/1.1, `Connection: close`, one response per
//! connection, the path ignored); what it answers can change while it
//! runs, and it counts requests.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status line after "HTTP/1.1 ", e.g. "200 OK" or "301 Moved".
    pub status: String,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Extra header lines, e.g. "Location: https://elsewhere/".
    pub headers: Vec<String>,
}

impl Answer {
    /// `200 OK`, `text/plain`.
    pub fn text(body: &str) -> Answer {
        Answer { status: "200 OK".into(), content_type: "text/plain".into(), body: body.into(), headers: Vec::new() }
    }
}

pub struct HttpsServer {
    addr: SocketAddr,
    pem: String,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl HttpsServer {
    /// Listen on 127.0.0.1 with a fresh self-signed certificate for `names`.
    pub async fn start(names: &[&str]) -> std::io::Result<HttpsServer> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let answers = Arc::new(Mutex::new(HashMap::new()));
        let requests = Arc::new(AtomicU64::new(0));
        let (a, r) = (answers.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, a, r) = (acceptor.clone(), a.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), serve(acceptor, tcp, a, r)).await;
                });
            }
        });
        Ok(HttpsServer { addr, pem: certified.cert.pem(), answers, requests, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The self-signed certificate (PEM), for a client's CA file.
    pub fn certificate_pem(&self) -> &str {
        &self.pem
    }

    /// What requests for `host` get from now on.
    pub fn set(&self, host: &str, answer: Answer) {
        if let Ok(mut a) = self.answers.lock() {
            a.insert(host.to_ascii_lowercase(), answer);
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    requests: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut tls = acceptor.accept(tcp).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    requests.fetch_add(1, Ordering::Relaxed);
    let text = String::from_utf8_lossy(&head);
    let host = text
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("host")).map(|(_, v)| v.trim()))
        .unwrap_or("")
        .to_ascii_lowercase();
    let found = answers.lock().ok().and_then(|a| a.get(&host).cloned());
    let a = found.unwrap_or(Answer {
        status: "404 Not Found".into(),
        content_type: "text/plain".into(),
        body: b"not here\n".to_vec(),
        headers: Vec::new(),
    });
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        a.status,
        a.content_type,
        a.body.len()
    );
    for h in &a.headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    tls.write_all(out.as_bytes()).await?;
    tls.write_all(&a.body).await?;
    tls.shutdown().await
}
