//! Delivery status notifications for facteur.
//!
//! Purpose: write the message that tells a sender what became of their mail —
//! a bounce, a delay warning or a delivery report — so that no accepted
//! message ends in silence ("No limbo"). [`build`] turns a [`DsnInput`] into a
//! complete RFC 5322 message: a multipart/report (RFC 6522, formerly RFC 3462)
//! of report-type delivery-status holding a human explanation, the
//! machine-readable message/delivery-status fields (RFC 3464) and the original
//! message or its header section (RFC 3461 §4.3 RET).
//!
//! Pure: no I/O, no clock (every time is an argument, in unix seconds), no
//! randomness (the MIME boundary derives from the DSN's own Message-ID), so
//! the same input always gives the same bytes; renderings are checked against
//! golden files in `tests/golden/`.
//!
//! RFCs: 3461 (DSN semantics: RET, ENVID, ORCPT), 3464 (delivery-status
//! fields), 6522/3462 (multipart/report, text/rfc822-headers), 3463 (enhanced
//! status codes), 3834 (Auto-Submitted), 5322 (format, dates), 2045/2046
//! (transfer encodings, boundaries), 6533 §3 (UTF-8 addresses in 7-bit form).
//!
//! Failure behaviour: building never fails and never panics. Untrusted text is
//! neutralised rather than refused: CR, LF and other control characters in
//! addresses, the ENVID and the remote reply become spaces (no header
//! injection); the delivery-status part stays US-ASCII (non-ASCII becomes `?`,
//! or `\x{HEX}` in addresses); the returned original gets CRLF line ends; and
//! an original that cannot travel as 7bit or 8bit MIME content is returned as
//! its header section instead.
//!
//! Sending is the caller's job: the DSN goes to the original's envelope
//! sender with a null reverse-path, `MAIL FROM:<>` (RFC 3461 §6.1, RFC 5321
//! §4.5.5), and no DSN is ever made for a message whose own sender was null.
//!
//! Layout: `status` (the delivery-status fields), `human` (the explanation),
//! `original` (what of the original is returned), `clean` (neutralising
//! text), `date` (RFC 5322 dates).

mod clean;
mod date;
pub use date::{civil_from_days, rfc5322_date};
mod human;
mod original;
mod status;

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};

pub use original::DEFAULT_FULL_RETURN_LIMIT;

/// What happened to one recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Delivery failed for good; the message will not be tried again.
    Failed,
    /// Not delivered yet; still being retried.
    Delayed,
    /// Delivered to the recipient's mailbox.
    Delivered,
    /// Handed to a system that does not report delivery: no further report
    /// will come.
    Relayed,
    /// Delivered to a list or alias that passed it on to several addresses.
    Expanded,
}

impl Action {
    /// The action-value of the Action field: `failed`, `delayed`, `delivered`,
    /// `relayed` or `expanded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }

    /// The action a status code stands for when nothing else is known:
    /// 2.x.x delivered, 5.x.x failed, anything else delayed. A 4.x.x status
    /// becomes [`Action::Failed`] only when the queue gives up, which is the
    /// caller's decision.
    pub fn from_status(status: (u8, u16, u16)) -> Action {
        match status.0 {
            2 => Action::Delivered,
            5 => Action::Failed,
            _ => Action::Delayed,
        }
    }
}

/// What of the original message goes back to the sender (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnContent {
    /// `RET=FULL`: the whole message, as message/rfc822.
    Full,
    /// `RET=HDRS`: its header section only, as text/rfc822-headers.
    Headers,
}

/// One recipient reported on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The address delivery was tried to, without type: written as
    /// `rfc822;ADDR` (or `utf-8;…` for a UTF-8 address, RFC 6533 §3).
    pub final_recipient: String,
    /// The ORCPT parameter as stored, already typed (`rfc822;addr`), echoed
    /// as it is in Original-Recipient (RFC 3461 §4.2, RFC 3464 §2.3.1).
    pub original_recipient: Option<String>,
    pub action: Action,
    /// The RFC 3463 status, e.g. `(5, 1, 1)`; see [`status_from_reply`].
    pub status: (u8, u16, u16),
    /// The host name of the remote server, written `dns;HOST`.
    pub remote_mta: Option<String>,
    /// The remote reply, e.g. `550 5.1.1 <x@y>: user unknown`, written as
    /// `smtp; 550 5.1.1 …` on one line.
    pub diagnostic: Option<String>,
    /// Unix seconds.
    pub last_attempt: Option<i64>,
    /// Unix seconds; written only for [`Action::Delayed`] (RFC 3464 §2.3.9).
    pub will_retry_until: Option<i64>,
}

