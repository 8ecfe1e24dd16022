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

use facteur_net::{Conn, Ended, Input};
use facteur_smtp_proto::{Envelope, Event, Reply, Session, SessionConfig};
use facteur_store::{Directory, NewRecipient, Route, Spool, StoredEnvelope};
use facteur_types::signal::{self, Signal};
use facteur_types::{MessageId, Notify, Ret, SharedClock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use facteur_spool::addressing::{self, Accepted, AddressingConfig, Split, Target};
use facteur_spool::{About, Admission, Notice, NoticeItem, Verdict, Watermarks};

use crate::config::{QuotaConfig, SmtpConfig, SuccessNotices};
use crate::headers::{self, ReceivedInfo};
use crate::limits::{ClientLimits, Outbound};
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
    /// The maildrop: local programs through `facteur sendmail` (no network).
    Local,
}

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Mx => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
            ListenerKind::Local => "sendmail",
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
    repeats: Arc<std::sync::Mutex<crate::repeats::Repeats>>,
    limits: ClientLimits,
    /// The door: which classes may come in, from the queue's load.
    pub admission: Arc<std::sync::Mutex<Admission>>,
    /// The spool's folder, for free-space readings.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Connection caps of all SMTP listeners together.
    pub gate: Arc<facteur_net::Gate>,
    /// Failed logins, shared with IMAP and POP3.
    pub auth: Arc<facteur_net::AuthThrottle>,
    /// Aliases, `+detail`, role addresses.
    pub addressing: AddressingConfig,
    /// Quotas: the warning share.
    pub quota: QuotaConfig,
    /// SPF, DKIM, ARC and DMARC for strangers' mail on the MX port, and
    /// what their verdict does; no verifier: not checked.
    pub sender_auth: facteur_auth::InboundConfig,
    pub verifier: Option<Arc<facteur_auth::Verifier>>,
    /// DKIM keys our users' mail is signed with, by From domain.
    pub dkim: Arc<facteur_auth::sign::KeyRing>,
}

impl<S: Directory + Spool> SmtpContext<S> {
    pub fn new(store: S, config: SmtpConfig, hostname: String, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let gate = facteur_net::Gate::new("smtp", config.limits().0);
        let limits = ClientLimits::new(config.limit_config());
        SmtpContext {
            store,
            config,
            hostname,
            tls,
            clock: Arc::new(SystemClock),
            queued: None,
            classify: facteur_classify::ClassifyConfig::default(),
            repeats: Arc::default(),
            limits,
            admission: Arc::new(std::sync::Mutex::new(Admission::new(Watermarks::default()))),
            spool_dir: None,
            gate,
            auth: Arc::new(facteur_net::AuthThrottle::new(facteur_net::AuthPolicy::default())),
            addressing: AddressingConfig::default(),
            quota: QuotaConfig::default(),
            sender_auth: facteur_auth::InboundConfig::default(),
            verifier: None,
            dkim: Arc::default(),
        }
    }

    /// The same context under a new configuration (reload): what it counts
    /// and shares (rates, repeats, the door, the gate, failed logins) stays;
    /// new connections get the new one, open sessions keep theirs.
    pub fn reconfigured(&self, config: SmtpConfig, classify: facteur_classify::ClassifyConfig) -> Self
    where
        S: Clone,
    {
        self.gate.reconfigure(config.limits().0);
        SmtpContext {
            store: self.store.clone(),
            limits: self.limits.with_config(config.limit_config()),
            config,
            hostname: self.hostname.clone(),
            tls: self.tls.clone(),
            clock: self.clock.clone(),
            queued: self.queued.clone(),
            classify,
            repeats: self.repeats.clone(),
            admission: self.admission.clone(),
            spool_dir: self.spool_dir.clone(),
            gate: self.gate.clone(),
            auth: self.auth.clone(),
            addressing: self.addressing.clone(),
            quota: self.quota.clone(),
            sender_auth: self.sender_auth.clone(),
            verifier: self.verifier.clone(),
            dkim: self.dkim.clone(),
        }
    }

