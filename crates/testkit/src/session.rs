//! One simulated SMTP session (RFC 5321), written for tests to read: a loop
//! over command lines, one handler per command. The same code runs before and
//! after STARTTLS, being generic over the stream.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::behavior::{Behavior, Step};
use crate::downstream::{ReceivedMessage, Shared};
use crate::io::{self as sio, Line, Stream};

/// RFC 5321 §4.5.3.1.4: 512 octets per command line, "SMTP extensions may be
/// used to increase this limit"; ESMTP parameters need the room.
const COMMAND_LINE_MAX: usize = 2048;
/// RFC 5321 §4.5.3.1.6 sets 1000 octets per text line. The simulator accepts
/// longer ones (it is not the thing under test); this only bounds memory.
const BODY_LINE_MAX: usize = 1 << 20;
/// The most body kept when no SIZE limit is set.
const BODY_MAX: usize = 64 << 20;
/// However busy, no connection lives longer than this.
const SESSION_MAX: Duration = Duration::from_secs(3600);
const HANDSHAKE_MAX: Duration = Duration::from_secs(30);

/// Serve one connection with `behavior`, until it ends or [`SESSION_MAX`].
pub(crate) async fn run(shared: Arc<Shared>, behavior: Behavior, tcp: TcpStream) {
    let session = Session { shared, behavior, greeted: false, tls: false, txn: None };
    // An I/O error (the client went away, a timeout) just ends the session.
    let _ = tokio::time::timeout(SESSION_MAX, session.serve(tcp)).await;
}

/// What to do after a command.
enum Next {
    Continue,
    /// Close politely (after QUIT or a 421).
    Quit,
    /// Close at once, without a reply.
    Drop,
    /// Stop answering and leave the connection open.
    Hang,
    /// Start the TLS handshake (the 220 was sent).
    StartTls(Arc<ServerConfig>),
}

struct Session {
    shared: Arc<Shared>,
    behavior: Behavior,
    /// EHLO or HELO was received.
    greeted: bool,
    tls: bool,
    txn: Option<Transaction>,
}

/// The mail transaction started by MAIL.
#[derive(Default)]
struct Transaction {
    mail_from: String,
    mail_params: String,
    /// MAIL had the SMTPUTF8 parameter (RFC 6531).
    utf8: bool,
    rcpts: Vec<String>,
    rcpt_params: Vec<String>,
    body: Vec<u8>,
    /// Body octets received so far, as sent (before unstuffing).
    octets: usize,
    /// BDAT was used (RFC 3030).
    chunked: bool,
    /// Close without a reply once this many body octets have arrived.
    drop_after: Option<usize>,
}

impl Session {
    async fn serve(mut self, tcp: TcpStream) -> io::Result<()> {
        let mut plain = BufReader::new(tcp);
        let next = match self.greet(&mut plain).await? {
            Next::Continue => self.commands(&mut plain).await?,
            other => other,
        };
        let Next::StartTls(config) = next else {
            end(&mut plain, next).await;
            return Ok(());
        };
        // Whatever the client sent after STARTTLS without waiting for the 220
        // is still in the buffer and is dropped here, never read as commands
        // (the plaintext injection of CVE-2011-0411).
        let tcp = plain.into_inner();
        let handshake = tokio::time::timeout(HANDSHAKE_MAX, TlsAcceptor::from(config).accept(tcp)).await;
        let tls = handshake.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
        // RFC 3207 §4.2: forget everything learnt before; the client must
        // send EHLO again.
        self.tls = true;
        self.greeted = false;
        self.txn = None;
        let mut secure = BufReader::new(tls);
        let next = self.commands(&mut secure).await?;
        end(&mut secure, next).await;
        Ok(())
    }

    async fn greet<S: Stream>(&mut self, io: &mut BufReader<S>) -> io::Result<Next> {
        match self.behavior.greeting.clone() {
            Step::Accept => self.reply(io, 220, "sim ESMTP").await,
            Step::Reply(code, text) => {
                let next = self.reply(io, code, &text).await?;
                Ok(if is_positive(code) { next } else { Next::Quit })
            }
            Step::Hang => Ok(Next::Hang),
            Step::Drop | Step::DropAfter(_) => Ok(Next::Drop),
        }
    }

