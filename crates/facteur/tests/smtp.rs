//! SMTP acceptance over real TCP: routing, relay policy, extensions, limits,
//! smuggling, STARTTLS injection, AUTH, and what lands in the mailbox.

mod common;

use common::{Client, PASSWORD, TestServer, http_get, test_config};
use facteur_store::prelude::*;

#[tokio::test]
async fn ehlo_advertises_extensions() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.smtp).await;
    let r = c.ehlo().await;
    let caps = r.lines.join(" ");
    for ext in
        ["PIPELINING", "SIZE 26214400", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN", "CHUNKING", "STARTTLS"]
    {
        assert!(caps.contains(ext), "{ext} missing from {caps}");
    }
    assert!(!caps.contains("AUTH"), "MX port must not offer AUTH: {caps}");
    c.ok("QUIT", 221).await;
}

#[tokio::test]
async fn local_delivery_lands_in_inbox_with_received_and_id() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let r = c
        .send_mail(
            "sender@remote.test",
            &["alice@example.test", "Bob@Example.Test"],
            "Subject: hello\r\n\r\n..dot line\r\nbody",
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    assert!(r.text().starts_with("2.0.0 Ok: queued as "), "{r:?}");
    let id = r.queued_id().to_string();
    for user in ["alice@example.test", "bob@example.test"] {
        let inbox = s.inbox(user).await;
        assert_eq!(inbox.len(), 1, "{user}");
        let m = &inbox[0];
        // Final delivery (RFC 5321 §4.4): Return-Path on top; two users
        // share one body, so neither's Delivered-To is in it.
        let top = "Return-Path: <sender@remote.test>\r\n";
        assert!(m.starts_with(top), "{m:?}");
        assert!(
            m[top.len()..].starts_with(
                "Received: from client.test ([127.0.0.1])\r\n\tby mx.example.test (facteur) with ESMTP id "
            ),
            "{user}: {m:?}"
        );
        assert!(m.contains(&id));
        // Two recipients: the Received field names neither.
        assert!(!m.contains("for <"));
        assert!(m.ends_with("Subject: hello\r\n\r\n.dot line\r\nbody\r\n"), "{m:?}");
        // Not submission: no Message-ID or Date added.
        assert!(!m.contains("Message-ID:"));
    }
    // Stored once.
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let bodies: i64 = conn.query_row("SELECT COUNT(*) FROM message_bodies", [], |r| r.get(0)).unwrap();
    assert_eq!(bodies, 1);
}

#[tokio::test]
async fn unknown_local_user_is_refused_at_rcpt() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<x@remote.test>", 250).await;
    let r = c.ok("RCPT TO:<nobody@example.test>", 550).await;
    assert!(r.text().starts_with("5.1.1 "), "{r:?}");
    c.ok("RCPT TO:<alice@example.test>", 250).await;
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: x\r\n\r\nhi\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(s.inbox("alice@example.test").await.len(), 1);
}

#[tokio::test]
async fn strangers_cannot_relay() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<x@remote.test>", 250).await;
    let r = c.ok("RCPT TO:<victim@elsewhere.test>", 554).await;
    assert!(r.text().starts_with("5.7.1 ") && r.text().contains("Relay access denied"), "{r:?}");
    assert!(s.store().queue_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn trusted_network_relays_into_the_queue() {
    let mut config = test_config();
    config.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<app@example.test> RET=HDRS ENVID=abc+2Bdef", 250).await;
    c.ok("RCPT TO:<someone@elsewhere.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;someone@elsewhere.test", 250).await;
    c.ok("RCPT TO:<alice@example.test>", 250).await;
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: out\r\n\r\nhi\r\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 250);
    let q = s.store().queue_list().await.unwrap();
    assert_eq!(q.len(), 1);
    let m = &q[0];
    assert_eq!(m.envelope.ret, Some(facteur_types::Ret::Hdrs));
    assert_eq!(m.envelope.envid.as_deref(), Some("abc+def"));
    assert_eq!(m.recipients[0].address, "someone@elsewhere.test");
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued);
    assert_eq!(m.recipients[0].notify.map(|n| n.to_string()).as_deref(), Some("FAILURE,DELAY"));
    assert_eq!(m.recipients[0].orcpt.as_deref(), Some("rfc822;someone@elsewhere.test"));
    // The local recipient got its own copy (its own Delivered-To), not a queue entry.
    assert_eq!(m.recipients.len(), 1);
    assert_eq!(s.inbox("alice@example.test").await.len(), 1);
}

