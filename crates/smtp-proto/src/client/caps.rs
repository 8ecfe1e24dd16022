//! What a server offers, read from its EHLO reply (RFC 5321 §4.1.1.1).

use crate::reply::Reply;

/// The service extensions a server announced. Only those the client uses
/// are kept; unknown keywords are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920
    pub pipelining: bool,
    /// RFC 1870: `Some(0)` when announced without a (valid) limit.
    pub size: Option<u64>,
    /// RFC 6152
    pub eightbitmime: bool,
    /// RFC 6531
    pub smtputf8: bool,
    /// RFC 3461
    pub dsn: bool,
    /// RFC 3030
    pub chunking: bool,
    /// RFC 3207
    pub starttls: bool,
    /// RFC 2034
    pub enhanced_status_codes: bool,
    /// RFC 4954: SASL mechanisms, upper-cased, in the server's order, once each.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads a 250 reply to EHLO. The first line is the server's greeting
    /// name, every later line `keyword *(SP param)` (RFC 5321 §4.1.1.1,
    /// keywords case-insensitive per §2.4). Any other reply (say a 5xx, after
    /// which the client falls back to HELO) announces nothing.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        if !(200..300).contains(&reply.code) {
            return caps;
        }
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(first) = words.next() else { continue };
            // The pre-standard "AUTH=PLAIN LOGIN" form (still sent by some
            // servers next to "AUTH PLAIN LOGIN") has "=" after the keyword.
            let (keyword, inline) = match first.split_once('=') {
                Some((keyword, param)) => (keyword, Some(param).filter(|p| !p.is_empty())),
                None => (first, None),
            };
            let mut params = inline.into_iter().chain(words);
            let is = |name: &str| keyword.eq_ignore_ascii_case(name);
            if is("PIPELINING") {
                caps.pipelining = true;
            } else if is("SIZE") {
                // RFC 1870 §4: "SIZE" alone, or "SIZE" SP the limit in octets
                // (0 also meaning no limit). A limit we cannot read counts as
                // none: the server will say so at MAIL or after the data.
                let limit = params.next().and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
                caps.size = Some(limit);
            } else if is("8BITMIME") {
                caps.eightbitmime = true;
            } else if is("SMTPUTF8") {
                caps.smtputf8 = true;
            } else if is("DSN") {
                caps.dsn = true;
            } else if is("CHUNKING") {
                caps.chunking = true;
            } else if is("STARTTLS") {
                caps.starttls = true;
            } else if is("ENHANCEDSTATUSCODES") {
                caps.enhanced_status_codes = true;
            } else if is("AUTH") {
                for mechanism in params.filter(|m| is_mechanism(m)) {
                    let mechanism = mechanism.to_ascii_uppercase();
                    if !caps.auth.contains(&mechanism) {
                        caps.auth.push(mechanism);
                    }
                }
            }
        }
        caps
    }
}

/// RFC 4422 §3.1: 1 to 20 of upper-case letters, digits, "-" and "_"
/// (lower case taken too, then upper-cased).
fn is_mechanism(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
