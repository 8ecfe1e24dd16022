//! SMTP command lines (RFC 5321 §4.1) and their ESMTP parameters.
//!
//! [`Command::parse`] takes one line without its CRLF and returns either the
//! command or the exact [`Reply`] to send. Verbs and parameter keywords are
//! case-insensitive (RFC 5321 §2.4); everything else follows the RFC 5321
//! grammar strictly, with one documented leniency (spaces before the path in
//! MAIL and RCPT, see `docs/quirks.md`).

mod params;

use crate::address::{Address, AddressError};
use crate::reply::Reply;

// BODY= (RFC 6152), RET= (RFC 3461 §4.3) and NOTIFY= (RFC 3461 §4.1) are
// shared vocabulary: the same values travel to storage and the next hop.
pub use facteur_types::{BodyType, Notify, Ret};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// SIZE= (RFC 1870)
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    /// SMTPUTF8 (RFC 6531 §3.4)
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// ENVID=, decoded from xtext (RFC 3461 §4.4)
    pub envid: Option<String>,
    /// AUTH= (RFC 4954 §5), decoded from xtext; `<>` is `Some("<>")`
    pub auth: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    /// ORCPT= as `addr-type;address`, address decoded from xtext (RFC 3461 §4.2)
    pub orcpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    /// `None` is the null reverse-path `<>`.
    Mail(Option<Address>, MailParams),
    Rcpt(Address, RcptParams),
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Expn(String),
    Help,
    StartTls,
    /// mechanism (upper-cased) and optional initial response (still base64)
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

impl Command {
    /// Parses one command line (without CRLF) outside any transaction that
    /// announced SMTPUTF8. See [`Command::parse_with`].
    pub fn parse(line: &[u8]) -> Result<Command, Reply> {
        Command::parse_with(line, false)
    }

    /// Parses one command line (without CRLF). `smtputf8_in_transaction`
    /// says whether the current MAIL carried SMTPUTF8, which decides whether
    /// a RCPT address may be non-ASCII (RFC 6531 §3.4); a MAIL address is
    /// governed by the SMTPUTF8 parameter on its own line.
    pub fn parse_with(line: &[u8], smtputf8_in_transaction: bool) -> Result<Command, Reply> {
        let Ok(line) = std::str::from_utf8(line) else {
            return Err(Reply::new(500, (5, 5, 2), "Error: invalid UTF-8 in command"));
        };
        // Leniency (docs/quirks.md): trailing blanks are ignored, as Postfix
        // and Exim do; some clients send "RSET " or "MAIL FROM:<a@b> ".
        let line = line.trim_end_matches([' ', '\t']);
        // RFC 5321 §4.1.1: verb, then one SP and the arguments.
        let (verb, args) = match line.split_once(' ') {
            Some((verb, args)) => (verb, Some(args)),
            None => (line, None),
        };
        let is = |name: &str| verb.eq_ignore_ascii_case(name);
        if is("EHLO") {
            parse_hello(args, "EHLO").map(Command::Ehlo)
        } else if is("HELO") {
            parse_hello(args, "HELO").map(Command::Helo)
        } else if is("MAIL") {
            parse_mail(args)
        } else if is("RCPT") {
            parse_rcpt(args, smtputf8_in_transaction)
        } else if is("DATA") {
            no_args(args, "DATA", Command::Data)
        } else if is("BDAT") {
            parse_bdat(args)
        } else if is("RSET") {
            no_args(args, "RSET", Command::Rset)
        } else if is("QUIT") {
            no_args(args, "QUIT", Command::Quit)
        } else if is("STARTTLS") {
            no_args(args, "STARTTLS", Command::StartTls)
        } else if is("NOOP") {
            // RFC 5321 §4.1.1.9: any argument is ignored.
            Ok(Command::Noop)
        } else if is("HELP") {
            // RFC 5321 §4.1.1.8: the argument may be ignored.
            Ok(Command::Help)
        } else if is("VRFY") {
            one_arg(args, "VRFY user").map(Command::Vrfy)
        } else if is("EXPN") {
            one_arg(args, "EXPN list").map(Command::Expn)
        } else if is("AUTH") {
            parse_auth(args)
        } else {
            Err(Reply::new(500, (5, 5, 2), "Error: command not recognized"))
        }
    }
}

/// `501 5.5.4 Syntax: <what was expected>`.
pub(crate) fn syntax(expected: &str) -> Reply {
    Reply::new(501, (5, 5, 4), format!("Syntax: {expected}"))
}

fn no_args(args: Option<&str>, verb: &str, command: Command) -> Result<Command, Reply> {
    match args {
        None => Ok(command),
        Some(_) => Err(syntax(verb)),
    }
}

fn one_arg(args: Option<&str>, expected: &str) -> Result<String, Reply> {
    match args {
        Some(arg) if !arg.is_empty() && !arg.contains(|c: char| c.is_ascii_control()) => Ok(arg.to_owned()),
        _ => Err(syntax(expected)),
    }
}

/// RFC 5321 §4.1.1.1: `"EHLO" SP ( Domain / address-literal )`.
/// Leniency (docs/quirks.md): any single word of visible characters is
/// taken, as Postfix does by default — Windows hosts send names with `_`,
/// and RFC 5321 §4.1.4 forbids refusing mail over the EHLO name anyway.
fn parse_hello(args: Option<&str>, verb: &str) -> Result<String, Reply> {
    match args {
        Some(arg)
            if !arg.is_empty() && arg.len() <= 255 && !arg.contains(|c: char| c.is_whitespace() || c.is_control()) =>
        {
            Ok(arg.to_owned())
        }
        _ => Err(syntax(&format!("{verb} hostname"))),
    }
}

