//! One POP3 session, sans-IO: the states of RFC 1939 §3 (AUTHORIZATION,
//! TRANSACTION, UPDATE) and every command's reply, over the bytes the
//! client sends in and the reply bytes out. No sockets, no clock, no
//! storage: whatever needs the outside world is an [`Action`] that the
//! edge (`server.rs`) fulfils and answers with the matching method.
//!
//! Usage: [`Session::feed`] what the client sent, then call
//! [`Session::poll`] until it says [`Action::NeedInput`] (write
//! [`Session::take_output`] and read more) or [`Action::Close`] (write the
//! output and close). A question ([`Action::Authenticate`],
//! [`Action::LoadMaildrop`], [`Action::Retrieve`], [`Action::Commit`]) must
//! be answered before the next `poll`; asking again without answering
//! returns the same action. Replies to pipelined commands (RFC 2449 §6.6)
//! accumulate in the output and go out in one write.
//!
//! Rules kept here:
//! - Command lines are at most 255 octets with their CRLF (RFC 2449 §4);
//!   the rest of a longer line is dropped as it arrives and answered with
//!   one `-ERR`. Keywords are case-insensitive, arguments are separated by
//!   single spaces (RFC 1939 §3); anything malformed gets `-ERR` with a
//!   reason and the session goes on.
//! - USER/PASS and AUTH only under TLS unless `plaintext_auth` (RFC 2595
//!   §2.5 spirit; `-ERR [AUTH]`), STLS only before authentication and only
//!   once; input buffered before the TLS handshake is discarded.
//! - Message numbers are fixed at login (the maildrop snapshot); deleted
//!   messages are hidden from every command until RSET; deletions happen
//!   only at QUIT from TRANSACTION (the UPDATE state); a session that ends
//!   any other way deletes nothing (RFC 1939 §6).
//! - Multi-line replies are byte-stuffed and end with `.` CRLF (RFC 1939
//!   §3); message lines go out with CRLF whatever they were stored with.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// RFC 2449 §4: a command line is at most 255 octets, CRLF included.
pub const MAX_COMMAND_LINE: usize = 255;
/// A SASL response line (RFC 5034 §4 exempts it from the command limit);
/// a PLAIN response of three 255-octet fields is about 1 KiB of base64.
pub const MAX_AUTH_LINE: usize = 4096;

/// What a session needs to know about its server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our name, in the greeting.
    pub hostname: String,
    /// Allow USER/PASS and AUTH without TLS (loopback development only).
    pub plaintext_auth: bool,
    /// STLS can be offered (a certificate is loaded).
    pub stls: bool,
}

/// RFC 1939 §3: where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before a successful login (and while its maildrop is being opened).
    Authorization,
    /// Logged in, the maildrop snapshot loaded.
    Transaction,
    /// QUIT from TRANSACTION: the deletions are being applied.
    Update,
    /// Nothing more happens; the edge closes the connection.
    Closed,
}

/// What the session needs from the edge next.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Write [`Session::take_output`], read more bytes, [`Session::feed`] them.
    NeedInput,
    /// Write the output (it holds `+OK` to STLS), run the TLS handshake,
    /// then call [`Session::tls_established`].
    StartTls,
    /// Check credentials; answer with [`Session::auth_result`].
    Authenticate { user: String, pass: String },
    /// Lock and snapshot this user's maildrop (the INBOX); answer with
    /// [`Session::maildrop_result`].
    LoadMaildrop { user: String },
    /// Read message number `index` (1-based) stored under `uid`; answer with
    /// [`Session::retrieve_result`]. `top_lines`: TOP with that many body lines.
    Retrieve { index: u32, uid: u32, top_lines: Option<u32> },
    /// QUIT in TRANSACTION (the UPDATE state): remove `deleted_uids` from the
    /// maildrop and mark `seen_uids` (messages retrieved with RETR and kept)
    /// `\Seen`; answer with [`Session::commit_result`].
    Commit { deleted_uids: Vec<u32>, seen_uids: Vec<u32> },
    /// Write the output and close the connection.
    Close,
}

