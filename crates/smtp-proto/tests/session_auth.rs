//! Byte scripts for AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN.

mod common;

use common::*;
use facteur_smtp_proto::{Event, Reply, SessionConfig};

/// base64 of "\0user\0secret"
const PLAIN_OK: &str = "AHVzZXIAc2VjcmV0";
/// base64 of "\0user\0wrong"
const PLAIN_WRONG: &str = "AHVzZXIAd3Jvbmc=";
const BAD_B64: &str = "501 5.5.2 Error: bad base64 data";
const SUCCESS: &str = "235 2.7.0 Authentication successful";
const FAILED: &str = "535 5.7.8 Error: authentication failed";

fn tls_auth() -> SessionConfig {
    SessionConfig { tls_active: true, auth_enabled: true, ..config() }
}

fn b64(s: &[u8]) -> String {
    // A tiny encoder so the tests do not share the code under test.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn encoder_matches_known_values() {
    assert_eq!(b64(b"\0user\0secret"), PLAIN_OK);
    assert_eq!(b64(b"\0user\0wrong"), PLAIN_WRONG);
    assert_eq!(b64(b"Username:"), "VXNlcm5hbWU6");
}

#[test]
fn not_offered_without_auth_enabled() {
    let mut h = greeted(SessionConfig { tls_active: true, ..config() });
    let out = h.send(format!("AUTH PLAIN {PLAIN_OK}\r\n"));
    assert_eq!(out, lines(&["502 5.5.1 Error: command not implemented"]));
}

#[test]
fn needs_tls() {
    // RFC 4954 §6: 538 5.7.11.
    let mut h = greeted(SessionConfig { auth_enabled: true, ..config() });
    let out = h.send(format!("AUTH PLAIN {PLAIN_OK}\r\n"));
    assert_eq!(out, lines(&["538 5.7.11 Encryption required for requested authentication mechanism"]));
    assert!(h.events.is_empty());
}

#[test]
fn needs_ehlo_and_no_transaction() {
    let mut h = Harness::new(tls_auth());
    assert_eq!(h.send("AUTH PLAIN\r\n"), lines(&["503 5.5.1 Error: send HELO/EHLO first"]));
    h.send("EHLO c.example\r\nMAIL FROM:<a@b>\r\n");
    assert_eq!(h.send("AUTH PLAIN\r\n"), lines(&["503 5.5.1 Error: MAIL transaction in progress"]));
}

