//! Mailboxes as IMAP and POP3 use them: the default set with special-use,
//! hierarchy, UIDs that are never reused even after expunges and
//! re-creation, MODSEQ on every change, and change notices after the
//! commit.

use facteur_store::{FlagOp, Part, StoreError, prelude::*};

use crate::fixture::{Fixture, mailbox_changed, names_changed};

const ALICE: &str = "alice@example.test";

async fn setup<S: Store>(s: S) -> S {
    s.add_domain("example.test").await.unwrap();
    s.add_user(ALICE, "h").await.unwrap();
    s
}

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub async fn a_new_user_gets_the_special_use_mailboxes_subscribed<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let boxes = s.list_mailboxes(ALICE).await.unwrap();
    let mut got: Vec<(String, Option<String>)> =
        boxes.iter().map(|m| (m.name.clone(), m.special_use.clone())).collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("Archive", Some("\\Archive")),
            ("Drafts", Some("\\Drafts")),
            ("INBOX", None),
            ("Junk", Some("\\Junk")),
            ("Sent", Some("\\Sent")),
            ("Trash", Some("\\Trash")),
        ]
        .map(|(n, u)| (n.to_string(), u.map(str::to_string)))
    );
    assert_eq!(s.subscriptions(ALICE).await.unwrap().len(), 6);
    // INBOX is case-insensitive, other names are not.
    assert!(s.mailbox(ALICE, "inbox").await.unwrap().is_some());
    assert!(s.mailbox(ALICE, "sent").await.unwrap().is_none());
}

