//! Byte scripts for the command sequence: greeting, EHLO, simple commands,
//! the sequence table, and the MAIL/RCPT checks.

mod common;

use common::*;
use facteur_smtp_proto::{Address, Event, MailParams, Reply, SessionConfig};

#[test]
fn greeting_and_ehlo() {
    let mut h = Harness::new(config());
    assert_eq!(h.transcript(), greeting());
    assert_eq!(h.send("EHLO client.example\r\n"), ehlo_reply());
}

#[test]
fn ehlo_variants() {
    let mut h = Harness::new(SessionConfig { max_message_size: 0, starttls_available: true, ..config() });
    let out = h.send("ehlo [192.0.2.1]\r\n");
    assert!(out.contains("250-SIZE\r\n"), "{out}");
    assert!(out.ends_with("250-CHUNKING\r\n250 STARTTLS\r\n"), "{out}");
    assert!(!out.contains("AUTH"), "{out}");

    // AUTH is offered only under TLS (RFC 4954 §4), STARTTLS only before.
    let cfg = SessionConfig { tls_active: true, auth_enabled: true, starttls_available: true, ..config() };
    let mut h = Harness::new(cfg);
    let out = h.send("EHLO client.example\r\n");
    assert!(out.ends_with("250-CHUNKING\r\n250 AUTH PLAIN LOGIN\r\n"), "{out}");
    assert!(!out.contains("STARTTLS"), "{out}");
}

#[test]
fn helo() {
    let mut h = Harness::new(config());
    assert_eq!(h.send("HELO client\r\n"), lines(&["250 mx.example"]));
    assert_eq!(h.send("EHLO\r\n"), lines(&["501 5.5.4 Syntax: EHLO hostname"]));
    assert_eq!(h.send("HELO two words\r\n"), lines(&["501 5.5.4 Syntax: HELO hostname"]));
    assert_eq!(h.send("HELO win_host\r\n"), lines(&["250 mx.example"]));
}

#[test]
fn simple_commands() {
    let mut h = Harness::new(config());
    assert_eq!(h.send("NOOP\r\n"), lines(&["250 2.0.0 Ok"]));
    assert_eq!(h.send("NOOP hello\r\n"), lines(&["250 2.0.0 Ok"]));
    assert_eq!(h.send("RSET\r\n"), lines(&["250 2.0.0 Ok"]));
    assert_eq!(h.send("VRFY root\r\n"), lines(&["252 2.5.0 Cannot VRFY user, but will accept message"]));
    assert_eq!(h.send("EXPN staff\r\n"), lines(&["502 5.5.1 Error: command not implemented"]));
    assert!(h.send("HELP\r\n").starts_with("214 2.0.0 "));
    assert_eq!(h.send("FROB\r\n"), lines(&["500 5.5.2 Error: command not recognized"]));
    assert_eq!(h.send("\r\n"), lines(&["500 5.5.2 Error: command not recognized"]));
    assert_eq!(h.send("QUIT\r\n"), lines(&["221 2.0.0 Bye"]));
    assert!(h.closed);
    // Nothing after QUIT is read.
    assert_eq!(h.send("NOOP\r\n"), "");
    assert!(matches!(h.session.poll(), Event::Close));
    assert!(matches!(h.session.poll(), Event::Close));
}

