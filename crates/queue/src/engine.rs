//! The delivery engine: claim due recipients, deliver them per destination
//! over reused connections, record each outcome with its notices.
//!
//! Each destination (recipient domain) has a queue of jobs and up to
//! `max_connections_per_destination` workers; every worker holds one of the
//! node's `max_concurrent` permits while it runs. A worker keeps its
//! connection for the destination's next job.
//!
//! A destination that cannot be reached is handled as one thing, not as
//! many messages: the worker defers every job waiting for it in memory, and
//! parks the destination's other queued recipients in storage until its own
//! next try (backoff by consecutive failures), so a dead host with 100,000
//! messages costs one connection attempt and one statement per retry, not
//! 100,000 of each. When a connection to it succeeds again, everything it
//! has queued is due at once and drains through the shaper's slow start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use facteur_smtp_proto::Reply;
use facteur_smtp_proto::client::{OutboundEnvelope, OutboundRecipient, RcptOutcome};
use facteur_spool::notices::{self, About, Notice, NoticeItem};
use facteur_store::{AttemptRecord, ClaimFilter, DeliveryJob, Directory, NewState, Park, RecipientUpdate, Spool};
use facteur_types::signal;
use facteur_types::{ControlKey, MessageId, Outcome, SharedClock};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::Instrument;

use crate::client::{ClientSettings, ConnectError, Connection};
use crate::config::DeliveryConfig;
use crate::fair::{self, Class, ClassQueues};
use crate::outcome::{self, Attempt};
use crate::resolver::Resolver;
use crate::route::{RouteFailure, Router};
use crate::shaping::{Feedback, Shaper, ShaperState};

/// One destination: its jobs by class, its workers, its adaptive limits.
struct Dest {
    queue: Mutex<ClassQueues<DeliveryJob>>,
    /// Workers alive (each may hold a connection).
    workers: AtomicUsize,
    /// Deliveries running right now.
    active: AtomicUsize,
    /// Consecutive tries that found no reachable target (0: reachable), and
    /// until when the destination's queued mail is parked (unix seconds):
    /// failures of workers that tried at the same time count once.
    unreachable: AtomicU32,
    parked_until: AtomicI64,
    /// When to try connecting to an unreachable destination next (unix seconds).
    probe_at: AtomicI64,
    probing: AtomicBool,
    shaper: Mutex<Shaper>,
}

/// Operator controls, reloaded from storage at most once a second.
#[derive(Default)]
struct Controls {
    loaded: Option<std::time::Instant>,
    /// Paused (destination, class) pairs; `None` matches any.
    paused: Vec<(Option<String>, Option<Class>)>,
    dest_rates: HashMap<String, f64>,
    node_rate: Option<f64>,
}

impl Controls {
    fn paused(&self, domain: &str, class: Class) -> bool {
        self.paused.iter().any(|(d, c)| d.as_deref().is_none_or(|d| d == domain) && c.is_none_or(|c| c == class))
    }
}

/// The node-wide rate: a token bucket holding one second's worth.
#[derive(Default)]
struct NodeBucket {
    tokens: f64,
    at_ms: i64,
}

/// One destination as an operator sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DestinationState {
    pub domain: String,
    /// Jobs waiting in this node's memory, by class (system, interpersonal, transactional, bulk).
    pub waiting: [usize; 4],
    pub workers: usize,
    pub active: usize,
    /// Consecutive tries that found no reachable target (0: reachable).
    pub unreachable_failures: u32,
    /// While unreachable: its queued mail is parked until then, and it is
    /// probed next at `next_probe` (unix seconds).
    pub parked_until: Option<i64>,
    pub next_probe: Option<i64>,
    pub shaper: Option<ShaperState>,
}

pub struct Engine<S, R> {
    store: S,
    /// Swapped whole on a configuration reload (routes, relay host).
    router: std::sync::RwLock<Arc<Router<R>>>,
    clock: SharedClock,
    config: DeliveryConfig,
    client: ClientSettings,
    hostname: String,
    wake: Arc<Notify>,
    dests: Mutex<HashMap<String, Arc<Dest>>>,
    controls: Mutex<Controls>,
    /// Live nodes sharing the queue (this one included): each takes its
    /// share of every destination's configured ceilings.
    peers: AtomicU32,
    /// The recipients this engine has claimed and not yet recorded, with
    /// when their lease ends as last confirmed: the leases it renews (and
    /// only those).
    held: Mutex<HashMap<(MessageId, u32), i64>>,
    node_bucket: Mutex<NodeBucket>,
    global: Arc<Semaphore>,
    outstanding: AtomicUsize,
    idle: Notify,
}

