//! The embedded SQLite store: one file, WAL journal, `synchronous=FULL`,
//! one writer thread with group commit, a small pool of reader connections.

mod check;
mod incidents;
mod mail;
mod queue;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::{Connection, OptionalExtension, params};

use crate::invariants::{self, canonical_address};
use crate::lifecycle;
use crate::{
    Admin, Alias, AuditRecord, ChangeFeed, ChangeHub, CheckReport, ClaimFilter, Class, Cluster, Control, ControlKey,
    DeliveryJob, Directory, Domain, FlagOp, FlagsChanged, Housekeeping, Lookup, Mailbox, MailboxSnapshot, Mailstore,
    MessageId, MessageMeta, NewMessage, NodeRecord, Park, Part, Placement, QueueStats, QueuedMessage, Quota,
    RecipientState, RecipientStatus, RecipientUpdate, Result, Route, SharedClock, Spool, StoreError, StoredEnvelope,
    Sweep, SystemClock, User,
};

pub use schema::{current_version, latest_version};

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    /// The node this handle speaks for (lease owner); "local" by default.
    node: Arc<str>,
}

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<mpsc::Sender<writer::Job>>,
    commits: Arc<AtomicU64>,
    changes: ChangeHub,
    clock: SharedClock,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // SQLite reports a write that met ENOSPC as SQLITE_FULL.
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return StoreError::Full(e.to_string());
        }
        StoreError::Backend(e.to_string())
    }
}

/// A stored text column read as one of the shared types; an unknown value
/// is an error naming the column, not a default.
pub(crate) fn parsed<T: std::str::FromStr>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.get(i)?;
    text.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// [`parsed`] for a nullable column.
pub(crate) fn parsed_opt<T: std::str::FromStr>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match r.get::<_, Option<String>>(i)? {
        None => Ok(None),
        Some(_) => parsed(r, i).map(Some),
    }
}

/// A statement written with PostgreSQL's `$N` parameters, for SQLite
/// (`?N`: numbered by N, where SQLite numbers `$N` by order of appearance).
pub(crate) fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

fn open_conn(path: &Path, write: bool) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if write {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Preflight(format!("cannot switch {} to WAL (got {mode})", path.display())));
        }
        // Every commit fsyncs the WAL before returning: durability of a 250.
        conn.pragma_update(None, "synchronous", "FULL")?;
    } else {
        conn.pragma_update(None, "query_only", "ON")?;
        // Readers map the file (up to 256 MiB) instead of copying each page
        // through read(2): IMAP FETCH reads many message bodies.
        conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
    }
    Ok(conn)
}

impl SqliteStore {
    /// Open an existing database: pre-flight check, migrations, then the
    /// writer thread (invariants are checked by the caller with
    /// [`Store::check`]). A missing or empty file is refused, not
    /// made into a new, empty server (a data folder whose disk did not come
    /// up would otherwise answer "relay access denied" for its own users):
    /// [`SqliteStore::create`] makes one.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_clock(path, Arc::new(SystemClock))
    }

    /// [`SqliteStore::open`] with the clock that dates what the store
    /// records itself (creation times, UIDVALIDITY, APPEND ids).
    pub fn open_with_clock(path: &Path, clock: SharedClock) -> Result<Self> {
        match std::fs::metadata(path) {
            Ok(m) if m.len() > 0 => Self::open_or_create(path, clock),
            Ok(_) => Err(StoreError::Preflight(format!(
                "the database {} is empty (0 octets): it was not written by facteur, or its data was lost",
                path.display()
            ))),
            Err(e) => Err(StoreError::Preflight(format!("no database at {}: {e}", path.display()))),
        }
    }

    /// Make a new database at `path` (which must not exist, or be empty)
    /// with the current schema.
    pub fn create(path: &Path) -> Result<Self> {
        Self::create_with_clock(path, Arc::new(SystemClock))
    }

    pub fn create_with_clock(path: &Path, clock: SharedClock) -> Result<Self> {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return Err(StoreError::Exists(format!("a database at {}", path.display())));
        }
        Self::open_or_create(path, clock)
    }

    fn open_or_create(path: &Path, clock: SharedClock) -> Result<Self> {
        let mut conn = open_conn(path, true)?;
        schema::preflight_and_migrate(&mut conn)?;
        let commits = Arc::new(AtomicU64::new(0));
        let tx = writer::spawn(conn, commits.clone())
            .map_err(|e| StoreError::Internal(format!("cannot start writer thread: {e}")))?;
        Ok(SqliteStore {
            node: Arc::from("local"),
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                readers: Mutex::new(Vec::new()),
                writer: Mutex::new(tx),
                commits,
                changes: ChangeHub::default(),
                clock,
            }),
        })
    }

    /// This handle, speaking for node `name` (its claims' leases are in
    /// that name).
    pub fn for_node(mut self, name: &str) -> Self {
        self.node = Arc::from(name);
        self
    }

    /// Commits made by this store's writer (each one fsync of the WAL).
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Tell watchers these mailboxes changed (after the commit).
    fn changed(&self, mailboxes: impl IntoIterator<Item = i64>) {
        self.inner.changes.publish(mailboxes);
    }

    fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// Run a write job through the group-commit writer.
    async fn write<R: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<R> + Send + 'static) -> Result<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = writer::job(f, tx);
        {
            let w = self.inner.writer.lock().map_err(|_| writer_gone())?;
            w.send(job).map_err(|_| writer_gone())?;
        }
        rx.await.map_err(|_| writer_gone())?
    }

    /// Run a read on a pooled read-only connection, off the async threads.
    async fn read<R: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<R> + Send + 'static) -> Result<R> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match inner.readers.lock().ok().and_then(|mut p| p.pop()) {
                Some(c) => c,
                None => open_conn(&inner.path, false)?,
            };
            let r = f(&conn);
            if let Ok(mut p) = inner.readers.lock()
                && p.len() < 8
            {
                p.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Internal(format!("reader task failed: {e}")))?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the SQLite writer thread has stopped".into())
}

