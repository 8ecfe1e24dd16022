//! Class scheduling: shares with everything backlogged, bulk's floor, empty
//! classes, FIFO order, `retain`, `class_order`.

use facteur_queue::fair::{Class, ClassQueues, Weights, class_order, target_shares};

/// Keeps every class backlogged for `pops` pops and counts what each got.
fn shares_when_backlogged(weights: Weights, backlogged: [bool; 4], pops: usize) -> [f64; 4] {
    let mut q = ClassQueues::new(weights);
    for c in Class::ALL {
        if backlogged[c.index()] {
            q.push(c, 0u32);
        }
    }
    let mut got = [0usize; 4];
    for _ in 0..pops {
        let (c, _) = q.pop().expect("backlogged");
        got[c.index()] += 1;
        q.push(c, 0);
    }
    got.map(|n| n as f64 / pops as f64)
}

fn assert_close(got: [f64; 4], want: [f64; 4], tolerance: f64) {
    for c in Class::ALL {
        let (g, w) = (got[c.index()], want[c.index()]);
        assert!((g - w).abs() <= tolerance, "{c}: got {g:.4}, want {w:.4} (all: {got:?})");
    }
}

#[test]
fn all_backlogged_each_class_gets_its_weight_share() {
    // Bulk at 1/8 of the total is above its 0.1 floor: shares are the weights.
    let w = Weights { system: 3, interpersonal: 2, transactional: 2, bulk: 1, bulk_min_share: 0.1 };
    let got = shares_when_backlogged(w, [true; 4], 10_000);
    assert_close(got, [3.0 / 8.0, 2.0 / 8.0, 2.0 / 8.0, 1.0 / 8.0], 0.02);
    // Stride scheduling is exact to within one item per class.
    assert_close(got, [3.0 / 8.0, 2.0 / 8.0, 2.0 / 8.0, 1.0 / 8.0], 0.0002);
}

#[test]
fn default_weights_give_bulk_its_floor_and_the_rest_by_weight() {
    // 8:4:2:1 would give bulk 1/15 < 0.1; bulk gets 0.1, the others 0.9 as 8:4:2.
    let got = shares_when_backlogged(Weights::default(), [true; 4], 10_000);
    let want = [0.9 * 8.0 / 14.0, 0.9 * 4.0 / 14.0, 0.9 * 2.0 / 14.0, 0.1];
    assert_close(got, want, 0.02);
    assert_close(got, target_shares(&Weights::default(), [true; 4]), 0.0002);
}

#[test]
fn bulk_floor_holds_against_overwhelming_weights() {
    let w = Weights { system: 1000, interpersonal: 1000, transactional: 1000, bulk: 1, bulk_min_share: 0.1 };
    let got = shares_when_backlogged(w, [true; 4], 10_000);
    assert_close(got, [0.3, 0.3, 0.3, 0.1], 0.02);
    // Even a zero weight gets the floor.
    let w = Weights { bulk: 0, ..Weights::default() };
    let got = shares_when_backlogged(w, [true; 4], 10_000);
    assert!((got[Class::Bulk.index()] - 0.1).abs() <= 0.002, "{got:?}");
}

#[test]
fn without_a_floor_bulk_gets_its_weight() {
    let w = Weights { bulk_min_share: 0.0, ..Weights::default() };
    let got = shares_when_backlogged(w, [true; 4], 10_000);
    assert_close(got, [8.0 / 15.0, 4.0 / 15.0, 2.0 / 15.0, 1.0 / 15.0], 0.02);
}

#[test]
fn floor_never_lowers_bulk_below_its_weight() {
    // 1:1 with only system waiting besides bulk: bulk's weight gives it 0.5.
    let w = Weights { system: 1, interpersonal: 1, transactional: 1, bulk: 1, bulk_min_share: 0.1 };
    let got = shares_when_backlogged(w, [true, false, false, true], 10_000);
    assert_close(got, [0.5, 0.0, 0.0, 0.5], 0.02);
}

