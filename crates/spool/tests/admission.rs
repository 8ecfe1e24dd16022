//! Admission at the door: every threshold at and just past its edge, the
//! order of closing, hysteresis, the reserve, and the reply codes.

use facteur_spool::{Admission, Load, Verdict, Watermarks};
use facteur_types::Class;

const SYSTEM: usize = 0;
const INTERPERSONAL: usize = 1;
const TRANSACTIONAL: usize = 2;
const BULK: usize = 3;

/// Round numbers, no hysteresis unless a test sets it.
fn marks() -> Watermarks {
    Watermarks {
        queue_depth: [1_000, 2_000, 3_000],
        oldest_age_secs: [600, 1_200, 1_800],
        free_disk_bytes: [30_000, 20_000, 10_000],
        reserve_bytes: 5_000,
        hysteresis: 0.0,
    }
}

/// A quiet node: nothing waiting, plenty of disk.
fn calm() -> Load {
    Load { queue_depth: 0, oldest_ready_age_secs: [0; 4], free_disk_bytes: 1_000_000 }
}

/// Open flags in `Class::ALL` order (system, interpersonal, transactional, bulk).
fn open(a: &Admission) -> [bool; 4] {
    a.state().map(|(_, open)| open)
}

fn admission_at(w: Watermarks, load: &Load) -> Admission {
    let mut a = Admission::new(w);
    a.update(load);
    a
}

const ALL_OPEN: [bool; 4] = [true, true, true, true];
const BULK_SHUT: [bool; 4] = [true, true, true, false];
const TWO_SHUT: [bool; 4] = [true, true, false, false];
const ALL_SHUT: [bool; 4] = [false, false, false, false];

#[test]
fn fresh_and_calm_everything_is_open() {
    let a = Admission::new(marks());
    assert_eq!(open(&a), ALL_OPEN);
    assert_eq!(a.state().map(|(c, _)| c), Class::ALL);
    let a = admission_at(marks(), &calm());
    assert_eq!(open(&a), ALL_OPEN);
    for c in Class::ALL {
        assert_eq!(a.verdict(c, 10_000, 1_000_000), Verdict::Accept);
    }
}

#[test]
fn queue_depth_closes_above_each_threshold_bulk_first() {
    let cases = [
        (1_000, ALL_OPEN),
        (1_001, BULK_SHUT),
        (2_000, BULK_SHUT),
        (2_001, TWO_SHUT),
        (3_000, TWO_SHUT),
        (3_001, ALL_SHUT),
        (u64::MAX, ALL_SHUT),
    ];
    for (depth, want) in cases {
        let a = admission_at(marks(), &Load { queue_depth: depth, ..calm() });
        assert_eq!(open(&a), want, "depth {depth}");
    }
}

#[test]
fn oldest_age_closes_above_each_threshold() {
    // The age of system or interpersonal mail is watched by every level.
    for class in [SYSTEM, INTERPERSONAL] {
        let cases = [(600, ALL_OPEN), (601, BULK_SHUT), (1_200, BULK_SHUT), (1_201, TWO_SHUT), (1_800, TWO_SHUT)];
        for (age, want) in cases.into_iter().chain([(1_801, ALL_SHUT)]) {
            let mut load = calm();
            load.oldest_ready_age_secs[class] = age;
            assert_eq!(open(&admission_at(marks(), &load)), want, "class {class}, age {age}");
        }
    }
}

#[test]
fn old_mail_of_a_lower_class_closes_only_what_is_below_it() {
    // Old transactional mail closes bulk and transactional, never people's mail.
    let mut load = calm();
    load.oldest_ready_age_secs[TRANSACTIONAL] = 600;
    assert_eq!(open(&admission_at(marks(), &load)), ALL_OPEN);
    load.oldest_ready_age_secs[TRANSACTIONAL] = 601;
    assert_eq!(open(&admission_at(marks(), &load)), BULK_SHUT);
    load.oldest_ready_age_secs[TRANSACTIONAL] = 1_201;
    assert_eq!(open(&admission_at(marks(), &load)), TWO_SHUT);
    load.oldest_ready_age_secs[TRANSACTIONAL] = u64::MAX;
    assert_eq!(open(&admission_at(marks(), &load)), TWO_SHUT);
    // Old bulk is the scheduler doing its job: it closes bulk only.
    let mut load = calm();
    load.oldest_ready_age_secs[BULK] = 600;
    assert_eq!(open(&admission_at(marks(), &load)), ALL_OPEN);
    load.oldest_ready_age_secs[BULK] = 601;
    assert_eq!(open(&admission_at(marks(), &load)), BULK_SHUT);
    load.oldest_ready_age_secs[BULK] = u64::MAX;
    assert_eq!(open(&admission_at(marks(), &load)), BULK_SHUT);
}

