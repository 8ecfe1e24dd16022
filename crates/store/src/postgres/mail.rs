//! Mailboxes on PostgreSQL: the same operations and rules as SQLite's
//! (decided in `crate::invariants`), with the mailbox row lock as the
//! point where concurrent writers to one mailbox take turns.

use deadpool_postgres::GenericClient;

use super::{PgStore, db, execute, parsed, query, query_one, query_opt};
use crate::invariants::{self, apply_flags, canonical_address, mailbox_name, normalize_name, parse_flags};
use crate::{
    ChangeFeed, FlagOp, FlagsChanged, Mailbox, MailboxSnapshot, Mailstore, MessageId, MessageMeta, Part, Result,
    StoreError,
};

const MAILBOX_COLUMNS: &str = "m.id, m.owner, m.name, m.uidvalidity,
    COALESCE((SELECT uidnext FROM uid_counters u WHERE u.mailbox_id = m.id), 1),
    (SELECT COUNT(*) FROM mailbox_messages mm WHERE mm.mailbox_id = m.id),
    (SELECT COUNT(*) FROM mailbox_messages mm WHERE mm.mailbox_id = m.id
        AND (' ' || mm.flags || ' ') NOT ILIKE '% \\Seen %' ESCAPE ''),
    m.special_use, m.highest_modseq";

fn mailbox_row(r: &tokio_postgres::Row) -> Mailbox {
    Mailbox {
        id: r.get(0),
        owner: r.get(1),
        name: r.get(2),
        uidvalidity: r.get::<_, i64>(3) as u32,
        uidnext: r.get::<_, i64>(4) as u32,
        messages: r.get::<_, i64>(5) as u64,
        unseen: r.get::<_, i64>(6) as u64,
        special_use: r.get(7),
        highest_modseq: r.get::<_, i64>(8) as u64,
    }
}

async fn list<C: GenericClient>(c: &C, owner: &str) -> Result<Vec<Mailbox>> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.owner = $1 ORDER BY m.name");
    Ok(query(c, &sql, &[&owner]).await?.iter().map(mailbox_row).collect())
}

pub(crate) async fn get<C: GenericClient>(c: &C, owner: &str, name: &str) -> Result<Option<Mailbox>> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.owner = $1 AND m.name = $2");
    Ok(query_opt(c, &sql, &[&owner, &normalize_name(name)]).await?.as_ref().map(mailbox_row))
}

async fn require<C: GenericClient>(c: &C, owner: &str, name: &str) -> Result<Mailbox> {
    get(c, owner, name).await?.ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))
}

/// A UIDVALIDITY above every one the owner's mailboxes have or had
/// ([`invariants::next_uidvalidity`]).
async fn fresh_uidvalidity<C: GenericClient>(c: &C, owner: &str, now: i64) -> Result<i64> {
    // The owner's floor row is locked (made if missing) so two nodes
    // creating mailboxes for one owner take UIDVALIDITYs in turn.
    execute(c, "INSERT INTO uidvalidity_floor (owner, value) VALUES ($1, 0) ON CONFLICT DO NOTHING", &[&owner]).await?;
    let floor: i64 =
        query_one(c, "SELECT value FROM uidvalidity_floor WHERE owner = $1 FOR UPDATE", &[&owner]).await?.get(0);
    let live: Option<i64> =
        query_one(c, "SELECT MAX(uidvalidity) FROM mailboxes WHERE owner = $1", &[&owner]).await?.get(0);
    Ok(invariants::next_uidvalidity(now, Some(live.unwrap_or(0).max(floor))) as i64)
}

/// Remember the UIDVALIDITY a name had when its mailbox left it (deleted or
/// renamed away), the greatest if it left several times.
async fn vacate<C: GenericClient>(c: &C, owner: &str, name: &str, uidvalidity: i64) -> Result<()> {
    execute(
        c,
        "INSERT INTO former_names (owner, name, uidvalidity) VALUES ($1, $2, $3)
         ON CONFLICT (owner, name) DO UPDATE SET uidvalidity = GREATEST(former_names.uidvalidity, excluded.uidvalidity)",
        &[&owner, &name, &uidvalidity],
    )
    .await?;
    Ok(())
}

