//! Byte scripts for one transaction without PIPELINING: one command per
//! write, every outcome rule, 421 and unexpected replies.

mod client_common;

use client_common::*;
use facteur_smtp_proto::client::{Capabilities, RcptOutcome, Transaction, TxResult, TxStep};
use facteur_smtp_proto::{BodyType, Reply};

#[test]
fn plain_smtp_server() {
    let caps = Capabilities::default();
    let r = run(
        envelope("a@example.org", &["b@example.net"]),
        &caps,
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         S: 250 2.1.0 Ok
         C: RCPT TO:<b@example.net>
         S: 250 2.1.5 Ok
         C: DATA
         S: 354 End data with <CR><LF>.<CR><LF>
         C: Subject: test
         C:
         C: Hello.
         C: .
         S: 250 2.0.0 Ok: queued as 1234",
    );
    assert_eq!(summary(&r), ["D 250 2.0.0"]);
    assert!(r.reusable);
    let RcptOutcome::Delivered(reply) = &r.outcomes[0] else { panic!() };
    assert_eq!(reply.lines, ["Ok: queued as 1234"]);
}

#[test]
fn null_sender() {
    let r = run(
        envelope("", &["b@example.net"]),
        &Capabilities::default(),
        b"",
        "C: MAIL FROM:<>
         S: 250 Ok
         C: RCPT TO:<b@example.net>
         S: 250 Ok
         C: DATA
         S: 354 go
         C: .
         S: 250 Ok",
    );
    assert_eq!(summary(&r), ["D 250"]);
}

#[test]
fn recipients_decided_one_by_one() {
    let r = run(
        envelope("a@example.org", &["ok@example.net", "later@example.net", "never@example.net", "ok2@example.net"]),
        &Capabilities::default(),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         S: 250 2.1.0 Ok
         C: RCPT TO:<ok@example.net>
         S: 250 2.1.5 Ok
         C: RCPT TO:<later@example.net>
         S: 450 4.2.1 Mailbox busy
         C: RCPT TO:<never@example.net>
         S: 550 5.1.1 No such user
         C: RCPT TO:<ok2@example.net>
         S: 251 2.1.5 User not local; will forward
         C: DATA
         S: 354 go
         C: Subject: test
         C:
         C: Hello.
         C: .
         S: 250 2.0.0 Ok",
    );
    assert_eq!(summary(&r), ["D 250 2.0.0", "T 450 4.2.1", "P 550 5.1.1", "D 250 2.0.0"]);
    assert!(r.reusable);
    // The refusal is the server's own reply, text and all.
    assert_eq!(reply_of(&r.outcomes[2]).lines, ["No such user"]);
}

#[test]
fn mail_refused() {
    for (reply, expected) in [("451 4.3.0 Try later", "T 451 4.3.0"), ("550 5.7.1 Go away", "P 550 5.7.1")] {
        let script = format!("C: MAIL FROM:<a@example.org>\nS: {reply}");
        let r = run(
            envelope("a@example.org", &["b@example.net", "c@example.net"]),
            &Capabilities::default(),
            MESSAGE,
            &script,
        );
        assert_eq!(summary(&r), [expected, expected]);
        // No transaction was opened: nothing to reset.
        assert!(r.reusable);
    }
}

#[test]
fn no_recipient_accepted_resets() {
    let r = run(
        envelope("a@example.org", &["b@example.net", "c@example.net"]),
        &Capabilities::default(),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         S: 250 Ok
         C: RCPT TO:<b@example.net>
         S: 550 5.1.1 No
         C: RCPT TO:<c@example.net>
         S: 452 4.5.3 Too many
         C: RSET
         S: 250 2.0.0 Ok",
    );
    assert_eq!(summary(&r), ["P 550 5.1.1", "T 452 4.5.3"]);
    assert!(r.reusable);

    // An RSET that fails leaves the connection in doubt.
    let r = run(
        envelope("a@example.org", &["b@example.net"]),
        &Capabilities::default(),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         S: 250 Ok
         C: RCPT TO:<b@example.net>
         S: 550 5.1.1 No
         C: RSET
         S: 500 5.5.2 What?",
    );
    assert_eq!(summary(&r), ["P 550 5.1.1"]);
    assert!(!r.reusable);
}

#[test]
fn data_refused_resets() {
    for (reply, expected) in [("451 4.3.0 Later", "T 451 4.3.0"), ("554 5.5.1 No valid recipients", "P 554 5.5.1")] {
        let script = format!(
            "C: MAIL FROM:<a@example.org>
             S: 250 Ok
             C: RCPT TO:<b@example.net>
             S: 250 Ok
             C: RCPT TO:<c@example.net>
             S: 550 5.1.1 No
             C: DATA
             S: {reply}
             C: RSET
             S: 250 Ok"
        );
        let r = run(
            envelope("a@example.org", &["b@example.net", "c@example.net"]),
            &Capabilities::default(),
            MESSAGE,
            &script,
        );
        assert_eq!(summary(&r), [expected, "P 550 5.1.1"]);
        assert!(r.reusable);
    }
}