/// A job the destination pushed back (421 or a throttling 4xx for every
/// recipient) is kept in memory and tried again at the pace the shaper sets
/// after the push-back, this many times; then it is deferred like any 4xx.
/// A destination that says "slow down" is asking for a slower pace, not for
/// the message to wait out a retry backoff.
const MAX_PUSH_BACKS: u32 = 3;

/// What became of a job the destination answered.
enum Delivery {
    /// Outcomes recorded; how the destination took it.
    Recorded(Feedback),
    /// Not recorded: the destination pushed it back; try again later.
    PushedBack,
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

/// How the service objectives see an attempt: a reply the destination
/// gave for good (2xx, 5xx), a deferral by reply, or a destination that
/// could not be reached (RFC 3463 X.4.x: network and routing).
fn delivery_signal(a: &Attempt) -> signal::Delivery {
    match a {
        Attempt::Delivered { .. } | Attempt::Permanent { .. } => signal::Delivery::Done,
        Attempt::Temporary { status: (_, 4, _), .. } => signal::Delivery::Unreachable,
        Attempt::Temporary { .. } => signal::Delivery::Deferred,
    }
}

/// The class and subject of an attempt's status (RFC 3463 §3: "2.0",
/// "4.4", "5.1", ...), a bounded label: subjects past those RFC 3463
/// defines (0-7) are "other".
fn status_class(a: &Attempt) -> String {
    let (class, subject) = match a {
        Attempt::Delivered { .. } => (2, 0),
        Attempt::Temporary { status, .. } | Attempt::Permanent { status, .. } => (status.0, status.1),
    };
    if subject > 7 { format!("{class}.other") } else { format!("{class}.{subject}") }
}

fn to_attempt(o: &RcptOutcome) -> Attempt {
    let status = |r: &Reply| facteur_dsn::status_from_reply(r.code, r.enhanced);
    match o {
        RcptOutcome::Delivered(r) => Attempt::Delivered { reply: r.to_string() },
        RcptOutcome::Temporary(r) => Attempt::Temporary { reply: r.to_string(), status: status(r) },
        RcptOutcome::Permanent(r) => Attempt::Permanent { reply: r.to_string(), status: status(r) },
    }
}

/// What a transaction says about the destination's load: a 421, or a 4xx
/// with a policy (X.7.x) status or words of rate, is push-back.
fn feedback_of(outcomes: &[RcptOutcome]) -> Feedback {
    let throttle = |r: &Reply| {
        let text = r.lines.join(" ").to_ascii_lowercase();
        r.code == 421
            || r.enhanced.is_some_and(|e| e.0 == 4 && e.1 == 7)
            || ["rate", "too many", "too fast", "throttl", "slow down"].iter().any(|w| text.contains(w))
    };
    let mut temporary = false;
    let mut delivered = false;
    for o in outcomes {
        match o {
            RcptOutcome::Temporary(r) if throttle(r) => return Feedback::Throttled,
            RcptOutcome::Temporary(_) => temporary = true,
            RcptOutcome::Delivered(_) => delivered = true,
            RcptOutcome::Permanent(_) => {}
        }
    }
    if temporary {
        Feedback::OtherTemporary
    } else if delivered {
        Feedback::Success
    } else {
        Feedback::Permanent
    }
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
                // Absent stays absent: the next hop's default applies there.
                notify: r.notify,
                orcpt: r.orcpt.clone(),
            })
            .collect(),
        size,
        body: e.body,
        smtputf8: e.smtputf8,
        ret: e.ret,
        envid: e.envid.clone(),
    }
}

impl<S: Spool + Directory, R: Resolver> Engine<S, R> {
    /// Route with `router` from now on (configuration reload); deliveries
    /// under way finish with the one they started with.
    pub fn set_router(&self, router: Router<R>) {
        if let Ok(mut r) = self.router.write() {
            *r = Arc::new(router);
        }
        // CA files are read again at the next verified handshake.
        self.client.verified.clear();
    }

