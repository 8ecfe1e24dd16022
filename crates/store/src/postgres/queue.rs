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
use crate::{Housekeeping, Sweep, depth, lifecycle};

fn envelope_of(id: &str, json: &str) -> Result<StoredEnvelope> {
    serde_json::from_str(json).map_err(|e| StoreError::Internal(format!("message {id}: unreadable envelope: {e}")))
}

/// Messages, their bodies and their recipients in one statement: one
/// round trip for any number of messages, and on its own one commit.
const INSERT_MESSAGES: &str = "
    WITH m AS (INSERT INTO messages (id, received_at, size, envelope, class)
               SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[])),
         b AS (INSERT INTO message_bodies (message_id, data) SELECT * FROM unnest($1::TEXT[], $6::BYTEA[]))
    INSERT INTO recipients (message_id, idx, address, domain, notify, orcpt, state, next_attempt, class)
    SELECT * FROM unnest($7::TEXT[], $8::INT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $13::TEXT[],
                         $14::BIGINT[], $15::TEXT[])";

/// Store the messages' rows, bodies and recipients ([`INSERT_MESSAGES`]).
pub(crate) async fn insert_rows<C: GenericClient>(c: &C, msgs: &[&NewMessage]) -> Result<()> {
    let (mut ids, mut received, mut sizes, mut envelopes, mut classes, mut bodies) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut r_ids, mut idx, mut address, mut domain, mut notify, mut orcpt, mut state, mut next, mut r_class) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for msg in msgs {
        let id = msg.id.to_string();
        envelopes.push(serde_json::to_string(&msg.envelope).map_err(|e| StoreError::Internal(e.to_string()))?);
        received.push(msg.received_at);
        sizes.push(msg.data.len() as i64);
        classes.push(msg.class.as_str());
        bodies.push(msg.data.as_slice());
        for (i, r) in msg.recipients.iter().enumerate() {
            r_ids.push(id.clone());
            idx.push(i as i32);
            address.push(r.address.as_str());
            domain.push(r.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default());
            notify.push(r.notify.map(|n| n.to_string()));
            orcpt.push(r.orcpt.as_deref());
            let (s, t) = match r.route {
                Route::Local { .. } => (RecipientStatus::Delivered, None),
                Route::Remote => msg.remote_state(),
            };
            state.push(s.as_str());
            next.push(t);
            r_class.push(msg.class.as_str());
        }
        ids.push(id);
    }
    execute(
        c,
        INSERT_MESSAGES,
        &[
            &ids, &received, &sizes, &envelopes, &classes, &bodies, &r_ids, &idx, &address, &domain, &notify, &orcpt,
            &state, &next, &r_class,
        ],
    )
    .await?;
    Ok(())
}

/// Writes that wait for a shared statement and commit: acceptances of
/// relayed mail, and outcomes without notices (the engine's common case).
pub(crate) enum Job {
    Accept(NewMessage),
    Record(Vec<RecipientUpdate>),
}

pub(crate) struct Work {
    pub(crate) job: Job,
    pub(crate) done: tokio::sync::oneshot::Sender<Result<()>>,
}

impl Job {
    fn octets(&self) -> usize {
        match self {
            Job::Accept(m) => m.data.len(),
            Job::Record(u) => u.len() * 256,
        }
    }
}

/// At most this many writes, and about this many octets of mail, share one
/// statement and commit (a larger message goes alone).
const MAX_BATCH: usize = 256;
const MAX_BATCH_OCTETS: usize = 16 << 20;