#[test]
fn sequence_errors() {
    let mut h = Harness::new(config());
    let helo_first = "503 5.5.1 Error: send HELO/EHLO first";
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&[helo_first]));
    assert_eq!(h.send("RCPT TO:<a@b>\r\n"), lines(&[helo_first]));
    assert_eq!(h.send("DATA\r\n"), lines(&[helo_first]));
    // The chunk is eaten: "NOOP\r\n" inside it is not a command.
    assert_eq!(h.send("BDAT 6\r\nNOOP\r\n"), lines(&[helo_first]));
    h.send("EHLO c.example\r\n");
    assert_eq!(h.send("RCPT TO:<a@b>\r\n"), lines(&["503 5.5.1 Error: need MAIL command"]));
    assert_eq!(h.send("DATA\r\n"), lines(&["554 5.5.1 Error: no valid recipients"]));
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["250 2.1.0 Ok"]));
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["503 5.5.1 Error: nested MAIL command"]));
    assert_eq!(h.send("DATA\r\n"), lines(&["554 5.5.1 Error: no valid recipients"]));
    assert_eq!(h.send("BDAT 4 LAST\r\nQUIT"), lines(&["554 5.5.1 Error: no valid recipients"]));
    assert!(!h.closed);
    assert_eq!(h.events, ["mail"]);
}

#[test]
fn rejected_recipient_does_not_open_data() {
    let answer: Answer = Box::new(|event| match event {
        Event::Rcpt { to, .. } if to.local == "nobody" => Err(Reply::new(550, (5, 1, 1), "Error: no such user")),
        _ => Ok("Q".into()),
    });
    let mut h = Harness::with(config(), answer);
    h.send("EHLO c.example\r\n");
    let out = h.send("MAIL FROM:<a@b>\r\nRCPT TO:<nobody@b>\r\nDATA\r\n");
    assert_eq!(out, lines(&["250 2.1.0 Ok", "550 5.1.1 Error: no such user", "554 5.5.1 Error: no valid recipients"]));
}

