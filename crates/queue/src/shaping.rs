//! Per-destination adaptive shaping: how many deliveries may run at once to
//! one destination, and how fast new ones may start.
//!
//! Purpose: a backlog drains as fast as the destination accepts and no
//! faster, with no operator releasing it "in blocks" (MISSION.md,
//! "Self-paced recovery"; the Libero/Virgilio outage). Pure: no I/O and no
//! clock; the caller passes `now_ms`, its own monotonic milliseconds, always
//! from the same clock. One `Shaper` per destination.
//!
//! # Concurrency: AIMD with a slow start
//!
//! The limit starts at `initial_concurrency`, as Postfix starts a new
//! destination at a low concurrency and lets feedback move it.
//! - Each `Success` earns `increase_per_success`; every `limit` earned raise
//!   the limit by one, i.e. `increase_per_success` per round of `limit`
//!   successes (additive increase: Postfix's `1/concurrency` positive
//!   feedback, TCP's congestion avoidance of RFC 5681 §3.1). The credit is
//!   kept exactly, not as a fractional window, so rounds add up.
//! - `Throttled` and `ConnectFailure` multiply the limit by
//!   `decrease_factor`, rounding down (multiplicative decrease), and drop the
//!   credit. At most one decrease per `cooldown_ms`: the deliveries that were
//!   in flight when the destination said "too much" all come back with the
//!   same answer, and that is one signal, not ten.
//! - `OtherTemporary` (a full mailbox, a greylisting 450) and `Permanent`
//!   say nothing about load and change nothing.
//! - The limit only grows when it is what holds traffic back: successes
//!   count once a start has filled the window (or been refused by it) since
//!   the limit last changed. A destination that gets one message at a time
//!   keeps a small limit instead of drifting to the maximum on no evidence
//!   and taking the next campaign in one burst (the lesson of RFC 7661 for
//!   TCP windows that were not used).
//!
//! AIMD is what makes many senders sharing one destination converge to a fair
//! and stable load (Chiu and Jain, 1989); it is also what Postfix's
//! concurrency feedback does. The limit always stays within
//! `min_concurrency..=max_concurrency`.
//!
//! # Rate: discovered at the first push-back
//!
//! The rate limit is `None` (unlimited; concurrency alone shapes) until the
//! destination pushes back, unless `max_rate` is configured, which is a
//! ceiling from the start. Receiving servers limit messages per unit of time
//! as often as connections, and at concurrency 1 only a rate can go lower.
//! - At a `Throttled` that decreases (outside the cooldown), the rate becomes
//!   `decrease_factor ×` the rate of successes measured over the last
//!   `RATE_WINDOW_MS` (or the current limit, if lower). With nothing
//!   measured yet it is `decrease_factor ×` the current limit, or
//!   `× initial_rate` when there is none. Never below `MIN_RATE`.
//! - Each counted `Success` then adds `rate_increase / rate` (capped at
//!   doubling), which is `rate_increase` msgs/s per second of clean operation
//!   while deliveries run at the rate. As for the window, a success counts
//!   only while the rate holds traffic back: the token bucket ran dry (a
//!   start took its last token or was refused) within the last
//!   `max(1 s, 2 / rate)`, about two start intervals.
//! - The rate never exceeds `max_rate`. Once discovered it stays: it is the
//!   destination's known tolerance, and it is raised only by evidence.
//!
//! Starts are paced by a token bucket filled at the rate, holding at most one
//! second's worth (and at least one token): a destination that was idle gets a
//! short burst at most, and `try_start` takes a token.
//!
//! # Outage and recovery
//!
//! A `ConnectFailure` marks the destination as out (besides decreasing the
//! limit) and remembers the levels it held just before: its known-good
//! levels. The first `Success` after that is a restart: the limit goes back to
//! at most `initial_concurrency`, the rate to at most `initial_rate` and the
//! token bucket to at most one token.
//!
//! From there the shaper *catches up* to the known-good levels as TCP's slow
//! start climbs to its threshold (RFC 5681 §3.1): +1 concurrency per counted
//! success (doubling per round trip) and +1 msg/s per counted success
//! (doubling per second at the rate), never past those levels; then back to
//! additive increase. A rate that was `None` before the outage goes back to
//! `None` once the concurrency has caught up (the window is then full, so
//! lifting the rate cannot release a burst). A `Throttled` ends the catch-up:
//! the old levels no longer hold.
//!
//! Everything that piled up during the outage then drains starting small, at
//! the pace the destination shows it can take, instead of hitting it all at
//! once the moment it is back; and it is back at full pace after a few seconds
//! of evidence, not after minutes of additive growth.

