//! POP3 listeners and the per-connection driver: STLS or implicit TLS, the
//! idle timeout, the one-session-per-maildrop lock, failed logins slowed
//! down, and the store behind every [`Action`] of the session.
//!
//! The maildrop is the user's INBOX: a snapshot of its messages at login
//! (POP3 numbering is fixed for the session), bodies read on demand, and at
//! QUIT the deleted messages are flagged `\Deleted` and expunged (only
//! those: `expunge(only)`), so IMAP sessions see them go through the
//! store's change notices. A connection lost before QUIT deletes nothing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use facteur_net::{Attempt, Conn, Ended, Input};
use facteur_store::{Directory, FlagOp, Mailstore};
use facteur_types::fault::{self, Fault};
use facteur_types::signal::{self, Signal};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::session::{
    Action, AuthError, Maildrop, MaildropEntry, MaildropError, RetrieveError, Session, SessionConfig,
};

/// `[pop3]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// POP3 connections at once, both listeners together.
    pub max_connections: usize,
    /// POP3 connections at once from one address (0: no cap).
    pub max_connections_per_ip: usize,
    /// A silent client is logged out after this (RFC 1939 §3: at least 10 minutes).
    pub idle_timeout_secs: u64,
    /// Before login, silence allowed for this long only.
    pub preauth_timeout_secs: u64,
    /// A command line must arrive within this, plus one second per
    /// `min_data_rate` octets received.
    pub request_timeout_secs: u64,
    pub min_data_rate: u64,
    /// Output left unread this long (a RETR the client stopped reading)
    /// ends the session, and with it the maildrop lock.
    pub write_timeout_secs: u64,
    /// While three quarters of `max_connections` are taken, the pre-login
    /// and command timeouts are at most this; at the cap, a connection that
    /// has not logged in and has been stalled for a fifth of it makes room
    /// for a new client.
    pub stress_timeout_secs: u64,
    /// Allow USER/PASS and AUTH without TLS (for loopback development).
    pub plaintext_auth: bool,
    /// Replaced by the `[auth]` section (failed logins throttled across
    /// protocols); still read so old files load, and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failed_logins: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_login_delay_secs: Option<u64>,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            max_connections: 500,
            max_connections_per_ip: 10,
            idle_timeout_secs: 600,
            preauth_timeout_secs: 60,
            request_timeout_secs: 60,
            min_data_rate: 100,
            write_timeout_secs: 300,
            stress_timeout_secs: 10,
            plaintext_auth: false,
            max_failed_logins: None,
            failed_login_delay_secs: None,
        }
    }
}

impl Pop3Config {
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

/// Maildrops open in a POP3 session of this process (RFC 1939 §8: the
/// server locks the maildrop while a session has it).
#[derive(Debug, Default)]
struct Locks {
    held: Mutex<HashSet<String>>,
}

/// A held maildrop lock, released when dropped (session end, any way).
struct MaildropLock {
    locks: Arc<Locks>,
    user: String,
}

impl Locks {
    fn try_lock(self: &Arc<Self>, user: &str) -> Option<MaildropLock> {
        let mut held = self.held.lock().ok()?;
        held.insert(user.to_string()).then(|| MaildropLock { locks: self.clone(), user: user.to_string() })
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        if let Ok(mut held) = self.locks.held.lock() {
            held.remove(&self.user);
        }
    }
}

/// What every POP3 connection shares.
pub struct Pop3Context<S> {
    pub store: S,
    pub config: Pop3Config,
    pub session: SessionConfig,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    locks: Arc<Locks>,
    /// Connection caps of both POP3 listeners together.
    pub gate: Arc<facteur_net::Gate>,
    /// Failed logins, shared with SMTP and IMAP.
    pub auth: Arc<facteur_net::AuthThrottle>,
}

impl<S: Directory + Mailstore> Pop3Context<S> {
    pub fn new(store: S, config: Pop3Config, hostname: String, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let session = SessionConfig { hostname, plaintext_auth: config.plaintext_auth, stls: tls.is_some() };
        let gate = facteur_net::Gate::new("pop3", config.limits().0);
        let auth = Arc::new(facteur_net::AuthThrottle::new(facteur_net::AuthPolicy::default()));
        Pop3Context { store, config, session, tls, locks: Arc::default(), gate, auth }
    }

    /// Share the process's failed-login accounting (SMTP and IMAP use it too).
    pub fn with_auth_throttle(mut self, auth: Arc<facteur_net::AuthThrottle>) -> Self {
        self.auth = auth;
        self
    }

