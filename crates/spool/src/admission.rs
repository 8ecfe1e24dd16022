//! Admission control at the door: which classes of mail the SMTP listeners
//! accept now, given how loaded the queue and the disk are.
//!
//! Purpose: under pressure, bulk is throttled at the door with temporary
//! replies long before the spool is in danger, and people's mail keeps
//! flowing (MISSION.md, "People first under pressure"). Nothing is refused
//! for good: every refusal is a 4xx, and the sender's server tries again.
//! Pure: the caller measures the load and passes it in.
//!
//! # Levels
//!
//! Each signal has three thresholds, levels 0, 1, 2. Level 0 closes bulk,
//! level 1 closes transactional too, level 2 closes interpersonal and system
//! as well: bulk goes first, system only at the last level. A class is closed
//! when any latch of its level or above is closed, so the order of closing
//! holds even if thresholds are given out of order.
//!
//! - Queue depth (ready recipients waiting): closes *above* the threshold.
//! - Age of the oldest ready message: closes *above* the threshold. Level k
//!   watches the age of every class that closes at level k or later:
//!   level 0 watches all four, level 1 system, interpersonal and
//!   transactional, level 2 system and interpersonal. Mail of a higher class
//!   that is aging means taking more of a lower class only competes with it;
//!   mail of a lower class that is aging is the scheduler doing its job (bulk
//!   waits by design), so old bulk closes only bulk.
//! - Free disk: closes *below* the threshold (thresholds descend).
//!
//! Depth and age refusals are `451 4.7.1`; storage refusals are `452 4.3.1`,
//! and win when both apply.
//!
//! # Hysteresis
//!
//! A closed latch reopens only when its signal is back at or below
//! `threshold × (1 - hysteresis)` (depth, age) or at or above
//! `threshold × (1 + hysteresis)` (disk), so a queue hovering around a
//! threshold does not open and close the door at every update.
//!
//! # Reserve
//!
//! Independently of the latches, a message is never accepted when the disk
//! would be left with less than `reserve_bytes` free after storing it; that
//! check is made per message, with a fresh reading, and has no hysteresis.

use serde::{Deserialize, Serialize};

use facteur_types::Class;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Where admission closes. A threshold of `u64::MAX` (depth, age) or 0
/// (disk) never closes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Watermarks {
    /// Ready recipients in the queue; ascending: above `[0]` bulk closes,
    /// above `[1]` transactional too, above `[2]` interpersonal and system.
    pub queue_depth: [u64; 3],
    /// Age in seconds of the oldest ready message of the classes each level
    /// watches (see the module documentation); ascending, same levels.
    pub oldest_age_secs: [u64; 3],
    /// Free bytes on the spool's disk; descending: below `[0]` bulk closes,
    /// below `[1]` transactional too, below `[2]` everything.
    pub free_disk_bytes: [u64; 3],
    /// Never accept a message that would leave less than this free.
    pub reserve_bytes: u64,
    /// Fraction between 0 and 1 (clamped; NaN counts as 0).
    pub hysteresis: f64,
}

impl Default for Watermarks {
    /// For one node with a few tens of GiB of spool: bulk closes when a
    /// hundred thousand recipients wait or ready mail has waited ten minutes.
    fn default() -> Self {
        Watermarks {
            queue_depth: [100_000, 250_000, 500_000],
            oldest_age_secs: [600, 1_800, 3_600],
            free_disk_bytes: [4 * GIB, 2 * GIB, GIB],
            reserve_bytes: 256 * MIB,
            hysteresis: 0.1,
        }
    }
}

/// The load, as measured by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Load {
    pub queue_depth: u64,
    /// Age in seconds of the oldest ready message of each class, indexed like
    /// `Class::ALL` (0 when the class has none ready).
    pub oldest_ready_age_secs: [u64; 4],
    pub free_disk_bytes: u64,
}

/// The answer at the door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Accept,
    /// Reply code, enhanced status code (RFC 3463) and text for the client.
    TryLater {
        code: u16,
        enhanced: (u8, u16, u16),
        reason: String,
    },
}

/// Open or closed state of each class, with memory for hysteresis.
#[derive(Debug, Clone)]
pub struct Admission {
    w: Watermarks,
    h: f64,
    /// Closed latches per level.
    depth: [bool; 3],
    age: [bool; 3],
    disk: [bool; 3],
}

