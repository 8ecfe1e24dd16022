//! Reading the header section: only it, whatever its line ends, folds, size
//! or damage.

mod common;

use common::{Msg, assert_decision};
use facteur_classify::{Class, ClassifyConfig, Rule, header_section};

#[test]
fn the_body_is_never_read() {
    let message = b"From: alice@example.org\r\nSubject: forwarding a newsletter\r\n\r\n\
List-Id: <weekly.example.com>\r\n\
Precedence: bulk\r\n\
List-Unsubscribe: <mailto:leave@example.com>\r\n\
Feedback-ID: 1:2:3\r\n\
Auto-Submitted: auto-generated\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n";
    assert_decision(Msg::mx().message(message).decide(), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn the_body_is_never_read_with_lf_line_ends() {
    let message = b"From: alice@example.org\nSubject: hi\n\nList-Id: <weekly.example.com>\nPrecedence: bulk\n";
    assert_decision(Msg::mx().message(message).decide(), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn rules_do_not_see_body_fields() {
    let rule = Rule {
        name: "campaign".into(),
        class: Class::Bulk,
        sender_domain: Vec::new(),
        recipient_domain: Vec::new(),
        auth_user: Vec::new(),
        client_network: Vec::new(),
        header: Some("X-Campaign".into()),
        header_value: None,
    };
    let config = ClassifyConfig { rules: vec![rule], ..ClassifyConfig::default() };
    let message = b"Subject: hi\r\n\r\nX-Campaign: spring\r\n";
    assert_decision(Msg::mx().message(message).classify(&config), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn a_message_starting_with_an_empty_line_has_no_fields() {
    let message = b"\r\nList-Id: <weekly.example.com>\r\n";
    assert_eq!(header_section(message), b"");
    assert_decision(Msg::mx().message(message).decide(), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn crlf_header_section() {
    let message = b"Subject: hi\r\nPrecedence: list\r\n\r\nbody\r\n";
    assert_eq!(header_section(message), b"Subject: hi\r\nPrecedence: list\r\n");
    assert_decision(Msg::mx().message(message).decide(), Class::Bulk, "builtin:precedence (list)");
}

#[test]
fn lf_only_header_section() {
    let message = b"Subject: hi\nPrecedence: list\n\nbody\n";
    assert_eq!(header_section(message), b"Subject: hi\nPrecedence: list\n");
    assert_decision(Msg::mx().message(message).decide(), Class::Bulk, "builtin:precedence (list)");
    let message = b"Subject: hi\nAuto-Submitted: auto-replied\n\nbody\n";
    assert_decision(Msg::mx().message(message).decide(), Class::Transactional, "builtin:auto-submitted");
}

#[test]
fn folded_fields_are_unfolded() {
    let msg = Msg::mx().message(b"Subject: hi\r\nPrecedence:\r\n bulk\r\n\r\nbody");
    assert_decision(msg.decide(), Class::Bulk, "builtin:precedence (bulk)");
    let msg = Msg::mx().message(b"Auto-Submitted:\r\n\tauto-generated\r\n\r\nbody");
    assert_decision(msg.decide(), Class::Transactional, "builtin:auto-submitted");
    let msg = Msg::mx().message(b"Auto-Submitted: no\r\n  (typed by hand)\r\n\r\nbody");
    assert_decision(msg.decide(), Class::Interpersonal, "builtin:default-mx");
    let msg =
        Msg::mx().message(b"Content-Type: multipart/report;\r\n\treport-type=delivery-status;\r\n\tboundary=x\r\n\r\n");
    assert_decision(msg.decide(), Class::System, "builtin:dsn (delivery-status)");
}

#[test]
fn a_continuation_line_is_not_a_field() {
    let msg = Msg::mx().message(b"Subject: about\r\n List-Id: <weekly.example.com>\r\n\r\nbody");
    assert_decision(msg.decide(), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn a_section_without_an_empty_line_is_read_to_the_end() {
    let message = b"Subject: no body\r\nList-Post: <mailto:team@example.org>";
    assert_eq!(header_section(message), message);
    assert_decision(Msg::mx().message(message).decide(), Class::Bulk, "builtin:list-headers (List-Post)");
}

#[test]
fn lines_without_a_colon_and_binary_junk_are_skipped() {
    let message =
        b"Subject: hi\r\nthis line is no field\r\n\xff\xfe\x00\x01junk\r\nList-Id: <x.example.org>\r\n\r\nbody";
    assert_decision(Msg::mx().message(message).decide(), Class::Bulk, "builtin:list-headers (List-Id)");
}

#[test]
fn values_that_are_not_utf8_are_still_matched() {
    let rule = Rule {
        name: "promo".into(),
        class: Class::Bulk,
        sender_domain: Vec::new(),
        recipient_domain: Vec::new(),
        auth_user: Vec::new(),
        client_network: Vec::new(),
        header: Some("X-Tag".into()),
        header_value: Some("promo".into()),
    };
    let config = ClassifyConfig { rules: vec![rule], ..ClassifyConfig::default() };
    let msg = Msg::mx().message(b"X-Tag: caf\xe9 PROMO \xff\r\n\r\n");
    assert_decision(msg.classify(&config), Class::Bulk, "config:promo");
}

#[test]
fn blanks_before_the_colon_are_read() {
    // RFC 5322 §4.5.8 obs-optional: field-name *WSP ":" — obsolete syntax a
    // receiver must still parse (RFC 5322 §4).
    let msg = Msg::mx().message(b"List-Id : <x.example.org>\r\n\r\n");
    assert_decision(msg.decide(), Class::Bulk, "builtin:list-headers (List-Id)");
}

#[test]
fn huge_header_section_with_many_fields() {
    let mut message = Vec::new();
    for i in 0..200_000 {
        message.extend_from_slice(format!("X-Filler-{i}: some value number {i}\r\n").as_bytes());
    }
    message.extend_from_slice(b"Feedback-ID: 42:campaign:esp\r\n\r\nbody\r\n");
    assert!(message.len() > 7_000_000);
    assert_decision(Msg::mx().message(&message).decide(), Class::Bulk, "builtin:list-headers (Feedback-ID)");
}

#[test]
fn huge_folded_field() {
    let mut message = b"Subject: start".to_vec();
    for _ in 0..200_000 {
        message.extend_from_slice(b"\r\n continued subject text");
    }
    message.extend_from_slice(b"\r\nPrecedence: junk\r\n\r\nbody\r\n");
    assert_decision(Msg::mx().message(&message).decide(), Class::Bulk, "builtin:precedence (junk)");
}

#[test]
fn huge_message_without_an_empty_line() {
    let message = vec![b'x'; 8 << 20];
    assert_eq!(header_section(&message).len(), message.len());
    assert_decision(Msg::mx().message(&message).decide(), Class::Interpersonal, "builtin:default-mx");
}
