//! MIME views of a stored message for FETCH (RFC 9051 §6.4.5, §7.5.2;
//! RFC 3501 §6.4.5, §7.4.2): ENVELOPE, BODY and BODYSTRUCTURE, the bytes of
//! `BODY[section]`, `BINARY[part]` (decoded) and `<origin.length>` partial
//! fetches.
//!
//! The raw message is parsed once with [`mail_parser::MessageParser`] and the
//! answers are read from that parse: structure and header values from its
//! parts, section bytes as slices of the original octets through its offsets
//! (never re-encoded). [`Mime`] keeps one parse for several FETCH items; the
//! free functions parse for a single answer.
//!
//! Failure behaviour: nothing here fails or panics. Malformed MIME gives a
//! best-effort answer: a composite part that cannot be split (a multipart
//! without its boundary, an unparsable message/rfc822) is described as
//! text/plain, as is a part without a usable Content-Type (RFC 2045 §5.2); a
//! message without any header is all body; a section that does not exist is
//! empty. NUL octets, which IMAP strings cannot carry, are dropped from
//! header-derived strings. BINARY of a part in an encoding it does not
//! know is the one refusal ([`UnknownCte`]).

use std::num::NonZeroU32;

use crate::address;
use imap_codec::imap_types::{
    body::{
        BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
        SinglePartExtensionData, SpecificFields,
    },
    core::{AString, IString, NString, Vec1},
    envelope::{Address, Envelope},
    fetch::{Part, Section},
};
use mail_parser::{ContentType, Header, HeaderName, HeaderValue, Message, MessageParser, MessagePart, PartType};

/// Deepest part nesting described; deeper parts are reported as leaves, so a
/// hostile message cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// The ENVELOPE of a message (RFC 9051 §7.5.2).
pub fn envelope(raw: &[u8]) -> Envelope<'static> {
    Mime::parse(raw).envelope()
}

/// The BODYSTRUCTURE (`extended`) or BODY (not `extended`) of a message
/// (RFC 9051 §7.5.2).
pub fn body_structure(raw: &[u8], extended: bool) -> BodyStructure<'static> {
    Mime::parse(raw).body_structure(extended)
}

/// The octets of `BODY[section]` (RFC 9051 §6.4.5); `None` is `BODY[]`.
pub fn section(raw: &[u8], section: Option<&Section>) -> Vec<u8> {
    Mime::parse(raw).section(section)
}

/// The top-level sections a mail client asks for when it lists messages
/// (the whole message, HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT),
/// cut at the first blank line without a MIME parse; `None` when the
/// section needs the parse (a part path, MIME) or there is no blank line.
/// Gives the same bytes as [`section`] (tested below).
pub fn top_level_section(raw: &[u8], section: Option<&Section>) -> Option<Vec<u8>> {
    let split = if raw.starts_with(b"\r\n") { 2 } else { raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4 };
    let header = &raw[..split];
    if !plain_header(header) {
        return None;
    }
    match section {
        None => Some(raw.to_vec()),
        Some(Section::Header(None)) => Some(header.to_vec()),
        Some(Section::HeaderFields(None, names)) => Some(return_fields(header, names.as_ref(), true)),
        Some(Section::HeaderFieldsNot(None, names)) => Some(return_fields(header, names.as_ref(), false)),
        Some(Section::Text(None)) => Some(raw[split..].to_vec()),
        _ => None,
    }
}

/// Whether a header section (ending in CRLF CRLF) is one the parse would
/// also end there: every line ends in CRLF, no bare CR or LF, and each line
/// is a `name:` field or, after the first, a continuation. Anything else
/// (found by fuzzing: a blank line after a bare LF, a lone CR, a first line
/// of white space) goes to the parse.
fn plain_header(header: &[u8]) -> bool {
    let fields = &header[..header.len() - 2];
    fields.split_inclusive(|&b| b == b'\n').enumerate().all(|(i, line)| {
        let Some(line) = line.strip_suffix(b"\r\n") else { return false };
        if line.contains(&b'\r') || line.contains(&b'\n') {
            return false;
        }
        match line.first() {
            Some(b' ' | b'\t') => i > 0,
            _ => line
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|c| c > 0 && line[..c].iter().all(|b| b.is_ascii_graphic())),
        }
    })
}

/// The `<origin.length>` substring of fetched data (RFC 9051 §6.4.5): empty
/// when the origin is past the end, shortened when the data ends first.
pub fn partial(data: &[u8], partial: Option<(u32, NonZeroU32)>) -> &[u8] {
    let Some((origin, length)) = partial else {
        return data;
    };
    let start = usize::try_from(origin).unwrap_or(usize::MAX).min(data.len());
    let len = usize::try_from(length.get()).unwrap_or(usize::MAX);
    &data[start..start.saturating_add(len).min(data.len())]
}

/// BINARY asked for a part whose Content-Transfer-Encoding is neither an
/// identity (7bit, 8bit, binary) nor base64 or quoted-printable, or whose
/// content does not decode: the answer is `NO [UNKNOWN-CTE]` (RFC 3516 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCte(pub String);

/// A message parsed once, answering several FETCH items.
pub struct Mime<'a> {
    raw: &'a [u8],
    /// `None` when no header field could be parsed: the message is all body.
    message: Option<Message<'a>>,
}

impl<'a> Mime<'a> {
    /// Parses `raw` (never fails; see the module documentation).
    pub fn parse(raw: &'a [u8]) -> Self {
        let message = MessageParser::default().parse(raw).filter(|m| !m.parts.is_empty());
        Mime { raw, message }
    }

