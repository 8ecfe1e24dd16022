//! Quotas over real SMTP and through the binary: RCPT and DATA at and past
//! the limit (`452 4.2.2`), the message-count limit, an alias with one full
//! member, the warning past 90 %, the defaults for new users, and removing
//! a user who still has mail.

mod common;

use std::process::{Command, Stdio};

use common::{Client, TestServer, test_config};
use facteur_store::FlagOp;
use facteur_store::prelude::*;

const ALICE: &str = "alice@example.test";

async fn session(s: &TestServer) -> Client {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c
}

/// Deliver one message of about `body` octets to alice; its reply.
async fn deliver(s: &TestServer, body: usize) -> common::Reply {
    let mut c = session(s).await;
    c.send_mail("carol@sender.test", &[ALICE], &format!("Subject: q\r\n\r\n{}", "x".repeat(body))).await
}

/// RCPT to alice: the reply code.
async fn rcpt(s: &TestServer) -> u16 {
    let mut c = session(s).await;
    c.ok("MAIL FROM:<carol@sender.test>", 250).await;
    c.cmd(&format!("RCPT TO:<{ALICE}>")).await.code
}

#[tokio::test]
async fn rcpt_and_data_refuse_what_does_not_fit_at_and_past_the_edge() {
    // No warning message: it would take room of its own.
    let mut config = test_config();
    config.quota.warn_percent = 0;
    let s = TestServer::start_with(config).await;
    let store = s.store();
    assert_eq!(deliver(&s, 100).await.code, 250);
    let used = store.quota(ALICE).await.unwrap().unwrap().used_bytes;
    assert!(used > 100, "usage counts what is stored: {used}");

    // A limit exactly one more message of this size away: it fits.
    let one = used;
    store.set_quota(ALICE, Some(used + one), None).await.unwrap();
    assert_eq!(deliver(&s, 100).await.code, 250, "at the edge");
    let q = store.quota(ALICE).await.unwrap().unwrap();
    assert_eq!(q.used_bytes, used + one);
    assert_eq!(q.used_messages, 2);
    // Full: RCPT says so (the sender retries later), with and without SIZE.
    let mut c = session(&s).await;
    c.ok("MAIL FROM:<carol@sender.test>", 250).await;
    let r = c.cmd(&format!("RCPT TO:<{ALICE}>")).await;
    assert_eq!(r.code, 452, "{}", r.text());
    assert!(r.text().starts_with("4.2.2"), "{}", r.text());
    // Room for a small message, but not for the SIZE declared.
    store.set_quota(ALICE, Some(used + one + 50), None).await.unwrap();
    let mut c = session(&s).await;
    c.ok("MAIL FROM:<carol@sender.test> SIZE=5000", 250).await;
    assert_eq!(c.cmd(&format!("RCPT TO:<{ALICE}>")).await.code, 452);
    // Without SIZE, RCPT passes and DATA finds out.
    let r = deliver(&s, 100).await;
    assert_eq!(r.code, 452, "{}", r.text());
    assert!(r.text().starts_with("4.2.2"), "{}", r.text());
    assert_eq!(store.quota(ALICE).await.unwrap().unwrap().used_messages, 2, "nothing stored past the limit");
    // Expunging makes room again.
    store.set_quota(ALICE, None, Some(2)).await.unwrap();
    assert_eq!(rcpt(&s).await, 452, "the message count at its edge");
    let inbox = store.list_mailboxes(ALICE).await.unwrap().into_iter().find(|m| m.name == "INBOX").unwrap();
    store.store_flags(inbox.id, vec![1], FlagOp::Add, vec!["\\Deleted".into()], None).await.unwrap();
    store.expunge(inbox.id, None).await.unwrap();
    assert_eq!(store.quota(ALICE).await.unwrap().unwrap().used_messages, 1);
    assert_eq!(deliver(&s, 10).await.code, 250);
}

