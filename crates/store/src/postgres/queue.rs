//! The spool and the operator's queue on PostgreSQL. Claims take due
//! recipients with `FOR UPDATE SKIP LOCKED`, so several nodes claiming at
//! once each get different recipients without waiting on each other.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;

use super::{PgStore, db, execute, mail, parsed, parsed_opt, query, query_one, query_opt};
use crate::{
    Admin, AttemptRecord, AuditRecord, CheckReport, ClaimFilter, Class, Control, ControlKey, DeliveryJob, JobRecipient,
    MessageId, NewMessage, NewState, Park, Placement, QueueStats, QueuedMessage, RecipientState, RecipientStatus,
    RecipientUpdate, Result, Route, Spool, StoreError, StoredEnvelope,
};

fn envelope_of(id: &str, json: &str) -> Result<StoredEnvelope> {
    serde_json::from_str(json).map_err(|e| StoreError::Internal(format!("message {id}: unreadable envelope: {e}")))
}

/// Insert an accepted message with its recipients; `now` dates repairs.
pub(crate) async fn insert_message<C: GenericClient>(c: &C, msg: &NewMessage, now: i64) -> Result<Vec<Placement>> {
    let id = msg.id.to_string();
    let envelope = serde_json::to_string(&msg.envelope).map_err(|e| StoreError::Internal(e.to_string()))?;
    execute(
        c,
        "INSERT INTO messages (id, received_at, size, envelope, class) VALUES ($1, $2, $3, $4, $5)",
        &[&id, &msg.received_at, &(msg.data.len() as i64), &envelope, &msg.class.as_str()],
    )
    .await?;
    execute(c, "INSERT INTO message_bodies (message_id, data) VALUES ($1, $2)", &[&id, &msg.data]).await?;
    // Local users' INBOXes, made if missing (repaired rather than refusing
    // mail), then locked in id order before any UID is taken.
    let mut inboxes: Vec<(String, i64)> = Vec::new();
    for r in &msg.recipients {
        if let Route::Local { user } = &r.route
            && !inboxes.iter().any(|(u, _)| u == user)
        {
            let id = match mail::get(c, user, "INBOX").await? {
                Some(m) => m.id,
                None => {
                    tracing::error!(user, "user had no INBOX; created it");
                    mail::create_mailbox(c, user, "INBOX", None, now).await?
                }
            };
            inboxes.push((user.clone(), id));
        }
    }
    mail::lock(c, inboxes.iter().map(|(_, id)| *id).collect()).await?;
    let mut placements = Vec::new();
    for (user, mailbox_id) in inboxes {
        let (uid, _) = mail::place(c, mailbox_id, &id, &[], msg.received_at).await?;
        placements.push(Placement { user, mailbox_id, uid });
    }
    let st = c
        .prepare_cached(
            "INSERT INTO recipients (message_id, idx, address, domain, notify, orcpt, state, next_attempt, class)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await
        .map_err(db)?;
    for (idx, r) in msg.recipients.iter().enumerate() {
        let domain = r.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        let (state, next) = match r.route {
            Route::Local { .. } => (RecipientStatus::Delivered, None),
            Route::Remote => (RecipientStatus::Queued, Some(msg.received_at)),
        };
        c.execute(
            &st,
            &[
                &id,
                &(idx as i32),
                &r.address,
                &domain,
                &r.notify.map(|n| n.to_string()),
                &r.orcpt,
                &state.as_str(),
                &next,
                &msg.class.as_str(),
            ],
        )
        .await
        .map_err(db)?;
    }
    Ok(placements)
}

async fn load_queued<C: GenericClient>(c: &C, id: MessageId) -> Result<Option<QueuedMessage>> {
    let key = id.to_string();
    let Some(m) =
        query_opt(c, "SELECT received_at, size, envelope, class FROM messages WHERE id = $1", &[&key]).await?
    else {
        return Ok(None);
    };
    let rows = query(
        c,
        "SELECT address, state, attempts, next_attempt, last_error, notify, orcpt
         FROM recipients WHERE message_id = $1 ORDER BY idx",
        &[&key],
    )
    .await?;
    let recipients = rows
        .iter()
        .map(|r| {
            Ok(RecipientState {
                address: r.get(0),
                state: parsed(r, 1)?,
                attempts: r.get::<_, i32>(2) as u32,
                next_attempt: r.get(3),
                last_error: r.get(4),
                notify: parsed_opt(r, 5)?,
                orcpt: r.get(6),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = query(
        c,
        "SELECT r.address, a.at, a.host, a.outcome, a.reply FROM attempts a
         JOIN recipients r ON r.message_id = a.message_id AND r.idx = a.idx
         WHERE a.message_id = $1 ORDER BY a.id",
        &[&key],
    )
    .await?;
    let attempts = rows
        .iter()
        .map(|r| {
            Ok(AttemptRecord {
                recipient: r.get(0),
                at: r.get(1),
                host: r.get(2),
                outcome: parsed(r, 3)?,
                reply: r.get(4),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(QueuedMessage {
        id,
        received_at: m.get(0),
        class: parsed(&m, 3)?,
        size: m.get::<_, i64>(1) as u64,
        envelope: envelope_of(&key, m.get(2))?,
        recipients,
        attempts,
    }))
}

async fn audit<C: GenericClient>(
    c: &C,
    now: i64,
    actor: &str,
    action: &str,
    id: Option<MessageId>,
    detail: &str,
) -> Result<()> {
    let id = id.map(|i| i.to_string());
    execute(
        c,
        "INSERT INTO audit (at, actor, action, message_id, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&now, &actor, &action, &id, &detail],
    )
    .await?;
    tracing::info!(actor, action, message_id = id.as_deref().unwrap_or("*"), detail, "operator action");
    Ok(())
}

async fn require_message<C: GenericClient>(c: &C, id: MessageId) -> Result<()> {
    if query_opt(c, "SELECT 1 FROM messages WHERE id = $1", &[&id.to_string()]).await?.is_none() {
        return Err(StoreError::NotFound(format!("message {id}")));
    }
    Ok(())
}

impl PgStore {
    /// Run `sql` (`$1` the message id, then `params`) for one message in a
    /// transaction with an audit record.
    async fn audited(
        &self,
        (id, now, actor): (MessageId, i64, &str),
        action: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        what: &str,
    ) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        require_message(&tx, id).await?;
        let key = id.to_string();
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&key];
        all.extend_from_slice(params);
        let n = execute(&tx, sql, &all).await?;
        audit(&tx, now, actor, action, Some(id), &format!("{n} recipient(s) {what}")).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }
}

impl Spool for PgStore {
    async fn store_message(&self, msg: NewMessage) -> Result<Vec<Placement>> {
        let now = self.now();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let placements = insert_message(&tx, &msg, now).await?;
        tx.commit().await.map_err(db)?;
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
        let skip_domains: Vec<Option<String>> = filter.skip.iter().map(|(d, _)| d.clone()).collect();
        let skip_classes: Vec<Option<String>> = filter.skip.iter().map(|(_, k)| k.map(|k| k.to_string())).collect();
        let class = filter.class.map(Class::as_str);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        // Due rows in claim order, locked; rows another node is claiming
        // right now are skipped, not waited for. Paused (domain, class)
        // pairs are left out, a NULL in a pair matching anything.
        let rows = query(
            &tx,
            "WITH due AS (
                 SELECT r.message_id, r.idx FROM recipients r
                 WHERE r.state = 'queued' AND ($3::TEXT IS NULL OR r.class = $3) AND r.next_attempt <= $1
                   AND (r.lease_until IS NULL OR r.lease_until <= $1)
                   AND NOT EXISTS (
                       SELECT 1 FROM unnest($5::TEXT[], $6::TEXT[]) AS s(domain, class)
                       WHERE (s.domain IS NULL OR r.domain = s.domain) AND (s.class IS NULL OR r.class = s.class))
                 ORDER BY r.next_attempt, r.message_id, r.idx
                 LIMIT $2
                 FOR UPDATE OF r SKIP LOCKED)
             UPDATE recipients r SET lease_until = $4 FROM due
             WHERE r.message_id = due.message_id AND r.idx = due.idx
             RETURNING r.message_id, r.idx, r.address, r.domain, r.notify, r.orcpt, r.attempts, r.delay_notified,
                       r.next_attempt",
            &[&now, &(limit as i64), &class, &lease_until, &skip_domains, &skip_classes],
        )
        .await?;
        let mut rows: Vec<_> = rows.into_iter().collect();
        // RETURNING has no order: back to claim order.
        rows.sort_by(|a, b| {
            (a.get::<_, i64>(8), a.get::<_, &str>(0), a.get::<_, i32>(1)).cmp(&(
                b.get::<_, i64>(8),
                b.get::<_, &str>(0),
                b.get::<_, i32>(1),
            ))
        });
        let ids: Vec<String> = {
            let mut v: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
            v.sort();
            v.dedup();
            v
        };
        let messages =
            query(&tx, "SELECT id, received_at, size, envelope, class FROM messages WHERE id = ANY($1)", &[&ids])
                .await?;
        let mut by_id: HashMap<String, (i64, i64, StoredEnvelope, Class)> = HashMap::new();
        for m in &messages {
            let id: String = m.get(0);
            let envelope = envelope_of(&id, m.get(3))?;
            by_id.insert(id, (m.get(1), m.get(2), envelope, parsed(m, 4)?));
        }
        tx.commit().await.map_err(db)?;
        let mut jobs: Vec<DeliveryJob> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        for r in rows {
            let (message_id, domain): (String, String) = (r.get(0), r.get(3));
            let recipient = JobRecipient {
                idx: r.get::<_, i32>(1) as u32,
                address: r.get(2),
                notify: parsed_opt(&r, 4)?,
                orcpt: r.get(5),
                attempts: r.get::<_, i32>(6) as u32,
                delay_notified: r.get(7),
            };
            let key = (message_id.clone(), domain.clone());
            if let Some(&i) = index.get(&key) {
                jobs[i].recipients.push(recipient);
                continue;
            }
            let Some((received_at, size, envelope, class)) = by_id.get(&message_id) else {
                return Err(StoreError::Internal(format!("recipient of a missing message {message_id}")));
            };
            index.insert(key, jobs.len());
            jobs.push(DeliveryJob {
                message_id: message_id.parse().map_err(|e| StoreError::Internal(format!("{e}")))?,
                received_at: *received_at,
                class: *class,
                size: *size as u64,
                envelope: envelope.clone(),
                domain,
                recipients: vec![recipient],
                pushed_back: 0,
            });
        }
        Ok(jobs)
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        let c = self.client().await?;
        let r = query_one(
            &c,
            "SELECT LEAST(
                 (SELECT next_attempt FROM recipients
                  WHERE state = 'queued' AND (lease_until IS NULL OR lease_until <= next_attempt)
                  ORDER BY state, next_attempt LIMIT 1),
                 (SELECT MIN(lease_until) FROM recipients
                  WHERE lease_until IS NOT NULL AND state = 'queued' AND lease_until > next_attempt))",
            &[],
        )
        .await?;
        Ok(r.get(0))
    }

    async fn message_body(&self, id: MessageId) -> Result<Option<Vec<u8>>> {
        let c = self.client().await?;
        Ok(query_opt(&c, "SELECT data FROM message_bodies WHERE message_id = $1", &[&id.to_string()])
            .await?
            .map(|r| r.get(0)))
    }

    async fn complete(&self, updates: Vec<RecipientUpdate>, notices: Vec<NewMessage>) -> Result<()> {
        let now = self.now();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        for u in &updates {
            let id = u.message_id.to_string();
            let (next, final_at) = match u.state {
                NewState::Deferred { next_attempt } => (Some(next_attempt), None),
                _ => (None, Some(u.attempt.as_ref().map(|a| a.at).unwrap_or(now))),
            };
            // Delivered is the truth whatever an operator did meanwhile;
            // other outcomes apply only to a recipient still queued.
            let guard = if u.state == NewState::Delivered {
                "state IN ('queued', 'held', 'deleted')"
            } else {
                "state = 'queued'"
            };
            execute(
                &tx,
                &format!(
                    "UPDATE recipients SET state = $1, next_attempt = COALESCE($2, next_attempt),
                         attempts = attempts + $3, last_error = COALESCE($4, last_error), lease_until = NULL,
                         delay_notified = delay_notified OR $5, final_at = $6
                     WHERE message_id = $7 AND idx = $8 AND {guard}"
                ),
                &[
                    &u.state.status().as_str(),
                    &next,
                    &(u.attempt.is_some() as i32),
                    &u.last_error,
                    &u.delay_notified,
                    &final_at,
                    &id,
                    &(u.idx as i32),
                ],
            )
            .await?;
            // Whatever the guard decided, a lease taken for this attempt is over.
            execute(
                &tx,
                "UPDATE recipients SET lease_until = NULL WHERE message_id = $1 AND idx = $2",
                &[&id, &(u.idx as i32)],
            )
            .await?;
            if let Some(a) = &u.attempt {
                execute(
                    &tx,
                    "INSERT INTO attempts (message_id, idx, at, host, outcome, reply) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&id, &(u.idx as i32), &a.at, &a.host, &a.outcome.as_str(), &a.reply],
                )
                .await?;
            }
        }
        let mut touched = Vec::new();
        for n in &notices {
            touched.extend(insert_message(&tx, n, now).await?.into_iter().map(|p| p.mailbox_id));
        }
        tx.commit().await.map_err(db)?;
        self.changed(touched);
        Ok(())
    }

    async fn release_leases(&self) -> Result<u64> {
        let c = self.client().await?;
        execute(&c, "UPDATE recipients SET lease_until = NULL WHERE lease_until IS NOT NULL", &[]).await
    }

    async fn queue_retry_where(
        &self,
        domain: Option<&str>,
        class: Option<Class>,
        now: i64,
        actor: &str,
    ) -> Result<u64> {
        let domain = domain.map(str::to_lowercase);
        let class = class.map(Class::as_str);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let n = execute(
            &tx,
            "UPDATE recipients SET next_attempt = $1
             WHERE state = 'queued' AND ($2::TEXT IS NULL OR domain = $2) AND ($3::TEXT IS NULL OR class = $3)",
            &[&now, &domain, &class],
        )
        .await?;
        let scope = format!("destination {} class {}", domain.as_deref().unwrap_or("*"), class.unwrap_or("*"));
        audit(&tx, now, actor, "retry", None, &format!("{n} recipient(s) of {scope} due now")).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn park_destination(&self, p: Park) -> Result<u64> {
        let c = self.client().await?;
        execute(
            &c,
            "UPDATE recipients SET next_attempt = $3, last_error = $4
             WHERE domain = $1 AND state = 'queued' AND next_attempt < $3
               AND (lease_until IS NULL OR lease_until <= $2)
               AND message_id IN (SELECT id FROM messages WHERE received_at > $6)
               AND (delay_notified OR message_id IN (SELECT id FROM messages WHERE received_at > $5))",
            &[&p.domain, &p.now, &p.until, &p.error, &p.warn_received_before, &p.expire_received_before],
        )
        .await
    }

    async fn queue_stats(&self, now: i64, by_domain: bool) -> Result<Vec<QueueStats>> {
        let domain = if by_domain { "r.domain" } else { "''" };
        let c = self.client().await?;
        let rows = query(
            &c,
            &format!(
                "SELECT m.class, {domain},
                        COUNT(*) FILTER (WHERE r.state = 'queued'),
                        COUNT(*) FILTER (WHERE r.state = 'queued' AND r.next_attempt <= $1),
                        COUNT(*) FILTER (WHERE r.state = 'held'),
                        MIN(m.received_at) FILTER (WHERE r.state = 'queued' AND r.next_attempt <= $1)
                 FROM recipients r JOIN messages m ON m.id = r.message_id
                 WHERE r.state IN ('queued', 'held')
                 GROUP BY 1, 2 ORDER BY 2, 1"
            ),
            &[&now],
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueueStats {
                    class: parsed(r, 0)?,
                    domain: r.get(1),
                    queued: r.get::<_, i64>(2) as u64,
                    ready: r.get::<_, i64>(3) as u64,
                    held: r.get::<_, i64>(4) as u64,
                    oldest_ready: r.get(5),
                })
            })
            .collect()
    }

    async fn controls(&self) -> Result<Vec<Control>> {
        let c = self.client().await?;
        let rows = query(&c, "SELECT key, value, set_at, actor FROM controls ORDER BY key", &[]).await?;
        let mut out = Vec::new();
        for r in rows {
            match r.get::<_, String>(0).parse::<ControlKey>() {
                Ok(key) => out.push(Control { key, value: r.get(1), set_at: r.get(2), actor: r.get(3) }),
                Err(e) => tracing::warn!(error = %e, "unknown operator control ignored"),
            }
        }
        Ok(out)
    }
}

impl Admin for PgStore {
    async fn queue_list(&self) -> Result<Vec<QueuedMessage>> {
        let c = self.client().await?;
        let rows = query(
            &c,
            "SELECT DISTINCT message_id FROM recipients WHERE state NOT IN ('delivered', 'bounced', 'deleted')
             ORDER BY message_id",
            &[],
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.extend(load_queued(&c, parsed(&r, 0)?).await?);
        }
        Ok(out)
    }

    async fn queue_show(&self, id: MessageId) -> Result<Option<QueuedMessage>> {
        load_queued(&self.client().await?, id).await
    }

    async fn queue_retry(&self, id: Option<MessageId>, now: i64, actor: &str) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        if let Some(id) = id {
            require_message(&tx, id).await?;
        }
        let key = id.map(|i| i.to_string());
        let n = execute(
            &tx,
            "UPDATE recipients SET next_attempt = $1 WHERE state = 'queued' AND ($2::TEXT IS NULL OR message_id = $2)",
            &[&now, &key],
        )
        .await?;
        audit(&tx, now, actor, "retry", id, &format!("{n} recipient(s) due now")).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn queue_hold(&self, id: MessageId, now: i64, actor: &str) -> Result<u64> {
        let sql = "UPDATE recipients SET state = 'held' WHERE message_id = $1 AND state = 'queued'";
        self.audited((id, now, actor), "hold", sql, &[], "held").await
    }

    async fn queue_release(&self, id: MessageId, now: i64, actor: &str) -> Result<u64> {
        let sql = "UPDATE recipients SET state = 'queued', next_attempt = $2 WHERE message_id = $1 AND state = 'held'";
        self.audited((id, now, actor), "release", sql, &[&now], "released").await
    }

    async fn queue_delete(&self, id: MessageId, now: i64, actor: &str, notices: Vec<NewMessage>) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        require_message(&tx, id).await?;
        let n = execute(
            &tx,
            "UPDATE recipients SET state = 'deleted', final_at = $1, lease_until = NULL
             WHERE message_id = $2 AND state IN ('queued', 'held')",
            &[&now, &id.to_string()],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("message {id} has no pending recipient to delete")));
        }
        let detail = crate::invariants::deleted_detail(n, !notices.is_empty());
        audit(&tx, now, actor, "delete", Some(id), &detail).await?;
        let mut touched = Vec::new();
        for m in &notices {
            touched.extend(insert_message(&tx, m, now).await?.into_iter().map(|p| p.mailbox_id));
        }
        tx.commit().await.map_err(db)?;
        self.changed(touched);
        Ok(n)
    }

    async fn audit_log(&self, id: Option<MessageId>) -> Result<Vec<AuditRecord>> {
        let c = self.client().await?;
        let rows = query(
            &c,
            "SELECT at, actor, action, message_id, detail FROM audit
             WHERE ($1::TEXT IS NULL OR message_id = $1) ORDER BY id",
            &[&id.map(|i| i.to_string())],
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    at: r.get(0),
                    actor: r.get(1),
                    action: r.get(2),
                    message_id: parsed_opt(r, 3)?,
                    detail: r.get(4),
                })
            })
            .collect()
    }

    async fn set_control(&self, key: &ControlKey, value: Option<&str>, now: i64, actor: &str) -> Result<()> {
        let key = key.to_string();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        match value {
            Some(v) => {
                execute(
                    &tx,
                    "INSERT INTO controls (key, value, set_at, actor) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, set_at = excluded.set_at,
                         actor = excluded.actor",
                    &[&key, &v, &now, &actor],
                )
                .await?;
                audit(&tx, now, actor, "control", None, &format!("{key} = {v}")).await?;
            }
            None => {
                execute(&tx, "DELETE FROM controls WHERE key = $1", &[&key]).await?;
                audit(&tx, now, actor, "control", None, &format!("{key} cleared")).await?;
            }
        }
        tx.commit().await.map_err(db)
    }

    async fn write_probe(&self, now: i64) -> Result<()> {
        let c = self.client().await?;
        execute(
            &c,
            "INSERT INTO write_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            &[&now],
        )
        .await?;
        Ok(())
    }

    async fn check(&self, repair: bool) -> Result<CheckReport> {
        let now = self.now();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let report = super::check::run(&tx, repair, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(report)
    }
}