/// Create one mailbox with a fresh UIDVALIDITY; its id.
pub(crate) async fn create_mailbox<C: GenericClient>(
    c: &C,
    owner: &str,
    name: &str,
    special_use: Option<&str>,
    now: i64,
) -> Result<i64> {
    let uidvalidity = fresh_uidvalidity(c, owner, now).await?;
    let id: i64 = query_one(
        c,
        "INSERT INTO mailboxes (owner, name, uidvalidity, special_use, created_at) VALUES ($1, $2, $3, $4, $5)
         RETURNING id",
        &[&owner, &name, &uidvalidity, &special_use, &now],
    )
    .await?
    .get(0);
    execute(c, "INSERT INTO uid_counters (mailbox_id, uidnext) VALUES ($1, 1)", &[&id]).await?;
    Ok(id)
}

/// Lock mailboxes for this transaction, in id order (no deadlock between
/// writers locking several).
pub(crate) async fn lock<C: GenericClient>(c: &C, mut ids: Vec<i64>) -> Result<()> {
    ids.sort_unstable();
    ids.dedup();
    query(c, "SELECT id FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE", &[&ids]).await?;
    Ok(())
}

/// The next UID of a locked mailbox ([`invariants::next_uid`] decides).
async fn allocate_uid<C: GenericClient>(c: &C, mailbox_id: i64) -> Result<u32> {
    let r = query_one(
        c,
        "SELECT (SELECT uidnext FROM uid_counters WHERE mailbox_id = $1),
                GREATEST(COALESCE((SELECT MAX(uid) FROM mailbox_messages WHERE mailbox_id = $1), 0),
                         COALESCE((SELECT expunged_uid_max FROM mailboxes WHERE id = $1), 0))",
        &[&mailbox_id],
    )
    .await?;
    let uid = invariants::next_uid(mailbox_id, r.get(0), r.get(1))?;
    execute(
        c,
        "INSERT INTO uid_counters (mailbox_id, uidnext) VALUES ($1, $2)
         ON CONFLICT (mailbox_id) DO UPDATE SET uidnext = excluded.uidnext",
        &[&mailbox_id, &(uid as i64 + 1)],
    )
    .await?;
    Ok(uid)
}

async fn next_modseq<C: GenericClient>(c: &C, mailbox_id: i64) -> Result<u64> {
    next_modseqs(c, mailbox_id, 1).await
}

/// `count` new MODSEQs of a mailbox at once: the last of them.
async fn next_modseqs<C: GenericClient>(c: &C, mailbox_id: i64, count: usize) -> Result<u64> {
    let r = query_opt(
        c,
        "UPDATE mailboxes SET highest_modseq = highest_modseq + $2 WHERE id = $1 RETURNING highest_modseq",
        &[&mailbox_id, &(count as i64)],
    )
    .await?;
    r.map(|r| r.get::<_, i64>(0) as u64).ok_or_else(|| StoreError::NotFound(format!("mailbox id {mailbox_id}")))
}

/// Put a stored message into a (locked) mailbox with a fresh UID and MODSEQ.
pub(crate) async fn place<C: GenericClient>(
    c: &C,
    mailbox_id: i64,
    message_id: &str,
    flags: &[String],
    internal_date: i64,
) -> Result<(u32, u64)> {
    let uid = allocate_uid(c, mailbox_id).await?;
    let modseq = next_modseq(c, mailbox_id).await?;
    execute(
        c,
        "INSERT INTO mailbox_messages (mailbox_id, uid, message_id, flags, internal_date, modseq)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&mailbox_id, &(uid as i64), &message_id, &flags.join(" "), &internal_date, &(modseq as i64)],
    )
    .await?;
    Ok((uid, modseq))
}