pub async fn create_delete_rename_keep_the_hierarchy_and_uidvalidity_rules<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    // Every change to the names or subscriptions is announced with the
    // owner's key (IMAP NOTIFY's MailboxName and SubscriptionChange).
    let mut changes = s.mailbox_changes();
    let key = facteur_store::names_key(ALICE);
    let leaf = s.create_mailbox(ALICE, "Projects/2026/Q4", None).await.unwrap();
    assert_eq!(names_changed(&mut changes).await, key);
    s.subscribe(ALICE, "Projects/2026/Q4", false).await.unwrap();
    assert_eq!(names_changed(&mut changes).await, key);
    assert!(s.mailbox(ALICE, "Projects").await.unwrap().is_some(), "parents are created");
    assert!(s.mailbox(ALICE, "Projects/2026").await.unwrap().is_some());
    assert!(matches!(s.create_mailbox(ALICE, "Projects/2026/Q4", None).await, Err(StoreError::Exists(_))));
    for bad in ["", "/x", "x/", "a//b", "a*b", "a%b", "a\nb"] {
        assert!(matches!(s.create_mailbox(ALICE, bad, None).await, Err(StoreError::Invalid(_))), "{bad:?}");
    }
    assert!(matches!(s.delete_mailbox(ALICE, "INBOX").await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.delete_mailbox(ALICE, "Nope").await, Err(StoreError::NotFound(_))));

    // Deleted and created again: a greater UIDVALIDITY, even though the
    // old mailbox is gone.
    s.delete_mailbox(ALICE, "Projects/2026/Q4").await.unwrap();
    let again = s.create_mailbox(ALICE, "Projects/2026/Q4", None).await.unwrap();
    assert!(again.uidvalidity > leaf.uidvalidity, "{} then {}", leaf.uidvalidity, again.uidvalidity);

    // Rename moves children along; the UIDVALIDITY stays.
    let parent = s.mailbox(ALICE, "Projects").await.unwrap().unwrap();
    s.rename_mailbox(ALICE, "Projects", "Work/Old").await.unwrap();
    assert_eq!(names_changed(&mut changes).await, key);
    let renamed = s.mailbox(ALICE, "Work/Old").await.unwrap().unwrap();
    assert_eq!((renamed.id, renamed.uidvalidity), (parent.id, parent.uidvalidity));
    assert!(s.mailbox(ALICE, "Work/Old/2026/Q4").await.unwrap().is_some());
    assert!(s.mailbox(ALICE, "Projects/2026").await.unwrap().is_none());
    assert!(s.subscriptions(ALICE).await.unwrap().contains(&"Work/Old/2026/Q4".to_string()));
    assert!(matches!(s.rename_mailbox(ALICE, "Work", "Sent").await, Err(StoreError::Exists(_))));
    assert!(matches!(s.rename_mailbox(ALICE, "Work", "Work/Inner").await, Err(StoreError::Invalid(_))));

    // Renamed onto a name whose earlier mailbox had a greater UIDVALIDITY
    // (deleted, or renamed away): a fresh one above it, children too, so a
    // client that knew the name sees it grow (RFC 9051 §2.3.1.1).
    let older = s.create_mailbox(ALICE, "Older/Leaf", None).await.unwrap();
    let older_parent = s.mailbox(ALICE, "Older").await.unwrap().unwrap();
    let newer = s.create_mailbox(ALICE, "Newer", None).await.unwrap();
    let newer_leaf = s.create_mailbox(ALICE, "Newer/Leaf", None).await.unwrap();
    assert!(newer.uidvalidity > older_parent.uidvalidity && newer_leaf.uidvalidity > older.uidvalidity);
    s.delete_mailbox(ALICE, "Newer/Leaf").await.unwrap();
    s.rename_mailbox(ALICE, "Newer", "Newest").await.unwrap();
    s.rename_mailbox(ALICE, "Older", "Newer").await.unwrap();
    let (now, now_leaf) =
        (s.mailbox(ALICE, "Newer").await.unwrap().unwrap(), s.mailbox(ALICE, "Newer/Leaf").await.unwrap().unwrap());
    assert_eq!((now.id, now_leaf.id), (older_parent.id, older.id));
    assert!(now.uidvalidity > newer.uidvalidity, "{} after {}", now.uidvalidity, newer.uidvalidity);
    assert!(now_leaf.uidvalidity > newer_leaf.uidvalidity);
    assert_ne!(now.uidvalidity, now_leaf.uidvalidity);
    // Back to its own name, or onto a name whose mailbox was older: kept.
    s.rename_mailbox(ALICE, "Newest", "Newer-again").await.unwrap();
    s.rename_mailbox(ALICE, "Newer-again", "Newest").await.unwrap();
    assert_eq!(s.mailbox(ALICE, "Newest").await.unwrap().unwrap().uidvalidity, newer.uidvalidity);
    let gone = s.create_mailbox(ALICE, "Gone", None).await.unwrap();
    s.delete_mailbox(ALICE, "Gone").await.unwrap();
    s.rename_mailbox(ALICE, "Newest", "Gone").await.unwrap();
    let kept = s.mailbox(ALICE, "Gone").await.unwrap().unwrap();
    assert!(gone.uidvalidity > newer.uidvalidity);
    assert!(kept.uidvalidity > gone.uidvalidity && kept.id == newer.id, "a fresh one: Gone's was newer");
    let subscribed = s.subscriptions(ALICE).await.unwrap();
    assert_eq!(
        subscribed.iter().filter(|n| *n == "Gone").count(),
        1,
        "Gone's subscription outlived it: {subscribed:?}"
    );
    let fresh = s.create_mailbox(ALICE, "Fresh", None).await.unwrap();
    s.rename_mailbox(ALICE, "Gone", "Fresh2").await.unwrap();
    s.delete_mailbox(ALICE, "Fresh").await.unwrap();
    let younger = s.create_mailbox(ALICE, "Younger", None).await.unwrap();
    s.rename_mailbox(ALICE, "Younger", "Fresh").await.unwrap();
    assert!(younger.uidvalidity > fresh.uidvalidity);
    assert_eq!(s.mailbox(ALICE, "Fresh").await.unwrap().unwrap().uidvalidity, younger.uidvalidity, "kept");

    // Up the hierarchy onto a parent's name that is free (the parent was
    // deleted): Up/B/B takes Up/B's name as Up/B takes Up's, whatever order
    // the rows are updated in (Up/B/B's row is the older here), and the
    // subscriptions move along.
    let deep = s.create_mailbox(ALICE, "Down/B", None).await.unwrap();
    let middle = s.create_mailbox(ALICE, "Up/B", None).await.unwrap();
    s.rename_mailbox(ALICE, "Down/B", "Up/B/B").await.unwrap();
    s.delete_mailbox(ALICE, "Up").await.unwrap();
    s.rename_mailbox(ALICE, "Up/B", "Up").await.unwrap();
    let ids =
        [s.mailbox(ALICE, "Up").await.unwrap().map(|m| m.id), s.mailbox(ALICE, "Up/B").await.unwrap().map(|m| m.id)];
    assert_eq!(ids, [Some(middle.id), Some(deep.id)]);
    assert!(s.mailbox(ALICE, "Up/B/B").await.unwrap().is_none());
    let subscribed = s.subscriptions(ALICE).await.unwrap();
    let up: Vec<&String> = subscribed.iter().filter(|n| n.starts_with("Up")).collect();
    assert_eq!(up, ["Up", "Up/B"], "{subscribed:?}");

    // Renaming INBOX moves its messages and leaves it empty.
    let inbox = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    s.append_message(inbox.id, b"Subject: one\r\n\r\nx\r\n".to_vec(), vec![], 1).await.unwrap();
    s.rename_mailbox(ALICE, "INBOX", "Old Inbox").await.unwrap();
    let old = s.mailbox(ALICE, "Old Inbox").await.unwrap().unwrap();
    assert_eq!((old.messages, s.mailbox(ALICE, "INBOX").await.unwrap().unwrap().messages), (1, 0));
}

