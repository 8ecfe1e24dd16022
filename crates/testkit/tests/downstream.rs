//! Byte scripts against a running simulator: one Downstream per behaviour,
//! driven by a plain TCP client that writes the SMTP lines by hand.

mod common;

use std::time::Duration;

use common::{Client, connect};
use facteur_testkit::{Behavior, Downstream, Step};
use tokio::io::{AsyncRead, AsyncWrite};

const WAIT: Duration = Duration::from_secs(5);

/// MAIL, one RCPT and a DATA body, each waiting for its reply.
async fn send_message<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Client<S>, rcpt: &str, body: &str) -> (u16, String) {
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    c.expect(&format!("RCPT TO:<{rcpt}>"), 250).await;
    c.expect("DATA", 354).await;
    c.send(body).await;
    c.reply().await
}

#[tokio::test]
async fn accepts_a_pipelined_message_and_unstuffs_dots() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut c = connect(sim.addr()).await;
    let keywords = c.hello().await;
    let expected = ["PIPELINING", "SIZE 0", "8BITMIME", "SMTPUTF8", "DSN", "CHUNKING", "ENHANCEDSTATUSCODES"];
    assert_eq!(keywords, expected);

    // RFC 2920: the whole envelope in one write, DATA last.
    c.send(concat!(
        "MAIL FROM:<alice@example.org> BODY=8BITMIME SIZE=60\r\n",
        "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE\r\n",
        "RCPT TO:<carol@example.net>\r\n",
        "DATA\r\n",
    ))
    .await;
    for code in [250, 250, 250, 354] {
        assert_eq!(c.reply().await.0, code);
    }
    c.send("Subject: hi\r\n\r\n..starts with a dot\r\n.\r\n").await;
    assert_eq!(c.reply().await, (250, "2.0.0 Ok: queued as sim1".to_string()));
    c.expect("QUIT", 221).await;
    assert!(c.closed().await);

    assert!(sim.wait_for(1, WAIT).await);
    let received = sim.received();
    assert_eq!(received.len(), 1);
    let m = &received[0];
    assert_eq!(m.mail_from, "alice@example.org");
    assert_eq!(m.mail_params, "BODY=8BITMIME SIZE=60");
    assert_eq!(m.rcpts, ["bob@example.net", "carol@example.net"]);
    assert_eq!(m.rcpt_params, ["NOTIFY=SUCCESS,FAILURE", ""]);
    assert_eq!(m.data, b"Subject: hi\r\n\r\n.starts with a dot\r\n");
    assert!(!m.tls && !m.chunked);
    assert_eq!(
        sim.transcript(),
        [
            "EHLO client.test",
            "MAIL FROM:<alice@example.org> BODY=8BITMIME SIZE=60",
            "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE",
            "RCPT TO:<carol@example.net>",
            "DATA",
            "QUIT",
        ]
    );
    assert!(sim.pipelined() > 0, "the envelope was pipelined");
    assert_eq!(sim.connections(), 1);
    assert_eq!(sim.accepted(), 1);
}

#[tokio::test]
async fn accepts_bdat_chunks_verbatim() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    let first = ".no unstuffing\r\n";
    let last = "in BDAT\r\n";
    c.send(&format!(
        "MAIL FROM:<> SMTPUTF8\r\nRCPT TO:<bob@example.net>\r\nBDAT {}\r\n{first}BDAT {} LAST\r\n{last}",
        first.len(),
        last.len()
    ))
    .await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await, (250, format!("2.0.0 sim: {} octets received", first.len())));
    assert_eq!(c.reply().await, (250, "2.0.0 Ok: queued as sim1".to_string()));
    // BDAT 0 LAST is a complete (empty) message too.
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 0 LAST\r\n").await;
    for code in [250, 250, 250] {
        assert_eq!(c.reply().await.0, code);
    }

    let received = sim.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].mail_from, "");
    assert_eq!(received[0].data, format!("{first}{last}").as_bytes());
    assert!(received[0].chunked);
    assert!(received[1].data.is_empty());
    assert!(sim.transcript().contains(&format!("BDAT {} LAST", last.len())));
}

