use super::*;

fn ok(s: &str) -> Address {
    Address::parse_path(s, false).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn err(s: &str, smtputf8: bool) -> AddressError {
    match Address::parse_path(s, smtputf8) {
        Ok(a) => panic!("{s:?} parsed as {a:?}"),
        Err(e) => e,
    }
}

#[test]
fn dot_string_and_domain() {
    let a = ok("John.Doe@Example.COM");
    assert_eq!(a, Address { local: "John.Doe".into(), domain: "Example.COM".into() });
    assert_eq!(a.domain_lower(), "example.com");
    assert_eq!(a.to_string(), "John.Doe@Example.COM");
    assert!(a.is_ascii());
    assert_eq!(ok("a+tag!#$%&'*/=?^_`{|}~-@x-1.example").local, "a+tag!#$%&'*/=?^_`{|}~-");
    assert_eq!(ok("u@localhost").domain, "localhost");
    assert_eq!(ok("u@123.example").domain, "123.example");
}

#[test]
fn quoted_local_part_is_stored_unquoted_and_requoted() {
    let a = ok(r#""john doe"@example.com"#);
    assert_eq!(a.local, "john doe");
    assert_eq!(a.to_string(), r#""john doe"@example.com"#);
    let a = ok(r#""a\"b\\c@d"@example.com"#);
    assert_eq!(a.local, r#"a"b\c@d"#);
    assert_eq!(a.to_string(), r#""a\"b\\c@d"@example.com"#);
    // A quoted dot-string needs no quotes when printed.
    assert_eq!(ok(r#""plain"@example.com"#).to_string(), "plain@example.com");
    assert_eq!(ok(r#"""@example.com"#).local, "");
    assert_eq!(ok(r#"""@example.com"#).to_string(), r#"""@example.com"#);
    assert_eq!(ok(r#""a..b"@example.com"#).to_string(), r#""a..b"@example.com"#);
}

#[test]
fn source_route_is_dropped() {
    // RFC 5321 §4.1.2 and Appendix C.
    assert_eq!(ok("@a.example,@b.example:user@d.example"), ok("user@d.example"));
    assert_eq!(ok("@a.example:user@d.example"), ok("user@d.example"));
    assert_eq!(err("@a.example;user@d.example", false), AddressError::Syntax);
    assert_eq!(err("@a.example,b.example:user@d.example", false), AddressError::Syntax);
    assert_eq!(err("@-a.example:user@d.example", false), AddressError::Syntax);
    assert_eq!(err("@:user@d.example", false), AddressError::Syntax);
}

#[test]
fn address_literals() {
    assert_eq!(ok("u@[192.0.2.1]").domain, "[192.0.2.1]");
    assert_eq!(ok("u@[IPv6:2001:db8::1]").domain, "[IPv6:2001:db8::1]");
    assert_eq!(ok("u@[ipv6:::1]").domain, "[ipv6:::1]");
    assert_eq!(ok("u@[IPv6:::ffff:192.0.2.1]").domain, "[IPv6:::ffff:192.0.2.1]");
    for bad in [
        "u@[256.0.0.1]",
        "u@[1.2.3]",
        "u@[1.2.3.4.5]",
        "u@[1.2.3.0001]",
        "u@[1.2.3.-1]",
        "u@[IPv6:1.2.3.4]",
        "u@[IPv6:fe80::1%eth0]",
        "u@[x-tag:abc]",
        "u@[1.2.3.4",
        "u@1.2.3.4]",
        "u@[]",
    ] {
        assert_eq!(err(bad, false), AddressError::Syntax, "{bad}");
    }
}

#[test]
fn syntax_errors() {
    for bad in [
        "",
        "@",
        "user",
        "user@",
        "@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a b@example.com",
        "a@b@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@example..com",
        "a@example.com.",
        "a@.example.com",
        "a@exa_mple.com",
        "a(comment)@example.com",
        "\"unterminated@example.com",
        "\"a\"b@example.com",
        "\"a\tb\"@example.com",
        "\"a\\\u{1}\"@example.com",
        "a\r\n@example.com",
        "Postmaster",
    ] {
        assert_eq!(err(bad, true), AddressError::Syntax, "{bad:?}");
    }
}

#[test]
fn utf8_needs_smtputf8() {
    // RFC 6531 §3.3.
    assert_eq!(err("jösé@example.com", false), AddressError::NeedsSmtpUtf8);
    assert_eq!(err("user@exämple.com", false), AddressError::NeedsSmtpUtf8);
    assert_eq!(err("\"jö sé\"@example.com", false), AddressError::NeedsSmtpUtf8);
    let a = Address::parse_path("jösé@exämple.com", true).expect("utf8");
    assert_eq!(a.local, "jösé");
    assert_eq!(a.domain_lower(), "exämple.com");
    assert!(!a.is_ascii());
    // A syntax error is reported as such even when non-ASCII.
    assert_eq!(err("jö..sé@example.com", false), AddressError::Syntax);
}

#[test]
fn length_limits_at_and_past_the_edge() {
    // RFC 5321 §4.5.3.1.1: local part 64 octets.
    let local64 = "a".repeat(64);
    assert_eq!(ok(&format!("{local64}@example.com")).local, local64);
    assert_eq!(err(&format!("{local64}a@example.com"), false), AddressError::TooLong);
    // Counted as sent, quotes included.
    assert_eq!(err(&format!("\"{}\"@example.com", "a".repeat(63)), false), AddressError::TooLong);
    assert!(Address::parse_path(&format!("\"{}\"@example.com", "a".repeat(62)), false).is_ok());

    // RFC 5321 §4.5.3.1.2: domain 255 octets; §4.5.3.1.3: path 256 with brackets.
    let label = "b".repeat(63);
    let domain = format!("{label}.{label}.{label}.{}", "c".repeat(61)); // 253
    assert_eq!(domain.len(), 253);
    let path = format!("a@{domain}");
    assert_eq!(path.len() + 2, 257);
    assert_eq!(err(&path, false), AddressError::TooLong);
    let path = format!("@{domain}:a@x.example");
    assert_eq!(err(&path, false), AddressError::TooLong);
    let domain = format!("{label}.{label}.{label}.{}", "c".repeat(60)); // 252
    let path = format!("a@{domain}"); // 254 + 2 = 256
    assert_eq!(ok(&path).domain, domain);

    // RFC 1035: 63-octet labels.
    assert!(Address::parse_path(&format!("a@{}.example", "d".repeat(64)), false).is_err());
}

#[test]
fn display_round_trips() {
    for s in
        ["a@b.example", "\"a b\"@b.example", "\"a\\\\b\"@[1.2.3.4]", "\"\\\"\"@x", "\"\"@x", "\"x.\"@x", "\"a@b\"@x"]
    {
        let a = ok(s);
        assert_eq!(Address::parse_path(&a.to_string(), false), Ok(a.clone()), "{s}");
    }
    let pm = Address { local: "Postmaster".into(), domain: String::new() };
    assert_eq!(pm.to_string(), "Postmaster");
}

#[test]
fn helpers() {
    assert!(is_domain("mail.example"));
    assert!(!is_domain(""));
    assert!(is_address_literal("[10.0.0.1]"));
    assert!(!is_address_literal("10.0.0.1"));
    assert!(is_dot_string("a.b"));
    assert!(!is_dot_string("a..b"));
}
