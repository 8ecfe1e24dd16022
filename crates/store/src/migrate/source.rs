//! The SQLite side: the database file opened read-only (never through
//! [`crate::sqlite::SqliteStore`], which would migrate its schema), its
//! tables and keys, its identity, and its rows in key order.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cell::{Cell, TableDigest, hex};
use super::{TablePlan, ident};
use crate::{Result, StoreError};

/// One value of a row's key, as kept in `migrate_progress.last_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum KeyVal {
    Int(i64),
    Text(String),
}

impl KeyVal {
    fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> std::result::Result<KeyVal, String> {
        match v {
            rusqlite::types::ValueRef::Integer(i) => Ok(KeyVal::Int(i)),
            rusqlite::types::ValueRef::Text(t) => {
                String::from_utf8(t.to_vec()).map(KeyVal::Text).map_err(|_| "a key that is not UTF-8".into())
            }
            other => Err(format!("a key of type {:?} (only integers and text are keys here)", other.data_type())),
        }
    }

    fn to_sqlite(&self) -> rusqlite::types::Value {
        match self {
            KeyVal::Int(i) => rusqlite::types::Value::Integer(*i),
            KeyVal::Text(t) => rusqlite::types::Value::Text(t.clone()),
        }
    }
}

/// A table as SQLite has it.
#[derive(Debug, Clone)]
pub(crate) struct SourceTable {
    pub(crate) name: String,
    pub(crate) columns: Vec<String>,
    /// Primary key columns in key order; empty: the table has none and is
    /// read in rowid order.
    pub(crate) key: Vec<String>,
}

/// Rows sent to the writer together: one PostgreSQL transaction.
pub(crate) struct Chunk {
    pub(crate) rows: Vec<Vec<Cell>>,
    /// The key of the last row (`None` for an empty chunk).
    pub(crate) last_key: Option<Vec<KeyVal>>,
    pub(crate) bytes: usize,
    /// The table has no rows after this chunk.
    pub(crate) last: bool,
}

/// How big a chunk grows: whichever limit comes first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) rows: usize,
    pub(crate) bytes: usize,
}

pub(crate) struct Source {
    conn: Connection,
    path: PathBuf,
}