impl std::fmt::Debug for Action {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::NeedInput => f.write_str("NeedInput"),
            Action::StartTls => f.write_str("StartTls"),
            Action::Authenticate { user, .. } => {
                f.debug_struct("Authenticate").field("user", user).field("pass", &"<redacted>").finish()
            }
            Action::LoadMaildrop { user } => f.debug_struct("LoadMaildrop").field("user", user).finish(),
            Action::Retrieve { index, uid, top_lines } => f
                .debug_struct("Retrieve")
                .field("index", index)
                .field("uid", uid)
                .field("top_lines", top_lines)
                .finish(),
            Action::Commit { deleted_uids, seen_uids } => {
                f.debug_struct("Commit").field("deleted_uids", deleted_uids).field("seen_uids", seen_uids).finish()
            }
            Action::Close => f.write_str("Close"),
        }
    }
}

/// One message of the maildrop snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaildropEntry {
    pub uid: u32,
    /// Octets as stored (CRLF line ends), what LIST and STAT report.
    pub size: u64,
}

/// The maildrop at login: the INBOX's UIDVALIDITY and its messages in UID
/// order, which become message numbers 1, 2, ...
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Maildrop {
    pub uidvalidity: u32,
    pub messages: Vec<MaildropEntry>,
}

/// Why [`Action::Authenticate`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user or wrong password: `-ERR [AUTH]` (RFC 3206 §4).
    Credentials,
    /// Storage trouble: `-ERR [SYS/TEMP]` (RFC 3206 §4).
    Temporary,
}

/// Why [`Action::LoadMaildrop`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaildropError {
    /// Another POP3 session holds the maildrop: `-ERR [IN-USE]` (RFC 2449 §8.1.2).
    InUse,
    /// Storage trouble: `-ERR [SYS/TEMP]`.
    Temporary,
    /// The maildrop does not exist: `-ERR [SYS/PERM]`.
    Missing,
}

/// Why [`Action::Retrieve`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrieveError {
    /// The message was removed by another client (IMAP) since login.
    Gone,
    /// Storage trouble.
    Temporary,
}

/// One message in the session's snapshot.
#[derive(Debug, Clone, Copy)]
struct Msg {
    uid: u32,
    size: u64,
    deleted: bool,
    retrieved: bool,
}

/// How the next line is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Command,
    /// The client response after `AUTH PLAIN` and our `+ ` (RFC 5034 §4).
    AuthResponse,
}

/// What the session waits for from the edge.
#[derive(Clone)]
enum Pending {
    StartTls,
    Authenticate { user: String, pass: String },
    LoadMaildrop { user: String },
    Retrieve { index: u32, top_lines: Option<u32> },
    Commit { deleted_uids: Vec<u32>, seen_uids: Vec<u32> },
}

/// One line out of the input.
enum Frame {
    Incomplete,
    TooLong,
    Line(Vec<u8>),
}

/// One POP3 session, from greeting to close. See the module docs.
pub struct Session {
    cfg: SessionConfig,
    tls: bool,
    input: Vec<u8>,
    /// Where the unread input starts.
    start: usize,
    /// The rest of an over-long line is being dropped.
    discarding: bool,
    output: Vec<u8>,
    state: State,
    mode: Mode,
    /// The name given with USER, for the PASS that must come next.
    user_given: Option<String>,
    /// The authenticated user, once the maildrop is open.
    user: Option<String>,
    uidvalidity: u32,
    messages: Vec<Msg>,
    pending: Option<Pending>,
}

impl std::fmt::Debug for Session {
    // Buffers are left out: they may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("messages", &self.messages.len())
            .finish_non_exhaustive()
    }
}

/// A message number argument that does not name a live message.
enum BadMsg {
    Syntax,
    NoSuch,
    Deleted(usize),
}

impl Session {
    /// A new session; the greeting is queued (RFC 1939 §4). `tls`: the
    /// connection is already TLS (implicit TLS, port 995 style).
    pub fn new(cfg: SessionConfig, tls: bool) -> Session {
        let mut s = Session {
            tls,
            input: Vec::new(),
            start: 0,
            discarding: false,
            output: Vec::new(),
            state: State::Authorization,
            mode: Mode::Command,
            user_given: None,
            user: None,
            uidvalidity: 0,
            messages: Vec::new(),
            pending: None,
            cfg,
        };
        // No APOP timestamp: APOP is not offered.
        s.ok(&format!("{} facteur POP3 server ready", s.cfg.hostname));
        s
    }

