//! One client connection's I/O with the same rules for every protocol:
//! idle and pre-login timeouts, a deadline for each request (a command
//! line, a message, a literal) that grows with the data received (a minimum
//! data rate, as Postfix's `smtpd_per_request_deadline` with
//! `smtpd_min_data_rate`), a write timeout, tighter limits while the
//! listener is under pressure, and the shutdown and eviction signals.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::gate::{Gate, Ticket};

/// Timeouts of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Silence allowed between requests once logged in (SMTP: always).
    pub idle: Duration,
    /// Silence allowed between requests before login.
    pub preauth: Duration,
    /// A request must be complete within this, plus one second per
    /// `min_data_rate` octets received in it.
    pub request: Duration,
    /// Octets per second a request is credited with (0: no credit).
    pub min_data_rate: u64,
    /// Output the client leaves unread this long ends the session.
    pub write: Duration,
    /// Under pressure, `preauth` (for SMTP, the idle timeout of a session
    /// that has not authenticated) and `request` are at most this.
    pub stressed: Duration,
}

/// A protocol's gate and timeouts from its configuration keys: the caps,
/// then `[idle, preauth, request, min_data_rate, write, stressed]` in
/// seconds (the rate in octets per second). At the cap, a connection that
/// has made no progress for a fifth of the stressed timeout (1 s at least)
/// may be evicted for a newcomer.
pub fn limits(max_connections: usize, max_per_ip: usize, t: [u64; 6]) -> (crate::GateConfig, Timeouts) {
    let s = |n: u64| Duration::from_secs(n.max(1));
    let [idle, preauth, request, min_data_rate, write, stressed] = t;
    let evict_after = s(stressed / 5).min(s(stressed));
    let gate = crate::GateConfig { max_connections: max_connections.max(1), max_per_ip, evict_after };
    let timeouts = Timeouts {
        idle: s(idle),
        preauth: s(preauth),
        request: s(request),
        min_data_rate,
        write: s(write),
        stressed: s(stressed),
    };
    (gate, timeouts)
}

/// What a wait for input gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// This many octets were read into the buffer.
    Data(usize),
    /// The client closed its side.
    Eof,
    /// Nothing (or not enough) arrived in time.
    Timeout(Waited),
    /// The server is stopping.
    Shutdown,
    /// The gate needs this connection's place for a new client.
    Evicted,
}

/// What ended [`Conn::read_or`].
#[derive(Debug, PartialEq, Eq)]
pub enum Wake<T> {
    Input(Input),
    Other(T),
}

/// Which limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Between requests.
    Idle,
    /// In the middle of a request (too slow).
    Request,
}

/// The I/O stream of a connection, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A client connection: the stream, its place at the gate and its timers.
pub struct Conn<IO> {
    pub(crate) io: IO,
    pub(crate) ctl: Control,
}

/// What a connection keeps across a TLS upgrade.
pub(crate) struct Control {
    pub(crate) ticket: Ticket,
    pub(crate) gate: Arc<Gate>,
    pub(crate) timeouts: Timeouts,
    pub(crate) shutdown: watch::Receiver<bool>,
    logged_in: bool,
    /// IMAP and POP3: until login, commands are not progress and the
    /// pre-login timeout runs from the connection's start.
    needs_login: bool,
    started: Instant,
    /// When the request now being received began, and its octets so far.
    request: Option<(Instant, u64)>,
}

impl Control {
    pub(crate) fn new(
        ticket: Ticket,
        gate: Arc<Gate>,
        timeouts: Timeouts,
        needs_login: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Control {
            ticket,
            gate,
            timeouts,
            shutdown,
            logged_in: false,
            needs_login,
            started: Instant::now(),
            request: None,
        }
    }

    pub(crate) fn under_pressure(&self) -> bool {
        self.gate.under_pressure()
    }

    /// Resolves when the server stops or the gate evicts this connection.
    pub(crate) async fn told_to_go(&mut self) {
        let presence = self.ticket.presence.clone();
        tokio::select! {
            _ = self.shutdown.wait_for(|s| *s) => {}
            _ = presence.evicted() => {}
        }
    }
}

impl<IO: Stream> Conn<IO> {
    pub(crate) fn new(io: IO, ctl: Control) -> Self {
        Conn { io, ctl }
    }

