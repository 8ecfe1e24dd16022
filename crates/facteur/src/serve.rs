//! `facteur serve`: open storage (pre-flight, migrations, invariant check and
//! repair), bind every listener, run SMTP and HTTP until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use facteur_http::Health;
use facteur_queue::{DnsResolver, Engine, Router};
use facteur_smtp::{ListenerKind, SmtpContext};
use facteur_spool::{Admission, Load};
use facteur_store::any::AnyStore;
use facteur_store::postgres::{PgConfig, PgStore};
use facteur_store::sqlite::SqliteStore;
use facteur_store::{Admin, CheckReport, Cluster, Directory, Incidents, SharedClock, Spool, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Backend, Config};
use crate::tls;

/// A running server: its bound addresses, and a handle to stop it.
pub struct Running {
    pub smtp: Vec<SocketAddr>,
    pub submission: Vec<SocketAddr>,
    pub submissions: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub imap: Vec<SocketAddr>,
    pub imaps: Vec<SocketAddr>,
    pub pop3: Vec<SocketAddr>,
    pub pop3s: Vec<SocketAddr>,
    /// The public status page.
    pub status: Vec<SocketAddr>,
    pub health: Arc<Health>,
    /// The storage this node serves from.
    pub store: AnyStore,
    /// The delivery engine, when `delivery.enabled`.
    pub engine: Option<Arc<Engine<AnyStore, DnsResolver>>>,
    /// What startup did that the operator should hear about.
    pub notes: Vec<String>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    live: Live,
    /// Released when the server is dropped.
    _lock: DataLock,
}

impl Running {
    /// Stop accepting, tell open sessions `421 4.3.2`, wait for them (10 s at most).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

fn pg_config(config: &Config) -> PgConfig {
    let s = &config.storage;
    PgConfig {
        url: s.url.clone(),
        pool_size: s.pool_size,
        statement_timeout_ms: s.statement_timeout_secs.saturating_mul(1000),
        schema: s.schema.clone(),
        node: config.node_name(),
    }
}

/// Open the configured storage (with `clock` for what it dates itself). A
/// missing or empty database is refused with the two ways out: initialise
/// a new installation, or find the storage that did not come up.
pub async fn open_store(config: &Config, data_dir: &Path, clock: SharedClock) -> anyhow::Result<AnyStore> {
    if config.storage.backend == Backend::Postgres {
        let pg = pg_config(config);
        return match PgStore::open(&pg, clock).await {
            Ok(s) => Ok(s.into()),
            Err(facteur_store::StoreError::Preflight(why)) => Err(anyhow::anyhow!(
                "{why}.\n  If this is a new installation: facteur --data {d} init\n  \
                 If the database should hold your mail: check storage.url; facteur will not start a new, empty \
                 server over it",
                d = data_dir.display()
            )),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot open PostgreSQL storage {}", pg.url))),
        };
    }
    let path = data_dir.join(&config.storage.path);
    let node = config.node_name();
    SqliteStore::open_with_clock(&path, clock).map(|s| AnyStore::from(s.for_node(&node))).map_err(|e| match e {
        facteur_store::StoreError::Preflight(why) if !path.metadata().is_ok_and(|m| m.len() > 0) => anyhow::anyhow!(
            "{why}.\n  If this is a new installation: facteur --data {d} init\n  \
             If {d} should hold your mail: check that its storage is mounted; facteur will not start a new, empty \
             server over it",
            d = data_dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot open storage {}", path.display())),
    })
}

/// Make a new, empty database (SQLite: in the data folder, created if
/// needed; PostgreSQL: the tables in the configured schema).
pub async fn init_store(config: &Config, data_dir: &Path) -> anyhow::Result<AnyStore> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data folder {}", data_dir.display()))?;
    if config.storage.backend == Backend::Postgres {
        let pg = pg_config(config);
        return match PgStore::create(&pg, Arc::new(SystemClock)).await {
            Ok(s) => Ok(s.into()),
            Err(facteur_store::StoreError::Exists(_)) => {
                Err(anyhow::anyhow!("{} already holds a facteur database; nothing to initialise", pg.url))
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot create PostgreSQL storage {}", pg.url))),
        };
    }
    let path = data_dir.join(&config.storage.path);
    SqliteStore::create(&path).map(AnyStore::from).map_err(|e| match e {
        facteur_store::StoreError::Exists(_) => {
            anyhow::anyhow!("{} already holds a facteur database; nothing to initialise", data_dir.display())
        }
        e => anyhow::Error::new(e).context(format!("cannot create storage {}", path.display())),
    })
}

/// The data folder belongs to one server at a time: an exclusive lock on
/// DIR/facteur.lock, held while the server runs, with its pid inside.
pub struct DataLock {
    _file: std::fs::File,
}

pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<DataLock> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let path = data_dir.join("facteur.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; the lock lives as long as it.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() { "another process".to_string() } else { format!("pid {holder}") };
        anyhow::bail!(
            "{} is in use by another facteur server ({who}): two servers on one data folder would corrupt it; \
             stop that one first",
            data_dir.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(DataLock { _file: file })
}

async fn bind(addrs: &[SocketAddr], what: &str) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        let l = TcpListener::bind(a).await.with_context(|| {
            format!("cannot listen for {what} on {a}; is another server using it? Change [listen] {what} in the configuration")
        })?;
        out.push(l);
    }
    Ok(out)
}

/// Log every finding of an invariant check; returns whether all is well now.
pub fn log_check(report: &CheckReport) -> bool {
    for f in &report.findings {
        if f.severity == facteur_types::Severity::Repaired {
            tracing::error!(invariant = %f.invariant, detail = %f.detail, "storage invariant was broken; repaired from the data");
        } else {
            tracing::error!(invariant = %f.invariant, detail = %f.detail, "storage invariant broken; cannot repair automatically");
        }
    }
    report.healthy()
}

/// How to start, beyond the configuration (for tests).
pub struct StartOptions {
    pub clock: SharedClock,
    /// Run the delivery loop in the background; when false the engine is
    /// still built and tests drive it with `Engine::run_once`.
    pub delivery_loop: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions { clock: Arc::new(SystemClock), delivery_loop: true }
    }
}

