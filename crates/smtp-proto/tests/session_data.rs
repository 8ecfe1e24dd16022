//! Byte scripts for DATA: end of data, dot-unstuffing, SMTP smuggling,
//! line and size limits, incremental reading, pipelining.

mod common;

use common::*;
use facteur_smtp_proto::SessionConfig;

const GO_AHEAD: &str = "354 End data with <CR><LF>.<CR><LF>";
const SMUGGLING: &str = "554 5.5.2 Error: bare CR or LF in message data (RFC 5321 §2.3.8)";

#[test]
fn dot_unstuffing() {
    let mut h = in_transaction(config());
    let out = h.send("DATA\r\n..leading dot\r\n...\r\n.x\r\nmid.dle\r\n..\r\n.\r\n");
    assert_eq!(out, lines(&[GO_AHEAD, "250 2.0.0 Ok: queued as Q1"]));
    assert_eq!(h.messages[0].1, b".leading dot\r\n..\r\nx\r\nmid.dle\r\n.\r\n");
}

#[test]
fn end_of_data_right_after_data() {
    // DATA's own CRLF precedes the "." line: an empty message.
    let mut h = in_transaction(config());
    assert_eq!(h.send("DATA\r\n.\r\n"), lines(&[GO_AHEAD, "250 2.0.0 Ok: queued as Q1"]));
    assert_eq!(h.messages[0].1, b"");
}

#[test]
fn only_crlf_dot_crlf_ends_data() {
    let mut h = in_transaction(config());
    // ". \r\n", " .\r\n" and ".." are content; the message ends at the real end.
    let out = h.send("DATA\r\na\r\n. \r\n .\r\n..\r\n.\r\n");
    assert_eq!(out, lines(&[GO_AHEAD, "250 2.0.0 Ok: queued as Q1"]));
    assert_eq!(h.messages[0].1, b"a\r\n \r\n .\r\n.\r\n");
}

/// The four smuggling forms of CVE-2023-51764 and relatives: each is
/// refused, and what follows it is content, never commands.
#[test]
fn smuggling_forms_are_refused() {
    for form in ["\n.\n", "\r.\n", "\n.\r\n", "\r.\r\n"] {
        let mut h = in_transaction(config());
        let smuggled = format!(
            "DATA\r\nSubject: real\r\n\r\nhello{form}MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\n\
             DATA\r\nSubject: smuggled\r\n\r\n.\r\nNOOP\r\n"
        );
        let out = h.send(&smuggled);
        // The NOOP after the true end is a command.
        assert_eq!(out, lines(&[GO_AHEAD, SMUGGLING, "250 2.0.0 Ok"]), "{form:?}");
        assert!(h.messages.is_empty(), "{form:?}");
        assert_eq!(h.events, ["mail", "rcpt"], "{form:?}");
        // The transaction is over.
        assert_eq!(h.send("DATA\r\n"), lines(&["554 5.5.1 Error: no valid recipients"]), "{form:?}");
    }
}

#[test]
fn bare_cr_and_lf_inside_lines_are_refused() {
    for body in ["a\rb\r\n", "a\nb\r\n", "a\r\r\n", "\n", "\r", ".\r.\r\n", "x\r\n.\n"] {
        let mut h = in_transaction(config());
        let out = h.send(format!("DATA\r\n{body}\r\n.\r\n"));
        assert_eq!(out, lines(&[GO_AHEAD, SMUGGLING]), "{body:?}");
        assert!(h.messages.is_empty());
    }
}

#[test]
fn data_line_limit_at_and_past_the_edge() {
    let cfg = SessionConfig { max_data_line: 1000, ..config() };
    // 998 octets + CRLF = 1000: accepted (RFC 5321 §4.5.3.1.6).
    let mut h = in_transaction(cfg.clone());
    let line = "x".repeat(998);
    let out = h.send(format!("DATA\r\n{line}\r\n.\r\n"));
    assert_eq!(out, lines(&[GO_AHEAD, "250 2.0.0 Ok: queued as Q1"]));
    // 999 + CRLF: refused after the end, the rest is not read as commands.
    let mut h = in_transaction(cfg.clone());
    let line = "x".repeat(999);
    let out = h.send(format!("DATA\r\n{line}\r\nQUIT\r\n.\r\nNOOP\r\n"));
    let too_long = "500 5.5.2 Error: line too long in message data (RFC 5321 §4.5.3.1.6)";
    assert_eq!(out, lines(&[GO_AHEAD, too_long, "250 2.0.0 Ok"]));
    assert!(!h.closed);
    // Counted before unstuffing.
    let mut h = in_transaction(cfg);
    let out = h.send(format!("DATA\r\n.{}\r\n.\r\n", "x".repeat(998)));
    assert_eq!(out, lines(&[GO_AHEAD, too_long]));
}

