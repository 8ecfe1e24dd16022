//! Storage invariants: verified at startup, periodically while serving, and
//! by `facteur check`. With `repair`, what can be rebuilt from the data is
//! rebuilt and reported as "repaired"; what cannot is reported as "error".

use rusqlite::Connection;

use super::schema;
use crate::{CheckReport, Finding, Result, Severity, depth};

fn finding(severity: Severity, invariant: &str, detail: String) -> Finding {
    Finding { severity, invariant: invariant.into(), detail }
}

/// The finding of a damaged file (SQLite's own check).
pub const FILE: &str = "file-is-sound";

/// `whole_file`: also have SQLite read every page (`PRAGMA quick_check`).
pub fn run(c: &Connection, repair: bool, now: i64, whole_file: bool) -> Result<CheckReport> {
    let mut report = CheckReport {
        schema_version: schema::current_version(c)?,
        mailboxes: c.query_row("SELECT COUNT(*) FROM mailboxes", [], |r| r.get(0))?,
        messages: c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?,
        findings: Vec::new(),
    };
    let fixed = if repair { Severity::Repaired } else { Severity::Error };
    if whole_file && let Some(damage) = schema::damage(c)? {
        report.findings.push(finding(Severity::Error, FILE, format!("SQLite quick_check: {damage}")));
    }

    // UIDNEXT is greater than every UID stored or expunged (RFC 9051
    // §2.3.1.1), and the counter exists.
    let mut s = c.prepare(
        "SELECT m.id, m.owner, m.name, u.uidnext,
                MAX(COALESCE((SELECT MAX(uid) FROM mailbox_messages mm WHERE mm.mailbox_id = m.id), 0), m.expunged_uid_max)
         FROM mailboxes m LEFT JOIN uid_counters u ON u.mailbox_id = m.id",
    )?;
    let rows: Vec<(i64, String, String, Option<i64>, i64)> = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, owner, name, uidnext, max_uid) in rows {
        let mailbox = format!("{owner}/{name} (id {id})");
        if let Some(detail) = crate::invariants::uid_counter_problem(&mailbox, uidnext, max_uid) {
            if repair {
                c.execute(
                    "INSERT INTO uid_counters (mailbox_id, uidnext) VALUES (?1, ?2)
                     ON CONFLICT (mailbox_id) DO UPDATE SET uidnext = excluded.uidnext",
                    rusqlite::params![id, max_uid + 1],
                )?;
                tracing::error!(mailbox_id = id, %detail, "UID invariant broken; counter rebuilt as {}", max_uid + 1);
            }
            report.findings.push(finding(fixed, "uidnext-above-max-uid", detail));
        }
    }

    // Counters for mailboxes that no longer exist are harmless but reported.
    let stale: i64 = c.query_row(
        "SELECT COUNT(*) FROM uid_counters u WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = u.mailbox_id)",
        [],
        |r| r.get(0),
    )?;
    if stale > 0 {
        if repair {
            c.execute(
                "DELETE FROM uid_counters WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = uid_counters.mailbox_id)",
                [],
            )?;
        }
        report.findings.push(finding(
            fixed,
            "counter-has-mailbox",
            format!("{stale} UID counter(s) without a mailbox"),
        ));
    }

    // Every user has an INBOX.
    let missing: Vec<String> = c
        .prepare("SELECT address FROM users u WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.owner = u.address AND m.name = 'INBOX')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for user in missing {
        if repair {
            super::create_mailbox(c, &user, "INBOX", None, now)?;
        }
        report.findings.push(finding(fixed, "user-has-inbox", format!("user {user} has no INBOX")));
    }

    // Cannot be repaired from the data: reported loudly, never silently dropped.
    let orphans: i64 = c.query_row(
        "SELECT COUNT(*) FROM mailbox_messages mm WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = mm.mailbox_id)",
        [],
        |r| r.get(0),
    )?;
    if orphans > 0 {
        report.findings.push(finding(
            Severity::Error,
            "message-has-mailbox",
            format!("{orphans} mailbox entr(y/ies) point to a mailbox that does not exist"),
        ));
    }
    let bodiless: i64 =
        c.query_row(&format!("SELECT COUNT(*) {}", crate::lifecycle::MISSING_BODIES), [], |r| r.get(0))?;
    if bodiless > 0 {
        report.findings.push(finding(
            Severity::Error,
            "message-has-body",
            format!("{bodiless} message(s) waiting for delivery or in a mailbox have no stored body"),
        ));
    }
    // HIGHESTMODSEQ is at least every message's MODSEQ (RFC 7162 §3.1.1).
    let behind: Vec<(i64, String, String, i64)> = c
        .prepare(
            "SELECT m.id, m.owner, m.name, MAX(mm.modseq) FROM mailboxes m JOIN mailbox_messages mm ON mm.mailbox_id = m.id
             GROUP BY m.id HAVING MAX(mm.modseq) > m.highest_modseq",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, owner, name, max) in behind {
        if repair {
            c.execute("UPDATE mailboxes SET highest_modseq = ?2 + 1 WHERE id = ?1", rusqlite::params![id, max])?;
        }
        report.findings.push(finding(
            fixed,
            "highestmodseq-above-modseq",
            format!("mailbox {owner}/{name} (id {id}) has HIGHESTMODSEQ below a message's MODSEQ {max}"),
        ));
    }
    // Leases held in the name of a node that is not running.
    let orphans = crate::invariants::ORPHAN_LEASES.replace("%NOW%", "?1");
    let held: i64 = c.query_row(&format!("SELECT COUNT(*) {orphans}"), [now], |r| r.get(0))?;
    if held > 0 {
        if repair {
            c.execute(
                &format!(
                    "UPDATE recipients SET lease_until = NULL, lease_owner = NULL
                     WHERE rowid IN (SELECT r.rowid {orphans})"
                ),
                [now],
            )?;
        }
        report.findings.push(finding(
            fixed,
            "lease-owner-running",
            format!("{held} recipient(s) leased by a node that is not running"),
        ));
    }
    let bad_validity: i64 = c.query_row("SELECT COUNT(*) FROM mailboxes WHERE uidvalidity <= 0", [], |r| r.get(0))?;
    if bad_validity > 0 {
        report.findings.push(finding(
            Severity::Error,
            "uidvalidity-positive",
            format!("{bad_validity} mailbox(es) with UIDVALIDITY 0"),
        ));
    }
    Ok(report)
}

/// The queue counters agree with a recount of the queue (`now`: taken just
/// before, see [`depth::check_horizon`]); rebuilt from it with `repair`.
pub fn counts(c: &Connection, repair: bool, now: i64) -> Result<Option<Finding>> {
    let wrong: i64 = c.query_row(&depth::mismatch_sql("queue_counts"), [depth::check_horizon(now)], |r| r.get(0))?;
    if wrong == 0 {
        return Ok(None);
    }
    if repair {
        c.execute("DELETE FROM queue_counts", [])?;
        c.execute(&format!("INSERT INTO queue_counts (class, domain, state, minute, n) {}", depth::recount_sql()), [])?;
    }
    let severity = if repair { Severity::Repaired } else { Severity::Error };
    Ok(Some(finding(severity, "queue-counts-match", depth::mismatch_detail(wrong))))
}
