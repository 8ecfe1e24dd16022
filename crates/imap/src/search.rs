//! SEARCH criteria evaluated against one message (RFC 9051 §6.4.4; RFC 3501
//! §6.4.4), with MODSEQ from CONDSTORE (RFC 7162 §3.1.5).
//!
//! String keys match a case-insensitive (ASCII) substring of the decoded
//! text: header values with RFC 2047 encoded words decoded, bodies with
//! their transfer encoding and charset undone and HTML reduced to text.
//! The message is parsed at most once per [`matches()`] call, and only when a
//! key needs it; [`needs`] tells the caller how much of the message to
//! load (nothing, the header, or all of it).
//!
//! RECENT, NEW and OLD read the session's `\Recent` (RFC 3501 §2.3.2),
//! which only IMAP4rev1 sessions have (IMAP4rev2 dropped it, RFC 9051
//! Appendix E): for the others no message is recent.

use std::cell::OnceCell;

use chrono::NaiveDate;
use facteur_store::Part;
use imap_codec::imap_types::{core::AString, search::SearchKey};
use mail_parser::{Message, MessageParser, PartType, parsers::MessageStream};

use crate::seqset;

/// One message as SEARCH sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Message sequence number.
    pub seq: u32,
    pub uid: u32,
    /// Flags as stored: `\Seen`, `\Deleted`, `$Label`, ...
    pub flags: &'a [String],
    /// INTERNALDATE, in unix seconds.
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u64,
    pub modseq: u64,
    /// `\Recent` for this session.
    pub recent: bool,
    /// The message, or as much of it as [`needs`] said (maybe nothing).
    pub raw: &'a [u8],
}

/// Whether `candidate` satisfies `key`. `max_seq` and `max_uid` are what
/// `*` means in sequence and UID sets: the number of messages and the
/// highest UID of the mailbox.
pub fn matches(key: &SearchKey<'_>, candidate: &Candidate<'_>, max_seq: u32, max_uid: u32) -> bool {
    Eval { candidate, max_seq, max_uid, parsed: OnceCell::new() }.key(key)
}

/// What of the message evaluating `key` reads: nothing (flags, dates,
/// sizes and numbers), its header (address, subject, header and sent-date
/// keys), or all of it (BODY, TEXT). `None` < `Header` < `Whole`.
pub fn needs(key: &SearchKey<'_>) -> Option<Part> {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().map(needs).max().flatten(),
        SearchKey::Or(a, b) => needs(a).max(needs(b)),
        SearchKey::Not(key) => needs(key),
        SearchKey::Body(_) | SearchKey::Text(_) => Some(Part::Whole),
        SearchKey::Bcc(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::Header(..)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Subject(_)
        | SearchKey::To(_) => Some(Part::Header),
        _ => None,
    }
}

/// Whether `key` holds MODSEQ (RFC 7162 §3.1.5): the answer then gives
/// the highest MODSEQ of the messages found.
pub fn uses_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(key) => uses_modseq(key),
        SearchKey::ModSequence { .. } => true,
        _ => false,
    }
}

struct Eval<'c, 'a> {
    candidate: &'c Candidate<'a>,
    max_seq: u32,
    max_uid: u32,
    /// The parsed message, made on first use; `None` if it has no header.
    parsed: OnceCell<Option<Message<'a>>>,
}