use serde::{Deserialize, Serialize};

/// Successes are counted over this window to measure the accepted rate.
pub const RATE_WINDOW_MS: u64 = 10_000;
/// The lowest rate ever set: one start every ten seconds keeps probing.
pub const MIN_RATE: f64 = 0.1;

const SLOTS: usize = (RATE_WINDOW_MS / 1000) as usize;
/// Float slack when comparing token counts.
const EPSILON: f64 = 1e-9;

/// Shaping parameters, the same for every destination (per-destination
/// overrides, if any, are the caller's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapingConfig {
    pub initial_concurrency: u32,
    pub max_concurrency: u32,
    /// At least 1: a destination is always probed.
    pub min_concurrency: u32,
    /// Ceiling in messages per second; `None`: no configured ceiling.
    pub max_rate: Option<f64>,
    /// Messages per second after an outage (and the base of a first throttle
    /// when nothing was measured yet).
    pub initial_rate: f64,
    /// Limit growth per round of `limit` successes.
    pub increase_per_success: f64,
    /// Multiplier applied at a decrease, between 0 and 1.
    pub decrease_factor: f64,
    /// Messages per second added per second of clean operation at the limit.
    pub rate_increase: f64,
    /// No two decreases closer than this.
    pub cooldown_ms: u64,
}

impl Default for ShapingConfig {
    fn default() -> Self {
        ShapingConfig {
            initial_concurrency: 2,
            max_concurrency: 20,
            min_concurrency: 1,
            max_rate: None,
            initial_rate: 10.0,
            increase_per_success: 1.0,
            decrease_factor: 0.5,
            rate_increase: 1.0,
            cooldown_ms: 5_000,
        }
    }
}

impl ShapingConfig {
    /// The same configuration with every value made usable: bounds ordered,
    /// factors in range, NaN and negatives replaced. Configuration checking
    /// reports such values; the shaper must still never stall or panic.
    fn sane(&self) -> ShapingConfig {
        let finite_pos = |v: f64, fallback: f64| if v.is_finite() && v > 0.0 { v } else { fallback };
        let min = self.min_concurrency.max(1);
        let max = self.max_concurrency.max(min);
        ShapingConfig {
            initial_concurrency: self.initial_concurrency.clamp(min, max),
            max_concurrency: max,
            min_concurrency: min,
            max_rate: self.max_rate.map(|r| finite_pos(r, MIN_RATE).max(MIN_RATE)),
            initial_rate: finite_pos(self.initial_rate, MIN_RATE).max(MIN_RATE),
            increase_per_success: if self.increase_per_success.is_finite() {
                self.increase_per_success.max(0.0)
            } else {
                0.0
            },
            decrease_factor: if self.decrease_factor.is_nan() { 0.5 } else { self.decrease_factor.clamp(0.0, 1.0) },
            rate_increase: if self.rate_increase.is_finite() { self.rate_increase.max(0.0) } else { 0.0 },
            cooldown_ms: self.cooldown_ms,
        }
    }
}

/// What a delivery attempt said about the destination. Which replies are
/// which is the caller's call (a `421`, a `451 4.7.x` or one that says
/// "rate" or "too many" is usually `Throttled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Feedback {
    Success,
    /// The destination asked us to slow down.
    Throttled,
    /// Connection refused, timed out, or reset before the greeting.
    ConnectFailure,
    /// Any other 4xx: says nothing about load.
    OtherTemporary,
    /// A 5xx: says nothing about load.
    Permanent,
}

/// What `facteur queue destinations` shows for one destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShaperState {
    pub concurrency_limit: u32,
    /// Messages per second, `None` when unlimited.
    pub rate_limit: Option<f64>,
    pub successes: u64,
    pub throttles: u64,
    pub connect_failures: u64,
    /// `OtherTemporary` and `Permanent` feedback.
    pub other_failures: u64,
    /// When the limits were last decreased, in the caller's milliseconds.
    pub last_decrease_ms: Option<u64>,
    /// Connection failures and no success since.
    pub out: bool,
    /// Climbing back to the levels held before an outage.
    pub catching_up: bool,
}

