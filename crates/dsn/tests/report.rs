//! Builds each kind of DSN, parses it back with mail-parser and checks it
//! field by field: the top-level header, the three parts, every RFC 3464
//! field, the human text, what of the original is returned, line ends and the
//! header-injection guard.

mod common;

use common::*;
use facteur_dsn::{Action, DEFAULT_FULL_RETURN_LIMIT, DsnInput, DsnRecipient, ReturnContent, build};
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders};

fn parse(bytes: &[u8]) -> Message<'_> {
    MessageParser::default().parse(bytes).expect("the DSN parses")
}

/// The three parts of the multipart/report, in order.
fn parts<'m>(message: &'m Message<'m>) -> [&'m MessagePart<'m>; 3] {
    let ids = message.root_part().sub_parts().expect("multipart");
    assert_eq!(ids.len(), 3, "a DSN has three parts");
    [0, 1, 2].map(|n| &message.parts[ids[n] as usize])
}

fn content_type(part: &MessagePart<'_>) -> String {
    let ct = part.content_type().expect("Content-Type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
}

fn human_text(part: &MessagePart<'_>) -> String {
    part.text_contents().expect("text").to_string()
}

/// The human text with every run of whitespace (line breaks included) as one
/// space, so that checks do not depend on where lines wrap.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn status_text(part: &MessagePart<'_>) -> String {
    String::from_utf8(part.contents().to_vec()).expect("ASCII")
}

/// The checks every DSN passes, whatever its kind; returns the status groups.
fn check_common(bytes: &[u8], subject: &str) -> Vec<Vec<(String, String)>> {
    assert_crlf_only(bytes);
    let message = parse(bytes);

    let ct = message.content_type().expect("Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert!(ct.attribute("boundary").is_some_and(|b| !b.is_empty() && b.len() <= 70));

    assert_eq!(message.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
    assert_eq!(message.header_raw("MIME-Version").map(str::trim), Some("1.0"));
    let from = message.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), Some("Mail Delivery System"));
    assert_eq!(from.address(), Some(format!("MAILER-DAEMON@{HOST}").as_str()));
    let to = message.to().and_then(|a| a.first()).expect("To");
    assert_eq!(to.address(), Some(SENDER));
    assert_eq!(message.subject(), Some(subject));
    assert_eq!(message.message_id(), Some("01HKDSN0000000000000000000@mx.example.org"));
    let date = message.date().expect("Date");
    assert_eq!(date.to_timestamp(), NOW);
    assert_eq!(message.header_raw("Date").map(str::trim), Some("Tue, 02 Jan 2024 03:04:05 +0000"));

    let [human, status, _] = parts(&message);
    assert_eq!(content_type(human), "text/plain");
    assert_eq!(content_type(status), "message/delivery-status");
    assert_eq!(status.content_transfer_encoding(), Some("7bit"));
    let groups = status_groups(&status_text(status));
    let per_message = &groups[0];
    assert_eq!(field(per_message, "Reporting-MTA"), format!("dns;{HOST}"));
    assert_eq!(field(per_message, "Arrival-Date"), "Mon, 01 Jan 2024 10:00:00 +0000");
    groups
}

