//! Weighted scheduling between the four classes of mail.
//!
//! Purpose: when more mail is ready than delivery can take, choose what goes
//! next so that people's mail comes first without starving anyone
//! (MISSION.md, "People first under pressure"; the La Poste 2018 fix was
//! exactly this). Pure: no I/O, no clock; the caller owns the items.
//!
//! Algorithm: stride scheduling (Waldspurger and Weihl, 1995), i.e. weighted
//! fair queueing with every item costing one unit. Each class has a *pass*;
//! `pop` serves the backlogged class with the smallest pass and advances it by
//! `1 / share`. Over any run in which the same classes stay backlogged, each
//! gets its share within one item, and the classes interleave (8:4:2:1 gives
//! S I S T S I S B ..., not eight system items in a row as deficit round robin
//! would), which keeps the wait of every class short and even.
//!
//! Shares are recomputed from the classes that are backlogged at each pop:
//! - an empty class gets nothing and costs nothing: its weight is shared out
//!   among the others in proportion to theirs;
//! - a class that comes back after being empty starts at the current virtual
//!   time: it banked no credit while idle (no burst when it returns) and owes
//!   no debt (no wait either);
//! - bulk gets at least `bulk_min_share` of the items whenever it is
//!   backlogged together with others, even if its weight would give it less,
//!   so a newsletter is late under pressure but never stuck ("never dropped");
//! - a weight of 0 means "only when every other class is empty" (bulk still
//!   gets its minimum share).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The class of a message (decided at acceptance by `facteur-classify`).
/// `Class::ALL` is also the index order of every per-class array here.
pub use facteur_types::Class;

/// Relative weights of the classes, and the floor under bulk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub system: u32,
    pub interpersonal: u32,
    pub transactional: u32,
    pub bulk: u32,
    /// Fraction of the items bulk gets at least when it is backlogged with
    /// other classes (0 to 1; values outside are clamped, NaN counts as 0).
    pub bulk_min_share: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { system: 8, interpersonal: 4, transactional: 2, bulk: 1, bulk_min_share: 0.1 }
    }
}

impl Weights {
    /// The weight of `class`.
    pub fn of(&self, class: Class) -> u32 {
        match class {
            Class::System => self.system,
            Class::Interpersonal => self.interpersonal,
            Class::Transactional => self.transactional,
            Class::Bulk => self.bulk,
        }
    }

    fn min_share(&self) -> f64 {
        if self.bulk_min_share.is_nan() { 0.0 } else { self.bulk_min_share.clamp(0.0, 1.0) }
    }
}

/// The classes by descending weight; equal weights keep the order of `Class::ALL`.
pub fn class_order(weights: &Weights) -> [Class; 4] {
    let mut order = Class::ALL;
    // Stable: ties keep the order of Class::ALL.
    order.sort_by_key(|c| std::cmp::Reverse(weights.of(*c)));
    order
}

/// The fraction of the items each class gets while exactly the classes marked
/// in `backlogged` (indexed like `Class::ALL`) have mail waiting. The shares
/// of the backlogged classes add up to 1; the others are 0.
pub fn target_shares(weights: &Weights, backlogged: [bool; 4]) -> [f64; 4] {
    let mut share = [0.0; 4];
    for c in Class::ALL {
        if backlogged[c.index()] {
            share[c.index()] = f64::from(weights.of(c));
        }
    }
    let mut total: f64 = share.iter().sum();
    if total == 0.0 {
        // Only zero-weight classes wait: they share equally.
        for c in Class::ALL {
            share[c.index()] = if backlogged[c.index()] { 1.0 } else { 0.0 };
        }
        total = share.iter().sum();
        if total == 0.0 {
            return share;
        }
    }
    for s in &mut share {
        *s /= total;
    }
    let bulk = Class::Bulk.index();
    let floor = weights.min_share();
    let others: f64 = total_except(&share, bulk);
    if backlogged[bulk] && share[bulk] < floor && others > 0.0 {
        // Bulk gets its floor; the others split the rest by weight.
        let scale = (1.0 - floor) / others;
        for (i, s) in share.iter_mut().enumerate() {
            *s = if i == bulk { floor } else { *s * scale };
        }
    }
    share
}