/// Limits a destination is known to have taken.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Level {
    limit: u32,
    rate: Option<f64>,
}

/// Adaptive limits for one destination.
#[derive(Debug, Clone)]
pub struct Shaper {
    cfg: ShapingConfig,
    /// Live nodes delivering to this destination (1: this one alone).
    share: u32,
    /// Concurrency limit, within [min, max].
    limit: u32,
    /// Growth earned towards the next +1, in units of `increase_per_success`.
    credit: f64,
    /// Discovered rate, msgs/s; `None` until the first push-back.
    rate: Option<f64>,
    /// Token bucket, meaningful when `rate_limit()` is `Some`.
    tokens: f64,
    tokens_at_ms: u64,
    /// A start filled the window (or was refused by it) since the limit last changed.
    window_full: bool,
    /// When a start last took the bucket's last token or was refused by it.
    bucket_dry_ms: Option<u64>,
    out: bool,
    /// The levels held when the current outage began.
    before_outage: Option<Level>,
    /// The levels to climb back to, fast, after an outage.
    catch_up: Option<Level>,
    /// Successes per second over the last `SLOTS` seconds: (second, count).
    recent: [(u64, u32); SLOTS],
    measuring_since_ms: u64,
    successes: u64,
    throttles: u64,
    connect_failures: u64,
    other_failures: u64,
    last_decrease_ms: Option<u64>,
}

impl Shaper {
    pub fn new(cfg: &ShapingConfig, now_ms: u64) -> Self {
        let cfg = cfg.sane();
        Shaper {
            share: 1,
            limit: cfg.initial_concurrency,
            credit: 0.0,
            cfg,
            rate: None,
            tokens: 1.0,
            tokens_at_ms: now_ms,
            window_full: false,
            bucket_dry_ms: None,
            out: false,
            before_outage: None,
            catch_up: None,
            recent: [(u64::MAX, 0); SLOTS],
            measuring_since_ms: now_ms,
            successes: 0,
            throttles: 0,
            connect_failures: 0,
            other_failures: 0,
            last_decrease_ms: None,
        }
    }

    /// An operator's ceiling on the rate (msgs/s), or none.
    pub fn set_max_rate(&mut self, max_rate: Option<f64>) {
        self.cfg.max_rate = max_rate.filter(|r| r.is_finite() && *r > 0.0);
    }

    /// This node is one of `nodes` live nodes delivering to the
    /// destination: the configured ceilings (`max_concurrency`, `max_rate`,
    /// an operator's rate) are the destination's whole, split evenly
    /// (rounded down, at least one connection each), so the nodes together
    /// stay within them unless there are more nodes than connections
    /// allowed. What the shaper discovers (its window, the rate at a
    /// push-back) is this node's own.
    pub fn set_share(&mut self, nodes: u32) {
        self.share = nodes.max(1);
    }

    /// How many deliveries may be in flight at once.
    pub fn concurrency_limit(&self) -> u32 {
        self.limit.min((self.cfg.max_concurrency / self.share).max(1))
    }

    /// Starts per second currently allowed: the discovered rate under the
    /// configured ceiling (this node's share of it); `None` when neither
    /// exists.
    pub fn rate_limit(&self) -> Option<f64> {
        match (self.rate, self.max_rate()) {
            (Some(r), Some(m)) => Some(r.min(m)),
            (r, m) => r.or(m),
        }
    }

    /// This node's share of the configured rate ceiling.
    fn max_rate(&self) -> Option<f64> {
        self.cfg.max_rate.map(|m| (m / f64::from(self.share)).max(MIN_RATE))
    }

