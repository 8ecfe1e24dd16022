//! Framing: cut the client's byte stream into command lines, DATA content
//! and BDAT chunks before anything is parsed (RFC 5321 §2.3.8, §4.1.1.4;
//! RFC 3030 §2).
//!
//! Every byte is examined once, however the stream is split, so feeding a
//! message one byte at a time costs linear time. Limits are enforced here:
//! an over-long line or an invalid message is consumed and dropped, never
//! buffered and never read as commands.

use std::ops::Range;

/// The session's input buffer.
#[derive(Debug, Default)]
pub(crate) struct Input {
    buf: Vec<u8>,
    /// First byte not consumed yet.
    pos: usize,
    /// Bytes in `pos..scan` are known to hold no LF.
    scan: usize,
    /// An over-long line is being dropped up to its LF.
    discarding: bool,
}

/// The next command line, or why there is none.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A CRLF-terminated line; the range (CRLF excluded) indexes
    /// [`Input::get`] until the next [`Input::feed`].
    Line(Range<usize>),
    /// The line ended in LF without CR (RFC 5321 §2.3.8).
    BareLf,
    /// A CR inside the line, not followed by LF (RFC 5321 §2.3.8).
    BareCr,
    /// The line was longer than the limit; it has been dropped.
    TooLong,
    /// No complete line is buffered.
    Incomplete,
}

impl Input {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            // Only a partial line is left when the session asks for input,
            // so this moves at most one line.
            self.buf.drain(..self.pos);
            self.scan -= self.pos;
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Forgets everything buffered (RFC 3207 §4.2, after the TLS handshake).
    pub(crate) fn clear(&mut self) {
        *self = Input::default();
    }

    pub(crate) fn get(&self, range: Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or_default()
    }

    /// The unconsumed bytes.
    pub(crate) fn rest(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Marks `n` bytes of [`Input::rest`] as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        // Consumed bytes are dropped by the next `feed`, so ranges handed
        // out by `next_line` stay valid until then.
        self.pos = (self.pos + n).min(self.buf.len());
        self.scan = self.scan.max(self.pos);
    }

    /// Cuts the next line of at most `max` octets, CRLF included.
    pub(crate) fn next_line(&mut self, max: usize) -> Frame {
        let from = self.scan.min(self.buf.len());
        let found = self.buf.get(from..).and_then(|tail| tail.iter().position(|&b| b == b'\n'));
        let Some(offset) = found else {
            if self.discarding || self.buf.len() - self.pos >= max {
                // The line cannot fit any more: drop what we have and keep
                // dropping until its LF, so memory stays bounded.
                self.discarding = true;
                self.buf.truncate(self.pos);
            }
            self.scan = self.buf.len();
            return Frame::Incomplete;
        };
        let lf = from + offset;
        let start = self.pos;
        self.consume(lf + 1 - start);
        if std::mem::take(&mut self.discarding) || lf + 1 - start > max {
            return Frame::TooLong;
        }
        // RFC 5321 §2.3.8: lines end with CRLF, and CR and LF appear only
        // as that pair.
        let line = self.buf.get(start..lf).unwrap_or_default();
        let Some((&b'\r', text)) = line.split_last() else {
            return Frame::BareLf;
        };
        if text.contains(&b'\r') {
            return Frame::BareCr;
        }
        Frame::Line(start..lf - 1)
    }

    /// Consumes up to `n` bytes (a BDAT chunk) and returns them.
    pub(crate) fn take(&mut self, n: u64) -> &[u8] {
        let available = self.buf.len() - self.pos;
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(available);
        let start = self.pos;
        self.consume(n);
        self.buf.get(start..start + n).unwrap_or_default()
    }

    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Why received DATA content is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataError {
    /// A CR or LF not part of a CRLF pair (RFC 5321 §2.3.8; SMTP smuggling).
    BareCrLf,
    /// A line over the limit (RFC 5321 §4.5.3.1.6).
    LineTooLong,
    /// More than the SIZE limit (RFC 1870 §6).
    TooBig,
}

/// Where the DATA reader stands within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DotState {
    /// Right after CRLF (or right after the DATA command).
    LineStart,
    /// The line so far is ".".
    Dot,
    /// The line so far is ".\r".
    DotCr,
    /// Inside a line.
    Text,
    /// Inside a line, after a CR.
    Cr,
}

