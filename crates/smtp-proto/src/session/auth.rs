//! AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms.
//!
//! The session only decodes credentials; checking them is the I/O layer's
//! job ([`Event::Auth`]). Mechanisms are offered only under TLS.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{AuthRequest, Event, Mode, Pending, Session};
use crate::framing::Frame;
use crate::reply::Reply;

/// RFC 4954 §4: a continuation line may hold 12288 octets of base64.
pub(super) const AUTH_LINE_MAX: usize = 12288;

/// RFC 4954 §4: the server challenge is base64; LOGIN asks these two.
const LOGIN_USERNAME: &str = "VXNlcm5hbWU6"; // "Username:"
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6"; // "Password:"

/// Which response the next continuation line carries.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum AuthStep {
    Plain,
    LoginUsername,
    LoginPassword { username: String },
}

impl std::fmt::Debug for AuthStep {
    // The user name stays out of logs, like the rest of the exchange.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthStep::Plain => "Plain",
            AuthStep::LoginUsername => "LoginUsername",
            AuthStep::LoginPassword { .. } => "LoginPassword",
        })
    }
}

fn bad_base64() -> Reply {
    Reply::new(501, (5, 5, 2), "Error: bad base64 data")
}

/// A response line decoded, or `None` when it is not canonical base64.
fn decode(line: &[u8]) -> Option<Vec<u8>> {
    STANDARD.decode(line).ok()
}

/// RFC 4954 §4: in the AUTH command, "=" is an empty initial response.
fn decode_initial(initial: &str) -> Option<Vec<u8>> {
    if initial == "=" { Some(Vec::new()) } else { decode(initial.as_bytes()) }
}

/// A non-empty UTF-8 string (RFC 4616 §2: authcid and passwd are 1*SAFE).
fn non_empty_utf8(bytes: Vec<u8>) -> Option<String> {
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

/// RFC 4616 §2: `[authzid] UTF8NUL authcid UTF8NUL passwd`.
fn parse_plain(message: Vec<u8>) -> Option<AuthRequest> {
    let mut parts = message.split(|&b| b == 0);
    let (authzid, username, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let authzid = String::from_utf8(authzid.to_vec()).ok()?;
    Some(AuthRequest {
        mechanism: "PLAIN".into(),
        authzid: (!authzid.is_empty()).then_some(authzid),
        username: non_empty_utf8(username.to_vec())?,
        password: non_empty_utf8(password.to_vec())?,
    })
}

impl Session {
    /// The AUTH command; the table already checked that AUTH is offered
    /// and that no transaction is under way (RFC 4954 §4).
    pub(super) fn cmd_auth(&mut self, mechanism: String, initial: Option<String>) {
        // RFC 4954 §6 / RFC 3207: no passwords in the clear.
        if !self.tls_active {
            let text = "Encryption required for requested authentication mechanism";
            self.reply(Reply::new(538, (5, 7, 11), text));
            return;
        }
        // RFC 4954 §4: AUTH once per session.
        if self.auth_user.is_some() {
            self.reply(Reply::new(503, (5, 5, 1), "Error: already authenticated"));
            return;
        }
        match (mechanism.as_str(), initial) {
            ("PLAIN", Some(initial)) => {
                let request = decode_initial(&initial).and_then(parse_plain);
                self.ask_auth(request);
            }
            ("PLAIN", None) => self.challenge(AuthStep::Plain, ""),
            ("LOGIN", Some(initial)) => {
                let username = decode_initial(&initial).and_then(non_empty_utf8);
                self.login_username(username);
            }
            ("LOGIN", None) => self.challenge(AuthStep::LoginUsername, LOGIN_USERNAME),
            _ => self.reply(Reply::new(504, (5, 5, 4), "Unrecognized authentication type")),
        }
    }

    /// A continuation line (or its absence) during the exchange.
    pub(super) fn on_auth_frame(&mut self, frame: Frame) -> Option<Event> {
        let step = match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::Auth(step) => step,
            other => {
                self.mode = other;
                return None;
            }
        };
        // Every outcome but a complete line ends the exchange.
        let line = match frame {
            Frame::Incomplete => {
                self.mode = Mode::Auth(step);
                return Some(Event::NeedInput);
            }
            Frame::Line(range) => self.input.get(range),
            // RFC 4954 §4
            Frame::TooLong => {
                let text = "Authentication Exchange line is too long";
                self.reply(Reply::new(500, (5, 5, 6), text));
                return None;
            }
            // RFC 5321 §2.3.8
            Frame::BareLf | Frame::BareCr => {
                let text = "Error: bare CR or LF in command; lines must end with CRLF";
                self.reply(Reply::new(500, (5, 5, 2), text));
                return None;
            }
        };
        // RFC 4954 §4: "*" cancels the exchange.
        if line == b"*" {
            self.reply(Reply::new(501, (5, 0, 0), "Authentication cancelled"));
            return None;
        }
        let response = decode(line);
        match step {
            AuthStep::Plain => self.ask_auth(response.and_then(parse_plain)),
            AuthStep::LoginUsername => self.login_username(response.and_then(non_empty_utf8)),
            AuthStep::LoginPassword { username } => {
                let request = response.and_then(non_empty_utf8).map(|password| AuthRequest {
                    mechanism: "LOGIN".into(),
                    authzid: None,
                    username,
                    password,
                });
                self.ask_auth(request);
            }
        }
        None
    }

    /// Sends a 334 challenge (no enhanced code, RFC 2034 §3) and waits for
    /// the response line.
    fn challenge(&mut self, step: AuthStep, text: &str) {
        self.reply(Reply::plain(334, text));
        self.mode = Mode::Auth(step);
    }

    fn login_username(&mut self, username: Option<String>) {
        match username {
            Some(username) => {
                self.challenge(AuthStep::LoginPassword { username }, LOGIN_PASSWORD);
            }
            None => self.reply(bad_base64()),
        }
    }

    /// Asks the I/O layer to check the credentials, or refuses malformed ones.
    fn ask_auth(&mut self, request: Option<AuthRequest>) {
        match request {
            Some(request) => self.pending = Some(Pending::Auth(request)),
            None => self.reply(bad_base64()),
        }
    }
}