/// RFC 5321 §4.1.1.2: `"MAIL FROM:" Reverse-path [SP Mail-parameters]`.
fn parse_mail(args: Option<&str>) -> Result<Command, Reply> {
    const EXPECTED: &str = "MAIL FROM:<address>";
    let rest = args.and_then(|a| strip_prefix_ci(a, "FROM:")).ok_or_else(|| syntax(EXPECTED))?;
    let (path, params) = split_path(rest).ok_or_else(|| syntax(EXPECTED))?;
    let params = params::parse_mail(params)?;
    // RFC 5321 §4.1.1.2: `<>` is the null reverse-path.
    if path.is_empty() {
        return Ok(Command::Mail(None, params));
    }
    match Address::parse_path(path, params.smtputf8) {
        Ok(address) => Ok(Command::Mail(Some(address), params)),
        Err(e) => Err(address_error(e, Reply::new(501, (5, 1, 7), "Bad sender address syntax"))),
    }
}

/// RFC 5321 §4.1.1.3: `"RCPT TO:" ( "<Postmaster@" Domain ">" /
/// "<Postmaster>" / Forward-path ) [SP Rcpt-parameters]`.
fn parse_rcpt(args: Option<&str>, smtputf8: bool) -> Result<Command, Reply> {
    const EXPECTED: &str = "RCPT TO:<address>";
    let rest = args.and_then(|a| strip_prefix_ci(a, "TO:")).ok_or_else(|| syntax(EXPECTED))?;
    let (path, params) = split_path(rest).ok_or_else(|| syntax(EXPECTED))?;
    let params = params::parse_rcpt(params)?;
    // RFC 5321 §4.5.1: the domain-less <Postmaster> must be accepted; the
    // I/O layer maps the empty domain to its primary domain.
    if path.eq_ignore_ascii_case("Postmaster") {
        let address = Address { local: "Postmaster".into(), domain: String::new() };
        return Ok(Command::Rcpt(address, params));
    }
    match Address::parse_path(path, smtputf8) {
        Ok(address) => Ok(Command::Rcpt(address, params)),
        Err(e) => Err(address_error(e, Reply::new(501, (5, 1, 3), "Bad recipient address syntax"))),
    }
}

fn address_error(e: AddressError, bad_syntax: Reply) -> Reply {
    match e {
        // RFC 6531 §3.5: 553 5.6.7 for a UTF-8 address without SMTPUTF8.
        AddressError::NeedsSmtpUtf8 => Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8"),
        AddressError::Syntax | AddressError::TooLong => bad_syntax,
    }
}

/// Splits `<path>[ params]` after "FROM:" or "TO:". Returns the inside of
/// the brackets and the parameter text (empty when there are none).
fn split_path(rest: &str) -> Option<(&str, &str)> {
    // Quirk (docs/quirks.md): "MAIL FROM: <a@b>" is common; spaces before
    // the path are skipped although RFC 5321 §4.1.1.2 allows none.
    let rest = rest.trim_start_matches(' ');
    let inner = rest.strip_prefix('<')?;
    let end = closing_bracket(inner)?;
    let (path, after) = inner.split_at_checked(end)?;
    let after = after.strip_prefix('>')?;
    if after.is_empty() {
        return Some((path, ""));
    }
    // RFC 5321 §4.1.1.2: exactly one SP before the parameters.
    let params = after.strip_prefix(' ').filter(|p| !p.is_empty())?;
    Some((path, params))
}

/// Index of the ">" closing a path, skipping a quoted local part (which may
/// itself contain ">").
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// RFC 3030 §2: `"BDAT" SP chunk-size [SP end-marker]`, chunk-size = 1*DIGIT.
fn parse_bdat(args: Option<&str>) -> Result<Command, Reply> {
    const EXPECTED: &str = "BDAT size [LAST]";
    let args = args.ok_or_else(|| syntax(EXPECTED))?;
    let (size, last) = match args.split_once(' ') {
        None => (args, false),
        Some((size, marker)) if marker.eq_ignore_ascii_case("LAST") => (size, true),
        Some(_) => return Err(syntax(EXPECTED)),
    };
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax(EXPECTED));
    }
    let size = size.parse::<u64>().map_err(|_| syntax(EXPECTED))?;
    Ok(Command::Bdat { size, last })
}

/// RFC 4954 §4: `"AUTH" SP sasl-mech [SP initial-response]`; RFC 4422 §3.1:
/// a mechanism name is 1 to 20 of upper-case letters, digits, "-" and "_".
fn parse_auth(args: Option<&str>) -> Result<Command, Reply> {
    const EXPECTED: &str = "AUTH mechanism [initial-response]";
    let args = args.ok_or_else(|| syntax(EXPECTED))?;
    let (mechanism, initial) = match args.split_once(' ') {
        None => (args, None),
        Some((m, i)) if !i.is_empty() && !i.contains(' ') => (m, Some(i.to_owned())),
        Some(_) => return Err(syntax(EXPECTED)),
    };
    let mech_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if mechanism.is_empty() || mechanism.len() > 20 || !mechanism.bytes().all(mech_char) {
        return Err(syntax(EXPECTED));
    }
    Ok(Command::Auth { mechanism: mechanism.to_ascii_uppercase(), initial })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

#[cfg(test)]
mod tests;
