//! IMAP URLs naming one message or one part of it (RFC 5092), as CATENATE
//! takes them (RFC 4469 §3): `/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1.MIME`
//! relative to this server, or `imap://user@host/...` naming it.
//!
//! Pure: the URL is taken apart here; which mailbox and message it names
//! is the session's to look up. URLAUTH (RFC 4467) is not offered, so a URL
//! that carries `;EXPIRE=` or `;URLAUTH=` is refused.

use crate::extended::strip_prefix_ci;

/// One message (or a part of it) named by an IMAP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageUrl {
    /// The user the URL names (`imap://user@host/`), if any.
    pub user: Option<String>,
    /// The server the URL names, if absolute.
    pub host: Option<String>,
    /// The mailbox name, percent-decoded (UTF-8, RFC 5092 §3.1).
    pub mailbox: String,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// The section as FETCH writes it between brackets (`HEADER`, `1.2`,
    /// `1.MIME`...), decoded.
    pub section: Option<String>,
    /// `;PARTIAL=offset[.length]` (RFC 5092 §5).
    pub partial: Option<(u32, Option<u32>)>,
}

/// Why a URL was not taken: said after `[BADURL url]`.
pub type UrlError = &'static str;

impl MessageUrl {
    pub fn parse(url: &str) -> Result<MessageUrl, UrlError> {
        if find_ci(url, ";URLAUTH=").is_some() {
            return Err("URLAUTH is not offered");
        }
        let (user, host, path) = match strip_prefix_ci(url, "imap://") {
            Some(rest) => {
                let (server, path) = rest.split_at(rest.find('/').ok_or("no mailbox in the URL")?);
                let (userinfo, hostport) = match server.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, server),
                };
                // `;AUTH=mechanism` says how to log in; it names no one.
                let user = match userinfo.map(|u| u.split(';').next().unwrap_or_default()) {
                    Some("") | None => None,
                    Some(u) => Some(decode(u)?),
                };
                let host = hostport
                    .rsplit_once(':')
                    .map_or(hostport, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { hostport });
                if host.is_empty() {
                    return Err("no host in the URL");
                }
                (user, Some(host.to_ascii_lowercase()), path)
            }
            None => (None, None, url),
        };
        let path = path.strip_prefix('/').ok_or("not an absolute IMAP URL")?;
        // mailbox[;UIDVALIDITY=n] /;UID=n [/;SECTION=s] [/;PARTIAL=o[.l]]
        let mut pieces = path.split("/;");
        let mailbox_ref = pieces.next().unwrap_or_default();
        let (mailbox, uidvalidity) = match find_ci(mailbox_ref, ";UIDVALIDITY=") {
            Some(at) => {
                let v = number(&mailbox_ref[at + ";UIDVALIDITY=".len()..]).ok_or("bad UIDVALIDITY")?;
                (&mailbox_ref[..at], Some(v))
            }
            None => (mailbox_ref, None),
        };
        if mailbox.is_empty() || mailbox.contains(';') {
            return Err("no mailbox in the URL");
        }
        let mut out =
            MessageUrl { user, host, mailbox: decode(mailbox)?, uidvalidity, uid: 0, section: None, partial: None };
        for piece in pieces {
            let (key, value) = piece.split_once('=').ok_or("a URL parameter without a value")?;
            match key.to_ascii_uppercase().as_str() {
                "UID" if out.uid == 0 && out.section.is_none() && out.partial.is_none() => {
                    out.uid = number(value).ok_or("bad UID")?;
                }
                "SECTION" if out.uid != 0 && out.section.is_none() && out.partial.is_none() => {
                    out.section = Some(decode(value)?);
                }
                "PARTIAL" if out.uid != 0 && out.partial.is_none() => {
                    let (offset, length) = match value.split_once('.') {
                        Some((o, l)) => (o, Some(number(l).ok_or("bad PARTIAL length")?)),
                        None => (value, None),
                    };
                    let offset = offset.parse::<u32>().map_err(|_| "bad PARTIAL offset")?;
                    out.partial = Some((offset, length));
                }
                _ => return Err("not a URL of one message"),
            }
        }
        if out.uid == 0 {
            return Err("no UID in the URL");
        }
        Ok(out)
    }
}

/// A nonzero 32-bit number, digits only (RFC 5092 `nz-number`).
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n > 0)
}

fn find_ci(s: &str, needle: &str) -> Option<usize> {
    s.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `%XX` escapes resolved; the result must be UTF-8 (RFC 5092 §3.1).
fn decode(s: &str) -> Result<String, UrlError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next().ok_or("a bad % escape")?, bytes.next().ok_or("a bad % escape")?];
            let hex = std::str::from_utf8(&hex).map_err(|_| "a bad % escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a bad % escape")?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| "the URL is not UTF-8 once decoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(mailbox: &str, uid: u32) -> MessageUrl {
        MessageUrl {
            user: None,
            host: None,
            mailbox: mailbox.into(),
            uidvalidity: None,
            uid,
            section: None,
            partial: None,
        }
    }

    #[test]
    fn relative_urls() {
        assert_eq!(MessageUrl::parse("/INBOX/;UID=20").unwrap(), url("INBOX", 20));
        let u = MessageUrl::parse("/Drafts;UIDVALIDITY=385759045/;uid=20/;Section=1.MIME/;PARTIAL=0.1024").unwrap();
        assert_eq!(
            u,
            MessageUrl {
                uidvalidity: Some(385759045),
                section: Some("1.MIME".into()),
                partial: Some((0, Some(1024))),
                ..url("Drafts", 20)
            }
        );
        // RFC 5092 §3.1: the name in UTF-8, escaped.
        let u = MessageUrl::parse("/Entw%C3%BCrfe%2FAlt/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)").unwrap();
        assert_eq!((u.mailbox.as_str(), u.section.as_deref()), ("Entwürfe/Alt", Some("HEADER.FIELDS (SUBJECT)")));
        assert_eq!(MessageUrl::parse("/a/;UID=1/;PARTIAL=10").unwrap().partial, Some((10, None)));
    }

    #[test]
    fn absolute_urls() {
        let u = MessageUrl::parse("imap://joe;AUTH=*@Mail.Example:143/INBOX/;UID=3").unwrap();
        assert_eq!((u.user.as_deref(), u.host.as_deref(), u.uid), (Some("joe"), Some("mail.example"), 3));
        let u = MessageUrl::parse("IMAP://mail.example/INBOX/;UID=3").unwrap();
        assert_eq!((u.user, u.host.as_deref()), (None, Some("mail.example")));
        let u = MessageUrl::parse("imap://joe%40example.test@mail.example/INBOX/;UID=3").unwrap();
        assert_eq!(u.user.as_deref(), Some("joe@example.test"));
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "INBOX/;UID=1",
            "/INBOX",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/INBOX/;UID=99999999999",
            "/;UID=1",
            "/INBOX;UIDVALIDITY=0/;UID=1",
            "/INBOX/;UID=1/;SECTION=1/;UID=2",
            "/INBOX/;UID=1/;PARTIAL=1.0",
            "/INBOX/;UID=1;URLAUTH=anonymous:internal:0123",
            "/INBOX/;UID=1;EXPIRE=2026-01-01T00:00:00Z;URLAUTH=anonymous:internal:0123",
            "/INBOX?SUBJECT%20x",
            "/IN%ZZBOX/;UID=1",
            "/IN%FFBOX/;UID=1",
            "imap:///INBOX/;UID=1",
            "imap://host",
        ] {
            assert!(MessageUrl::parse(bad).is_err(), "{bad:?}");
        }
    }
}
