//! The checks of storage itself, operator controls, and the write probe.

use facteur_store::{ControlKey, NewMessage, NewRecipient, Route, Severity, StoredEnvelope, prelude::*};

use crate::fixture::Fixture;

fn to_alice(n: u64) -> NewMessage {
    NewMessage {
        hold: false,
        id: MessageId::new(1_700_000_000_000 + n),
        received_at: 1_700_000_000,
        class: Class::Interpersonal,
        envelope: StoredEnvelope { mail_from: "a@remote.test".into(), ..Default::default() },
        recipients: vec![NewRecipient {
            address: "alice@example.test".into(),
            notify: None,
            orcpt: None,
            route: Route::inbox("alice@example.test"),
        }],
        data: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
    }
}

pub async fn a_broken_uid_counter_is_reported_repaired_and_never_reused<S: Store>(f: Fixture<S>) {
    let s = f.store;
    s.add_domain("example.test").await.unwrap();
    s.add_user("alice@example.test", "h").await.unwrap();
    assert!(s.check(false).await.unwrap().healthy());
    for n in 0..3 {
        s.store_message(to_alice(n)).await.unwrap();
    }
    let inbox = s.mailbox("alice@example.test", "INBOX").await.unwrap().unwrap();
    // A "faulty upgrade" deletes the counter.
    f.faults.drop_uid_counter(inbox.id);
    let report = s.check(false).await.unwrap();
    assert!(!report.healthy());
    assert!(report.findings.iter().any(|x| x.invariant == "uidnext-above-max-uid" && x.severity == Severity::Error));
    // Mail still flows, with a UID above every existing one.
    assert_eq!(s.store_message(to_alice(3)).await.unwrap()[0].uid, 4);
    // The counter moved backwards: repaired from the data.
    f.faults.set_uid_counter(inbox.id, 2);
    let report = s.check(true).await.unwrap();
    assert!(report.healthy(), "{report:?}");
    assert!(report.findings.iter().any(|x| x.severity == Severity::Repaired), "{report:?}");
    assert!(s.check(false).await.unwrap().healthy());
    assert_eq!(s.store_message(to_alice(4)).await.unwrap()[0].uid, 5);
    assert_eq!((report.mailboxes, report.messages), (6, 4));
}

pub async fn controls_are_kept_and_audited<S: Store>(f: Fixture<S>) {
    let s = f.store;
    let pause = ControlKey::pause(Some("gmail.com".into()), Some(Class::Bulk)).unwrap();
    let rate = ControlKey::Rate { destination: None };
    s.set_control(&pause, Some("1"), 10, "root").await.unwrap();
    s.set_control(&rate, Some("50"), 11, "ops").await.unwrap();
    s.set_control(&rate, Some("25"), 12, "ops").await.unwrap();
    let got = s.controls().await.unwrap();
    assert_eq!(got.len(), 2);
    let r = got.iter().find(|c| c.key == rate).unwrap();
    assert_eq!((r.value.as_str(), r.set_at, r.actor.as_str()), ("25", 12, "ops"));
    s.set_control(&pause, None, 13, "root").await.unwrap();
    assert_eq!(s.controls().await.unwrap().iter().map(|c| c.key.clone()).collect::<Vec<_>>(), [rate]);
    let log = s.audit_log(None).await.unwrap();
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|a| a.action == "control"));
    assert!(log[0].detail.contains("pause:dest:gmail.com:class:bulk"), "{:?}", log[0]);
}

pub async fn the_write_probe_writes<S: Store>(f: Fixture<S>) {
    f.store.write_probe(1).await.unwrap();
    f.store.write_probe(2).await.unwrap();
}
