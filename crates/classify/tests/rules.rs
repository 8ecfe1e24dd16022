//! Operator rules: each condition, their combination, and their order.

mod common;

use common::{Msg, assert_decision};
use facteur_classify::{Class, ClassifyConfig, Rule};

fn rule(name: &str, class: Class) -> Rule {
    Rule {
        name: name.into(),
        class,
        sender_domain: Vec::new(),
        recipient_domain: Vec::new(),
        auth_user: Vec::new(),
        client_network: Vec::new(),
        header: None,
        header_value: None,
    }
}

fn with(rules: Vec<Rule>) -> ClassifyConfig {
    ClassifyConfig { rules, ..ClassifyConfig::default() }
}

fn matches(rule: Rule, msg: &Msg) -> bool {
    let name = format!("config:{}", rule.name);
    let decision = msg.classify(&with(vec![rule]));
    decision.rule == name
}

#[test]
fn rule_without_conditions_matches_everything() {
    let config = with(vec![rule("all", Class::Transactional)]);
    assert_decision(Msg::mx().classify(&config), Class::Transactional, "config:all");
    assert_decision(Msg::mx().from("").classify(&config), Class::Transactional, "config:all");
}

#[test]
fn sender_domain_exact() {
    let r = Rule { sender_domain: vec!["example.org".into()], ..rule("r", Class::Bulk) };
    assert!(matches(r.clone(), &Msg::mx()));
    assert!(matches(r.clone(), &Msg::mx().from("Alice@EXAMPLE.org")));
    assert!(!matches(r.clone(), &Msg::mx().from("alice@mail.example.org")));
    assert!(!matches(r.clone(), &Msg::mx().from("alice@example.net")));
    assert!(!matches(r, &Msg::mx().from("")));
}

#[test]
fn sender_domain_wildcard() {
    let r = Rule { sender_domain: vec!["*.example.org".into()], ..rule("r", Class::Bulk) };
    assert!(matches(r.clone(), &Msg::mx().from("a@mail.example.org")));
    assert!(matches(r.clone(), &Msg::mx().from("a@eu.mail.example.org")));
    assert!(!matches(r.clone(), &Msg::mx().from("a@example.org")));
    assert!(!matches(r, &Msg::mx().from("a@badexample.org")));
}

#[test]
fn sender_domain_any_of_several() {
    let r = Rule { sender_domain: vec!["a.test".into(), "*.b.test".into()], ..rule("r", Class::Bulk) };
    assert!(matches(r.clone(), &Msg::mx().from("x@a.test")));
    assert!(matches(r.clone(), &Msg::mx().from("x@c.b.test")));
    assert!(!matches(r, &Msg::mx().from("x@b.test")));
}

#[test]
fn recipient_domain_any_recipient() {
    let r = Rule { recipient_domain: vec!["partner.test".into()], ..rule("r", Class::Transactional) };
    assert!(matches(r.clone(), &Msg::mx().to(&["a@example.net", "b@partner.test"])));
    assert!(!matches(r.clone(), &Msg::mx().to(&["a@example.net"])));
    assert!(!matches(r, &Msg::mx().to(&[])));
}

#[test]
fn recipient_domain_wildcard() {
    let r = Rule { recipient_domain: vec!["*.partner.test".into()], ..rule("r", Class::Transactional) };
    assert!(matches(r.clone(), &Msg::mx().to(&["a@eu.partner.test"])));
    assert!(!matches(r, &Msg::mx().to(&["a@partner.test"])));
}

#[test]
fn auth_user() {
    let r = Rule { auth_user: vec!["crm".into(), "billing".into()], ..rule("r", Class::Transactional) };
    assert!(matches(r.clone(), &Msg::submission().user("billing")));
    assert!(matches(r.clone(), &Msg::submission().user("CRM")));
    assert!(!matches(r.clone(), &Msg::submission().user("alice")));
    assert!(!matches(r, &Msg::mx()));
}

#[test]
fn client_network_v4_and_v6() {
    let r = Rule {
        client_network: vec!["198.51.100.0/24".parse().unwrap(), "2001:db8:1::/48".parse().unwrap()],
        ..rule("r", Class::Bulk)
    };
    assert!(matches(r.clone(), &Msg::mx().ip("198.51.100.7")));
    assert!(!matches(r.clone(), &Msg::mx().ip("198.51.101.7")));
    assert!(matches(r.clone(), &Msg::mx().ip("2001:db8:1:ff::25")));
    assert!(!matches(r.clone(), &Msg::mx().ip("2001:db8:2::25")));
    // An IPv4 client seen through a dual-stack socket.
    assert!(matches(r, &Msg::mx().ip("::ffff:198.51.100.7")));
}

#[test]
fn header_presence() {
    let r = Rule { header: Some("X-Campaign".into()), ..rule("r", Class::Bulk) };
    assert!(matches(r.clone(), &Msg::mx().with_fields("X-Campaign: spring\r\n")));
    assert!(matches(r.clone(), &Msg::mx().with_fields("x-campaign:\r\n")));
    assert!(!matches(r, &Msg::mx()));
}