#[test]
fn rejected_sender_leaves_no_transaction() {
    let answer: Answer = Box::new(|event| match event {
        Event::Mail { .. } => Err(Reply::new(550, (5, 7, 1), "Error: sender refused")),
        _ => Ok("Q".into()),
    });
    let mut h = Harness::with(config(), answer);
    h.send("EHLO c.example\r\n");
    let out = h.send("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    assert_eq!(out, lines(&["550 5.7.1 Error: sender refused", "503 5.5.1 Error: need MAIL command"]));
}

#[test]
fn full_transaction_and_envelope() {
    let mut h = greeted(config());
    let out = h.send(
        "MAIL FROM:<a@example.org> SIZE=20 BODY=8BITMIME\r\n\
         RCPT TO:<b@example.net> NOTIFY=FAILURE ORCPT=rfc822;b@example.net\r\n\
         RCPT TO:<Postmaster>\r\nDATA\r\n",
    );
    assert_eq!(out, lines(&["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>"]));
    assert!(h.session.in_data());
    assert_eq!(h.send("Subject: hi\r\n\r\nbody\r\n.\r\n"), lines(&["250 2.0.0 Ok: queued as Q1"]));
    assert!(!h.session.in_data());
    let (env, data) = &h.messages[0];
    assert_eq!(data, b"Subject: hi\r\n\r\nbody\r\n");
    assert_eq!(env.helo, "client.example");
    assert!(env.esmtp);
    assert!(!env.tls);
    assert!(!env.chunked);
    assert_eq!(env.auth_user, None);
    assert_eq!(env.mail_from, Some(Address { local: "a".into(), domain: "example.org".into() }));
    assert_eq!(env.mail_params.size, Some(20));
    assert_eq!(env.recipients.len(), 2);
    assert_eq!(env.recipients[0].params.orcpt.as_deref(), Some("rfc822;b@example.net"));
    assert_eq!(env.recipients[1].address, Address { local: "Postmaster".into(), domain: String::new() });
    // The transaction is over; EHLO is kept.
    assert_eq!(h.send("RCPT TO:<c@d>\r\n"), lines(&["503 5.5.1 Error: need MAIL command"]));
    assert_eq!(h.send("MAIL FROM:<>\r\n"), lines(&["250 2.1.0 Ok"]));
}

#[test]
fn message_rejected_by_io_layer_ends_transaction() {
    let answer: Answer = Box::new(|event| match event {
        Event::Message { .. } => Err(Reply::new(451, (4, 3, 0), "Error: try again later")),
        _ => Ok(String::new()),
    });
    let mut h = Harness::with(config(), answer);
    h.send("EHLO c.example\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    let out = h.send("DATA\r\nx\r\n.\r\nRCPT TO:<e@f>\r\n");
    assert_eq!(
        out,
        lines(&[
            "354 End data with <CR><LF>.<CR><LF>",
            "451 4.3.0 Error: try again later",
            "503 5.5.1 Error: need MAIL command",
        ])
    );
}

#[test]
fn rset_and_ehlo_reset_the_transaction() {
    let mut h = in_transaction(config());
    assert_eq!(h.send("RSET\r\n"), lines(&["250 2.0.0 Ok"]));
    assert_eq!(h.send("DATA\r\n"), lines(&["554 5.5.1 Error: no valid recipients"]));
    h.send("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    assert_eq!(h.send("EHLO again.example\r\n"), ehlo_reply());
    assert_eq!(h.send("RCPT TO:<c@d>\r\n"), lines(&["503 5.5.1 Error: need MAIL command"]));
}

#[test]
fn extension_parameters_need_ehlo() {
    // RFC 1869 / RFC 5321 §4.1.1.11: nothing was announced after HELO.
    let mut h = Harness::new(config());
    h.send("HELO client\r\n");
    assert_eq!(h.send("MAIL FROM:<a@b> SMTPUTF8\r\n"), lines(&["555 5.5.4 Unsupported parameter: SMTPUTF8"]));
    assert_eq!(h.send("MAIL FROM:<a@b> BODY=8BITMIME\r\n"), lines(&["555 5.5.4 Unsupported parameter: BODY"]));
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["250 2.1.0 Ok"]));
    assert_eq!(h.send("RCPT TO:<c@d> NOTIFY=NEVER\r\n"), lines(&["555 5.5.4 Unsupported parameter: NOTIFY"]));
    assert_eq!(h.send("RCPT TO:<c@d>\r\n"), lines(&["250 2.1.5 Ok"]));
    h.send("DATA\r\nx\r\n.\r\n");
    assert!(!h.messages[0].0.esmtp);
    assert_eq!(h.messages[0].0.helo, "client");
}

#[test]
fn smtputf8_transaction_allows_utf8_recipients() {
    let mut h = greeted(config());
    assert_eq!(
        h.send("MAIL FROM:<a@b>\r\nRCPT TO:<jö@b>\r\n"),
        lines(&["250 2.1.0 Ok", "553 5.6.7 Non-ASCII address requires SMTPUTF8"])
    );
    h.send("RSET\r\n");
    assert_eq!(h.send("MAIL FROM:<ä@b> SMTPUTF8\r\nRCPT TO:<jö@b>\r\n"), lines(&["250 2.1.0 Ok", "250 2.1.5 Ok"]));
}

#[test]
fn bad_addresses() {
    let mut h = greeted(config());
    assert_eq!(h.send("MAIL FROM:<a@@b>\r\n"), lines(&["501 5.1.7 Bad sender address syntax"]));
    assert_eq!(h.send("MAIL FROM:a@b\r\n"), lines(&["501 5.5.4 Syntax: MAIL FROM:<address>"]));
    assert_eq!(h.send("MAIL FROM: <a@b>\r\n"), lines(&["250 2.1.0 Ok"]));
    assert_eq!(h.send("RCPT TO:<>\r\n"), lines(&["501 5.1.3 Bad recipient address syntax"]));
    assert_eq!(h.send("RCPT TO: <c@d>\r\n"), lines(&["250 2.1.5 Ok"]));
}

#[test]
fn declared_size_over_the_limit() {
    // RFC 1870 §6: refused without asking the I/O layer.
    let mut h = greeted(SessionConfig { max_message_size: 1000, ..config() });
    let out = h.send("MAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<a@b> SIZE=1000\r\n");
    assert_eq!(out, lines(&["552 5.3.4 Message size exceeds fixed maximum message size", "250 2.1.0 Ok"]));
    assert_eq!(h.events, ["mail"]);
    // No limit configured: any size is fine.
    let mut h = greeted(SessionConfig { max_message_size: 0, ..config() });
    assert_eq!(h.send(format!("MAIL FROM:<a@b> SIZE={}\r\n", u64::MAX)), lines(&["250 2.1.0 Ok"]));
}

#[test]
fn auth_required_before_mail() {
    let cfg = SessionConfig { auth_required: true, auth_enabled: true, starttls_available: true, ..config() };
    let mut h = greeted(cfg.clone());
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["530 5.7.0 Must issue a STARTTLS command first"]));
    let mut h = greeted(SessionConfig { tls_active: true, ..cfg });
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["530 5.7.0 Authentication required"]));
    // AUTH PLAIN \0user\0secret
    assert_eq!(h.send("AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"), lines(&["235 2.7.0 Authentication successful"]));
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["250 2.1.0 Ok"]));
    assert_eq!(h.session.auth_user(), Some("user"));
}