    /// The ENVELOPE (RFC 9051 §7.5.2); every field NIL without a header.
    pub fn envelope(&self) -> Envelope<'static> {
        match &self.message {
            Some(message) => envelope_of(message),
            None => empty_envelope(),
        }
    }

    /// BODYSTRUCTURE with `extended`, BODY without (RFC 9051 §7.5.2).
    pub fn body_structure(&self, extended: bool) -> BodyStructure<'static> {
        match self.message.as_ref().and_then(root) {
            Some(node) => structure(node, extended, 0),
            // RFC 2045 §5.2: no Content-Type means text/plain; charset=us-ascii.
            None => default_text(self.raw, extended),
        }
    }

    /// The octets of `BODY[section]` (RFC 9051 §6.4.5), `None` being the
    /// whole message. A part that does not exist gives an empty vector.
    pub fn section(&self, section: Option<&Section>) -> Vec<u8> {
        let Some(section) = section else {
            return self.raw.to_vec();
        };
        let Some(message) = &self.message else {
            return self.headerless_section(section);
        };
        let bytes = match section {
            Section::Header(part) => header_of(message, part.as_ref()).map(<[u8]>::to_vec),
            Section::HeaderFields(part, names) => {
                header_of(message, part.as_ref()).map(|header| return_fields(header, names.as_ref(), true))
            }
            Section::HeaderFieldsNot(part, names) => {
                header_of(message, part.as_ref()).map(|header| return_fields(header, names.as_ref(), false))
            }
            Section::Text(None) => root(message).map(|node| node.body().to_vec()),
            // The encapsulated message's body as its enclosing part holds
            // it: the inner parse can end a multipart at its close
            // delimiter and drop the epilogue (RFC 2046 §5.1.1).
            Section::Text(Some(part)) => resolve(message, part).and_then(|node| {
                let header = root(node.encapsulated()?)?.header();
                Some(node.body().strip_prefix(header).unwrap_or_default().to_vec())
            }),
            Section::Mime(part) => resolve(message, part).map(|node| node.header().to_vec()),
            Section::Part(part) => resolve(message, part).map(|node| node.body().to_vec()),
        };
        bytes.unwrap_or_default()
    }

    /// `BINARY[part]` (RFC 9051 §6.4.5, RFC 3516 §4.2): the part's body with
    /// its Content-Transfer-Encoding undone, charset untouched. An empty
    /// path is the whole message as stored; a part that does not exist is
    /// empty, as for BODY.
    pub fn binary(&self, path: &[NonZeroU32]) -> Result<Vec<u8>, UnknownCte> {
        let Ok(part) = Vec1::try_from(path.to_vec()).map(Part) else {
            return Ok(self.raw.to_vec());
        };
        let Some(message) = &self.message else {
            return Ok(self.headerless_section(&Section::Part(part)));
        };
        let Some(node) = resolve(message, &part) else { return Ok(Vec::new()) };
        let encoding = node.raw_value(HeaderName::ContentTransferEncoding).unwrap_or_default().to_ascii_lowercase();
        let body = node.body();
        let decoded = match encoding.as_str() {
            "" | "7bit" | "8bit" | "binary" => Some(body.to_vec()),
            "base64" => mail_parser::decoders::base64::base64_decode(body),
            "quoted-printable" => mail_parser::decoders::quoted_printable::quoted_printable_decode(body),
            _ => return Err(UnknownCte(format!("unknown Content-Transfer-Encoding {encoding:?}"))),
        };
        decoded.ok_or_else(|| UnknownCte(format!("part is not valid {encoding}")))
    }

    /// Sections of a message without header fields: an empty header, a body
    /// that is the whole message, and a single part 1.
    fn headerless_section(&self, section: &Section) -> Vec<u8> {
        let is_one = |part: &Part| part.0.as_ref() == [NonZeroU32::MIN];
        match section {
            Section::Text(None) => self.raw.to_vec(),
            Section::Part(part) if is_one(part) => self.raw.to_vec(),
            Section::HeaderFields(None, _) | Section::HeaderFieldsNot(None, _) => b"\r\n".to_vec(),
            _ => Vec::new(),
        }
    }
}

/// One body part: the message whose `raw_message` its offsets refer to
/// (the top-level message, or an encapsulated one), and the part itself.
#[derive(Clone, Copy)]
struct Node<'m, 'x> {
    message: &'m Message<'x>,
    part: &'m MessagePart<'x>,
}

impl<'m> Node<'m, '_> {
    /// The part's header section, blank line included.
    fn header(&self) -> &'m [u8] {
        slice(&self.message.raw_message, self.part.offset_header, self.part.offset_body)
    }

    /// The part's body, in its transfer encoding.
    fn body(&self) -> &'m [u8] {
        slice(&self.message.raw_message, self.part.offset_body, self.part.offset_end)
    }

    /// The last field called `name` (the one mail-parser itself uses).
    fn field(&self, name: HeaderName<'_>) -> Option<&'m Header<'m>> {
        self.part.headers.iter().rev().find(|h| h.name == name)
    }

    /// A field's value as written: unfolded, trimmed, encoded words kept.
    fn raw_value(&self, name: HeaderName<'_>) -> Option<String> {
        let field = self.field(name)?;
        let value = slice(&self.message.raw_message, field.offset_start, field.offset_end);
        let value: Vec<u8> = value.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
        Some(String::from_utf8_lossy(value.trim_ascii()).into_owned())
    }

    fn content_type(&self) -> Option<&'m ContentType<'m>> {
        self.field(HeaderName::ContentType)?.value.as_content_type()
    }

    fn encapsulated(&self) -> Option<&'m Message<'m>> {
        match &self.part.body {
            PartType::Message(inner) => Some(inner),
            _ => None,
        }
    }
}

/// `raw[start..end]`, clamped so inconsistent offsets give a short slice.
fn slice(raw: &[u8], start: u32, end: u32) -> &[u8] {
    let start = (start as usize).min(raw.len());
    let end = (end as usize).clamp(start, raw.len());
    &raw[start..end]
}

fn root<'m, 'x>(message: &'m Message<'x>) -> Option<Node<'m, 'x>> {
    message.parts.first().map(|part| Node { message, part })
}

/// Part `n` of a message (RFC 9051 §6.4.5): the n-th child of a multipart
/// message, or for any other message its body as part 1.
fn nth_of_message<'m, 'x>(message: &'m Message<'x>, n: NonZeroU32) -> Option<Node<'m, 'x>> {
    let top = root(message)?;
    match &top.part.body {
        PartType::Multipart(ids) if !ids.is_empty() => nth_child(message, ids, n),
        _ => (n.get() == 1).then_some(top),
    }
}

/// Part `n` inside a part: a multipart's child, or the part of an
/// encapsulated message/rfc822 message. Leaves have no parts.
fn nth_of_part<'m, 'x>(node: Node<'m, 'x>, n: NonZeroU32) -> Option<Node<'m, 'x>> {
    match &node.part.body {
        PartType::Multipart(ids) => nth_child(node.message, ids, n),
        PartType::Message(inner) => nth_of_message(inner, n),
        _ => None,
    }
}