    /// Sign what our users send with these keys.
    pub fn with_dkim(mut self, keys: Arc<facteur_auth::sign::KeyRing>) -> Self {
        self.dkim = keys;
        self
    }

    /// Verify strangers' mail with `verifier` (None: not at all) and act
    /// on the verdict as `config` says.
    pub fn with_sender_auth(
        mut self,
        config: facteur_auth::InboundConfig,
        verifier: Option<Arc<facteur_auth::Verifier>>,
    ) -> Self {
        self.sender_auth = config;
        self.verifier = verifier;
        self
    }

    pub fn with_quota(mut self, quota: QuotaConfig) -> Self {
        self.quota = quota;
        self
    }

    pub fn with_addressing(mut self, addressing: AddressingConfig) -> Self {
        self.addressing = addressing;
        self
    }

    /// Share the process's failed-login accounting (IMAP and POP3 use it too).
    pub fn with_auth_throttle(mut self, auth: Arc<facteur_net::AuthThrottle>) -> Self {
        self.auth = auth;
        self
    }

    /// A client on a trusted network (relays without AUTH, no per-client limits).
    pub fn trusted(&self, ip: IpAddr) -> bool {
        self.config.trusted_networks.iter().any(|n| n.contains(&ip))
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
            max_messages: c.max_messages_per_connection,
            max_errors: c.max_errors,
            max_junk_commands: c.max_junk_commands,
            starttls_available: self.tls.is_some() && kind != ListenerKind::Submissions,
            tls_active: kind == ListenerKind::Submissions,
            auth_enabled: submission,
            auth_required: submission,
        }
    }
}

/// Accept connections until `shutdown` turns true, then give sessions up to
/// ten seconds to finish (each is told `421 4.3.2`) before dropping them.
pub async fn serve<S: Directory + Spool>(
    listener: TcpListener,
    kind: ListenerKind,
    ctx: watch::Receiver<Arc<SmtpContext<S>>>,
    shutdown: watch::Receiver<bool>,
) {
    let first = ctx.borrow().clone();
    let spec = facteur_net::Listener {
        name: kind.name(),
        gate: first.gate.clone(),
        implicit_tls: kind == ListenerKind::Submissions,
        tls: first.tls.clone(),
        grace: Duration::from_secs(10),
    };
    // Each connection takes the context in force when it arrives.
    let trusted = |peer: SocketAddr| ctx.borrow().trusted(peer.ip());
    facteur_net::serve(listener, spec, shutdown, trusted, busy, |peer| {
        let ctx = ctx.borrow().clone();
        Smtp {
            session: Session::new(ctx.session_config(kind)),
            client: Client { peer, kind, uid: None, declared_size: 0, quotas: HashMap::new(), routes: HashMap::new() },
            greeted: false,
            ctx,
        }
    })
    .await;
}

/// RFC 5321 §3.1: a server that cannot serve says 421 and closes.
fn busy(why: facteur_net::Refused) -> Vec<u8> {
    Reply::new(421, (4, 7, 0), format!("Error: {}, try again later", why.as_str())).to_bytes()
}

/// Per-connection state the driver keeps beside the session.
pub(crate) struct Client {
    pub(crate) peer: SocketAddr,
    pub(crate) kind: ListenerKind,
    /// The Unix user a maildrop file came from.
    pub(crate) uid: Option<u32>,
    /// SIZE declared at MAIL (RFC 1870), for quotas at RCPT.
    pub(crate) declared_size: u64,
    /// The local users' quotas read in this transaction.
    pub(crate) quotas: policy::Quotas,
    /// Where each recipient goes, decided at RCPT time, by lower-cased
    /// address (`None`: relayed).
    pub(crate) routes: HashMap<String, Option<Vec<Target>>>,
}

/// One SMTP connection: the sans-IO session and what it needs answered.
struct Smtp<S> {
    session: Session,
    ctx: Arc<SmtpContext<S>>,
    client: Client,
    /// The greeting pause is over (or was not needed).
    greeted: bool,
}

