//! What each backend provides the suite: a fresh, empty store with a
//! manual clock; a second handle on the same data (another node, or another
//! process on the same file); and ways to break stored data the way a
//! faulty upgrade or an operator would, so repairs can be tested.

use std::any::Any;
use std::sync::Arc;

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
}

pub struct Fixture<S> {
    pub store: S,
    pub clock: ManualClock,
    pub faults: Box<dyn Faults>,
    /// Another handle on the same data, as a second node would have.
    pub another: Box<dyn Fn() -> S + Send + Sync>,
    _keep: Box<dyn Any + Send + Sync>,
}

/// The next mailbox change, within a few seconds.
pub async fn mailbox_changed(feed: &mut ChangeFeed) -> i64 {
    match tokio::time::timeout(std::time::Duration::from_secs(5), feed.next()).await {
        Ok(Changed::Mailbox(id)) => id,
        other => panic!("expected a mailbox change, got {other:?}"),
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
}

/// A new SQLite file in a temporary folder.
pub async fn sqlite() -> Fixture<SqliteStore> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("facteur.db");
    let clock = ManualClock::new(T0);
    let store = SqliteStore::create_with_clock(&path, Arc::new(clock.clone())).unwrap();
    let (again, again_clock) = (path.clone(), clock.clone());
    Fixture {
        store,
        clock,
        faults: Box::new(SqliteFaults(path)),
        another: Box::new(move || SqliteStore::open_with_clock(&again, Arc::new(again_clock.clone())).unwrap()),
        _keep: Box::new(dir),
    }
}