pub async fn start(config: Config, data_dir: &Path) -> anyhow::Result<Running> {
    start_with(config, data_dir, StartOptions::default()).await
}

/// Like [`start`], with a given clock (tests run days of retries in seconds).
pub async fn start_with(config: Config, data_dir: &Path, options: StartOptions) -> anyhow::Result<Running> {
    let clock = options.clock;
    let mut notes = config.warnings();
    let lock = lock_data_dir(data_dir)?;
    let store = open_store(&config, data_dir, clock.clone()).await?;
    tracing::info!(backend = store.kind(), location = %store.location(), node = store.node(), "storage open");
    if let AnyStore::Postgres(pg) = &store {
        wait_for_name(&store, &config.node, clock.as_ref()).await?;
        for w in pg.setting_warnings().await? {
            tracing::warn!("{w}");
            notes.push(w);
        }
    }
    store
        .join(&config.node.region, concat!("facteur ", env!("CARGO_PKG_VERSION")), config.delivery.enabled, clock.now())
        .await
        .context("cannot register this node with storage")?;
    for n in facteur_imap::names::normalise_stored(&store).await.context("mailbox names to NFC")? {
        tracing::warn!(change = %n, "mailbox name brought to Unicode NFC (RFC 5198)");
        notes.push(format!("mailbox names: {n}"));
    }
    let tls = tls::load_or_create(&config.tls, data_dir, &config.server.hostname)?;
    notes.extend(config.risks());
    notes.extend(tls::risks(&tls.cert_path, &config.server.hostname, clock.now()));
    if let Some(dir) = &tls.generated {
        notes.push(format!(
            "generated a self-signed TLS certificate for {} in {} (set [tls] cert and key for a real one)",
            config.server.hostname,
            dir.display()
        ));
    }
    if store.list_domains().await?.is_empty() {
        let d = data_dir.display();
        notes.push(format!(
            "no local domain yet. Add one and a user:\n    facteur --data {d} domain add example.com\n    facteur --data {d} user add you@example.com"
        ));
    }
    if !config.addressing.role_addresses.is_empty() {
        let roles = config.addressing.role_addresses.join("@, ") + "@";
        match facteur_spool::addressing::role_recipient(&store, &config.addressing).await? {
            Some(user) => tracing::info!("{roles} of every local domain go to {user} (addressing.role_recipient)"),
            None => notes.push(format!(
                "{roles} of the local domains have nowhere to go until the first user is added (or set addressing.role_recipient)"
            )),
        }
    }
    let smtp_l = bind(&config.listen.smtp, "smtp").await?;
    let sub_l = bind(&config.listen.submission, "submission").await?;
    let subs_l = bind(&config.listen.submissions, "submissions").await?;
    let http_l = bind(&config.listen.http, "http").await?;
    let imap_l = bind(&config.listen.imap, "imap").await?;
    let imaps_l = bind(&config.listen.imaps, "imaps").await?;
    let pop3_l = bind(&config.listen.pop3, "pop3").await?;
    let pop3s_l = bind(&config.listen.pop3s, "pop3s").await?;
    let status_l = bind(&config.listen.status, "status").await?;
    let addrs = |ls: &[TcpListener]| ls.iter().filter_map(|l| l.local_addr().ok()).collect::<Vec<_>>();
    let (smtp, submission, submissions, http) = (addrs(&smtp_l), addrs(&sub_l), addrs(&subs_l), addrs(&http_l));
    let (imap, imaps) = (addrs(&imap_l), addrs(&imaps_l));
    let (pop3, pop3s, status) = (addrs(&pop3_l), addrs(&pop3s_l), addrs(&status_l));

    let (shutdown, rx) = watch::channel(false);
    let health = Health::new_starting();
    let mut tasks = JoinSet::new();
    let mut config = config;
    fit_connection_caps(&mut config, &mut notes);
    let auth = Arc::new(facteur_net::AuthThrottle::new(config.auth.policy()));
    let mut ctx = SmtpContext::new(
        store.clone(),
        config.smtp.clone(),
        config.server.hostname.clone(),
        Some(tls.server_config.clone()),
    )
    .with_clock(clock.clone())
    .with_classify(config.classify.clone())
    .with_addressing(config.addressing.clone())
    .with_quota(config.quota.clone())
    .with_sender_auth(config.sender_auth.clone(), sender_verifier(&config)?)
    .with_dkim(dkim_keys(data_dir, &mut notes)?)
    .with_auth_throttle(auth.clone());
    let admission = Arc::new(std::sync::Mutex::new(Admission::new(config.admission.clone())));
    ctx = ctx.with_admission(admission.clone(), data_dir.to_path_buf());
    tasks.spawn(watch_load(store.clone(), clock.clone(), admission.clone(), data_dir.to_path_buf(), rx.clone()));
    let local = facteur_queue::route::Local {
        listeners: smtp.iter().chain(&submission).chain(&submissions).copied().collect(),
        interfaces: facteur_net::local::interface_addresses(),
    };
    // MTA-STS policies outlive reloads and restarts (RFC 8461 §5.1).
    let mta_sts = Arc::new(facteur_queue::mta_sts::MtaSts::new(Some(data_dir.join("mta-sts")), clock.clone()));
    let engine = if config.delivery.enabled {
        let d = &config.delivery;
        let router = build_router(&config, &local, &mta_sts).await?;
        notes.extend(insecure_tls_notes(&config));
        let engine = Engine::new(store.clone(), router, clock.clone(), d.clone(), config.server.hostname.clone());
        ctx = ctx.with_queue_waker(engine.waker());
        if options.delivery_loop {
            tasks.spawn(engine.clone().run(rx.clone()));
        }
        Some(engine)
    } else {
        notes.push("delivery.enabled = false: this node accepts mail but delivers none to other domains".into());
        None
    };
    // Each protocol's context goes through a watch channel: a reload sends a
    // new one, which new connections take.
    crate::telemetry::handle();
    crate::telemetry::register_failures(store.kind());
    let mut gates = vec![ctx.gate.clone()];
    let (smtp_ctx, smtp_rx) = watch::channel(Arc::new(ctx));
    for (listeners, kind) in
        [(smtp_l, ListenerKind::Mx), (sub_l, ListenerKind::Submission), (subs_l, ListenerKind::Submissions)]
    {
        for l in listeners {
            tasks.spawn(facteur_smtp::serve(l, kind, smtp_rx.clone(), rx.clone()));
        }
    }
    // Local programs' mail (`facteur sendmail`), waiting even while we were down.
    facteur_smtp::pickup::prepare(data_dir)
        .with_context(|| format!("cannot make the maildrop in {}", data_dir.display()))?;
    tasks.spawn(facteur_smtp::pickup::run(smtp_rx.clone(), data_dir.to_path_buf(), rx.clone()));
    let (imap_ctx, imap_rx) = watch::channel(Arc::new(
        facteur_imap::ImapContext::new(
            store.clone(),
            config.imap.clone(),
            config.server.hostname.clone(),
            Some(tls.server_config.clone()),
        )
        .with_auth_throttle(auth.clone()),
    ));
    gates.push(imap_ctx.borrow().gate.clone());
    for (listeners, implicit_tls) in [(imap_l, false), (imaps_l, true)] {
        for l in listeners {
            tasks.spawn(facteur_imap::serve(l, implicit_tls, imap_rx.clone(), rx.clone()));
        }
    }
    let (pop3_ctx, pop3_rx) = watch::channel(Arc::new(
        facteur_pop3::Pop3Context::new(
            store.clone(),
            config.pop3.clone(),
            config.server.hostname.clone(),
            Some(tls.server_config.clone()),
        )
        .with_auth_throttle(auth.clone()),
    ));
    gates.push(pop3_ctx.borrow().gate.clone());
    tasks.spawn(crate::telemetry::run(store.clone(), engine.clone(), clock.clone(), gates, rx.clone()));
    for (listeners, implicit_tls) in [(pop3_l, false), (pop3s_l, true)] {
        for l in listeners {
            tasks.spawn(facteur_pop3::serve(l, implicit_tls, pop3_rx.clone(), rx.clone()));
        }
    }
    if config.probe.enabled {
        if let Some(target) = probe_target(&store, &config, &smtp, &imaps, &submissions, &tls, &mut notes).await? {
            for echo in &config.probe.echo {
                if target.submissions.is_none() {
                    notes.push("probe.echo is set but this node has no submissions listener: no echo probe".into());
                    break;
                }
                let t = echo_account(&store, &config, &target).await?;
                tasks.spawn(facteur_watch::probe::run_echo_probe(t, echo.clone(), config.probe.clone(), rx.clone()));
            }
            tasks.spawn(facteur_watch::probe::run(target, config.probe.clone(), rx.clone()));
        }
    } else {
        notes.push("probe.enabled = false: no synthetic probe on this node".into());
    }
    let board = Arc::new(facteur_watch::keeper::Board::default());
    let announce = start_alerts(&store, &config, &clock, &mut tasks, &mut notes);
    if !config.watch.enabled {
        notes.push("watch.enabled = false: this node opens no incidents (its status page shows the others')".into());
    }
    tasks.spawn(
        facteur_watch::keeper::Keeper {
            store: store.clone(),
            clock: clock.clone(),
            region: config.node.region.clone(),
            config: config.watch.clone(),
            board: board.clone(),
            announce: announce.clone(),
            down_after_secs: config.node.down_after_secs as i64,
        }
        .run(rx.clone()),
    );
    let pages: Arc<dyn facteur_http::StatusPages> =
        Arc::new(StatusImpl { board, clock: clock.clone(), site: config.server.hostname.clone() });
    for l in status_l {
        tasks.spawn(facteur_http::serve_status(l, pages.clone(), rx.clone()));
    }
    let faults = facteur_types::fault::allowed();
    if faults {
        tracing::warn!("FACTEUR_ALLOW_FAULTS=1: the admin API can break storage and logins on purpose (tests only)");
        notes.push("WARNING: FACTEUR_ALLOW_FAULTS=1: fault switches are on offer (POST /admin/fault)".into());
    }
    let admin: Option<(Arc<dyn facteur_http::AdminApi>, String)> = (!config.admin.token.is_empty()).then(|| {
        let api: Arc<dyn facteur_http::AdminApi> = Arc::new(AdminImpl {
            store: store.clone(),
            engine: engine.clone(),
            clock: clock.clone(),
            announce: announce.clone(),
            faults,
        });
        (api, config.admin.token.clone())
    });
    let metrics: facteur_http::Render = Arc::new(|| crate::telemetry::handle().render());
    for l in http_l {
        tasks.spawn(facteur_http::serve_with_admin(
            l,
            health.clone(),
            admin.clone(),
            Some(metrics.clone()),
            rx.clone(),
        ));
    }
    tasks.spawn(readiness_probe(
        store.clone(),
        clock.clone(),
        health.clone(),
        data_dir.to_path_buf(),
        config.admission.reserve_bytes,
        config.storage.clone(),
        rx.clone(),
    ));
    tasks.spawn(heartbeat(store.clone(), clock.clone(), config.node.clone(), engine.clone(), rx.clone()));
    tasks.spawn(housekeeping(store.clone(), clock.clone(), config.storage.clone(), rx.clone()));
    tasks.spawn(periodic_check(
        store.clone(),
        Duration::from_secs(config.storage.check_interval_secs.max(1)),
        health.clone(),
        rx,
    ));
    health.set("startup", None);
    Ok(Running {
        smtp,
        submission,
        submissions,
        http,
        imap,
        imaps,
        pop3,
        pop3s,
        status,
        health,
        store,
        engine: engine.clone(),
        notes,
        shutdown,
        tasks,
        live: Live {
            config: std::sync::Mutex::new(config),
            data_dir: data_dir.to_path_buf(),
            tls,
            smtp: smtp_ctx,
            imap: imap_ctx,
            pop3: pop3_ctx,
            auth,
            admission,
            local,
            mta_sts,
            engine,
        },
        _lock: lock,
    })
}

