//! `/metrics`: the Prometheus exposition of what facteur measures.
//!
//! Every crate records through the `metrics` facade (counters where things
//! happen: SMTP acceptances, rejections, delivery attempts, notices,
//! commits); this module installs the one recorder of the process, renders
//! it in the Prometheus text format, and keeps the gauges that describe
//! state (queue depth and age per class and per destination, admission,
//! each destination's adaptive limits, open connections) current from a
//! background task, so a scrape never waits on storage.
//!
//! Labels are bounded: class, state, listener, protocol, outcome and status
//! class come from fixed sets; destinations are the `TOP_DESTINATIONS` with
//! the most waiting mail (the rest summed as `destination="other"`), and a
//! destination's series goes once it has not been refreshed for
//! `GAUGE_IDLE`. No label names a message, a user or a client address.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use facteur_queue::engine::DestinationState;
use facteur_queue::{DnsResolver, Engine};
use facteur_store::any::AnyStore;
use facteur_store::{QueueStats, prelude::*};
use facteur_types::Class;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

/// Destinations given their own series; the rest are summed as "other".
pub const TOP_DESTINATIONS: usize = 50;
/// A gauge not set for this long is dropped (a destination that left the
/// top, or emptied).
const GAUGE_IDLE: Duration = Duration::from_secs(60);
/// Buckets of the latency histograms, in seconds: from a fast group commit
/// (a fraction of a millisecond) to a stalled one.
const SECONDS_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's recorder, installed on first use (a process runs one
/// server; tests that start several in one process share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("the buckets are not empty")
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only what reaches this one");
        }
        describe();
        handle
    })
}

/// The `# HELP` lines: what each metric means, with its unit.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "facteur_smtp_messages_accepted_total",
        "Messages accepted (250 at the end of DATA), by listener and class."
    );
    describe_counter!(
        "facteur_smtp_recipients_accepted_total",
        "Recipients of accepted messages, by listener and class."
    );
    describe_counter!("facteur_smtp_storage_failures_total", "Messages refused with 451 because storage failed.");
    describe_counter!("facteur_local_deliveries_total", "Copies placed in local mailboxes at acceptance.");
    describe_counter!(
        "facteur_rejections_total",
        "Refusals by listener, step (connection, rcpt, data, auth, tls, ...) and code (the enhanced status, or the connection gate's reason)."
    );
    describe_counter!("facteur_sessions_total", "Connections admitted, by listener.");
    describe_histogram!(
        "facteur_command_duration_seconds",
        metrics::Unit::Seconds,
        "Time the server took over a command, by protocol and command (SMTP: AUTH, MAIL, RCPT, and DATA from the end of the data to the reply; IMAP: every command; POP3: AUTH, MAILDROP, RETR, QUIT)."
    );
    describe_gauge!("facteur_connections_open", "Connections open now, by protocol.");
    describe_counter!(
        "facteur_delivery_attempts_total",
        "Outbound delivery attempts per recipient, by class, outcome (delivered, deferred, bounced) and status class (2.0, 4.4, 5.1, ...)."
    );
    describe_counter!(
        "facteur_dsn_generated_total",
        "Delivery status notifications generated, by kind (failed, delayed, relayed, delivered)."
    );
    describe_histogram!(
        "facteur_storage_commit_seconds",
        metrics::Unit::Seconds,
        "Time of a group commit of the write path (what a 250 waits for), by backend."
    );
    describe_counter!("facteur_storage_commits_total", "Group commits, by backend.");
    describe_counter!("facteur_storage_committed_writes_total", "Writes carried by group commits, by backend.");
    describe_counter!(
        "facteur_storage_commit_failures_total",
        "Group commits that failed (every write in them answered with an error)."
    );
    describe_counter!(
        "facteur_probe_runs_total",
        "Synthetic probe runs (SMTP in, IMAPS back), by probe and result (ok, smtp, imap, timeout)."
    );
    describe_histogram!(
        "facteur_probe_duration_seconds",
        metrics::Unit::Seconds,
        "End-to-end time of a successful probe run: SMTP connection to the message read back over IMAP."
    );
    describe_gauge!("facteur_probe_up", "1 when the probe's last run succeeded, 0 when it failed.");
    describe_counter!(
        "facteur_alerts_total",
        "Incident alerts sent, by channel (webhook, email) and result (ok, failed: the webhook given up)."
    );
    describe_gauge!(
        "facteur_queue_recipients",
        "Recipients waiting, by class and state (queued: any due time; ready: due now; held)."
    );
    describe_gauge!(
        "facteur_queue_oldest_ready_age_seconds",
        metrics::Unit::Seconds,
        "How long the longest-due ready recipient of a class has been due (0: none ready)."
    );
    describe_gauge!(
        "facteur_admission_open",
        "1 while the class is accepted at the door, 0 while it is deferred (admission control)."
    );
    describe_gauge!(
        "facteur_destination_queue_recipients",
        "Recipients waiting per destination (the 50 with most; the rest as destination=\"other\"), by state."
    );
    describe_gauge!(
        "facteur_destination_oldest_ready_age_seconds",
        metrics::Unit::Seconds,
        "How long the longest-due ready recipient of a destination has been due."
    );
    describe_gauge!("facteur_destination_concurrency_limit", "A destination's adaptive connection limit on this node.");
    describe_gauge!(
        "facteur_destination_rate_limit_per_second",
        "A destination's adaptive message rate on this node (absent while unlimited)."
    );
    describe_gauge!("facteur_destination_active_connections", "Deliveries in progress to a destination on this node.");
}