    /// Read and answer commands until one ends the session or starts TLS.
    async fn commands<S: Stream>(&mut self, io: &mut BufReader<S>) -> io::Result<Next> {
        loop {
            let line = match sio::read_line(io, COMMAND_LINE_MAX).await {
                Ok(Line::Complete(raw)) => String::from_utf8_lossy(sio::trim_eol(&raw)).into_owned(),
                Ok(Line::TooLong(_)) => {
                    self.reply(io, 500, "5.5.2 sim: line too long").await?;
                    continue;
                }
                Ok(Line::Eof) => return Ok(Next::Drop),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    // RFC 5321 §4.5.3.2.7 / §3.8: a server closing on timeout says 421.
                    return self.reply(io, 421, "4.4.2 sim: idle timeout, closing connection").await;
                }
                Err(e) => return Err(e),
            };
            if self.behavior.record {
                self.shared.log_command(&line);
            }
            match self.command(io, &line).await? {
                Next::Continue => {}
                next => return Ok(next),
            }
        }
    }

    async fn command<S: Stream>(&mut self, io: &mut BufReader<S>, line: &str) -> io::Result<Next> {
        let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
        let args = args.trim();
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => self.hello(io, args, true).await,
            "HELO" => self.hello(io, args, false).await,
            "STARTTLS" => self.starttls(io).await,
            "MAIL" => self.mail(io, args).await,
            "RCPT" => self.rcpt(io, args).await,
            "DATA" => self.data(io).await,
            "BDAT" => self.bdat(io, args).await,
            "RSET" => {
                self.txn = None;
                self.reply(io, 250, "2.0.0 Ok").await
            }
            "NOOP" => self.reply(io, 250, "2.0.0 Ok").await,
            "QUIT" => {
                self.reply(io, 221, "2.0.0 sim closing connection").await?;
                Ok(Next::Quit)
            }
            _ => self.reply(io, 500, "5.5.2 sim: command not recognized").await,
        }
    }

    /// EHLO (extended) or HELO.
    async fn hello<S: Stream>(&mut self, io: &mut BufReader<S>, domain: &str, extended: bool) -> io::Result<Next> {
        if domain.is_empty() {
            return self.reply(io, 501, "5.5.4 sim: a domain or address literal is required").await;
        }
        // RFC 5321 §4.1.4: EHLO or HELO later in a session also resets the transaction.
        self.txn = None;
        self.greeted = true;
        if !extended {
            return self.reply(io, 250, "sim").await;
        }
        let b = &self.behavior;
        let mut lines = vec![format!("sim greets {domain}")];
        let offered = [
            (b.pipelining, "PIPELINING".to_string()),
            (b.size.is_some(), format!("SIZE {}", b.size.unwrap_or(0))),
            (b.eightbitmime, "8BITMIME".into()),
            (b.smtputf8, "SMTPUTF8".into()),
            (b.dsn, "DSN".into()),
            (b.chunking, "CHUNKING".into()),
            (true, "ENHANCEDSTATUSCODES".into()),
            (b.tls && !self.tls, "STARTTLS".into()),
        ];
        lines.extend(offered.into_iter().filter(|(on, _)| *on).map(|(_, keyword)| keyword));
        self.reply(io, 250, &lines.join("\n")).await
    }

    /// RFC 3207.
    async fn starttls<S: Stream>(&mut self, io: &mut BufReader<S>) -> io::Result<Next> {
        if !self.behavior.tls {
            return self.reply(io, 502, "5.5.1 sim: STARTTLS not offered").await;
        }
        if self.tls {
            return self.reply(io, 503, "5.5.1 sim: TLS already active").await;
        }
        let Ok(config) = self.shared.tls_config() else {
            return self.reply(io, 454, "4.7.0 sim: TLS not available").await;
        };
        self.reply(io, 220, "2.0.0 Ready to start TLS").await?;
        Ok(Next::StartTls(config))
    }

    async fn mail<S: Stream>(&mut self, io: &mut BufReader<S>, args: &str) -> io::Result<Next> {
        if !self.greeted {
            return self.reply(io, 503, "5.5.1 sim: send EHLO or HELO first").await;
        }
        if self.txn.is_some() {
            return self.reply(io, 503, "5.5.1 sim: nested MAIL command").await;
        }
        let Some((from, params)) = parse_path(args, "FROM:") else {
            return self.reply(io, 501, "5.5.4 sim: syntax: MAIL FROM:<address> [parameters]").await;
        };
        let mut txn = Transaction { mail_from: from.into(), mail_params: params.into(), ..Transaction::default() };
        let b = &self.behavior;
        for (key, value) in parse_params(params) {
            let value = value.to_ascii_uppercase();
            match key.as_str() {
                // RFC 1870 §6.
                "SIZE" if b.size.is_some() => match value.parse::<u64>() {
                    Ok(declared) if b.size.is_some_and(|max| max > 0 && declared > max) => {
                        return self.reply(io, 552, "5.3.4 sim: message size exceeds fixed maximum").await;
                    }
                    Ok(_) => {}
                    Err(_) => return self.reply(io, 501, "5.5.4 sim: bad SIZE value").await,
                },
                // RFC 6152.
                "BODY" if value == "7BIT" || (value == "8BITMIME" && b.eightbitmime) => {}
                // RFC 6531 §3.4.
                "SMTPUTF8" if b.smtputf8 && value.is_empty() => txn.utf8 = true,
                // RFC 3461 §4.3, §4.4.
                "RET" | "ENVID" if b.dsn => {}
                // RFC 5321 §4.1.1.11: 555 for a parameter not recognized or not implemented.
                _ => return self.reply(io, 555, &format!("5.5.4 sim: MAIL parameter {key} not supported")).await,
            }
        }
        if !from.is_ascii() && !txn.utf8 {
            return self.reply(io, 553, "5.6.7 sim: non-ASCII address without SMTPUTF8").await;
        }
        if !self.shared.admit(Instant::now()) {
            return self.reply(io, 421, "4.7.0 rate limit").await;
        }
        match self.behavior.mail.clone() {
            Step::Accept => {
                self.txn = Some(txn);
                self.reply(io, 250, "2.1.0 Ok").await
            }
            Step::Reply(code, text) => {
                if is_positive(code) {
                    self.txn = Some(txn);
                }
                self.reply(io, code, &text).await
            }
            Step::Hang => Ok(Next::Hang),
            Step::Drop | Step::DropAfter(_) => Ok(Next::Drop),
        }
    }

    async fn rcpt<S: Stream>(&mut self, io: &mut BufReader<S>, args: &str) -> io::Result<Next> {
        let Some(utf8) = self.txn.as_ref().map(|txn| txn.utf8) else {
            return self.reply(io, 503, "5.5.1 sim: need MAIL first").await;
        };
        let Some((to, params)) = parse_path(args, "TO:") else {
            return self.reply(io, 501, "5.5.4 sim: syntax: RCPT TO:<address> [parameters]").await;
        };
        for (key, _) in parse_params(params) {
            // RFC 3461 §4.1, §4.2.
            if !(self.behavior.dsn && (key == "NOTIFY" || key == "ORCPT")) {
                return self.reply(io, 555, &format!("5.5.4 sim: RCPT parameter {key} not supported")).await;
            }
        }
        if !to.is_ascii() && !utf8 {
            return self.reply(io, 553, "5.6.7 sim: non-ASCII address without SMTPUTF8").await;
        }
        let (code, text) = match (self.behavior.rcpt)(to) {
            Step::Accept => (250, "2.1.5 Ok".to_string()),
            Step::Reply(code, text) => (code, text),
            Step::Hang => return Ok(Next::Hang),
            Step::Drop | Step::DropAfter(_) => return Ok(Next::Drop),
        };
        if is_positive(code)
            && let Some(txn) = self.txn.as_mut()
        {
            txn.rcpts.push(to.into());
            txn.rcpt_params.push(params.into());
        }
        self.reply(io, code, &text).await
    }

    async fn data<S: Stream>(&mut self, io: &mut BufReader<S>) -> io::Result<Next> {
        if let Some(refusal) = self.cannot_take_body() {
            return self.reply(io, refusal.0, refusal.1).await;
        }
        if self.txn.as_ref().is_some_and(|txn| txn.chunked) {
            return self.reply(io, 503, "5.5.1 sim: DATA after BDAT").await;
        }
        let go_ahead = "sim: end data with <CR><LF>.<CR><LF>";
        let (code, text, drop_after) = match self.behavior.data.clone() {
            Step::Accept => (354, go_ahead.to_string(), None),
            Step::DropAfter(n) => (354, go_ahead.to_string(), Some(n)),
            Step::Reply(code, text) => (code, text, None),
            Step::Hang => return Ok(Next::Hang),
            Step::Drop => return Ok(Next::Drop),
        };
        if code / 100 != 3 {
            self.txn = None;
            return self.reply(io, code, &text).await;
        }
        self.reply(io, code, &text).await?;
        let limit = self.body_limit();
        let Some(txn) = self.txn.as_mut() else { return Ok(Next::Drop) };
        let mut too_big = false;
        let mut too_long = false;
        loop {
            let raw = match sio::read_line(io, BODY_LINE_MAX).await? {
                Line::Complete(raw) => raw,
                Line::TooLong(n) => {
                    too_long = true;
                    txn.octets += n;
                    if drop_after.is_some_and(|max| txn.octets >= max) {
                        return Ok(Next::Drop);
                    }
                    continue;
                }
                Line::Eof => return Ok(Next::Drop),
            };
            txn.octets += raw.len();
            // RFC 5321 §4.1.1.4: the body ends with a line holding one period
            // (a bare LF ending is taken too: the simulator is lenient here).
            if sio::trim_eol(&raw) == b"." {
                break;
            }
            if drop_after.is_some_and(|max| txn.octets >= max) {
                return Ok(Next::Drop);
            }
            // RFC 5321 §4.5.2: a leading period was doubled by the client.
            let content = raw.strip_prefix(b".").unwrap_or(&raw);
            if too_big || txn.body.len() + content.len() > limit {
                too_big = true;
            } else {
                txn.body.extend_from_slice(content);
            }
        }
        if drop_after.is_some() {
            // The body was shorter than the drop point: close without a reply.
            return Ok(Next::Drop);
        }
        if too_big {
            self.txn = None;
            return self.reply(io, 552, "5.3.4 sim: message size exceeds fixed maximum").await;
        }
        if too_long {
            self.txn = None;
            return self.reply(io, 500, "5.5.2 sim: line too long").await;
        }
        self.end_of_data(io).await
    }

    /// RFC 3030: `BDAT <size> [LAST]`, then exactly `size` octets.
    async fn bdat<S: Stream>(&mut self, io: &mut BufReader<S>, args: &str) -> io::Result<Next> {
        let mut words = args.split_ascii_whitespace();
        let size = words.next().and_then(|w| w.parse::<u64>().ok());
        let last = match words.next() {
            None => Some(false),
            Some(w) if w.eq_ignore_ascii_case("LAST") => Some(true),
            Some(_) => None,
        };
        let (Some(size), Some(last), None) = (size, last, words.next()) else {
            // Without the chunk's size the rest of the input cannot be
            // told apart from commands.
            self.reply(io, 501, "5.5.4 sim: syntax: BDAT <size> [LAST]").await?;
            return Ok(Next::Quit);
        };
        // A refused chunk is still read, so the next command is found where it starts.
        let refusal = if self.behavior.chunking {
            self.cannot_take_body()
        } else {
            Some((502, "5.5.1 sim: CHUNKING not advertised"))
        };
        if let Some((code, text)) = refusal {
            return self.refuse_chunk(io, size, code, text).await;
        }
        let first = self.txn.as_ref().is_some_and(|txn| !txn.chunked);
        let mut drop_after = self.txn.as_ref().and_then(|txn| txn.drop_after);
        if first {
            match self.behavior.data.clone() {
                Step::Accept => {}
                Step::DropAfter(n) => drop_after = Some(n),
                Step::Reply(code, _) if code / 100 == 3 => {}
                Step::Reply(code, text) => {
                    self.txn = None;
                    return self.refuse_chunk(io, size, code, &text).await;
                }
                Step::Hang => return Ok(Next::Hang),
                Step::Drop => return Ok(Next::Drop),
            }
        }
        let limit = self.body_limit() as u64;
        let Some(txn) = self.txn.as_mut() else { return Ok(Next::Drop) };
        txn.chunked = true;
        txn.drop_after = drop_after;
        if let Some(max) = drop_after {
            let allowed = max.saturating_sub(txn.octets) as u64;
            if allowed <= size {
                sio::read_octets(io, allowed, None).await?;
                return Ok(Next::Drop);
            }
        }
        if txn.body.len() as u64 + size > limit {
            // RFC 3030 §2: after a failed chunk the client sends no more.
            self.txn = None;
            return self.refuse_chunk(io, size, 552, "5.3.4 sim: message size exceeds fixed maximum").await;
        }
        if !sio::read_octets(io, size, Some(&mut txn.body)).await? {
            return Ok(Next::Drop);
        }
        txn.octets += size as usize;
        if !last {
            return self.reply(io, 250, &format!("2.0.0 sim: {size} octets received")).await;
        }
        if drop_after.is_some() {
            return Ok(Next::Drop);
        }
        self.end_of_data(io).await
    }

    /// Read and ignore a chunk, then answer with a refusal.
    async fn refuse_chunk<S: Stream>(
        &mut self,
        io: &mut BufReader<S>,
        size: u64,
        code: u16,
        text: &str,
    ) -> io::Result<Next> {
        if !sio::read_octets(io, size, None).await? {
            return Ok(Next::Drop);
        }
        self.reply(io, code, text).await
    }

    /// Why DATA or BDAT cannot start now, if it cannot.
    fn cannot_take_body(&self) -> Option<(u16, &'static str)> {
        match &self.txn {
            None => Some((503, "5.5.1 sim: need MAIL first")),
            // RFC 5321 §3.3: DATA without any accepted recipient gets 554 (or 503).
            Some(txn) if txn.rcpts.is_empty() => Some((554, "5.5.1 sim: no valid recipients")),
            Some(_) => None,
        }
    }

    /// The whole body is in: answer with `end_of_data`, and record the
    /// message if that answer is positive.
    async fn end_of_data<S: Stream>(&mut self, io: &mut BufReader<S>) -> io::Result<Next> {
        let Some(txn) = self.txn.take() else { return Ok(Next::Drop) };
        let message = ReceivedMessage {
            mail_from: txn.mail_from,
            mail_params: txn.mail_params,
            rcpts: txn.rcpts,
            rcpt_params: txn.rcpt_params,
            data: txn.body,
            tls: self.tls,
            chunked: txn.chunked,
        };
        match self.behavior.end_of_data.clone() {
            Step::Accept => {
                let id = self.shared.accept(message, self.behavior.record);
                self.reply(io, 250, &format!("2.0.0 Ok: queued as {id}")).await
            }
            Step::Reply(code, text) => {
                if is_positive(code) {
                    self.shared.accept(message, self.behavior.record);
                }
                self.reply(io, code, &text).await
            }
            Step::Hang => Ok(Next::Hang),
            Step::Drop | Step::DropAfter(_) => Ok(Next::Drop),
        }
    }

    fn body_limit(&self) -> usize {
        match self.behavior.size {
            Some(max) if max > 0 => usize::try_from(max).unwrap_or(usize::MAX),
            _ => BODY_MAX,
        }
    }

    /// Send a reply. Input already waiting at this point was sent before the
    /// client could see this reply: that is pipelining, and it is counted.
    async fn reply<S: Stream>(&self, io: &mut BufReader<S>, code: u16, text: &str) -> io::Result<Next> {
        if !io.buffer().is_empty() {
            self.shared.note_pipelined();
        }
        match self.behavior.trickle {
            Some(every) => sio::trickle_reply(io, code, text, every).await?,
            None => sio::write_reply(io, code, text).await?,
        }
        // RFC 5321 §3.8: 421 means the server closes the connection.
        Ok(if code == 421 { Next::Quit } else { Next::Continue })
    }
}

