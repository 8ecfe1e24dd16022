//! The command table and one handler per command.

use super::body::{After, ChunkPlan};
use super::{Mode, Pending, Phase, Session};
use crate::address::Address;
use crate::command::{Command, MailParams, RcptParams};
use crate::framing::DotReader;
use crate::reply::Reply;

/// The commands, as far as the sequence table is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth,
}

impl Verb {
    /// Commands that move no mail (Postfix's junk commands, plus HELP and
    /// the greetings): only so many are free between two messages.
    fn is_junk(self) -> bool {
        matches!(self, Verb::Noop | Verb::Rset | Verb::Vrfy | Verb::Expn | Verb::Help | Verb::Ehlo | Verb::Helo)
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Ehlo => "EHLO",
            Verb::Helo => "HELO",
            Verb::Mail => "MAIL",
            Verb::Rcpt => "RCPT",
            Verb::Data => "DATA",
            Verb::Bdat => "BDAT",
            Verb::Rset => "RSET",
            Verb::Noop => "NOOP",
            Verb::Quit => "QUIT",
            Verb::Vrfy => "VRFY",
            Verb::Expn => "EXPN",
            Verb::Help => "HELP",
            Verb::StartTls => "STARTTLS",
            Verb::Auth => "AUTH",
        }
    }

    fn of(command: &Command) -> Verb {
        match command {
            Command::Ehlo(_) => Verb::Ehlo,
            Command::Helo(_) => Verb::Helo,
            Command::Mail(..) => Verb::Mail,
            Command::Rcpt(..) => Verb::Rcpt,
            Command::Data => Verb::Data,
            Command::Bdat { .. } => Verb::Bdat,
            Command::Rset => Verb::Rset,
            Command::Noop => Verb::Noop,
            Command::Quit => Verb::Quit,
            Command::Vrfy(_) => Verb::Vrfy,
            Command::Expn(_) => Verb::Expn,
            Command::Help => Verb::Help,
            Command::StartTls => Verb::StartTls,
            Command::Auth { .. } => Verb::Auth,
        }
    }
}

/// What a command gets in a phase: run its handler, or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Run,
    HeloFirst,
    NestedMail,
    NeedMail,
    NoRecipients,
    InTransaction,
    BdatInProgress,
    Failed,
}

use Rule::*;

/// The sequence table (RFC 5321 §4.1.4; RFC 3030 §2 for BDAT; RFC 4954 §4
/// for AUTH; RFC 3207 §4 for STARTTLS): the rule for a command in each
/// [`Phase`], in the order of its variants.
#[rustfmt::skip]
const fn row(verb: Verb) -> [Rule; 6] {
    match verb {
        //                 Start      Ready         Mail           Rcpt           Chunking        ChunkFailed
        Verb::Mail     => [HeloFirst, Run,          NestedMail,    NestedMail,    NestedMail,     NestedMail],
        Verb::Rcpt     => [HeloFirst, NeedMail,     Run,           Run,           BdatInProgress, Failed],
        Verb::Data     => [HeloFirst, NoRecipients, NoRecipients,  Run,           BdatInProgress, Failed],
        // In ChunkFailed the BDAT handler eats the chunk and refuses it.
        Verb::Bdat     => [HeloFirst, NoRecipients, NoRecipients,  Run,           Run,            Run],
        Verb::Auth     => [HeloFirst, Run,          InTransaction, InTransaction, InTransaction,  InTransaction],
        Verb::StartTls => [Run,       Run,          InTransaction, InTransaction, InTransaction,  InTransaction],
        // EHLO, HELO and RSET end a transaction; the others leave it alone.
        Verb::Ehlo | Verb::Helo | Verb::Rset | Verb::Noop | Verb::Quit | Verb::Vrfy | Verb::Expn
        | Verb::Help => [Run; 6],
    }
}

fn column(phase: Phase) -> usize {
    match phase {
        Phase::Start => 0,
        Phase::Ready => 1,
        Phase::Mail => 2,
        Phase::Rcpt => 3,
        Phase::Chunking => 4,
        Phase::ChunkFailed => 5,
    }
}

fn out_of_sequence(text: &str) -> Reply {
    Reply::new(503, (5, 5, 1), format!("Error: {text}"))
}

fn refusal(rule: Rule) -> Option<Reply> {
    Some(match rule {
        Run => return None,
        HeloFirst => out_of_sequence("send HELO/EHLO first"),
        NestedMail => out_of_sequence("nested MAIL command"),
        NeedMail => out_of_sequence("need MAIL command"),
        // RFC 5321 §4.1.1.4: 503 or 554 when no recipient was accepted.
        NoRecipients => Reply::new(554, (5, 5, 1), "Error: no valid recipients"),
        InTransaction => out_of_sequence("MAIL transaction in progress"),
        BdatInProgress => out_of_sequence("BDAT transfer in progress"),
        Failed => out_of_sequence("transaction failed, send RSET"),
    })
}

