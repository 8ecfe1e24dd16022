//! Versioned schema migrations and the pre-flight check run before the store
//! opens for business.
//!
//! Each migration is applied in its own transaction and recorded in
//! `meta.schema_version`. A database newer than this binary is refused (an
//! old binary must never write a schema it does not understand); an older one
//! is migrated forward after `PRAGMA quick_check` says the file is sound.
//! Opening a current database reads no more than it needs: the whole-file
//! check runs in `facteur check` and the server's background check.
//! SQL is kept to what PostgreSQL also accepts, so the PostgreSQL store can
//! share the same shape.

use rusqlite::{Connection, OptionalExtension};

use crate::{Result, StoreError};

/// (version, SQL). Append only: a released migration is never edited.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE users (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL CHECK (uidvalidity > 0),
    special_use TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (owner, name)
);
-- RFC 9051 §2.3.1.1: UIDVALIDITY must not change while the mailbox lives.
CREATE TRIGGER mailboxes_uidvalidity_immutable BEFORE UPDATE OF uidvalidity ON mailboxes
WHEN NEW.uidvalidity <> OLD.uidvalidity
BEGIN SELECT RAISE(ABORT, 'UIDVALIDITY of a live mailbox must not change'); END;
-- The next UID per mailbox. Never trusted alone: see allocate_uid.
CREATE TABLE uid_counters (
    mailbox_id INTEGER PRIMARY KEY,
    uidnext INTEGER NOT NULL
);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL,
    size INTEGER NOT NULL,
    envelope TEXT NOT NULL
);
CREATE TABLE message_bodies (
    message_id TEXT PRIMARY KEY REFERENCES messages(id),
    data BLOB NOT NULL
);
CREATE TABLE mailbox_messages (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id),
    flags TEXT NOT NULL DEFAULT '',
    internal_date INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE TABLE recipients (
    message_id TEXT NOT NULL REFERENCES messages(id),
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    domain TEXT NOT NULL,
    notify TEXT,
    orcpt TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER,
    last_error TEXT,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX recipients_pending ON recipients (state, next_attempt);
"#,
    ),
    (
        2,
        r#"
-- Outbound delivery: leases on in-flight recipients, delay notices, history.
ALTER TABLE recipients ADD COLUMN lease_until INTEGER;
ALTER TABLE recipients ADD COLUMN delay_notified INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recipients ADD COLUMN final_at INTEGER;
CREATE TABLE attempts (
    message_id TEXT NOT NULL REFERENCES messages(id),
    idx INTEGER NOT NULL,
    at INTEGER NOT NULL,
    host TEXT,
    outcome TEXT NOT NULL,
    reply TEXT NOT NULL
);
CREATE INDEX attempts_message ON attempts (message_id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    message_id TEXT,
    detail TEXT NOT NULL
);
"#,
    ),
    (
        3,
        r#"
-- Traffic classes and persistent operator controls.
ALTER TABLE messages ADD COLUMN class TEXT NOT NULL DEFAULT 'interpersonal';
CREATE TABLE controls (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    set_at INTEGER NOT NULL,
    actor TEXT NOT NULL
);
"#,
    ),
    (
        4,
        r#"
-- Claims read due recipients in order straight from an index, per class
-- too (the class is copied to each recipient: a backlog of 100,000 must not
-- be sorted or joined on every claim); destination-wide operations (park an
-- unreachable destination, retry it) touch only that destination's rows.
ALTER TABLE recipients ADD COLUMN class TEXT NOT NULL DEFAULT 'interpersonal';
UPDATE recipients SET class = (SELECT class FROM messages WHERE messages.id = recipients.message_id);
DROP INDEX recipients_pending;
CREATE INDEX recipients_due ON recipients (state, next_attempt, message_id, idx);
CREATE INDEX recipients_due_class ON recipients (state, class, next_attempt, message_id, idx);
CREATE INDEX recipients_leased ON recipients (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX recipients_destination ON recipients (domain, state);
"#,
    ),
    (
        5,
        r#"
-- IMAP: a MODSEQ per message and HIGHESTMODSEQ per mailbox (RFC 7162 §3.1);
-- the highest UID ever expunged, so UIDNEXT stays above every UID handed
-- out even when the newest messages are gone (RFC 9051 §2.3.1.1); the
-- highest UIDVALIDITY an owner's deleted mailboxes had, so a re-created
-- mailbox never looks like the old one; subscriptions (RFC 9051 §6.3.7),
-- which may name mailboxes that do not exist.
ALTER TABLE mailbox_messages ADD COLUMN modseq INTEGER NOT NULL DEFAULT 1;
ALTER TABLE mailboxes ADD COLUMN highest_modseq INTEGER NOT NULL DEFAULT 1;
ALTER TABLE mailboxes ADD COLUMN expunged_uid_max INTEGER NOT NULL DEFAULT 0;
CREATE TABLE uidvalidity_floor (owner TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE subscriptions (owner TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (owner, name));
INSERT INTO subscriptions (owner, name) SELECT owner, name FROM mailboxes;
CREATE INDEX mailbox_messages_message ON mailbox_messages (message_id);
"#,
    ),
    (
        6,
        r#"
-- Addresses a user may send as besides its own (RFC 6409 §6.1): an address,
-- or "@domain" for every address of a domain. Granted by the operator.
CREATE TABLE sender_grants (
    owner TEXT NOT NULL,
    address TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (owner, address)
);
-- Readiness writes here (and fsyncs) to know that storage takes writes.
CREATE TABLE write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);
"#,
    ),
    (
        7,
        r#"
-- Nodes sharing this storage, each with its heartbeat; a lease names the
-- node that holds it, so a node starting releases its own leases only.
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stopped_at INTEGER
);
ALTER TABLE recipients ADD COLUMN lease_owner TEXT;
"#,
    ),
    (
        8,
        r#"
-- Whether a node delivers (its delivery engine runs): only those share
-- each destination's limits.
ALTER TABLE nodes ADD COLUMN delivers INTEGER NOT NULL DEFAULT 1;
"#,
    ),
    (
        9,
        r#"
-- The queue's depth, kept as mail moves so that admission (every second)
-- and `queue stats` read a few rows instead of every waiting recipient:
-- waiting recipients per class, destination, state and the minute they fall
-- due (held ones: minute 0). Triggers keep it; maintenance folds minutes
-- gone by into minute 0 and drops rows at zero. `facteur check` recounts.
CREATE TABLE queue_counts (
    class TEXT NOT NULL,
    domain TEXT NOT NULL,
    state TEXT NOT NULL,
    minute INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (class, domain, state, minute)
) WITHOUT ROWID;
CREATE TRIGGER recipients_count_insert AFTER INSERT ON recipients
WHEN NEW.state IN ('queued', 'held')
BEGIN
    INSERT INTO queue_counts (class, domain, state, minute, n)
    VALUES (NEW.class, NEW.domain, NEW.state,
            CASE NEW.state WHEN 'queued' THEN COALESCE(NEW.next_attempt, 0) / 60 ELSE 0 END, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER recipients_count_update AFTER UPDATE OF state, next_attempt, class, domain ON recipients
WHEN (OLD.state IN ('queued', 'held') OR NEW.state IN ('queued', 'held'))
 AND (OLD.state IS NOT NEW.state OR OLD.class IS NOT NEW.class OR OLD.domain IS NOT NEW.domain
      OR COALESCE(OLD.next_attempt, 0) / 60 IS NOT COALESCE(NEW.next_attempt, 0) / 60)
BEGIN
    INSERT INTO queue_counts (class, domain, state, minute, n)
    SELECT OLD.class, OLD.domain, OLD.state,
           CASE OLD.state WHEN 'queued' THEN COALESCE(OLD.next_attempt, 0) / 60 ELSE 0 END, -1
    WHERE OLD.state IN ('queued', 'held')
    ON CONFLICT DO UPDATE SET n = n - 1;
    INSERT INTO queue_counts (class, domain, state, minute, n)
    SELECT NEW.class, NEW.domain, NEW.state,
           CASE NEW.state WHEN 'queued' THEN COALESCE(NEW.next_attempt, 0) / 60 ELSE 0 END, 1
    WHERE NEW.state IN ('queued', 'held')
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER recipients_count_delete AFTER DELETE ON recipients
WHEN OLD.state IN ('queued', 'held')
BEGIN
    INSERT INTO queue_counts (class, domain, state, minute, n)
    VALUES (OLD.class, OLD.domain, OLD.state,
            CASE OLD.state WHEN 'queued' THEN COALESCE(OLD.next_attempt, 0) / 60 ELSE 0 END, -1)
    ON CONFLICT DO UPDATE SET n = n - 1;
END;
INSERT INTO queue_counts (class, domain, state, minute, n)
SELECT class, domain, state, CASE state WHEN 'queued' THEN COALESCE(next_attempt, 0) / 60 ELSE 0 END, COUNT(*)
FROM recipients WHERE state IN ('queued', 'held') GROUP BY 1, 2, 3, 4;
-- The earliest due recipient of one destination and class, by seek.
DROP INDEX recipients_destination;
CREATE INDEX recipients_destination ON recipients (domain, state, class, next_attempt);
"#,
    ),
    (
        10,
        r#"
-- Incidents (crates/store/src/incidents.rs): at most one open per
-- component; each with its timeline, appended to only.
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    component TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    affected TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    resolved_at INTEGER
);
CREATE UNIQUE INDEX incidents_open ON incidents (component) WHERE resolved_at IS NULL;
CREATE INDEX incidents_resolved ON incidents (resolved_at);
CREATE TABLE incident_updates (
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    author TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
"#,
    ),
    (
        11,
        r#"
-- Aliases (`facteur alias`): an address of a local domain, or "@domain"
-- (a catch-all), delivered to each target (a local user, another alias,
-- or an address elsewhere, forwarded with SRS). Resolved above the
-- backends (facteur-spool::addressing).
CREATE TABLE aliases (
    address TEXT NOT NULL,
    target TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (address, target)
);
-- Secrets every node shares (the SRS key), made on first use.
CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    ),
    (
        12,
        r#"
-- Quotas (`facteur user quota`): limits per user (NULL: none), and what
-- counts against them, kept by triggers on the mailbox entries; whether
-- the user was told they near their quota.
ALTER TABLE users ADD COLUMN quota_bytes INTEGER;
ALTER TABLE users ADD COLUMN quota_messages INTEGER;
ALTER TABLE users ADD COLUMN used_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN used_messages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN quota_warned INTEGER NOT NULL DEFAULT 0;
UPDATE users SET
    used_bytes = COALESCE((SELECT SUM(m.size) FROM mailbox_messages mm JOIN mailboxes b ON b.id = mm.mailbox_id
                           JOIN messages m ON m.id = mm.message_id WHERE b.owner = users.address), 0),
    used_messages = (SELECT COUNT(*) FROM mailbox_messages mm JOIN mailboxes b ON b.id = mm.mailbox_id
                     WHERE b.owner = users.address);
CREATE TRIGGER mailbox_messages_usage_insert AFTER INSERT ON mailbox_messages BEGIN
    UPDATE users SET used_bytes = used_bytes + COALESCE((SELECT size FROM messages WHERE id = NEW.message_id), 0),
                     used_messages = used_messages + 1
    WHERE address = (SELECT owner FROM mailboxes WHERE id = NEW.mailbox_id);
END;
CREATE TRIGGER mailbox_messages_usage_delete AFTER DELETE ON mailbox_messages BEGIN
    UPDATE users SET used_bytes = used_bytes - COALESCE((SELECT size FROM messages WHERE id = OLD.message_id), 0),
                     used_messages = used_messages - 1
    WHERE address = (SELECT owner FROM mailboxes WHERE id = OLD.mailbox_id);
END;
"#,
    ),
    (
        13,
        r#"
-- \Recent (RFC 3501 §2.3.2): the first UID no IMAP4rev1 session has been
-- told of as recent yet. Mail already stored at the upgrade is not recent.
ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET recent_uid = COALESCE((SELECT MAX(uid) + 1 FROM mailbox_messages WHERE mailbox_id = mailboxes.id), 0);
"#,
    ),
    (
        14,
        r#"
-- QRESYNC (RFC 7162 §3.2.5, §3.2.10): each expunged UID with the MODSEQ of
-- its expunge, kept while the mailbox lives, so a client reconnecting with
-- the MODSEQ it knew gets exactly the UIDs that vanished since.
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
CREATE TRIGGER mailboxes_expunged_delete AFTER DELETE ON mailboxes BEGIN
    DELETE FROM expunged WHERE mailbox_id = OLD.id;
END;
"#,
    ),
    (
        15,
        r#"
-- RFC 9051 §2.3.1.1: the UIDVALIDITY each name had when its mailbox left
-- it (deleted or renamed away), so a mailbox renamed onto the name takes a
-- greater one if its own is older. UIDVALIDITY may now grow while the
-- mailbox lives (such a rename), never go down.
CREATE TABLE former_names (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
) WITHOUT ROWID;
DROP TRIGGER mailboxes_uidvalidity_immutable;
CREATE TRIGGER mailboxes_uidvalidity_ascends BEFORE UPDATE OF uidvalidity ON mailboxes
WHEN NEW.uidvalidity < OLD.uidvalidity
BEGIN SELECT RAISE(ABORT, 'UIDVALIDITY of a live mailbox must not go down'); END;
"#,
    ),
];