fn total_except(share: &[f64; 4], skip: usize) -> f64 {
    share.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, s)| s).sum()
}

/// Passes are rebased past this virtual time so f64 keeps its precision on a
/// server that runs for years.
const REBASE_AT: f64 = 1e9;

/// Four FIFO queues, one per class, served by weighted priority.
#[derive(Debug, Clone)]
pub struct ClassQueues<T> {
    weights: Weights,
    queues: [VecDeque<T>; 4],
    /// Stride-scheduling pass of each class.
    pass: [f64; 4],
    /// Pass of the class served last: where a returning class starts.
    vtime: f64,
}

impl<T> ClassQueues<T> {
    pub fn new(weights: Weights) -> Self {
        ClassQueues { weights, queues: Default::default(), pass: [0.0; 4], vtime: 0.0 }
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    pub fn push(&mut self, class: Class, item: T) {
        let i = class.index();
        if self.queues[i].is_empty() {
            // Back from idle: no credit banked, no debt owed.
            self.pass[i] = self.pass[i].max(self.vtime);
        }
        self.queues[i].push_back(item);
    }

    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    pub fn len_of(&self, class: Class) -> usize {
        self.queues[class.index()].len()
    }

    /// The next item by weighted priority: the backlogged class with the
    /// smallest pass (ties go to the earlier class in `Class::ALL`), oldest
    /// item of that class first. `None` only when every queue is empty.
    pub fn pop(&mut self) -> Option<(Class, T)> {
        let backlogged = std::array::from_fn(|i| !self.queues[i].is_empty());
        let share = target_shares(&self.weights, backlogged);
        let mut best: Option<Class> = None;
        for c in Class::ALL {
            let i = c.index();
            if !backlogged[i] || share[i] <= 0.0 {
                continue;
            }
            if best.is_none_or(|b| self.pass[i] < self.pass[b.index()]) {
                best = Some(c);
            }
        }
        // Shares of backlogged classes add up to 1, so some class has one;
        // should rounding ever say otherwise, serve by priority, never stall.
        let class = best.or_else(|| Class::ALL.into_iter().find(|c| backlogged[c.index()]))?;
        let i = class.index();
        let item = self.queues[i].pop_front()?;
        self.vtime = self.pass[i];
        if share[i] > 0.0 {
            self.pass[i] += 1.0 / share[i];
        }
        if self.vtime > REBASE_AT {
            self.rebase();
        }
        Some((class, item))
    }

    /// Drop every item for which `keep` is false (used when a class is
    /// paused). Order within each class is kept.
    pub fn retain(&mut self, mut keep: impl FnMut(Class, &T) -> bool) {
        for c in Class::ALL {
            self.queues[c.index()].retain(|item| keep(c, item));
        }
    }

    fn rebase(&mut self) {
        let base = self.vtime;
        for p in &mut self.pass {
            // An idle class below the virtual time restarts at it anyway.
            *p = (*p - base).max(0.0);
        }
        self.vtime = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shares over `pops` pops with every class kept backlogged.
    fn counts(q: &mut ClassQueues<()>, pops: usize) -> [usize; 4] {
        let mut got = [0; 4];
        for _ in 0..pops {
            let (c, ()) = q.pop().unwrap();
            got[c.index()] += 1;
            q.push(c, ());
        }
        got
    }

    #[test]
    fn rebasing_the_virtual_time_keeps_the_shares() {
        let w = Weights { system: 3, interpersonal: 2, transactional: 2, bulk: 1, bulk_min_share: 0.0 };
        let mut plain = ClassQueues::new(w);
        let mut aged = ClassQueues::new(w);
        for c in Class::ALL {
            plain.push(c, ());
            aged.push(c, ());
        }
        // As if the server had run for years: passes past the rebasing point.
        let offset = REBASE_AT + 12_345.5;
        aged.vtime += offset;
        for p in &mut aged.pass {
            *p += offset;
        }
        let (a, b) = (counts(&mut plain, 10_000), counts(&mut aged, 10_000));
        assert!(aged.vtime < REBASE_AT, "rebased: {}", aged.vtime);
        for i in 0..4 {
            assert!(a[i].abs_diff(b[i]) <= 1, "{a:?} vs {b:?}");
        }
        assert_eq!(a, [3750, 2500, 2500, 1250]);
    }
}
