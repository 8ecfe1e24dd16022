//! Domains, users, credentials and sender grants.

use facteur_store::{Lookup, StoreError, prelude::*};

use crate::fixture::Fixture;

pub async fn users_domains_and_errors<S: Store>(f: Fixture<S>) {
    let s = f.store;
    s.add_domain("Example.TEST").await.unwrap();
    assert!(matches!(s.add_domain("example.test").await, Err(StoreError::Exists(_))));
    for bad in ["", "a@b.test", "a b.test"] {
        assert!(matches!(s.add_domain(bad).await, Err(StoreError::Invalid(_))), "{bad:?}");
    }
    s.add_user("alice@example.test", "h").await.unwrap();
    s.add_user("bob@example.test", "h").await.unwrap();
    assert!(s.add_user("carol@nowhere.test", "h").await.unwrap_err().to_string().contains("domain add nowhere.test"));
    assert!(matches!(s.add_user("alice@example.test", "h").await, Err(StoreError::Exists(_))));
    assert!(matches!(s.add_user("no-at-sign", "h").await, Err(StoreError::Invalid(_))));
    assert!(s.remove_domain("example.test").await.unwrap_err().to_string().contains("2 user(s)"));
    let alice = s.get_user("ALICE@Example.TEST").await.unwrap().unwrap();
    assert_eq!(
        (alice.address.as_str(), alice.password_hash.as_str(), alice.created_at),
        ("alice@example.test", "h", f.clock.now())
    );
    s.set_password("alice@example.test", "h2").await.unwrap();
    assert_eq!(s.get_user("alice@example.test").await.unwrap().unwrap().password_hash, "h2");
    assert!(matches!(s.set_password("zed@example.test", "h").await, Err(StoreError::NotFound(_))));
    assert!(s.is_local_domain("EXAMPLE.test").await.unwrap());
    assert!(!s.is_local_domain("elsewhere.test").await.unwrap());
    assert_eq!(s.lookup_recipient("Alice@example.TEST").await.unwrap(), Lookup::LocalUser("alice@example.test".into()));
    assert_eq!(s.lookup_recipient("nobody@example.test").await.unwrap(), Lookup::UnknownUser);
    assert_eq!(s.lookup_recipient("alice@elsewhere.test").await.unwrap(), Lookup::Remote);
    s.remove_user("bob@example.test").await.unwrap();
    assert!(matches!(s.remove_user("bob@example.test").await, Err(StoreError::NotFound(_))));
    assert!(s.list_mailboxes("bob@example.test").await.unwrap().is_empty(), "mailboxes go with the user");
    assert_eq!(s.list_users().await.unwrap().len(), 1);
    assert_eq!(s.list_domains().await.unwrap()[0].users, 1);
    s.remove_user("alice@example.test").await.unwrap();
    s.remove_domain("example.test").await.unwrap();
    assert!(s.list_domains().await.unwrap().is_empty());
    assert!(matches!(s.remove_domain("example.test").await, Err(StoreError::NotFound(_))));
}

pub async fn sender_grants_belong_to_a_user<S: Store>(f: Fixture<S>) {
    let s = f.store;
    s.add_domain("example.test").await.unwrap();
    s.add_user("alice@example.test", "h").await.unwrap();
    s.grant_sender("alice@example.test", "Sales@Example.test").await.unwrap();
    s.grant_sender("alice@example.test", "@alias.test").await.unwrap();
    assert!(matches!(s.grant_sender("alice@example.test", "sales@example.test").await, Err(StoreError::Exists(_))));
    assert!(matches!(s.grant_sender("zed@example.test", "x@example.test").await, Err(StoreError::NotFound(_))));
    for bad in ["@", "nobody", "a b@c.test"] {
        assert!(matches!(s.grant_sender("alice@example.test", bad).await, Err(StoreError::Invalid(_))), "{bad:?}");
    }
    assert_eq!(s.sender_grants("ALICE@example.test").await.unwrap(), ["@alias.test", "sales@example.test"]);
    s.revoke_sender("alice@example.test", "SALES@example.test").await.unwrap();
    assert!(matches!(s.revoke_sender("alice@example.test", "sales@example.test").await, Err(StoreError::NotFound(_))));
    // The clock stands still, so these UIDVALIDITYs run ahead of it.
    let mut highest = 0;
    for name in ["a", "b", "c"] {
        highest = highest.max(s.create_mailbox("alice@example.test", name, None).await.unwrap().uidvalidity);
    }
    s.remove_user("alice@example.test").await.unwrap();
    s.add_user("alice@example.test", "h").await.unwrap();
    assert!(s.sender_grants("alice@example.test").await.unwrap().is_empty(), "grants go with the user");
    // RFC 9051 §2.3.1.1: the account made again starts above the old one.
    let again = s.create_mailbox("alice@example.test", "c", None).await.unwrap();
    assert!(again.uidvalidity > highest, "{} after {highest}", again.uidvalidity);
}

