//! Listeners and the per-connection driver.
//!
//! The driver is a loop over [`Session::poll`]: write queued replies when the
//! session needs input (that is also when pipelined replies are flushed,
//! RFC 2920 §3.1), read with the idle timeout, and answer each question the
//! session asks. STARTTLS hands the same session to a second run of the
//! loop over the TLS stream; the session has already discarded whatever the
//! client pipelined in plaintext.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use facteur_smtp_proto::{Envelope, Event, Notify, Reply, Session, SessionConfig};
use facteur_store::{MessageId, NewMessage, NewRecipient, Route, SharedClock, Store, StoredEnvelope, SystemClock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use facteur_queue::admission::{Admission, Verdict, Watermarks};
use facteur_queue::notices::{About, NoticeItem};
use facteur_queue::outcome::Notice;

use crate::config::SmtpConfig;
use crate::headers::{self, ReceivedInfo};
use crate::limits::{ClientLimits, LimitConfig};
use crate::policy;

/// What a listener is for; it decides TLS and AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Port 25: mail from the world; STARTTLS offered, no AUTH.
    Mx,
    /// Port 587 (RFC 6409): STARTTLS, then AUTH required.
    Submission,
    /// Port 465 (RFC 8314): implicit TLS, AUTH required.
    Submissions,
}

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Mx => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
        }
    }
}

/// What every connection shares.
pub struct SmtpContext<S> {
    pub store: S,
    pub config: SmtpConfig,
    pub hostname: String,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Time of reception and message ids come from here.
    pub clock: SharedClock,
    /// Woken when a message is queued for another domain.
    pub queued: Option<Arc<tokio::sync::Notify>>,
    /// Rules that give each message its traffic class.
    pub classify: facteur_classify::ClassifyConfig,
    /// Recent (sender, body digest) counts, for "identical content" bulk.
    repeats: std::sync::Mutex<crate::repeats::Repeats>,
    limits: ClientLimits,
    /// The door: which classes may come in, from the queue's load.
    pub admission: Arc<std::sync::Mutex<Admission>>,
    /// The spool's folder, for free-space readings.
    pub spool_dir: Option<std::path::PathBuf>,
    connections: Arc<Semaphore>,
}

impl<S: Store> SmtpContext<S> {
    pub fn new(store: S, config: SmtpConfig, hostname: String, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let limits = ClientLimits::new(LimitConfig {
            connections_per_ip: config.max_connections_per_ip,
            messages_per_minute_per_ip: config.max_messages_per_minute_per_ip,
            messages_per_minute_per_user: config.max_messages_per_minute_per_user,
        });
        SmtpContext {
            store,
            config,
            hostname,
            tls,
            clock: Arc::new(SystemClock),
            queued: None,
            classify: facteur_classify::ClassifyConfig::default(),
            repeats: std::sync::Mutex::new(crate::repeats::Repeats::default()),
            limits,
            admission: Arc::new(std::sync::Mutex::new(Admission::new(Watermarks::default()))),
            spool_dir: None,
            connections,
        }
    }

    pub fn with_admission(
        mut self,
        admission: Arc<std::sync::Mutex<Admission>>,
        spool_dir: std::path::PathBuf,
    ) -> Self {
        self.admission = admission;
        self.spool_dir = Some(spool_dir);
        self
    }

    /// Free bytes where messages are stored (u64::MAX when unknown).
    fn free_disk(&self) -> u64 {
        self.spool_dir.as_deref().and_then(free_disk_bytes).unwrap_or(u64::MAX)
    }

    pub fn with_classify(mut self, classify: facteur_classify::ClassifyConfig) -> Self {
        self.classify = classify;
        self
    }

    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_queue_waker(mut self, waker: Arc<tokio::sync::Notify>) -> Self {
        self.queued = Some(waker);
        self
    }

    fn session_config(&self, kind: ListenerKind) -> SessionConfig {
        let c = &self.config;
        let submission = kind != ListenerKind::Mx;
        SessionConfig {
            hostname: self.hostname.clone(),
            max_message_size: c.max_message_size,
            max_recipients: c.max_recipients,
            max_command_line: c.max_command_line,
            max_data_line: c.max_data_line,
            max_commands: c.max_commands,
            max_errors: c.max_errors,
            starttls_available: self.tls.is_some() && kind != ListenerKind::Submissions,
            tls_active: kind == ListenerKind::Submissions,
            auth_enabled: submission,
            auth_required: submission,
        }
    }
}