    /// May another delivery start now? Yes when `in_flight` is under the
    /// concurrency limit and the rate's bucket holds a token, which is then
    /// taken. Call it once per delivery actually started.
    pub fn try_start(&mut self, in_flight: u32, now_ms: u64) -> bool {
        let limit = self.concurrency_limit();
        if in_flight >= limit {
            self.window_full = true;
            return false;
        }
        if self.rate_limit().is_some() {
            self.refill(now_ms);
            if self.tokens + EPSILON < 1.0 {
                self.bucket_dry_ms = Some(now_ms);
                return false;
            }
            self.tokens = (self.tokens - 1.0).max(0.0);
            if self.tokens + EPSILON < 1.0 {
                self.bucket_dry_ms = Some(now_ms);
            }
        }
        if in_flight + 1 >= limit {
            self.window_full = true;
        }
        true
    }

    /// When the rate will next allow a start, for sleeping; `None` when the
    /// bucket is not what stops a start now (no rate, or a token is there).
    pub fn next_allowed_ms(&self, now_ms: u64) -> Option<u64> {
        let rate = self.rate_limit()?;
        let tokens = self.tokens_at(now_ms);
        if tokens + EPSILON >= 1.0 {
            return None;
        }
        let wait_ms = ((1.0 - tokens) / rate * 1000.0).ceil().max(1.0);
        Some(now_ms.saturating_add(wait_ms as u64))
    }

    pub fn feedback(&mut self, f: Feedback, now_ms: u64) {
        match f {
            Feedback::Success => self.on_success(now_ms),
            Feedback::Throttled => {
                self.throttles += 1;
                self.catch_up = None;
                if self.may_decrease(now_ms) {
                    self.decrease(now_ms, true);
                }
            }
            Feedback::ConnectFailure => {
                self.connect_failures += 1;
                if !self.out {
                    // Out during a catch-up: the target is still the old level.
                    let now = Level { limit: self.limit, rate: self.rate };
                    self.before_outage = Some(self.catch_up.take().unwrap_or(now));
                    self.out = true;
                }
                if self.may_decrease(now_ms) {
                    self.decrease(now_ms, false);
                }
            }
            Feedback::OtherTemporary | Feedback::Permanent => self.other_failures += 1,
        }
    }

    pub fn snapshot(&self) -> ShaperState {
        ShaperState {
            concurrency_limit: self.concurrency_limit(),
            rate_limit: self.rate_limit(),
            successes: self.successes,
            throttles: self.throttles,
            connect_failures: self.connect_failures,
            other_failures: self.other_failures,
            last_decrease_ms: self.last_decrease_ms,
            out: self.out,
            catching_up: self.catch_up.is_some(),
        }
    }

    fn on_success(&mut self, now_ms: u64) {
        self.successes += 1;
        self.count_success(now_ms);
        if self.out {
            self.restart(now_ms);
            return;
        }
        let target = self.catch_up;
        let below_target = target.is_some_and(|t| self.limit < t.limit);
        if self.window_full && below_target && self.limit < self.cfg.max_concurrency {
            // Slow start: +1 per success; the window stays marked as used.
            self.limit += 1;
            self.credit = 0.0;
        } else if self.window_full && self.limit < self.cfg.max_concurrency {
            self.credit += self.cfg.increase_per_success;
            let mut grown = false;
            while self.credit + EPSILON >= f64::from(self.limit) && self.limit < self.cfg.max_concurrency {
                self.credit = (self.credit - f64::from(self.limit)).max(0.0);
                self.limit += 1;
                grown = true;
            }
            if grown {
                // The new window has to fill before it grows again.
                self.window_full = false;
            }
        }
        if let Some(rate) = self.rate
            && self.rate_is_binding(rate, now_ms)
        {
            self.refill(now_ms);
            let step = (self.cfg.rate_increase / rate).min(rate);
            let climbed = match target.map(|t| t.rate) {
                Some(None) => rate + step.max(rate.min(1.0)),
                Some(Some(t)) if rate < t => (rate + step.max(rate.min(1.0))).min(t),
                _ => rate + step,
            };
            self.rate = Some(self.cap(climbed));
        }
        if let Some(t) = target
            && self.limit >= t.limit.min(self.cfg.max_concurrency)
        {
            match t.rate {
                // Unlimited before the outage: unlimited again.
                None => self.catch_up = None,
                Some(tr) if self.rate.is_some_and(|r| r + EPSILON >= self.cap(tr)) => self.catch_up = None,
                Some(_) => {}
            }
            if t.rate.is_none() {
                self.rate = None;
            }
        }
    }