#[test]
fn free_disk_closes_below_each_threshold() {
    let cases = [
        (30_000, ALL_OPEN),
        (29_999, BULK_SHUT),
        (20_000, BULK_SHUT),
        (19_999, TWO_SHUT),
        (10_000, TWO_SHUT),
        (9_999, ALL_SHUT),
        (0, ALL_SHUT),
    ];
    for (free, want) in cases {
        let a = admission_at(marks(), &Load { free_disk_bytes: free, ..calm() });
        assert_eq!(open(&a), want, "free {free}");
    }
}

#[test]
fn queue_pressure_is_451_4_7_1() {
    let a = admission_at(marks(), &Load { queue_depth: 1_001, ..calm() });
    match a.verdict(Class::Bulk, 1_000, 1_000_000) {
        Verdict::TryLater { code, enhanced, reason } => {
            assert_eq!((code, enhanced), (451, (4, 7, 1)));
            assert!(reason.contains("bulk"), "{reason}");
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(a.verdict(Class::Transactional, 1_000, 1_000_000), Verdict::Accept);
    let mut load = calm();
    load.oldest_ready_age_secs[SYSTEM] = 1_801;
    let a = admission_at(marks(), &load);
    for c in Class::ALL {
        assert!(matches!(a.verdict(c, 0, 1_000_000), Verdict::TryLater { code: 451, enhanced: (4, 7, 1), .. }));
    }
}

#[test]
fn storage_is_452_4_3_1_and_wins_over_queue_pressure() {
    let a = admission_at(marks(), &Load { free_disk_bytes: 29_999, ..calm() });
    assert!(matches!(a.verdict(Class::Bulk, 0, 29_999), Verdict::TryLater { code: 452, enhanced: (4, 3, 1), .. }));
    assert_eq!(a.verdict(Class::Interpersonal, 0, 29_999), Verdict::Accept);
    let a = admission_at(marks(), &Load { free_disk_bytes: 9_999, queue_depth: 5_000, ..calm() });
    for c in Class::ALL {
        assert!(matches!(a.verdict(c, 0, 9_999), Verdict::TryLater { code: 452, enhanced: (4, 3, 1), .. }));
    }
}

#[test]
fn the_reserve_is_never_eaten_into() {
    let a = admission_at(marks(), &calm());
    // free - size == reserve: accepted; one octet more: refused.
    assert_eq!(a.verdict(Class::System, 95_000, 100_000), Verdict::Accept);
    let refused = a.verdict(Class::System, 95_001, 100_000);
    assert!(matches!(refused, Verdict::TryLater { code: 452, enhanced: (4, 3, 1), .. }), "{refused:?}");
    // A message larger than the free space: no underflow, refused.
    assert!(matches!(a.verdict(Class::System, 200_000, 100_000), Verdict::TryLater { code: 452, .. }));
    // No size declared, free space already under the reserve.
    assert_eq!(a.verdict(Class::Interpersonal, 0, 5_000), Verdict::Accept);
    assert!(matches!(a.verdict(Class::Interpersonal, 0, 4_999), Verdict::TryLater { code: 452, .. }));
    // The reserve uses the reading given to `verdict`, not the last update.
    assert!(matches!(a.verdict(Class::Bulk, 1, 5_000), Verdict::TryLater { code: 452, .. }));
}

#[test]
fn hysteresis_on_depth_reopens_only_well_below() {
    let mut a = Admission::new(Watermarks { hysteresis: 0.1, ..marks() });
    let mut states = vec![];
    for depth in [1_000, 1_001, 1_000, 901, 900, 901, 1_000, 1_001] {
        a.update(&Load { queue_depth: depth, ..calm() });
        states.push(open(&a)[BULK]);
    }
    assert_eq!(states, [true, false, false, false, true, true, true, false]);
}

#[test]
fn hysteresis_on_age_reopens_only_well_below() {
    let mut a = Admission::new(Watermarks { hysteresis: 0.1, ..marks() });
    let mut states = vec![];
    for age in [1_200, 1_201, 1_100, 1_081, 1_080, 1_200] {
        let mut load = calm();
        load.oldest_ready_age_secs[INTERPERSONAL] = age;
        a.update(&load);
        states.push(open(&a)[TRANSACTIONAL]);
    }
    assert_eq!(states, [true, false, false, false, true, true]);
}

#[test]
fn hysteresis_on_disk_reopens_only_well_above() {
    let mut a = Admission::new(Watermarks { hysteresis: 0.1, ..marks() });
    let mut states = vec![];
    for free in [10_000, 9_999, 10_500, 10_999, 11_000, 10_000, 9_999] {
        a.update(&Load { free_disk_bytes: free, ..calm() });
        states.push(open(&a)[SYSTEM]);
    }
    assert_eq!(states, [true, false, false, false, true, true, false]);
}

#[test]
fn no_flapping_around_a_threshold() {
    let mut a = Admission::new(Watermarks { hysteresis: 0.05, ..marks() });
    let mut changes = 0;
    let mut was = open(&a);
    // A queue wobbling 2% around the first threshold for a long time.
    for i in 0..1_000u64 {
        let depth = if i % 2 == 0 { 1_020 } else { 980 };
        a.update(&Load { queue_depth: depth, ..calm() });
        if open(&a) != was {
            changes += 1;
            was = open(&a);
        }
    }
    assert_eq!(changes, 1);
    assert_eq!(open(&a), BULK_SHUT);
}

#[test]
fn each_level_reopens_on_its_own() {
    let mut a = Admission::new(Watermarks { hysteresis: 0.1, ..marks() });
    a.update(&Load { queue_depth: 3_001, ..calm() });
    assert_eq!(open(&a), ALL_SHUT);
    a.update(&Load { queue_depth: 2_700, ..calm() });
    assert_eq!(open(&a), TWO_SHUT);
    a.update(&Load { queue_depth: 1_800, ..calm() });
    assert_eq!(open(&a), BULK_SHUT);
    a.update(&Load { queue_depth: 900, ..calm() });
    assert_eq!(open(&a), ALL_OPEN);
}

#[test]
fn thresholds_out_of_order_still_close_bulk_first() {
    let w = Watermarks { queue_depth: [3_000, 2_000, 1_000], ..marks() };
    let a = admission_at(w.clone(), &Load { queue_depth: 1_001, ..calm() });
    assert_eq!(open(&a), ALL_SHUT);
    let a = admission_at(w, &Load { queue_depth: 2_001, ..calm() });
    assert_eq!(open(&a), ALL_SHUT);
    // Disk: a higher level's latch closes every class below it too.
    let w = Watermarks { free_disk_bytes: [10_000, 20_000, 30_000], ..marks() };
    let a = admission_at(w, &Load { free_disk_bytes: 25_000, ..calm() });
    assert_eq!(open(&a), ALL_SHUT);
}

#[test]
fn disabled_thresholds_never_close() {
    let w = Watermarks {
        queue_depth: [u64::MAX; 3],
        oldest_age_secs: [u64::MAX; 3],
        free_disk_bytes: [0; 3],
        reserve_bytes: 0,
        hysteresis: 0.5,
    };
    let a = admission_at(w, &Load { queue_depth: u64::MAX, oldest_ready_age_secs: [u64::MAX; 4], free_disk_bytes: 0 });
    assert_eq!(open(&a), ALL_OPEN);
    assert_eq!(a.verdict(Class::Bulk, 0, 0), Verdict::Accept);
}

#[test]
fn defaults_are_ordered_and_leave_a_calm_node_open() {
    let w = Watermarks::default();
    assert!(w.queue_depth.is_sorted());
    assert!(w.oldest_age_secs.is_sorted());
    assert!(w.free_disk_bytes.is_sorted_by(|a, b| a >= b));
    assert!(w.reserve_bytes < w.free_disk_bytes[2]);
    let a = admission_at(w, &Load { free_disk_bytes: 50 << 30, ..calm() });
    assert_eq!(open(&a), ALL_OPEN);
}