#[test]
fn message_size_at_and_past_the_edge() {
    let cfg = SessionConfig { max_message_size: 100, ..config() };
    // 98 octets + CRLF + a stuffed dot that does not count = 100.
    let mut h = in_transaction(cfg.clone());
    let body = format!("..{}\r\n", "y".repeat(97));
    let out = h.send(format!("DATA\r\n{body}.\r\n"));
    assert_eq!(out, lines(&[GO_AHEAD, "250 2.0.0 Ok: queued as Q1"]));
    assert_eq!(h.messages[0].1.len(), 100);
    // One more octet.
    let mut h = in_transaction(cfg);
    let body = format!("{}\r\n", "y".repeat(99));
    let out = h.send(format!("DATA\r\n{body}MAIL FROM:<x@y>\r\n.\r\nRCPT TO:<c@d>\r\n"));
    assert_eq!(
        out,
        lines(&[
            GO_AHEAD,
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "503 5.5.1 Error: need MAIL command",
        ])
    );
    assert!(h.messages.is_empty());
}

#[test]
fn huge_message_one_byte_at_a_time() {
    // Linear time: 2 MiB fed byte by byte, with a size limit to cross too.
    let mut h = in_transaction(SessionConfig { max_message_size: 0, ..config() });
    h.send("DATA\r\n");
    let line = format!("{}\r\n", "z".repeat(78));
    let body = line.repeat(2 * 1024 * 1024 / 80);
    for b in body.bytes() {
        h.session.feed(&[b]);
        assert!(matches!(h.session.poll(), facteur_smtp_proto::Event::NeedInput));
    }
    assert_eq!(h.send(".\r\n"), lines(&["250 2.0.0 Ok: queued as Q1"]));
    assert_eq!(h.messages[0].1, body.as_bytes());
}

#[test]
fn oversized_message_is_not_buffered() {
    // 20 MiB against a 1 MiB limit: consumed and refused.
    let mut h = in_transaction(SessionConfig { max_message_size: 1 << 20, ..config() });
    h.send("DATA\r\n");
    let block = format!("{}\r\n", "w".repeat(998)).repeat(64);
    for _ in 0..(20 << 20) / block.len() {
        assert_eq!(h.send(&block), "");
    }
    assert_eq!(h.send(".\r\n"), lines(&["552 5.3.4 Message size exceeds fixed maximum message size"]));
}

#[test]
fn long_pipelined_transaction() {
    // RFC 2920: the whole transaction in one write; replies come in order.
    let mut h = greeted(config());
    let mut script = String::from("MAIL FROM:<a@b>\r\n");
    let mut want = vec!["250 2.1.0 Ok".to_owned()];
    for i in 0..100 {
        script.push_str(&format!("RCPT TO:<user{i}@example.net>\r\n"));
        want.push("250 2.1.5 Ok".into());
    }
    script.push_str("DATA\r\n");
    want.push(GO_AHEAD.into());
    for i in 0..500 {
        script.push_str(&format!("line {i}\r\n"));
    }
    script.push_str(".\r\nMAIL FROM:<>\r\nRCPT TO:<z@y>\r\nDATA\r\n.\r\nQUIT\r\n");
    want.extend(
        [
            "250 2.0.0 Ok: queued as Q1",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            GO_AHEAD,
            "250 2.0.0 Ok: queued as Q2",
            "221 2.0.0 Bye",
        ]
        .map(String::from),
    );
    let out = h.send(&script);
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    assert_eq!(out, lines(&want));
    assert_eq!(h.messages.len(), 2);
    assert_eq!(h.messages[0].0.recipients.len(), 100);
    assert_eq!(h.messages[0].1.len(), (0..500).map(|i| format!("line {i}\r\n").len()).sum::<usize>());
    assert!(h.closed);
}

