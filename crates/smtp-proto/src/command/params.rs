//! ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 `esmtp-param`).
//!
//! Only the parameters of extensions we advertise are accepted; any other
//! keyword, and BODY=BINARYMIME, is `555 5.5.4` (RFC 5321 §4.1.1.11).

use super::{BodyType, MailParams, Notify, RcptParams, Ret, syntax};
use crate::reply::Reply;

/// RFC 3461 §4.4: ENVID is at most 100 characters.
const MAX_ENVID: usize = 100;
/// RFC 3461 §4.2: the whole ORCPT value is at most 500 characters.
const MAX_ORCPT: usize = 500;

fn unsupported(what: &str) -> Reply {
    Reply::new(555, (5, 5, 4), format!("Unsupported parameter: {what}"))
}

fn duplicate(keyword: &str) -> Reply {
    syntax(&format!("{keyword} given more than once"))
}

/// Splits `esmtp-param *(SP esmtp-param)` into (upper-cased keyword, value).
/// RFC 5321 §4.1.2: `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`,
/// `esmtp-value = 1*(%d33-60 / %d62-126)`.
fn split_params(s: &str) -> impl Iterator<Item = Result<(String, Option<&str>), Reply>> {
    // An empty string has no parameters; otherwise every SP separates one.
    let tokens = (!s.is_empty()).then(|| s.split(' ')).into_iter().flatten();
    tokens.map(|token| {
        let (keyword, value) = match token.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (token, None),
        };
        let keyword_ok = keyword.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'='));
        if !keyword_ok || !value_ok {
            return Err(syntax("parameters are KEYWORD[=value] separated by one space"));
        }
        Ok((keyword.to_ascii_uppercase(), value))
    })
}

/// MAIL parameters: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531),
/// RET and ENVID (RFC 3461), AUTH (RFC 4954).
pub(super) fn parse_mail(s: &str) -> Result<MailParams, Reply> {
    let mut p = MailParams::default();
    let mut seen_smtputf8 = false;
    for param in split_params(s) {
        let (keyword, value) = param?;
        match keyword.as_str() {
            "SIZE" => {
                // RFC 1870 §3: size-value = 1*20DIGIT
                let v = value.filter(|v| v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()));
                let size = v.and_then(|v| v.parse().ok()).ok_or_else(|| syntax("SIZE=octets"))?;
                set_once(&mut p.size, size, "SIZE")?;
            }
            "BODY" => {
                let body = match value {
                    Some(v) if v.eq_ignore_ascii_case("7BIT") => BodyType::SevenBit,
                    Some(v) if v.eq_ignore_ascii_case("8BITMIME") => BodyType::EightBitMime,
                    // RFC 3030 §3: BINARYMIME is not offered.
                    Some(v) if v.eq_ignore_ascii_case("BINARYMIME") => {
                        return Err(unsupported("BODY=BINARYMIME"));
                    }
                    _ => return Err(syntax("BODY=7BIT|8BITMIME")),
                };
                set_once(&mut p.body, body, "BODY")?;
            }
            "SMTPUTF8" => {
                // RFC 6531 §3.4: the parameter has no value.
                if value.is_some() {
                    return Err(syntax("SMTPUTF8 (without a value)"));
                }
                if std::mem::replace(&mut seen_smtputf8, true) {
                    return Err(duplicate("SMTPUTF8"));
                }
                p.smtputf8 = true;
            }
            "RET" => {
                let ret = match value {
                    Some(v) if v.eq_ignore_ascii_case("FULL") => Ret::Full,
                    Some(v) if v.eq_ignore_ascii_case("HDRS") => Ret::Hdrs,
                    _ => return Err(syntax("RET=FULL|HDRS")),
                };
                set_once(&mut p.ret, ret, "RET")?;
            }
            "ENVID" => {
                // RFC 3461 §4.4: xtext of at most 100 characters.
                let envid = value
                    .filter(|v| v.len() <= MAX_ENVID)
                    .and_then(decode_xtext)
                    .ok_or_else(|| syntax("ENVID=xtext (at most 100 characters)"))?;
                set_once(&mut p.envid, envid, "ENVID")?;
            }
            "AUTH" => {
                // RFC 4954 §5: AUTH=<> or AUTH=xtext(addr-spec).
                let auth = value.and_then(decode_xtext).ok_or_else(|| syntax("AUTH=xtext|<>"))?;
                set_once(&mut p.auth, auth, "AUTH")?;
            }
            _ => return Err(unsupported(&keyword)),
        }
    }
    Ok(p)
}

