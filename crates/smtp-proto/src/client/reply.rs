//! Reply framing for the client side (RFC 5321 §4.2).
//!
//! [`ReplyReader`] takes the server's bytes as they arrive and returns whole
//! replies. It frames lines first (with the length limit enforced while the
//! line is still arriving), then parses each line. After an error the rest
//! of the offending reply is eaten, so its lines are never read as the next
//! reply; the reply sequence is lost all the same, and the caller should
//! close the connection.

use crate::reply::Reply;

/// Octets per reply line, line ending included. RFC 5321 §4.5.3.1.5 sets
/// 512; we accept eight times that from servers, since §4.5.3.1 asks for
/// "no limits" wherever possible (see `docs/quirks.md`).
pub const MAX_REPLY_LINE: usize = 4096;
/// Lines per reply (RFC 5321 sets no limit; 1000 is far above any EHLO).
pub const MAX_REPLY_LINES: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Not an RFC 5321 §4.2 reply line, or a multi-line reply whose lines
    /// carry different codes. The text describes the fault (with at most a
    /// short, escaped excerpt of the line).
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// A line over [`MAX_REPLY_LINE`] octets, or a reply over
    /// [`MAX_REPLY_LINES`] lines.
    #[error("reply too long")]
    TooLong,
}

/// Incremental reply framer and parser. Feed it bytes with
/// [`ReplyReader::feed`], then call [`ReplyReader::next_reply`] until it
/// returns `Ok(None)`.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    /// First unread byte of `buf`.
    start: usize,
    /// Bytes before this index (and after `start`) hold no LF: the search
    /// resumes here, so feeding one byte at a time stays linear.
    scanned: usize,
    /// The reply being read, after its first line(s).
    partial: Option<Partial>,
    skip: Skip,
}

#[derive(Debug)]
struct Partial {
    code: u16,
    enhanced: Option<(u8, u16, u16)>,
    lines: Vec<String>,
}

/// What remains to be eaten after an error.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Skip {
    #[default]
    Nothing,
    /// The rest of an over-long line; then, if that line was a continuation
    /// line, the rest of its reply.
    RestOfLine { then_reply: bool },
    /// Lines up to and including the next one that is not a continuation.
    RestOfReply,
}

impl ReplyReader {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    ///
    /// Multi-line replies (`250-...` lines, then `250 ...`) are joined; all
    /// lines must carry the same code. An enhanced status code (RFC 3463) on
    /// the first line goes to [`Reply::enhanced`] and is stripped from every
    /// line that repeats it. Lines may end in CRLF or, leniently (see
    /// `docs/quirks.md`), in a bare LF.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        let result = self.read();
        self.compact();
        result
    }

    /// Bytes fed but not yet part of a returned reply.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn read(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let from = self.scanned.max(self.start);
            let Some(lf) = self.buf[from..].iter().position(|&b| b == b'\n').map(|i| from + i) else {
                self.scanned = self.buf.len();
                return self.incomplete_line();
            };
            let line_start = self.start;
            self.start = lf + 1;
            self.scanned = self.start;
            let mut line = &self.buf[line_start..lf];
            // RFC 5321 §2.3.8: lines end in CRLF; a bare LF is taken too.
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let continuation = is_continuation(line);
            match self.skip {
                Skip::Nothing => {}
                Skip::RestOfLine { then_reply } => {
                    self.skip = if then_reply { Skip::RestOfReply } else { Skip::Nothing };
                    continue;
                }
                Skip::RestOfReply => {
                    if !continuation {
                        self.skip = Skip::Nothing;
                    }
                    continue;
                }
            }
            let outcome = if lf + 1 - line_start > MAX_REPLY_LINE {
                Err(ReplyError::TooLong)
            } else {
                take_line(&mut self.partial, line)
            };
            match outcome {
                Ok(Some(reply)) => return Ok(Some(reply)),
                Ok(None) => continue,
                Err(e) => {
                    self.partial = None;
                    if continuation {
                        self.skip = Skip::RestOfReply;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// No LF in the buffer: either wait, or (over the limit) fail and eat
    /// the line as it arrives.
    fn incomplete_line(&mut self) -> Result<Option<Reply>, ReplyError> {
        let pending = &self.buf[self.start..];
        if let Skip::RestOfLine { .. } = self.skip {
            self.start = self.buf.len();
            return Ok(None);
        }
        // A line that cannot end within the limit (it still needs its LF).
        if pending.len() >= MAX_REPLY_LINE {
            let then_reply = is_continuation(pending);
            self.start = self.buf.len();
            // Already eating a reply: keep eating, report nothing new.
            let report = self.skip == Skip::Nothing;
            self.skip = Skip::RestOfLine { then_reply };
            if report {
                self.partial = None;
                return Err(ReplyError::TooLong);
            }
        }
        Ok(None)
    }

    /// Drops consumed bytes once they are at least half the buffer, so the
    /// copying stays linear overall.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
        } else if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
        } else {
            return;
        }
        self.scanned = self.scanned.saturating_sub(self.start);
        self.start = 0;
    }
}

