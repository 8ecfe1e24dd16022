//! The SQLite store against a real file: group commit, UID allocation and
//! repair of broken invariants from the data.

use facteur_store::sqlite::SqliteStore;
use facteur_store::{Lookup, MessageId, NewMessage, NewRecipient, Route, Store, StoredEnvelope};

fn msg(rcpts: &[(&str, bool)]) -> NewMessage {
    NewMessage {
        id: MessageId::new(1_700_000_000_000),
        received_at: 1_700_000_000,
        class: "interpersonal".into(),
        envelope: StoredEnvelope { mail_from: "a@remote.test".into(), ..Default::default() },
        recipients: rcpts
            .iter()
            .map(|(a, local)| NewRecipient {
                address: a.to_string(),
                notify: None,
                orcpt: None,
                route: if *local { Route::Local { user: a.to_string() } } else { Route::Remote },
            })
            .collect(),
        data: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
    }
}

async fn setup() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::create(&dir.path().join("facteur.db")).unwrap();
    store.add_domain("example.test").await.unwrap();
    store.add_user("alice@example.test", "h").await.unwrap();
    store.add_user("bob@example.test", "h").await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn users_domains_and_errors() {
    let (_d, s) = setup().await;
    assert!(s.add_user("carol@nowhere.test", "h").await.unwrap_err().to_string().contains("domain add nowhere.test"));
    assert!(s.add_user("alice@example.test", "h").await.unwrap_err().to_string().contains("already exists"));
    assert!(s.add_user("no-at-sign", "h").await.is_err());
    assert!(s.remove_domain("example.test").await.unwrap_err().to_string().contains("2 user(s)"));
    assert!(s.get_user("ALICE@Example.TEST").await.unwrap().is_some());
    assert!(s.is_local_domain("EXAMPLE.test").await.unwrap());
    assert_eq!(s.lookup_recipient("Alice@example.TEST").await.unwrap(), Lookup::LocalUser("alice@example.test".into()));
    assert_eq!(s.lookup_recipient("nobody@example.test").await.unwrap(), Lookup::UnknownUser);
    assert_eq!(s.lookup_recipient("alice@elsewhere.test").await.unwrap(), Lookup::Remote);
    s.remove_user("bob@example.test").await.unwrap();
    assert_eq!(s.list_users().await.unwrap().len(), 1);
    assert_eq!(s.list_domains().await.unwrap()[0].users, 1);
}

#[tokio::test]
async fn one_body_many_mailboxes_and_queue() {
    let (_d, s) = setup().await;
    let m = msg(&[("alice@example.test", true), ("bob@example.test", true), ("x@remote.test", false)]);
    let id = m.id.to_string();
    let placed = s.store_message(m).await.unwrap();
    assert_eq!(placed.len(), 2);
    assert!(placed.iter().all(|p| p.uid == 1));
    let q = s.queue_list().await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].id, id);
    assert_eq!(
        q[0].recipients.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(),
        ["delivered", "delivered", "queued"]
    );
    let body = s.fetch_message(placed[0].mailbox_id, 1).await.unwrap().unwrap();
    assert_eq!(body, b"Subject: hi\r\n\r\nbody\r\n");
    // Body stored once.
    let conn = rusqlite::Connection::open(s.path()).unwrap();
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM message_bodies", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn concurrent_stores_get_distinct_increasing_uids() {
    let (_d, s) = setup().await;
    let commits_before = s.commits();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.store_message(msg(&[("alice@example.test", true)])).await.unwrap() }));
    }
    let mut uids = Vec::new();
    for t in tasks {
        uids.push(t.await.unwrap()[0].uid);
    }
    uids.sort();
    assert_eq!(uids, (1..=200).collect::<Vec<_>>());
    // Group commit: 200 concurrent messages did not cost 200 fsyncs.
    let commits = s.commits() - commits_before;
    assert!(commits < 100, "{commits} commits for 200 concurrent messages");
    let mb = s.mailbox("alice@example.test", "INBOX").await.unwrap().unwrap();
    assert_eq!((mb.uidnext, mb.messages), (201, 200));
}

#[tokio::test]
async fn deleted_or_corrupted_counter_is_repaired_never_reused() {
    let (dir, s) = setup().await;
    for _ in 0..3 {
        s.store_message(msg(&[("alice@example.test", true)])).await.unwrap();
    }
    let db = dir.path().join("facteur.db");
    // A "faulty upgrade" deletes the INBOX counters.
    const INBOXES: &str = "mailbox_id IN (SELECT id FROM mailboxes WHERE name = 'INBOX')";
    rusqlite::Connection::open(&db).unwrap().execute(&format!("DELETE FROM uid_counters WHERE {INBOXES}"), []).unwrap();
    let report = s.check(false).await.unwrap();
    assert!(!report.healthy());
    assert!(report.findings.iter().any(|f| f.invariant == "uidnext-above-max-uid"));
    // Mail still flows, with a UID above every existing one.
    assert_eq!(s.store_message(msg(&[("alice@example.test", true)])).await.unwrap()[0].uid, 4);
    // Corrupt the counter backwards.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(&format!("UPDATE uid_counters SET uidnext = 2 WHERE {INBOXES}"), [])
        .unwrap();
    let report = s.check(true).await.unwrap();
    assert_eq!(report.findings.iter().filter(|f| f.severity == "repaired").count(), 2, "{report:?}");
    assert!(s.check(false).await.unwrap().healthy());
    assert_eq!(s.store_message(msg(&[("alice@example.test", true)])).await.unwrap()[0].uid, 5);
}

#[tokio::test]
async fn reopen_keeps_data_and_uidvalidity() {
    let (dir, s) = setup().await;
    s.store_message(msg(&[("alice@example.test", true)])).await.unwrap();
    let before = s.list_mailboxes("alice@example.test").await.unwrap();
    drop(s);
    let s = SqliteStore::open(&dir.path().join("facteur.db")).unwrap();
    assert_eq!(s.list_mailboxes("alice@example.test").await.unwrap(), before);
    assert!(s.check(false).await.unwrap().healthy());
}

/// A missing or empty database file is not silently made into a new, empty
/// server: open refuses it, create makes one (and refuses an existing one).
#[test]
fn a_missing_or_empty_database_is_refused_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("facteur.db");
    let e = SqliteStore::open(&path).err().expect("a missing database opened");
    assert!(e.to_string().contains("no database at"), "{e}");
    assert!(!path.exists(), "open made a file");
    std::fs::write(&path, b"").unwrap();
    let e = SqliteStore::open(&path).err().expect("an empty database opened");
    assert!(e.to_string().contains("is empty (0 octets)"), "{e}");
    let s = SqliteStore::create(&path).unwrap();
    drop(s);
    assert!(SqliteStore::open(&path).is_ok());
    let e = SqliteStore::create(&path).err().expect("create over a database");
    assert!(matches!(e, facteur_store::StoreError::Exists(_)), "{e}");
}