#[test]
fn failure_report() {
    let bytes = build(&failure());
    let groups = check_common(&bytes, "Undelivered Mail Returned to Sender");
    assert_eq!(groups.len(), 3, "per-message group and two recipients");
    assert_eq!(field(&groups[0], "Original-Envelope-Id"), "QQ314159");
    assert_eq!(groups[0].len(), 3);

    let bob = &groups[1];
    assert_eq!(field(bob, "Original-Recipient"), "rfc822;Bob.Alias@Example.net");
    assert_eq!(field(bob, "Final-Recipient"), "rfc822;bob@example.net");
    assert_eq!(field(bob, "Action"), "failed");
    assert_eq!(field(bob, "Status"), "5.1.1");
    assert_eq!(field(bob, "Remote-MTA"), "dns;mx1.example.net");
    assert_eq!(field(bob, "Diagnostic-Code"), format!("smtp; {BOB_REPLY}"));
    assert_eq!(field(bob, "Last-Attempt-Date"), "Tue, 02 Jan 2024 03:04:00 +0000");
    assert!(!has_field(bob, "Will-Retry-Until"));
    let names: Vec<&str> = bob.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Original-Recipient",
            "Final-Recipient",
            "Action",
            "Status",
            "Remote-MTA",
            "Diagnostic-Code",
            "Last-Attempt-Date"
        ]
    );

    let carol = &groups[2];
    assert!(!has_field(carol, "Original-Recipient"), "no ORCPT given, none written");
    assert_eq!(field(carol, "Final-Recipient"), "rfc822;carol@example.com");
    assert_eq!(field(carol, "Action"), "failed");
    assert_eq!(field(carol, "Status"), "5.2.2");
    assert_eq!(field(carol, "Remote-MTA"), "dns;mail.example.com");
    assert_eq!(field(carol, "Diagnostic-Code"), format!("smtp; {CAROL_REPLY}"));
    assert_eq!(field(carol, "Last-Attempt-Date"), "Tue, 02 Jan 2024 03:04:02 +0000");

    let message = parse(&bytes);
    let [human, _, returned] = parts(&message);
    let text = human_text(human);
    let flat = flat(&text);
    for needle in ["<bob@example.net>", "<carol@example.com>", BOB_REPLY, CAROL_REPLY, "mx1.example.net"] {
        assert!(flat.contains(needle), "{needle:?} missing from {text}");
    }
    assert!(flat.contains("originally addressed to <Bob.Alias@Example.net>"));
    assert!(flat.contains("could not be delivered"));
    assert!(flat.contains("will not be tried again"));
    assert!(flat.contains("A copy of your message is attached."));

    // Small original, no RET: returned whole.
    assert_eq!(content_type(returned), "message/rfc822");
    assert_eq!(returned.content_transfer_encoding(), Some("7bit"));
    let nested = returned.message().expect("a nested message");
    assert_eq!(nested.subject(), Some("Lunch on Friday"));
    assert_eq!(nested.message_id(), Some("lunch-1@example.org"));
    assert_eq!(nested.raw_message(), ORIGINAL);
}

#[test]
fn delay_report() {
    let bytes = build(&delay());
    let groups = check_common(&bytes, "Delayed Mail (still being retried)");
    assert_eq!(groups.len(), 2);
    assert!(!has_field(&groups[0], "Original-Envelope-Id"), "no ENVID given, none written");
    assert_eq!(groups[0].len(), 2);

    let dave = &groups[1];
    assert_eq!(field(dave, "Original-Recipient"), "rfc822;dave@example.net");
    assert_eq!(field(dave, "Final-Recipient"), "rfc822;dave@example.net");
    assert_eq!(field(dave, "Action"), "delayed");
    assert_eq!(field(dave, "Status"), "4.4.1");
    assert_eq!(field(dave, "Remote-MTA"), "dns;mx.example.net");
    assert_eq!(field(dave, "Diagnostic-Code"), format!("smtp; {DAVE_REPLY}"));
    assert_eq!(field(dave, "Last-Attempt-Date"), "Tue, 02 Jan 2024 03:03:05 +0000");
    assert_eq!(field(dave, "Will-Retry-Until"), "Sat, 06 Jan 2024 10:00:00 +0000");
    assert_eq!(dave.len(), 8);

    let message = parse(&bytes);
    let [human, _, returned] = parts(&message);
    let text = human_text(human);
    let flat = flat(&text);
    assert!(flat.contains("<dave@example.net>"));
    assert!(flat.contains(DAVE_REPLY));
    assert!(flat.contains("We will keep trying until Sat, 06 Jan 2024 10:00:00 +0000."), "{text}");
    assert!(flat.contains("you do not need to send it again"));

    // RET=HDRS: the header section only.
    assert_eq!(content_type(returned), "text/rfc822-headers");
    let headers = returned.text_contents().expect("text");
    let expected = std::str::from_utf8(ORIGINAL).unwrap().split("\r\n\r\n").next().unwrap().to_string() + "\r\n";
    assert_eq!(headers, expected);
    assert!(flat.contains("The header section of your message is attached."));
}

