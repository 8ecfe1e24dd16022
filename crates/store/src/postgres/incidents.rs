//! [`Incidents`] on PostgreSQL: read the incident a change is about (row
//! locked), ask [`incidents::plan`], write what it says, in one
//! transaction. Two nodes opening the same component's incident at once:
//! the unique index lets one insert win; the other finds it and joins it.

use deadpool_postgres::GenericClient;

use super::{PgStore, db, execute, query, query_opt};
use crate::incidents::{self, Incident, IncidentChange, IncidentRow, IncidentUpdate, Target};
use crate::{Incidents, Result, StoreError};

const ROW: &str = "SELECT id, component, title, severity, affected, opened_at, resolved_at FROM incidents";

fn row(r: &tokio_postgres::Row) -> IncidentRow {
    IncidentRow {
        id: r.get(0),
        component: r.get(1),
        title: r.get(2),
        severity: r.get(3),
        affected: r.get(4),
        opened_at: r.get(5),
        resolved_at: r.get(6),
    }
}

/// One try; `Err(None)` when another node's insert won the race.
async fn apply<C: GenericClient>(
    c: &C,
    change: IncidentChange,
) -> std::result::Result<Option<i64>, Option<StoreError>> {
    let found = match change.target() {
        Target::OpenFor(component) => {
            query_opt(c, &format!("{ROW} WHERE component = $1 AND resolved_at IS NULL FOR UPDATE"), &[&component])
                .await?
        }
        Target::Id(id) => query_opt(c, &format!("{ROW} WHERE id = $1 FOR UPDATE"), &[&id]).await?,
    };
    let Some(plan) = incidents::plan(found.as_ref().map(row), change)? else { return Ok(None) };
    let r = &plan.row;
    let id: i64 = if r.id == 0 {
        let inserted = query_opt(
            c,
            "INSERT INTO incidents (component, title, severity, affected, opened_at, resolved_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
            &[&r.component, &r.title, &r.severity, &r.affected, &r.opened_at, &r.resolved_at],
        )
        .await?;
        match inserted {
            Some(row) => row.get(0),
            None => return Err(None),
        }
    } else {
        execute(
            c,
            "UPDATE incidents SET title = $2, severity = $3, affected = $4, resolved_at = $5 WHERE id = $1",
            &[&r.id, &r.title, &r.severity, &r.affected, &r.resolved_at],
        )
        .await?;
        r.id
    };
    let u = &plan.update;
    execute(
        c,
        "INSERT INTO incident_updates (incident_id, seq, at, kind, text, author)
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM incident_updates WHERE incident_id = $1",
        &[&id, &u.at, &u.kind, &u.text, &u.author],
    )
    .await?;
    Ok(Some(id))
}

async fn with_updates<C: GenericClient>(c: &C, rows: Vec<tokio_postgres::Row>) -> Result<Vec<Incident>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let r = row(r);
        let updates = query(
            c,
            "SELECT at, kind, text, author FROM incident_updates WHERE incident_id = $1 ORDER BY seq",
            &[&r.id],
        )
        .await?
        .iter()
        .map(|u| IncidentUpdate { at: u.get(0), kind: u.get(1), text: u.get(2), author: u.get(3) })
        .collect();
        out.push(incidents::assemble(r, updates));
    }
    Ok(out)
}

impl Incidents for PgStore {
    async fn incident_change(&self, change: IncidentChange) -> Result<Option<i64>> {
        let mut c = self.client().await?;
        for _ in 0..3 {
            let tx = c.transaction().await.map_err(db)?;
            match apply(&tx, change.clone()).await {
                Ok(id) => {
                    tx.commit().await.map_err(db)?;
                    return Ok(id);
                }
                Err(Some(e)) => return Err(e),
                // Lost the race to open it: join the winner's.
                Err(None) => tx.rollback().await.map_err(db)?,
            }
        }
        Err(StoreError::Internal("incident change kept racing another node's".into()))
    }

    async fn incidents(&self, since: i64) -> Result<Vec<Incident>> {
        let c = self.client().await?;
        let rows = query(
            &c,
            &format!("{ROW} WHERE resolved_at IS NULL OR resolved_at >= $1 ORDER BY opened_at DESC, id DESC"),
            &[&since],
        )
        .await?;
        with_updates(&c, rows).await
    }

    async fn incident(&self, id: i64) -> Result<Option<Incident>> {
        let c = self.client().await?;
        let rows = query(&c, &format!("{ROW} WHERE id = $1"), &[&id]).await?;
        Ok(with_updates(&c, rows).await?.pop())
    }
}