/// RFC 5321 §4.2.4: 502 for a command we do not offer.
pub(super) fn not_implemented() -> Reply {
    Reply::new(502, (5, 5, 1), "Error: command not implemented")
}

impl Session {
    pub(super) fn dispatch(&mut self, command: Command) {
        let verb = Verb::of(&command);
        self.verb = verb.name();
        if let Err(reply) = self.allowed(verb) {
            match command {
                // RFC 3030 §2: the chunk follows whatever the reply; eat it
                // by its announced size so that it is never read as commands.
                Command::Bdat { size, .. } => self.discard_chunk(size, reply, After::Stay),
                // RFC 2920 §3.1: DATA ends a pipelined group and the client
                // waits for 354. Bytes already behind a DATA that got no 354
                // are a message body that would be read as commands (a forged
                // second transaction): drop them, say why, and close.
                Command::Data if !self.input.rest().is_empty() => {
                    let text = format!(
                        "Error: SMTP protocol synchronization: input after a refused DATA ({}) discarded",
                        reply.lines.first().map(String::as_str).unwrap_or("refused")
                    );
                    self.input.clear();
                    self.close_with(Reply::new(554, (5, 5, 0), text));
                }
                _ => self.reply(reply),
            }
            return;
        }
        if verb.is_junk() {
            self.junk += 1;
            if self.junk > self.config.max_junk_commands {
                // Answered as usual, but the session is wasting our time.
                self.count_error();
                if self.closed {
                    return;
                }
            }
        }
        match command {
            Command::Ehlo(domain) => self.cmd_hello(domain, true),
            Command::Helo(domain) => self.cmd_hello(domain, false),
            Command::Mail(from, params) => self.cmd_mail(from, params),
            Command::Rcpt(to, params) => self.cmd_rcpt(to, params),
            Command::Data => self.cmd_data(),
            Command::Bdat { size, last } => self.cmd_bdat(size, last),
            Command::Rset => self.cmd_rset(),
            Command::Noop => self.reply(Reply::new(250, (2, 0, 0), "Ok")),
            Command::Quit => self.close_with(Reply::new(221, (2, 0, 0), "Bye")),
            // RFC 5321 §3.5.3: never confirm or deny a user.
            Command::Vrfy(_) => self.reply(Reply::new(252, (2, 5, 0), "Cannot VRFY user, but will accept message")),
            Command::Expn(_) => self.reply(not_implemented()),
            Command::Help => self.reply(Reply::new(
                214,
                (2, 0, 0),
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            )),
            Command::StartTls => self.cmd_starttls(),
            Command::Auth { mechanism, initial } => self.cmd_auth(mechanism, initial),
        }
    }

    /// Commands not offered in this session, then the sequence table.
    fn allowed(&self, verb: Verb) -> Result<(), Reply> {
        let offered = match verb {
            Verb::Auth => self.config.auth_enabled,
            Verb::StartTls => self.config.starttls_available || self.tls_active,
            _ => true,
        };
        if !offered {
            return Err(not_implemented());
        }
        let rule = row(verb).get(column(self.phase)).copied().unwrap_or(Run);
        refusal(rule).map_or(Ok(()), Err)
    }

