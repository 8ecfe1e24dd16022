//! Outbound limits per authenticated user, over real TCP: past its hourly
//! volume an account's mail to other domains is accepted but held (a
//! stolen password cannot flood), and the operator is told; recipients per
//! message beyond the account's limit get `452 4.5.3`.

mod common;

use common::{Client, PASSWORD, TestServer, test_config};
use facteur_store::prelude::*;
use facteur_types::RecipientStatus;

async fn submitting(server: &TestServer, user: &str) -> Client {
    let c = Client::connect(server.submission).await;
    let mut c = c.starttls().await;
    c.ehlo().await;
    assert_eq!(c.auth_plain(user, PASSWORD).await.code, 235);
    c
}

#[tokio::test]
async fn past_the_hourly_limit_an_accounts_mail_is_held_and_the_operator_told() {
    let mut config = test_config();
    config.smtp.max_messages_per_hour_per_user = 3;
    let server = TestServer::start_with(config).await;
    let mut c = submitting(&server, "alice@example.test").await;
    for i in 0..5 {
        let r = c.send_mail("alice@example.test", &["far@remote.test"], &format!("Subject: {i}\r\n\r\nx")).await;
        assert_eq!(r.code, 250, "the account is not told: {r:?}");
    }
    // Local mail is not what the limit is about: delivered.
    let r = c.send_mail("alice@example.test", &["bob@example.test"], "Subject: local\r\n\r\nx").await;
    assert_eq!(r.code, 250);
    assert_eq!(server.inbox("bob@example.test").await.len(), 1);

    let mut queue = server.store().queue_list().await.unwrap();
    queue.sort_by_key(|m| m.received_at);
    let states: Vec<RecipientStatus> = queue.iter().map(|m| m.recipients[0].state).collect();
    assert_eq!(states.iter().filter(|s| **s == RecipientStatus::Queued).count(), 3, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == RecipientStatus::Held).count(), 2, "{states:?}");
    let (_, metrics) = common::http_get(server.http, "/metrics").await;
    assert!(metrics.contains("facteur_smtp_messages_held_total{reason=\"user_hourly_limit\"} 2"), "{metrics}");
    assert!(metrics.contains("facteur_smtp_users_over_limit_total 1"), "told once: {metrics}");

    // Another account is not held back by alice's volume.
    let mut c = submitting(&server, "bob@example.test").await;
    let r = c.send_mail("bob@example.test", &["far@remote.test"], "Subject: bob\r\n\r\nx").await;
    assert_eq!(r.code, 250);
    let bob = server.store().queue_show(r.queued_id()).await.unwrap().unwrap();
    assert_eq!(bob.recipients[0].state, RecipientStatus::Queued);
}

#[tokio::test]
async fn recipients_per_message_from_an_account_are_capped_at_the_edge() {
    let mut config = test_config();
    config.smtp.max_recipients_per_message_per_user = 2;
    let server = TestServer::start_with(config).await;
    let mut c = submitting(&server, "alice@example.test").await;
    c.ok("MAIL FROM:<alice@example.test>", 250).await;
    c.ok("RCPT TO:<a@remote.test>", 250).await;
    c.ok("RCPT TO:<b@remote.test>", 250).await;
    let r = c.cmd("RCPT TO:<c@remote.test>").await;
    assert_eq!(r.code, 452, "{r:?}");
    assert!(r.text().starts_with("4.5.3") && r.text().contains("at most 2"), "{r:?}");
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: two\r\n\r\nx\r\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 250);
    let m = server.store().queue_show(r.queued_id()).await.unwrap().unwrap();
    assert_eq!(m.recipients.len(), 2);
    // A new transaction starts a new count; a stranger on the MX port is
    // bound by max_recipients only.
    c.ok("MAIL FROM:<alice@example.test>", 250).await;
    c.ok("RCPT TO:<c@remote.test>", 250).await;
    c.ok("RSET", 250).await;
    let mut mx = Client::connect(server.smtp).await;
    mx.ehlo().await;
    mx.ok("MAIL FROM:<x@remote.test>", 250).await;
    for u in ["alice", "bob"] {
        mx.ok(&format!("RCPT TO:<{u}@example.test>"), 250).await;
    }
    mx.ok("RCPT TO:<postmaster@example.test>", 250).await;
}