fn nth_child<'m, 'x>(message: &'m Message<'x>, ids: &[u32], n: NonZeroU32) -> Option<Node<'m, 'x>> {
    let id = *ids.get(usize::try_from(n.get() - 1).ok()?)?;
    message.parts.get(usize::try_from(id).ok()?).map(|part| Node { message, part })
}

/// The part a section's part number names (`1.2.3`).
fn resolve<'m, 'x>(message: &'m Message<'x>, part: &Part) -> Option<Node<'m, 'x>> {
    let (&first, rest) = part.0.as_ref().split_first()?;
    rest.iter().try_fold(nth_of_message(message, first)?, |node, &n| nth_of_part(node, n))
}

/// The message HEADER and TEXT refer to: the top-level one, or the one
/// encapsulated in a message/rfc822 part (RFC 9051 §6.4.5).
fn encapsulated<'m, 'x>(message: &'m Message<'x>, part: Option<&Part>) -> Option<&'m Message<'x>> {
    match part {
        None => Some(message),
        Some(part) => match &resolve(message, part)?.part.body {
            PartType::Message(inner) => Some(inner),
            _ => None,
        },
    }
}

/// The header section HEADER and HEADER.FIELDS refer to.
fn header_of<'m>(message: &'m Message<'_>, part: Option<&Part>) -> Option<&'m [u8]> {
    encapsulated(message, part).and_then(root).map(|node| node.header())
}

/// HEADER.FIELDS (`keep`) or HEADER.FIELDS.NOT: the fields whose name
/// matches one of `names` case-insensitively (or none of them), in their
/// original form, then the delimiting blank line (RFC 9051 §6.4.5).
fn return_fields(header: &[u8], names: &[AString<'_>], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields(header) {
        let matched =
            field_name(field).is_some_and(|name| names.iter().any(|wanted| wanted.as_ref().eq_ignore_ascii_case(name)));
        if matched == keep {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Splits a header section into fields (a line and its continuation lines,
/// RFC 5322 §2.2.3), stopping at the blank line.
fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < header.len() {
        let end = header[pos..].iter().position(|&b| b == b'\n').map_or(header.len(), |i| pos + i + 1);
        let line = &header[pos..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line[0], b' ' | b'\t') && pos > start {
            fields.push(&header[start..pos]);
            start = pos;
        }
        pos = end;
    }
    if pos > start {
        fields.push(&header[start..pos]);
    }
    fields
}

/// The name of a field: what precedes the colon, trailing blanks removed.
fn field_name(field: &[u8]) -> Option<&[u8]> {
    let colon = field.iter().position(|&b| b == b':')?;
    Some(field[..colon].trim_ascii_end())
}

/// Number of text lines, counting a last line without line end.
fn lines(body: &[u8]) -> u32 {
    let ends = body.iter().filter(|&&b| b == b'\n').count();
    let ends = if body.last().is_some_and(|&b| b != b'\n') { ends + 1 } else { ends };
    u32::try_from(ends).unwrap_or(u32::MAX)
}

fn size(body: &[u8]) -> u32 {
    u32::try_from(body.len()).unwrap_or(u32::MAX)
}

/// An IMAP string; quoted when possible, a literal otherwise (non-ASCII,
/// CR, LF). NUL octets, which neither can hold, are dropped.
fn istr(s: &str) -> IString<'static> {
    let s: String = s.chars().filter(|&c| c != '\0').collect();
    IString::try_from(s).unwrap_or_else(|_| IString::try_from("").expect("empty string is valid"))
}

fn nstr(s: Option<&str>) -> NString<'static> {
    NString(s.map(istr))
}

// ---------------------------------------------------------------- ENVELOPE

fn empty_envelope() -> Envelope<'static> {
    Envelope {
        date: NString::NIL,
        subject: NString::NIL,
        from: Vec::new(),
        sender: Vec::new(),
        reply_to: Vec::new(),
        to: Vec::new(),
        cc: Vec::new(),
        bcc: Vec::new(),
        in_reply_to: NString::NIL,
        message_id: NString::NIL,
    }
}

/// RFC 9051 §7.5.2 ENVELOPE: date, subject, from, sender, reply-to, to, cc,
/// bcc, in-reply-to and message-id of a message's header; NIL for absent
/// fields; sender and reply-to default to from.
fn envelope_of(message: &Message<'_>) -> Envelope<'static> {
    let Some(top) = root(message) else {
        return empty_envelope();
    };
    let list = |name| top.raw_value(name).map(|v| addresses(&v)).unwrap_or_default();
    let from = list(HeaderName::From);
    let or_from = |list: Vec<Address<'static>>| if list.is_empty() { from.clone() } else { list };
    // Date, In-Reply-To and Message-ID are sent as written; the subject
    // decoded (RFC 2047), which a literal carries when it is not ASCII.
    let subject = top.field(HeaderName::Subject).map(|f| match &f.value {
        HeaderValue::Text(text) => text.to_string(),
        _ => String::new(),
    });
    Envelope {
        date: nstr(top.raw_value(HeaderName::Date).as_deref()),
        subject: nstr(subject.as_deref()),
        sender: or_from(list(HeaderName::Sender)),
        reply_to: or_from(list(HeaderName::ReplyTo)),
        to: list(HeaderName::To),
        cc: list(HeaderName::Cc),
        bcc: list(HeaderName::Bcc),
        in_reply_to: nstr(top.raw_value(HeaderName::InReplyTo).as_deref()),
        message_id: nstr(top.raw_value(HeaderName::MessageId).as_deref()),
        from,
    }
}

/// Address structures of an address field (read by `address`). A group is
/// framed by `(NIL NIL "name" NIL)` and `(NIL NIL NIL NIL)` (RFC 9051
/// §7.5.2). An address without a domain gets an empty host, since a NIL
/// host would mark a group; a lone word (`Bcc: nodomain`) is taken as such
/// a local part.
fn addresses(value: &str) -> Vec<Address<'static>> {
    let nil = || Address { name: NString::NIL, adl: NString::NIL, mailbox: NString::NIL, host: NString::NIL };
    address::parse(value.as_bytes())
        .into_iter()
        .map(|item| match item {
            address::Item::GroupStart(name) => Address { mailbox: nstr(Some(&name)), ..nil() },
            address::Item::GroupEnd => nil(),
            address::Item::Mailbox(m) => Address {
                name: nstr(m.name.as_deref()),
                adl: nstr(m.route.as_deref()),
                mailbox: nstr(Some(&m.local)),
                host: nstr(Some(&m.domain)),
            },
        })
        .collect()
}

