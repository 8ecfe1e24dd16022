//! Arbitrary input never panics, the header section is always a clean
//! prefix, and nothing after it changes a decision. Inputs come from a
//! fixed-seed xorshift generator, so every run sees the same cases.

mod common;

use common::Msg;
use facteur_classify::{Class, ClassifyConfig, Rule, header_section};

/// Marsaglia's xorshift64: tiny, deterministic, good enough to vary inputs.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fragments that steer random input toward the parsers' interesting paths.
const PIECES: &[&[u8]] = &[
    b"List-Id",
    b"Precedence",
    b"Auto-Submitted",
    b"Content-Type",
    b"X-Tag",
    b"Feedback-ID",
    b": ",
    b":",
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"multipart/report",
    b"; report-type=",
    b"delivery-status",
    b"bulk",
    b"no",
    b"auto-generated",
    b"(",
    b")",
    b"\\",
    b"\"",
    b";",
    b"=",
    b"=?utf-8?q?",
    b"?=",
    b"\0",
    b"\xff\xfe",
    b"\xc3\xa9",
    b"\xe2\x82",
    b"Precedence: bulk\r\n",
    b"Auto-Submitted: no\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status\r\n",
    b"X-Tag: \xc3\x89t\xc3\xa9\r\n",
    b"\r\n ",
];

fn random_input(rng: &mut XorShift) -> Vec<u8> {
    let mut input = Vec::new();
    if rng.below(4) == 0 {
        // Raw bytes.
        let len = rng.below(2048);
        input.extend((0..len).map(|_| rng.next() as u8));
    } else {
        for _ in 0..rng.below(200) {
            if rng.below(5) == 0 {
                input.push(rng.next() as u8);
            } else {
                input.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
        }
    }
    input
}

fn config() -> ClassifyConfig {
    let rule = |name: &str, header: &str, value: Option<&str>| Rule {
        name: name.into(),
        class: Class::Transactional,
        sender_domain: vec!["*.example.org".into()],
        recipient_domain: Vec::new(),
        auth_user: Vec::new(),
        client_network: Vec::new(),
        header: Some(header.into()),
        header_value: value.map(Into::into),
    };
    ClassifyConfig {
        rules: vec![rule("tagged", "X-Tag", Some("été")), rule("listed", "list-id", None)],
        bulk_senders: vec!["example.com".into()],
        ..ClassifyConfig::default()
    }
}

/// The section is a prefix of the message, holds no empty line, and is
/// followed by nothing or by the empty line that ends it.
fn assert_clean_section(message: &[u8]) {
    let section = header_section(message);
    assert!(message.starts_with(section));
    let rest = &message[section.len()..];
    assert!(rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n"), "{message:?}");
    assert!(!section.starts_with(b"\n") && !section.starts_with(b"\r\n"), "{message:?}");
    let has_empty_line = section.windows(2).any(|w| w == b"\n\n") || section.windows(3).any(|w| w == b"\n\r\n");
    assert!(!has_empty_line, "{message:?}");
}

#[test]
fn random_messages_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let config = config();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4000 {
        let message = random_input(&mut rng);
        assert_clean_section(&message);
        let from = ["", "alice@example.org", "a@mail.example.org", "news@example.com"][rng.below(4)];
        let msg = Msg::mx().from(from).message(&message);
        let decision = msg.classify(&config);
        assert!(Class::ALL.contains(&decision.class));
        assert!(decision.rule.starts_with("builtin:") || decision.rule.starts_with("config:"));
        seen.insert(decision.rule);
    }
    // The generator reaches every kind of decision the header section can drive.
    for rule in [
        "builtin:null-sender",
        "builtin:dsn (delivery-status)",
        "builtin:precedence (bulk)",
        "builtin:list-headers (List-Id)",
        "builtin:bulk-senders",
        "builtin:auto-submitted",
        "builtin:default-mx",
        "config:tagged",
        "config:listed",
    ] {
        assert!(seen.contains(rule), "never produced {rule}: {seen:?}");
    }
}

#[test]
fn what_follows_the_header_section_never_matters() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let config = config();
    let body_with_markers = b"List-Id: <x.example.org>\r\nPrecedence: bulk\r\nAuto-Submitted: auto-generated\r\n";
    for _ in 0..3000 {
        // A random header section, ended by a line break and an empty line.
        let mut section = header_section(&random_input(&mut rng)).to_vec();
        if !section.is_empty() && !section.ends_with(b"\n") {
            section.extend_from_slice(b"\r\n");
        }
        let with_body = |body: &[u8]| {
            let mut message = section.clone();
            message.extend_from_slice(b"\r\n");
            message.extend_from_slice(body);
            message
        };
        let plain = with_body(b"hello\r\n");
        assert_eq!(header_section(&plain), &section[..]);
        let reference = Msg::mx().message(&plain).classify(&config);
        for body in [&body_with_markers[..], &random_input(&mut rng)] {
            let decision = Msg::mx().message(&with_body(body)).classify(&config);
            assert_eq!(decision, reference, "section {section:?}");
        }
    }
}
