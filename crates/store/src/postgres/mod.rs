//! The PostgreSQL store: several facteur nodes on one database.
//!
//! Driver: `tokio-postgres` with a `deadpool-postgres` pool — async on the
//! runtime facteur already runs (no thread per query), prepared statements
//! cached per connection. Concurrent acceptances of relayed mail, and
//! concurrent outcomes, share a statement and a commit
//! (`queue::spawn_writers`), as the SQLite writer thread makes them share
//! its fsync.
//!
//! Durability before `250`: every connection runs with
//! `synchronous_commit = on`, so a commit returns once its WAL is flushed.
//! Replication, failover and backups are PostgreSQL's.
//!
//! Concurrency: UIDs and MODSEQs are taken under the mailbox's row lock
//! (`SELECT … FOR UPDATE`), several mailboxes always in id order, so two
//! nodes delivering into one mailbox serialise there and never deadlock on
//! each other; claims lease recipients with `FOR UPDATE SKIP LOCKED`.

mod check;
mod directory;
mod incidents;
mod mail;
mod queue;
mod schema;

use std::sync::Arc;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;

use crate::{ChangeHub, Result, SharedClock, StoreError};

pub use schema::latest_version;

/// How to reach the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// `postgres://user@host:port/database` (libpq-style key=value works too).
    pub url: String,
    /// Connections this node keeps at most.
    pub pool_size: usize,
    /// A statement running longer is cancelled (milliseconds; 0: no limit).
    pub statement_timeout_ms: u64,
    /// The schema facteur's tables live in (`search_path`); `None`: the
    /// connection's default (normally `public`).
    pub schema: Option<String>,
    /// The node this handle speaks for (its leases are in that name).
    pub node: String,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig { url: String::new(), pool_size: 16, statement_timeout_ms: 30_000, schema: None, node: "local".into() }
    }
}

#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// host:port/database (schema), for people.
    location: String,
    node: String,
    pool: Pool,
    clock: SharedClock,
    changes: ChangeHub,
    /// The NOTIFY channel mailbox changes travel on between nodes.
    channel: String,
    /// Listens on `channel` and feeds `changes`; stopped with the store.
    listener: tokio::task::JoinHandle<()>,
    /// Writes waiting for a shared commit (see `queue::spawn_writers`).
    writes: tokio::sync::mpsc::Sender<queue::Work>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// A driver error, as the rest of facteur sees it: the database's own
/// message when it gave one; a lost or refused connection is `Unavailable`.
pub(crate) fn db(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        // SQLSTATE 53100 disk_full: the server could not write.
        Some(d) if d.code() == &tokio_postgres::error::SqlState::DISK_FULL => {
            StoreError::Full(format!("PostgreSQL: {}", d.message()))
        }
        Some(d) => StoreError::Backend(format!("{}: {}", d.severity(), d.message())),
        None if e.is_closed() => StoreError::Unavailable(format!("PostgreSQL connection lost: {e}")),
        None => StoreError::Unavailable(format!("PostgreSQL: {e}")),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db(e),
        other => StoreError::Unavailable(format!("PostgreSQL pool: {other}")),
    }
}

/// Run one statement (prepared once per connection).
pub(crate) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>> {
    let st = c.prepare_cached(sql).await.map_err(db)?;
    c.query(&st, params).await.map_err(db)
}

pub(crate) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>> {
    let st = c.prepare_cached(sql).await.map_err(db)?;
    c.query_opt(&st, params).await.map_err(db)
}

pub(crate) async fn query_one<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<tokio_postgres::Row> {
    let st = c.prepare_cached(sql).await.map_err(db)?;
    c.query_one(&st, params).await.map_err(db)
}

pub(crate) async fn execute<C: GenericClient>(c: &C, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let st = c.prepare_cached(sql).await.map_err(db)?;
    c.execute(&st, params).await.map_err(db)
}

/// A text column read as one of the shared types.
pub(crate) fn parsed<T: std::str::FromStr>(row: &tokio_postgres::Row, i: usize) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let text: String = row.get(i);
    text.parse().map_err(|e| StoreError::Internal(format!("stored value {text:?}: {e}")))
}

pub(crate) fn parsed_opt<T: std::str::FromStr>(row: &tokio_postgres::Row, i: usize) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match row.get::<_, Option<String>>(i) {
        None => Ok(None),
        Some(_) => parsed(row, i).map(Some),
    }
}

