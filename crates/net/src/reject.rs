//! Rejections leave a trace: one structured log event each (target
//! `facteur::reject`: listener, client, what was refused, why, the reply),
//! rate-limited so that a flood cannot fill the disk. Past the budget
//! events are counted, and the count is logged once the budget refills.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Events per second allowed on average, and the burst.
const RATE: f64 = 50.0;
const BURST: f64 = 500.0;

struct Bucket {
    tokens: f64,
    last: Option<Instant>,
    suppressed: u64,
}

static BUCKET: Mutex<Bucket> = Mutex::new(Bucket { tokens: BURST, last: None, suppressed: 0 });

/// Take a token at `now`: `Some(n)` to log (n events were suppressed
/// before this one), `None` to suppress.
fn admit(b: &mut Bucket, now: Instant) -> Option<u64> {
    if let Some(last) = b.last {
        b.tokens = (b.tokens + now.duration_since(last).as_secs_f64() * RATE).min(BURST);
    }
    b.last = Some(now);
    if b.tokens < 1.0 {
        b.suppressed += 1;
        return None;
    }
    b.tokens -= 1.0;
    Some(std::mem::take(&mut b.suppressed))
}

/// Log one rejection: `what` names the step ("connection", "rcpt",
/// "auth", "tls", "data", ...), `reason` says why in words, `reply` is what
/// the client was told (empty when nothing could be said).
///
/// Every rejection is counted (`facteur_rejections_total`, by listener,
/// step and `code`), logged or not. `code` must come from a small fixed
/// set (the reply's status code, the gate's reason, "none"), never free
/// text, which would make a series per client or per message.
pub fn event(listener: &str, client: SocketAddr, what: &str, code: &str, reason: &str, reply: &str) {
    metrics::counter!(
        "facteur_rejections_total",
        "listener" => listener.to_string(),
        "what" => what.to_string(),
        "code" => code.to_string(),
    )
    .increment(1);
    let Some(suppressed) = BUCKET.lock().ok().and_then(|mut b| admit(&mut b, Instant::now())) else { return };
    if suppressed > 0 {
        tracing::warn!(target: "facteur::reject", suppressed, "rejections not logged one by one (over 50 per second)");
    }
    tracing::info!(target: "facteur::reject", listener, client = %client, what, reason, reply, "rejected");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_is_cut_to_the_budget_and_the_rest_counted() {
        let mut b = Bucket { tokens: BURST, last: None, suppressed: 0 };
        let t0 = Instant::now();
        let logged = (0..10_000).filter(|_| admit(&mut b, t0).is_some()).count();
        assert_eq!(logged, BURST as usize);
        assert_eq!(b.suppressed, 10_000 - BURST as u64);
        // A second later, 50 more; the first one carries the count.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(admit(&mut b, t1), Some(10_000 - BURST as u64));
        let more = (0..1000).filter(|_| admit(&mut b, t1).is_some()).count();
        assert_eq!(more, RATE as usize - 1);
    }
}
