//! Mailbox addresses in SMTP paths (RFC 5321 §4.1.2, RFC 6531 §3.3).
//!
//! [`Address::parse_path`] takes the text between `<` and `>` of a
//! reverse-path or forward-path. It is strict: only the RFC 5321 grammar is
//! accepted (no comments, no display names, no trailing dot), UTF-8 only when
//! the transaction announced SMTPUTF8 (RFC 6531 §3.3).

use std::fmt;
use std::net::Ipv6Addr;

/// A mailbox `local@domain`. The local part is kept as sent (case preserved,
/// quotes removed from a quoted-string); the domain is kept as sent, and
/// [`Address::domain_lower`] gives the form used for routing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("syntax error in address")]
    Syntax,
    #[error("non-ASCII address without SMTPUTF8")]
    NeedsSmtpUtf8,
    #[error("address too long")]
    TooLong,
}

/// RFC 5321 §4.5.3.1.1: at most 64 octets of local part.
const MAX_LOCAL: usize = 64;
/// RFC 5321 §4.5.3.1.2: at most 255 octets of domain.
const MAX_DOMAIN: usize = 255;
/// RFC 5321 §4.5.3.1.3: at most 256 octets of path, "<" and ">" included.
const MAX_PATH: usize = 256;
/// RFC 1035 §2.3.4: at most 63 octets per label (checked on ASCII labels).
const MAX_LABEL: usize = 63;

impl Address {
    /// Parses the inside of `<...>`: `[source-route ":"] Local-part "@" Domain`.
    ///
    /// A source route (`@a,@b:user@d`) is accepted and dropped (RFC 5321
    /// §4.1.2 and Appendix C: servers SHOULD ignore it). Non-ASCII is accepted
    /// only when `smtputf8` is true (RFC 6531 §3.3), otherwise the result is
    /// [`AddressError::NeedsSmtpUtf8`].
    pub fn parse_path(s: &str, smtputf8: bool) -> Result<Address, AddressError> {
        // RFC 5321 §4.5.3.1.3: the limit counts the angle brackets.
        if s.len() + 2 > MAX_PATH {
            return Err(AddressError::TooLong);
        }
        let mailbox = strip_source_route(s)?;
        let (local_wire, local, domain) = split_mailbox(mailbox)?;
        if !is_domain(domain) && !is_address_literal(domain) {
            return Err(AddressError::Syntax);
        }
        if local_wire.len() > MAX_LOCAL || domain.len() > MAX_DOMAIN {
            return Err(AddressError::TooLong);
        }
        // RFC 6531 §3.3: UTF-8 mailboxes only in an SMTPUTF8 transaction.
        if !smtputf8 && !mailbox.is_ascii() {
            return Err(AddressError::NeedsSmtpUtf8);
        }
        Ok(Address { local, domain: domain.to_owned() })
    }

    /// The domain with ASCII letters lower-cased, for routing and lookups
    /// (RFC 5321 §2.4: domain names are case-insensitive).
    pub fn domain_lower(&self) -> String {
        self.domain.to_ascii_lowercase()
    }

    /// `true` when neither part contains non-ASCII characters.
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

impl fmt::Display for Address {
    /// `local@domain`, the local part re-quoted when it is not a dot-string
    /// (RFC 5321 §4.1.2: a quoted-string only when needed). The domain-less
    /// `Postmaster` recipient (RFC 5321 §4.5.1) prints without `@`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            f.write_str(&self.local)?;
        } else {
            f.write_str("\"")?;
            for ch in self.local.chars() {
                if ch == '"' || ch == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{ch}")?;
            }
            f.write_str("\"")?;
        }
        if !self.domain.is_empty() {
            write!(f, "@{}", self.domain)?;
        }
        Ok(())
    }
}

/// Drops `A-d-l ":"` (RFC 5321 §4.1.2: `At-domain *( "," At-domain )`).
fn strip_source_route(s: &str) -> Result<&str, AddressError> {
    if !s.starts_with('@') {
        return Ok(s);
    }
    let (route, mailbox) = s.split_once(':').ok_or(AddressError::Syntax)?;
    for hop in route.split(',') {
        let domain = hop.strip_prefix('@').ok_or(AddressError::Syntax)?;
        if !is_domain(domain) {
            return Err(AddressError::Syntax);
        }
    }
    Ok(mailbox)
}

