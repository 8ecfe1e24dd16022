//! Byte-script harness for the client side: run a [`Transaction`] against a
//! scripted server and check every byte the client writes.
//!
//! A script is a dialogue, one line per line on the wire:
//!
//! ```text
//! C: MAIL FROM:<a@example.org>
//! S: 250 2.1.0 Ok
//! ```
//!
//! Consecutive `C:` lines are what the client must write before the next
//! `S:` lines are fed (as one read); a `--` line starts another read with
//! nothing written before it. The client must have nothing left to write at
//! the end, and the transaction must be done.
#![allow(dead_code)] // each test binary uses a different part

use facteur_smtp_proto::Reply;
use facteur_smtp_proto::client::{
    Capabilities, OutboundEnvelope, OutboundRecipient, RcptOutcome, ReplyReader, Transaction, TxResult, TxStep,
};

/// An envelope with no parameters; `size` is the length of [`MESSAGE`].
pub fn envelope(from: &str, to: &[&str]) -> OutboundEnvelope {
    OutboundEnvelope {
        mail_from: from.to_owned(),
        recipients: to.iter().map(|a| recipient(a)).collect(),
        size: MESSAGE.len() as u64,
        body: None,
        smtputf8: false,
        ret: None,
        envid: None,
    }
}

pub fn recipient(address: &str) -> OutboundRecipient {
    OutboundRecipient { address: address.to_owned(), notify: None, orcpt: None }
}

/// Capabilities from the keyword lines of an EHLO reply.
pub fn ehlo(keywords: &[&str]) -> Capabilities {
    let mut lines = vec!["mx.example.net".to_owned()];
    lines.extend(keywords.iter().map(|k| k.to_string()));
    Capabilities::from_ehlo(&Reply { code: 250, enhanced: None, lines })
}

/// A small message with CRLF line ends.
pub const MESSAGE: &[u8] = b"Subject: test\r\n\r\nHello.\r\n";

/// The script lines the DATA content of [`MESSAGE`] gives.
pub const MESSAGE_DATA: &str = "C: Subject: test\nC:\nC: Hello.\nC: .";

/// Runs `script` twice, the server's bytes fed whole and then one octet at
/// a time; both runs must agree. Returns the result.
pub fn run(envelope: OutboundEnvelope, caps: &Capabilities, message: &[u8], script: &str) -> TxResult {
    let whole = run_fed(envelope.clone(), caps, message, script, usize::MAX);
    let bytewise = run_fed(envelope, caps, message, script, 1);
    assert_eq!(whole, bytewise, "feeding byte by byte changed the result");
    whole
}

fn run_fed(envelope: OutboundEnvelope, caps: &Capabilities, message: &[u8], script: &str, piece: usize) -> TxResult {
    let mut tx = Transaction::new(envelope, caps).expect("the transaction should start");
    let mut reader = ReplyReader::default();
    let mut written = tx.take_output();
    let mut result = None;
    for (client, server) in parse_script(script) {
        assert_eq!(show(&written), client, "client bytes");
        written.clear();
        for chunk in server.as_bytes().chunks(piece.max(1)) {
            reader.feed(chunk);
            while let Some(reply) = reader.next_reply().expect("well-formed reply") {
                assert!(result.is_none(), "reply {reply} after Done");
                match tx.on_reply(reply) {
                    TxStep::Continue => written.extend(tx.take_output()),
                    TxStep::SendBody => {
                        assert!(tx.take_output().is_empty(), "output besides the body");
                        written.extend(tx.body_bytes(message));
                    }
                    TxStep::Done(r) => {
                        assert!(tx.take_output().is_empty(), "output after Done");
                        result = Some(r);
                    }
                }
            }
        }
    }
    assert_eq!(show(&written), "", "the client wrote more than the script says");
    assert_eq!(reader.buffered(), 0, "unread server bytes");
    let result = result.expect("the transaction should be done");
    // Done is sticky.
    let again = tx.on_reply(Reply::new(250, (2, 0, 0), "late"));
    assert_eq!(again, TxStep::Done(result.clone()));
    result
}

/// (client text, server text) pairs, CRLF after every line.
fn parse_script(script: &str) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = vec![(String::new(), String::new())];
    for line in script.lines().map(str::trim_start).filter(|l| !l.is_empty()) {
        if line == "--" {
            steps.push((String::new(), String::new()));
            continue;
        }
        let (who, text) = line.split_at_checked(2).expect("C: or S:");
        let text = text.strip_prefix(' ').unwrap_or(text);
        let last = steps.last_mut().expect("one step");
        match who {
            "C:" => {
                if !last.1.is_empty() {
                    steps.push((String::new(), String::new()));
                }
                let last = steps.last_mut().expect("one step");
                last.0.push_str(text);
                last.0.push_str("\r\n");
            }
            "S:" => {
                last.1.push_str(text);
                last.1.push_str("\r\n");
            }
            _ => panic!("script line {line:?} starts with neither C: nor S:"),
        }
    }
    steps
}

pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Outcomes in short: "D 250", "T 451 4.5.0", "P 550 5.1.1", the enhanced
/// code when there is one.
pub fn summary(result: &TxResult) -> Vec<String> {
    result
        .outcomes
        .iter()
        .map(|o| {
            let (letter, reply) = match o {
                RcptOutcome::Delivered(r) => ("D", r),
                RcptOutcome::Temporary(r) => ("T", r),
                RcptOutcome::Permanent(r) => ("P", r),
            };
            match reply.enhanced {
                Some((c, s, d)) => format!("{letter} {} {c}.{s}.{d}", reply.code),
                None => format!("{letter} {}", reply.code),
            }
        })
        .collect()
}

/// The reply inside an outcome.
pub fn reply_of(outcome: &RcptOutcome) -> &Reply {
    match outcome {
        RcptOutcome::Delivered(r) | RcptOutcome::Temporary(r) | RcptOutcome::Permanent(r) => r,
    }
}
