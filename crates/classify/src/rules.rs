//! Evaluating rules: the operator's, then the built-in ones.

use crate::headers::Headers;
use crate::matching::{contains_ignore_case, domain_matches, domain_of, local_part, sender_listed};
use crate::{Class, ClassifyConfig, Decision, Facts, Listener, Rule};

/// Whether every condition `rule` gives holds for this message.
pub(crate) fn rule_matches(rule: &Rule, facts: &Facts<'_>, headers: &Headers<'_>) -> bool {
    let sender_domain = domain_of(facts.mail_from);
    let sender_ok = rule.sender_domain.is_empty()
        || sender_domain.is_some_and(|domain| rule.sender_domain.iter().any(|p| domain_matches(p, domain)));
    let recipient_ok = rule.recipient_domain.is_empty()
        || facts
            .recipients
            .iter()
            .filter_map(|r| domain_of(r))
            .any(|d| rule.recipient_domain.iter().any(|p| domain_matches(p, d)));
    let user_ok = rule.auth_user.is_empty()
        || facts.auth_user.is_some_and(|user| rule.auth_user.iter().any(|u| u.eq_ignore_ascii_case(user)));
    // An IPv4 client seen through a dual-stack socket (::ffff:192.0.2.1) is
    // matched as the IPv4 address it is.
    let client_ip = facts.client_ip.to_canonical();
    let network_ok = rule.client_network.is_empty() || rule.client_network.iter().any(|net| net.contains(&client_ip));
    let header_ok = match (&rule.header, &rule.header_value) {
        (None, _) => true,
        (Some(name), None) => headers.has(name),
        (Some(name), Some(needle)) => headers.values(name).any(|value| contains_ignore_case(value, needle)),
    };
    sender_ok && recipient_ok && user_ok && network_ok && header_ok
}

/// The built-in rules, in order; the first that applies decides.
pub(crate) fn builtin(facts: &Facts<'_>, config: &ClassifyConfig, headers: &Headers<'_>) -> Decision {
    system(facts, headers)
        .or_else(|| bulk_by_label(facts, config, headers))
        .or_else(|| transactional(facts, config, headers))
        .unwrap_or_else(|| by_volume(facts, config))
}

/// 1. Mail about mail.
fn system(facts: &Facts<'_>, headers: &Headers<'_>) -> Option<Decision> {
    // RFC 5321 §4.5.5: notifications are sent with a null reverse-path.
    if facts.mail_from.is_empty() {
        return Some(Decision::builtin(Class::System, "null-sender"));
    }
    // RFC 6522 §3 multipart/report carrying an RFC 3464 DSN or RFC 8098 MDN.
    if let Some(report) = headers.report() {
        return Some(Decision::builtin(Class::System, &format!("dsn ({})", report.as_str())));
    }
    // RFC 5321 §4.5.1 postmaster (case-insensitive local part) and the
    // conventional MAILER-DAEMON. A message counts as sent to them only when
    // every recipient is one: adding postmaster to a mailing must not lift
    // the whole mailing into the system class.
    let from_admin = is_admin_mailbox(facts.mail_from);
    let to_admin = !facts.recipients.is_empty() && facts.recipients.iter().all(|r| is_admin_mailbox(r));
    if from_admin || to_admin {
        return Some(Decision::builtin(Class::System, "postmaster"));
    }
    None
}

fn is_admin_mailbox(address: &str) -> bool {
    let local = local_part(address);
    local.eq_ignore_ascii_case("postmaster") || local.eq_ignore_ascii_case("mailer-daemon")
}

/// Header fields whose mere presence marks list or campaign mail:
/// RFC 2919 List-Id, RFC 2369 List-Unsubscribe and List-Post, and
/// Feedback-ID (the bulk senders' feedback-loop identifier, no RFC).
const LIST_FIELDS: [&str; 4] = ["List-Id", "List-Unsubscribe", "List-Post", "Feedback-ID"];