// ----------------------------------------------------------- BODYSTRUCTURE

/// The body structure of a part (RFC 9051 §7.5.2): multipart, message/rfc822
/// with its envelope and structure, text with its line count, or basic.
fn structure(node: Node<'_, '_>, extended: bool, depth: usize) -> BodyStructure<'static> {
    if let PartType::Multipart(ids) = &node.part.body
        && depth < MAX_DEPTH
    {
        let bodies: Vec<_> = ids
            .iter()
            .filter_map(|&id| node.message.parts.get(id as usize))
            .map(|part| structure(Node { message: node.message, part }, extended, depth + 1))
            .collect();
        if let Ok(bodies) = Vec1::try_from(bodies) {
            let content_type = node.content_type();
            let subtype = content_type.and_then(ContentType::subtype).unwrap_or("mixed");
            return BodyStructure::Multi {
                bodies,
                subtype: istr(subtype),
                extension_data: extended.then(|| MultiPartExtensionData {
                    parameter_list: parameters(content_type),
                    tail: Some(disposition(node)),
                }),
            };
        }
    }
    single(node, extended, depth)
}

/// A non-multipart part, or a multipart that could not be split.
fn single(node: Node<'_, '_>, extended: bool, depth: usize) -> BodyStructure<'static> {
    let body = node.body();
    let content_type = node.content_type();
    let inner = node.encapsulated().filter(|_| depth < MAX_DEPTH).and_then(root);
    let (parameter_list, specific) = match (inner, content_type) {
        (Some(inner), _) => (
            parameters(content_type),
            SpecificFields::Message {
                envelope: Box::new(envelope_of(inner.message)),
                body_structure: Box::new(structure(inner, extended, depth + 1)),
                number_of_lines: lines(body),
            },
        ),
        (None, Some(ct)) if !is_composite(ct) && ct.subtype().is_some() => {
            let subtype = istr(ct.subtype().unwrap_or_default());
            let specific = if ct.ctype().eq_ignore_ascii_case("text") {
                SpecificFields::Text { subtype, number_of_lines: lines(body) }
            } else {
                SpecificFields::Basic { r#type: istr(ct.ctype()), subtype }
            };
            (parameters(content_type), specific)
        }
        // RFC 2045 §5.2: a missing or unusable Content-Type is text/plain.
        _ => (us_ascii(), SpecificFields::Text { subtype: istr("plain"), number_of_lines: lines(body) }),
    };
    let encoding = node.raw_value(HeaderName::ContentTransferEncoding).filter(|e| !e.is_empty());
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list,
                id: nstr(node.raw_value(HeaderName::ContentId).as_deref()),
                description: nstr(description(node).as_deref()),
                // RFC 2045 §6.1: 7BIT is the default.
                content_transfer_encoding: istr(encoding.as_deref().unwrap_or("7BIT")),
                size: size(body),
            },
            specific,
        },
        extension_data: extended.then(|| SinglePartExtensionData { md5: NString::NIL, tail: Some(disposition(node)) }),
    }
}

/// text/plain; charset=us-ascii, for a message without any header.
fn default_text(raw: &[u8], extended: bool) -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: us_ascii(),
                id: NString::NIL,
                description: NString::NIL,
                content_transfer_encoding: istr("7BIT"),
                size: size(raw),
            },
            specific: SpecificFields::Text { subtype: istr("plain"), number_of_lines: lines(raw) },
        },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: NString::NIL,
            tail: Some(Disposition {
                disposition: None,
                tail: Some(Language {
                    language: Vec::new(),
                    tail: Some(Location { location: NString::NIL, extensions: Vec::new() }),
                }),
            }),
        }),
    }
}

fn us_ascii() -> Vec<(IString<'static>, IString<'static>)> {
    vec![(istr("charset"), istr("us-ascii"))]
}

/// Types whose body is parsed for parts: described as such only when the
/// parse succeeded.
fn is_composite(ct: &ContentType<'_>) -> bool {
    let subtype = ct.subtype().unwrap_or_default();
    ct.ctype().eq_ignore_ascii_case("multipart")
        || ct.ctype().eq_ignore_ascii_case("message")
            && (subtype.eq_ignore_ascii_case("rfc822") || subtype.eq_ignore_ascii_case("global"))
}

fn parameters(ct: Option<&ContentType<'_>>) -> Vec<(IString<'static>, IString<'static>)> {
    ct.and_then(ContentType::attributes).unwrap_or_default().iter().map(|a| (istr(&a.name), istr(&a.value))).collect()
}

fn description(node: Node<'_, '_>) -> Option<String> {
    match &node.field(HeaderName::ContentDescription)?.value {
        HeaderValue::Text(text) => Some(text.to_string()),
        _ => None,
    }
}