#[test]
fn success_report() {
    let bytes = build(&success());
    let groups = check_common(&bytes, "Successful Mail Delivery Report");
    assert_eq!(groups.len(), 3);
    assert_eq!(field(&groups[0], "Original-Envelope-Id"), "QQ314159");

    let erin = &groups[1];
    assert_eq!(field(erin, "Final-Recipient"), "rfc822;erin@example.net");
    assert_eq!(field(erin, "Action"), "delivered");
    assert_eq!(field(erin, "Status"), "2.0.0");
    assert_eq!(field(erin, "Remote-MTA"), "dns;mx.example.net");
    assert_eq!(field(erin, "Diagnostic-Code"), "smtp; 250 2.0.0 Ok: queued as 4Tq9Xk");
    assert!(!has_field(erin, "Will-Retry-Until"), "only delayed reports carry it");

    let frank = &groups[2];
    assert_eq!(field(frank, "Final-Recipient"), "rfc822;frank@example.com");
    assert_eq!(field(frank, "Action"), "relayed");
    assert_eq!(field(frank, "Status"), "2.0.0");
    assert_eq!(field(frank, "Remote-MTA"), "dns;legacy.example.com");
    assert!(!has_field(frank, "Diagnostic-Code"), "no reply, no diagnostic");
    assert_eq!(frank.len(), 5);

    let message = parse(&bytes);
    let [human, _, returned] = parts(&message);
    let text = human_text(human);
    assert!(text.contains("<erin@example.net>") && text.contains("<frank@example.com>"));
    assert!(text.contains("Delivered."));
    assert!(text.contains("does not send delivery reports"));
    // RET=FULL: the original whole.
    assert_eq!(content_type(returned), "message/rfc822");
    assert_eq!(returned.message().expect("nested").raw_message(), ORIGINAL);
}

#[test]
fn mixed_actions_take_the_most_serious_subject() {
    let mut input = success();
    input.recipients[1].action = Action::Delayed;
    assert_eq!(parse(&build(&input)).subject(), Some("Delayed Mail (still being retried)"));
    input.recipients[0].action = Action::Failed;
    assert_eq!(parse(&build(&input)).subject(), Some("Undelivered Mail Returned to Sender"));
}

/// A message of at least `size` octets, in short CRLF lines.
fn big_original(size: usize) -> Vec<u8> {
    let mut message = b"From: Alice <alice@example.org>\r\nSubject: big\r\n\r\n".to_vec();
    while message.len() < size {
        message.extend_from_slice(&[b'x'; 76]);
        message.extend_from_slice(b"\r\n");
    }
    message
}

