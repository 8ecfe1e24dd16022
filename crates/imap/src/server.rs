//! IMAP listeners and the per-connection driver: framing with
//! `imap-codec`'s fragmentizer (literals announced before their bytes
//! arrive), STARTTLS or implicit TLS, limits, and IDLE's wait for changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use facteur_net::{Conn, Ended, Input, Waited, Wake};
use facteur_store::{Changed, Directory, Mailstore};
use imap_codec::decode::Decoder;
use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, Fragmentizer, LiteralAnnouncement};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
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
    /// Before login, a whole command (line and literals) may be no longer
    /// than this: a stranger cannot make the server hold more.
    pub max_preauth_command: u32,
    /// Sessions one user may have open at once.
    pub max_connections_per_user: usize,
    /// IMAP connections at once, both listeners together.
    pub max_connections: usize,
    /// IMAP connections at once from one address (0: no cap).
    pub max_connections_per_ip: usize,
    /// An idle client is logged out after this (RFC 9051 §5.4: at least 30 minutes).
    pub idle_timeout_secs: u64,
    /// Before login, silence allowed for this long only.
    pub preauth_timeout_secs: u64,
    /// A command (with its literals) must arrive within this, plus one
    /// second per `min_data_rate` octets received.
    pub request_timeout_secs: u64,
    pub min_data_rate: u64,
    /// Output left unread this long ends the session.
    pub write_timeout_secs: u64,
    /// While three quarters of `max_connections` are taken, the pre-login
    /// and command timeouts are at most this; at the cap, a connection that
    /// has not logged in and has been stalled for a fifth of it makes room
    /// for a new client.
    pub stress_timeout_secs: u64,
    /// Allow LOGIN and AUTHENTICATE without TLS (for loopback development).
    pub plaintext_auth: bool,
    /// Replaced by the `[auth]` section (failed logins throttled across
    /// protocols); still read so old files load, and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failed_logins: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_login_delay_secs: Option<u64>,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            max_literal: 64 * 1024 * 1024,
            max_line: 64 * 1024,
            max_preauth_command: 8 * 1024,
            max_connections_per_user: 20,
            max_connections: 1000,
            max_connections_per_ip: 20,
            idle_timeout_secs: 30 * 60,
            preauth_timeout_secs: 60,
            request_timeout_secs: 300,
            min_data_rate: 1024,
            write_timeout_secs: 300,
            stress_timeout_secs: 10,
            plaintext_auth: false,
            max_failed_logins: None,
            failed_login_delay_secs: None,
        }
    }
}

impl ImapConfig {
    /// The gate and timeouts of these listeners.
    pub fn limits(&self) -> (facteur_net::GateConfig, facteur_net::Timeouts) {
        facteur_net::limits(
            self.max_connections,
            self.max_connections_per_ip,
            [
                self.idle_timeout_secs,
                self.preauth_timeout_secs,
                self.request_timeout_secs,
                self.min_data_rate,
                self.write_timeout_secs,
                self.stress_timeout_secs,
            ],
        )
    }
}

/// What every IMAP connection shares.
pub struct ImapContext<S> {
    pub store: S,
    pub config: ImapConfig,
    pub session: Arc<SessionConfig>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub slots: Arc<UserSlots>,
    /// Connection caps of both IMAP listeners together.
    pub gate: Arc<facteur_net::Gate>,
    /// Failed logins, shared with SMTP and POP3.
    pub auth: Arc<facteur_net::AuthThrottle>,
}

impl<S: Directory + Mailstore> ImapContext<S> {
    pub fn new(store: S, config: ImapConfig, hostname: String, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let session = Arc::new(SessionConfig {
            hostname,
            plaintext_auth: config.plaintext_auth,
            starttls: tls.is_some(),
            append_limit: config.max_literal,
        });
        let slots = Arc::new(UserSlots::new(config.max_connections_per_user));
        let gate = facteur_net::Gate::new("imap", config.limits().0);
        let auth = Arc::new(facteur_net::AuthThrottle::new(facteur_net::AuthPolicy::default()));
        ImapContext { store, config, session, tls, slots, gate, auth }
    }

    /// Share the process's failed-login accounting (SMTP and POP3 use it too).
    pub fn with_auth_throttle(mut self, auth: Arc<facteur_net::AuthThrottle>) -> Self {
        self.auth = auth;
        self
    }