    pub fn new(store: S, router: Router<R>, clock: SharedClock, config: DeliveryConfig, hostname: String) -> Arc<Self> {
        let client = ClientSettings {
            helo_name: hostname.clone(),
            tls: crate::client::client_tls_config(),
            verified: Default::default(),
            connect_timeout: Duration::from_secs(config.connect_timeout_secs.max(1)),
            command_timeout: Duration::from_secs(config.command_timeout_secs.max(1)),
        };
        Arc::new(Engine {
            store,
            router: std::sync::RwLock::new(Arc::new(router)),
            clock,
            global: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            config,
            client,
            hostname,
            wake: Arc::new(Notify::new()),
            dests: Mutex::new(HashMap::new()),
            controls: Mutex::new(Controls::default()),
            peers: AtomicU32::new(1),
            held: Mutex::new(HashMap::new()),
            node_bucket: Mutex::new(NodeBucket::default()),
            outstanding: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// Notify this when new mail is queued, so it goes out at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// `n` live nodes (this one included) deliver from the shared queue:
    /// each destination's configured ceilings are split among them.
    pub fn set_peers(&self, n: u32) {
        let n = n.max(1);
        if self.peers.swap(n, Ordering::Relaxed) == n {
            return;
        }
        tracing::info!(nodes = n, "live nodes changed; each destination's limits are shared among them");
        if let Ok(dests) = self.dests.lock() {
            for d in dests.values() {
                if let Ok(mut sh) = d.shaper.lock() {
                    sh.set_share(n);
                }
            }
        }
    }

    /// Record these outcomes (and the notices they produce). Their leases
    /// are renewed until the record is done, however long it takes, so no
    /// other node takes them over meanwhile; then they are let go (if the
    /// record failed, the lease runs out and they are tried again).
    async fn complete(
        &self,
        updates: Vec<RecipientUpdate>,
        notices: Vec<facteur_store::NewMessage>,
    ) -> facteur_store::Result<()> {
        let keys: Vec<(MessageId, u32)> = updates.iter().map(|u| (u.message_id, u.idx)).collect();
        let done = self.store.complete(updates, notices).await;
        self.let_go(keys);
        done
    }

    /// No longer renew the leases on `keys`.
    fn let_go(&self, keys: impl IntoIterator<Item = (MessageId, u32)>) {
        if let Ok(mut held) = self.held.lock() {
            for key in keys {
                held.remove(&key);
            }
        }
    }

    /// Extend the leases on `keys` to `lease_secs` from now; returns how
    /// many of them are still this node's (the others were taken over
    /// by another node, or are being recorded).
    async fn renew(&self, keys: Vec<(MessageId, u32)>) -> facteur_store::Result<usize> {
        let until = self.clock.now() + self.config.lease_secs as i64;
        let renewed = self.store.renew_leases(keys, until).await?;
        if let Ok(mut held) = self.held.lock() {
            for key in &renewed {
                if let Some(end) = held.get_mut(key) {
                    *end = until;
                }
            }
        }
        Ok(renewed.len())
    }

    /// Renew this node's leases every third of a lease, on a task of their
    /// own: however slow claims or the queue's reads get, what this node
    /// claimed stays its own while it lives.
    async fn renew_leases(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every = Duration::from_millis((self.config.lease_secs * 1000 / 3).max(100));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let keys: Vec<(MessageId, u32)> = self.held.lock().map(|h| h.keys().copied().collect()).unwrap_or_default();
            if let Err(e) = self.renew(keys).await {
                tracing::error!(error = %e, "cannot renew this node's leases; other nodes may take its work over");
            }
        }
    }

    /// Is `job` still this node's to deliver? A lease with less than a
    /// third of its length left (renewals stalled) is renewed first; a
    /// recipient another node took meanwhile (this one was presumed dead)
    /// is not delivered twice: the job is let go, unrecorded.
    async fn still_leased(&self, job: &DeliveryJob) -> bool {
        let keys: Vec<(MessageId, u32)> = job.recipients.iter().map(|r| (job.message_id, r.idx)).collect();
        let ends = self.held.lock().map(|h| keys.iter().map(|k| h.get(k).copied()).min().flatten()).ok().flatten();
        let margin_ms = (self.config.lease_secs * 1000 / 3) as i64;
        if ends.is_some_and(|end| end * 1000 - self.clock.now_ms() >= margin_ms) {
            return true;
        }
        let wanted = keys.len();
        match self.renew(keys).await {
            Ok(n) if n == wanted => return true,
            Ok(n) => tracing::warn!(
                id = %job.message_id, recipients = wanted - n,
                "lease taken over by another node while this one stalled; not delivering"
            ),
            Err(e) => tracing::error!(id = %job.message_id, error = %e, "cannot confirm a lease; not delivering"),
        }
        self.let_go(job.recipients.iter().map(|r| (job.message_id, r.idx)));
        false
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
        tokio::spawn(self.clone().renew_leases(shutdown.clone()));
        loop {
            if *shutdown.borrow() {
                return;
            }
            let probing = self.probe_due() > 0 || self.has_unreachable();
            let room = backlog_limit.saturating_sub(self.in_flight());
            let claimed = if room > 0 { self.dispatch_due(room).await } else { 0 };
            if claimed > 0 && claimed == room {
                continue;
            }
            let now = self.clock.now();
            let wait = match self.store.next_due().await {
                // Probes of unreachable destinations are due on the second.
                _ if probing => Duration::from_secs(1),
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
        self.probe_due();
        self.wait_idle().await;
        let n = self.dispatch_due(100_000).await;
        self.wait_idle().await;
        n
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            idle.await;
        }
    }

    fn has_unreachable(&self) -> bool {
        self.dests.lock().is_ok_and(|d| d.values().any(|d| d.unreachable.load(Ordering::SeqCst) > 0))
    }

    /// Reload the operator's controls (pauses, rates), at most once a second.
    async fn refresh_controls(&self) {
        let due = self
            .controls
            .lock()
            .map(|c| c.loaded.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)))
            .unwrap_or(true);
        if !due {
            return;
        }
        let list = match self.store.controls().await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read operator controls");
                return;
            }
        };
        let mut c = Controls { loaded: Some(std::time::Instant::now()), ..Controls::default() };
        for ctl in list {
            match ctl.key {
                ControlKey::Pause { destination, class } => c.paused.push((destination, class)),
                ControlKey::Rate { destination: Some(d) } => {
                    if let Ok(r) = ctl.value.parse() {
                        c.dest_rates.insert(d, r);
                    }
                }
                ControlKey::Rate { destination: None } => c.node_rate = ctl.value.parse().ok(),
            }
        }
        if let Ok(dests) = self.dests.lock() {
            for (domain, d) in dests.iter() {
                if let Ok(mut sh) = d.shaper.lock() {
                    sh.set_max_rate(c.dest_rates.get(domain).copied().or(self.config.shaping.max_rate));
                }
            }
        }
        if let Ok(mut slot) = self.controls.lock() {
            *slot = c;
        }
    }

    /// Claim due recipients, each class up to its weighted share of `limit`
    /// (so a flood of bulk cannot crowd out the rest), then any class for
    /// what is left; paused destinations and classes are not claimed.
    async fn dispatch_due(self: &Arc<Self>, limit: usize) -> usize {
        self.refresh_controls().await;
        let now = self.clock.now();
        let lease = now + self.config.lease_secs as i64;
        let skip = self.controls.lock().map(|c| c.paused.clone()).unwrap_or_default();
        let shares = fair::target_shares(&self.config.weights, [true; 4]);
        let mut jobs = Vec::new();
        let mut taken = 0;
        for class in Class::ALL {
            let quota = ((limit as f64) * shares[class.index()]).ceil() as usize;
            let filter = ClaimFilter { class: Some(class), skip: skip.clone() };
            match self.store.claim_due(now, lease, quota.max(1), filter).await {
                Ok(j) => {
                    taken += j.iter().map(|j| j.recipients.len()).sum::<usize>();
                    jobs.extend(j);
                }
                Err(e) => tracing::error!(error = %e, "cannot claim due messages"),
            }
        }
        if taken < limit {
            match self.store.claim_due(now, lease, limit - taken, ClaimFilter { class: None, skip }).await {
                Ok(j) => jobs.extend(j),
                Err(e) => tracing::error!(error = %e, "cannot claim due messages"),
            }
        }
        if let Ok(mut held) = self.held.lock() {
            held.extend(jobs.iter().flat_map(|j| j.recipients.iter().map(|r| ((j.message_id, r.idx), lease))));
        }
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
            dests
                .entry(key.clone())
                .or_insert_with(|| {
                    let mut shaper = Shaper::new(&self.config.shaping, self.clock.now_ms().max(0) as u64);
                    shaper.set_share(self.peers.load(Ordering::Relaxed));
                    let rate = self.controls.lock().ok().and_then(|c| c.dest_rates.get(&key).copied());
                    if rate.is_some() {
                        shaper.set_max_rate(rate);
                    }
                    Arc::new(Dest {
                        queue: Mutex::new(ClassQueues::new(self.config.weights)),
                        workers: AtomicUsize::new(0),
                        active: AtomicUsize::new(0),
                        unreachable: AtomicU32::new(0),
                        parked_until: AtomicI64::new(0),
                        probe_at: AtomicI64::new(i64::MAX),
                        probing: AtomicBool::new(false),
                        shaper: Mutex::new(shaper),
                    })
                })
                .clone()
        };
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        let class = job.class;
        if let Ok(mut q) = dest.queue.lock() {
            q.push(class, job);
        }
        self.spawn_worker_if_needed(&key, &dest);
    }

    fn spawn_worker_if_needed(self: &Arc<Self>, key: &str, dest: &Arc<Dest>) {
        let queued = dest.queue.lock().map(|q| q.len()).unwrap_or(0);
        let workers = dest.workers.load(Ordering::SeqCst);
        let limit = dest.shaper.lock().map(|s| s.concurrency_limit()).unwrap_or(1) as usize;
        if queued == 0 || workers >= limit || workers >= queued {
            return;
        }
        dest.workers.fetch_add(1, Ordering::SeqCst);
        let (me, key, dest) = (self.clone(), key.to_string(), dest.clone());
        tokio::spawn(async move { me.worker(key, dest).await });
    }

    /// Per-destination state for operators (`facteur queue destinations`).
    pub fn destinations(&self) -> Vec<DestinationState> {
        let Ok(dests) = self.dests.lock() else { return Vec::new() };
        let mut out: Vec<DestinationState> = dests
            .iter()
            .map(|(domain, d)| DestinationState {
                domain: domain.clone(),
                waiting: d.queue.lock().map(|q| Class::ALL.map(|c| q.len_of(c))).unwrap_or_default(),
                workers: d.workers.load(Ordering::SeqCst),
                active: d.active.load(Ordering::SeqCst),
                unreachable_failures: d.unreachable.load(Ordering::SeqCst),
                parked_until: Some(d.parked_until.load(Ordering::SeqCst)).filter(|&t| t > 0 && t < i64::MAX),
                next_probe: Some(d.probe_at.load(Ordering::SeqCst)).filter(|&t| t < i64::MAX),
                shaper: d.shaper.lock().map(|s| s.snapshot()).ok(),
            })
            .collect();
        out.sort_by(|a, b| a.domain.cmp(&b.domain));
        out
    }

    /// Take a token of the node-wide rate, or say how long to wait for one.
    fn node_token(&self) -> Result<(), Duration> {
        let Some(rate) = self.controls.lock().ok().and_then(|c| c.node_rate).or(self.config.max_rate) else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let Ok(mut b) = self.node_bucket.lock() else { return Ok(()) };
        let elapsed = (now - b.at_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(rate.max(1.0));
        b.at_ms = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - b.tokens) / rate).clamp(0.005, 1.0)))
        }
    }

    fn job_done(&self) {
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.idle.notify_waiters();
    }

    fn next_job(dest: &Dest) -> Option<DeliveryJob> {
        dest.queue.lock().ok().and_then(|mut q| q.pop()).map(|(_, job)| job)
    }

    /// A worker: deliver the destination's jobs, class by weighted class,
    /// over one connection, as fast as the shaper and the node budget allow.
    async fn worker(self: Arc<Self>, key: String, dest: Arc<Dest>) {
        let permit = self.global.clone().acquire_owned().await;
        let mut conn: Option<Connection> = None;
        loop {
            if dest.queue.lock().map(|q| q.is_empty()).unwrap_or(true) {
                break;
            }
            // May one more delivery start at this destination now?
            let now = self.clock.now_ms().max(0) as u64;
            let start = {
                let Ok(mut sh) = dest.shaper.lock() else { break };
                let active = dest.active.load(Ordering::SeqCst) as u32;
                if active >= sh.concurrency_limit() {
                    // Enough workers for the current limit: this one retires.
                    None
                } else if sh.try_start(active, now) {
                    Some(Duration::ZERO)
                } else {
                    let at = sh.next_allowed_ms(now).unwrap_or(now + 100);
                    Some(Duration::from_millis(at.saturating_sub(now).clamp(5, 1000)))
                }
            };
            match start {
                None => break,
                Some(wait) if !wait.is_zero() => {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Some(_) => {}
            }
            if let Err(wait) = self.node_token() {
                tokio::time::sleep(wait).await;
                continue;
            }
            let Some(job) = Self::next_job(&dest) else { break };
            if self.controls.lock().map(|c| c.paused(&key, job.class)).unwrap_or(false) {
                // Paused after it was claimed: give it back, untouched.
                self.give_back(&job).await;
                self.job_done();
                continue;
            }
            if !self.still_leased(&job).await {
                self.job_done();
                continue;
            }
            dest.active.fetch_add(1, Ordering::SeqCst);
            let span = tracing::info_span!("delivery", id = %job.message_id, domain = %key, class = %job.class);
            let result = self.deliver(&job, &mut conn).instrument(span).await;
            dest.active.fetch_sub(1, Ordering::SeqCst);
            let now = self.clock.now_ms().max(0) as u64;
            match result {
                Ok(Delivery::PushedBack) => {
                    if let Ok(mut sh) = dest.shaper.lock() {
                        sh.feedback(Feedback::Throttled, now);
                    }
                    // Still ours (leased): back in line, at the pace the shaper now sets.
                    let mut job = job;
                    job.pushed_back += 1;
                    if let Ok(mut q) = dest.queue.lock() {
                        q.push(job.class, job);
                    }
                }
                Ok(Delivery::Recorded(feedback)) => {
                    if let Ok(mut sh) = dest.shaper.lock() {
                        sh.feedback(feedback, now);
                    }
                    if feedback != Feedback::OtherTemporary {
                        self.revive(&key, &dest).await;
                    }
                    self.job_done();
                    // The limit may have grown: another worker may start.
                    self.spawn_worker_if_needed(&key, &dest);
                }
                Err(failure) => {
                    if let Ok(mut sh) = dest.shaper.lock() {
                        sh.feedback(
                            if failure.host.is_some() { Feedback::ConnectFailure } else { Feedback::OtherTemporary },
                            now,
                        );
                    }
                    // The destination is unreachable: park what waits for it
                    // in storage, then defer this job and every job waiting
                    // for it in memory with the same diagnostic, in one commit.
                    if !failure.permanent {
                        self.park(&key, &dest, &failure).await;
                    }
                    let mut failed = vec![job];
                    while let Some(other) = Self::next_job(&dest) {
                        failed.push(other);
                    }
                    self.fail_jobs(&failed, &failure).await;
                    for _ in &failed {
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

    /// Postpone the queued recipients of an unreachable destination until its
    /// next try: consecutive failures give the same backoff as a message's
    /// attempts. Mail that reaches its delay warning or expiry meanwhile is
    /// left to be tried (and noticed) on its own schedule. Workers that fail
    /// while it is parked (they tried at the same time) do not count again.
    async fn park(&self, domain: &str, dest: &Dest, f: &JobFailure) {
        let now = self.clock.now();
        let was = dest.parked_until.load(Ordering::SeqCst);
        if was > now || dest.parked_until.compare_exchange(was, i64::MAX, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return;
        }
        let failures = dest.unreachable.fetch_add(1, Ordering::SeqCst) + 1;
        let until = now + outcome::retry_delay(failures, &self.config);
        let park = Park {
            domain: domain.to_string(),
            now,
            until,
            error: format!("{} facteur: {}", status_text(f.status), f.text),
            warn_received_before: until - self.config.delay_warning_secs as i64,
            expire_received_before: until - self.config.queue_lifetime_secs as i64,
        };
        match self.store.park_destination(park).await {
            Ok(n) => tracing::warn!(
                domain, failures, recipients = n, next_try_in_secs = until - now, error = %f.text,
                "destination unreachable; its queued mail waits for the next try"
            ),
            Err(e) => tracing::error!(domain, error = %e, "cannot park an unreachable destination's mail"),
        }
        dest.parked_until.store(until, Ordering::SeqCst);
        dest.probe_at.store(now + self.config.unreachable_probe_secs.max(1) as i64, Ordering::SeqCst);
    }

    /// Try to connect to each unreachable destination whose probe time has
    /// come (one connection, no mail), so its mail goes the moment it is
    /// back rather than when its parked mail comes due. Returns the probes started.
    fn probe_due(self: &Arc<Self>) -> usize {
        let now = self.clock.now();
        let due: Vec<(String, Arc<Dest>)> = match self.dests.lock() {
            Ok(d) => d
                .iter()
                .filter(|(_, d)| d.probe_at.load(Ordering::SeqCst) <= now && !d.probing.swap(true, Ordering::SeqCst))
                .map(|(k, d)| (k.clone(), d.clone()))
                .collect(),
            Err(_) => return 0,
        };
        for (domain, dest) in &due {
            self.outstanding.fetch_add(1, Ordering::SeqCst);
            let (me, domain, dest) = (self.clone(), domain.clone(), dest.clone());
            tokio::spawn(async move {
                match me.connect(&domain).await {
                    Ok(c) => {
                        c.quit().await;
                        // No class: the destination's objective only.
                        signal::delivery("", &domain, signal::Delivery::Done, 0, None);
                        me.revive(&domain, &dest).await;
                    }
                    Err(f) => {
                        tracing::info!(domain = %domain, error = %f.text, "destination still unreachable");
                        signal::delivery("", &domain, signal::Delivery::Unreachable, 0, Some(&f.text));
                        let next = me.clock.now() + me.config.unreachable_probe_secs.max(1) as i64;
                        // Unless it came back meanwhile (a delivery succeeded).
                        if dest.unreachable.load(Ordering::SeqCst) > 0 {
                            dest.probe_at.store(next, Ordering::SeqCst);
                        }
                    }
                }
                dest.probing.store(false, Ordering::SeqCst);
                me.job_done();
            });
        }
        due.len()
    }

    /// A destination answered: if it was unreachable, all its queued mail is
    /// due now. The shaper's slow start paces it.
    async fn revive(&self, domain: &str, dest: &Dest) {
        if dest.unreachable.swap(0, Ordering::SeqCst) == 0 {
            return;
        }
        dest.parked_until.store(0, Ordering::SeqCst);
        dest.probe_at.store(i64::MAX, Ordering::SeqCst);
        let now = self.clock.now();
        match self.store.queue_retry_where(Some(domain), None, now, "facteur (destination reachable again)").await {
            Ok(n) => {
                tracing::info!(domain, recipients = n, "destination reachable again; its queued mail is due now");
                self.wake.notify_one();
            }
            Err(e) => tracing::error!(domain, error = %e, "cannot make a revived destination's mail due"),
        }
    }

    /// Release a claimed job without an attempt (it was paused meanwhile).
    async fn give_back(&self, job: &DeliveryJob) {
        let now = self.clock.now();
        let updates: Vec<RecipientUpdate> = job
            .recipients
            .iter()
            .map(|r| RecipientUpdate {
                message_id: job.message_id,
                idx: r.idx,
                state: NewState::Deferred { next_attempt: now },
                attempt: None,
                last_error: None,
                delay_notified: r.delay_notified,
            })
            .collect();
        if let Err(e) = self.complete(updates, Vec::new()).await {
            tracing::error!(id = %job.message_id, error = %e, "cannot give back a paused message; its lease will expire");
        }
    }

    async fn connect(&self, domain: &str) -> Result<Connection, JobFailure> {
        let router = self.router.read().map(|r| r.clone()).map_err(|_| JobFailure {
            host: None,
            permanent: false,
            status: (4, 3, 0),
            text: "routing state poisoned".into(),
        })?;
        let targets = router.plan(domain).await?;
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

    /// Deliver one job; the feedback says how the destination took it.
    /// `Err` means no connection could be made.
    async fn deliver(&self, job: &DeliveryJob, conn: &mut Option<Connection>) -> Result<Delivery, JobFailure> {
        let Some(body) = self.store.message_body(job.message_id).await.ok().flatten() else {
            // This message's problem, not the destination's: defer it alone.
            tracing::error!(id = %job.message_id, "message body unreadable from storage; deferring");
            let f =
                JobFailure { host: None, permanent: false, status: (4, 3, 0), text: "stored body unreadable".into() };
            self.fail_jobs(std::slice::from_ref(job), &f).await;
            return Ok(Delivery::Recorded(Feedback::OtherTemporary));
        };
        let reuse = conn.as_ref().is_some_and(|c| c.transactions < self.config.max_messages_per_connection.max(1));
        if !reuse {
            if let Some(old) = conn.take() {
                old.quit().await;
            }
            *conn = Some(self.connect(&job.domain).await?);
        }
        let Some(c) = conn.as_mut() else { return Ok(Delivery::Recorded(Feedback::OtherTemporary)) };
        let result = c.send(outbound_envelope(job, body.len() as u64), &body).await;
        let host = c.host.clone();
        let remote_dsn = c.caps.dsn;
        if !result.reusable
            && let Some(old) = conn.take()
        {
            old.quit().await;
        }
        let feedback = feedback_of(&result.outcomes);
        if feedback == Feedback::Throttled
            && job.pushed_back < MAX_PUSH_BACKS
            && result.outcomes.iter().all(|o| matches!(o, RcptOutcome::Temporary(_)))
        {
            tracing::info!(id = %job.message_id, host = %host, "pushed back by the destination; kept for a paced retry");
            return Ok(Delivery::PushedBack);
        }
        let attempts: Vec<Attempt> = result.outcomes.iter().map(to_attempt).collect();
        self.record(job, &attempts, Some(host), remote_dsn, &body).await;
        Ok(Delivery::Recorded(feedback))
    }

    /// Record one failure for several jobs in one transaction (a destination
    /// that cannot be reached fails everything waiting for it at once).
    async fn fail_jobs(&self, jobs: &[DeliveryJob], f: &JobFailure) {
        let reply = format!("{} facteur: {}", status_text(f.status), f.text);
        let attempt = if f.permanent {
            Attempt::Permanent { reply, status: f.status }
        } else {
            Attempt::Temporary { reply, status: f.status }
        };
        let (mut updates, mut notices) = (Vec::new(), Vec::new());
        for job in jobs {
            let attempts = vec![attempt.clone(); job.recipients.len()];
            let (u, n) = self.outcomes(job, &attempts, f.host.clone(), false, None).await;
            updates.extend(u);
            notices.extend(n);
        }
        self.commit(jobs.first().map(|j| j.message_id), updates, notices).await;
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
        let (updates, notices) = self.outcomes(job, attempts, host, remote_dsn, Some(body)).await;
        self.commit(Some(job.message_id), updates, notices).await;
    }

    async fn commit(
        &self,
        what: Option<MessageId>,
        updates: Vec<RecipientUpdate>,
        notices: Vec<facteur_store::NewMessage>,
    ) {
        let local = notices
            .iter()
            .flat_map(|n| &n.recipients)
            .filter(|r| matches!(r.route, facteur_store::Route::Local { .. }))
            .count();
        if let Err(e) = self.complete(updates, notices).await {
            // The lease runs out and the recipients are tried again:
            // at-least-once, never lost.
            tracing::error!(id = ?what, error = %e, "cannot record the outcome; the message will be retried");
        } else {
            // Notices to local senders are placed in their INBOX by that commit.
            metrics::counter!("facteur_local_deliveries_total").increment(local as u64);
        }
    }

    /// State changes and notices for a job's attempts. The stored body is
    /// read only when a notice needs it (`body` None).
    async fn outcomes(
        &self,
        job: &DeliveryJob,
        attempts: &[Attempt],
        host: Option<String>,
        remote_dsn: bool,
        body: Option<&[u8]>,
    ) -> (Vec<RecipientUpdate>, Vec<facteur_store::NewMessage>) {
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
                NewState::Delivered => Outcome::Delivered,
                NewState::Deferred { .. } => Outcome::Deferred,
                NewState::Bounced | NewState::Deleted => Outcome::Bounced,
            };
            tracing::info!(
                id = %job.message_id, rcpt = %r.address, host = host.as_deref().unwrap_or("-"),
                outcome = %outcome_name, reply = %reply, "delivery attempt"
            );
            metrics::counter!(
                "facteur_delivery_attempts_total",
                "class" => job.class.as_str(),
                "outcome" => outcome_name.as_str(),
                "status" => status_class(a),
            )
            .increment(1);
            signal::delivery(
                job.class.as_str(),
                &job.domain,
                delivery_signal(a),
                now - job.received_at,
                (outcome_name != Outcome::Delivered).then_some(reply.as_str()),
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
                message_id: job.message_id,
                idx: r.idx,
                state: d.state.clone(),
                attempt: Some(AttemptRecord {
                    recipient: r.address.clone(),
                    at: now,
                    host: host.clone(),
                    outcome: outcome_name,
                    reply: reply.clone(),
                }),
                last_error: (!matches!(a, Attempt::Delivered { .. })).then_some(reply),
                delay_notified: d.delay_notified,
            });
        }
        if items.is_empty() {
            return (updates, Vec::new());
        }
        let loaded;
        let original = match body {
            Some(b) => b,
            None => {
                loaded = self.store.message_body(job.message_id).await.ok().flatten().unwrap_or_default();
                &loaded
            }
        };
        let about =
            About { message_id: job.message_id, received_at: job.received_at, envelope: &job.envelope, original };
        let notices = notices::compose(&self.store, &about, items, &self.hostname, now_ms).await;
        (updates, notices)
    }
}