impl<S: Directory + Spool> facteur_net::Protocol for Smtp<S> {
    async fn drive<IO: facteur_net::Stream>(&mut self, conn: &mut Conn<IO>) -> std::io::Result<Ended> {
        if !self.greeted {
            self.greeted = true;
            self.greeting_pause(conn).await?;
        }
        drive(conn, &mut self.session, &self.ctx, &mut self.client).await
    }

    fn tls_started(&mut self) {
        // RFC 3207 §4.2: the session forgets everything learnt before TLS.
        self.session.tls_established();
        self.client.routes.clear();
        self.client.quotas.clear();
    }

    fn timeouts(&self) -> facteur_net::Timeouts {
        self.ctx.config.limits().1
    }
}

impl<S: Directory + Spool> Smtp<S> {
    /// On the MX port, strangers wait `greet_pause_ms` for the greeting; one
    /// that talks first (RFC 5321 §4.3.1: the client waits for the 220) is
    /// a bot that does not read replies, and gets `554 5.5.0` instead.
    async fn greeting_pause<IO: facteur_net::Stream>(&mut self, conn: &mut Conn<IO>) -> std::io::Result<()> {
        let pause = Duration::from_millis(self.ctx.config.greet_pause_ms);
        if self.client.kind != ListenerKind::Mx || pause.is_zero() || self.ctx.trusted(self.client.peer.ip()) {
            return Ok(());
        }
        if conn.talks_within(pause).await? {
            self.session.talked_before_greeting();
        }
        Ok(())
    }
}

/// Write what the session has to say, and log its refusals.
async fn flush<IO: facteur_net::Stream>(
    conn: &mut Conn<IO>,
    session: &mut Session,
    client: &Client,
) -> std::io::Result<()> {
    for r in session.take_refusals() {
        let reason = r.reply.lines.first().map(String::as_str).unwrap_or("");
        let wire = String::from_utf8_lossy(&r.reply.to_bytes()).into_owned();
        let wire = wire.trim_end().replace("\r\n", " / ");
        facteur_net::reject::event(client.kind.name(), client.peer, r.command, &r.reply.status(), reason, &wire);
    }
    conn.write(&session.take_output()).await
}

async fn drive<S: Directory + Spool, IO: facteur_net::Stream>(
    conn: &mut Conn<IO>,
    session: &mut Session,
    ctx: &SmtpContext<S>,
    client: &mut Client,
) -> std::io::Result<Ended> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match session.poll() {
            Event::NeedInput => {
                flush(conn, session, client).await?;
                let partial = session.has_partial_input();
                if !partial {
                    conn.progressed();
                }
                match conn.read(&mut buf, partial, None).await? {
                    Input::Data(n) => session.feed(&buf[..n]),
                    Input::Eof => return Ok(Ended::Closed),
                    Input::Timeout(waited) => {
                        tracing::info!(?waited, "timeout; closing with 421");
                        session.timeout();
                    }
                    Input::Shutdown => session.shutdown(),
                    Input::Evicted => session.evicted(),
                }
            }
            Event::StartTls => {
                flush(conn, session, client).await?;
                return Ok(Ended::StartTls);
            }
            Event::Close => {
                flush(conn, session, client).await?;
                return Ok(Ended::Closed);
            }
            Event::Auth(req) => {
                let started = std::time::Instant::now();
                let r = policy::authenticate(ctx, req, client.kind.name(), client.peer).await;
                facteur_net::command_took("smtp", "AUTH", started);
                if r.result.is_ok() {
                    conn.logged_in();
                }
                session.auth_result(r.result);
                if r.close {
                    session.close(Reply::new(421, (4, 7, 0), format!("{} Error: closing connection", ctx.hostname)));
                }
            }
            Event::Mail { from, params } => {
                let started = std::time::Instant::now();
                client.declared_size = params.size.unwrap_or(0);
                let r = vet_sender(ctx, session, client, from.as_ref(), &params).await;
                facteur_net::command_took("smtp", "MAIL", started);
                session.mail_result(r);
            }
            Event::Rcpt { to, .. } => {
                let started = std::time::Instant::now();
                let per_user = ctx.config.max_recipients_per_message_per_user;
                let r = match policy::recipient_key(ctx, &to).await {
                    // RFC 5321 §4.5.3.1.10: 452 asks for the rest in another message.
                    Ok(_) if per_user > 0 && session.auth_user().is_some() && client.routes.len() >= per_user => {
                        Err(Reply::new(
                            452,
                            (4, 5, 3),
                            format!("Error: too many recipients in one message from this account (at most {per_user})"),
                        ))
                    }
                    Ok(key) => {
                        match policy::vet_recipient(ctx, &key, session.auth_user().is_some(), client.peer.ip()).await {
                            Ok(Some(targets)) => {
                                let size = client.declared_size;
                                policy::vet_quota(ctx, &mut client.quotas, &key, &targets, size).await.map(|()| {
                                    client.routes.insert(key, Some(targets));
                                })
                            }
                            Ok(None) => {
                                client.routes.insert(key, None);
                                Ok(())
                            }
                            Err(reply) => Err(reply),
                        }
                    }
                    Err(reply) => Err(reply),
                };
                facteur_net::command_took("smtp", "RCPT", started);
                session.rcpt_result(r);
            }
            Event::Message { envelope, data } => {
                // From the end of the data to the reply: the storage commit.
                let started = std::time::Instant::now();
                let reply = accept_message(ctx, client, envelope, data).await;
                facteur_net::command_took("smtp", "DATA", started);
                session.message_result(reply);
            }
        }
    }
}