/// Everything a DSN is made of. All times are unix seconds.
#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// Our host name, for Reporting-MTA and the From address.
    pub reporting_mta: &'a str,
    /// The ENVID parameter (xtext decoded), echoed as Original-Envelope-Id.
    pub envelope_id: Option<&'a str>,
    /// When the original was received.
    pub arrival_date: i64,
    /// The Date of the DSN.
    pub now: i64,
    /// The envelope sender of the original; the DSN goes To: it. Never null:
    /// no DSN is made for a message sent from `<>` (RFC 5321 §4.5.5).
    pub original_sender: &'a str,
    /// The recipients reported on, normally all with the same kind of action
    /// (the subject follows the most serious one: failed, then delayed, then
    /// success). At least one: RFC 3464 §2.1 wants a per-recipient group.
    pub recipients: Vec<DsnRecipient>,
    /// What of the original to return. `None` (no RET given): the whole
    /// message when it is at most [`DEFAULT_FULL_RETURN_LIMIT`] (256 KiB),
    /// else its header section. RET=FULL is honoured at any size, except that
    /// an original that cannot be carried as 7bit or 8bit MIME (a NUL, a line
    /// over 998 octets) is returned as its header section.
    pub return_content: Option<ReturnContent>,
    /// The original message as stored.
    pub original: &'a [u8],
    /// The DSN's own Message-ID, without `<>`, e.g. `01ABC…@mx.example`.
    pub message_id: &'a str,
}

/// The kind of report, which picks the subject and the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Failure,
    Delay,
    Success,
}

impl Kind {
    fn of(recipients: &[DsnRecipient]) -> Kind {
        if recipients.iter().any(|r| r.action == Action::Failed) {
            Kind::Failure
        } else if recipients.iter().any(|r| r.action == Action::Delayed) {
            Kind::Delay
        } else {
            Kind::Success
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Kind::Failure => "Undelivered Mail Returned to Sender",
            Kind::Delay => "Delayed Mail (still being retried)",
            Kind::Success => "Successful Mail Delivery Report",
        }
    }
}

/// The complete RFC 5322 message, CRLF line ends.
///
/// Header: `From: "Mail Delivery System" <MAILER-DAEMON@reporting_mta>`,
/// `To: <original_sender>`, a Subject by kind ("Undelivered Mail Returned to
/// Sender", "Delayed Mail (still being retried)", "Successful Mail Delivery
/// Report"), Date (RFC 5322 §3.3, UTC), Message-ID, `Auto-Submitted:
/// auto-replied` (RFC 3834 §5), MIME-Version and `Content-Type:
/// multipart/report; report-type=delivery-status; boundary=…` (RFC 6522,
/// RFC 3464 §2.1).
///
/// Parts: (1) text/plain, a short explanation in plain English naming each
/// recipient and the remote reply, and for a delay until when facteur keeps
/// trying; (2) message/delivery-status, 7bit: Reporting-MTA, Original-Envelope-Id
/// when given, Arrival-Date, then per recipient after a blank line:
/// Original-Recipient (when given), Final-Recipient, Action, Status,
/// Remote-MTA, Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until (delayed
/// only); (3) message/rfc822 with the original, or text/rfc822-headers with
/// its header section (see [`DsnInput::return_content`]).
///
/// An original with 8-bit content is attached as it is, labelled `8bit`
/// (message/rfc822 allows no other encoding, RFC 2046 §5.2.1): such a DSN
/// needs 8BITMIME to be relayed, as the original did. Everything else in the
/// DSN is 7-bit, except a UTF-8 sender address in To: (which needs SMTPUTF8,
/// as the original did).
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let kind = Kind::of(&input.recipients);
    let returned = original::prepare(input.original, input.return_content);
    let human = human::explanation(input, kind, &returned);
    let status = status::delivery_status(input);
    let boundary = boundary(input.message_id, &[human.as_bytes(), status.as_bytes(), &returned.body]);

    let host = clean::ascii_line(input.reporting_mta);
    let sender = clean::one_line(input.original_sender);
    let message_id = clean::one_line(input.message_id);
    let message_id = message_id.trim_start_matches('<').trim_end_matches('>').to_string();
    let content_type = returned.content_type();
    let encoding = returned.encoding;

    let report = MimePart::new(
        ContentType::new("multipart/report")
            .attribute("report-type", "delivery-status")
            .attribute("boundary", boundary),
        vec![
            MimePart::new("text/plain", human),
            MimePart::new("message/delivery-status", status.into_bytes()).transfer_encoding("7bit"),
            MimePart::new(content_type, BodyPart::Binary(returned.body)).transfer_encoding(encoding),
        ],
    );
    let mut out = Vec::with_capacity(input.original.len().min(DEFAULT_FULL_RETURN_LIMIT) + 4096);
    MessageBuilder::new()
        .from(Address::new_address(Some("Mail Delivery System"), format!("MAILER-DAEMON@{host}")))
        .to(Address::new_address(None::<&str>, sender))
        .subject(kind.subject())
        .header("Date", Raw::new(date::rfc5322_date(input.now)))
        .message_id(message_id)
        .header("Auto-Submitted", Raw::new("auto-replied")) // RFC 3834 §5.2
        .header("MIME-Version", Raw::new("1.0"))
        .body(report)
        .serialize(&mut out);
    out
}