#[test]
fn plain_with_initial_response() {
    let mut h = greeted(tls_auth());
    assert_eq!(h.send(format!("AUTH PLAIN {PLAIN_OK}\r\n")), lines(&[SUCCESS]));
    assert_eq!(h.session.auth_user(), Some("user"));
    // RFC 4954 §4: once per session.
    assert_eq!(h.send(format!("AUTH PLAIN {PLAIN_OK}\r\n")), lines(&["503 5.5.1 Error: already authenticated"]));
    h.send("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(h.messages[0].0.auth_user.as_deref(), Some("user"));
    assert!(h.messages[0].0.tls);
}

#[test]
fn plain_with_continuation_and_authzid() {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
    let seen2 = seen.clone();
    let answer: Answer = Box::new(move |event| {
        if let Event::Auth(req) = event {
            *seen2.borrow_mut() = Some(req.clone());
            return Ok(req.username.clone());
        }
        Ok(String::new())
    });
    let mut h = Harness::with(tls_auth(), answer);
    h.send("EHLO c.example\r\n");
    assert_eq!(h.send("AUTH PLAIN\r\n"), "334 \r\n");
    let response = b64("admin\0jöe\0pässword".as_bytes());
    assert_eq!(h.send(format!("{response}\r\n")), lines(&[SUCCESS]));
    let req = seen.borrow().clone().expect("auth event");
    assert_eq!(req.mechanism, "PLAIN");
    assert_eq!(req.authzid.as_deref(), Some("admin"));
    assert_eq!(req.username, "jöe");
    assert_eq!(req.password, "pässword");
    // The password never shows in Debug output.
    assert!(!format!("{req:?}").contains("pässword"));
}

#[test]
fn wrong_password() {
    let mut h = greeted(tls_auth());
    assert_eq!(h.send(format!("AUTH PLAIN {PLAIN_WRONG}\r\n")), lines(&[FAILED]));
    assert_eq!(h.session.auth_user(), None);
    assert_eq!(h.send(format!("AUTH PLAIN {PLAIN_OK}\r\n")), lines(&[SUCCESS]));
}

#[test]
fn login() {
    let mut h = greeted(tls_auth());
    assert_eq!(h.send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.send(format!("{}\r\n", b64(b"user"))), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(h.send(format!("{}\r\n", b64(b"secret"))), lines(&[SUCCESS]));
    assert_eq!(h.session.auth_user(), Some("user"));

    let mut h = greeted(tls_auth());
    let out = h.send(format!("auth login {}\r\n{}\r\n", b64(b"user"), b64(b"secret")));
    assert_eq!(out, "334 UGFzc3dvcmQ6\r\n".to_owned() + &lines(&[SUCCESS]));
}

#[test]
fn cancel_and_malformed() {
    let mut h = greeted(tls_auth());
    let cancelled = "501 5.0.0 Authentication cancelled";
    assert_eq!(h.send("AUTH PLAIN\r\n*\r\n"), "334 \r\n".to_owned() + &lines(&[cancelled]));
    assert_eq!(h.send("AUTH LOGIN\r\n*\r\n"), "334 VXNlcm5hbWU6\r\n".to_owned() + &lines(&[cancelled]));
    assert_eq!(
        h.send(format!("AUTH LOGIN\r\n{}\r\n*\r\n", b64(b"user"))),
        "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n".to_owned() + &lines(&[cancelled])
    );
    for bad in [
        "AUTH PLAIN !!!!".to_owned(),
        "AUTH PLAIN AHVzZXIAc2VjcmV0=".to_owned(),            // bad padding
        "AUTH PLAIN =".to_owned(),                            // empty
        format!("AUTH PLAIN {}", b64(b"user\0secret")),       // two fields
        format!("AUTH PLAIN {}", b64(b"a\0user\0secret\0x")), // four fields
        format!("AUTH PLAIN {}", b64(b"\0\0secret")),         // empty user
        format!("AUTH PLAIN {}", b64(b"\0user\0")),           // empty password
        format!("AUTH PLAIN {}", b64(b"\0us\xffer\0secret")), // not UTF-8
        "AUTH LOGIN =".to_owned(),
        "AUTH LOGIN ****".to_owned(),
    ] {
        assert_eq!(h.send(format!("{bad}\r\n")), lines(&[BAD_B64]), "{bad}");
    }
    assert_eq!(h.send("AUTH PLAIN\r\n\r\n"), "334 \r\n".to_owned() + &lines(&[BAD_B64]));
    assert_eq!(h.send("AUTH LOGIN\r\nnot base64\r\n"), "334 VXNlcm5hbWU6\r\n".to_owned() + &lines(&[BAD_B64]));
    assert!(h.events.is_empty());
    assert_eq!(h.send("AUTH CRAM-MD5\r\n"), lines(&["504 5.5.4 Unrecognized authentication type"]));
    assert!(!h.closed);
}

#[test]
fn continuation_line_limit_at_and_past_the_edge() {
    // RFC 4954 §4: 12288 octets, CRLF included; past it, 500 5.5.6.
    let mut h = greeted(tls_auth());
    // 12284 base64 characters (+ CRLF) decode to a long user name.
    let line = b64(&[b'u'; 9213]);
    assert_eq!(line.len(), 12284);
    let out = h.send(format!("AUTH LOGIN\r\n{line}\r\n"));
    assert_eq!(out, "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n");
    h.send("*\r\n");
    // 12286 + CRLF = 12288: still read (and refused as base64).
    h.send("AUTH PLAIN\r\n");
    assert_eq!(h.send(format!("{}\r\n", "A".repeat(12286))), lines(&[BAD_B64]));
    // 12287 + CRLF: too long, dropped; the next line is a command again.
    h.send("AUTH PLAIN\r\n");
    let out = h.send(format!("{}\r\nNOOP\r\n", "A".repeat(12287)));
    let too_long = "500 5.5.6 Authentication Exchange line is too long";
    assert_eq!(out, lines(&[too_long, "250 2.0.0 Ok"]));
}

#[test]
fn bare_lf_in_exchange_ends_it() {
    let mut h = greeted(tls_auth());
    let out = h.send(format!("AUTH PLAIN\r\n{PLAIN_OK}\nNOOP\r\n"));
    assert_eq!(
        out,
        "334 \r\n".to_owned()
            + &lines(&["500 5.5.2 Error: bare CR or LF in command; lines must end with CRLF", "250 2.0.0 Ok"])
    );
}

#[test]
fn auth_errors_count_toward_max_errors() {
    let mut h = greeted(SessionConfig { max_errors: 3, ..tls_auth() });
    let wrong = format!("AUTH PLAIN {PLAIN_WRONG}\r\n");
    assert_eq!(h.send(&wrong), lines(&[FAILED]));
    assert_eq!(h.send(&wrong), lines(&[FAILED]));
    assert_eq!(h.send(&wrong), lines(&[FAILED, "421 4.7.0 mx.example Error: too many errors"]));
    assert!(h.closed);
}

#[test]
fn io_layer_reply_is_passed_through() {
    let answer: Answer = Box::new(|_| Err(Reply::new(454, (4, 7, 0), "Temporary authentication failure")));
    let mut h = Harness::with(tls_auth(), answer);
    h.send("EHLO c.example\r\n");
    assert_eq!(h.send(format!("AUTH PLAIN {PLAIN_OK}\r\n")), lines(&["454 4.7.0 Temporary authentication failure"]));
}
