//! How long what storage keeps lives, the same on every backend.
//!
//! - A message body goes as soon as nothing needs it: every recipient is
//!   final (no attempt will read it again) and no mailbox holds the message.
//!   Recording a final outcome and removing mailbox entries (EXPUNGE, MOVE,
//!   DELETE, user removal) drop it at once; housekeeping catches what two
//!   nodes finishing the last recipients at the same moment both left.
//! - A finished message's queue record (recipients, attempt history) is
//!   kept for `queue show` until every outcome is older than the retention
//!   time, then housekeeping removes it, and the message too unless a mailbox
//!   holds it.
//! - Expunged UIDs leave a floor (`mailboxes.expunged_uid_max`), so UIDNEXT
//!   never goes back when the newest messages are gone (RFC 9051 §2.3.1.1).
//! - The audit trail of operators' actions is kept.
//!
//! Housekeeping walks the recipients in message id order, which is the order
//! of arrival (ids are UUIDv7), and only up to messages received before the
//! retention cut-off: it reads what it may remove, plus the few records kept
//! longer (held by an operator), not the whole queue or the mailboxes.

use serde::Serialize;

use crate::MessageId;

/// What one round of housekeeping did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Housekeeping {
    /// Messages whose queue record (recipients, attempts) was removed.
    pub records_removed: u64,
    /// Of those, messages removed whole (no mailbox holds them).
    pub messages_removed: u64,
    /// Whether more is left than one round takes (call again soon).
    pub more: bool,
}

/// Messages one housekeeping transaction looks at.
pub(crate) const BATCH: i64 = 1000;
/// Transactions one round runs at most.
pub(crate) const ROUNDS: usize = 20;

/// Statements removing, among the messages whose id satisfies `ids` (an SQL
/// condition such as `= ?1` or `= ANY($1)`), what nothing needs any more:
/// the body once no recipient waits and no mailbox holds the message; the
/// message once neither a queue record nor a mailbox refers to it.
pub(crate) fn drop_unneeded(ids: &str) -> [String; 2] {
    [
        format!(
            "DELETE FROM message_bodies WHERE message_id {ids}
               AND NOT EXISTS (SELECT 1 FROM recipients r
                               WHERE r.message_id = message_bodies.message_id AND r.state IN ('queued', 'held'))
               AND NOT EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = message_bodies.message_id)"
        ),
        format!(
            "DELETE FROM messages WHERE id {ids}
               AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = messages.id)
               AND NOT EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = messages.id)"
        ),
    ]
}

/// Messages with a queue record after the cursor `$1` and received before
/// `$2` (an id bound), in id order, at most `$4`, each with 1 when it is
/// done: no recipient waits and every outcome is older than `$3`.
pub(crate) const CANDIDATES: &str = "SELECT message_id,
        MIN(CASE WHEN state IN ('queued', 'held') OR COALESCE(final_at, 0) >= $3 THEN 0 ELSE 1 END)
    FROM recipients WHERE message_id > $1 AND message_id < $2
    GROUP BY message_id ORDER BY message_id LIMIT $4";

/// Statements removing the queue records of messages satisfying `ids`.
pub(crate) fn drop_records(ids: &str) -> [String; 2] {
    [format!("DELETE FROM attempts WHERE message_id {ids}"), format!("DELETE FROM recipients WHERE message_id {ids}")]
}

/// The exclusive upper bound of ids received before `before` (unix seconds).
pub(crate) fn received_before(before: i64) -> String {
    MessageId::first_at(before.max(0) as u64 * 1000).to_string()
}

/// From one batch of [`CANDIDATES`] rows: the ids to remove, and the cursor
/// for the next batch (none when the batch was the last).
pub(crate) fn plan(rows: Vec<(String, i64)>) -> (Vec<String>, Option<String>) {
    let next = (rows.len() as i64 == BATCH).then(|| rows.last().map(|r| r.0.clone())).flatten();
    (rows.into_iter().filter(|r| r.1 == 1).map(|r| r.0).collect(), next)
}

/// A check both backends run (`facteur check`) on what lifecycle keeps.
pub(crate) struct Check {
    pub invariant: &'static str,
    /// The rows at fault, as `FROM …`.
    pub rows: &'static str,
    /// The column naming them.
    pub key: &'static str,
    /// The table and key column a repair deletes from, if the data allows.
    pub repair: Option<(&'static str, &'static str)>,
    /// What a finding says after the count.
    pub detail: &'static str,
}

/// In this order: a body goes before its message.
pub(crate) const CHECKS: [Check; 3] = [
    Check {
        invariant: "message-has-body",
        rows: "FROM messages m WHERE NOT EXISTS (SELECT 1 FROM message_bodies b WHERE b.message_id = m.id)
           AND (EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.state IN ('queued', 'held'))
                OR EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = m.id))",
        key: "m.id",
        repair: None,
        detail: "message(s) waiting for delivery or in a mailbox have no stored body",
    },
    Check {
        invariant: "body-is-needed",
        rows: "FROM message_bodies b
         WHERE NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = b.message_id AND r.state IN ('queued', 'held'))
           AND NOT EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = b.message_id)",
        key: "b.message_id",
        repair: Some(("message_bodies", "message_id")),
        detail: "body/bodies kept although no recipient waits and no mailbox holds the message",
    },
    Check {
        invariant: "message-is-held",
        rows: "FROM messages m WHERE NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id)
           AND NOT EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = m.id)",
        key: "m.id",
        repair: Some(("messages", "id")),
        detail: "message(s) kept although neither the queue nor a mailbox refers to them",
    },
];