#[test]
fn header_value_contains_ignoring_case() {
    let r = Rule { header: Some("x-mailer".into()), header_value: Some("MassMailer".into()), ..rule("r", Class::Bulk) };
    assert!(matches(r.clone(), &Msg::mx().with_fields("X-Mailer: massmailer 4.2\r\n")));
    assert!(matches(r.clone(), &Msg::mx().with_fields("X-Mailer: Pro MASSMAILER\r\n")));
    assert!(!matches(r.clone(), &Msg::mx().with_fields("X-Mailer: Thunderbird\r\n")));
    // Any field of that name may hold it.
    assert!(matches(r.clone(), &Msg::mx().with_fields("X-Mailer: a\r\nX-Mailer: MassMailer\r\n")));
    // The value of another field does not count.
    assert!(!matches(r, &Msg::mx().with_fields("X-Other: MassMailer\r\n")));
}

#[test]
fn header_value_is_matched_unfolded_and_trimmed() {
    let r = Rule { header: Some("X-Source".into()), header_value: Some("crm export".into()), ..rule("r", Class::Bulk) };
    assert!(matches(r.clone(), &Msg::mx().with_fields("X-Source: weekly crm\r\n export\r\n")));
    // Unfolding removes the line break only (RFC 5322 §2.2.3): the blank that
    // starts the continuation line, here a tab, stays as written.
    assert!(!matches(r.clone(), &Msg::mx().with_fields("X-Source: crm\r\n\texport\r\n")));
    let tab = Rule { header_value: Some("crm\texport".into()), ..r };
    assert!(matches(tab, &Msg::mx().with_fields("X-Source:crm\r\n\texport   \r\n")));
}

#[test]
fn header_value_utf8() {
    let r = Rule { header: Some("Subject".into()), header_value: Some("SOLDES".into()), ..rule("r", Class::Bulk) };
    let msg = Msg::mx().message("Subject: Grandes soldes d'été\r\n\r\nbody".as_bytes());
    assert!(matches(r.clone(), &msg));
    let accented = Rule { header_value: Some("ÉTÉ".into()), ..r };
    assert!(matches(accented, &msg));
}

#[test]
fn every_condition_must_hold() {
    let r = Rule {
        sender_domain: vec!["example.org".into()],
        client_network: vec!["192.0.2.0/24".parse().unwrap()],
        header: Some("X-Campaign".into()),
        ..rule("r", Class::Bulk)
    };
    let all = Msg::mx().with_fields("X-Campaign: 1\r\n");
    assert!(matches(r.clone(), &all));
    assert!(!matches(r.clone(), &Msg::mx()));
    assert!(!matches(r.clone(), &Msg::mx().with_fields("X-Campaign: 1\r\n").ip("203.0.113.1")));
    assert!(!matches(r, &Msg::mx().with_fields("X-Campaign: 1\r\n").from("a@example.net")));
}

#[test]
fn configured_rules_come_before_builtin_rules() {
    // A null-sender message would be system; the operator says otherwise.
    let r = Rule { client_network: vec!["192.0.2.0/24".parse().unwrap()], ..rule("monitoring", Class::Bulk) };
    let decision = Msg::mx().from("").classify(&with(vec![r.clone()]));
    assert_decision(decision, Class::Bulk, "config:monitoring");
    // A list message made interpersonal by a rule.
    let r = Rule { header: Some("List-Id".into()), ..rule("team-list", Class::Interpersonal) };
    let decision = Msg::mx().with_fields("List-Id: <team.example.org>\r\n").classify(&with(vec![r]));
    assert_decision(decision, Class::Interpersonal, "config:team-list");
}

#[test]
fn first_matching_rule_wins() {
    let first = Rule { sender_domain: vec!["example.org".into()], ..rule("first", Class::Transactional) };
    let second = Rule { sender_domain: vec!["example.org".into()], ..rule("second", Class::Bulk) };
    let config = with(vec![first.clone(), second.clone()]);
    assert_decision(Msg::mx().classify(&config), Class::Transactional, "config:first");
    let config = with(vec![second, first]);
    assert_decision(Msg::mx().classify(&config), Class::Bulk, "config:second");
}

#[test]
fn a_rule_that_does_not_match_is_skipped() {
    let miss = Rule { sender_domain: vec!["elsewhere.test".into()], ..rule("miss", Class::Bulk) };
    let hit = Rule { auth_user: vec!["alice".into()], ..rule("hit", Class::Transactional) };
    let config = with(vec![miss.clone(), hit]);
    assert_decision(Msg::submission().classify(&config), Class::Transactional, "config:hit");
    // When none matches, the built-in rules decide.
    assert_decision(Msg::mx().classify(&with(vec![miss])), Class::Interpersonal, "builtin:default-mx");
}