/// How a session that stopped reading commands ends.
async fn end<S: Stream>(io: &mut BufReader<S>, next: Next) {
    match next {
        Next::Quit => sio::close(io).await,
        Next::Hang => sio::hang(io).await,
        Next::Continue | Next::Drop | Next::StartTls(_) => {}
    }
}

fn is_positive(code: u16) -> bool {
    (200..300).contains(&code)
}

/// `FROM:<a@b> PARAMS` → (`a@b`, `PARAMS`). The keyword is matched ignoring
/// case; a space before `<` is tolerated.
fn parse_path<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start().strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

/// `SIZE=10 SMTPUTF8` → [("SIZE", "10"), ("SMTPUTF8", "")], keys upper-cased.
fn parse_params(params: &str) -> impl Iterator<Item = (String, &str)> {
    params.split_ascii_whitespace().map(|param| {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        (key.to_ascii_uppercase(), value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_parameters() {
        assert_eq!(parse_path("FROM:<a@b> SIZE=3", "FROM:"), Some(("a@b", "SIZE=3")));
        assert_eq!(parse_path("from: <>", "FROM:"), Some(("", "")));
        assert_eq!(parse_path("TO:<Ünï@b>", "TO:"), Some(("Ünï@b", "")));
        assert_eq!(parse_path("TO:a@b", "TO:"), None);
        assert_eq!(parse_path("FROM:<a@b", "FROM:"), None);
        assert_eq!(parse_path("FR", "FROM:"), None);
        let params: Vec<_> = parse_params("size=10  SMTPUTF8").collect();
        assert_eq!(params, [("SIZE".to_string(), "10"), ("SMTPUTF8".to_string(), "")]);
    }
}