#[tokio::test]
async fn an_alias_with_a_full_member_still_delivers_to_the_others() {
    let s = TestServer::start().await;
    let store = s.store();
    store.add_alias("team@example.test", ALICE).await.unwrap();
    store.add_alias("team@example.test", "bob@example.test").await.unwrap();
    store.set_quota(ALICE, Some(1), None).await.unwrap();
    let mut c = session(&s).await;
    let r = c.send_mail("carol@sender.test", &["team@example.test"], "Subject: team\r\n\r\nhi").await;
    assert_eq!(r.code, 250, "{}", r.text());
    assert_eq!(s.inbox("bob@example.test").await.len(), 1);
}

#[tokio::test]
async fn a_user_past_the_warning_share_is_told_once() {
    let s = TestServer::start().await;
    let store = s.store();
    store.set_quota(ALICE, None, Some(10)).await.unwrap();
    for i in 0..8 {
        assert_eq!(deliver(&s, 10).await.code, 250, "message {i}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.inbox(ALICE).await.len(), 8, "no warning at 80 %");
    assert_eq!(deliver(&s, 10).await.code, 250);
    let mut warned = Vec::new();
    for _ in 0..50 {
        warned = s.inbox(ALICE).await.into_iter().filter(|m| m.contains("Subject: Your mailbox is")).collect();
        if !warned.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(warned.len(), 1, "one warning at 90 %");
    assert!(
        warned[0].contains("Auto-Submitted: auto-generated") && warned[0].contains("9 of 10 messages"),
        "{}",
        warned[0]
    );
    assert!(store.quota(ALICE).await.unwrap().unwrap().warned);
    // The warning took the last place: full now, and not warned again.
    assert_eq!(rcpt(&s).await, 452);
    assert_eq!(s.inbox(ALICE).await.len(), 10);
}

fn facteur(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_facteur"))
        .arg("--data")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A password for --password-stdin; not a terminal, so nothing is asked.
    let _ = child.stdin.take().unwrap().write_all(b"a-password\n");
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn the_quota_command_new_users_defaults_and_a_safe_remove() {
    let s = TestServer::start_with(test_config()).await;
    let d = s.dir.path();
    let (code, out, err) = facteur(d, &["user", "quota", ALICE, "--bytes", "10M", "--messages", "500"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 of 10485760 octets") && out.contains("0 of 500 messages"), "{out}");
    let (_, out, _) = facteur(d, &["user", "quota", ALICE, "--messages", "none"]);
    assert!(out.contains("messages (no limit)") && out.contains("of 10485760 octets"), "{out}");
    let (code, _, err) = facteur(d, &["user", "quota", ALICE, "--bytes", "10X"]);
    assert_eq!(code, 2);
    assert!(err.contains("10X"), "{err}");
    let (code, _, err) = facteur(d, &["user", "quota", "zed@example.test"]);
    assert_eq!(code, 1);
    assert!(err.contains("no user zed@example.test"), "{err}");

    // New users get [quota]'s defaults.
    std::fs::write(d.join("facteur.toml"), "[quota]\ndefault_bytes = 2048\n").unwrap();
    let (code, out, err) = facteur(d, &["user", "add", "carol@example.test", "--password-stdin"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 of 2048 octets"), "{out}");
    std::fs::remove_file(d.join("facteur.toml")).unwrap();

    // Removing a user with mail asks first, and says what goes.
    assert_eq!(deliver(&s, 10).await.code, 250);
    let (code, _, err) = facteur(d, &["user", "remove", ALICE]);
    assert_eq!(code, 1);
    assert!(err.contains("1 message(s) in 6 mailbox(es)") && err.contains("--yes"), "{err}");
    assert!(s.store().get_user(ALICE).await.unwrap().is_some());
    let (code, out, err) = facteur(d, &["user", "remove", ALICE, "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed with 6 mailbox(es) and 1 message(s)"), "{out}");
    // A user without mail goes without a question.
    let (code, _, err) = facteur(d, &["user", "remove", "bob@example.test"]);
    assert_eq!(code, 0, "{err}");
}
