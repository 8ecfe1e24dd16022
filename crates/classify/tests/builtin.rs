//! The built-in rules, one by one, and their order.

mod common;

use common::{Msg, assert_decision};
use facteur_classify::{Class, ClassifyConfig};

fn config() -> ClassifyConfig {
    ClassifyConfig {
        bulk_senders: vec!["news@example.org".into(), "promo.example.com".into()],
        transactional_senders: vec!["receipts@shop.example".into(), "*.billing.example".into()],
        transactional_users: vec!["app-mailer".into()],
        ..ClassifyConfig::default()
    }
}

// 1. System.

#[test]
fn null_sender_is_system() {
    assert_decision(Msg::mx().from("").decide(), Class::System, "builtin:null-sender");
}

#[test]
fn delivery_status_report_is_system() {
    let msg = Msg::mx().with_fields("Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=b1\r\n");
    assert_decision(msg.decide(), Class::System, "builtin:dsn (delivery-status)");
}

#[test]
fn disposition_notification_is_system() {
    let msg = Msg::mx()
        .with_fields("Content-Type: multipart/report; report-type=\"disposition-notification\"; boundary=b\r\n");
    assert_decision(msg.decide(), Class::System, "builtin:dsn (disposition-notification)");
}

#[test]
fn other_reports_are_not_system() {
    // RFC 5965 abuse reports are multipart/report too, but not mail about delivery.
    let msg = Msg::mx().with_fields("Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n");
    assert_decision(msg.decide(), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn mail_from_postmaster_or_mailer_daemon_is_system() {
    assert_decision(Msg::mx().from("postmaster@example.org").decide(), Class::System, "builtin:postmaster");
    assert_decision(Msg::mx().from("MAILER-DAEMON@example.org").decide(), Class::System, "builtin:postmaster");
}

#[test]
fn mail_to_postmaster_is_system() {
    assert_decision(Msg::mx().to(&["postmaster@example.net"]).decide(), Class::System, "builtin:postmaster");
    // RFC 5321 §4.1.1.3: the bare, domain-less postmaster.
    assert_decision(Msg::mx().to(&["postmaster"]).decide(), Class::System, "builtin:postmaster");
    let both = Msg::mx().to(&["postmaster@example.net", "mailer-daemon@example.net"]);
    assert_decision(both.decide(), Class::System, "builtin:postmaster");
}

#[test]
fn postmaster_among_other_recipients_does_not_make_system() {
    let msg = Msg::mx().to(&["bob@example.net", "postmaster@example.net"]);
    assert_decision(msg.decide(), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn postmaster_is_a_local_part_not_a_substring() {
    let msg = Msg::mx().from("postmaster-team@example.org").to(&["my.postmaster@example.net"]);
    assert_decision(msg.decide(), Class::Interpersonal, "builtin:default-mx");
}

// 2. Bulk by label.

#[test]
fn precedence_bulk_list_junk_is_bulk() {
    for (value, kind) in [("bulk", "bulk"), ("List", "list"), ("JUNK", "junk"), (" bulk (campaign 7) ", "bulk")] {
        let msg = Msg::mx().with_fields(&format!("Precedence:{value}\r\n"));
        assert_decision(msg.decide(), Class::Bulk, &format!("builtin:precedence ({kind})"));
    }
}

#[test]
fn other_precedence_values_are_not_bulk() {
    for value in ["first-class", "bulkish", "", "special-delivery"] {
        let msg = Msg::mx().with_fields(&format!("Precedence: {value}\r\n"));
        assert_decision(msg.decide(), Class::Interpersonal, "builtin:default-mx");
    }
}

#[test]
fn each_list_field_is_bulk() {
    for field in ["List-Id", "List-Unsubscribe", "List-Post", "Feedback-ID"] {
        let msg = Msg::mx().with_fields(&format!("{field}: <x.example.org>\r\n"));
        assert_decision(msg.decide(), Class::Bulk, &format!("builtin:list-headers ({field})"));
    }
}

#[test]
fn list_field_names_are_case_insensitive_and_named_canonically() {
    let msg = Msg::mx().with_fields("list-unsubscribe: <mailto:leave@example.org>\r\n");
    assert_decision(msg.decide(), Class::Bulk, "builtin:list-headers (List-Unsubscribe)");
    let msg = Msg::mx().with_fields("FEEDBACK-id: 1:2:3:esp\r\n");
    assert_decision(msg.decide(), Class::Bulk, "builtin:list-headers (Feedback-ID)");
}

#[test]
fn other_list_fields_are_not_bulk() {
    // List-Help, List-Archive and List-Owner appear on one-off replies too.
    let msg = Msg::mx().with_fields("List-Help: <mailto:help@example.org>\r\nList-Archive: <https://a.example>\r\n");
    assert_decision(msg.decide(), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn bulk_senders_by_address_and_domain() {
    assert_decision(Msg::mx().from("news@example.org").classify(&config()), Class::Bulk, "builtin:bulk-senders");
    assert_decision(Msg::mx().from("deals@promo.example.com").classify(&config()), Class::Bulk, "builtin:bulk-senders");
    // The address entry names one mailbox, not its domain.
    assert_decision(Msg::mx().classify(&config()), Class::Interpersonal, "builtin:default-mx");
}

// 3. Transactional.

#[test]
fn auto_submitted_is_transactional() {
    for value in ["auto-generated", "auto-replied", "auto-notified; owner-email=\"o@example.org\"", "Auto-Generated"] {
        let msg = Msg::mx().with_fields(&format!("Auto-Submitted: {value}\r\n"));
        assert_decision(msg.decide(), Class::Transactional, "builtin:auto-submitted");
    }
}

#[test]
fn auto_submitted_no_is_not_transactional() {
    for value in ["no", "NO", "no (a person wrote this)", ""] {
        let msg = Msg::mx().with_fields(&format!("Auto-Submitted: {value}\r\n"));
        assert_decision(msg.decide(), Class::Interpersonal, "builtin:default-mx");
    }
}

#[test]
fn transactional_senders() {
    let msg = Msg::mx().from("receipts@shop.example");
    assert_decision(msg.classify(&config()), Class::Transactional, "builtin:transactional-senders");
    let msg = Msg::mx().from("invoices@eu.billing.example");
    assert_decision(msg.classify(&config()), Class::Transactional, "builtin:transactional-senders");
    let msg = Msg::mx().from("invoices@billing.example");
    assert_decision(msg.classify(&config()), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn a_transactional_claim_nobody_vouches_for_is_bulk() {
    let claim = Msg::mx().with_fields("Auto-Submitted: auto-generated\r\n");
    let unauthenticated = Msg { authenticated: Some(false), ..claim };
    assert_decision(unauthenticated.decide(), Class::Bulk, "builtin:unauthenticated-transactional");
    let listed = Msg::mx().from("receipts@shop.example").authenticated(false);
    assert_decision(listed.classify(&config()), Class::Bulk, "builtin:unauthenticated-transactional");
    // Vouched for, or not checked at all: believed.
    let vouched = Msg::mx().with_fields("Auto-Submitted: auto-generated\r\n").authenticated(true);
    assert_decision(vouched.decide(), Class::Transactional, "builtin:auto-submitted");
    // A person's unauthenticated mail is not demoted.
    assert_decision(Msg::mx().authenticated(false).decide(), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn transactional_users() {
    // Many recipients from this user stay transactional: rule 3 comes before rule 5.
    let many: Vec<String> = (0..50).map(|i| format!("user{i}@example.net")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let msg = Msg::submission().user("app-mailer").to(&many);
    assert_decision(msg.classify(&config()), Class::Transactional, "builtin:transactional-users");
    let msg = Msg::submission().user("alice");
    assert_decision(msg.classify(&config()), Class::Interpersonal, "builtin:few-recipients");
}

// 4. Identical content.

#[test]
fn identical_content_at_threshold_is_bulk() {
    assert_decision(Msg::mx().identical(19).decide(), Class::Interpersonal, "builtin:default-mx");
    assert_decision(Msg::mx().identical(20).decide(), Class::Bulk, "builtin:identical-content");
    assert_decision(Msg::submission().identical(500).decide(), Class::Bulk, "builtin:identical-content");
}

#[test]
fn unknown_count_is_never_evidence() {
    let config = ClassifyConfig { identical_bulk_threshold: 0, ..ClassifyConfig::default() };
    assert_decision(Msg::mx().identical(0).classify(&config), Class::Interpersonal, "builtin:default-mx");
    assert_decision(Msg::mx().identical(1).classify(&config), Class::Bulk, "builtin:identical-content");
}

// 5. Authenticated volume.

#[test]
fn authenticated_few_recipients_is_interpersonal_many_is_bulk() {
    let names: Vec<String> = (0..11).map(|i| format!("user{i}@example.net")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let ten = Msg::submission().to(&names[..10]);
    assert_decision(ten.decide(), Class::Interpersonal, "builtin:few-recipients");
    let eleven = Msg::submission().to(&names);
    assert_decision(eleven.decide(), Class::Bulk, "builtin:many-recipients");
    let config = ClassifyConfig { interpersonal_max_recipients: 11, ..ClassifyConfig::default() };
    assert_decision(eleven.classify(&config), Class::Interpersonal, "builtin:few-recipients");
}

#[test]
fn recipient_count_does_not_matter_over_mx() {
    let names: Vec<String> = (0..100).map(|i| format!("user{i}@example.net")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_decision(Msg::mx().to(&names).decide(), Class::Interpersonal, "builtin:default-mx");
}

// 6. Default.

#[test]
fn ordinary_mx_delivery_is_interpersonal() {
    assert_decision(Msg::mx().decide(), Class::Interpersonal, "builtin:default-mx");
}

#[test]
fn unauthenticated_submission_is_named_apart() {
    let msg = Msg { auth_user: None, ..Msg::submission() };
    assert_decision(msg.decide(), Class::Interpersonal, "builtin:default-submission");
}

// Order of the built-in rules.

#[test]
fn system_comes_before_bulk() {
    let msg = Msg::mx().from("").with_fields("List-Id: <x.example.org>\r\nPrecedence: bulk\r\n");
    assert_decision(msg.decide(), Class::System, "builtin:null-sender");
}

#[test]
fn bulk_comes_before_transactional() {
    let msg = Msg::mx().with_fields("Auto-Submitted: auto-generated\r\nList-Unsubscribe: <mailto:x@example.org>\r\n");
    assert_decision(msg.decide(), Class::Bulk, "builtin:list-headers (List-Unsubscribe)");
    let msg = Msg::mx().from("receipts@shop.example").with_fields("Precedence: list\r\n");
    assert_decision(msg.classify(&config()), Class::Bulk, "builtin:precedence (list)");
}

#[test]
fn transactional_comes_before_identical_content() {
    let msg = Msg::mx().with_fields("Auto-Submitted: auto-generated\r\n").identical(1000);
    assert_decision(msg.decide(), Class::Transactional, "builtin:auto-submitted");
}

#[test]
fn precedence_is_reported_before_list_fields() {
    let msg = Msg::mx().with_fields("List-Id: <x.example.org>\r\nPrecedence: junk\r\n");
    assert_decision(msg.decide(), Class::Bulk, "builtin:precedence (junk)");
}