/// Accept connections until `shutdown` turns true, then give sessions up to
/// ten seconds to finish (each is told `421 4.3.2`) before aborting them.
pub async fn serve<S: Store + Clone>(
    listener: TcpListener,
    kind: ListenerKind,
    ctx: Arc<SmtpContext<S>>,
    shutdown: watch::Receiver<bool>,
) {
    facteur_net::accept_loop(listener, kind.name(), shutdown, Duration::from_secs(10), |stream, peer, shutdown| {
        connection(stream, peer, kind, ctx.clone(), shutdown)
    })
    .await;
}

/// Per-connection state the driver keeps beside the session.
struct Conn {
    peer: SocketAddr,
    kind: ListenerKind,
    /// Route decided at RCPT time, by lower-cased address.
    routes: HashMap<String, Route>,
}

async fn connection<S: Store>(
    mut stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    ctx: Arc<SmtpContext<S>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let Ok(_permit) = ctx.connections.clone().try_acquire_owned() else {
        tracing::warn!("connection limit reached; refusing with 421");
        let r = Reply::new(421, (4, 7, 0), format!("{} Error: too many connections, try again later", ctx.hostname));
        stream.write_all(&r.to_bytes()).await?;
        return Ok(());
    };
    let trusted = ctx.config.trusted_networks.iter().any(|n| n.contains(&peer.ip()));
    let _slot = if trusted {
        None
    } else {
        match ctx.limits.connect(peer.ip()) {
            Some(slot) => Some(slot),
            None => {
                tracing::warn!("too many connections from this address; refusing with 421");
                let r = Reply::new(
                    421,
                    (4, 7, 0),
                    format!("{} Error: too many connections from {}", ctx.hostname, peer.ip()),
                );
                stream.write_all(&r.to_bytes()).await?;
                return Ok(());
            }
        }
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Conn { peer, kind, routes: HashMap::new() };
    let mut session = Session::new(ctx.session_config(kind));
    let tls = ctx.tls.clone();
    if kind == ListenerKind::Submissions {
        let Some(tls) = tls else {
            tracing::error!("implicit-TLS listener without a certificate; closing");
            return Ok(());
        };
        let mut tls_stream = facteur_net::tls_accept(stream, tls).await?;
        drive(&mut tls_stream, &mut session, &ctx, &mut conn, &mut shutdown).await?;
        return Ok(());
    }
    if drive(&mut stream, &mut session, &ctx, &mut conn, &mut shutdown).await? == Outcome::StartTls {
        let Some(tls) = tls else { return Ok(()) };
        let mut tls_stream = facteur_net::tls_accept(stream, tls).await?;
        // RFC 3207 §4.2: the session forgets everything learnt before TLS.
        session.tls_established();
        conn.routes.clear();
        drive(&mut tls_stream, &mut session, &ctx, &mut conn, &mut shutdown).await?;
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
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

async fn drive<S: Store, IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    session: &mut Session,
    ctx: &SmtpContext<S>,
    conn: &mut Conn,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Outcome> {
    let mut buf = vec![0u8; 64 * 1024];
    let idle = ctx.config.idle_timeout();
    loop {
        match session.poll() {
            Event::NeedInput => {
                flush(io, session).await?;
                tokio::select! {
                    r = tokio::time::timeout(idle, io.read(&mut buf)) => match r {
                        Ok(Ok(0)) => return Ok(Outcome::Closed),
                        Ok(Ok(n)) => session.feed(&buf[..n]),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {
                            tracing::info!("idle timeout; closing with 421");
                            session.timeout();
                        }
                    },
                    _ = shutdown.wait_for(|s| *s) => session.shutdown(),
                }
            }
            Event::StartTls => {
                flush(io, session).await?;
                return Ok(Outcome::StartTls);
            }
            Event::Close => {
                flush(io, session).await?;
                let _ = io.shutdown().await;
                return Ok(Outcome::Closed);
            }
            Event::Auth(req) => {
                let r = policy::authenticate(ctx, req).await;
                session.auth_result(r);
            }
            Event::Mail { params, .. } => {
                conn.routes.clear();
                let ip = conn.peer.ip();
                // The free-disk guard needs no class: with SIZE declared, a
                // message that cannot fit is refused before its data is sent.
                let size = params.size.unwrap_or(0);
                let guard = ctx
                    .admission
                    .lock()
                    .map(|a| a.verdict(facteur_classify::Class::System, size, ctx.free_disk()))
                    .unwrap_or(Verdict::Accept);
                if let Verdict::TryLater { code: 452, enhanced, reason } = guard {
                    tracing::warn!(%reason, "refusing at MAIL: storage");
                    session.mail_result(Err(Reply::new(452, enhanced, reason)));
                    continue;
                }
                let trusted = ctx.config.trusted_networks.iter().any(|n| n.contains(&ip));
                let r = if trusted {
                    Ok(())
                } else {
                    ctx.limits.message(ip, session.auth_user(), ctx.clock.now_ms()).map_err(|which| {
                        tracing::warn!(limit = which, "message rate limit reached; 450");
                        let who = if which == "user" { "your account" } else { "your address" };
                        Reply::new(450, (4, 7, 1), format!("Error: too much mail from {who}; try again later"))
                    })
                };
                session.mail_result(r);
            }
            Event::Rcpt { to, .. } => {
                let r = match policy::recipient_key(ctx, &to).await {
                    Ok(key) => policy::vet_recipient(ctx, &key, session.auth_user().is_some(), conn.peer.ip())
                        .await
                        .map(|route| {
                            conn.routes.insert(key, route);
                        }),
                    Err(reply) => Err(reply),
                };
                session.rcpt_result(r);
            }
            Event::Message { envelope, data } => {
                let reply = accept_message(ctx, conn, envelope, data).await;
                session.message_result(reply);
            }
        }
    }
}

/// Local recipients that asked for NOTIFY=SUCCESS (RFC 3461 §4.1): they
/// were delivered the moment the message was stored.
fn success_notice_items(msg: &NewMessage) -> Vec<NoticeItem> {
    msg.recipients
        .iter()
        .filter(|r| matches!(r.route, Route::Local { .. }))
        .filter(|r| facteur_queue::outcome::NotifyOn::parse(r.notify.as_deref()).success)
        .map(|r| NoticeItem {
            address: r.address.clone(),
            orcpt: r.orcpt.clone(),
            notice: Notice::Delivered,
            status: (2, 0, 0),
            diagnostic: None,
            remote_mta: None,
            last_attempt: Some(msg.received_at),
            will_retry_until: None,
        })
        .collect()
}

/// Store the success DSN. It follows the message's own commit: a crash in
/// between loses this courtesy notice, never the message.
async fn send_success_notice<S: Store>(
    ctx: &SmtpContext<S>,
    id: &str,
    received_at: i64,
    envelope: &StoredEnvelope,
    data: &[u8],
    items: Vec<NoticeItem>,
) {
    let about = About { message_id: id, received_at, envelope, original: data };
    let notices = facteur_queue::notices::compose(&ctx.store, &about, items, &ctx.hostname, ctx.clock.now_ms()).await;
    let remote = notices.iter().any(|n| n.recipients.iter().any(|r| r.route == Route::Remote));
    if notices.is_empty() {
        return;
    }
    match ctx.store.complete(Vec::new(), notices).await {
        Ok(()) => {
            if remote && let Some(w) = &ctx.queued {
                w.notify_one();
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot store the success notice"),
    }
}

/// Free bytes for unprivileged writers on the file system holding `path`.
pub fn free_disk_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

fn notify_text(n: &Notify) -> String {
    if n.never {
        return "NEVER".into();
    }
    let parts: Vec<&str> = [(n.success, "SUCCESS"), (n.failure, "FAILURE"), (n.delay, "DELAY")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, s)| *s)
        .collect();
    parts.join(",")
}

fn client_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("IPv6:{v6}"),
        },
    }
}

/// Prepend our header fields, commit durably, and build the final reply.
async fn accept_message<S: Store>(ctx: &SmtpContext<S>, conn: &mut Conn, env: Envelope, data: Vec<u8>) -> Reply {
    let now_ms = ctx.clock.now_ms();
    let id = MessageId::new(now_ms.max(0) as u64);
    let span = tracing::info_span!("message", id = %id, class = tracing::field::Empty);
    async move {
        let secs = now_ms.div_euclid(1000);
        let mut recipients = Vec::with_capacity(env.recipients.len());
        for r in &env.recipients {
            let key = match policy::recipient_key(ctx, &r.address).await {
                Ok(k) => k,
                Err(reply) => return reply,
            };
            let route = match conn.routes.get(&key) {
                Some(route) => route.clone(),
                // Not vetted in this session (should not happen): vet again.
                None => match policy::vet_recipient(ctx, &key, env.auth_user.is_some(), conn.peer.ip()).await {
                    Ok(route) => route,
                    Err(reply) => return reply,
                },
            };
            recipients.push(NewRecipient {
                address: key,
                notify: r.params.notify.as_ref().map(notify_text),
                orcpt: r.params.orcpt.clone(),
                route,
            });
        }
        let addresses: Vec<String> = recipients.iter().map(|r| r.address.clone()).collect();
        let mail_from_text = env.mail_from.as_ref().map(|a| a.to_string()).unwrap_or_default();
        let identical_recent = ctx
            .repeats
            .lock()
            .map(|mut r| r.seen(&mail_from_text, facteur_classify::header_section(&data).len(), &data, now_ms))
            .unwrap_or(0);
        let decision = facteur_classify::classify(
            &facteur_classify::Facts {
                mail_from: &mail_from_text,
                recipients: &addresses,
                auth_user: env.auth_user.as_deref(),
                client_ip: conn.peer.ip(),
                message: &data,
                listener: if conn.kind == ListenerKind::Mx {
                    facteur_classify::Listener::Mx
                } else {
                    facteur_classify::Listener::Submission
                },
                identical_recent,
            },
            &ctx.classify,
        );
        tracing::Span::current().record("class", decision.class.as_str());
        // The door (MISSION: people first under pressure): bulk is told to
        // come back later before anything else is; the client retries.
        let verdict = ctx
            .admission
            .lock()
            .map(|a| a.verdict(decision.class, data.len() as u64, ctx.free_disk()))
            .unwrap_or(Verdict::Accept);
        if let Verdict::TryLater { code, enhanced, reason } = verdict {
            tracing::warn!(class = decision.class.as_str(), %reason, "message deferred at the door");
            return Reply::new(code, enhanced, reason);
        }
        let ip = client_ip(conn.peer.ip());
        let id_text = id.to_string();
        let protocol = headers::with_protocol(env.esmtp, env.tls, env.auth_user.is_some(), env.mail_params.smtputf8);
        let single = (recipients.len() == 1).then(|| recipients[0].address.as_str());
        let received = headers::received(&ReceivedInfo {
            helo: &env.helo,
            client_ip: &ip,
            hostname: &ctx.hostname,
            protocol: &protocol,
            id: &id_text,
            single_recipient: single,
            unix_secs: secs,
        });
        let mut full = Vec::with_capacity(data.len() + received.len() + 128);
        full.extend_from_slice(received.as_bytes());
        // RFC 6409 §8.2, §8.3: a submission server may complete Date and Message-ID.
        if conn.kind != ListenerKind::Mx {
            if !headers::has_field(&data, "Date") {
                full.extend_from_slice(format!("Date: {}\r\n", headers::rfc5322_date(secs)).as_bytes());
            }
            if !headers::has_field(&data, "Message-ID") {
                full.extend_from_slice(format!("Message-ID: <{id_text}@{}>\r\n", ctx.hostname).as_bytes());
            }
        }
        full.extend_from_slice(&data);
        let size = full.len();
        let nrcpt = recipients.len();
        let mail_from = env.mail_from.as_ref().map(|a| a.to_string()).unwrap_or_default();
        let stored = StoredEnvelope {
            mail_from: mail_from.clone(),
            helo: env.helo.clone(),
            client_ip: ip,
            auth_user: env.auth_user.clone(),
            tls: env.tls,
            body: env.mail_params.body.map(|b| match b {
                facteur_smtp_proto::BodyType::SevenBit => "7BIT".to_string(),
                facteur_smtp_proto::BodyType::EightBitMime => "8BITMIME".to_string(),
            }),
            smtputf8: env.mail_params.smtputf8,
            ret: env.mail_params.ret.map(|r| match r {
                facteur_smtp_proto::Ret::Full => "FULL".to_string(),
                facteur_smtp_proto::Ret::Hdrs => "HDRS".to_string(),
            }),
            envid: env.mail_params.envid.clone(),
        };
        let remote = recipients.iter().any(|r| r.route == Route::Remote);
        let class_rule = decision.rule;
        let msg = NewMessage {
            id,
            received_at: secs,
            class: decision.class.as_str().to_string(),
            envelope: stored,
            recipients,
            data: full,
        };
        let success_notice = success_notice_items(&msg);
        let notice_about = (!success_notice.is_empty()).then(|| (msg.envelope.clone(), msg.data.clone()));
        match ctx.store.store_message(msg).await {
            Ok(placed) => {
                tracing::info!(from = %mail_from, recipients = nrcpt, local = placed.len(), size, rule = %class_rule, "accepted");
                if remote && let Some(w) = &ctx.queued {
                    w.notify_one();
                }
                if let Some((envelope, data)) = notice_about {
                    send_success_notice(ctx, &id_text, secs, &envelope, &data, success_notice).await;
                }
                Reply::new(250, (2, 0, 0), format!("Ok: queued as {id_text}"))
            }
            Err(e) => {
                tracing::error!(error = %e, "storage failed; message refused with 451, the client will retry");
                Reply::new(451, (4, 3, 0), "Error: temporary storage failure, try again later")
            }
        }
    }
    .instrument(span)
    .await
}