/// The router for `config`'s routes and relay host, refused if one of
/// them is facteur itself (RFC 5321 §6.3: every message would loop).
/// The DKIM keys in DATA/dkim (facteur dkim); which domains sign is said.
fn dkim_keys(data_dir: &Path, notes: &mut Vec<String>) -> anyhow::Result<Arc<facteur_auth::sign::KeyRing>> {
    let ring = facteur_auth::sign::KeyRing::load(&crate::dkim::folder(data_dir))
        .map_err(anyhow::Error::msg)
        .context("DKIM keys")?;
    let signing: Vec<String> = ring.domains().map(|(d, s)| format!("{d} ({s})")).collect();
    if !signing.is_empty() {
        notes.push(format!("DKIM signing: {}", signing.join(", ")));
    }
    Ok(Arc::new(ring))
}

/// The verifier of strangers' mail (`[sender_auth]`), asking the
/// resolver delivery uses (`delivery.dns_servers`); None when turned off.
fn sender_verifier(config: &Config) -> anyhow::Result<Option<Arc<facteur_auth::Verifier>>> {
    let a = &config.sender_auth;
    if !a.verify {
        return Ok(None);
    }
    let budget = Duration::from_secs(a.budget_secs);
    // One query may take a third of the budget (a slow server is tried once).
    let per_query = (budget / 3).max(Duration::from_secs(1));
    let resolver = facteur_auth::dns::resolver(&config.delivery.dns_servers, Some(per_query), 10_000)
        .map_err(anyhow::Error::msg)
        .context("sender_auth")?;
    let verifier = facteur_auth::Verifier::new(resolver, &config.server.hostname, budget, a.max_signatures);
    Ok(Some(Arc::new(verifier)))
}

