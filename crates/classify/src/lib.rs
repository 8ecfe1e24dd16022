//! Traffic classification for facteur.
//!
//! Purpose: give every message a [`Class`] at acceptance — *system*,
//! *interpersonal*, *transactional* or *bulk* — so that under pressure people
//! come first: interpersonal and transactional mail flow while bulk waits
//! ("People first under pressure"). [`classify`] takes what is known at the
//! end of DATA ([`Facts`]) and a [`ClassifyConfig`], and returns a
//! [`Decision`]: the class and the name of the rule that chose it, for the
//! queue record, logs and metrics.
//!
//! Order: the operator's rules first (the first that matches wins), then the
//! built-in rules: (1) null sender, DSN/MDN or postmaster mail → system;
//! (2) Precedence bulk/list/junk, list or feedback-loop fields, or a
//! configured bulk sender → bulk; (3) Auto-Submitted other than `no`, or a
//! configured transactional sender or user → transactional, unless sender
//! authentication ran and nobody vouched for the sender (then bulk:
//! forged "your bank" mail must not jump the queue); (4) a sender
//! repeating identical content → bulk; (5) authenticated mail to few
//! recipients → interpersonal, to many → bulk; (6) anything else
//! (ordinary MX delivery) → interpersonal.
//!
//! Pure: no I/O, no clock. Only the header section is read: [`header_section`]
//! cuts the message at its first empty line and the field splitter
//! (mail-parser) is given that slice alone, so nothing in a body can change a
//! class.
//!
//! RFCs: 5322 (header section, field names, unfolding, comments), 5321
//! (null reverse-path, postmaster), 6522 (multipart/report), 3464 (DSN),
//! 8098 (MDN), 3834 (Auto-Submitted), 2919 (List-Id), 2369 (List-*),
//! 2045 (Content-Type parameters).
//!
//! Failure behaviour: classification never fails and never panics. A
//! malformed header section (no empty line, binary junk, lines without a
//! colon) is read as far as it can be; bytes that are not UTF-8 are replaced
//! before matching. A class is a scheduling hint, not a verdict: a sender can
//! always make mail look interpersonal, so admission limits per sender, not
//! the class, are what bound a hostile sender. [`ClassifyConfig::validate`]
//! reports every configuration problem at once, with its key path.
//!
//! ```
//! use facteur_classify::{Class, ClassifyConfig, Facts, Listener, classify};
//!
//! let recipients = ["bob@example.net".to_string()];
//! let facts = Facts {
//!     mail_from: "news@example.org",
//!     recipients: &recipients,
//!     auth_user: None,
//!     client_ip: "192.0.2.10".parse().unwrap(),
//!     message: b"List-Id: <weekly.example.org>\r\nSubject: This week\r\n\r\nHello\r\n",
//!     listener: Listener::Mx,
//!     identical_recent: 0,
//!     authenticated: None,
//! };
//! let decision = classify(&facts, &ClassifyConfig::default());
//! assert_eq!(decision.class, Class::Bulk);
//! assert_eq!(decision.rule, "builtin:list-headers (List-Id)");
//! ```
//!
//! Layout: `class` (the classes), `config` (rules, lists, validation),
//! `headers` (the header section and its fields), `matching` (addresses,
//! domains, text), `rules` (evaluation).

mod config;
mod headers;
mod matching;
mod rules;

use std::net::IpAddr;

pub use config::{ClassifyConfig, ConfigError, Rule};
pub use facteur_types::Class;
pub use headers::header_section;

/// The listener a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    /// Port 25: mail from other servers.
    Mx,
    /// Ports 587/465: mail from the server's own users.
    Submission,
}

/// What is known about a message at the end of DATA.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The envelope sender (MAIL FROM); `""` is the null sender.
    pub mail_from: &'a str,
    /// The envelope recipients (lower-case addresses).
    pub recipients: &'a [String],
    /// The authenticated submission user, if any.
    pub auth_user: Option<&'a str>,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The message as received; only its header section is read.
    pub message: &'a [u8],
    /// The listener it arrived on.
    pub listener: Listener,
    /// How many other messages with the same body digest this sender sent
    /// recently (the caller counts; 0 when unknown) — for "many recipients
    /// with identical content".
    pub identical_recent: u32,
    /// Whether SPF, DKIM or DMARC vouched for the sender (MX mail from
    /// strangers); `None` when not checked. A claim to be transactional
    /// from mail nobody vouches for is not believed.
    pub authenticated: Option<bool>,
}

/// The class of a message and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The traffic class.
    pub class: Class,
    /// `config:{rule name}` for an operator rule; `builtin:{rule}` for a
    /// built-in one, e.g. `builtin:null-sender`, `builtin:dsn
    /// (delivery-status)`, `builtin:postmaster`, `builtin:precedence (bulk)`,
    /// `builtin:list-headers (List-Id)`, `builtin:bulk-senders`,
    /// `builtin:auto-submitted`, `builtin:transactional-senders`,
    /// `builtin:unauthenticated-transactional`,
    /// `builtin:transactional-users`, `builtin:identical-content`,
    /// `builtin:few-recipients`, `builtin:many-recipients`,
    /// `builtin:default-mx`, `builtin:default-submission`. Never holds text
    /// taken from the message.
    pub rule: String,
}

impl Decision {
    fn builtin(class: Class, rule: &str) -> Decision {
        Decision { class, rule: format!("builtin:{rule}") }
    }
}

/// Decides the class of a message: the operator's rules in order, then the
/// built-in rules; the first that applies decides.
pub fn classify(facts: &Facts<'_>, config: &ClassifyConfig) -> Decision {
    let headers = headers::Headers::parse(facts.message);
    if let Some(rule) = config.rules.iter().find(|rule| rules::rule_matches(rule, facts, &headers)) {
        return Decision { class: rule.class, rule: format!("config:{}", rule.name) };
    }
    rules::builtin(facts, config, &headers)
}
