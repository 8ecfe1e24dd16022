//! The door of one protocol's listeners: a global cap on connections, a cap
//! per client address, a pressure signal when the cap nears, and room kept
//! for new clients by evicting the connection that has gone longest without
//! finishing a request.
//!
//! Why eviction: 20 addresses × 50 trickling sockets fill a cap of 1,000
//! and lock every other client out, however short the timeouts. At the cap
//! a newcomer is let in if some connection has made no progress for
//! `evict_after` (it is told to go: 421 / BYE, then dropped); a connection
//! that completes requests, or a logged-in IMAP or POP3 session, is never
//! the victim.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Caps for one protocol (all its listeners together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    /// Connections at once (at least 1).
    pub max_connections: usize,
    /// Connections at once from one address (0: no cap).
    pub max_per_ip: usize,
    /// A connection that has made no progress for this long may be evicted
    /// to let a new client in when the cap is reached.
    pub evict_after: Duration,
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The protocol's cap is reached and nobody can be evicted.
    Full,
    /// This address has its share already.
    PerIp,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Full => "too many connections",
            Refused::PerIp => "too many connections from this address",
        }
    }
}

/// What a connection shares with its gate: when it last made progress,
/// whether it may be evicted, and the signal to go.
#[derive(Debug)]
pub struct Presence {
    /// Milliseconds since the gate's epoch at the last finished request.
    progress_ms: AtomicU64,
    /// Logged-in sessions are not evicted.
    protected: AtomicBool,
    evicted: AtomicBool,
    /// Rung when the connection is evicted or the gate's pressure comes or
    /// goes: its wait looks at its limits again. One waiter, its own.
    wake: Notify,
}

impl Presence {
    /// A request finished (a command answered): the connection is alive.
    pub fn progressed(&self, gate: &Gate) {
        self.progress_ms.store(gate.now_ms(), Ordering::Relaxed);
    }

    /// When the last progress was (milliseconds since the gate's start).
    pub fn progress_at(&self) -> u64 {
        self.progress_ms.load(Ordering::Relaxed)
    }

    /// The session logged in: it is no longer a candidate for eviction.
    pub fn protect(&self) {
        self.protected.store(true, Ordering::Relaxed);
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Resolves when the connection is evicted, or its limits changed
    /// (pressure came or went) and its wait must look at them again.
    pub async fn woken(&self) {
        if !self.is_evicted() {
            self.wake.notified().await;
        }
    }

    /// Resolves once the gate asked this connection to make room.
    pub async fn evicted(&self) {
        while !self.is_evicted() {
            self.wake.notified().await;
        }
    }
}

struct Entry {
    ip: IpAddr,
    presence: Arc<Presence>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    by_ip: HashMap<IpAddr, usize>,
    /// Evicted connections still open (they are on their way out).
    leaving: usize,
}

/// One protocol's door. Cheap to share (`Arc<Gate>`).
pub struct Gate {
    name: &'static str,
    config: Mutex<GateConfig>,
    epoch: Instant,
    state: Mutex<State>,
    pressure: AtomicBool,
}

/// A connection's place; dropping it frees the place.
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    pub presence: Arc<Presence>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Ok(mut s) = self.gate.state.lock() else { return };
        if let Some(e) = s.conns.remove(&self.id) {
            if e.presence.is_evicted() {
                s.leaving = s.leaving.saturating_sub(1);
            }
            if let Some(n) = s.by_ip.get_mut(&e.ip) {
                *n -= 1;
                if *n == 0 {
                    s.by_ip.remove(&e.ip);
                }
            }
        }
        // Under the lock, so that concurrent changes are told in order.
        self.gate.update_pressure(&s);
    }
}

