//! The header section of a message: where it ends, and its fields.
//!
//! Only the header section is ever read. [`header_section`] cuts it off at
//! the first empty line; mail-parser then sees that slice alone and splits
//! it into fields, so no byte of the body reaches a parser.

use std::borrow::Cow;
use std::sync::LazyLock;

use mail_parser::{HeaderName, HeaderValue, MessageParser};

/// The header section of `message`: every byte before the first empty line,
/// including the line break that ends the last field; the empty line and the
/// body are left out.
///
/// RFC 5322 §2.1: the header section is separated from the body by an empty
/// line, CRLF CRLF. A line ending in a bare LF is accepted too (a message
/// stored or relayed with LF-only lines, or written by a local tool), so
/// LF LF and LF CRLF end the section as well. A message that starts with an
/// empty line has an empty header section; a message without any empty line
/// is all header section, read as far as it goes.
pub fn header_section(message: &[u8]) -> &[u8] {
    let mut line_start = 0;
    loop {
        let rest = &message[line_start..];
        if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return &message[..line_start];
        }
        match rest.iter().position(|&byte| byte == b'\n') {
            Some(end) => line_start += end + 1,
            None => return message,
        }
    }
}

/// The report types of a top-level multipart/report (RFC 6522 §3) that make
/// a message a notification about other mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportType {
    /// RFC 3464: a delivery status notification.
    DeliveryStatus,
    /// RFC 8098: a message disposition notification (read receipt).
    DispositionNotification,
}

impl ReportType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReportType::DeliveryStatus => "delivery-status",
            ReportType::DispositionNotification => "disposition-notification",
        }
    }
}

/// One header field: its name as written (known names in their canonical
/// spelling) and its value unfolded and trimmed.
#[derive(Debug)]
struct Field<'a> {
    name: Cow<'a, str>,
    value: Cow<'a, str>,
}

/// The fields of a header section, in order.
#[derive(Debug, Default)]
pub(crate) struct Headers<'a> {
    fields: Vec<Field<'a>>,
    report: Option<ReportType>,
}

/// Every field is kept raw except Content-Type, which mail-parser parses for
/// its type, subtype and parameters (RFC 2045 §5.1).
static PARSER: LazyLock<MessageParser> =
    LazyLock::new(|| MessageParser::new().default_header_raw().header_content_type(HeaderName::ContentType));

impl<'a> Headers<'a> {
    /// Reads the header section of `message`. Never fails: malformed lines
    /// are skipped by the field splitter, bytes that are not UTF-8 become
    /// U+FFFD, and a message with no readable field has no fields.
    pub(crate) fn parse(message: &'a [u8]) -> Headers<'a> {
        let section = header_section(message);
        let Some(parsed) = PARSER.parse_headers(section) else {
            return Headers::default();
        };
        let mut headers = Headers::default();
        let mut seen_content_type = false;
        for header in parsed.headers() {
            let name = match &header.name {
                HeaderName::Other(name) => name.clone(),
                known => Cow::Borrowed(known.as_static_str()),
            };
            let raw = section.get(header.offset_start as usize..header.offset_end as usize).unwrap_or_default();
            if header.name == HeaderName::ContentType && !seen_content_type {
                seen_content_type = true;
                headers.report = report_type(&header.value);
            }
            headers.fields.push(Field { name, value: unfold(raw) });
        }
        headers
    }

    /// Whether a field named `name` (case-insensitive, RFC 5322 §1.2.2: ABNF
    /// literals are case-insensitive) is present, whatever its value.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    /// The unfolded, trimmed values of every field named `name`, in order.
    pub(crate) fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.fields.iter().filter(move |field| field.name.eq_ignore_ascii_case(name)).map(|field| &*field.value)
    }

    /// The report type, when the first Content-Type field of the section is
    /// a multipart/report of a type in [`ReportType`].
    pub(crate) fn report(&self) -> Option<ReportType> {
        self.report
    }
}