/// MAIL: the free-disk guard, the authenticated user's right to the
/// address, then the per-client message rates.
async fn vet_sender<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    session: &Session,
    client: &mut Client,
    from: Option<&facteur_smtp_proto::Address>,
    params: &facteur_smtp_proto::MailParams,
) -> Result<(), Reply> {
    client.routes.clear();
    client.quotas.clear();
    let ip = client.peer.ip();
    // The free-disk guard needs no class: with SIZE declared, a
    // message that cannot fit is refused before its data is sent.
    let size = params.size.unwrap_or(0);
    let guard = ctx
        .admission
        .lock()
        .map(|a| a.verdict(facteur_classify::Class::System, size, ctx.free_disk()))
        .unwrap_or(Verdict::Accept);
    if let Verdict::TryLater { code: 452, enhanced, reason } = guard {
        tracing::debug!(%reason, "refusing at MAIL: storage");
        return Err(Reply::new(452, enhanced, reason));
    }
    // The null sender (bounces, auto-replies) claims nobody's address.
    if let (Some(user), Some(from)) = (session.auth_user(), from) {
        policy::vet_sender_address(ctx, user, &format!("{}@{}", from.local, from.domain)).await?;
    }
    if ctx.trusted(ip) {
        return Ok(());
    }
    ctx.limits.message(ip, session.auth_user(), ctx.clock.now_ms()).map_err(|which| {
        tracing::debug!(limit = which, "message rate limit reached; 450");
        let who = if which == "user" { "your account" } else { "your address" };
        Reply::new(450, (4, 7, 1), format!("Error: too much mail from {who}; try again later"))
    })
}

/// Local recipients that asked for NOTIFY=SUCCESS (RFC 3461 §4.1): they
/// were delivered the moment the message was stored.
fn success_notice_items(delivered: &[NewRecipient], received_at: i64) -> Vec<NoticeItem> {
    delivered
        .iter()
        .filter(|r| Notify::effective(r.notify).success)
        .map(|r| NoticeItem {
            address: r.address.clone(),
            orcpt: r.orcpt.clone(),
            notice: Notice::Delivered,
            status: (2, 0, 0),
            diagnostic: None,
            remote_mta: None,
            last_attempt: Some(received_at),
            will_retry_until: None,
        })
        .collect()
}

/// Store the success DSN. It follows the message's own commit: a crash in
/// between loses this courtesy notice, never the message.
async fn send_success_notice<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    id: MessageId,
    received_at: i64,
    envelope: &StoredEnvelope,
    data: &[u8],
    items: Vec<NoticeItem>,
) {
    let about = About { message_id: id, received_at, envelope, original: data };
    let notices = facteur_spool::notices::compose(&ctx.store, &about, items, &ctx.hostname, ctx.clock.now_ms()).await;
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

fn client_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("IPv6:{v6}"),
        },
    }
}