/// Parses one line (without its line ending); returns the reply when the
/// line was its last.
fn take_line(partial_slot: &mut Option<Partial>, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
    // RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39
    let code = match line {
        [a @ b'2'..=b'5', b @ b'0'..=b'5', c @ b'0'..=b'9', ..] => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(malformed("reply code is not three digits (2-5, 0-5, 0-9)", line)),
    };
    // RFC 5321 §4.2: "code-text" on every line but the last, "code text"
    // or the bare code on the last.
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed("reply code not followed by space or hyphen", line)),
    };
    let text = clean_text(text);
    let partial = match partial_slot.take() {
        None => {
            let (enhanced, text) = match split_enhanced(&text, code) {
                Some((enhanced, rest)) => (Some(enhanced), rest.to_owned()),
                None => (None, text),
            };
            Partial { code, enhanced, lines: vec![text] }
        }
        Some(mut partial) => {
            if partial.code != code {
                return Err(malformed("lines of one reply carry different codes", line));
            }
            if partial.lines.len() >= MAX_REPLY_LINES {
                return Err(ReplyError::TooLong);
            }
            // RFC 2034 §4: the enhanced code is repeated on each line.
            let text = match split_enhanced(&text, code) {
                Some((enhanced, rest)) if Some(enhanced) == partial.enhanced => rest.to_owned(),
                _ => text,
            };
            partial.lines.push(text);
            partial
        }
    };
    if last {
        return Ok(Some(Reply { code: partial.code, enhanced: partial.enhanced, lines: partial.lines }));
    }
    *partial_slot = Some(partial);
    Ok(None)
}

/// `ddd-`: more lines of this reply follow.
fn is_continuation(line: &[u8]) -> bool {
    line.get(3) == Some(&b'-')
}

/// Reply text as a `String`: invalid UTF-8 is replaced (RFC 6531 servers may
/// send UTF-8; anything else is noise), and control characters other than
/// HT become spaces, so a reply never injects a line into a log or a DSN.
fn clean_text(text: &[u8]) -> String {
    String::from_utf8_lossy(text).chars().map(|c| if c.is_control() && c != '\t' { ' ' } else { c }).collect()
}

/// RFC 3463 §2: `class "." subject "." detail`, class 2, 4 or 5, subject and
/// detail 1 to 3 digits, followed by a space or the end of the line. Taken
/// only when the class matches the reply code's first digit (RFC 2034 §4);
/// otherwise the text is left as it is.
fn split_enhanced(text: &str, code: u16) -> Option<((u8, u16, u16), &str)> {
    let (token, rest) = match text.split_once(' ') {
        Some((token, rest)) => (token, rest),
        None => (text, ""),
    };
    let mut parts = token.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let number = |s: &str| -> Option<u16> {
        ((1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let class: u8 = match class {
        "2" | "4" | "5" => class.parse().ok()?,
        _ => return None,
    };
    if u16::from(class) != code / 100 {
        return None;
    }
    Some(((class, number(subject)?, number(detail)?), rest))
}

fn malformed(why: &str, line: &[u8]) -> ReplyError {
    const EXCERPT: usize = 40;
    let excerpt = &line[..line.len().min(EXCERPT)];
    ReplyError::Malformed(format!("{why}: \"{}\"", excerpt.escape_ascii()))
}