/// Start `writers` tasks that take the writes waiting and store them by
/// kind, each kind in one statement and one commit: concurrent sessions
/// and delivery workers share commits as the SQLite writer thread makes
/// them share its fsync.
pub(crate) fn spawn_writers(
    pool: deadpool_postgres::Pool,
    clock: crate::SharedClock,
    node: String,
    writers: usize,
) -> tokio::sync::mpsc::Sender<Work> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Work>(4 * MAX_BATCH);
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..writers.max(1) {
        let (pool, rx, clock, node) = (pool.clone(), rx.clone(), clock.clone(), node.clone());
        tokio::spawn(async move {
            loop {
                let batch = {
                    let mut rx = rx.lock().await;
                    let Some(first) = rx.recv().await else { return };
                    let mut octets = first.job.octets();
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH && octets < MAX_BATCH_OCTETS {
                        match rx.try_recv() {
                            Ok(w) => {
                                octets += w.job.octets();
                                batch.push(w);
                            }
                            Err(_) => break,
                        }
                    }
                    batch
                };
                let (accepts, records): (Vec<Work>, Vec<Work>) =
                    batch.into_iter().partition(|w| matches!(w.job, Job::Accept(_)));
                for group in [accepts, records] {
                    if !group.is_empty() {
                        store_group(&pool, group, clock.now(), &node).await;
                    }
                }
            }
        });
    }
    tx
}

/// One kind of write, in one statement; every caller learns the outcome.
async fn store_group(pool: &deadpool_postgres::Pool, group: Vec<Work>, now: i64, node: &str) {
    let jobs: Vec<&Job> = group.iter().map(|w| &w.job).collect();
    let started = std::time::Instant::now();
    let outcome = match crate::telemetry::injected_fault() {
        Some(fault) => Err(StoreError::Unavailable(fault)),
        None => run_jobs(pool, &jobs, now, node).await,
    };
    match &outcome {
        Ok(()) => crate::telemetry::committed("postgres", started, group.len()),
        Err(_) => crate::telemetry::commit_failed("postgres"),
    }
    match outcome {
        Ok(()) => group.into_iter().for_each(|w| drop(w.done.send(Ok(())))),
        // The database refused the statement, so nothing of it was
        // committed: one bad write must not cost the others theirs; each
        // is tried alone.
        Err(StoreError::Backend(e)) if group.len() > 1 => {
            tracing::warn!(error = %e, writes = group.len(), "a group of writes failed; storing each alone");
            for w in group {
                let alone = run_jobs(pool, &[&w.job], now, node).await;
                let _ = w.done.send(alone);
            }
        }
        // Unreachable or lost mid-commit: whether it committed is unknown,
        // so it is not tried again here; an acceptance answers 451 (its
        // client sends again), an outcome is retried when its lease ends.
        Err(e) => {
            tracing::error!(error = %e, writes = group.len(), "storing a group of writes failed");
            for w in group {
                let _ = w.done.send(Err(StoreError::Unavailable(format!("storing failed: {e}"))));
            }
        }
    }
}

/// Writes of one kind, in one statement (and so one commit).
async fn run_jobs(pool: &deadpool_postgres::Pool, jobs: &[&Job], now: i64, node: &str) -> Result<()> {
    let c = pool.get().await.map_err(|e| StoreError::Unavailable(format!("PostgreSQL pool: {e}")))?;
    let msgs: Vec<&NewMessage> =
        jobs.iter().filter_map(|j| if let Job::Accept(m) = j { Some(m) } else { None }).collect();
    if !msgs.is_empty() {
        return insert_rows(&c, &msgs).await;
    }
    let updates: Vec<RecipientUpdate> = jobs
        .iter()
        .filter_map(|j| if let Job::Record(u) = j { Some(u.iter().cloned()) } else { None })
        .flatten()
        .collect();
    apply_updates(&c, &updates, now, node).await
}

impl PgStore {
    /// Hand a write to the writers and wait for its commit.
    async fn shared_commit(&self, job: Job) -> Result<()> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.inner
            .writes
            .send(Work { job, done })
            .await
            .map_err(|_| StoreError::Unavailable("the PostgreSQL writers have stopped".into()))?;
        committed.await.map_err(|_| StoreError::Unavailable("a PostgreSQL writer stopped".into()))?
    }
}

fn has_local(msg: &NewMessage) -> bool {
    msg.recipients.iter().any(|r| matches!(r.route, Route::Local { .. }))
}