/// Series of failures present from the start at 0, so that a rate or an
/// alert on them has something to read before the first failure.
pub fn register_failures(backend: &'static str) {
    metrics::counter!("facteur_storage_commit_failures_total", "backend" => backend).increment(0);
    use facteur_smtp::ListenerKind;
    for kind in [ListenerKind::Mx, ListenerKind::Submission, ListenerKind::Submissions] {
        metrics::counter!("facteur_smtp_storage_failures_total", "listener" => kind.name()).increment(0);
    }
}

/// Per-class queue gauges from what admission measures every second: the
/// stats, and the age of each class's oldest ready recipient.
pub fn queue(stats: &[QueueStats], load: &facteur_spool::Load) {
    for class in Class::ALL {
        let of: Vec<&QueueStats> = stats.iter().filter(|s| s.class == class).collect();
        let sum = |f: fn(&QueueStats) -> u64| of.iter().map(|s| f(s)).sum::<u64>() as f64;
        let c = class.as_str();
        metrics::gauge!("facteur_queue_recipients", "class" => c, "state" => "queued").set(sum(|s| s.queued));
        metrics::gauge!("facteur_queue_recipients", "class" => c, "state" => "ready").set(sum(|s| s.ready));
        metrics::gauge!("facteur_queue_recipients", "class" => c, "state" => "held").set(sum(|s| s.held));
        let age = load.oldest_ready_age_secs[class.index()];
        metrics::gauge!("facteur_queue_oldest_ready_age_seconds", "class" => c).set(age as f64);
    }
}

/// Admission's latches, per class.
pub fn admission(state: &[(Class, bool)]) {
    for (class, open) in state {
        metrics::gauge!("facteur_admission_open", "class" => class.as_str()).set(if *open { 1.0 } else { 0.0 });
    }
}

/// One destination's line: waiting mail (every class summed) and since
/// when its longest-due ready recipient has been due.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DestinationRow {
    pub name: String,
    pub queued: u64,
    pub ready: u64,
    pub held: u64,
    pub ready_since: Option<i64>,
}

/// The `TOP_DESTINATIONS` destinations with the most waiting mail (queued
/// and held), most first, then the rest summed as "other" (no age: a sum
/// of unrelated destinations has none worth showing).
pub fn destination_rows(stats: &[QueueStats]) -> Vec<DestinationRow> {
    let mut by: std::collections::BTreeMap<&str, DestinationRow> = Default::default();
    for s in stats {
        let d = by
            .entry(s.domain.as_str())
            .or_insert_with(|| DestinationRow { name: s.domain.clone(), ..Default::default() });
        d.queued += s.queued;
        d.ready += s.ready;
        d.held += s.held;
        d.ready_since = d.ready_since.into_iter().chain(s.ready_since).min();
    }
    let mut rows: Vec<DestinationRow> = by.into_values().collect();
    rows.sort_by(|a, b| (b.queued + b.held).cmp(&(a.queued + a.held)).then(a.name.cmp(&b.name)));
    let rest = rows.split_off(rows.len().min(TOP_DESTINATIONS));
    if !rest.is_empty() {
        let mut other = DestinationRow { name: "other".into(), ..Default::default() };
        for d in rest {
            other.queued += d.queued;
            other.ready += d.ready;
            other.held += d.held;
        }
        rows.push(other);
    }
    rows
}