/// Create a mailbox with a fresh UIDVALIDITY ([`invariants::next_uidvalidity`]).
pub(crate) fn create_mailbox(
    conn: &Connection,
    owner: &str,
    name: &str,
    special_use: Option<&str>,
    now: i64,
) -> Result<i64> {
    let uidvalidity = fresh_uidvalidity(conn, owner, now)?;
    conn.execute(
        "INSERT INTO mailboxes (owner, name, uidvalidity, special_use, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![owner, name, uidvalidity, special_use, now],
    )?;
    let id = conn.last_insert_rowid();
    conn.execute("INSERT INTO uid_counters (mailbox_id, uidnext) VALUES (?1, 1)", [id])?;
    Ok(id)
}

/// A UIDVALIDITY above every one the owner's mailboxes have or had
/// ([`invariants::next_uidvalidity`]).
pub(crate) fn fresh_uidvalidity(conn: &Connection, owner: &str, now: i64) -> Result<u32> {
    let prev: Option<i64> = conn.query_row(
        "SELECT MAX(v) FROM (SELECT MAX(uidvalidity) AS v FROM mailboxes WHERE owner = ?1
                             UNION ALL SELECT value FROM uidvalidity_floor WHERE owner = ?1)",
        [owner],
        |r| r.get(0),
    )?;
    Ok(invariants::next_uidvalidity(now, prev))
}

/// The next UID of a mailbox, in the caller's transaction
/// ([`invariants::next_uid`] decides; the counter moves past it).
pub(crate) fn allocate_uid(conn: &Connection, mailbox_id: i64) -> Result<u32> {
    let counter: Option<i64> = conn
        .query_row("SELECT uidnext FROM uid_counters WHERE mailbox_id = ?1", [mailbox_id], |r| r.get(0))
        .optional()?;
    // The highest UID stored or ever expunged.
    let highest: i64 = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(uid) FROM mailbox_messages WHERE mailbox_id = ?1), 0),
                    COALESCE((SELECT expunged_uid_max FROM mailboxes WHERE id = ?1), 0))",
        [mailbox_id],
        |r| r.get(0),
    )?;
    let uid = invariants::next_uid(mailbox_id, counter, highest)?;
    conn.execute(
        "INSERT INTO uid_counters (mailbox_id, uidnext) VALUES (?1, ?2)
         ON CONFLICT (mailbox_id) DO UPDATE SET uidnext = excluded.uidnext",
        params![mailbox_id, uid as i64 + 1],
    )?;
    Ok(uid)
}

fn inbox_of(conn: &Connection, user: &str, now: i64) -> Result<i64> {
    let id: Option<i64> = conn
        .query_row("SELECT id FROM mailboxes WHERE owner = ?1 AND name = 'INBOX'", [user], |r| r.get(0))
        .optional()?;
    match id {
        Some(id) => Ok(id),
        None => {
            // A user without INBOX is repaired on the spot rather than refusing mail.
            tracing::error!(user, "user had no INBOX; created it");
            create_mailbox(conn, user, "INBOX", None, now)
        }
    }
}

