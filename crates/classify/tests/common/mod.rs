//! A message under test: owns what [`Facts`] borrows, starts as an ordinary
//! MX delivery, and is changed one fact at a time.

#![allow(dead_code)] // each test file uses its own subset

use std::net::IpAddr;

use facteur_classify::{Class, ClassifyConfig, Decision, Facts, Listener, classify};

/// A header section and body with nothing that marks a class.
pub const PLAIN: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Bob <bob@example.net>\r\n\
Subject: Lunch on Friday\r\n\
Message-ID: <lunch-1@example.org>\r\n\
\r\n\
Hi Bob, lunch on Friday?\r\n";

pub struct Msg {
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub auth_user: Option<String>,
    pub client_ip: IpAddr,
    pub message: Vec<u8>,
    pub listener: Listener,
    pub identical_recent: u32,
    pub authenticated: Option<bool>,
}

impl Msg {
    /// alice@example.org to bob@example.net over MX from 192.0.2.10.
    pub fn mx() -> Msg {
        Msg {
            mail_from: "alice@example.org".into(),
            recipients: vec!["bob@example.net".into()],
            auth_user: None,
            client_ip: "192.0.2.10".parse().unwrap(),
            message: PLAIN.to_vec(),
            listener: Listener::Mx,
            identical_recent: 0,
            authenticated: None,
        }
    }

    /// The same message submitted by the authenticated user alice.
    pub fn submission() -> Msg {
        Msg { auth_user: Some("alice".into()), listener: Listener::Submission, ..Msg::mx() }
    }

    pub fn from(mut self, mail_from: &str) -> Msg {
        self.mail_from = mail_from.into();
        self
    }

    pub fn to(mut self, recipients: &[&str]) -> Msg {
        self.recipients = recipients.iter().map(|r| r.to_string()).collect();
        self
    }

    pub fn user(mut self, user: &str) -> Msg {
        self.auth_user = Some(user.into());
        self
    }

    pub fn ip(mut self, ip: &str) -> Msg {
        self.client_ip = ip.parse().unwrap();
        self
    }

    pub fn message(mut self, message: &[u8]) -> Msg {
        self.message = message.to_vec();
        self
    }

    /// The plain message with `fields` (CRLF-terminated lines) added on top.
    pub fn with_fields(self, fields: &str) -> Msg {
        let mut message = fields.as_bytes().to_vec();
        message.extend_from_slice(PLAIN);
        self.message(&message)
    }

    /// Sender authentication ran and did (true) or did not vouch for it.
    pub fn authenticated(mut self, yes: bool) -> Msg {
        self.authenticated = Some(yes);
        self
    }

    pub fn identical(mut self, count: u32) -> Msg {
        self.identical_recent = count;
        self
    }

    pub fn facts(&self) -> Facts<'_> {
        Facts {
            mail_from: &self.mail_from,
            recipients: &self.recipients,
            auth_user: self.auth_user.as_deref(),
            client_ip: self.client_ip,
            message: &self.message,
            listener: self.listener,
            identical_recent: self.identical_recent,
            authenticated: self.authenticated,
        }
    }

    pub fn classify(&self, config: &ClassifyConfig) -> Decision {
        classify(&self.facts(), config)
    }

    /// Classified with the default configuration.
    pub fn decide(&self) -> Decision {
        self.classify(&ClassifyConfig::default())
    }
}

/// Asserts both the class and the rule of a decision.
#[track_caller]
pub fn assert_decision(decision: Decision, class: Class, rule: &str) {
    assert_eq!((decision.class, decision.rule.as_str()), (class, rule));
}