async fn create<C: GenericClient>(
    c: &C,
    owner: &str,
    name: &str,
    special_use: Option<&str>,
    now: i64,
) -> Result<Mailbox> {
    let name = mailbox_name(name)?;
    if get(c, owner, &name).await?.is_some() {
        return Err(StoreError::Exists(format!("mailbox {name}")));
    }
    // RFC 9051 §6.3.4: create any missing superior names.
    for superior in invariants::superiors(&name) {
        if get(c, owner, superior).await?.is_none() {
            create_mailbox(c, owner, superior, None, now).await?;
        }
    }
    create_mailbox(c, owner, &name, special_use, now).await?;
    execute(c, "INSERT INTO subscriptions (owner, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&owner, &name])
        .await?;
    require(c, owner, &name).await
}

async fn messages<C: GenericClient>(c: &C, mailbox_id: i64) -> Result<Vec<MessageMeta>> {
    let rows = query(
        c,
        "SELECT mm.uid, mm.flags, mm.modseq, mm.internal_date, m.size, mm.message_id
         FROM mailbox_messages mm JOIN messages m ON m.id = mm.message_id
         WHERE mm.mailbox_id = $1 ORDER BY mm.uid",
        &[&mailbox_id],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(MessageMeta {
                uid: r.get::<_, i64>(0) as u32,
                flags: parse_flags(r.get(1)),
                modseq: r.get::<_, i64>(2) as u64,
                internal_date: r.get(3),
                size: r.get::<_, i64>(4) as u64,
                message_id: parsed(r, 5)?,
            })
        })
        .collect()
}

/// Remove entries by UID, keeping the UID floor and bumping HIGHESTMODSEQ.
async fn remove<C: GenericClient>(c: &C, mailbox_id: i64, uids: &[u32]) -> Result<()> {
    let Some(&max) = uids.iter().max() else { return Ok(()) };
    let uids: Vec<i64> = uids.iter().map(|&u| u as i64).collect();
    let held = message_ids(
        c,
        "DELETE FROM mailbox_messages WHERE mailbox_id = $1 AND uid = ANY($2) RETURNING message_id",
        &[&mailbox_id, &uids],
    )
    .await?;
    drop_unneeded(c, &held).await?;
    execute(
        c,
        "UPDATE mailboxes SET expunged_uid_max = GREATEST(expunged_uid_max, $2) WHERE id = $1",
        &[&mailbox_id, &(max as i64)],
    )
    .await?;
    let modseq = next_modseq(c, mailbox_id).await?;
    // For QRESYNC: what vanished, and when.
    execute(
        c,
        "INSERT INTO expunged (mailbox_id, uid, modseq) SELECT $1, u, $3 FROM UNNEST($2::BIGINT[]) AS u
         ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
        &[&mailbox_id, &uids, &(modseq as i64)],
    )
    .await?;
    Ok(())
}

