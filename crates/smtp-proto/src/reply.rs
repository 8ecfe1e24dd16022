//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034).

use std::fmt::Write as _;

/// One SMTP reply: a three-digit code, an optional enhanced status code
/// (class.subject.detail) and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<(u8, u16, u16)>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply with an enhanced code and one line of text.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Self {
        Reply { code, enhanced: Some(enhanced), lines: vec![text.into()] }
    }

    /// A reply without an enhanced code (greeting, EHLO, 354, 334 per RFC 2034 §3).
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Reply { code, enhanced: None, lines: vec![text.into()] }
    }

    /// The status as one short label: the enhanced code (`5.7.1`) when
    /// the reply has one, else the basic code (`451`).
    pub fn status(&self) -> String {
        match self.enhanced {
            Some((c, s, d)) => format!("{c}.{s}.{d}"),
            None => self.code.to_string(),
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Wire form: `code-text` for every line but the last, `code text` for the
    /// last (RFC 5321 §4.2.1), the enhanced code repeated on every line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            let _ = write!(out, "{}{}", self.code, sep);
            if let Some((c, s, d)) = self.enhanced {
                let _ = write!(out, "{c}.{s}.{d} ");
            }
            // Replies never carry CR or LF inside a line.
            for ch in text.chars() {
                out.push(if ch == '\r' || ch == '\n' { ' ' } else { ch });
            }
            out.push_str("\r\n");
        }
        out.into_bytes()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.to_bytes();
        let s = String::from_utf8_lossy(&bytes);
        f.write_str(s.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_reply() {
        let r = Reply { code: 250, enhanced: None, lines: vec!["a".into(), "b".into()] };
        assert_eq!(r.to_bytes(), b"250-a\r\n250 b\r\n");
        let r = Reply::new(550, (5, 1, 1), "no such user\r\nINJECT");
        assert_eq!(r.to_bytes(), b"550 5.1.1 no such user  INJECT\r\n");
    }

    #[test]
    fn the_status_label_is_the_enhanced_code_or_the_basic_one() {
        assert_eq!(Reply::new(554, (5, 7, 1), "<x@y>: Relay access denied").status(), "5.7.1");
        let multiline = Reply { code: 501, enhanced: Some((5, 5, 4)), lines: vec!["bad".into(), "bad".into()] };
        assert_eq!(multiline.status(), "5.5.4");
        assert_eq!(Reply::plain(451, "Error: temporary failure").status(), "451");
    }
}
