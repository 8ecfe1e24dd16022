//! The PostgreSQL side: one connection of migrate's own (no statement
//! timeout: a chunk of bodies may take a while), the schema made by the
//! ordinary path ([`PgStore::create`]), the tables' columns and types,
//! chunks written with binary COPY in one transaction with their progress,
//! and the rows read back in key order for the digests.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::cell::{Cell, TableDigest};
use super::source::{Chunk, KeyVal};
use super::{TablePlan, ident};
use crate::postgres::{PgConfig, PgStore};
use crate::{Result, StoreError, SystemClock};

/// A PostgreSQL column: name, type, and whether an insert may leave it out.
#[derive(Debug, Clone)]
pub(crate) struct TargetColumn {
    pub(crate) name: String,
    pub(crate) ty: Type,
    pub(crate) nullable: bool,
    pub(crate) has_default: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct TargetTable {
    pub(crate) columns: Vec<TargetColumn>,
    pub(crate) primary_key: Vec<String>,
}

/// A migration of one source recorded in the target.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) source_id: String,
    pub(crate) source: String,
    pub(crate) finished_at: Option<i64>,
    pub(crate) summary: Option<String>,
}

/// How far one table got.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableProgress {
    pub(crate) last_key: Option<Vec<KeyVal>>,
    pub(crate) rows_done: u64,
    pub(crate) done: bool,
}

