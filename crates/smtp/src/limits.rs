//! Per-client message rates (like Postfix's anvil): messages per minute per
//! IP and per authenticated user. Trusted networks are exempt. Time is
//! passed in. (Connections per IP are capped at the gate, `facteur-net`.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    pub messages_per_minute_per_ip: u32,
    pub messages_per_minute_per_user: u32,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn messages_per_minute_per_ip_and_user() {
        let l = ClientLimits::new(LimitConfig { messages_per_minute_per_ip: 3, messages_per_minute_per_user: 2 });
        let a = ip("192.0.2.1");
        assert_eq!(l.message(a, None, 0), Ok(()));
        assert_eq!(l.message(a, Some("u"), 1), Ok(()));
        assert_eq!(l.message(a, Some("u"), 2), Ok(()));
        assert_eq!(l.message(a, None, 3), Err("ip"), "the 4th in a minute");
        assert_eq!(l.message(ip("192.0.2.9"), Some("u"), 4), Err("user"), "the user's 3rd, from anywhere");
        assert_eq!(l.message(a, Some("u"), 60_001), Ok(()), "a new minute");
    }
}
