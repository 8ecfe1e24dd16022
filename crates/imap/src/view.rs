//! A session's view of its selected mailbox: the messages it has told the
//! client about, in sequence order, and what to tell it when the mailbox
//! changed underneath (another session, an SMTP delivery, POP3).
//!
//! Pure: it compares the view with a fresh listing from storage and yields
//! the untagged updates (RFC 9051 §7.4.1 EXPUNGE, §7.3.1 EXISTS, §7.5.2
//! FETCH FLAGS), applying them to itself as it goes so that sequence
//! numbers in each update are right for the client at that point.

use facteur_store::{MailboxSnapshot, MessageMeta};

/// One untagged update for the client, in the order to send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The message with this sequence number (and UID, for VANISHED) is
    /// gone; later ones shift down.
    Expunge { seq: u32, uid: u32 },
    /// The mailbox now holds this many messages.
    Exists(u32),
    /// The flags (and MODSEQ) of a message changed.
    Flags { seq: u32, uid: u32, flags: Vec<String>, modseq: u64 },
}

#[derive(Debug, Clone)]
pub struct View {
    pub mailbox_id: i64,
    pub read_only: bool,
    pub uidvalidity: u32,
    messages: Vec<MessageMeta>,
    /// The mailbox's HIGHESTMODSEQ that this view reflects in full; `None`
    /// while an expunge is still to be told. Every change to a mailbox takes
    /// a new MODSEQ, so while storage says the same, nothing changed.
    synced: Option<u64>,
    /// The saved search result `$` (RFC 5182, RFC 9051 §6.4.4.1): UIDs,
    /// empty at SELECT; it goes with the mailbox.
    pub saved: Vec<u32>,
    /// The keywords the client was told in FLAGS (RFC 9051 §7.3.5), by
    /// their lowercase form (keywords are case-insensitive, §2.3.2), as
    /// first seen; one removed from every message stays, as in Dovecot.
    keywords: std::collections::BTreeMap<String, String>,
    /// A keyword appeared that the client has not been told of yet.
    new_keywords: bool,
    /// The UIDs that are `\Recent` for this session (RFC 3501 §2.3.2),
    /// ascending: those it was the first to be told of. IMAP4rev1 only.
    recent: Vec<u32>,
    /// What SORT and THREAD read of each message's header, by UID, kept
    /// for the next SORT (a header never changes); at most
    /// [`MAX_SORT_KEYS`] messages, so memory stays bounded.
    pub sort_keys: std::collections::HashMap<u32, std::sync::Arc<crate::thread::Summary>>,
    /// The searches kept up to date for the client (RFC 5267 §4.3); they
    /// end with the selection, as `saved` does.
    pub contexts: Vec<SearchContext>,
}

/// A SEARCH, UID SEARCH, SORT or UID SORT with `RETURN (UPDATE)` (RFC 5267
/// §4.3): its program and result, so what changes can be told as ADDTO and
/// REMOVEFROM.
#[derive(Debug, Clone)]
pub struct SearchContext {
    pub tag: String,
    /// Results as UIDs (UID SEARCH) or sequence numbers (§4.3.2).
    pub uid: bool,
    pub criteria: Vec<imap_codec::imap_types::search::SearchKey<'static>>,
    /// The program started with `$` (RFC 5182).
    pub saved_key: bool,
    /// SORT's criteria (RFC 5267 §4.3, CONTEXT=SORT): the result is kept
    /// in that order and updates name positions in it; `None` for SEARCH.
    pub sort: Option<Vec<imap_codec::imap_types::extensions::sort::SortCriterion>>,
    /// The UIDs of the messages that match: ascending for SEARCH, in the
    /// sort order for SORT.
    pub result: Vec<u32>,
}

/// Most searches one session keeps up to date; past it an UPDATE is
/// refused with NOUPDATE (RFC 5267 §4.3.1, which asks for at least one).
pub const MAX_SEARCH_CONTEXTS: usize = 8;

/// Most messages whose sort keys a session keeps (about 300 octets each).
pub const MAX_SORT_KEYS: usize = 100_000;

impl View {
    pub fn new(mailbox_id: i64, uidvalidity: u32, read_only: bool, snapshot: MailboxSnapshot) -> View {
        let mut view = View {
            mailbox_id,
            read_only,
            uidvalidity,
            messages: Vec::new(),
            synced: Some(snapshot.highest_modseq),
            saved: Vec::new(),
            keywords: Default::default(),
            new_keywords: false,
            recent: Vec::new(),
            sort_keys: Default::default(),
            contexts: Vec::new(),
        };
        for m in &snapshot.messages {
            note_keywords(&mut view.keywords, &mut view.new_keywords, &m.flags);
        }
        view.messages = snapshot.messages;
        view.new_keywords = false;
        view
    }