impl Admission {
    /// Everything open until the first `update`.
    pub fn new(w: Watermarks) -> Self {
        let h = if w.hysteresis.is_nan() { 0.0 } else { w.hysteresis.clamp(0.0, 1.0) };
        Admission { w, h, depth: [false; 3], age: [false; 3], disk: [false; 3] }
    }

    /// New levels (configuration reload); the latches stay as they are and
    /// move at the next [`Admission::update`].
    pub fn set_watermarks(&mut self, w: Watermarks) {
        let Admission { depth, age, disk, .. } = *self;
        *self = Admission { depth, age, disk, ..Admission::new(w) };
    }

    pub fn watermarks(&self) -> &Watermarks {
        &self.w
    }

    /// Recompute every latch from `load`, with hysteresis.
    pub fn update(&mut self, load: &Load) {
        for level in 0..3 {
            self.depth[level] = latch_above(self.depth[level], load.queue_depth, self.w.queue_depth[level], self.h);
            let age = Class::ALL
                .into_iter()
                .filter(|c| rank(*c) >= level)
                .map(|c| load.oldest_ready_age_secs[c.index()])
                .max()
                .unwrap_or(0);
            self.age[level] = latch_above(self.age[level], age, self.w.oldest_age_secs[level], self.h);
            self.disk[level] =
                latch_below(self.disk[level], load.free_disk_bytes, self.w.free_disk_bytes[level], self.h);
        }
    }

    /// May a message of `class` and `message_size` octets come in now?
    /// `free_disk_bytes` is a fresh reading for the reserve check;
    /// `message_size` is the SIZE declared at MAIL (0 when none) or the
    /// size received so far.
    pub fn verdict(&self, class: Class, message_size: u64, free_disk_bytes: u64) -> Verdict {
        if self.storage_closed(class) {
            return storage(format!("insufficient system storage, {class} mail deferred; try again later"));
        }
        let left = free_disk_bytes.checked_sub(message_size);
        if left.is_none_or(|left| left < self.w.reserve_bytes) {
            return storage("insufficient system storage for this message; try again later".to_string());
        }
        if self.pressure_closed(class) {
            // RFC 5321 §4.2.3: 451 local error in processing; RFC 3463 §3.8
            // X.7.1: refused by policy, here the policy of load.
            return Verdict::TryLater {
                code: 451,
                enhanced: (4, 7, 1),
                reason: format!("too much mail waiting, {class} mail deferred; try again later"),
            };
        }
        Verdict::Accept
    }

    /// Whether each class is open, in the order of `Class::ALL`.
    pub fn state(&self) -> [(Class, bool); 4] {
        Class::ALL.map(|c| (c, !self.storage_closed(c) && !self.pressure_closed(c)))
    }

    fn storage_closed(&self, class: Class) -> bool {
        self.disk[rank(class)..].iter().any(|closed| *closed)
    }

    fn pressure_closed(&self, class: Class) -> bool {
        let r = rank(class);
        self.depth[r..].iter().chain(&self.age[r..]).any(|closed| *closed)
    }
}

/// The level at which a class closes.
fn rank(class: Class) -> usize {
    match class {
        Class::Bulk => 0,
        Class::Transactional => 1,
        Class::Interpersonal | Class::System => 2,
    }
}

/// RFC 5321 §4.2.3: 452 insufficient system storage (also RFC 1870 §6.1 for
/// a declared size); RFC 3463 §3.4 X.3.1: mail system full.
fn storage(reason: String) -> Verdict {
    Verdict::TryLater { code: 452, enhanced: (4, 3, 1), reason }
}

/// A latch on a signal that closes above `threshold`.
fn latch_above(closed: bool, value: u64, threshold: u64, h: f64) -> bool {
    if closed {
        // min: f64 rounding of huge thresholds must not reopen above them.
        let reopen = ((threshold as f64 * (1.0 - h)).floor() as u64).min(threshold);
        value > reopen
    } else {
        value > threshold
    }
}

/// A latch on a signal that closes below `threshold`.
fn latch_below(closed: bool, value: u64, threshold: u64, h: f64) -> bool {
    if closed {
        // `as` saturates at u64::MAX; max: rounding never reopens below it.
        let reopen = ((threshold as f64 * (1.0 + h)).ceil() as u64).max(threshold);
        value < reopen
    } else {
        value < threshold
    }
}