#[test]
fn final_reply_decides_every_accepted_recipient() {
    for (reply, expected) in
        [("250 2.0.0 Ok", "D 250 2.0.0"), ("451 4.3.0 Disk full", "T 451 4.3.0"), ("554 5.6.0 Spam", "P 554 5.6.0")]
    {
        let script = format!(
            "C: MAIL FROM:<a@example.org>
             S: 250 Ok
             C: RCPT TO:<b@example.net>
             S: 250 Ok
             C: RCPT TO:<c@example.net>
             S: 450 4.2.0 Greylisted
             C: RCPT TO:<d@example.net>
             S: 250 Ok
             C: DATA
             S: 354 go
             {MESSAGE_DATA}
             S: {reply}"
        );
        let to = ["b@example.net", "c@example.net", "d@example.net"];
        let r = run(envelope("a@example.org", &to), &Capabilities::default(), MESSAGE, &script);
        assert_eq!(summary(&r), [expected, "T 450 4.2.0", expected]);
        // After the end of data the transaction is over either way.
        assert!(r.reusable);
    }
}

#[test]
fn service_closing_defers_everything_open() {
    // 421 to a RCPT: the accepted one and the unsent one are deferred.
    let r = run(
        envelope("a@example.org", &["b@example.net", "c@example.net", "d@example.net", "e@example.net"]),
        &Capabilities::default(),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         S: 250 Ok
         C: RCPT TO:<b@example.net>
         S: 250 Ok
         C: RCPT TO:<c@example.net>
         S: 550 5.1.1 No
         C: RCPT TO:<d@example.net>
         S: 421 4.4.2 Timeout, closing",
    );
    assert_eq!(summary(&r), ["T 421 4.4.2", "P 550 5.1.1", "T 421 4.4.2", "T 421 4.4.2"]);
    assert!(!r.reusable);

    // 421 after the data.
    let script = format!(
        "C: MAIL FROM:<a@example.org>
         S: 250 Ok
         C: RCPT TO:<b@example.net>
         S: 250 Ok
         C: DATA
         S: 354 go
         {MESSAGE_DATA}
         S: 421 4.3.2 Shutting down"
    );
    let r = run(envelope("a@example.org", &["b@example.net"]), &Capabilities::default(), MESSAGE, &script);
    assert_eq!(summary(&r), ["T 421 4.3.2"]);
    assert!(!r.reusable);

    // 421 to MAIL.
    let r = run(
        envelope("a@example.org", &["b@example.net"]),
        &Capabilities::default(),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>\nS: 421 Bye",
    );
    assert_eq!(summary(&r), ["T 421"]);
    assert!(!r.reusable);

    // 421 to RSET: outcomes stand, the connection is gone.
    let r = run(
        envelope("a@example.org", &["b@example.net"]),
        &Capabilities::default(),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         S: 250 Ok
         C: RCPT TO:<b@example.net>
         S: 550 No
         C: RSET
         S: 421 Bye",
    );
    assert_eq!(summary(&r), ["P 550"]);
    assert!(!r.reusable);
}

/// Feeds replies directly (no script) and returns the final step.
fn drive(caps: &Capabilities, to: &[&str], replies: &[Reply]) -> TxStep {
    let mut tx = Transaction::new(envelope("a@example.org", to), caps).expect("starts");
    let mut step = TxStep::Continue;
    for reply in replies {
        step = tx.on_reply(reply.clone());
    }
    step
}

fn done(step: TxStep) -> TxResult {
    match step {
        TxStep::Done(r) => r,
        other => panic!("not done: {other:?}"),
    }
}

#[test]
fn unexpected_replies_defer_and_drop_the_connection() {
    let ok = Reply::new(250, (2, 0, 0), "Ok");
    let go = Reply::plain(354, "go");
    let caps = Capabilities::default();
    // 354 to MAIL.
    let r = done(drive(&caps, &["b@example.net"], std::slice::from_ref(&go)));
    assert_eq!(summary(&r), ["T 451 4.5.0"]);
    assert!(!r.reusable);
    let text = &reply_of(&r.outcomes[0]).lines[0];
    assert_eq!(text, "facteur: unexpected reply to MAIL: 354 go");
    // 354 to RCPT; the first recipient was accepted, so it is deferred too.
    let r = done(drive(&caps, &["b@example.net", "c@example.net"], &[ok.clone(), ok.clone(), go.clone()]));
    assert_eq!(summary(&r), ["T 451 4.5.0", "T 451 4.5.0"]);
    assert!(!r.reusable);
    // A 2xx to DATA, a 354 to the end of data, codes outside 2xx-5xx.
    for replies in [
        vec![ok.clone(), ok.clone(), ok.clone()],
        vec![ok.clone(), ok.clone(), go.clone(), go.clone()],
        vec![Reply::plain(199, "what")],
        vec![ok.clone(), Reply::plain(600, "what")],
    ] {
        let r = done(drive(&caps, &["b@example.net"], &replies));
        assert_eq!(summary(&r), ["T 451 4.5.0"], "{replies:?}");
        assert!(!r.reusable);
    }
    // A refused recipient stays refused when a later reply is unexpected.
    let r = done(drive(&caps, &["b@example.net", "c@example.net"], &[ok.clone(), Reply::plain(550, "no"), go]));
    assert_eq!(summary(&r), ["P 550", "T 451 4.5.0"]);
}