/// RFC 3463 X.2.2 at the end of DATA: a message only for local users none
/// of whom has room for it is refused for now (`452 4.2.2`). When it also
/// goes anywhere else it is delivered, and a user without room goes over
/// by that one message (as Dovecot's quota_grace allows); their next RCPT
/// is refused. Quotas are those RCPT read (usage as of then).
async fn no_room<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    seen: &mut policy::Quotas,
    accepted: &[Accepted],
    size: u64,
) -> Option<Reply> {
    let mut users = Vec::new();
    for a in accepted {
        for t in a.targets.as_ref()? {
            match t {
                Target::Local { user, .. } => users.push(user.as_str()),
                Target::Forward { .. } => return None,
            }
        }
    }
    users.sort_unstable();
    users.dedup();
    for user in &users {
        match policy::quota_of(&ctx.store, seen, user).await {
            Ok(Some(q)) if !q.allows(size, 1) => {}
            Ok(_) => return None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a quota; answering 451");
                return Some(Reply::new(451, (4, 3, 0), "Error: temporary lookup failure, try again later"));
            }
        }
    }
    tracing::debug!(?users, size, "message refused: over quota");
    Some(Reply::new(452, (4, 2, 2), "Error: mailbox full (over quota), try again later"))
}

/// The envelope sender of each forward (by alias): SRS-rewritten, the key
/// and the local domains read only when something is forwarded.
async fn forward_sender<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    accepted: &[Accepted],
    sender: &str,
    secs: i64,
) -> facteur_store::Result<impl Fn(&str) -> String + Sync + use<S>> {
    let forwards =
        accepted.iter().flat_map(|a| a.targets.iter().flatten()).any(|t| matches!(t, Target::Forward { .. }));
    let (key, domains) = if forwards && !sender.is_empty() {
        let key = ctx.store.secret("srs").await?;
        let domains: Vec<String> = ctx.store.list_domains().await?.into_iter().map(|d| d.name).collect();
        (key, domains)
    } else {
        (String::new(), Vec::new())
    };
    let sender = sender.to_string();
    let days = secs.div_euclid(86_400);
    Ok(move |alias: &str| addressing::srs_sender(&sender, alias, &domains, key.as_bytes(), days))
}

/// What the sender-authentication verdict does (docs/authentication.md):
/// each recipient's domain decides; when all of them refuse, the message
/// is refused (`550 5.7.1`, no bounce to a forged sender); recipients whose
/// domain would refuse or quarantine it otherwise get it in their Junk.
fn sender_auth_policy<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    verdict: &facteur_auth::Verdict,
    recipients: &mut [Accepted],
) -> Result<(), Reply> {
    use facteur_auth::{Action, policy::Decision};
    let decisions: Vec<_> = recipients
        .iter()
        .map(|a| {
            let domain = a.recipient.address.rsplit_once('@').map_or("", |(_, d)| d);
            ctx.sender_auth.decide(verdict, domain)
        })
        .collect();
    let strictest = decisions.iter().map(|d| d.action).max().unwrap_or(Action::Deliver);
    metrics::counter!("facteur_sender_auth_verdicts_total", "dmarc" => verdict.dmarc.as_str(), "action" => strictest.as_str())
        .increment(1);
    tracing::info!(spf = facteur_auth::verify::spf_name(verdict.spf.result), dkim_pass = ?verdict.dkim_pass, dmarc = verdict.dmarc.as_str(), from = %verdict.from_domain, "sender authentication");
    if !decisions.is_empty() && decisions.iter().all(|d| d.action == Action::Reject) {
        let Decision { reason, status, .. } = &decisions[0];
        tracing::info!(%reason, "message refused by sender authentication");
        return Err(Reply::new(550, *status, format!("Error: message refused: {reason}")));
    }
    for (a, d) in recipients.iter_mut().zip(&decisions) {
        if d.action == Action::Deliver {
            continue;
        }
        tracing::info!(recipient = %a.recipient.address, reason = %d.reason, "into Junk");
        for t in a.targets.iter_mut().flatten() {
            if let Target::Local { mailbox, .. } = t {
                *mailbox = Some(JUNK.to_string());
            }
        }
    }
    Ok(())
}

