//! Mailbox changes, announced after their commit.
//!
//! A backend publishes the mailboxes a commit touched on its [`ChangeHub`];
//! sessions watching one (IMAP IDLE) hold a [`ChangeFeed`] and look again
//! when told. Within one node the hub is an in-memory broadcast; a shared
//! backend also feeds it with what other nodes announce.

use tokio::sync::broadcast;

/// What a feed reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// This mailbox's content or flags changed.
    Mailbox(i64),
    /// Changes were missed (the watcher fell behind): any mailbox may have
    /// changed, look again.
    Unknown,
    /// The mailbox names or subscriptions of the owner whose
    /// [`names_key`] this is changed (a mailbox created, deleted or
    /// renamed; a subscription changed). Keys of two owners may collide:
    /// a watcher then looks for nothing.
    Names(i64),
}

/// The key announcing that an owner's mailbox names or subscriptions
/// changed: a negative number (mailbox ids are positive), the same on
/// every node (FNV-1a of the canonical address), never [`UNKNOWN`].
pub fn names_key(owner: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in owner.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    -((h >> 2) as i64) - 2
}

/// Sent in place of a mailbox id: look at everything.
const UNKNOWN: i64 = i64::MIN;

/// The publishing side, held by a backend.
#[derive(Debug, Clone)]
pub struct ChangeHub(broadcast::Sender<i64>);

impl Default for ChangeHub {
    fn default() -> Self {
        ChangeHub(broadcast::channel(1024).0)
    }
}

impl ChangeHub {
    /// Tell watchers these mailboxes changed (call after the commit).
    pub fn publish(&self, mailboxes: impl IntoIterator<Item = i64>) {
        for id in mailboxes {
            // No receiver is fine: nobody watches.
            let _ = self.0.send(id);
        }
    }

    /// Tell watchers that anything may have changed (changes were missed,
    /// e.g. while a shared backend's notifications were not heard).
    pub fn publish_unknown(&self) {
        let _ = self.0.send(UNKNOWN);
    }

    pub fn subscribe(&self) -> ChangeFeed {
        ChangeFeed(self.0.subscribe())
    }
}

/// The watching side, one per session.
#[derive(Debug)]
pub struct ChangeFeed(broadcast::Receiver<i64>);

impl ChangeFeed {
    /// The next change; cancel-safe. Once the store is gone nothing more
    /// changes, and this waits for ever (a watcher never spins on it).
    pub async fn next(&mut self) -> Changed {
        match self.0.recv().await {
            Ok(UNKNOWN) => Changed::Unknown,
            Ok(key) if key < 0 => Changed::Names(key),
            Ok(id) => Changed::Mailbox(id),
            Err(broadcast::error::RecvError::Lagged(_)) => Changed::Unknown,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watchers_see_changes_and_learn_when_they_missed_some() {
        let hub = ChangeHub::default();
        let mut feed = hub.subscribe();
        hub.publish([7]);
        assert_eq!(feed.next().await, Changed::Mailbox(7));
        let key = names_key("alice@example.test");
        assert!(key < -1 && key != UNKNOWN && key != names_key("bob@example.test"));
        hub.publish([key]);
        assert_eq!(feed.next().await, Changed::Names(key));
        hub.publish(0..2000);
        assert_eq!(feed.next().await, Changed::Unknown);
        drop(hub);
        let mut rest = 0;
        while tokio::time::timeout(std::time::Duration::from_millis(50), feed.next()).await.is_ok() {
            rest += 1;
        }
        assert!(rest <= 1024, "what was left, then silence: {rest}");
    }
}
