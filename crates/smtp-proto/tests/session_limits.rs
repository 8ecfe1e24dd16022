//! Byte scripts for the session limits and command-line framing, each at
//! and just past its edge.

mod common;

use common::*;
use facteur_smtp_proto::SessionConfig;

#[test]
fn command_line_length_at_and_past_the_edge() {
    let mut h = greeted(SessionConfig { max_command_line: 512, ..config() });
    // "NOOP " + 505 octets + CRLF = 512.
    let at = format!("NOOP {}\r\n", "x".repeat(505));
    assert_eq!(at.len(), 512);
    assert_eq!(h.send(&at), lines(&["250 2.0.0 Ok"]));
    let past = format!("NOOP {}\r\n", "x".repeat(506));
    assert_eq!(h.send(&past), lines(&["500 5.5.2 Error: line too long"]));
    // A long line arriving in pieces is dropped up to its LF; the text
    // after it is not a command, the next line is.
    h.send("MAIL FROM:<a@b> ");
    for _ in 0..100 {
        assert_eq!(h.send("x".repeat(100)), "");
    }
    assert_eq!(h.send("QUIT\r\nNOOP\r\n"), lines(&["500 5.5.2 Error: line too long", "250 2.0.0 Ok"]));
    assert!(!h.closed);
}

#[test]
fn bare_lf_bare_cr_and_empty_command_lines() {
    let mut h = greeted(config());
    // RFC 5321 §2.3.8
    assert_eq!(
        h.send("NOOP\nRSET\r\n"),
        lines(&["500 5.5.2 Error: bare LF in command; lines must end with CRLF", "250 2.0.0 Ok"])
    );
    assert_eq!(h.send("NOOP\rQUIT\r\n"), lines(&["500 5.5.2 Error: bare CR in command; lines must end with CRLF"]));
    assert_eq!(h.send("\r\n"), lines(&["500 5.5.2 Error: command not recognized"]));
    assert_eq!(h.send("\n"), lines(&["500 5.5.2 Error: bare LF in command; lines must end with CRLF"]));
    assert_eq!(h.send(b"NO\xffOP\r\n".as_slice()), lines(&["500 5.5.2 Error: invalid UTF-8 in command"]));
    assert!(!h.closed);
}

#[test]
fn max_messages_at_and_past_the_edge() {
    // Counted in accepted messages, not commands: a bulk sender reusing one
    // connection is not cut after a few hundred commands.
    let mut h = greeted(SessionConfig { max_messages: 2, ..config() });
    let tx = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
    for n in 1..=2 {
        h.send(tx);
        assert_eq!(h.send("x\r\n.\r\n"), lines(&[&format!("250 2.0.0 Ok: queued as Q{n}")]));
        // Commands around messages do not count.
        assert_eq!(h.send("RSET\r\nNOOP\r\n"), lines(&["250 2.0.0 Ok"; 2]));
    }
    assert!(!h.closed);
    // The 3rd message's MAIL ends the session (as Exim): reconnect.
    assert_eq!(
        h.send("MAIL FROM:<a@b>\r\n"),
        lines(&["421 4.7.0 mx.example Error: too many messages in one connection; reconnect"])
    );
    assert!(h.closed);
    assert_eq!(h.messages.len(), 2);
}

#[test]
fn a_refused_message_does_not_count_toward_max_messages() {
    let answer: Answer = Box::new(|event| match event {
        facteur_smtp_proto::Event::Message { data, .. } if data.starts_with(b"bad") => {
            Err(facteur_smtp_proto::Reply::new(554, (5, 6, 0), "Error: refused"))
        }
        _ => Ok("Q".into()),
    });
    let mut h = Harness::with(SessionConfig { max_messages: 1, ..config() }, answer);
    h.send("EHLO c.example\r\n");
    let tx = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
    h.send(tx);
    assert_eq!(h.send("bad\r\n.\r\n"), lines(&["554 5.6.0 Error: refused"]));
    h.send(tx);
    assert_eq!(h.send("good\r\n.\r\n"), lines(&["250 2.0.0 Ok: queued as Q"]));
    assert!(h.send("MAIL FROM:<a@b>\r\n").starts_with("421 4.7.0"));
}