#[test]
fn an_empty_class_gets_nothing_and_costs_nothing() {
    // Transactional empty: the others share as if it did not exist.
    let w = Weights { bulk_min_share: 0.0, ..Weights::default() };
    let got = shares_when_backlogged(w, [true, true, false, true], 10_000);
    assert_eq!(got[Class::Transactional.index()], 0.0);
    assert_close(got, [8.0 / 13.0, 4.0 / 13.0, 0.0, 1.0 / 13.0], 0.02);
    // Only one class waiting: it gets everything, whatever its weight.
    let w = Weights { bulk: 0, bulk_min_share: 0.0, ..Weights::default() };
    let got = shares_when_backlogged(w, [false, false, false, true], 1_000);
    assert_eq!(got, [0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn a_class_back_from_idle_neither_bursts_nor_waits() {
    let w = Weights { system: 1, interpersonal: 1, transactional: 1, bulk: 1, bulk_min_share: 0.0 };
    let mut q = ClassQueues::new(w);
    q.push(Class::System, 0u32);
    q.push(Class::Bulk, 0);
    // A long time with interpersonal idle.
    for _ in 0..5_000 {
        let (c, _) = q.pop().unwrap();
        q.push(c, 0);
    }
    for _ in 0..100 {
        q.push(Class::Interpersonal, 1);
    }
    let mut first = Vec::new();
    for _ in 0..30 {
        let (c, item) = q.pop().unwrap();
        if c != Class::Interpersonal {
            q.push(c, item);
        }
        first.push(c);
    }
    // Served at once (no debt)...
    assert_eq!(first[0], Class::Interpersonal, "{first:?}");
    // ...and at its share of one third afterwards (no credit banked while idle).
    let n = first.iter().filter(|c| **c == Class::Interpersonal).count();
    assert!((9..=11).contains(&n), "{n} of 30: {first:?}");
}

#[test]
fn zero_weight_is_served_only_when_the_others_are_empty() {
    let w = Weights { transactional: 0, bulk_min_share: 0.0, ..Weights::default() };
    let mut q = ClassQueues::new(w);
    q.push(Class::Transactional, "t");
    q.push(Class::System, "s1");
    q.push(Class::System, "s2");
    assert_eq!(q.pop(), Some((Class::System, "s1")));
    assert_eq!(q.pop(), Some((Class::System, "s2")));
    assert_eq!(q.pop(), Some((Class::Transactional, "t")));
    assert_eq!(q.pop(), None);
}

#[test]
fn fifo_within_a_class() {
    let mut q = ClassQueues::new(Weights::default());
    let mut seq = 0u32;
    for i in 0..50 {
        for class in [Class::ALL[i % 4], Class::Bulk] {
            q.push(class, seq);
            seq += 1;
        }
    }
    let mut last = [None::<u32>; 4];
    while let Some((c, item)) = q.pop() {
        if let Some(prev) = last[c.index()] {
            assert!(item > prev, "{c}: {item} after {prev}");
        }
        last[c.index()] = Some(item);
    }
    assert!(q.is_empty());
}

#[test]
fn lengths_and_emptiness() {
    let mut q = ClassQueues::new(Weights::default());
    assert!(q.is_empty());
    assert_eq!(q.len(), 0);
    assert_eq!(q.pop(), None);
    q.push(Class::Bulk, 1);
    q.push(Class::Bulk, 2);
    q.push(Class::System, 3);
    assert_eq!((q.len(), q.len_of(Class::Bulk), q.len_of(Class::System), q.len_of(Class::Transactional)), (3, 2, 1, 0));
    assert!(!q.is_empty());
    let mut n = 0;
    while q.pop().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert!(q.is_empty());
}

#[test]
fn retain_drops_a_paused_class_and_keeps_order() {
    let mut q = ClassQueues::new(Weights::default());
    for i in 0..10u32 {
        q.push(Class::Bulk, i);
        q.push(Class::Interpersonal, i);
    }
    q.retain(|c, _| c != Class::Bulk);
    assert_eq!((q.len_of(Class::Bulk), q.len_of(Class::Interpersonal)), (0, 10));
    q.retain(|_, i| i % 2 == 0);
    let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(rest, [0, 2, 4, 6, 8].map(|i| (Class::Interpersonal, i)));
}

#[test]
fn target_shares_add_up_to_one_over_the_backlogged() {
    for mask in 1u8..16 {
        let backlogged = std::array::from_fn(|i| mask & (1 << i) != 0);
        for w in [
            Weights::default(),
            Weights { system: 0, interpersonal: 0, transactional: 0, bulk: 0, bulk_min_share: 0.5 },
            Weights { bulk_min_share: f64::NAN, ..Weights::default() },
            Weights { bulk_min_share: 7.0, ..Weights::default() },
        ] {
            let s = target_shares(&w, backlogged);
            let total: f64 = s.iter().sum();
            assert!((total - 1.0).abs() < 1e-9, "{mask:04b} {w:?}: {s:?}");
            for c in Class::ALL {
                assert!(backlogged[c.index()] || s[c.index()] == 0.0, "{mask:04b} {w:?}: {s:?}");
            }
        }
    }
}

#[test]
fn bulk_min_share_of_one_still_lets_the_others_through_when_bulk_is_empty() {
    let w = Weights { bulk_min_share: 1.0, ..Weights::default() };
    let mut q = ClassQueues::new(w);
    q.push(Class::System, "s");
    q.push(Class::Bulk, "b1");
    q.push(Class::Bulk, "b2");
    assert_eq!(q.pop(), Some((Class::Bulk, "b1")));
    assert_eq!(q.pop(), Some((Class::Bulk, "b2")));
    assert_eq!(q.pop(), Some((Class::System, "s")));
}

#[test]
fn class_order_is_by_descending_weight_ties_in_class_order() {
    use Class::*;
    assert_eq!(class_order(&Weights::default()), [System, Interpersonal, Transactional, Bulk]);
    let w = Weights { system: 1, interpersonal: 5, transactional: 5, bulk: 9, bulk_min_share: 0.0 };
    assert_eq!(class_order(&w), [Bulk, Interpersonal, Transactional, System]);
    let w = Weights { system: 2, interpersonal: 2, transactional: 2, bulk: 2, bulk_min_share: 0.0 };
    assert_eq!(class_order(&w), Class::ALL);
}

#[test]
fn class_names_and_indexes() {
    let names: Vec<_> = Class::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names, ["system", "interpersonal", "transactional", "bulk"]);
    for (i, c) in Class::ALL.into_iter().enumerate() {
        assert_eq!(c.index(), i);
        assert_eq!(c.to_string(), c.as_str());
    }
}

#[test]
fn ties_go_to_the_earlier_class() {
    let w = Weights { system: 1, interpersonal: 1, transactional: 1, bulk: 1, bulk_min_share: 0.0 };
    let mut q = ClassQueues::new(w);
    for c in Class::ALL.into_iter().rev() {
        q.push(c, ());
        q.push(c, ());
    }
    let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(c, ())| c)).collect();
    assert_eq!(order[..4], Class::ALL);
    assert_eq!(order[4..], Class::ALL);
}
