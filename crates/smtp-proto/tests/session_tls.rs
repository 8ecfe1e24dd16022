//! Byte scripts for STARTTLS (RFC 3207), including the CVE-2011-0411
//! command injection.

mod common;

use common::*;
use facteur_smtp_proto::{Event, SessionConfig};

fn starttls() -> SessionConfig {
    SessionConfig { starttls_available: true, auth_enabled: true, ..config() }
}

#[test]
fn starttls_then_ehlo_again() {
    let mut h = greeted(starttls());
    assert!(!h.session.tls_active());
    assert_eq!(h.send("STARTTLS\r\n"), lines(&["220 2.0.0 Ready to start TLS"]));
    assert_eq!(h.events, ["starttls"]);
    assert!(h.session.tls_active());
    // RFC 3207 §4.2: the client must greet again.
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["503 5.5.1 Error: send HELO/EHLO first"]));
    let out = h.send("EHLO c.example\r\n");
    assert!(!out.contains("STARTTLS"), "{out}");
    assert!(out.ends_with("250 AUTH PLAIN LOGIN\r\n"), "{out}");
    assert_eq!(h.send("STARTTLS\r\n"), lines(&["503 5.5.1 Error: TLS already active"]));
    h.send("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
    assert!(h.messages[0].0.tls);
}

#[test]
fn pipelined_plaintext_after_starttls_is_discarded() {
    // CVE-2011-0411: commands sent with STARTTLS, before the handshake,
    // must never run in the TLS session.
    let mut h = greeted(starttls());
    let out = h.send("STARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n");
    assert_eq!(out, lines(&["220 2.0.0 Ready to start TLS"]));
    assert_eq!(h.events, ["starttls"]);
    assert_eq!(
        h.send("EHLO c.example\r\nRCPT TO:<c@d>\r\n").lines().last(),
        Some("503 5.5.1 Error: need MAIL command")
    );
}

#[test]
fn partial_line_before_handshake_is_discarded() {
    let mut h = greeted(starttls());
    h.auto_tls = false;
    assert_eq!(h.send("STARTTLS\r\nMAIL FROM:<ev"), lines(&["220 2.0.0 Ready to start TLS"]));
    // Nothing more is processed until the handshake, even with new input.
    assert_eq!(h.send("il@x>\r\nNOOP\r\n"), "");
    assert!(matches!(h.session.poll(), Event::StartTls));
    assert!(matches!(h.session.poll(), Event::StartTls));
    h.session.tls_established();
    assert_eq!(h.send("NOOP\r\n"), lines(&["250 2.0.0 Ok"]));
}

#[test]
fn state_is_forgotten_after_tls() {
    let cfg = SessionConfig { tls_active: true, auth_enabled: true, ..config() };
    let mut h = greeted(cfg);
    h.send("AUTH PLAIN AHVzZXIAc2VjcmV0\r\n");
    assert_eq!(h.session.auth_user(), Some("user"));
    // A caller that re-runs a handshake gets a clean session.
    h.session.tls_established();
    assert_eq!(h.session.auth_user(), None);
    assert_eq!(h.send("MAIL FROM:<a@b>\r\n"), lines(&["503 5.5.1 Error: send HELO/EHLO first"]));
}

#[test]
fn starttls_not_offered() {
    let mut h = greeted(config());
    assert_eq!(h.send("STARTTLS\r\n"), lines(&["502 5.5.1 Error: command not implemented"]));
    // Implicit TLS port.
    let mut h = greeted(SessionConfig { tls_active: true, ..config() });
    assert_eq!(h.send("STARTTLS\r\n"), lines(&["503 5.5.1 Error: TLS already active"]));
    assert_eq!(h.send("STARTTLS now\r\n"), lines(&["501 5.5.4 Syntax: STARTTLS"]));
}

#[test]
fn starttls_before_ehlo_and_not_in_transaction() {
    let mut h = Harness::new(starttls());
    assert_eq!(h.send("STARTTLS\r\n"), lines(&["220 2.0.0 Ready to start TLS"]));
    let mut h = in_transaction(starttls());
    assert_eq!(h.send("STARTTLS\r\n"), lines(&["503 5.5.1 Error: MAIL transaction in progress"]));
}