/// Insert an accepted message with its recipients and place it in the
/// local users' INBOXes, inside the caller's transaction; `now` dates
/// repairs.
pub(crate) async fn insert_message<C: GenericClient>(c: &C, msg: &NewMessage, now: i64) -> Result<Vec<Placement>> {
    insert_rows(c, &[msg]).await?;
    // Local users' INBOXes, made if missing (repaired rather than refusing
    // mail), then locked in id order before any UID is taken.
    let mut inboxes: Vec<(String, i64)> = Vec::new();
    for r in &msg.recipients {
        if let Route::Local { user, mailbox } = &r.route
            && !inboxes.iter().any(|(u, _)| u == user)
        {
            let named = match mailbox {
                Some(name) => query_opt(
                    c,
                    "SELECT id FROM mailboxes WHERE owner = $1 AND lower(name) = lower($2) ORDER BY name LIMIT 1",
                    &[user, name],
                )
                .await?
                .map(|r| r.get::<_, i64>(0)),
                None => None,
            };
            let id = match named {
                Some(id) => id,
                None => match mail::get(c, user, "INBOX").await? {
                    Some(m) => m.id,
                    None => {
                        tracing::error!(user, "user had no INBOX; created it");
                        mail::create_mailbox(c, user, "INBOX", None, now).await?
                    }
                },
            };
            inboxes.push((user.clone(), id));
        }
    }
    if inboxes.is_empty() {
        return Ok(Vec::new());
    }
    mail::lock(c, inboxes.iter().map(|(_, id)| *id).collect()).await?;
    let id = msg.id.to_string();
    let mut placements = Vec::new();
    for (user, mailbox_id) in inboxes {
        let (uid, _) = mail::place(c, mailbox_id, &id, &[], msg.received_at).await?;
        placements.push(Placement { user, mailbox_id, uid });
    }
    Ok(placements)
}

/// Recipient updates and their attempts in one statement. Delivered is the
/// truth whatever an operator did meanwhile; other outcomes apply only to
/// a recipient still queued (not held or deleted while the attempt was in
/// flight). Whatever applies, the attempt's lease is over.
async fn apply_updates<C: GenericClient>(c: &C, updates: &[RecipientUpdate], now: i64, node: &str) -> Result<()> {
    const OK: &str = "((u.state = 'delivered' AND r.state IN ('queued', 'held', 'deleted')) OR r.state = 'queued')";
    const MINE: &str = "(r.lease_owner IS NULL OR r.lease_owner = $15)";
    let n = updates.len();
    let mut ids = Vec::with_capacity(n);
    let (mut idx, mut state, mut next, mut counted, mut error, mut warned, mut final_at) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut a_ids, mut a_idx, mut a_at, mut a_host, mut a_outcome, mut a_reply) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for u in updates {
        let id = u.message_id.to_string();
        let (n, f) = match u.state {
            NewState::Deferred { next_attempt } => (Some(next_attempt), None),
            _ => (None, Some(u.attempt.as_ref().map(|a| a.at).unwrap_or(now))),
        };
        if let Some(a) = &u.attempt {
            a_ids.push(id.clone());
            a_idx.push(u.idx as i32);
            a_at.push(a.at);
            a_host.push(a.host.clone());
            a_outcome.push(a.outcome.as_str());
            a_reply.push(a.reply.as_str());
        }
        ids.push(id);
        idx.push(u.idx as i32);
        state.push(u.state.status().as_str());
        next.push(n);
        counted.push(u.attempt.is_some() as i32);
        error.push(u.last_error.as_deref());
        warned.push(u.delay_notified);
        final_at.push(f);
    }
    let sql = format!(
        "WITH u AS (
             SELECT * FROM unnest($1::TEXT[], $2::INT[], $3::TEXT[], $4::BIGINT[], $5::INT[], $6::TEXT[],
                                  $7::BOOL[], $8::BIGINT[])
                 AS u(message_id, idx, state, next_attempt, counted, last_error, delay_notified, final_at)),
         changed AS (
             UPDATE recipients r SET
                 state = CASE WHEN {OK} THEN u.state ELSE r.state END,
                 next_attempt = CASE WHEN {OK} THEN COALESCE(u.next_attempt, r.next_attempt) ELSE r.next_attempt END,
                 attempts = r.attempts + CASE WHEN {OK} THEN u.counted ELSE 0 END,
                 last_error = CASE WHEN {OK} THEN COALESCE(u.last_error, r.last_error) ELSE r.last_error END,
                 delay_notified = CASE WHEN {OK} THEN r.delay_notified OR u.delay_notified ELSE r.delay_notified END,
                 final_at = CASE WHEN {OK} THEN u.final_at ELSE r.final_at END,
                 -- The lease this node took is over; one another node took
                 -- since (this one was presumed dead) stays that node's.
                 lease_until = CASE WHEN {MINE} THEN NULL ELSE r.lease_until END,
                 lease_owner = CASE WHEN {MINE} THEN NULL ELSE r.lease_owner END
             -- The ANY names the rows by primary key for the planner, which
             -- otherwise guesses 100 rows from unnest and scans the table.
             FROM u WHERE r.message_id = ANY($1) AND r.message_id = u.message_id AND r.idx = u.idx
             RETURNING r.message_id, r.idx, r.state),
         -- Bodies of messages now finished and in no mailbox. (This
         -- statement sees recipients as they were before `changed`.)
         finished AS (
             DELETE FROM message_bodies b
             WHERE b.message_id IN (SELECT message_id FROM changed WHERE state NOT IN ('queued', 'held'))
               AND NOT EXISTS (
                   SELECT 1 FROM recipients w WHERE w.message_id = b.message_id AND w.state IN ('queued', 'held')
                     AND NOT EXISTS (SELECT 1 FROM changed ch WHERE ch.message_id = w.message_id AND ch.idx = w.idx
                                     AND ch.state NOT IN ('queued', 'held')))
               AND NOT EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = b.message_id))
         INSERT INTO attempts (message_id, idx, at, host, outcome, reply)
         SELECT * FROM unnest($9::TEXT[], $10::INT[], $11::BIGINT[], $12::TEXT[], $13::TEXT[], $14::TEXT[])"
    );
    execute(
        c,
        &sql,
        &[
            &ids, &idx, &state, &next, &counted, &error, &warned, &final_at, &a_ids, &a_idx, &a_at, &a_host,
            &a_outcome, &a_reply, &node,
        ],
    )
    .await?;
    Ok(())
}

