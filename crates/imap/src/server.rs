//! IMAP listeners and the per-connection driver: framing with
//! `imap-codec`'s fragmentizer (literals announced before their bytes
//! arrive), STARTTLS or implicit TLS, limits, and IDLE's wait for changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use facteur_store::Store;
use imap_codec::decode::Decoder;
use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, Fragmentizer, LiteralAnnouncement};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::extended;
use crate::session::{Next, Session, SessionConfig, UserSlots};

/// `[imap]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// Largest literal (APPEND message), octets.
    pub max_literal: u32,
    /// Longest command line outside literals, octets.
    pub max_line: u32,
    /// Sessions one user may have open at once.
    pub max_connections_per_user: usize,
    /// Failed logins from one address within 10 minutes before each further
    /// attempt is slowed down by `failed_login_delay_secs`; at twice this
    /// the connection is closed.
    pub max_failed_logins: u32,
    pub failed_login_delay_secs: u64,
    /// An idle client is logged out after this (RFC 9051 §5.4: at least 30 minutes).
    pub idle_timeout_secs: u64,
    /// Allow LOGIN and AUTHENTICATE without TLS (for loopback development).
    pub plaintext_auth: bool,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            max_literal: 64 * 1024 * 1024,
            max_line: 64 * 1024,
            max_connections_per_user: 20,
            max_failed_logins: 5,
            failed_login_delay_secs: 2,
            idle_timeout_secs: 30 * 60,
            plaintext_auth: false,
        }
    }
}

/// What every IMAP connection shares.
pub struct ImapContext<S> {
    pub store: S,
    pub config: ImapConfig,
    pub session: Arc<SessionConfig>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub slots: Arc<UserSlots>,
    failures: facteur_net::FailedLogins,
}

impl<S: Store + Clone> ImapContext<S> {
    pub fn new(store: S, config: ImapConfig, hostname: String, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let session =
            Arc::new(SessionConfig { hostname, plaintext_auth: config.plaintext_auth, starttls: tls.is_some() });
        let slots = Arc::new(UserSlots::new(config.max_connections_per_user));
        let failures = facteur_net::FailedLogins::new(
            config.max_failed_logins,
            Duration::from_secs(config.failed_login_delay_secs),
        );
        ImapContext { store, config, session, tls, slots, failures }
    }
}

/// Accept IMAP connections (`implicit_tls`: port 993 style) until shutdown;
/// open sessions are told BYE and get five seconds to go.
pub async fn serve<S: Store + Clone>(
    listener: TcpListener,
    implicit_tls: bool,
    ctx: Arc<ImapContext<S>>,
    shutdown: watch::Receiver<bool>,
) {
    let name = if implicit_tls { "imaps" } else { "imap" };
    facteur_net::accept_loop(listener, name, shutdown, Duration::from_secs(5), |stream, peer, shutdown| {
        connection(stream, peer, implicit_tls, ctx.clone(), shutdown)
    })
    .await;
}

async fn connection<S: Store + Clone>(
    stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    ctx: Arc<ImapContext<S>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(ctx.store.clone(), ctx.session.clone(), implicit_tls).with_slots(ctx.slots.clone());
    if implicit_tls {
        let Some(tls) = ctx.tls.clone() else {
            tracing::error!("implicit-TLS IMAP listener without a certificate; closing");
            return Ok(());
        };
        let mut s = facteur_net::tls_accept(stream, tls).await?;
        session.greeting();
        drive(&mut s, &mut session, &ctx, peer, &mut shutdown).await?;
        return Ok(());
    }
    let mut stream = stream;
    session.greeting();
    if drive(&mut stream, &mut session, &ctx, peer, &mut shutdown).await? == Ended::StartTls {
        let Some(tls) = ctx.tls.clone() else { return Ok(()) };
        let mut s = facteur_net::tls_accept(stream, tls).await?;
        session.tls_started();
        drive(&mut s, &mut session, &ctx, peer, &mut shutdown).await?;
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Closed,
    StartTls,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Command,
    AuthData,
    Idle,
}

/// How long a client may leave output unread before the session ends
/// (its memory is one FETCH piece at most, but the session would hold it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(300);

async fn flush<S: Store + Clone, IO: AsyncWrite + Unpin>(io: &mut IO, session: &mut Session<S>) -> std::io::Result<()> {
    let out = session.take_output();
    if !out.is_empty() {
        let write = async {
            io.write_all(&out).await?;
            io.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(r) => r?,
            Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client stopped reading")),
        }
    }
    Ok(())
}

/// After a command that may have logged in: a failure is counted for the
/// client's address and slowed down (false: too many, the BYE is sent and
/// the connection must close); a new login forgets the address's failures.
async fn account_login<S: Store + Clone, IO: AsyncWrite + Unpin>(
    io: &mut IO,
    session: &mut Session<S>,
    ctx: &ImapContext<S>,
    peer: SocketAddr,
    was_authed: bool,
) -> std::io::Result<bool> {
    if session.auth_failed {
        session.auth_failed = false;
        match ctx.failures.failed(peer.ip()) {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                session.bye("too many failed logins");
                flush(io, session).await?;
                return Ok(false);
            }
        }
    } else if !was_authed && session.user().is_some() {
        ctx.failures.succeeded(peer.ip());
    }
    Ok(true)
}