/// Splits `Local-part "@" rest` into the local part as sent, the local part
/// unquoted, and the rest.
fn split_mailbox(s: &str) -> Result<(&str, String, &str), AddressError> {
    if s.starts_with('"') {
        let (unquoted, len) = parse_quoted_string(s)?;
        let (wire, rest) = s.split_at_checked(len).ok_or(AddressError::Syntax)?;
        let domain = rest.strip_prefix('@').ok_or(AddressError::Syntax)?;
        return Ok((wire, unquoted, domain));
    }
    // A dot-string cannot contain "@", so the first one ends it.
    let (local, domain) = s.split_once('@').ok_or(AddressError::Syntax)?;
    if !is_dot_string(local) {
        return Err(AddressError::Syntax);
    }
    Ok((local, local.to_owned(), domain))
}

/// RFC 5321 §4.1.2 `Quoted-string`, with RFC 6531 §3.3 UTF-8 in qtext.
/// Returns the content without quotes and escapes, and the octets consumed.
fn parse_quoted_string(s: &str) -> Result<(String, usize), AddressError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    if chars.next().map(|(_, c)| c) != Some('"') {
        return Err(AddressError::Syntax);
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            // quoted-pairSMTP = %d92 %d32-126
            '\\' => match chars.next() {
                Some((_, e)) if (' '..='~').contains(&e) => out.push(e),
                _ => return Err(AddressError::Syntax),
            },
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126 / UTF8-non-ascii
            ' '..='~' => out.push(c),
            c if !c.is_ascii() => out.push(c),
            _ => return Err(AddressError::Syntax),
        }
    }
    Err(AddressError::Syntax)
}

/// RFC 5322 §3.2.3 atext, extended by RFC 6531 §3.3 with UTF-8 characters.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// RFC 5321 §4.1.2 `Dot-string = Atom *("." Atom)`.
pub(crate) fn is_dot_string(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// RFC 5321 §4.1.2 `Domain = sub-domain *("." sub-domain)`, where a
/// sub-domain is `Let-dig [Ldh-str]` or (RFC 6531 §3.3) a U-label.
pub(crate) fn is_domain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_DOMAIN && s.split('.').all(is_sub_domain)
}

fn is_sub_domain(label: &str) -> bool {
    let let_dig = |c: char| c.is_ascii_alphanumeric() || !c.is_ascii();
    let (Some(first), Some(last)) = (label.chars().next(), label.chars().next_back()) else {
        return false;
    };
    if label.is_ascii() && label.len() > MAX_LABEL {
        return false;
    }
    let_dig(first) && let_dig(last) && label.chars().all(|c| let_dig(c) || c == '-')
}

/// RFC 5321 §4.1.3 address literal: `[IPv4]` or `[IPv6:...]`. General
/// (tagged) literals have no registered tag besides IPv6 and are refused.
pub(crate) fn is_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return false;
    };
    match inner.split_at_checked(5) {
        Some((tag, v6)) if tag.eq_ignore_ascii_case("IPv6:") => {
            // Rust's parser accepts exactly the RFC 4291 text forms, which
            // are those of RFC 5321 §4.1.3 IPv6-addr; no zone identifiers.
            v6.parse::<Ipv6Addr>().is_ok()
        }
        _ => is_ipv4(inner),
    }
}

/// RFC 5321 §4.1.3 `IPv4-address-literal = Snum 3("." Snum)`,
/// `Snum = 1*3DIGIT` with a value of 0 to 255.
fn is_ipv4(s: &str) -> bool {
    let mut parts = 0;
    for snum in s.split('.') {
        parts += 1;
        let digits_ok = (1..=3).contains(&snum.len()) && snum.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok || snum.parse::<u16>().map_or(true, |n| n > 255) {
            return false;
        }
    }
    parts == 4
}

#[cfg(test)]
mod tests;
