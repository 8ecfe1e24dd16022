//! The third part of the report: the original message, or its header section
//! (RFC 3461 §4.3 RET, RFC 3464 §2, RFC 6522).

use std::borrow::Cow;

use crate::ReturnContent;

/// Without a RET parameter, an original up to this size is returned whole;
/// a larger one only by its header section.
pub const DEFAULT_FULL_RETURN_LIMIT: usize = 256 * 1024;

/// RFC 5322 §2.1.1 and RFC 2045 §2.7/§2.8: a line of 7bit or 8bit data has
/// at most 998 octets before its CRLF.
const MAX_LINE: usize = 998;

/// Why only the header section is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadersOnly {
    /// The sender asked for it (RET=HDRS).
    Requested,
    /// No RET, and the original was larger than [`DEFAULT_FULL_RETURN_LIMIT`].
    TooLarge,
    /// RET=FULL, but the original cannot travel as 7bit or 8bit MIME content
    /// (it holds a NUL or a line longer than 998 octets), and facteur does not
    /// send BINARYMIME.
    NotMimeSafe,
}

/// What the third part carries.
#[derive(Debug)]
pub(crate) struct Returned<'a> {
    /// `None`: the whole message (message/rfc822); `Some`: its header section
    /// only (text/rfc822-headers), and why.
    pub headers_only: Option<HeadersOnly>,
    /// The bytes to attach as they are, CRLF line ends.
    pub body: Cow<'a, [u8]>,
    /// `7bit`, or `8bit` when the bytes hold any octet above 127 (RFC 2045
    /// §2.7, §2.8). Such an original is attached as it is, not re-encoded:
    /// message/rfc822 allows no other encoding (RFC 2046 §5.2.1), so the DSN
    /// then needs 8BITMIME to travel, as the original did.
    pub encoding: &'static str,
}

impl Returned<'_> {
    pub(crate) fn content_type(&self) -> &'static str {
        if self.headers_only.is_some() { "text/rfc822-headers" } else { "message/rfc822" }
    }
}

/// Chooses what to return and prepares its bytes.
pub(crate) fn prepare(original: &[u8], wanted: Option<ReturnContent>) -> Returned<'_> {
    let small = original.len() <= DEFAULT_FULL_RETURN_LIMIT;
    let headers_only = match wanted {
        Some(ReturnContent::Headers) => HeadersOnly::Requested,
        None if !small => HeadersOnly::TooLarge,
        Some(ReturnContent::Full) | None => {
            let body = crlf_line_ends(original);
            if mime_safe(&body) {
                let encoding = encoding_of(&body);
                return Returned { headers_only: None, body, encoding };
            }
            HeadersOnly::NotMimeSafe
        }
    };
    let body = Cow::Owned(safe_headers(&crlf_line_ends(header_section(original))));
    let encoding = encoding_of(&body);
    Returned { headers_only: Some(headers_only), body, encoding }
}

/// The header section: every line before the first empty line, with its line
/// end, without the empty line. A message without an empty line is all header.
fn header_section(message: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < message.len() {
        let end = message[start..].iter().position(|&b| b == b'\n').map_or(message.len(), |at| start + at + 1);
        let line = &message[start..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            return &message[..start];
        }
        start = end;
    }
    message
}

/// Every line end as CRLF: a bare LF or a bare CR becomes CRLF (RFC 5322
/// §2.3, RFC 5321 §2.3.8), so the DSN is valid SMTP DATA whatever was stored.
/// Borrowed when nothing changes.
fn crlf_line_ends(bytes: &[u8]) -> Cow<'_, [u8]> {
    let clean = bytes.iter().enumerate().all(|(at, &b)| match b {
        b'\r' => bytes.get(at + 1) == Some(&b'\n'),
        b'\n' => at > 0 && bytes[at - 1] == b'\r',
        _ => true,
    });
    if clean {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\r' if bytes.get(at + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                at += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                at += 1;
            }
            b => {
                out.push(b);
                at += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// RFC 2045 §2.7/§2.8: no NUL and no line over 998 octets (line ends are
/// already CRLF).
fn mime_safe(bytes: &[u8]) -> bool {
    !bytes.contains(&0)
        && bytes.split(|&b| b == b'\n').all(|line| line.strip_suffix(b"\r").unwrap_or(line).len() <= MAX_LINE)
}

/// A header section that is always MIME-safe: a NUL becomes a space, and a
/// line over 998 octets is folded (CRLF SP inserted, RFC 5322 §2.2.3), which
/// keeps it a valid header line.
fn safe_headers(headers: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() + 8);
    let mut column = 0;
    for &b in headers {
        if b == b'\n' {
            column = 0;
            out.push(b);
            continue;
        }
        if column >= MAX_LINE - 1 && b != b'\r' {
            out.extend_from_slice(b"\r\n ");
            column = 1;
        }
        out.push(if b == 0 { b' ' } else { b });
        column += 1;
    }
    out
}

