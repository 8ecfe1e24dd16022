//! What an attempt means for a recipient: delivered, deferred (with the next
//! retry time), or bounced — and which notice (DSN) the sender gets. Pure
//! functions of the attempt, the recipient's history and `now`.

use facteur_spool::Notice;
use facteur_store::{JobRecipient, NewState};
use facteur_types::Notify;

use crate::config::DeliveryConfig;

/// The result of trying one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered { reply: String },
    Temporary { reply: String, status: (u8, u16, u16) },
    Permanent { reply: String, status: (u8, u16, u16) },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: NewState,
    pub notice: Option<Notice>,
    /// The status to report in that notice.
    pub status: (u8, u16, u16),
    pub delay_notified: bool,
}

/// Exponential backoff: `first × 2^(n-1)` capped at `max`, ± jitter, where
/// `n` counts the attempts made so far (RFC 5321 §4.5.4.1 asks for retries
/// spaced by at least 30 minutes eventually; the cap keeps them a few hours apart).
pub fn retry_delay(attempts_made: u32, config: &DeliveryConfig) -> i64 {
    let exp = attempts_made.saturating_sub(1).min(30);
    let base = config.first_retry_secs.saturating_mul(1u64 << exp).min(config.max_retry_secs) as f64;
    let jitter = if config.retry_jitter > 0.0 {
        use rand::Rng;
        rand::rng().random_range(-config.retry_jitter..config.retry_jitter)
    } else {
        0.0
    };
    ((base * (1.0 + jitter)).round() as i64).max(1)
}

/// Decide a recipient's fate after an attempt at `now`.
/// `remote_dsn`: the receiving server took our NOTIFY (it advertised DSN),
/// so success notices are its job from now on (RFC 3461 §5.2.2).
pub fn decide(
    r: &JobRecipient,
    attempt: &Attempt,
    now: i64,
    received_at: i64,
    remote_dsn: bool,
    config: &DeliveryConfig,
) -> Decision {
    let notify = Notify::effective(r.notify);
    match attempt {
        Attempt::Delivered { .. } => Decision {
            state: NewState::Delivered,
            notice: (notify.success && !remote_dsn).then_some(Notice::Relayed),
            status: (2, 0, 0),
            delay_notified: r.delay_notified,
        },
        Attempt::Permanent { status, .. } => Decision {
            state: NewState::Bounced,
            notice: notify.failure.then_some(Notice::Failed),
            status: *status,
            delay_notified: r.delay_notified,
        },
        Attempt::Temporary { status, .. } => {
            let age = now - received_at;
            if age >= config.queue_lifetime_secs as i64 {
                // RFC 3463 X.4.7: delivery time expired.
                return Decision {
                    state: NewState::Bounced,
                    notice: notify.failure.then_some(Notice::Failed),
                    status: (4, 4, 7),
                    delay_notified: r.delay_notified,
                };
            }
            let next = now + retry_delay(r.attempts + 1, config);
            // Never schedule past the end of the queue lifetime by much: the
            // last try happens at expiry.
            let next = next.min(received_at + config.queue_lifetime_secs as i64).max(now + 1);
            let warn = !r.delay_notified && notify.delay && age >= config.delay_warning_secs as i64;
            Decision {
                state: NewState::Deferred { next_attempt: next },
                notice: warn.then_some(Notice::Delayed),
                status: *status,
                delay_notified: r.delay_notified || warn,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(notify: Option<&str>, attempts: u32, delay_notified: bool) -> JobRecipient {
        JobRecipient {
            idx: 0,
            address: "a@b.test".into(),
            notify: notify.map(|n| n.parse().unwrap()),
            orcpt: None,
            attempts,
            delay_notified,
        }
    }

    fn cfg() -> DeliveryConfig {
        DeliveryConfig { retry_jitter: 0.0, ..DeliveryConfig::default() }
    }

    fn temp() -> Attempt {
        Attempt::Temporary { reply: "451 4.3.0 later".into(), status: (4, 3, 0) }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = cfg();
        let delays: Vec<i64> = (1..=8).map(|n| retry_delay(n, &c)).collect();
        assert_eq!(delays, [300, 600, 1200, 2400, 4800, 9600, 14400, 14400]);
        let j = DeliveryConfig { retry_jitter: 0.2, ..cfg() };
        for _ in 0..100 {
            let d = retry_delay(1, &j);
            assert!((240..=360).contains(&d), "{d}");
        }
    }

    #[test]
    fn delivered_permanent_and_success_notices() {
        let c = cfg();
        let d =
            decide(&rcpt(Some("SUCCESS"), 0, false), &Attempt::Delivered { reply: "250 ok".into() }, 10, 0, false, &c);
        assert_eq!((d.state, d.notice), (NewState::Delivered, Some(Notice::Relayed)));
        let d =
            decide(&rcpt(Some("SUCCESS"), 0, false), &Attempt::Delivered { reply: "250 ok".into() }, 10, 0, true, &c);
        assert_eq!(d.notice, None, "a DSN-capable server reports success itself");
        let p = Attempt::Permanent { reply: "550 5.1.1 no".into(), status: (5, 1, 1) };
        let d = decide(&rcpt(None, 0, false), &p, 10, 0, false, &c);
        assert_eq!((d.state, d.notice, d.status), (NewState::Bounced, Some(Notice::Failed), (5, 1, 1)));
        let d = decide(&rcpt(Some("NEVER"), 0, false), &p, 10, 0, false, &c);
        assert_eq!((d.state, d.notice), (NewState::Bounced, None));
    }

    #[test]
    fn deferral_delay_notice_once_then_expiry() {
        let c = cfg();
        let d = decide(&rcpt(None, 0, false), &temp(), 100, 0, false, &c);
        assert_eq!((d.state, d.notice), (NewState::Deferred { next_attempt: 400 }, None));
        // Past the warning time: one delay notice...
        let d = decide(&rcpt(None, 5, false), &temp(), 4 * 3600, 0, false, &c);
        assert_eq!((d.notice, d.delay_notified), (Some(Notice::Delayed), true));
        // ...and never a second.
        let d = decide(&rcpt(None, 6, true), &temp(), 5 * 3600, 0, false, &c);
        assert_eq!((d.notice, d.delay_notified), (None, true));
        // NOTIFY=FAILURE: no delay notice.
        let d = decide(&rcpt(Some("FAILURE"), 5, false), &temp(), 4 * 3600, 0, false, &c);
        assert_eq!(d.notice, None);
        // The last retry is scheduled at expiry, not after.
        let d = decide(&rcpt(None, 20, true), &temp(), 5 * 86_400 - 60, 0, false, &c);
        assert_eq!(d.state, NewState::Deferred { next_attempt: 5 * 86_400 });
        // At the end of the queue lifetime: bounced with 4.4.7.
        let d = decide(&rcpt(None, 21, true), &temp(), 5 * 86_400, 0, false, &c);
        assert_eq!((d.state, d.notice, d.status), (NewState::Bounced, Some(Notice::Failed), (4, 4, 7)));
    }
}