#[test]
fn return_content_full_headers_and_default_by_size() {
    let big = big_original(DEFAULT_FULL_RETURN_LIMIT + 1);
    assert!(big.len() > 256 * 1024);
    let headers = b"From: Alice <alice@example.org>\r\nSubject: big\r\n";

    // Default, large: headers only, and the text says why.
    let input = DsnInput { original: &big, ..failure() };
    let bytes = build(&input);
    assert!(bytes.len() < 16 * 1024, "the large body is not in the DSN");
    let message = parse(&bytes);
    let [human, _, returned] = parts(&message);
    assert_eq!(content_type(returned), "text/rfc822-headers");
    assert_eq!(returned.contents(), headers);
    assert!(flat(&human_text(human)).contains("the whole message was larger than 256 KiB"));

    // RET=FULL wins over the size.
    let input = DsnInput { original: &big, return_content: Some(ReturnContent::Full), ..failure() };
    let bytes = build(&input);
    let message = parse(&bytes);
    let [_, _, returned] = parts(&message);
    assert_eq!(content_type(returned), "message/rfc822");
    assert_eq!(returned.message().expect("nested").raw_message(), big.as_slice());

    // RET=HDRS wins over a small size.
    let input = DsnInput { return_content: Some(ReturnContent::Headers), ..failure() };
    let bytes = build(&input);
    let message = parse(&bytes);
    let [human, _, returned] = parts(&message);
    assert_eq!(content_type(returned), "text/rfc822-headers");
    assert!(!human_text(human).contains("larger than"));

    // Default, small: whole (see failure_report); exactly at the limit too.
    let mut exact = big_original(DEFAULT_FULL_RETURN_LIMIT - 100);
    exact.resize(DEFAULT_FULL_RETURN_LIMIT - 2, b'y');
    exact.extend_from_slice(b"\r\n");
    assert_eq!(exact.len(), DEFAULT_FULL_RETURN_LIMIT);
    let input = DsnInput { original: &exact, ..failure() };
    let bytes = build(&input);
    let message = parse(&bytes);
    let [_, _, returned] = parts(&message);
    assert_eq!(content_type(returned), "message/rfc822");
}

#[test]
fn eight_bit_original_is_attached_as_is() {
    let original = "From: Zoé <zoe@example.fr>\r\nSubject: Café à midi\r\n\r\nÇa te dit ?\r\n".as_bytes();
    let input = DsnInput { original, ..failure() };
    let bytes = build(&input);
    assert!(bytes.windows(original.len()).any(|w| w == original), "the original bytes are untouched");
    let message = parse(&bytes);
    let [_, status, returned] = parts(&message);
    assert_eq!(returned.content_transfer_encoding(), Some("8bit"));
    assert_eq!(returned.message().expect("nested").subject(), Some("Café à midi"));
    assert!(status.contents().is_ascii());

    let input = DsnInput { original, return_content: Some(ReturnContent::Headers), ..failure() };
    let bytes = build(&input);
    let message = parse(&bytes);
    let [_, _, returned] = parts(&message);
    assert_eq!(returned.content_transfer_encoding(), Some("8bit"));
    assert_eq!(returned.contents(), "From: Zoé <zoe@example.fr>\r\nSubject: Café à midi\r\n".as_bytes());
}

#[test]
fn crlf_everywhere_even_from_a_bare_lf_original() {
    let lf_original = b"From: a@example.org\nSubject: unix\n\nline one\nline two\n";
    for input in [failure(), delay(), success(), DsnInput { original: lf_original, ..failure() }] {
        let bytes = build(&input);
        assert_crlf_only(&bytes);
        for line in bytes.split(|&b| b == b'\n') {
            assert!(line.len() <= 999, "line over 998 octets");
        }
    }
    let bytes = build(&DsnInput { original: lf_original, ..failure() });
    let message = parse(&bytes);
    let [_, _, returned] = parts(&message);
    assert_eq!(
        returned.message().expect("nested").raw_message(),
        b"From: a@example.org\r\nSubject: unix\r\n\r\nline one\r\nline two\r\n"
    );
}

