//! The one connection driver of facteur's listeners: accept, the gate
//! (caps, eviction), implicit TLS or a STARTTLS upgrade, the protocol's
//! session over a [`Conn`], and shutdown with a deadline. SMTP, IMAP and
//! POP3 implement [`Protocol`]; everything else is here, once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::conn::{Conn, Control, Stream, Timeouts};
use crate::gate::{Gate, Refused};

/// How one protocol session ended a run over a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Closed,
    /// The client asked for TLS and was told to go ahead; the session
    /// continues over TLS (RFC 3207, RFC 2595, RFC 9051 §6.2.1).
    StartTls,
}

/// A protocol's session at the I/O edge.
pub trait Protocol: Send {
    /// Run over `conn` until the session closes or asks for TLS. Each
    /// read goes through [`Conn::read`] and each write through
    /// [`Conn::write`], so the timeouts are the same for every protocol.
    fn drive<IO: Stream>(&mut self, conn: &mut Conn<IO>) -> impl Future<Output = std::io::Result<Ended>> + Send;

    /// The TLS handshake after [`Ended::StartTls`] succeeded: forget what
    /// the client said before it.
    fn tls_started(&mut self);

    /// This connection's timeouts (from the configuration it started with).
    fn timeouts(&self) -> Timeouts;

    /// Clients log in (IMAP, POP3): until they do, the pre-login timeout
    /// runs from the connection's start and commands are not progress.
    fn needs_login(&self) -> bool {
        false
    }
}

/// What a listener needs besides its socket.
#[derive(Clone)]
pub struct Listener {
    /// For logs: "smtp", "imaps", ...
    pub name: &'static str,
    /// The protocol's gate, shared by its listeners.
    pub gate: Arc<Gate>,
    /// TLS at once (ports 465, 993, 995).
    pub implicit_tls: bool,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How open sessions are given to finish after shutdown, at most.
    pub grace: Duration,
}

/// What the protocol says to a client the gate refuses (plain text only:
/// on an implicit-TLS port the connection is just closed).
pub type Busy = fn(Refused) -> Vec<u8>;

/// Accept connections until `shutdown` turns true. Each connection passes
/// the gate (`exempt` says whether its address skips the per-address cap),
/// then `session` makes its protocol state (from the configuration in force
/// now: a reload applies to new connections) and the driver runs it. After
/// shutdown, sessions (which see it too, and say 421/BYE) get `grace` to
/// finish, then they are aborted.
pub async fn serve<P, E, S>(
    listener: TcpListener,
    spec: Listener,
    mut shutdown: watch::Receiver<bool>,
    exempt: E,
    busy: Busy,
    session: S,
) where
    P: Protocol + 'static,
    E: Fn(SocketAddr) -> bool,
    S: Fn(SocketAddr) -> P,
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
                tracing::warn!(error = %e, listener = spec.name, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let span = tracing::info_span!("conn", listener = spec.name, peer = %peer);
        let ticket = match spec.gate.admit(peer.ip(), exempt(peer)) {
            Ok(t) => t,
            Err(why) => {
                crate::reject::event(spec.name, peer, "connection", why.as_str(), why.as_str(), "");
                if !spec.implicit_tls {
                    // Best effort and short: the refusal must not hold the loop.
                    let reply = busy(why);
                    tasks.spawn(async move {
                        let mut stream = stream;
                        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&reply)).await;
                    });
                }
                continue;
            }
        };
        metrics::counter!("facteur_sessions_total", "listener" => spec.name).increment(1);
        let proto = session(peer);
        let ctl = Control::new(ticket, spec.gate.clone(), proto.timeouts(), proto.needs_login(), shutdown.clone());
        let spec = spec.clone();
        tasks.spawn(
            async move {
                if let Err(e) = run(stream, ctl, proto, &spec).await {
                    tracing::debug!(error = %e, "connection ended with an I/O error");
                }
            }
            .instrument(span),
        );
    }
    let grace = spec.grace;
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(
            listener = spec.name,
            open = tasks.len(),
            "sessions still open after the shutdown grace; dropping them"
        );
    }
    tasks.abort_all();
}

async fn run<P: Protocol>(stream: TcpStream, mut ctl: Control, mut proto: P, spec: &Listener) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    if spec.implicit_tls {
        let Some(tls) = spec.tls.clone() else {
            tracing::error!(listener = spec.name, "implicit-TLS listener without a certificate; closing");
            return Ok(());
        };
        let s = handshake(stream, tls, spec.name, peer, &mut ctl).await?;
        let mut conn = Conn::new(s, ctl);
        proto.drive(&mut conn).await?;
        conn.close().await;
        return Ok(());
    }
    let mut conn = Conn::new(stream, ctl);
    if proto.drive(&mut conn).await? == Ended::StartTls {
        let Some(tls) = spec.tls.clone() else { return Ok(()) };
        let Conn { io, mut ctl } = conn;
        let s = handshake(io, tls, spec.name, peer, &mut ctl).await?;
        proto.tls_started();
        let mut conn = Conn::new(s, ctl);
        proto.drive(&mut conn).await?;
        conn.close().await;
    }
    Ok(())
}

/// The server side of a TLS handshake: 30 seconds at most (the stressed
/// timeout under pressure), and it ends at once if the server stops or the
/// gate evicts the connection. A failure is logged as a rejection.
async fn handshake(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    listener: &'static str,
    peer: Option<SocketAddr>,
    ctl: &mut Control,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let limit = if ctl.under_pressure() { HANDSHAKE.min(ctl.timeouts.stressed) } else { HANDSHAKE };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let gone = |why: &str| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why.to_string()));
    let r = tokio::select! {
        r = tokio::time::timeout(limit, acceptor.accept(stream)) => match r {
            Ok(r) => r,
            Err(_) => gone("TLS handshake timed out"),
        },
        _ = ctl.told_to_go() => gone("TLS handshake cut: shutdown or eviction"),
    };
    if let (Err(e), Some(peer)) = (&r, peer) {
        crate::reject::event(listener, peer, "tls", "none", &e.to_string(), "");
    }
    r
}

const HANDSHAKE: Duration = Duration::from_secs(30);
