//! Two handles on the same data at once, as two nodes (or a node and the
//! CLI) would be: UIDs stay distinct and increasing, and a recipient is
//! leased to one claimer only.

use std::collections::HashSet;

use facteur_store::{ClaimFilter, NewMessage, NewRecipient, Route, StoredEnvelope, prelude::*};

use crate::fixture::Fixture;

fn message(n: u64, recipients: Vec<NewRecipient>) -> NewMessage {
    NewMessage {
        hold: false,
        id: MessageId::new(1_700_000_000_000 + n),
        received_at: 1_700_000_000,
        class: Class::Interpersonal,
        envelope: StoredEnvelope { mail_from: "a@remote.test".into(), ..Default::default() },
        recipients,
        data: format!("Subject: {n}\r\n\r\nbody\r\n").into_bytes(),
    }
}

pub async fn two_writers_allocate_distinct_increasing_uids<S: Store>(f: Fixture<S>) {
    let a = f.store;
    a.add_domain("example.test").await.unwrap();
    a.add_user("alice@example.test", "h").await.unwrap();
    let b = (f.another)();
    let local = || {
        vec![NewRecipient {
            address: "alice@example.test".into(),
            notify: None,
            orcpt: None,
            route: Route::inbox("alice@example.test"),
        }]
    };
    let mut tasks = Vec::new();
    for n in 0..200u64 {
        let s = if n % 2 == 0 { a.clone() } else { b.clone() };
        let m = message(n, local());
        tasks.push(tokio::spawn(async move { s.store_message(m).await.unwrap()[0].uid }));
    }
    let mut uids = Vec::new();
    for t in tasks {
        uids.push(t.await.unwrap());
    }
    uids.sort();
    assert_eq!(uids, (1..=200).collect::<Vec<_>>(), "every UID once");
    let inbox = a.mailbox("alice@example.test", "INBOX").await.unwrap().unwrap();
    assert_eq!((inbox.uidnext, inbox.messages), (201, 200));
    let listed: Vec<u32> = a.mailbox_messages(inbox.id).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(listed, (1..=200).collect::<Vec<_>>());
    assert!(a.check(false).await.unwrap().healthy());
}

pub async fn two_claimers_never_lease_one_recipient_twice<S: Store>(f: Fixture<S>) {
    let a = f.store;
    let b = (f.another)();
    let mut expected = HashSet::new();
    for n in 0..100u64 {
        let rcpts: Vec<NewRecipient> = ["one.test", "two.test", "three.test"]
            .iter()
            .map(|d| NewRecipient { address: format!("r{n}@{d}"), notify: None, orcpt: None, route: Route::Remote })
            .collect();
        for r in &rcpts {
            expected.insert(r.address.clone());
        }
        a.store_message(message(n, rcpts)).await.unwrap();
    }
    let claimer = |s: S| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let jobs = s.claim_due(i64::MAX / 2, i64::MAX / 2 + 600, 7, ClaimFilter::default()).await.unwrap();
                if jobs.is_empty() {
                    break got;
                }
                got.extend(jobs.into_iter().flat_map(|j| j.recipients.into_iter().map(|r| r.address)));
            }
        })
    };
    let (x, y) = (claimer(a.clone()), claimer(b));
    let (x, y) = (x.await.unwrap(), y.await.unwrap());
    let mut seen = HashSet::new();
    for r in x.iter().chain(&y) {
        assert!(seen.insert(r.clone()), "{r} leased twice");
    }
    assert_eq!(seen, expected, "every recipient leased");
}

/// Many sessions accepting relayed mail at once (they share commits on
/// backends that group them): every message is stored, once.
pub async fn many_acceptances_at_once_are_each_stored_once<S: Store>(f: Fixture<S>) {
    let s = f.store;
    let mut tasks = Vec::new();
    for n in 0..300u64 {
        let s = s.clone();
        let rcpts = (0..1 + n % 3)
            .map(|i| NewRecipient {
                address: format!("r{n}.{i}@far.test"),
                notify: None,
                orcpt: None,
                route: Route::Remote,
            })
            .collect();
        tasks.push(tokio::spawn(async move { s.store_message(message(n, rcpts)).await.unwrap() }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_empty(), "no local placement");
    }
    let queued = s.queue_list().await.unwrap();
    assert_eq!(queued.len(), 300);
    let recipients: usize = queued.iter().map(|m| m.recipients.len()).sum();
    assert_eq!(recipients, (0..300).map(|n| 1 + n % 3).sum::<usize>());
    let stats = s.queue_stats(i64::MAX, false).await.unwrap();
    assert_eq!(stats.iter().map(|x| x.queued).sum::<u64>() as usize, recipients);
    for m in queued.iter().take(5) {
        let body = s.message_body(m.id).await.unwrap().unwrap();
        assert!(body.starts_with(b"Subject: "), "each body with its message");
    }
}