fn encoding_of(bytes: &[u8]) -> &'static str {
    if bytes.is_ascii() { "7bit" } else { "8bit" }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"From: a@b\r\nSubject: hi\r\n\r\nbody\r\n\r\nmore\r\n";

    /// A message of exactly `size` octets, in short CRLF lines.
    fn message_of_size(size: usize) -> Vec<u8> {
        let mut message = b"From: a@b\r\n\r\n".to_vec();
        while message.len() < size {
            let line = [&[b'x'; 70][..(size - message.len()).min(70)], b"\r\n"].concat();
            message.extend_from_slice(&line[..line.len().min(size - message.len())]);
        }
        message
    }

    #[test]
    fn header_section_stops_at_the_empty_line() {
        assert_eq!(header_section(MESSAGE), b"From: a@b\r\nSubject: hi\r\n");
        assert_eq!(header_section(b"From: a@b\nSubject: hi\n\nbody\n"), b"From: a@b\nSubject: hi\n");
        assert_eq!(header_section(b"From: a@b\r\n"), b"From: a@b\r\n");
        assert_eq!(header_section(b"From: a@b"), b"From: a@b");
        assert_eq!(header_section(b"\r\nbody"), b"");
        assert_eq!(header_section(b""), b"");
    }

    #[test]
    fn line_ends_become_crlf() {
        assert!(matches!(crlf_line_ends(MESSAGE), Cow::Borrowed(_)));
        assert_eq!(&*crlf_line_ends(b"a\nb\rc\r\nd\n\re"), b"a\r\nb\r\nc\r\nd\r\n\r\ne");
        assert_eq!(&*crlf_line_ends(b"\n"), b"\r\n");
        assert_eq!(&*crlf_line_ends(b"\r"), b"\r\n");
    }

    #[test]
    fn default_is_by_size() {
        let small = prepare(MESSAGE, None);
        assert_eq!(small.headers_only, None);
        assert_eq!(&*small.body, MESSAGE);
        assert_eq!(small.content_type(), "message/rfc822");

        let mut large = b"From: a@b\r\n\r\n".to_vec();
        large.resize(DEFAULT_FULL_RETURN_LIMIT + 1, b'x');
        let returned = prepare(&large, None);
        assert_eq!(returned.headers_only, Some(HeadersOnly::TooLarge));
        assert_eq!(&*returned.body, b"From: a@b\r\n");
        assert_eq!(returned.content_type(), "text/rfc822-headers");

        let exact = message_of_size(DEFAULT_FULL_RETURN_LIMIT);
        assert_eq!(exact.len(), DEFAULT_FULL_RETURN_LIMIT);
        assert_eq!(prepare(&exact, None).headers_only, None);
        let over = message_of_size(DEFAULT_FULL_RETURN_LIMIT + 1);
        assert_eq!(prepare(&over, None).headers_only, Some(HeadersOnly::TooLarge));
    }

    #[test]
    fn explicit_choice_wins() {
        assert_eq!(prepare(MESSAGE, Some(ReturnContent::Headers)).headers_only, Some(HeadersOnly::Requested));
        let mut large = b"From: a@b\r\n\r\n".to_vec();
        large.resize(DEFAULT_FULL_RETURN_LIMIT * 2, b'x');
        assert_eq!(prepare(&large, Some(ReturnContent::Headers)).headers_only, Some(HeadersOnly::Requested));
        let mut large_lines = Vec::new();
        for chunk in large.chunks(500) {
            large_lines.extend_from_slice(chunk);
            large_lines.extend_from_slice(b"\r\n");
        }
        assert_eq!(prepare(&large_lines, Some(ReturnContent::Full)).headers_only, None);
    }

    #[test]
    fn eight_bit_is_kept_and_labelled() {
        let message = "From: a@b\r\nSubject: café\r\n\r\nçà\r\n".as_bytes();
        let full = prepare(message, Some(ReturnContent::Full));
        assert_eq!(full.encoding, "8bit");
        assert_eq!(&*full.body, message);
        assert_eq!(prepare(MESSAGE, Some(ReturnContent::Full)).encoding, "7bit");
        assert_eq!(prepare(message, Some(ReturnContent::Headers)).encoding, "8bit");
    }

    #[test]
    fn unsafe_original_falls_back_to_headers() {
        let nul = b"From: a@b\r\n\r\nbin\0ary\r\n";
        let returned = prepare(nul, Some(ReturnContent::Full));
        assert_eq!(returned.headers_only, Some(HeadersOnly::NotMimeSafe));
        assert_eq!(&*returned.body, b"From: a@b\r\n");

        let long = [b"From: a@b\r\n\r\n".as_slice(), &[b'y'; 999], b"\r\n"].concat();
        assert_eq!(prepare(&long, Some(ReturnContent::Full)).headers_only, Some(HeadersOnly::NotMimeSafe));
        let fits = [b"From: a@b\r\n\r\n".as_slice(), &[b'y'; 998], b"\r\n"].concat();
        assert_eq!(prepare(&fits, Some(ReturnContent::Full)).headers_only, None);
    }

    #[test]
    fn headers_are_made_safe() {
        let long = [b"X-Long: ".as_slice(), &[b'z'; 3000], b"\r\nX-Nul: a\0b\r\n\r\nbody"].concat();
        let returned = prepare(&long, Some(ReturnContent::Headers));
        assert!(mime_safe(&returned.body));
        let text = String::from_utf8(returned.body.to_vec()).unwrap();
        assert!(text.ends_with("\r\nX-Nul: a b\r\n"));
        assert_eq!(text.replace("\r\n ", "").matches('z').count(), 3000);
    }
}
