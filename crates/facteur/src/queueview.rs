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

/// Which queued mail an operator means (`queue list`, and the bulk
/// actions `queue hold|release|delete` as postsuper takes them).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Filter {
    /// Envelope sender: an address, or @domain (`<>` for bounces)
    #[arg(long, value_name = "ADDRESS")]
    pub sender: Option<String>,
    /// A waiting recipient: an address, or @domain
    #[arg(long, value_name = "ADDRESS")]
    pub recipient: Option<String>,
    /// A waiting recipient's domain
    #[arg(long, value_name = "DOMAIN")]
    pub destination: Option<String>,
    /// queued (not yet tried), deferred (tried, waiting to retry), held, or waiting (any of them)
    #[arg(long, value_parser = ["queued", "deferred", "held", "waiting"])]
    pub state: Option<String>,
    /// Received at least this long ago: 90s, 30m, 4h, 2d
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<i64>,
}

/// `90s`, `30m`, `4h`, `2d` (or plain seconds) in seconds.
pub fn parse_age(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (n, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = n.parse().map_err(|_| format!("{s:?} is not an age like 90s, 30m, 4h or 2d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    Ok(n.saturating_mul(unit))
}

/// `a@b` matches itself; `@b` every address at b (case-insensitive).
fn address_matches(pattern: &str, address: &str) -> bool {
    let (p, a) = (pattern.trim().to_lowercase(), address.to_lowercase());
    if p == "<>" {
        return a.is_empty();
    }
    match p.strip_prefix('@') {
        Some(domain) => a.rsplit_once('@').is_some_and(|(_, d)| d == domain),
        None => a == p.trim_start_matches('<').trim_end_matches('>'),
    }
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.sender.is_none()
            && self.recipient.is_none()
            && self.destination.is_none()
            && self.state.is_none()
            && self.older_than.is_none()
    }

    fn recipient_matches(&self, r: &RecipientState) -> bool {
        let waiting = matches!(r.state, RecipientStatus::Queued | RecipientStatus::Held);
        let state = match self.state.as_deref() {
            Some("queued") => r.state == RecipientStatus::Queued && r.attempts == 0,
            Some("deferred") => r.state == RecipientStatus::Queued && r.attempts > 0,
            Some("held") => r.state == RecipientStatus::Held,
            _ => true,
        };
        let domain = self.destination.as_deref().is_none_or(|d| {
            r.address.rsplit_once('@').is_some_and(|(_, x)| x.eq_ignore_ascii_case(d.trim_start_matches('@')))
        });
        let address = self.recipient.as_deref().is_none_or(|p| address_matches(p, &r.address));
        waiting && state && domain && address
    }

    /// The message's waiting recipients this filter names (none: it does
    /// not match).
    pub fn select<'a>(&self, m: &'a QueuedMessage, now: i64) -> Vec<&'a RecipientState> {
        let sender = self.sender.as_deref().is_none_or(|p| address_matches(p, &m.envelope.mail_from));
        let old = self.older_than.is_none_or(|age| m.received_at <= now - age);
        if !(sender && old) {
            return Vec::new();
        }
        m.recipients.iter().filter(|r| self.recipient_matches(r)).collect()
    }
}

/// `2d3h`, `4h05m`, `12m`, `40s`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `queue list`: per message its id, age, class, size and sender, then each
/// waiting recipient the filter names with its state (`HELD` marked), tries,
/// next try and last deferral reason.
pub fn list(queue: &[QueuedMessage], filter: &Filter, now: i64) -> String {
    let mut out = String::new();
    let mut n = 0;
    for m in queue {
        let rs = filter.select(m, now);
        if rs.is_empty() {
            continue;
        }
        n += 1;
        let from = if m.envelope.mail_from.is_empty() { "<>" } else { &m.envelope.mail_from };
        out.push_str(&format!("{} {:>7} {:<13} {:>9} {}\n", m.id, age(now - m.received_at), m.class, m.size, from));
        for r in rs {
            let state = match r.state {
                RecipientStatus::Held => "HELD".to_string(),
                _ if r.attempts > 0 => "deferred".into(),
                _ => "queued".into(),
            };
            let next = match (r.state, r.next_attempt) {
                (RecipientStatus::Queued, Some(t)) if t > now => format!(", next in {}", age(t - now)),
                (RecipientStatus::Queued, _) => ", due".into(),
                _ => String::new(),
            };
            out.push_str(&format!("    {state:<9} {} ({} tries{next})\n", r.address, r.attempts));
            if let Some(e) = &r.last_error {
                out.push_str(&format!("              {e}\n"));
            }
        }
    }
    if n == 0 {
        return if filter.is_empty() { "queue is empty\n".into() } else { "no queued message matches\n".into() };
    }
    out.push_str(&format!("{n} message(s)\n"));
    out
}

/// qshape's age buckets, in minutes: 0-5, 5-10, 10-20, 20-40, 40-80, 80+.
pub const BUCKETS: [i64; 6] = [0, 5, 10, 20, 40, 80];