#[tokio::test]
async fn accept_only_refuses_the_other_recipients() {
    let sim = Downstream::start(Behavior::accept_only(&["bob@example.net"])).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    assert_eq!(c.expect("RCPT TO:<eve@example.net>", 550).await, "5.1.1 sim: no such user");
    c.expect("RCPT TO:<Bob@Example.NET>", 250).await;
    c.expect("DATA", 354).await;
    c.send("hello\r\n.\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(sim.received()[0].rcpts, ["Bob@Example.NET"]);
}

#[tokio::test]
async fn defer_answers_451_per_recipient() {
    let sim = Downstream::start(Behavior::defer_all(451)).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    assert_eq!(c.expect("RCPT TO:<bob@example.net>", 451).await, "4.3.0 sim: try again later");
    c.expect("DATA", 554).await;
    c.expect("RSET", 250).await;
    c.expect("QUIT", 221).await;
    assert!(sim.received().is_empty());
}

#[tokio::test]
async fn defer_with_421_refuses_at_the_greeting_and_closes() {
    let sim = Downstream::start(Behavior::defer_all(421)).await;
    let mut c = connect(sim.addr()).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 421);
    assert!(text.starts_with("4.3.2 "), "{text}");
    assert!(c.closed().await);
}

#[tokio::test]
async fn refuse_answers_550_per_recipient() {
    let sim = Downstream::start(Behavior::refuse_all()).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    assert_eq!(c.expect("RCPT TO:<bob@example.net>", 550).await, "5.1.1 sim: no such user");
    c.expect("DATA", 554).await;
    assert!(sim.received().is_empty());
}

#[tokio::test]
async fn hang_never_greets() {
    let sim = Downstream::start(Behavior::hang()).await;
    let mut c = connect(sim.addr()).await;
    assert!(c.silent_for(Duration::from_secs(1)).await, "no greeting within 1 s");
    c.send("EHLO client.test\r\n").await;
    assert!(c.silent_for(Duration::from_millis(200)).await, "commands are not answered either");
    assert_eq!(sim.connections(), 1);
}

#[tokio::test]
async fn drop_mid_data_closes_during_the_body() {
    let sim = Downstream::start(Behavior::drop_mid_data()).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    c.expect("RCPT TO:<bob@example.net>", 250).await;
    c.expect("DATA", 354).await;
    c.send_lossy(&"a line of the body, long enough\r\n".repeat(10)).await;
    c.send_lossy(".\r\n").await;
    assert!(c.closed().await);
    assert!(!sim.wait_for(1, Duration::from_millis(200)).await);
    assert!(sim.received().is_empty());
}

#[tokio::test]
async fn drop_after_closes_at_the_end_of_a_shorter_body() {
    let sim = Downstream::start(Behavior { data: Step::DropAfter(1000), ..Behavior::accept_all() }).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    c.expect("RCPT TO:<bob@example.net>", 250).await;
    c.expect("DATA", 354).await;
    c.send_lossy("short\r\n.\r\n").await;
    assert!(c.closed().await, "closed without a reply");
    // With BDAT the octets are counted the same way.
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.send_lossy("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 2000 LAST\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    c.send_lossy(&"x".repeat(2000)).await;
    assert!(c.closed().await);
    assert!(sim.received().is_empty());
}

#[tokio::test]
async fn starttls_round_trip() {
    let sim = Downstream::start(Behavior { tls: true, ..Behavior::accept_all() }).await;
    let mut c = connect(sim.addr()).await;
    let keywords = c.hello().await;
    assert_eq!(keywords.last().map(String::as_str), Some("STARTTLS"));
    c.expect("STARTTLS", 220).await;
    let mut c = c.start_tls().await;
    // RFC 3207 §4.2: a fresh start; no STARTTLS offered any more.
    c.expect("MAIL FROM:<alice@example.org>", 503).await;
    let keywords = c.ehlo().await;
    assert!(!keywords.iter().any(|k| k == "STARTTLS"), "{keywords:?}");
    c.expect("STARTTLS", 503).await;
    assert_eq!(send_message(&mut c, "bob@example.net", "secret\r\n.\r\n").await.0, 250);
    c.expect("QUIT", 221).await;
    assert!(c.closed().await);

    let m = &sim.received()[0];
    assert!(m.tls);
    assert_eq!(m.data, b"secret\r\n");
    let transcript = sim.transcript();
    assert_eq!(
        transcript[..5],
        ["EHLO client.test", "STARTTLS", "MAIL FROM:<alice@example.org>", "EHLO client.test", "STARTTLS"]
    );
}

#[tokio::test]
async fn starttls_is_refused_when_not_offered() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.expect("STARTTLS", 502).await;
}