    /// Every keyword of the mailbox as this view knows them, sorted.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.keywords.values().map(String::as_str)
    }

    /// The messages from UID `from` on are recent for this session (those
    /// it claimed, or, read-only, those nobody has claimed yet).
    pub fn mark_recent(&mut self, from: u32) {
        let last = self.recent.last().copied().unwrap_or(0);
        let new = self.messages.iter().map(|m| m.uid).filter(|u| *u >= from && *u > last);
        self.recent.extend(new);
    }

    /// Keep the sort keys of these messages; past [`MAX_SORT_KEYS`], those
    /// of messages no longer in the view go first, then all.
    pub fn remember_sort_keys(
        &mut self,
        summaries: std::collections::HashMap<u32, std::sync::Arc<crate::thread::Summary>>,
    ) {
        if self.sort_keys.len() + summaries.len() > MAX_SORT_KEYS {
            let messages = &self.messages;
            self.sort_keys.retain(|uid, _| messages.binary_search_by_key(uid, |m| m.uid).is_ok());
            if self.sort_keys.len() + summaries.len() > MAX_SORT_KEYS {
                self.sort_keys.clear();
            }
        }
        self.sort_keys.extend(summaries.into_iter().take(MAX_SORT_KEYS));
    }

    /// No message is recent any more (the session enabled IMAP4rev2).
    pub fn forget_recent(&mut self) {
        self.recent.clear();
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }

    /// How many messages in the view are recent (the RECENT response).
    pub fn recent_count(&self) -> usize {
        self.messages.iter().filter(|m| self.is_recent(m.uid)).count()
    }

    /// The highest UID in the view, 0 for none.
    pub fn last_uid(&self) -> u32 {
        self.messages.last().map_or(0, |m| m.uid)
    }

    /// Whether a keyword appeared since the last call (or SELECT): the
    /// client must be sent FLAGS again before it sees one (RFC 9051 §7.3.5).
    pub fn take_new_keywords(&mut self) -> bool {
        std::mem::take(&mut self.new_keywords)
    }

    /// The HIGHESTMODSEQ this view is known to reflect (see `synced`).
    pub fn synced(&self) -> Option<u64> {
        self.synced
    }

    pub fn messages(&self) -> &[MessageMeta] {
        &self.messages
    }

    pub fn len(&self) -> u32 {
        self.messages.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// 1-based sequence number of a UID, if the client knows the message.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok().map(|i| i as u32 + 1)
    }

    pub fn by_seq(&self, seq: u32) -> Option<&MessageMeta> {
        self.messages.get((seq as usize).checked_sub(1)?)
    }

    pub fn uids(&self) -> Vec<u32> {
        self.messages.iter().map(|m| m.uid).collect()
    }

    /// Replace one message's flags after this session's own STORE.
    pub fn set_flags(&mut self, uid: u32, flags: Vec<String>, modseq: u64) {
        note_keywords(&mut self.keywords, &mut self.new_keywords, &flags);
        if let Ok(i) = self.messages.binary_search_by_key(&uid, |m| m.uid) {
            self.messages[i].flags = flags;
            self.messages[i].modseq = modseq;
        }
    }

    /// This session's own STORE gave a changed message `modseq` (each its
    /// own, told here in order) and its changes are applied with
    /// `set_flags`. If that MODSEQ directly follows the one the view
    /// reflects, no other change came between, and the view is still in
    /// step without listing the mailbox again.
    pub fn own_change(&mut self, modseq: u64) {
        if self.synced.is_some_and(|s| s + 1 == modseq) {
            self.synced = Some(modseq);
        }
    }

    /// Bring the view up to `fresh` (UID order, as storage lists it) and
    /// say what changed. With `expunges: false` (during FETCH, STORE and
    /// SEARCH, RFC 9051 §7.4.1) messages gone from storage stay in the view
    /// and no EXPUNGE is sent yet; they are reported at the next chance.
    pub fn refresh(&mut self, snapshot: MailboxSnapshot, expunges: bool) -> Vec<Update> {
        let MailboxSnapshot { highest_modseq, messages: fresh } = snapshot;
        let mut out = Vec::new();
        if expunges {
            // Highest sequence first would also do; lowest first with the
            // shift applied is what clients expect to read.
            let mut i = 0;
            while i < self.messages.len() {
                let uid = self.messages[i].uid;
                if fresh.binary_search_by_key(&uid, |m| m.uid).is_err() {
                    self.messages.remove(i);
                    out.push(Update::Expunge { seq: i as u32 + 1, uid });
                } else {
                    i += 1;
                }
            }
        }
        // Messages storage no longer has (kept while expunges wait).
        let mut gone = false;
        for m in &mut self.messages {
            let Ok(j) = fresh.binary_search_by_key(&m.uid, |f| f.uid) else {
                gone = true;
                continue;
            };
            let f = &fresh[j];
            if f.modseq != m.modseq || f.flags != m.flags {
                note_keywords(&mut self.keywords, &mut self.new_keywords, &f.flags);
                m.flags = f.flags.clone();
                m.modseq = f.modseq;
                out.push(Update::Flags { seq: 0, uid: m.uid, flags: f.flags.clone(), modseq: f.modseq });
            }
        }
        let last = self.messages.last().map_or(0, |m| m.uid);
        let before = self.messages.len();
        for m in fresh.iter().filter(|m| m.uid > last) {
            note_keywords(&mut self.keywords, &mut self.new_keywords, &m.flags);
        }
        self.messages.extend(fresh.into_iter().filter(|m| m.uid > last));
        if self.messages.len() != before {
            out.push(Update::Exists(self.len()));
        }
        // An expunge not told yet keeps the view out of step.
        self.synced = if gone { None } else { Some(highest_modseq) };
        // Sequence numbers of flag updates, now that the view is final.
        for u in &mut out {
            if let Update::Flags { seq, uid, .. } = u {
                *seq = self.seq_of(*uid).unwrap_or(0);
            }
        }
        out
    }

    /// Drop expunged UIDs this session removed itself (EXPUNGE, MOVE) and
    /// return their sequence numbers as they must be sent, in order.
    pub fn remove(&mut self, uids: &[u32]) -> Vec<u32> {
        let mut seqs = Vec::new();
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        // Highest first keeps earlier sequence numbers valid; RFC 9051
        // §7.4.1 allows either, each number relative to the moment it is sent.
        for uid in sorted.into_iter().rev() {
            if let Some(seq) = self.seq_of(uid) {
                self.messages.remove(seq as usize - 1);
                seqs.push(seq);
            }
        }
        seqs
    }
}