pub fn latest_version() -> u32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// The schema version recorded in the database (0 for an empty file).
pub fn current_version(conn: &Connection) -> Result<u32> {
    let has_meta: bool = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'", [], |_| Ok(true))
        .optional()?
        .unwrap_or(false);
    if !has_meta {
        return Ok(0);
    }
    let v: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).optional()?;
    match v {
        None => Err(StoreError::Preflight(
            "table `meta` exists but holds no schema_version: this database was not written by facteur, or an upgrade was interrupted".into(),
        )),
        Some(v) => v.parse().map_err(|_| StoreError::Preflight(format!("meta.schema_version is {v:?}, not a number"))),
    }
}

/// Pre-flight then migrate. Refuses a database newer than this binary or one
/// that SQLite itself finds damaged.
pub fn preflight_and_migrate(conn: &mut Connection) -> Result<u32> {
    let found = current_version(conn)?;
    let known = latest_version();
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    // The whole file is read only before a migration rewrites existing
    // data; otherwise opening reads what it uses, and `facteur check` (or
    // the server's background check) reads the rest.
    if found > 0
        && found < known
        && let Some(damage) = damage(conn)?
    {
        return Err(StoreError::Preflight(format!("SQLite quick_check reports damage: {damage}")));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [version.to_string()],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(known)
}

/// What SQLite's own check of every page finds wrong, if anything.
pub fn damage(conn: &Connection) -> Result<Option<String>> {
    let qc: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    Ok((qc != "ok").then_some(qc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_empty_and_refuses_newer() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(preflight_and_migrate(&mut c).unwrap(), latest_version());
        // Idempotent.
        assert_eq!(preflight_and_migrate(&mut c).unwrap(), latest_version());
        c.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'", []).unwrap();
        match preflight_and_migrate(&mut c) {
            Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn uidvalidity_never_goes_down() {
        let mut c = Connection::open_in_memory().unwrap();
        preflight_and_migrate(&mut c).unwrap();
        c.execute("INSERT INTO mailboxes (owner, name, uidvalidity, created_at) VALUES ('a', 'INBOX', 5, 0)", [])
            .unwrap();
        assert!(c.execute("UPDATE mailboxes SET uidvalidity = 4", []).is_err());
        c.execute("UPDATE mailboxes SET uidvalidity = 5, name = 'INBOX'", []).unwrap();
        c.execute("UPDATE mailboxes SET uidvalidity = 6", []).unwrap();
    }
}
