//! Good and bad events for the service objectives, counted as they happen.
//!
//! Purpose: the crates that serve mail say, at the point where it is known,
//! whether an event went well for the user (a message accepted or refused
//! for our fault, a login that worked or failed for our fault, a commit, a
//! delivery attempt); the watch (crate `facteur-watch`) takes the counts
//! every few seconds and judges the objectives. Counting is a relaxed
//! atomic add (delivery: a short lock on a small map), so the hot paths
//! pay next to nothing.
//!
//! Invariants: counts are per process (one node); [`take`] returns what
//! was counted since the last call and starts again from zero. Probe mail
//! counts like any other: the probe exists to be one more user. The
//! delivery map holds at most [`MAX_DESTINATIONS`] destinations between
//! two takes; the rest count under [`OTHER`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an event is about (delivery has its own call, [`delivery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A message offered at the door: accepted, or refused for our fault
    /// (storage, not the client's).
    Acceptance = 0,
    /// A mailbox login: it worked, or failed for our fault (not a wrong
    /// password).
    MailboxAccess = 1,
    /// A commit of storage: held or failed.
    Storage = 2,
}

static COUNTS: [[AtomicU64; 2]; 3] = [const { [const { AtomicU64::new(0) }; 2] }; 3];

/// Count `n` events of `signal`, good or not.
pub fn record(signal: Signal, good: bool, n: u64) {
    COUNTS[signal as usize][usize::from(!good)].fetch_add(n, Ordering::Relaxed);
}

/// How a delivery attempt went, as the objectives see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed on (2xx), or refused for good by the destination (5xx): the
    /// service did its part.
    Done,
    /// Deferred by a reply (4xx after a connection: greylisting, a full
    /// mailbox...): normal for a while.
    Deferred,
    /// Deferred because the destination could not be reached (refused,
    /// timed out, no usable host: RFC 3463 X.4.x).
    Unreachable,
}

/// One destination's attempts since the last take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Done within the latency objective...
    pub done_in_time: u64,
    /// ...and after it.
    pub done_late: u64,
    /// Deferred by a reply, the message still young...
    pub deferred_young: u64,
    /// ...and older than the latency objective.
    pub deferred_late: u64,
    pub unreachable: u64,
    /// The last reply of a failed attempt (for the incident's words).
    pub last_failure: Option<String>,
}

/// Most destinations tallied between two takes.
pub const MAX_DESTINATIONS: usize = 200;
/// Where destinations past [`MAX_DESTINATIONS`] are tallied.
pub const OTHER: &str = "other";

/// Per class, per destination.
type ByClass = BTreeMap<String, BTreeMap<String, Tally>>;
/// The tallies, and how many destinations they hold in all.
static DELIVERIES: Mutex<(ByClass, usize)> = Mutex::new((BTreeMap::new(), 0));
static LATENCY_SECS: AtomicU64 = AtomicU64::new(300);

/// The age past which a message is late (the delivery objective's
/// latency; set by the watch at start).
pub fn set_delivery_latency(secs: u64) {
    LATENCY_SECS.store(secs, Ordering::Relaxed);
}

/// A delivery attempt of `class` mail to `destination` for a message
/// `age_secs` old.
pub fn delivery(class: &str, destination: &str, how: Delivery, age_secs: i64, reply: Option<&str>) {
    let late = age_secs > LATENCY_SECS.load(Ordering::Relaxed) as i64;
    let Ok(mut guard) = DELIVERIES.lock() else { return };
    let (map, count) = &mut *guard;
    if !map.contains_key(class) {
        map.insert(class.to_string(), BTreeMap::new());
    }
    let by_dest = map.get_mut(class).expect("inserted above");
    // Strings are made only for a pair not seen since the last take.
    let dest = if by_dest.contains_key(destination) {
        destination
    } else if *count < MAX_DESTINATIONS {
        *count += 1;
        by_dest.insert(destination.to_string(), Tally::default());
        destination
    } else {
        by_dest.entry(OTHER.to_string()).or_default();
        OTHER
    };
    let t = by_dest.get_mut(dest).expect("inserted above");
    match (how, late) {
        (Delivery::Done, false) => t.done_in_time += 1,
        (Delivery::Done, true) => t.done_late += 1,
        (Delivery::Deferred, false) => t.deferred_young += 1,
        (Delivery::Deferred, true) => t.deferred_late += 1,
        (Delivery::Unreachable, _) => t.unreachable += 1,
    }
    if how != Delivery::Done
        && let Some(r) = reply
    {
        t.last_failure = Some(r.to_string());
    }
}

/// What was counted since the last take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    /// (good, bad) per [`Signal`], in its order.
    pub counts: [(u64, u64); 3],
    /// Per (class, destination).
    pub deliveries: BTreeMap<(String, String), Tally>,
}

impl Taken {
    pub fn of(&self, signal: Signal) -> (u64, u64) {
        self.counts[signal as usize]
    }
}

/// Take the counts, starting again from zero.
pub fn take() -> Taken {
    let mut counts = [(0, 0); 3];
    for (i, c) in COUNTS.iter().enumerate() {
        counts[i] = (c[0].swap(0, Ordering::Relaxed), c[1].swap(0, Ordering::Relaxed));
    }
    let nested = DELIVERIES.lock().map(|mut m| std::mem::take(&mut *m).0).unwrap_or_default();
    let deliveries = nested
        .into_iter()
        .flat_map(|(class, by_dest)| by_dest.into_iter().map(move |(d, t)| ((class.clone(), d), t)))
        .collect();
    Taken { counts, deliveries }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the counters are process-wide.
    #[test]
    fn counts_are_taken_once_and_late_is_by_age() {
        take();
        record(Signal::Storage, true, 3);
        record(Signal::Storage, false, 1);
        record(Signal::MailboxAccess, false, 2);
        set_delivery_latency(300);
        delivery("bulk", "a.example", Delivery::Done, 10, None);
        delivery("bulk", "a.example", Delivery::Done, 301, None);
        delivery("bulk", "a.example", Delivery::Deferred, 299, Some("450 4.2.0 greylisted"));
        delivery("bulk", "a.example", Delivery::Unreachable, 1, Some("421 4.4.1 refused"));
        let t = take();
        assert_eq!(t.of(Signal::Storage), (3, 1));
        assert_eq!(t.of(Signal::MailboxAccess), (0, 2));
        assert_eq!(t.of(Signal::Acceptance), (0, 0));
        let a = &t.deliveries[&("bulk".to_string(), "a.example".to_string())];
        assert_eq!((a.done_in_time, a.done_late, a.deferred_young, a.unreachable), (1, 1, 1, 1));
        assert_eq!(a.last_failure.as_deref(), Some("421 4.4.1 refused"));
        assert_eq!(take(), Taken::default());
        // Past the bound, new destinations count under "other".
        for n in 0..MAX_DESTINATIONS + 5 {
            delivery("bulk", &format!("d{n}.example"), Delivery::Done, 0, None);
        }
        let t = take();
        assert_eq!(t.deliveries.len(), MAX_DESTINATIONS + 1);
        assert_eq!(t.deliveries[&("bulk".to_string(), OTHER.to_string())].done_in_time, 5);
    }
}
