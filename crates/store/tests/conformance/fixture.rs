//! What each backend provides the suite: a fresh, empty store with a
//! manual clock; a second handle on the same data (another node, or another
//! process on the same file); and ways to break stored data the way a
//! faulty upgrade or an operator would, so repairs can be tested.

use std::any::Any;
use std::sync::Arc;

use facteur_store::postgres::{PgConfig, PgStore};
use facteur_store::sqlite::SqliteStore;
use facteur_store::{ChangeFeed, Changed, ManualClock};

/// The clock every fixture starts at (2023-11-14).
pub const T0: i64 = 1_700_000_000;

/// Damage done to stored data behind the store's back.
pub trait Faults: Send + Sync {
    /// Delete a mailbox's UID counter.
    fn drop_uid_counter(&self, mailbox_id: i64);
    /// Set a mailbox's UID counter (`uidnext`) to `uidnext`.
    fn set_uid_counter(&self, mailbox_id: i64, uidnext: i64);
    /// Empty the queue's depth counters.
    fn forget_queue_counts(&self);
    /// Remove a mailbox's entries, leaving their messages and bodies.
    fn forget_mailbox_entries(&self, mailbox_id: i64);
}

pub struct Fixture<S> {
    pub store: S,
    pub clock: ManualClock,
    pub faults: Box<dyn Faults>,
    /// Another handle on the same data, as a second node ("b"; the first
    /// is "a") would have.
    pub another: Box<dyn Fn() -> S + Send + Sync>,
    _keep: Box<dyn Any + Send + Sync>,
}

/// The next change to a mailbox's content, within a few seconds (notices
/// that names changed are passed over).
pub async fn mailbox_changed(feed: &mut ChangeFeed) -> i64 {
    next_change(feed, "a mailbox change", |c| if let Changed::Mailbox(id) = c { Some(id) } else { None }).await
}

/// The next notice that an owner's names changed (its key), within a few
/// seconds; content changes are passed over.
pub async fn names_changed(feed: &mut ChangeFeed) -> i64 {
    next_change(feed, "a names change", |c| if let Changed::Names(key) = c { Some(key) } else { None }).await
}

/// The next change `wanted` takes, passing over other mailbox and names
/// notices; anything else (a timeout, `Unknown`) fails the test.
async fn next_change(feed: &mut ChangeFeed, what: &str, wanted: fn(Changed) -> Option<i64>) -> i64 {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), feed.next()).await {
            Ok(c @ (Changed::Mailbox(_) | Changed::Names(_))) => match wanted(c) {
                Some(v) => return v,
                None => continue,
            },
            other => panic!("expected {what}, got {other:?}"),
        }
    }
}

struct SqliteFaults(std::path::PathBuf);

impl SqliteFaults {
    fn run(&self, sql: &str, mailbox_id: i64, value: Option<i64>) {
        let c = rusqlite::Connection::open(&self.0).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        match value {
            Some(v) => c.execute(sql, rusqlite::params![mailbox_id, v]).unwrap(),
            None => c.execute(sql, [mailbox_id]).unwrap(),
        };
    }
}

impl Faults for SqliteFaults {
    fn drop_uid_counter(&self, mailbox_id: i64) {
        self.run("DELETE FROM uid_counters WHERE mailbox_id = ?1", mailbox_id, None);
    }
    fn set_uid_counter(&self, mailbox_id: i64, uidnext: i64) {
        self.run("UPDATE uid_counters SET uidnext = ?2 WHERE mailbox_id = ?1", mailbox_id, Some(uidnext));
    }
    fn forget_queue_counts(&self) {
        rusqlite::Connection::open(&self.0).unwrap().execute("DELETE FROM queue_counts", []).unwrap();
    }
    fn forget_mailbox_entries(&self, mailbox_id: i64) {
        self.run("DELETE FROM mailbox_messages WHERE mailbox_id = ?1", mailbox_id, None);
    }
}

/// A new SQLite file in a temporary folder.
pub async fn sqlite() -> Fixture<SqliteStore> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("facteur.db");
    let clock = ManualClock::new(T0);
    let store = SqliteStore::create_with_clock(&path, Arc::new(clock.clone())).unwrap().for_node("a");
    let (again, again_clock) = (path.clone(), clock.clone());
    Fixture {
        store,
        clock,
        faults: Box::new(SqliteFaults(path)),
        another: Box::new(move || {
            SqliteStore::open_with_clock(&again, Arc::new(again_clock.clone())).unwrap().for_node("b")
        }),
        _keep: Box::new(dir),
    }
}

/// The PostgreSQL every test uses: `FACTEUR_TEST_PG`, or the CI's local
/// server (`bash .ci/run` checks it is up and fails loudly if not).
pub fn pg_url() -> String {
    std::env::var("FACTEUR_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Run a future to completion from synchronous code inside a test runtime.
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

struct PgFaults(PgConfig);

impl PgFaults {
    fn run(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) {
        block(async {
            let (c, conn) = tokio_postgres::connect(&self.0.url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            c.batch_execute(&format!("SET search_path = {}", self.0.schema.as_deref().unwrap())).await.unwrap();
            c.execute(sql, params).await.unwrap();
        })
    }
}

impl Faults for PgFaults {
    fn drop_uid_counter(&self, mailbox_id: i64) {
        self.run("DELETE FROM uid_counters WHERE mailbox_id = $1", &[&mailbox_id]);
    }
    fn set_uid_counter(&self, mailbox_id: i64, uidnext: i64) {
        self.run("UPDATE uid_counters SET uidnext = $2 WHERE mailbox_id = $1", &[&mailbox_id, &uidnext]);
    }
    fn forget_queue_counts(&self) {
        self.run("DELETE FROM queue_counts", &[]);
        self.run("DELETE FROM queue_count_changes", &[]);
    }
    fn forget_mailbox_entries(&self, mailbox_id: i64) {
        self.run("DELETE FROM mailbox_messages WHERE mailbox_id = $1", &[&mailbox_id]);
    }
}

/// Drops the test's schema when the test ends, pass or fail.
struct DropSchema(PgConfig);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.0.url.clone(), self.0.schema.clone().unwrap());
        // Its own thread and runtime: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
                }
            })
        })
        .join();
    }
}

/// A new schema of its own in the test database, so tests run in parallel.
pub async fn postgres() -> Fixture<PgStore> {
    let schema = format!("t_{:016x}", fastrand::u64(..));
    let config =
        PgConfig { url: pg_url(), pool_size: 8, schema: Some(schema), node: "a".into(), ..PgConfig::default() };
    let clock = ManualClock::new(T0);
    // Dropped (and the schema with it) even if connecting panics.
    let guard = DropSchema(config.clone());
    let store = PgStore::create(&config, Arc::new(clock.clone()))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} (bash .ci/run starts it): {e}", config.url));
    let (again, again_clock) = (PgConfig { node: "b".into(), ..config.clone() }, clock.clone());
    Fixture {
        store,
        clock,
        faults: Box::new(PgFaults(config.clone())),
        another: Box::new(move || {
            block(PgStore::open(&again, Arc::new(again_clock.clone()))).expect("a second PostgreSQL handle")
        }),
        _keep: Box::new(guard),
    }
}