/// A housekeeping transaction, if no other node holds housekeeping's lock
/// (one node at a time; the others find it busy and leave it).
async fn housekeeping_turn(c: &mut deadpool_postgres::Object) -> Result<Option<deadpool_postgres::Transaction<'_>>> {
    let tx = c.transaction().await.map_err(db)?;
    let mine: bool =
        query_one(&tx, "SELECT pg_try_advisory_xact_lock(hashtext('facteur-housekeeping:' || current_schema()))", &[])
            .await?
            .get(0);
    Ok(mine.then_some(tx))
}

/// The counters with the changes not yet folded in, as rows of (class,
/// domain, state, minute, n).
pub(crate) const COUNTS: &str = "(SELECT class, domain, state, minute, n FROM queue_counts
     UNION ALL SELECT class, domain, state, minute, n FROM queue_count_changes) c";

/// Adds the change rows the triggers appended into the counters and folds
/// minutes gone by into minute 0 (see schema 5). One node at a time: the
/// others skip it and read the change rows as they are.
pub(crate) async fn fold_counts(c: &mut deadpool_postgres::Object, now: i64) -> Result<()> {
    let tx = c.transaction().await.map_err(db)?;
    let mine: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock(hashtext('facteur-counts:' || current_schema()))", &[])
        .await
        .map_err(db)?
        .get(0);
    if !mine {
        return Ok(());
    }
    let minute = depth::minute(now);
    execute(
        &tx,
        "WITH gone AS (DELETE FROM queue_counts WHERE state = 'queued' AND minute > 0 AND minute < $1
                       RETURNING class, domain, state, n)
         INSERT INTO queue_count_changes SELECT class, domain, state, 0, SUM(n) FROM gone GROUP BY 1, 2, 3",
        &[&minute],
    )
    .await?;
    execute(
        &tx,
        "WITH moved AS (DELETE FROM queue_count_changes RETURNING class, domain, state, minute, n)
         INSERT INTO queue_counts (class, domain, state, minute, n)
         SELECT class, domain, state, minute, SUM(n) FROM moved GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
         ON CONFLICT (class, domain, state, minute) DO UPDATE SET n = queue_counts.n + excluded.n",
        &[],
    )
    .await?;
    execute(&tx, "DELETE FROM queue_counts WHERE n = 0", &[]).await?;
    tx.commit().await.map_err(db)
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
        self.store_messages(vec![msg]).await
    }

    async fn store_messages(&self, mut msgs: Vec<NewMessage>) -> Result<Vec<Placement>> {
        let now = self.now();
        if msgs.len() == 1 && !has_local(&msgs[0]) {
            // Relayed mail: stored with whatever else is being accepted
            // now, in one statement and one commit.
            self.shared_commit(Job::Accept(msgs.remove(0))).await?;
            return Ok(Vec::new());
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let mut placements = Vec::new();
        for msg in &msgs {
            placements.extend(insert_message(&tx, msg, now).await?);
        }
        self.announce(&tx, placements.iter().map(|p| p.mailbox_id)).await?;
        tx.commit().await.map_err(db)?;
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
        let skip_classes: Vec<Option<&str>> = filter.skip.iter().map(|(_, k)| k.map(Class::as_str)).collect();
        let class = filter.class.map(Class::as_str);
        let c = self.client().await?;
        // One statement: due rows in claim order, locked (rows another node
        // is claiming right now are skipped, not waited for), leased, and
        // returned with their message. Paused (domain, class) pairs are
        // left out, a NULL in a pair matching anything.
        // A class-wide claim and an any-class one are separate statements,
        // each with its index (recipients_due_class, recipients_due).
        let by_class = if class.is_some() { "r.class = $3" } else { "$3::TEXT IS NULL" };
        let rows = query(
            &c,
            &format!(
                "WITH due AS (
                 SELECT r.message_id, r.idx FROM recipients r
                 WHERE r.state = 'queued' AND {by_class} AND r.next_attempt <= $1
                   AND (r.lease_until IS NULL OR r.lease_until <= $1)
                   AND NOT EXISTS (
                       SELECT 1 FROM unnest($5::TEXT[], $6::TEXT[]) AS s(domain, class)
                       WHERE (s.domain IS NULL OR r.domain = s.domain) AND (s.class IS NULL OR r.class = s.class))
                 ORDER BY r.next_attempt, r.message_id, r.idx
                 LIMIT $2
                 FOR UPDATE OF r SKIP LOCKED),
             leased AS (
                 UPDATE recipients r SET lease_until = $4, lease_owner = $7 FROM due
                 WHERE r.message_id = due.message_id AND r.idx = due.idx
                 RETURNING r.message_id, r.idx, r.address, r.domain, r.notify, r.orcpt, r.attempts,
                           r.delay_notified, r.next_attempt)
             SELECT l.message_id, l.idx, l.address, l.domain, l.notify, l.orcpt, l.attempts, l.delay_notified,
                    m.received_at, m.size, m.envelope, m.class
             FROM leased l JOIN messages m ON m.id = l.message_id
             ORDER BY l.next_attempt, l.message_id, l.idx"
            ),
            &[&now, &(limit as i64), &class, &lease_until, &skip_domains, &skip_classes, &self.inner.node],
        )
        .await?;
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
            index.insert(key, jobs.len());
            jobs.push(DeliveryJob {
                message_id: parsed(&r, 0)?,
                received_at: r.get(8),
                class: parsed(&r, 11)?,
                size: r.get::<_, i64>(9) as u64,
                envelope: envelope_of(&message_id, r.get(10))?,
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
                  ORDER BY next_attempt LIMIT 1),
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
        if notices.is_empty() {
            // The usual case: with whatever other outcomes are being
            // recorded now, in one statement and one commit.
            return self.shared_commit(Job::Record(updates)).await;
        }
        let now = self.now();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        apply_updates(&tx, &updates, now, &self.inner.node).await?;
        let mut touched = Vec::new();
        for n in &notices {
            touched.extend(insert_message(&tx, n, now).await?.into_iter().map(|p| p.mailbox_id));
        }
        self.announce(&tx, touched).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn renew_leases(&self, held: Vec<(MessageId, u32)>, until: i64) -> Result<Vec<(MessageId, u32)>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = held.iter().map(|(id, _)| id.to_string()).collect();
        let idx: Vec<i32> = held.iter().map(|(_, i)| *i as i32).collect();
        let c = self.client().await?;
        // Rows being recorded right now are skipped, not waited for (their
        // lease ends with the record): renewal never deadlocks with it.
        let rows = query(
            &c,
            "WITH mine AS (
                 SELECT r.message_id, r.idx FROM recipients r
                 JOIN unnest($1::TEXT[], $2::INT[]) AS h(message_id, idx)
                   ON r.message_id = h.message_id AND r.idx = h.idx
                 WHERE r.lease_owner = $3 AND r.state = 'queued'
                 FOR UPDATE OF r SKIP LOCKED)
             UPDATE recipients r SET lease_until = $4 FROM mine
             WHERE r.message_id = mine.message_id AND r.idx = mine.idx
             RETURNING r.message_id, r.idx",
            &[&ids, &idx, &self.inner.node, &until],
        )
        .await?;
        rows.iter().map(|r| Ok((parsed(r, 0)?, r.get::<_, i32>(1) as u32))).collect()
    }

    async fn release_leases(&self) -> Result<u64> {
        let c = self.client().await?;
        execute(
            &c,
            "UPDATE recipients SET lease_until = NULL, lease_owner = NULL
             WHERE lease_until IS NOT NULL AND (lease_owner = $1 OR lease_owner IS NULL)",
            &[&self.inner.node],
        )
        .await
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
        let minute = depth::minute(now);
        let mut c = self.client().await?;
        fold_counts(&mut c, now).await?;
        let counts = query(&c, &depth::counts_sql(COUNTS, by_domain), &[&minute])
            .await?
            .iter()
            .map(|r| Ok((parsed(r, 0)?, r.get(1), r.get(2), r.get(3), r.get(4))))
            .collect::<Result<_>>()?;
        let current = query(&c, &depth::current_minute_sql(by_domain), &[&(minute * 60), &now])
            .await?
            .iter()
            .map(|r| Ok((parsed(r, 0)?, r.get(1), r.get(2))))
            .collect::<Result<_>>()?;
        let mut stats = depth::assemble(counts, current);
        // One statement for every class (or destination and class) with
        // ready mail: an index seek each, one round trip in all.
        let ready: Vec<usize> = (0..stats.len()).filter(|&i| stats[i].ready > 0).collect();
        let classes: Vec<&str> = ready.iter().map(|&i| stats[i].class.as_str()).collect();
        let domains: Vec<&str> = ready.iter().map(|&i| stats[i].domain.as_str()).collect();
        let since = format!(
            "SELECT ({}) FROM unnest($1::TEXT[], $2::TEXT[]) WITH ORDINALITY AS k(class, domain, n) ORDER BY n",
            depth::since_sql(by_domain).replace("$1", "k.class").replace("$2", "k.domain")
        );
        for (i, row) in ready.iter().zip(query(&c, &since, &[&classes, &domains]).await?) {
            stats[*i].ready_since = row.get(0);
        }
        Ok(stats)
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
            "UPDATE recipients SET state = 'deleted', final_at = $1, lease_until = NULL, lease_owner = NULL
             WHERE message_id = $2 AND state IN ('queued', 'held')",
            &[&now, &id.to_string()],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("message {id} has no pending recipient to delete")));
        }
        mail::drop_unneeded(&tx, &[id.to_string()]).await?;
        let detail = crate::invariants::deleted_detail(n, !notices.is_empty());
        audit(&tx, now, actor, "delete", Some(id), &detail).await?;
        let mut touched = Vec::new();
        for m in &notices {
            touched.extend(insert_message(&tx, m, now).await?.into_iter().map(|p| p.mailbox_id));
        }
        self.announce(&tx, touched).await?;
        tx.commit().await.map_err(db)?;
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
        // Not a group commit, but a commit the storage objective counts.
        let written = async {
            if let Some(fault) = crate::telemetry::injected_fault() {
                return Err(StoreError::Unavailable(fault));
            }
            let c = self.client().await?;
            execute(
                &c,
                "INSERT INTO write_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                &[&now],
            )
            .await
        }
        .await;
        facteur_types::signal::record(facteur_types::signal::Signal::Storage, written.is_ok(), 1);
        written.map(drop)
    }

    async fn housekeeping(&self, now: i64, finished_before: i64, from: Sweep) -> Result<Housekeeping> {
        let mut c = self.client().await?;
        fold_counts(&mut c, now).await?;
        let upper = lifecycle::received_before(finished_before);
        let mut done = Housekeeping { more: true, next: from, ..Housekeeping::default() };
        for _ in 0..lifecycle::ROUNDS {
            let Some(tx) = housekeeping_turn(&mut c).await? else {
                done.more = false;
                return Ok(done);
            };
            let rows =
                query(&tx, lifecycle::CANDIDATES, &[&done.next.records, &upper, &finished_before, &lifecycle::BATCH])
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get::<_, i32>(1) as i64))
                    .collect();
            let (ids, next) = lifecycle::plan(rows);
            for sql in lifecycle::drop_records("= ANY($1)") {
                execute(&tx, &sql, &[&ids]).await?;
            }
            done.messages_removed += mail::drop_unneeded(&tx, &ids).await?;
            tx.commit().await.map_err(db)?;
            done.records_removed += ids.len() as u64;
            done.more = next.is_some();
            done.next.records = next.unwrap_or_default();
            if !done.more {
                break;
            }
        }
        for _ in 0..lifecycle::MESSAGE_BATCHES {
            let Some(tx) = housekeeping_turn(&mut c).await? else { break };
            let ids: Vec<String> = query(&tx, lifecycle::MESSAGES, &[&done.next.messages, &lifecycle::BATCH])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            done.messages_removed += mail::drop_unneeded(&tx, &ids).await?;
            tx.commit().await.map_err(db)?;
            done.next.messages = lifecycle::next_message(&ids);
            if done.next.messages.is_empty() {
                break;
            }
        }
        Ok(done)
    }

    async fn check(&self, repair: bool) -> Result<CheckReport> {
        let now = self.now();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let mut report = super::check::run(&tx, repair, now).await?;
        tx.commit().await.map_err(db)?;
        report.findings.extend(super::check::counts(&mut c, repair, self.now()).await?);
        Ok(report)
    }
}

