//! The whole server on PostgreSQL (a schema of the test's own at
//! 127.0.0.1:5432, database `test`): mail in over SMTP, out over IMAP and
//! POP3's store, the queue and the checks, and the refusal to serve from a
//! database nobody initialised.

mod common;

use common::{Client, Lines, PASSWORD, PgSchema, TestServer, provision, test_config};
use facteur_store::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_in_over_smtp_out_over_imap_on_postgres() {
    let pg = PgSchema::new();
    let mut config = test_config();
    pg.configure(&mut config);
    // Loopback, and this test is about storage: no TLS for the IMAP part.
    config.imap.plaintext_auth = true;
    let s = TestServer::start_with(config).await;
    assert_eq!(s.store().kind(), "postgres");

    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let r = c
        .send_mail(
            "someone@remote.test",
            &["alice@example.test", "bob@example.test"],
            "Subject: on postgres\r\n\r\nstored in PostgreSQL",
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    let id = r.queued_id();
    for user in ["alice@example.test", "bob@example.test"] {
        let inbox = s.inbox(user).await;
        assert_eq!(inbox.len(), 1, "{user}");
        assert!(inbox[0].contains("stored in PostgreSQL") && inbox[0].contains(&id.to_string()));
    }

    // A remote recipient waits in the shared queue.
    let mut sub = Client::connect_tls(s.submissions).await;
    sub.ehlo().await;
    sub.auth_plain("alice@example.test", PASSWORD).await;
    let r = sub
        .send_mail("alice@example.test", &["far@remote.test"], "From: <alice@example.test>\r\nSubject: out\r\n\r\nx")
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    let q = s.store().queue_list().await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].id, q[0].recipients[0].state), (r.queued_id(), RecipientStatus::Queued));

    // IMAP reads what SMTP stored.
    let mut imap = Lines::connect(s.imap).await;
    assert!(imap.line().await.starts_with("* OK"));
    imap.send(format!("a LOGIN alice@example.test {PASSWORD}\r\n").as_bytes()).await;
    assert!(imap.until("a ").await.last().unwrap().starts_with("a OK"));
    imap.send(b"b SELECT INBOX\r\n").await;
    let selected = imap.until("b ").await;
    assert!(selected.iter().any(|l| l == "* 1 EXISTS"), "{selected:?}");
    imap.send(b"c UID FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n").await;
    let fetched = imap.until("c ").await;
    assert!(fetched.iter().any(|l| l == "Subject: on postgres"), "{fetched:?}");
    assert!(fetched.last().unwrap().starts_with("c OK"), "{fetched:?}");

    let report = s.store().check(false).await.unwrap();
    assert!(report.healthy(), "{report:?}");
    assert_eq!(report.schema_version, facteur_store::postgres::latest_version());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninitialised_database_is_refused_not_made_into_a_new_server() {
    let pg = PgSchema::new();
    let mut config = test_config();
    pg.configure(&mut config);
    let dir = tempfile::tempdir().unwrap();
    let e = facteur::serve::start(config.clone(), dir.path()).await.err().expect("served from nothing");
    let text = format!("{e:#}");
    assert!(text.contains("no facteur database") && text.contains("init"), "{text}");
    // `init` makes it; a second `init` refuses.
    provision(dir.path(), &config).await;
    let e = facteur::serve::init_store(&config, dir.path()).await.err().expect("init twice");
    assert!(format!("{e:#}").contains("already holds a facteur database"), "{e:#}");
    let running = facteur::serve::start(config, dir.path()).await.unwrap();
    assert_eq!(running.store.list_users().await.unwrap().len(), 2);
    running.shutdown().await;
}