#[tokio::test]
async fn pipelined_transaction_gets_replies_in_order() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.send_raw(
        b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n",
    )
    .await;
    let codes: Vec<u16> = [c.reply().await, c.reply().await, c.reply().await, c.reply().await, c.reply().await]
        .iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [250, 250, 550, 250, 354]);
    c.send_raw(
        b"Subject: p\r\n\r\nx\r\n.\r\nMAIL FROM:<b@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRSET\r\nQUIT\r\n",
    )
    .await;
    let codes: Vec<u16> = [c.reply().await, c.reply().await, c.reply().await, c.reply().await, c.reply().await]
        .iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [250, 250, 250, 250, 221]);
    assert_eq!(s.inbox("alice@example.test").await.len(), 1);
    assert_eq!(s.inbox("bob@example.test").await.len(), 1);
}

#[tokio::test]
async fn bdat_chunks() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<a@remote.test>", 250).await;
    c.ok("RCPT TO:<alice@example.test>", 250).await;
    // The chunk contains what would end DATA: BDAT is length-delimited.
    let chunk1 = b"Subject: b\r\n\r\nline\r\n.\r\n";
    c.send_raw(format!("BDAT {}\r\n", chunk1.len()).as_bytes()).await;
    c.send_raw(chunk1).await;
    assert_eq!(c.reply().await.code, 250);
    let chunk2 = b"last\r\n";
    c.send_raw(format!("BDAT {} LAST\r\n", chunk2.len()).as_bytes()).await;
    c.send_raw(chunk2).await;
    let r = c.reply().await;
    assert_eq!(r.code, 250, "{r:?}");
    let inbox = s.inbox("alice@example.test").await;
    assert!(inbox[0].ends_with("Subject: b\r\n\r\nline\r\n.\r\nlast\r\n"), "{:?}", inbox[0]);
    assert!(inbox[0].contains("for <alice@example.test>"));
}

/// CVE-2023-51764 class: no end-of-data but CRLF.CRLF, and a bare CR or LF
/// rejects the message, so nothing smuggled after a fake end is executed.
#[tokio::test]
async fn smuggling_attempts_are_rejected() {
    let s = TestServer::start().await;
    for fake_end in ["\n.\n", "\r.\n", "\n.\r\n", "\r.\r\n"] {
        let mut c = Client::connect(s.smtp).await;
        c.ehlo().await;
        c.ok("MAIL FROM:<a@remote.test>", 250).await;
        c.ok("RCPT TO:<alice@example.test>", 250).await;
        c.ok("DATA", 354).await;
        let payload = format!(
            "Subject: outer\r\n\r\nhello{fake_end}MAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n"
        );
        c.send_raw(payload.as_bytes()).await;
        let r = c.reply().await;
        assert_eq!(r.code, 554, "{fake_end:?}: {r:?}");
        assert!(r.text().starts_with("5.5.2 "), "{r:?}");
        // The session is still in sync: the next command is a command.
        c.ok("NOOP", 250).await;
    }
    assert!(s.inbox("alice@example.test").await.is_empty());
    assert!(s.inbox("bob@example.test").await.is_empty());
}