/// Remember the keywords among `flags` (system flags start with `\\`),
/// setting `new` when one was not known.
fn note_keywords(keywords: &mut std::collections::BTreeMap<String, String>, new: &mut bool, flags: &[String]) {
    for f in flags.iter().filter(|f| !f.starts_with('\\')) {
        if let std::collections::btree_map::Entry::Vacant(e) = keywords.entry(f.to_lowercase()) {
            e.insert(f.clone());
            *new = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32, flags: &[&str], modseq: u64) -> MessageMeta {
        MessageMeta {
            uid,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            modseq,
            internal_date: 0,
            size: 10,
            message_id: facteur_store::MessageId::new(uid as u64),
        }
    }

    fn snap(highest_modseq: u64, messages: Vec<MessageMeta>) -> MailboxSnapshot {
        MailboxSnapshot { highest_modseq, messages }
    }

    #[test]
    fn arrivals_flag_changes_and_expunges_in_client_order() {
        let mut v = View::new(1, 7, false, snap(3, vec![meta(1, &[], 1), meta(3, &[], 2), meta(5, &[], 3)]));
        assert_eq!(v.seq_of(3), Some(2));
        // 1 is expunged elsewhere, 5 gets \Seen, 8 and 9 arrive.
        let fresh = vec![meta(3, &[], 2), meta(5, &["\\Seen"], 4), meta(8, &[], 5), meta(9, &[], 6)];
        let u = v.refresh(snap(7, fresh), true);
        assert_eq!(
            u,
            [
                Update::Expunge { seq: 1, uid: 1 },
                Update::Flags { seq: 2, uid: 5, flags: vec!["\\Seen".into()], modseq: 4 },
                Update::Exists(4),
            ]
        );
        assert_eq!(v.uids(), [3, 5, 8, 9]);
        assert_eq!(v.synced(), Some(7));
    }

    #[test]
    fn expunges_wait_while_the_client_may_not_hear_them() {
        let mut v = View::new(1, 7, false, snap(2, vec![meta(1, &[], 1), meta(2, &[], 2)]));
        assert_eq!(v.refresh(snap(3, vec![meta(2, &[], 2)]), false), []);
        assert_eq!(v.len(), 2, "still there for the client");
        assert_eq!(v.synced(), None, "the expunge is still to be told, whatever storage's MODSEQ");
        assert_eq!(v.refresh(snap(3, vec![meta(2, &[], 2)]), true), [Update::Expunge { seq: 1, uid: 1 }]);
        assert_eq!(v.synced(), Some(3));
        assert!(v.refresh(snap(3, vec![meta(2, &[], 2)]), true).is_empty(), "nothing twice");
    }

    #[test]
    fn keywords_are_collected_and_new_ones_flagged() {
        let mut v = View::new(1, 7, false, snap(2, vec![meta(1, &["\\Seen", "$Label"], 1), meta(2, &["$label"], 2)]));
        assert_eq!(v.keywords().collect::<Vec<_>>(), ["$Label"], "case-insensitive, as first seen");
        assert!(!v.take_new_keywords(), "SELECT sends them");
        v.set_flags(1, vec!["\\Flagged".into()], 3);
        assert!(!v.take_new_keywords(), "a system flag is no keyword");
        v.set_flags(1, vec!["Work".into()], 4);
        assert!(v.take_new_keywords() && !v.take_new_keywords());
        // Another session's flag change and an arrival each bring one.
        let fresh = vec![meta(1, &["Work"], 4), meta(2, &["Todo"], 5), meta(3, &["$Junk"], 6)];
        v.refresh(snap(6, fresh), true);
        assert!(v.take_new_keywords());
        assert_eq!(v.keywords().collect::<Vec<_>>(), ["$Junk", "$Label", "Todo", "Work"]);
    }

    #[test]
    fn recent_messages_are_those_claimed() {
        let mut v = View::new(1, 7, false, snap(3, vec![meta(1, &[], 1), meta(4, &[], 2), meta(6, &[], 3)]));
        v.mark_recent(4);
        assert!(!v.is_recent(1) && v.is_recent(4) && v.is_recent(6));
        assert_eq!(v.recent_count(), 2);
        v.refresh(snap(5, vec![meta(4, &[], 2), meta(6, &[], 3), meta(8, &[], 5)]), true);
        assert_eq!(v.recent_count(), 2, "an expunged recent message no longer counts");
        v.mark_recent(9);
        assert!(!v.is_recent(8), "claimed by another session");
        v.mark_recent(2);
        assert!(v.is_recent(8) && v.recent_count() == 3, "an earlier mark adds only what is newer");
    }

    #[test]
    fn sort_keys_stay_bounded() {
        let mut v = View::new(1, 7, false, snap(1, vec![meta(1, &[], 1), meta(2, &[], 1)]));
        let keys = |uids: std::ops::Range<u32>| {
            uids.map(|u| (u, std::sync::Arc::new(crate::thread::Summary { uid: u, ..Default::default() }))).collect()
        };
        v.remember_sort_keys(keys(1..5));
        assert_eq!(v.sort_keys.len(), 4);
        // Past the bound, keys of messages gone from the view (3, 4) go first...
        v.remember_sort_keys(keys(10..MAX_SORT_KEYS as u32 + 8));
        assert_eq!(v.sort_keys.len(), MAX_SORT_KEYS, "1 and 2 kept, 3 and 4 dropped");
        assert!(v.sort_keys.contains_key(&1) && !v.sort_keys.contains_key(&3));
        // ...then all.
        v.remember_sort_keys(keys(1_000_000..1_000_010));
        assert!(v.sort_keys.len() <= MAX_SORT_KEYS);
    }

    #[test]
    fn own_expunge_reports_highest_first() {
        let mut v = View::new(1, 7, false, snap(5, (1..=5).map(|u| meta(u, &[], u as u64)).collect()));
        assert_eq!(v.remove(&[2, 4, 9]), [4, 2]);
        assert_eq!(v.uids(), [1, 3, 5]);
        assert_eq!(v.by_seq(2).map(|m| m.uid), Some(3));
        assert!(v.by_seq(0).is_none() && v.by_seq(4).is_none());
    }

    #[test]
    fn own_store_keeps_the_view_in_step_only_when_nothing_came_between() {
        let mut v = View::new(1, 7, false, snap(5, vec![meta(1, &[], 5)]));
        v.set_flags(1, vec!["\\Seen".into()], 6);
        v.own_change(6);
        assert_eq!(v.synced(), Some(6), "MODSEQ 6 was this session's own");
        // Another session's change took 7; ours took 8: the view must list again.
        v.own_change(8);
        assert_eq!(v.synced(), Some(6));
    }
}
