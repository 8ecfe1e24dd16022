//! Shared fixtures and helpers for the integration tests: three reports (a
//! bounce, a delay warning, a delivery report) built from fixed inputs.

#![allow(dead_code)] // each test file uses its own subset

use facteur_dsn::{Action, DsnInput, DsnRecipient, ReturnContent};

pub const HOST: &str = "mx.example.org";
pub const SENDER: &str = "alice@example.org";
/// 2024-01-01T10:00:00Z
pub const ARRIVAL: i64 = 1_704_103_200;
/// 2024-01-02T03:04:05Z
pub const NOW: i64 = 1_704_164_645;
/// 2024-01-06T10:00:00Z
pub const RETRY_UNTIL: i64 = 1_704_535_200;

pub const ORIGINAL: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Bob <bob@example.net>, carol@example.com\r\n\
Subject: Lunch on Friday\r\n\
Date: Mon, 01 Jan 2024 10:59:58 +0100\r\n\
Message-ID: <lunch-1@example.org>\r\n\
\r\n\
Hi Bob, hi Carol,\r\n\
\r\n\
lunch on Friday at noon?\r\n";

pub const BOB_REPLY: &str =
    "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table";
pub const CAROL_REPLY: &str = "552 5.2.2 carol@example.com: mailbox full";
pub const DAVE_REPLY: &str = "451 4.4.1 greylisted, please try again later";

fn recipient(address: &str, action: Action, status: (u8, u16, u16)) -> DsnRecipient {
    DsnRecipient {
        final_recipient: address.to_string(),
        original_recipient: None,
        action,
        status,
        remote_mta: None,
        diagnostic: None,
        last_attempt: None,
        will_retry_until: None,
    }
}

pub fn input(recipients: Vec<DsnRecipient>) -> DsnInput<'static> {
    DsnInput {
        reporting_mta: HOST,
        envelope_id: Some("QQ314159"),
        arrival_date: ARRIVAL,
        now: NOW,
        original_sender: SENDER,
        recipients,
        return_content: None,
        original: ORIGINAL,
        message_id: "01HKDSN0000000000000000000@mx.example.org",
    }
}

/// Two permanent failures: one with an ORCPT, both with the remote reply.
pub fn failure() -> DsnInput<'static> {
    input(vec![
        DsnRecipient {
            original_recipient: Some("rfc822;Bob.Alias@Example.net".into()),
            remote_mta: Some("mx1.example.net".into()),
            diagnostic: Some(BOB_REPLY.into()),
            last_attempt: Some(NOW - 5),
            ..recipient("bob@example.net", Action::Failed, (5, 1, 1))
        },
        DsnRecipient {
            remote_mta: Some("mail.example.com".into()),
            diagnostic: Some(CAROL_REPLY.into()),
            last_attempt: Some(NOW - 3),
            ..recipient("carol@example.com", Action::Failed, (5, 2, 2))
        },
    ])
}

/// One recipient still being retried, with RET=HDRS and no ENVID.
pub fn delay() -> DsnInput<'static> {
    DsnInput {
        envelope_id: None,
        return_content: Some(ReturnContent::Headers),
        ..input(vec![DsnRecipient {
            original_recipient: Some("rfc822;dave@example.net".into()),
            remote_mta: Some("mx.example.net".into()),
            diagnostic: Some(DAVE_REPLY.into()),
            last_attempt: Some(NOW - 60),
            will_retry_until: Some(RETRY_UNTIL),
            ..recipient("dave@example.net", Action::Delayed, (4, 4, 1))
        }])
    }
}

/// A delivery report (NOTIFY=SUCCESS) for one delivered and one relayed
/// recipient, with RET=FULL.
pub fn success() -> DsnInput<'static> {
    DsnInput {
        return_content: Some(ReturnContent::Full),
        ..input(vec![
            DsnRecipient {
                remote_mta: Some("mx.example.net".into()),
                diagnostic: Some("250 2.0.0 Ok: queued as 4Tq9Xk".into()),
                last_attempt: Some(NOW - 1),
                // Not a delay: must not be written.
                will_retry_until: Some(RETRY_UNTIL),
                ..recipient("erin@example.net", Action::Delivered, (2, 0, 0))
            },
            DsnRecipient {
                remote_mta: Some("legacy.example.com".into()),
                last_attempt: Some(NOW - 1),
                ..recipient("frank@example.com", Action::Relayed, (2, 0, 0))
            },
        ])
    }
}

/// The fields of a message/delivery-status body: unfolded, split into groups
/// at blank lines, each field as (name, value).
pub fn status_groups(body: &str) -> Vec<Vec<(String, String)>> {
    assert!(body.is_ascii(), "message/delivery-status must be US-ASCII");
    let unfolded = body.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .split("\r\n\r\n")
        .map(|group| {
            group
                .split("\r\n")
                .filter(|line| !line.is_empty())
                .map(|line| {
                    let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("not a field: {line:?}"));
                    (name.to_string(), value.trim().to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|group| !group.is_empty())
        .collect()
}

/// The value of the only field `name` in `group`; panics if absent or repeated.
pub fn field<'g>(group: &'g [(String, String)], name: &str) -> &'g str {
    let mut found = group.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    let (_, value) = found.next().unwrap_or_else(|| panic!("no {name} in {group:?}"));
    assert!(found.next().is_none(), "{name} repeated in {group:?}");
    value
}

pub fn has_field(group: &[(String, String)], name: &str) -> bool {
    group.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Every line end is CRLF: no bare LF, no bare CR.
pub fn assert_crlf_only(bytes: &[u8]) {
    for (at, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' => assert!(at > 0 && bytes[at - 1] == b'\r', "bare LF at {at}"),
            b'\r' => assert_eq!(bytes.get(at + 1), Some(&b'\n'), "bare CR at {at}"),
            _ => {}
        }
    }
}
