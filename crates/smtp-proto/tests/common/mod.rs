//! Byte-script harness: feed bytes to a [`Session`], answer its events with
//! a closure, and collect the reply bytes.
#![allow(dead_code)] // each test binary uses a different part

use facteur_smtp_proto::{Envelope, Event, Reply, Session, SessionConfig};

/// How a test answers questions: `Ok(s)` accepts (for AUTH `s` is the user,
/// for a message the queue id), `Err(reply)` refuses with that reply.
pub type Answer = Box<dyn FnMut(&Event) -> Result<String, Reply>>;

/// Accepts everything; AUTH needs password "secret"; messages are queued
/// as Q1, Q2, ...
pub fn accept_all() -> Answer {
    let mut queued = 0;
    Box::new(move |event| match event {
        Event::Auth(req) if req.password == "secret" => Ok(req.username.clone()),
        Event::Auth(_) => Err(Reply::new(535, (5, 7, 8), "Error: authentication failed")),
        Event::Message { .. } => {
            queued += 1;
            Ok(format!("Q{queued}"))
        }
        _ => Ok(String::new()),
    })
}

pub struct Harness {
    pub session: Session,
    answer: Answer,
    /// Every reply byte, greeting included.
    pub output: Vec<u8>,
    /// Messages handed over, in order.
    pub messages: Vec<(Envelope, Vec<u8>)>,
    /// A short trace of the events seen: "mail", "rcpt", "auth", "message",
    /// "starttls", "close".
    pub events: Vec<&'static str>,
    pub closed: bool,
    /// Call `tls_established` right after StartTls (else leave it pending).
    pub auto_tls: bool,
}

impl Harness {
    pub fn new(config: SessionConfig) -> Harness {
        Harness::with(config, accept_all())
    }

    pub fn with(config: SessionConfig, answer: Answer) -> Harness {
        let mut h = Harness {
            session: Session::new(config),
            answer,
            output: Vec::new(),
            messages: Vec::new(),
            events: Vec::new(),
            closed: false,
            auto_tls: true,
        };
        h.run();
        h
    }

    /// Feeds `bytes`, runs to the next NeedInput/Close, returns the replies
    /// produced meanwhile.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> String {
        let before = self.output.len();
        self.session.feed(bytes.as_ref());
        self.run();
        String::from_utf8_lossy(&self.output[before..]).into_owned()
    }

    /// The whole transcript of replies so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    pub fn run(&mut self) {
        loop {
            let event = self.session.poll();
            match &event {
                Event::NeedInput => break,
                Event::Close => {
                    if !self.closed {
                        self.events.push("close");
                    }
                    self.closed = true;
                    break;
                }
                Event::StartTls => {
                    self.events.push("starttls");
                    if !self.auto_tls {
                        break;
                    }
                    self.output.extend(self.session.take_output());
                    self.session.tls_established();
                }
                Event::Auth(_) => {
                    self.events.push("auth");
                    let answer = (self.answer)(&event);
                    self.session.auth_result(answer);
                }
                Event::Mail { .. } => {
                    self.events.push("mail");
                    let answer = (self.answer)(&event).map(drop);
                    self.session.mail_result(answer);
                }
                Event::Rcpt { .. } => {
                    self.events.push("rcpt");
                    let answer = (self.answer)(&event).map(drop);
                    self.session.rcpt_result(answer);
                }
                Event::Message { .. } => {
                    self.events.push("message");
                    let reply = match (self.answer)(&event) {
                        Ok(id) => Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}")),
                        Err(reply) => reply,
                    };
                    if let Event::Message { envelope, data } = event {
                        self.messages.push((envelope, data));
                    }
                    self.session.message_result(reply);
                }
            }
        }
        self.output.extend(self.session.take_output());
    }
}

/// Reply lines joined with CRLF, each line ending in CRLF.
pub fn lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\r\n")).collect()
}

pub fn greeting() -> String {
    lines(&["220 mx.example ESMTP facteur"])
}

/// Config with a recognizable host name; other fields default.
pub fn config() -> SessionConfig {
    SessionConfig { hostname: "mx.example".into(), ..SessionConfig::default() }
}

/// The EHLO reply for `config()` without TLS.
pub fn ehlo_reply() -> String {
    lines(&[
        "250-mx.example",
        "250-PIPELINING",
        "250-SIZE 26214400",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
        "250-DSN",
        "250-CHUNKING",
    ])
    .replace("250-CHUNKING\r\n", "250 CHUNKING\r\n")
}

/// A harness past EHLO.
pub fn greeted(config: SessionConfig) -> Harness {
    let mut h = Harness::new(config);
    h.send("EHLO client.example\r\n");
    h
}

/// A harness with an open transaction: MAIL and one RCPT accepted.
pub fn in_transaction(config: SessionConfig) -> Harness {
    let mut h = greeted(config);
    let out = h.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
    assert_eq!(out, lines(&["250 2.1.0 Ok", "250 2.1.5 Ok"]));
    h
}
