//! The single writer thread and its group commit.
//!
//! Every write is a job sent to one thread that owns the write connection.
//! The thread takes whatever jobs are waiting (up to a bound), runs each in
//! its own SAVEPOINT inside one transaction, and commits once: one fsync of
//! the WAL covers every message of the batch (`synchronous=FULL`). Only after
//! the commit returns are the callers answered — so an SMTP `250` is never
//! sent for a message that is not on disk. If the commit fails, every job of
//! the batch gets an error (the SMTP layer answers `451 4.3.0`, or `452
//! 4.3.1` when the disk is full, and the client retries); a failed commit is
//! never retried and then trusted.
//!
//! A disk that is full (SQLITE_FULL: ENOSPC) is a passing state: the
//! transaction is rolled back and writes succeed again once there is room.
//! A disk that fails (SQLITE_IOERR: EIO from write or fsync) is not: after a
//! failed fsync the kernel may have dropped the dirty pages and marked them
//! clean, so what this process reads back can differ from what is on disk
//! ("fsyncgate"). The writer then stops the process (exit 74, EX_IOERR),
//! loudly; everything acknowledged was committed before, and the restart
//! recovers from the WAL's last durable commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Called with the outcome of the commit that covered the job.
pub type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// Runs inside the batch transaction; returns how to answer its caller.
pub type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// Most jobs in one commit: bounds the latency a batch adds.
const MAX_BATCH: usize = 512;

/// Start the writer thread; `commits` counts the commits it has made.
pub fn spawn(mut conn: Connection, commits: Arc<AtomicU64>) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("facteur-store-writer".into()).spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            run_batch(&mut conn, batch);
            commits.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    Ok(tx)
}

/// The disk failed under a write or an fsync: nothing this process holds
/// can be trusted any more (see the module's documentation).
fn disk_failed(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure)
}

/// Stop the process: a restart recovers from what is durable.
fn stop_on_disk_failure(e: &rusqlite::Error) -> ! {
    crate::telemetry::commit_failed("sqlite");
    let msg = format!(
        "storage I/O error ({e}): the disk failed a write or an fsync, so the database as this process sees \
         it may differ from what is on disk; stopping now (exit 74). Nothing acknowledged is lost: restart \
         facteur once the disk is checked, and it recovers from the last durable commit"
    );
    tracing::error!("{msg}");
    eprintln!("facteur: fatal: {msg}");
    std::process::exit(74);
}

fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    let started = std::time::Instant::now();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        if disk_failed(&e) {
            stop_on_disk_failure(&e);
        }
        crate::telemetry::commit_failed("sqlite");
        tracing::error!(error = %e, "cannot begin a write transaction");
        for job in batch {
            // The job is dropped unrun; its caller sees the writer error.
            drop(job);
        }
        return;
    }
    let jobs = batch.len();
    let completions: Vec<Completion> = batch.into_iter().map(|job| job(conn)).collect();
    tracing::trace!(jobs, "group commit");
    let outcome = match crate::telemetry::injected_fault() {
        Some(fault) => Err(StoreError::Internal(format!("commit failed: {fault}"))),
        None => conn.execute_batch("COMMIT").map_err(|e| {
            if disk_failed(&e) {
                stop_on_disk_failure(&e);
            }
            match StoreError::from(e) {
                StoreError::Full(m) => StoreError::Full(format!("commit failed: {m}")),
                other => StoreError::Internal(format!("commit failed: {other}")),
            }
        }),
    };
    match &outcome {
        Ok(()) => crate::telemetry::committed("sqlite", started, completions.len()),
        Err(_) => crate::telemetry::commit_failed("sqlite"),
    }
    if let Err(e) = &outcome {
        tracing::error!(error = %e, jobs = completions.len(), "commit failed; every write of the batch is reported failed");
        let _ = conn.execute_batch("ROLLBACK");
    }
    for c in completions {
        c(outcome.clone());
    }
}

/// Run `f` in a SAVEPOINT so that its failure undoes only its own writes.
pub fn in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(r) => {
            conn.execute_batch("RELEASE job")?;
            Ok(r)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

/// Build a job answering `reply` with `f`'s result once the commit is known.
pub fn job<R: Send + 'static>(
    f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    reply: tokio::sync::oneshot::Sender<Result<R>>,
) -> Job {
    Box::new(move |conn| {
        let res = in_savepoint(conn, f);
        Box::new(move |commit| {
            let out = match (res, commit) {
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                (Ok(r), Ok(())) => Ok(r),
            };
            let _ = reply.send(out);
        })
    })
}