impl PgStore {
    /// Connect to an existing facteur database: pre-flight and migrate. A
    /// schema without facteur's tables is refused, not made into a new,
    /// empty server (a wrong URL must not look like a fresh start):
    /// [`PgStore::create`] makes one.
    pub async fn open(config: &PgConfig, clock: SharedClock) -> Result<Self> {
        Self::connect(config, clock, false).await
    }

    /// Make facteur's tables (and the schema, if named) in a database that
    /// has none yet.
    pub async fn create(config: &PgConfig, clock: SharedClock) -> Result<Self> {
        Self::connect(config, clock, true).await
    }

    async fn connect(config: &PgConfig, clock: SharedClock, create: bool) -> Result<Self> {
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("storage url {:?} is not a PostgreSQL URL: {e}", config.url)))?;
        // Every statement facteur runs is meant to go through an index (by
        // key, or in claim order). A queue table grows from nothing to
        // thousands of rows in seconds, long before autovacuum analyzes
        // it, and with the stale "tiny table" statistics the planner scans
        // it whole for every outcome recorded (measured: 10,000 such scans
        // in a 10,000-message run). Sequential scans are therefore priced
        // out on facteur's connections (still possible where no index
        // applies). That price puts every plan that must scan (the queue
        // counters' change rows have no index) past the JIT threshold, and
        // compiling one costs 100-400 ms of the server's CPU each time
        // (measured: a quarter of PostgreSQL's CPU in a relay run), for
        // statements that touch a few hundred rows: JIT is off too.
        let mut options = format!(
            "-c synchronous_commit=on -c statement_timeout={} -c enable_seqscan=off -c jit=off",
            config.statement_timeout_ms
        );
        if let Some(schema) = &config.schema {
            if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::Invalid(format!(
                    "storage schema {schema:?} must be letters, digits and _ only"
                )));
            }
            options.push_str(&format!(" -c search_path={schema}"));
        }
        pg.options(&options);
        pg.application_name("facteur");
        pg.connect_timeout(std::time::Duration::from_secs(10));
        let manager = Manager::from_config(
            pg.clone(),
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the PostgreSQL pool: {e}")))?;
        let location = format!(
            "PostgreSQL {}/{} (schema {})",
            pg.get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default(),
            pg.get_dbname().unwrap_or("-"),
            config.schema.as_deref().unwrap_or("default")
        );
        let channel = format!("facteur_changes_{}", config.schema.as_deref().unwrap_or("default"));
        let changes = ChangeHub::default();
        // Listening before the store is used: no change made through it
        // goes unheard.
        let (ready, listening) = tokio::sync::oneshot::channel();
        // The listener's connection is idle between changes: keepalives
        // find a half-open one (after a failover) within a minute.
        let mut listening_pg = pg.clone();
        listening_pg.keepalives_idle(std::time::Duration::from_secs(30));
        let listener = tokio::spawn(listen(listening_pg, channel.clone(), changes.clone(), ready));
        match tokio::time::timeout(std::time::Duration::from_secs(15), listening).await {
            Ok(Ok(())) => {}
            _ => {
                listener.abort();
                return Err(StoreError::Unavailable(format!(
                    "cannot LISTEN for mailbox changes on {} (channel {channel})",
                    config.url
                )));
            }
        }
        let node = config.node.clone();
        // Two groups in flight: one commits while the next gathers.
        let writes = queue::spawn_writers(pool.clone(), clock.clone(), node.clone(), 2);
        let store =
            PgStore { inner: Arc::new(Inner { location, node, pool, clock, changes, channel, listener, writes }) };
        let mut c = store.client().await?;
        if create && let Some(schema) = &config.schema {
            c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await.map_err(db)?;
        }
        let found = schema::current_version(&c).await?;
        match (create, found) {
            (false, 0) => {
                return Err(StoreError::Preflight(format!(
                    "no facteur database at {} (schema {})",
                    config.url,
                    config.schema.as_deref().unwrap_or("of the connection")
                )));
            }
            (true, v) if v > 0 => return Err(StoreError::Exists(format!("a facteur database at {}", config.url))),
            _ => {}
        }
        schema::preflight_and_migrate(&mut c).await?;
        Ok(store)
    }

    /// What an operator should hear about the server's settings: removed
    /// mail leaves dead rows (and bodies' TOAST chunks) that only VACUUM
    /// gives back, so without autovacuum disk use only grows.
    pub async fn setting_warnings(&self) -> Result<Vec<String>> {
        let c = self.client().await?;
        let autovacuum: String = c.query_one("SHOW autovacuum", &[]).await.map_err(db)?.get(0);
        Ok((autovacuum != "on")
            .then(|| {
                "autovacuum is off on this PostgreSQL server: the rows of removed mail are never reclaimed and \
                 disk use grows; turn it on (PostgreSQL's default) or VACUUM facteur's tables on a schedule"
                    .to_string()
            })
            .into_iter()
            .collect())
    }

    /// Where the data is, for people (no password).
    pub fn location(&self) -> String {
        self.inner.location.clone()
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// Tell every node (this one included) that these mailboxes change
    /// when `tx` commits: a NOTIFY is delivered at commit, or never.
    async fn announce<C: GenericClient>(&self, tx: &C, mailboxes: impl IntoIterator<Item = i64>) -> Result<()> {
        let ids: Vec<String> = mailboxes.into_iter().map(|id| id.to_string()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        // A payload is at most 8000 bytes: past a few hundred mailboxes,
        // "look at everything" says it.
        let payload = if ids.len() > 300 { "*".to_string() } else { ids.join(",") };
        execute(tx, "SELECT pg_notify($1, $2)", &[&self.inner.channel, &payload]).await?;
        Ok(())
    }
}

/// Listen for mailbox changes announced by any node and publish them on
/// `hub`; reconnect with a growing pause when the connection is lost, and
/// tell watchers to look again (changes may have been missed meanwhile).
async fn listen(pg: tokio_postgres::Config, channel: String, hub: ChangeHub, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match pg.connect(tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                // The connection is driven here; notifications come out of it.
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_string()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "PostgreSQL change listener lost its connection");
                                break;
                            }
                        }
                    }
                });
                if client.batch_execute(&format!("LISTEN {channel}")).await.is_ok() {
                    pause = std::time::Duration::from_millis(100);
                    match ready.take() {
                        Some(ready) => {
                            let _ = ready.send(());
                        }
                        None => hub.publish_unknown(),
                    }
                    while let Some(payload) = rx.recv().await {
                        if payload == "*" {
                            hub.publish_unknown();
                        } else {
                            hub.publish(payload.split(',').filter_map(|id| id.parse().ok()));
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect the PostgreSQL change listener; retrying"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PostgreSQL the tests use (as the conformance suite's fixture).
    fn pg_url() -> String {
        std::env::var("FACTEUR_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// Sequential scans are priced out on facteur's sessions, which lifts
    /// every statement that must scan (the queue counters' change rows)
    /// past the JIT threshold; compiling them cost 100-400 ms of the
    /// server's CPU each. The same statement on the same connection is
    /// compiled once JIT is turned back on, so this test can fail.
    #[tokio::test]
    async fn facteur_sessions_do_not_jit_compile_scans() {
        let schema = format!("t_jit_{:016x}", fastrand::u64(..));
        let config = PgConfig { url: pg_url(), pool_size: 1, schema: Some(schema.clone()), ..PgConfig::default() };
        let store = PgStore::create(&config, Arc::new(crate::ManualClock::new(1_700_000_000)))
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} (bash .ci/run starts it): {e}", config.url));
        let mut c = store.client().await.unwrap();
        let explain = format!("EXPLAIN ANALYZE SELECT class, SUM(n) FROM {} GROUP BY 1", queue::COUNTS);
        let plan =
            |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, String>(0) + "\n").collect::<String>();
        let ours = plan(c.query(&explain, &[]).await.unwrap());
        let tx = c.transaction().await.unwrap();
        tx.batch_execute("SET LOCAL jit = on").await.unwrap();
        let with_jit = plan(tx.query(&explain, &[]).await.unwrap());
        tx.rollback().await.unwrap();
        c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
        assert!(with_jit.contains("JIT:"), "the statement should cross the JIT threshold: {with_jit}");
        assert!(!ours.contains("JIT:"), "a facteur session compiled a statement: {ours}");
    }
}
