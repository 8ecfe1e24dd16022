//! Byte scripts for BDAT (RFC 3030).

mod common;

use common::*;
use facteur_smtp_proto::SessionConfig;

const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed maximum message size";
const FAILED: &str = "503 5.5.1 Error: transaction failed, send RSET";

#[test]
fn chunks_and_last() {
    let mut h = in_transaction(config());
    assert_eq!(h.send("BDAT 5\r\nhello"), lines(&["250 2.0.0 5 octets received"]));
    assert_eq!(h.send("BDAT 7 LAST\r\n, world"), lines(&["250 2.0.0 Ok: queued as Q1"]));
    let (env, data) = &h.messages[0];
    assert_eq!(data, b"hello, world");
    assert!(env.chunked);
    assert_eq!(env.recipients.len(), 1);
    // The transaction is over.
    assert_eq!(h.send("BDAT 1 LAST\r\nx"), lines(&["554 5.5.1 Error: no valid recipients"]));
}

#[test]
fn bdat_zero_last() {
    let mut h = in_transaction(config());
    assert_eq!(h.send("BDAT 0 LAST\r\n"), lines(&["250 2.0.0 Ok: queued as Q1"]));
    assert_eq!(h.messages[0].1, b"");
    let mut h = in_transaction(config());
    let out = h.send("BDAT 3\r\nabcBDAT 0 LAST\r\n");
    assert_eq!(out, lines(&["250 2.0.0 3 octets received", "250 2.0.0 Ok: queued as Q1"]));
    assert_eq!(h.messages[0].1, b"abc");
}

#[test]
fn binary_chunk_is_not_interpreted() {
    // No dot-stuffing and no line rules: CRLF.CRLF, bare LF, bare CR and
    // command text inside a chunk are content (RFC 3030 §2).
    let content: &[u8] = b"a\r\n.\r\nMAIL FROM:<evil@x>\r\n\n.\n\r.\r\x00\xff.";
    let mut h = in_transaction(config());
    let mut script = format!("BDAT {} LAST\r\n", content.len()).into_bytes();
    script.extend_from_slice(content);
    script.extend_from_slice(b"NOOP\r\n");
    assert_eq!(h.send(script), lines(&["250 2.0.0 Ok: queued as Q1", "250 2.0.0 Ok"]));
    assert_eq!(h.messages[0].1, content);
    assert_eq!(h.events, ["mail", "rcpt", "message"]);
}

#[test]
fn chunk_split_across_reads() {
    let mut h = in_transaction(config());
    assert_eq!(h.send("BDAT 10 LAST\r\n12345"), "");
    assert!(h.session.in_data());
    assert_eq!(h.send("678"), "");
    assert_eq!(h.send("90QUIT\r\n"), lines(&["250 2.0.0 Ok: queued as Q1", "221 2.0.0 Bye"]));
    assert_eq!(h.messages[0].1, b"1234567890");
}

#[test]
fn size_limit_at_and_past_the_edge() {
    let cfg = SessionConfig { max_message_size: 10, ..config() };
    let mut h = in_transaction(cfg.clone());
    let out = h.send("BDAT 4\r\n1234BDAT 6 LAST\r\n567890");
    assert_eq!(out, lines(&["250 2.0.0 4 octets received", "250 2.0.0 Ok: queued as Q1"]));

    // One octet over: the chunk is eaten, the transaction fails, later
    // chunks are eaten and refused until LAST, which ends the transaction.
    let mut h = in_transaction(cfg.clone());
    let out = h.send("BDAT 4\r\n1234BDAT 7\r\n567890!BDAT 2\r\nxyBDAT 4 LAST\r\nRCPTRCPT TO:<c@d>\r\n");
    assert_eq!(
        out,
        lines(&["250 2.0.0 4 octets received", TOO_BIG, FAILED, FAILED, "503 5.5.1 Error: need MAIL command",])
    );
    assert!(h.messages.is_empty());

    // A single over-sized LAST chunk ends the transaction at once.
    let mut h = in_transaction(cfg.clone());
    assert_eq!(h.send("BDAT 11 LAST\r\n12345678901"), lines(&[TOO_BIG]));
    assert_eq!(h.send("DATA\r\n"), lines(&["554 5.5.1 Error: no valid recipients"]));

    // RSET recovers from a failed transaction.
    let mut h = in_transaction(cfg);
    assert_eq!(h.send("BDAT 11\r\n12345678901"), lines(&[TOO_BIG]));
    assert_eq!(h.send("DATA\r\n"), lines(&[FAILED]));
    assert_eq!(h.send("RCPT TO:<x@y>\r\n"), lines(&[FAILED]));
    assert_eq!(h.send("RSET\r\n"), lines(&["250 2.0.0 Ok"]));
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["250 2.1.0 Ok"]));
}

#[test]
fn huge_declared_chunk_is_consumed_not_stored() {
    let mut h = in_transaction(SessionConfig { max_message_size: 1000, ..config() });
    assert_eq!(h.send(format!("BDAT {}\r\n", 5u64 << 20)), "");
    let block = vec![b'q'; 64 * 1024];
    for _ in 0..79 {
        assert_eq!(h.send(&block), "");
    }
    let mut last = block.clone();
    last.extend_from_slice(b"NOOP\r\n");
    assert_eq!(h.send(last), lines(&[TOO_BIG, "250 2.0.0 Ok"]));
}

#[test]
fn data_after_bdat_is_refused() {
    // RFC 3030 §2: no DATA within a BDAT transaction.
    let mut h = in_transaction(config());
    h.send("BDAT 2\r\nab");
    assert_eq!(h.send("DATA\r\n"), lines(&["503 5.5.1 Error: BDAT transfer in progress"]));
    assert_eq!(h.send("RCPT TO:<x@y>\r\n"), lines(&["503 5.5.1 Error: BDAT transfer in progress"]));
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["503 5.5.1 Error: nested MAIL command"]));
    assert_eq!(h.send("BDAT 1 LAST\r\nc"), lines(&["250 2.0.0 Ok: queued as Q1"]));
    assert_eq!(h.messages[0].1, b"abc");
}

#[test]
fn bad_bdat_size_is_a_syntax_error_and_lines_go_on() {
    // Documented in docs/quirks.md: the chunk length is unknown, so the
    // following bytes are read as command lines.
    let mut h = in_transaction(config());
    let out = h.send("BDAT x\r\nBDAT -1 LAST\r\nBDAT 1 FIRST\r\nNOOP\r\n");
    let syntax = "501 5.5.4 Syntax: BDAT size [LAST]";
    assert_eq!(out, lines(&[syntax, syntax, syntax, "250 2.0.0 Ok"]));
    assert_eq!(h.send("BDAT 1 LAST\r\nz"), lines(&["250 2.0.0 Ok: queued as Q1"]));
}

#[test]
fn bdat_without_recipients_eats_its_chunk() {
    let mut h = greeted(config());
    let out = h.send("MAIL FROM:<a@b>\r\nBDAT 12\r\nRSET\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(out, lines(&["250 2.1.0 Ok", "554 5.5.1 Error: no valid recipients", "250 2.0.0 Ok"]));
    assert!(!h.closed);
}

#[test]
fn in_data_during_a_chunk() {
    let mut h = in_transaction(config());
    assert!(!h.session.in_data());
    h.send("BDAT 3\r\na");
    assert!(h.session.in_data());
    h.send("bc");
    assert!(!h.session.in_data());
}