    /// The same context under a new configuration (reload): the gate, the
    /// per-user slots and failed logins stay; new connections get the new
    /// one, open sessions keep theirs.
    pub fn reconfigured(&self, config: ImapConfig) -> Self {
        self.gate.reconfigure(config.limits().0);
        self.slots.set_max(config.max_connections_per_user);
        let session = Arc::new(SessionConfig {
            plaintext_auth: config.plaintext_auth,
            append_limit: config.max_literal,
            ..(*self.session).clone()
        });
        ImapContext {
            store: self.store.clone(),
            config,
            session,
            tls: self.tls.clone(),
            slots: self.slots.clone(),
            gate: self.gate.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// Accept IMAP connections (`implicit_tls`: port 993 style) until shutdown;
/// open sessions are told BYE and get five seconds to go.
pub async fn serve<S: Directory + Mailstore>(
    listener: TcpListener,
    implicit_tls: bool,
    ctx: watch::Receiver<Arc<ImapContext<S>>>,
    shutdown: watch::Receiver<bool>,
) {
    let first = ctx.borrow().clone();
    let name = if implicit_tls { "imaps" } else { "imap" };
    let spec = facteur_net::Listener {
        name,
        gate: first.gate.clone(),
        implicit_tls,
        tls: first.tls.clone(),
        grace: Duration::from_secs(5),
    };
    // Each connection takes the context in force when it arrives.
    facteur_net::serve(
        listener,
        spec,
        shutdown,
        |_| false,
        busy,
        |peer: SocketAddr| {
            let ctx = ctx.borrow().clone();
            Imap {
                session: Session::new(ctx.store.clone(), ctx.session.clone(), implicit_tls)
                    .with_slots(ctx.slots.clone())
                    .with_auth(ctx.auth.clone(), name, peer),
                ctx,
                greeted: false,
                listener: name,
                peer,
            }
        },
    )
    .await;
}

/// RFC 9051 §7.1.5: BYE instead of a greeting when the server will not serve.
fn busy(why: facteur_net::Refused) -> Vec<u8> {
    format!("* BYE [UNAVAILABLE] {}, try again later\r\n", why.as_str()).into_bytes()
}

/// One IMAP connection.
struct Imap<S> {
    session: Session<S>,
    ctx: Arc<ImapContext<S>>,
    greeted: bool,
    listener: &'static str,
    peer: SocketAddr,
}

impl<S: Directory + Mailstore> facteur_net::Protocol for Imap<S> {
    async fn drive<IO: facteur_net::Stream>(&mut self, conn: &mut Conn<IO>) -> std::io::Result<Ended> {
        if !self.greeted {
            self.greeted = true;
            self.session.greeting();
        }
        let limit = |why: &str| facteur_net::reject::event(self.listener, self.peer, "command", "none", why, "BYE");
        drive(conn, &mut self.session, &self.ctx, &limit).await
    }

    fn tls_started(&mut self) {
        self.session.tls_started();
    }

    fn timeouts(&self) -> facteur_net::Timeouts {
        self.ctx.config.limits().1
    }

    fn needs_login(&self) -> bool {
        true
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Command,
    AuthData,
    Idle,
}

async fn flush<S: Directory + Mailstore, IO: facteur_net::Stream>(
    conn: &mut Conn<IO>,
    session: &mut Session<S>,
) -> std::io::Result<()> {
    conn.write(&session.take_output()).await
}

/// After a command that may have logged in: a new login makes the
/// connection a logged-in one (idle timeout, not evicted); a banned address
/// is told BYE (false: the connection must close).
async fn after_login<S: Directory + Mailstore, IO: facteur_net::Stream>(
    conn: &mut Conn<IO>,
    session: &mut Session<S>,
    was_authed: bool,
) -> std::io::Result<bool> {
    if session.banned {
        session.bye("too many failed logins");
        flush(conn, session).await?;
        return Ok(false);
    }
    if !was_authed && session.user().is_some() {
        conn.logged_in();
    }
    Ok(true)
}

/// `log_limit` logs a connection closed for going past a limit.
async fn drive<S: Directory + Mailstore, IO: facteur_net::Stream>(
    conn: &mut Conn<IO>,
    session: &mut Session<S>,
    ctx: &ImapContext<S>,
    log_limit: &(dyn Fn(&str) + Sync),
) -> std::io::Result<Ended> {
    let cfg = &ctx.config;
    let mut fz = Fragmentizer::new(cfg.max_literal.saturating_add(cfg.max_line));
    let mut buf = vec![0u8; 16 * 1024];
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
        // Before login a whole command, literals included, is small.
        let authed = session.user().is_some();
        let preauth_limit = (!authed).then_some(cfg.max_preauth_command as usize);
        let Some(fragment) = fz.progress() else {
            let held = fz.message_bytes().len();
            if let Some(limit) = preauth_limit
                && held > limit
            {
                let why = format!("command over {limit} octets before login");
                log_limit(&why);
                session.bye(&why);
                flush(conn, session).await?;
                return Ok(Ended::Closed);
            }
            if let Some(start) = line_start
                && held.saturating_sub(start) > cfg.max_line as usize
            {
                // The framing cannot be trusted past here: say why and close.
                let why = format!("command line over {} octets", cfg.max_line);
                log_limit(&why);
                session.bye(&why);
                flush(conn, session).await?;
                return Ok(Ended::Closed);
            }
            flush(conn, session).await?;
            let partial = held > 0;
            if !partial {
                conn.progressed();
            }
            let now = tokio::time::Instant::now();
            // In IDLE, and between commands once NOTIFY asked for pushes
            // (RFC 5465), changes are listened for too.
            let listening = mode == Mode::Idle || (session.notifying() && !partial);
            if !listening {
                last_input = now;
            }
            // Then the autologout counts from the client's last bytes; else
            // the connection's own idle (or pre-login) timeout applies.
            let idle_for = listening.then(|| (last_input + idle_timeout).saturating_duration_since(now));
            let woke = if listening {
                conn.read_or(&mut buf, partial, idle_for, changes.next()).await?
            } else {
                Wake::Input(conn.read(&mut buf, partial, None).await?)
            };
            let input = match woke {
                Wake::Other(c) if session.notifying() => {
                    session.notify_change(c).await;
                    continue;
                }
                Wake::Other(c) => {
                    match c {
                        Changed::Mailbox(id) if Some(id) == session.selected_mailbox() => session.poll(true).await,
                        Changed::Unknown => session.poll(true).await,
                        Changed::Mailbox(_) | Changed::Names(_) => {}
                    }
                    continue;
                }
                Wake::Input(i) => i,
            };
            let bye = match input {
                Input::Data(n) => {
                    last_input = tokio::time::Instant::now();
                    fz.enqueue_bytes(&buf[..n]);
                    continue;
                }
                Input::Eof => return Ok(Ended::Closed),
                Input::Timeout(Waited::Idle) => "idle for too long (RFC 9051 \u{a7}5.4)",
                Input::Timeout(Waited::Request) => "command too slow",
                Input::Shutdown => "server shutting down",
                Input::Evicted => "[UNAVAILABLE] too many connections; closing a stalled session",
            };
            session.bye(bye);
            flush(conn, session).await?;
            return Ok(Ended::Closed);
        };
        match fragment {
            FragmentInfo::Line { start, end, announcement, .. } => {
                if let Some(limit) = preauth_limit
                    && fz.message_bytes().len() > limit
                {
                    let tag = fz.decode_tag().map(|t| t.as_ref().to_string());
                    session.bad_syntax_code(
                        tag.as_deref(),
                        "TOOBIG",
                        &format!("command over {limit} octets before login"),
                    );
                    let why = "command too large before login";
                    log_limit(why);
                    session.bye(why);
                    flush(conn, session).await?;
                    return Ok(Ended::Closed);
                }
                line_start = if announcement.is_some() { None } else { Some(0) };
                if end - start > cfg.max_line as usize {
                    line_too_long = true;
                }
                if let Some(LiteralAnnouncement { mode: lmode, length }) = announcement {
                    // Before login, the literal must fit in what is left of
                    // the small pre-login command: nobody unauthenticated
                    // gets more buffered.
                    let limit = match preauth_limit {
                        Some(p) => p.saturating_sub(fz.message_bytes().len()).min(cfg.max_literal as usize) as u32,
                        None => cfg.max_literal,
                    };
                    if length > limit && !authed && lmode != LiteralMode::Sync {
                        // RFC 7888 §4: a server may close on a LITERAL+ over its limit.
                        let tag = fz.decode_tag().map(|t| t.as_ref().to_string());
                        session.bad_syntax_code(
                            tag.as_deref(),
                            "TOOBIG",
                            &format!("literal over {limit} octets before login"),
                        );
                        let why = "literal too large before login";
                        log_limit(why);
                        session.bye(why);
                        flush(conn, session).await?;
                        return Ok(Ended::Closed);
                    }
                    if length > limit || line_too_long {
                        literal_refused = length > limit;
                        if lmode == LiteralMode::Sync {
                            // The client waits for our word: refuse, it sends nothing.
                            let tag = fz.decode_tag().map(|t| t.as_ref().to_string());
                            if literal_refused {
                                let why = format!("literal over {limit} octets");
                                session.too_big(tag.as_deref(), is_append(fz.message_bytes()), &why);
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
                        conn.write(b"+ Ready for literal data\r\n").await?;
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
                let why = format!("literal over {} octets", cfg.max_literal);
                session.too_big(tag.as_deref(), is_append(fz.message_bytes()), &why);
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
                        let (started, name) = (std::time::Instant::now(), cmd.name());
                        let mut next = match ext {
                            Some(ext) => session.handle_extended(cmd, ext).await,
                            None => session.handle(cmd).await,
                        };
                        // A long FETCH goes out piece by piece.
                        while next == Next::More {
                            flush(conn, session).await?;
                            next = session.resume().await;
                        }
                        facteur_net::command_took("imap", name, started);
                        if !after_login(conn, session, was_authed).await? {
                            return Ok(Ended::Closed);
                        }
                        match next {
                            Next::Command | Next::More => {}
                            Next::AuthData => mode = Mode::AuthData,
                            Next::Idle => mode = Mode::Idle,
                            Next::Logout => {
                                flush(conn, session).await?;
                                return Ok(Ended::Closed);
                            }
                            Next::StartTls => {
                                flush(conn, session).await?;
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
                        if !after_login(conn, session, false).await? {
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

/// Whether a command (as read so far) is an APPEND: one over the limit is
/// refused with NO [TOOBIG] (RFC 7889 §4, RFC 9051 §7.1), other commands
/// with BAD [TOOBIG].
fn is_append(message: &[u8]) -> bool {
    let mut words = message.split(|&b| b == b' ');
    words.next();
    words.next().is_some_and(|verb| verb.eq_ignore_ascii_case(b"APPEND"))
}
