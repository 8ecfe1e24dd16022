//! What facteur's listeners (SMTP, IMAP, POP3) share at the I/O edge: the
//! accept loop with its graceful shutdown, the server side of a TLS
//! handshake, and failed-login accounting per client address. No protocol.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Accept connections on `listener` until `shutdown` turns true, running
/// `connection` for each in its own task (in a span named after the
/// listener and the peer). Then sessions, which see the shutdown too, get
/// `grace` to finish before they are aborted.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    connection: F,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        // Reap finished sessions so the set stays small.
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, listener = name, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let session = connection(stream, peer, shutdown.clone());
        let span = tracing::info_span!("conn", listener = name, peer = %peer);
        tasks.spawn(
            async move {
                if let Err(e) = session.await {
                    tracing::debug!(error = %e, "connection ended with an I/O error");
                }
            }
            .instrument(span),
        );
    }
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

/// The server side of a TLS handshake, at most 30 seconds.
pub async fn tls_accept(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(stream)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
    }
}

/// Failed logins per client address within 10 minutes: the first `max - 1`
/// are answered at once, the next ones after `delay`, and at `2 × max` the
/// connection is to be closed.
pub struct FailedLogins {
    max: u32,
    delay: Duration,
    seen: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailedLogins {
    pub fn new(max: u32, delay: Duration) -> Self {
        FailedLogins { max: max.max(1), delay, seen: Mutex::new(HashMap::new()) }
    }

    /// Count a failure from `ip`: how long to wait before answering, or
    /// `None` to close the connection.
    pub fn failed(&self, ip: IpAddr) -> Option<Duration> {
        let mut seen = self.seen.lock().ok()?;
        let now = Instant::now();
        let e = seen.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) > Duration::from_secs(600) {
            *e = (0, now);
        }
        e.0 += 1;
        if e.0 >= 2 * self.max {
            None
        } else if e.0 >= self.max {
            Some(self.delay)
        } else {
            Some(Duration::ZERO)
        }
    }

    /// A successful login forgets the address's failures.
    pub fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_answered_then_slowed_then_closed() {
        let f = FailedLogins::new(2, Duration::from_secs(3));
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(f.failed(ip), Some(Duration::ZERO));
        assert_eq!(f.failed(ip), Some(Duration::from_secs(3)));
        assert_eq!(f.failed(ip), Some(Duration::from_secs(3)));
        assert_eq!(f.failed(ip), None);
        f.succeeded(ip);
        assert_eq!(f.failed(ip), Some(Duration::ZERO), "a success starts over");
        assert_eq!(f.failed([10, 0, 0, 1].into()), Some(Duration::ZERO), "per address");
    }
}
