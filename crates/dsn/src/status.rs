//! The body of the message/delivery-status part (RFC 3464 §2): per-message
//! fields, then one group of per-recipient fields for each recipient, each
//! group after a blank line. The fields are header-like lines written here
//! directly, US-ASCII only, folded to stay readable.

use crate::date::rfc5322_date;
use crate::{Action, DsnInput, DsnRecipient, clean};

/// RFC 5322 §2.1.1: lines SHOULD stay within 78 characters.
const FOLD_AT: usize = 78;
/// RFC 5322 §2.1.1: lines MUST stay within 998 characters. A word longer
/// than this (only a hostile reply has one) is cut into pieces this long.
const MAX_WORD: usize = 900;

/// The text of the message/delivery-status part, CRLF line ends.
pub(crate) fn delivery_status(input: &DsnInput<'_>) -> String {
    let mut out = String::with_capacity(256 + 256 * input.recipients.len());
    // RFC 3464 §2.2: the per-message fields. DSN-Gateway (§2.2.3) and
    // Received-From-MTA (§2.2.4) are not written: facteur is no gateway, and
    // the SMTP client that sent the original is not part of the input.
    field(&mut out, "Reporting-MTA", &clean::dns_name(input.reporting_mta)); // §2.2.2
    if let Some(envid) = input.envelope_id.map(clean::ascii_line).filter(|envid| !envid.is_empty()) {
        field(&mut out, "Original-Envelope-Id", &envid); // §2.2.1, RFC 3461 §4.4
    }
    field(&mut out, "Arrival-Date", &rfc5322_date(input.arrival_date)); // §2.2.5
    for recipient in &input.recipients {
        out.push_str("\r\n"); // §2.1: a blank line before each per-recipient group
        recipient_fields(&mut out, recipient);
    }
    out
}

/// RFC 3464 §2.3: one recipient's fields, in the order of the RFC.
fn recipient_fields(out: &mut String, recipient: &DsnRecipient) {
    // §2.3.1, RFC 3461 §4.2: present exactly when ORCPT was given.
    if let Some(orcpt) = recipient.original_recipient.as_deref().map(clean::original_recipient)
        && !orcpt.is_empty()
    {
        field(out, "Original-Recipient", &orcpt);
    }
    field(out, "Final-Recipient", &clean::typed_address(&recipient.final_recipient)); // §2.3.2
    field(out, "Action", recipient.action.as_str()); // §2.3.3
    field(out, "Status", &status_code(recipient.status)); // §2.3.4, RFC 3463 §2
    if let Some(mta) = recipient.remote_mta.as_deref().map(clean::dns_name)
        && mta != "dns;"
    {
        field(out, "Remote-MTA", &mta); // §2.3.5
    }
    if let Some(diagnostic) = recipient.diagnostic.as_deref().map(diagnostic_code)
        && !diagnostic.is_empty()
    {
        field(out, "Diagnostic-Code", &diagnostic); // §2.3.6
    }
    if let Some(at) = recipient.last_attempt {
        field(out, "Last-Attempt-Date", &rfc5322_date(at)); // §2.3.7
    }
    // §2.3.9: Will-Retry-Until belongs to "delayed" reports only.
    if let (Action::Delayed, Some(until)) = (recipient.action, recipient.will_retry_until) {
        field(out, "Will-Retry-Until", &rfc5322_date(until));
    }
}

/// RFC 3463 §2: `class.subject.detail`.
pub(crate) fn status_code((class, subject, detail): (u8, u16, u16)) -> String {
    format!("{class}.{subject}.{detail}")
}

/// RFC 3464 §2.3.6: `smtp; REPLY`, the reply on one US-ASCII line. A reply
/// already typed `smtp;` keeps its type once. Empty when there is no text.
fn diagnostic_code(reply: &str) -> String {
    let reply = clean::ascii_line(reply);
    let text = match reply.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("smtp;") => reply[5..].trim_start(),
        _ => reply.as_str(),
    };
    if text.is_empty() { String::new() } else { format!("smtp; {text}") }
}

/// Writes `Name: value` CRLF, folding before a space (CRLF then the space,
/// RFC 5322 §2.2.3) when a line would pass [`FOLD_AT`]. Unfolding gives the
/// value back, except that a run of spaces at a fold becomes one space and a
/// word longer than [`MAX_WORD`] is cut by a fold so that no line passes 998
/// characters.
fn field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut column = name.len() + 1;
    let mut line_has_word = false;
    for word in value.split(' ') {
        let mut rest = word;
        let mut first_piece = true;
        loop {
            let mut cut = rest.len().min(MAX_WORD);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            let fits = column + 1 + piece.len() <= FOLD_AT;
            // Never fold right after the colon, nor inside a word unless it
            // is too long to keep.
            if first_piece && (fits || !line_has_word) {
                out.push(' ');
                column += 1;
            } else {
                // The fold stands for the spaces before the word: none is
                // left at the end of the line.
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push_str("\r\n ");
                column = 1;
            }
            out.push_str(piece);
            column += piece.len();
            line_has_word = true;
            first_piece = false;
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(name: &str, value: &str) -> String {
        let mut out = String::new();
        field(&mut out, name, value);
        out
    }

    fn unfolded(text: &str) -> String {
        text.trim_end_matches("\r\n").replace("\r\n", "")
    }

    #[test]
    fn short_field_on_one_line() {
        assert_eq!(written("Action", "failed"), "Action: failed\r\n");
    }

    #[test]
    fn long_field_folds_and_unfolds_back() {
        let value = "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try \
                     double-checking the recipient's email address for typos or unnecessary spaces.";
        let text = written("Diagnostic-Code", value);
        for line in text.trim_end_matches("\r\n").split("\r\n") {
            assert!(line.len() <= FOLD_AT, "{line:?}");
        }
        assert!(text.split("\r\n").skip(1).filter(|l| !l.is_empty()).all(|l| l.starts_with(' ')));
        assert_eq!(unfolded(&text), format!("Diagnostic-Code: {value}"));
    }

    #[test]
    fn no_space_left_before_a_fold() {
        let value = format!("smtp; 550 {}    {}", "a".repeat(60), "b".repeat(20));
        let text = written("Diagnostic-Code", &value);
        assert!(text.contains("\r\n "), "{text:?}");
        assert!(!text.contains(" \r\n"), "{text:?}");
    }

    #[test]
    fn huge_word_is_cut_below_998() {
        let value = format!("smtp; 550 {}", "x".repeat(5000));
        let text = written("Diagnostic-Code", &value);
        for line in text.trim_end_matches("\r\n").split("\r\n") {
            assert!(line.len() <= 998, "{}", line.len());
        }
        assert_eq!(unfolded(&text).replace(' ', ""), format!("Diagnostic-Code:{value}").replace(' ', ""));
    }

    #[test]
    fn diagnostic_typing() {
        assert_eq!(diagnostic_code("550 5.1.1 unknown"), "smtp; 550 5.1.1 unknown");
        assert_eq!(diagnostic_code("SMTP;550 unknown"), "smtp; 550 unknown");
        assert_eq!(diagnostic_code(" \r\n "), "");
        assert_eq!(diagnostic_code("550 a\r\nb"), "smtp; 550 a  b");
    }
}
