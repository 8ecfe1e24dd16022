//! Per-client limits (like Postfix's anvil): simultaneous connections per
//! IP, messages per minute per IP and per authenticated user. Trusted
//! networks are exempt. Time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    pub connections_per_ip: usize,
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
    connections: HashMap<IpAddr, usize>,
    ip_messages: HashMap<IpAddr, Window>,
    user_messages: HashMap<String, Window>,
}

#[derive(Clone)]
pub struct ClientLimits {
    config: LimitConfig,
    state: Arc<Mutex<State>>,
}

/// Held while a connection is open; releases its slot when dropped.
pub struct ConnectionSlot {
    ip: IpAddr,
    state: Arc<Mutex<State>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock()
            && let Some(n) = s.connections.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                s.connections.remove(&self.ip);
            }
        }
    }
}

/// Tables stop growing here; old windows are dropped first.
const MAX_TRACKED: usize = 100_000;

impl ClientLimits {
    pub fn new(config: LimitConfig) -> Self {
        ClientLimits { config, state: Arc::new(Mutex::new(State::default())) }
    }

    /// A slot for a new connection from `ip`, or `None` past the limit (0 = no limit).
    pub fn connect(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut s = self.state.lock().ok()?;
        let n = s.connections.entry(ip).or_insert(0);
        if self.config.connections_per_ip > 0 && *n >= self.config.connections_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot { ip, state: self.state.clone() })
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
    fn connections_at_and_past_the_limit() {
        let l = ClientLimits::new(LimitConfig {
            connections_per_ip: 2,
            messages_per_minute_per_ip: 0,
            messages_per_minute_per_user: 0,
        });
        let a = l.connect(ip("192.0.2.1")).unwrap();
        let _b = l.connect(ip("192.0.2.1")).unwrap();
        assert!(l.connect(ip("192.0.2.1")).is_none());
        assert!(l.connect(ip("192.0.2.2")).is_some(), "another client is not affected");
        drop(a);
        assert!(l.connect(ip("192.0.2.1")).is_some(), "a closed connection frees its slot");
    }

    #[test]
    fn messages_per_minute_per_ip_and_user() {
        let l = ClientLimits::new(LimitConfig {
            connections_per_ip: 0,
            messages_per_minute_per_ip: 3,
            messages_per_minute_per_user: 2,
        });
        let a = ip("192.0.2.1");
        assert_eq!(l.message(a, None, 0), Ok(()));
        assert_eq!(l.message(a, Some("u"), 1), Ok(()));
        assert_eq!(l.message(a, Some("u"), 2), Ok(()));
        assert_eq!(l.message(a, None, 3), Err("ip"), "the 4th in a minute");
        assert_eq!(l.message(ip("192.0.2.9"), Some("u"), 4), Err("user"), "the user's 3rd, from anywhere");
        assert_eq!(l.message(a, Some("u"), 60_001), Ok(()), "a new minute");
    }
}