async fn build_router(
    config: &Config,
    local: &facteur_queue::route::Local,
    mta_sts: &Arc<facteur_queue::mta_sts::MtaSts>,
) -> anyhow::Result<Router<DnsResolver>> {
    let d = &config.delivery;
    let router = Router {
        resolver: DnsResolver::new(&d.dns_servers).map_err(anyhow::Error::msg)?,
        local: local.clone(),
        routes: config.route.clone(),
        relay_host: d.relay_host.clone(),
        relay_auth: d.relay_auth.clone(),
        tls: d.tls,
        tls_ca_file: d.tls_ca_file.clone(),
        tls_insecure_skip_verify: d.tls_insecure_skip_verify,
        mx_port: d.mx_port,
        mta_sts: d.mta_sts.then(|| {
            mta_sts.reload_tls();
            mta_sts.clone()
        }),
        mta_sts_port: d.mta_sts_port,
        dane: match d.dane {
            true => Some(Arc::new(
                facteur_queue::dane::Dane::new(&d.dns_servers, d.dnssec_trust_anchor_file.as_deref())
                    .map_err(anyhow::Error::msg)?,
            )),
            false => None,
        },
    };
    let loops = router.loops_in_config().await;
    if !loops.is_empty() {
        anyhow::bail!("invalid configuration: {}", loops.join("; "));
    }
    Ok(router)
}

/// A loud word for every place TLS certificates are not verified.
fn insecure_tls_notes(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    for (what, on) in
        std::iter::once(("delivery (MX and relay host)".to_string(), config.delivery.tls_insecure_skip_verify))
            .chain(config.route.iter().map(|r| (format!("route for {:?}", r.domain), r.tls_insecure_skip_verify)))
    {
        if on {
            tracing::warn!(
                what,
                "TLS certificates are NOT verified (tls_insecure_skip_verify): anyone on the path can read what is sent, credentials included"
            );
            notes.push(format!("WARNING: {what}: tls_insecure_skip_verify = true, certificates are not verified"));
        }
    }
    notes
}