impl crate::Cluster for PgStore {
    fn node(&self) -> &str {
        &self.inner.node
    }

    async fn join(&self, region: &str, version: &str, delivers: bool, now: i64) -> Result<()> {
        let c = self.client().await?;
        execute(
            &c,
            "INSERT INTO nodes (name, region, version, started_at, heartbeat_at, delivers)
             VALUES ($1, $2, $3, $4, $4, $5)
             ON CONFLICT (name) DO UPDATE SET region = excluded.region, version = excluded.version,
                 started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL,
                 delivers = excluded.delivers",
            &[&self.inner.node, &region, &version, &now, &delivers],
        )
        .await?;
        Ok(())
    }

    async fn heartbeat(&self, now: i64) -> Result<()> {
        let c = self.client().await?;
        execute(&c, "UPDATE nodes SET heartbeat_at = $2 WHERE name = $1", &[&self.inner.node, &now]).await?;
        Ok(())
    }

    async fn leave(&self, now: i64) -> Result<()> {
        let c = self.client().await?;
        execute(&c, "UPDATE nodes SET heartbeat_at = $2, stopped_at = $2 WHERE name = $1", &[&self.inner.node, &now])
            .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<crate::NodeRecord>> {
        let c = self.client().await?;
        let rows = query(
            &c,
            "SELECT name, region, version, started_at, heartbeat_at, stopped_at, delivers FROM nodes ORDER BY name",
            &[],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| crate::NodeRecord {
                name: r.get(0),
                region: r.get(1),
                version: r.get(2),
                started_at: r.get(3),
                heartbeat_at: r.get(4),
                stopped_at: r.get(5),
                delivers: r.get(6),
            })
            .collect())
    }
}
