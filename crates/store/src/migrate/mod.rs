//! `facteur migrate`: copy a SQLite database into a PostgreSQL schema, so a
//! single node can move onto PostgreSQL and be joined by others.
//!
//! - **The source is never written**: the file is opened read-only, not
//!   through [`crate::sqlite::SqliteStore`] (which migrates schemas), and
//!   only a database at this binary's schema version is copied.
//! - **The target is made the ordinary way** ([`crate::postgres::PgStore::create`]); one that
//!   already holds data is refused unless that data is an unfinished
//!   migration of this same source (see [`source::Source::identity`]).
//! - **Resumable**: tables are copied in key order, in chunks (1,000 rows
//!   or 8 MiB, whichever comes first); each chunk is one PostgreSQL
//!   transaction with its progress row (`migrate_progress`, PostgreSQL
//!   schema 6), so after a kill a rerun continues after the last chunk
//!   committed and copies no row twice.
//! - **Verified**: per table, the row count and a SHA-256 over every row in
//!   key order (every body included), computed in Rust from one canonical
//!   encoding of the values as PostgreSQL types, on both sides; the run is
//!   marked finished only when every table matches.
//!
//! Tables: those both schemas have, minus `meta` (each backend its own
//! version), `write_probe` (readiness scratch), `nodes` (a PostgreSQL
//! deployment registers its nodes as they start) and `queue_counts` (the
//! triggers count the recipients as they are copied in); columns: those both
//! tables have. Recipients' leases are cleared (no node holds anything).

mod cell;
mod source;
mod target;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio_postgres::types::Type;

use crate::postgres::PgConfig;
use crate::{Clock, Result, StoreError, SystemClock};
use cell::Kind;
use source::{Chunk, Limits, Source, SourceTable};
use target::{TableProgress, Target, TargetTable};

/// Tables not copied, and why (for the summary).
pub const SKIPPED: &[(&str, &str)] = &[
    ("meta", "each backend records its own schema version"),
    ("write_probe", "the readiness probe's scratch row"),
    ("nodes", "a PostgreSQL deployment registers its nodes as they start"),
    ("queue_counts", "kept by triggers: the recipients copied in are counted as they arrive"),
];

/// Columns copied as NULL: nothing is held by a node after a migration.
const CLEARED: &[(&str, &str)] = &[("recipients", "lease_until"), ("recipients", "lease_owner")];

/// Copy order: a table after those it refers to. Tables not named here
/// (added by a later schema) come after, by name.
const ORDER: &[&str] = &[
    "domains",
    "sender_grants",
    "aliases",
    "secrets",
    "mailboxes",
    "uid_counters",
    "uidvalidity_floor",
    "subscriptions",
    "controls",
    "audit",
    "messages",
    "message_bodies",
    "mailbox_messages",
    // After the mailbox entries: PostgreSQL's trigger adds each entry to its
    // user's usage as it arrives, which must find no user row yet (the
    // users come with the usage SQLite counted).
    "users",
    "recipients",
    "attempts",
    "incidents",
    "incident_updates",
];

/// What to copy where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The SQLite database file.
    pub source: PathBuf,
    /// The PostgreSQL database and schema.
    pub target: PgConfig,
    /// A chunk (one transaction) holds at most this many rows...
    pub chunk_rows: usize,
    /// ...or about this many octets of values, whichever comes first.
    pub chunk_bytes: usize,
}

impl Options {
    pub fn new(source: PathBuf, target: PgConfig) -> Options {
        Options { source, target, chunk_rows: 1000, chunk_bytes: 8 << 20 }
    }
}

/// One table's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableReport {
    pub table: String,
    pub source_rows: u64,
    pub target_rows: u64,
    pub source_digest: String,
    pub target_digest: String,
    /// Rows this run copied (the rest were copied by an interrupted run).
    pub copied_rows: u64,
    /// Octets of values this run copied.
    pub copied_bytes: u64,
}

