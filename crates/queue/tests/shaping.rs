//! Per-destination shaping: the rules one by one, then a simulated
//! destination with limits of its own and an outage, driven for minutes of
//! virtual time.

use facteur_queue::shaping::{Feedback, MIN_RATE, Shaper, ShaperState, ShapingConfig};

fn cfg() -> ShapingConfig {
    ShapingConfig { cooldown_ms: 1_000, ..ShapingConfig::default() }
}

/// Starts as many deliveries as allowed at `now` (none in flight) and
/// reports them all successful: one round trip at the window.
fn full_round(s: &mut Shaper, now: u64) -> u32 {
    let mut n = 0;
    while s.try_start(n, now) {
        n += 1;
    }
    for _ in 0..n {
        s.feedback(Feedback::Success, now);
    }
    n
}

#[test]
fn starts_small_and_unlimited_in_rate() {
    let mut s = Shaper::new(&cfg(), 0);
    assert_eq!(s.concurrency_limit(), 2);
    assert_eq!(s.rate_limit(), None);
    assert_eq!(s.next_allowed_ms(0), None);
    assert!(s.try_start(0, 0));
    assert!(s.try_start(1, 0));
    assert!(!s.try_start(2, 0));
    // The rate is not the constraint: any number of starts at one instant.
    for _ in 0..100 {
        assert!(s.try_start(0, 0));
    }
}

#[test]
fn one_more_per_round_of_successes_up_to_the_maximum() {
    let mut s = Shaper::new(&cfg(), 0);
    let mut limits = vec![s.concurrency_limit()];
    for round in 1..=25 {
        full_round(&mut s, round * 100);
        limits.push(s.concurrency_limit());
    }
    assert_eq!(limits[..6], [2, 3, 4, 5, 6, 7]);
    assert_eq!(*limits.last().unwrap(), 20);
    assert!(limits.windows(2).all(|w| w[1] == w[0] + 1 || w[1] == 20), "{limits:?}");
}

#[test]
fn a_window_that_is_not_used_does_not_grow() {
    let mut s = Shaper::new(&cfg(), 0);
    // One message at a time, for a long time.
    for i in 0..1_000 {
        assert!(s.try_start(0, i * 10));
        s.feedback(Feedback::Success, i * 10 + 5);
    }
    assert_eq!(s.concurrency_limit(), 2);
    assert_eq!(s.snapshot().successes, 1_000);
}

#[test]
fn throttles_halve_once_per_cooldown_down_to_the_minimum() {
    let mut s = Shaper::new(&ShapingConfig { initial_concurrency: 16, ..cfg() }, 0);
    s.feedback(Feedback::Throttled, 10_000);
    assert_eq!(s.concurrency_limit(), 8);
    // The rest of the same burst of 421s: one signal.
    for t in [10_000, 10_500, 10_999] {
        s.feedback(Feedback::Throttled, t);
    }
    assert_eq!(s.concurrency_limit(), 8);
    s.feedback(Feedback::Throttled, 11_000);
    assert_eq!(s.concurrency_limit(), 4);
    for t in [12_000, 13_000, 14_000, 15_000] {
        s.feedback(Feedback::Throttled, t);
    }
    assert_eq!(s.concurrency_limit(), 1);
    let snap = s.snapshot();
    assert_eq!((snap.throttles, snap.last_decrease_ms), (9, Some(15_000)));
}

#[test]
fn connect_failures_decrease_concurrency_but_not_the_rate() {
    let mut s = Shaper::new(&ShapingConfig { initial_concurrency: 8, ..cfg() }, 0);
    s.feedback(Feedback::ConnectFailure, 5_000);
    s.feedback(Feedback::ConnectFailure, 5_100);
    assert_eq!(s.concurrency_limit(), 4);
    assert_eq!(s.rate_limit(), None);
    let snap = s.snapshot();
    assert_eq!((snap.connect_failures, snap.out), (2, true));
}

