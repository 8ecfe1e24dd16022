//! The invariant checks on PostgreSQL: the same findings as SQLite's,
//! each repaired from the data where the data allows.

use deadpool_postgres::GenericClient;

use super::{execute, mail, query, query_one};
use crate::{CheckReport, Finding, Result, Severity, depth};

fn finding(severity: Severity, invariant: &str, detail: String) -> Finding {
    Finding { severity, invariant: invariant.into(), detail }
}

pub async fn run<C: GenericClient>(c: &C, repair: bool, now: i64) -> Result<CheckReport> {
    let count = |sql: &'static str| async move { query_one(c, sql, &[]).await.map(|r| r.get::<_, i64>(0)) };
    let mut report = CheckReport {
        schema_version: super::schema::current_version(c).await?,
        mailboxes: count("SELECT COUNT(*) FROM mailboxes").await? as u64,
        messages: count("SELECT COUNT(*) FROM messages").await? as u64,
        findings: Vec::new(),
    };
    let fixed = if repair { Severity::Repaired } else { Severity::Error };

    // UIDNEXT is greater than every UID stored or expunged (RFC 9051
    // §2.3.1.1), and the counter exists.
    let rows = query(
        c,
        "SELECT m.id, m.owner, m.name, u.uidnext,
                GREATEST(COALESCE((SELECT MAX(uid) FROM mailbox_messages mm WHERE mm.mailbox_id = m.id), 0),
                         m.expunged_uid_max)
         FROM mailboxes m LEFT JOIN uid_counters u ON u.mailbox_id = m.id ORDER BY m.id",
        &[],
    )
    .await?;
    for r in rows {
        let (id, owner, name, uidnext, max_uid): (i64, String, String, Option<i64>, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let mailbox = format!("{owner}/{name} (id {id})");
        if let Some(detail) = crate::invariants::uid_counter_problem(&mailbox, uidnext, max_uid) {
            if repair {
                execute(
                    c,
                    "INSERT INTO uid_counters (mailbox_id, uidnext) VALUES ($1, $2)
                     ON CONFLICT (mailbox_id) DO UPDATE SET uidnext = excluded.uidnext",
                    &[&id, &(max_uid + 1)],
                )
                .await?;
                tracing::error!(mailbox_id = id, %detail, "UID invariant broken; counter rebuilt as {}", max_uid + 1);
            }
            report.findings.push(finding(fixed, "uidnext-above-max-uid", detail));
        }
    }

    let stale = count(
        "SELECT COUNT(*) FROM uid_counters u WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = u.mailbox_id)",
    )
    .await?;
    if stale > 0 {
        if repair {
            execute(
                c,
                "DELETE FROM uid_counters u WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = u.mailbox_id)",
                &[],
            )
            .await?;
        }
        report.findings.push(finding(
            fixed,
            "counter-has-mailbox",
            format!("{stale} UID counter(s) without a mailbox"),
        ));
    }

    let missing = query(
        c,
        "SELECT address FROM users u
         WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.owner = u.address AND m.name = 'INBOX')",
        &[],
    )
    .await?;
    for r in missing {
        let user: String = r.get(0);
        if repair {
            mail::create_mailbox(c, &user, "INBOX", None, now).await?;
        }
        report.findings.push(finding(fixed, "user-has-inbox", format!("user {user} has no INBOX")));
    }

    // Cannot be repaired from the data: reported loudly, never silently dropped.
    let orphans = count(
        "SELECT COUNT(*) FROM mailbox_messages mm WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = mm.mailbox_id)",
    )
    .await?;
    if orphans > 0 {
        report.findings.push(finding(
            Severity::Error,
            "message-has-mailbox",
            format!("{orphans} mailbox entr(y/ies) point to a mailbox that does not exist"),
        ));
    }
    let bodiless: i64 =
        query_one(c, &format!("SELECT COUNT(*) {}", crate::lifecycle::MISSING_BODIES), &[]).await?.get(0);
    if bodiless > 0 {
        report.findings.push(finding(
            Severity::Error,
            "message-has-body",
            format!("{bodiless} message(s) waiting for delivery or in a mailbox have no stored body"),
        ));
    }
    // Bodies, recipients and attempts belong to a message (no foreign keys
    // on PostgreSQL: the statement that writes them ties them).
    for (table, invariant) in [
        ("message_bodies", "body-has-message"),
        ("recipients", "recipient-has-message"),
        ("attempts", "attempt-has-message"),
    ] {
        let sql = format!(
            "SELECT COUNT(*) FROM {table} x WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = x.message_id)"
        );
        let n: i64 = query_one(c, &sql, &[]).await?.get(0);
        if n > 0 {
            report.findings.push(finding(
                Severity::Error,
                invariant,
                format!("{n} row(s) of {table} belong to no message"),
            ));
        }
    }
    // HIGHESTMODSEQ is at least every message's MODSEQ (RFC 7162 §3.1.1).
    let behind = query(
        c,
        "SELECT m.id, m.owner, m.name, MAX(mm.modseq) FROM mailboxes m JOIN mailbox_messages mm ON mm.mailbox_id = m.id
         GROUP BY m.id HAVING MAX(mm.modseq) > m.highest_modseq",
        &[],
    )
    .await?;
    for r in behind {
        let (id, owner, name, max): (i64, String, String, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        if repair {
            // Never lower: another node may have raised it meanwhile.
            execute(
                c,
                "UPDATE mailboxes SET highest_modseq = GREATEST(highest_modseq, $2 + 1) WHERE id = $1",
                &[&id, &max],
            )
            .await?;
        }
        report.findings.push(finding(
            fixed,
            "highestmodseq-above-modseq",
            format!("mailbox {owner}/{name} (id {id}) has HIGHESTMODSEQ below a message's MODSEQ {max}"),
        ));
    }
    // Leases held in the name of a node that is not running.
    let orphans = crate::invariants::ORPHAN_LEASES.replace("%NOW%", "$1");
    let held: i64 = query_one(c, &format!("SELECT COUNT(*) {orphans}"), &[&now]).await?.get(0);
    if held > 0 {
        if repair {
            execute(
                c,
                &format!(
                    "UPDATE recipients x SET lease_until = NULL, lease_owner = NULL
                     FROM (SELECT r.message_id, r.idx {orphans}) o
                     WHERE x.message_id = o.message_id AND x.idx = o.idx"
                ),
                &[&now],
            )
            .await?;
        }
        report.findings.push(finding(
            fixed,
            "lease-owner-running",
            format!("{held} recipient(s) leased by a node that is not running"),
        ));
    }
    Ok(report)
}

/// The queue counters agree with a recount of the queue (`now`: taken just
/// before, see [`depth::check_horizon`]); rebuilt from it with `repair`.
/// In a transaction of its own, holding the counters' fold lock (no node
/// folds meanwhile) and, to repair, a share lock on the recipients: writers
/// wait the moment a recount takes, and this transaction holds no row they
/// could be waiting for.
pub async fn counts(c: &mut deadpool_postgres::Object, repair: bool, now: i64) -> Result<Option<Finding>> {
    let tx = c.transaction().await.map_err(super::db)?;
    tx.batch_execute("SELECT pg_advisory_xact_lock(hashtext('facteur-counts:' || current_schema()))")
        .await
        .map_err(super::db)?;
    let horizon = depth::check_horizon(now);
    let wrong: i64 = query_one(&tx, &depth::mismatch_sql(super::queue::COUNTS), &[&horizon]).await?.get(0);
    if wrong == 0 {
        return Ok(None);
    }
    if repair {
        tx.batch_execute(
            "LOCK TABLE recipients IN SHARE MODE; DELETE FROM queue_count_changes; DELETE FROM queue_counts",
        )
        .await
        .map_err(super::db)?;
        execute(
            &tx,
            &format!("INSERT INTO queue_counts (class, domain, state, minute, n) {}", depth::recount_sql()),
            &[],
        )
        .await?;
    }
    tx.commit().await.map_err(super::db)?;
    let severity = if repair { Severity::Repaired } else { Severity::Error };
    Ok(Some(finding(severity, "queue-counts-match", depth::mismatch_detail(wrong))))
}