impl TableReport {
    pub fn matches(&self) -> bool {
        self.source_rows == self.target_rows && self.source_digest == self.target_digest
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Which SQLite database (see [`source::Source::identity`]).
    pub source_id: String,
    /// The PostgreSQL schema written.
    pub schema: String,
    /// user@host:port/database, no password.
    pub location: String,
    pub tables: Vec<TableReport>,
    /// Tables and columns not copied, and why.
    pub notes: Vec<String>,
    /// An earlier run had already copied and verified everything; nothing
    /// was done now (`tables` is that run's report).
    pub already_done: bool,
    /// This run continued an interrupted one.
    pub resumed: bool,
    /// Seconds spent copying and verifying, in this run.
    pub copy_secs: f64,
    pub verify_secs: f64,
}

impl Report {
    /// Every table has the same rows on both sides.
    pub fn verified(&self) -> bool {
        self.tables.iter().all(TableReport::matches)
    }

    pub fn mismatches(&self) -> Vec<&str> {
        self.tables.iter().filter(|t| !t.matches()).map(|t| t.table.as_str()).collect()
    }

    pub fn copied_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.copied_rows).sum()
    }

    pub fn copied_bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.copied_bytes).sum()
    }
}

/// What the operator sees while it runs; every method has a silent default.
pub trait Progress {
    /// Copying `table` (`done` rows of `total` are in the target); called
    /// when it starts and after every chunk committed.
    fn copying(&mut self, _table: &str, _done: u64, _total: u64) {}
    /// `table` is complete in the target.
    fn copied(&mut self, _table: &str, _rows: u64) {}
    fn verifying(&mut self, _table: &str, _rows: u64) {}
    fn verified(&mut self, _report: &TableReport) {}
}

/// A quiet [`Progress`].
pub struct Silent;
impl Progress for Silent {}

/// The schema version of the SQLite database at `path`, read without
/// writing anything.
pub fn source_version(path: &std::path::Path) -> Result<u32> {
    Source::open(path)?.version()
}

/// A table to copy: the columns both sides have, as PostgreSQL types them.
#[derive(Debug, Clone)]
pub(crate) struct TablePlan {
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    /// The source's primary key; empty: its rowid.
    pub(crate) source_key: Vec<String>,
    /// ORDER BY on the target that lists rows in the source's key order.
    pub(crate) target_order: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) ty: Type,
    /// Copied as NULL.
    pub(crate) cleared: bool,
}

/// An identifier quoted for SQL (SQLite and PostgreSQL alike).
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A PostgreSQL URL with its password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    // postgres://user:password@host/...
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.rsplit_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    // key=value form: password=...
    url.split_whitespace()
        .map(|kv| if kv.starts_with("password=") { "password=***" } else { kv })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which tables and columns to copy, in which order; and what is left out.
