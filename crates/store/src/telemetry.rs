//! What storage tells `/metrics` and the service objectives: how long
//! shared commits take and how many writes each carries, and commits that
//! failed, per backend. (Only the group commits of the write path are
//! timed: they are what an SMTP `250` and a recorded outcome wait for.)
//! The storage fault switch ([`facteur_types::fault`]) is read here too,
//! where a commit is about to be made.

use std::time::Instant;

use facteur_types::fault::{self, Fault};
use facteur_types::signal::{self, Signal};

/// A group commit of `writes` writes that began at `started` succeeded.
pub(crate) fn committed(backend: &'static str, started: Instant, writes: usize) {
    metrics::histogram!("facteur_storage_commit_seconds", "backend" => backend).record(started.elapsed().as_secs_f64());
    metrics::counter!("facteur_storage_commits_total", "backend" => backend).increment(1);
    metrics::counter!("facteur_storage_committed_writes_total", "backend" => backend).increment(writes as u64);
    signal::record(Signal::Storage, true, 1);
}

/// A group commit failed: every write in it was answered with an error.
pub(crate) fn commit_failed(backend: &'static str) {
    metrics::counter!("facteur_storage_commit_failures_total", "backend" => backend).increment(1);
    signal::record(Signal::Storage, false, 1);
}

/// The error of a commit the storage fault switch makes fail, if it is on.
pub(crate) fn injected_fault() -> Option<String> {
    fault::on(Fault::Storage).then(|| "injected storage fault (FACTEUR_ALLOW_FAULTS)".to_string())
}