#[test]
fn other_failures_change_nothing() {
    let mut s = Shaper::new(&ShapingConfig { initial_concurrency: 6, ..cfg() }, 0);
    let before = s.snapshot();
    for (i, f) in [Feedback::OtherTemporary, Feedback::Permanent].into_iter().cycle().take(50).enumerate() {
        s.feedback(f, i as u64 * 100);
    }
    let after = s.snapshot();
    assert_eq!(after, ShaperState { other_failures: 50, ..before });
}

#[test]
fn limits_stay_within_the_configured_bounds() {
    let c = ShapingConfig { initial_concurrency: 4, min_concurrency: 3, max_concurrency: 5, ..cfg() };
    let mut s = Shaper::new(&c, 0);
    for t in 0..20 {
        s.feedback(Feedback::ConnectFailure, t * 1_000);
        assert!(s.concurrency_limit() >= 3);
    }
    for round in 0..50 {
        full_round(&mut s, 100_000 + round * 1_000);
        assert!(s.concurrency_limit() <= 5);
    }
    assert_eq!(s.concurrency_limit(), 5);
}

#[test]
fn first_throttle_sets_the_rate_from_what_was_accepted() {
    let mut s = Shaper::new(&cfg(), 0);
    // 5 successes per second for ten seconds.
    for i in 1..=50 {
        let t = i * 200;
        assert!(s.try_start(0, t));
        s.feedback(Feedback::Success, t);
    }
    assert_eq!(s.rate_limit(), None);
    s.feedback(Feedback::Throttled, 10_000);
    let rate = s.rate_limit().unwrap();
    assert!((2.3..=2.8).contains(&rate), "half of ~5/s measured: {rate}");
    // Paused: the next start waits for a whole token at the new rate.
    assert!(!s.try_start(0, 10_000));
    let next = s.next_allowed_ms(10_000).unwrap();
    assert_eq!(next, 10_000 + (1_000.0 / rate).ceil() as u64);
    assert!(!s.try_start(0, next - 1));
    assert!(s.try_start(0, next));
}

#[test]
fn first_throttle_with_nothing_measured_halves_the_initial_rate() {
    let mut s = Shaper::new(&cfg(), 0);
    s.feedback(Feedback::Throttled, 50);
    assert_eq!(s.rate_limit(), Some(5.0));
    // Only successes older than the window: nothing measured either.
    let mut s = Shaper::new(&cfg(), 0);
    s.feedback(Feedback::Success, 100);
    s.feedback(Feedback::Throttled, 60_000);
    assert_eq!(s.rate_limit(), Some(5.0));
}

#[test]
fn the_rate_never_drops_below_the_floor() {
    let mut s = Shaper::new(&ShapingConfig { initial_rate: 0.15, ..cfg() }, 0);
    for t in 0..10 {
        s.feedback(Feedback::Throttled, t * 1_000);
    }
    assert_eq!(s.rate_limit(), Some(MIN_RATE));
    // One start every ten seconds still goes out.
    assert_eq!(s.next_allowed_ms(9_000), Some(19_000));
    assert!(s.try_start(0, 19_000));
}

#[test]
fn a_configured_ceiling_applies_from_the_start() {
    let mut s = Shaper::new(&ShapingConfig { max_rate: Some(2.0), ..cfg() }, 0);
    assert_eq!(s.rate_limit(), Some(2.0));
    assert!(s.try_start(0, 0));
    assert!(!s.try_start(0, 0));
    assert_eq!(s.next_allowed_ms(0), Some(500));
    assert!(s.try_start(0, 500));
    // Discovered rates stay under it too.
    let mut s = Shaper::new(&ShapingConfig { max_rate: Some(2.0), initial_rate: 50.0, ..cfg() }, 0);
    s.feedback(Feedback::Throttled, 0);
    assert_eq!(s.rate_limit(), Some(1.0));
}