    /// Bytes received from the client; they wait while a question is open.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Processes buffered input until the session needs something.
    pub fn poll(&mut self) -> Action {
        loop {
            if self.state == State::Closed {
                return Action::Close;
            }
            if let Some(p) = &self.pending {
                return self.action(p);
            }
            match self.next_line() {
                Frame::Incomplete => return Action::NeedInput,
                Frame::TooLong => {
                    let limit = if self.mode == Mode::AuthResponse { MAX_AUTH_LINE } else { MAX_COMMAND_LINE };
                    self.mode = Mode::Command;
                    self.user_given = None;
                    self.err(&format!("line too long: at most {limit} octets with CRLF (RFC 2449 \u{a7}4)"));
                }
                Frame::Line(line) => self.on_line(line),
            }
        }
    }

    /// The reply bytes queued so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True while part of a command line (or a SASL response) is buffered:
    /// the edge waits with the request's deadline, not the idle timeout.
    pub fn has_partial_input(&self) -> bool {
        self.start < self.input.len() || self.discarding || self.mode == Mode::AuthResponse
    }

    /// The connection's place is needed for a new client: nothing is deleted.
    pub fn evicted(&mut self) {
        self.close_with("[SYS/TEMP] too many connections; closing a stalled session");
    }

    /// How many reply bytes are queued (the edge flushes big RETR replies early).
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The authenticated user, once the maildrop is open.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The TLS handshake after STLS succeeded (RFC 2595 §4): every byte the
    /// client sent before it is discarded, and so is a pending USER.
    pub fn tls_established(&mut self) {
        if !matches!(self.pending, Some(Pending::StartTls)) {
            return;
        }
        self.pending = None;
        self.input.clear();
        self.start = 0;
        self.discarding = false;
        self.mode = Mode::Command;
        self.user_given = None;
        self.tls = true;
    }

    /// The answer to [`Action::Authenticate`]: the canonical user name, or why not.
    pub fn auth_result(&mut self, result: Result<String, AuthError>) {
        if !matches!(self.pending, Some(Pending::Authenticate { .. })) {
            return;
        }
        self.pending = None;
        match result {
            Ok(user) => self.pending = Some(Pending::LoadMaildrop { user }),
            Err(AuthError::Credentials) => self.err("[AUTH] invalid user name or password"),
            Err(AuthError::Temporary) => self.err("[SYS/TEMP] cannot check credentials now; try again later"),
        }
    }

    /// The answer to [`Action::LoadMaildrop`]: the snapshot (TRANSACTION
    /// starts), or why the maildrop cannot be opened (still AUTHORIZATION).
    pub fn maildrop_result(&mut self, result: Result<Maildrop, MaildropError>) {
        let Some(Pending::LoadMaildrop { user }) = self.pending.take_if(|p| matches!(p, Pending::LoadMaildrop { .. }))
        else {
            return;
        };
        match result {
            Ok(m) => {
                self.uidvalidity = m.uidvalidity;
                self.messages = m
                    .messages
                    .iter()
                    .map(|e| Msg { uid: e.uid, size: e.size, deleted: false, retrieved: false })
                    .collect();
                self.state = State::Transaction;
                let (n, octets) = self.totals();
                self.ok(&format!("{user} has {n} message{} ({octets} octets)", plural(n)));
                self.user = Some(user);
            }
            Err(MaildropError::InUse) => self.err("[IN-USE] the maildrop is open in another POP3 session"),
            Err(MaildropError::Temporary) => self.err("[SYS/TEMP] cannot open the maildrop now; try again later"),
            Err(MaildropError::Missing) => self.err("[SYS/PERM] this user has no INBOX"),
        }
    }