fn plan(source: &[SourceTable], target: &HashMap<String, TargetTable>) -> Result<(Vec<TablePlan>, Vec<String>)> {
    let mut notes = Vec::new();
    let mut plans = Vec::new();
    for (table, why) in SKIPPED {
        if source.iter().any(|t| t.name == *table) {
            notes.push(format!("table {table} not copied: {why}"));
        }
    }
    for s in source.iter().filter(|s| !SKIPPED.iter().any(|k| k.0 == s.name)) {
        let Some(t) = target.get(&s.name) else {
            notes.push(format!("table {} not copied: PostgreSQL has no such table", s.name));
            continue;
        };
        let mut columns = Vec::new();
        for name in &s.columns {
            let Some(tc) = t.columns.iter().find(|c| &c.name == name) else {
                notes.push(format!("column {}.{name} not copied: PostgreSQL has no such column", s.name));
                continue;
            };
            let kind = Kind::of(&tc.ty).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "column {}.{name} is of PostgreSQL type {}, which migrate cannot fill from SQLite",
                    s.name, tc.ty
                ))
            })?;
            let cleared = CLEARED.contains(&(s.name.as_str(), name.as_str()));
            if cleared {
                notes.push(format!("column {}.{name} copied as NULL: leases are not carried over", s.name));
            }
            columns.push(Column { name: name.clone(), kind, ty: tc.ty.clone(), cleared });
        }
        // A column PostgreSQL needs and SQLite cannot give.
        if let Some(c) =
            t.columns.iter().find(|c| !c.nullable && !c.has_default && !s.columns.iter().any(|n| n == &c.name))
        {
            return Err(StoreError::Invalid(format!(
                "column {}.{} in PostgreSQL has no default and no counterpart in the SQLite database",
                s.name, c.name
            )));
        }
        let kind_of = |name: &str| t.columns.iter().find(|c| c.name == name).and_then(|c| Kind::of(&c.ty));
        let order_by = |keys: &[String]| {
            keys.iter()
                .map(|k| {
                    if kind_of(k).is_some_and(Kind::is_text) { format!("{} COLLATE \"C\"", ident(k)) } else { ident(k) }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let target_order = if !s.key.is_empty() && s.key.iter().all(|k| columns.iter().any(|c| &c.name == k)) {
            order_by(&s.key)
        } else if s.key.is_empty()
            && !t.primary_key.is_empty()
            && t.primary_key.iter().all(|k| !s.columns.contains(k) && kind_of(k).is_some_and(|k| !k.is_text()))
        {
            // Rows without a key in SQLite (rowid order) get a serial key
            // in PostgreSQL, given in the order they are copied.
            order_by(&t.primary_key)
        } else {
            return Err(StoreError::Invalid(format!(
                "table {}: cannot list its rows in the same order on both sides (SQLite key {:?}, PostgreSQL key {:?})",
                s.name, s.key, t.primary_key
            )));
        };
        plans.push(TablePlan { name: s.name.clone(), columns, source_key: s.key.clone(), target_order });
    }
    let rank = |name: &str| ORDER.iter().position(|o| *o == name).unwrap_or(ORDER.len());
    plans.sort_by(|a, b| rank(&a.name).cmp(&rank(&b.name)).then_with(|| a.name.cmp(&b.name)));
    Ok((plans, notes))
}

/// Copy (or continue copying) the SQLite database into the PostgreSQL
/// schema, verify, and mark it finished. A mismatch is not an error: the
/// report says which tables differ ([`Report::verified`]).
pub async fn run(options: &Options, progress: &mut dyn Progress) -> Result<Report> {
    let mut source = Source::open(&options.source)?;
    let (found, known) = (source.version()?, crate::sqlite::latest_version());
    if found != known {
        return Err(StoreError::Preflight(format!(
            "the SQLite database {} is at schema version {found}; this facteur copies version {known} only",
            options.source.display()
        )));
    }
    source.quick_check()?;
    let source_tables = source.tables()?;
    let source_id = source.identity(&source_tables)?;

    let mut target = Target::connect(&options.target).await?;
    target.prepare_schema(&options.target).await?;
    let schema = target.schema().await?;
    target.lock().await?;
    let now = SystemClock.now();
    let live = target.live_nodes(now, 30).await?;
    if !live.is_empty() {
        return Err(StoreError::Invalid(format!(
            "schema {schema} on {} is in use: node(s) {} beat within the last 30 s; stop them before migrating into it",
            target.location,
            live.join(", ")
        )));
    }
    let (plans, notes) = plan(&source_tables, &target.tables().await?)?;
    let mut report = Report {
        source_id: source_id.clone(),
        schema: schema.clone(),
        location: target.location.clone(),
        tables: Vec::new(),
        notes,
        already_done: false,
        resumed: false,
        copy_secs: 0.0,
        verify_secs: 0.0,
    };

    let runs = target.runs().await?;
    match runs.iter().find(|r| r.source_id == source_id) {
        Some(r) if r.finished_at.is_some() => {
            report.already_done = true;
            report.tables = r.summary.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
            return Ok(report);
        }
        Some(_) => report.resumed = true,
        None => {
            if let Some(other) = runs.first() {
                return Err(StoreError::Invalid(format!(
                    "schema {schema} on {} holds a migration of another SQLite database ({}, source id {}, {}); \
                     migrate into an empty schema, or drop this one",
                    target.location,
                    other.source,
                    &other.source_id[..16.min(other.source_id.len())],
                    if other.finished_at.is_some() { "finished" } else { "unfinished" }
                )));
            }
            let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
            let full = target.non_empty(&names).await?;
            if !full.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "schema {schema} on {} already holds facteur data (tables {}) that no unfinished migration \
                     of this database put there; migrate into an empty schema",
                    target.location,
                    full.join(", ")
                )));
            }
            target.start_run(&source_id, &source.path().display().to_string(), now).await?;
        }
    }

    // Copy.
    let limits = Limits { rows: options.chunk_rows.max(1), bytes: options.chunk_bytes.max(1) };
    let mut done_before = target.progress(&source_id).await?;
    let started = Instant::now();
    let mut copied: HashMap<String, (u64, u64)> = HashMap::new();
    for plan in &plans {
        let p = done_before.remove(&plan.name).unwrap_or_default();
        if p.done {
            progress.copied(&plan.name, p.rows_done);
            continue;
        }
        let (back, done) = copy_table(source, &mut target, plan, p, &source_id, limits, progress).await?;
        source = back;
        copied.insert(plan.name.clone(), done);
    }
    report.copy_secs = started.elapsed().as_secs_f64();

    // Verify.
    let started = Instant::now();
    for plan in &plans {
        let (back, mut t) = verify_table(source, &mut target, plan, progress).await?;
        source = back;
        (t.copied_rows, t.copied_bytes) = copied.get(&plan.name).copied().unwrap_or_default();
        progress.verified(&t);
        report.tables.push(t);
    }
    report.verify_secs = started.elapsed().as_secs_f64();
    if report.verified() {
        let summary = serde_json::to_string(&report.tables).map_err(|e| StoreError::Internal(e.to_string()))?;
        target.finish(&source_id, SystemClock.now(), &summary).await?;
    }
    Ok(report)
}