    /// The stream itself (for a protocol's own handshake steps).
    pub fn stream(&mut self) -> &mut IO {
        &mut self.io
    }

    /// A request was answered: the connection is making progress, and the
    /// next bytes start a new request.
    pub fn progressed(&mut self) {
        self.ctl.request = None;
        // Before login on IMAP and POP3 a command is not progress: NOOPs
        // would keep a stranger's connection fresh forever.
        if !self.ctl.needs_login || self.ctl.logged_in {
            self.ctl.ticket.presence.progressed(&self.ctl.gate);
        }
    }

    /// The client logged in: the idle timeout applies instead of the
    /// pre-login one, and the connection is no longer evicted for others.
    pub fn logged_in(&mut self) {
        self.ctl.logged_in = true;
        self.ctl.ticket.presence.protect();
    }

    pub fn is_logged_in(&self) -> bool {
        self.ctl.logged_in
    }

    /// True once the server is stopping.
    pub fn shutting_down(&self) -> bool {
        *self.ctl.shutdown.borrow()
    }

    /// When the wait for input must end: between requests (`partial` false)
    /// the idle or pre-login timeout from now; inside a request (some of it
    /// buffered) its deadline, which each octet received extends by
    /// 1/`min_data_rate` seconds.
    /// `since`: when this wait began (a pressure change recomputes the
    /// deadline, it does not restart it).
    fn deadline(&mut self, partial: bool, idle_for: Option<Duration>, since: Instant) -> (Instant, Waited) {
        let t = &self.ctl.timeouts;
        let stressed = self.ctl.under_pressure();
        let cap = |d: Duration| if stressed { d.min(t.stressed) } else { d };
        let now = Instant::now();
        if !partial {
            self.ctl.request = None;
            let at = match idle_for {
                Some(d) => since + d,
                None if self.ctl.logged_in => since + t.idle,
                // IMAP and POP3: the whole time before login is bounded.
                None if self.ctl.needs_login => (self.ctl.started + t.preauth).min(since + cap(t.preauth)),
                None => since + cap(t.preauth),
            };
            return (at, Waited::Idle);
        }
        let (start, octets) = *self.ctl.request.get_or_insert((now, 0));
        let credit = match t.min_data_rate {
            0 => Duration::ZERO,
            rate => Duration::from_millis(octets.saturating_mul(1000) / rate),
        };
        (start + cap(t.request) + credit, Waited::Request)
    }

    /// Wait for input. `partial`: part of a request is already buffered (a
    /// command line without its end, a message under way). `idle_for`
    /// overrides the idle timeout (IMAP IDLE, the autologout of RFC 9051
    /// §5.4 counted from the client's last bytes).
    pub async fn read(&mut self, buf: &mut [u8], partial: bool, idle_for: Option<Duration>) -> std::io::Result<Input> {
        match self.read_or(buf, partial, idle_for, std::future::pending::<()>()).await? {
            Wake::Input(i) => Ok(i),
            Wake::Other(()) => unreachable!("pending() never resolves"),
        }
    }