#[test]
fn connection_lost_keeps_what_is_known() {
    let mut tx = Transaction::new(
        envelope("a@example.org", &["b@example.net", "c@example.net", "d@example.net"]),
        &Capabilities::default(),
    )
    .unwrap();
    assert_eq!(tx.on_reply(Reply::new(250, (2, 1, 0), "Ok")), TxStep::Continue);
    assert_eq!(tx.on_reply(Reply::new(250, (2, 1, 5), "Ok")), TxStep::Continue);
    assert_eq!(tx.on_reply(Reply::new(550, (5, 1, 1), "No")), TxStep::Continue);
    // The connection drops while the third RCPT is in flight.
    let lost = Reply::new(451, (4, 4, 2), "facteur: connection lost");
    let r = tx.connection_lost(lost.clone());
    assert_eq!(summary(&r), ["T 451 4.4.2", "P 550 5.1.1", "T 451 4.4.2"]);
    assert!(!r.reusable);
    assert!(tx.take_output().is_empty());
    // Whatever its code, the given reply only defers.
    let mut tx = Transaction::new(envelope("a@example.org", &["b@example.net"]), &Capabilities::default()).unwrap();
    let r = tx.connection_lost(Reply::new(554, (5, 0, 0), "x"));
    assert_eq!(summary(&r), ["T 554 5.0.0"]);
    // After Done the outcomes stand; only the connection is gone.
    let mut tx = Transaction::new(envelope("a@example.org", &["b@example.net"]), &Capabilities::default()).unwrap();
    let done = done(tx.on_reply(Reply::new(550, (5, 7, 1), "No")));
    assert!(done.reusable);
    let r = tx.connection_lost(lost);
    assert_eq!(r, TxResult { reusable: false, ..done });
}

#[test]
fn unexpected_reply_text_is_bounded() {
    let long = Reply::plain(354, "x".repeat(3000));
    let r = done(drive(&Capabilities::default(), &["b@example.net"], &[long]));
    let text = &reply_of(&r.outcomes[0]).lines[0];
    assert!(text.len() < 300, "{}", text.len());
}

#[test]
fn chunking_without_pipelining() {
    let caps = ehlo(&["CHUNKING"]);
    let r = run(
        envelope("a@example.org", &["b@example.net", "c@example.net"]),
        &caps,
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         S: 250 Ok
         C: RCPT TO:<b@example.net>
         S: 250 Ok
         C: RCPT TO:<c@example.net>
         S: 550 5.1.1 No
         C: BDAT 25 LAST
         C: Subject: test
         C:
         C: Hello.
         S: 250 2.0.0 Ok: 25 octets",
    );
    assert_eq!(summary(&r), ["D 250 2.0.0", "P 550 5.1.1"]);
    assert!(r.reusable);
}

#[test]
fn refused_chunk_is_followed_by_rset() {
    // RFC 3030 §2: after a refused BDAT the state is unknown until RSET.
    let caps = ehlo(&["CHUNKING"]);
    let r = run(
        envelope("a@example.org", &["b@example.net"]),
        &caps,
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         S: 250 Ok
         C: RCPT TO:<b@example.net>
         S: 250 Ok
         C: BDAT 25 LAST
         C: Subject: test
         C:
         C: Hello.
         S: 552 5.3.4 Too big
         C: RSET
         S: 250 Ok",
    );
    assert_eq!(summary(&r), ["P 552 5.3.4"]);
    assert!(r.reusable);
}

#[test]
fn eightbitmime_parameter() {
    let mut env = envelope("a@example.org", &["b@example.net"]);
    env.body = Some(BodyType::EightBitMime);
    let mut tx = Transaction::new(env.clone(), &ehlo(&["8BITMIME"])).unwrap();
    assert_eq!(show(&tx.take_output()), "MAIL FROM:<a@example.org> BODY=8BITMIME\r\n");
    // Without 8BITMIME the message goes without BODY= (docs/quirks.md).
    let mut tx = Transaction::new(env.clone(), &Capabilities::default()).unwrap();
    assert_eq!(show(&tx.take_output()), "MAIL FROM:<a@example.org>\r\n");
    env.body = Some(BodyType::SevenBit);
    let mut tx = Transaction::new(env, &ehlo(&["8BITMIME"])).unwrap();
    assert_eq!(show(&tx.take_output()), "MAIL FROM:<a@example.org> BODY=7BIT\r\n");
}

