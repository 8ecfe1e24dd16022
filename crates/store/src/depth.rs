//! The queue's depth from counters kept as mail moves, the same on every
//! backend: admission reads it every second on every node and `queue stats`
//! on demand, so neither may scan every waiting recipient.
//!
//! The schema (SQLite 9, PostgreSQL 5) keeps, by trigger, the number of
//! waiting recipients per class, destination, state and the minute they
//! fall due (held ones count in minute 0). From those rows:
//! - `queued` and `held` are sums;
//! - `ready` (due by `now`) is the sum of the minutes wholly gone by plus an
//!   index count of the recipients due in the current minute up to `now`,
//!   so it is exact without reading more than a minute's worth of rows;
//! - `ready_since` (the earliest due time among ready recipients: how far
//!   delivery is behind) is one index seek per class or destination.
//!
//! Backends run these statements; PostgreSQL first folds the change rows
//! its triggers append (see its schema 5).

use std::collections::BTreeMap;

use crate::{Class, QueueStats};

/// The due minute a counter row stands for.
pub(crate) fn minute(t: i64) -> i64 {
    t.div_euclid(60)
}

/// Sums of `source` (rows of class, domain, state, minute, n) per class, or
/// per destination and class. `$1` is the current minute.
pub(crate) fn counts_sql(source: &str, by_domain: bool) -> String {
    let domain = if by_domain { "domain" } else { "''" };
    format!(
        "SELECT class, {domain},
                CAST(COALESCE(SUM(n) FILTER (WHERE state = 'queued'), 0) AS BIGINT),
                CAST(COALESCE(SUM(n) FILTER (WHERE state = 'queued' AND minute < $1), 0) AS BIGINT),
                CAST(COALESCE(SUM(n) FILTER (WHERE state = 'held'), 0) AS BIGINT)
         FROM {source} GROUP BY 1, 2"
    )
}

/// Recipients due in the current minute (from `$1`, its first second, to
/// `$2`, now), per class or destination and class.
pub(crate) fn current_minute_sql(by_domain: bool) -> String {
    let domain = if by_domain { "domain" } else { "''" };
    format!(
        "SELECT class, {domain}, COUNT(*) FROM recipients
         WHERE state = 'queued' AND next_attempt >= $1 AND next_attempt <= $2 GROUP BY 1, 2"
    )
}

/// The earliest due time of a class (`$1`), or of a class at a destination
/// (`$2`). (SQLite numbers `$N` parameters in order of appearance.)
pub(crate) fn since_sql(by_domain: bool) -> &'static str {
    if by_domain {
        "SELECT MIN(next_attempt) FROM recipients r WHERE r.class = $1 AND r.domain = $2 AND r.state = 'queued'"
    } else {
        "SELECT MIN(next_attempt) FROM recipients r WHERE r.state = 'queued' AND r.class = $1"
    }
}

/// One row of [`counts_sql`]: class, domain, queued, ready in minutes gone
/// by, held.
pub(crate) type CountRow = (Class, String, i64, i64, i64);

/// The stats from the counter sums and the current minute's count, ordered
/// by destination then class; `ready_since` is left for the caller to seek
/// where `ready > 0`. Rows at zero are left out.
pub(crate) fn assemble(counts: Vec<CountRow>, current: Vec<(Class, String, i64)>) -> Vec<QueueStats> {
    let mut by_key: BTreeMap<(String, &'static str), QueueStats> = BTreeMap::new();
    for (class, domain, queued, ready, held) in counts {
        by_key.insert(
            (domain.clone(), class.as_str()),
            QueueStats {
                class,
                domain,
                queued: queued.max(0) as u64,
                ready: ready.max(0) as u64,
                held: held.max(0) as u64,
                ready_since: None,
            },
        );
    }
    for (class, domain, n) in current {
        if let Some(s) = by_key.get_mut(&(domain, class.as_str())) {
            s.ready = (s.ready + n.max(0) as u64).min(s.queued);
        }
    }
    by_key.into_values().filter(|s| s.queued > 0 || s.held > 0).collect()
}

/// The due minute a waiting recipient counts in, as the triggers compute it.
const MINUTE_OF_ROW: &str = "CASE state WHEN 'queued' THEN COALESCE(next_attempt, 0) / 60 ELSE 0 END";

/// Counter rows (class, domain, state, minute, n) recounted from the queue.
pub(crate) fn recount_sql() -> String {
    format!(
        "SELECT class, domain, state, {MINUTE_OF_ROW}, COUNT(*) FROM recipients
         WHERE state IN ('queued', 'held') GROUP BY 1, 2, 3, 4"
    )
}

/// The due minute below which a counter check takes minutes together: two
/// minutes past `now`, so a fold that ran meanwhile (it folds minutes gone
/// by into minute 0), or on a node whose clock is a little ahead, is not
/// taken for a wrong count.
pub(crate) fn check_horizon(now: i64) -> i64 {
    minute(now) + 2
}

/// How many (class, destination, state, minute) keys of `source` differ
/// from a recount, minutes before `$1` (see [`check_horizon`]) taken
/// together. One statement, so one snapshot: writers may run meanwhile.
pub(crate) fn mismatch_sql(source: &str) -> String {
    format!(
        "WITH counted AS (
             SELECT class, domain, state, CASE WHEN minute < $1 THEN 0 ELSE minute END AS m, SUM(n) AS n
             FROM {source} GROUP BY 1, 2, 3, 4),
         actual AS (
             SELECT class, domain, state, CASE WHEN {MINUTE_OF_ROW} < $1 THEN 0 ELSE {MINUTE_OF_ROW} END AS m,
                    COUNT(*) AS n
             FROM recipients WHERE state IN ('queued', 'held') GROUP BY 1, 2, 3, 4)
         SELECT COUNT(*) FROM counted FULL JOIN actual USING (class, domain, state, m)
         WHERE COALESCE(counted.n, 0) <> COALESCE(actual.n, 0)"
    )
}

/// The finding for counters that differ from the queue.
pub(crate) fn mismatch_detail(keys: i64) -> String {
    format!("{keys} queue counter(s) (class, destination, state, due minute) differ from a recount of the queue")
}
