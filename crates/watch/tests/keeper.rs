//! The keeper on a manual clock and a real SQLite store: events counted
//! through `facteur_types::signal` open an incident after the hold, stored
//! and on the board; while storage fails, the change waits in memory and
//! the board shows it anyway; once storage is back it is written, and the
//! incident resolves after the quiet. (Its own test binary: the signal
//! counters are per process.)

use std::sync::Arc;

use facteur_store::prelude::*;
use facteur_store::sqlite::SqliteStore;
use facteur_types::fault::{self, Fault};
use facteur_types::signal::{self, Signal};
use facteur_types::{ManualClock, SharedClock};
use facteur_watch::incident::Watch;
use facteur_watch::keeper::{Board, Keeper, State, WatchConfig};

const T0: i64 = 1_800_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_trouble_is_seen_kept_in_memory_stored_later_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let shared: SharedClock = Arc::new(clock.clone());
    let store = SqliteStore::create_with_clock(&dir.path().join("facteur.db"), shared.clone()).unwrap().for_node("n1");
    store.join("eu", "test", true, T0).await.unwrap();
    let config = WatchConfig { hold_secs: 30, quiet_secs: 60, ..WatchConfig::default() };
    let (tx, mut alerts) = tokio::sync::mpsc::channel(16);
    let board = Arc::new(Board::default());
    let keeper = Keeper {
        store: store.clone(),
        clock: shared,
        region: "eu".into(),
        config: config.clone(),
        board: board.clone(),
        announce: Some(tx),
        down_after_secs: 1_000_000,
    };
    let mut watch =
        Watch::new([(facteur_watch::incident::Component::Storage, config.objectives.storage.clone())], config.calm());
    let mut state = State::default();
    signal::take();
    // Ten minutes of commits that hold, then commits that fail (the fault
    // switch fails this store's writes too, the keeper's own included).
    for _ in 0..60 {
        signal::record(Signal::Storage, true, 10);
        keeper.look(&mut watch, &mut state).await;
        clock.advance(10);
    }
    assert!(board.snapshot().incidents.is_empty());
    fault::set(Fault::Storage, true);
    let mut opened_at = None;
    for _ in 0..10 {
        signal::record(Signal::Storage, false, 10);
        keeper.look(&mut watch, &mut state).await;
        if opened_at.is_none() && !board.snapshot().incidents.is_empty() {
            opened_at = Some(clock.now());
        }
        clock.advance(10);
    }
    let opened_at = opened_at.expect("an incident on the board");
    assert!((T0 + 630..=T0 + 650).contains(&opened_at), "after the 30 s hold: +{}", opened_at - T0);
    let snap = board.snapshot();
    assert_eq!((snap.incidents[0].id, snap.incidents[0].component.as_str()), (0, "storage"), "not stored yet");
    assert!(snap.incidents[0].title.starts_with("Storage is"), "{:?}", snap.incidents[0]);
    let alert = alerts.try_recv().expect("alerted though storage fails");
    assert_eq!((alert.kind, alert.component.as_str()), ("opened", "storage"));
    // Storage is back: the change is written; the failures leave the
    // window, the quiet runs, the incident resolves.
    fault::set(Fault::Storage, false);
    for _ in 0..200 {
        signal::record(Signal::Storage, true, 10);
        keeper.look(&mut watch, &mut state).await;
        clock.advance(10);
    }
    let stored = store.incidents(0).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].resolved_at.is_some(), "{stored:?}");
    let kinds: Vec<&str> = stored[0].updates.iter().map(|u| u.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"opened"));
    assert_eq!(kinds.last(), Some(&"resolved"));
    let snap = board.snapshot();
    assert!(snap.incidents[0].id > 0 && snap.incidents[0].resolved_at.is_some() && !snap.stale);
    assert_eq!(snap.regions.iter().collect::<Vec<_>>(), ["eu"]);
    let mut kinds = vec![alert.kind];
    while let Ok(a) = alerts.try_recv() {
        kinds.push(a.kind);
    }
    assert_eq!(kinds.last(), Some(&"resolved"), "{kinds:?}");
}
