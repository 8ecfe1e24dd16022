//! The SMTP server session state machine (sans-IO).
//!
//! A [`Session`] owns an input buffer and an output buffer. The I/O layer
//! feeds it what the client sent, calls [`Session::poll`] and acts on the
//! returned [`Event`]; replies accumulate in the output buffer, which the
//! I/O layer writes out whenever the session needs input, starts TLS or
//! closes. Replies to pipelined commands (RFC 2920) are thus sent in one
//! write.
//!
//! Layout: this file holds the public types, the state and the event loop;
//! `session/handlers.rs` holds the command table and one handler per
//! command, `session/auth.rs` the SASL exchange, `session/body.rs` the end
//! of DATA and BDAT.

mod auth;
mod body;
mod handlers;

use crate::address::Address;
use crate::command::{Command, MailParams, RcptParams};
use crate::framing::{DotReader, Frame, Input};
use crate::reply::Reply;

/// Limits and capabilities of one session; the I/O layer builds it per listener.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our host name, in the greeting and EHLO reply.
    pub hostname: String,
    /// SIZE limit in octets (RFC 1870); 0 = no limit.
    pub max_message_size: u64,
    /// Recipients per transaction (RFC 5321 §4.5.3.1.8 requires accepting at least 100).
    pub max_recipients: usize,
    /// Octets per command line including CRLF (RFC 5321 §4.5.3.1.4: 512 at least;
    /// ESMTP parameters extend it).
    pub max_command_line: usize,
    /// Octets per line of DATA including CRLF (RFC 5321 §4.5.3.1.6: 1000).
    pub max_data_line: usize,
    /// Messages accepted on one connection; the next MAIL gets `421 4.7.0`
    /// and the session closes (as Exim's `smtp_accept_max_per_connection`).
    pub max_messages: usize,
    /// Error replies (4xx/5xx to commands) since the last accepted message
    /// before `421 4.7.0` and close.
    pub max_errors: usize,
    /// Commands that move no mail (NOOP, RSET, VRFY, EXPN, HELP, EHLO,
    /// HELO) since the last accepted message before each further one counts
    /// as an error (as Postfix's `smtpd_junk_command_limit`).
    pub max_junk_commands: usize,
    /// STARTTLS can be offered (a certificate is loaded and TLS is not active yet).
    pub starttls_available: bool,
    /// The connection is already TLS (implicit TLS port, or after STARTTLS).
    pub tls_active: bool,
    /// AUTH PLAIN/LOGIN is offered (submission ports), and only under TLS.
    pub auth_enabled: bool,
    /// MAIL needs a successful AUTH first (submission ports, RFC 6409 §4.3).
    pub auth_required: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".into(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 2048,
            max_data_line: 1000,
            max_messages: 1000,
            max_errors: 20,
            max_junk_commands: 100,
            starttls_available: false,
            tls_active: false,
            auth_enabled: false,
            auth_required: false,
        }
    }
}

/// One accepted recipient with its DSN parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: Address,
    pub params: RcptParams,
}

/// The envelope of a complete transaction, handed over with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The EHLO/HELO argument.
    pub helo: String,
    /// `true` when the client greeted with EHLO.
    pub esmtp: bool,
    /// `None` is the null reverse-path.
    pub mail_from: Option<Address>,
    pub mail_params: MailParams,
    pub recipients: Vec<Recipient>,
    /// The authenticated identity, if AUTH succeeded.
    pub auth_user: Option<String>,
    /// The transaction ran under TLS.
    pub tls: bool,
    /// The message came by BDAT (RFC 3030) rather than DATA.
    pub chunked: bool,
}

