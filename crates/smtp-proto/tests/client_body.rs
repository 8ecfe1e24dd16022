//! The body the client writes (dot-stuffing and line ends for DATA, one
//! chunk for BDAT) and xtext encoding.

mod client_common;

use client_common::{ehlo, envelope, show};
use facteur_smtp_proto::Command;
use facteur_smtp_proto::client::{Capabilities, Transaction, xtext_encode};

fn data(message: &[u8]) -> String {
    let tx = Transaction::new(envelope("a@example.org", &["b@example.net"]), &Capabilities::default()).unwrap();
    show(&tx.body_bytes(message))
}

#[test]
fn dot_stuffing() {
    // RFC 5321 §4.5.2: a leading "." is doubled, on every line.
    assert_eq!(data(b"a\r\n.b\r\n"), "a\r\n..b\r\n.\r\n");
    assert_eq!(data(b".first\r\n"), "..first\r\n.\r\n");
    // A lone "." line, which would otherwise end the data early.
    assert_eq!(data(b"a\r\n.\r\nb\r\n"), "a\r\n..\r\nb\r\n.\r\n");
    assert_eq!(data(b"..\r\n"), "...\r\n.\r\n");
    // Dots elsewhere are left alone.
    assert_eq!(data(b"a.b\r\n a\r\n"), "a.b\r\n a\r\n.\r\n");
}

#[test]
fn line_ends() {
    // A last line without CRLF gets one.
    assert_eq!(data(b"no end"), "no end\r\n.\r\n");
    assert_eq!(data(b"a\r\n."), "a\r\n..\r\n.\r\n");
    // Bare LF and bare CR become CRLF; CR CR LF is two line ends.
    assert_eq!(data(b"a\nb\rc\r\n"), "a\r\nb\r\nc\r\n.\r\n");
    assert_eq!(data(b"a\r\r\nb"), "a\r\n\r\nb\r\n.\r\n");
    assert_eq!(data(b"\n.\n"), "\r\n..\r\n.\r\n");
    assert_eq!(data(b"trailing CR\r"), "trailing CR\r\n.\r\n");
    // Empty message, and one that is a single line end.
    assert_eq!(data(b""), ".\r\n");
    assert_eq!(data(b"\r\n"), "\r\n.\r\n");
}

#[test]
fn binary_octets_pass_through() {
    let tx = Transaction::new(envelope("a@example.org", &["b@example.net"]), &Capabilities::default()).unwrap();
    let body = tx.body_bytes(b"\x00\xff\xc3\xa9\r\n");
    assert_eq!(body, b"\x00\xff\xc3\xa9\r\n.\r\n");
}

#[test]
fn large_message_in_linear_time() {
    // 4 million lines of "." (8 MB): doubling dots must not go quadratic.
    let message = b".\r\n".repeat(4_000_000);
    let tx = Transaction::new(envelope("a@example.org", &["b@example.net"]), &Capabilities::default()).unwrap();
    let body = tx.body_bytes(&message);
    assert_eq!(body.len(), message.len() + 4_000_000 + 3);
    assert!(body.ends_with(b"\r\n..\r\n.\r\n"));
}

#[test]
fn bdat_is_one_last_chunk_unchanged() {
    let tx = Transaction::new(envelope("a@example.org", &["b@example.net"]), &ehlo(&["CHUNKING"])).unwrap();
    assert_eq!(show(&tx.body_bytes(b".a\nb")), "BDAT 4 LAST\r\n.a\nb");
    assert_eq!(show(&tx.body_bytes(b"")), "BDAT 0 LAST\r\n");
}

#[test]
fn xtext() {
    // RFC 3461 §4: "+", "=", space, controls and non-ASCII as +HH.
    assert_eq!(xtext_encode("plain-text_123!~"), "plain-text_123!~");
    assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
    assert_eq!(xtext_encode("\r\n\x7f"), "+0D+0A+7F");
    assert_eq!(xtext_encode("\u{e9}"), "+C3+A9");
    assert_eq!(xtext_encode(""), "");
}

#[test]
fn xtext_reads_back_through_the_server_parser() {
    // Every printable ASCII character, through ENVID and ORCPT.
    let all: String = (b' '..=b'~').map(char::from).collect();
    let envid = xtext_encode(&all[..50]);
    let line = format!("MAIL FROM:<a@example.org> ENVID={envid}");
    let Ok(Command::Mail(_, params)) = Command::parse(line.as_bytes()) else { panic!("{line}") };
    assert_eq!(params.envid.as_deref(), Some(&all[..50]));
    let line = format!("RCPT TO:<b@example.net> ORCPT=rfc822;{}", xtext_encode(&all));
    let Ok(Command::Rcpt(_, params)) = Command::parse(line.as_bytes()) else { panic!("{line}") };
    assert_eq!(params.orcpt, Some(format!("rfc822;{all}")));
}