impl Source {
    /// Open read-only: SQLite writes nothing to the file (a WAL left by a
    /// killed server is read, not checkpointed into it).
    pub(crate) fn open(path: &Path) -> Result<Source> {
        if !path.is_file() {
            return Err(StoreError::Preflight(format!("no SQLite database at {}", path.display())));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| {
            StoreError::Preflight(format!("cannot open the SQLite database {} read-only: {e}", path.display()))
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(Source { conn, path: path.to_path_buf() })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `meta.schema_version` (0: not a facteur database).
    pub(crate) fn version(&self) -> Result<u32> {
        crate::sqlite::current_version(&self.conn)
    }

    /// SQLite's own check of the file, as `facteur serve` runs it first.
    pub(crate) fn quick_check(&self) -> Result<()> {
        let qc: String = self.conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if qc != "ok" {
            return Err(StoreError::Preflight(format!(
                "SQLite quick_check reports damage in {}: {qc}",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Every table, its columns and primary key.
    pub(crate) fn tables(&self) -> Result<Vec<SourceTable>> {
        let mut names = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")?;
        let names: Vec<String> = names.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        let mut info = self.conn.prepare("SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid")?;
        let mut out = Vec::new();
        for name in names {
            let cols: Vec<(String, u32)> =
                info.query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            let mut key: Vec<&(String, u32)> = cols.iter().filter(|c| c.1 > 0).collect();
            key.sort_by_key(|c| c.1);
            out.push(SourceTable {
                key: key.iter().map(|c| c.0.clone()).collect(),
                columns: cols.iter().map(|c| c.0.clone()).collect(),
                name,
            });
        }
        Ok(out)
    }

    /// Which database this is, without writing anything into it: SHA-256
    /// of the `meta` table and of the first row (in key order) of
    /// `domains`, `users`, `mailboxes` and `messages` — creation times,
    /// UIDVALIDITYs and a UUIDv7 message id, which no other database
    /// shares. Neither the path nor the size is part of it (a data folder
    /// may be moved; a WAL checkpoint changes the size).
    pub(crate) fn identity(&self, tables: &[SourceTable]) -> Result<String> {
        let mut h = Sha256::new();
        h.update(b"facteur-migrate-source-v1\n");
        for name in ["meta", "domains", "users", "mailboxes", "messages"] {
            let Some(t) = tables.iter().find(|t| t.name == name) else { continue };
            let order = key_exprs(t).join(", ");
            let limit = if name == "meta" { "" } else { " LIMIT 1" };
            let sql = format!("SELECT * FROM {} ORDER BY {order}{limit}", ident(name));
            let mut st = self.conn.prepare(&sql)?;
            let n = st.column_count();
            let mut rows = st.query([])?;
            h.update(name.as_bytes());
            while let Some(r) = rows.next()? {
                for i in 0..n {
                    match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => h.update([0]),
                        rusqlite::types::ValueRef::Integer(v) => {
                            h.update([1]);
                            h.update(v.to_be_bytes());
                        }
                        rusqlite::types::ValueRef::Real(v) => {
                            h.update([2]);
                            h.update(v.to_bits().to_be_bytes());
                        }
                        rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                            h.update([3]);
                            h.update((b.len() as u64).to_be_bytes());
                            h.update(b);
                        }
                    }
                }
            }
        }
        Ok(hex(&h.finalize()))
    }

    pub(crate) fn count(&self, table: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(&format!("SELECT count(*) FROM {}", ident(table)), [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// The rows of `plan` after `after` (every row: `None`), in key order,
    /// handed to `send` in chunks; stops early when `send` says false.
    pub(crate) fn read(
        &self,
        plan: &TablePlan,
        after: Option<&[KeyVal]>,
        limits: Limits,
        send: &mut dyn FnMut(Chunk) -> bool,
    ) -> Result<()> {
        let keys = plan_key_exprs(plan);
        let mut sql = format!("SELECT {}, {} FROM {}", keys.join(", "), columns(plan), ident(&plan.name));
        let params: Vec<rusqlite::types::Value> = after.unwrap_or_default().iter().map(KeyVal::to_sqlite).collect();
        if after.is_some() {
            if params.len() != keys.len() {
                return Err(StoreError::Invalid(format!(
                    "the progress recorded for table {} has a key of {} value(s), the table's has {}",
                    plan.name,
                    params.len(),
                    keys.len()
                )));
            }
            let marks = vec!["?"; keys.len()].join(", ");
            sql.push_str(&format!(" WHERE ({}) > ({marks})", keys.join(", ")));
        }
        sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(params))?;
        let mut chunk = Chunk { rows: Vec::new(), last_key: None, bytes: 0, last: false };
        while let Some(r) = rows.next()? {
            let key = (0..keys.len())
                .map(|i| KeyVal::from_sqlite(r.get_ref(i)?).map_err(|why| bad_row(plan, &keys[i], &[], &why)))
                .collect::<Result<Vec<_>>>()?;
            let row = row_cells(plan, r, keys.len(), &key)?;
            chunk.bytes += row.iter().map(Cell::size).sum::<usize>();
            chunk.rows.push(row);
            chunk.last_key = Some(key);
            if chunk.rows.len() >= limits.rows || chunk.bytes >= limits.bytes {
                let full =
                    std::mem::replace(&mut chunk, Chunk { rows: Vec::new(), last_key: None, bytes: 0, last: false });
                if !send(full) {
                    return Ok(());
                }
            }
        }
        chunk.last = true;
        send(chunk);
        Ok(())
    }

    /// (rows, digest) of the whole table, as the target's rows must be.
    pub(crate) fn digest(&self, plan: &TablePlan) -> Result<(u64, String)> {
        let keys = plan_key_exprs(plan);
        let sql = format!(
            "SELECT {}, {} FROM {} ORDER BY {}",
            keys.join(", "),
            columns(plan),
            ident(&plan.name),
            keys.join(", ")
        );
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query([])?;
        let names: Vec<&str> = plan.columns.iter().map(|c| c.name.as_str()).collect();
        let mut d = TableDigest::new(&plan.name, &names);
        while let Some(r) = rows.next()? {
            d.add(&row_cells(plan, r, keys.len(), &[])?);
        }
        Ok(d.finish())
    }
}

/// The columns of `plan` as a select list.
fn columns(plan: &TablePlan) -> String {
    plan.columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ")
}

fn key_exprs(t: &SourceTable) -> Vec<String> {
    if t.key.is_empty() { vec!["rowid".into()] } else { t.key.iter().map(|k| ident(k)).collect() }
}

fn plan_key_exprs(plan: &TablePlan) -> Vec<String> {
    if plan.source_key.is_empty() { vec!["rowid".into()] } else { plan.source_key.iter().map(|k| ident(k)).collect() }
}

/// The data columns of `r` (after `skip` key columns), converted; cleared
/// columns are NULL whatever SQLite holds.
fn row_cells(plan: &TablePlan, r: &rusqlite::Row<'_>, skip: usize, key: &[KeyVal]) -> Result<Vec<Cell>> {
    plan.columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if c.cleared {
                return Ok(Cell::null(c.kind));
            }
            Cell::from_sqlite(c.kind, r.get_ref(skip + i)?).map_err(|why| bad_row(plan, &c.name, key, &why))
        })
        .collect()
}

fn bad_row(plan: &TablePlan, column: &str, key: &[KeyVal], why: &str) -> StoreError {
    let key = serde_json::to_string(key).unwrap_or_default();
    StoreError::Invalid(format!("table {}, column {column}, row with key {key}: {why}", plan.name))
}