pub async fn aliases_and_secrets<S: Store>(f: Fixture<S>) {
    let s = f.store;
    s.add_domain("example.test").await.unwrap();
    s.add_user("alice@example.test", "h").await.unwrap();
    s.add_alias("Team@Example.test", "alice@example.test").await.unwrap();
    s.add_alias("team@example.test", "Carol@Far.test").await.unwrap();
    s.add_alias("@example.test", "alice@example.test").await.unwrap();
    assert!(matches!(s.add_alias("team@example.test", "carol@far.test").await, Err(StoreError::Exists(_))));
    assert!(matches!(s.add_alias("team@nowhere.test", "x@far.test").await, Err(StoreError::NotFound(_))));
    for bad in ["two words@far.test", "nobody", "a@b.test,c@d.test"] {
        assert!(matches!(s.add_alias("team@example.test", bad).await, Err(StoreError::Invalid(_))), "{bad:?}");
    }
    assert!(matches!(s.add_alias("no-at-sign", "x@far.test").await, Err(StoreError::Invalid(_))));
    // An alias comes before a user of the same address.
    s.add_alias("alice@example.test", "alice@example.test").await.unwrap();
    assert_eq!(
        s.lookup_recipient("TEAM@example.test").await.unwrap(),
        Lookup::Alias(vec!["alice@example.test".into(), "carol@far.test".into()])
    );
    assert_eq!(
        s.lookup_recipient("alice@example.test").await.unwrap(),
        Lookup::Alias(vec!["alice@example.test".into()])
    );
    assert_eq!(s.alias_targets("@example.test").await.unwrap(), ["alice@example.test"]);
    assert!(s.alias_targets("nobody@example.test").await.unwrap().is_empty());
    assert_eq!(s.list_aliases().await.unwrap().len(), 4);
    assert!(s.remove_domain("example.test").await.unwrap_err().to_string().contains("user(s)"));
    assert_eq!(s.remove_alias("team@example.test", Some("CAROL@far.test")).await.unwrap(), 1);
    assert!(matches!(s.remove_alias("team@example.test", Some("carol@far.test")).await, Err(StoreError::NotFound(_))));
    assert_eq!(s.remove_alias("alice@example.test", None).await.unwrap(), 1);
    assert_eq!(s.lookup_recipient("alice@example.test").await.unwrap(), Lookup::LocalUser("alice@example.test".into()));
    s.remove_user("alice@example.test").await.unwrap();
    assert!(s.remove_domain("example.test").await.unwrap_err().to_string().contains("2 alias target(s)"));
    s.remove_alias("team@example.test", None).await.unwrap();
    s.remove_alias("@example.test", None).await.unwrap();
    s.remove_domain("example.test").await.unwrap();
    // A secret is made once and then always the same.
    let a = s.secret("srs").await.unwrap();
    assert_eq!(a.len(), 64);
    assert_eq!(s.secret("srs").await.unwrap(), a);
    assert_ne!(s.secret("other").await.unwrap(), a);
}

pub async fn quotas_count_every_mailbox<S: Store>(f: Fixture<S>) {
    use facteur_store::{FlagOp, NewMessage, NewRecipient, Route, StoredEnvelope};
    let s = f.store;
    s.add_domain("example.test").await.unwrap();
    s.add_user("alice@example.test", "h").await.unwrap();
    let q = s.quota("alice@example.test").await.unwrap().unwrap();
    assert_eq!((q.limit_bytes, q.limit_messages, q.used_bytes, q.used_messages, q.warned), (None, None, 0, 0, false));
    assert!(s.quota("zed@example.test").await.unwrap().is_none());
    assert!(matches!(s.set_quota("zed@example.test", Some(1), None).await, Err(StoreError::NotFound(_))));
    s.set_quota("ALICE@example.test", Some(1000), Some(3)).await.unwrap();
    let inbox = s.mailbox("alice@example.test", "INBOX").await.unwrap().unwrap();
    // Delivered, appended, copied: each counts at its size.
    let delivered = NewMessage {
        hold: false,
        id: MessageId::first_at(1_000_000),
        received_at: 1000,
        class: Class::Interpersonal,
        envelope: StoredEnvelope::default(),
        recipients: vec![NewRecipient {
            address: "alice@example.test".into(),
            notify: None,
            orcpt: None,
            route: Route::inbox("alice@example.test"),
        }],
        data: vec![b'x'; 100],
    };
    s.store_message(delivered).await.unwrap();
    s.append_message(inbox.id, vec![b'y'; 50], vec![], 1000).await.unwrap();
    let archive = s.mailbox("alice@example.test", "Archive").await.unwrap().unwrap();
    s.copy_messages(inbox.id, vec![1], archive.id, false).await.unwrap();
    let q = s.quota("alice@example.test").await.unwrap().unwrap();
    assert_eq!((q.used_bytes, q.used_messages), (250, 3));
    assert!(q.allows(750, 0) && !q.allows(751, 0) && !q.allows(0, 1));
    assert!((q.share() - 1.0).abs() < 1e-9, "the message limit is reached: {}", q.share());
    // Moving changes nothing; expunging and deleting a mailbox give room back.
    s.copy_messages(inbox.id, vec![2], archive.id, true).await.unwrap();
    assert_eq!(s.quota("alice@example.test").await.unwrap().unwrap().used_messages, 3);
    s.store_flags(inbox.id, vec![1], FlagOp::Add, vec!["\\Deleted".into()], None).await.unwrap();
    s.expunge(inbox.id, None).await.unwrap();
    let q = s.quota("alice@example.test").await.unwrap().unwrap();
    assert_eq!((q.used_bytes, q.used_messages), (150, 2));
    s.delete_mailbox("alice@example.test", "Archive").await.unwrap();
    let q = s.quota("alice@example.test").await.unwrap().unwrap();
    assert_eq!((q.used_bytes, q.used_messages), (0, 0));
    s.set_quota_warned("alice@example.test", true).await.unwrap();
    assert!(s.quota("alice@example.test").await.unwrap().unwrap().warned);
    s.set_quota("alice@example.test", None, None).await.unwrap();
    let q = s.quota("alice@example.test").await.unwrap().unwrap();
    assert_eq!((q.limit_bytes, q.limit_messages, q.share()), (None, None, 0.0));
}