pub async fn flags_modseq_expunge_and_the_uid_floor<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let inbox = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    let mut changes = s.mailbox_changes();
    let mut uids = Vec::new();
    for n in 0..3 {
        let (uid, modseq) = s
            .append_message(inbox.id, format!("Subject: {n}\r\n\r\nbody\r\n").into_bytes(), flags(&["\\Seen"]), 1000)
            .await
            .unwrap();
        uids.push(uid);
        assert!(modseq > inbox.highest_modseq);
    }
    assert_eq!(uids, [1, 2, 3]);
    assert_eq!(mailbox_changed(&mut changes).await, inbox.id, "a change notice after the commit");
    let before = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    assert_eq!((before.messages, before.unseen), (3, 0));

    // Add, remove, replace; a change takes the next MODSEQ, a no-op none.
    let r = s.store_flags(inbox.id, vec![1, 2], FlagOp::Add, flags(&["\\Deleted", "$Work"]), None).await.unwrap();
    assert_eq!(r.changed.len(), 2);
    assert_eq!(r.changed[1].2, r.changed[0].2 + 1, "a MODSEQ per message changed, in order (RFC 7162 §3.1.3)");
    let highest = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap().highest_modseq;
    assert_eq!(highest, r.changed[1].2);
    assert!(r.changed.iter().all(|(_, f, m)| f.contains(&"$Work".to_string()) && *m > before.highest_modseq));
    let again = s.store_flags(inbox.id, vec![1], FlagOp::Add, flags(&["\\deleted"]), None).await.unwrap();
    assert!(again.changed.is_empty() && again.unchanged.len() == 1, "flags compare case-insensitively: {again:?}");
    let r = s.store_flags(inbox.id, vec![2], FlagOp::Remove, flags(&["$work"]), None).await.unwrap();
    assert_eq!(r.changed[0].1, flags(&["\\Seen", "\\Deleted"]));
    let r = s.store_flags(inbox.id, vec![3], FlagOp::Replace, flags(&["\\Flagged"]), None).await.unwrap();
    assert_eq!(r.changed[0].1, flags(&["\\Flagged"]));
    assert_eq!(s.mailbox(ALICE, "INBOX").await.unwrap().unwrap().unseen, 1);
    // UNCHANGEDSINCE below a message's MODSEQ: refused for it (RFC 7162 §3.1.3).
    let m1 = s.mailbox_messages(inbox.id).await.unwrap()[0].modseq;
    let r = s.store_flags(inbox.id, vec![1, 3], FlagOp::Add, flags(&["\\Answered"]), Some(m1)).await.unwrap();
    assert_eq!(r.modified, [3]);
    assert_eq!(r.changed.iter().map(|c| c.0).collect::<Vec<_>>(), [1]);

    // UID EXPUNGE of 2 only, then EXPUNGE: 1 (the only other \Deleted).
    assert_eq!(s.expunge(inbox.id, Some(vec![2, 3])).await.unwrap(), [2]);
    assert_eq!(s.expunge(inbox.id, None).await.unwrap(), [1]);
    let left: Vec<u32> = s.mailbox_messages(inbox.id).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(left, [3]);
    // Expunge the newest and break the counter: the next UID is still new.
    s.store_flags(inbox.id, vec![3], FlagOp::Add, flags(&["\\Deleted"]), None).await.unwrap();
    assert_eq!(s.expunge(inbox.id, None).await.unwrap(), [3]);
    f.faults.drop_uid_counter(inbox.id);
    let (uid, _) = s.append_message(inbox.id, b"Subject: 4\r\n\r\nx\r\n".to_vec(), vec![], 1000).await.unwrap();
    assert_eq!(uid, 4, "UID 3 was expunged: never handed out again");
    let after = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    assert!(after.highest_modseq > r.changed[0].2);
    let report = s.check(false).await.unwrap();
    assert!(report.healthy(), "{report:?}");
}

