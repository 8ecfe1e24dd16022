//! Versioned migrations for PostgreSQL, with the same pre-flight as SQLite:
//! a database newer than this binary is refused; an older one is migrated
//! forward, the pending migrations in one transaction (all or none), under
//! an advisory lock so nodes starting together migrate once.
//!
//! Version 1 is the shape of SQLite's schema 6, in PostgreSQL's types:
//! BIGINT times and ids, BOOLEAN flags, BYTEA bodies stored uncompressed
//! out of line (`STORAGE EXTERNAL`), so reading a header fetches only the
//! first chunks of a large message.

use deadpool_postgres::GenericClient;

use super::db;
use crate::{Result, StoreError};

/// (version, SQL). Append only: a released migration is never edited.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE domains (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL);
CREATE TABLE users (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE mailboxes (
    id BIGSERIAL PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    uidvalidity BIGINT NOT NULL CHECK (uidvalidity > 0),
    special_use TEXT,
    created_at BIGINT NOT NULL,
    highest_modseq BIGINT NOT NULL DEFAULT 1,
    expunged_uid_max BIGINT NOT NULL DEFAULT 0,
    UNIQUE (owner, name)
);
-- RFC 9051 §2.3.1.1: UIDVALIDITY must not change while the mailbox lives.
CREATE FUNCTION facteur_uidvalidity_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.uidvalidity <> OLD.uidvalidity THEN
        RAISE EXCEPTION 'UIDVALIDITY of a live mailbox must not change';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER mailboxes_uidvalidity_immutable BEFORE UPDATE OF uidvalidity ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION facteur_uidvalidity_immutable();
CREATE TABLE uid_counters (mailbox_id BIGINT PRIMARY KEY, uidnext BIGINT NOT NULL);
CREATE TABLE uidvalidity_floor (owner TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE subscriptions (owner TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (owner, name));
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL,
    size BIGINT NOT NULL,
    envelope TEXT NOT NULL,
    class TEXT NOT NULL
);
CREATE TABLE message_bodies (message_id TEXT PRIMARY KEY REFERENCES messages(id), data BYTEA NOT NULL);
ALTER TABLE message_bodies ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE mailbox_messages (
    mailbox_id BIGINT NOT NULL,
    uid BIGINT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id),
    flags TEXT NOT NULL DEFAULT '',
    internal_date BIGINT NOT NULL,
    modseq BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX mailbox_messages_message ON mailbox_messages (message_id);
CREATE TABLE recipients (
    message_id TEXT NOT NULL REFERENCES messages(id),
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    domain TEXT NOT NULL,
    notify TEXT,
    orcpt TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt BIGINT,
    last_error TEXT,
    lease_until BIGINT,
    delay_notified BOOLEAN NOT NULL DEFAULT FALSE,
    final_at BIGINT,
    class TEXT NOT NULL,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX recipients_due ON recipients (state, next_attempt, message_id, idx);
CREATE INDEX recipients_due_class ON recipients (state, class, next_attempt, message_id, idx);
CREATE INDEX recipients_leased ON recipients (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX recipients_destination ON recipients (domain, state);
CREATE TABLE attempts (
    id BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages(id),
    idx INTEGER NOT NULL,
    at BIGINT NOT NULL,
    host TEXT,
    outcome TEXT NOT NULL,
    reply TEXT NOT NULL
);
CREATE INDEX attempts_message ON attempts (message_id);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    message_id TEXT,
    detail TEXT NOT NULL
);
CREATE TABLE controls (key TEXT PRIMARY KEY, value TEXT NOT NULL, set_at BIGINT NOT NULL, actor TEXT NOT NULL);
CREATE TABLE sender_grants (
    owner TEXT NOT NULL,
    address TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (owner, address)
);
CREATE TABLE write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at BIGINT NOT NULL);
"#,
    ),
    (
        2,
        r#"
-- Nodes sharing this database, each with its heartbeat; a lease names the
-- node that holds it, so a node starting releases its own leases only.
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    stopped_at BIGINT
);
ALTER TABLE recipients ADD COLUMN lease_owner TEXT;
"#,
    ),
    (
        3,
        r#"
-- The queue indexes hold waiting recipients only: a recipient leaves them
-- when it is delivered, so the hot path (accept, claim, record) writes a
-- few small indexes instead of five large ones. Room is left on each page
-- for a recipient's later versions (lease, outcome) next to the first.
DROP INDEX recipients_due;
DROP INDEX recipients_due_class;
DROP INDEX recipients_destination;
CREATE INDEX recipients_due ON recipients (next_attempt, message_id, idx) WHERE state = 'queued';
CREATE INDEX recipients_due_class ON recipients (class, next_attempt, message_id, idx) WHERE state = 'queued';
CREATE INDEX recipients_destination ON recipients (domain) WHERE state IN ('queued', 'held');
ALTER TABLE recipients SET (fillfactor = 80);
-- Bodies, recipients and attempts belong to their message by construction
-- (one statement or transaction writes them together); `facteur check`
-- verifies it. The foreign keys cost three lookups per message.
ALTER TABLE message_bodies DROP CONSTRAINT message_bodies_message_id_fkey;
ALTER TABLE recipients DROP CONSTRAINT recipients_message_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_message_id_fkey;
"#,
    ),
    (
        4,
        r#"
-- Whether a node delivers (its delivery engine runs): only those share
-- each destination's limits.
ALTER TABLE nodes ADD COLUMN delivers BOOLEAN NOT NULL DEFAULT TRUE;
"#,
    ),
    (
        5,
        r#"
-- The queue's depth, kept as mail moves (as SQLite's schema 9): waiting
-- recipients per class, destination, state and due minute (held: 0). Every
-- statement that moves recipients appends its net change to
-- queue_count_changes (insert only: concurrent writers never wait on one
-- another's counter row); a fold, one node at a time, adds the changes into
-- queue_counts and folds minutes gone by into minute 0.
CREATE TABLE queue_counts (
    class TEXT NOT NULL,
    domain TEXT NOT NULL,
    state TEXT NOT NULL,
    minute BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (class, domain, state, minute)
);
CREATE TABLE queue_count_changes (
    class TEXT NOT NULL,
    domain TEXT NOT NULL,
    state TEXT NOT NULL,
    minute BIGINT NOT NULL,
    n BIGINT NOT NULL
);
CREATE FUNCTION facteur_count_recipients() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO queue_count_changes
        SELECT class, domain, state,
               CASE state WHEN 'queued' THEN COALESCE(next_attempt, 0) / 60 ELSE 0 END, COUNT(*)
        FROM new_rows WHERE state IN ('queued', 'held') GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO queue_count_changes
        SELECT class, domain, state,
               CASE state WHEN 'queued' THEN COALESCE(next_attempt, 0) / 60 ELSE 0 END, -COUNT(*)
        FROM old_rows WHERE state IN ('queued', 'held') GROUP BY 1, 2, 3, 4;
    ELSE
        INSERT INTO queue_count_changes
        SELECT class, domain, state, minute, SUM(n) FROM (
            SELECT class, domain, state,
                   CASE state WHEN 'queued' THEN COALESCE(next_attempt, 0) / 60 ELSE 0 END AS minute, 1 AS n
            FROM new_rows WHERE state IN ('queued', 'held')
            UNION ALL
            SELECT class, domain, state,
                   CASE state WHEN 'queued' THEN COALESCE(next_attempt, 0) / 60 ELSE 0 END, -1
            FROM old_rows WHERE state IN ('queued', 'held')
        ) c GROUP BY 1, 2, 3, 4 HAVING SUM(n) <> 0;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER recipients_count_insert AFTER INSERT ON recipients
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION facteur_count_recipients();
CREATE TRIGGER recipients_count_update AFTER UPDATE ON recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION facteur_count_recipients();
CREATE TRIGGER recipients_count_delete AFTER DELETE ON recipients
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION facteur_count_recipients();
INSERT INTO queue_counts (class, domain, state, minute, n)
SELECT class, domain, state, CASE state WHEN 'queued' THEN COALESCE(next_attempt, 0) / 60 ELSE 0 END, COUNT(*)
FROM recipients WHERE state IN ('queued', 'held') GROUP BY 1, 2, 3, 4;
-- The earliest due recipient of one destination and class, by seek.
DROP INDEX recipients_destination;
CREATE INDEX recipients_destination ON recipients (domain, class, next_attempt) WHERE state IN ('queued', 'held');
"#,
    ),
    (
        6,
        r#"
-- `facteur migrate`: a SQLite database copied in, resumably. One run per
-- source database (`source_id`: a digest of its meta table and first
-- rows, see crates/store/src/migrate/source.rs), finished once every
-- table was copied and verified; one progress row per table, written in
-- the transaction of each chunk it counts, so a rerun continues after the
-- last chunk committed and copies no row twice.
CREATE TABLE migrate_runs (
    source_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    summary TEXT
);
CREATE TABLE migrate_progress (
    source_id TEXT NOT NULL REFERENCES migrate_runs(source_id),
    table_name TEXT NOT NULL,
    last_key TEXT,
    rows_done BIGINT NOT NULL,
    done BOOLEAN NOT NULL,
    PRIMARY KEY (source_id, table_name)
);
"#,
    ),
    (
        7,
        r#"
-- Incidents (crates/store/src/incidents.rs): at most one open per
-- component, even when two nodes report it at once; each with its
-- timeline, appended to only.
CREATE TABLE incidents (
    id BIGSERIAL PRIMARY KEY,
    component TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    affected TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE UNIQUE INDEX incidents_open ON incidents (component) WHERE resolved_at IS NULL;
CREATE INDEX incidents_resolved ON incidents (resolved_at);
CREATE TABLE incident_updates (
    incident_id BIGINT NOT NULL REFERENCES incidents(id),
    seq INTEGER NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    author TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
"#,
    ),
    (
        8,
        r#"
-- Aliases (`facteur alias`): an address of a local domain, or "@domain"
-- (a catch-all), delivered to each target (a local user, another alias,
-- or an address elsewhere, forwarded with SRS). Resolved above the
-- backends (facteur-spool::addressing).
CREATE TABLE aliases (
    address TEXT NOT NULL,
    target TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (address, target)
);
-- Secrets every node shares (the SRS key), made on first use.
CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    ),
    (
        9,
        r#"
-- Quotas (`facteur user quota`): limits per user (NULL: none), and what
-- counts against them, kept by a trigger on the mailbox entries; whether
-- the user was told they near their quota.
ALTER TABLE users ADD COLUMN quota_bytes BIGINT;
ALTER TABLE users ADD COLUMN quota_messages BIGINT;
ALTER TABLE users ADD COLUMN used_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN used_messages BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN quota_warned BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE users SET
    used_bytes = COALESCE((SELECT SUM(m.size) FROM mailbox_messages mm JOIN mailboxes b ON b.id = mm.mailbox_id
                           JOIN messages m ON m.id = mm.message_id WHERE b.owner = users.address), 0),
    used_messages = (SELECT COUNT(*) FROM mailbox_messages mm JOIN mailboxes b ON b.id = mm.mailbox_id
                     WHERE b.owner = users.address);
CREATE FUNCTION facteur_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE users SET used_bytes = used_bytes + COALESCE((SELECT size FROM messages WHERE id = NEW.message_id), 0),
                         used_messages = used_messages + 1
        WHERE address = (SELECT owner FROM mailboxes WHERE id = NEW.mailbox_id);
    ELSE
        UPDATE users SET used_bytes = used_bytes - COALESCE((SELECT size FROM messages WHERE id = OLD.message_id), 0),
                         used_messages = used_messages - 1
        WHERE address = (SELECT owner FROM mailboxes WHERE id = OLD.mailbox_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER mailbox_messages_usage AFTER INSERT OR DELETE ON mailbox_messages
    FOR EACH ROW EXECUTE FUNCTION facteur_usage();
"#,
    ),
    (
        10,
        r#"
-- \Recent (RFC 3501 §2.3.2): the first UID no IMAP4rev1 session has been
-- told of as recent yet. Mail already stored at the upgrade is not recent.
ALTER TABLE mailboxes ADD COLUMN recent_uid BIGINT NOT NULL DEFAULT 0;
UPDATE mailboxes SET recent_uid = COALESCE((SELECT MAX(uid) + 1 FROM mailbox_messages WHERE mailbox_id = mailboxes.id), 0);
"#,
    ),
    (
        11,
        r#"
-- QRESYNC (RFC 7162 §3.2.5, §3.2.10): each expunged UID with the MODSEQ of
-- its expunge, kept while the mailbox lives, so a client reconnecting with
-- the MODSEQ it knew gets exactly the UIDs that vanished since.
CREATE TABLE expunged (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid BIGINT NOT NULL,
    modseq BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
"#,
    ),
    (
        12,
        r#"
-- RFC 9051 §2.3.1.1: the UIDVALIDITY each name had when its mailbox left
-- it (deleted or renamed away), so a mailbox renamed onto the name takes a
-- greater one if its own is older. UIDVALIDITY may now grow while the
-- mailbox lives (such a rename), never go down.
CREATE TABLE former_names (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    uidvalidity BIGINT NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE OR REPLACE FUNCTION facteur_uidvalidity_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.uidvalidity < OLD.uidvalidity THEN
        RAISE EXCEPTION 'UIDVALIDITY of a live mailbox must not go down';
    END IF;
    RETURN NEW;
END $$;
"#,
    ),
];

pub fn latest_version() -> u32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// The schema version recorded (0 for an empty schema).
pub async fn current_version<C: GenericClient>(c: &C) -> Result<u32> {
    let has_meta = c
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'meta'",
            &[],
        )
        .await
        .map_err(db)?
        .is_some();
    if !has_meta {
        return Ok(0);
    }
    let v: Option<String> =
        c.query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[]).await.map_err(db)?.map(|r| r.get(0));
    match v {
        None => Err(StoreError::Preflight(
            "table `meta` exists but holds no schema_version: this database was not written by facteur, or an upgrade was interrupted".into(),
        )),
        Some(v) => v.parse().map_err(|_| StoreError::Preflight(format!("meta.schema_version is {v:?}, not a number"))),
    }
}

/// Pre-flight then migrate, holding an advisory lock (one node migrates,
/// the others wait and find it done).
pub async fn preflight_and_migrate(client: &mut deadpool_postgres::Object) -> Result<u32> {
    let tx = client.transaction().await.map_err(db)?;
    // Waiting for another node's migration, or rebuilding an index of a
    // large table, may take longer than a statement is allowed to.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await.map_err(db)?;
    // One lock per schema: every node on this schema waits for the one migrating.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('facteur:' || current_schema()))", &[]).await.map_err(db)?;
    let found = current_version(&tx).await?;
    let known = latest_version();
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&version.to_string()],
        )
        .await
        .map_err(db)?;
        tracing::info!(version, "applied PostgreSQL schema migration");
    }
    tx.commit().await.map_err(db)?;
    Ok(known)
}
