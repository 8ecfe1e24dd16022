//! Per-client message rates (like Postfix's anvil): messages per minute per
//! IP and per authenticated user, and the hourly outbound volume of each
//! authenticated user. Trusted networks are exempt. Time is passed in.
//! (Connections per IP are capped at the gate, `facteur-net`.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    pub messages_per_minute_per_ip: u32,
    pub messages_per_minute_per_user: u32,
    pub messages_per_hour_per_user: u32,
}

const HOUR_MS: i64 = 3_600_000;

/// One user's messages to other domains: this hour's count and the last
/// one's, so the trailing hour is estimated as `count + previous × (the
/// share of the last hour still inside the window)` (a sliding window in
/// constant space).
#[derive(Debug, Clone, Copy, Default)]
struct Hourly {
    start_ms: i64,
    count: u32,
    previous: u32,
    /// The operator was told of this episode over the limit.
    told: bool,
}

impl Hourly {
    /// Count one message at `now_ms`; the trailing hour's estimate.
    fn add(&mut self, now_ms: i64) -> f64 {
        let elapsed = now_ms - self.start_ms;
        if elapsed >= 2 * HOUR_MS {
            *self = Hourly { start_ms: now_ms, ..Hourly::default() };
        } else if elapsed >= HOUR_MS {
            self.start_ms += HOUR_MS;
            self.previous = self.count;
            self.count = 0;
        }
        self.count += 1;
        let inside = 1.0 - (now_ms - self.start_ms) as f64 / HOUR_MS as f64;
        f64::from(self.count) + f64::from(self.previous) * inside
    }
}

/// What becomes of a user's message to other domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    Send,
    /// Over the hourly limit: held. `first`: the first of this episode
    /// (the operator is told once); `sent`: the trailing hour's count.
    Hold {
        first: bool,
        sent: u32,
    },
}

/// A count over a fixed one-minute window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: i64,
    count: u32,
}

impl Window {
    /// Count one event at `now_ms`; false when `limit` is already reached.
    fn take(&mut self, now_ms: i64, limit: u32) -> bool {
        if now_ms - self.start_ms >= 60_000 {
            *self = Window { start_ms: now_ms, count: 0 };
        }
        if limit > 0 && self.count >= limit {
            return false;
        }
        self.count += 1;
        true
    }
}

#[derive(Default)]
struct State {
    ip_messages: HashMap<IpAddr, Window>,
    user_messages: HashMap<String, Window>,
    user_hours: HashMap<String, Hourly>,
}

#[derive(Clone)]
pub struct ClientLimits {
    config: LimitConfig,
    state: Arc<Mutex<State>>,
}

/// Tables stop growing here; old windows are dropped first.
const MAX_TRACKED: usize = 100_000;

impl ClientLimits {
    pub fn new(config: LimitConfig) -> Self {
        ClientLimits { config, state: Arc::new(Mutex::new(State::default())) }
    }

    /// The same counts under new limits (configuration reload).
    pub fn with_config(&self, config: LimitConfig) -> Self {
        ClientLimits { config, state: self.state.clone() }
    }

    /// Count a message (at MAIL); `Err` names which limit was hit.
    pub fn message(&self, ip: IpAddr, user: Option<&str>, now_ms: i64) -> Result<(), &'static str> {
        let Ok(mut s) = self.state.lock() else { return Ok(()) };
        if s.ip_messages.len() > MAX_TRACKED {
            s.ip_messages.retain(|_, w| now_ms - w.start_ms < 60_000);
        }
        if s.user_messages.len() > MAX_TRACKED {
            s.user_messages.retain(|_, w| now_ms - w.start_ms < 60_000);
        }
        let fresh = Window { start_ms: now_ms, count: 0 };
        if !s.ip_messages.entry(ip).or_insert(fresh).take(now_ms, self.config.messages_per_minute_per_ip) {
            return Err("ip");
        }
        if let Some(u) = user
            && !s
                .user_messages
                .entry(u.to_string())
                .or_insert(fresh)
                .take(now_ms, self.config.messages_per_minute_per_user)
        {
            return Err("user");
        }
        Ok(())
    }

    /// Count a message `user` sends to other domains (once accepted).
    pub fn outbound(&self, user: &str, now_ms: i64) -> Outbound {
        let limit = self.config.messages_per_hour_per_user;
        if limit == 0 {
            return Outbound::Send;
        }
        let Ok(mut s) = self.state.lock() else { return Outbound::Send };
        if s.user_hours.len() > MAX_TRACKED {
            s.user_hours.retain(|_, h| now_ms - h.start_ms < 2 * HOUR_MS);
        }
        let hour = s.user_hours.entry(user.to_string()).or_insert(Hourly { start_ms: now_ms, ..Hourly::default() });
        let sent = hour.add(now_ms);
        if sent <= f64::from(limit) {
            hour.told = false;
            return Outbound::Send;
        }
        let first = !hour.told;
        hour.told = true;
        Outbound::Hold { first, sent: sent.round() as u32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn messages_per_minute_per_ip_and_user() {
        let l = ClientLimits::new(LimitConfig {
            messages_per_minute_per_ip: 3,
            messages_per_minute_per_user: 2,
            messages_per_hour_per_user: 0,
        });
        let a = ip("192.0.2.1");
        assert_eq!(l.message(a, None, 0), Ok(()));
        assert_eq!(l.message(a, Some("u"), 1), Ok(()));
        assert_eq!(l.message(a, Some("u"), 2), Ok(()));
        assert_eq!(l.message(a, None, 3), Err("ip"), "the 4th in a minute");
        assert_eq!(l.message(ip("192.0.2.9"), Some("u"), 4), Err("user"), "the user's 3rd, from anywhere");
        assert_eq!(l.message(a, Some("u"), 60_001), Ok(()), "a new minute");
    }

    #[test]
    fn hourly_outbound_limit_holds_past_the_edge_and_forgets_over_the_next_hour() {
        let l = ClientLimits::new(LimitConfig {
            messages_per_minute_per_ip: 0,
            messages_per_minute_per_user: 0,
            messages_per_hour_per_user: 3,
        });
        for t in 0..3 {
            assert_eq!(l.outbound("u", t), Outbound::Send, "the 3rd is at the limit, not past it");
        }
        assert_eq!(l.outbound("u", 10), Outbound::Hold { first: true, sent: 4 });
        assert_eq!(l.outbound("u", 11), Outbound::Hold { first: false, sent: 5 }, "told once");
        assert_eq!(l.outbound("v", 12), Outbound::Send, "per user");
        // 90 minutes on, half of the first hour's 5 still counts: 1 + 2.5.
        assert_eq!(l.outbound("u", HOUR_MS + 30 * 60_000), Outbound::Hold { first: false, sent: 4 });
        // Two hours of quiet: a fresh start.
        assert_eq!(l.outbound("u", 4 * HOUR_MS), Outbound::Send);
        let off = ClientLimits::new(LimitConfig {
            messages_per_minute_per_ip: 0,
            messages_per_minute_per_user: 0,
            messages_per_hour_per_user: 0,
        });
        assert!((0..10_000).all(|t| off.outbound("u", t) == Outbound::Send));
    }
}