/// RCPT parameters: NOTIFY and ORCPT (RFC 3461 §4.1, §4.2).
pub(super) fn parse_rcpt(s: &str) -> Result<RcptParams, Reply> {
    let mut p = RcptParams::default();
    for param in split_params(s) {
        let (keyword, value) = param?;
        match keyword.as_str() {
            "NOTIFY" => {
                let notify = value
                    .and_then(parse_notify)
                    .ok_or_else(|| syntax("NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY"))?;
                set_once(&mut p.notify, notify, "NOTIFY")?;
            }
            "ORCPT" => {
                let orcpt = value
                    .filter(|v| v.len() <= MAX_ORCPT)
                    .and_then(parse_orcpt)
                    .ok_or_else(|| syntax("ORCPT=addr-type;xtext"))?;
                set_once(&mut p.orcpt, orcpt, "ORCPT")?;
            }
            _ => return Err(unsupported(&keyword)),
        }
    }
    Ok(p)
}

fn set_once<T>(slot: &mut Option<T>, value: T, keyword: &str) -> Result<(), Reply> {
    if slot.is_some() {
        return Err(duplicate(keyword));
    }
    *slot = Some(value);
    Ok(())
}

/// RFC 3461 §4.1: `"NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )`.
fn parse_notify(v: &str) -> Option<Notify> {
    if v.eq_ignore_ascii_case("NEVER") {
        return Some(Notify { never: true, ..Notify::default() });
    }
    let mut n = Notify::default();
    for item in v.split(',') {
        let flag = if item.eq_ignore_ascii_case("SUCCESS") {
            &mut n.success
        } else if item.eq_ignore_ascii_case("FAILURE") {
            &mut n.failure
        } else if item.eq_ignore_ascii_case("DELAY") {
            &mut n.delay
        } else {
            // NEVER inside a list, an empty item or an unknown word.
            return None;
        };
        if std::mem::replace(flag, true) {
            return None;
        }
    }
    Some(n)
}

/// RFC 3461 §4.2: `addr-type ";" xtext`, addr-type an RFC 5322 atom. Kept
/// as `addr-type;decoded-address`.
fn parse_orcpt(v: &str) -> Option<String> {
    let (addr_type, xtext) = v.split_once(';')?;
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    if addr_type.is_empty() || !addr_type.bytes().all(atext) || xtext.is_empty() {
        return None;
    }
    Some(format!("{addr_type};{}", decode_xtext(xtext)?))
}

/// RFC 3461 §4: `xtext = *( xchar / hexchar )`, `xchar` any of "!" to "~"
/// except "+" and "=", `hexchar = "+" 2(%x30-39 / %x41-46)`. The decoded
/// text must be printable US-ASCII (RFC 3461 §4.2, §4.4), so no CR, LF or
/// NUL ever reaches a log line or a DSN.
pub(crate) fn decode_xtext(s: &str) -> Option<String> {
    let upper_hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = String::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        let decoded = match b {
            b'+' => {
                let hi = bytes.next().and_then(upper_hex)?;
                let lo = bytes.next().and_then(upper_hex)?;
                hi * 16 + lo
            }
            b'=' => return None,
            b'!'..=b'~' => b,
            _ => return None,
        };
        if !(b' '..=b'~').contains(&decoded) {
            return None;
        }
        out.push(char::from(decoded));
    }
    Some(out)
}
