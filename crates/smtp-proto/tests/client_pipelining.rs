//! Byte scripts with PIPELINING (RFC 2920), CHUNKING (RFC 3030) and the
//! DSN parameters (RFC 3461): groups of commands, every reply still read.

mod client_common;

use client_common::*;
use facteur_smtp_proto::client::Transaction;
use facteur_smtp_proto::{BodyType, Notify, Ret};

#[test]
fn one_group_then_the_body() {
    let r = run(
        envelope("a@example.org", &["b@example.net", "c@example.net", "d@example.net"]),
        &ehlo(&["PIPELINING"]),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: RCPT TO:<b@example.net>
         C: RCPT TO:<c@example.net>
         C: RCPT TO:<d@example.net>
         C: DATA
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 450 4.7.1 Greylisted
         S: 550 5.1.1 Unknown
         S: 354 go
         C: Subject: test
         C:
         C: Hello.
         C: .
         S: 250 2.0.0 Ok",
    );
    assert_eq!(summary(&r), ["D 250 2.0.0", "T 450 4.7.1", "P 550 5.1.1"]);
    assert!(r.reusable);
}

#[test]
fn replies_arriving_in_several_reads() {
    // "--": the server's next read, with nothing written in between.
    let r = run(
        envelope("a@example.org", &["b@example.net", "c@example.net"]),
        &ehlo(&["PIPELINING"]),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: RCPT TO:<b@example.net>
         C: RCPT TO:<c@example.net>
         C: DATA
         S: 250 Ok
         --
         S: 250 Ok
         --
         S: 550 5.1.1 No
         S: 354 go
         C: Subject: test
         C:
         C: Hello.
         C: .
         S: 250 Ok",
    );
    assert_eq!(summary(&r), ["D 250", "P 550 5.1.1"]);
}

#[test]
fn refused_mail_still_reads_every_reply() {
    for (mail, expected) in [("451 4.3.0 Later", "T 451 4.3.0"), ("550 5.7.1 No", "P 550 5.7.1")] {
        let script = format!(
            "C: MAIL FROM:<a@example.org>
             C: RCPT TO:<b@example.net>
             C: RCPT TO:<c@example.net>
             C: DATA
             S: {mail}
             S: 503 5.5.1 Need MAIL
             S: 503 5.5.1 Need MAIL
             S: 503 5.5.1 Need RCPT"
        );
        let to = ["b@example.net", "c@example.net"];
        let r = run(envelope("a@example.org", &to), &ehlo(&["PIPELINING"]), MESSAGE, &script);
        assert_eq!(summary(&r), [expected, expected]);
        assert!(r.reusable);
    }
}

#[test]
fn no_recipient_accepted_data_reply_ignored_then_rset() {
    for data in ["554 5.5.1 No valid recipients", "503 5.5.1 Need RCPT", "451 4.3.0 Later"] {
        let script = format!(
            "C: MAIL FROM:<a@example.org>
             C: RCPT TO:<b@example.net>
             C: RCPT TO:<c@example.net>
             C: DATA
             S: 250 Ok
             S: 550 5.1.1 No
             S: 450 4.2.1 Busy
             S: {data}
             C: RSET
             S: 250 Ok"
        );
        let to = ["b@example.net", "c@example.net"];
        let r = run(envelope("a@example.org", &to), &ehlo(&["PIPELINING"]), MESSAGE, &script);
        assert_eq!(summary(&r), ["P 550 5.1.1", "T 450 4.2.1"]);
        assert!(r.reusable);
    }
}

#[test]
fn data_accepted_for_nobody_gets_a_lone_dot() {
    // RFC 2920 §3.1: some servers answer 354 although every RCPT failed.
    let r = run(
        envelope("a@example.org", &["b@example.net"]),
        &ehlo(&["PIPELINING"]),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: RCPT TO:<b@example.net>
         C: DATA
         S: 250 Ok
         S: 550 5.1.1 No
         S: 354 go
         C: .
         S: 554 5.5.1 No valid recipients
         C: RSET
         S: 250 Ok",
    );
    assert_eq!(summary(&r), ["P 550 5.1.1"]);
    assert!(r.reusable);
}

