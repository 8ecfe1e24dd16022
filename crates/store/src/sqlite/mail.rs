//! Mailboxes as IMAP and POP3 see them: create, delete, rename, subscribe;
//! the message list with flags and MODSEQ; APPEND, STORE, EXPUNGE, COPY and
//! MOVE, each in one transaction of the caller's.
//!
//! Invariants kept here (RFC 9051 §2.3.1.1, RFC 7162 §3.1), with the
//! decisions in [`crate::invariants`]:
//! - a UID is never reused in a mailbox: `allocate_uid` stays above the
//!   stored UIDs, the counter and the highest UID ever expunged;
//! - UIDVALIDITY never goes down while a mailbox lives (a trigger); a
//!   mailbox created again under an old name gets a greater one, and so
//!   does one renamed onto a name that had a greater one
//!   (`former_names`);
//! - every change to a message (arrival, flags, expunge) takes the next
//!   MODSEQ of its mailbox, so HIGHESTMODSEQ only grows.

use rusqlite::{Connection, OptionalExtension, params};

use super::{allocate_uid, create_mailbox, fresh_uidvalidity, parsed};
use crate::invariants::{self, apply_flags, mailbox_name, normalize_name, parse_flags};
use crate::{FlagOp, FlagsChanged, Mailbox, MailboxSnapshot, MessageId, MessageMeta, Part, Result, StoreError};

const MAILBOX_COLUMNS: &str = "m.id, m.owner, m.name, m.uidvalidity,
    COALESCE((SELECT uidnext FROM uid_counters u WHERE u.mailbox_id = m.id), 1),
    (SELECT COUNT(*) FROM mailbox_messages mm WHERE mm.mailbox_id = m.id),
    (SELECT COUNT(*) FROM mailbox_messages mm WHERE mm.mailbox_id = m.id AND (' ' || mm.flags || ' ') NOT LIKE '% \\Seen %'),
    m.special_use, m.highest_modseq";

fn mailbox_row(r: &rusqlite::Row) -> rusqlite::Result<Mailbox> {
    Ok(Mailbox {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        uidvalidity: r.get(3)?,
        uidnext: r.get(4)?,
        messages: r.get(5)?,
        unseen: r.get(6)?,
        special_use: r.get(7)?,
        highest_modseq: r.get::<_, i64>(8)? as u64,
    })
}