/// Copy what is left of one table (after `p`): SQLite reads the next chunk
/// while PostgreSQL commits this one. The source comes back with the
/// (rows, octets) copied now.
async fn copy_table(
    source: Source,
    target: &mut Target,
    plan: &TablePlan,
    mut p: TableProgress,
    source_id: &str,
    limits: Limits,
    progress: &mut dyn Progress,
) -> Result<(Source, (u64, u64))> {
    let total = source.count(&plan.name)?.max(p.rows_done);
    progress.copying(&plan.name, p.rows_done, total);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(2);
    let (reader_plan, after) = (plan.clone(), p.last_key.clone());
    let reader = tokio::task::spawn_blocking(move || {
        let r = source.read(&reader_plan, after.as_deref(), limits, &mut |c| tx.blocking_send(c).is_ok());
        (source, r)
    });
    let mut written: Result<()> = Ok(());
    let (mut rows, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = rx.recv().await {
        let next = TableProgress {
            last_key: chunk.last_key.clone().or(p.last_key.clone()),
            rows_done: p.rows_done + chunk.rows.len() as u64,
            done: chunk.last,
        };
        if let Err(e) = target.write_chunk(plan, &chunk, source_id, &next).await {
            written = Err(e);
            break;
        }
        rows += chunk.rows.len() as u64;
        bytes += chunk.bytes as u64;
        p = next;
        progress.copying(&plan.name, p.rows_done, total.max(p.rows_done));
    }
    // A reader waiting to hand over a chunk sees the channel closed.
    drop(rx);
    let (source, read) = reader.await.map_err(|e| StoreError::Internal(format!("the SQLite reader stopped: {e}")))?;
    written?;
    read?;
    progress.copied(&plan.name, p.rows_done);
    Ok((source, (rows, bytes)))
}

/// Both sides of one table digested at once.
async fn verify_table(
    source: Source,
    target: &mut Target,
    plan: &TablePlan,
    progress: &mut dyn Progress,
) -> Result<(Source, TableReport)> {
    let rows = source.count(&plan.name)?;
    progress.verifying(&plan.name, rows);
    let reader_plan = plan.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let d = source.digest(&reader_plan);
        (source, d)
    });
    let theirs = target.digest(plan).await;
    let (source, ours) = reader.await.map_err(|e| StoreError::Internal(format!("the SQLite reader stopped: {e}")))?;
    let ((source_rows, source_digest), (target_rows, target_digest)) = (ours?, theirs?);
    let report = TableReport {
        table: plan.name.clone(),
        source_rows,
        target_rows,
        source_digest,
        target_digest,
        copied_rows: 0,
        copied_bytes: 0,
    };
    Ok((source, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_do_not_show() {
        assert_eq!(redact("postgres://u:secret@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(redact("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact("host=db password=secret user=u"), "host=db password=*** user=u");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("users"), "\"users\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