#[tokio::test]
async fn limits_at_and_past_their_edge() {
    let mut config = test_config();
    config.smtp.max_message_size = 2000;
    config.smtp.max_recipients = 100;
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    // SIZE declared over the limit.
    let r = c.ok("MAIL FROM:<a@remote.test> SIZE=2001", 552).await;
    assert!(r.text().starts_with("5.3.4"));
    c.ok("MAIL FROM:<a@remote.test> SIZE=2000", 250).await;
    // Recipients: the 100th is accepted, the 101st refused with 452 4.5.3.
    for _ in 0..100 {
        c.ok("RCPT TO:<alice@example.test>", 250).await;
    }
    let r = c.ok("RCPT TO:<alice@example.test>", 452).await;
    assert!(r.text().starts_with("4.5.3"));
    c.ok("RSET", 250).await;
    // Message size: at the limit accepted, one octet more refused.
    for (len, code) in [(2000usize, 250u16), (2001, 552)] {
        c.ok("MAIL FROM:<a@remote.test>", 250).await;
        c.ok("RCPT TO:<alice@example.test>", 250).await;
        c.ok("DATA", 354).await;
        // Lines of 100 octets (98 + CRLF) then one of 100..199; the data
        // length counts the final CRLF.
        let full_lines = (len - 100) / 100;
        let mut body = format!("{}\r\n", "x".repeat(98)).repeat(full_lines);
        body.push_str(&"y".repeat(len - body.len() - 2));
        body.push_str("\r\n");
        assert_eq!(body.len(), len);
        c.send_raw(format!("{body}.\r\n").as_bytes()).await;
        let r = c.reply().await;
        assert_eq!(r.code, code, "size {len}: {r:?}");
    }
    // Data line: 1000 octets with CRLF accepted, 1001 refused.
    for (len, code) in [(1000usize, 250u16), (1001, 500)] {
        c.ok("MAIL FROM:<a@remote.test>", 250).await;
        c.ok("RCPT TO:<bob@example.test>", 250).await;
        c.ok("DATA", 354).await;
        c.send_raw(format!("{}\r\n.\r\n", "z".repeat(len - 2)).as_bytes()).await;
        assert_eq!(c.reply().await.code, code, "data line {len}");
    }
    // Command line: 2048 octets with CRLF is fine (a syntax error, not too long), 2049 is too long.
    let r = c.cmd(&format!("NOOP {}", "n".repeat(2048 - 7))).await;
    assert_eq!(r.code, 250, "{r:?}");
    let r = c.cmd(&format!("NOOP {}", "n".repeat(2049 - 7))).await;
    assert_eq!(r.code, 500, "{r:?}");
    c.ok("NOOP", 250).await;
}

#[tokio::test]
async fn error_and_command_limits_close_the_session() {
    let mut config = test_config();
    config.smtp.max_errors = 3;
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ok("BOGUS", 500).await;
    c.ok("BOGUS", 500).await;
    c.send_raw(b"BOGUS\r\n").await;
    assert_eq!(c.reply().await.code, 500);
    let r = c.reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(c.closed().await);

    let mut config = test_config();
    config.smtp.max_messages_per_connection = 3;
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    for _ in 0..3 {
        c.ok("MAIL FROM:<a@remote.test>", 250).await;
        c.ok("RCPT TO:<alice@example.test>", 250).await;
        c.ok("DATA", 354).await;
        c.send_raw(b"Subject: n\r\n\r\nx\r\n.\r\n").await;
        assert_eq!(c.reply().await.code, 250);
        c.ok("RSET", 250).await;
        c.ok("NOOP", 250).await;
    }
    let r = c.cmd("MAIL FROM:<a@remote.test>").await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text().contains("too many messages"), "{r:?}");
    assert!(c.closed().await);
    assert_eq!(s.inbox("alice@example.test").await.len(), 3);
}

#[tokio::test]
async fn idle_timeout_closes_with_421() {
    let mut config = test_config();
    config.smtp.idle_timeout_secs = 1;
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let r = c.reply().await;
    assert_eq!(r.code, 421);
    assert!(r.text().starts_with("4.4.2"), "{r:?}");
    assert!(c.closed().await);
}

/// CVE-2011-0411 class: commands pipelined with STARTTLS are discarded.
#[tokio::test]
async fn starttls_discards_pipelined_plaintext() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.send_raw(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.test>\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 220);
    let raw = c.into_raw();
    let tls = common::tls_connector().connect("localhost".try_into().unwrap(), raw).await.unwrap();
    let mut c = Client::from_stream(Box::new(tls));
    // Had the injected MAIL been executed, this MAIL would be "nested" (503),
    // and the first reply read here would be its 250.
    let r = c.ok("EHLO client.test", 250).await;
    assert!(!r.text().contains("STARTTLS"));
    c.ok("MAIL FROM:<a@remote.test>", 250).await;
    c.ok("RCPT TO:<alice@example.test>", 250).await;
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: tls\r\n\r\nx\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    let inbox = s.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].contains("with ESMTPS id"));
}