    /// EHLO and HELO (RFC 5321 §4.1.1.1): both reset the transaction.
    fn cmd_hello(&mut self, domain: String, esmtp: bool) {
        self.reset_transaction();
        self.phase = Phase::Ready;
        self.helo = domain;
        self.esmtp = esmtp;
        let hostname = self.config.hostname.clone();
        if !esmtp {
            self.reply(Reply::plain(250, hostname));
            return;
        }
        let mut lines = vec![hostname, "PIPELINING".to_owned()];
        // RFC 1870 §4: SIZE without a number when there is no fixed limit.
        lines.push(match self.config.max_message_size {
            0 => "SIZE".to_owned(),
            max => format!("SIZE {max}"),
        });
        for keyword in ["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN", "CHUNKING"] {
            lines.push(keyword.to_owned());
        }
        // RFC 3207 §4.2: not offered once TLS is active.
        if self.config.starttls_available && !self.tls_active {
            lines.push("STARTTLS".to_owned());
        }
        // RFC 4954 §4 and RFC 8314 §3: passwords only under TLS.
        if self.config.auth_enabled && self.tls_active {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        self.reply(Reply { code: 250, enhanced: None, lines });
    }

    fn cmd_mail(&mut self, from: Option<Address>, params: MailParams) {
        if self.messages >= self.config.max_messages {
            let text = format!("{} Error: too many messages in one connection; reconnect", self.config.hostname);
            self.close_with(Reply::new(421, (4, 7, 0), text));
            return;
        }
        // RFC 6409 §4.3 / RFC 4954 §6: submission needs AUTH first.
        if self.config.auth_required && self.auth_user.is_none() {
            let text = if !self.tls_active && self.config.starttls_available {
                "Must issue a STARTTLS command first"
            } else {
                "Authentication required"
            };
            self.reply(Reply::new(530, (5, 7, 0), text));
            return;
        }
        if let Some(keyword) = self.unannounced(mail_keywords(&params)) {
            self.reply(unsupported(keyword));
            return;
        }
        // RFC 1870 §6: refuse a declared size over the limit at once.
        let max = self.config.max_message_size;
        if max > 0 && params.size.is_some_and(|size| size > max) {
            self.reply(too_big());
            return;
        }
        self.pending = Some(Pending::Mail { from, params });
    }

    fn cmd_rcpt(&mut self, to: Address, params: RcptParams) {
        if let Some(keyword) = self.unannounced(rcpt_keywords(&params)) {
            self.reply(unsupported(keyword));
            return;
        }
        // RFC 5321 §4.5.3.1.10: 452 for recipients past the limit.
        if self.tx.recipients.len() >= self.config.max_recipients {
            self.reply(Reply::new(452, (4, 5, 3), "Error: too many recipients"));
            return;
        }
        self.pending = Some(Pending::Rcpt { to, params });
    }

    /// RFC 5321 §4.1.1.11 / RFC 1869: ESMTP parameters need EHLO, since HELO
    /// announced no extension. Returns the first parameter given after HELO.
    fn unannounced(&self, mut keywords: impl Iterator<Item = &'static str>) -> Option<&'static str> {
        if self.esmtp { None } else { keywords.next() }
    }

    fn cmd_data(&mut self) {
        // RFC 5321 §4.1.1.4 (354 carries no enhanced code, RFC 2034 §3).
        self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        let reader = DotReader::new(self.config.max_data_line, self.config.max_message_size);
        self.mode = Mode::Data(reader);
    }

    /// RFC 3030 §2: `BDAT size [LAST]`, then exactly `size` octets.
    fn cmd_bdat(&mut self, size: u64, last: bool) {
        let end = if last { After::Reset } else { After::Stay };
        if self.phase == Phase::ChunkFailed {
            self.discard_chunk(size, out_of_sequence("transaction failed, send RSET"), end);
            return;
        }
        // RFC 1870 §6 applied to the running total of the chunks.
        let max = self.config.max_message_size;
        let total = (self.tx.body.len() as u64).saturating_add(size);
        if max > 0 && total > max {
            let end = if last { After::Reset } else { After::Fail };
            self.discard_chunk(size, too_big(), end);
            return;
        }
        self.mode = Mode::Chunk { remaining: size, plan: ChunkPlan::Keep { size, last } };
    }

    pub(super) fn discard_chunk(&mut self, size: u64, reply: Reply, after: After) {
        self.mode = Mode::Chunk { remaining: size, plan: ChunkPlan::Discard { reply, after } };
    }

    /// RFC 5321 §4.1.1.5
    fn cmd_rset(&mut self) {
        self.reset_transaction();
        self.reply(Reply::new(250, (2, 0, 0), "Ok"));
    }

    /// RFC 3207 §4
    fn cmd_starttls(&mut self) {
        if self.tls_active {
            self.reply(out_of_sequence("TLS already active"));
            return;
        }
        self.reply(Reply::new(220, (2, 0, 0), "Ready to start TLS"));
        self.pending = Some(Pending::StartTls);
    }
}

/// RFC 1870 §6 / RFC 3463 §3.4: 552 5.3.4.
pub(super) fn too_big() -> Reply {
    Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size")
}

fn unsupported(keyword: &str) -> Reply {
    Reply::new(555, (5, 5, 4), format!("Unsupported parameter: {keyword}"))
}

fn mail_keywords(p: &MailParams) -> impl Iterator<Item = &'static str> {
    [
        p.size.map(|_| "SIZE"),
        p.body.map(|_| "BODY"),
        p.smtputf8.then_some("SMTPUTF8"),
        p.ret.map(|_| "RET"),
        p.envid.as_ref().map(|_| "ENVID"),
        p.auth.as_ref().map(|_| "AUTH"),
    ]
    .into_iter()
    .flatten()
}

fn rcpt_keywords(p: &RcptParams) -> impl Iterator<Item = &'static str> {
    [p.notify.map(|_| "NOTIFY"), p.orcpt.as_ref().map(|_| "ORCPT")].into_iter().flatten()
}