/// Per-destination gauges: the rows above, and this node's adaptive limits
/// for those destinations and for any it is delivering to now.
pub fn destinations(stats: &[QueueStats], engine: &[DestinationState], now: i64) {
    let rows = destination_rows(stats);
    for d in &rows {
        for (state, n) in [("queued", d.queued), ("ready", d.ready), ("held", d.held)] {
            metrics::gauge!("facteur_destination_queue_recipients", "destination" => d.name.clone(), "state" => state)
                .set(n as f64);
        }
        if let Some(since) = d.ready_since {
            metrics::gauge!("facteur_destination_oldest_ready_age_seconds", "destination" => d.name.clone())
                .set((now - since).max(0) as f64);
        }
    }
    for e in engine.iter().filter(|e| e.active > 0 || rows.iter().any(|r| r.name == e.domain)) {
        let name = e.domain.clone();
        metrics::gauge!("facteur_destination_active_connections", "destination" => name.clone()).set(e.active as f64);
        if let Some(s) = &e.shaper {
            metrics::gauge!("facteur_destination_concurrency_limit", "destination" => name.clone())
                .set(s.concurrency_limit as f64);
            if let Some(rate) = s.rate_limit {
                metrics::gauge!("facteur_destination_rate_limit_per_second", "destination" => name).set(rate);
            }
        }
    }
}

/// Connections open per protocol, from the listeners' gates.
pub fn connections(gates: &[Arc<facteur_net::Gate>]) {
    for g in gates {
        metrics::gauge!("facteur_connections_open", "protocol" => g.name()).set(g.open() as f64);
    }
}

/// Refresh the per-destination and connection gauges every 5 seconds
/// (per-class ones follow admission's one-second measurement).
pub async fn run(
    store: AnyStore,
    engine: Option<Arc<Engine<AnyStore, DnsResolver>>>,
    clock: facteur_store::SharedClock,
    gates: Vec<Arc<facteur_net::Gate>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        connections(&gates);
        let now = clock.now();
        match store.queue_stats(now, true).await {
            Ok(stats) => {
                let engine = engine.as_ref().map(|e| e.destinations()).unwrap_or_default();
                destinations(&stats, &engine, now);
            }
            Err(e) => tracing::warn!(error = %e, "cannot measure the queue per destination for /metrics"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(domain: &str, class: Class, queued: u64, held: u64, ready_since: Option<i64>) -> QueueStats {
        QueueStats { class, domain: domain.into(), queued, ready: queued, held, ready_since }
    }

    #[test]
    fn destinations_past_the_top_are_summed_as_other() {
        let mut stats: Vec<QueueStats> = (0..TOP_DESTINATIONS + 10)
            .map(|i| stat(&format!("d{i:03}.test"), Class::Bulk, i as u64 + 1, 0, None))
            .collect();
        // One destination in two classes, its earliest due time kept.
        stats.push(stat("d000.test", Class::Interpersonal, 100, 5, Some(50)));
        stats.push(stat("d000.test", Class::Bulk, 0, 0, Some(40)));
        let rows = destination_rows(&stats);
        assert_eq!(rows.len(), TOP_DESTINATIONS + 1);
        assert_eq!(
            rows[0],
            DestinationRow { name: "d000.test".into(), queued: 101, ready: 101, held: 5, ready_since: Some(40) }
        );
        // The ten smallest (d001..d010 hold 2..11) are summed.
        let other = rows.last().unwrap();
        assert_eq!((other.name.as_str(), other.queued, other.ready_since), ("other", (2..=11).sum(), None));
        let total: u64 = rows.iter().map(|r| r.queued).sum();
        assert_eq!(total, stats.iter().map(|s| s.queued).sum::<u64>());
    }

    #[test]
    fn few_destinations_have_no_other() {
        let rows =
            destination_rows(&[stat("a.test", Class::Bulk, 1, 0, None), stat("b.test", Class::Bulk, 0, 2, None)]);
        assert_eq!(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["b.test", "a.test"]);
    }
}
