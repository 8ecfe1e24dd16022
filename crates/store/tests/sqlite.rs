//! What only the SQLite backend has: group commit, one body on disk for
//! many mailboxes, reopening a file, and refusing a missing or empty one.
//! (The contract itself is tested on every backend by `conformance/`.)

use facteur_store::sqlite::SqliteStore;
use facteur_store::{NewMessage, NewRecipient, Route, StoredEnvelope, prelude::*};

fn msg(rcpts: &[(&str, bool)]) -> NewMessage {
    NewMessage {
        hold: false,
        id: MessageId::new(1_700_000_000_000),
        received_at: 1_700_000_000,
        class: Class::Interpersonal,
        envelope: StoredEnvelope { mail_from: "a@remote.test".into(), ..Default::default() },
        recipients: rcpts
            .iter()
            .map(|(a, local)| NewRecipient {
                address: a.to_string(),
                notify: None,
                orcpt: None,
                route: if *local { Route::inbox(a.to_string()) } else { Route::Remote },
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
async fn one_body_on_disk_for_many_mailboxes_and_the_queue() {
    let (_d, s) = setup().await;
    let m = msg(&[("alice@example.test", true), ("bob@example.test", true), ("x@remote.test", false)]);
    assert_eq!(s.store_message(m).await.unwrap().len(), 2);
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