    /// The same context under a new configuration (reload): the gate, the
    /// maildrop locks and failed logins stay; new connections get the new
    /// one, open sessions keep theirs.
    pub fn reconfigured(&self, config: Pop3Config) -> Self {
        self.gate.reconfigure(config.limits().0);
        let session = SessionConfig { plaintext_auth: config.plaintext_auth, ..self.session.clone() };
        Pop3Context {
            store: self.store.clone(),
            config,
            session,
            tls: self.tls.clone(),
            locks: self.locks.clone(),
            gate: self.gate.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// Accept POP3 connections (`implicit_tls`: port 995 style) until shutdown;
/// then open sessions get a few seconds to answer and close (a QUIT under
/// way finishes its commit first).
pub async fn serve<S: Directory + Mailstore>(
    listener: TcpListener,
    implicit_tls: bool,
    ctx: watch::Receiver<Arc<Pop3Context<S>>>,
    shutdown: watch::Receiver<bool>,
) {
    let first = ctx.borrow().clone();
    let name = if implicit_tls { "pop3s" } else { "pop3" };
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
            Pop3 {
                session: Session::new(ctx.session.clone(), implicit_tls),
                conn: Maildropped { listener: name, peer, mailbox_id: None, _lock: None },
                ctx,
            }
        },
    )
    .await;
}

/// RFC 2449 §8.1.2: SYS/TEMP, the server is short of something for now.
fn busy(why: facteur_net::Refused) -> Vec<u8> {
    format!("-ERR [SYS/TEMP] {}, try again later\r\n", why.as_str()).into_bytes()
}

/// One connection's state beyond the session: the open maildrop.
struct Maildropped {
    listener: &'static str,
    peer: SocketAddr,
    mailbox_id: Option<i64>,
    _lock: Option<MaildropLock>,
}

/// One POP3 connection.
struct Pop3<S> {
    session: Session,
    ctx: Arc<Pop3Context<S>>,
    conn: Maildropped,
}

impl<S: Directory + Mailstore> facteur_net::Protocol for Pop3<S> {
    async fn drive<IO: facteur_net::Stream>(&mut self, conn: &mut Conn<IO>) -> std::io::Result<Ended> {
        drive(conn, &mut self.session, &self.ctx, &mut self.conn).await
    }

    fn tls_started(&mut self) {
        // RFC 2595 §4: whatever the client pipelined after STLS is discarded.
        self.session.tls_established();
    }

    fn timeouts(&self) -> facteur_net::Timeouts {
        self.ctx.config.limits().1
    }