impl Gate {
    pub fn new(name: &'static str, config: GateConfig) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            config: Mutex::new(config),
            epoch: Instant::now(),
            state: Mutex::default(),
            pressure: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// New caps (configuration reload); open connections stay.
    pub fn reconfigure(&self, config: GateConfig) {
        if let Ok(mut c) = self.config.lock() {
            *c = config;
        }
        if let Ok(s) = self.state.lock() {
            self.update_pressure(&s);
        }
    }

    fn config(&self) -> GateConfig {
        self.config.lock().map(|c| *c).unwrap_or(GateConfig {
            max_connections: 1,
            max_per_ip: 1,
            evict_after: Duration::from_secs(10),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state.lock().map(|s| s.conns.len()).unwrap_or(0)
    }

    /// True while three quarters of the cap are taken: timeouts tighten.
    pub fn under_pressure(&self) -> bool {
        self.pressure.load(Ordering::Relaxed)
    }

    /// Pressure from the connections open now; when it comes or goes,
    /// every connection's wait is woken to look at its limits again (one
    /// wake per connection, not a shared channel every read listens to).
    fn update_pressure(&self, s: &State) {
        let max = self.config().max_connections.max(1);
        let stressed = s.conns.len() * 4 >= max * 3;
        if self.pressure.swap(stressed, Ordering::Relaxed) != stressed {
            for e in s.conns.values() {
                e.presence.wake.notify_one();
            }
        }
    }

    /// Let a connection from `ip` in (`exempt`: no per-address cap, for
    /// trusted networks), evicting a stalled one if the cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, exempt: bool) -> Result<Ticket, Refused> {
        let config = self.config();
        let now = self.now_ms();
        // IPv6 by /64: one host, one share.
        let ip = crate::auth::client_key(ip);
        let mut s = self.state.lock().map_err(|_| Refused::Full)?;
        let from_ip = s.by_ip.get(&ip).copied().unwrap_or(0);
        if !exempt && config.max_per_ip > 0 && from_ip >= config.max_per_ip {
            return Err(Refused::PerIp);
        }
        let max = config.max_connections.max(1);
        // Evicted connections on their way out still hold descriptors: a
        // tenth more at most (two for tiny caps), then nobody else comes in.
        if s.conns.len() >= max + (max / 10).max(2) {
            return Err(Refused::Full);
        }
        if s.conns.len() - s.leaving >= max {
            let stalled = config.evict_after.as_millis() as u64;
            let victim = s
                .conns
                .values()
                .filter(|e| !e.presence.protected.load(Ordering::Relaxed) && !e.presence.is_evicted())
                .map(|e| (e.presence.progress_ms.load(Ordering::Relaxed), &e.presence))
                .filter(|(at, _)| now.saturating_sub(*at) >= stalled)
                .min_by_key(|(at, _)| *at)
                .map(|(_, p)| p.clone());
            let Some(victim) = victim else { return Err(Refused::Full) };
            victim.evicted.store(true, Ordering::Relaxed);
            victim.wake.notify_one();
            s.leaving += 1;
            tracing::info!(
                listener = self.name,
                "connection cap reached: a stalled connection makes room for a new one"
            );
        }
        let id = s.next_id;
        s.next_id += 1;
        let presence = Arc::new(Presence {
            progress_ms: AtomicU64::new(now),
            protected: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        });
        s.conns.insert(id, Entry { ip, presence: presence.clone() });
        *s.by_ip.entry(ip).or_insert(0) += 1;
        self.update_pressure(&s);
        drop(s);
        Ok(Ticket { gate: self.clone(), id, presence })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        [192, 0, 2, n].into()
    }

    fn gate(max: usize, per_ip: usize, evict_ms: u64) -> Arc<Gate> {
        Gate::new(
            "test",
            GateConfig { max_connections: max, max_per_ip: per_ip, evict_after: Duration::from_millis(evict_ms) },
        )
    }

    #[test]
    fn per_address_cap_at_and_past_the_edge() {
        let g = gate(100, 2, 60_000);
        let a = g.admit(ip(1), false).unwrap();
        let _b = g.admit(ip(1), false).unwrap();
        assert_eq!(g.admit(ip(1), false).err(), Some(Refused::PerIp));
        assert!(g.admit(ip(1), true).is_ok(), "trusted networks are exempt");
        assert!(g.admit(ip(2), false).is_ok(), "another address is not affected");
        drop(a);
        assert!(g.admit(ip(1), false).is_ok(), "a closed connection frees its place");
    }

    #[test]
    fn global_cap_without_anyone_to_evict() {
        let g = gate(2, 0, 60_000);
        let _a = g.admit(ip(1), false).unwrap();
        let _b = g.admit(ip(2), false).unwrap();
        assert_eq!(g.admit(ip(3), false).err(), Some(Refused::Full), "everyone made progress recently");
    }

    #[test]
    fn at_the_cap_the_longest_stalled_connection_makes_room() {
        let g = gate(2, 0, 0);
        let a = g.admit(ip(1), false).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let b = g.admit(ip(2), false).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        b.presence.progressed(&g);
        std::thread::sleep(Duration::from_millis(5));
        let c = g.admit(ip(3), false).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(a.presence.is_evicted(), "the oldest without progress goes");
        assert!(!b.presence.is_evicted());
        // Until the evicted one has gone, it does not count against the cap
        // a second time: the next newcomer evicts b, not a again.
        let _d = g.admit(ip(4), false).unwrap();
        assert!(b.presence.is_evicted());
        assert_eq!(g.open(), 4);
        drop(a);
        drop(b);
        assert_eq!(g.open(), 2);
        assert!(!c.presence.is_evicted());
    }

    #[test]
    fn evicted_connections_on_their_way_out_are_bounded() {
        // Cap 20: at most two more (a tenth) may be open while leaving.
        let g = gate(20, 0, 0);
        let mut held: Vec<_> = (0..20u8).map(|i| g.admit(ip(i), false).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(2));
        held.push(g.admit(ip(100), false).unwrap());
        held.push(g.admit(ip(101), false).unwrap());
        assert_eq!(g.open(), 22);
        assert_eq!(g.admit(ip(102), false).err(), Some(Refused::Full), "the evicted have not gone yet");
        held.retain(|t| !t.presence.is_evicted());
        assert_eq!(g.open(), 20);
        assert!(g.admit(ip(102), false).is_ok(), "once they are gone, eviction goes on");
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let g = gate(100, 2, 60_000);
        let v6 = |n: u16| IpAddr::from(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, n, 0, 0, n));
        let _a = g.admit(v6(1), false).unwrap();
        let _b = g.admit(v6(2), false).unwrap();
        assert_eq!(g.admit(v6(3), false).err(), Some(Refused::PerIp));
    }

    #[test]
    fn logged_in_sessions_are_never_evicted() {
        let g = gate(1, 0, 0);
        let a = g.admit(ip(1), false).unwrap();
        a.presence.protect();
        assert_eq!(g.admit(ip(2), false).err(), Some(Refused::Full));
        assert!(!a.presence.is_evicted());
    }

    #[test]
    fn pressure_at_three_quarters_of_the_cap() {
        let g = gate(4, 0, 60_000);
        let a = g.admit(ip(1), false).unwrap();
        let _b = g.admit(ip(2), false).unwrap();
        assert!(!g.under_pressure());
        let _c = g.admit(ip(3), false).unwrap();
        assert!(g.under_pressure(), "3 of 4");
        drop(a);
        assert!(!g.under_pressure());
    }
}