#[test]
fn next_allowed_start_is_exact_for_awkward_rates() {
    for rate in [0.3, 1.0 / 3.0, 3.0, 7.0, 13.7, 99.0] {
        let mut s = Shaper::new(&ShapingConfig { max_rate: Some(rate), ..cfg() }, 1_000);
        let mut now = 1_000;
        let mut starts = 0;
        while now < 61_000 {
            if s.try_start(0, now) {
                starts += 1;
                continue;
            }
            let next = s.next_allowed_ms(now).expect("the bucket is the constraint");
            assert!(next > now);
            now = next;
            assert!(s.try_start(0, now), "rate {rate}: refused at the announced {now}");
            starts += 1;
        }
        // One minute at the rate, plus the first token (and at most a
        // second's worth of burst, the bucket starting with one token).
        let want = rate * 60.0;
        assert!((starts as f64 - want).abs() <= 2.0, "rate {rate}: {starts} starts in 60 s");
    }
}

#[test]
fn the_rate_grows_by_rate_increase_per_second_at_the_limit() {
    let mut s = Shaper::new(&ShapingConfig { max_concurrency: 100, initial_concurrency: 100, ..cfg() }, 0);
    s.feedback(Feedback::Throttled, 0);
    assert_eq!(s.rate_limit(), Some(5.0));
    // Start whenever the bucket allows; each delivery succeeds 50 ms later.
    let mut pending = Vec::new();
    for now in 0..=20_000u64 {
        pending.retain(|done: &u64| {
            if *done <= now {
                s.feedback(Feedback::Success, now);
                false
            } else {
                true
            }
        });
        while s.try_start(pending.len() as u32, now) {
            pending.push(now + 50);
        }
    }
    let rate = s.rate_limit().unwrap();
    // 5/s + 1/s per second for 20 s.
    assert!((22.0..=27.0).contains(&rate), "{rate}");
}

#[test]
fn the_rate_does_not_grow_when_traffic_stays_under_it() {
    let mut s = Shaper::new(&cfg(), 0);
    s.feedback(Feedback::Throttled, 0);
    assert_eq!(s.rate_limit(), Some(5.0));
    // One message per second against 5/s allowed.
    for i in 1..=600u64 {
        assert!(s.try_start(0, i * 1_000));
        s.feedback(Feedback::Success, i * 1_000 + 100);
    }
    assert_eq!(s.rate_limit(), Some(5.0));
}

#[test]
fn back_from_an_outage_it_starts_small_again() {
    let mut s = Shaper::new(&cfg(), 0);
    for round in 0..30 {
        full_round(&mut s, round * 100);
    }
    assert_eq!((s.concurrency_limit(), s.rate_limit()), (20, None));
    // Down: refused connections for a while.
    for t in (10_000..70_000).step_by(1_000) {
        s.feedback(Feedback::ConnectFailure, t);
    }
    assert_eq!(s.concurrency_limit(), 1);
    assert!(s.snapshot().out);
    // Back.
    s.feedback(Feedback::Success, 70_000);
    let snap = s.snapshot();
    assert!(!snap.out);
    assert!(snap.concurrency_limit <= 2, "{snap:?}");
    assert_eq!(snap.rate_limit, Some(10.0));
    assert!(snap.catching_up);
    // It climbs back by doubling per round trip (slow start) to the 20 it had...
    let mut limits = vec![];
    for round in 0..6 {
        full_round(&mut s, 71_000 + round * 1_000);
        limits.push(s.concurrency_limit());
    }
    assert_eq!(limits, [2, 4, 8, 16, 20, 20]);
    // ...and the rate, unlimited before the outage, is unlimited again.
    let snap = s.snapshot();
    assert_eq!((snap.rate_limit, snap.catching_up), (None, false));
}