/// Insert an accepted message with its recipients; `now` dates repairs.
pub(crate) fn insert_message(conn: &Connection, msg: &NewMessage, now: i64) -> Result<Vec<Placement>> {
    let id = msg.id.to_string();
    let envelope = serde_json::to_string(&msg.envelope).map_err(|e| StoreError::Internal(e.to_string()))?;
    conn.prepare_cached("INSERT INTO messages (id, received_at, size, envelope, class) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![id, msg.received_at, msg.data.len() as i64, envelope, msg.class.as_str()])?;
    conn.prepare_cached("INSERT INTO message_bodies (message_id, data) VALUES (?1, ?2)")?
        .execute(params![id, msg.data])?;
    let mut placements = Vec::new();
    for (idx, r) in msg.recipients.iter().enumerate() {
        let domain = r.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        let (state, next) = match &r.route {
            Route::Local { user, mailbox } => {
                let named = match mailbox {
                    Some(name) => conn
                        .prepare_cached(
                            "SELECT id FROM mailboxes WHERE owner = ?1 AND name = ?2 COLLATE NOCASE ORDER BY name LIMIT 1",
                        )?
                        .query_row(params![user, name], |r| r.get(0))
                        .optional()?,
                    None => None,
                };
                let mailbox_id = match named {
                    Some(id) => id,
                    None => inbox_of(conn, user, now)?,
                };
                // Two recipients that are the same user get one copy.
                if !placements.iter().any(|p: &Placement| p.user == *user) {
                    let (uid, _) = mail::place(conn, mailbox_id, &id, &[], msg.received_at)?;
                    placements.push(Placement { user: user.clone(), mailbox_id, uid });
                }
                (RecipientStatus::Delivered, None)
            }
            Route::Remote => msg.remote_state(),
        };
        conn.prepare_cached(
            "INSERT INTO recipients (message_id, idx, address, domain, notify, orcpt, state, next_attempt, class)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            id,
            idx as i64,
            r.address,
            domain,
            r.notify.map(|n| n.to_string()),
            r.orcpt,
            state.as_str(),
            next,
            msg.class.as_str()
        ])?;
    }
    Ok(placements)
}