/// Credentials decoded from AUTH PLAIN (RFC 4616) or AUTH LOGIN.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub mechanism: String,
    pub authzid: Option<String>,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for AuthRequest {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the session needs from the I/O layer next. Each variant that asks a
/// question must be answered with the matching `Session` method before the
/// next call to [`Session::poll`].
#[derive(Debug)]
pub enum Event {
    /// Write [`Session::take_output`] to the peer, then read more bytes and
    /// [`Session::feed`] them.
    NeedInput,
    /// Flush output, run the TLS handshake, then call [`Session::tls_established`].
    StartTls,
    /// Check credentials, answer with [`Session::auth_result`].
    Auth(AuthRequest),
    /// Vet the sender (policy, admission); answer with [`Session::mail_result`].
    Mail { from: Option<Address>, params: MailParams },
    /// Vet one recipient; answer with [`Session::rcpt_result`].
    Rcpt { to: Address, params: RcptParams },
    /// A complete message (data unstuffed, CRLF line ends, as received);
    /// store it and answer with [`Session::message_result`].
    Message { envelope: Envelope, data: Vec<u8> },
    /// Flush output and close the connection.
    Close,
}

/// One SMTP server session, from greeting to close. See the module docs.
pub struct Session {
    config: SessionConfig,
    input: Input,
    output: Vec<u8>,
    /// How the next input bytes are read.
    mode: Mode,
    /// Where the client stands in the command sequence.
    phase: Phase,
    /// The EHLO/HELO argument (empty in [`Phase::Start`]).
    helo: String,
    esmtp: bool,
    tls_active: bool,
    auth_user: Option<String>,
    tx: Transaction,
    /// A question asked of the I/O layer, or STARTTLS under way.
    pending: Option<Pending>,
    closed: bool,
    /// Messages accepted, for `max_messages`.
    messages: usize,
    /// 4xx/5xx replies sent since the last accepted message, for `max_errors`.
    errors: usize,
    /// Junk commands since the last accepted message, for `max_junk_commands`.
    junk: usize,
    /// The command being answered, for [`Refusal`]s.
    verb: &'static str,
    /// Refusals not yet taken by the I/O layer (it logs them).
    refusals: Vec<Refusal>,
}

/// A 4xx/5xx the session sent, with the step it answered, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The command ("MAIL", "RCPT", "DATA", ...), "line" for framing
    /// errors, "greeting" before any command.
    pub command: &'static str,
    pub reply: Reply,
}

/// The command sequence (RFC 5321 §4.1.4, RFC 3030 §2). Which command is
/// allowed in which phase is the table in `session/handlers.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No EHLO/HELO yet.
    Start,
    /// Greeted, no transaction.
    Ready,
    /// MAIL accepted, no recipient accepted yet.
    Mail,
    /// At least one recipient accepted.
    Rcpt,
    /// At least one non-LAST BDAT chunk accepted.
    Chunking,
    /// A BDAT chunk was refused; chunks are eaten until LAST or RSET.
    ChunkFailed,
}

/// How the next bytes are read.
#[derive(Debug)]
enum Mode {
    /// CRLF-terminated command lines.
    Command,
    /// AUTH continuation lines (RFC 4954 §4).
    Auth(auth::AuthStep),
    /// DATA content up to CRLF "." CRLF.
    Data(DotReader),
    /// The rest of a BDAT chunk.
    Chunk { remaining: u64, plan: body::ChunkPlan },
}

/// What the session waits for from the I/O layer.
#[derive(Debug)]
enum Pending {
    StartTls,
    Auth(AuthRequest),
    Mail {
        from: Option<Address>,
        params: MailParams,
    },
    Rcpt {
        to: Address,
        params: RcptParams,
    },
    /// The message data went out with the first event.
    Message(Envelope),
}

impl Pending {
    fn event(&self) -> Event {
        match self {
            Pending::StartTls => Event::StartTls,
            Pending::Auth(request) => Event::Auth(request.clone()),
            Pending::Mail { from, params } => Event::Mail { from: from.clone(), params: params.clone() },
            Pending::Rcpt { to, params } => Event::Rcpt { to: to.clone(), params: params.clone() },
            Pending::Message(envelope) => Event::Message { envelope: envelope.clone(), data: Vec::new() },
        }
    }
}

/// The mail transaction under way (RFC 5321 §3.3).
#[derive(Debug, Default)]
struct Transaction {
    from: Option<Address>,
    params: MailParams,
    recipients: Vec<Recipient>,
    /// BDAT chunks received so far.
    body: Vec<u8>,
}

impl Session {
    /// A new session; the greeting is queued (RFC 5321 §4.2, §3.1).
    pub fn new(config: SessionConfig) -> Session {
        let greeting = Reply::plain(220, format!("{} ESMTP facteur", config.hostname));
        Session {
            input: Input::default(),
            output: greeting.to_bytes(),
            mode: Mode::Command,
            phase: Phase::Start,
            helo: String::new(),
            esmtp: false,
            tls_active: config.tls_active,
            auth_user: None,
            tx: Transaction::default(),
            pending: None,
            closed: false,
            messages: 0,
            errors: 0,
            junk: 0,
            verb: "greeting",
            refusals: Vec::new(),
            config,
        }
    }