/// The first push-back after an outage sets the rate from what the
/// destination took since it came back, not diluted by the silent outage.
#[test]
fn the_rate_found_after_an_outage_is_measured_since_the_return() {
    let mut s = Shaper::new(&cfg(), 0);
    for t in (0..60_000).step_by(1_000) {
        s.feedback(Feedback::ConnectFailure, t);
    }
    // Back: 600 deliveries in 1.2 s (500/s), then a 421.
    let mut delivered = 0;
    for i in 0..600 {
        let t = 60_000 + i * 2;
        if s.try_start(0, t) {
            s.feedback(Feedback::Success, t);
            delivered += 1;
        }
    }
    assert_eq!(delivered, 600, "unlimited in rate once the concurrency caught up");
    s.feedback(Feedback::Throttled, 61_200);
    let rate = s.rate_limit().unwrap();
    assert!((200.0..=260.0).contains(&rate), "rate {rate}: not 0.5 x the 500/s measured since the return");
}

#[test]
fn catching_up_stops_at_the_levels_known_before_the_outage() {
    let mut s = Shaper::new(&ShapingConfig { max_concurrency: 100, ..cfg() }, 0);
    for round in 0..8 {
        full_round(&mut s, round * 100);
    }
    assert_eq!(s.concurrency_limit(), 10);
    s.feedback(Feedback::ConnectFailure, 10_000);
    s.feedback(Feedback::Success, 11_000);
    let mut limits = vec![];
    for round in 0..8 {
        full_round(&mut s, 12_000 + round * 1_000);
        limits.push(s.concurrency_limit());
    }
    // From 2, doubling up to 10, then +1 per round again.
    assert_eq!(limits, [4, 8, 10, 11, 12, 13, 14, 15]);
}

#[test]
fn a_throttle_ends_the_catch_up() {
    let mut s = Shaper::new(&cfg(), 0);
    for round in 0..30 {
        full_round(&mut s, round * 100);
    }
    s.feedback(Feedback::ConnectFailure, 10_000);
    s.feedback(Feedback::Success, 11_000);
    full_round(&mut s, 12_000);
    assert!(s.snapshot().catching_up);
    let before = s.concurrency_limit();
    s.feedback(Feedback::Throttled, 12_500);
    let snap = s.snapshot();
    assert!(!snap.catching_up, "{snap:?}");
    assert_eq!(snap.concurrency_limit, before / 2);
}

#[test]
fn an_outage_during_a_catch_up_aims_for_the_original_levels() {
    let mut s = Shaper::new(&cfg(), 0);
    for round in 0..30 {
        full_round(&mut s, round * 100);
    }
    assert_eq!(s.concurrency_limit(), 20);
    s.feedback(Feedback::ConnectFailure, 10_000);
    s.feedback(Feedback::Success, 11_000);
    full_round(&mut s, 12_000);
    s.feedback(Feedback::ConnectFailure, 13_000);
    s.feedback(Feedback::Success, 14_000);
    for round in 0..6 {
        full_round(&mut s, 15_000 + round * 1_000);
    }
    assert_eq!((s.concurrency_limit(), s.rate_limit()), (20, None));
}

#[test]
fn a_short_blip_before_growth_does_not_raise_anything() {
    let mut s = Shaper::new(&ShapingConfig { initial_concurrency: 4, ..cfg() }, 0);
    s.feedback(Feedback::ConnectFailure, 1_000);
    s.feedback(Feedback::Success, 1_200);
    assert_eq!(s.concurrency_limit(), 2);
    assert_eq!(s.rate_limit(), Some(10.0));
}

#[test]
fn snapshot_is_serializable_and_counts_everything() {
    fn serializable<T: serde::Serialize>(_: &T) {}
    let mut s = Shaper::new(&cfg(), 0);
    s.feedback(Feedback::Success, 1);
    s.feedback(Feedback::Throttled, 2);
    s.feedback(Feedback::ConnectFailure, 3);
    s.feedback(Feedback::Permanent, 4);
    s.feedback(Feedback::OtherTemporary, 5);
    let snap = s.snapshot();
    serializable(&snap);
    assert_eq!(
        snap,
        ShaperState {
            concurrency_limit: 1,
            rate_limit: Some(0.5),
            successes: 1,
            throttles: 1,
            connect_failures: 1,
            other_failures: 2,
            last_decrease_ms: Some(2),
            out: true,
            catching_up: false,
        }
    );
}