#[test]
fn junk_commands_at_and_past_the_edge() {
    // EHLO was the first junk command; 3 more are free, then each counts as an error.
    let mut h = greeted(SessionConfig { max_junk_commands: 4, max_errors: 2, ..config() });
    assert_eq!(h.send("NOOP\r\nRSET\r\nVRFY x\r\n").matches("25").count(), 3);
    assert!(!h.closed);
    // The 5th is answered and counted as the first error...
    assert_eq!(h.send("NOOP\r\n"), lines(&["250 2.0.0 Ok"]));
    assert!(!h.closed);
    // ...the 6th is the second error: 421 instead of an answer.
    assert_eq!(h.send("HELP\r\n"), lines(&["421 4.7.0 mx.example Error: too many errors"]));
    assert!(h.closed);
}

#[test]
fn an_accepted_message_starts_the_error_and_junk_counts_again() {
    let mut h = greeted(SessionConfig { max_junk_commands: 2, max_errors: 2, ..config() });
    let tx = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
    for _ in 0..5 {
        // One error and one junk command (past EHLO and this RSET) per round:
        // without the reset the session would end in the second round.
        assert_eq!(h.send("BOGUS\r\n"), lines(&["500 5.5.2 Error: command not recognized"]));
        h.send("RSET\r\n");
        h.send(tx);
        assert!(h.send("x\r\n.\r\n").starts_with("250 2.0.0"));
    }
    assert!(!h.closed);
    assert_eq!(h.messages.len(), 5);
}

#[test]
fn max_errors_at_and_past_the_edge() {
    let mut h = greeted(SessionConfig { max_errors: 3, ..config() });
    let unknown = "500 5.5.2 Error: command not recognized";
    assert_eq!(h.send("X\r\nY\r\n"), lines(&[unknown, unknown]));
    assert!(!h.closed);
    // The third error is answered, then the session ends.
    assert_eq!(
        h.send("RCPT TO:<a@b>\r\nNOOP\r\n"),
        lines(&["503 5.5.1 Error: need MAIL command", "421 4.7.0 mx.example Error: too many errors"])
    );
    assert!(h.closed);
}

#[test]
fn max_errors_counts_data_and_rcpt_refusals() {
    let mut h = in_transaction(SessionConfig { max_errors: 2, ..config() });
    let out = h.send("DATA\r\nbad\nline\r\n.\r\nRCPT TO:<>\r\nNOOP\r\n");
    assert_eq!(
        out,
        lines(&[
            "354 End data with <CR><LF>.<CR><LF>",
            "554 5.5.2 Error: bare CR or LF in message data (RFC 5321 §2.3.8)",
            "501 5.1.3 Bad recipient address syntax",
            "421 4.7.0 mx.example Error: too many errors",
        ])
    );
}

#[test]
fn max_recipients_at_and_past_the_edge() {
    // RFC 5321 §4.5.3.1.10: 452 for the one past the limit, not asked.
    let mut h = greeted(SessionConfig { max_recipients: 3, ..config() });
    h.send("MAIL FROM:<a@b>\r\n");
    let out = h.send("RCPT TO:<1@b>\r\nRCPT TO:<2@b>\r\nRCPT TO:<3@b>\r\nRCPT TO:<4@b>\r\nDATA\r\n");
    assert_eq!(
        out,
        lines(&[
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "452 4.5.3 Error: too many recipients",
            "354 End data with <CR><LF>.<CR><LF>",
        ])
    );
    assert_eq!(h.events, ["mail", "rcpt", "rcpt", "rcpt"]);
    h.send(".\r\n");
    assert_eq!(h.messages[0].0.recipients.len(), 3);
    // The count starts again with the next transaction.
    h.send("MAIL FROM:<a@b>\r\n");
    assert_eq!(h.send("RCPT TO:<5@b>\r\n"), lines(&["250 2.1.5 Ok"]));
}

#[test]
fn rejected_recipients_do_not_count_toward_the_limit() {
    let answer: Answer = Box::new(|event| match event {
        facteur_smtp_proto::Event::Rcpt { to, .. } if to.local == "no" => {
            Err(facteur_smtp_proto::Reply::new(550, (5, 1, 1), "Error: no such user"))
        }
        _ => Ok("Q".into()),
    });
    let mut h = Harness::with(SessionConfig { max_recipients: 1, ..config() }, answer);
    h.send("EHLO c.example\r\nMAIL FROM:<a@b>\r\n");
    let out = h.send("RCPT TO:<no@b>\r\nRCPT TO:<yes@b>\r\nRCPT TO:<more@b>\r\n");
    assert_eq!(out, lines(&["550 5.1.1 Error: no such user", "250 2.1.5 Ok", "452 4.5.3 Error: too many recipients"]));
}