/// QRESYNC (RFC 7162 §3.2.5): each expunge is remembered with its MODSEQ
/// (EXPUNGE and MOVE alike) while the mailbox lives.
pub async fn expunged_uids_are_remembered_with_their_modseq<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let work = s.create_mailbox(ALICE, "Work", None).await.unwrap();
    let archive = s.mailbox(ALICE, "Archive").await.unwrap().unwrap();
    for n in 0..5 {
        s.append_message(work.id, format!("Subject: {n}\r\n\r\nx\r\n").into_bytes(), vec![], 1000).await.unwrap();
    }
    let before = s.mailbox(ALICE, "Work").await.unwrap().unwrap().highest_modseq;
    assert!(s.vanished_since(work.id, 0).await.unwrap().is_empty());
    s.store_flags(work.id, vec![2, 4], FlagOp::Add, flags(&["\\Deleted"]), None).await.unwrap();
    assert_eq!(s.expunge(work.id, None).await.unwrap(), [2, 4]);
    let middle = s.mailbox(ALICE, "Work").await.unwrap().unwrap().highest_modseq;
    s.copy_messages(work.id, vec![5], archive.id, true).await.unwrap();
    assert_eq!(s.vanished_since(work.id, before).await.unwrap(), [2, 4, 5]);
    assert_eq!(s.vanished_since(work.id, middle).await.unwrap(), [5], "only what vanished after");
    assert!(s.vanished_since(work.id, middle + 1).await.unwrap().is_empty());
    assert!(s.vanished_since(archive.id, 0).await.unwrap().is_empty(), "a move's target lost nothing");
    // A deleted mailbox takes its history along: a new one starts clean.
    s.delete_mailbox(ALICE, "Work").await.unwrap();
    let again = s.create_mailbox(ALICE, "Work", None).await.unwrap();
    assert!(s.vanished_since(work.id, 0).await.unwrap().is_empty());
    assert!(s.vanished_since(again.id, 0).await.unwrap().is_empty());
}

/// MULTIAPPEND (RFC 3502): several messages in one step, UIDs in order, or
/// none at all.
pub async fn several_messages_append_together_or_not_at_all<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let inbox = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    let three =
        (1..=3).map(|n| (format!("Subject: {n}\r\n\r\nx\r\n").into_bytes(), flags(&["\\Seen"]), 1000 + n)).collect();
    let placed = s.append_messages(inbox.id, three).await.unwrap();
    assert_eq!(placed.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(placed.windows(2).all(|w| w[1].1 > w[0].1), "a MODSEQ each: {placed:?}");
    let listed = s.mailbox_messages(inbox.id).await.unwrap();
    assert_eq!(listed.iter().map(|m| m.internal_date).collect::<Vec<_>>(), [1001, 1002, 1003]);
    let before = s.quota(ALICE).await.unwrap().unwrap();
    let two = vec![(b"Subject: a\r\n\r\nx\r\n".to_vec(), vec![], 1), (b"Subject: b\r\n\r\nx\r\n".to_vec(), vec![], 2)];
    assert!(s.append_messages(inbox.id + 1000, two).await.is_err(), "no such mailbox");
    assert_eq!(s.quota(ALICE).await.unwrap().unwrap(), before, "nothing stored");
    let report = s.check(false).await.unwrap();
    assert!(report.healthy(), "no message left without a mailbox: {report:?}");
}

