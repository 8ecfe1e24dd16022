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

use facteur_store::{FlagOp, Store};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::session::{
    Action, AuthError, Maildrop, MaildropEntry, MaildropError, RetrieveError, Session, SessionConfig,
};

/// `[pop3]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Failed logins from one address within 10 minutes before each further
    /// attempt is slowed down by `failed_login_delay_secs`; at twice this
    /// the connection is closed.
    pub max_failed_logins: u32,
    pub failed_login_delay_secs: u64,
    /// A silent client is logged out after this (RFC 1939 §3: at least 10 minutes).
    pub idle_timeout_secs: u64,
    /// Allow USER/PASS and AUTH without TLS (for loopback development).
    pub plaintext_auth: bool,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config { max_failed_logins: 5, failed_login_delay_secs: 2, idle_timeout_secs: 600, plaintext_auth: false }
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
    failures: facteur_net::FailedLogins,
}

impl<S: Store + Clone> Pop3Context<S> {
    pub fn new(store: S, config: Pop3Config, hostname: String, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let session = SessionConfig { hostname, plaintext_auth: config.plaintext_auth, stls: tls.is_some() };
        let failures = facteur_net::FailedLogins::new(
            config.max_failed_logins,
            Duration::from_secs(config.failed_login_delay_secs),
        );
        Pop3Context { store, config, session, tls, locks: Arc::default(), failures }
    }
}

/// Accept POP3 connections (`implicit_tls`: port 995 style) until shutdown;
/// then open sessions get a few seconds to answer and close (a QUIT under
/// way finishes its commit first).
pub async fn serve<S: Store + Clone>(
    listener: TcpListener,
    implicit_tls: bool,
    ctx: Arc<Pop3Context<S>>,
    shutdown: watch::Receiver<bool>,
) {
    let name = if implicit_tls { "pop3s" } else { "pop3" };
    facteur_net::accept_loop(listener, name, shutdown, Duration::from_secs(5), |stream, peer, shutdown| {
        connection(stream, peer, implicit_tls, ctx.clone(), shutdown)
    })
    .await;
}

/// One connection's state beyond the session: the open maildrop.
struct Conn {
    peer: SocketAddr,
    mailbox_id: Option<i64>,
    _lock: Option<MaildropLock>,
}

async fn connection<S: Store + Clone>(
    stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    ctx: Arc<Pop3Context<S>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn { peer, mailbox_id: None, _lock: None };
    if implicit_tls {
        let Some(tls) = ctx.tls.clone() else {
            tracing::error!("implicit-TLS POP3 listener without a certificate; closing");
            return Ok(());
        };
        let mut s = facteur_net::tls_accept(stream, tls).await?;
        let mut session = Session::new(ctx.session.clone(), true);
        drive(&mut s, &mut session, &ctx, &mut conn, &mut shutdown).await?;
        let _ = s.shutdown().await;
        return Ok(());
    }
    let mut stream = stream;
    let mut session = Session::new(ctx.session.clone(), false);
    if drive(&mut stream, &mut session, &ctx, &mut conn, &mut shutdown).await? == Ended::StartTls {
        let Some(tls) = ctx.tls.clone() else { return Ok(()) };
        let mut s = facteur_net::tls_accept(stream, tls).await?;
        // RFC 2595 §4: whatever the client pipelined after STLS is discarded.
        session.tls_established();
        drive(&mut s, &mut session, &ctx, &mut conn, &mut shutdown).await?;
        let _ = s.shutdown().await;
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Closed,
    StartTls,
}

async fn flush<IO: AsyncWrite + Unpin>(io: &mut IO, session: &mut Session) -> std::io::Result<()> {
    let out = session.take_output();
    if !out.is_empty() {
        io.write_all(&out).await?;
        io.flush().await?;
    }
    Ok(())
}

/// Replies are written when the session needs input (so pipelined
/// commands get theirs in one write), or earlier when they grow large.
const FLUSH_AT: usize = 256 * 1024;

async fn drive<S: Store + Clone, IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    session: &mut Session,
    ctx: &Pop3Context<S>,
    conn: &mut Conn,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Ended> {
    let idle = Duration::from_secs(ctx.config.idle_timeout_secs.max(1));
    let mut buf = vec![0u8; 16 * 1024];
    let ip = conn.peer.ip();
    loop {
        match session.poll() {
            Action::NeedInput => {
                flush(io, session).await?;
                let read = tokio::select! {
                    r = tokio::time::timeout(idle, io.read(&mut buf)) => r,
                    _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                        session.shutdown();
                        continue;
                    }
                };
                match read {
                    Ok(Ok(0)) => {
                        if session.user().is_some() {
                            tracing::info!("connection closed without QUIT; no messages deleted (RFC 1939 \u{a7}6)");
                        }
                        return Ok(Ended::Closed);
                    }
                    Ok(Ok(n)) => session.feed(&buf[..n]),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => session.timeout(),
                }
            }
            Action::StartTls => {
                flush(io, session).await?;
                return Ok(Ended::StartTls);
            }
            Action::Authenticate { user, pass } => match authenticate(&ctx.store, &user, &pass).await {
                Ok(address) => {
                    ctx.failures.succeeded(ip);
                    session.auth_result(Ok(address));
                }
                Err(AuthError::Credentials) => {
                    tracing::warn!(user, "POP3 login failed");
                    match ctx.failures.failed(ip) {
                        Some(d) => {
                            if !d.is_zero() {
                                flush(io, session).await?;
                                tokio::time::sleep(d).await;
                            }
                            session.auth_result(Err(AuthError::Credentials));
                        }
                        None => session.close_with("[AUTH] invalid user name or password; too many failed logins"),
                    }
                }
                Err(e) => session.auth_result(Err(e)),
            },
            Action::LoadMaildrop { user } => {
                let r = open_maildrop(ctx, conn, &user).await;
                if r.is_ok() {
                    tracing::info!(user, "POP3 login");
                }
                session.maildrop_result(r);
            }
            Action::Retrieve { uid, .. } => {
                let r = match conn.mailbox_id {
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
                session.retrieve_result(r);
                if session.output_len() >= FLUSH_AT {
                    flush(io, session).await?;
                }
            }
            Action::Commit { deleted_uids, seen_uids } => {
                let done = match conn.mailbox_id {
                    Some(mb) => commit(&ctx.store, mb, deleted_uids, seen_uids).await,
                    None => false,
                };
                session.commit_result(done);
            }
            Action::Close => {
                flush(io, session).await?;
                return Ok(Ended::Closed);
            }
        }
    }
}

/// Check a user's password (Argon2 off the async threads); the canonical
/// address on success.
async fn authenticate<S: Store>(store: &S, user: &str, pass: &str) -> Result<String, AuthError> {
    match store.get_user(user).await {
        Ok(Some(u)) => {
            let (p, h) = (pass.to_string(), u.password_hash);
            let good = facteur_store::password::check(p, h).await;
            if good { Ok(u.address) } else { Err(AuthError::Credentials) }
        }
        Ok(None) => Err(AuthError::Credentials),
        Err(e) => {
            tracing::error!(error = %e, "POP3 cannot look up a user in storage");
            Err(AuthError::Temporary)
        }
    }
}

/// Lock the user's maildrop and take the INBOX snapshot; the lock is
/// released again if the snapshot fails (RFC 1939 §7, PASS).
async fn open_maildrop<S: Store + Clone>(
    ctx: &Pop3Context<S>,
    conn: &mut Conn,
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
async fn commit<S: Store>(store: &S, mailbox_id: i64, deleted: Vec<u32>, seen: Vec<u32>) -> bool {
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