/// What a configuration reload can change while sessions go on.
struct Live {
    config: std::sync::Mutex<Config>,
    data_dir: std::path::PathBuf,
    tls: tls::Tls,
    smtp: watch::Sender<Arc<SmtpContext<AnyStore>>>,
    imap: watch::Sender<Arc<facteur_imap::ImapContext<AnyStore>>>,
    pop3: watch::Sender<Arc<facteur_pop3::Pop3Context<AnyStore>>>,
    auth: Arc<facteur_net::AuthThrottle>,
    admission: Arc<std::sync::Mutex<Admission>>,
    local: facteur_queue::route::Local,
    mta_sts: Arc<facteur_queue::mta_sts::MtaSts>,
    engine: Option<Arc<Engine<AnyStore, DnsResolver>>>,
}

impl Running {
    /// Apply a new configuration without dropping a session (SIGHUP):
    /// certificates are read again, and the limits, timeouts, classes,
    /// admission levels, failed-login policy and routes change for what
    /// comes next. Everything is checked before anything changes: on an
    /// error the running configuration stays whole. Returns what changed,
    /// and what waits for a restart.
    pub async fn reload(&self, new: Config) -> anyhow::Result<Vec<String>> {
        let live = &self.live;
        let mut new = new;
        let mut report = Vec::new();
        fit_connection_caps(&mut new, &mut report);
        let old = live.config.lock().map_err(|_| anyhow::anyhow!("configuration state poisoned"))?.clone();
        let router = match &live.engine {
            Some(_) => Some(build_router(&new, &live.local, &live.mta_sts).await?),
            None => None,
        };
        let verifier = sender_verifier(&new)?;
        let dkim = dkim_keys(&live.data_dir, &mut report)?;
        let cert = live.tls.reload(&new.tls, &live.data_dir).context("TLS certificate")?;
        report.push(format!("TLS certificate read again from {}", cert.display()));
        // From here on nothing can fail.
        let changed = |a: bool, name: &str, report: &mut Vec<String>| {
            if a {
                report.push(format!("{name}: changed"));
            }
        };
        changed(
            old.smtp != new.smtp
                || old.classify != new.classify
                || old.addressing != new.addressing
                || old.quota != new.quota
                || old.sender_auth != new.sender_auth,
            "[smtp], [classify], [addressing], [quota] and [sender_auth]",
            &mut report,
        );
        let smtp = live
            .smtp
            .borrow()
            .reconfigured(new.smtp.clone(), new.classify.clone())
            .with_addressing(new.addressing.clone())
            .with_quota(new.quota.clone())
            .with_sender_auth(new.sender_auth.clone(), verifier)
            .with_dkim(dkim);
        live.smtp.send_replace(Arc::new(smtp));
        changed(old.imap != new.imap, "[imap]", &mut report);
        let imap = live.imap.borrow().reconfigured(new.imap.clone());
        live.imap.send_replace(Arc::new(imap));
        changed(old.pop3 != new.pop3, "[pop3]", &mut report);
        let pop3 = live.pop3.borrow().reconfigured(new.pop3.clone());
        live.pop3.send_replace(Arc::new(pop3));
        changed(old.auth != new.auth, "[auth]", &mut report);
        live.auth.reconfigure(new.auth.policy());
        changed(old.admission != new.admission, "[admission]", &mut report);
        if let Ok(mut a) = live.admission.lock() {
            a.set_watermarks(new.admission.clone());
        }
        if let (Some(engine), Some(router)) = (&live.engine, router) {
            changed(old.route != new.route || routing(&old) != routing(&new), "[[route]] and routing", &mut report);
            report.extend(insecure_tls_notes(&new));
            engine.set_router(router);
        }
        let mut restart = Vec::new();
        for (differs, name) in [
            (old.listen != new.listen, "[listen]"),
            (old.server != new.server, "[server]"),
            (old.storage != new.storage, "[storage]"),
            (old.admin != new.admin, "[admin]"),
            (old.probe != new.probe, "[probe]"),
            (old.watch != new.watch, "[watch]"),
            (old.alerts != new.alerts, "[alerts]"),
            (without_routing(&old.delivery) != without_routing(&new.delivery), "[delivery] (besides routing)"),
        ] {
            if differs {
                restart.push(name);
            }
        }
        if !restart.is_empty() {
            report.push(format!("{} changed: takes effect at the next restart", restart.join(", ")));
        }
        if let Ok(mut c) = live.config.lock() {
            *c = new;
        }
        Ok(report)
    }
}

/// The [delivery] keys the router is made of.
fn routing(c: &Config) -> impl PartialEq + '_ {
    let d = &c.delivery;
    (
        (&d.relay_host, &d.relay_auth, d.tls, &d.tls_ca_file, d.tls_insecure_skip_verify, &d.dns_servers, d.mx_port),
        (d.mta_sts, d.mta_sts_port, d.dane, &d.dnssec_trust_anchor_file),
    )
}