pub(crate) struct Target {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
    /// host:port/database, for people (no password).
    pub(crate) location: String,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn db(e: tokio_postgres::Error) -> StoreError {
    crate::postgres::db(e)
}

impl Target {
    pub(crate) async fn connect(config: &PgConfig) -> Result<Target> {
        let mut pg: tokio_postgres::Config = config.url.parse().map_err(|e| {
            StoreError::Invalid(format!("{:?} is not a PostgreSQL URL: {e}", super::redact(&config.url)))
        })?;
        let mut options = "-c statement_timeout=0 -c synchronous_commit=on".to_string();
        if let Some(schema) = &config.schema {
            // The same rule as PgStore's: the name goes into search_path.
            if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::Invalid(format!("schema {schema:?} must be letters, digits and _ only")));
            }
            options.push_str(&format!(" -c search_path={schema}"));
        }
        pg.options(&options);
        pg.application_name("facteur migrate");
        pg.connect_timeout(std::time::Duration::from_secs(10));
        let host = pg
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let location = format!("{}@{host}:{port}/{}", pg.get_user().unwrap_or("-"), pg.get_dbname().unwrap_or("-"));
        let (client, connection) = pg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL at {location}: {e}")))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "migrate's PostgreSQL connection ended");
            }
        });
        Ok(Target { client, driver, location })
    }

    /// The schema the tables are in (`current_schema()`), once it exists.
    pub(crate) async fn schema(&self) -> Result<String> {
        let row = self.client.query_one("SELECT current_schema()::TEXT", &[]).await.map_err(db)?;
        Ok(row.get::<_, Option<String>>(0).unwrap_or_else(|| "(none)".into()))
    }

    /// The facteur schema version of the target (0: no facteur tables).
    async fn version(&self) -> Result<u32> {
        if !self.has_table("meta").await? {
            return Ok(0);
        }
        let v: Option<String> = self
            .client
            .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
            .await
            .map_err(db)?
            .map(|r| r.get(0));
        v.and_then(|v| v.parse().ok()).ok_or_else(|| {
            StoreError::Preflight("the target has a table `meta` without a schema_version: not facteur's".into())
        })
    }

    async fn has_table(&self, name: &str) -> Result<bool> {
        Ok(self
            .client
            .query_opt(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
                &[&name],
            )
            .await
            .map_err(db)?
            .is_some())
    }

    /// Make facteur's tables the ordinary way when there are none; accept
    /// a schema at this binary's version; refuse any other.
    pub(crate) async fn prepare_schema(&self, config: &PgConfig) -> Result<()> {
        let known = crate::postgres::latest_version();
        match self.version().await? {
            0 => {
                // Its own pool, listener and writers, all gone with it.
                let store = PgStore::create(config, Arc::new(SystemClock)).await?;
                drop(store);
                Ok(())
            }
            v if v == known => Ok(()),
            v if v > known => Err(StoreError::SchemaTooNew { found: v, known }),
            v => Err(StoreError::Preflight(format!(
                "schema {} on {} is at facteur's PostgreSQL schema version {v}, this facteur's is {known}: \
                 migrate into an empty schema (or one this facteur made)",
                self.schema().await?,
                self.location
            ))),
        }
    }

    /// One migrate per schema at a time (a session lock, gone with the
    /// connection, a killed migrate's too).
    pub(crate) async fn lock(&self) -> Result<()> {
        let got: bool = self
            .client
            .query_one("SELECT pg_try_advisory_lock(hashtext('facteur-migrate:' || current_schema()))", &[])
            .await
            .map_err(db)?
            .get(0);
        if !got {
            return Err(StoreError::Invalid(format!(
                "another facteur migrate is writing into schema {} on {}; wait for it to end",
                self.schema().await?,
                self.location
            )));
        }
        Ok(())
    }

    /// Nodes with a heartbeat in the last `secs` seconds and no goodbye.
    pub(crate) async fn live_nodes(&self, now: i64, secs: i64) -> Result<Vec<String>> {
        if !self.has_table("nodes").await? {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .query(
                "SELECT name FROM nodes WHERE stopped_at IS NULL AND heartbeat_at > $1 ORDER BY name",
                &[&(now - secs)],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Every table of the schema with its columns (types as the server
    /// describes them) and primary key.
    pub(crate) async fn tables(&self) -> Result<HashMap<String, TargetTable>> {
        let rows = self
            .client
            .query(
                "SELECT c.table_name::TEXT, c.column_name::TEXT, c.is_nullable = 'YES',
                        c.column_default IS NOT NULL OR c.is_identity = 'YES'
                 FROM information_schema.columns c
                 JOIN information_schema.tables t
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
                 WHERE c.table_schema = current_schema()
                 ORDER BY c.table_name, c.ordinal_position",
                &[],
            )
            .await
            .map_err(db)?;
        let mut out: HashMap<String, TargetTable> = HashMap::new();
        for r in &rows {
            let table: String = r.get(0);
            out.entry(table)
                .or_insert_with(|| TargetTable { columns: Vec::new(), primary_key: Vec::new() })
                .columns
                .push(TargetColumn { name: r.get(1), ty: Type::TEXT, nullable: r.get(2), has_default: r.get(3) });
        }
        for (name, t) in out.iter_mut() {
            // The types as the server sends them.
            let st = self.client.prepare(&format!("SELECT * FROM {} LIMIT 0", ident(name))).await.map_err(db)?;
            for c in st.columns() {
                if let Some(tc) = t.columns.iter_mut().find(|tc| tc.name == c.name()) {
                    tc.ty = c.type_().clone();
                }
            }
            let pk = self
                .client
                .query(
                    "SELECT a.attname::TEXT FROM pg_index i
                     JOIN pg_class c ON c.oid = i.indrelid
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
                     WHERE n.nspname = current_schema() AND c.relname = $1 AND i.indisprimary
                     ORDER BY array_position(i.indkey::INT2[], a.attnum)",
                    &[name],
                )
                .await
                .map_err(db)?;
            t.primary_key = pk.iter().map(|r| r.get(0)).collect();
        }
        Ok(out)
    }

    pub(crate) async fn runs(&self) -> Result<Vec<Run>> {
        let rows = self
            .client
            .query("SELECT source_id, source, finished_at, summary FROM migrate_runs ORDER BY started_at", &[])
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| Run { source_id: r.get(0), source: r.get(1), finished_at: r.get(2), summary: r.get(3) })
            .collect())
    }

    /// The tables among `names` that hold at least one row.
    pub(crate) async fn non_empty(&self, names: &[&str]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in names {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", ident(n));
            if self.client.query_one(&sql, &[]).await.map_err(db)?.get::<_, bool>(0) {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }

    pub(crate) async fn start_run(&self, source_id: &str, source: &str, now: i64) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO migrate_runs (source_id, source, started_at) VALUES ($1, $2, $3)",
                &[&source_id, &source, &now],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn progress(&self, source_id: &str) -> Result<HashMap<String, TableProgress>> {
        let rows = self
            .client
            .query(
                "SELECT table_name, last_key, rows_done, done FROM migrate_progress WHERE source_id = $1",
                &[&source_id],
            )
            .await
            .map_err(db)?;
        let mut out = HashMap::new();
        for r in &rows {
            let table: String = r.get(0);
            let last_key = match r.get::<_, Option<String>>(1) {
                None => None,
                Some(k) => Some(serde_json::from_str(&k).map_err(|e| {
                    StoreError::Internal(format!("migrate_progress.last_key of table {table} is {k:?}: {e}"))
                })?),
            };
            let rows_done: i64 = r.get(2);
            out.insert(table, TableProgress { last_key, rows_done: rows_done.max(0) as u64, done: r.get(3) });
        }
        Ok(out)
    }

    /// One chunk: its rows (binary COPY), the table's progress, and when it
    /// is the table's last, the sequences past the ids copied — one
    /// transaction, so a chunk is there with its progress or not at all.
    pub(crate) async fn write_chunk(
        &mut self,
        plan: &TablePlan,
        chunk: &Chunk,
        source_id: &str,
        progress: &TableProgress,
    ) -> Result<()> {
        let tx = self.client.transaction().await.map_err(db)?;
        if !chunk.rows.is_empty() {
            let cols = plan.columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ");
            let sql = format!("COPY {} ({cols}) FROM STDIN (FORMAT binary)", ident(&plan.name));
            let sink = tx.copy_in(&sql).await.map_err(db)?;
            let types: Vec<Type> = plan.columns.iter().map(|c| c.ty.clone()).collect();
            let writer = BinaryCopyInWriter::new(sink, &types);
            let mut writer = std::pin::pin!(writer);
            for row in &chunk.rows {
                let values: Vec<&(dyn ToSql + Sync)> = row.iter().map(Cell::as_sql).collect();
                writer.as_mut().write(&values).await.map_err(|e| copy_error(plan, e))?;
            }
            writer.finish().await.map_err(|e| copy_error(plan, e))?;
        }
        let last_key = progress
            .last_key
            .as_ref()
            .map(|k| serde_json::to_string(k).map_err(|e| StoreError::Internal(format!("progress key: {e}"))))
            .transpose()?;
        tx.execute(
            "INSERT INTO migrate_progress (source_id, table_name, last_key, rows_done, done)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (source_id, table_name) DO UPDATE
             SET last_key = excluded.last_key, rows_done = excluded.rows_done, done = excluded.done",
            &[&source_id, &plan.name, &last_key, &(progress.rows_done as i64), &progress.done],
        )
        .await
        .map_err(db)?;
        if progress.done {
            set_sequences(&tx, &plan.name).await?;
        }
        tx.commit().await.map_err(db)
    }

    /// (rows, digest) of a table, read in the source's key order.
    pub(crate) async fn digest(&mut self, plan: &TablePlan) -> Result<(u64, String)> {
        let cols = plan.columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {cols} FROM {} ORDER BY {}", ident(&plan.name), plan.target_order);
        let names: Vec<&str> = plan.columns.iter().map(|c| c.name.as_str()).collect();
        let mut d = TableDigest::new(&plan.name, &names);
        let tx = self.client.transaction().await.map_err(db)?;
        let st = tx.prepare(&sql).await.map_err(db)?;
        // A portal: a few hundred rows in memory at a time, bodies included.
        let portal = tx.bind(&st, &[]).await.map_err(db)?;
        loop {
            let rows = tx.query_portal(&portal, 256).await.map_err(db)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let cells = plan
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Cell::from_pg(c.kind, r, i).map_err(db))
                    .collect::<Result<Vec<_>>>()?;
                d.add(&cells);
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(d.finish())
    }

    /// The run is complete: copied and verified.
    pub(crate) async fn finish(&self, source_id: &str, now: i64, summary: &str) -> Result<()> {
        self.client
            .execute(
                "UPDATE migrate_runs SET finished_at = $2, summary = $3 WHERE source_id = $1",
                &[&source_id, &now, &summary],
            )
            .await
            .map_err(db)?;
        Ok(())
    }
}

/// Every serial or identity column of `table` continues after the largest
/// id now in it (ids were copied explicitly; the sequence did not see them).
async fn set_sequences(tx: &tokio_postgres::Transaction<'_>, table: &str) -> Result<()> {
    let rows = tx
        .query(
            "SELECT column_name::TEXT, pg_get_serial_sequence(quote_ident(table_schema) || '.' || quote_ident(table_name), column_name)
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .await
        .map_err(db)?;
    for r in &rows {
        let (column, sequence): (String, Option<String>) = (r.get(0), r.get(1));
        let Some(sequence) = sequence else { continue };
        let sql = format!(
            "SELECT setval($1::TEXT::REGCLASS, COALESCE(max({c}), 1), max({c}) IS NOT NULL) FROM {t}",
            c = ident(&column),
            t = ident(table)
        );
        tx.query_one(&sql, &[&sequence]).await.map_err(db)?;
    }
    Ok(())
}

fn copy_error(plan: &TablePlan, e: tokio_postgres::Error) -> StoreError {
    match db(e) {
        StoreError::Backend(m) => StoreError::Backend(format!("copying table {}: {m}", plan.name)),
        other => other,
    }
}