/// RFC 6522 §3: `Content-Type: multipart/report; report-type=...`. Type,
/// subtype, parameter name and value are all case-insensitive (RFC 2045 §5.1).
fn report_type(value: &HeaderValue<'_>) -> Option<ReportType> {
    let HeaderValue::ContentType(content_type) = value else {
        return None;
    };
    let is_report = content_type.ctype().eq_ignore_ascii_case("multipart")
        && content_type.subtype().is_some_and(|subtype| subtype.eq_ignore_ascii_case("report"));
    if !is_report {
        return None;
    }
    let report_type = content_type
        .attributes()
        .unwrap_or_default()
        .iter()
        .find(|attribute| attribute.name.eq_ignore_ascii_case("report-type"))?;
    [ReportType::DeliveryStatus, ReportType::DispositionNotification]
        .into_iter()
        .find(|known| report_type.value.eq_ignore_ascii_case(known.as_str()))
}

/// RFC 5322 §2.2.3: unfolding removes each line break that is followed by
/// white space. The field splitter ends a value at the first line break that
/// is not, so every CR and LF left inside `raw` belongs to a fold (or is a
/// stray CR) and is removed; the result is trimmed of ASCII white space.
fn unfold(raw: &[u8]) -> Cow<'_, str> {
    match String::from_utf8_lossy(raw) {
        Cow::Borrowed(text) if !text.contains(['\r', '\n']) => Cow::Borrowed(text.trim_ascii()),
        text => {
            let joined: String = text.chars().filter(|&c| c != '\r' && c != '\n').collect();
            Cow::Owned(joined.trim_ascii().to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_ends_at_first_empty_line() {
        assert_eq!(header_section(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_section(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n");
        assert_eq!(header_section(b"A: 1\n\r\nbody"), b"A: 1\n");
        assert_eq!(header_section(b"\r\nbody"), b"");
        assert_eq!(header_section(b"\nbody"), b"");
        assert_eq!(header_section(b""), b"");
    }

    #[test]
    fn section_without_empty_line_is_everything() {
        assert_eq!(header_section(b"A: 1\r\nB: 2\r\n"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_section(b"A: 1\r\nB: 2"), b"A: 1\r\nB: 2");
        // A line of blanks is a fold (RFC 5322 §4.2 obs-FWS), not the end.
        assert_eq!(header_section(b"A: 1\r\n \r\nB: 2\r\n"), b"A: 1\r\n \r\nB: 2\r\n");
        // A CR alone does not end a line.
        assert_eq!(header_section(b"A: 1\r\r\nB"), b"A: 1\r\r\nB");
    }

    #[test]
    fn unfolding() {
        assert_eq!(unfold(b" plain\r\n"), "plain");
        assert_eq!(unfold(b" one\r\n two\r\n\tthree\r\n"), "one two\tthree");
        assert_eq!(unfold(b" lf\n only\n"), "lf only");
        assert_eq!(unfold(b" caf\xe9\r\n"), "caf\u{fffd}");
        assert_eq!(unfold(b""), "");
    }

    #[test]
    fn fields_and_values() {
        let message = b"Subject: hello\r\nX-Tag: one\r\nx-tag:  two \r\n\r\nX-Tag: body\r\n";
        let headers = Headers::parse(message);
        assert!(headers.has("subject"));
        assert!(headers.has("X-TAG"));
        assert!(!headers.has("List-Id"));
        assert_eq!(headers.values("x-tag").collect::<Vec<_>>(), ["one", "two"]);
    }

    #[test]
    fn report_types() {
        let dsn = b"Content-Type: Multipart/Report; Report-Type=\"Delivery-Status\";\r\n boundary=x\r\n\r\n";
        assert_eq!(Headers::parse(dsn).report(), Some(ReportType::DeliveryStatus));
        let mdn = b"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n\r\n";
        assert_eq!(Headers::parse(mdn).report(), Some(ReportType::DispositionNotification));
        let other = b"Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n\r\n";
        assert_eq!(Headers::parse(other).report(), None);
        let mixed = b"Content-Type: multipart/mixed; report-type=delivery-status; boundary=x\r\n\r\n";
        assert_eq!(Headers::parse(mixed).report(), None);
        let bare = b"Content-Type: multipart/report; boundary=x\r\n\r\n";
        assert_eq!(Headers::parse(bare).report(), None);
    }

    #[test]
    fn only_the_first_content_type_counts() {
        let message = b"Content-Type: text/plain\r\n\
            Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n";
        assert_eq!(Headers::parse(message).report(), None);
    }
}