impl Eval<'_, '_> {
    fn message(&self) -> Option<&Message<'_>> {
        self.parsed.get_or_init(|| MessageParser::default().parse(self.candidate.raw)).as_ref()
    }

    fn has_flag(&self, flag: &str) -> bool {
        // RFC 9051 §2.3.2: flag and keyword names are case-insensitive.
        self.candidate.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    fn key(&self, key: &SearchKey<'_>) -> bool {
        let c = self.candidate;
        match key {
            SearchKey::All => true,
            SearchKey::And(keys) => keys.as_ref().iter().all(|k| self.key(k)),
            SearchKey::Or(a, b) => self.key(a) || self.key(b),
            SearchKey::Not(k) => !self.key(k),
            SearchKey::SequenceSet(set) => seqset::contains(set, c.seq, self.max_seq),
            SearchKey::Uid(set) => seqset::contains(set, c.uid, self.max_uid),

            SearchKey::Answered => self.has_flag("\\Answered"),
            SearchKey::Deleted => self.has_flag("\\Deleted"),
            SearchKey::Draft => self.has_flag("\\Draft"),
            SearchKey::Flagged => self.has_flag("\\Flagged"),
            SearchKey::Seen => self.has_flag("\\Seen"),
            SearchKey::Unanswered => !self.has_flag("\\Answered"),
            SearchKey::Undeleted => !self.has_flag("\\Deleted"),
            SearchKey::Undraft => !self.has_flag("\\Draft"),
            SearchKey::Unflagged => !self.has_flag("\\Flagged"),
            SearchKey::Unseen => !self.has_flag("\\Seen"),
            SearchKey::Keyword(k) => self.has_flag(k.as_ref()),
            SearchKey::Unkeyword(k) => !self.has_flag(k.as_ref()),
            // RFC 3501 §6.4.4: NEW is RECENT UNSEEN.
            SearchKey::Recent => c.recent,
            SearchKey::New => c.recent && !self.has_flag("\\Seen"),
            SearchKey::Old => !c.recent,

            // RFC 9051 §6.4.4: internal date, disregarding time and timezone
            // (facteur takes the date in UTC).
            SearchKey::Before(d) => internal_day(c).is_some_and(|day| day < *d.as_ref()),
            SearchKey::On(d) => internal_day(c).is_some_and(|day| day == *d.as_ref()),
            SearchKey::Since(d) => internal_day(c).is_some_and(|day| day >= *d.as_ref()),
            // The Date: field's own date, its time and zone disregarded.
            SearchKey::SentBefore(d) => self.sent_day().is_some_and(|day| day < *d.as_ref()),
            SearchKey::SentOn(d) => self.sent_day().is_some_and(|day| day == *d.as_ref()),
            SearchKey::SentSince(d) => self.sent_day().is_some_and(|day| day >= *d.as_ref()),

            SearchKey::Larger(n) => c.size > u64::from(*n),
            SearchKey::Smaller(n) => c.size < u64::from(*n),
            // RFC 7162 §3.1.5: modseq at least the given value; facteur has
            // no per-flag modseq, so the entry name is not looked at.
            SearchKey::ModSequence { modseq, .. } => c.modseq >= *modseq,

            SearchKey::From(s) => self.address_contains("From", s),
            SearchKey::To(s) => self.address_contains("To", s),
            SearchKey::Cc(s) => self.address_contains("Cc", s),
            SearchKey::Bcc(s) => self.address_contains("Bcc", s),
            SearchKey::Subject(s) => self.field_contains("Subject", s),
            SearchKey::Header(name, s) => match std::str::from_utf8(name.as_ref()) {
                Ok(name) => self.field_contains(name, s),
                Err(_) => false,
            },
            SearchKey::Body(s) => self.message().is_some_and(|m| body_contains(m, &text(s))),
            SearchKey::Text(s) => {
                let needle = text(s);
                match self.message() {
                    Some(m) => fields_contain(m, None, &needle) || body_contains(m, &needle),
                    // Without a header, the whole message is body.
                    None => contains(&String::from_utf8_lossy(c.raw), &needle),
                }
            }
            // Extensions compiled in by another crate's features (WITHIN's
            // OLDER/YOUNGER) need a clock this module does not have.
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The date part of the Date: field as written (RFC 9051 §6.4.4).
    fn sent_day(&self) -> Option<NaiveDate> {
        let date = self.message()?.date()?;
        NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into())
    }

    /// HEADER, FROM, TO, ...: some field called `name` holds `needle`; an
    /// empty needle matches any message that has the field.
    fn field_contains(&self, name: &str, needle: &AString<'_>) -> bool {
        self.message().is_some_and(|m| fields_contain(m, Some(name), &text(needle)))
    }

    /// FROM, TO, CC, BCC: the field as written (decoded) holds `needle`, or
    /// one of its addresses does as `name <local@domain>` read without its
    /// comments, so `k@l.example` finds `k (c) @ l.example` (RFC 5322 §3.4).
    fn address_contains(&self, name: &str, needle: &AString<'_>) -> bool {
        let Some(m) = self.message() else { return false };
        let needle = text(needle);
        fields_contain(m, Some(name), &needle)
            || field_values(m, name).any(|value| {
                crate::address::parse(value).iter().any(|item| match item {
                    crate::address::Item::Mailbox(mb) => {
                        let written = format!("{} <{}>", mb.name.as_deref().unwrap_or_default(), mb.addr_spec());
                        contains(&written, &needle)
                    }
                    _ => false,
                })
            })
    }
}

fn internal_day(candidate: &Candidate<'_>) -> Option<NaiveDate> {
    chrono::DateTime::from_timestamp(candidate.internal_date, 0).map(|t| t.date_naive())
}

/// A search string as text (RFC 9051 §6.4.4: UTF-8).
fn text(s: &AString<'_>) -> String {
    String::from_utf8_lossy(s.as_ref()).into_owned()
}

/// Case-insensitive (ASCII) substring test; the empty needle is everywhere.
fn contains(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether a top-level header field (any field when `name` is `None`,
/// matched against `name: value`) holds `needle`, the value unfolded and
/// its encoded words decoded (RFC 2047).
fn fields_contain(message: &Message<'_>, name: Option<&str>, needle: &str) -> bool {
    let Some(root) = message.parts.first() else {
        return false;
    };
    root.headers.iter().any(|field| {
        let field_name = field.name.as_str();
        if name.is_some_and(|name| !field_name.eq_ignore_ascii_case(name)) {
            return false;
        }
        let start = (field.offset_start as usize).min(message.raw_message.len());
        let end = (field.offset_end as usize).clamp(start, message.raw_message.len());
        let value = decode_value(&message.raw_message[start..end]);
        match name {
            Some(_) => contains(&value, needle),
            None => contains(&format!("{field_name}: {value}"), needle),
        }
    })
}

/// The raw values of the top-level fields called `name`.
fn field_values<'m>(message: &'m Message<'_>, name: &'m str) -> impl Iterator<Item = &'m [u8]> {
    let raw = &message.raw_message;
    message.parts.first().into_iter().flat_map(move |root| {
        root.headers.iter().filter(|f| f.name.as_str().eq_ignore_ascii_case(name)).map(move |f| {
            let start = (f.offset_start as usize).min(raw.len());
            &raw[start..(f.offset_end as usize).clamp(start, raw.len())]
        })
    })
}

/// An unstructured reading of a raw field value: unfolded, encoded words
/// decoded, so addresses read as `Jörg <j@example.org>`.
fn decode_value(raw: &[u8]) -> String {
    let mut raw = raw.to_vec();
    // The parser takes a value to its line end.
    raw.push(b'\n');
    MessageStream::new(&raw).parse_unstructured().into_text().map(String::from).unwrap_or_default()
}

/// Whether the decoded text of some text part holds `needle`, encapsulated
/// messages included with their header fields.
fn body_contains(message: &Message<'_>, needle: &str) -> bool {
    message.parts.iter().any(|part| match &part.body {
        PartType::Text(text) => contains(text, needle),
        PartType::Html(html) => contains(&mail_parser::decoders::html::html_to_text(html), needle),
        PartType::Message(inner) => fields_contain(inner, None, needle) || body_contains(inner, needle),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use imap_codec::imap_types::{core::Vec1, datetime, sequence::SequenceSet};

    use super::*;

    const RAW: &[u8] = b"From: =?utf-8?q?J=C3=B6rg?= <joerg@Example.org>\r\n\
To: Team <team@example.net>,\r\n bob@example.com\r\n\
Cc: carol@example.com\r\n\
Subject: =?utf-8?b?UXVhcnRhbHNiZXJpY2h0?= Q3\r\n\
Date: Sat, 31 Dec 2022 23:30:00 -0500\r\n\
X-Priority: High\r\n\
Content-Type: multipart/alternative; boundary=B\r\n\
\r\n\
--B\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
The figures are in: caf=C3=A9 and cr=C3=A8me.\r\n\
--B\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>Hidden <b>markup</b> words</p>\r\n\
--B--\r\n";

    fn flags() -> Vec<String> {
        ["\\Seen", "\\Flagged", "$Label"].map(String::from).to_vec()
    }

    fn candidate<'a>(flags: &'a [String], raw: &'a [u8]) -> Candidate<'a> {
        Candidate {
            seq: 3,
            uid: 30,
            flags,
            // 2023-01-01T04:30:00Z: the Date: field says 2022-12-31.
            internal_date: 1_672_547_400,
            size: 2000,
            modseq: 17,
            recent: false,
            raw,
        }
    }

    fn astr(s: &str) -> AString<'static> {
        AString::try_from(s.to_string()).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> datetime::NaiveDate {
        datetime::NaiveDate::try_from(NaiveDate::from_ymd_opt(y, m, d).unwrap()).unwrap()
    }

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap()
    }

    fn check(key: SearchKey<'static>) -> bool {
        let flags = flags();
        matches(&key, &candidate(&flags, RAW), 5, 50)
    }

    #[test]
    fn flags_and_keywords() {
        assert!(check(SearchKey::All));
        assert!(check(SearchKey::Seen) && check(SearchKey::Flagged));
        assert!(!check(SearchKey::Unseen) && !check(SearchKey::Unflagged));
        assert!(!check(SearchKey::Answered) && check(SearchKey::Unanswered));
        assert!(!check(SearchKey::Deleted) && check(SearchKey::Undeleted));
        assert!(!check(SearchKey::Draft) && check(SearchKey::Undraft));
        assert!(check(SearchKey::Keyword("$label".try_into().unwrap())));
        assert!(!check(SearchKey::Keyword("$Other".try_into().unwrap())));
        assert!(check(SearchKey::Unkeyword("$Other".try_into().unwrap())));
        assert!(!check(SearchKey::Recent) && !check(SearchKey::New) && check(SearchKey::Old));
        let (seen, unseen) = (flags(), vec!["$Label".to_string()]);
        let recent = |flags| Candidate { recent: true, ..candidate(flags, RAW) };
        let key = |k: SearchKey<'static>, c: &Candidate<'_>| matches(&k, c, 5, 50);
        assert!(key(SearchKey::Recent, &recent(&seen)) && !key(SearchKey::Old, &recent(&seen)));
        assert!(!key(SearchKey::New, &recent(&seen)) && key(SearchKey::New, &recent(&unseen)));
    }

    #[test]
    fn header_keys_use_decoded_values() {
        assert!(check(SearchKey::From(astr("jörg"))));
        assert!(check(SearchKey::From(astr("EXAMPLE.ORG"))));
        assert!(!check(SearchKey::From(astr("bob"))));
        assert!(check(SearchKey::To(astr("bob@example"))));
        assert!(check(SearchKey::To(astr("team"))));
        assert!(check(SearchKey::Cc(astr("carol"))));
        assert!(!check(SearchKey::Bcc(astr(""))));
        // Comments inside an address do not hide it (RFC 5322 §3.4.1).
        let raw = b"From: (c1) k (c2) @ (c3) l.example (c4)\r\nTo: \"Team\" (ops) <team@example.net>\r\n\r\nx\r\n";
        let flags = flags();
        let key = |k: SearchKey<'static>| matches(&k, &candidate(&flags, raw), 5, 50);
        assert!(key(SearchKey::From(astr("k@l.example"))) && key(SearchKey::From(astr("c4"))));
        assert!(key(SearchKey::To(astr("Team <team@example.net>"))) && !key(SearchKey::To(astr("k@l.example"))));
        assert!(check(SearchKey::Subject(astr("quartalsbericht q3"))));
        assert!(check(SearchKey::Header(astr("x-priority"), astr("high"))));
        assert!(check(SearchKey::Header(astr("X-Priority"), astr(""))));
        assert!(!check(SearchKey::Header(astr("X-Absent"), astr(""))));
    }

    #[test]
    fn body_and_text() {
        // Non-ASCII letters are compared exactly.
        assert!(!check(SearchKey::Body(astr("CAFÉ"))));
        assert!(check(SearchKey::Body(astr("café"))));
        assert!(check(SearchKey::Body(astr("FIGURES"))));
        assert!(check(SearchKey::Body(astr("markup words"))));
        assert!(!check(SearchKey::Body(astr("<b>"))));
        assert!(!check(SearchKey::Body(astr("Quartalsbericht"))));
        assert!(check(SearchKey::Text(astr("Quartalsbericht"))));
        assert!(check(SearchKey::Text(astr("crème"))));
        assert!(check(SearchKey::Text(astr("x-priority: high"))));
        assert!(!check(SearchKey::Text(astr("absent"))));
    }

    #[test]
    fn dates_and_sizes() {
        // Internal date 2023-01-01 (UTC).
        assert!(check(SearchKey::On(date(2023, 1, 1))));
        assert!(check(SearchKey::Since(date(2023, 1, 1))));
        assert!(!check(SearchKey::Before(date(2023, 1, 1))));
        assert!(check(SearchKey::Before(date(2023, 1, 2))));
        // Date: 2022-12-31, whatever its zone.
        assert!(check(SearchKey::SentOn(date(2022, 12, 31))));
        assert!(check(SearchKey::SentBefore(date(2023, 1, 1))));
        assert!(!check(SearchKey::SentSince(date(2023, 1, 1))));
        assert!(check(SearchKey::SentSince(date(2022, 12, 31))));
        assert!(check(SearchKey::Larger(1999)) && !check(SearchKey::Larger(2000)));
        assert!(check(SearchKey::Smaller(2001)) && !check(SearchKey::Smaller(2000)));
        assert!(check(SearchKey::ModSequence { entry: None, modseq: 17 }));
        assert!(!check(SearchKey::ModSequence { entry: None, modseq: 18 }));
    }

    #[test]
    fn sets_and_logic() {
        assert!(check(SearchKey::SequenceSet(set("1:3"))));
        assert!(!check(SearchKey::SequenceSet(set("4:*"))));
        assert!(check(SearchKey::Uid(set("30"))));
        assert!(!check(SearchKey::Uid(set("*"))));
        assert!(!check(SearchKey::Uid(set("31:*"))));
        // RFC 9051 §6.4.8: with 30 the highest UID, 559:* holds it.
        let flags = flags();
        assert!(matches(&SearchKey::Uid(set("559:*")), &candidate(&flags, RAW), 5, 30));
        assert!(check(SearchKey::Not(Box::new(SearchKey::Deleted))));
        assert!(check(SearchKey::Or(Box::new(SearchKey::Deleted), Box::new(SearchKey::Seen))));
        assert!(!check(SearchKey::Or(Box::new(SearchKey::Deleted), Box::new(SearchKey::Draft))));
        let and = |keys: Vec<SearchKey<'static>>| SearchKey::And(Vec1::try_from(keys).unwrap());
        assert!(check(and(vec![SearchKey::Seen, SearchKey::From(astr("joerg"))])));
        assert!(!check(and(vec![SearchKey::Seen, SearchKey::From(astr("nobody"))])));
    }

    #[test]
    fn which_keys_need_the_message() {
        assert_eq!(needs(&SearchKey::All), None);
        assert_eq!(needs(&SearchKey::Uid(set("1:*"))), None);
        assert_eq!(needs(&SearchKey::Not(Box::new(SearchKey::Since(date(2020, 1, 1))))), None);
        assert_eq!(needs(&SearchKey::SentOn(date(2020, 1, 1))), Some(Part::Header));
        assert_eq!(needs(&SearchKey::Header(astr("x"), astr(""))), Some(Part::Header));
        assert_eq!(
            needs(&SearchKey::Or(
                Box::new(SearchKey::Subject(astr("s"))),
                Box::new(SearchKey::Not(Box::new(SearchKey::Body(astr("x")))))
            )),
            Some(Part::Whole)
        );
        let and = SearchKey::And(Vec1::try_from(vec![SearchKey::Seen, SearchKey::Text(astr("x"))]).unwrap());
        assert_eq!(needs(&and), Some(Part::Whole));
        let and = SearchKey::And(Vec1::try_from(vec![SearchKey::Seen, SearchKey::From(astr("x"))]).unwrap());
        assert_eq!(needs(&and), Some(Part::Header));
        // A flag-only search never parses the (here absent) message.
        let flags = flags();
        assert!(matches(&SearchKey::Seen, &candidate(&flags, b""), 5, 50));
    }

    #[test]
    fn malformed_and_missing_messages() {
        let flags = flags();
        for raw in [&b""[..], b"\xff\xfe\x00garbage", b"no header\r\n\r\nbody text", b"Date: not a date\r\n\r\n"] {
            let c = candidate(&flags, raw);
            for key in [
                SearchKey::From(astr("x")),
                SearchKey::Header(astr("date"), astr("")),
                SearchKey::SentBefore(date(2030, 1, 1)),
                SearchKey::SentSince(date(1970, 1, 1)),
                SearchKey::Body(astr("body")),
            ] {
                let _ = matches(&key, &c, 5, 50);
            }
        }
        let c = candidate(&flags, b"no header\r\n\r\nbody text");
        assert!(matches(&SearchKey::Text(astr("BODY TEXT")), &c, 5, 50));
        assert!(!matches(&SearchKey::SentOn(date(2022, 12, 31)), &c, 5, 50));
        let c = candidate(&flags, b"Date: not a date\r\n\r\n");
        assert!(!matches(&SearchKey::SentBefore(date(9999, 1, 1)), &c, 5, 50));
        assert!(matches(&SearchKey::Header(astr("date"), astr("NOT A")), &c, 5, 50));
        // An internal date beyond chrono's range matches no date key.
        let mut c = candidate(&flags, b"");
        c.internal_date = i64::MAX;
        assert!(!matches(&SearchKey::Since(date(1970, 1, 1)), &c, 5, 50));
        assert!(!matches(&SearchKey::Before(date(9999, 1, 1)), &c, 5, 50));
    }
}