#[tokio::test]
async fn submission_requires_tls_then_auth_and_completes_headers() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.submission).await;
    let r = c.ehlo().await;
    assert!(!r.text().contains("AUTH"), "AUTH before TLS: {r:?}");
    let r = c.auth_plain("alice@example.test", PASSWORD).await;
    assert_eq!(r.code, 538, "{r:?}");
    let r = c.ok("MAIL FROM:<alice@example.test>", 530).await;
    assert!(r.text().starts_with("5.7.0"));
    let mut c = c.starttls().await;
    let r = c.ehlo().await;
    assert!(r.text().contains("AUTH PLAIN LOGIN"), "{r:?}");
    c.ok("MAIL FROM:<alice@example.test>", 530).await;
    let r = c.auth_plain("alice@example.test", "wrong").await;
    assert_eq!(r.code, 535, "{r:?}");
    assert!(r.text().starts_with("5.7.8"));
    let r = c.auth_plain("alice@example.test", PASSWORD).await;
    assert_eq!(r.code, 235, "{r:?}");
    // Authenticated: relaying is allowed, and missing Date/Message-ID are added.
    let r = c
        .send_mail("alice@example.test", &["bob@example.test", "friend@elsewhere.test"], "Subject: sub\r\n\r\nhi")
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    let m = &s.inbox("bob@example.test").await[0];
    assert!(m.contains("with ESMTPSA id"), "{m}");
    assert!(m.contains("\r\nDate: ") && m.contains("\r\nMessage-ID: <"), "{m}");
    let q = s.store().queue_list().await.unwrap();
    assert_eq!(q[0].recipients[0].address, "friend@elsewhere.test");
    assert_eq!(q[0].envelope.auth_user.as_deref(), Some("alice@example.test"));
}

#[tokio::test]
async fn auth_login_on_implicit_tls() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let s = TestServer::start().await;
    let mut c = Client::connect_tls(s.submissions).await;
    let r = c.ehlo().await;
    assert!(!r.text().contains("STARTTLS") && r.text().contains("AUTH PLAIN LOGIN"), "{r:?}");
    c.ok("AUTH LOGIN", 334).await;
    c.ok(&b64("bob@example.test"), 334).await;
    c.ok(&b64(PASSWORD), 235).await;
    let r =
        c.send_mail("bob@example.test", &["alice@example.test"], "Subject: s\r\nMessage-ID: <mine@x>\r\n\r\nx").await;
    assert_eq!(r.code, 250);
    let m = &s.inbox("alice@example.test").await[0];
    assert!(m.contains("Message-ID: <mine@x>") && m.matches("Message-ID").count() == 1, "{m}");
}

