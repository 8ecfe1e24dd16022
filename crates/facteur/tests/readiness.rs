//! Readiness that does not lie: `/readyz` follows a write probe, the free
//! disk and the storage invariants, and says which is wrong.

mod common;

use std::time::{Duration, Instant};

use common::{Lines, TestServer, http_get, test_config};
use facteur_store::prelude::*;

async fn wait_for_status(s: &TestServer, status: u16, within: Duration) -> String {
    let t = Instant::now();
    loop {
        let (code, body) = http_get(s.http, "/readyz").await;
        if code == status {
            return body;
        }
        assert!(t.elapsed() < within, "/readyz is {code}, not {status}, after {within:?}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With the database readable but not writable (another process holds its
/// write lock), every message gets 451: /readyz must say 503 and why, and
/// be ready again once writes go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_whether_storage_takes_writes() {
    let mut config = test_config();
    config.storage.probe_interval_secs = 1;
    config.storage.probe_timeout_secs = 1;
    let s = TestServer::start_with(config).await;
    wait_for_status(&s, 200, Duration::from_secs(5)).await;
    let blocker = rusqlite::Connection::open(s.db_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut c = Lines::connect(s.smtp).await;
    c.until("220 ").await;
    c.send(b"EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n").await;
    c.until("354 ").await;
    c.send(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    // The commit waits for the lock (10 s of SQLite's busy timeout, or two).
    let smtp = tokio::spawn(async move { c.line_within(30).await });
    let body = wait_for_status(&s, 503, Duration::from_secs(5)).await;
    assert!(body.contains("storage") && body.contains("did not commit"), "{body}");
    // Reads still work meanwhile (the lie was "readable, so ready").
    assert!(!s.store().list_domains().await.unwrap().is_empty());
    let r = smtp.await.unwrap().unwrap();
    assert!(r.starts_with("451 4.3.0"), "{r}");
    blocker.execute_batch("ROLLBACK").unwrap();
    wait_for_status(&s, 200, Duration::from_secs(5)).await;
}

/// Free disk below the admission reserve: not ready, with the figures.
#[tokio::test]
async fn readiness_follows_free_disk() {
    let mut config = test_config();
    config.admission.reserve_bytes = u64::MAX / 2;
    let s = TestServer::start_with(config).await;
    let body = wait_for_status(&s, 503, Duration::from_secs(5)).await;
    assert!(body.contains("disk") && body.contains("below the reserve"), "{body}");
}