/// Extension data after md5: disposition (RFC 2183), language (RFC 3282)
/// and location (RFC 2557), RFC 9051 §7.5.2.
fn disposition(node: Node<'_, '_>) -> Disposition<'static> {
    let disposition = node
        .field(HeaderName::ContentDisposition)
        .and_then(|f| f.value.as_content_type())
        .map(|cd| (istr(cd.ctype()), parameters(Some(cd))));
    let language = match node.field(HeaderName::ContentLanguage).map(|f| &f.value) {
        Some(HeaderValue::TextList(list)) => list.iter().map(|l| istr(l)).collect(),
        Some(HeaderValue::Text(one)) => vec![istr(one)],
        _ => Vec::new(),
    };
    let location = node.raw_value(HeaderName::ContentLocation).filter(|l| !l.is_empty());
    Disposition {
        disposition,
        tail: Some(Language {
            language,
            tail: Some(Location { location: nstr(location.as_deref()), extensions: Vec::new() }),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use imap_codec::{
        ResponseCodec,
        encode::Encoder,
        imap_types::{
            fetch::MessageDataItem,
            response::{Data, Response},
        },
    };

    use super::*;

    /// The wire form of a FETCH item, without the `* 1 FETCH (` frame.
    fn wire(item: MessageDataItem<'static>) -> String {
        let response = Response::Data(Data::fetch(1, vec![item]).unwrap());
        let bytes = ResponseCodec::default().encode(&response).dump();
        let text = String::from_utf8(bytes).unwrap();
        text.strip_prefix("* 1 FETCH (").unwrap().strip_suffix(")\r\n").unwrap().to_owned()
    }

    fn bs(raw: &[u8]) -> String {
        wire(MessageDataItem::BodyStructure(body_structure(raw, true)))
    }

    fn body(raw: &[u8]) -> String {
        wire(MessageDataItem::Body(body_structure(raw, false)))
    }

    fn env(raw: &[u8]) -> String {
        wire(MessageDataItem::Envelope(envelope(raw)))
    }

    fn part(path: &[u32]) -> Part {
        let nums: Vec<_> = path.iter().map(|&n| NonZeroU32::new(n).unwrap()).collect();
        Part(Vec1::try_from(nums).unwrap())
    }

    fn names(list: &[&str]) -> Vec1<AString<'static>> {
        let v: Vec<_> = list.iter().map(|n| AString::try_from(n.to_string()).unwrap()).collect();
        Vec1::try_from(v).unwrap()
    }

    fn sec(raw: &[u8], s: Section) -> String {
        String::from_utf8(section(raw, Some(&s))).unwrap()
    }

    pub(crate) const SIMPLE: &[u8] = b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
From: Fred Foobar <foobar@Blurdybloop.example>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.edu.example\r\n\
Message-Id: <B27397-0100000@Blurdybloop.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

    pub(crate) const MIXED: &[u8] = b"From: a@example.org\r\n\
Subject: parts\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
caf=C3=A9\r\n\
second line\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
Content-Description: forwarded\r\n\
\r\n\
From: b@example.org\r\n\
Subject: inner\r\n\
Content-Type: multipart/alternative; boundary=YY\r\n\
\r\n\
--YY\r\n\
\r\n\
inner plain\r\n\
--YY\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>inner</p>\r\n\
--YY--\r\n\
\r\n\
--XX\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-ID: <pdf@example.org>\r\n\
Content-Language: en, fr\r\n\
Content-Location: http://example.org/a.pdf\r\n\
\r\n\
JVBERi0=\r\n\
--XX--\r\n\
epilogue\r\n";

    #[test]
    fn envelope_of_a_simple_message() {
        assert_eq!(
            env(SIMPLE),
            "ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"afternoon meeting\" \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")) NIL NIL NIL \
\"<B27397-0100000@Blurdybloop.example>\")"
        );
    }

    #[test]
    fn envelope_sender_reply_to_groups_and_folding() {
        let raw = b"From: a@x.example\r\n\
Sender: s@x.example\r\n\
Reply-To: r@x.example\r\n\
To: Team: one@x.example, Two <two@x.example>;, solo@y.example\r\n\
Cc: undisclosed-recipients:;\r\n\
Bcc: nodomain\r\n\
In-Reply-To:\r\n <parent@x.example>\r\n\
Subject: =?utf-8?q?Entw=C3=BCrfe?=\r\n\
\r\n\
body\r\n";
        let e = env(raw);
        assert!(e.contains("((NIL NIL \"s\" \"x.example\")) ((NIL NIL \"r\" \"x.example\"))"), "{e}");
        assert!(
            e.contains(
                "((NIL NIL \"Team\" NIL)(NIL NIL \"one\" \"x.example\")(\"Two\" NIL \"two\" \"x.example\")\
(NIL NIL NIL NIL)(NIL NIL \"solo\" \"y.example\"))"
            ),
            "{e}"
        );
        assert!(e.contains("((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"), "{e}");
        assert!(e.contains("\"<parent@x.example>\""), "{e}");
        // A non-ASCII subject travels as a literal.
        assert!(e.starts_with("ENVELOPE (NIL {9}\r\nEntwürfe ((NIL NIL \"a\""), "{e}");
        assert!(e.ends_with(" ((NIL NIL \"nodomain\" \"\")) \"<parent@x.example>\" NIL)"), "{e}");
    }

    #[test]
    fn nul_octets_are_dropped_from_strings() {
        let raw = b"Subject: a\0b\r\nContent-Type: text/plain; name=\"x\0y\"\r\n\r\nbody\0\r\n";
        assert!(env(raw).starts_with("ENVELOPE (NIL \"ab\" "), "{}", env(raw));
        assert!(body(raw).contains("(\"name\" \"xy\")"), "{}", body(raw));
    }

    #[test]
    fn envelope_without_fields_is_nil() {
        let nil = "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";
        assert_eq!(env(b""), nil);
        assert_eq!(env(b"just text, no header\r\n"), nil);
        assert_eq!(env(b"X-Other: 1\r\n\r\nbody"), nil);
    }

    #[test]
    fn body_structure_of_a_simple_message() {
        assert_eq!(
            bs(SIMPLE),
            "BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1 \
NIL NIL NIL NIL)"
        );
        assert_eq!(body(SIMPLE), "BODY (\"TEXT\" \"plain\" (\"charset\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1)");
    }

    #[test]
    fn envelope_of_an_encapsulated_message() {
        let raw = b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\n\
Content-Type: message/rfc822\r\n\r\n\
Date: Tue, 1 Mar 2022 10:00:00 +0100\r\nFrom: In <in@x.example>\r\nMessage-ID:\r\n <inner@x.example>\r\n\r\nhi\r\n\
--Z--\r\n";
        let s = body(raw);
        assert!(
            s.contains(
                "(\"Tue, 1 Mar 2022 10:00:00 +0100\" NIL ((\"In\" NIL \"in\" \"x.example\")) \
((\"In\" NIL \"in\" \"x.example\")) ((\"In\" NIL \"in\" \"x.example\")) NIL NIL NIL NIL \
\"<inner@x.example>\")"
            ),
            "{s}"
        );
    }

    #[test]
    fn body_structure_of_nested_parts() {
        let s = bs(MIXED);
        assert!(
            s.starts_with(
                "BODYSTRUCTURE ((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \
\"quoted-printable\" 22 2 NIL NIL NIL NIL)"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "(\"MESSAGE\" \"RFC822\" NIL NIL \"forwarded\" \"7BIT\" 165 \
(NIL \"inner\" ((NIL NIL \"b\" \"example.org\"))"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)\
(\"TEXT\" \"html\" NIL NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL) \"alternative\" \
(\"boundary\" \"YY\") NIL NIL NIL) 12 NIL NIL NIL NIL)"
            ),
            "{s}"
        );
        assert!(
            s.ends_with(
                "(\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<pdf@example.org>\" NIL \"base64\" 8 \
NIL (\"attachment\" (\"filename\" \"a.pdf\")) (\"en\" \"fr\") \"http://example.org/a.pdf\") \
\"mixed\" (\"boundary\" \"XX\") NIL NIL NIL)"
            ),
            "{s}"
        );
        let b = body(MIXED);
        assert!(!b.contains("boundary") && !b.contains("attachment"), "{b}");
        assert!(b.ends_with("\"base64\" 8) \"mixed\")"), "{b}");
    }

    /// Messages MIME parsers trip on (also seeds for the fuzz checks).
    pub(crate) const MALFORMED: &[&[u8]] = &[
        b"",
        b"\r\n",
        b"\r\n\r\n\r\n",
        b"no header at all",
        b"\xff\xfe\x00\x01garbage\x00\r\n\r\n\x80",
        b"Subject: x",
        b"Subject: x\r\n",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary parameter\r\n",
        b"Content-Type: multipart/mixed; boundary=Q\r\n\r\nboundary never appears\r\n",
        b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\nContent-Type: text/plain\r\n\r\ntrunc",
        b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\n",
        b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q--\r\n",
        b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\nContent-Type: multipart/related; boundary=R\r\n\r\n--R\r\n\r\nx",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\nnot a message",
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQpoaQ==\r\n",
        b"Content-Type: text\r\n\r\nno subtype\r\n",
        b"Content-Type: ;;;\r\nContent-Transfer-Encoding:\r\n\r\nx",
        b"Content-Type: multipart/digest; boundary=D\r\n\r\n--D\r\n\r\nSubject: in digest\r\n\r\nhi\r\n--D--\r\n",
        b"From: \"unterminated <a@\r\nTo: <<<>>>,,,@@@\r\nDate: yesterday\r\n\r\n",
    ];

    #[test]
    fn malformed_mime_gives_a_best_effort_structure() {
        let cases = MALFORMED;
        for raw in cases {
            let mime = Mime::parse(raw);
            for extended in [false, true] {
                let _ = wire(MessageDataItem::BodyStructure(mime.body_structure(extended)));
            }
            let _ = wire(MessageDataItem::Envelope(mime.envelope()));
            for p in [&[1][..], &[1, 1], &[2], &[1, 2, 3], &[9]] {
                let _ = mime.section(Some(&Section::Part(part(p))));
                let _ = mime.section(Some(&Section::Mime(part(p))));
                let _ = mime.section(Some(&Section::Header(Some(part(p)))));
                let _ = mime.section(Some(&Section::Text(Some(part(p)))));
            }
            assert_eq!(mime.section(None), raw.to_vec());
        }
    }

    #[test]
    fn every_truncation_is_handled() {
        for end in 0..=MIXED.len() {
            let raw = &MIXED[..end];
            let mime = Mime::parse(raw);
            let _ = wire(MessageDataItem::BodyStructure(mime.body_structure(true)));
            let _ = wire(MessageDataItem::Envelope(mime.envelope()));
            assert_eq!(
                mime.section(Some(&Section::Header(None))).len() + mime.section(Some(&Section::Text(None))).len(),
                end
            );
            for p in [&[1][..], &[2], &[2, 1], &[2, 2], &[3]] {
                let bytes = mime.section(Some(&Section::Part(part(p))));
                assert!(bytes.len() <= end);
                let _ = mime.section(Some(&Section::Mime(part(p))));
            }
        }
    }

    #[test]
    fn truncated_and_broken_multiparts() {
        // No boundary parameter: one text/plain part of the whole body.
        let raw = b"Content-Type: multipart/mixed\r\n\r\nabc\r\n";
        assert_eq!(
            bs(raw),
            "BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL)"
        );
        // Truncated: the parts found so far are kept.
        let raw = b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\n\r\none\r\n--Q\r\nContent-Type: text/html\r\n\r\ntwo, cut he";
        let s = body(raw);
        assert!(s.starts_with("BODY ((\"TEXT\" \"plain\""), "{s}");
        assert!(s.contains("(\"TEXT\" \"html\" NIL NIL NIL \"7BIT\" 11 1) \"mixed\")"), "{s}");
        assert_eq!(sec(raw, Section::Part(part(&[2]))), "two, cut he");
        assert_eq!(sec(raw, Section::Part(part(&[3]))), "");
        // An empty body.
        assert_eq!(
            bs(b""),
            "BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
        );
    }

    /// How deep a body structure nests (a leaf is 1).
    fn nesting(b: &BodyStructure<'_>) -> usize {
        match b {
            BodyStructure::Multi { bodies, .. } => 1 + bodies.as_ref().iter().map(nesting).max().unwrap_or(0),
            BodyStructure::Single { body, .. } => match &body.specific {
                SpecificFields::Message { body_structure, .. } => 1 + nesting(body_structure),
                _ => 1,
            },
        }
    }

    /// Wire nesting: the deepest run of open parentheses outside strings.
    fn paren_depth(s: &str) -> usize {
        let (mut depth, mut max, mut quoted) = (0usize, 0usize, false);
        for c in s.chars() {
            match c {
                '"' => quoted = !quoted,
                '(' if !quoted => {
                    depth += 1;
                    max = max.max(depth);
                }
                ')' if !quoted => depth -= 1,
                _ => {}
            }
        }
        assert_eq!(depth, 0, "unbalanced: {s}");
        max
    }

    #[test]
    fn deep_nesting_is_cut_at_max_depth() {
        // 500 multiparts, each inside the last: the structure stops at
        // MAX_DEPTH (the rest is shown as one leaf) and encodes balanced.
        let mut raw = Vec::new();
        for i in 0..500 {
            raw.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\nleaf\r\n");
        let s = body_structure(&raw, true);
        let depth = nesting(&s);
        assert!(depth > 1 && depth <= MAX_DEPTH + 1, "multipart nesting {depth}");
        assert!(paren_depth(&wire(MessageDataItem::BodyStructure(s))) <= 3 * (MAX_DEPTH + 1));
        // 500 message/rfc822 inside each other: the same bound.
        let mut raw = Vec::new();
        for _ in 0..500 {
            raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        raw.extend_from_slice(b"Subject: leaf\r\n\r\nleaf\r\n");
        let s = body_structure(&raw, true);
        let depth = nesting(&s);
        assert!(depth > 1 && depth <= MAX_DEPTH + 1, "message/rfc822 nesting {depth}");
        let w = wire(MessageDataItem::BodyStructure(s));
        assert!(w.starts_with("BODYSTRUCTURE (\"MESSAGE\" \"RFC822\""), "{}", &w[..80]);
        assert!(paren_depth(&w) <= 4 * (MAX_DEPTH + 1));
    }

    #[test]
    fn whole_header_and_text_sections() {
        assert_eq!(section(MIXED, None), MIXED.to_vec());
        let header = sec(MIXED, Section::Header(None));
        assert!(header.starts_with("From: a@example.org\r\n") && header.ends_with("\"XX\"\r\n\r\n"));
        let text = sec(MIXED, Section::Text(None));
        assert!(text.starts_with("preamble\r\n--XX") && text.ends_with("--XX--\r\nepilogue\r\n"));
        assert_eq!(header.len() + text.len(), MIXED.len());
    }

    #[test]
    fn numbered_parts() {
        assert_eq!(sec(MIXED, Section::Part(part(&[1]))), "caf=C3=A9\r\nsecond line");
        assert_eq!(
            sec(MIXED, Section::Mime(part(&[1]))),
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        );
        let two = sec(MIXED, Section::Part(part(&[2])));
        assert!(two.starts_with("From: b@example.org\r\n") && two.ends_with("--YY--\r\n"), "{two:?}");
        assert_eq!(
            sec(MIXED, Section::Header(Some(part(&[2])))),
            "From: b@example.org\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n"
        );
        let text = sec(MIXED, Section::Text(Some(part(&[2]))));
        assert!(text.starts_with("--YY\r\n") && text.ends_with("--YY--\r\n"), "{text:?}");
        assert_eq!(sec(MIXED, Section::Part(part(&[2, 1]))), "inner plain");
        assert_eq!(sec(MIXED, Section::Part(part(&[2, 2]))), "<p>inner</p>");
        assert_eq!(sec(MIXED, Section::Mime(part(&[2, 2]))), "Content-Type: text/html\r\n\r\n");
        assert_eq!(sec(MIXED, Section::Part(part(&[3]))), "JVBERi0=");
        // Parts that do not exist, and HEADER/TEXT of parts that are not messages.
        for p in [&[4][..], &[1, 1], &[2, 3], &[3, 1], &[2, 1, 1]] {
            assert_eq!(sec(MIXED, Section::Part(part(p))), "", "{p:?}");
        }
        assert_eq!(sec(MIXED, Section::Header(Some(part(&[1])))), "");
        assert_eq!(sec(MIXED, Section::Text(Some(part(&[3])))), "");
    }

    #[test]
    fn text_of_an_encapsulated_multipart_keeps_its_epilogue() {
        let raw = b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n\
Content-Type: message/rfc822\r\n\r\n\
Subject: inner\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n\
inner preamble\r\n--YY\r\n\r\nplain\r\n--YY--\r\ninner epilogue\r\n\
\r\n--XX--\r\n";
        let text = sec(raw, Section::Text(Some(part(&[1]))));
        assert_eq!(text, "inner preamble\r\n--YY\r\n\r\nplain\r\n--YY--\r\ninner epilogue\r\n");
        let whole = sec(raw, Section::Part(part(&[1])));
        assert!(whole.ends_with("--YY--\r\ninner epilogue\r\n"), "{whole:?}");
        // The same, as the only part of a message inside a message.
        let raw = b"Content-Type: message/rfc822\r\n\r\n\
Subject: inner\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n\
--YY\r\n\r\nplain\r\n--YY--\r\ninner epilogue\r\n";
        assert_eq!(sec(raw, Section::Text(Some(part(&[1])))), "--YY\r\n\r\nplain\r\n--YY--\r\ninner epilogue\r\n");
        assert!(sec(raw, Section::Part(part(&[1]))).ends_with("--YY--\r\ninner epilogue\r\n"));
        let raw = b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n\
Content-Type: multipart/alternative; boundary=YY\r\n\r\n\
--YY\r\n\r\nplain\r\n--YY--\r\nnested epilogue\r\n--XX--\r\nouter epilogue\r\n";
        assert_eq!(sec(raw, Section::Part(part(&[1]))), "--YY\r\n\r\nplain\r\n--YY--\r\nnested epilogue");
        let text = sec(raw, Section::Text(None));
        assert!(text.ends_with("--XX--\r\nouter epilogue\r\n"), "{text:?}");
    }

    #[test]
    fn groups_with_comments_and_source_routes() {
        // RFC 5322 §3.4: a group with only a comment (CFWS) is empty.
        let e = env(b"To: undisclosed-recipients: (none);\r\nFrom: a@b.example\r\n\r\n");
        assert!(e.contains("((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"), "{e}");
        // RFC 5322 §4.4 obs-route: the route goes to the adl, not the mailbox.
        let e = env(b"From: Joe <@relay.example,@hub.example:joe@b.example>\r\n\r\n");
        assert!(e.contains("((\"Joe\" \"@relay.example,@hub.example\" \"joe\" \"b.example\"))"), "{e}");
    }

    #[test]
    fn part_one_of_a_single_part_message_is_its_body() {
        assert_eq!(sec(SIMPLE, Section::Part(part(&[1]))), "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n");
        assert_eq!(sec(SIMPLE, Section::Part(part(&[2]))), "");
        assert_eq!(sec(SIMPLE, Section::Part(part(&[1, 1]))), "");
        let raw = b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n";
        assert_eq!(sec(raw, Section::Part(part(&[1]))), "Subject: inner\r\n\r\nhi\r\n");
        assert_eq!(sec(raw, Section::Header(Some(part(&[1])))), "Subject: inner\r\n\r\n");
        assert_eq!(sec(raw, Section::Part(part(&[1, 1]))), "hi\r\n");
        let e = wire(MessageDataItem::Body(body_structure(raw, false)));
        assert!(e.starts_with("BODY (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 22 (NIL \"inner\""), "{e}");
    }

    #[test]
    fn header_fields_and_not() {
        let fields = Section::HeaderFields(None, names(&["subject", "FROM", "x-absent"]));
        assert_eq!(sec(MIXED, fields), "From: a@example.org\r\nSubject: parts\r\n\r\n");
        let not = Section::HeaderFieldsNot(None, names(&["Content-Type", "from"]));
        assert_eq!(sec(MIXED, not), "Subject: parts\r\n\r\n");
        let folded = b"To: a@x,\r\n  b@x\r\nSubject : spaced\r\nX-A: 1\r\n\r\nbody";
        let fields = Section::HeaderFields(None, names(&["to", "subject"]));
        assert_eq!(sec(folded, fields), "To: a@x,\r\n  b@x\r\nSubject : spaced\r\n\r\n");
        let inner = Section::HeaderFields(Some(part(&[2])), names(&["subject"]));
        assert_eq!(sec(MIXED, inner), "Subject: inner\r\n\r\n");
        let none = Section::HeaderFields(None, names(&["x-absent"]));
        assert_eq!(sec(MIXED, none), "\r\n");
        // No blank line and no body: the fields still end with one.
        let fields = Section::HeaderFields(None, names(&["subject"]));
        assert_eq!(sec(b"Subject: only", fields), "Subject: only\r\n");
    }

    #[test]
    fn headerless_message_sections() {
        let raw = b"hello\r\nworld\r\n";
        assert_eq!(sec(raw, Section::Header(None)), "");
        assert_eq!(sec(raw, Section::Text(None)), "hello\r\nworld\r\n");
        assert_eq!(sec(raw, Section::Part(part(&[1]))), "hello\r\nworld\r\n");
        assert_eq!(sec(raw, Section::Part(part(&[2]))), "");
        assert_eq!(section(b"", None), b"");
    }

    #[test]
    fn lf_only_messages_keep_their_bytes() {
        let raw = b"Subject: lf\nContent-Type: multipart/mixed; boundary=L\n\n--L\n\none\n--L--\n";
        assert_eq!(sec(raw, Section::Header(None)), "Subject: lf\nContent-Type: multipart/mixed; boundary=L\n\n");
        assert_eq!(sec(raw, Section::Part(part(&[1]))), "one");
    }

    #[test]
    fn partial_ranges() {
        let n = |v| NonZeroU32::new(v).unwrap();
        assert_eq!(partial(b"0123456789", None), b"0123456789");
        assert_eq!(partial(b"0123456789", Some((0, n(3)))), b"012");
        assert_eq!(partial(b"0123456789", Some((8, n(5)))), b"89");
        assert_eq!(partial(b"0123456789", Some((10, n(1)))), b"");
        assert_eq!(partial(b"0123456789", Some((u32::MAX, n(u32::MAX)))), b"");
        assert_eq!(partial(b"", Some((0, n(1)))), b"");
    }

    #[test]
    fn the_fast_path_gives_the_same_bytes_as_the_parse() {
        use imap_codec::imap_types::core::AString;
        let names =
            || Vec1::try_from(vec![AString::try_from("subject").unwrap(), AString::try_from("To").unwrap()]).unwrap();
        let sections = [
            None,
            Some(Section::Header(None)),
            Some(Section::HeaderFields(None, names())),
            Some(Section::HeaderFieldsNot(None, names())),
            Some(Section::Text(None)),
        ];
        let messages: [&[u8]; 4] = [
            b"From: a@b\r\nSubject: hi\r\n folded\r\nTo: c@d\r\n\r\nbody\r\n.\r\n",
            b"Subject: x\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\none\r\n--zz--\r\n",
            b"\r\nno header at all\r\n",
            b"X: only\r\n\r\n",
        ];
        for raw in messages {
            for sec in &sections {
                let fast = top_level_section(raw, sec.as_ref()).expect("fast path");
                assert_eq!(fast, section(raw, sec.as_ref()), "{:?} {sec:?}", String::from_utf8_lossy(raw));
            }
        }
        assert!(top_level_section(b"no blank line", Some(&Section::Header(None))).is_none());
    }

    /// A message list reads only the header from storage (`Part::Header`:
    /// up to CRLF CRLF, else everything): ENVELOPE and the header sections
    /// cut from it must be those of the whole message.
    #[test]
    fn header_items_from_the_header_alone_match_the_whole_message() {
        use imap_codec::imap_types::core::AString;
        let names =
            || Vec1::try_from(vec![AString::try_from("subject").unwrap(), AString::try_from("From").unwrap()]).unwrap();
        let messages: [&[u8]; 6] = [
            SIMPLE,
            MIXED,
            b"From: a@b\r\nSubject: hi\r\n folded\r\nTo: c@d\r\n\r\nbody\r\n",
            b"\r\nno header at all\r\n",
            b"Subject: no blank line\r\nFrom: x@y\r\n",
            b"Subject: lf only\nFrom: x@y\n\nbody\n",
        ];
        for raw in messages {
            let header = if raw.starts_with(b"\r\n") {
                &raw[..2]
            } else {
                raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw, |i| &raw[..i + 4])
            };
            let shown = String::from_utf8_lossy(raw);
            assert_eq!(env(header), env(raw), "{shown}");
            for sec in
                [Section::Header(None), Section::HeaderFields(None, names()), Section::HeaderFieldsNot(None, names())]
            {
                assert_eq!(section(header, Some(&sec)), section(raw, Some(&sec)), "{shown} {sec:?}");
            }
        }
    }

    #[test]
    fn binary_undoes_the_transfer_encoding_only() {
        let m = Mime::parse(MIXED);
        let n = |path: &[u32]| path.iter().map(|&x| NonZeroU32::new(x).unwrap()).collect::<Vec<_>>();
        assert_eq!(m.binary(&[]).unwrap(), MIXED, "BINARY[] is the message as stored");
        // Quoted-printable UTF-8 text: octets decoded, charset left alone
        // (the CRLF before a boundary belongs to the boundary).
        assert_eq!(m.binary(&n(&[1])).unwrap(), "caf\u{e9}\r\nsecond line".as_bytes());
        assert_eq!(m.binary(&n(&[3])).unwrap(), b"%PDF-", "base64");
        // A message/rfc822 part has an identity encoding: as stored.
        assert_eq!(m.binary(&n(&[2])).unwrap(), Mime::parse(MIXED).section(Some(&Section::Part(part(&[2])))));
        assert_eq!(m.binary(&n(&[9])).unwrap(), b"", "a part that does not exist is empty");
        let odd =
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n";
        assert!(Mime::parse(odd).binary(&n(&[1])).unwrap_err().0.contains("x-uuencode"));
        let bad = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na==b\r\n";
        assert!(Mime::parse(bad).binary(&n(&[1])).is_err(), "undecodable");
        let headerless = b"\r\nno header at all\r\n";
        let body_one = Mime::parse(headerless).section(Some(&Section::Part(part(&[1]))));
        assert_eq!(Mime::parse(headerless).binary(&n(&[1])).unwrap(), body_one, "as BODY[1]");
    }
}