pub(crate) fn list(c: &Connection, owner: &str) -> Result<Vec<Mailbox>> {
    let mut s =
        c.prepare_cached(&format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.owner = ?1 ORDER BY m.name"))?;
    Ok(s.query_map([owner], mailbox_row)?.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn get(c: &Connection, owner: &str, name: &str) -> Result<Option<Mailbox>> {
    let mut s =
        c.prepare_cached(&format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.owner = ?1 AND m.name = ?2"))?;
    Ok(s.query_row(params![owner, normalize_name(name)], mailbox_row).optional()?)
}

fn require(c: &Connection, owner: &str, name: &str) -> Result<Mailbox> {
    get(c, owner, name)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))
}

/// Create `name` and any missing parent (RFC 9051 §6.3.4: "the server
/// SHOULD create any superior hierarchical names"). Exists if it does.
pub(crate) fn create(c: &Connection, owner: &str, name: &str, special_use: Option<&str>, now: i64) -> Result<Mailbox> {
    let name = mailbox_name(name)?;
    if get(c, owner, &name)?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {name}")));
    }
    for superior in crate::invariants::superiors(&name) {
        if get(c, owner, superior)?.is_none() {
            create_mailbox(c, owner, superior, None, now)?;
        }
    }
    create_mailbox(c, owner, &name, special_use, now)?;
    c.execute("INSERT INTO subscriptions (owner, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING", params![owner, name])?;
    require(c, owner, &name)
}

/// Delete a mailbox and its messages' entries. INBOX cannot be deleted
/// (RFC 9051 §6.3.5); children stay.
pub(crate) fn delete(c: &Connection, owner: &str, name: &str) -> Result<i64> {
    let m = require(c, owner, name)?;
    if m.name == "INBOX" {
        return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
    }
    let held = message_ids(c, "DELETE FROM mailbox_messages WHERE mailbox_id = ?1 RETURNING message_id", m.id)?;
    drop_unneeded(c, held.iter().map(String::as_str))?;
    c.execute("DELETE FROM uid_counters WHERE mailbox_id = ?1", [m.id])?;
    c.execute("DELETE FROM mailboxes WHERE id = ?1", [m.id])?;
    c.execute(
        "INSERT INTO uidvalidity_floor (owner, value) VALUES (?1, ?2)
         ON CONFLICT (owner) DO UPDATE SET value = MAX(value, excluded.value)",
        params![owner, m.uidvalidity],
    )?;
    vacate(c, owner, &m.name, m.uidvalidity)?;
    Ok(m.id)
}

/// Remember the UIDVALIDITY a name had when its mailbox left it (deleted or
/// renamed away), the greatest if it left several times.
fn vacate(c: &Connection, owner: &str, name: &str, uidvalidity: u32) -> Result<()> {
    c.execute(
        "INSERT INTO former_names (owner, name, uidvalidity) VALUES (?1, ?2, ?3)
         ON CONFLICT (owner, name) DO UPDATE SET uidvalidity = MAX(uidvalidity, excluded.uidvalidity)",
        params![owner, name, uidvalidity],
    )?;
    Ok(())
}

/// Rename a mailbox and its children. Renaming INBOX moves its messages to
/// a new mailbox and leaves INBOX empty (RFC 9051 §6.3.6). Returns the
/// mailboxes whose contents changed (for change notices).
pub(crate) fn rename(c: &Connection, owner: &str, from: &str, to: &str, now: i64) -> Result<Vec<i64>> {
    let (from, to) = (normalize_name(from), mailbox_name(to)?);
    let src = require(c, owner, &from)?;
    if get(c, owner, &to)?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {to}")));
    }
    if to.starts_with(&format!("{from}/")) {
        return Err(StoreError::Invalid(format!("cannot rename {from} into itself")));
    }
    if src.name == "INBOX" {
        let dst = create(c, owner, &to, None, now)?;
        let uids: Vec<u32> = messages(c, src.id)?.iter().map(|m| m.uid).collect();
        copy(c, src.id, &uids, dst.id, true)?;
        return Ok(vec![src.id, dst.id]);
    }
    // Parents of the new name, then the mailbox and its children.
    if let Some((parent, _)) = to.rsplit_once('/')
        && get(c, owner, parent)?.is_none()
    {
        create(c, owner, parent, None, now)?;
    }
    let children = format!("{from}/");
    let moved: Vec<(i64, String, u32)> = c
        .prepare(
            "SELECT id, name, uidvalidity FROM mailboxes WHERE owner = ?1 AND (name = ?2 OR substr(name, 1, ?3) = ?4)",
        )?
        .query_map(params![owner, from, children.chars().count() as i64, children], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (_, name, uidvalidity) in &moved {
        vacate(c, owner, name, *uidvalidity)?;
    }
    // A subscription outlives its mailbox (RFC 9051 §6.3.7), so one may
    // wait at a new name already: it stays, once.
    for (from, to) in invariants::rename_steps(&from, &to) {
        let children = format!("{from}/");
        for sql in [
            "DELETE FROM subscriptions WHERE owner = ?1 AND NOT (name = ?2 OR substr(name, 1, ?5) = ?6) AND name IN
             (SELECT ?3 || substr(name, ?4) FROM subscriptions
              WHERE owner = ?1 AND (name = ?2 OR substr(name, 1, ?5) = ?6))",
            "UPDATE mailboxes SET name = ?3 || substr(name, ?4)
             WHERE owner = ?1 AND (name = ?2 OR substr(name, 1, ?5) = ?6)",
            "UPDATE subscriptions SET name = ?3 || substr(name, ?4)
             WHERE owner = ?1 AND (name = ?2 OR substr(name, 1, ?5) = ?6)",
        ] {
            c.execute(
                sql,
                params![owner, from, to, from.chars().count() as i64 + 1, children.chars().count() as i64, children],
            )?;
        }
    }
    // RFC 9051 §2.3.1.1: a client that knew a name with a UIDVALIDITY must
    // see a greater one there, never the same or a smaller.
    for (id, name, uidvalidity) in moved {
        let new_name = format!("{to}{}", &name[from.len()..]);
        let former: Option<u32> = c
            .query_row(
                "SELECT uidvalidity FROM former_names WHERE owner = ?1 AND name = ?2",
                params![owner, new_name],
                |r| r.get(0),
            )
            .optional()?;
        if invariants::renamed_needs_new_uidvalidity(former, uidvalidity) {
            let fresh = fresh_uidvalidity(c, owner, now)?;
            c.execute("UPDATE mailboxes SET uidvalidity = ?2 WHERE id = ?1", params![id, fresh])?;
        }
    }
    Ok(vec![src.id])
}

pub(crate) fn set_subscribed(c: &Connection, owner: &str, name: &str, on: bool) -> Result<()> {
    let name = normalize_name(name);
    if on {
        if get(c, owner, &name)?.is_none() {
            return Err(StoreError::NotFound(format!("mailbox {name}")));
        }
        c.execute(
            "INSERT INTO subscriptions (owner, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![owner, name],
        )?;
    } else {
        c.execute("DELETE FROM subscriptions WHERE owner = ?1 AND name = ?2", params![owner, name])?;
    }
    Ok(())
}

pub(crate) fn subscriptions(c: &Connection, owner: &str) -> Result<Vec<String>> {
    let mut s = c.prepare_cached("SELECT name FROM subscriptions WHERE owner = ?1 ORDER BY name")?;
    Ok(s.query_map([owner], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

/// The messages of a mailbox in UID order.
pub(crate) fn messages(c: &Connection, mailbox_id: i64) -> Result<Vec<MessageMeta>> {
    let mut s = c.prepare_cached(
        "SELECT mm.uid, mm.flags, mm.modseq, mm.internal_date, m.size, mm.message_id
         FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
         WHERE mm.mailbox_id = ?1 ORDER BY mm.uid",
    )?;
    let rows = s.query_map([mailbox_id], |r| {
        Ok(MessageMeta {
            uid: r.get(0)?,
            flags: parse_flags(&r.get::<_, String>(1)?),
            modseq: r.get::<_, i64>(2)? as u64,
            internal_date: r.get(3)?,
            size: r.get::<_, i64>(4)? as u64,
            message_id: parsed(r, 5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// HIGHESTMODSEQ and the message list in one read transaction (one WAL
/// snapshot), unless HIGHESTMODSEQ is still `known`.
pub(crate) fn snapshot(c: &Connection, mailbox_id: i64, known: Option<u64>) -> Result<Option<MailboxSnapshot>> {
    let tx = c.unchecked_transaction()?;
    let highest: Option<i64> = tx
        .prepare_cached("SELECT highest_modseq FROM mailboxes WHERE id = ?1")?
        .query_row([mailbox_id], |r| r.get(0))
        .optional()?;
    let Some(highest) = highest.map(|h| h as u64) else { return Ok(Some(MailboxSnapshot::default())) };
    if known == Some(highest) {
        return Ok(None);
    }
    let messages = messages(&tx, mailbox_id)?;
    Ok(Some(MailboxSnapshot { highest_modseq: highest, messages }))
}

/// Raw messages (or their headers) by UID, in UID order: one range scan
/// from the lowest to the highest UID asked, keeping those asked.
pub(crate) fn bodies(c: &Connection, mailbox_id: i64, uids: &[u32], part: Part) -> Result<Vec<(u32, Vec<u8>)>> {
    let (Some(&lo), Some(&hi)) = (uids.iter().min(), uids.iter().max()) else { return Ok(Vec::new()) };
    let wanted: std::collections::HashSet<u32> = uids.iter().copied().collect();
    let mut out = Vec::with_capacity(wanted.len());
    if part == Part::Whole {
        let mut s = c.prepare_cached(
            "SELECT mm.uid, b.data FROM mailbox_messages mm JOIN message_bodies b ON b.message_id = mm.message_id
             WHERE mm.mailbox_id = ?1 AND mm.uid BETWEEN ?2 AND ?3 ORDER BY mm.uid",
        )?;
        let mut rows = s.query(params![mailbox_id, lo, hi])?;
        while let Some(r) = rows.next()? {
            let uid: u32 = r.get(0)?;
            if wanted.contains(&uid) {
                out.push((uid, r.get(1)?));
            }
        }
        return Ok(out);
    }
    // Headers: the body rows are opened as blobs and read a few KiB at a
    // time up to the empty line, so the rest of each message is not read.
    // One read transaction: the rows listed are the rows read.
    let tx = c.unchecked_transaction()?;
    let mut s = tx.prepare_cached(
        "SELECT mm.uid, b.rowid FROM mailbox_messages mm JOIN message_bodies b ON b.message_id = mm.message_id
         WHERE mm.mailbox_id = ?1 AND mm.uid BETWEEN ?2 AND ?3 ORDER BY mm.uid",
    )?;
    let mut rows: Vec<(u32, i64)> =
        s.query_map(params![mailbox_id, lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    rows.retain(|(uid, _)| wanted.contains(uid));
    let Some(&(_, first)) = rows.first() else { return Ok(out) };
    let mut blob = tx.blob_open(rusqlite::MAIN_DB, "message_bodies", "data", first, true)?;
    for (uid, rowid) in rows {
        blob.reopen(rowid)?;
        out.push((uid, read_header(&mut blob)?));
    }
    Ok(out)
}

/// Read a message blob up to and including its first empty line, in reads
/// of 1 KiB, then 2, 4... (a header is mostly under 8 KiB).
fn read_header(blob: &mut rusqlite::blob::Blob<'_>) -> Result<Vec<u8>> {
    let size = blob.len();
    let mut step = 1024;
    let mut buf: Vec<u8> = Vec::new();
    while buf.len() < size {
        let from = buf.len();
        buf.resize(from + step.min(size - from), 0);
        blob.read_at_exact(&mut buf[from..], from)?;
        step *= 2;
        if buf.starts_with(b"\r\n") {
            buf.truncate(2);
            break;
        }
        // Look again from 3 octets back: CRLF CRLF may straddle two reads.
        if let Some(i) = buf[from.saturating_sub(3)..].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(from.saturating_sub(3) + i + 4);
            break;
        }
    }
    Ok(buf)
}

/// The next MODSEQ of a mailbox, taken now.
pub(crate) fn next_modseq(c: &Connection, mailbox_id: i64) -> Result<u64> {
    next_modseqs(c, mailbox_id, 1)
}

/// `count` new MODSEQs of a mailbox at once: the last of them.
pub(crate) fn next_modseqs(c: &Connection, mailbox_id: i64, count: usize) -> Result<u64> {
    let v: Option<i64> = c
        .prepare_cached(
            "UPDATE mailboxes SET highest_modseq = highest_modseq + ?2 WHERE id = ?1 RETURNING highest_modseq",
        )?
        .query_row(params![mailbox_id, count as i64], |r| r.get(0))
        .optional()?;
    v.map(|v| v as u64).ok_or_else(|| StoreError::NotFound(format!("mailbox id {mailbox_id}")))
}

/// Put a stored message into a mailbox with a fresh UID and MODSEQ.
pub(crate) fn place(
    c: &Connection,
    mailbox_id: i64,
    message_id: &str,
    flags: &[String],
    internal_date: i64,
) -> Result<(u32, u64)> {
    let uid = allocate_uid(c, mailbox_id)?;
    let modseq = next_modseq(c, mailbox_id)?;
    c.prepare_cached(
        "INSERT INTO mailbox_messages (mailbox_id, uid, message_id, flags, internal_date, modseq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![mailbox_id, uid, message_id, flags.join(" "), internal_date, modseq as i64])?;
    Ok((uid, modseq))
}

/// APPEND (RFC 9051 §6.3.12): store the message and place it.
pub(crate) fn append(
    c: &Connection,
    mailbox_id: i64,
    id: MessageId,
    data: &[u8],
    flags: &[String],
    internal_date: i64,
    now: i64,
) -> Result<(u32, u64)> {
    let id = id.to_string();
    let envelope =
        serde_json::to_string(&crate::StoredEnvelope::default()).map_err(|e| StoreError::Internal(e.to_string()))?;
    c.prepare_cached(
        "INSERT INTO messages (id, received_at, size, envelope, class) VALUES (?1, ?2, ?3, ?4, 'interpersonal')",
    )?
    .execute(params![id, now, data.len() as i64, envelope])?;
    c.prepare_cached("INSERT INTO message_bodies (message_id, data) VALUES (?1, ?2)")?.execute(params![id, data])?;
    place(c, mailbox_id, &id, flags, internal_date)
}

/// STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3): messages
/// whose MODSEQ is above it are left alone and reported as modified.
pub(crate) fn store_flags(
    c: &Connection,
    mailbox_id: i64,
    uids: &[u32],
    op: FlagOp,
    flags: &[String],
    unchanged_since: Option<u64>,
) -> Result<FlagsChanged> {
    let mut out = FlagsChanged::default();
    let mut changes = Vec::new();
    let mut read = c.prepare_cached("SELECT flags, modseq FROM mailbox_messages WHERE mailbox_id = ?1 AND uid = ?2")?;
    let mut write =
        c.prepare_cached("UPDATE mailbox_messages SET flags = ?3, modseq = ?4 WHERE mailbox_id = ?1 AND uid = ?2")?;
    for &uid in uids {
        let Some((current, modseq)) = read
            .query_row(params![mailbox_id, uid], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .optional()?
        else {
            continue;
        };
        if unchanged_since.is_some_and(|u| modseq > u) {
            out.modified.push(uid);
            continue;
        }
        let current = parse_flags(&current);
        let Some(new) = apply_flags(op, &current, flags) else {
            // Nothing changed: no new MODSEQ (RFC 7162 §3.1.3 still reports it).
            out.unchanged.push((uid, current, modseq));
            continue;
        };
        changes.push((uid, new));
    }
    // RFC 7162 §3.1.3: each message changed gets a MODSEQ of its own, in
    // the order of the set (taken in one step).
    if !changes.is_empty() {
        let first = next_modseqs(c, mailbox_id, changes.len())? + 1 - changes.len() as u64;
        for ((uid, new), modseq) in changes.into_iter().zip(first..) {
            write.execute(params![mailbox_id, uid, new.join(" "), modseq as i64])?;
            out.changed.push((uid, new, modseq));
        }
    }
    Ok(out)
}

/// See `Mailstore::recent_from`; the writer's transaction makes the claim atomic.
pub(crate) fn recent_from(c: &Connection, mailbox_id: i64, claim_up_to: Option<u32>) -> Result<u32> {
    let from: Option<u32> =
        c.query_row("SELECT recent_uid FROM mailboxes WHERE id = ?1", [mailbox_id], |r| r.get(0)).optional()?;
    let Some(from) = from else { return Ok(u32::MAX) };
    if let Some(up_to) = claim_up_to.filter(|u| *u >= from) {
        c.execute("UPDATE mailboxes SET recent_uid = ?2 WHERE id = ?1", params![mailbox_id, i64::from(up_to) + 1])?;
    }
    Ok(from)
}

/// EXPUNGE (RFC 9051 §6.4.3) or UID EXPUNGE (RFC 4315 §2.1): remove the
/// messages flagged \Deleted (among `only`, if given). Returns their UIDs.
pub(crate) fn expunge(c: &Connection, mailbox_id: i64, only: Option<&[u32]>) -> Result<Vec<u32>> {
    // A set: a UID EXPUNGE of many UIDs on a large mailbox stays linear.
    let only: Option<std::collections::HashSet<u32>> = only.map(|o| o.iter().copied().collect());
    let uids: Vec<u32> = messages(c, mailbox_id)?
        .into_iter()
        .filter(|m| m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
        .map(|m| m.uid)
        .filter(|u| only.as_ref().is_none_or(|o| o.contains(u)))
        .collect();
    remove(c, mailbox_id, &uids)?;
    Ok(uids)
}

/// Remove entries by UID, keeping the UID floor and bumping HIGHESTMODSEQ.
pub(crate) fn remove(c: &Connection, mailbox_id: i64, uids: &[u32]) -> Result<()> {
    let Some(&max) = uids.iter().max() else { return Ok(()) };
    let mut del =
        c.prepare_cached("DELETE FROM mailbox_messages WHERE mailbox_id = ?1 AND uid = ?2 RETURNING message_id")?;
    let mut held = Vec::new();
    for uid in uids {
        if let Some(id) = del.query_row(params![mailbox_id, uid], |r| r.get::<_, String>(0)).optional()? {
            held.push(id);
        }
    }
    drop(del);
    drop_unneeded(c, held.iter().map(String::as_str))?;
    c.execute(
        "UPDATE mailboxes SET expunged_uid_max = MAX(expunged_uid_max, ?2) WHERE id = ?1",
        params![mailbox_id, max],
    )?;
    let modseq = next_modseq(c, mailbox_id)?;
    // For QRESYNC: what vanished, and when.
    let mut note = c.prepare_cached("INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)")?;
    for uid in uids {
        note.execute(params![mailbox_id, uid, modseq as i64])?;
    }
    Ok(())
}

/// See `Mailstore::vanished_since`.
pub(crate) fn vanished_since(c: &Connection, mailbox_id: i64, modseq: u64) -> Result<Vec<u32>> {
    let mut q = c.prepare_cached("SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid")?;
    let uids = q.query_map(params![mailbox_id, modseq as i64], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(uids)
}

/// COPY (RFC 9051 §6.4.7) or MOVE (RFC 6851): the same stored message gets
/// a new UID in `to`, flags kept. Returns (source UID, new UID) pairs in
/// source UID order, for COPYUID (RFC 4315 §3).
pub(crate) fn copy(c: &Connection, from: i64, uids: &[u32], to: i64, moving: bool) -> Result<Vec<(u32, u32)>> {
    let mut pairs = Vec::new();
    let mut read = c.prepare_cached(
        "SELECT message_id, flags, internal_date FROM mailbox_messages WHERE mailbox_id = ?1 AND uid = ?2",
    )?;
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for uid in sorted {
        let Some((id, flags, date)) = read
            .query_row(params![from, uid], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })
            .optional()?
        else {
            continue;
        };
        let (new_uid, _) = place(c, to, &id, &parse_flags(&flags), date)?;
        pairs.push((uid, new_uid));
    }
    if moving {
        let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        remove(c, from, &moved)?;
    }
    Ok(pairs)
}

/// The message ids a `DELETE … RETURNING message_id` over `?1` removed.
pub(crate) fn message_ids(c: &Connection, sql: &str, key: impl rusqlite::ToSql) -> Result<Vec<String>> {
    let mut s = c.prepare_cached(sql)?;
    let ids = s.query_map([key], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Remove, among `ids`, the bodies and messages nothing needs any more
/// (see [`crate::lifecycle`]); returns the messages removed whole.
pub(crate) fn drop_unneeded<'a>(c: &Connection, ids: impl IntoIterator<Item = &'a str>) -> Result<u64> {
    let [body, message] = crate::lifecycle::drop_unneeded("= ?1");
    let (mut body, mut message) = (c.prepare_cached(&body)?, c.prepare_cached(&message)?);
    let mut whole = 0;
    for id in ids {
        body.execute([id])?;
        whole += message.execute([id])? as u64;
    }
    Ok(whole)
}