async fn copy<C: GenericClient>(c: &C, from: i64, uids: &[u32], to: i64, moving: bool) -> Result<Vec<(u32, u32)>> {
    lock(c, vec![from, to]).await?;
    let mut sorted: Vec<i64> = uids.iter().map(|&u| u as i64).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let rows = query(
        c,
        "SELECT uid, message_id, flags, internal_date FROM mailbox_messages
         WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid",
        &[&from, &sorted],
    )
    .await?;
    let mut pairs = Vec::new();
    for r in rows {
        let (uid, id, flags, date): (i64, String, String, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let (new_uid, _) = place(c, to, &id, &parse_flags(&flags), date).await?;
        pairs.push((uid as u32, new_uid));
    }
    if moving {
        let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        remove(c, from, &moved).await?;
    }
    Ok(pairs)
}

/// The length of a message's header: up to and including the first empty
/// line (CRLF CRLF, or CRLF at the very start); `None` if `data` has none.
fn header_len(data: &[u8]) -> Option<usize> {
    if data.starts_with(b"\r\n") {
        return Some(2);
    }
    data.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

impl Mailstore for PgStore {
    async fn list_mailboxes(&self, owner: &str) -> Result<Vec<Mailbox>> {
        list(&self.client().await?, &canonical_address(owner)).await
    }

    async fn fetch_message(&self, mailbox_id: i64, uid: u32) -> Result<Option<Vec<u8>>> {
        let c = self.client().await?;
        let r = query_opt(
            &c,
            "SELECT b.data FROM mailbox_messages mm JOIN message_bodies b ON b.message_id = mm.message_id
             WHERE mm.mailbox_id = $1 AND mm.uid = $2",
            &[&mailbox_id, &(uid as i64)],
        )
        .await?;
        Ok(r.map(|r| r.get(0)))
    }

    async fn fetch_messages(&self, mailbox_id: i64, uids: Vec<u32>, part: Part) -> Result<Vec<(u32, Vec<u8>)>> {
        let wanted: Vec<i64> = uids.iter().map(|&u| u as i64).collect();
        let c = self.client().await?;
        if part == Part::Whole {
            let rows = query(
                &c,
                "SELECT mm.uid, b.data FROM mailbox_messages mm JOIN message_bodies b ON b.message_id = mm.message_id
                 WHERE mm.mailbox_id = $1 AND mm.uid = ANY($2) ORDER BY mm.uid",
                &[&mailbox_id, &wanted],
            )
            .await?;
            return Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u32, r.get(1))).collect());
        }
        // Headers: the first 16 KiB of each (bodies are stored out of line
        // uncompressed, so only those chunks are read); the rare longer
        // header is read whole.
        const PREFIX: i32 = 16 * 1024;
        let rows = query(
            &c,
            "SELECT mm.uid, substring(b.data FROM 1 FOR $3), length(b.data)
             FROM mailbox_messages mm JOIN message_bodies b ON b.message_id = mm.message_id
             WHERE mm.mailbox_id = $1 AND mm.uid = ANY($2) ORDER BY mm.uid",
            &[&mailbox_id, &wanted, &PREFIX],
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let uid = r.get::<_, i64>(0) as u32;
            let mut head: Vec<u8> = r.get(1);
            let len: i32 = r.get(2);
            if header_len(&head).is_none() && len > PREFIX {
                head = self.fetch_message(mailbox_id, uid).await?.unwrap_or_default();
            }
            head.truncate(header_len(&head).unwrap_or(head.len()));
            out.push((uid, head));
        }
        Ok(out)
    }

    async fn mailbox(&self, owner: &str, name: &str) -> Result<Option<Mailbox>> {
        get(&self.client().await?, &canonical_address(owner), name).await
    }

    async fn create_mailbox(&self, owner: &str, name: &str, special_use: Option<&str>) -> Result<Mailbox> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let owner = canonical_address(owner);
        let m = create(&tx, &owner, name, special_use, self.now()).await?;
        self.announce(&tx, [crate::names_key(&owner)]).await?;
        tx.commit().await.map_err(db)?;
        Ok(m)
    }

    async fn delete_mailbox(&self, owner: &str, name: &str) -> Result<()> {
        let owner = canonical_address(owner);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let m = require(&tx, &owner, name).await?;
        if m.name == "INBOX" {
            return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
        }
        // No delivery or APPEND on another node commits into it meanwhile.
        lock(&tx, vec![m.id]).await?;
        let held =
            message_ids(&tx, "DELETE FROM mailbox_messages WHERE mailbox_id = $1 RETURNING message_id", &[&m.id])
                .await?;
        drop_unneeded(&tx, &held).await?;
        execute(&tx, "DELETE FROM uid_counters WHERE mailbox_id = $1", &[&m.id]).await?;
        execute(&tx, "DELETE FROM mailboxes WHERE id = $1", &[&m.id]).await?;
        execute(
            &tx,
            "INSERT INTO uidvalidity_floor (owner, value) VALUES ($1, $2)
             ON CONFLICT (owner) DO UPDATE SET value = GREATEST(uidvalidity_floor.value, excluded.value)",
            &[&owner, &(m.uidvalidity as i64)],
        )
        .await?;
        vacate(&tx, &owner, &m.name, m.uidvalidity as i64).await?;
        self.announce(&tx, [m.id, crate::names_key(&owner)]).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn rename_mailbox(&self, owner: &str, from: &str, to: &str) -> Result<()> {
        let owner = canonical_address(owner);
        let (from, to) = (normalize_name(from), mailbox_name(to)?);
        let now = self.now();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let src = require(&tx, &owner, &from).await?;
        if get(&tx, &owner, &to).await?.is_some() {
            return Err(StoreError::Exists(format!("mailbox {to}")));
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(StoreError::Invalid(format!("cannot rename {from} into itself")));
        }
        let changed = if src.name == "INBOX" {
            // RFC 9051 §6.3.6: INBOX's messages move to the new name.
            let dst = create(&tx, &owner, &to, None, now).await?;
            let uids: Vec<u32> = messages(&tx, src.id).await?.iter().map(|m| m.uid).collect();
            copy(&tx, src.id, &uids, dst.id, true).await?;
            vec![src.id, dst.id]
        } else {
            if let Some((parent, _)) = to.rsplit_once('/')
                && get(&tx, &owner, parent).await?.is_none()
            {
                create(&tx, &owner, parent, None, now).await?;
            }
            let children = format!("{from}/");
            let moved: Vec<(i64, String, i64)> = query(
                &tx,
                "SELECT id, name, uidvalidity FROM mailboxes WHERE owner = $1 AND (name = $2 OR substr(name, 1, $3) = $4)",
                &[&owner, &from, &(children.chars().count() as i32), &children],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
            for (_, name, uidvalidity) in &moved {
                vacate(&tx, &owner, name, *uidvalidity).await?;
            }
            // A subscription outlives its mailbox (RFC 9051 §6.3.7), so one
            // may wait at a new name already: it stays, once.
            for (from, to) in invariants::rename_steps(&from, &to) {
                let children = format!("{from}/");
                for sql in [
                    "DELETE FROM subscriptions WHERE owner = $1 AND NOT (name = $2 OR substr(name, 1, $5) = $6) AND name IN
                     (SELECT $3 || substr(name, $4) FROM subscriptions
                      WHERE owner = $1 AND (name = $2 OR substr(name, 1, $5) = $6))",
                    "UPDATE mailboxes SET name = $3 || substr(name, $4)
                     WHERE owner = $1 AND (name = $2 OR substr(name, 1, $5) = $6)",
                    "UPDATE subscriptions SET name = $3 || substr(name, $4)
                     WHERE owner = $1 AND (name = $2 OR substr(name, 1, $5) = $6)",
                ] {
                    execute(
                        &tx,
                        sql,
                        // substr counts characters, not bytes.
                        &[
                            &owner,
                            &from,
                            &to,
                            &(from.chars().count() as i32 + 1),
                            &(children.chars().count() as i32),
                            &children,
                        ],
                    )
                    .await?;
                }
            }
            // RFC 9051 §2.3.1.1: a client that knew a name with a
            // UIDVALIDITY must see a greater one there, never a smaller.
            for (id, name, uidvalidity) in moved {
                let new_name = format!("{to}{}", &name[from.len()..]);
                let former: Option<i64> = query_opt(
                    &tx,
                    "SELECT uidvalidity FROM former_names WHERE owner = $1 AND name = $2",
                    &[&owner, &new_name],
                )
                .await?
                .map(|r| r.get(0));
                if invariants::renamed_needs_new_uidvalidity(former.map(|f| f as u32), uidvalidity as u32) {
                    let fresh = fresh_uidvalidity(&tx, &owner, now).await?;
                    execute(&tx, "UPDATE mailboxes SET uidvalidity = $2 WHERE id = $1", &[&id, &fresh]).await?;
                }
            }
            vec![src.id]
        };
        self.announce(&tx, changed.into_iter().chain([crate::names_key(&owner)])).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn subscribe(&self, owner: &str, name: &str, on: bool) -> Result<()> {
        let (owner, name) = (canonical_address(owner), normalize_name(name));
        let c = self.client().await?;
        if on {
            if get(&c, &owner, &name).await?.is_none() {
                return Err(StoreError::NotFound(format!("mailbox {name}")));
            }
            execute(
                &c,
                "INSERT INTO subscriptions (owner, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&owner, &name],
            )
            .await?;
        } else {
            execute(&c, "DELETE FROM subscriptions WHERE owner = $1 AND name = $2", &[&owner, &name]).await?;
        }
        // Outside a transaction: the notice goes at once.
        self.announce(&c, [crate::names_key(&owner)]).await
    }

    async fn non_ascii_mailboxes(&self) -> Result<Vec<(String, String)>> {
        let c = self.client().await?;
        let rows =
            query(&c, "SELECT owner, name FROM mailboxes WHERE name ~ '[^ -~]' ORDER BY owner, length(name)", &[])
                .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn subscriptions(&self, owner: &str) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows =
            query(&c, "SELECT name FROM subscriptions WHERE owner = $1 ORDER BY name", &[&canonical_address(owner)])
                .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn mailbox_messages(&self, mailbox_id: i64) -> Result<Vec<MessageMeta>> {
        messages(&self.client().await?, mailbox_id).await
    }

    async fn mailbox_snapshot(&self, mailbox_id: i64, known: Option<u64>) -> Result<Option<MailboxSnapshot>> {
        let mut c = self.client().await?;
        // One snapshot: HIGHESTMODSEQ and the list agree.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        let highest = query_opt(&tx, "SELECT highest_modseq FROM mailboxes WHERE id = $1", &[&mailbox_id]).await?;
        let Some(highest) = highest.map(|r| r.get::<_, i64>(0) as u64) else {
            return Ok(Some(MailboxSnapshot::default()));
        };
        if known == Some(highest) {
            return Ok(None);
        }
        let messages = messages(&tx, mailbox_id).await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(MailboxSnapshot { highest_modseq: highest, messages }))
    }

    async fn append_message(
        &self,
        mailbox_id: i64,
        data: Vec<u8>,
        flags: Vec<String>,
        internal_date: i64,
    ) -> Result<(u32, u64)> {
        let r = self.append_messages(mailbox_id, vec![(data, flags, internal_date)]).await?;
        r.into_iter().next().ok_or_else(|| StoreError::Internal("APPEND stored nothing".into()))
    }

    async fn append_messages(
        &self,
        mailbox_id: i64,
        messages: Vec<(Vec<u8>, Vec<String>, i64)>,
    ) -> Result<Vec<(u32, u64)>> {
        let now = self.now();
        let envelope = serde_json::to_string(&crate::StoredEnvelope::default())
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let mut placed = Vec::with_capacity(messages.len());
        for (i, (data, flags, internal_date)) in messages.iter().enumerate() {
            let id = MessageId::new(self.inner.clock.now_ms().max(0) as u64).to_string();
            execute(
                &tx,
                "INSERT INTO messages (id, received_at, size, envelope, class) VALUES ($1, $2, $3, $4, 'interpersonal')",
                &[&id, &now, &(data.len() as i64), &envelope],
            )
            .await?;
            execute(&tx, "INSERT INTO message_bodies (message_id, data) VALUES ($1, $2)", &[&id, data]).await?;
            if i == 0 {
                lock(&tx, vec![mailbox_id]).await?;
            }
            placed.push(place(&tx, mailbox_id, &id, flags, *internal_date).await?);
        }
        self.announce(&tx, [mailbox_id]).await?;
        tx.commit().await.map_err(db)?;
        Ok(placed)
    }

    async fn store_flags(
        &self,
        mailbox_id: i64,
        uids: Vec<u32>,
        op: FlagOp,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> Result<FlagsChanged> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        lock(&tx, vec![mailbox_id]).await?;
        let wanted: Vec<i64> = uids.iter().map(|&u| u as i64).collect();
        let rows = query(
            &tx,
            "SELECT uid, flags, modseq FROM mailbox_messages WHERE mailbox_id = $1 AND uid = ANY($2)",
            &[&mailbox_id, &wanted],
        )
        .await?;
        let current: std::collections::HashMap<u32, (String, u64)> =
            rows.iter().map(|r| (r.get::<_, i64>(0) as u32, (r.get(1), r.get::<_, i64>(2) as u64))).collect();
        let mut out = FlagsChanged::default();
        let mut changes = Vec::new();
        for uid in uids {
            let Some((now_flags, modseq)) = current.get(&uid) else { continue };
            if unchanged_since.is_some_and(|u| *modseq > u) {
                out.modified.push(uid);
                continue;
            }
            let now_flags = parse_flags(now_flags);
            let Some(new) = apply_flags(op, &now_flags, &flags) else {
                out.unchanged.push((uid, now_flags, *modseq));
                continue;
            };
            changes.push((uid, new));
        }
        // RFC 7162 §3.1.3: each message changed gets a MODSEQ of its own, in
        // the order of the set (taken in one step).
        if !changes.is_empty() {
            let first = next_modseqs(&tx, mailbox_id, changes.len()).await? + 1 - changes.len() as u64;
            for ((uid, new), modseq) in changes.into_iter().zip(first..) {
                execute(
                    &tx,
                    "UPDATE mailbox_messages SET flags = $3, modseq = $4 WHERE mailbox_id = $1 AND uid = $2",
                    &[&mailbox_id, &(uid as i64), &new.join(" "), &(modseq as i64)],
                )
                .await?;
                out.changed.push((uid, new, modseq));
            }
        }
        if !out.changed.is_empty() {
            self.announce(&tx, [mailbox_id]).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn vanished_since(&self, mailbox_id: i64, modseq: u64) -> Result<Vec<u32>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
                &[&mailbox_id, &(modseq.min(i64::MAX as u64) as i64)],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u32).collect())
    }

    async fn recent_from(&self, mailbox_id: i64, claim_up_to: Option<u32>) -> Result<u32> {
        let c = self.client().await?;
        let row = match claim_up_to {
            // The row lock makes two claims take turns: each sees the other's mark.
            Some(up_to) => {
                let sql = "UPDATE mailboxes m SET recent_uid = GREATEST(o.recent_uid, $2)
                           FROM (SELECT id, recent_uid FROM mailboxes WHERE id = $1 FOR UPDATE) o
                           WHERE m.id = o.id RETURNING o.recent_uid";
                query_opt(&c, sql, &[&mailbox_id, &(i64::from(up_to) + 1)]).await?
            }
            None => query_opt(&c, "SELECT recent_uid FROM mailboxes WHERE id = $1", &[&mailbox_id]).await?,
        };
        Ok(row.map_or(u32::MAX, |r| r.get::<_, i64>(0).clamp(0, i64::from(u32::MAX)) as u32))
    }

    async fn expunge(&self, mailbox_id: i64, only: Option<Vec<u32>>) -> Result<Vec<u32>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        lock(&tx, vec![mailbox_id]).await?;
        // A set: a UID EXPUNGE of many UIDs on a large mailbox stays linear.
        let only: Option<std::collections::HashSet<u32>> = only.map(|o| o.into_iter().collect());
        let uids: Vec<u32> = messages(&tx, mailbox_id)
            .await?
            .into_iter()
            .filter(|m| m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
            .map(|m| m.uid)
            .filter(|u| only.as_ref().is_none_or(|o| o.contains(u)))
            .collect();
        remove(&tx, mailbox_id, &uids).await?;
        if !uids.is_empty() {
            self.announce(&tx, [mailbox_id]).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(uids)
    }

    async fn copy_messages(&self, from: i64, uids: Vec<u32>, to: i64, moving: bool) -> Result<Vec<(u32, u32)>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let pairs = copy(&tx, from, &uids, to, moving).await?;
        if !pairs.is_empty() {
            self.announce(&tx, if moving { vec![from, to] } else { vec![to] }).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(pairs)
    }

    fn mailbox_changes(&self) -> ChangeFeed {
        self.inner.changes.subscribe()
    }
}

/// The message ids a `DELETE … RETURNING message_id` removed.
pub(crate) async fn message_ids<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<String>> {
    Ok(query(c, sql, params).await?.iter().map(|r| r.get(0)).collect())
}

/// Remove, among `ids`, the bodies and messages nothing needs any more
/// (see [`crate::lifecycle`]); returns the messages removed whole.
pub(crate) async fn drop_unneeded<C: GenericClient>(c: &C, ids: &[String]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let [body, message] = crate::lifecycle::drop_unneeded("= ANY($1)");
    execute(c, &body, &[&ids]).await?;
    execute(c, &message, &[&ids]).await
}
