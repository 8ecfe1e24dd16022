//! Queue listings in the forms operators coming from Postfix read without
//! thinking: `mailq` (postqueue -p).

use facteur_store::{QueuedMessage, RecipientState};
use facteur_types::RecipientStatus;

/// `Mon Dec  7 07:20:01` (UTC) from Unix seconds, as mailq shows arrival.
fn arrival(secs: i64) -> String {
    // "Mon, 07 Dec 2026 07:20:01 +0000"
    let d = facteur_smtp::headers::rfc5322_date(secs);
    let p: Vec<&str> = d.split_whitespace().collect();
    match p.as_slice() {
        [day, date, month, _, time, ..] => {
            format!("{} {} {:>2} {}", day.trim_end_matches(','), month, date.trim_start_matches('0'), time)
        }
        _ => d,
    }
}

/// The listing of `mailq`: per message its id (`!` when held), size,
/// arrival and sender, the last deferral reason in parentheses, then each
/// waiting recipient; the total at the end.
pub fn mailq(queue: &[QueuedMessage]) -> String {
    fn waiting(m: &QueuedMessage) -> Vec<&RecipientState> {
        m.recipients.iter().filter(|r| matches!(r.state, RecipientStatus::Queued | RecipientStatus::Held)).collect()
    }
    let shown: Vec<(&QueuedMessage, Vec<&RecipientState>)> =
        queue.iter().map(|m| (m, waiting(m))).filter(|(_, w)| !w.is_empty()).collect();
    if shown.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = format!(
        "{:<27} {:>8} {:<20} {}\n",
        "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------"
    );
    let mut bytes = 0u64;
    for (m, w) in &shown {
        let held = if w.iter().all(|r| r.state == RecipientStatus::Held) { "!" } else { " " };
        let from = if m.envelope.mail_from.is_empty() { "MAILER-DAEMON" } else { &m.envelope.mail_from };
        out.push_str(&format!("{}{held} {:>8} {} {}\n", m.id, m.size, arrival(m.received_at), from));
        let mut last_reason: Option<&str> = None;
        for r in w {
            if let Some(reason) = r.last_error.as_deref()
                && last_reason != Some(reason)
            {
                let shown: String = reason.chars().take(75).collect();
                out.push_str(&format!("({shown})\n"));
                last_reason = Some(reason);
            }
            out.push_str(&format!("{:>48}{}\n", "", r.address));
        }
        out.push('\n');
        bytes += m.size;
    }
    let n = shown.len();
    out.push_str(&format!("-- {} Kbytes in {n} Request{}.\n", bytes.div_ceil(1024), if n == 1 { "" } else { "s" }));
    out
}

pub fn print_mailq(queue: &[QueuedMessage]) {
    print!("{}", mailq(queue));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_reads_like_mailqs() {
        assert_eq!(arrival(1_796_627_601), "Mon Dec  7 07:13:21");
    }
}
