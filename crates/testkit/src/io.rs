//! Reading and writing SMTP on a buffered stream. Every wait is bounded.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::Instant;

/// RFC 5321 §4.5.3.2.7: a server waits at least 5 minutes for the next
/// command; the simulator waits that long for any input, and no longer.
pub(crate) const IDLE: Duration = Duration::from_secs(300);

/// What a session runs on: TCP before STARTTLS, TLS after.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(crate) enum Line {
    /// One line, with its line ending.
    Complete(Vec<u8>),
    /// A line longer than allowed, discarded up to its end; its length.
    TooLong(usize),
    /// The input ended (an unfinished last line is dropped).
    Eof,
}

/// `fut`, or a `TimedOut` error after [`IDLE`].
pub(crate) async fn timed<T>(fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(IDLE, fut).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
    }
}

/// Read one line ending in LF, of at most `max` octets. A longer line is
/// read to its end and thrown away, so it is never taken for more lines.
pub(crate) async fn read_line<S: Stream>(io: &mut BufReader<S>, max: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    let mut total = 0;
    loop {
        let buf = timed(io.fill_buf()).await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (part, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = part.len();
        total += n;
        if total <= max {
            line.extend_from_slice(part);
        }
        io.consume(n);
        if complete {
            return Ok(if total <= max { Line::Complete(line) } else { Line::TooLong(total) });
        }
    }
}

/// Read exactly `n` octets, appending them to `sink` if there is one.
/// Returns false if the input ended first.
pub(crate) async fn read_octets<S: Stream>(
    io: &mut BufReader<S>,
    n: u64,
    mut sink: Option<&mut Vec<u8>>,
) -> io::Result<bool> {
    let mut left = n;
    while left > 0 {
        let buf = timed(io.fill_buf()).await?;
        if buf.is_empty() {
            return Ok(false);
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if let Some(sink) = sink.as_deref_mut() {
            sink.extend_from_slice(&buf[..take]);
        }
        io.consume(take);
        left -= take as u64;
    }
    Ok(true)
}

/// The line without its CRLF (or bare LF).
pub(crate) fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Send one reply; each `\n` in `text` starts another line of it
/// (RFC 5321 §4.2.1: `code-text` on every line but the last, `code text`).
pub(crate) async fn write_reply<S: Stream>(io: &mut BufReader<S>, code: u16, text: &str) -> io::Result<()> {
    let out = reply_text(code, text);
    timed(async {
        io.write_all(out.as_bytes()).await?;
        io.flush().await
    })
    .await
}

fn reply_text(code: u16, text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let separator = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{separator}{line}\r\n"));
    }
    out
}

/// [`write_reply`], one octet at a time, `every` apart.
pub(crate) async fn trickle_reply<S: Stream>(
    io: &mut BufReader<S>,
    code: u16,
    text: &str,
    every: std::time::Duration,
) -> io::Result<()> {
    for b in reply_text(code, text).bytes() {
        timed(async {
            io.write_all(&[b]).await?;
            io.flush().await
        })
        .await?;
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// Read and ignore input until the client closes or [`IDLE`] has passed.
pub(crate) async fn hang<S: Stream>(io: &mut BufReader<S>) {
    discard_until(io, Instant::now() + IDLE).await;
}

/// Close after a final reply: end our side (a TLS close_notify, then FIN),
/// and read what the client still sends for a moment, so that closing with
/// unread input does not turn into a reset that hides the reply.
pub(crate) async fn close<S: Stream>(io: &mut BufReader<S>) {
    let deadline = Instant::now() + Duration::from_secs(1);
    if tokio::time::timeout_at(deadline, io.shutdown()).await.is_ok() {
        discard_until(io, deadline).await;
    }
}

async fn discard_until<S: Stream>(io: &mut BufReader<S>, deadline: Instant) {
    loop {
        match tokio::time::timeout_at(deadline, io.fill_buf()).await {
            Ok(Ok(buf)) if !buf.is_empty() => {
                let n = buf.len();
                io.consume(n);
            }
            _ => return,
        }
    }
}