/// The status a remote reply stands for: its enhanced code when it has a
/// valid one (RFC 3463 §2: class 2, 4 or 5, subject and detail of at most
/// three digits) whose class agrees with the basic code, else the class of
/// the basic code with `.0.0` (RFC 3463 §3.1). A basic code that is not 2xx,
/// 4xx or 5xx (or no reply at all, passed as 0) is taken as temporary, 4.0.0:
/// the unforeseen defers, it never bounces.
pub fn status_from_reply(code: u16, enhanced: Option<(u8, u16, u16)>) -> (u8, u16, u16) {
    let class = match code / 100 {
        2 => 2,
        5 => 5,
        _ => 4,
    };
    match enhanced {
        Some((c, subject, detail)) if c == class && subject <= 999 && detail <= 999 => (c, subject, detail),
        _ => (class, 0, 0),
    }
}

/// A MIME boundary (RFC 2046 §5.1.1: at most 70 characters, and found in
/// none of the parts), derived from the DSN's Message-ID so the output is
/// deterministic. It starts with `=_`, which neither quoted-printable nor
/// base64 output can contain; the raw parts are searched, and a counter moves
/// on in the unlikely case one of them holds it.
fn boundary(seed: &str, parts: &[&[u8]]) -> String {
    // FNV-1a, 64 bits: spreads the seed, needs no dependency.
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut n = 0u64;
    loop {
        let candidate = format!("=_facteur_dsn_{hash:016x}_{n}");
        let found = parts.iter().any(|part| part.windows(candidate.len()).any(|w| w == candidate.as_bytes()));
        if !found {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_enhanced_code() {
        assert_eq!(status_from_reply(550, Some((5, 1, 1))), (5, 1, 1));
        assert_eq!(status_from_reply(452, Some((4, 2, 2))), (4, 2, 2));
        assert_eq!(status_from_reply(250, Some((2, 0, 0))), (2, 0, 0));
        assert_eq!(status_from_reply(554, Some((5, 7, 999))), (5, 7, 999));
    }

    #[test]
    fn status_from_basic_code() {
        assert_eq!(status_from_reply(550, None), (5, 0, 0));
        assert_eq!(status_from_reply(421, None), (4, 0, 0));
        assert_eq!(status_from_reply(250, None), (2, 0, 0));
    }

    #[test]
    fn enhanced_code_that_disagrees_or_is_invalid_is_ignored() {
        assert_eq!(status_from_reply(550, Some((4, 2, 2))), (5, 0, 0));
        assert_eq!(status_from_reply(451, Some((5, 1, 1))), (4, 0, 0));
        assert_eq!(status_from_reply(550, Some((5, 1000, 1))), (5, 0, 0));
        assert_eq!(status_from_reply(550, Some((3, 1, 1))), (5, 0, 0));
    }

    #[test]
    fn unforeseen_codes_are_temporary() {
        assert_eq!(status_from_reply(0, None), (4, 0, 0));
        assert_eq!(status_from_reply(354, None), (4, 0, 0));
        assert_eq!(status_from_reply(999, Some((5, 0, 0))), (4, 0, 0));
        assert_eq!(status_from_reply(199, None), (4, 0, 0));
    }

    #[test]
    fn action_from_status() {
        assert_eq!(Action::from_status((2, 0, 0)), Action::Delivered);
        assert_eq!(Action::from_status((4, 4, 1)), Action::Delayed);
        assert_eq!(Action::from_status((5, 1, 1)), Action::Failed);
        assert_eq!(Action::Expanded.as_str(), "expanded");
    }

    #[test]
    fn boundary_is_stable_short_and_avoids_the_parts() {
        let first = boundary("id@host", &[b"hello"]);
        assert_eq!(first, boundary("id@host", &[b"other"]));
        assert_ne!(first, boundary("id2@host", &[b"hello"]));
        assert!(first.len() <= 70);
        let hostile = format!("text --{first} more");
        let second = boundary("id@host", &[hostile.as_bytes()]);
        assert_ne!(first, second);
        assert!(!hostile.contains(&second));
    }
}