/// Where quarantined mail goes (a mailbox every user gets, RFC 6154 \Junk).
const JUNK: &str = "Junk";

/// Prepend our header fields, commit durably, and build the final reply.
pub(crate) async fn accept_message<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    client: &mut Client,
    env: Envelope,
    data: Vec<u8>,
) -> Reply {
    let now_ms = ctx.clock.now_ms();
    let id = MessageId::new(now_ms.max(0) as u64);
    let span = tracing::info_span!("message", id = %id, class = tracing::field::Empty);
    async move {
        let secs = now_ms.div_euclid(1000);
        // RFC 5321 §6.3: a server MUST detect loops; a message that has
        // made more hops than anything sane is going round in circles.
        if let Some(user) = env.auth_user.as_deref()
            && let Err(reply) = policy::vet_from_header(ctx, user, &data).await
        {
            return reply;
        }
        let hops = headers::count_fields(&data, &["Received", "Delivered-To"]);
        if hops > ctx.config.max_hops {
            tracing::debug!(hops, max = ctx.config.max_hops, "message refused: mail loop");
            return Reply::new(
                554,
                (5, 4, 6),
                format!("Error: too many hops ({hops} Received/Delivered-To fields): mail loop"),
            );
        }
        let mut recipients = Vec::with_capacity(env.recipients.len());
        for r in &env.recipients {
            let key = match policy::recipient_key(ctx, &r.address).await {
                Ok(k) => k,
                Err(reply) => return reply,
            };
            let route = match client.routes.get(&key) {
                Some(route) => route.clone(),
                // Not vetted in this session (should not happen): vet again.
                None => match policy::vet_recipient(ctx, &key, env.auth_user.is_some(), client.peer.ip()).await {
                    Ok(route) => route,
                    Err(reply) => return reply,
                },
            };
            recipients.push(Accepted {
                recipient: NewRecipient {
                    address: key,
                    notify: r.params.notify,
                    orcpt: r.params.orcpt.clone(),
                    route: Route::Remote,
                },
                targets: route,
            });
        }
        let delivered = addressing::delivered_to(&data);
        if let Some(alias) = addressing::forward_loop(recipients.iter().flat_map(|a| a.targets.iter().flatten()), &delivered)
        {
            tracing::info!(alias, "message refused: mail forwarding loop");
            return Reply::new(554, (5, 4, 6), format!("<{alias}>: mail forwarding loop (Delivered-To: {alias})"));
        }
        // RFC 8601 §5: an Authentication-Results field in our name that we
        // did not write would be believed by the reader's client.
        let (cleaned, forged) = facteur_auth::headers::strip_forged(&data, &ctx.hostname);
        let cleaned = match cleaned {
            std::borrow::Cow::Owned(v) => Some(v),
            std::borrow::Cow::Borrowed(_) => None,
        };
        let data = cleaned.unwrap_or(data);
        if forged > 0 {
            tracing::info!(forged, "removed Authentication-Results fields claiming our name");
        }
        let mail_from_text = env.mail_from.as_ref().map(|a| a.to_string()).unwrap_or_default();
        // Not a reflector: a stranger's forged sender with NOTIFY=SUCCESS
        // and RET=FULL would have us mail its content to anyone.
        let stranger = env.auth_user.is_none() && !ctx.trusted(client.peer.ip());
        let auth_verdict = match &ctx.verifier {
            Some(v) if client.kind == ListenerKind::Mx && stranger => {
                let input = facteur_auth::Inbound {
                    ip: client.peer.ip(),
                    helo: &env.helo,
                    mail_from: &mail_from_text,
                    message: &data,
                };
                Some(v.verify(&input).await)
            }
            _ => None,
        };
        if let Some(v) = &auth_verdict
            && let Err(reply) = sender_auth_policy(ctx, v, &mut recipients)
        {
            return reply;
        }
        let addresses: Vec<String> = recipients.iter().map(|r| r.recipient.address.clone()).collect();
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
                client_ip: client.peer.ip(),
                message: &data,
                listener: if client.kind == ListenerKind::Mx {
                    facteur_classify::Listener::Mx
                } else {
                    facteur_classify::Listener::Submission
                },
                identical_recent,
                authenticated: auth_verdict.as_ref().map(facteur_auth::Verdict::authenticated),
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
            tracing::debug!(class = decision.class.as_str(), %reason, "message deferred at the door");
            return Reply::new(code, enhanced, reason);
        }
        let ip = client_ip(client.peer.ip());
        let id_text = id.to_string();
        let protocol = headers::with_protocol(env.esmtp, env.tls, env.auth_user.is_some(), env.mail_params.smtputf8);
        let single = (recipients.len() == 1).then(|| recipients[0].recipient.address.as_str());
        let info = ReceivedInfo {
            helo: &env.helo,
            client_ip: &ip,
            hostname: &ctx.hostname,
            protocol: &protocol,
            id: &id_text,
            single_recipient: single,
            unix_secs: secs,
        };
        let received = match client.uid {
            Some(uid) => headers::received_local(&info, uid),
            None => headers::received(&info),
        };
        let results = auth_verdict.as_ref().map_or("", |v| v.header.as_str());
        let mut full = Vec::with_capacity(data.len() + received.len() + results.len() + 128);
        full.extend_from_slice(received.as_bytes());
        full.extend_from_slice(results.as_bytes());
        // The From domain we sign for, if any: our users' mail (not strangers').
        let dkim_domain = (!stranger && !ctx.dkim.is_empty())
            .then(|| facteur_auth::sign::from_domain(&data))
            .flatten()
            .filter(|d| ctx.dkim.covers(d));
        // RFC 6409 §8.2, §8.3: a submission server may complete Date and
        // Message-ID; so do we for mail we sign, as its first server, or the
        // next one would add them (RFC 5321 §6.4) under our signature.
        if client.kind != ListenerKind::Mx || dkim_domain.is_some() {
            if !headers::has_field(&data, "Date") {
                full.extend_from_slice(format!("Date: {}\r\n", headers::rfc5322_date(secs)).as_bytes());
            }
            if !headers::has_field(&data, "Message-ID") {
                full.extend_from_slice(format!("Message-ID: <{id_text}@{}>\r\n", ctx.hostname).as_bytes());
            }
        }
        full.extend_from_slice(&data);
        // RFC 6376: what our users send leaves signed by their From domain.
        if let Some(domain) = &dkim_domain {
            let signed = &full[received.len() + results.len()..];
            match facteur_auth::heavy(signed.len(), || ctx.dkim.sign(domain, signed)) {
                Ok(fields) => {
                    let at = received.len();
                    full.splice(at..at, fields.bytes());
                }
                Err(e) => tracing::warn!(error = %e, "DKIM signing failed; the message leaves unsigned"),
            }
        }
        let size = full.len();
        let nrcpt = recipients.len();
        let mail_from = env.mail_from.as_ref().map(|a| a.to_string()).unwrap_or_default();
        let stored = StoredEnvelope {
            mail_from: mail_from.clone(),
            helo: env.helo.clone(),
            client_ip: ip,
            auth_user: env.auth_user.clone(),
            tls: env.tls,
            body: env.mail_params.body,
            smtputf8: env.mail_params.smtputf8,
            ret: env.mail_params.ret,
            envid: env.mail_params.envid.clone(),
        };
        if let Some(reply) = no_room(ctx, &mut client.quotas, &recipients, size as u64).await {
            return reply;
        }
        let class_rule = decision.rule;
        let class = decision.class;
        let forward_sender = match forward_sender(ctx, &recipients, &mail_from, secs).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the SRS key or the local domains; answering 451");
                return Reply::new(451, (4, 3, 0), "Error: temporary lookup failure, try again later");
            }
        };
        let split = Split {
            id,
            received_at: secs,
            class,
            envelope: &stored,
            data: &full,
            new_id: &|| MessageId::new(now_ms.max(0) as u64),
            forward_sender: &forward_sender,
        };
        let mut copies = split.copies(recipients);
        if let Some(user) = env.auth_user.as_deref()
            && copies.messages.iter().any(|m| m.recipients.iter().any(|r| r.route == Route::Remote))
            && let Outbound::Hold { first, sent } = ctx.limits.outbound(user, now_ms)
        {
            let limit = ctx.config.max_messages_per_hour_per_user;
            metrics::counter!("facteur_smtp_messages_held_total", "reason" => "user_hourly_limit").increment(1);
            if first {
                metrics::counter!("facteur_smtp_users_over_limit_total").increment(1);
                tracing::warn!(
                    target: "facteur::abuse",
                    %user,
                    sent,
                    limit,
                    "account over its hourly sending limit (a stolen password?): its mail to other domains is held; \
                     see facteur queue list --state held --sender {user}, then release or delete it"
                );
            }
            for m in &mut copies.messages {
                m.hold = true;
            }
        }
        let mut local_users: Vec<String> = copies
            .messages
            .iter()
            .flat_map(|m| &m.recipients)
            .filter_map(|r| match &r.route {
                Route::Local { user, .. } => Some(user.clone()),
                Route::Remote => None,
            })
            .collect();
        local_users.sort_unstable();
        local_users.dedup();
        let remote = copies.messages.iter().any(|m| m.recipients.iter().any(|r| r.route == Route::Remote));
        let success_notice = match (stranger, ctx.config.success_notices_for_strangers) {
            (true, SuccessNotices::None) => Vec::new(),
            _ => success_notice_items(&copies.delivered, secs),
        };
        let notice_about = (!success_notice.is_empty()).then(|| {
            let mut envelope = stored.clone();
            if stranger && ctx.config.success_notices_for_strangers == SuccessNotices::Headers {
                envelope.ret = Some(Ret::Hdrs);
            }
            (envelope, full.clone())
        });
        match ctx.store.store_messages(copies.messages).await {
            Ok(placed) => {
                tracing::info!(from = %mail_from, recipients = nrcpt, local = placed.len(), size, rule = %class_rule, "accepted");
                let listener = client.kind.name();
                // The synthetic probe's mail is not traffic.
                let counted = if facteur_types::probe::is_probe(&mail_from) { 0 } else { 1 };
                metrics::counter!("facteur_smtp_messages_accepted_total", "listener" => listener, "class" => class.as_str())
                    .increment(counted);
                metrics::counter!("facteur_smtp_recipients_accepted_total", "listener" => listener, "class" => class.as_str())
                    .increment(counted * nrcpt as u64);
                metrics::counter!("facteur_local_deliveries_total").increment(counted * placed.len() as u64);
                signal::record(Signal::Acceptance, true, 1);
                if remote && let Some(w) = &ctx.queued {
                    w.notify_one();
                }
                if let Some((envelope, data)) = notice_about {
                    send_success_notice(ctx, id, secs, &envelope, &data, success_notice).await;
                }
                // A warning can only be due to a user with a limit (unread: maybe).
                let limited = |u: &String| client.quotas.get(u).is_none_or(|q| q.is_some_and(|q| q.limited()));
                if ctx.quota.warn_percent > 0 && local_users.iter().any(limited) {
                    let (store, hostname, percent) = (ctx.store.clone(), ctx.hostname.clone(), ctx.quota.warn_percent);
                    tokio::spawn(crate::quota::warn(store, local_users, percent, hostname, now_ms));
                }
                Reply::new(250, (2, 0, 0), format!("Ok: queued as {id_text}"))
            }
            Err(e) => {
                metrics::counter!("facteur_smtp_storage_failures_total", "listener" => client.kind.name()).increment(1);
                signal::record(Signal::Acceptance, false, 1);
                // Never 250: the client keeps the message and tries again.
                if let facteur_store::StoreError::Full(_) = e {
                    tracing::error!(error = %e, "storage full; message refused with 452, the client will retry");
                    return Reply::new(452, (4, 3, 1), "Error: insufficient system storage, try again later");
                }
                tracing::error!(error = %e, "storage failed; message refused with 451, the client will retry");
                Reply::new(451, (4, 3, 0), "Error: temporary storage failure, try again later")
            }
        }
    }
    .instrument(span)
    .await
}