    /// The answer to [`Action::Retrieve`]: the raw message as stored.
    pub fn retrieve_result(&mut self, result: Result<Vec<u8>, RetrieveError>) {
        let Some(Pending::Retrieve { index, top_lines }) =
            self.pending.take_if(|p| matches!(p, Pending::Retrieve { .. }))
        else {
            return;
        };
        let i = index as usize - 1;
        match result {
            Ok(data) => match top_lines {
                None => {
                    let size = self.messages[i].size;
                    self.messages[i].retrieved = true;
                    self.ok(&format!("{size} octets"));
                    write_stuffed(&mut self.output, &data);
                }
                Some(n) => {
                    self.ok("top of message follows");
                    write_stuffed(&mut self.output, top(&data, n));
                }
            },
            Err(RetrieveError::Gone) => self.err(&format!("message {index} was removed by another session")),
            Err(RetrieveError::Temporary) => self.err("[SYS/TEMP] cannot read the message now; try again later"),
        }
    }

    /// The answer to [`Action::Commit`]: whether the deletions were applied.
    /// The session is over either way (RFC 1939 §6).
    pub fn commit_result(&mut self, done: bool) {
        if self.pending.take_if(|p| matches!(p, Pending::Commit { .. })).is_none() {
            return;
        }
        if done {
            let left = self.messages.iter().filter(|m| !m.deleted).count();
            self.ok(&format!("{} facteur POP3 signing off ({left} message{} left)", self.cfg.hostname, plural(left)));
        } else {
            self.err("[SYS/TEMP] some deleted messages not removed");
        }
        self.state = State::Closed;
    }

    /// The client was silent too long (RFC 1939 §3): nothing is deleted.
    pub fn timeout(&mut self) {
        self.close_with("autologout: idle for too long; no messages deleted");
    }

    /// The server is stopping: nothing is deleted.
    pub fn shutdown(&mut self) {
        self.close_with("[SYS/TEMP] server shutting down; no messages deleted");
    }

    /// A last `-ERR` (e.g. too many failed logins), then close.
    pub fn close_with(&mut self, text: &str) {
        if self.state == State::Closed {
            return;
        }
        self.err(text);
        self.pending = None;
        self.state = State::Closed;
    }

    fn action(&self, p: &Pending) -> Action {
        match p {
            Pending::StartTls => Action::StartTls,
            Pending::Authenticate { user, pass } => Action::Authenticate { user: user.clone(), pass: pass.clone() },
            Pending::LoadMaildrop { user } => Action::LoadMaildrop { user: user.clone() },
            Pending::Retrieve { index, top_lines } => {
                Action::Retrieve { index: *index, uid: self.messages[*index as usize - 1].uid, top_lines: *top_lines }
            }
            Pending::Commit { deleted_uids, seen_uids } => {
                Action::Commit { deleted_uids: deleted_uids.clone(), seen_uids: seen_uids.clone() }
            }
        }
    }