#[test]
fn binary_octets_are_content_in_data() {
    // NUL and 8-bit octets are content; only CR/LF pairing is checked.
    let mut h = in_transaction(config());
    let mut bytes = b"DATA\r\n".to_vec();
    bytes.extend_from_slice(b"\x00\xff\xfe binary\r\n.\r\n");
    assert_eq!(h.send(bytes), lines(&[GO_AHEAD, "250 2.0.0 Ok: queued as Q1"]));
    assert_eq!(h.messages[0].1, b"\x00\xff\xfe binary\r\n");
}

/// RFC 2920 §3.1: a client waits for 354 before it sends content. When DATA
/// is refused while its would-be body is already buffered, that body is
/// never read as commands (a forged second transaction): it is dropped and
/// the session ends with 554 5.5.0.
#[test]
fn input_pipelined_after_a_refused_data_is_not_executed() {
    let answer: Answer = Box::new(|event| match event {
        facteur_smtp_proto::Event::Rcpt { to, .. } if to.local == "nosuch" => {
            Err(facteur_smtp_proto::Reply::new(550, (5, 1, 1), "Error: no such user"))
        }
        _ => Ok("Q1".into()),
    });
    let mut h = Harness::with(config(), answer);
    h.send("EHLO c.example\r\n");
    let out = h.send(
        "MAIL FROM:<a@x.example>\r\nRCPT TO:<nosuch@local.example>\r\nDATA\r\n\
         MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<u@local.example>\r\nDATA\r\nevil\r\n.\r\n",
    );
    assert_eq!(
        out,
        lines(&[
            "250 2.1.0 Ok",
            "550 5.1.1 Error: no such user",
            "554 5.5.0 Error: SMTP protocol synchronization: input after a refused DATA \
             (Error: no valid recipients) discarded",
        ])
    );
    assert!(h.closed);
    assert_eq!(h.events, ["mail", "rcpt", "close"], "the forged MAIL was never asked about");
    assert!(h.messages.is_empty());
}

#[test]
fn a_refused_data_with_nothing_behind_it_is_an_ordinary_refusal() {
    // Any DATA that gets no 354 (no transaction, no recipient) and has no
    // bytes behind it: the client reads the refusal and goes on.
    let mut h = greeted(config());
    assert_eq!(h.send("DATA\r\n"), lines(&["554 5.5.1 Error: no valid recipients"]));
    h.send("MAIL FROM:<a@b>\r\n");
    assert_eq!(h.send("DATA\r\n"), lines(&["554 5.5.1 Error: no valid recipients"]));
    assert!(!h.closed);
    assert_eq!(h.send("RCPT TO:<c@d>\r\nDATA\r\n"), lines(&["250 2.1.5 Ok", GO_AHEAD]));
    assert_eq!(h.send("ok\r\n.\r\n"), lines(&["250 2.0.0 Ok: queued as Q1"]));
    // Before EHLO too, with input behind it: closed.
    let mut h = Harness::new(config());
    assert_eq!(
        h.send("DATA\r\nMAIL FROM:<x@y>\r\n"),
        lines(&["554 5.5.0 Error: SMTP protocol synchronization: input after a refused DATA \
             (Error: send HELO/EHLO first) discarded"])
    );
    assert!(h.closed);
}

#[test]
fn a_refused_bdat_chunk_is_eaten_by_its_size() {
    // RFC 3030 §2: BDAT may be pipelined and its chunk is framed by size,
    // so the chunk is consumed and what follows it is a real command.
    let mut h = greeted(config());
    h.send("MAIL FROM:<a@b>\r\n");
    let out = h.send("BDAT 25\r\nMAIL FROM:<evil@x.test>\r\nNOOP\r\n");
    assert_eq!(out, lines(&["554 5.5.1 Error: no valid recipients", "250 2.0.0 Ok"]));
    assert_eq!(h.events, ["mail"]);
}

#[test]
fn talking_before_the_greeting_gets_554_instead_of_220() {
    let mut h = Harness::new(config());
    // The I/O layer noticed bytes before it sent the queued greeting.
    h.session.feed(b"EHLO early.example\r\n");
    h.output.clear();
    h.session.talked_before_greeting();
    h.run();
    assert_eq!(
        h.transcript(),
        lines(&["554 5.5.0 mx.example Error: SMTP protocol synchronization (client talked before the greeting)"])
    );
    assert!(h.closed);
    assert!(h.events == ["close"]);
}