/// Messages waiting per destination domain and age bucket (by arrival), the
/// busiest first, with a TOTAL row: Postfix's qshape.
pub fn shape(queue: &[QueuedMessage], now: i64) -> Vec<(String, [u64; 6])> {
    let mut by: std::collections::BTreeMap<String, [u64; 6]> = std::collections::BTreeMap::new();
    let mut total = [0u64; 6];
    for m in queue {
        let minutes = (now - m.received_at).max(0) / 60;
        let bucket = BUCKETS.iter().rposition(|b| minutes >= *b).unwrap_or(0);
        let mut domains: Vec<&str> = m
            .recipients
            .iter()
            .filter(|r| matches!(r.state, RecipientStatus::Queued | RecipientStatus::Held))
            .filter_map(|r| r.address.rsplit_once('@').map(|(_, d)| d))
            .collect();
        domains.sort_unstable();
        domains.dedup();
        for d in &domains {
            by.entry(d.to_lowercase()).or_default()[bucket] += 1;
        }
        if !domains.is_empty() {
            total[bucket] += 1;
        }
    }
    let mut rows: Vec<(String, [u64; 6])> = by.into_iter().collect();
    rows.sort_by(|a, b| b.1.iter().sum::<u64>().cmp(&a.1.iter().sum::<u64>()).then(a.0.cmp(&b.0)));
    rows.insert(0, ("TOTAL".into(), total));
    rows
}

pub fn shape_text(rows: &[(String, [u64; 6])]) -> String {
    let mut out =
        format!("{:>32} {:>6} {:>5} {:>5} {:>6} {:>6} {:>6} {:>5}\n", "", "T", "5", "10", "20", "40", "80", "80+");
    for (d, b) in rows {
        let t: u64 = b.iter().sum();
        out.push_str(&format!(
            "{:>32} {:>6} {:>5} {:>5} {:>6} {:>6} {:>6} {:>5}\n",
            d, t, b[0], b[1], b[2], b[3], b[4], b[5]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use facteur_store::StoredEnvelope;
    use facteur_types::{Class, MessageId};

    #[test]
    fn arrival_reads_like_mailqs() {
        assert_eq!(arrival(1_796_627_601), "Mon Dec  7 07:13:21");
    }

    #[test]
    fn ages_parse_at_and_past_their_edges() {
        assert_eq!(parse_age("90"), Ok(90));
        assert_eq!(parse_age("30m"), Ok(1800));
        assert_eq!(parse_age("2d"), Ok(172_800));
        assert!(parse_age("2w").unwrap_err().contains("unit"));
        assert!(parse_age("soon").unwrap_err().contains("soon"));
        assert_eq!(age(59), "59s");
        assert_eq!(age(3600 + 5 * 60), "1h05m");
    }

    fn msg(from: &str, at: i64, rcpts: &[(&str, RecipientStatus, u32)]) -> QueuedMessage {
        QueuedMessage {
            id: MessageId::first_at(at as u64 * 1000),
            received_at: at,
            class: Class::Interpersonal,
            size: 100,
            envelope: StoredEnvelope { mail_from: from.into(), ..Default::default() },
            recipients: rcpts
                .iter()
                .map(|(a, s, n)| RecipientState {
                    address: a.to_string(),
                    state: *s,
                    attempts: *n,
                    next_attempt: None,
                    last_error: None,
                    notify: None,
                    orcpt: None,
                })
                .collect(),
            attempts: Vec::new(),
        }
    }

    #[test]
    fn filters_name_messages_and_their_recipients() {
        use RecipientStatus::*;
        let m = msg(
            "App@Example.test",
            1000,
            &[
                ("a@far.test", Queued, 0),
                ("b@near.test", Queued, 2),
                ("c@far.test", Held, 1),
                ("d@far.test", Delivered, 1),
            ],
        );
        let f = |f: Filter| f.select(&m, 5000).into_iter().map(|r| r.address.as_str()).collect::<Vec<_>>();
        assert_eq!(f(Filter::default()), ["a@far.test", "b@near.test", "c@far.test"]);
        assert_eq!(
            f(Filter { destination: Some("far.test".into()), ..Default::default() }),
            ["a@far.test", "c@far.test"]
        );
        assert_eq!(f(Filter { state: Some("deferred".into()), ..Default::default() }), ["b@near.test"]);
        assert_eq!(f(Filter { state: Some("held".into()), ..Default::default() }), ["c@far.test"]);
        assert_eq!(f(Filter { recipient: Some("@near.test".into()), ..Default::default() }), ["b@near.test"]);
        assert_eq!(f(Filter { sender: Some("app@example.test".into()), ..Default::default() }).len(), 3);
        assert!(f(Filter { sender: Some("@other.test".into()), ..Default::default() }).is_empty());
        assert_eq!(f(Filter { older_than: Some(4000), ..Default::default() }).len(), 3, "at the edge");
        assert!(f(Filter { older_than: Some(4001), ..Default::default() }).is_empty(), "past it");
        let bounce = msg("", 1000, &[("x@far.test", Queued, 0)]);
        assert_eq!(Filter { sender: Some("<>".into()), ..Default::default() }.select(&bounce, 2000).len(), 1);
    }

    #[test]
    fn shape_buckets_by_age_like_qshape() {
        use RecipientStatus::*;
        let now = 100_000;
        let q = [
            msg("a@x.test", now - 60, &[("1@far.test", Queued, 0), ("2@far.test", Queued, 0)]),
            msg("a@x.test", now - 5 * 60, &[("1@far.test", Queued, 0)]),
            msg("a@x.test", now - 79 * 60, &[("1@near.test", Held, 0)]),
            msg("a@x.test", now - 80 * 60, &[("1@near.test", Queued, 0), ("2@far.test", Delivered, 1)]),
        ];
        let rows = shape(&q, now);
        assert_eq!(rows[0], ("TOTAL".to_string(), [1, 1, 0, 0, 1, 1]));
        assert_eq!(rows[1], ("far.test".to_string(), [1, 1, 0, 0, 0, 0]));
        assert_eq!(rows[2], ("near.test".to_string(), [0, 0, 0, 0, 1, 1]));
        assert!(shape_text(&rows).contains("80+"));
    }
}
