//! The listener: accepts connections on loopback, runs one session task per
//! connection, and keeps what the tests look at afterwards.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::behavior::Behavior;
use crate::rate::TokenBucket;
use crate::{session, tls};

/// A message the simulator accepted with a 2xx reply at the end of data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The reverse path without its angle brackets (empty for `<>`).
    pub mail_from: String,
    /// The MAIL parameters as sent, e.g. `SIZE=1234 BODY=8BITMIME`.
    pub mail_params: String,
    /// The accepted recipients, without angle brackets, in order.
    pub rcpts: Vec<String>,
    /// The RCPT parameters of each accepted recipient (same order).
    pub rcpt_params: Vec<String>,
    /// The content: after dot-unstuffing for DATA (without the final
    /// `.` line), the chunks joined for BDAT.
    pub data: Vec<u8>,
    /// Whether it came over STARTTLS.
    pub tls: bool,
    /// Whether it came with BDAT.
    pub chunked: bool,
}

/// A simulated downstream SMTP server on `127.0.0.1`.
///
/// Dropping it (or [`Downstream::stop`]) stops accepting and closes every
/// open session.
pub struct Downstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl Downstream {
    /// Start on `127.0.0.1:0`. Panics if no port can be bound.
    pub async fn start(behavior: Behavior) -> Downstream {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        match Self::bind(loopback, behavior).await {
            Ok(downstream) => downstream,
            Err(e) => panic!("facteur-testkit: cannot listen on {loopback}: {e}"),
        }
    }