async fn drive<S: Store + Clone, IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    session: &mut Session<S>,
    ctx: &ImapContext<S>,
    peer: SocketAddr,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Ended> {
    let cfg = &ctx.config;
    let mut fz = Fragmentizer::new(cfg.max_literal.saturating_add(cfg.max_line));
    let mut buf = vec![0u8; 64 * 1024];
    let mut mode = Mode::Command;
    let mut line_too_long = false;
    let mut literal_refused = false;
    // Where the line being read starts in the message buffer (None while
    // a literal is read): a line that grows past max_line without its end
    // is not buffered further.
    let mut line_start = Some(0usize);
    let idle_timeout = Duration::from_secs(cfg.idle_timeout_secs.max(1));
    let mut changes = ctx.store.mailbox_changes();
    // The autologout (RFC 9051 §5.4) counts from when the server starts
    // waiting for the client; in IDLE, from the client's last bytes,
    // whatever updates were pushed since.
    let mut last_input = tokio::time::Instant::now();
    loop {
        let Some(fragment) = fz.progress() else {
            if let Some(start) = line_start
                && fz.message_bytes().len().saturating_sub(start) > cfg.max_line as usize
            {
                // The framing cannot be trusted past here: say why and close.
                session.bye(&format!("command line over {} octets", cfg.max_line));
                flush(io, session).await?;
                return Ok(Ended::Closed);
            }
            flush(io, session).await?;
            if mode != Mode::Idle {
                last_input = tokio::time::Instant::now();
            }
            // Wait for bytes; in IDLE also for changes to the selected mailbox.
            let read = tokio::select! {
                r = tokio::time::timeout_at(last_input + idle_timeout, io.read(&mut buf)) => r,
                c = changes.recv(), if mode == Mode::Idle => {
                    match c {
                        Ok(ch) if Some(ch.mailbox_id) == session.selected_mailbox() => session.poll(true).await,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => session.poll(true).await,
                        _ => {}
                    }
                    continue;
                }
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                    io.write_all(b"* BYE server shutting down\r\n").await?;
                    return Ok(Ended::Closed);
                }
            };
            match read {
                Ok(Ok(0)) => return Ok(Ended::Closed),
                Ok(Ok(n)) => {
                    last_input = tokio::time::Instant::now();
                    fz.enqueue_bytes(&buf[..n]);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    io.write_all(b"* BYE idle for too long (RFC 9051 \xc2\xa75.4)\r\n").await?;
                    return Ok(Ended::Closed);
                }
            }
            continue;
        };
        match fragment {
            FragmentInfo::Line { start, end, announcement, .. } => {
                line_start = if announcement.is_some() { None } else { Some(0) };
                if end - start > cfg.max_line as usize {
                    line_too_long = true;
                }
                if let Some(LiteralAnnouncement { mode: lmode, length }) = announcement {
                    // Before login a literal may be no longer than a command
                    // line: nobody unauthenticated gets 64 MiB buffered.
                    let authed = session.user().is_some();
                    let limit = if authed { cfg.max_literal } else { cfg.max_line.min(cfg.max_literal) };
                    if length > limit && !authed && lmode != LiteralMode::Sync {
                        // RFC 7888 §4: a server may close on a LITERAL+ over its limit.
                        let tag = fz.decode_tag().map(|t| t.as_ref().to_string());
                        session.bad_syntax_code(
                            tag.as_deref(),
                            "TOOBIG",
                            &format!("literal over {limit} octets before login"),
                        );
                        session.bye("literal too large before login");
                        flush(io, session).await?;
                        return Ok(Ended::Closed);
                    }
                    if length > limit || line_too_long {
                        literal_refused = length > limit;
                        if lmode == LiteralMode::Sync {
                            // The client waits for our word: refuse, it sends nothing.
                            let tag = fz.decode_tag().map(|t| t.as_ref().to_string());
                            if literal_refused {
                                let why = format!("literal over {limit} octets");
                                session.bad_syntax_code(tag.as_deref(), "TOOBIG", &why);
                            } else {
                                session
                                    .bad_syntax(tag.as_deref(), &format!("command line over {} octets", cfg.max_line));
                            }
                            fz.skip_message();
                            line_start = Some(0);
                            literal_refused = false;
                            line_too_long = false;
                            continue;
                        }
                        // LITERAL+: the bytes come anyway; read and drop them.
                        fz.poison_message();
                    } else if lmode == LiteralMode::Sync {
                        io.write_all(b"+ Ready for literal data\r\n").await?;
                        io.flush().await?;
                    }
                    continue;
                }
            }
            FragmentInfo::Literal { end, .. } => line_start = Some(end),
        }
        if !fz.is_message_complete() {
            continue;
        }
        if line_too_long || literal_refused {
            let tag = fz.decode_tag().map(|t| t.as_ref().to_string());
            if literal_refused {
                session.bad_syntax_code(tag.as_deref(), "TOOBIG", &format!("literal over {} octets", cfg.max_literal));
            } else {
                session.bad_syntax(tag.as_deref(), &format!("command line over {} octets", cfg.max_line));
            }
            line_too_long = false;
            literal_refused = false;
            continue;
        }
        match mode {
            Mode::Command => {
                // IMAP4rev2 forms the codec does not know: rewritten, options aside.
                let (decoded, ext) = match extended::rewrite(fz.message_bytes()) {
                    Some((plain, ext)) => match CommandCodec::new().decode(&plain) {
                        Ok((b"", cmd)) => (Ok(cmd.into_static()), Some(ext)),
                        _ => (Err(None), None),
                    },
                    None => (fz.decode_message(&CommandCodec::new()).map(|c| c.into_static()).map_err(Some), None),
                };
                match decoded {
                    Ok(cmd) => {
                        let was_authed = session.user().is_some();
                        let mut next = match ext {
                            Some(ext) => session.handle_extended(cmd, ext).await,
                            None => session.handle(cmd).await,
                        };
                        // A long FETCH goes out piece by piece.
                        while next == Next::More {
                            flush(io, session).await?;
                            next = session.resume().await;
                        }
                        if !account_login(io, session, ctx, peer, was_authed).await? {
                            return Ok(Ended::Closed);
                        }
                        match next {
                            Next::Command | Next::More => {}
                            Next::AuthData => mode = Mode::AuthData,
                            Next::Idle => mode = Mode::Idle,
                            Next::Logout => {
                                flush(io, session).await?;
                                return Ok(Ended::Closed);
                            }
                            Next::StartTls => {
                                flush(io, session).await?;
                                // RFC 9051 §6.2.1: nothing pipelined after STARTTLS survives.
                                return Ok(Ended::StartTls);
                            }
                        }
                    }
                    Err(e) => {
                        let tag = fz.decode_tag().map(|t| t.as_ref().to_string());
                        let why = match e {
                            Some(DecodeMessageError::MessageTooLong { .. }) => "command too long".to_string(),
                            _ => "syntax error in command (RFC 9051 §9)".to_string(),
                        };
                        session.bad_syntax(tag.as_deref(), &why);
                    }
                }
            }
            Mode::AuthData => {
                mode = Mode::Command;
                let data = fz.decode_message(&AuthenticateDataCodec::new()).map(|d| d.into_static());
                match data {
                    Ok(d) => {
                        session.auth_data(d).await;
                        if !account_login(io, session, ctx, peer, false).await? {
                            return Ok(Ended::Closed);
                        }
                    }
                    Err(_) => session.auth_garbage(),
                }
            }
            Mode::Idle => {
                mode = Mode::Command;
                match fz.decode_message(&IdleDoneCodec::new()) {
                    Ok(_) => session.idle_done(),
                    Err(_) => session.idle_bad(),
                }
            }
        }
    }
}
