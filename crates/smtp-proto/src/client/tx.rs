//! One mail transaction on an established, greeted connection
//! (RFC 5321 §3.3), with PIPELINING (RFC 2920) and CHUNKING (RFC 3030).
//!
//! The caller drives it:
//!
//! ```text
//! write(tx.take_output())
//! for each reply read:                      (ReplyReader)
//!     match tx.on_reply(reply)
//!         Continue  => write(tx.take_output())   (may be empty)
//!         SendBody  => write(tx.body_bytes(message))
//!         Done(r)   => r.outcomes; keep the connection if r.reusable
//! on a read/write error or timeout:  tx.connection_lost(reply)
//! ```
//!
//! Every reply is matched against the command it answers (a queue of
//! awaited replies, in sending order), so pipelined replies are never
//! confused. The state is that queue plus what was decided so far.

use std::collections::VecDeque;

use super::caps::Capabilities;
use super::command::{self, MailParams};
use crate::address::Address;
use crate::command::{BodyType, Notify, Ret};
use crate::reply::Reply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecipient {
    /// `local@domain` as [`Address`] prints it (quoted local part if needed).
    pub address: String,
    /// NOTIFY= of the inbound RCPT (RFC 3461 §4.1).
    pub notify: Option<Notify>,
    /// ORCPT= of the inbound RCPT, as `addr-type;address` with the address
    /// decoded (what [`crate::RcptParams::orcpt`] holds).
    pub orcpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundEnvelope {
    /// `""` is the null reverse-path `<>`.
    pub mail_from: String,
    pub recipients: Vec<OutboundRecipient>,
    /// Octets of the message as stored (CRLF line ends, not dot-stuffed).
    pub size: u64,
    /// From the inbound MAIL (BODY=8BITMIME).
    pub body: Option<BodyType>,
    /// The message needs SMTPUTF8 (the inbound MAIL had it).
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// Decoded (plain text); encoded as xtext when sent.
    pub envid: Option<String>,
}

/// What became of one recipient. The reply is the server's, or one made up
/// locally (its text then starts with `facteur:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    Delivered(Reply),
    Temporary(Reply),
    Permanent(Reply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxResult {
    /// One outcome per recipient, same order as OutboundEnvelope.recipients.
    pub outcomes: Vec<RcptOutcome>,
    /// The connection is still in a clean state for another transaction (false after a
    /// protocol error, a 421, or a reply we could not make sense of).
    pub reusable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStep {
    /// Write [`Transaction::take_output`] (possibly empty), then feed the next reply.
    Continue,
    /// Write [`Transaction::body_bytes`], then feed the next reply.
    SendBody,
    /// The transaction is over; further calls return the same result.
    Done(TxResult),
}

/// The command whose reply comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Mail,
    /// Index into the envelope's recipients.
    Rcpt(usize),
    Data,
    /// The reply to the message content (end of DATA, or BDAT LAST).
    Body,
    /// The reply to a lone "." sent after an unwanted 354 (RFC 2920 §3.1).
    EmptyBody,
    Rset,
}

/// One mail transaction; see the module documentation for the loop.
#[derive(Debug)]
pub struct Transaction {
    pipelining: bool,
    chunking: bool,
    /// Recipients to send (index into the envelope's list, RCPT line).
    rcpts: Vec<(usize, Vec<u8>)>,
    /// Position in `rcpts` of the next RCPT to write.
    next_rcpt: usize,
    outcomes: Vec<Option<RcptOutcome>>,
    /// Recipients whose RCPT got a 2xx, waiting for the body's reply.
    accepted: Vec<usize>,
    /// MAIL was refused: the replies still due are read and dropped.
    mail_failed: bool,
    awaiting: VecDeque<Awaiting>,
    output: Vec<u8>,
    done: Option<TxResult>,
}

impl Transaction {
    /// Prepares the transaction and checks what needs no round trip; see
    /// `docs/rfc-index.md` ("SMTP client"). `Err` when no recipient is left
    /// to try (every one decided here, nothing to send, connection clean).
    pub fn new(envelope: OutboundEnvelope, caps: &Capabilities) -> Result<Transaction, TxResult> {
        let mut outcomes: Vec<Option<RcptOutcome>> = vec![None; envelope.recipients.len()];

        // Paths are re-printed from a parse, so nothing but a valid path
        // (no CR, LF or ">") ever reaches the command line.
        let from = if envelope.mail_from.is_empty() {
            Some(String::new())
        } else {
            Address::parse_path(&envelope.mail_from, true).ok().map(|a| a.to_string())
        };
        if from.is_none() {
            refuse_open(&mut outcomes, ours(553, (5, 1, 7), "invalid sender address"));
        }
        let mut to = Vec::with_capacity(envelope.recipients.len());
        for (i, rcpt) in envelope.recipients.iter().enumerate() {
            let parsed = Address::parse_path(&rcpt.address, true).ok().map(|a| a.to_string());
            if parsed.is_none() && outcomes[i].is_none() {
                outcomes[i] = Some(RcptOutcome::Permanent(ours(553, (5, 1, 3), "invalid recipient address")));
            }
            to.push(parsed);
        }

        // RFC 6531 §3.2: a message that needs SMTPUTF8 cannot be downgraded.
        let smtputf8 = envelope.smtputf8
            || !envelope.mail_from.is_ascii()
            || envelope.recipients.iter().any(|r| !r.address.is_ascii());
        if smtputf8 && !caps.smtputf8 {
            let reply = ours(553, (5, 6, 7), "recipient server does not support SMTPUTF8");
            refuse_open(&mut outcomes, reply);
        }
        // RFC 1870 §6: a declared limit the message exceeds fails for good.
        if let Some(max) = caps.size
            && max > 0
            && envelope.size > max
        {
            let text = format!("message size exceeds the recipient server's limit of {max} octets");
            refuse_open(&mut outcomes, ours(552, (5, 3, 4), &text));
        }

        let dsn = caps.dsn;
        let mut rcpts = Vec::new();
        for (i, (rcpt, path)) in envelope.recipients.iter().zip(&to).enumerate() {
            let Some(path) = path.as_deref().filter(|_| outcomes[i].is_none()) else { continue };
            // RFC 3461 §4.1, §4.2: DSN parameters only to a DSN server.
            let notify = rcpt.notify.filter(|_| dsn);
            let orcpt = rcpt.orcpt.as_deref().filter(|_| dsn).and_then(command::orcpt_value);
            rcpts.push((i, command::rcpt_line(path, notify, orcpt.as_deref())));
        }
        let (Some(from), false) = (from, rcpts.is_empty()) else {
            return Err(TxResult { outcomes: settle(outcomes), reusable: true });
        };

        let params = MailParams {
            // RFC 1870 §6: declare the size whenever SIZE is offered.
            size: caps.size.map(|_| envelope.size),
            // RFC 6152 §3: BODY= only to an 8BITMIME server; to another one
            // the message goes without it (docs/quirks.md).
            body: envelope.body.filter(|_| caps.eightbitmime),
            smtputf8,
            // RFC 3461 §4.3, §4.4
            ret: envelope.ret.filter(|_| dsn),
            envid: envelope.envid.as_deref().filter(|_| dsn).and_then(command::envid_value),
        };
        let mut tx = Transaction {
            pipelining: caps.pipelining,
            chunking: caps.chunking,
            rcpts,
            next_rcpt: 0,
            outcomes,
            accepted: Vec::new(),
            mail_failed: false,
            awaiting: VecDeque::new(),
            output: Vec::new(),
            done: None,
        };
        tx.send(&command::mail_line(&from, &params), Awaiting::Mail);
        if tx.pipelining {
            // RFC 2920 §3.1: MAIL and RCPT anywhere in a group, DATA last.
            // BDAT waits for the RCPT replies: no chunk is sent for nobody.
            while tx.next_rcpt < tx.rcpts.len() {
                tx.send_next_rcpt();
            }
            if !tx.chunking {
                tx.send(b"DATA\r\n", Awaiting::Data);
            }
        }
        Ok(tx)
    }

    /// The bytes to write now (empty when there is nothing to write).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Takes the next reply, in order. See [`TxStep`].
    pub fn on_reply(&mut self, reply: Reply) -> TxStep {
        if let Some(result) = &self.done {
            return TxStep::Done(result.clone());
        }
        let Some(awaiting) = self.awaiting.pop_front() else {
            // Not reachable through the API: a step always awaits a reply.
            return self.unexpected("no command", &reply);
        };
        // RFC 5321 §3.8: 421, the server is closing the channel.
        if reply.code == 421 {
            return self.abort(reply);
        }
        match awaiting {
            Awaiting::Mail => self.on_mail(reply),
            Awaiting::Rcpt(i) => self.on_rcpt(i, reply),
            Awaiting::Data => self.on_data(reply),
            Awaiting::Body => self.on_body(reply),
            Awaiting::EmptyBody => self.on_empty_body(reply),
            Awaiting::Rset => self.finish(class(reply.code) == Class::Positive),
        }
    }

    /// The message as it must be written after [`TxStep::SendBody`]: for
    /// DATA dot-stuffed with CRLF line ends and the final "." (RFC 5321
    /// §4.5.2), for CHUNKING `BDAT <len> LAST` and the message unchanged
    /// (RFC 3030 §2). Linear in the message size.
    pub fn body_bytes(&self, message: &[u8]) -> Vec<u8> {
        if self.chunking { command::bdat_last(message) } else { command::dot_stuff(message) }
    }

    /// The connection failed under the transaction (I/O error, timeout,
    /// unreadable reply). RFC 5321 §3.8: treat it as a 451. Every recipient
    /// not yet decided gets `reply` as a temporary failure (whatever its
    /// code), recipients the server already refused keep their reply, and
    /// the connection is not reusable. After Done, the result stands.
    pub fn connection_lost(&mut self, reply: Reply) -> TxResult {
        if let Some(result) = &self.done {
            return TxResult { reusable: false, ..result.clone() };
        }
        self.defer_open(&reply);
        self.conclude(false)
    }

    fn on_mail(&mut self, reply: Reply) -> TxStep {
        match class(reply.code) {
            Class::Positive => {
                if !self.pipelining {
                    self.send_next_rcpt();
                }
                TxStep::Continue
            }
            Class::Transient | Class::Permanent => {
                // RFC 5321 §4.1.1.2: no transaction was opened; every
                // recipient shares the sender's fate.
                refuse_open(&mut self.outcomes, reply);
                self.mail_failed = true;
                // RFC 2920 §3.1: the pipelined replies are still due.
                if self.awaiting.is_empty() { self.finish(true) } else { TxStep::Continue }
            }
            _ => self.unexpected("MAIL", &reply),
        }
    }

    fn on_rcpt(&mut self, i: usize, reply: Reply) -> TxStep {
        match class(reply.code) {
            // RFC 2920 §3.1: after a refused MAIL the replies are dropped.
            Class::Positive | Class::Transient | Class::Permanent if self.mail_failed => {}
            Class::Positive => self.accepted.push(i),
            Class::Transient | Class::Permanent => self.outcomes[i] = refusal(reply),
            _ => return self.unexpected("RCPT", &reply),
        }
        if self.next_rcpt < self.rcpts.len() {
            self.send_next_rcpt();
            return TxStep::Continue;
        }
        if !self.awaiting.is_empty() {
            return TxStep::Continue;
        }
        // Every RCPT answered and nothing else in flight.
        if self.mail_failed {
            self.finish(true)
        } else if self.accepted.is_empty() {
            self.reset()
        } else if self.chunking {
            self.awaiting.push_back(Awaiting::Body);
            TxStep::SendBody
        } else {
            self.send(b"DATA\r\n", Awaiting::Data);
            TxStep::Continue
        }
    }

    fn on_data(&mut self, reply: Reply) -> TxStep {
        // Empty when MAIL failed too.
        let nobody = self.accepted.is_empty();
        match class(reply.code) {
            // RFC 5321 §4.1.1.4: 354, then the content.
            _ if reply.code == 354 && !nobody => {
                self.awaiting.push_back(Awaiting::Body);
                TxStep::SendBody
            }
            // RFC 2920 §3.1: DATA accepted with no recipient: send a lone ".".
            _ if reply.code == 354 => {
                self.send(b".\r\n", Awaiting::EmptyBody);
                TxStep::Continue
            }
            Class::Transient | Class::Permanent if nobody => {
                // The expected 503/554. After a refused MAIL there is no
                // transaction to reset.
                if self.mail_failed { self.finish(true) } else { self.reset() }
            }
            Class::Transient | Class::Permanent => {
                self.decide_accepted(&reply);
                // RFC 5321 §4.1.1.5: the sender and recipients are still
                // held by the server; clear them.
                self.reset()
            }
            _ => self.unexpected("DATA", &reply),
        }
    }

    fn on_body(&mut self, reply: Reply) -> TxStep {
        match class(reply.code) {
            Class::Positive => {
                for &i in &self.accepted {
                    self.outcomes[i] = Some(RcptOutcome::Delivered(reply.clone()));
                }
                self.finish(true)
            }
            Class::Transient | Class::Permanent => {
                self.decide_accepted(&reply);
                // RFC 3030 §2: after a refused BDAT the state is unknown
                // until RSET. After DATA the transaction is over (§4.1.1.4).
                if self.chunking { self.reset() } else { self.finish(true) }
            }
            _ => self.unexpected(if self.chunking { "BDAT" } else { "end of data" }, &reply),
        }
    }

    fn on_empty_body(&mut self, reply: Reply) -> TxStep {
        match class(reply.code) {
            Class::Positive | Class::Transient | Class::Permanent => self.reset(),
            _ => self.unexpected("end of data", &reply),
        }
    }

    fn send(&mut self, bytes: &[u8], awaiting: Awaiting) {
        self.output.extend_from_slice(bytes);
        self.awaiting.push_back(awaiting);
    }

    fn send_next_rcpt(&mut self) {
        let Some((i, line)) = self.rcpts.get(self.next_rcpt) else { return };
        self.output.extend_from_slice(line);
        self.awaiting.push_back(Awaiting::Rcpt(*i));
        self.next_rcpt += 1;
    }

    /// RSET (RFC 5321 §4.1.1.5); its reply ends the transaction.
    fn reset(&mut self) -> TxStep {
        self.send(b"RSET\r\n", Awaiting::Rset);
        TxStep::Continue
    }

    /// Decides every accepted recipient by a 4xx/5xx reply.
    fn decide_accepted(&mut self, reply: &Reply) {
        for &i in &self.accepted {
            self.outcomes[i] = refusal(reply.clone());
        }
    }

    /// A reply that fits no rule: the open recipients are deferred and the
    /// connection is given up (its state is unknown).
    fn unexpected(&mut self, command: &str, reply: &Reply) -> TxStep {
        let first = reply.lines.first().map(String::as_str).unwrap_or("");
        let excerpt: String = first.chars().take(200).collect();
        let text = format!("unexpected reply to {command}: {} {excerpt}", reply.code);
        self.abort(ours(451, (4, 5, 0), &text))
    }

    /// Every open recipient gets `reply` as a temporary failure; the
    /// connection is not reusable.
    fn abort(&mut self, reply: Reply) -> TxStep {
        self.defer_open(&reply);
        self.finish(false)
    }

    fn defer_open(&mut self, reply: &Reply) {
        for outcome in self.outcomes.iter_mut().filter(|o| o.is_none()) {
            *outcome = Some(RcptOutcome::Temporary(reply.clone()));
        }
    }

    fn finish(&mut self, reusable: bool) -> TxStep {
        TxStep::Done(self.conclude(reusable))
    }

    /// Ends the transaction: nothing more to send or read.
    fn conclude(&mut self, reusable: bool) -> TxResult {
        self.awaiting.clear();
        self.output.clear();
        let result = TxResult { outcomes: settle(std::mem::take(&mut self.outcomes)), reusable };
        self.done = Some(result.clone());
        result
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Positive,
    Intermediate,
    Transient,
    Permanent,
    Other,
}

/// RFC 5321 §4.2.1: the first digit of the code.
fn class(code: u16) -> Class {
    match code {
        200..=299 => Class::Positive,
        300..=399 => Class::Intermediate,
        400..=499 => Class::Transient,
        500..=599 => Class::Permanent,
        _ => Class::Other,
    }
}

/// The outcome of a refusal: 4xx temporary, 5xx permanent.
fn refusal(reply: Reply) -> Option<RcptOutcome> {
    Some(if class(reply.code) == Class::Permanent {
        RcptOutcome::Permanent(reply)
    } else {
        RcptOutcome::Temporary(reply)
    })
}

/// Every recipient not yet decided gets `reply` by its class.
fn refuse_open(outcomes: &mut [Option<RcptOutcome>], reply: Reply) {
    for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
        *outcome = refusal(reply.clone());
    }
}

/// A reply made up here, marked as ours.
fn ours(code: u16, enhanced: (u8, u16, u16), text: &str) -> Reply {
    Reply::new(code, enhanced, format!("facteur: {text}"))
}

/// The final outcomes. Every path decides every recipient before this; if
/// one were missed, it is deferred, never bounced (the unforeseen is
/// temporary).
fn settle(outcomes: Vec<Option<RcptOutcome>>) -> Vec<RcptOutcome> {
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| RcptOutcome::Temporary(ours(451, (4, 3, 0), "internal error: recipient left open")))
        })
        .collect()
}