/// 2. Mail that says it is bulk, or comes from a configured bulk sender.
fn bulk_by_label(facts: &Facts<'_>, config: &ClassifyConfig, headers: &Headers<'_>) -> Option<Decision> {
    // Precedence is not standardised (RFC 2076 §3.9 documents it; RFC 3834
    // §5 discourages it for auto-replies); bulk, list and junk are the
    // values mailing software writes.
    for value in headers.values("Precedence") {
        let value = strip_comments(value);
        if let Some(kind) = ["bulk", "list", "junk"].into_iter().find(|kind| value.trim().eq_ignore_ascii_case(kind)) {
            return Some(Decision::builtin(Class::Bulk, &format!("precedence ({kind})")));
        }
    }
    if let Some(field) = LIST_FIELDS.into_iter().find(|field| headers.has(field)) {
        return Some(Decision::builtin(Class::Bulk, &format!("list-headers ({field})")));
    }
    if sender_listed(&config.bulk_senders, facts.mail_from) {
        return Some(Decision::builtin(Class::Bulk, "bulk-senders"));
    }
    None
}

/// 3. Machine-written mail a person is waiting for.
///
/// A claim nobody vouches for (sender authentication ran and found
/// nothing) is bulk.
fn transactional(facts: &Facts<'_>, config: &ClassifyConfig, headers: &Headers<'_>) -> Option<Decision> {
    let claim = if headers.values("Auto-Submitted").any(is_auto_submitted) {
        Some("auto-submitted")
    } else if sender_listed(&config.transactional_senders, facts.mail_from) {
        Some("transactional-senders")
    } else {
        None
    };
    if let Some(rule) = claim {
        if facts.authenticated == Some(false) {
            return Some(Decision::builtin(Class::Bulk, "unauthenticated-transactional"));
        }
        return Some(Decision::builtin(Class::Transactional, rule));
    }
    let user_listed =
        facts.auth_user.is_some_and(|user| config.transactional_users.iter().any(|u| u.eq_ignore_ascii_case(user)));
    if user_listed {
        return Some(Decision::builtin(Class::Transactional, "transactional-users"));
    }
    None
}

/// RFC 3834 §5: `auto-submitted = ("no" / "auto-generated" / "auto-replied"
/// / extension) *(OWS ";" OWS parameter)`, with comments allowed around it.
/// Any keyword but `no` marks the message as automatic; an empty value
/// carries no keyword and marks nothing.
fn is_auto_submitted(value: &str) -> bool {
    let value = strip_comments(value);
    let keyword = value.split(';').next().unwrap_or_default().trim();
    !keyword.is_empty() && !keyword.eq_ignore_ascii_case("no")
}

/// 4-6. What the envelope and the sender's recent volume say.
fn by_volume(facts: &Facts<'_>, config: &ClassifyConfig) -> Decision {
    // 0 means "not counted" and is never evidence, even when the threshold
    // was configured as 0.
    if facts.identical_recent >= config.identical_bulk_threshold.max(1) {
        return Decision::builtin(Class::Bulk, "identical-content");
    }
    if facts.auth_user.is_some() {
        return if facts.recipients.len() <= config.interpersonal_max_recipients {
            Decision::builtin(Class::Interpersonal, "few-recipients")
        } else {
            Decision::builtin(Class::Bulk, "many-recipients")
        };
    }
    match facts.listener {
        Listener::Mx => Decision::builtin(Class::Interpersonal, "default-mx"),
        // Submission requires authentication; should an unauthenticated
        // message arrive there anyway, it is classed like MX mail, and the
        // rule name says where it came from.
        Listener::Submission => Decision::builtin(Class::Interpersonal, "default-submission"),
    }
}

/// Removes RFC 5322 §3.2.2 comments: parenthesised, nestable, with quoted
/// pairs. An unclosed comment runs to the end of the value.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth > 0 => {
                chars.next();
            }
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments() {
        assert_eq!(strip_comments("bulk (mailing (nested) list)"), "bulk ");
        assert_eq!(strip_comments("(a \\) b) list"), " list");
        assert_eq!(strip_comments("junk (unclosed"), "junk ");
        assert_eq!(strip_comments("no comment"), "no comment");
    }

    #[test]
    fn auto_submitted_keywords() {
        assert!(is_auto_submitted("auto-generated"));
        assert!(is_auto_submitted("Auto-Replied"));
        assert!(is_auto_submitted("auto-notified; owner-email=\"a@example.com\""));
        assert!(is_auto_submitted("x-vendor-extension"));
        assert!(!is_auto_submitted("no"));
        assert!(!is_auto_submitted("No (written by a person)"));
        assert!(!is_auto_submitted(" no ; x=1"));
        assert!(!is_auto_submitted(""));
        assert!(!is_auto_submitted("(only a comment)"));
    }
}
