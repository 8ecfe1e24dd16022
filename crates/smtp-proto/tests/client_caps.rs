//! EHLO capabilities: keyword forms, and the round trip with facteur's own
//! server (every extension it advertises is understood).

mod common;

use common::{Harness, config};
use facteur_smtp_proto::client::{Capabilities, ReplyReader};
use facteur_smtp_proto::{Reply, SessionConfig};

fn ehlo_reply(lines: &[&str]) -> Reply {
    Reply { code: 250, enhanced: None, lines: lines.iter().map(|l| l.to_string()).collect() }
}

#[test]
fn typical_reply() {
    let caps = Capabilities::from_ehlo(&ehlo_reply(&[
        "mx.example.net Hello client [192.0.2.1]",
        "PIPELINING",
        "SIZE 52428800",
        "VRFY",
        "ETRN",
        "STARTTLS",
        "AUTH PLAIN LOGIN",
        "AUTH=PLAIN LOGIN",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
    ]));
    assert_eq!(
        caps,
        Capabilities {
            pipelining: true,
            size: Some(52_428_800),
            eightbitmime: true,
            smtputf8: true,
            dsn: true,
            chunking: true,
            starttls: true,
            enhanced_status_codes: true,
            auth: vec!["PLAIN".into(), "LOGIN".into()],
        }
    );
}

#[test]
fn keyword_forms() {
    let caps =
        Capabilities::from_ehlo(&ehlo_reply(&["mx", "pipelining", "Size", "auth=cram-md5", "AUTH xoauth2 PLAIN"]));
    assert!(caps.pipelining);
    // SIZE without a number: offered, no announced limit.
    assert_eq!(caps.size, Some(0));
    assert_eq!(caps.auth, ["CRAM-MD5", "XOAUTH2", "PLAIN"]);
    // An unreadable limit counts as none.
    assert_eq!(Capabilities::from_ehlo(&ehlo_reply(&["mx", "SIZE lots"])).size, Some(0));
    // Invalid mechanism names are dropped.
    let caps = Capabilities::from_ehlo(&ehlo_reply(&["mx", "AUTH PLAIN THIS-NAME-IS-FAR-TOO-LONG x!y"]));
    assert_eq!(caps.auth, ["PLAIN"]);
}

#[test]
fn first_line_is_the_name_not_a_keyword() {
    assert_eq!(Capabilities::from_ehlo(&ehlo_reply(&["PIPELINING"])), Capabilities::default());
    assert_eq!(Capabilities::from_ehlo(&ehlo_reply(&["mx", "", "  "])), Capabilities::default());
}

#[test]
fn refused_ehlo_announces_nothing() {
    let reply = Reply { code: 502, enhanced: Some((5, 5, 1)), lines: vec!["mx".into(), "PIPELINING".into()] };
    assert_eq!(Capabilities::from_ehlo(&reply), Capabilities::default());
}

/// The EHLO reply of a facteur session with `config`, read by the client.
fn facteur_ehlo(config: SessionConfig) -> Reply {
    let mut h = Harness::new(config);
    let mut reader = ReplyReader::default();
    reader.feed(h.transcript().as_bytes());
    let greeting = reader.next_reply().unwrap().unwrap();
    assert_eq!(greeting.code, 220);
    reader.feed(h.send("EHLO client.example\r\n").as_bytes());
    let reply = reader.next_reply().unwrap().unwrap();
    assert_eq!(reader.next_reply(), Ok(None));
    reply
}

#[test]
fn facteur_server_round_trip() {
    let configs = [
        config(),
        SessionConfig { max_message_size: 0, starttls_available: true, ..config() },
        SessionConfig { tls_active: true, auth_enabled: true, ..config() },
    ];
    for config in configs {
        let reply = facteur_ehlo(config.clone());
        let caps = Capabilities::from_ehlo(&reply);
        // Every keyword the server advertises is one the client knows and
        // has recorded. A new extension on the server side fails here until
        // the client learns it (or it is listed as not needed).
        for line in &reply.lines[1..] {
            let keyword = line.split(' ').next().unwrap();
            let understood = match keyword {
                "PIPELINING" => caps.pipelining,
                "SIZE" => caps.size == Some(config.max_message_size),
                "8BITMIME" => caps.eightbitmime,
                "SMTPUTF8" => caps.smtputf8,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes,
                "DSN" => caps.dsn,
                "CHUNKING" => caps.chunking,
                "STARTTLS" => caps.starttls,
                "AUTH" => caps.auth == ["PLAIN", "LOGIN"],
                other => panic!("the client does not know the extension {other:?}"),
            };
            assert!(understood, "{line:?} -> {caps:?}");
        }
        assert_eq!(caps.starttls, config.starttls_available && !config.tls_active);
        assert_eq!(!caps.auth.is_empty(), config.auth_enabled && config.tls_active);
    }
}