#[test]
fn header_injection_is_neutralised() {
    let evil = "\r\nX-Injected: yes\r\n";
    let input = DsnInput {
        reporting_mta: "mx.example.org\r\nX-Injected: yes",
        envelope_id: Some("ENV\r\nX-Injected: yes"),
        original_sender: "alice@example.org\r\nX-Injected: yes",
        message_id: "id@mx.example.org\r\nX-Injected: yes",
        recipients: vec![DsnRecipient {
            final_recipient: format!("bob@example.net{evil}"),
            original_recipient: Some(format!("rfc822;bob@example.net{evil}")),
            action: Action::Failed,
            status: (5, 1, 1),
            remote_mta: Some(format!("mx1.example.net{evil}")),
            diagnostic: Some(format!("550 5.1.1 no{evil}\r\nAction: delivered\n\nFinal-Recipient: rfc822;x@y\r")),
            last_attempt: Some(NOW),
            will_retry_until: None,
        }],
        ..failure()
    };
    let bytes = build(&input);
    assert_crlf_only(&bytes);
    let message = parse(&bytes);
    assert!(message.header_raw("X-Injected").is_none(), "no injected top-level header");
    let names: Vec<&str> = message.headers().iter().map(|h| h.name()).collect();
    assert_eq!(
        names,
        ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version", "Content-Type"]
    );

    let [human, status, _] = parts(&message);
    let groups = status_groups(&status_text(status));
    assert_eq!(groups.len(), 2, "no extra group from a blank line in the reply");
    assert!(groups.iter().flatten().all(|(name, _)| name != "X-Injected"));
    assert_eq!(groups[0].len(), 3);
    let bob = &groups[1];
    assert_eq!(bob.len(), 7, "{bob:?}");
    assert_eq!(field(bob, "Action"), "failed");
    assert_eq!(field(bob, "Final-Recipient"), "rfc822;bob@example.net  X-Injected: yes");
    assert!(field(bob, "Diagnostic-Code").starts_with("smtp; 550 5.1.1 no  X-Injected: yes"));
    for line in status_text(status).split("\r\n").chain(human_text(human).split("\r\n")) {
        assert!(!line.ends_with(' '), "trailing space in {line:?}");
    }
    assert!(human.headers().iter().all(|h| h.name() != "X-Injected"));
    assert!(!human_text(human).lines().any(|line| line.starts_with("X-Injected")));
}

#[test]
fn utf8_recipient_keeps_the_status_part_ascii() {
    let mut input = failure();
    input.recipients[0].final_recipient = "jörg@bücher.example".into();
    input.recipients[0].original_recipient = Some("utf-8;j\\x{F6}rg@b\\x{FC}cher.example".into());
    input.recipients[0].diagnostic = Some("550 5.1.1 Empfänger unbekannt".into());
    let bytes = build(&input);
    let message = parse(&bytes);
    let [human, status, _] = parts(&message);
    let groups = status_groups(&status_text(status));
    assert_eq!(field(&groups[1], "Final-Recipient"), "utf-8;j\\x{F6}rg@b\\x{FC}cher.example");
    assert_eq!(field(&groups[1], "Original-Recipient"), "utf-8;j\\x{F6}rg@b\\x{FC}cher.example");
    assert_eq!(field(&groups[1], "Diagnostic-Code"), "smtp; 550 5.1.1 Empf?nger unbekannt");
    // The human text keeps the real characters.
    let text = human_text(human);
    assert!(text.contains("<jörg@bücher.example>") && text.contains("Empfänger unbekannt"), "{text}");
}

#[test]
fn building_is_deterministic() {
    for input in [failure(), delay(), success()] {
        assert_eq!(build(&input), build(&input));
    }
}

#[test]
fn delay_with_different_retry_limits_names_each() {
    let mut input = delay();
    let mut second = input.recipients[0].clone();
    second.final_recipient = "gina@example.net".into();
    second.original_recipient = None;
    second.will_retry_until = Some(RETRY_UNTIL - 86_400);
    input.recipients.push(second);
    let bytes = build(&input);
    let message = parse(&bytes);
    let [human, status, _] = parts(&message);
    let text = flat(&human_text(human));
    assert!(text.contains("This is only a warning"));
    assert!(text.contains("We will keep trying until Sat, 06 Jan 2024 10:00:00 +0000. If it still"), "{text}");
    assert!(text.contains("<gina@example.net>"));
    assert!(text.contains("We will keep trying until Fri, 05 Jan 2024 10:00:00 +0000."), "{text}");
    let groups = status_groups(&status_text(status));
    assert_eq!(field(&groups[2], "Will-Retry-Until"), "Fri, 05 Jan 2024 10:00:00 +0000");
    assert!(!has_field(&groups[2], "Original-Recipient"));
}