    fn next_line(&mut self) -> Frame {
        let max = if self.mode == Mode::AuthResponse { MAX_AUTH_LINE } else { MAX_COMMAND_LINE };
        let rest = &self.input[self.start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(p) => {
                let mut line = rest[..p].to_vec();
                self.start += p + 1;
                if std::mem::take(&mut self.discarding) || p + 1 > max {
                    return Frame::TooLong;
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Frame::Line(line)
            }
            None => {
                // No line end within the limit: this line cannot be valid.
                if rest.len() >= max {
                    self.discarding = true;
                    self.input.clear();
                    self.start = 0;
                }
                Frame::Incomplete
            }
        }
    }

    fn out_line(&mut self, s: &str) {
        self.output.extend_from_slice(s.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn ok(&mut self, text: &str) {
        self.out_line(&format!("+OK {text}"));
    }

    fn err(&mut self, text: &str) {
        self.out_line(&format!("-ERR {text}"));
    }

    /// Live (not deleted) messages and their octets.
    fn totals(&self) -> (usize, u64) {
        self.messages.iter().filter(|m| !m.deleted).fold((0, 0), |(n, o), m| (n + 1, o + m.size))
    }

    fn auth_allowed(&self) -> bool {
        self.tls || self.cfg.plaintext_auth
    }

    fn on_line(&mut self, line: Vec<u8>) {
        if self.mode == Mode::AuthResponse {
            self.mode = Mode::Command;
            self.on_auth_response(&line);
            return;
        }
        // RFC 1939 §7: PASS must come right after USER.
        let user_given = self.user_given.take();
        let Ok(text) = String::from_utf8(line) else {
            self.err("command line is not valid UTF-8");
            return;
        };
        if text.is_empty() {
            self.err("empty command line");
            return;
        }
        if text.bytes().any(|b| b < 0x20 || b == 0x7f) {
            self.err("control characters in command line");
            return;
        }
        let (keyword, rest) = match text.split_once(' ') {
            Some((k, r)) => (k, Some(r)),
            None => (text.as_str(), None),
        };
        let kw = keyword.to_ascii_uppercase();
        // PASS takes the rest of the line: a password may hold spaces (RFC 1939 §7).
        if kw == "PASS" {
            self.cmd_pass(user_given, rest);
            return;
        }
        let args: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
        if args.iter().any(|a| a.is_empty()) {
            self.err("syntax error: arguments are separated by single spaces (RFC 1939 \u{a7}3)");
            return;
        }
        self.dispatch(&kw, &args);
    }

    fn arity(&mut self, kw: &str, args: &[&str], min: usize, max: usize) -> bool {
        if args.len() < min || args.len() > max {
            let want = match (min, max) {
                (0, 0) => "no argument".to_string(),
                (a, b) if a == b => format!("{a} argument{}", plural(a)),
                (a, b) => format!("{a} to {b} arguments"),
            };
            self.err(&format!("syntax error: {kw} takes {want}"));
            return false;
        }
        true
    }

    fn dispatch(&mut self, kw: &str, args: &[&str]) {
        use State::*;
        let state = self.state;
        match kw {
            "CAPA" => {
                if self.arity(kw, args, 0, 0) {
                    self.capa();
                }
            }
            "QUIT" => {
                if self.arity(kw, args, 0, 0) {
                    self.quit();
                }
            }
            "APOP" => self.err("APOP is not supported; use USER and PASS, or AUTH PLAIN, under TLS"),
            "USER" | "AUTH" | "STLS" if state != Authorization => {
                self.err(&format!("{kw} is not valid in the TRANSACTION state: already logged in"))
            }
            "USER" => {
                if self.arity(kw, args, 1, 1) {
                    self.cmd_user(args[0]);
                }
            }
            "AUTH" => {
                if self.arity(kw, args, 0, 2) {
                    self.cmd_auth(args);
                }
            }
            "STLS" => {
                if self.arity(kw, args, 0, 0) {
                    self.cmd_stls();
                }
            }
            "STAT" | "LIST" | "RETR" | "DELE" | "NOOP" | "RSET" | "TOP" | "UIDL" if state != Transaction => {
                self.err(&format!("{kw} is valid only in the TRANSACTION state: log in first"))
            }
            "STAT" => {
                if self.arity(kw, args, 0, 0) {
                    let (n, octets) = self.totals();
                    self.ok(&format!("{n} {octets}"));
                }
            }
            "LIST" => {
                if self.arity(kw, args, 0, 1) {
                    self.cmd_list(args.first().copied(), false);
                }
            }
            "UIDL" => {
                if self.arity(kw, args, 0, 1) {
                    self.cmd_list(args.first().copied(), true);
                }
            }
            "RETR" => {
                if self.arity(kw, args, 1, 1)
                    && let Some(i) = self.message(args[0])
                {
                    self.pending = Some(Pending::Retrieve { index: i as u32 + 1, top_lines: None });
                }
            }
            "TOP" => {
                if self.arity(kw, args, 2, 2)
                    && let Some(i) = self.message(args[0])
                {
                    match parse_count(args[1]) {
                        Some(n) => self.pending = Some(Pending::Retrieve { index: i as u32 + 1, top_lines: Some(n) }),
                        None => self.err("syntax error: the number of lines must be a non-negative number"),
                    }
                }
            }
            "DELE" => {
                if self.arity(kw, args, 1, 1)
                    && let Some(i) = self.message(args[0])
                {
                    self.messages[i].deleted = true;
                    self.ok(&format!("message {} deleted", i + 1));
                }
            }
            "NOOP" => {
                if self.arity(kw, args, 0, 0) {
                    self.ok("");
                }
            }
            "RSET" => {
                if self.arity(kw, args, 0, 0) {
                    for m in &mut self.messages {
                        m.deleted = false;
                    }
                    let (n, octets) = self.totals();
                    self.ok(&format!("maildrop has {n} message{} ({octets} octets)", plural(n)));
                }
            }
            _ => self.err("unknown command"),
        }
    }

    /// RFC 2449 §5: what is on offer now.
    fn capa(&mut self) {
        let mut caps = vec!["TOP", "UIDL"];
        if self.state == State::Authorization {
            if self.auth_allowed() {
                caps.push("USER");
                caps.push("SASL PLAIN");
            }
            if self.cfg.stls && !self.tls {
                caps.push("STLS");
            }
        }
        caps.extend(["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION facteur"]);
        self.ok("capability list follows");
        for c in caps {
            self.out_line(c);
        }
        self.out_line(".");
    }

    fn quit(&mut self) {
        if self.state != State::Transaction {
            self.ok(&format!("{} facteur POP3 signing off", self.cfg.hostname));
            self.state = State::Closed;
            return;
        }
        // RFC 1939 §6: the UPDATE state.
        self.state = State::Update;
        let deleted_uids: Vec<u32> = self.messages.iter().filter(|m| m.deleted).map(|m| m.uid).collect();
        let seen_uids: Vec<u32> = self.messages.iter().filter(|m| m.retrieved && !m.deleted).map(|m| m.uid).collect();
        self.pending = Some(Pending::Commit { deleted_uids, seen_uids });
    }

    fn refuse_plaintext(&mut self) {
        self.err("[AUTH] authentication without TLS is disabled; use STLS first (RFC 2595)");
    }

    fn cmd_user(&mut self, name: &str) {
        if !self.auth_allowed() {
            self.refuse_plaintext();
            return;
        }
        // Always +OK: whether a user exists is not told (RFC 1939 §13).
        self.user_given = Some(name.to_string());
        self.ok("send PASS");
    }

    fn cmd_pass(&mut self, user_given: Option<String>, rest: Option<&str>) {
        if self.state != State::Authorization {
            self.err("PASS is not valid in the TRANSACTION state: already logged in");
            return;
        }
        if !self.auth_allowed() {
            self.refuse_plaintext();
            return;
        }
        let Some(user) = user_given else {
            self.err("PASS must come right after USER");
            return;
        };
        match rest {
            Some(pass) if !pass.is_empty() => {
                self.pending = Some(Pending::Authenticate { user, pass: pass.to_string() });
            }
            _ => self.err("syntax error: PASS takes the password"),
        }
    }

    fn cmd_auth(&mut self, args: &[&str]) {
        if !self.auth_allowed() {
            self.refuse_plaintext();
            return;
        }
        let Some(mechanism) = args.first() else {
            // The mechanism list (the CAPA SASL line says the same).
            self.ok("supported mechanisms follow");
            self.out_line("PLAIN");
            self.out_line(".");
            return;
        };
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            self.err("unsupported authentication mechanism; PLAIN is offered");
            return;
        }
        match args.get(1) {
            // RFC 5034 §4: "=" is an empty initial response.
            Some(&"=") => self.plain(Some(Vec::new())),
            Some(initial) => self.plain(STANDARD.decode(initial).ok()),
            None => {
                self.out_line("+ ");
                self.mode = Mode::AuthResponse;
            }
        }
    }

    fn on_auth_response(&mut self, line: &[u8]) {
        // RFC 5034 §4: "*" cancels the exchange.
        if line == b"*" {
            self.err("authentication cancelled");
            return;
        }
        self.plain(STANDARD.decode(line).ok());
    }

    /// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`.
    fn plain(&mut self, message: Option<Vec<u8>>) {
        let Some(message) = message else {
            self.err("malformed base64 in the SASL response");
            return;
        };
        let parts: Vec<&[u8]> = message.split(|&b| b == 0).collect();
        let [authzid, authcid, passwd] = parts.as_slice() else {
            self.err("malformed PLAIN response: expected authzid NUL authcid NUL password");
            return;
        };
        let (Ok(authzid), Ok(user), Ok(pass)) =
            (std::str::from_utf8(authzid), std::str::from_utf8(authcid), std::str::from_utf8(passwd))
        else {
            self.err("malformed PLAIN response: not UTF-8");
            return;
        };
        if user.is_empty() || pass.is_empty() {
            self.err("malformed PLAIN response: empty user name or password");
            return;
        }
        if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(user) {
            self.err("[AUTH] cannot act as another user");
            return;
        }
        self.pending = Some(Pending::Authenticate { user: user.to_string(), pass: pass.to_string() });
    }

    fn cmd_stls(&mut self) {
        if self.tls {
            self.err("already under TLS");
        } else if !self.cfg.stls {
            self.err("STLS is not available");
        } else {
            self.ok("begin TLS negotiation");
            self.pending = Some(Pending::StartTls);
        }
    }

    /// LIST or UIDL, of one message or of all live ones.
    fn cmd_list(&mut self, arg: Option<&str>, uidl: bool) {
        let value =
            |s: &Session, m: &Msg| if uidl { format!("{}.{}", s.uidvalidity, m.uid) } else { m.size.to_string() };
        match arg {
            Some(arg) => {
                if let Some(i) = self.message(arg) {
                    let v = value(self, &self.messages[i]);
                    self.ok(&format!("{} {v}", i + 1));
                }
            }
            None => {
                let (n, octets) = self.totals();
                if uidl {
                    self.ok("unique-id listing follows");
                } else {
                    self.ok(&format!("{n} message{} ({octets} octets)", plural(n)));
                }
                let lines: Vec<String> = self
                    .messages
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| !m.deleted)
                    .map(|(i, m)| format!("{} {}", i + 1, value(self, m)))
                    .collect();
                for l in lines {
                    self.out_line(&l);
                }
                self.out_line(".");
            }
        }
    }

    /// The index of a live message from a message-number argument, or the
    /// `-ERR` is sent.
    fn message(&mut self, arg: &str) -> Option<usize> {
        let r = match parse_count(arg) {
            None => Err(BadMsg::Syntax),
            Some(0) => Err(BadMsg::NoSuch),
            Some(n) => match self.messages.get(n as usize - 1) {
                None => Err(BadMsg::NoSuch),
                Some(m) if m.deleted => Err(BadMsg::Deleted(n as usize)),
                Some(_) => Ok(n as usize - 1),
            },
        };
        match r {
            Ok(i) => Some(i),
            Err(BadMsg::Syntax) => {
                self.err("syntax error: a message number is a decimal number");
                None
            }
            Err(BadMsg::NoSuch) => {
                self.err("no such message");
                None
            }
            Err(BadMsg::Deleted(n)) => {
                self.err(&format!("message {n} already deleted"));
                None
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A decimal number (digits only); too large for u32 is u32::MAX.
fn parse_count(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// The lines of a message, without their line ends (LF or CRLF); a last
/// line without an end counts.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let empty = data.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty).map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// TOP (RFC 1939 §7): the header section, the blank line, and the first
/// `n` lines of the body.
fn top(data: &[u8], n: u32) -> &[u8] {
    let mut pos = 0;
    let mut in_body = false;
    let mut body_lines = 0u32;
    while pos < data.len() {
        if in_body && body_lines >= n {
            break;
        }
        let end = data[pos..].iter().position(|&b| b == b'\n').map_or(data.len(), |p| pos + p + 1);
        let line = &data[pos..end];
        if in_body {
            body_lines += 1;
        } else if line == b"\r\n" || line == b"\n" {
            in_body = true;
        }
        pos = end;
    }
    &data[..pos]
}

/// A multi-line response body (RFC 1939 §3): each line with CRLF, a
/// leading "." doubled, then the terminating ".".
fn write_stuffed(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len() + data.len() / 32 + 3);
    for line in lines(data) {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests;