    /// [`Conn::read`], or `other` if it resolves first (IMAP IDLE waits for
    /// mailbox changes too).
    pub async fn read_or<T>(
        &mut self,
        buf: &mut [u8],
        partial: bool,
        idle_for: Option<Duration>,
        other: impl std::future::Future<Output = T>,
    ) -> std::io::Result<Wake<T>> {
        let mut other = std::pin::pin!(other);
        let since = Instant::now();
        loop {
            let (deadline, waited) = self.deadline(partial, idle_for, since);
            let presence = self.ctl.ticket.presence.clone();
            let r = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.io.read(buf)) => r,
                t = &mut other => return Ok(Wake::Other(t)),
                _ = self.ctl.shutdown.wait_for(|s| *s) => return Ok(Wake::Input(Input::Shutdown)),
                // Evicted, or pressure came or went: the deadline is computed again.
                _ = presence.woken() => {
                    if presence.is_evicted() {
                        return Ok(Wake::Input(Input::Evicted));
                    }
                    continue;
                }
            };
            let input = match r {
                Ok(Ok(0)) => Input::Eof,
                Ok(Ok(n)) => {
                    let now = Instant::now();
                    let (start, octets) = self.ctl.request.get_or_insert((now, 0));
                    *octets += n as u64;
                    // Content arriving at the minimum rate or faster (a big
                    // message under way) is progress too, not a stall;
                    // under pressure only finished requests count.
                    let rate = self.ctl.timeouts.min_data_rate;
                    let elapsed_ms = now.duration_since(*start).as_millis().max(1000) as u64;
                    let calm = !self.ctl.gate.under_pressure();
                    if calm && rate > 0 && octets.saturating_mul(1000) / elapsed_ms >= rate {
                        self.ctl.ticket.presence.progressed(&self.ctl.gate);
                    }
                    Input::Data(n)
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => Input::Timeout(waited),
            };
            return Ok(Wake::Input(input));
        }
    }

    /// Wait at most `within` for the client to send anything (SMTP's
    /// greeting pause): true if it did. The bytes are dropped.
    pub async fn talks_within(&mut self, within: Duration) -> std::io::Result<bool> {
        let mut b = [0u8; 512];
        match tokio::time::timeout(within, self.io.read(&mut b)).await {
            Ok(Ok(n)) => Ok(n > 0),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// Write and flush, within the write timeout (tighter under pressure).
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let t = &self.ctl.timeouts;
        let limit =
            if self.ctl.under_pressure() { t.write.min(t.stressed.max(Duration::from_secs(30))) } else { t.write };
        let io = &mut self.io;
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client left output unread")),
        }
    }

    /// Close our side (best effort, bounded).
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.io.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::GateConfig;

    fn conn(t: Timeouts) -> (Conn<tokio::io::DuplexStream>, tokio::io::DuplexStream, watch::Sender<bool>, Arc<Gate>) {
        let gate =
            Gate::new("test", GateConfig { max_connections: 100, max_per_ip: 0, evict_after: Duration::from_secs(60) });
        let ticket = gate.admit([127, 0, 0, 1].into(), false).unwrap();
        let (tx, rx) = watch::channel(false);
        let (a, b) = tokio::io::duplex(1 << 16);
        (Conn::new(a, Control::new(ticket, gate.clone(), t, false, rx)), b, tx, gate)
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            idle: Duration::from_secs(300),
            preauth: Duration::from_secs(60),
            request: Duration::from_secs(10),
            min_data_rate: 100,
            write: Duration::from_secs(300),
            stressed: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_request_is_cut_at_its_deadline() {
        let (mut c, mut peer, _tx, _g) = conn(timeouts());
        let mut buf = [0u8; 64];
        let start = Instant::now();
        // One octet every 2 s: 10 s plus 1/100 s per octet is far too little.
        let trickle = tokio::spawn(async move {
            for _ in 0..100 {
                if peer.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            peer
        });
        let mut partial = false;
        loop {
            match c.read(&mut buf, partial, None).await.unwrap() {
                Input::Data(_) => partial = true,
                other => {
                    assert_eq!(other, Input::Timeout(Waited::Request));
                    break;
                }
            }
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(10) && took < Duration::from_secs(12), "{took:?}");
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn data_received_extends_the_request_deadline() {
        let (mut c, mut peer, _tx, _g) = conn(timeouts());
        let mut buf = [0u8; 4096];
        // 1,000 octets per second for 30 s: above the minimum rate, never cut.
        let sender = tokio::spawn(async move {
            for _ in 0..30 {
                peer.write_all(&[b'y'; 1000]).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            peer
        });
        let start = Instant::now();
        let mut got = 0;
        while got < 30_000 {
            match c.read(&mut buf, true, None).await.unwrap() {
                Input::Data(n) => got += n,
                other => panic!("cut after {got} octets: {other:?}"),
            }
        }
        assert!(start.elapsed() >= Duration::from_secs(29));
        let _peer = sender.await.unwrap();
        // Past the end of the data, the deadline (10 s + 300 s of credit) still holds.
        c.progressed();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_preauth_timeouts() {
        let (mut c, _peer, _tx, _g) = conn(timeouts());
        let mut buf = [0u8; 16];
        let start = Instant::now();
        assert_eq!(c.read(&mut buf, false, None).await.unwrap(), Input::Timeout(Waited::Idle));
        assert_eq!(start.elapsed().as_secs(), 60, "before login: the pre-login timeout");
        c.logged_in();
        let start = Instant::now();
        assert_eq!(c.read(&mut buf, false, None).await.unwrap(), Input::Timeout(Waited::Idle));
        assert_eq!(start.elapsed().as_secs(), 300);
    }

    #[tokio::test(start_paused = true)]
    async fn pressure_tightens_a_wait_already_under_way() {
        let (mut c, _peer, _tx, gate) = conn(Timeouts { preauth: Duration::from_secs(60), ..timeouts() });
        let mut buf = [0u8; 16];
        let start = Instant::now();
        let filler = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // 75 more connections on a gate of 100: pressure.
            let tickets: Vec<_> = (0..75u8).map(|i| gate.admit([10, 0, 0, i].into(), false).unwrap()).collect();
            tokio::time::sleep(Duration::from_secs(600)).await;
            drop(tickets);
        });
        assert_eq!(c.read(&mut buf, false, None).await.unwrap(), Input::Timeout(Waited::Idle));
        assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
        filler.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn before_login_the_whole_wait_is_bounded_and_commands_are_not_progress() {
        let gate = Gate::new("t", GateConfig { max_connections: 10, max_per_ip: 0, evict_after: Duration::ZERO });
        let ticket = gate.admit([127, 0, 0, 1].into(), false).unwrap();
        let presence = ticket.presence.clone();
        let (_tx, rx) = watch::channel(false);
        let (a, mut peer) = tokio::io::duplex(1 << 16);
        let mut c = Conn::new(a, Control::new(ticket, gate.clone(), timeouts(), true, rx));
        let start = Instant::now();
        let mut buf = [0u8; 64];
        // A NOOP every 20 s, each answered: the 60 s before login still run out.
        let noops = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if peer.write_all(b"a NOOP\r\n").await.is_err() {
                    break;
                }
            }
            peer
        });
        loop {
            match c.read(&mut buf, false, None).await.unwrap() {
                Input::Data(_) => c.progressed(),
                other => {
                    assert_eq!(other, Input::Timeout(Waited::Idle));
                    break;
                }
            }
        }
        assert_eq!(start.elapsed().as_secs(), 60);
        // Nor did the NOOPs count as progress for eviction.
        let newcomer = gate.admit([127, 0, 0, 2].into(), false).map(|_| ());
        assert!(newcomer.is_ok());
        assert_eq!(presence.progress_at(), 0, "no progress recorded before login");
        noops.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_pressure_flip_does_not_restart_the_idle_timer() {
        let (mut c, _peer, _tx, gate) = conn(Timeouts { preauth: Duration::from_secs(60), ..timeouts() });
        let mut buf = [0u8; 16];
        let start = Instant::now();
        let flipper = tokio::spawn(async move {
            // Pressure on and off every 3 s (with a stressed timeout of 5 s).
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let tickets: Vec<_> = (0..75u8).map(|i| gate.admit([10, 0, 1, i].into(), false).unwrap()).collect();
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(tickets);
            }
        });
        assert_eq!(c.read(&mut buf, false, None).await.unwrap(), Input::Timeout(Waited::Idle));
        assert!(start.elapsed() <= Duration::from_secs(60), "{:?}", start.elapsed());
        flipper.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_and_eviction_end_a_wait() {
        let (mut c, _peer, tx, _g) = conn(timeouts());
        let mut buf = [0u8; 16];
        tx.send(true).unwrap();
        assert_eq!(c.read(&mut buf, false, None).await.unwrap(), Input::Shutdown);

        let gate = Gate::new("t", GateConfig { max_connections: 1, max_per_ip: 0, evict_after: Duration::ZERO });
        let ticket = gate.admit([127, 0, 0, 1].into(), false).unwrap();
        let (_tx, rx) = watch::channel(false);
        let (a, _b) = tokio::io::duplex(64);
        let mut c = Conn::new(a, Control::new(ticket, gate.clone(), timeouts(), false, rx));
        let g2 = gate.clone();
        let newcomer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            g2.admit([127, 0, 0, 2].into(), false).map(|_| ())
        });
        assert_eq!(c.read(&mut buf, false, None).await.unwrap(), Input::Evicted);
        assert!(newcomer.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn unread_output_times_out() {
        let (mut c, _peer, _tx, _g) = conn(Timeouts { write: Duration::from_secs(7), ..timeouts() });
        // The duplex holds 64 KiB; the peer never reads.
        let big = vec![0u8; 1 << 20];
        let start = Instant::now();
        let e = c.write(&big).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed().as_secs(), 7);
    }
}