    /// The bucket ran dry within about two start intervals.
    fn rate_is_binding(&self, rate: f64, now_ms: u64) -> bool {
        let grace_ms = (2_000.0 / rate).max(1_000.0);
        self.bucket_dry_ms.is_some_and(|dry| (now_ms.saturating_sub(dry) as f64) <= grace_ms)
    }

    fn set_limit(&mut self, limit: u32) {
        self.limit = limit.clamp(self.cfg.min_concurrency, self.cfg.max_concurrency);
        self.credit = 0.0;
        self.window_full = false;
    }

    /// Back after an outage: start small again, climb back on evidence.
    fn restart(&mut self, now_ms: u64) {
        self.out = false;
        self.catch_up = self.before_outage.take();
        self.set_limit(self.limit.min(self.cfg.initial_concurrency));
        self.refill(now_ms);
        let rate = self.rate.map_or(self.cfg.initial_rate, |r| r.min(self.cfg.initial_rate));
        self.rate = Some(self.cap(rate));
        // Tokens saved up during the outage are not a licence to burst.
        self.tokens = self.tokens.min(1.0);
        self.bucket_dry_ms = None;
        // The accepted rate is measured afresh: the silent seconds of the
        // outage would make the destination look ten times slower at its
        // first push-back than it is.
        self.recent = [(u64::MAX, 0); SLOTS];
        self.measuring_since_ms = now_ms;
    }

    fn may_decrease(&self, now_ms: u64) -> bool {
        self.last_decrease_ms.is_none_or(|last| now_ms.saturating_sub(last) >= self.cfg.cooldown_ms)
    }

    fn decrease(&mut self, now_ms: u64, rate_too: bool) {
        self.last_decrease_ms = Some(now_ms);
        let f = self.cfg.decrease_factor;
        // Rounded down, within [min, max]: the u32 conversion saturates.
        self.set_limit((f64::from(self.limit) * f).floor() as u32);
        if rate_too {
            self.refill(now_ms);
            let current = self.rate_limit();
            let base = match (self.measured_rate(now_ms), current) {
                (Some(m), Some(c)) => m.min(c),
                (Some(m), None) => m,
                (None, Some(c)) => c,
                (None, None) => self.cfg.initial_rate,
            };
            self.rate = Some(self.cap(base * f));
            // Pause: the next start waits for a whole token at the new rate.
            self.tokens = 0.0;
            self.bucket_dry_ms = None;
        }
    }

    fn cap(&self, rate: f64) -> f64 {
        let rate = rate.max(MIN_RATE);
        match self.max_rate() {
            Some(m) => rate.min(m),
            None => rate,
        }
    }

    fn capacity(&self) -> f64 {
        self.rate_limit().map_or(1.0, |r| r.max(1.0))
    }

    fn tokens_at(&self, now_ms: u64) -> f64 {
        match self.rate_limit() {
            Some(rate) => {
                let elapsed = now_ms.saturating_sub(self.tokens_at_ms) as f64 / 1000.0;
                (self.tokens + rate * elapsed).min(self.capacity())
            }
            None => self.capacity(),
        }
    }

    fn refill(&mut self, now_ms: u64) {
        self.tokens = self.tokens_at(now_ms);
        self.tokens_at_ms = self.tokens_at_ms.max(now_ms);
    }

    fn count_success(&mut self, now_ms: u64) {
        let second = now_ms / 1000;
        let slot = &mut self.recent[(second % SLOTS as u64) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 = slot.1.saturating_add(1);
    }

    /// Successes per second over the last `RATE_WINDOW_MS` (shorter if the
    /// shaper is younger); `None` when there were none.
    fn measured_rate(&self, now_ms: u64) -> Option<f64> {
        let second = now_ms / 1000;
        let first = (second + 1).saturating_sub(SLOTS as u64);
        let count: u64 = self
            .recent
            .iter()
            .filter(|(s, _)| *s != u64::MAX && *s >= first && *s <= second)
            .map(|(_, n)| u64::from(*n))
            .sum();
        if count == 0 {
            return None;
        }
        let since = self.measuring_since_ms.max(first * 1000);
        let span_secs = (now_ms.saturating_sub(since) as f64 / 1000.0).max(1.0);
        Some(count as f64 / span_secs)
    }
}