/// [delivery] without what the router takes (those apply at a reload).
fn without_routing(d: &facteur_queue::DeliveryConfig) -> facteur_queue::DeliveryConfig {
    let base = facteur_queue::DeliveryConfig::default();
    facteur_queue::DeliveryConfig {
        relay_host: base.relay_host,
        relay_auth: base.relay_auth,
        tls: base.tls,
        tls_ca_file: base.tls_ca_file,
        tls_insecure_skip_verify: base.tls_insecure_skip_verify,
        dns_servers: base.dns_servers,
        mx_port: base.mx_port,
        mta_sts: base.mta_sts,
        mta_sts_port: base.mta_sts_port,
        dane: base.dane,
        dnssec_trust_anchor_file: base.dnssec_trust_anchor_file,
        ..d.clone()
    }
}

/// Raise the descriptor limit, and make the SMTP, IMAP and POP3 caps fit in
/// it with a reserve, so that no protocol can take the descriptors the
/// others (and storage) need.
fn fit_connection_caps(config: &mut Config, notes: &mut Vec<String>) {
    let limit = facteur_net::fd::raise_nofile_limit();
    let wanted = [config.smtp.max_connections, config.imap.max_connections, config.pop3.max_connections];
    let got = facteur_net::fd::share(limit, &wanted);
    if got != wanted {
        notes.push(format!(
            "{limit} file descriptors allowed: connection caps lowered to smtp {}, imap {}, pop3 {} (from {}, {}, {}) \
             to keep {} for storage and delivery; raise the limit (ulimit -n, LimitNOFILE=) to restore them",
            got[0],
            got[1],
            got[2],
            wanted[0],
            wanted[1],
            wanted[2],
            facteur_net::fd::RESERVE
        ));
        config.smtp.max_connections = got[0];
        config.imap.max_connections = got[1];
        config.pop3.max_connections = got[2];
    }
}