#[test]
fn refused_data_with_accepted_recipients() {
    let r = run(
        envelope("a@example.org", &["b@example.net", "c@example.net"]),
        &ehlo(&["PIPELINING"]),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: RCPT TO:<b@example.net>
         C: RCPT TO:<c@example.net>
         C: DATA
         S: 250 Ok
         S: 250 Ok
         S: 550 5.1.1 No
         S: 451 4.3.0 Try later
         C: RSET
         S: 250 Ok",
    );
    assert_eq!(summary(&r), ["T 451 4.3.0", "P 550 5.1.1"]);
    assert!(r.reusable);
}

#[test]
fn service_closing_in_the_middle_of_a_group() {
    let r = run(
        envelope("a@example.org", &["b@example.net", "c@example.net", "d@example.net"]),
        &ehlo(&["PIPELINING"]),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: RCPT TO:<b@example.net>
         C: RCPT TO:<c@example.net>
         C: RCPT TO:<d@example.net>
         C: DATA
         S: 250 Ok
         S: 550 5.1.1 No
         S: 421 4.7.0 Too many errors",
    );
    assert_eq!(summary(&r), ["P 550 5.1.1", "T 421 4.7.0", "T 421 4.7.0"]);
    assert!(!r.reusable);
}

#[test]
fn chunking_waits_for_the_rcpt_replies() {
    let caps = ehlo(&["PIPELINING", "CHUNKING"]);
    let r = run(
        envelope("a@example.org", &["b@example.net", "c@example.net"]),
        &caps,
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: RCPT TO:<b@example.net>
         C: RCPT TO:<c@example.net>
         S: 250 Ok
         S: 250 Ok
         S: 250 Ok
         C: BDAT 25 LAST
         C: Subject: test
         C:
         C: Hello.
         S: 250 2.0.0 Ok",
    );
    assert_eq!(summary(&r), ["D 250 2.0.0", "D 250 2.0.0"]);
    assert!(r.reusable);

    // No recipient: no chunk is sent, only RSET.
    let r = run(
        envelope("a@example.org", &["b@example.net"]),
        &caps,
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: RCPT TO:<b@example.net>
         S: 250 Ok
         S: 550 5.1.1 No
         C: RSET
         S: 250 Ok",
    );
    assert_eq!(summary(&r), ["P 550 5.1.1"]);

    // MAIL refused: the RCPT replies are read, nothing else is sent.
    let r = run(
        envelope("a@example.org", &["b@example.net"]),
        &caps,
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: RCPT TO:<b@example.net>
         S: 452 4.3.1 Insufficient storage
         S: 503 5.5.1 Need MAIL",
    );
    assert_eq!(summary(&r), ["T 452 4.3.1"]);
    assert!(r.reusable);
}

#[test]
fn unexpected_reply_in_a_group() {
    let r = run(
        envelope("a@example.org", &["b@example.net", "c@example.net"]),
        &ehlo(&["PIPELINING"]),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: RCPT TO:<b@example.net>
         C: RCPT TO:<c@example.net>
         C: DATA
         S: 250 Ok
         S: 354 go",
    );
    assert_eq!(summary(&r), ["T 451 4.5.0", "T 451 4.5.0"]);
    assert!(!r.reusable);
}

fn dsn_envelope() -> facteur_smtp_proto::client::OutboundEnvelope {
    let mut env = envelope("a@example.org", &["b@example.net", "c@example.net", "d@example.net"]);
    env.ret = Some(Ret::Hdrs);
    env.envid = Some("QQ+1=2 x".into());
    env.recipients[0].notify = Some(Notify { success: true, failure: true, ..Notify::default() });
    env.recipients[0].orcpt = Some("rfc822;B+x@example.net".into());
    env.recipients[1].notify = Some(Notify { never: true, ..Notify::default() });
    env.recipients[2].notify = Some(Notify { delay: true, ..Notify::default() });
    env.recipients[2].orcpt = Some("no semicolon".into());
    env
}