#[test]
fn size_parameter_and_limit() {
    let env = envelope("a@example.org", &["b@example.net", "c@example.net"]);
    let n = MESSAGE.len();
    // SIZE without a limit, and a limit the message fits exactly.
    for caps in [ehlo(&["SIZE"]), ehlo(&[&format!("SIZE {n}")]), ehlo(&["SIZE 0"])] {
        let mut tx = Transaction::new(env.clone(), &caps).unwrap();
        assert_eq!(show(&tx.take_output()), format!("MAIL FROM:<a@example.org> SIZE={n}\r\n"));
    }
    // One octet over: refused here, nothing sent (RFC 1870 §6).
    let Err(r) = Transaction::new(env, &ehlo(&[&format!("SIZE {}", n - 1)])) else { panic!("accepted") };
    assert_eq!(summary(&r), ["P 552 5.3.4", "P 552 5.3.4"]);
    assert!(r.reusable);
    assert!(reply_of(&r.outcomes[0]).lines[0].starts_with("facteur: "));
}

#[test]
fn smtputf8_precheck() {
    let utf8_rcpt = envelope("a@example.org", &["b@example.net", "jos\u{e9}@example.net"]);
    let mut utf8_message = envelope("a@example.org", &["b@example.net"]);
    utf8_message.smtputf8 = true;
    let utf8_sender = envelope("\u{e9}@example.org", &["b@example.net"]);
    for env in [utf8_rcpt, utf8_message, utf8_sender] {
        let Err(r) = Transaction::new(env.clone(), &ehlo(&["PIPELINING", "8BITMIME"])) else { panic!("accepted") };
        assert!(summary(&r).iter().all(|s| s == "P 553 5.6.7"), "{r:?}");
        assert!(r.reusable);
        let text = &reply_of(&r.outcomes[0]).lines[0];
        assert_eq!(text, "facteur: recipient server does not support SMTPUTF8");

        let mut tx = Transaction::new(env.clone(), &ehlo(&["SMTPUTF8"])).unwrap();
        let mail = show(&tx.take_output());
        assert!(mail.ends_with(" SMTPUTF8\r\n"), "{mail}");
    }
    // An ASCII message never carries the parameter.
    let mut tx = Transaction::new(envelope("a@example.org", &["b@example.net"]), &ehlo(&["SMTPUTF8"])).unwrap();
    assert_eq!(show(&tx.take_output()), "MAIL FROM:<a@example.org>\r\n");
}

#[test]
fn invalid_paths_are_refused_locally() {
    let to = ["b@example.net", "bad address", "x@y>\r\nRSET", "c@example.net"];
    let r = run(
        envelope("a@example.org", &to),
        &Capabilities::default(),
        MESSAGE,
        "C: MAIL FROM:<a@example.org>
         S: 250 Ok
         C: RCPT TO:<b@example.net>
         S: 250 Ok
         C: RCPT TO:<c@example.net>
         S: 250 Ok
         C: DATA
         S: 354 go
         C: Subject: test
         C:
         C: Hello.
         C: .
         S: 250 Ok",
    );
    assert_eq!(summary(&r), ["D 250", "P 553 5.1.3", "P 553 5.1.3", "D 250"]);
    assert!(reply_of(&r.outcomes[1]).lines[0].starts_with("facteur: "));

    let Err(r) = Transaction::new(envelope("<a@example.org>", &["b@example.net"]), &Capabilities::default()) else {
        panic!("accepted")
    };
    assert_eq!(summary(&r), ["P 553 5.1.7"]);
    assert!(r.reusable);

    // Paths are re-printed canonically: a quoted local part stays quoted
    // only when it must, a source route is dropped (RFC 5321 §4.1.1.3).
    let env = envelope("\"john\"@example.org", &["@relay.example:\"a b\"@example.net"]);
    let mut tx = Transaction::new(env, &ehlo(&["PIPELINING"])).unwrap();
    assert_eq!(show(&tx.take_output()), "MAIL FROM:<john@example.org>\r\nRCPT TO:<\"a b\"@example.net>\r\nDATA\r\n");
}

#[test]
fn nothing_to_send() {
    let Err(r) = Transaction::new(envelope("a@example.org", &[]), &Capabilities::default()) else { panic!("accepted") };
    assert_eq!(r, TxResult { outcomes: vec![], reusable: true });
}