#[tokio::test]
async fn set_behavior_applies_to_new_connections() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut first = connect(sim.addr()).await;
    first.hello().await;

    sim.set_behavior(Behavior::refuse_all());
    // The open session keeps the behaviour it started with.
    assert_eq!(send_message(&mut first, "bob@example.net", "one\r\n.\r\n").await.0, 250);
    let mut second = connect(sim.addr()).await;
    second.hello().await;
    second.expect("MAIL FROM:<alice@example.org>", 250).await;
    second.expect("RCPT TO:<bob@example.net>", 550).await;

    // The host goes down...
    sim.set_behavior(Behavior::defer_all(421));
    let mut third = connect(sim.addr()).await;
    assert_eq!(third.reply().await.0, 421);
    assert!(third.closed().await);

    // ... and comes back.
    sim.set_behavior(Behavior::accept_all());
    let mut fourth = connect(sim.addr()).await;
    fourth.hello().await;
    assert_eq!(send_message(&mut fourth, "bob@example.net", "two\r\n.\r\n").await.0, 250);

    assert!(sim.wait_for(2, WAIT).await);
    let bodies: Vec<Vec<u8>> = sim.received().into_iter().map(|m| m.data).collect();
    assert_eq!(bodies, [b"one\r\n".to_vec(), b"two\r\n".to_vec()]);
    assert_eq!(sim.connections(), 4);
    assert_eq!(sim.pipelined(), 0, "every command here waited for its reply");
}

#[tokio::test]
async fn size_is_enforced_at_mail_and_at_end_of_data() {
    let sim = Downstream::start(Behavior { size: Some(100), ..Behavior::accept_all() }).await;
    let mut c = connect(sim.addr()).await;
    assert!(c.hello().await.contains(&"SIZE 100".to_string()));
    let text = c.expect("MAIL FROM:<alice@example.org> SIZE=101", 552).await;
    assert!(text.starts_with("5.3.4 "), "{text}");

    // Declared small, sent big: refused after the body.
    c.expect("MAIL FROM:<alice@example.org> SIZE=50", 250).await;
    c.expect("RCPT TO:<bob@example.net>", 250).await;
    c.expect("DATA", 354).await;
    c.send(&format!("{}\r\n.\r\n", "x".repeat(150))).await;
    assert_eq!(c.reply().await.0, 552);

    // A BDAT chunk over the limit is refused at once; the next BDAT finds no transaction.
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    c.expect("RCPT TO:<bob@example.net>", 250).await;
    c.send(&format!("BDAT 150\r\n{}BDAT 0 LAST\r\n", "y".repeat(150))).await;
    assert_eq!(c.reply().await.0, 552);
    assert_eq!(c.reply().await.0, 503);

    // Exactly at the limit is fine (100 octets with the CRLF).
    let body = format!("{}\r\n.\r\n", "z".repeat(98));
    assert_eq!(send_message(&mut c, "bob@example.net", &body).await.0, 250);
    assert_eq!(sim.received().len(), 1);
    assert_eq!(sim.received()[0].data.len(), 100);
}

#[tokio::test]
async fn rate_limit_answers_421_and_closes() {
    let sim = Downstream::start(Behavior { rate: Some(0), ..Behavior::accept_all() }).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").await, (421, "4.7.0 rate limit".to_string()));
    assert!(c.closed().await);
}