/// Receives DATA content (RFC 5321 §4.1.1.4): finds the end of data,
/// removes dot-stuffing (§4.5.2) and checks every line ending.
#[derive(Debug)]
pub(crate) struct DotReader {
    state: DotState,
    /// Octets of the current line so far, CRLF included.
    line_len: usize,
    max_line: usize,
    /// 0 means no limit.
    max_size: u64,
    data: Vec<u8>,
    error: Option<DataError>,
}

impl DotReader {
    pub(crate) fn new(max_line: usize, max_size: u64) -> DotReader {
        DotReader { state: DotState::LineStart, line_len: 0, max_line, max_size, data: Vec::new(), error: None }
    }

    /// Reads `input`; returns how many bytes were consumed and whether the
    /// end of data was reached (then the bytes after it were not consumed).
    pub(crate) fn push(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            if self.state == DotState::Text && b != b'\r' && b != b'\n' {
                // Fast path: copy the run of ordinary bytes at once.
                let rest = input.get(i..).unwrap_or_default();
                let run = rest.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(rest.len());
                self.count_line(run);
                self.store(rest.get(..run).unwrap_or_default());
                i += run;
                continue;
            }
            i += 1;
            self.count_line(1);
            if b == b'\n' {
                self.line_len = 0;
            }
            if self.step(b) {
                return (i, true);
            }
        }
        (i, false)
    }

    /// One byte that is CR, LF, or the first byte of a line. Returns true at
    /// the end of data.
    fn step(&mut self, b: u8) -> bool {
        use DotState::*;
        self.state = match (self.state, b) {
            // RFC 5321 §4.5.2: a line starting with "." loses that dot; the
            // line "." alone ends the data.
            (LineStart, b'.') => Dot,
            (LineStart | Text, b'\r') => Cr,
            (Cr, b'\n') => {
                self.store(b"\r\n");
                LineStart
            }
            (DotCr, b'\n') => {
                // RFC 5321 §4.1.1.4: CRLF "." CRLF, and nothing else, ends
                // the data (LineStart is only ever entered after CRLF).
                return true;
            }
            (Dot, b'\r') => DotCr,
            // RFC 5321 §2.3.8: a bare LF, or a CR not followed by LF, is
            // refused (CVE-2023-51764 class smuggling). Reading goes on to
            // the true end of data; the smuggled lines are mere content.
            (_, b'\n') => {
                self.fail(DataError::BareCrLf);
                Text
            }
            (Cr | DotCr, b'\r') => {
                self.fail(DataError::BareCrLf);
                Cr
            }
            (Cr | DotCr, other) => {
                self.fail(DataError::BareCrLf);
                self.store(&[other]);
                Text
            }
            (LineStart | Dot | Text, other) => {
                self.store(&[other]);
                Text
            }
        };
        false
    }

    /// RFC 5321 §4.5.3.1.6: lines are limited, CRLF included.
    fn count_line(&mut self, n: usize) {
        self.line_len = self.line_len.saturating_add(n);
        if self.line_len > self.max_line {
            self.fail(DataError::LineTooLong);
        }
    }

    fn store(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        // RFC 1870 §6: the limit applies to the unstuffed content.
        let size = (self.data.len() as u64).saturating_add(bytes.len() as u64);
        if self.max_size > 0 && size > self.max_size {
            self.fail(DataError::TooBig);
            return;
        }
        self.data.extend_from_slice(bytes);
    }

    /// The first error is the one reported; what was stored is freed.
    fn fail(&mut self, error: DataError) {
        if self.error.is_none() {
            self.error = Some(error);
            self.data = Vec::new();
        }
    }

    /// The unstuffed content, CRLF line ends, without the final ".CRLF".
    pub(crate) fn finish(self) -> Result<Vec<u8>, DataError> {
        match self.error {
            None => Ok(self.data),
            Some(e) => Err(e),
        }
    }

    #[cfg(test)]
    pub(crate) fn stored(&self) -> usize {
        self.data.capacity()
    }
}

#[cfg(test)]
mod tests;
