//! The outbound queue on SQLite: leases, outcomes, operator controls.
//!
//! A recipient is `queued` until its outcome is final. The delivery engine
//! leases due recipients (`lease_until`), so a crash leaves at most the
//! leased ones to be tried again: at-least-once delivery, never lost.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{insert_message, numbered, parsed, parsed_opt};
use crate::{
    AttemptRecord, AuditRecord, ClaimFilter, Class, Control, ControlKey, DeliveryJob, JobRecipient, MessageId,
    NewMessage, NewState, Park, QueueStats, RecipientUpdate, Result, StoreError, StoredEnvelope,
};
use crate::{depth, lifecycle};

pub(crate) fn claim_due(
    c: &Connection,
    now: i64,
    lease_until: i64,
    limit: usize,
    filter: &ClaimFilter,
    node: &str,
) -> Result<Vec<DeliveryJob>> {
    // ?1 now, ?2 limit, ?3 class; then (domain, class) per skipped pair.
    // Each form reads due rows in claim order from its index and stops at
    // the limit (schema v4): no sort, no join before the limit.
    let skip: String = (0..filter.skip.len())
        .map(|i| {
            let (d, k) = (4 + 2 * i, 5 + 2 * i);
            format!(" AND NOT ((?{d} IS NULL OR r.domain = ?{d}) AND (?{k} IS NULL OR r.class = ?{k}))")
        })
        .collect();
    let (class, index) = match filter.class {
        Some(_) => ("r.class = ?3", "recipients_due_class"),
        None => ("?3 IS NULL", "recipients_due"),
    };
    let mut params: Vec<Box<dyn rusqlite::ToSql>> =
        vec![Box::new(now), Box::new(limit as i64), Box::new(filter.class.map(Class::as_str))];
    for (d, k) in &filter.skip {
        params.push(Box::new(d.clone()));
        params.push(Box::new(k.map(Class::as_str)));
    }
    let mut stmt = c.prepare_cached(&format!(
        "SELECT r.message_id, r.idx, r.address, r.domain, r.notify, r.orcpt, r.attempts, r.delay_notified,
                m.received_at, m.size, m.envelope, m.class
         FROM recipients r INDEXED BY {index} JOIN messages m ON m.id = r.message_id
         WHERE r.state = 'queued' AND {class} AND r.next_attempt <= ?1
           AND (r.lease_until IS NULL OR r.lease_until <= ?1){skip}
         ORDER BY r.next_attempt, r.message_id, r.idx
         LIMIT ?2"
    ))?;
    type Row =
        (MessageId, u32, String, String, Option<crate::Notify>, Option<String>, u32, bool, i64, i64, String, Class);
    let rows: Vec<Row> = stmt
        .query_map(rusqlite::params_from_iter(params.iter().map(|p| p.as_ref())), |r| {
            Ok((
                parsed(r, 0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                parsed_opt(r, 4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                parsed(r, 11)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut lease = c.prepare_cached(
        "UPDATE recipients SET lease_until = ?1, lease_owner = ?4 WHERE message_id = ?2 AND idx = ?3",
    )?;
    let mut jobs: Vec<DeliveryJob> = Vec::new();
    let mut index: HashMap<(MessageId, String), usize> = HashMap::new();
    for (
        message_id,
        idx,
        address,
        domain,
        notify,
        orcpt,
        attempts,
        delay_notified,
        received_at,
        size,
        envelope,
        class,
    ) in rows
    {
        lease.execute(params![lease_until, message_id.to_string(), idx, node])?;
        let recipient = JobRecipient { idx, address, notify, orcpt, attempts, delay_notified };
        let key = (message_id, domain.clone());
        if let Some(&i) = index.get(&key) {
            jobs[i].recipients.push(recipient);
            continue;
        }
        let envelope: StoredEnvelope = serde_json::from_str(&envelope)
            .map_err(|e| StoreError::Internal(format!("message {message_id}: unreadable envelope: {e}")))?;
        index.insert(key, jobs.len());
        jobs.push(DeliveryJob {
            message_id,
            received_at,
            class,
            size: size as u64,
            envelope,
            domain,
            recipients: vec![recipient],
            pushed_back: 0,
        });
    }
    Ok(jobs)
}

pub(crate) fn next_due(c: &Connection) -> Result<Option<i64>> {
    // The first unleased due time, read from the claim index, and the first
    // lease to run out (a leased recipient is not due before that).
    let free: Option<i64> = c
        .prepare_cached(
            "SELECT next_attempt FROM recipients INDEXED BY recipients_due
             WHERE state = 'queued' AND (lease_until IS NULL OR lease_until <= next_attempt)
             ORDER BY next_attempt LIMIT 1",
        )?
        .query_row([], |r| r.get(0))
        .optional()?;
    let leased: Option<i64> = c
        .prepare_cached(
            "SELECT MIN(lease_until) FROM recipients INDEXED BY recipients_leased
             WHERE lease_until IS NOT NULL AND state = 'queued' AND lease_until > next_attempt",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(match (free, leased) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Apply outcomes recorded by `node`; a lease it took is over (one another
/// node took since, this one presumed dead, stays that node's).
pub(crate) fn complete(
    c: &Connection,
    updates: &[RecipientUpdate],
    notices: &[NewMessage],
    now: i64,
    node: &str,
) -> Result<()> {
    for u in updates {
        let id = u.message_id.to_string();
        let (next, final_at) = match u.state {
            NewState::Deferred { next_attempt } => (Some(next_attempt), None),
            _ => (None, Some(u.attempt.as_ref().map(|a| a.at).unwrap_or(now))),
        };
        // Delivered is the truth whatever an operator did meanwhile; other
        // outcomes apply only to a recipient still queued (not held or
        // deleted while the attempt was in flight).
        let guard =
            if u.state == NewState::Delivered { "state IN ('queued', 'held', 'deleted')" } else { "state = 'queued'" };
        c.prepare_cached(&format!(
            "UPDATE recipients SET state = ?1, next_attempt = COALESCE(?2, next_attempt), attempts = attempts + ?3,
                 last_error = COALESCE(?4, last_error),
                 delay_notified = MAX(delay_notified, ?5), final_at = ?6
             WHERE message_id = ?7 AND idx = ?8 AND {guard}"
        ))?
        .execute(params![
            u.state.status().as_str(),
            next,
            u.attempt.is_some() as i64,
            u.last_error,
            u.delay_notified,
            final_at,
            id,
            u.idx
        ])?;
        // Whatever the guard decided, a lease taken for this attempt is over.
        c.prepare_cached(
            "UPDATE recipients SET lease_until = NULL, lease_owner = NULL
             WHERE message_id = ?1 AND idx = ?2 AND (lease_owner IS NULL OR lease_owner = ?3)",
        )?
        .execute(params![id, u.idx, node])?;
        if let Some(a) = &u.attempt {
            c.prepare_cached(
                "INSERT INTO attempts (message_id, idx, at, host, outcome, reply) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![id, u.idx, a.at, a.host, a.outcome.as_str(), a.reply])?;
        }
    }
    for n in notices {
        insert_message(c, n, now)?;
    }
    // Bodies of messages that are now finished and in no mailbox.
    let mut finished: Vec<String> = updates
        .iter()
        .filter(|u| !matches!(u.state, NewState::Deferred { .. }))
        .map(|u| u.message_id.to_string())
        .collect();
    finished.sort_unstable();
    finished.dedup();
    let [body, _] = lifecycle::drop_unneeded("= ?1");
    let mut drop = c.prepare_cached(&body)?;
    for id in finished {
        drop.execute([id])?;
    }
    Ok(())
}

/// One housekeeping batch (see [`lifecycle`]) from `cursor`: the queue
/// records removed, the messages removed whole, and where to go on from.
pub(crate) fn purge(
    c: &Connection,
    cursor: &str,
    upper: &str,
    finished_before: i64,
) -> Result<(u64, u64, Option<String>)> {
    let rows = c
        .prepare_cached(&numbered(lifecycle::CANDIDATES))?
        .query_map(params![cursor, upper, finished_before, lifecycle::BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
    let (ids, next) = lifecycle::plan(rows);
    let mut whole = 0;
    for id in &ids {
        for sql in lifecycle::drop_records("= ?1") {
            c.prepare_cached(&sql)?.execute([id])?;
        }
        whole += super::mail::drop_unneeded(c, [id.as_str()])?;
    }
    Ok((ids.len() as u64, whole, next))
}

/// One batch of housekeeping's messages walk from `cursor`: the messages
/// removed whole, and the cursor to go on from (empty: start over).
pub(crate) fn sweep_messages(c: &Connection, cursor: &str) -> Result<(u64, String)> {
    let ids = c
        .prepare_cached(&numbered(lifecycle::MESSAGES))?
        .query_map(params![cursor, lifecycle::BATCH], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let whole = super::mail::drop_unneeded(c, ids.iter().map(String::as_str))?;
    Ok((whole, lifecycle::next_message(&ids)))
}

pub(crate) fn release_leases(c: &Connection, node: &str) -> Result<u64> {
    Ok(c.execute(
        "UPDATE recipients SET lease_until = NULL, lease_owner = NULL
         WHERE lease_until IS NOT NULL AND (lease_owner = ?1 OR lease_owner IS NULL)",
        [node],
    )? as u64)
}

fn audit(c: &Connection, now: i64, actor: &str, action: &str, id: Option<MessageId>, detail: &str) -> Result<()> {
    let id = id.map(|i| i.to_string());
    c.execute(
        "INSERT INTO audit (at, actor, action, message_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now, actor, action, id, detail],
    )?;
    tracing::info!(actor, action, message_id = id.as_deref().unwrap_or("*"), detail, "operator action");
    Ok(())
}

fn require_message(c: &Connection, id: MessageId) -> Result<()> {
    let n: i64 = c.query_row("SELECT COUNT(*) FROM messages WHERE id = ?1", [id.to_string()], |r| r.get(0))?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("message {id}")));
    }
    Ok(())
}

pub(crate) fn retry(c: &Connection, id: Option<MessageId>, now: i64, actor: &str) -> Result<u64> {
    if let Some(id) = id {
        require_message(c, id)?;
    }
    let n = c.execute(
        "UPDATE recipients SET next_attempt = ?1 WHERE state = 'queued' AND (?2 IS NULL OR message_id = ?2)",
        params![now, id.map(|i| i.to_string())],
    )? as u64;
    audit(c, now, actor, "retry", id, &format!("{n} recipient(s) due now"))?;
    Ok(n)
}

pub(crate) fn retry_where(
    c: &Connection,
    domain: Option<&str>,
    class: Option<Class>,
    now: i64,
    actor: &str,
) -> Result<u64> {
    let class = class.map(Class::as_str);
    let n = c.execute(
        "UPDATE recipients SET next_attempt = ?1
         WHERE state = 'queued' AND (?2 IS NULL OR domain = ?2)
           AND (?3 IS NULL OR class = ?3)",
        params![now, domain, class],
    )? as u64;
    let scope = format!("destination {} class {}", domain.unwrap_or("*"), class.unwrap_or("*"));
    audit(c, now, actor, "retry", None, &format!("{n} recipient(s) of {scope} due now"))?;
    Ok(n)
}

pub(crate) fn park_destination(c: &Connection, p: &Park) -> Result<u64> {
    Ok(c.execute(
        "UPDATE recipients SET next_attempt = ?3, last_error = ?4
         WHERE domain = ?1 AND state = 'queued' AND next_attempt < ?3
           AND (lease_until IS NULL OR lease_until <= ?2)
           AND message_id IN (SELECT id FROM messages WHERE received_at > ?6)
           AND (delay_notified = 1 OR message_id IN (SELECT id FROM messages WHERE received_at > ?5))",
        params![p.domain, p.now, p.until, p.error, p.warn_received_before, p.expire_received_before],
    )? as u64)
}

pub(crate) fn hold(c: &Connection, id: MessageId, now: i64, actor: &str) -> Result<u64> {
    require_message(c, id)?;
    let n = c
        .execute("UPDATE recipients SET state = 'held' WHERE message_id = ?1 AND state = 'queued'", [id.to_string()])?
        as u64;
    audit(c, now, actor, "hold", Some(id), &format!("{n} recipient(s) held"))?;
    Ok(n)
}

pub(crate) fn release(c: &Connection, id: MessageId, now: i64, actor: &str) -> Result<u64> {
    require_message(c, id)?;
    let n = c.execute(
        "UPDATE recipients SET state = 'queued', next_attempt = ?1 WHERE message_id = ?2 AND state = 'held'",
        params![now, id.to_string()],
    )? as u64;
    audit(c, now, actor, "release", Some(id), &format!("{n} recipient(s) released"))?;
    Ok(n)
}

pub(crate) fn delete(c: &Connection, id: MessageId, now: i64, actor: &str, notices: &[NewMessage]) -> Result<u64> {
    require_message(c, id)?;
    let n = c.execute(
        "UPDATE recipients SET state = 'deleted', final_at = ?1, lease_until = NULL, lease_owner = NULL
         WHERE message_id = ?2 AND state IN ('queued', 'held')",
        params![now, id.to_string()],
    )? as u64;
    if n == 0 {
        return Err(StoreError::Invalid(format!("message {id} has no pending recipient to delete")));
    }
    super::mail::drop_unneeded(c, [id.to_string().as_str()])?;
    let detail = crate::invariants::deleted_detail(n, !notices.is_empty());
    audit(c, now, actor, "delete", Some(id), &detail)?;
    for m in notices {
        insert_message(c, m, now)?;
    }
    Ok(n)
}

pub(crate) fn audit_log(c: &Connection, id: Option<MessageId>) -> Result<Vec<AuditRecord>> {
    let mut s = c.prepare(
        "SELECT at, actor, action, message_id, detail FROM audit WHERE (?1 IS NULL OR message_id = ?1) ORDER BY id",
    )?;
    let rows = s.query_map([id.map(|i| i.to_string())], |r| {
        Ok(AuditRecord {
            at: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            message_id: parsed_opt(r, 3)?,
            detail: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn attempts_of(c: &Connection, id: MessageId) -> Result<Vec<AttemptRecord>> {
    let mut s = c.prepare_cached(
        "SELECT r.address, a.at, a.host, a.outcome, a.reply FROM attempts a
         JOIN recipients r ON r.message_id = a.message_id AND r.idx = a.idx
         WHERE a.message_id = ?1 ORDER BY a.rowid",
    )?;
    let rows = s.query_map([id.to_string()], |r| {
        Ok(AttemptRecord {
            recipient: r.get(0)?,
            at: r.get(1)?,
            host: r.get(2)?,
            outcome: parsed(r, 3)?,
            reply: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Queue depth from the counters (see [`crate::depth`]).
pub(crate) fn stats(c: &Connection, now: i64, by_domain: bool) -> Result<Vec<QueueStats>> {
    let minute = depth::minute(now);
    let counts = c
        .prepare_cached(&depth::counts_sql("queue_counts", by_domain))?
        .query_map([minute], |r| Ok((parsed(r, 0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let current = c
        .prepare_cached(&depth::current_minute_sql(by_domain))?
        .query_map([minute * 60, now], |r| Ok((parsed(r, 0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stats = depth::assemble(counts, current);
    let mut since = c.prepare_cached(depth::since_sql(by_domain))?;
    for s in stats.iter_mut().filter(|s| s.ready > 0) {
        let class = s.class.as_str();
        s.ready_since = if by_domain {
            since.query_row(params![class, s.domain], |r| r.get(0))?
        } else {
            since.query_row(params![class], |r| r.get(0))?
        };
    }
    Ok(stats)
}

/// Minutes gone by are folded into minute 0 and rows at zero dropped, so
/// the counters stay a few rows per destination.
pub(crate) fn fold_counts(c: &Connection, now: i64) -> Result<()> {
    let minute = depth::minute(now);
    c.execute(
        "INSERT INTO queue_counts (class, domain, state, minute, n)
         SELECT class, domain, state, 0, SUM(n) FROM queue_counts
         WHERE state = 'queued' AND minute > 0 AND minute < ?1 GROUP BY 1, 2, 3
         ON CONFLICT DO UPDATE SET n = n + excluded.n",
        [minute],
    )?;
    c.execute("DELETE FROM queue_counts WHERE (state = 'queued' AND minute > 0 AND minute < ?1) OR n = 0", [minute])?;
    Ok(())
}

pub(crate) fn set_control(c: &Connection, key: &ControlKey, value: Option<&str>, now: i64, actor: &str) -> Result<()> {
    let key = key.to_string();
    match value {
        Some(v) => {
            c.execute(
                "INSERT INTO controls (key, value, set_at, actor) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, set_at = excluded.set_at, actor = excluded.actor",
                params![key, v, now, actor],
            )?;
            audit(c, now, actor, "control", None, &format!("{key} = {v}"))
        }
        None => {
            c.execute("DELETE FROM controls WHERE key = ?1", [&key])?;
            audit(c, now, actor, "control", None, &format!("{key} cleared"))
        }
    }
}

pub(crate) fn controls(c: &Connection) -> Result<Vec<Control>> {
    let mut s = c.prepare("SELECT key, value, set_at, actor FROM controls ORDER BY key")?;
    // A key this version does not know (written by a newer one) is skipped
    // with a warning, not an error that would stop delivery.
    let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (key, value, set_at, actor) = row?;
        match key.parse::<ControlKey>() {
            Ok(key) => out.push(Control { key, value, set_at, actor }),
            Err(e) => tracing::warn!(error = %e, "unknown operator control ignored"),
        }
    }
    Ok(out)
}
