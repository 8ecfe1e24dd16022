//! The delivery engine: claim due recipients, deliver them per destination
//! over reused connections, record each outcome with its notices.
//!
//! Each destination (recipient domain) has a queue of jobs and up to
//! `max_connections_per_destination` workers; every worker holds one of the
//! node's `max_concurrent` permits while it runs. A worker keeps its
//! connection for the destination's next job. When no target of a
//! destination can be reached, the worker defers every job waiting for it
//! at once instead of hammering a dead host once per message.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use facteur_smtp_proto::client::{OutboundEnvelope, OutboundRecipient, RcptOutcome};
use facteur_smtp_proto::{BodyType, Notify as DsnNotify, Reply, Ret};
use facteur_store::{AttemptRecord, DeliveryJob, NewState, RecipientUpdate, SharedClock, Store};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::Instrument;

use crate::client::{ClientSettings, ConnectError, Connection};
use crate::config::DeliveryConfig;
use crate::notices::{self, About, NoticeItem};
use crate::outcome::{self, Attempt, Notice};
use crate::resolver::Resolver;
use crate::route::{RouteFailure, Router};

#[derive(Default)]
struct Dest {
    queue: Mutex<VecDeque<DeliveryJob>>,
    workers: AtomicUsize,
}

pub struct Engine<S, R> {
    store: S,
    router: Router<R>,
    clock: SharedClock,
    config: DeliveryConfig,
    client: ClientSettings,
    hostname: String,
    wake: Arc<Notify>,
    dests: Mutex<HashMap<String, Arc<Dest>>>,
    global: Arc<Semaphore>,
    outstanding: AtomicUsize,
    idle: Notify,
}

/// Why a whole job failed before any recipient could be tried.
struct JobFailure {
    host: Option<String>,
    permanent: bool,
    status: (u8, u16, u16),
    text: String,
}

impl From<RouteFailure> for JobFailure {
    fn from(f: RouteFailure) -> Self {
        JobFailure { host: None, permanent: f.permanent, status: f.status, text: f.text }
    }
}

impl From<ConnectError> for JobFailure {
    fn from(e: ConnectError) -> Self {
        JobFailure { host: Some(e.host), permanent: e.permanent, status: e.status, text: e.text }
    }
}

fn status_text(s: (u8, u16, u16)) -> String {
    format!("{}.{}.{}", s.0, s.1, s.2)
}

fn to_attempt(o: &RcptOutcome) -> Attempt {
    let status = |r: &Reply| facteur_dsn::status_from_reply(r.code, r.enhanced);
    match o {
        RcptOutcome::Delivered(r) => Attempt::Delivered { reply: r.to_string() },
        RcptOutcome::Temporary(r) => Attempt::Temporary { reply: r.to_string(), status: status(r) },
        RcptOutcome::Permanent(r) => Attempt::Permanent { reply: r.to_string(), status: status(r) },
    }
}

fn parse_notify(n: Option<&str>) -> Option<DsnNotify> {
    let n = n?;
    let has = |k: &str| n.split(',').any(|p| p.trim().eq_ignore_ascii_case(k));
    Some(DsnNotify { never: has("NEVER"), success: has("SUCCESS"), failure: has("FAILURE"), delay: has("DELAY") })
}

fn outbound_envelope(job: &DeliveryJob, size: u64) -> OutboundEnvelope {
    let e = &job.envelope;
    OutboundEnvelope {
        mail_from: e.mail_from.clone(),
        recipients: job
            .recipients
            .iter()
            .map(|r| OutboundRecipient {
                address: r.address.clone(),
                notify: parse_notify(r.notify.as_deref()),
                orcpt: r.orcpt.clone(),
            })
            .collect(),
        size,
        body: match e.body.as_deref() {
            Some("8BITMIME") => Some(BodyType::EightBitMime),
            Some("7BIT") => Some(BodyType::SevenBit),
            _ => None,
        },
        smtputf8: e.smtputf8,
        ret: match e.ret.as_deref() {
            Some("FULL") => Some(Ret::Full),
            Some("HDRS") => Some(Ret::Hdrs),
            _ => None,
        },
        envid: e.envid.clone(),
    }
}

