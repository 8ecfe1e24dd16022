//! The first part of the report: a short explanation in plain English for
//! the person who sent the message (RFC 6522: the first part of a report
//! is for humans). It names every recipient, what happened, the remote server's
//! reply, and, for a delay, until when facteur keeps trying.

use crate::date::rfc5322_date;
use crate::original::{DEFAULT_FULL_RETURN_LIMIT, HeadersOnly, Returned};
use crate::status::status_code;
use crate::{Action, DsnInput, DsnRecipient, Kind, clean};

/// The text, CRLF line ends, UTF-8 (addresses and replies are shown as
/// they are, on one line each).
pub(crate) fn explanation(input: &DsnInput<'_>, kind: Kind, returned: &Returned<'_>) -> String {
    let mut lines: Vec<String> = Vec::new();
    lines.push(format!("This is the mail system at {}.", clean::one_line(input.reporting_mta)));
    lines.push(String::new());
    match kind {
        Kind::Failure => {
            lines.push("Your message could not be delivered to one or more recipients.".into());
            lines.push("Those recipients will not be tried again. Details for each follow.".into());
        }
        Kind::Delay => {
            lines.push("Your message has not been delivered yet to one or more recipients.".into());
            lines.push("This is only a warning: you do not need to send it again.".into());
            match input
                .recipients
                .iter()
                .filter(|r| r.action == Action::Delayed)
                .filter_map(|r| r.will_retry_until)
                .max()
            {
                Some(until) => {
                    lines.push(format!("We will keep trying until {}.", rfc5322_date(until)));
                    lines.push("If it still cannot be delivered by then, you will be told.".into());
                }
                None => lines.push("We will keep trying, and tell you if we have to give up.".into()),
            }
        }
        Kind::Success => {
            lines.push("This is a report on the delivery of your message.".into());
        }
    }
    lines.push(String::new());
    // Each recipient's retry limit is shown only when they differ; a common
    // one is already said above.
    let mut limits = input.recipients.iter().filter(|r| r.action == Action::Delayed).map(|r| r.will_retry_until);
    let each_until = limits.next().is_some_and(|first| limits.any(|other| other != first));
    for recipient in &input.recipients {
        recipient_lines(&mut lines, recipient, each_until);
        lines.push(String::new());
    }
    lines.push(format!("Your message was received on {}.", rfc5322_date(input.arrival_date)));
    lines.push(match returned.headers_only {
        None => "A copy of your message is attached.".to_string(),
        Some(HeadersOnly::Requested) => "The header section of your message is attached.".to_string(),
        Some(HeadersOnly::TooLarge) => format!(
            "The header section of your message is attached; the whole message was larger than {} KiB.",
            DEFAULT_FULL_RETURN_LIMIT / 1024
        ),
        Some(HeadersOnly::NotMimeSafe) => {
            "The header section of your message is attached; the whole message could not be sent back as it was."
                .to_string()
        }
    });
    let mut text = String::with_capacity(lines.iter().map(|line| line.len() + 4).sum());
    for line in &lines {
        wrap_into(&mut text, line);
    }
    text
}

/// Lines stay within this many characters where words allow, so that a
/// US-ASCII explanation travels as plain 7bit text.
const WRAP: usize = 76;

/// Appends `line` and CRLF, broken before a space wherever it would pass
/// [`WRAP`]; continuation lines are indented four spaces more than the line.
/// A single longer word is kept whole (the transfer encoding copes).
fn wrap_into(out: &mut String, line: &str) {
    let indent = line.len() - line.trim_start_matches(' ').len();
    out.push_str(&line[..indent]);
    let mut width = indent;
    for (n, word) in line[indent..].split(' ').enumerate() {
        let word_width = word.chars().count();
        if n > 0 {
            if width + 1 + word_width > WRAP {
                // No trailing space before the break (runs of spaces in a
                // reply leave empty words behind).
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push_str("\r\n");
                let continuation = indent + 4;
                out.extend(std::iter::repeat_n(' ', continuation));
                width = continuation;
            } else {
                out.push(' ');
                width += 1;
            }
        }
        out.push_str(word);
        width += word_width;
    }
    out.push_str("\r\n");
}

fn recipient_lines(lines: &mut Vec<String>, recipient: &DsnRecipient, each_until: bool) {
    let address = clean::one_line(&recipient.final_recipient);
    lines.push(format!("<{address}>"));
    if let Some(original) = recipient.original_recipient.as_deref().map(clean::one_line) {
        let original_address = original.split_once(';').map_or(original.as_str(), |(_, address)| address.trim());
        if !original_address.is_empty() && !original_address.eq_ignore_ascii_case(&address) {
            lines.push(format!("  (originally addressed to <{original_address}>)"));
        }
    }
    let what = match recipient.action {
        Action::Failed => "Could not be delivered.",
        Action::Delayed => "Not delivered yet; we are still trying.",
        Action::Delivered => "Delivered.",
        Action::Relayed => "Passed on to a mail system that does not send delivery reports.",
        Action::Expanded => "Delivered to a list or alias, which passed the message on to its members.",
    };
    lines.push(format!("  {what}"));
    let meaning = match recipient.status.0 {
        2 => "success",
        4 => "temporary failure",
        5 => "permanent failure",
        _ => "unknown",
    };
    lines.push(format!("  Status: {} ({meaning})", status_code(recipient.status)));
    let server = recipient.remote_mta.as_deref().map(clean::dns_name).map(|name| name[4..].to_string());
    let server = server.filter(|name| !name.is_empty());
    let reply = recipient.diagnostic.as_deref().map(clean::one_line).filter(|s| !s.is_empty());
    match (server, reply) {
        (Some(server), Some(reply)) => lines.push(format!("  The mail server {server} replied: {reply}")),
        (None, Some(reply)) => lines.push(format!("  Reply: {reply}")),
        (Some(server), None) => lines.push(format!("  Mail server: {server}")),
        (None, None) => {}
    }
    if let Some(at) = recipient.last_attempt {
        lines.push(format!("  Last attempt: {}", rfc5322_date(at)));
    }
    if let (Action::Delayed, Some(until), true) = (recipient.action, recipient.will_retry_until, each_until) {
        lines.push(format!("  We will keep trying until {}.", rfc5322_date(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(line: &str) -> String {
        let mut out = String::new();
        wrap_into(&mut out, line);
        out
    }

    #[test]
    fn short_lines_are_kept() {
        assert_eq!(wrapped("  Delivered."), "  Delivered.\r\n");
        assert_eq!(wrapped(""), "\r\n");
    }

    #[test]
    fn long_lines_wrap_with_indent() {
        let line = "  The mail server mx1.example.net replied: 550 5.1.1 <bob@example.net>: Recipient address \
                    rejected: User unknown in virtual mailbox table";
        let out = wrapped(line);
        let lines: Vec<&str> = out.trim_end_matches("\r\n").split("\r\n").collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= WRAP && !l.ends_with(' ')), "{lines:?}");
        assert!(lines[1..].iter().all(|l| l.starts_with("      ") && !l.starts_with("       ")));
        let rejoined: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
        assert_eq!(rejoined.join(" "), line.trim());
    }

    #[test]
    fn a_long_word_stays_whole() {
        let word = "x".repeat(100);
        assert_eq!(wrapped(&format!("a {word} b")), format!("a\r\n    {word}\r\n    b\r\n"));
    }
}