/// `\Recent` (RFC 3501 §2.3.2): each message is claimed by one session only.
pub async fn recent_messages_are_claimed_once<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let inbox = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    for n in 0..2 {
        s.append_message(inbox.id, format!("Subject: {n}\r\n\r\nx\r\n").into_bytes(), vec![], 1000).await.unwrap();
    }
    assert_eq!(s.recent_from(inbox.id, None).await.unwrap(), 0, "a new mailbox: everything is recent");
    assert_eq!(s.recent_from(inbox.id, None).await.unwrap(), 0, "reading claims nothing");
    assert_eq!(s.recent_from(inbox.id, Some(2)).await.unwrap(), 0, "the first session gets 1 and 2");
    assert_eq!(s.recent_from(inbox.id, Some(2)).await.unwrap(), 3, "the second gets none");
    s.append_message(inbox.id, b"Subject: 3\r\n\r\nx\r\n".to_vec(), vec![], 1000).await.unwrap();
    assert_eq!(s.recent_from(inbox.id, None).await.unwrap(), 3);
    assert_eq!(s.recent_from(inbox.id, Some(3)).await.unwrap(), 3, "3 goes to whoever claims it first");
    assert_eq!(s.recent_from(inbox.id, Some(1)).await.unwrap(), 4, "a claim below the mark leaves it");
    assert_eq!(s.recent_from(inbox.id, None).await.unwrap(), 4);
    assert_eq!(s.recent_from(inbox.id + 1000, Some(5)).await.unwrap(), u32::MAX, "no such mailbox");
    // Two sessions claiming at once never both get a message.
    s.append_message(inbox.id, b"Subject: 4\r\n\r\nx\r\n".to_vec(), vec![], 1000).await.unwrap();
    let (a, b) = tokio::join!(s.recent_from(inbox.id, Some(4)), s.recent_from(inbox.id, Some(4)));
    let mut got = [a.unwrap(), b.unwrap()];
    got.sort_unstable();
    assert_eq!(got, [4, 5], "one of them got 4, the other nothing");
}

pub async fn copy_and_move_give_new_uids_in_order<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let inbox = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    let archive = s.mailbox(ALICE, "Archive").await.unwrap().unwrap();
    for n in 0..3 {
        s.append_message(inbox.id, format!("Subject: {n}\r\n\r\n").into_bytes(), flags(&["$K"]), 1000).await.unwrap();
    }
    s.append_message(archive.id, b"Subject: a\r\n\r\n".to_vec(), vec![], 1000).await.unwrap();
    let pairs = s.copy_messages(inbox.id, vec![3, 1, 9], archive.id, false).await.unwrap();
    assert_eq!(pairs, [(1, 2), (3, 3)], "sorted by source UID; a missing UID is skipped");
    let copied = s.mailbox_messages(archive.id).await.unwrap();
    assert_eq!(copied[1].flags, flags(&["$K"]), "flags travel with a copy");
    assert_eq!(s.fetch_message(archive.id, 3).await.unwrap().unwrap(), b"Subject: 2\r\n\r\n");
    let many = s.fetch_messages(archive.id, vec![3, 1, 7], Part::Whole).await.unwrap();
    assert_eq!(many.iter().map(|m| m.0).collect::<Vec<_>>(), [1, 3], "UID order, only those that exist");
    assert_eq!(many[1].1, b"Subject: 2\r\n\r\n");
    let mut changes = s.mailbox_changes();
    let moved = s.copy_messages(inbox.id, vec![2], archive.id, true).await.unwrap();
    assert_eq!(moved, [(2, 4)]);
    let mut seen = vec![mailbox_changed(&mut changes).await, mailbox_changed(&mut changes).await];
    seen.sort();
    assert_eq!(seen, [inbox.id.min(archive.id), inbox.id.max(archive.id)], "both mailboxes changed");
    let left: Vec<u32> = s.mailbox_messages(inbox.id).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(left, [1, 3]);
}