#[test]
fn nonsense_configuration_never_stalls() {
    let c = ShapingConfig {
        initial_concurrency: 0,
        max_concurrency: 0,
        min_concurrency: 0,
        max_rate: Some(f64::NAN),
        initial_rate: -3.0,
        increase_per_success: f64::INFINITY,
        decrease_factor: f64::NAN,
        rate_increase: f64::NAN,
        cooldown_ms: 0,
    };
    let mut s = Shaper::new(&c, 0);
    assert_eq!(s.concurrency_limit(), 1);
    for t in 0..100u64 {
        let f = [Feedback::Success, Feedback::Throttled, Feedback::ConnectFailure][(t % 3) as usize];
        s.feedback(f, t * 100);
        let rate = s.rate_limit().unwrap();
        assert!(rate.is_finite() && rate >= MIN_RATE, "{rate}");
        assert_eq!(s.concurrency_limit(), 1);
    }
    let now = 20_000;
    let next = s.next_allowed_ms(now).unwrap_or(now);
    assert!(s.try_start(0, next));
}

// ---------------------------------------------------------------------------
// A simulated destination.

/// A receiving server with limits of its own.
struct Destination {
    /// Simultaneous sessions it takes; more get a 421.
    max_sessions: usize,
    /// Messages it takes in any 1000 ms; more get a 421.
    per_second: usize,
    /// Time to deliver one message.
    service_ms: u64,
    /// Connections fail (after `connect_timeout_ms`) within these times.
    down: std::ops::Range<u64>,
    connect_timeout_ms: u64,
}

#[derive(Default)]
struct Run {
    /// Starts, successes and throttles per second of virtual time.
    starts: Vec<u32>,
    successes: Vec<u32>,
    throttles: Vec<u32>,
}

impl Run {
    fn sum(v: &[u32], secs: std::ops::Range<usize>) -> u32 {
        v[secs].iter().sum()
    }
}

fn simulate(d: &Destination, c: &ShapingConfig, secs: usize) -> Run {
    let mut s = Shaper::new(c, 0);
    let mut run = Run { starts: vec![0; secs], successes: vec![0; secs], throttles: vec![0; secs] };
    // (done at, feedback, holds a session)
    let mut in_flight: Vec<(u64, Feedback, bool)> = Vec::new();
    let mut accepted: std::collections::VecDeque<u64> = Default::default();
    for now in 0..(secs as u64 * 1_000) {
        let sec = (now / 1_000) as usize;
        in_flight.retain(|(done, f, _)| {
            if *done > now {
                return true;
            }
            s.feedback(*f, now);
            match f {
                Feedback::Success => run.successes[sec] += 1,
                Feedback::Throttled => run.throttles[sec] += 1,
                _ => {}
            }
            false
        });
        while accepted.front().is_some_and(|t| now - t >= 1_000) {
            accepted.pop_front();
        }
        while s.try_start(in_flight.len() as u32, now) {
            run.starts[sec] += 1;
            let sessions = in_flight.iter().filter(|(_, _, session)| *session).count();
            let outcome = if d.down.contains(&now) {
                (now + d.connect_timeout_ms, Feedback::ConnectFailure, false)
            } else if sessions >= d.max_sessions || accepted.len() >= d.per_second {
                (now + 20, Feedback::Throttled, false)
            } else {
                accepted.push_back(now);
                (now + d.service_ms, Feedback::Success, true)
            };
            in_flight.push(outcome);
        }
    }
    run
}