    fn needs_login(&self) -> bool {
        true
    }
}

/// Replies are written when the session needs input (so pipelined
/// commands get theirs in one write), or earlier when they grow large.
const FLUSH_AT: usize = 256 * 1024;

async fn flush<IO: facteur_net::Stream>(conn: &mut Conn<IO>, session: &mut Session) -> std::io::Result<()> {
    conn.write(&session.take_output()).await
}

async fn drive<S: Directory + Mailstore, IO: facteur_net::Stream>(
    conn: &mut Conn<IO>,
    session: &mut Session,
    ctx: &Pop3Context<S>,
    md: &mut Maildropped,
) -> std::io::Result<Ended> {
    let mut buf = vec![0u8; 4 * 1024];
    loop {
        match session.poll() {
            Action::NeedInput => {
                flush(conn, session).await?;
                let partial = session.has_partial_input();
                if !partial {
                    conn.progressed();
                }
                match conn.read(&mut buf, partial, None).await? {
                    Input::Data(n) => session.feed(&buf[..n]),
                    Input::Eof => {
                        if session.user().is_some() {
                            tracing::info!("connection closed without QUIT; no messages deleted (RFC 1939 \u{a7}6)");
                        }
                        return Ok(Ended::Closed);
                    }
                    Input::Timeout(_) => session.timeout(),
                    Input::Shutdown => session.shutdown(),
                    Input::Evicted => session.evicted(),
                }
            }
            Action::StartTls => {
                flush(conn, session).await?;
                return Ok(Ended::StartTls);
            }
            Action::Authenticate { user, pass } => {
                let started = std::time::Instant::now();
                let check = facteur_store::password::login(&ctx.store, &user, &pass);
                let attempt = if fault::on(Fault::MailboxLogin) {
                    Err(facteur_store::StoreError::Unavailable("injected fault (FACTEUR_ALLOW_FAULTS)".into()))
                } else {
                    ctx.auth.attempt(md.listener, md.peer, &user, check).await
                };
                match &attempt {
                    Ok(Attempt::Ok(_)) => signal::record(Signal::MailboxAccess, true, 1),
                    Err(_) => signal::record(Signal::MailboxAccess, false, 1),
                    Ok(_) => {}
                }
                match attempt {
                    Ok(Attempt::Ok(address)) => session.auth_result(Ok(address)),
                    Ok(Attempt::Failed | Attempt::Throttled) => {
                        tracing::debug!(user, "POP3 login failed");
                        session.auth_result(Err(AuthError::Credentials));
                    }
                    Ok(Attempt::Banned) => {
                        tracing::debug!(user, "POP3 login refused: address banned for failed logins");
                        session.close_with("[AUTH] too many failed logins from your address");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "POP3 cannot look up a user in storage");
                        session.auth_result(Err(AuthError::Temporary));
                    }
                }
                facteur_net::command_took("pop3", "AUTH", started);
            }
            Action::LoadMaildrop { user } => {
                let started = std::time::Instant::now();
                let r = open_maildrop(ctx, md, &user).await;
                facteur_net::command_took("pop3", "MAILDROP", started);
                if r.is_ok() {
                    // Logged in once the maildrop is ours, not at the password.
                    conn.logged_in();
                    tracing::info!(user, "POP3 login");
                }
                session.maildrop_result(r);
            }
            Action::Retrieve { uid, .. } => {
                let started = std::time::Instant::now();
                let r = match md.mailbox_id {
                    Some(mb) => match ctx.store.fetch_message(mb, uid).await {
                        Ok(Some(data)) => Ok(data),
                        Ok(None) => Err(RetrieveError::Gone),
                        Err(e) => {
                            tracing::error!(error = %e, uid, "POP3 cannot read a message from storage");
                            Err(RetrieveError::Temporary)
                        }
                    },
                    None => Err(RetrieveError::Temporary),
                };
                facteur_net::command_took("pop3", "RETR", started);
                session.retrieve_result(r);
                if session.output_len() >= FLUSH_AT {
                    flush(conn, session).await?;
                }
            }
            Action::Commit { deleted_uids, seen_uids } => {
                let started = std::time::Instant::now();
                let done = match md.mailbox_id {
                    Some(mb) => commit(&ctx.store, mb, deleted_uids, seen_uids).await,
                    None => false,
                };
                facteur_net::command_took("pop3", "QUIT", started);
                session.commit_result(done);
            }
            Action::Close => {
                flush(conn, session).await?;
                return Ok(Ended::Closed);
            }
        }
    }
}

/// Lock the user's maildrop and take the INBOX snapshot; the lock is
/// released again if the snapshot fails (RFC 1939 §7, PASS).
async fn open_maildrop<S: Directory + Mailstore>(
    ctx: &Pop3Context<S>,
    conn: &mut Maildropped,
    user: &str,
) -> Result<Maildrop, MaildropError> {
    let Some(lock) = ctx.locks.try_lock(user) else {
        tracing::warn!(user, "POP3 maildrop already open in another session");
        return Err(MaildropError::InUse);
    };
    let storage = |e: facteur_store::StoreError| {
        tracing::error!(error = %e, "POP3 cannot open the maildrop in storage");
        MaildropError::Temporary
    };
    let mailbox = ctx.store.mailbox(user, "INBOX").await.map_err(storage)?.ok_or(MaildropError::Missing)?;
    let messages = ctx.store.mailbox_messages(mailbox.id).await.map_err(storage)?;
    conn.mailbox_id = Some(mailbox.id);
    conn._lock = Some(lock);
    Ok(Maildrop {
        uidvalidity: mailbox.uidvalidity,
        messages: messages.iter().map(|m| MaildropEntry { uid: m.uid, size: m.size }).collect(),
    })
}

/// The UPDATE state (RFC 1939 §6): retrieved messages get `\Seen`, deleted
/// ones `\Deleted` and are expunged, only those, so IMAP sessions see
/// exactly these EXPUNGEs.
async fn commit<S: Directory + Mailstore>(store: &S, mailbox_id: i64, deleted: Vec<u32>, seen: Vec<u32>) -> bool {
    if !seen.is_empty()
        && let Err(e) = store.store_flags(mailbox_id, seen, FlagOp::Add, vec!["\\Seen".into()], None).await
    {
        // Not worth failing QUIT for: the deletions still go ahead.
        tracing::warn!(error = %e, "POP3 cannot mark retrieved messages \\Seen");
    }
    if deleted.is_empty() {
        return true;
    }
    let n = deleted.len();
    let r = async {
        store.store_flags(mailbox_id, deleted.clone(), FlagOp::Add, vec!["\\Deleted".into()], None).await?;
        store.expunge(mailbox_id, Some(deleted)).await
    }
    .await;
    match r {
        Ok(gone) => {
            tracing::info!(deleted = n, expunged = gone.len(), "POP3 QUIT: deletions applied");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "POP3 QUIT: cannot apply the deletions");
            false
        }
    }
}
