//! What the client writes: MAIL and RCPT lines with their ESMTP parameters,
//! xtext, and the message body for DATA or BDAT.

use std::fmt::Write as _;

use crate::command::{BodyType, Notify, Ret};

/// RFC 3461 §4.4: ENVID is at most 100 characters (of xtext).
pub(super) const MAX_ENVID: usize = 100;
/// RFC 3461 §4.2: the ORCPT value is at most 500 characters.
pub(super) const MAX_ORCPT: usize = 500;

/// RFC 3461 §4: xtext. Octets 33 to 126 stand for themselves except "+" and
/// "=", every other octet (of the UTF-8 encoding) is "+" and two upper-case
/// hex digits.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
    out
}

/// The MAIL parameters actually sent, already filtered by what the server
/// announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct MailParams {
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// Already xtext-encoded.
    pub envid: Option<String>,
}

/// `MAIL FROM:<path> params CRLF` (RFC 5321 §4.1.1.2); `from` is empty for
/// the null reverse-path.
pub(super) fn mail_line(from: &str, p: &MailParams) -> Vec<u8> {
    let mut line = format!("MAIL FROM:<{from}>");
    if let Some(size) = p.size {
        // RFC 1870 §3
        let _ = write!(line, " SIZE={size}");
    }
    match p.body {
        // RFC 6152 §2
        Some(BodyType::EightBitMime) => line.push_str(" BODY=8BITMIME"),
        Some(BodyType::SevenBit) => line.push_str(" BODY=7BIT"),
        None => {}
    }
    if p.smtputf8 {
        // RFC 6531 §3.4
        line.push_str(" SMTPUTF8");
    }
    match p.ret {
        // RFC 3461 §4.3
        Some(Ret::Full) => line.push_str(" RET=FULL"),
        Some(Ret::Hdrs) => line.push_str(" RET=HDRS"),
        None => {}
    }
    if let Some(envid) = &p.envid {
        // RFC 3461 §4.4
        let _ = write!(line, " ENVID={envid}");
    }
    line.push_str("\r\n");
    line.into_bytes()
}

/// `RCPT TO:<path> params CRLF` (RFC 5321 §4.1.1.3). `orcpt` is the
/// encoded value (`addr-type;xtext`).
pub(super) fn rcpt_line(to: &str, notify: Option<Notify>, orcpt: Option<&str>) -> Vec<u8> {
    let mut line = format!("RCPT TO:<{to}>");
    if let Some(notify) = notify.and_then(notify_value) {
        // RFC 3461 §4.1
        let _ = write!(line, " NOTIFY={notify}");
    }
    if let Some(orcpt) = orcpt {
        // RFC 3461 §4.2
        let _ = write!(line, " ORCPT={orcpt}");
    }
    line.push_str("\r\n");
    line.into_bytes()
}

/// RFC 3461 §4.1: `"NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )`;
/// `None` when no flag is set (the parameter is then left out).
fn notify_value(n: Notify) -> Option<String> {
    if n.never {
        return Some("NEVER".to_owned());
    }
    let flags = [(n.success, "SUCCESS"), (n.failure, "FAILURE"), (n.delay, "DELAY")];
    let words: Vec<&str> = flags.iter().filter(|(set, _)| *set).map(|(_, word)| *word).collect();
    (!words.is_empty()).then(|| words.join(","))
}

/// The ORCPT value for `addr-type;address` as the server side stores it
/// (address decoded): `addr-type;xtext(address)`. `None` when the stored
/// form is not usable or the result exceeds RFC 3461 §4.2's 500 characters.
pub(super) fn orcpt_value(stored: &str) -> Option<String> {
    let (addr_type, address) = stored.split_once(';')?;
    // RFC 3461 §4.2: addr-type is an RFC 5322 atom.
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    if addr_type.is_empty() || !addr_type.bytes().all(atext) || address.is_empty() {
        return None;
    }
    let value = format!("{addr_type};{}", xtext_encode(address));
    (value.len() <= MAX_ORCPT).then_some(value)
}

/// The ENVID value, xtext-encoded, or `None` beyond RFC 3461 §4.4's 100
/// characters.
pub(super) fn envid_value(envid: &str) -> Option<String> {
    let value = xtext_encode(envid);
    (!value.is_empty() && value.len() <= MAX_ENVID).then_some(value)
}

/// The message as DATA content (RFC 5321 §4.5.2): every line end made CRLF
/// (a bare CR or bare LF counts as one line end), a CRLF added after a last
/// line that lacks one, a "." doubled at the start of every line, and the
/// terminating "." CRLF. One pass, copying whole lines.
pub(super) fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut rest = message;
    while let Some(&first) = rest.first() {
        // RFC 5321 §4.5.2: a line starting with "." gets another one.
        if first == b'.' {
            out.push(b'.');
        }
        match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(end) => {
                out.extend_from_slice(&rest[..end]);
                out.extend_from_slice(b"\r\n");
                let ending = if rest[end..].starts_with(b"\r\n") { 2 } else { 1 };
                rest = &rest[end + ending..];
            }
            None => {
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
                rest = &[];
            }
        }
    }
    // RFC 5321 §4.1.1.4: the end of mail data is "." CRLF on a line of its own.
    out.extend_from_slice(b".\r\n");
    out
}

/// RFC 3030 §2: the whole message as one chunk, `BDAT <size> LAST` CRLF
/// then exactly that many octets, unchanged.
pub(super) fn bdat_last(message: &[u8]) -> Vec<u8> {
    let mut out = format!("BDAT {} LAST\r\n", message.len()).into_bytes();
    out.reserve(message.len());
    out.extend_from_slice(message);
    out
}