/// Headers are read up to the first empty line without the rest: at the
/// edges of the reads (1 KiB, then 1+2, 1+2+4 KiB), with CRLF CRLF across
/// two reads, with no header at all, and with no empty line (the whole
/// message).
pub async fn header_reads_stop_at_the_empty_line<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let inbox = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    let field = |len: usize| format!("X-Pad: {}\r\n", "p".repeat(len - 9));
    let header_of = |total: usize| format!("Subject: s\r\n{}\r\n", field(total - 14));
    let mut cases: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for total in [1022, 1023, 1024, 1025, 1026, 3071, 3072, 3073, 3074, 7170, 7171, 7172, 20000] {
        let h = header_of(total);
        assert_eq!(h.len(), total);
        cases.push((format!("{h}body\r\n\r\nmore\r\n").into_bytes(), h.into_bytes()));
    }
    cases.push((b"\r\nonly a body\r\n".to_vec(), b"\r\n".to_vec()));
    let no_blank = format!("Subject: x\r\n{}", field(5000)).into_bytes();
    cases.push((no_blank.clone(), no_blank));
    cases.push((b"Subject: y\r\n\r\n".to_vec(), b"Subject: y\r\n\r\n".to_vec()));
    for (raw, _) in &cases {
        s.append_message(inbox.id, raw.clone(), vec![], 1000).await.unwrap();
    }
    let uids: Vec<u32> = (1..=cases.len() as u32).collect();
    let headers = s.fetch_messages(inbox.id, uids.clone(), Part::Header).await.unwrap();
    let whole = s.fetch_messages(inbox.id, uids, Part::Whole).await.unwrap();
    for (i, (raw, header)) in cases.iter().enumerate() {
        assert_eq!(whole[i].1, *raw);
        assert_eq!(headers[i].1.len(), header.len(), "case {i}");
        assert_eq!(headers[i].1, *header, "case {i}");
    }
}

pub async fn uidvalidity_comes_from_the_clock_and_never_goes_back<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let first = s.create_mailbox(ALICE, "Lists", None).await.unwrap();
    // The injected clock, not the system's; each of the user's six default
    // mailboxes, made at the same second, took the next value.
    assert_eq!(first.uidvalidity as i64, crate::fixture::T0 + 6, "{first:?}");
    // The clock goes back a day; a re-created mailbox still gets a greater one.
    f.clock.set(crate::fixture::T0 - 86_400);
    s.delete_mailbox(ALICE, "Lists").await.unwrap();
    let again = s.create_mailbox(ALICE, "Lists", None).await.unwrap();
    assert!(again.uidvalidity > first.uidvalidity);
}

pub async fn names_that_are_not_ascii_are_listed<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    s.create_mailbox(ALICE, "Entwürfe", None).await.unwrap();
    s.create_mailbox(ALICE, "Plain", None).await.unwrap();
    assert_eq!(s.non_ascii_mailboxes().await.unwrap(), [(ALICE.to_string(), "Entwürfe".to_string())]);
    let inbox = s.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    let (uid, _) = s.append_message(inbox.id, b"Subject: x\r\n\r\n".to_vec(), flags(&["\\seen"]), 5).await.unwrap();
    assert_eq!(s.mailbox(ALICE, "INBOX").await.unwrap().unwrap().unseen, 0, "flags are case-insensitive");
    let meta = &s.mailbox_messages(inbox.id).await.unwrap()[0];
    assert_eq!((meta.uid, meta.internal_date, meta.size), (uid, 5, 14));
    assert_eq!(meta.message_id.unix_ms() as i64 / 1000, crate::fixture::T0, "APPEND ids come from the clock");
    // Renaming a mailbox whose name is not ASCII takes its children along.
    s.create_mailbox(ALICE, "Entwürfe/2026", None).await.unwrap();
    s.rename_mailbox(ALICE, "Entwürfe", "Brouillons").await.unwrap();
    assert!(s.mailbox(ALICE, "Brouillons/2026").await.unwrap().is_some(), "the child moved");
    assert!(s.mailbox(ALICE, "Entwürfe/2026").await.unwrap().is_none());
}