impl<S: Store + Clone, R: Resolver> Engine<S, R> {
    pub fn new(store: S, router: Router<R>, clock: SharedClock, config: DeliveryConfig, hostname: String) -> Arc<Self> {
        let client = ClientSettings {
            helo_name: hostname.clone(),
            tls: crate::client::client_tls_config(),
            connect_timeout: Duration::from_secs(config.connect_timeout_secs.max(1)),
            command_timeout: Duration::from_secs(config.command_timeout_secs.max(1)),
        };
        Arc::new(Engine {
            store,
            router,
            clock,
            global: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            config,
            client,
            hostname,
            wake: Arc::new(Notify::new()),
            dests: Mutex::new(HashMap::new()),
            outstanding: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// Notify this when new mail is queued, so it goes out at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Jobs handed to workers and not finished yet.
    pub fn in_flight(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Deliver until `shutdown` turns true. Leases left by a crash are
    /// released first: nothing is in flight when a node starts.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        match self.store.release_leases().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(recipients = n, "released leases left by an earlier run; they will be retried"),
            Err(e) => tracing::error!(error = %e, "cannot release old leases; they expire on their own"),
        }
        let backlog_limit = self.config.max_concurrent.saturating_mul(4).max(64);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let room = backlog_limit.saturating_sub(self.in_flight());
            let claimed = if room > 0 { self.dispatch_due(room).await } else { 0 };
            if claimed > 0 && claimed == room {
                continue;
            }
            let now = self.clock.now();
            let wait = match self.store.next_due().await {
                Ok(Some(t)) if t > now => Duration::from_secs((t - now) as u64).min(Duration::from_secs(5)),
                Ok(Some(_)) if room > 0 && claimed == 0 => Duration::from_millis(200),
                Ok(Some(_)) => Duration::from_millis(50),
                // Another process (the CLI, another node) may queue or retry: look again soon.
                Ok(None) => Duration::from_secs(5),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the queue; retrying in 5 s");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.idle.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// Deliver everything due now and wait until it is done (tests drive
    /// time with a manual clock and call this). Returns the jobs claimed.
    pub async fn run_once(self: &Arc<Self>) -> usize {
        let n = self.dispatch_due(100_000).await;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight() == 0 {
                return n;
            }
            idle.await;
        }
    }

    async fn dispatch_due(self: &Arc<Self>, limit: usize) -> usize {
        let now = self.clock.now();
        let jobs = match self.store.claim_due(now, now + self.config.lease_secs as i64, limit).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim due messages");
                return 0;
            }
        };
        let n = jobs.len();
        for job in jobs {
            self.dispatch(job);
        }
        n
    }

    fn dispatch(self: &Arc<Self>, job: DeliveryJob) {
        let key = job.domain.clone();
        let dest = {
            let Ok(mut dests) = self.dests.lock() else { return };
            dests.entry(key.clone()).or_default().clone()
        };
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut q) = dest.queue.lock() {
            q.push_back(job);
        }
        self.spawn_worker_if_needed(&key, &dest);
    }

    fn spawn_worker_if_needed(self: &Arc<Self>, key: &str, dest: &Arc<Dest>) {
        let queued = dest.queue.lock().map(|q| q.len()).unwrap_or(0);
        let workers = dest.workers.load(Ordering::SeqCst);
        if queued == 0 || workers >= self.config.max_connections_per_destination.max(1) || workers >= queued {
            return;
        }
        dest.workers.fetch_add(1, Ordering::SeqCst);
        let (me, key, dest) = (self.clone(), key.to_string(), dest.clone());
        tokio::spawn(async move { me.worker(key, dest).await });
    }

    /// A job is finished: wake `run_once` (waiting for zero) and the claim
    /// loop (there is room for more).
    fn job_done(&self) {
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.idle.notify_waiters();
    }

    fn next_job(dest: &Dest) -> Option<DeliveryJob> {
        dest.queue.lock().ok().and_then(|mut q| q.pop_front())
    }

    async fn worker(self: Arc<Self>, key: String, dest: Arc<Dest>) {
        let permit = self.global.clone().acquire_owned().await;
        let mut conn: Option<Connection> = None;
        while let Some(job) = Self::next_job(&dest) {
            let span = tracing::info_span!("delivery", id = %job.message_id, domain = %key);
            match self.deliver(&job, &mut conn).instrument(span).await {
                Ok(()) => self.job_done(),
                Err(failure) => {
                    // The destination is unreachable: defer this job and every
                    // job waiting for it with the same diagnostic.
                    self.fail_job(&job, &failure).await;
                    self.job_done();
                    while let Some(other) = Self::next_job(&dest) {
                        self.fail_job(&other, &failure).await;
                        self.job_done();
                    }
                }
            }
        }
        drop(permit);
        dest.workers.fetch_sub(1, Ordering::SeqCst);
        if let Some(c) = conn {
            c.quit().await;
        }
        // A job queued between our last look and the decrement needs a worker.
        self.spawn_worker_if_needed(&key, &dest);
    }

