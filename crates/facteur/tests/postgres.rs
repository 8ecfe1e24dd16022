//! The whole server on PostgreSQL (a schema of the test's own at
//! 127.0.0.1:5432, database `test`): mail in over SMTP, out over IMAP and
//! POP3's store, the queue and the checks, and the refusal to serve from a
//! database nobody initialised.

mod common;

use common::{Client, Lines, PASSWORD, PgSchema, PrivatePg, TestServer, provision, test_config};
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

/// One message to alice in a session of its own: `Ok(id)` once acknowledged
/// (250), `Err(code)` when a step was deferred (4xx). A 5xx, a hang or a
/// dropped session fails the test: while storage is away, the door says
/// "later", never "no".
async fn try_send(addr: std::net::SocketAddr, n: usize) -> Result<facteur_store::MessageId, u16> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = Client::from_stream(Box::new(stream));
    let check = |step: &str, r: &common::Reply, want: u16| -> Result<(), u16> {
        match r.code {
            code if code == want => Ok(()),
            code @ 400..=499 => Err(code),
            code => panic!("{step} got {code} {:?}: storage away must mean 4xx", r.lines),
        }
    };
    check("greeting", &c.reply().await, 220)?;
    for (line, want) in [
        ("EHLO client.test", 250),
        ("MAIL FROM:<s@remote.test>", 250),
        ("RCPT TO:<alice@example.test>", 250),
        ("DATA", 354),
    ] {
        let r = c.cmd(line).await;
        check(line, &r, want)?;
    }
    c.send_raw(format!("Subject: restart {n}\r\n\r\nmessage {n}\r\n.\r\n").as_bytes()).await;
    let r = c.reply().await;
    check("end of DATA", &r, 250)?;
    Ok(r.queued_id())
}

/// PostgreSQL restarted under load (docs/cluster.md): while it is down,
/// every message gets a 4xx (never a 5xx, never a 250 that is then lost)
/// and /readyz says 503; once it is back the same node, not restarted,
/// takes mail again, and every acknowledged message is in the mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_load_loses_nothing_and_the_node_recovers() {
    let pg = PrivatePg::start();
    let mut config = test_config();
    config.storage.backend = facteur::config::Backend::Postgres;
    config.storage.url = pg.url();
    config.storage.pool_size = 8;
    config.storage.probe_interval_secs = 1;
    config.storage.probe_timeout_secs = 2;
    let s = TestServer::start_with(config).await;
    let smtp = s.smtp;
    let sender = tokio::spawn(async move {
        let (mut acked, mut deferred) = (Vec::new(), Vec::new());
        let start = std::time::Instant::now();
        let mut n = 0;
        while start.elapsed() < std::time::Duration::from_secs(20) && n < 20_000 {
            n += 1;
            let at = start.elapsed();
            match try_send(smtp, n).await {
                Ok(id) => acked.push((at, id)),
                Err(code) => {
                    deferred.push((at, code));
                    // A sender told "later" waits a moment before trying again.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
        (acked, deferred)
    });
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    pg.down();
    let down_at = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (code, body) = common::http_get(s.http, "/readyz").await;
    assert_eq!(code, 503, "not ready while the database is away: {body}");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    pg.up();
    let outage = down_at.elapsed();
    let (acked, deferred) = sender.await.unwrap();
    assert!(!deferred.is_empty(), "no message met the outage");
    assert!(deferred.iter().all(|(_, code)| *code == 421 || *code == 451), "{deferred:?}");
    let last_deferred = deferred.iter().map(|d| d.0).max().unwrap();
    let after: Vec<_> = acked.iter().filter(|a| a.0 > last_deferred).collect();
    assert!(
        after.len() >= 10,
        "mail is taken again after the restart ({} acknowledged after the last 4xx; outage {outage:?}; last 4xx at {last_deferred:?})",
        after.len(),
    );
    // Back within 10 s of the database (not counting the outage itself).
    assert!(
        last_deferred < std::time::Duration::from_secs(4) + outage + std::time::Duration::from_secs(10),
        "{last_deferred:?}"
    );
    let inbox = s.inbox("alice@example.test").await.join("\n");
    let lost: Vec<_> = acked.iter().filter(|(_, id)| !inbox.contains(&id.to_string())).collect();
    assert!(lost.is_empty(), "{} acknowledged message(s) missing: {lost:?}", lost.len());
    // Ready again, and the storage is whole.
    let t = std::time::Instant::now();
    while common::http_get(s.http, "/readyz").await.0 != 200 {
        assert!(t.elapsed() < std::time::Duration::from_secs(15), "/readyz stays 503 after the restart");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(s.store().check(false).await.unwrap().healthy());
    eprintln!(
        "{} acknowledged, {} deferred during a {outage:?} restart; the last 4xx {:?} after the database was back",
        acked.len(),
        deferred.len(),
        last_deferred.saturating_sub(std::time::Duration::from_secs(4) + outage)
    );
}