#[test]
fn unanswered_question_is_asked_again() {
    let mut s = facteur_smtp_proto::Session::new(config());
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b> SIZE=5\r\nRCPT TO:<c@d>\r\n");
    let Event::Mail { from, params } = s.poll() else { panic!("expected Mail") };
    assert_eq!(from, Some(Address { local: "a".into(), domain: "b".into() }));
    assert_eq!(params, MailParams { size: Some(5), ..MailParams::default() });
    // Caller bug: polling again without an answer repeats the question.
    assert!(matches!(s.poll(), Event::Mail { from: Some(_), .. }));
    assert!(matches!(s.poll(), Event::Mail { .. }));
    // Wrong answers are ignored.
    s.rcpt_result(Ok(()));
    s.message_result(Reply::new(250, (2, 0, 0), "Ok"));
    s.auth_result(Ok("x".into()));
    assert_eq!(s.auth_user(), None);
    assert!(matches!(s.poll(), Event::Mail { .. }));
    s.mail_result(Ok(()));
    assert!(matches!(s.poll(), Event::Rcpt { .. }));
    s.rcpt_result(Ok(()));
    s.feed(b"DATA\r\nhello\r\n.\r\n");
    let Event::Message { envelope, data } = s.poll() else { panic!("expected Message") };
    assert_eq!(data, b"hello\r\n");
    let Event::Message { envelope: again, data: empty } = s.poll() else { panic!("expected Message") };
    assert_eq!(again, envelope);
    assert!(empty.is_empty());
    s.message_result(Reply::new(250, (2, 0, 0), "Ok: queued as X"));
    assert!(matches!(s.poll(), Event::NeedInput));
    let out = String::from_utf8(s.take_output()).expect("utf8");
    assert!(out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as X\r\n"), "{out}");
    assert!(s.take_output().is_empty());
}

#[test]
fn timeout_and_shutdown() {
    let mut h = in_transaction(config());
    h.send("DATA\r\npartial");
    assert!(h.session.in_data());
    h.session.timeout();
    h.run();
    assert!(h.transcript().ends_with("421 4.4.2 mx.example Error: timeout exceeded\r\n"));
    assert!(h.closed);
    // A second close request adds nothing.
    h.session.shutdown();
    assert!(h.session.take_output().is_empty());

    let mut h = Harness::new(config());
    h.session.shutdown();
    h.run();
    assert_eq!(h.transcript(), greeting() + &lines(&["421 4.3.2 mx.example Service shutting down"]));
    assert!(matches!(h.session.poll(), Event::Close));
}

#[test]
fn vrfy_and_help_need_no_greeting_and_keep_the_transaction() {
    let mut h = in_transaction(config());
    h.send("VRFY x\r\nHELP\r\nNOOP\r\n");
    assert_eq!(h.send("DATA\r\n"), lines(&["354 End data with <CR><LF>.<CR><LF>"]));
}