fn load_queued(conn: &Connection, id: MessageId) -> Result<Option<QueuedMessage>> {
    let row: Option<(i64, i64, String, Class)> = conn
        .query_row("SELECT received_at, size, envelope, class FROM messages WHERE id = ?1", [id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, parsed(r, 3)?))
        })
        .optional()?;
    let Some((received_at, size, envelope, class)) = row else { return Ok(None) };
    let envelope: StoredEnvelope = serde_json::from_str(&envelope)
        .map_err(|e| StoreError::Internal(format!("message {id}: unreadable envelope: {e}")))?;
    let mut stmt = conn.prepare_cached(
        "SELECT address, state, attempts, next_attempt, last_error, notify, orcpt
         FROM recipients WHERE message_id = ?1 ORDER BY idx",
    )?;
    let recipients = stmt
        .query_map([id.to_string()], |r| {
            Ok(RecipientState {
                address: r.get(0)?,
                state: parsed(r, 1)?,
                attempts: r.get(2)?,
                next_attempt: r.get(3)?,
                last_error: r.get(4)?,
                notify: parsed_opt(r, 5)?,
                orcpt: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let attempts = queue::attempts_of(conn, id)?;
    Ok(Some(QueuedMessage { id, received_at, class, size: size as u64, envelope, recipients, attempts }))
}

impl Directory for SqliteStore {
    async fn add_domain(&self, name: &str) -> Result<()> {
        let name = invariants::domain_name(name)?;
        let now = self.now();
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO domains (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, now],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("domain {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn remove_domain(&self, name: &str) -> Result<()> {
        let name = canonical_address(name);
        self.write(move |c| {
            let users: i64 = c.query_row("SELECT COUNT(*) FROM users WHERE domain = ?1", [&name], |r| r.get(0))?;
            if users > 0 {
                return Err(StoreError::Invalid(format!(
                    "domain {name} still has {users} user(s); remove them first (facteur user list)"
                )));
            }
            let aliases: i64 = c.query_row(
                "SELECT COUNT(*) FROM aliases WHERE substr(address, length(address) - length(?1)) = '@' || ?1",
                [&name],
                |r| r.get(0),
            )?;
            if aliases > 0 {
                return Err(StoreError::Invalid(format!(
                    "domain {name} still has {aliases} alias target(s); remove them first (facteur alias list)"
                )));
            }
            if c.execute("DELETE FROM domains WHERE name = ?1", [&name])? == 0 {
                return Err(StoreError::NotFound(format!("domain {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        self.read(|c| {
            let mut s = c.prepare(
                "SELECT d.name, d.created_at, (SELECT COUNT(*) FROM users u WHERE u.domain = d.name)
                 FROM domains d ORDER BY d.name",
            )?;
            let rows = s.query_map([], |r| Ok(Domain { name: r.get(0)?, created_at: r.get(1)?, users: r.get(2)? }))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn is_local_domain(&self, name: &str) -> Result<bool> {
        let name = canonical_address(name);
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT 1 FROM domains WHERE name = ?1")?
                .query_row([name], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    async fn add_user(&self, address: &str, password_hash: &str) -> Result<()> {
        let address = canonical_address(address);
        let (_, domain) = invariants::split_address(&address)?;
        let domain = domain.to_string();
        let hash = password_hash.to_string();
        let now = self.now();
        self.write(move |c| {
            let known: bool =
                c.query_row("SELECT 1 FROM domains WHERE name = ?1", [&domain], |_| Ok(true)).optional()?.is_some();
            if !known {
                return Err(StoreError::NotFound(format!(
                    "domain {domain} is not a local domain; add it first: facteur domain add {domain}"
                )));
            }
            let n = c.execute(
                "INSERT INTO users (address, domain, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (address) DO NOTHING",
                params![address, domain, hash, now],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("user {address}")));
            }
            create_mailbox(c, &address, "INBOX", None, now)?;
            for (name, special_use) in invariants::DEFAULT_MAILBOXES {
                create_mailbox(c, &address, name, Some(special_use), now)?;
            }
            c.execute("INSERT INTO subscriptions (owner, name) SELECT owner, name FROM mailboxes WHERE owner = ?1 ON CONFLICT DO NOTHING", [&address])?;
            Ok(())
        })
        .await
    }

    async fn set_password(&self, address: &str, password_hash: &str) -> Result<()> {
        let address = canonical_address(address);
        let hash = password_hash.to_string();
        self.write(move |c| {
            if c.execute("UPDATE users SET password_hash = ?1 WHERE address = ?2", params![hash, address])? == 0 {
                return Err(StoreError::NotFound(format!("user {address}")));
            }
            Ok(())
        })
        .await
    }

    async fn remove_user(&self, address: &str) -> Result<()> {
        let address = canonical_address(address);
        self.write(move |c| {
            if c.execute("DELETE FROM users WHERE address = ?1", [&address])? == 0 {
                return Err(StoreError::NotFound(format!("user {address}")));
            }
            // Mailboxes go with the user; messages shared with other
            // mailboxes or the queue stay.
            let held = mail::message_ids(
                c,
                "DELETE FROM mailbox_messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE owner = ?1)
                 RETURNING message_id",
                &address,
            )?;
            mail::drop_unneeded(c, held.iter().map(String::as_str))?;
            c.execute(
                "DELETE FROM uid_counters WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE owner = ?1)",
                [&address],
            )?;
            // The floor covers every name: an account made again later
            // starts above all the UIDVALIDITYs this one had.
            c.execute(
                "INSERT INTO uidvalidity_floor (owner, value)
                 SELECT owner, MAX(uidvalidity) FROM mailboxes WHERE owner = ?1 GROUP BY owner
                 ON CONFLICT (owner) DO UPDATE SET value = MAX(value, excluded.value)",
                [&address],
            )?;
            c.execute("DELETE FROM former_names WHERE owner = ?1", [&address])?;
            c.execute("DELETE FROM mailboxes WHERE owner = ?1", [&address])?;
            c.execute("DELETE FROM sender_grants WHERE owner = ?1", [&address])?;
            Ok(())
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.read(|c| {
            let mut s = c.prepare("SELECT address, password_hash, created_at FROM users ORDER BY domain, address")?;
            let rows =
                s.query_map([], |r| Ok(User { address: r.get(0)?, password_hash: r.get(1)?, created_at: r.get(2)? }))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn get_user(&self, address: &str) -> Result<Option<User>> {
        let address = canonical_address(address);
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT address, password_hash, created_at FROM users WHERE address = ?1")?
                .query_row([address], |r| {
                    Ok(User { address: r.get(0)?, password_hash: r.get(1)?, created_at: r.get(2)? })
                })
                .optional()?)
        })
        .await
    }

    async fn quota(&self, user: &str) -> Result<Option<Quota>> {
        let user = canonical_address(user);
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT quota_bytes, quota_messages, used_bytes, used_messages, quota_warned FROM users WHERE address = ?1",
            )?
            .query_row([user], |r| {
                Ok(Quota {
                    limit_bytes: r.get::<_, Option<i64>>(0)?.map(|v| v.max(0) as u64),
                    limit_messages: r.get::<_, Option<i64>>(1)?.map(|v| v.max(0) as u64),
                    used_bytes: r.get::<_, i64>(2)?.max(0) as u64,
                    used_messages: r.get::<_, i64>(3)?.max(0) as u64,
                    warned: r.get(4)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn set_quota(&self, user: &str, bytes: Option<u64>, messages: Option<u64>) -> Result<()> {
        let user = canonical_address(user);
        let (bytes, messages) =
            (bytes.map(|b| b.min(i64::MAX as u64) as i64), messages.map(|m| m.min(i64::MAX as u64) as i64));
        self.write(move |c| {
            if c.execute(
                "UPDATE users SET quota_bytes = ?2, quota_messages = ?3 WHERE address = ?1",
                params![user, bytes, messages],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("user {user}")));
            }
            Ok(())
        })
        .await
    }

    async fn set_quota_warned(&self, user: &str, warned: bool) -> Result<()> {
        let user = canonical_address(user);
        self.write(move |c| {
            c.execute("UPDATE users SET quota_warned = ?2 WHERE address = ?1", params![user, warned])?;
            Ok(())
        })
        .await
    }

    async fn sender_grants(&self, owner: &str) -> Result<Vec<String>> {
        let owner = canonical_address(owner);
        self.read(move |c| {
            let mut s = c.prepare_cached("SELECT address FROM sender_grants WHERE owner = ?1 ORDER BY address")?;
            let rows = s.query_map([owner], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn grant_sender(&self, owner: &str, address: &str) -> Result<()> {
        let owner = canonical_address(owner);
        let address = invariants::sender_grant(address)?;
        let now = self.now();
        self.write(move |c| {
            let known: bool =
                c.query_row("SELECT 1 FROM users WHERE address = ?1", [&owner], |_| Ok(true)).optional()?.is_some();
            if !known {
                return Err(StoreError::NotFound(format!("user {owner}")));
            }
            let n = c.execute(
                "INSERT INTO sender_grants (owner, address, granted_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![owner, address, now],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("{owner} may already send as {address}")));
            }
            Ok(())
        })
        .await
    }

    async fn revoke_sender(&self, owner: &str, address: &str) -> Result<()> {
        let owner = canonical_address(owner);
        let address = canonical_address(address);
        self.write(move |c| {
            if c.execute("DELETE FROM sender_grants WHERE owner = ?1 AND address = ?2", params![owner, address])? == 0 {
                return Err(StoreError::NotFound(format!("no grant for {owner} to send as {address}")));
            }
            Ok(())
        })
        .await
    }

    async fn lookup_recipient(&self, address: &str) -> Result<Lookup> {
        let address = canonical_address(address);
        let (_, domain) = invariants::split_address(&address)?;
        let domain = domain.to_string();
        self.read(move |c| {
            let (local, user, aliases): (bool, bool, Option<String>) = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM domains WHERE name = ?1), EXISTS (SELECT 1 FROM users WHERE address = ?2),
                            (SELECT group_concat(target, ' ') FROM (SELECT target FROM aliases WHERE address = ?2 ORDER BY created_at, target))",
                )?
                .query_row(params![domain, address], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(match (local, user, aliases) {
                (true, _, Some(targets)) => Lookup::Alias(targets.split(' ').map(str::to_string).collect()),
                (true, true, None) => Lookup::LocalUser(address),
                (true, false, None) => Lookup::UnknownUser,
                (false, ..) => Lookup::Remote,
            })
        })
        .await
    }

    async fn add_alias(&self, address: &str, target: &str) -> Result<()> {
        let (key, domain) = invariants::alias_key(address)?;
        let target = invariants::alias_target(target)?;
        let now = self.now();
        self.write(move |c| {
            if c.query_row("SELECT 1 FROM domains WHERE name = ?1", [&domain], |_| Ok(())).optional()?.is_none() {
                return Err(StoreError::NotFound(format!("local domain {domain} (facteur domain add {domain})")));
            }
            let n = c.execute(
                "INSERT INTO aliases (address, target, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![key, target, now],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("{key} already goes to {target}")));
            }
            Ok(())
        })
        .await
    }

    async fn remove_alias(&self, address: &str, target: Option<&str>) -> Result<u64> {
        let key = canonical_address(address);
        let target = target.map(canonical_address);
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM aliases WHERE address = ?1 AND (?2 IS NULL OR target = ?2)",
                params![key, target],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(match target {
                    Some(t) => format!("alias {key} -> {t}"),
                    None => format!("alias {key}"),
                }));
            }
            Ok(n as u64)
        })
        .await
    }

    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        self.read(|c| {
            let mut s =
                c.prepare("SELECT address, target, created_at FROM aliases ORDER BY address, created_at, target")?;
            let rows =
                s.query_map([], |r| Ok(Alias { address: r.get(0)?, target: r.get(1)?, created_at: r.get(2)? }))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn alias_targets(&self, address: &str) -> Result<Vec<String>> {
        let key = canonical_address(address);
        self.read(move |c| {
            let mut s =
                c.prepare_cached("SELECT target FROM aliases WHERE address = ?1 ORDER BY created_at, target")?;
            let rows = s.query_map([&key], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn secret(&self, name: &str) -> Result<String> {
        let name = name.to_string();
        let fresh = invariants::new_secret();
        self.write(move |c| {
            c.execute(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![name, fresh],
            )?;
            Ok(c.query_row("SELECT value FROM secrets WHERE name = ?1", [&name], |r| r.get(0))?)
        })
        .await
    }
}

impl Mailstore for SqliteStore {
    async fn list_mailboxes(&self, owner: &str) -> Result<Vec<Mailbox>> {
        let owner = canonical_address(owner);
        self.read(move |c| mail::list(c, &owner)).await
    }

    async fn fetch_message(&self, mailbox_id: i64, uid: u32) -> Result<Option<Vec<u8>>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT b.data FROM mailbox_messages mm JOIN message_bodies b ON b.message_id = mm.message_id
                 WHERE mm.mailbox_id = ?1 AND mm.uid = ?2",
            )?
            .query_row(params![mailbox_id, uid], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn fetch_messages(&self, mailbox_id: i64, uids: Vec<u32>, part: Part) -> Result<Vec<(u32, Vec<u8>)>> {
        self.read(move |c| mail::bodies(c, mailbox_id, &uids, part)).await
    }

    async fn mailbox(&self, owner: &str, name: &str) -> Result<Option<Mailbox>> {
        let (owner, name) = (canonical_address(owner), name.to_string());
        self.read(move |c| mail::get(c, &owner, &name)).await
    }

    async fn create_mailbox(&self, owner: &str, name: &str, special_use: Option<&str>) -> Result<Mailbox> {
        let (owner, name, su) = (canonical_address(owner), name.to_string(), special_use.map(str::to_string));
        let now = self.now();
        let key = crate::names_key(&owner);
        let created = self.write(move |c| mail::create(c, &owner, &name, su.as_deref(), now)).await?;
        self.changed([key]);
        Ok(created)
    }

    async fn delete_mailbox(&self, owner: &str, name: &str) -> Result<()> {
        let (owner, name) = (canonical_address(owner), name.to_string());
        let key = crate::names_key(&owner);
        let id = self.write(move |c| mail::delete(c, &owner, &name)).await?;
        self.changed([id, key]);
        Ok(())
    }

    async fn rename_mailbox(&self, owner: &str, from: &str, to: &str) -> Result<()> {
        let (owner, from, to) = (canonical_address(owner), from.to_string(), to.to_string());
        let now = self.now();
        let key = crate::names_key(&owner);
        let ids = self.write(move |c| mail::rename(c, &owner, &from, &to, now)).await?;
        self.changed(ids.into_iter().chain([key]));
        Ok(())
    }

    async fn subscribe(&self, owner: &str, name: &str, on: bool) -> Result<()> {
        let (owner, name) = (canonical_address(owner), name.to_string());
        let key = crate::names_key(&owner);
        self.write(move |c| mail::set_subscribed(c, &owner, &name, on)).await?;
        self.changed([key]);
        Ok(())
    }

    async fn non_ascii_mailboxes(&self) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            let mut s =
                c.prepare("SELECT owner, name FROM mailboxes WHERE name GLOB '*[^ -~]*' ORDER BY owner, length(name)")?;
            let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn subscriptions(&self, owner: &str) -> Result<Vec<String>> {
        let owner = canonical_address(owner);
        self.read(move |c| mail::subscriptions(c, &owner)).await
    }

    async fn mailbox_messages(&self, mailbox_id: i64) -> Result<Vec<MessageMeta>> {
        self.read(move |c| mail::messages(c, mailbox_id)).await
    }

    async fn mailbox_snapshot(&self, mailbox_id: i64, known: Option<u64>) -> Result<Option<MailboxSnapshot>> {
        self.read(move |c| mail::snapshot(c, mailbox_id, known)).await
    }

    async fn append_message(
        &self,
        mailbox_id: i64,
        data: Vec<u8>,
        flags: Vec<String>,
        internal_date: i64,
    ) -> Result<(u32, u64)> {
        let id = MessageId::new(self.inner.clock.now_ms().max(0) as u64);
        let now = self.now();
        let r = self.write(move |c| mail::append(c, mailbox_id, id, &data, &flags, internal_date, now)).await?;
        self.changed([mailbox_id]);
        Ok(r)
    }

    async fn append_messages(
        &self,
        mailbox_id: i64,
        messages: Vec<(Vec<u8>, Vec<String>, i64)>,
    ) -> Result<Vec<(u32, u64)>> {
        let ids: Vec<MessageId> =
            messages.iter().map(|_| MessageId::new(self.inner.clock.now_ms().max(0) as u64)).collect();
        let now = self.now();
        // One job of the writer: its SAVEPOINT makes it all or nothing.
        let r = self
            .write(move |c| {
                messages
                    .iter()
                    .zip(ids)
                    .map(|((data, flags, date), id)| mail::append(c, mailbox_id, id, data, flags, *date, now))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        self.changed([mailbox_id]);
        Ok(r)
    }

    async fn store_flags(
        &self,
        mailbox_id: i64,
        uids: Vec<u32>,
        op: FlagOp,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> Result<FlagsChanged> {
        let r = self.write(move |c| mail::store_flags(c, mailbox_id, &uids, op, &flags, unchanged_since)).await?;
        if !r.changed.is_empty() {
            self.changed([mailbox_id]);
        }
        Ok(r)
    }

    async fn vanished_since(&self, mailbox_id: i64, modseq: u64) -> Result<Vec<u32>> {
        self.read(move |c| mail::vanished_since(c, mailbox_id, modseq)).await
    }

    async fn recent_from(&self, mailbox_id: i64, claim_up_to: Option<u32>) -> Result<u32> {
        match claim_up_to {
            Some(up_to) => self.write(move |c| mail::recent_from(c, mailbox_id, Some(up_to))).await,
            None => self.read(move |c| mail::recent_from(c, mailbox_id, None)).await,
        }
    }

    async fn expunge(&self, mailbox_id: i64, only: Option<Vec<u32>>) -> Result<Vec<u32>> {
        let r = self.write(move |c| mail::expunge(c, mailbox_id, only.as_deref())).await?;
        if !r.is_empty() {
            self.changed([mailbox_id]);
        }
        Ok(r)
    }

    async fn copy_messages(&self, from: i64, uids: Vec<u32>, to: i64, moving: bool) -> Result<Vec<(u32, u32)>> {
        let r = self.write(move |c| mail::copy(c, from, &uids, to, moving)).await?;
        if !r.is_empty() {
            self.changed(if moving { vec![from, to] } else { vec![to] });
        }
        Ok(r)
    }

    fn mailbox_changes(&self) -> ChangeFeed {
        self.inner.changes.subscribe()
    }
}

impl Spool for SqliteStore {
    async fn store_message(&self, msg: NewMessage) -> Result<Vec<Placement>> {
        self.store_messages(vec![msg]).await
    }

    async fn store_messages(&self, msgs: Vec<NewMessage>) -> Result<Vec<Placement>> {
        let now = self.now();
        let placements = self
            .write(move |c| {
                let mut placed = Vec::new();
                for m in &msgs {
                    placed.extend(insert_message(c, m, now)?);
                }
                Ok(placed)
            })
            .await?;
        self.changed(placements.iter().map(|p| p.mailbox_id));
        Ok(placements)
    }

    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
        filter: ClaimFilter,
    ) -> Result<Vec<DeliveryJob>> {
        let node = self.node.clone();
        self.write(move |c| queue::claim_due(c, now, lease_until, limit, &filter, &node)).await
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        self.read(queue::next_due).await
    }

    async fn message_body(&self, id: MessageId) -> Result<Option<Vec<u8>>> {
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT data FROM message_bodies WHERE message_id = ?1")?
                .query_row([id.to_string()], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn complete(&self, updates: Vec<RecipientUpdate>, notices: Vec<NewMessage>) -> Result<()> {
        let now = self.now();
        let node = self.node.clone();
        self.write(move |c| queue::complete(c, &updates, &notices, now, &node)).await
    }

    async fn renew_leases(&self, held: Vec<(MessageId, u32)>, until: i64) -> Result<Vec<(MessageId, u32)>> {
        let node = self.node.clone();
        self.write(move |c| {
            let mut renew = c.prepare_cached(
                "UPDATE recipients SET lease_until = ?4
                 WHERE message_id = ?1 AND idx = ?2 AND lease_owner = ?3 AND state = 'queued'",
            )?;
            let mut renewed = Vec::with_capacity(held.len());
            for (id, idx) in held {
                if renew.execute(params![id.to_string(), idx, &*node, until])? > 0 {
                    renewed.push((id, idx));
                }
            }
            Ok(renewed)
        })
        .await
    }

    async fn release_leases(&self) -> Result<u64> {
        let node = self.node.clone();
        self.write(move |c| queue::release_leases(c, &node)).await
    }

    async fn queue_retry_where(
        &self,
        domain: Option<&str>,
        class: Option<Class>,
        now: i64,
        actor: &str,
    ) -> Result<u64> {
        let (domain, actor) = (domain.map(str::to_lowercase), actor.to_string());
        self.write(move |c| queue::retry_where(c, domain.as_deref(), class, now, &actor)).await
    }

    async fn park_destination(&self, park: Park) -> Result<u64> {
        self.write(move |c| queue::park_destination(c, &park)).await
    }

    async fn queue_stats(&self, now: i64, by_domain: bool) -> Result<Vec<QueueStats>> {
        self.read(move |c| queue::stats(c, now, by_domain)).await
    }

    async fn controls(&self) -> Result<Vec<Control>> {
        self.read(queue::controls).await
    }
}

impl Admin for SqliteStore {
    async fn queue_list(&self) -> Result<Vec<QueuedMessage>> {
        self.read(|c| {
            let ids: Vec<MessageId> = c
                .prepare(
                    "SELECT DISTINCT message_id FROM recipients WHERE state NOT IN ('delivered', 'bounced', 'deleted')
                     ORDER BY message_id",
                )?
                .query_map([], |r| parsed(r, 0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.extend(load_queued(c, id)?);
            }
            Ok(out)
        })
        .await
    }

    async fn queue_show(&self, id: MessageId) -> Result<Option<QueuedMessage>> {
        self.read(move |c| load_queued(c, id)).await
    }

    async fn queue_retry(&self, id: Option<MessageId>, now: i64, actor: &str) -> Result<u64> {
        let actor = actor.to_string();
        self.write(move |c| queue::retry(c, id, now, &actor)).await
    }

    async fn queue_hold(&self, id: MessageId, now: i64, actor: &str) -> Result<u64> {
        let actor = actor.to_string();
        self.write(move |c| queue::hold(c, id, now, &actor)).await
    }

    async fn queue_release(&self, id: MessageId, now: i64, actor: &str) -> Result<u64> {
        let actor = actor.to_string();
        self.write(move |c| queue::release(c, id, now, &actor)).await
    }

    async fn queue_delete(&self, id: MessageId, now: i64, actor: &str, notices: Vec<NewMessage>) -> Result<u64> {
        let actor = actor.to_string();
        self.write(move |c| queue::delete(c, id, now, &actor, &notices)).await
    }

    async fn audit_log(&self, id: Option<MessageId>) -> Result<Vec<AuditRecord>> {
        self.read(move |c| queue::audit_log(c, id)).await
    }

    async fn set_control(&self, key: &ControlKey, value: Option<&str>, now: i64, actor: &str) -> Result<()> {
        let (key, value, actor) = (key.clone(), value.map(str::to_string), actor.to_string());
        self.write(move |c| queue::set_control(c, &key, value.as_deref(), now, &actor)).await
    }

    async fn write_probe(&self, now: i64) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO write_probe (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                [now],
            )?;
            Ok(())
        })
        .await
    }

    async fn housekeeping(&self, now: i64, finished_before: i64, from: Sweep) -> Result<Housekeeping> {
        self.write(move |c| queue::fold_counts(c, now)).await?;
        let upper = lifecycle::received_before(finished_before);
        let mut done = Housekeeping { more: true, ..Housekeeping::default() };
        let mut cursor = from.records;
        // A batch per write: other writers wait at most one batch.
        for _ in 0..lifecycle::ROUNDS {
            let (after, to) = (std::mem::take(&mut cursor), upper.clone());
            let (records, whole, next) = self.write(move |c| queue::purge(c, &after, &to, finished_before)).await?;
            done.records_removed += records;
            done.messages_removed += whole;
            match next {
                Some(next) => cursor = next,
                None => {
                    done.more = false;
                    break;
                }
            }
        }
        done.next.records = cursor;
        let mut cursor = from.messages;
        for _ in 0..lifecycle::MESSAGE_BATCHES {
            let after = std::mem::take(&mut cursor);
            let (whole, next) = self.write(move |c| queue::sweep_messages(c, &after)).await?;
            done.messages_removed += whole;
            cursor = next;
            if cursor.is_empty() {
                break;
            }
        }
        done.next.messages = cursor;
        Ok(done)
    }

    async fn check(&self, repair: bool) -> Result<CheckReport> {
        let now = self.now();
        // Looked for on a read connection (writers go on meanwhile, however
        // long SQLite takes to read every page); the writer is entered only
        // when there is something to repair, and the repairs look again.
        let mut report = self.read(move |c| check::run(c, false, now, true)).await?;
        let now = self.now();
        report.findings.extend(self.read(move |c| check::counts(c, false, now)).await?);
        let (damage, repairable): (Vec<_>, Vec<_>) =
            report.findings.iter().cloned().partition(|f| f.invariant == check::FILE);
        if repair && !repairable.is_empty() {
            let now = self.now();
            report = self
                .write(move |c| {
                    let mut r = check::run(c, true, now, false)?;
                    r.findings.extend(check::counts(c, true, now)?);
                    Ok(r)
                })
                .await?;
            report.findings.extend(damage);
        }
        Ok(report)
    }
}

impl Cluster for SqliteStore {
    fn node(&self) -> &str {
        &self.node
    }

    async fn join(&self, region: &str, version: &str, delivers: bool, now: i64) -> Result<()> {
        let (node, region, version) = (self.node.to_string(), region.to_string(), version.to_string());
        self.write(move |c| {
            c.execute(
                "INSERT INTO nodes (name, region, version, started_at, heartbeat_at, delivers)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET region = excluded.region, version = excluded.version,
                     started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL,
                     delivers = excluded.delivers",
                params![node, region, version, now, delivers],
            )?;
            Ok(())
        })
        .await
    }

    async fn heartbeat(&self, now: i64) -> Result<()> {
        let node = self.node.to_string();
        self.write(move |c| {
            c.execute("UPDATE nodes SET heartbeat_at = ?2 WHERE name = ?1", params![node, now])?;
            Ok(())
        })
        .await
    }

    async fn leave(&self, now: i64) -> Result<()> {
        let node = self.node.to_string();
        self.write(move |c| {
            c.execute("UPDATE nodes SET heartbeat_at = ?2, stopped_at = ?2 WHERE name = ?1", params![node, now])?;
            Ok(())
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.read(|c| {
            let mut s = c.prepare(
                "SELECT name, region, version, started_at, heartbeat_at, stopped_at, delivers FROM nodes ORDER BY name",
            )?;
            let rows = s.query_map([], |r| {
                Ok(NodeRecord {
                    name: r.get(0)?,
                    region: r.get(1)?,
                    version: r.get(2)?,
                    started_at: r.get(3)?,
                    heartbeat_at: r.get(4)?,
                    stopped_at: r.get(5)?,
                    delivers: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
