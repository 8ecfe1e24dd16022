//! Neutralising untrusted text before it is written into the DSN.
//!
//! Addresses, the ENVID and above all the remote server's reply come from
//! outside. None of them may end a header line or a delivery-status field
//! early (header injection), and the machine-readable part must stay US-ASCII.

/// One line of text: CR and LF (and every other control character) become a
/// space, so the value can never start a new header or field. Non-ASCII text
/// is kept; used where the output may carry UTF-8 (headers written by
/// mail-builder, the human-readable part). Leading and trailing whitespace is
/// trimmed.
pub(crate) fn one_line(value: &str) -> String {
    value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string()
}

/// [`one_line`], and US-ASCII only: every other character becomes `?`.
/// The fields of message/delivery-status are US-ASCII text (RFC 3464 §2.1;
/// RFC 6533, whose abstract notes that limit, adds UTF-8 only for addresses).
pub(crate) fn ascii_line(value: &str) -> String {
    one_line(value).chars().map(|c| if c.is_ascii() { c } else { '?' }).collect()
}

/// An address as a typed value for Final-Recipient or Original-Recipient.
///
/// A US-ASCII address is `rfc822;ADDR` (RFC 3464 §2.3.2). An address with
/// UTF-8 in it (SMTPUTF8) cannot be written as it is in message/delivery-status,
/// so it is given the `utf-8` address type in its 7-bit form, every character
/// outside QCHAR written as `\x{HEX}` (RFC 6533 §3, utf-8-addr-xtext): the
/// address survives intact without 8-bit data in the report.
pub(crate) fn typed_address(address: &str) -> String {
    let address = one_line(address);
    if address.is_ascii() { format!("rfc822;{address}") } else { format!("utf-8;{}", utf8_addr_xtext(&address)) }
}

/// An ORCPT as stored (`type;address`, xtext already decoded), echoed as it
/// is (RFC 3461 §4.2, RFC 3464 §2.3.1) except that control characters become
/// spaces and non-ASCII characters their `\x{HEX}` form. A value without a
/// type, which the SMTP layer should never store, is typed like a final
/// recipient.
pub(crate) fn original_recipient(orcpt: &str) -> String {
    let orcpt = one_line(orcpt);
    match orcpt.split_once(';') {
        Some((kind, address)) => {
            let address = address.trim();
            let address = if address.is_ascii() { address.to_string() } else { utf8_addr_xtext(address) };
            format!("{};{address}", ascii_line(kind))
        }
        None => typed_address(&orcpt),
    }
}

/// RFC 6533 §3: utf-8-addr-xtext = 1*(QCHAR / EmbeddedUnicodeChar), where
/// QCHAR is printable US-ASCII except `+`, `=` and `\`, and
/// EmbeddedUnicodeChar is `\x{HEXPOINT}`: upper-case hex, at least two
/// digits, no other leading zero.
fn utf8_addr_xtext(address: &str) -> String {
    let mut out = String::with_capacity(address.len() + 16);
    for c in address.chars() {
        let qchar = matches!(c, '\x21'..='\x2a' | '\x2c'..='\x3c' | '\x3e'..='\x5b' | '\x5d'..='\x7e');
        if qchar {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:02X}}}", u32::from(c)));
        }
    }
    out
}

/// A host name for Reporting-MTA or Remote-MTA: `dns;HOST` (RFC 3464 §2.2.2,
/// §2.3.5). A value that already carries the `dns;` type keeps it once.
pub(crate) fn dns_name(host: &str) -> String {
    let host = ascii_line(host);
    let bare = match host.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("dns;") => host[4..].trim_start(),
        _ => host.as_str(),
    };
    format!("dns;{bare}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_become_spaces() {
        assert_eq!(one_line("550 no\r\nX-Evil: 1"), "550 no  X-Evil: 1");
        assert_eq!(one_line("a\rb\nc\td\0e"), "a b c d e");
        assert_eq!(one_line("  \r\npadded\r\n"), "padded");
        assert_eq!(one_line("déjà vu"), "déjà vu");
    }

    #[test]
    fn ascii_line_replaces_non_ascii() {
        assert_eq!(ascii_line("550 boîte pleine\r\n"), "550 bo?te pleine");
    }

    #[test]
    fn typed_addresses() {
        assert_eq!(typed_address("bob@example.net"), "rfc822;bob@example.net");
        assert_eq!(typed_address("bob@example.net\r\nBcc: x@y"), "rfc822;bob@example.net  Bcc: x@y");
        assert_eq!(typed_address("jörg@exämple.de"), "utf-8;j\\x{F6}rg@ex\\x{E4}mple.de");
        // `+`, `=` and `\` are not QCHARs, and neither is a space.
        assert_eq!(typed_address("ü+a=b\\c d@x"), "utf-8;\\x{FC}\\x{2B}a\\x{3D}b\\x{5C}c\\x{20}d@x");
        assert_eq!(typed_address("邮件@例子.中国"), "utf-8;\\x{90AE}\\x{4EF6}@\\x{4F8B}\\x{5B50}.\\x{4E2D}\\x{56FD}");
        assert_eq!(typed_address("😀@x"), "utf-8;\\x{1F600}@x");
    }

    #[test]
    fn original_recipient_is_echoed() {
        assert_eq!(original_recipient("rfc822;Alias@Example.org"), "rfc822;Alias@Example.org");
        assert_eq!(original_recipient("RFC822; a@b"), "RFC822;a@b");
        assert_eq!(original_recipient("rfc822;a@b\r\nX: y"), "rfc822;a@b  X: y");
        assert_eq!(original_recipient("utf-8;j\\x{F6}rg@x"), "utf-8;j\\x{F6}rg@x");
        assert_eq!(original_recipient("utf-8;jörg@x"), "utf-8;j\\x{F6}rg@x");
        assert_eq!(original_recipient("untyped@example.org"), "rfc822;untyped@example.org");
    }

    #[test]
    fn dns_names() {
        assert_eq!(dns_name("mx.example.net"), "dns;mx.example.net");
        assert_eq!(dns_name("DNS; mx.example.net"), "dns;mx.example.net");
        assert_eq!(dns_name("mx\r\n.example"), "dns;mx  .example");
    }
}