    /// Appends bytes received from the client. Meant to be called after
    /// [`Event::NeedInput`]; bytes fed at other times simply wait.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.closed {
            self.input.feed(bytes);
        }
    }

    /// Processes buffered input until the session needs something.
    ///
    /// A question ([`Event::Auth`], [`Event::Mail`], [`Event::Rcpt`],
    /// [`Event::Message`]) must be answered before the next call; calling
    /// again without answering returns the same event (for `Message`, with
    /// empty `data`: the data was handed over the first time). After
    /// [`Event::StartTls`] nothing is processed until
    /// [`Session::tls_established`]; after [`Event::Close`], every call
    /// returns `Close`.
    pub fn poll(&mut self) -> Event {
        loop {
            if self.closed {
                return Event::Close;
            }
            if let Some(pending) = &self.pending {
                return pending.event();
            }
            if let Some(event) = self.advance() {
                return event;
            }
        }
    }

    /// The reply bytes queued so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The refusals sent since the last call (at most `max_errors` or so
    /// between two calls: the session closes past that).
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.refusals)
    }

    /// True while part of a request is buffered or under way: a command
    /// line without its end, an AUTH exchange, message content. The I/O
    /// layer then waits with the request's deadline rather than the idle
    /// timeout.
    pub fn has_partial_input(&self) -> bool {
        !matches!(self.mode, Mode::Command) || !self.input.rest().is_empty()
    }

    /// The TLS handshake succeeded.
    pub fn tls_established(&mut self) {
        // RFC 3207 §4.2: discard all knowledge obtained from the client,
        // and (CVE-2011-0411) every byte buffered before the handshake.
        self.input.clear();
        self.mode = Mode::Command;
        self.phase = Phase::Start;
        self.helo.clear();
        self.esmtp = false;
        self.auth_user = None;
        self.tx = Transaction::default();
        self.pending = None;
        self.tls_active = true;
    }

    /// The answer to [`Event::Auth`]: the authenticated user, or the reply
    /// to send (e.g. `535 5.7.8`).
    pub fn auth_result(&mut self, result: Result<String, Reply>) {
        if !matches!(self.pending, Some(Pending::Auth(_))) {
            return;
        }
        self.pending = None;
        match result {
            Ok(user) => {
                self.auth_user = Some(user);
                // RFC 4954 §6
                self.reply(Reply::new(235, (2, 7, 0), "Authentication successful"));
            }
            Err(reply) => self.reply(reply),
        }
    }

    /// The answer to [`Event::Mail`].
    pub fn mail_result(&mut self, result: Result<(), Reply>) {
        let Some(Pending::Mail { from, params }) = self.pending.take_if(|p| matches!(p, Pending::Mail { .. })) else {
            return;
        };
        match result {
            Ok(()) => {
                self.tx = Transaction { from, params, ..Transaction::default() };
                self.phase = Phase::Mail;
                self.reply(Reply::new(250, (2, 1, 0), "Ok"));
            }
            Err(reply) => self.reply(reply),
        }
    }

    /// The answer to [`Event::Rcpt`].
    pub fn rcpt_result(&mut self, result: Result<(), Reply>) {
        let Some(Pending::Rcpt { to, params }) = self.pending.take_if(|p| matches!(p, Pending::Rcpt { .. })) else {
            return;
        };
        match result {
            Ok(()) => {
                self.tx.recipients.push(Recipient { address: to, params });
                self.phase = Phase::Rcpt;
                self.reply(Reply::new(250, (2, 1, 5), "Ok"));
            }
            Err(reply) => self.reply(reply),
        }
    }

    /// The answer to [`Event::Message`]: `250 2.0.0 Ok: queued as ID`, or a
    /// 4xx/5xx. The transaction is over either way (EHLO and AUTH remain).
    pub fn message_result(&mut self, reply: Reply) {
        if self.pending.take_if(|p| matches!(p, Pending::Message(_))).is_some() {
            if reply.code / 100 == 2 {
                // A sender that moves mail is not wasting the session: the
                // error and junk counts start again.
                self.messages += 1;
                self.errors = 0;
                self.junk = 0;
            }
            self.reply(reply);
        }
    }

    /// The client sent bytes before the greeting (RFC 5321 §4.3.1: the
    /// client waits for the 220): instead of the greeting, `554 5.5.0`
    /// (RFC 5321 §3.1: no service) and close.
    pub fn talked_before_greeting(&mut self) {
        if self.phase != Phase::Start || self.closed {
            return;
        }
        self.output.clear();
        self.input.clear();
        let text = format!(
            "{} Error: SMTP protocol synchronization (client talked before the greeting)",
            self.config.hostname
        );
        self.close_with(Reply::new(554, (5, 5, 0), text));
    }

    /// The client was idle too long (RFC 5321 §4.5.3.2): 421, then close.
    pub fn timeout(&mut self) {
        let text = format!("{} Error: timeout exceeded", self.config.hostname);
        self.close_with(Reply::new(421, (4, 4, 2), text));
    }

    /// The connection's place is needed for a new client (it made no
    /// progress for a while and the listener is full): 421, then close.
    pub fn evicted(&mut self) {
        let text = format!("{} Error: too many connections; closing a stalled session", self.config.hostname);
        self.close_with(Reply::new(421, (4, 7, 0), text));
    }

    /// Send `reply` and close (the I/O layer decided the session is over,
    /// e.g. an address banned for failed logins).
    pub fn close(&mut self, reply: Reply) {
        self.close_with(reply);
    }

    /// The server is stopping (RFC 5321 §3.8): 421, then close.
    pub fn shutdown(&mut self) {
        let text = format!("{} Service shutting down", self.config.hostname);
        self.close_with(Reply::new(421, (4, 3, 2), text));
    }

    /// True while message content (DATA or a BDAT chunk) is being received.
    pub fn in_data(&self) -> bool {
        matches!(self.mode, Mode::Data(_) | Mode::Chunk { .. })
    }

    /// The identity that AUTH established, if any.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// One step of reading. `Some` is an event for the caller; `None`
    /// means progress was made and the loop goes on.
    fn advance(&mut self) -> Option<Event> {
        match &mut self.mode {
            Mode::Command => {
                let frame = self.input.next_line(self.config.max_command_line);
                self.on_command_frame(frame)
            }
            Mode::Auth(_) => {
                let frame = self.input.next_line(auth::AUTH_LINE_MAX);
                self.on_auth_frame(frame)
            }
            Mode::Data(reader) => {
                let (used, done) = reader.push(self.input.rest());
                self.input.consume(used);
                if done { self.end_data() } else { Some(Event::NeedInput) }
            }
            Mode::Chunk { remaining, plan } => {
                let bytes = self.input.take(*remaining);
                *remaining -= bytes.len() as u64;
                if plan.keeps_data() {
                    self.tx.body.extend_from_slice(bytes);
                }
                if *remaining > 0 { Some(Event::NeedInput) } else { self.end_chunk() }
            }
        }
    }

    fn on_command_frame(&mut self, frame: Frame) -> Option<Event> {
        if frame == Frame::Incomplete {
            return Some(Event::NeedInput);
        }
        self.verb = "line";
        match frame {
            Frame::Line(range) => {
                let smtputf8 = self.tx.params.smtputf8;
                match Command::parse_with(self.input.get(range), smtputf8) {
                    Ok(command) => self.dispatch(command),
                    Err(reply) => self.reply(reply),
                }
            }
            // RFC 5321 §2.3.8
            Frame::BareLf => {
                self.reply(Reply::new(500, (5, 5, 2), "Error: bare LF in command; lines must end with CRLF"))
            }
            Frame::BareCr => {
                self.reply(Reply::new(500, (5, 5, 2), "Error: bare CR in command; lines must end with CRLF"))
            }
            // RFC 5321 §4.5.3.1.4
            Frame::TooLong => self.reply(Reply::new(500, (5, 5, 2), "Error: line too long")),
            Frame::Incomplete => {}
        }
        None
    }

    /// Queues a reply to a command, counting errors (`max_errors`).
    fn reply(&mut self, reply: Reply) {
        if self.closed {
            return;
        }
        self.output.extend_from_slice(&reply.to_bytes());
        if reply.code >= 400 {
            self.note_refusal(reply);
            self.count_error();
        }
    }

    /// Kept for the I/O layer's log; bounded should it never take them.
    fn note_refusal(&mut self, reply: Reply) {
        if self.refusals.len() < 64 {
            self.refusals.push(Refusal { command: self.verb, reply });
        }
    }

    /// One more error; at `max_errors` the session ends with `421 4.7.0`.
    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            let text = format!("{} Error: too many errors", self.config.hostname);
            self.close_with(Reply::new(421, (4, 7, 0), text));
        }
    }

    /// Queues a last reply; the session is closed from now on.
    fn close_with(&mut self, reply: Reply) {
        if self.closed {
            return;
        }
        self.output.extend_from_slice(&reply.to_bytes());
        if reply.code >= 400 {
            self.note_refusal(reply);
        }
        self.closed = true;
        self.pending = None;
        self.mode = Mode::Command;
    }

    /// Ends the mail transaction (RFC 5321 §4.1.1.5), keeping EHLO and AUTH.
    fn reset_transaction(&mut self) {
        self.tx = Transaction::default();
        if self.phase != Phase::Start {
            self.phase = Phase::Ready;
        }
    }
}

impl std::fmt::Debug for Session {
    // Buffers are left out: they may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("in_data", &self.in_data())
            .field("helo", &self.helo)
            .field("tls_active", &self.tls_active)
            .field("auth_user", &self.auth_user)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}
