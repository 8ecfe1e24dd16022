//! Header fields facteur adds to a message: `Received:` (RFC 5321 §4.4), and
//! for submission a missing `Message-ID:` or `Date:` (RFC 6409 §8.2, §8.3).

/// RFC 5322 §3.3 date-time in UTC, e.g. `Sun, 22 Nov 2026 01:35:22 +0000`
/// (one implementation for the whole server, in the leaf crate `facteur-dsn`).
pub use facteur_dsn::rfc5322_date;

/// The `with` keyword of a Received field (RFC 3848 §2, RFC 6531 §3.7.3).
pub fn with_protocol(esmtp: bool, tls: bool, auth: bool, smtputf8: bool) -> String {
    if !esmtp {
        return "SMTP".into();
    }
    let base = if smtputf8 { "UTF8SMTP" } else { "ESMTP" };
    format!("{base}{}{}", if tls { "S" } else { "" }, if auth { "A" } else { "" })
}

/// What a Received field records about one transaction.
pub struct ReceivedInfo<'a> {
    pub helo: &'a str,
    pub client_ip: &'a str,
    pub hostname: &'a str,
    pub protocol: &'a str,
    pub id: &'a str,
    /// Named only when the message has exactly one recipient (privacy of Bcc).
    pub single_recipient: Option<&'a str>,
    pub unix_secs: i64,
}

/// A folded `Received:` field ending in CRLF (RFC 5321 §4.4 Time-stamp-line).
pub fn received(info: &ReceivedInfo<'_>) -> String {
    let helo: String = info.helo.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    let mut out = format!(
        "Received: from {helo} ([{}])\r\n\tby {} (facteur) with {} id {}",
        info.client_ip, info.hostname, info.protocol, info.id
    );
    if let Some(r) = info.single_recipient {
        let r: String = r.chars().filter(|c| !c.is_control()).collect();
        out.push_str(&format!("\r\n\tfor <{r}>"));
    }
    out.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(info.unix_secs)));
    out
}

/// The `Received:` field of a message a local program handed over (the
/// maildrop): no client, no protocol, the Unix user's id (as Postfix's
/// "from userid").
pub fn received_local(info: &ReceivedInfo<'_>, uid: u32) -> String {
    let mut out = format!("Received: by {} (facteur, from userid {uid})\r\n\tid {}", info.hostname, info.id);
    if let Some(r) = info.single_recipient {
        let r: String = r.chars().filter(|c| !c.is_control()).collect();
        out.push_str(&format!("\r\n\tfor <{r}>"));
    }
    out.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(info.unix_secs)));
    out
}

/// Lines ended by LF alone (what programs and Maildir files hold) end in
/// CRLF, as RFC 5322 §2.1 and IMAP want them; CRLF already there stays.
pub fn crlf(data: &[u8]) -> Vec<u8> {
    let extra = data.iter().filter(|&&b| b == b'\n').count();
    let mut out = Vec::with_capacity(data.len() + extra);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The header section of a message: everything before the first empty line.
pub fn header_section(data: &[u8]) -> &[u8] {
    if data.starts_with(b"\r\n") {
        return &[];
    }
    match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => &data[..p + 2],
        None => data,
    }
}

/// Whether the header section has a field of this name (case-insensitive).
pub fn has_field(data: &[u8], name: &str) -> bool {
    count_fields(data, &[name]) > 0
}

/// How many fields of the header section have one of `names`
/// (case-insensitive): `Received` and `Delivered-To` count the hops a
/// message has made (RFC 5321 §6.3).
pub fn count_fields(data: &[u8], names: &[&str]) -> usize {
    header_section(data)
        .split(|&b| b == b'\n')
        .filter(|line| {
            names.iter().any(|name| {
                line.len() > name.len()
                    && line[name.len()] == b':'
                    && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            })
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_are_counted_in_the_header_section_only() {
        let m = b"Received: a\r\n  folded; by x\r\nreceived: b\r\nDelivered-To: u@x\r\nSubject: s\r\n\r\nReceived: in the body\r\n";
        assert_eq!(count_fields(m, &["Received", "Delivered-To"]), 3);
        assert_eq!(count_fields(m, &["Received"]), 2);
        assert_eq!(count_fields(b"X-Received: no\r\n\r\n", &["Received"]), 0);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_795_311_322), "Sun, 22 Nov 2026 01:35:22 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn protocols() {
        assert_eq!(with_protocol(false, true, true, false), "SMTP");
        assert_eq!(with_protocol(true, false, false, false), "ESMTP");
        assert_eq!(with_protocol(true, true, true, false), "ESMTPSA");
        assert_eq!(with_protocol(true, true, false, true), "UTF8SMTPS");
    }

    #[test]
    fn received_field() {
        let r = received(&ReceivedInfo {
            helo: "client.test\r\nX-Evil: 1",
            client_ip: "127.0.0.1",
            hostname: "mx.test",
            protocol: "ESMTP",
            id: "01ABC",
            single_recipient: Some("a@b.test"),
            unix_secs: 0,
        });
        assert_eq!(
            r,
            "Received: from client.testX-Evil:1 ([127.0.0.1])\r\n\tby mx.test (facteur) with ESMTP id 01ABC\r\n\tfor <a@b.test>;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn fields() {
        let m = b"Subject: x\r\nmessage-id: <a@b>\r\n\r\nDate: not a header\r\n";
        assert!(has_field(m, "Message-ID"));
        assert!(!has_field(m, "Date"));
        assert!(!has_field(b"\r\nDate: x\r\n", "Date"));
        assert!(!has_field(b"Dated: x\r\n\r\n", "Date"));
    }
}
