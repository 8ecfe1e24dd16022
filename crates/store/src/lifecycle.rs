//! How long what storage keeps lives, the same on every backend.
//!
//! - A message body goes as soon as nothing needs it: every recipient is
//!   final (no attempt will read it again) and no mailbox holds the message.
//!   Recording a final outcome and removing mailbox entries (EXPUNGE, MOVE,
//!   DELETE, user removal) drop it at once.
//! - A finished message's queue record (recipients, attempt history) is
//!   kept for `queue show` until every outcome is older than the retention
//!   time, then housekeeping removes it, and the message too unless a mailbox
//!   holds it.
//! - Expunged UIDs leave a floor (`mailboxes.expunged_uid_max`), so UIDNEXT
//!   never goes back when the newest messages are gone (RFC 9051 §2.3.1.1).
//! - The audit trail of operators' actions is kept.
//!
//! Housekeeping makes two walks, each resumed where the last call stopped
//! ([`Sweep`]) and started over once at the end:
//! - the queue records, in message id order (the order of arrival: ids are
//!   UUIDv7), only up to messages received before the retention cut-off;
//! - every message, a batch per call, dropping what the prompt removals
//!   above left behind: what two nodes finishing a message's last
//!   recipients (or expunging its last copies) at the same moment each left
//!   for the other, and the bodies of messages finished before this
//!   version, which kept every body.

use serde::Serialize;

use crate::MessageId;

/// Where housekeeping's two walks go on from (message ids; empty: from the
/// start).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Sweep {
    pub records: String,
    pub messages: String,
}

/// What one round of housekeeping did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Housekeeping {
    /// Messages whose queue record (recipients, attempts) was removed.
    pub records_removed: u64,
    /// Messages removed whole (neither a queue record nor a mailbox holds
    /// them any more).
    pub messages_removed: u64,
    /// Where the next round goes on from.
    pub next: Sweep,
    /// Whether finished records are left that this round had no time for
    /// (call again soon).
    pub more: bool,
}

/// Messages one housekeeping transaction looks at.
pub(crate) const BATCH: i64 = 1000;
/// Transactions the records walk runs at most per round.
pub(crate) const ROUNDS: usize = 20;
/// Batches the messages walk takes per round.
pub(crate) const MESSAGE_BATCHES: usize = 5;

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

/// Messages after the cursor `$1`, in id order, at most `$2`: the messages
/// walk looks at each with [`drop_unneeded`], which checks what it removes.
pub(crate) const MESSAGES: &str = "SELECT id FROM messages WHERE id > $1 ORDER BY id LIMIT $2";

/// From one batch of [`CANDIDATES`] rows: the ids to remove, and the cursor
/// for the next batch (none when the batch was the last).
pub(crate) fn plan(rows: Vec<(String, i64)>) -> (Vec<String>, Option<String>) {
    let next = (rows.len() as i64 == BATCH).then(|| rows.last().map(|r| r.0.clone())).flatten();
    (rows.into_iter().filter(|r| r.1 == 1).map(|r| r.0).collect(), next)
}

/// The cursor after a batch of [`MESSAGES`] (empty, to start over, when it
/// was the last).
pub(crate) fn next_message(ids: &[String]) -> String {
    if ids.len() as i64 == BATCH { ids.last().cloned().unwrap_or_default() } else { String::new() }
}

/// Messages still needed whose body is gone: an error no repair can undo.
pub(crate) const MISSING_BODIES: &str = "FROM messages m
    WHERE NOT EXISTS (SELECT 1 FROM message_bodies b WHERE b.message_id = m.id)
      AND (EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.state IN ('queued', 'held'))
           OR EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = m.id))";