    /// Start on a given address (the `facteur-sim` binary's `--listen`).
    pub async fn bind(addr: SocketAddr, behavior: Behavior) -> io::Result<Downstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(behavior));
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Downstream { addr, shared, accept_task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The self-signed certificate STARTTLS presents (PEM; names
    /// `localhost`, `sim.invalid`, `*.sim.test` and 127.0.0.1), for a client that verifies
    /// with it as its authority.
    pub fn certificate_pem(&self) -> String {
        match self.shared.tls() {
            Ok((_, pem)) => pem,
            Err(e) => panic!("facteur-testkit: cannot make a certificate: {e}"),
        }
    }

    /// Change what the simulator answers. Sessions already open keep the
    /// behaviour they started with; the rate bucket starts full again.
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.shared.bucket) = behavior.rate.map(|rate| TokenBucket::new(rate, Instant::now()));
        *lock(&self.shared.behavior) = behavior;
    }

    /// The messages accepted so far (only while `record` is on).
    pub fn received(&self) -> Vec<ReceivedMessage> {
        lock(&self.shared.received).clone()
    }

    /// How many messages were accepted so far, recorded or not.
    pub fn accepted(&self) -> usize {
        *self.shared.accepted.borrow()
    }

    /// How many MAIL commands got `421 4.7.0 rate limit` so far.
    pub fn rate_refused(&self) -> usize {
        self.shared.rate_refused.load(Ordering::Relaxed)
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// The most connections that were open at the same time so far.
    pub fn peak_connections(&self) -> usize {
        self.shared.peak_open.load(Ordering::Relaxed)
    }

    /// Append one line per accepted message to `log` from now on:
    /// `ARRIVAL_UNIX_MS<TAB>X-BENCH` where X-BENCH is the value of the
    /// message's first `X-Bench` header field (`-` when it has none). Lines
    /// are buffered by the caller's writer; see [`Downstream::flush_log`].
    pub fn log_arrivals(&self, log: Box<dyn Write + Send>) {
        *lock(&self.shared.log) = Some(log);
    }

    /// Flush the arrival log, if there is one.
    pub fn flush_log(&self) -> io::Result<()> {
        lock(&self.shared.log).as_mut().map_or(Ok(()), |log| log.flush())
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Every command line received, over all connections, in order, without
    /// its line ending (BDAT chunks and DATA bodies are not included).
    pub fn transcript(&self) -> Vec<String> {
        lock(&self.shared.transcript).clone()
    }

    /// How many times input had already arrived before the simulator sent
    /// the reply the client was due to wait for — evidence of pipelining
    /// (RFC 2920). A client that waits for every reply always scores 0; a
    /// pipelining client scores more when its commands arrive together.
    pub fn pipelined(&self) -> usize {
        self.shared.pipelined.load(Ordering::Relaxed)
    }

    /// Wait until at least `n` messages were accepted; false on timeout.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let mut accepted = self.shared.accepted.subscribe();
        matches!(tokio::time::timeout(timeout, accepted.wait_for(|&count| count >= n)).await, Ok(Ok(_)))
    }

    /// Stop accepting and close every session (the same as dropping it).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        // The accept task owns the listener and the JoinSet of sessions:
        // aborting it drops both, which aborts the sessions.
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = tcp.set_nodelay(true);
                    let behavior = lock(&shared.behavior).clone();
                    let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
                    shared.peak_open.fetch_max(open, Ordering::Relaxed);
                    let shared = Arc::clone(&shared);
                    sessions.spawn(async move {
                        session::run(Arc::clone(&shared), behavior, tcp).await;
                        shared.open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                // Out of descriptors or the like: give it a moment, no busy loop.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// What the sessions and the handle share.
pub(crate) struct Shared {
    behavior: Mutex<Behavior>,
    bucket: Mutex<Option<TokenBucket>>,
    received: Mutex<Vec<ReceivedMessage>>,
    accepted: watch::Sender<usize>,
    connections: AtomicUsize,
    /// Sessions open now, and the most at once.
    open: AtomicUsize,
    peak_open: AtomicUsize,
    rate_refused: AtomicUsize,
    log: Mutex<Option<Box<dyn Write + Send>>>,
    transcript: Mutex<Vec<String>>,
    pipelined: AtomicUsize,
    queue_ids: AtomicU64,
    tls: Mutex<Option<(Arc<ServerConfig>, String)>>,
}

impl Shared {
    fn new(behavior: Behavior) -> Self {
        Shared {
            bucket: Mutex::new(behavior.rate.map(|rate| TokenBucket::new(rate, Instant::now()))),
            behavior: Mutex::new(behavior),
            received: Mutex::new(Vec::new()),
            accepted: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
            rate_refused: AtomicUsize::new(0),
            log: Mutex::new(None),
            transcript: Mutex::new(Vec::new()),
            pipelined: AtomicUsize::new(0),
            queue_ids: AtomicU64::new(0),
            tls: Mutex::new(None),
        }
    }

    pub(crate) fn log_command(&self, line: &str) {
        lock(&self.transcript).push(line.to_owned());
    }

    pub(crate) fn note_pipelined(&self) {
        self.pipelined.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the rate limit lets one more message in at `now`.
    pub(crate) fn admit(&self, now: Instant) -> bool {
        let admitted = lock(&self.bucket).as_mut().is_none_or(|bucket| bucket.try_take(now));
        if !admitted {
            self.rate_refused.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Record an accepted message; returns its queue id.
    pub(crate) fn accept(&self, message: ReceivedMessage, record: bool) -> String {
        let id = self.queue_ids.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(log) = lock(&self.log).as_mut() {
            let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let tag = header_value(&message.data, b"x-bench").unwrap_or_else(|| "-".into());
            // A failed write loses a log line, not the message: the counts
            // printed by facteur-sim still see it.
            let _ = writeln!(log, "{ms}\t{tag}");
        }
        if record {
            lock(&self.received).push(message);
        }
        self.accepted.send_modify(|count| *count += 1);
        format!("sim{id}")
    }

    /// The TLS configuration and its certificate (PEM), made on first use
    /// and kept.
    pub(crate) fn tls(&self) -> io::Result<(Arc<ServerConfig>, String)> {
        let mut slot = lock(&self.tls);
        if let Some((config, pem)) = slot.as_ref() {
            return Ok((Arc::clone(config), pem.clone()));
        }
        let (config, pem) = tls::self_signed_config()?;
        *slot = Some((Arc::clone(&config), pem.clone()));
        Ok((config, pem))
    }

    pub(crate) fn tls_config(&self) -> io::Result<Arc<ServerConfig>> {
        self.tls().map(|(config, _)| config)
    }
}

/// The value of the first header field called `name` (lower case) in the
/// header section of `data`, unfolded and trimmed; tabs become spaces.
fn header_value(data: &[u8], name: &[u8]) -> Option<String> {
    let mut lines = data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if !line[..colon].trim_ascii().eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = line[colon + 1..].to_vec();
        // Continuation lines start with white space (RFC 5322 §2.2.3).
        for next in lines.by_ref() {
            if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                value.extend_from_slice(next);
            } else {
                break;
            }
        }
        let text = String::from_utf8_lossy(&value).replace('\t', " ");
        return Some(text.trim().to_string());
    }
    None
}

/// A poisoned lock only means a test panicked elsewhere; the data is fine.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::header_value;

    #[test]
    fn header_values_are_found_in_the_header_section_only() {
        let data = b"From: a@b\r\nX-Bench: bulk 12\r\n 1700000000000\r\nSubject: x\r\n\r\nX-Bench: body\r\n";
        assert_eq!(header_value(data, b"x-bench").as_deref(), Some("bulk 12 1700000000000"));
        assert_eq!(header_value(b"Subject: x\r\n\r\nX-Bench: body\r\n", b"x-bench"), None);
        assert_eq!(header_value(b"x-bench:\tone\n", b"x-bench").as_deref(), Some("one"));
    }
}