    async fn connect(&self, domain: &str) -> Result<Connection, JobFailure> {
        let targets = self.router.plan(domain).await?;
        let mut last: Option<ConnectError> = None;
        for t in &targets {
            match Connection::open(t, &self.client).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::info!(host = %t.host, addr = %t.addr, error = %e.text, "target failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.map(JobFailure::from).unwrap_or(JobFailure {
            host: None,
            permanent: false,
            status: (4, 4, 4),
            text: format!("no target for {domain}"),
        }))
    }

    /// Deliver one job. `Err` means no connection could be made.
    async fn deliver(&self, job: &DeliveryJob, conn: &mut Option<Connection>) -> Result<(), JobFailure> {
        let Some(body) = self.store.message_body(&job.message_id).await.ok().flatten() else {
            // This message's problem, not the destination's: defer it alone.
            tracing::error!(id = %job.message_id, "message body unreadable from storage; deferring");
            let f =
                JobFailure { host: None, permanent: false, status: (4, 3, 0), text: "stored body unreadable".into() };
            self.fail_job(job, &f).await;
            return Ok(());
        };
        let reuse = conn.as_ref().is_some_and(|c| c.transactions < self.config.max_messages_per_connection.max(1));
        if !reuse {
            if let Some(old) = conn.take() {
                old.quit().await;
            }
            *conn = Some(self.connect(&job.domain).await?);
        }
        let Some(c) = conn.as_mut() else { return Ok(()) };
        let result = c.send(outbound_envelope(job, body.len() as u64), &body).await;
        let host = c.host.clone();
        let remote_dsn = c.caps.dsn;
        if !result.reusable
            && let Some(old) = conn.take()
        {
            old.quit().await;
        }
        let attempts: Vec<Attempt> = result.outcomes.iter().map(to_attempt).collect();
        self.record(job, &attempts, Some(host), remote_dsn, &body).await;
        Ok(())
    }

    async fn fail_job(&self, job: &DeliveryJob, f: &JobFailure) {
        let reply = format!("{} facteur: {}", status_text(f.status), f.text);
        let attempt = if f.permanent {
            Attempt::Permanent { reply, status: f.status }
        } else {
            Attempt::Temporary { reply, status: f.status }
        };
        let attempts = vec![attempt; job.recipients.len()];
        let body = self.store.message_body(&job.message_id).await.ok().flatten().unwrap_or_default();
        self.record(job, &attempts, f.host.clone(), false, &body).await;
    }

    /// Turn attempts into state changes and notices; commit them together.
    async fn record(
        &self,
        job: &DeliveryJob,
        attempts: &[Attempt],
        host: Option<String>,
        remote_dsn: bool,
        body: &[u8],
    ) {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let mut updates = Vec::new();
        let mut items = Vec::new();
        for (r, a) in job.recipients.iter().zip(attempts) {
            let d = outcome::decide(r, a, now, job.received_at, remote_dsn, &self.config);
            let reply = match a {
                Attempt::Delivered { reply } | Attempt::Temporary { reply, .. } | Attempt::Permanent { reply, .. } => {
                    reply.clone()
                }
            };
            let outcome_name = match d.state {
                NewState::Delivered => "delivered",
                NewState::Deferred { .. } => "deferred",
                NewState::Bounced | NewState::Deleted => "bounced",
            };
            tracing::info!(
                id = %job.message_id, rcpt = %r.address, host = host.as_deref().unwrap_or("-"),
                outcome = outcome_name, reply = %reply, "delivery attempt"
            );
            if let Some(kind) = d.notice {
                items.push(NoticeItem {
                    address: r.address.clone(),
                    orcpt: r.orcpt.clone(),
                    notice: kind,
                    status: d.status,
                    diagnostic: Some(reply.clone()),
                    remote_mta: host.clone(),
                    last_attempt: Some(now),
                    will_retry_until: (kind == Notice::Delayed)
                        .then_some(job.received_at + self.config.queue_lifetime_secs as i64),
                });
            }
            updates.push(RecipientUpdate {
                message_id: job.message_id.clone(),
                idx: r.idx,
                state: d.state.clone(),
                attempt: Some(AttemptRecord {
                    recipient: r.address.clone(),
                    at: now,
                    host: host.clone(),
                    outcome: outcome_name.into(),
                    reply: reply.clone(),
                }),
                last_error: (!matches!(a, Attempt::Delivered { .. })).then_some(reply),
                delay_notified: d.delay_notified,
            });
        }
        let about = About {
            message_id: &job.message_id,
            received_at: job.received_at,
            envelope: &job.envelope,
            original: body,
        };
        let notices = notices::compose(&self.store, &about, items, &self.hostname, now_ms).await;
        if let Err(e) = self.store.complete(updates, notices).await {
            // The lease runs out and the recipients are tried again:
            // at-least-once, never lost.
            tracing::error!(id = %job.message_id, error = %e, "cannot record the outcome; the message will be retried");
        }
    }
}