#[tokio::test]
async fn parameters_of_extensions_not_advertised_are_refused() {
    let bare = Behavior {
        pipelining: false,
        chunking: false,
        smtputf8: false,
        dsn: false,
        eightbitmime: false,
        size: None,
        ..Behavior::accept_all()
    };
    let sim = Downstream::start(bare).await;
    let mut c = connect(sim.addr()).await;
    assert_eq!(c.reply().await.0, 220);
    c.expect("MAIL FROM:<alice@example.org>", 503).await; // before EHLO
    assert_eq!(c.ehlo().await, ["ENHANCEDSTATUSCODES"]);
    for param in ["SMTPUTF8", "BODY=8BITMIME", "SIZE=10", "RET=HDRS", "XFOO"] {
        c.expect(&format!("MAIL FROM:<alice@example.org> {param}"), 555).await;
    }
    c.expect("MAIL FROM:<alice@example.org> BODY=7BIT", 250).await;
    c.expect("RCPT TO:<bob@example.net> NOTIFY=NEVER", 555).await;
    c.expect("RCPT TO:<bob@example.net>", 250).await;
    // BDAT without CHUNKING: the chunk is read and refused; the session goes on.
    c.send("BDAT 3 LAST\r\nabc").await;
    assert_eq!(c.reply().await.0, 502);
    c.expect("NOOP", 250).await;
}

#[tokio::test]
async fn non_ascii_addresses_need_smtputf8() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.expect("MAIL FROM:<józef@example.org>", 553).await;
    c.expect("MAIL FROM:<józef@example.org> SMTPUTF8", 250).await;
    c.expect("RCPT TO:<björn@exämple.net>", 250).await;
    c.expect("RSET", 250).await;
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    let text = c.expect("RCPT TO:<björn@exämple.net>", 553).await;
    assert!(text.starts_with("5.6.7 "), "{text}");
}

#[tokio::test]
async fn commands_out_of_sequence_and_over_long_lines() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.expect("RCPT TO:<bob@example.net>", 503).await;
    c.expect("DATA", 503).await;
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    c.expect("MAIL FROM:<alice@example.org>", 503).await;
    c.expect("DATA", 554).await;
    c.expect("RSET", 250).await;
    c.expect("MAIL FROM:alice@example.org", 501).await;
    c.expect("VRFY bob", 500).await;
    let long = format!("NOOP {}", "x".repeat(5000));
    c.expect(&long, 500).await;
    // The rest of the long line was not read as commands.
    c.expect("NOOP", 250).await;
    c.send("BDAT lots\r\n").await;
    assert_eq!(c.reply().await.0, 501);
    assert!(c.closed().await);
}

#[tokio::test]
async fn replies_can_be_scripted_per_step() {
    let behavior = Behavior {
        mail: Step::Reply(250, "2.1.0 sender fine".into()),
        end_of_data: Step::Reply(451, "4.3.0 disk full".into()),
        ..Behavior::accept_all()
    }
    .with_rcpt(|rcpt| match rcpt {
        "multi@example.net" => Step::Reply(452, "4.5.3 too many\n4.5.3 recipients".into()),
        "drop@example.net" => Step::Drop,
        _ => Step::Accept,
    });
    let sim = Downstream::start(behavior).await;
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    assert_eq!(c.expect("MAIL FROM:<alice@example.org>", 250).await, "2.1.0 sender fine");
    assert_eq!(c.expect("RCPT TO:<multi@example.net>", 452).await, "4.5.3 too many\n4.5.3 recipients");
    c.expect("RCPT TO:<bob@example.net>", 250).await;
    c.expect("DATA", 354).await;
    c.send("body\r\n.\r\n").await;
    assert_eq!(c.reply().await, (451, "4.3.0 disk full".to_string()));
    assert!(sim.received().is_empty(), "a 4xx after the body records nothing");
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    c.send("RCPT TO:<drop@example.net>\r\n").await;
    assert!(c.closed().await);

    sim.set_behavior(Behavior { mail: Step::Hang, ..Behavior::accept_all() });
    let mut c = connect(sim.addr()).await;
    c.hello().await;
    c.send("MAIL FROM:<alice@example.org>\r\n").await;
    assert!(c.silent_for(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn stop_closes_open_sessions() {
    let sim = Downstream::start(Behavior::hang()).await;
    let addr = sim.addr();
    let mut c = connect(addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.stop();
    assert!(c.closed().await);
    // And nothing listens any more (the abort may take a moment to land).
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused);
}