#[test]
fn simulated_rate_limited_destination_is_drained_near_its_pace() {
    let d = Destination { max_sessions: 1_000, per_second: 20, service_ms: 200, down: 0..0, connect_timeout_ms: 1_000 };
    let run = simulate(&d, &cfg(), 180);
    let (ok, throttled) = (Run::sum(&run.successes, 60..180), Run::sum(&run.throttles, 60..180));
    let pace = f64::from(ok) / 120.0;
    // AIMD oscillates between half the limit and the limit: 3/4 on average.
    assert!((12.0..=20.0).contains(&pace), "{pace} msgs/s against 20/s accepted");
    let share = f64::from(throttled) / f64::from(ok + throttled);
    assert!(share < 0.05, "{:.1}% of attempts throttled", share * 100.0);
}

#[test]
fn simulated_concurrency_limited_destination_is_drained_near_its_pace() {
    let d =
        Destination { max_sessions: 5, per_second: usize::MAX, service_ms: 100, down: 0..0, connect_timeout_ms: 1_000 };
    let run = simulate(&d, &cfg(), 180);
    let (ok, throttled) = (Run::sum(&run.successes, 60..180), Run::sum(&run.throttles, 60..180));
    let pace = f64::from(ok) / 120.0;
    // 5 sessions × 10 messages per second each.
    assert!((25.0..=50.0).contains(&pace), "{pace} msgs/s against 50/s possible");
    let share = f64::from(throttled) / f64::from(ok + throttled);
    assert!(share < 0.05, "{:.1}% of attempts throttled", share * 100.0);
}

#[test]
fn simulated_outage_backlog_drains_from_a_slow_start() {
    let d = Destination {
        max_sessions: 1_000,
        per_second: 100,
        service_ms: 100,
        down: 30_000..90_000,
        connect_timeout_ms: 1_000,
    };
    let run = simulate(&d, &cfg(), 150);
    let before = Run::sum(&run.successes, 20..30);
    assert!(before >= 100, "running well before the outage: {before} in 10 s");
    assert_eq!(Run::sum(&run.successes, 31..90), 0);
    // During the outage: one probe at a time, not a storm of connections.
    let probes = Run::sum(&run.starts, 35..90);
    assert!(probes <= 60, "{probes} connection attempts in 55 s of outage");
    let pre = run.successes[29];
    let after = &run.starts[90..100];
    // Back: the first second at the slow-start pace, not the backlog's...
    assert!(after[0] <= 15, "starts per second after the outage: {after:?}");
    // ...then about doubling each second, never past the known-good pace...
    for w in after[..4].windows(2) {
        assert!(w[1] <= 5 * w[0] / 2 + 5, "faster than doubling: {after:?}");
    }
    assert!(after[..4].iter().all(|n| *n <= pre + 5), "above the {pre}/s known before: {after:?}");
    // ...and back to that pace within five seconds, not minutes.
    assert!(run.successes[95] * 10 >= pre * 9, "{}/s five seconds after, {pre}/s before", run.successes[95]);
    // Then on, additive growth probes for more, within what the destination takes.
    assert!(run.successes[90..].iter().all(|n| *n <= 100), "{:?}", &run.successes[90..]);
}

/// N nodes deliver to one destination: each takes 1/N of the configured
/// ceilings, so together they stay within them.
#[test]
fn nodes_split_the_configured_ceilings() {
    let cfg = ShapingConfig { initial_concurrency: 20, max_concurrency: 20, max_rate: Some(90.0), ..cfg() };
    let mut s = Shaper::new(&cfg, 0);
    assert_eq!((s.concurrency_limit(), s.rate_limit()), (20, Some(90.0)));
    s.set_share(3);
    assert_eq!((s.concurrency_limit(), s.rate_limit()), (6, Some(30.0)), "3 x 6 <= 20");
    s.set_max_rate(Some(300.0));
    assert_eq!(s.rate_limit(), Some(100.0), "an operator's rate is the destination's, split too");
    s.set_share(0);
    assert_eq!(s.concurrency_limit(), 20, "a share among no node is this node alone");
}