/// Verify and repair storage invariants continuously, not only at startup.
/// Shared storage knows each node by its name: two running under one name
/// would release and renew each other's leases. A node whose name shows a
/// recent heartbeat waits until it goes quiet (this node's own previous
/// run, killed a moment ago) — and refuses to start if it keeps beating
/// (another node under this name).
async fn wait_for_name(
    store: &AnyStore,
    node: &crate::config::NodeSection,
    clock: &dyn facteur_store::Clock,
) -> anyhow::Result<()> {
    let down_after = node.down_after_secs as i64;
    let mut seen: Option<i64> = None;
    loop {
        let now = clock.now();
        let me = store.nodes().await?.into_iter().find(|n| n.name == store.node());
        let Some(me) = me.filter(|n| n.state(now, down_after) == facteur_store::NodeState::Up) else { return Ok(()) };
        match seen {
            Some(beat) if beat != me.heartbeat_at => anyhow::bail!(
                "another node is running under the name {:?} (its heartbeat moved while this one waited); \
                 give each node its own [node] name",
                me.name
            ),
            Some(_) => {}
            None => {
                seen = Some(me.heartbeat_at);
                tracing::warn!(
                    node = %me.name,
                    "this node's name shows a heartbeat {} s old; waiting until it is {down_after} s old \
                     (a previous run of this node that stopped abruptly)",
                    now - me.heartbeat_at
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// This node is alive: a heartbeat every `every`, and the delivery engine
/// told how many delivering nodes are (it shares each destination's limits
/// among them); at shutdown, goodbye.
async fn heartbeat(
    store: AnyStore,
    clock: SharedClock,
    node: crate::config::NodeSection,
    engine: Option<Arc<Engine<AnyStore, DnsResolver>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(node.heartbeat_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = clock.now();
                if let Err(e) = store.heartbeat(now).await {
                    tracing::warn!(error = %e, "heartbeat not recorded");
                }
                if let (Some(engine), Ok(nodes)) = (&engine, store.nodes().await) {
                    let up = nodes
                        .iter()
                        .filter(|n| n.delivers && n.state(now, node.down_after_secs as i64) == facteur_store::NodeState::Up)
                        .count();
                    engine.set_peers(up as u32);
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    if let Err(e) = store.leave(clock.now()).await {
        tracing::warn!(error = %e, "could not record this node's stop");
    }
}

/// The storage invariants, checked (and repaired from the data) in the
/// background: once at start, while the server already serves (a whole-file
/// check of a provider's database takes minutes), then every `every`. Mail
/// flows with broken invariants; readiness says an operator must look.
async fn periodic_check(store: AnyStore, every: Duration, health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    loop {
        match store.check(true).await {
            Ok(report) => health.set("invariants", (!log_check(&report)).then(|| BROKEN.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "periodic storage check failed to run");
                health.set("invariants", Some(format!("the check failed to run: {e}")));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Storage housekeeping (see `facteur_store::lifecycle`) every
/// `housekeeping_interval_secs`, sooner while a backlog of finished records
/// is left.
async fn housekeeping(
    store: AnyStore,
    clock: SharedClock,
    storage: crate::config::StorageSection,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(storage.housekeeping_interval_secs.max(1));
    let mut sweep = facteur_store::Sweep::default();
    loop {
        let now = clock.now();
        let finished_before = now.saturating_sub(storage.keep_finished_secs as i64);
        let pause = match store.housekeeping(now, finished_before, sweep.clone()).await {
            Ok(done) => {
                sweep = done.next.clone();
                if done.records_removed > 0 {
                    tracing::info!(
                        records = done.records_removed,
                        messages = done.messages_removed,
                        "housekeeping: finished queue records removed"
                    );
                }
                if done.more { Duration::from_secs(1) } else { every }
            }
            Err(e) => {
                tracing::warn!(error = %e, "housekeeping failed; trying again later");
                every
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

const BROKEN: &str = "storage invariants broken; run `facteur check`";

/// Readiness that does not lie: every `probe_interval_secs`, a small write
/// is committed (and fsynced) within `probe_timeout_secs`, and free disk is
/// above the admission reserve. A store that reads but cannot write, or
/// whose every commit fails, makes the node not ready with the reason.
async fn readiness_probe(
    store: AnyStore,
    clock: SharedClock,
    health: Arc<Health>,
    spool: std::path::PathBuf,
    reserve: u64,
    storage: crate::config::StorageSection,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_secs(storage.probe_interval_secs.max(1));
    let timeout = Duration::from_secs(storage.probe_timeout_secs.max(1));
    // A probe still waiting in a stuck writer is waited for, not joined by
    // another one each interval.
    let mut pending: Option<tokio::task::JoinHandle<facteur_store::Result<()>>> = None;
    loop {
        let mut probe = match pending.take() {
            Some(p) => p,
            None => {
                let (store, now) = (store.clone(), clock.now());
                tokio::spawn(async move { store.write_probe(now).await })
            }
        };
        let problem = match tokio::time::timeout(timeout, &mut probe).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(format!("a write failed: {e}")),
            Ok(Err(e)) => Some(format!("the write probe failed: {e}")),
            Err(_) => {
                pending = Some(probe);
                Some(format!("a write did not commit within {} s", timeout.as_secs()))
            }
        };
        health.set("storage", problem);
        let free = facteur_smtp::server::free_disk_bytes(&spool);
        health.set(
            "disk",
            free.filter(|&f| f < reserve).map(|f| format!("{f} bytes free, below the reserve of {reserve}")),
        );
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// The synthetic probe's account on this node (made, or given a new
/// password: only this process knows it) and where it speaks; `None`, with
/// a note, when the node has no MX or no IMAPS listener to go through.
async fn probe_target(
    store: &AnyStore,
    config: &Config,
    smtp: &[SocketAddr],
    imaps: &[SocketAddr],
    submissions: &[SocketAddr],
    tls: &crate::tls::Tls,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<facteur_watch::probe::Target>> {
    let (Some(&smtp), Some(&imaps)) = (smtp.first(), imaps.first()) else {
        notes.push("no SMTP or IMAPS listener on this node: the synthetic probe ([probe]) is off".into());
        return Ok(None);
    };
    let domain = facteur_types::probe::DOMAIN;
    match store.add_domain(domain).await {
        Ok(()) | Err(facteur_store::StoreError::Exists(_)) => {}
        Err(e) => return Err(e).context("cannot make the probe's domain"),
    }
    let address = facteur_types::probe::address(store.node());
    let password = probe_account(store, &address).await?;
    // A listener on every address is reached on loopback.
    let near = |a: SocketAddr| match a.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port())),
        _ => a,
    };
    Ok(Some(facteur_watch::probe::Target {
        smtp: near(smtp),
        imaps: near(imaps),
        submissions: submissions.first().map(|&a| near(a)),
        hostname: config.server.hostname.clone(),
        address,
        password,
        certificate: tls.served_certificate(),
    }))
}

/// A probe account (made, or given a new password only this process
/// knows); its password.
async fn probe_account(store: &AnyStore, address: &str) -> anyhow::Result<String> {
    let password = crate::cli::generate_password();
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || facteur_store::password::hash(&pw)).await?;
    match store.get_user(address).await? {
        Some(_) => store.set_password(address, &hash).await?,
        None => store.add_user(address, &hash).await?,
    }
    Ok(password)
}

/// The echo probes' account, `probe-NODE@` the configured local
/// `probe.echo_domain`, where the echoes come back.
async fn echo_account(
    store: &AnyStore,
    config: &Config,
    local: &facteur_watch::probe::Target,
) -> anyhow::Result<facteur_watch::probe::Target> {
    let domain = config.probe.echo_domain.to_ascii_lowercase();
    if !store.is_local_domain(&domain).await? {
        anyhow::bail!(
            "probe.echo_domain = {domain:?} is not a local domain (facteur domain add {domain}): the echoes could not come back"
        );
    }
    let address = facteur_types::probe::address_in(store.node(), &domain);
    let password = probe_account(store, &address).await?;
    Ok(facteur_watch::probe::Target { address, password, ..local.clone() })
}

/// Measure the queue and the disk every second and move the door's latches;
/// every change is logged.
async fn watch_load(
    store: AnyStore,
    clock: SharedClock,
    admission: Arc<std::sync::Mutex<Admission>>,
    spool: std::path::PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = clock.now();
        let stats = match store.queue_stats(now, false).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot measure the queue for admission control");
                continue;
            }
        };
        let mut load = Load {
            free_disk_bytes: facteur_smtp::server::free_disk_bytes(&spool).unwrap_or(u64::MAX),
            ..Load::default()
        };
        for st in &stats {
            load.queue_depth += st.ready;
            if let Some(since) = st.ready_since {
                let age = (now - since).max(0) as u64;
                let slot = &mut load.oldest_ready_age_secs[st.class.index()];
                *slot = (*slot).max(age);
            }
        }
        crate::telemetry::queue(&stats, &load);
        let Ok(mut a) = admission.lock() else { return };
        a.update(&load);
        let state = a.state();
        crate::telemetry::admission(&state);
        if last != Some(state) {
            let open: Vec<&str> = state.iter().filter(|(_, o)| *o).map(|(c, _)| c.as_str()).collect();
            let closed: Vec<&str> = state.iter().filter(|(_, o)| !*o).map(|(c, _)| c.as_str()).collect();
            if closed.is_empty() {
                tracing::info!(depth = load.queue_depth, "admission: every class open");
            } else {
                tracing::warn!(
                    depth = load.queue_depth,
                    free = load.free_disk_bytes,
                    ?open,
                    ?closed,
                    "admission: classes deferred at the door"
                );
            }
            last = Some(state);
        }
    }
}

/// The admin API over this node's store and engine.
struct AdminImpl {
    store: AnyStore,
    engine: Option<Arc<Engine<AnyStore, DnsResolver>>>,
    clock: SharedClock,
    /// Operators' incident changes are alerted like the watch's.
    announce: Option<facteur_watch::keeper::Announce>,
    /// FACTEUR_ALLOW_FAULTS=1 at start.
    faults: bool,
}

/// The alert sender, when `[alerts]` names a webhook or an address.
fn start_alerts(
    store: &AnyStore,
    config: &Config,
    clock: &SharedClock,
    tasks: &mut JoinSet<()>,
    notes: &mut Vec<String>,
) -> Option<facteur_watch::keeper::Announce> {
    if config.alerts.is_empty() {
        notes.push("no [alerts] webhook_url or email: incidents are shown on the status page and logged only".into());
        return None;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let alerter = facteur_watch::alert::Alerter {
        store: store.clone(),
        config: config.alerts.clone(),
        hostname: config.server.hostname.clone(),
        clock: clock.clone(),
    };
    tasks.spawn(alerter.run(rx));
    Some(tx)
}

/// The status page, rendered from the watch's board.
struct StatusImpl {
    board: Arc<facteur_watch::keeper::Board>,
    clock: SharedClock,
    site: String,
}

impl facteur_http::StatusPages for StatusImpl {
    fn html(&self) -> String {
        facteur_watch::status::html(&self.board.snapshot(), self.clock.now(), &self.site)
    }

    fn json(&self) -> serde_json::Value {
        facteur_watch::status::json(&self.board.snapshot(), self.clock.now())
    }

    fn atom(&self, base: &str) -> String {
        facteur_watch::status::atom(&self.board.snapshot(), self.clock.now(), &self.site, base)
    }
}

impl facteur_http::AdminApi for AdminImpl {
    fn queue(&self) -> facteur_http::JsonFuture<'_> {
        Box::pin(async move {
            let now = self.clock.now();
            let classes = self.store.queue_stats(now, false).await.map_err(|e| e.to_string())?;
            let destinations = self.store.queue_stats(now, true).await.map_err(|e| e.to_string())?;
            Ok(serde_json::json!({"now": now, "classes": classes, "destinations": destinations}))
        })
    }

    fn destinations(&self) -> facteur_http::JsonFuture<'_> {
        Box::pin(async move {
            match &self.engine {
                Some(e) => serde_json::to_value(e.destinations()).map_err(|e| e.to_string()),
                None => Err("delivery is not enabled on this node".into()),
            }
        })
    }

    fn controls(&self) -> facteur_http::JsonFuture<'_> {
        Box::pin(async move {
            let c = self.store.controls().await.map_err(|e| e.to_string())?;
            serde_json::to_value(c).map_err(|e| e.to_string())
        })
    }

    fn control(&self, body: serde_json::Value, actor: String) -> facteur_http::JsonFuture<'_> {
        Box::pin(async move {
            let action: crate::controls::Action = serde_json::from_value(body).map_err(|e| e.to_string())?;
            let done = crate::controls::apply(&self.store, &action, self.clock.now(), &actor)
                .await
                .map_err(|e| format!("{e:#}"))?;
            Ok(serde_json::json!({"ok": done}))
        })
    }

    fn incidents(&self) -> facteur_http::JsonFuture<'_> {
        Box::pin(async move {
            let since = self.clock.now() - facteur_watch::status::DAYS * 86_400;
            let list = self.store.incidents(since).await.map_err(|e| e.to_string())?;
            serde_json::to_value(list).map_err(|e| e.to_string())
        })
    }

    fn incident(&self, body: serde_json::Value, actor: String) -> facteur_http::JsonFuture<'_> {
        Box::pin(async move {
            let action: crate::incidents::Action = serde_json::from_value(body).map_err(|e| e.to_string())?;
            let now = self.clock.now();
            let (id, announcement) =
                crate::incidents::apply(&self.store, action, now, &actor).await.map_err(|e| format!("{e:#}"))?;
            if let (Some(tx), Some(a)) = (&self.announce, announcement) {
                let _ = tx.try_send(a);
            }
            Ok(serde_json::json!({"ok": id}))
        })
    }

    fn fault(&self, body: serde_json::Value) -> facteur_http::JsonFuture<'_> {
        Box::pin(async move {
            if !self.faults {
                return Err("fault switches are off: start facteur with FACTEUR_ALLOW_FAULTS=1 (tests only)".into());
            }
            let name = body.get("fault").and_then(|v| v.as_str()).unwrap_or_default();
            let on = body.get("on").and_then(|v| v.as_bool()).ok_or("\"on\" must be true or false")?;
            let fault = facteur_types::fault::Fault::from_name(name)
                .ok_or_else(|| format!("no fault {name:?} (known: storage, mailbox-login)"))?;
            facteur_types::fault::set(fault, on);
            tracing::warn!(fault = name, on, "fault switch flipped");
            Ok(serde_json::json!({"fault": name, "on": on}))
        })
    }
}
