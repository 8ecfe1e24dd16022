//! A listener for the public status page that bounds what one client, and
//! all of them, can hold: at most `total` connections at once (more wait in
//! the kernel's backlog), at most `per_ip` from one address (more are
//! closed at once), and every connection cut after `lifetime`, whatever
//! it is doing (a page is served in milliseconds; a connection held open
//! without a request is a slowloris).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub total: usize,
    pub per_ip: usize,
    pub lifetime: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { total: 256, per_ip: 16, lifetime: Duration::from_secs(30) }
    }
}

pub struct BoundedListener {
    inner: TcpListener,
    bounds: Bounds,
    slots: Arc<Semaphore>,
    by_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl BoundedListener {
    pub fn new(inner: TcpListener, bounds: Bounds) -> Self {
        BoundedListener {
            inner,
            slots: Arc::new(Semaphore::new(bounds.total.max(1))),
            bounds,
            by_ip: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// One address's share, given back when the connection ends.
struct IpShare {
    by_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for IpShare {
    fn drop(&mut self) {
        if let Ok(mut m) = self.by_ip.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

pub struct BoundedStream {
    inner: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: OwnedSemaphorePermit,
    _share: IpShare,
}

impl BoundedStream {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn cut() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection lifetime reached")
}

impl AsyncRead for BoundedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedStream, SocketAddr) {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else { continue };
            let (stream, peer) = match self.inner.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait a little, as axum does.
                    tracing::warn!(error = %e, "status page: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ip = peer.ip();
            let admitted = self.by_ip.lock().is_ok_and(|mut m| {
                let n = m.entry(ip).or_insert(0);
                if *n >= self.bounds.per_ip {
                    false
                } else {
                    *n += 1;
                    true
                }
            });
            if !admitted {
                tracing::debug!(%ip, "status page: too many connections from one address; closed");
                continue;
            }
            let share = IpShare { by_ip: self.by_ip.clone(), ip };
            let deadline = Box::pin(tokio::time::sleep(self.bounds.lifetime));
            return (BoundedStream { inner: stream, deadline, _slot: slot, _share: share }, peer);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Page;
    impl crate::StatusPages for Page {
        fn html(&self) -> String {
            "<p>fine</p>".into()
        }
        fn json(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn atom(&self, _: &str) -> String {
            String::new()
        }
    }

    async fn start(bounds: Bounds) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _keep = _tx;
            crate::serve_status_within(l, Arc::new(Page), bounds, rx).await
        });
        addr
    }

    /// Bytes until the server closes (or fails) the connection.
    async fn drained(mut s: TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.expect("closed in time");
        out
    }

    #[tokio::test]
    async fn silent_connections_are_cut_and_the_cap_makes_others_wait() {
        let addr = start(Bounds { total: 2, per_ip: 10, lifetime: Duration::from_millis(600) }).await;
        let started = Instant::now();
        let silent: Vec<TcpStream> =
            vec![TcpStream::connect(addr).await.unwrap(), TcpStream::connect(addr).await.unwrap()];
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let page = String::from_utf8(drained(third).await).unwrap();
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("fine"), "{page}");
        // Served only once a slot was free: after the silent ones were cut.
        assert!(started.elapsed() >= Duration::from_millis(500), "{:?}", started.elapsed());
        for s in silent {
            assert!(drained(s).await.is_empty());
        }
    }

    #[tokio::test]
    async fn one_address_gets_its_share_only() {
        let addr = start(Bounds { total: 10, per_ip: 1, lifetime: Duration::from_secs(5) }).await;
        let _first = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let _ = second.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(drained(second).await.is_empty(), "closed without an answer");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