#[tokio::test]
async fn health_endpoints() {
    let s = TestServer::start().await;
    let (code, body) = http_get(s.http, "/healthz").await;
    assert_eq!((code, body.contains("ok")), (200, true));
    let (code, body) = http_get(s.http, "/readyz").await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn shutdown_tells_open_sessions_421() {
    let mut s = TestServer::start().await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    s.stop().await;
    let r = c.reply().await;
    assert_eq!(r.code, 421);
    assert!(r.text().starts_with("4.3.2"), "{r:?}");
}

#[tokio::test]
async fn connection_limit_at_and_past_its_edge() {
    let mut config = test_config();
    config.smtp.max_connections = 2;
    let s = TestServer::start_with(config).await;
    let mut a = Client::connect(s.smtp).await;
    let mut b = Client::connect(s.submission).await;
    // The limit is for all listeners together: a third session is refused.
    let mut c = Client::from_stream(Box::new(tokio::net::TcpStream::connect(s.smtp).await.unwrap()));
    let r = c.reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text().starts_with("4.7.0"));
    assert!(c.closed().await);
    a.ok("QUIT", 221).await;
    assert!(a.closed().await);
    b.ok("NOOP", 250).await;
    // A slot is free again (the server releases it just after closing).
    for attempt in 0.. {
        let mut d = Client::from_stream(Box::new(tokio::net::TcpStream::connect(s.smtp).await.unwrap()));
        if d.reply().await.code == 220 {
            d.ok("NOOP", 250).await;
            break;
        }
        assert!(attempt < 50, "the slot was never released");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn notify_success_on_local_delivery_sends_a_delivered_dsn() {
    let s = TestServer::start().await;
    let mut c = Client::connect_tls(s.submissions).await;
    c.ehlo().await;
    assert_eq!(c.auth_plain("alice@example.test", PASSWORD).await.code, 235);
    c.ok("MAIL FROM:<alice@example.test> ENVID=e42", 250).await;
    c.ok("RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE", 250).await;
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: receipt please\r\n\r\nx\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(s.inbox("bob@example.test").await.len(), 1);
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(alice.len(), 1, "one success notice");
    let dsn = &alice[0];
    assert!(dsn.contains("report-type=delivery-status") || dsn.contains("report-type=\"delivery-status\""), "{dsn}");
    assert!(dsn.contains("Action: delivered") && dsn.contains("Status: 2.0.0") && dsn.contains("e42"), "{dsn}");
    // Without NOTIFY=SUCCESS, nothing.
    let r = c.send_mail("alice@example.test", &["bob@example.test"], "Subject: quiet\r\n\r\nx").await;
    assert_eq!(r.code, 250);
    assert_eq!(s.inbox("alice@example.test").await.len(), 1);
}

#[tokio::test]
async fn per_client_limits_at_and_past_their_edge() {
    let mut config = test_config();
    config.smtp.max_connections_per_ip = 2;
    config.smtp.max_messages_per_minute_per_ip = 3;
    config.smtp.max_messages_per_minute_per_user = 1;
    let s = TestServer::start_with(config).await;
    let mut a = Client::connect(s.smtp).await;
    let _b = Client::connect(s.submission).await;
    let mut c = Client::from_stream(Box::new(tokio::net::TcpStream::connect(s.smtp).await.unwrap()));
    let r = c.reply().await;
    assert_eq!(r.code, 421, "third connection from one address: {r:?}");
    assert!(r.text().starts_with("4.7.0") && r.text().contains("too many connections from this address"), "{r:?}");
    a.ehlo().await;
    for _ in 0..3 {
        a.ok("MAIL FROM:<x@remote.test>", 250).await;
        a.ok("RSET", 250).await;
    }
    let r = a.ok("MAIL FROM:<x@remote.test>", 450).await;
    assert!(r.text().starts_with("4.7.1") && r.text().contains("your address"), "{r:?}");
}

#[tokio::test]
async fn per_user_message_limit() {
    let mut config = test_config();
    config.smtp.max_messages_per_minute_per_user = 1;
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect_tls(s.submissions).await;
    c.ehlo().await;
    assert_eq!(c.auth_plain("alice@example.test", PASSWORD).await.code, 235);
    c.ok("MAIL FROM:<alice@example.test>", 250).await;
    c.ok("RSET", 250).await;
    let r = c.ok("MAIL FROM:<alice@example.test>", 450).await;
    assert!(r.text().contains("your account"), "{r:?}");
}

#[tokio::test]
async fn trusted_networks_are_exempt_from_client_limits() {
    let mut config = test_config();
    config.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.smtp.max_connections_per_ip = 1;
    config.smtp.max_messages_per_minute_per_ip = 1;
    let s = TestServer::start_with(config).await;
    let mut a = Client::connect(s.smtp).await;
    let mut b = Client::connect(s.smtp).await;
    b.ehlo().await;
    a.ehlo().await;
    for _ in 0..3 {
        a.ok("MAIL FROM:<x@remote.test>", 250).await;
        a.ok("RSET", 250).await;
    }
}

/// RFC 6409 §6.1: an authenticated user sends as itself (and user+detail),
/// or as what the operator granted it; envelope sender and From: both.
#[tokio::test]
async fn authenticated_users_send_only_as_themselves_or_granted_addresses() {
    let s = TestServer::start().await;
    let mut c = Client::connect_tls(s.submissions).await;
    c.ehlo().await;
    assert_eq!(c.auth_plain("alice@example.test", PASSWORD).await.code, 235);
    for forged in ["ceo@victim.example", "bob@example.test", "alice@example.test.evil.example"] {
        let r = c.ok(&format!("MAIL FROM:<{forged}>"), 553).await;
        assert!(r.text().starts_with("5.7.1") && r.text().contains("not owned by user alice@example.test"), "{r:?}");
    }
    // The envelope is hers, the From: field is not.
    let r = c
        .send_mail(
            "alice@example.test",
            &["bob@example.test"],
            "From: The CEO <ceo@victim.example>\r\nSubject: pay\r\n\r\nx",
        )
        .await;
    assert_eq!(r.code, 553, "{r:?}");
    assert!(r.text().contains("From: header address rejected"), "{r:?}");
    // A From: whose address cannot be read is not waved through, nor a
    // field spelt with a space before its colon, nor a second From: (the
    // reader may see the first, the check the last).
    let r = c.send_mail("alice@example.test", &["bob@example.test"], "From: nobody at all\r\n\r\nx").await;
    assert_eq!(r.code, 553, "{r:?}");
    let r = c.send_mail("alice@example.test", &["bob@example.test"], "From : ceo@victim.example\r\n\r\nx").await;
    assert_eq!(r.code, 553, "{r:?}");
    let r = c
        .send_mail(
            "alice@example.test",
            &["bob@example.test"],
            "From: ceo@victim.example\r\nFrom: alice@example.test\r\n\r\nx",
        )
        .await;
    assert_eq!(r.code, 553, "{r:?}");
    assert!(r.text().contains("more than one From"), "{r:?}");
    // No From: at all, or no header: nothing to check.
    let r = c.send_mail("alice@example.test", &["bob@example.test"], "Subject: no from\r\n\r\nx").await;
    assert_eq!(r.code, 250, "{r:?}");
    // Her own address, with a detail, and the null sender.
    let r = c
        .send_mail("alice+news@example.test", &["bob@example.test"], "From: Alice <ALICE@example.test>\r\n\r\nx")
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    c.ok("MAIL FROM:<>", 250).await;
    c.ok("RSET", 250).await;
    // Granted by the operator: an address, and a whole domain.
    let store = s.store();
    store.add_domain("shop.test").await.unwrap();
    store.grant_sender("alice@example.test", "sales@example.test").await.unwrap();
    store.grant_sender("alice@example.test", "@shop.test").await.unwrap();
    let r = c
        .send_mail(
            "sales@example.test",
            &["bob@example.test"],
            "From: Sales <sales@example.test>, orders@shop.test\r\n\r\nx",
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(s.inbox("bob@example.test").await.len(), 3, "only the three allowed messages arrived");
    // Revoked: refused again.
    store.revoke_sender("alice@example.test", "sales@example.test").await.unwrap();
    c.ok("MAIL FROM:<sales@example.test>", 553).await;
}

/// Not a reflector: a stranger on the MX port with a forged sender,
/// RET=FULL and NOTIFY=SUCCESS gets no success notice by default (it would
/// carry the whole message to the forged address); "headers" quotes the
/// header only; "full" does as asked.
#[tokio::test]
async fn success_notices_for_strangers_do_not_reflect_content() {
    use facteur_smtp::config::SuccessNotices;
    for (policy, notices, body_quoted) in
        [(SuccessNotices::None, 0, false), (SuccessNotices::Headers, 1, false), (SuccessNotices::Full, 1, true)]
    {
        let mut config = test_config();
        config.smtp.success_notices_for_strangers = policy;
        let s = TestServer::start_with(config).await;
        let mut c = Client::connect(s.smtp).await;
        c.ehlo().await;
        // The "victim" is a local user here so the notice can be seen.
        c.ok("MAIL FROM:<alice@example.test> RET=FULL", 250).await;
        c.ok("RCPT TO:<bob@example.test> NOTIFY=SUCCESS", 250).await;
        c.ok("DATA", 354).await;
        c.send_raw(b"Subject: spam payload\r\n\r\nBUY-NOW-PAYLOAD\r\n.\r\n").await;
        assert_eq!(c.reply().await.code, 250);
        let alice = s.inbox("alice@example.test").await;
        assert_eq!(alice.len(), notices, "{policy:?}");
        if let Some(dsn) = alice.first() {
            assert!(dsn.contains("Action: delivered"), "{dsn}");
            assert_eq!(dsn.contains("BUY-NOW-PAYLOAD"), body_quoted, "{policy:?}: {dsn}");
        }
    }
}