#[test]
fn dsn_parameters_only_to_a_dsn_server() {
    let mut tx = Transaction::new(dsn_envelope(), &ehlo(&["PIPELINING", "DSN"])).unwrap();
    assert_eq!(
        show(&tx.take_output()),
        "MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ+2B1+3D2+20x\r\n\
         RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+2Bx@example.net\r\n\
         RCPT TO:<c@example.net> NOTIFY=NEVER\r\n\
         RCPT TO:<d@example.net> NOTIFY=DELAY\r\n\
         DATA\r\n"
    );
    let mut tx = Transaction::new(dsn_envelope(), &ehlo(&["PIPELINING"])).unwrap();
    assert_eq!(
        show(&tx.take_output()),
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n\
         RCPT TO:<d@example.net>\r\nDATA\r\n"
    );
}

#[test]
fn overlong_dsn_values_are_left_out() {
    // RFC 3461 §4.4: ENVID at most 100 characters; §4.2: ORCPT at most 500.
    let mut env = envelope("a@example.org", &["b@example.net"]);
    env.envid = Some("=".repeat(34)); // 102 characters as xtext
    env.recipients[0].orcpt = Some(format!("rfc822;{}@example.net", "+".repeat(163)));
    let mut tx = Transaction::new(env.clone(), &ehlo(&["DSN"])).unwrap();
    assert_eq!(show(&tx.take_output()), "MAIL FROM:<a@example.org>\r\n");
    env.envid = Some("=".repeat(33));
    env.recipients[0].orcpt = Some(format!("rfc822;{}@example.net", "+".repeat(160)));
    let mut tx = Transaction::new(env, &ehlo(&["DSN"])).unwrap();
    let mail = show(&tx.take_output());
    assert_eq!(mail, format!("MAIL FROM:<a@example.org> ENVID={}\r\n", "+3D".repeat(33)));
    assert_eq!(tx.on_reply(facteur_smtp_proto::Reply::plain(250, "Ok")), facteur_smtp_proto::client::TxStep::Continue);
    let rcpt = show(&tx.take_output());
    let orcpt = rcpt.split_once("ORCPT=").unwrap().1.trim_end();
    assert_eq!(orcpt.len(), 7 + 480 + 12);
}

#[test]
fn every_extension_at_once() {
    let caps = ehlo(&["PIPELINING", "SIZE 1000000", "8BITMIME", "SMTPUTF8", "DSN", "CHUNKING", "ENHANCEDSTATUSCODES"]);
    let mut env = envelope("a@example.org", &["j\u{f6}rg@example.net"]);
    env.body = Some(BodyType::EightBitMime);
    env.ret = Some(Ret::Full);
    env.recipients[0].notify = Some(Notify { failure: true, ..Notify::default() });
    let r = run(
        env,
        &caps,
        MESSAGE,
        "C: MAIL FROM:<a@example.org> SIZE=25 BODY=8BITMIME SMTPUTF8 RET=FULL
         C: RCPT TO:<j\u{f6}rg@example.net> NOTIFY=FAILURE
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         C: BDAT 25 LAST
         C: Subject: test
         C:
         C: Hello.
         S: 250 2.0.0 Ok",
    );
    assert_eq!(summary(&r), ["D 250 2.0.0"]);
}

#[test]
#[should_panic(expected = "client bytes")]
fn the_harness_checks_client_bytes() {
    run(
        envelope("a@example.org", &["b@example.net"]),
        &ehlo(&["PIPELINING"]),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         C: DATA
         S: 250 Ok",
    );
}
