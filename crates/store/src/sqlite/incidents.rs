//! [`Incidents`] on SQLite: read the incident a change is about, ask
//! [`incidents::plan`], write what it says, in one job of the writer.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use crate::incidents::{self, Incident, IncidentChange, IncidentRow, IncidentUpdate, Target};
use crate::{Incidents, Result};

const ROW: &str = "SELECT id, component, title, severity, affected, opened_at, resolved_at FROM incidents";

fn row(r: &Row) -> rusqlite::Result<IncidentRow> {
    Ok(IncidentRow {
        id: r.get(0)?,
        component: r.get(1)?,
        title: r.get(2)?,
        severity: r.get(3)?,
        affected: r.get(4)?,
        opened_at: r.get(5)?,
        resolved_at: r.get(6)?,
    })
}

fn apply(c: &Connection, change: IncidentChange) -> Result<Option<i64>> {
    let found = match change.target() {
        Target::OpenFor(component) => {
            c.query_row(&format!("{ROW} WHERE component = ?1 AND resolved_at IS NULL"), [component], row).optional()?
        }
        Target::Id(id) => c.query_row(&format!("{ROW} WHERE id = ?1"), [id], row).optional()?,
    };
    let Some(plan) = incidents::plan(found, change)? else { return Ok(None) };
    let r = &plan.row;
    let id = if r.id == 0 {
        c.execute(
            "INSERT INTO incidents (component, title, severity, affected, opened_at, resolved_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![r.component, r.title, r.severity, r.affected, r.opened_at, r.resolved_at],
        )?;
        c.last_insert_rowid()
    } else {
        c.execute(
            "UPDATE incidents SET title = ?2, severity = ?3, affected = ?4, resolved_at = ?5 WHERE id = ?1",
            params![r.id, r.title, r.severity, r.affected, r.resolved_at],
        )?;
        r.id
    };
    let u = &plan.update;
    c.execute(
        "INSERT INTO incident_updates (incident_id, seq, at, kind, text, author)
         SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5 FROM incident_updates WHERE incident_id = ?1",
        params![id, u.at, u.kind, u.text, u.author],
    )?;
    Ok(Some(id))
}

fn updates(c: &Connection, id: i64) -> Result<Vec<IncidentUpdate>> {
    let mut st =
        c.prepare_cached("SELECT at, kind, text, author FROM incident_updates WHERE incident_id = ?1 ORDER BY seq")?;
    let rows = st.query_map([id], |r| {
        Ok(IncidentUpdate { at: r.get(0)?, kind: r.get(1)?, text: r.get(2)?, author: r.get(3)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn with_updates(c: &Connection, rows: Vec<IncidentRow>) -> Result<Vec<Incident>> {
    rows.into_iter().map(|r| Ok(incidents::assemble(r.clone(), updates(c, r.id)?))).collect()
}

impl Incidents for SqliteStore {
    async fn incident_change(&self, change: IncidentChange) -> Result<Option<i64>> {
        self.write(move |c| apply(c, change)).await
    }

    async fn incidents(&self, since: i64) -> Result<Vec<Incident>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "{ROW} WHERE resolved_at IS NULL OR resolved_at >= ?1 ORDER BY opened_at DESC, id DESC"
            ))?;
            let rows = st.query_map([since], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            with_updates(c, rows)
        })
        .await
    }

    async fn incident(&self, id: i64) -> Result<Option<Incident>> {
        self.read(move |c| {
            let found = c.query_row(&format!("{ROW} WHERE id = ?1"), [id], row).optional()?;
            Ok(with_updates(c, found.into_iter().collect())?.pop())
        })
        .await
    }
}
